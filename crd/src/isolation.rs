//! The `NamespaceIsolation` resource: one per namespace, it declares the tiers of an application,
//! the flows allowed between them and the services shared across namespaces.
//!
//! ```text
//! [ NamespaceIsolation ] --validation--> [ ValidatedIsolation ] --render--> [ NetworkPolicy x N ]
//! ```
//!
//! The `///` docs on every field become the CRD's descriptions, which `kubectl explain nsi.spec`
//! shows. The `x_kube(validation = ...)` rules are CEL rules the API server enforces at admission;
//! `netfence_core::validate` enforces the same rules again (and what CEL cannot express) in Rust, so
//! `netfence render` and the controller never act on a spec that admission would have refused.

// `#[kube(printcolumn(...))]` repeats `name = ..., type_ = ...` once per column, which clippy
// mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::{
    apis::meta::v1::{Condition, LabelSelector},
    util::intstr::IntOrString,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The label key whose value Kubernetes sets to every namespace's own name (immutable).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The most tiers a resource declares. The list bounds keep the CEL rules within the API server's
/// cost budget (a rule that may exceed it makes the whole CRD uninstallable).
pub const MAX_TIERS: usize = 32;
/// The most flows a resource declares.
pub const MAX_FLOWS: usize = 256;
/// The most shared services a resource declares.
pub const MAX_SHARED_SERVICES: usize = 32;
/// The most tiers one shared service names.
pub const MAX_SHARED_SERVICE_TIERS: usize = 16;
/// The most ports of one flow, shared service or DNS rule.
pub const MAX_PORTS: usize = 32;
/// The most `dns.ipBlocks`.
pub const MAX_DNS_IP_BLOCKS: usize = 16;
/// The most `except` ranges of one ipBlock.
pub const MAX_EXCEPT: usize = 32;
/// The most acknowledged foreign policies of one resource.
pub const MAX_ACKNOWLEDGED: usize = 64;

/// A DNS-1123 label: what a namespace's name, a tier's name and a shared service's name must be.
/// In the schema, so the API server refuses `Worker` at admission rather than netfence later.
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// The operators of a label selector's `matchExpressions`.
pub const SELECTOR_OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// The longest CIDR written in an `ipBlock` (an IPv6 address with a prefix is at most 43
/// characters). The bound also bounds the estimated cost of the CIDR rules.
pub const MAX_CIDR: usize = 64;

/// A schemars transform for every label selector field: the operators of `matchExpressions` are
/// an enum, so the API server refuses `operator: in` at admission (k8s-openapi's schema has a
/// plain string). It finds the `operator` property wherever the selector's schema sits (inlined,
/// or under the nullable wrapping of an `Option`).
pub fn selector_operators(schema: &mut schemars::Schema) {
    fn walk(object: &mut serde_json::Map<String, serde_json::Value>) {
        if let Some(operator) = object
            .get_mut("properties")
            .and_then(|properties| properties.get_mut("matchExpressions"))
            .and_then(|expressions| expressions.get_mut("items"))
            .and_then(|items| items.get_mut("properties"))
            .and_then(|properties| properties.get_mut("operator"))
            .and_then(serde_json::Value::as_object_mut)
        {
            operator.insert("enum".to_owned(), serde_json::json!(SELECTOR_OPERATORS));
        }
        for child in object.values_mut() {
            match child {
                serde_json::Value::Object(child) => walk(child),
                serde_json::Value::Array(items) => items
                    .iter_mut()
                    .filter_map(serde_json::Value::as_object_mut)
                    .for_each(walk),
                _ => {}
            }
        }
    }
    if let Some(object) = schema.as_object_mut() {
        walk(object);
    }
}

