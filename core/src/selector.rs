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

use crate::names::{label_key_problem, label_value_problem};

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
    /// Whether `labels` satisfy this requirement.
    #[must_use]
    pub fn matches(&self, labels: &Labels) -> bool {
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

    /// Validate a Kubernetes `LabelSelector`, reporting every bad field (keys, values,
    /// operators), in the order of the selector, with paths relative to it.
    pub fn parse(selector: &LabelSelector) -> Result<Self, Vec<SelectorProblem>> {
        let mut problems = Vec::new();
        let mut problem = |field: String, message: String| {
            problems.push(SelectorProblem { field, message });
        };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            if let Some(why) = label_key_problem(key) {
                problem("matchLabels".to_owned(), format!("key {key:?}: {why}"));
            }
            if let Some(why) = label_value_problem(value) {
                problem(
                    format!("matchLabels.{key}"),
                    format!("value {value:?}: {why}"),
                );
            }
            requirements.push(Requirement::In {
                key: key.clone(),
                values: BTreeSet::from([value.clone()]),
            });
        }
        for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let field = format!("matchExpressions[{index}]");
            let key = expression.key.clone();
            if let Some(why) = label_key_problem(&key) {
                problem(format!("{field}.key"), format!("{key:?}: {why}"));
            }
            let listed = expression.values.as_deref().unwrap_or_default();
            let values: BTreeSet<String> = listed.iter().cloned().collect();
            let requirement = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    let operator = &expression.operator;
                    problem(
                        format!("{field}.values"),
                        format!("operator {operator} needs at least one value"),
                    );
                    None
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    let operator = &expression.operator;
                    problem(
                        format!("{field}.values"),
                        format!("operator {operator} takes no values; remove them"),
                    );
                    None
                }
                "In" => Some(Requirement::In { key, values }),
                "NotIn" => Some(Requirement::NotIn { key, values }),
                "Exists" => Some(Requirement::Exists { key }),
                "DoesNotExist" => Some(Requirement::DoesNotExist { key }),
                other => {
                    problem(
                        format!("{field}.operator"),
                        format!(
                            "unknown operator {other:?}; use In, NotIn, Exists or DoesNotExist"
                        ),
                    );
                    None
                }
            };
            for (position, value) in listed.iter().enumerate() {
                if let Some(why) = label_value_problem(value) {
                    problem(
                        format!("{field}.values[{position}]"),
                        format!("{value:?}: {why}"),
                    );
                }
            }
            requirements.extend(requirement);
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
                "matchLabels",
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
