//! The catalog of served resources: the built-in kinds the sandbox knows, and every resource an
//! applied CustomResourceDefinition defines.
//!
//! ```text
//! built-ins (namespaces, pods, events, networkpolicies, leases, CRDs) --+
//!                                                                       +--> [ ResourceInfo per group/version/plural ]
//! CustomResourceDefinition objects --register_crd--> (schema, CEL, columns)
//! ```
//!
//! A resource's schema is what the sandbox uses to validate (custom resources only), to default,
//! and to know which lists server-side apply merges by key. Built-in kinds carry only the
//! list-type hints that server-side apply needs; their content is not validated.

use std::sync::Arc;

use serde_json::{Value, json};

use super::cause::FieldCause;

/// The CEL rules of a custom resource version, compiled once when its CRD is registered.
pub type CompiledRules = super::cel::Rules;

/// One served resource at one group/version.
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    /// API group, empty for the core group.
    pub group: String,
    /// The version this entry serves.
    pub version: String,
    /// Plural lowercase name, the path segment: `namespaceisolations`.
    pub plural: String,
    /// Singular lowercase name.
    pub singular: String,
    /// `NamespaceIsolation`.
    pub kind: String,
    /// `NamespaceIsolationList`.
    pub list_kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names kubectl resolves: `nsi`.
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Whether the resource has a `/status` subresource (status is then written only there).
    pub status_subresource: bool,
    /// Defined by a CustomResourceDefinition: validated against its schema, no strategic merge
    /// patch, and updates must carry a `resourceVersion`.
    pub custom: bool,
    /// The OpenAPI v3 schema of the object (`openAPIV3Schema` for custom resources; list-type
    /// hints only for built-ins).
    pub schema: Arc<Value>,
    /// The compiled CEL rules of a custom resource.
    pub rules: Option<Arc<CompiledRules>>,
    /// `additionalPrinterColumns` of a custom resource.
    pub printer_columns: Vec<Value>,
    /// The name of the CRD that defines it.
    pub crd_name: Option<String>,
}

impl ResourceInfo {
    /// Whether the server keeps `metadata.generation` for this resource: custom resources and
    /// the built-ins whose upstream strategy sets it (those with a spec a controller acts on).
    /// Namespaces, Services, Events and Leases have none, so `kubectl diff` and `get -o yaml`
    /// show none.
    #[must_use]
    pub fn tracks_generation(&self) -> bool {
        self.custom
            || matches!(
                (self.group.as_str(), self.plural.as_str()),
                ("", "pods")
                    | ("networking.k8s.io", "networkpolicies")
                    | ("apps", _)
                    | ("apiextensions.k8s.io", "customresourcedefinitions")
            )
    }

    /// `namespaceisolations.netfence.io`, or `pods` for the core group.
    #[must_use]
    pub fn group_resource(&self) -> String {
        self.qualified(&self.plural, '.')
    }

    /// `NamespaceIsolation.netfence.io`, or `Pod` for the core group.
    #[must_use]
    pub fn group_kind(&self) -> String {
        self.qualified(&self.kind, '.')
    }

    /// `netfence.io/v1alpha1`, or `v1` for the core group.
    #[must_use]
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `name` qualified by the group after `separator`; bare for the core group.
    fn qualified(&self, name: &str, separator: char) -> String {
        if self.group.is_empty() {
            name.to_owned()
        } else {
            format!("{name}{separator}{}", self.group)
        }
    }

    /// The key objects of this resource are stored under, shared by all its versions.
    #[must_use]
    pub fn store_key(&self) -> StoreKey {
        StoreKey {
            group: self.group.clone(),
            plural: self.plural.clone(),
        }
    }

    /// The verbs discovery lists: every one, but deletecollection of namespaces (upstream's
    /// namespace registry has none).
    #[must_use]
    pub fn verbs(&self) -> Vec<&'static str> {
        let namespaces = self.group.is_empty() && self.plural == "namespaces";
        [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
        .into_iter()
        .filter(|verb| !(namespaces && *verb == "deletecollection"))
        .collect()
    }
}

/// Where the objects of one resource are stored: group and plural, whatever the version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey {
    /// API group.
    pub group: String,
    /// Plural name.
    pub plural: String,
}

/// Every served resource.
#[derive(Clone, Debug)]
pub struct Catalog {
    resources: Vec<ResourceInfo>,
}