/// Desired isolation of one namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "netfence.io",
    version = "v1alpha1",
    kind = "NamespaceIsolation",
    plural = "namespaceisolations",
    singular = "namespaceisolation",
    shortname = "nsi",
    namespaced,
    status = "NamespaceIsolationStatus",
    derive = "PartialEq",
    doc = "Declares the tiers of one namespace, the flows allowed between them and the services shared across namespaces; netfence turns it into the namespace's NetworkPolicies.",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Isolated",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Isolated")].status"#
    ),
    printcolumn(
        name = "Policies",
        type_ = "integer",
        json_path = ".status.policyCount"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.flows) || self.flows.all(f, has(self.tiers) && self.tiers.exists(t, t.name == f.from) && self.tiers.exists(t, t.name == f.to))")
        // Names an undeclared tier, as `netfence render` does (`unknown tier "db"`): the first
        // undeclared `from`, else the first undeclared `to`. Built with `map(...).indexOf(true)`:
        // the API server's cost estimate of `filter`, `join` or `max` over the flows exceeds its
        // budget (checked on v1.37.2), and it refuses the whole CRD.
        .message(kube::core::Message::Expression(r#""every flow's from and to must name a tier declared in spec.tiers; \"" + (self.flows.exists(f, !has(self.tiers) || !self.tiers.exists(t, t.name == f.from)) ? self.flows[self.flows.map(f, !has(self.tiers) || !self.tiers.exists(t, t.name == f.from)).indexOf(true)].from : self.flows[self.flows.map(f, !has(self.tiers) || !self.tiers.exists(t, t.name == f.to)).indexOf(true)].to) + "\" is not declared""#.into()))
        .field_path(".flows"),
    validation = Rule::new("!has(self.sharedServices) || self.sharedServices.all(s, !has(s.tiers) || s.tiers.all(n, has(self.tiers) && self.tiers.exists(t, t.name == n)))")
        .message("every shared service's tiers must name tiers declared in spec.tiers")
        .field_path(".sharedServices"),
    validation = Rule::new("!has(self.sharedServices) || !has(self.isolate) || self.sharedServices.all(s, s.direction in self.isolate)")
        .message("a shared service's direction must be listed in spec.isolate: a direction that is not isolated already allows all traffic")
        .field_path(".sharedServices")
)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceIsolationSpec {
    /// `Enforce` (default) applies the generated NetworkPolicies. `DryRun` computes and validates
    /// them and reports in status what Enforce would change, without writing any policy.
    #[serde(default)]
    pub mode: Mode,

    /// The directions the namespace's default deny covers: `Ingress`, `Egress`, or both (default).
    /// Traffic in a direction that is not listed is not restricted at all.
    #[serde(default = "default_isolate")]
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub isolate: Vec<Direction>,

    /// The DNS egress every pod needs once Egress is isolated. On by default whenever Egress is
    /// isolated; targets the `k8s-app: kube-dns` pods of `kube-system` on UDP and TCP 53.
    #[serde(default)]
    pub dns: Dns,

    /// `Deny` (default): pods of this namespace reach each other only through declared flows.
    /// `Allow`: any pod may reach any pod of this namespace, in every isolated direction.
    #[serde(default)]
    pub same_namespace: SameNamespace,

    /// What happens to the generated policies when this resource is deleted: `Delete` (default)
    /// removes them all; `Orphan` keeps every policy; `KeepDefaultDeny` keeps the default deny and
    /// DNS policies and removes the rest, so the namespace fails closed.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// The tiers of the application: named groups of pods chosen by label. Each tier gets one
    /// NetworkPolicy, `<resource>-tier-<name>`.
    #[serde(default)]
    #[schemars(length(max = MAX_TIERS))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub tiers: Vec<Tier>,

    /// Traffic allowed from one tier to another inside this namespace.
    #[serde(default)]
    #[schemars(length(max = MAX_FLOWS))]
    pub flows: Vec<Flow>,

    /// Traffic that crosses the namespace boundary: peers (namespaces, their pods, or CIDRs) that
    /// may reach our tiers (`Ingress`) or that our tiers may reach (`Egress`).
    #[serde(default)]
    #[schemars(length(max = MAX_SHARED_SERVICES))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub shared_services: Vec<SharedService>,

    /// NetworkPolicies of this namespace that netfence does not own and that the team accepts:
    /// the intent audit (condition `Isolated`) leaves them out, and `status.audit.acknowledged`
    /// lists them. Every other policy of the namespace counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ACKNOWLEDGED))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub acknowledged_policies: Vec<AcknowledgedPolicy>,
}

/// A NetworkPolicy the intent audit leaves out.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AcknowledgedPolicy {
    /// The NetworkPolicy's name, in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Why the team accepts what it allows (for the reviewer; shown in status).
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
}

fn default_isolate() -> Vec<Direction> {
    vec![Direction::Ingress, Direction::Egress]
}

/// Whether netfence writes the policies or only reports what it would write.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Apply the generated NetworkPolicies.
    #[default]
    Enforce,
    /// Compute, validate and report; write no policy.
    DryRun,
}

/// A direction of traffic, as seen from the pods of this namespace.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum Direction {
    /// Traffic into the pods of this namespace.
    Ingress,
    /// Traffic out of the pods of this namespace.
    Egress,
}

impl Direction {
    /// The name Kubernetes uses in a NetworkPolicy's `policyTypes`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
}

/// Traffic between pods of the same namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SameNamespace {
    /// Only declared flows.
    #[default]
    Deny,
    /// Any pod to any pod of this namespace.
    Allow,
}

