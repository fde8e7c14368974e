//! Cilium `cilium.io/v2` CiliumClusterwideNetworkPolicy, for the fields netfence models.
//!
//! Semantics: a policy with rules in a direction puts the endpoints it selects into default deny
//! in that direction (unless `enableDefaultDeny` says otherwise); allows add up across every
//! policy, Kubernetes NetworkPolicies included; deny rules (`ingressDeny`, `egressDeny`) win over
//! every allow. Endpoints carry their pod's labels as `k8s:<key>`, their namespace as
//! `k8s:io.kubernetes.pod.namespace` and their namespace's labels as
//! `k8s:io.cilium.k8s.namespace.labels.<key>`. CIDR rules match addresses outside the cluster
//! only, never pods.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

/// The API version.
pub const API_VERSION: &str = "cilium.io/v2";
/// The kind.
pub const KIND: &str = "CiliumClusterwideNetworkPolicy";
/// The endpoint label holding the pod's namespace.
pub const NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";
/// The prefix of the endpoint labels holding the namespace's labels.
pub const NAMESPACE_LABELS_PREFIX: &str = "k8s:io.cilium.k8s.namespace.labels.";
/// The prefix of the endpoint labels holding the pod's labels.
pub const POD_LABEL_PREFIX: &str = "k8s:";

/// A CiliumClusterwideNetworkPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CiliumClusterwideNetworkPolicy {
    /// `cilium.io/v2`.
    pub api_version: String,
    /// `CiliumClusterwideNetworkPolicy`.
    pub kind: String,
    /// Name, labels, owner.
    pub metadata: ObjectMeta,
    /// The policy.
    pub spec: Spec,
    /// Written by Cilium; never read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// `spec`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The endpoints (pods) it applies to.
    pub endpoint_selector: LabelSelector,
    /// Allow rules for traffic to the endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<IngressRule>>,
    /// Deny rules for traffic to the endpoints (above every allow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_deny: Option<Vec<IngressRule>>,
    /// Allow rules for traffic from the endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<EgressRule>>,
    /// Deny rules for traffic from the endpoints (above every allow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_deny: Option<Vec<EgressRule>>,
    /// Whether the policy puts its endpoints into default deny, per direction (default: yes for
    /// each direction it has rules in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_default_deny: Option<DefaultDeny>,
}

/// `enableDefaultDeny`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultDeny {
    /// Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<bool>,
    /// Egress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<bool>,
}

/// An ingress (or ingress deny) rule: peers AND ports; an empty rule matches nothing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressRule {
    /// Sources by endpoint labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_endpoints: Option<Vec<LabelSelector>>,
    /// Sources outside the cluster by CIDR, with exceptions.
    #[serde(
        default,
        rename = "fromCIDRSet",
        skip_serializing_if = "Option::is_none"
    )]
    pub from_cidr_set: Option<Vec<CidrRule>>,
    /// Sources by entity (`world`, `cluster`, `all`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_entities: Option<Vec<String>>,
    /// The destination ports; absent: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ports: Option<Vec<PortRule>>,
}

/// An egress (or egress deny) rule: peers AND ports; an empty rule matches nothing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressRule {
    /// Destinations by endpoint labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_endpoints: Option<Vec<LabelSelector>>,
    /// Destinations outside the cluster by CIDR, with exceptions.
    #[serde(default, rename = "toCIDRSet", skip_serializing_if = "Option::is_none")]
    pub to_cidr_set: Option<Vec<CidrRule>>,
    /// Destinations by entity (`world`, `cluster`, `all`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_entities: Option<Vec<String>>,
    /// The destination ports; absent: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ports: Option<Vec<PortRule>>,
}

/// A CIDR with exceptions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CidrRule {
    /// The range.
    pub cidr: String,
    /// Sub-ranges left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

/// `toPorts` item.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortRule {
    /// The ports; any one matching is enough.
    #[serde(default)]
    pub ports: Vec<PortProtocol>,
}

/// A port (a number, or a named port) and protocol.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortProtocol {
    /// `"80"` or a port name; `"0"` every port.
    pub port: String,
    /// The last port of a range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i32>,
    /// `TCP`, `UDP`, `SCTP` or `ANY` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}
