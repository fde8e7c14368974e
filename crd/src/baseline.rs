//! The `ClusterBaseline` resource: cluster-wide zero trust, rendered to the cluster-wide policy
//! kind of one engine (validated by `netfence_core::validate::baseline`, rendered by
//! `netfence_core::baseline`).
//!
//! ```text
//! [ ClusterBaseline ] --validation--> [ ValidatedBaseline ] --render(engine)--> ClusterNetworkPolicy | Calico | Cilium | NetworkPolicy objects
//! ```
//!
//! Two levels: `guardrails` are decided before any namespace policy (which cannot override them);
//! the rest (`isolate`, `dns`, `sameNamespace`, `allow`) is the baseline a namespace's own
//! NetworkPolicies add to.

#![allow(clippy::duplicated_attributes)] // printcolumn repeats `name = , type_ =` per column

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::isolation::{
    DNS_LABEL_PATTERN, Direction, Dns, IpBlock, MAX_PORTS, Port, SameNamespace, selector_operators,
};

/// The most `allow` entries of one baseline.
pub const MAX_ALLOW: usize = 16;
/// The most guardrails of one baseline (a ClusterNetworkPolicy holds at most 25 rules per
/// direction).
pub const MAX_GUARDRAILS: usize = 16;

/// Cluster-wide zero trust for every namespace its selector matches.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "netfence.io",
    version = "v1alpha1",
    kind = "ClusterBaseline",
    plural = "clusterbaselines",
    singular = "clusterbaseline",
    shortname = "ncb",
    status = "ClusterBaselineStatus",
    derive = "PartialEq",
    doc = "Cluster-wide zero trust: a default deny with DNS and baseline allows that the namespaces' own NetworkPolicies add to, and guardrails decided before any namespace policy, rendered to the cluster-wide policies of one engine (ClusterNetworkPolicy, Calico, Cilium) or to per-namespace NetworkPolicies.",
    printcolumn(name = "Engine", type_ = "string", json_path = ".status.engine"),
    printcolumn(
        name = "Namespaces",
        type_ = "integer",
        json_path = ".status.coveredNamespaces"
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
#[x_kube(
    validation = Rule::new("!has(self.allow) || !has(self.isolate) || self.allow.all(a, a.direction in self.isolate)")
        .message("an allow's direction must be listed in spec.isolate: a direction that is not isolated already allows all traffic")
        .field_path(".allow"),
    validation = Rule::new("!has(self.allow) || self.allow.all(a, !has(a.action))")
        .message("action is for guardrails only: every allow entry allows")
        .field_path(".allow"),
    validation = Rule::new("!has(self.guardrails) || self.guardrails.all(g, has(g.action))")
        .message("every guardrail needs an action: Deny or Allow")
        .field_path(".guardrails")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterBaselineSpec {
    /// What the baseline is rendered to: `ClusterNetworkPolicy` (policy.networking.k8s.io
    /// v1alpha2), `Calico` (projectcalico.org/v3 GlobalNetworkPolicy and Tier), `Cilium`
    /// (cilium.io/v2 CiliumClusterwideNetworkPolicy) or `NetworkPolicy` (per namespace; no
    /// guardrails). Omitted: `netfence run` uses the first of ClusterNetworkPolicy, Calico, Cilium
    /// that the cluster serves (else NetworkPolicy) and reports it in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,

    /// The namespaces covered, by label. Required: write `{}` for every namespace
    /// (`kube-system`, `kube-public`, `kube-node-lease` and netfence's own namespace are always
    /// left out).
    #[schemars(transform = selector_operators)]
    pub namespace_selector: LabelSelector,

    /// Namespaces left out even when the selector matches them, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(regex(pattern = DNS_LABEL_PATTERN)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub exclude_namespaces: Vec<String>,

    /// The directions the baseline's default deny covers: `Ingress`, `Egress`, or both (default).
    /// The deny is at the baseline: a namespace's own NetworkPolicies open more.
    #[serde(default = "default_isolate")]
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub isolate: Vec<Direction>,

    /// The DNS egress every pod needs once Egress is isolated, as in a NamespaceIsolation (by
    /// default the `k8s-app: kube-dns` pods of `kube-system` on UDP and TCP 53).
    #[serde(default)]
    pub dns: Dns,

    /// `Deny` (default): pods of one namespace reach each other only where the namespace's own
    /// policies allow it. `Allow`: the baseline lets every pod reach every pod of its own
    /// namespace.
    #[serde(default)]
    pub same_namespace: SameNamespace,

    /// Baseline allows: traffic the baseline lets through for every covered namespace. With
    /// Calico and Cilium they add to a namespace's own allows; with ClusterNetworkPolicy (Baseline
    /// tier) they apply only to pods no NetworkPolicy of the namespace selects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ALLOW))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub allow: Vec<BaselineRule>,

    /// Rules decided before any namespace policy, in order: the first that matches a connection
    /// decides it (`action`), and no namespace policy can override it. (Cilium puts every deny
    /// above every allow: for it, an Allow guardrail listed before a Deny one of its direction is
    /// refused.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_GUARDRAILS))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub guardrails: Vec<BaselineRule>,

    /// What deleting the baseline does to the objects it rendered: `Delete` (default) or `Orphan`.
    #[serde(default)]
    pub deletion_policy: BaselineDeletionPolicy,
}

fn default_isolate() -> Vec<Direction> {
    vec![Direction::Ingress, Direction::Egress]
}

/// The engine a baseline is rendered to.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum Engine {
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy (network-policy-api): guardrails
    /// in the Admin tier, the baseline in the Baseline tier.
    ClusterNetworkPolicy,
    /// Calico `projectcalico.org/v3`: guardrails in a Tier of netfence's ordered before
    /// `default`, the baseline in the `default` tier after the Kubernetes NetworkPolicies.
    Calico,
    /// Cilium `cilium.io/v2` CiliumClusterwideNetworkPolicy: the baseline adds to the
    /// NetworkPolicies; Deny guardrails are deny rules, above every allow.
    Cilium,
    /// Kubernetes NetworkPolicies in every covered namespace (no guardrails possible).
    NetworkPolicy,
}

