//! Calico `projectcalico.org/v3`: GlobalNetworkPolicy (ordered policies in ordered tiers, with
//! `Allow`, `Deny` and `Pass` rules and selector expressions) and Tier.
//!
//! Evaluation, per direction and endpoint: tiers in `order`; in a tier, the policies that select
//! the endpoint in `order`, their rules in order; the first matching rule decides (`Pass` jumps
//! to the next tier). When policies of a tier select the endpoint and none of their rules
//! matches, the tier's `defaultAction` (`Deny` unless set) decides. Kubernetes NetworkPolicies sit
//! in the `default` tier at order 1000.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// The API version netfence writes and reads.
pub const API_VERSION: &str = "projectcalico.org/v3";
/// The policy kind.
pub const POLICY_KIND: &str = "GlobalNetworkPolicy";
/// The tier kind.
pub const TIER_KIND: &str = "Tier";
/// The tier Kubernetes NetworkPolicies are in.
pub const DEFAULT_TIER: &str = "default";
/// The order Calico gives Kubernetes NetworkPolicies in the default tier.
pub const NETWORK_POLICY_ORDER: f64 = 1000.0;
/// The rule annotation that carries the name of the guardrail or allow a rule renders (Calico
/// rules have no name of their own).
pub const RULE_ANNOTATION: &str = "netfence.io/rule";
/// The order of Calico's `default` tier (Calico 3.30 and later).
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

/// A GlobalNetworkPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkPolicy {
    /// `projectcalico.org/v3`.
    pub api_version: String,
    /// `GlobalNetworkPolicy`.
    pub kind: String,
    /// Name (`<tier>.<name>` outside the default tier), labels, owner.
    pub metadata: ObjectMeta,
    /// The policy.
    pub spec: PolicySpec,
}

/// `spec` of a GlobalNetworkPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// The tier (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The order in the tier; lower first, absent last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// The endpoints (pods) it applies to, a selector expression; absent: `all()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The namespaces of those endpoints, a selector expression over namespace labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// `Ingress`, `Egress`: the directions it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<PolicyType>>,
    /// Ingress rules, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    /// Egress rules, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
}

/// A direction a policy applies to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyType {
    /// Traffic to the endpoint.
    Ingress,
    /// Traffic from the endpoint.
    Egress,
}

/// What a rule does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Allow; no further policy is evaluated.
    Allow,
    /// Drop.
    Deny,
    /// Skip to the next tier.
    Pass,
}

/// A rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Allow, Deny or Pass.
    pub action: Action,
    /// `TCP`, `UDP`, `SCTP`; absent: every protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<EntityRule>,
    /// The destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<EntityRule>,
    /// Annotations for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

/// A rule's annotations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleMetadata {
    /// Free-form annotations.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// A source or destination: every field present must match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    /// Addresses in any of these CIDRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nets: Option<Vec<String>>,
    /// Addresses in none of these CIDRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_nets: Option<Vec<String>>,
    /// Endpoints by a selector expression over pod labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Endpoints in namespaces by a selector expression over namespace labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// Ports (destination only): numbers, `start:end` ranges, or named ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<Port>>,
}

/// A Calico port: a number, or a string (`"80"`, `"8000:9000"`, a port name).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum Port {
    /// A number.
    Number(u16),
    /// A range `start:end`, a number, or a name.
    Text(String),
}

/// A Tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tier {
    /// `projectcalico.org/v3`.
    pub api_version: String,
    /// `Tier`.
    pub kind: String,
    /// Name, labels, owner.
    pub metadata: ObjectMeta,
    /// Order and default action.
    pub spec: TierSpec,
}

/// `spec` of a Tier.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    /// Lower first; absent last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// What happens when policies of the tier select an endpoint and no rule matches
    /// (`Deny` unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<Action>,
}
