//! The `IsolationTemplate` resource: a cluster-wide baseline that every namespace chosen by label
//! gets as a generated NamespaceIsolation, and its validation.
//!
//! ```text
//! [ IsolationTemplate ] --ValidatedTemplate::try_from--> [ ValidatedTemplate ]
//!     x [ Namespace (labels) ] --(operator: template::plan)--> [ NamespaceIsolation per namespace ]
//! ```
//!
//! The admission rules (schema patterns, list bounds and the NamespaceIsolationSpec's CEL rules,
//! which apply to `spec.template.spec` as they apply to every NamespaceIsolation) refuse what they
//! can express; [`ValidatedTemplate`] checks everything again in Rust, with field paths below
//! `spec.template`, so the controller never generates from a template admission would refuse.

#![allow(clippy::duplicated_attributes)] // printcolumn repeats `name = , type_ =` per column

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    NamespaceIsolation, NamespaceIsolationSpec, ValidatedIsolation, ValidationErrors,
    validation::{
        FieldError, dns_label_problem, label_key_problem, label_value_problem, selector_errors,
    },
};

/// The label every generated NamespaceIsolation carries, with the template's name as value.
pub const TEMPLATE_LABEL: &str = "netfence.io/template";

/// Namespaces no template ever generates into, whatever its selector: the cluster's own.
pub const ALWAYS_EXCLUDED: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// The most names in `spec.excludeNamespaces`.
pub const MAX_EXCLUDED_NAMESPACES: usize = 256;

/// A DNS-1123 label: what a namespace name and a NamespaceIsolation's name (as netfence limits
/// it) must be.
const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A cluster-wide isolation baseline for every namespace its selector matches.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "netfence.io",
    version = "v1alpha1",
    kind = "IsolationTemplate",
    plural = "isolationtemplates",
    singular = "isolationtemplate",
    shortname = "nsit",
    status = "IsolationTemplateStatus",
    derive = "PartialEq",
    doc = "A cluster-wide isolation baseline: every namespace that namespaceSelector matches gets a NamespaceIsolation with this template's spec, owned by the template and kept in line with it.",
    printcolumn(name = "Selector", type_ = "string", json_path = ".status.selector"),
    printcolumn(
        name = "Matched",
        type_ = "integer",
        json_path = ".status.matchedNamespaces"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IsolationTemplateSpec {
    /// The namespaces that get the template, by label. Required: write `{}` to select every
    /// namespace (`kube-system`, `kube-public`, `kube-node-lease` and netfence's own namespace
    /// are always left out).
    pub namespace_selector: LabelSelector,

    /// Namespaces left out even when the selector matches them, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_EXCLUDED_NAMESPACES), inner(regex(pattern = DNS_LABEL_PATTERN)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub exclude_namespaces: Vec<String>,

    /// The name of the NamespaceIsolation generated in each namespace (default: the template's
    /// name). A DNS-1123 label of at most 63 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub isolation_name: Option<String>,

    /// The NamespaceIsolation to generate: metadata (labels, annotations) and a full spec.
    pub template: IsolationTemplateBody,
}

/// What each generated NamespaceIsolation looks like, shaped like every Kubernetes template.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IsolationTemplateBody {
    /// Labels and annotations for the generated NamespaceIsolations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,

    /// The spec of every generated NamespaceIsolation.
    pub spec: NamespaceIsolationSpec,
}

/// Labels and annotations for the generated NamespaceIsolations. netfence adds
/// `netfence.io/template: <template>` and `app.kubernetes.io/managed-by: netfence` itself.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("!has(self.labels) || !('netfence.io/template' in self.labels || 'app.kubernetes.io/managed-by' in self.labels)")
        .message("netfence sets the labels netfence.io/template and app.kubernetes.io/managed-by on every generated NamespaceIsolation; remove them")
        .field_path(".labels")
)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    /// Labels added to every generated NamespaceIsolation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to every generated NamespaceIsolation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What netfence observed and did, following the Kubernetes API conventions (and kstatus).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IsolationTemplateStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`: `True` with reason `Reconciled` when every matched namespace holds the generated
    /// NamespaceIsolation and none of them reports `Ready=False`; `False` with reason
    /// `InvalidSpec`, `Conflict`, `ApplyFailed` or `IsolationNotReady` (a generated
    /// NamespaceIsolation cannot apply: the message names its namespaces and why) and a message
    /// that says what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The namespace selector, written the way `kubectl get -l` takes it (the Selector column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// How many namespaces the template applies to: matched by the selector, not excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = i32::MAX))]
    pub matched_namespaces: Option<i32>,

    /// Matched namespaces where the template's NamespaceIsolation is not written, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["namespace".into()]))]
    pub conflicts: Vec<TemplateConflict>,
}

/// A namespace the template matches but does not write to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct TemplateConflict {
    /// The namespace.
    pub namespace: String,
    /// Why nothing is written there, and what to do.
    pub reason: String,
}

/// An IsolationTemplate whose every field was checked: what the controller and the CLI expand.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedTemplate {
    name: String,
    uid: Option<String>,
    created: Option<Time>,
    selector: LabelSelector,
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
    pub fn namespace_selector(&self) -> &LabelSelector {
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
const RESERVED_LABELS: [&str; 2] = [TEMPLATE_LABEL, "app.kubernetes.io/managed-by"];

/// The annotation the operator marks, in memory only, an object it cannot decode with; nobody
/// else may set it (a template that did would make every generated resource differ forever).
pub const UNDECODABLE_ANNOTATION: &str = "netfence.io/undecodable";

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
        errors.extend(selector_errors(
            &spec.namespace_selector,
            "spec.namespaceSelector",
        ));
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
        if !errors.is_empty() {
            return Err(ValidationErrors(errors));
        }
        Ok(ValidatedTemplate {
            name,
            uid: template.metadata.uid.clone(),
            created: template.metadata.creation_timestamp.clone(),
            selector: spec.namespace_selector.clone(),
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
