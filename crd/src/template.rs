//! The `IsolationTemplate` resource: a cluster-wide baseline that every namespace chosen by label
//! gets as a generated NamespaceIsolation (validated by `netfence_core::validate::template`).
//!
//! The admission rules (schema patterns, list bounds and the NamespaceIsolationSpec's CEL rules,
//! which apply to `spec.template.spec` as they apply to every NamespaceIsolation) refuse what they
//! can express; the core checks everything again in Rust.

#![allow(clippy::duplicated_attributes)] // printcolumn repeats `name = , type_ =` per column

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::NamespaceIsolationSpec;
use crate::isolation::{DNS_LABEL_PATTERN, selector_operators};

/// Namespaces no template ever generates into, whatever its selector: the cluster's own.
pub const ALWAYS_EXCLUDED: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// The most names in `spec.excludeNamespaces`.
pub const MAX_EXCLUDED_NAMESPACES: usize = 256;

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
    #[schemars(transform = selector_operators)]
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