/// What deleting the resource does to the policies it generated.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeletionPolicy {
    /// Remove every generated policy (owner-reference garbage collection).
    #[default]
    Delete,
    /// Keep every generated policy, without an owner.
    Orphan,
    /// Keep the default deny and DNS policies, remove the rest: the namespace fails closed.
    KeepDefaultDeny,
}

/// The DNS egress rule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Dns {
    /// Allow DNS egress (default true). Has effect only when Egress is isolated.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// The namespace of the DNS pods (default `kube-system`), matched by its immutable
    /// `kubernetes.io/metadata.name` label.
    #[serde(default = "default_dns_namespace")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: String,

    /// The DNS pods in that namespace (default `k8s-app: kube-dns`), ANDed with the namespace.
    #[serde(default = "default_dns_pod_selector")]
    #[schemars(transform = selector_operators)]
    pub pod_selector: LabelSelector,

    /// The DNS ports (default UDP 53 and TCP 53).
    #[serde(default = "default_dns_ports")]
    #[schemars(length(min = 1, max = MAX_PORTS))]
    pub ports: Vec<Port>,

    /// Extra DNS destinations by address, for example `169.254.20.10/32` for NodeLocal DNSCache.
    #[serde(default)]
    #[schemars(length(max = MAX_DNS_IP_BLOCKS))]
    pub ip_blocks: Vec<IpBlock>,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            enabled: true,
            namespace: default_dns_namespace(),
            pod_selector: default_dns_pod_selector(),
            ports: default_dns_ports(),
            ip_blocks: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_dns_namespace() -> String {
    "kube-system".to_owned()
}

fn default_dns_pod_selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some([("k8s-app".to_owned(), "kube-dns".to_owned())].into()),
        match_expressions: None,
    }
}

fn default_dns_ports() -> Vec<Port> {
    [Protocol::UDP, Protocol::TCP]
        .into_iter()
        .map(|protocol| Port {
            port: IntOrString::Int(53),
            protocol,
            end_port: None,
        })
        .collect()
}

/// A named group of pods of this namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tier {
    /// The tier's name: a DNS-1123 label, unique in this resource. The tier's policy is named
    /// `<resource>-tier-<name>`.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,

    /// The pods of the tier. `{}` selects every pod of the namespace.
    #[schemars(transform = selector_operators)]
    pub pod_selector: LabelSelector,
}

/// Traffic allowed from the pods of one tier to the pods of another (or the same) tier.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Flow {
    /// The tier that opens the connections.
    #[schemars(length(min = 1, max = 63))]
    pub from: String,

    /// The tier that accepts them.
    #[schemars(length(min = 1, max = 63))]
    pub to: String,

    /// The destination ports. Omitted: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_PORTS))]
    pub ports: Option<Vec<Port>>,
}

/// Traffic that crosses the namespace boundary, in one direction.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    // `namespace` is a CEL reserved word: Kubernetes exposes the field as `__namespace__`.
    validation = Rule::new("has(self.__namespace__) ? !has(self.namespaceSelector) && !has(self.ipBlock) : (has(self.namespaceSelector) ? !has(self.ipBlock) : has(self.ipBlock))")
        .message("a shared service names exactly one peer: namespace, namespaceSelector or ipBlock"),
    validation = Rule::new("!has(self.podSelector) || !has(self.ipBlock)")
        .message("podSelector goes only beside namespace or namespaceSelector, never beside ipBlock")
        .field_path(".podSelector")
)]
#[serde(rename_all = "camelCase")]
pub struct SharedService {
    /// The shared service's name: a DNS-1123 label, unique in this resource. A shared service
    /// without `tiers` gets its own policy, `<resource>-shared-<name>`.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,

    /// `Ingress`: the peers may reach our tiers. `Egress`: our tiers may reach the peers.
    pub direction: Direction,

    /// The peer namespace, by name (shorthand for a `namespaceSelector` on
    /// `kubernetes.io/metadata.name`). Exactly one of `namespace`, `namespaceSelector`, `ipBlock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,

    /// The peer namespaces, by label. `{}` means every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = selector_operators)]
    pub namespace_selector: Option<LabelSelector>,

    /// The peer pods inside the peer namespaces (ANDed with `namespace` or `namespaceSelector`).
    /// Omitted: every pod of those namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = selector_operators)]
    pub pod_selector: Option<LabelSelector>,

    /// The peer addresses, for traffic to or from outside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,

    /// The tiers of this namespace the traffic concerns. Omitted: every pod of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_SHARED_SERVICE_TIERS))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub tiers: Option<Vec<String>>,

    /// The destination ports (ours for Ingress, the peer's for Egress). Omitted: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_PORTS))]
    pub ports: Option<Vec<Port>>,
}

