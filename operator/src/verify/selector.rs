//! Label selectors: a Kubernetes `LabelSelector` validated into [`Selector`], and matching labels.
//!
//! ```text
//! LabelSelector { matchLabels, matchExpressions } --Selector::parse--> Selector --matches(labels)--> bool
//! ```
//!
//! `matchLabels` entries become `In` requirements with one value; all requirements are ANDed.
//! An empty selector (`{}`) matches everything. Operators are `In`, `NotIn`, `Exists` and
//! `DoesNotExist`, spelt exactly so (the API server is case-sensitive too).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The labels of a pod or a namespace.
pub type Labels = BTreeMap<String, String>;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Requirement {
    /// The label is present and its value is one of `values`.
    In {
        /// The label key.
        key: String,
        /// The accepted values (never empty).
        values: BTreeSet<String>,
    },
    /// The label is absent, or its value is none of `values`.
    NotIn {
        /// The label key.
        key: String,
        /// The refused values (never empty).
        values: BTreeSet<String>,
    },
    /// The label is present, with any value.
    Exists {
        /// The label key.
        key: String,
    },
    /// The label is absent.
    DoesNotExist {
        /// The label key.
        key: String,
    },
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In { key, values } => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn { key, values } => {
                labels.get(key).is_none_or(|v| !values.contains(v))
            }
            Requirement::Exists { key } => labels.contains_key(key),
            Requirement::DoesNotExist { key } => !labels.contains_key(key),
        }
    }

    /// The label key this requirement reads.
    #[must_use]
    pub fn key(&self) -> &str {
        match self {
            Requirement::In { key, .. }
            | Requirement::NotIn { key, .. }
            | Requirement::Exists { key }
            | Requirement::DoesNotExist { key } => key,
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |values: &BTreeSet<String>| values.iter().cloned().collect::<Vec<_>>().join(",");
        match self {
            Requirement::In { key, values } if values.len() == 1 => {
                write!(f, "{key}={}", join(values))
            }
            Requirement::In { key, values } => write!(f, "{key} in ({})", join(values)),
            Requirement::NotIn { key, values } => write!(f, "{key} notin ({})", join(values)),
            Requirement::Exists { key } => write!(f, "{key}"),
            Requirement::DoesNotExist { key } => write!(f, "!{key}"),
        }
    }
}

/// A validated label selector: requirements that must all hold. Sorted and deduplicated, so two
/// selectors that mean the same thing compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// What is wrong with one field of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorProblem {
    /// The field path below the selector, such as `matchExpressions[0].operator`.
    pub field: String,
    /// What is wrong, and what to do.
    pub message: String,
}

impl Selector {
    /// The selector that matches everything (`{}`).
    #[must_use]
    pub fn everything() -> Self {
        Selector::default()
    }