/// The `kubernetes.io/metadata.name` label the server sets on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl Catalog {
    /// The built-in resources.
    #[must_use]
    pub fn builtin() -> Self {
        let builtin = |group: &str,
                       version: &str,
                       plural: &str,
                       kind: &str,
                       namespaced: bool,
                       short_names: &[&str],
                       status: bool,
                       schema: Value| ResourceInfo {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
            singular: kind.to_lowercase(),
            kind: kind.to_owned(),
            list_kind: format!("{kind}List"),
            namespaced,
            short_names: short_names.iter().map(|name| (*name).to_owned()).collect(),
            categories: Vec::new(),
            status_subresource: status,
            custom: false,
            schema: Arc::new(schema),
            rules: None,
            printer_columns: Vec::new(),
            crd_name: None,
        };
        let mut pods = builtin("", "v1", "pods", "Pod", true, &["po"], true, pod_schema());
        pods.categories = vec!["all".to_owned()];
        let read_by_dns_checks = read_by_dns_checks(&pods);
        let mut catalog = Catalog {
            resources: vec![
                builtin(
                    "",
                    "v1",
                    "namespaces",
                    "Namespace",
                    false,
                    &["ns"],
                    true,
                    object_schema(&json!({})),
                ),
                pods,
                builtin(
                    "",
                    "v1",
                    "events",
                    "Event",
                    true,
                    &["ev"],
                    false,
                    object_schema(&json!({})),
                ),
                builtin(
                    "networking.k8s.io",
                    "v1",
                    "networkpolicies",
                    "NetworkPolicy",
                    true,
                    &["netpol"],
                    false,
                    network_policy_schema(),
                ),
                builtin(
                    "events.k8s.io",
                    "v1",
                    "events",
                    "Event",
                    true,
                    &["ev"],
                    false,
                    object_schema(&json!({})),
                ),
                builtin(
                    "coordination.k8s.io",
                    "v1",
                    "leases",
                    "Lease",
                    true,
                    &[],
                    false,
                    object_schema(&json!({})),
                ),
                builtin(
                    "apiextensions.k8s.io",
                    "v1",
                    "customresourcedefinitions",
                    "CustomResourceDefinition",
                    false,
                    &["crd", "crds"],
                    true,
                    object_schema(&json!({})),
                ),
            ],
        };
        // After pods, as upstream lists the core group.
        catalog.resources.splice(2..2, read_by_dns_checks);
        catalog
    }

    /// Every served resource, built-ins first, then custom resources in registration order.
    #[must_use]
    pub fn all(&self) -> &[ResourceInfo] {
        &self.resources
    }

    /// The resource served at `group/version/plural`.
    #[must_use]
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|info| info.group == group && info.version == version && info.plural == plural)
    }

    /// The resource of an `apiVersion` and `kind`.
    #[must_use]
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceInfo> {
        let (group, version) = split_api_version(api_version);
        self.resources
            .iter()
            .find(|info| info.group == group && info.version == version && info.kind == kind)
    }

    /// Any served version of a stored resource (the first), for garbage collection and
    /// namespace deletion, which work on stored objects whatever their version.
    #[must_use]
    pub fn any_version(&self, key: &StoreKey) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|info| info.group == key.group && info.plural == key.plural)
    }

    /// Register (or re-register after an update) the resources a CRD defines.
    /// Errors are the CRD's invalid fields.
    pub fn register_crd(&mut self, crd: &Value) -> Result<(), Vec<FieldCause>> {
        let defined = resources_of_crd(crd)?;
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.unregister_crd(&name);
        self.resources.extend(defined);
        Ok(())
    }

    /// Remove the resources a CRD defined.
    pub fn unregister_crd(&mut self, crd_name: &str) {
        self.resources
            .retain(|info| info.crd_name.as_deref() != Some(crd_name));
    }
}