/// A range of IP addresses.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[x_kube(
    // `isCIDR` (Kubernetes 1.31+) checks the syntax only: host bits and `except` inside `cidr`
    // are netfence's own checks (InvalidSpec).
    validation = Rule::new("isCIDR(self.cidr)")
        .message("cidr must be an IP range in CIDR notation, such as 203.0.113.0/24 or 2001:db8::/32")
        .field_path(".cidr"),
    validation = Rule::new("!has(self.except) || self.except.all(e, isCIDR(e))")
        .message("every except must be an IP range in CIDR notation, such as 203.0.113.128/25")
        .field_path(".except")
)]
#[serde(rename_all = "camelCase")]
pub struct IpBlock {
    /// The range, in CIDR notation with no host bits set: `203.0.113.0/24`, `2001:db8::/32`.
    #[schemars(length(min = 1, max = MAX_CIDR))]
    pub cidr: String,

    /// Sub-ranges of `cidr` to leave out, each strictly inside `cidr`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_EXCEPT), inner(length(min = 1, max = MAX_CIDR)))]
    pub except: Vec<String>,
}

/// A destination port, or a range of them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    // A number in every form: an int, or a string of digits (refused later, with a hint, by
    // validation); anything else must look like a port name. A port outside 1-65535 (say
    // `-99999999999`, which no typed client can even read) never gets in.
    validation = Rule::new("string(self.port).matches('^[0-9]+$') ? (string(self.port).size() <= 5 && int(string(self.port)) >= 1 && int(string(self.port)) <= 65535) : string(self.port).matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("port must be a number from 1 to 65535 or a port name (lowercase letters, digits and '-', at most 15 characters)")
        .field_path(".port"),
    validation = Rule::new("!has(self.endPort) || (string(self.port).matches('^[0-9]+$') && self.endPort >= int(string(self.port)))")
        .message("endPort needs a numeric port, and must be at least port")
        .field_path(".endPort")
)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// The port: a number (1-65535) or the name of a container port (an IANA service name such
    /// as `http` or `metrics`, at most 15 characters).
    #[schemars(schema_with = "port_schema")]
    pub port: IntOrString,

    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Protocol,

    /// The last port of a range that starts at `port` (numeric ports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub end_port: Option<i32>,
}

/// The longest port name: an IANA service name has at most 15 characters.
pub const MAX_PORT_NAME: usize = 15;

/// A port's schema: a number or a name of at most [`MAX_PORT_NAME`] characters. The length bound
/// also bounds the estimated cost of the port's CEL rules: without it a real API server refuses
/// the CRD (each rule could meet a string as long as a whole request, in lists of lists).
fn port_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "maxLength": MAX_PORT_NAME,
    })
}

/// A transport protocol.
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
#[allow(clippy::upper_case_acronyms)] // the names are the Kubernetes wire values
pub enum Protocol {
    /// TCP (the default).
    #[default]
    TCP,
    /// UDP.
    UDP,
    /// SCTP.
    SCTP,
}

impl Protocol {
    /// The Kubernetes wire value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::TCP => "TCP",
            Protocol::UDP => "UDP",
            Protocol::SCTP => "SCTP",
        }
    }
}

/// What netfence observed and did, following the Kubernetes API conventions (and kstatus).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceIsolationStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`: `True` with reason `Reconciled` or `DryRun`; `False` with reason `InvalidSpec`
    /// or `ApplyFailed` and a message that says what is wrong.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The names of the NetworkPolicies this resource owns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,

    /// How many NetworkPolicies this resource owns (the `Policies` printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = i32::MAX))]
    pub policy_count: Option<i32>,

    /// In `DryRun` mode: what `Enforce` would write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_changes: Option<PlannedChanges>,

    /// What the intent audit saw (conditions `Isolated` and `DNSReachable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditStatus>,
}

/// The intent audit: every policy that applies to the namespace, proven against the spec.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditStatus {
    /// The NetworkPolicies of the namespace that netfence does not own and that count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_policies: Vec<String>,
    /// The foreign policies left out, as `spec.acknowledgedPolicies` asks: `name: reason`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acknowledged: Vec<String>,
    /// What allows connections the spec does not declare, one sentence per policy and
    /// destination (condition `Isolated`, reason `Widened`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub widened: Vec<String>,
    /// What blocks declared connections, one sentence each (reason `Narrowed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub narrowed: Vec<String>,
    /// What is wrong with the DNS peer in the cluster, each with its fix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
}

/// The NetworkPolicies that `Enforce` would create, change and delete.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChanges {
    /// Policies that do not exist yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create: Vec<String>,
    /// Policies that exist and differ from the rendered ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub update: Vec<String>,
    /// Policies this resource owns that are no longer rendered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<String>,
}
