//! The custom resources of netfence, their validation and CRD generation. No I/O.
//!
//! ```text
//! isolation   NamespaceIsolation: the types users write (and their CEL rules)
//! validation  NamespaceIsolation -> ValidatedIsolation, or every error with its field path
//! template    IsolationTemplate: the cluster-wide baseline, and -> ValidatedTemplate
//! ```

pub mod isolation;
pub mod template;
pub mod validation;

pub use isolation::{NamespaceIsolation, NamespaceIsolationSpec, NamespaceIsolationStatus};
pub use template::{
    IsolationTemplate, IsolationTemplateSpec, IsolationTemplateStatus, ValidatedTemplate,
};
pub use validation::{ValidatedIsolation, ValidationErrors};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every netfence resource.
pub const GROUP: &str = "netfence.io";

/// Every CustomResourceDefinition netfence installs, in a stable order.
#[must_use]
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![NamespaceIsolation::crd(), IsolationTemplate::crd()]
}