impl Engine {
    /// Every engine, in the order `netfence run` prefers them.
    pub const ALL: [Engine; 4] = [
        Engine::ClusterNetworkPolicy,
        Engine::Calico,
        Engine::Cilium,
        Engine::NetworkPolicy,
    ];

    /// The name as written in `spec.engine`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            Engine::Calico => "Calico",
            Engine::Cilium => "Cilium",
            Engine::NetworkPolicy => "NetworkPolicy",
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Engine::ALL
            .into_iter()
            .find(|engine| engine.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!(
                    "{text:?} is not an engine; use ClusterNetworkPolicy, Calico, Cilium or NetworkPolicy"
                )
            })
    }
}

/// What deleting a ClusterBaseline does to what it rendered.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BaselineDeletionPolicy {
    /// Remove every rendered object (owner-reference garbage collection).
    #[default]
    Delete,
    /// Keep every rendered object, without an owner.
    Orphan,
}

/// Traffic to or from peers, in one direction, for every covered namespace: the shape of a
/// NamespaceIsolation's shared service (an `allow` entry), with an `action` (a guardrail).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.__namespace__) ? !has(self.namespaceSelector) && !has(self.ipBlock) : (has(self.namespaceSelector) ? !has(self.ipBlock) : has(self.ipBlock))")
        .message("a rule names exactly one peer: namespace, namespaceSelector or ipBlock"),
    validation = Rule::new("!has(self.podSelector) || !has(self.ipBlock)")
        .message("podSelector goes only beside namespace or namespaceSelector, never beside ipBlock")
        .field_path(".podSelector")
)]
#[serde(rename_all = "camelCase")]
pub struct BaselineRule {
    /// The rule's name: a DNS-1123 label, unique in its list.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,

    /// `Ingress`: the peers may reach the covered pods. `Egress`: the covered pods may reach the
    /// peers.
    pub direction: Direction,

    /// The peer namespace, by name. Exactly one of `namespace`, `namespaceSelector`, `ipBlock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,

    /// The peer namespaces, by label. `{}` means every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = selector_operators)]
    pub namespace_selector: Option<LabelSelector>,

    /// The peer pods inside the peer namespaces. Omitted: every pod of those namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = selector_operators)]
    pub pod_selector: Option<LabelSelector>,

    /// The peer addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,

    /// The destination ports. Omitted: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_PORTS))]
    pub ports: Option<Vec<Port>>,

    /// Guardrails only (required there): `Deny` drops matching traffic, `Allow` lets it through,
    /// whatever the namespaces' own policies say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<GuardrailAction>,
}

/// What a guardrail does.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuardrailAction {
    /// Drop the traffic.
    Deny,
    /// Let the traffic through, whatever the namespace's own policies say.
    Allow,
}

/// What netfence observed and did, following the Kubernetes API conventions (and kstatus).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterBaselineStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`: `True` with reason `Reconciled` when every rendered object is written; `False`
    /// with reason `InvalidSpec`, `EngineNotServed`, `Unsupported` (the engine cannot express a
    /// field: the message names it) or `ApplyFailed`, and a message that says what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The engine in use (the spec's, or the one `netfence run` picked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,

    /// How many namespaces the baseline covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = i32::MAX))]
    pub covered_namespaces: Option<i32>,

    /// The objects written, as `Kind/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
}
