//! The custom resources of netfence as users write them (their docs are `kubectl explain`), their
//! CEL rules and CRD generation. Types only: validation lives in `netfence-core`. No I/O.
//!
//! ```text
//! isolation   NamespaceIsolation: the types users write (and their CEL rules)
//! template    IsolationTemplate: a NamespaceIsolation for every namespace chosen by label
//! baseline    ClusterBaseline: cluster-wide zero trust, rendered to one engine's cluster-wide kinds
//! engines     the other engines' kinds netfence renders and verifies (ClusterNetworkPolicy,
//!             Calico, Cilium): their wire format, not netfence's resources
//! ```

pub mod baseline;
pub mod engines;
pub mod isolation;
pub mod template;

pub use baseline::{ClusterBaseline, ClusterBaselineSpec, ClusterBaselineStatus};
pub use isolation::{NamespaceIsolation, NamespaceIsolationSpec, NamespaceIsolationStatus};
pub use template::{IsolationTemplate, IsolationTemplateSpec, IsolationTemplateStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every netfence resource.
pub const GROUP: &str = "netfence.io";

/// Every CustomResourceDefinition netfence installs, in a stable order, labelled
/// `app.kubernetes.io/part-of: netfence` as every object of an installation is (`config/default`
/// and the Helm chart, whose `crds/` Helm installs untemplated, hold the same CRDs).
#[must_use]
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        NamespaceIsolation::crd(),
        IsolationTemplate::crd(),
        ClusterBaseline::crd(),
    ];
    for crd in &mut crds {
        crd.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(
                "app.kubernetes.io/part-of".to_owned(),
                "netfence".to_owned(),
            );
    }
    crds
}