/// `("netfence.io", "v1alpha1")` from `netfence.io/v1alpha1`; `("", "v1")` from `v1`.
#[must_use]
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// Validate a CRD and build the resources it defines, one per served version.
#[allow(clippy::too_many_lines)] // one check per CRD field, in the order the real server reports them
fn resources_of_crd(crd: &Value) -> Result<Vec<ResourceInfo>, Vec<FieldCause>> {
    let mut causes = Vec::new();
    let text = |pointer: &str| {
        crd.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let name = text("/metadata/name");
    let group = text("/spec/group");
    let plural = text("/spec/names/plural");
    let kind = text("/spec/names/kind");
    let scope = text("/spec/scope");
    if group.is_empty() {
        causes.push(FieldCause::required("spec.group"));
    } else if !group.contains('.') {
        causes.push(FieldCause::invalid(
            "spec.group",
            &group,
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(FieldCause::required("spec.names.plural"));
    }
    if kind.is_empty() {
        causes.push(FieldCause::required("spec.names.kind"));
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(FieldCause::invalid(
            "metadata.name",
            &name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if scope != "Namespaced" && scope != "Cluster" {
        causes.push(FieldCause {
            reason: "FieldValueNotSupported",
            field: "spec.scope".to_owned(),
            message: format!(
                "Unsupported value: \"{scope}\": supported values: \"Cluster\", \"Namespaced\""
            ),
        });
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(FieldCause::required("spec.versions"));
    }
    let storage = versions
        .iter()
        .filter(|version| version.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(FieldCause::invalid(
            "spec.versions",
            &format!("{storage} storage versions"),
            "must have exactly one version marked as storage version",
        ));
    }
    let names = crd.pointer("/spec/names").cloned().unwrap_or(Value::Null);
    let strings = |key: &str| -> Vec<String> { string_list(names.get(key)) };
    let mut defined = Vec::new();
    for (index, version) in versions.iter().enumerate() {
        let version_name = version
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if version_name.is_empty() {
            causes.push(FieldCause::required(&format!(
                "spec.versions[{index}].name"
            )));
            continue;
        }
        let Some(schema) = version.pointer("/schema/openAPIV3Schema") else {
            causes.push(FieldCause {
                reason: "FieldValueRequired",
                field: format!("spec.versions[{index}].schema.openAPIV3Schema"),
                message: "Required value: schemas are required".to_owned(),
            });
            continue;
        };
        let rules = match super::cel::compile(
            schema,
            &format!("spec.versions[{index}].schema.openAPIV3Schema"),
        ) {
            Ok(rules) => rules,
            Err(errors) => {
                for error in errors {
                    causes.push(FieldCause {
                        reason: "FieldValueInvalid",
                        field: error.path,
                        message: format!("Invalid value: {:?}: {}", error.rule, error.message),
                    });
                }
                continue;
            }
        };
        if version.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let singular = names
            .get("singular")
            .and_then(Value::as_str)
            .map_or_else(|| kind.to_lowercase(), str::to_owned);
        defined.push(ResourceInfo {
            group: group.clone(),
            version: version_name.to_owned(),
            plural: plural.clone(),
            singular,
            kind: kind.clone(),
            list_kind: names
                .get("listKind")
                .and_then(Value::as_str)
                .map_or_else(|| format!("{kind}List"), str::to_owned),
            namespaced: scope == "Namespaced",
            short_names: strings("shortNames"),
            categories: strings("categories"),
            status_subresource: version.pointer("/subresources/status").is_some(),
            custom: true,
            schema: Arc::new(schema.clone()),
            rules: Some(Arc::new(rules)),
            printer_columns: version
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            crd_name: Some(name.clone()),
        });
    }
    if causes.is_empty() {
        Ok(defined)
    } else {
        Err(causes)
    }
}

/// The schema of `metadata` as server-side apply sees it: labels and annotations are maps,
/// finalizers a set, owner references a list keyed by uid.
#[must_use]
pub fn metadata_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "ownerReferences": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["uid"],
                "items": {"type": "object"}
            }
        }
    })
}

/// Services and DaemonSets, like pods but for their names: what the DNS checks of `netfence run`
/// and `netfence doctor` read (no controller of the sandbox acts on them).
fn read_by_dns_checks(pods: &ResourceInfo) -> Vec<ResourceInfo> {
    [
        ("", "services", "Service", "svc"),
        ("apps", "daemonsets", "DaemonSet", "ds"),
    ]
    .into_iter()
    .map(|(group, plural, kind, short)| ResourceInfo {
        group: group.to_owned(),
        plural: plural.to_owned(),
        singular: kind.to_lowercase(),
        kind: kind.to_owned(),
        list_kind: format!("{kind}List"),
        short_names: vec![short.to_owned()],
        categories: Vec::new(),
        schema: Arc::new(object_schema(&json!({}))),
        ..pods.clone()
    })
    .collect()
}

fn object_schema(properties: &Value) -> Value {
    json!({"type": "object", "properties": properties, "x-kubernetes-preserve-unknown-fields": true})
}

/// NetworkPolicy as upstream declares it for server-side apply: the pod selector is an atomic
/// struct, and `ingress`, `egress` and `policyTypes` are atomic lists (owned whole).
fn network_policy_schema() -> Value {
    let selector = json!({"type": "object", "x-kubernetes-map-type": "atomic"});
    object_schema(&json!({
        "spec": {
            "type": "object",
            "properties": {
                "podSelector": selector,
                "ingress": {"type": "array", "x-kubernetes-list-type": "atomic"},
                "egress": {"type": "array", "x-kubernetes-list-type": "atomic"},
                "policyTypes": {"type": "array", "x-kubernetes-list-type": "atomic"}
            }
        }
    }))
}

/// Pod containers are lists keyed by name, as upstream declares them.
fn pod_schema() -> Value {
    let container = json!({
        "type": "object",
        "properties": {
            "ports": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
                "items": {"type": "object"}
            },
            "env": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object"}
            }
        }
    });
    let containers = json!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": container
    });
    object_schema(&json!({
        "spec": {
            "type": "object",
            "properties": {"containers": containers, "initContainers": containers}
        },
        "status": {
            "type": "object",
            "properties": {
                "conditions": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object"}
                }
            }
        }
    }))
}

/// The strings of a JSON array (other items skipped); empty when it is not an array.
pub(crate) fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
