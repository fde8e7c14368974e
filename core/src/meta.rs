//! The labels, annotations, finalizer and field manager netfence writes, each named once.

/// The label every generated object carries, with value [`MANAGED_BY`].
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "netfence";
/// The label that names the NamespaceIsolation a generated policy belongs to.
pub const ISOLATION_LABEL: &str = "netfence.io/isolation";
/// The label every generated NamespaceIsolation carries, with the template's name as value.
pub const TEMPLATE_LABEL: &str = "netfence.io/template";
/// The annotation the operator marks, in memory only, an object it cannot decode with; nobody
/// else may set it (a template that did would make every generated resource differ forever).
pub const UNDECODABLE_ANNOTATION: &str = "netfence.io/undecodable";
/// The field manager of every write of the operator.
pub const FIELD_MANAGER: &str = "netfence";
/// The finalizer that lets the operator apply `spec.deletionPolicy` before a resource goes.
pub const FINALIZER: &str = "netfence.io/deletion-policy";