    /// A selector from requirements (sorted and deduplicated here).
    #[must_use]
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort();
        requirements.dedup();
        Selector { requirements }
    }

    /// Validate a Kubernetes `LabelSelector`, reporting every bad field.
    pub fn parse(selector: &LabelSelector) -> Result<Self, Vec<SelectorProblem>> {
        let mut problems = Vec::new();
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            let field = format!("matchLabels.{key}");
            check_key(key, &field, &mut problems);
            check_value(value, &field, &mut problems);
            requirements.push(Requirement::In {
                key: key.clone(),
                values: BTreeSet::from([value.clone()]),
            });
        }
        for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let field = format!("matchExpressions[{index}]");
            check_key(&expression.key, &format!("{field}.key"), &mut problems);
            let values: BTreeSet<String> = expression.values.iter().flatten().cloned().collect();
            for (value_index, value) in expression.values.iter().flatten().enumerate() {
                check_value(
                    value,
                    &format!("{field}.values[{value_index}]"),
                    &mut problems,
                );
            }
            let key = expression.key.clone();
            let requirement = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    problems.push(SelectorProblem {
                        field: format!("{field}.values"),
                        message: format!(
                            "operator {} needs at least one value",
                            expression.operator
                        ),
                    });
                    continue;
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    problems.push(SelectorProblem {
                        field: format!("{field}.values"),
                        message: format!(
                            "operator {} takes no values; remove them",
                            expression.operator
                        ),
                    });
                    continue;
                }
                "In" => Requirement::In { key, values },
                "NotIn" => Requirement::NotIn { key, values },
                "Exists" => Requirement::Exists { key },
                "DoesNotExist" => Requirement::DoesNotExist { key },
                other => {
                    problems.push(SelectorProblem {
                        field: format!("{field}.operator"),
                        message: format!(
                            "unknown operator {other:?}; use In, NotIn, Exists or DoesNotExist"
                        ),
                    });
                    continue;
                }
            };
            requirements.push(requirement);
        }
        if problems.is_empty() {
            Ok(Selector::from_requirements(requirements))
        } else {
            Err(problems)
        }
    }

    /// Whether `labels` satisfy every requirement.
    #[must_use]
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements
            .iter()
            .all(|requirement| requirement.matches(labels))
    }

    /// Whether this selector matches everything.
    #[must_use]
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted.
    #[must_use]
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.requirements.is_empty() {
            return write!(f, "{{}}");
        }
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn check_key(key: &str, field: &str, problems: &mut Vec<SelectorProblem>) {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|prefix| {
        !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    if !prefix_ok || !is_label_name(name) {
        problems.push(SelectorProblem {
            field: field.to_owned(),
            message: format!(
                "{key:?} is not a valid label key (an optional DNS prefix and '/', then up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
            ),
        });
    }
}

fn check_value(value: &str, field: &str, problems: &mut Vec<SelectorProblem>) {
    if !value.is_empty() && !is_label_name(value) {
        problems.push(SelectorProblem {
            field: field.to_owned(),
            message: format!(
                "{value:?} is not a valid label value (up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
            ),
        });
    }
}

fn is_label_name(name: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_alphanumeric();
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(alphanumeric)
        && name.ends_with(alphanumeric)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|v| (*v).to_owned()).collect())
            },
        }
    }

    /// If this fails, `NotIn` and `DoesNotExist` select the wrong pods: a policy meant to cover
    /// "everything but the canary" would miss unlabelled pods, or cover the canary.
    #[test]
    fn operators_follow_kubernetes_semantics() {
        let selector = Selector::parse(&LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                expression("track", "NotIn", &["canary"]),
                expression("legacy", "DoesNotExist", &[]),
            ]),
        })
        .expect("valid");
        assert!(selector.matches(&labels(&[])), "absent key satisfies NotIn");
        assert!(selector.matches(&labels(&[("track", "stable")])));
        assert!(!selector.matches(&labels(&[("track", "canary")])));
        assert!(!selector.matches(&labels(&[("legacy", "")])));

        let selector = Selector::parse(&LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expression("tier", "In", &["a", "b"]),
                expression("debug", "Exists", &[]),
            ]),
        })
        .expect("valid");
        assert!(selector.matches(&labels(&[("app", "web"), ("tier", "b"), ("debug", "1")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "b")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "c"), ("debug", "")])));
        assert!(Selector::everything().matches(&labels(&[])));
    }

    /// If this fails, a typo in an operator (`in` for `In`) would be accepted and silently select
    /// nothing or everything, instead of being reported with its field path.
    #[test]
    fn bad_operators_and_values_are_reported_with_their_field() {
        let problems = Selector::parse(&LabelSelector {
            match_labels: Some(labels(&[("bad key!", "v")])),
            match_expressions: Some(vec![
                expression("tier", "in", &["a"]),
                expression("tier", "In", &[]),
                expression("tier", "Exists", &["x"]),
            ]),
        })
        .expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "matchLabels.bad key!",
                "matchExpressions[0].operator",
                "matchExpressions[1].values",
                "matchExpressions[2].values"
            ]
        );
        assert!(problems[1].message.contains("unknown operator \"in\""));
    }

    /// If this fails, explanations print selectors in a form users cannot map back to YAML.
    #[test]
    fn selectors_print_like_kubectl() {
        let selector = Selector::parse(&LabelSelector {
            match_labels: Some(labels(&[("pod", "b")])),
            match_expressions: Some(vec![expression("ns", "NotIn", &["x", "y"])]),
        })
        .expect("valid");
        assert_eq!(selector.to_string(), "pod=b, ns notin (x,y)");
        assert_eq!(Selector::everything().to_string(), "{}");
    }
}
