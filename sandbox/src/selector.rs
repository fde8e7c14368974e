//! Label and field selectors, parsed from the `labelSelector` and `fieldSelector` query
//! parameters with the grammar of the real server.
//!
//! ```text
//! "tier=web,env!=prod,app in (a,b),!legacy" --parse--> core Selector [ Requirement x 4 ] --matches(labels)--> bool
//! ```

use std::collections::BTreeSet;

use netfence_core::{
    names::{label_key_problem, label_value_problem},
    selector::{Labels, Requirement, Selector},
};
use serde_json::Value;

/// A parsed `labelSelector`: the core's [`Selector`], so the sandbox matches labels with the
/// same requirements and the same key and value rules as netfence itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    selector: Selector,
}

/// An unparsable selector; the server answers 400.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(String);

impl LabelSelector {
    /// Whether the selector selects everything.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.selector.is_everything()
    }

    /// Parse `labelSelector`: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a`, `!a`,
    /// joined by commas. `a=b` is the core's `a in (b)`, and `a!=b` its `a notin (b)`.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(LabelSelector {
            selector: Selector::from_requirements(requirements),
        })
    }

    /// Whether an object's labels (`metadata.labels`) satisfy every requirement.
    #[must_use]
    pub fn matches(&self, object: &Value) -> bool {
        if self.selector.is_everything() {
            return true;
        }
        let labels: Labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
            .collect();
        self.selector.matches(&labels)
    }
}

/// `key` if it is a label key (the core's rule), or `None`.
fn valid_key(key: &str) -> Option<String> {
    label_key_problem(key).is_none().then(|| key.to_owned())
}

/// `value` if it is a label value (the core's rule), or `None`.
fn valid_value(value: &str) -> Option<String> {
    label_value_problem(value)
        .is_none()
        .then(|| value.to_owned())
}

/// Split on commas that are not inside `( )`.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0_i32;
    let mut start = 0;
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorError> {
    let error = || SelectorError(part.to_owned());
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist {
            key: valid_key(key.trim()).ok_or_else(error)?,
        });
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotIn {
            key: valid_key(key.trim()).ok_or_else(error)?,
            values: BTreeSet::from([valid_value(value.trim()).ok_or_else(error)?]),
        });
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::In {
            key: valid_key(key.trim()).ok_or_else(error)?,
            values: BTreeSet::from([valid_value(value.trim()).ok_or_else(error)?]),
        });
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let key = valid_key(words[0]).ok_or_else(error)?;
        let rest = words[1].trim();
        let (negated, set) = if let Some(set) = rest.strip_prefix("notin") {
            (true, set)
        } else if let Some(set) = rest.strip_prefix("in") {
            (false, set)
        } else {
            return Err(error());
        };
        let inner = set
            .trim()
            .strip_prefix('(')
            .and_then(|set| set.strip_suffix(')'))
            .ok_or_else(error)?;
        let mut values = BTreeSet::new();
        for value in inner.split(',') {
            values.insert(valid_value(value.trim()).ok_or_else(error)?);
        }
        return Ok(if negated {
            Requirement::NotIn { key, values }
        } else {
            Requirement::In { key, values }
        });
    }
    Ok(Requirement::Exists {
        key: valid_key(part).ok_or_else(error)?,
    })
}

/// A parsed field selector: `metadata.name=x,metadata.namespace!=y`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(Vec<String>, bool, String)>,
}

impl FieldSelector {
    /// Whether the selector selects everything.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Parse `fieldSelector`. Any dotted path of the object is accepted.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, equal, value) = if let Some((key, value)) = part.split_once("!=") {
                (key, false, value)
            } else if let Some((key, value)) =
                part.split_once("==").or_else(|| part.split_once('='))
            {
                (key, true, value)
            } else {
                return Err(SelectorError(part.to_owned()));
            };
            let path: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
            if path.iter().any(String::is_empty) {
                return Err(SelectorError(part.to_owned()));
            }
            terms.push((path, equal, value.trim().to_owned()));
        }
        Ok(FieldSelector { terms })
    }

    /// Whether the object satisfies every term. A missing field reads as the empty string.
    #[must_use]
    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(path, equal, expected)| {
            let mut current = Some(object);
            for segment in path {
                current = current.and_then(|value| value.get(segment));
            }
            let found = match current {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (found == *expected) == *equal
        })
    }

    /// The name this selector pins with `metadata.name=`, if any.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|(path, equal, _)| {
                *equal && path.len() == 2 && path[0] == "metadata" && path[1] == "name"
            })
            .map(|(_, _, value)| value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labelled(labels: &Value) -> Value {
        json!({"metadata": {"labels": labels}})
    }

    #[test]
    fn every_operator_of_the_grammar_matches_like_the_real_server() {
        let object = labelled(&json!({"tier": "web", "env": "dev"}));
        let holds = |selector: &str| {
            LabelSelector::parse(selector)
                .expect("parses")
                .matches(&object)
        };
        assert!(holds("tier=web"));
        assert!(holds("tier==web,env"));
        assert!(holds("env!=prod,!legacy"));
        assert!(holds("tier in (web, api),env notin (prod)"));
        assert!(!holds("tier in (api)"));
        assert!(!holds("legacy"));
        assert!(holds(""));
    }

    #[test]
    fn malformed_selectors_are_errors() {
        assert!(LabelSelector::parse("tier in web").is_err());
        assert!(LabelSelector::parse("ti er=web").is_err());
        assert!(
            LabelSelector::parse("a/b/c=web").is_err(),
            "one '/' at most"
        );
        assert!(LabelSelector::parse("-tier=web").is_err());
        assert!(LabelSelector::parse("tier=-web").is_err());
        assert!(LabelSelector::parse("example.com/tier=web").is_ok());
        assert!(FieldSelector::parse("metadata.name").is_err());
    }

    #[test]
    fn field_selectors_read_dotted_paths() {
        let object = json!({"metadata": {"name": "a", "namespace": "n"}});
        let selector =
            FieldSelector::parse("metadata.name=a,metadata.namespace!=m").expect("parses");
        assert!(selector.matches(&object));
        assert_eq!(selector.name(), Some("a"));
    }
}
