//! The labels, annotations, finalizer and field manager netfence writes, each named once, and
//! the one ownership rule: an object is netfence's when a controller owner reference names the
//! UID of the resource that wrote it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The label every generated object carries, with value [`MANAGED_BY`].
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "netfence";
/// The label that names the NamespaceIsolation a generated policy belongs to.
pub const ISOLATION_LABEL: &str = "netfence.io/isolation";
/// The label that says what a generated policy is for: `default-deny`, `allow-dns`,
/// `same-namespace`, `tier` or `shared` (see `render::PolicyRole`). A policy's role is read from
/// it, never parsed back out of the policy's name.
pub const ROLE_LABEL: &str = "netfence.io/role";
/// On a policy whose [`ROLE_LABEL`] is `tier`: the tier's name (a DNS label, so a valid label
/// value of at most 63 characters).
pub const TIER_LABEL: &str = "netfence.io/tier";
/// On a policy whose [`ROLE_LABEL`] is `shared`: the shared service's name (a DNS label too).
pub const SHARED_SERVICE_LABEL: &str = "netfence.io/shared-service";
/// The label every generated NamespaceIsolation carries, with the template's name as value.
pub const TEMPLATE_LABEL: &str = "netfence.io/template";
/// The label every object a ClusterBaseline renders carries, with the baseline's name as value.
pub const BASELINE_LABEL: &str = "netfence.io/baseline";
/// The annotation the operator marks, in memory only, an object it cannot decode with; nobody
/// else may set it (a template that did would make every generated resource differ forever).
pub const UNDECODABLE_ANNOTATION: &str = "netfence.io/undecodable";
/// The field manager of every write of the operator.
pub const FIELD_MANAGER: &str = "netfence";
/// The finalizer that lets the operator apply `spec.deletionPolicy` before a resource goes.
pub const FINALIZER: &str = "netfence.io/deletion-policy";

/// Whether the object with `meta` is controlled by the object with UID `uid`: a controller
/// owner reference to that UID. A UID is not guessable, so the reference is the writer's own
/// (labels can be set by anyone and never decide ownership).
#[must_use]
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|owner| owner.uid == uid && owner.controller == Some(true))
}
