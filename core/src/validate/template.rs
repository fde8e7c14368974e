//! Validation of an [`IsolationTemplate`]: every field checked again in Rust, with field paths
//! below `spec.template`, so the controller never generates from a template admission would
//! refuse.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use netfence_crd::{
    IsolationTemplate, NamespaceIsolation, NamespaceIsolationSpec,
    template::{ALWAYS_EXCLUDED, MAX_EXCLUDED_NAMESPACES, TemplateMetadata},
};

use crate::{
    meta::{MANAGED_BY_LABEL, TEMPLATE_LABEL, UNDECODABLE_ANNOTATION},
    names::{dns_label_problem, label_key_problem, label_value_problem},
    selector::Selector,
    validate::{FieldError, ValidatedIsolation, ValidationErrors},
};

/// An IsolationTemplate whose every field was checked: what the controller and the CLI expand.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedTemplate {
    name: String,
    uid: Option<String>,
    created: Option<Time>,
    selector: Selector,
    excluded: BTreeSet<String>,
    isolation_name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    spec: NamespaceIsolationSpec,
}

impl ValidatedTemplate {
    /// The template's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The template's UID (absent in manifests).
    #[must_use]
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// When the template was created (absent in manifests): the older template wins a namespace.
    #[must_use]
    pub fn created(&self) -> Option<&Time> {
        self.created.as_ref()
    }

    /// The validated namespace selector.
    #[must_use]
    pub fn namespace_selector(&self) -> &Selector {
        &self.selector
    }

    /// Whether `namespace` is left out by name: listed in `excludeNamespaces` or always excluded.
    #[must_use]
    pub fn excludes(&self, namespace: &str) -> bool {
        ALWAYS_EXCLUDED.contains(&namespace) || self.excluded.contains(namespace)
    }

    /// The name of every generated NamespaceIsolation.
    #[must_use]
    pub fn isolation_name(&self) -> &str {
        &self.isolation_name
    }

    /// The labels of `template.metadata`.
    #[must_use]
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// The annotations of `template.metadata`.
    #[must_use]
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// The spec of every generated NamespaceIsolation (valid).
    #[must_use]
    pub fn spec(&self) -> &NamespaceIsolationSpec {
        &self.spec
    }
}

/// Labels netfence sets on generated NamespaceIsolations; a template may not set them.
const RESERVED_LABELS: [&str; 2] = [TEMPLATE_LABEL, MANAGED_BY_LABEL];

impl TryFrom<&IsolationTemplate> for ValidatedTemplate {
    type Error = ValidationErrors;

    fn try_from(template: &IsolationTemplate) -> Result<Self, Self::Error> {
        let mut errors = Vec::new();
        let name = template.metadata.name.clone().unwrap_or_default();
        let spec = &template.spec;
        if name.is_empty() {
            push(&mut errors, "metadata.name", "is required");
        } else if let Some(problem) = label_value_problem(&name) {
            // The name is the value of the netfence.io/template label.
            push(
                &mut errors,
                "metadata.name",
                format!(
                    "{problem}; the template's name is the value of the {TEMPLATE_LABEL} label on what it generates"
                ),
            );
        }
        let isolation_name = spec.isolation_name.clone().unwrap_or_else(|| name.clone());
        if let Some(problem) = dns_label_problem(&isolation_name) {
            let (path, hint) = if spec.isolation_name.is_some() {
                ("spec.isolationName", "")
            } else {
                (
                    "metadata.name",
                    "; it names the generated NamespaceIsolations: set spec.isolationName to a DNS-1123 label",
                )
            };
            push(&mut errors, path, format!("{problem}{hint}"));
        }
        let selector = Selector::parse(&spec.namespace_selector).map_err(|problems| {
            for problem in problems {
                let path = format!("spec.namespaceSelector.{}", problem.field);
                push(&mut errors, path, problem.message);
            }
        });
        if spec.exclude_namespaces.len() > MAX_EXCLUDED_NAMESPACES {
            push(
                &mut errors,
                "spec.excludeNamespaces",
                format!(
                    "has {} entries; at most {MAX_EXCLUDED_NAMESPACES} are allowed: select namespaces by label instead",
                    spec.exclude_namespaces.len()
                ),
            );
        }
        for (index, namespace) in spec.exclude_namespaces.iter().enumerate() {
            if let Some(problem) = dns_label_problem(namespace) {
                push(
                    &mut errors,
                    format!("spec.excludeNamespaces[{index}]"),
                    problem,
                );
            }
        }
        let metadata = spec.template.metadata.clone().unwrap_or_default();
        check_template_metadata(&metadata, &mut errors);
        // The spec, validated exactly as the generated resource will be.
        let generated = NamespaceIsolation::new(&isolation_name, spec.template.spec.clone());
        if let Err(spec_errors) = ValidatedIsolation::try_from(&generated) {
            for error in spec_errors.0 {
                // Name problems were reported above, against the field that sets the name.
                if let Some(rest) = error.path.strip_prefix("spec") {
                    push(
                        &mut errors,
                        format!("spec.template.spec{rest}"),
                        error.message,
                    );
                }
            }
        }
        let selector = match selector {
            Ok(selector) if errors.is_empty() => selector,
            _ => return Err(ValidationErrors(errors)),
        };
        Ok(ValidatedTemplate {
            name,
            uid: template.metadata.uid.clone(),
            created: template.metadata.creation_timestamp.clone(),
            selector,
            excluded: spec.exclude_namespaces.iter().cloned().collect(),
            isolation_name,
            labels: metadata.labels,
            annotations: metadata.annotations,
            spec: spec.template.spec.clone(),
        })
    }
}

fn push(errors: &mut Vec<FieldError>, path: impl Into<String>, message: impl Into<String>) {
    errors.push(FieldError {
        path: path.into(),
        message: message.into(),
    });
}

/// Labels and annotations of `template.metadata`: valid keys and values, none that netfence sets.
fn check_template_metadata(metadata: &TemplateMetadata, errors: &mut Vec<FieldError>) {
    for (key, value) in &metadata.labels {
        let path = format!("spec.template.metadata.labels.{key}");
        if RESERVED_LABELS.contains(&key.as_str()) {
            push(
                errors,
                path,
                "is set by netfence on every generated NamespaceIsolation; remove it",
            );
            continue;
        }
        if let Some(problem) = label_key_problem(key) {
            push(errors, path.clone(), problem);
        }
        if let Some(problem) = label_value_problem(value) {
            push(errors, path, problem);
        }
    }
    for key in metadata.annotations.keys() {
        if key == UNDECODABLE_ANNOTATION {
            push(
                errors,
                format!("spec.template.metadata.annotations.{key}"),
                "is netfence's own marker (never written to a cluster); remove it",
            );
            continue;
        }
        if let Some(problem) = label_key_problem(key) {
            push(
                errors,
                format!("spec.template.metadata.annotations.{key}"),
                problem,
            );
        }
    }
}
