//! ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`, network-policy-api v0.3.0; v1beta1
//! has the same schema): one kind with `tier: Admin | Baseline`, `priority` and ordered rules
//! whose actions are `Accept`, `Deny` or `Pass`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "policy.networking.k8s.io";
/// The version netfence writes.
pub const API_VERSION: &str = "policy.networking.k8s.io/v1alpha2";
/// The versions netfence reads (the same schema).
pub const API_VERSIONS: [&str; 2] = [API_VERSION, "policy.networking.k8s.io/v1beta1"];
/// The kind.
pub const KIND: &str = "ClusterNetworkPolicy";

/// A ClusterNetworkPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterNetworkPolicy {
    /// `policy.networking.k8s.io/v1alpha2`.
    pub api_version: String,
    /// `ClusterNetworkPolicy`.
    pub kind: String,
    /// Name, labels, owner.
    pub metadata: ObjectMeta,
    /// The policy.
    pub spec: Spec,
    /// Written by implementations; never read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// `spec`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// `Admin` (before NetworkPolicies) or `Baseline` (after them).
    pub tier: Tier,
    /// 0-1000; lower is evaluated first within the tier.
    pub priority: i32,
    /// The pods the policy applies to.
    pub subject: Subject,
    /// Ingress rules, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IngressRule>,
    /// Egress rules, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<EgressRule>,
}

/// The tier of a ClusterNetworkPolicy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// Evaluated before NetworkPolicies.
    Admin,
    /// Evaluated after NetworkPolicies, for pods they do not select.
    Baseline,
}

/// `spec.subject`: exactly one field.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subject {
    /// Every pod of the namespaces chosen by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Pods by namespace AND pod labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// Pods chosen by namespace AND pod labels.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespacedPod {
    /// The namespaces; empty selects every namespace.
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    /// The pods inside them; empty selects every pod.
    pub pod_selector: LabelSelector,
}

/// What a rule does with the traffic it matches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Accept; no further ClusterNetworkPolicy or NetworkPolicy rule is evaluated.
    Accept,
    /// Drop; no further rule is evaluated.
    Deny,
    /// Skip the rest of this tier.
    Pass,
}

/// An ingress rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressRule {
    /// The rule's name (for people).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Accept, Deny or Pass.
    pub action: Action,
    /// The sources; any one matching is enough.
    pub from: Vec<Peer>,
    /// The protocols and destination ports; absent: all traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<ProtocolMatch>>,
}

/// An egress rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressRule {
    /// The rule's name (for people).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Accept, Deny or Pass.
    pub action: Action,
    /// The destinations; any one matching is enough.
    pub to: Vec<Peer>,
    /// The protocols and destination ports; absent: all traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<ProtocolMatch>>,
}

/// A peer: exactly one field (ingress peers are `namespaces` or `pods` only).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Peer {
    /// Every pod of the namespaces chosen by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Pods by namespace AND pod labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    /// Nodes by label (experimental; egress only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    /// CIDRs (egress only); they match pod addresses too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<String>>,
    /// Domain names (experimental; egress Accept only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_names: Option<Vec<String>>,
}

/// One item of `protocols`: exactly one field.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtocolMatch {
    /// TCP, to these destination ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<ProtocolPorts>,
    /// UDP, to these destination ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<ProtocolPorts>,
    /// SCTP, to these destination ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp: Option<ProtocolPorts>,
    /// A destination container port by name, whatever its protocol (experimental).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_named_port: Option<String>,
}

/// The destination port of a protocol match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtocolPorts {
    /// The port; absent: every port of the protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<Port>,
}

/// A port number or a range: exactly one field.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// One port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i32>,
    /// An inclusive range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<PortRange>,
}

/// An inclusive port range, `start < end`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortRange {
    /// The first port.
    pub start: i32,
    /// The last port.
    pub end: i32,
}
