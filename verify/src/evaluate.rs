//! NetworkPolicy semantics for one connection: the reference the fast matrix must agree with.
//!
//! ```text
//! (Cluster, from pod, to pod, Probe) --decide--> Decision { verdict, egress side, ingress side }
//! ```
//!
//! A connection passes when the source's egress AND the destination's ingress allow it. A side
//! is isolated once some policy of the pod's namespace selects the pod and has that direction
//! among its policy types; then some rule of one of those policies must match both the peer
//! (any `from`/`to` item; inside an item, namespace AND pod selectors) and the port (any `ports`
//! item; named ports are looked up on the destination pod). Policies only add: there is no
//! order and no deny rule. Pods with `hostNetwork: true` are not governed by NetworkPolicy.
//!
//! Cluster-wide policies of other kinds add stages around that one ([`Stage`]): the ordered ones
//! before it (ClusterNetworkPolicy Admin, Calico tiers before `default`, Cilium deny rules) decide
//! with their first matching rule (`Pass` skips the rest of its tier; a Calico tier whose
//! policies select the pod and match nothing denies); then the namespace stage (NetworkPolicies,
//! and the allows of Calico's `default` tier and of Cilium, which add up); then, for a pod nothing
//! there isolates, the ordered ones after it (ClusterNetworkPolicy Baseline).

use netfence_crd::isolation::Direction;

use super::model::{
    Action, Cluster, EndOfTier, NamespaceScope, Order, Peer, PodInfo, Policy, PortMatch, PortSpec,
    Probe, Rule, Stage,
};

/// The outcome of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Both sides allow it.
    Allowed,
    /// The source's egress or the destination's ingress refuses it.
    Blocked,
    /// One end uses `hostNetwork`, which NetworkPolicy does not govern.
    NotGoverned,
}

/// One rule of one policy: `policies()[policy]`, its `direction` rules, index `rule`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef {
    /// Index into [`Cluster::policies`].
    pub policy: usize,
    /// Ingress or egress.
    pub direction: Direction,
    /// Index into that direction's rules.
    pub rule: usize,
}

impl RuleRef {
    /// `ns/policy ingress[0]`, or `ClusterNetworkPolicy/name egress[0] (rule-name)`.
    #[must_use]
    pub fn describe(&self, cluster: &Cluster) -> String {
        let policy = &cluster.policies()[self.policy];
        let slot = match self.direction {
            Direction::Ingress => 0,
            Direction::Egress => 1,
        };
        let field = policy
            .cluster_wide()
            .map_or(["ingress", "egress"][slot], |wide| wide.fields[slot]);
        let name = policy
            .rules(self.direction)
            .and_then(|rules| rules.get(self.rule))
            .and_then(|rule| rule.name.as_deref())
            .map(|name| format!(" ({name})"))
            .unwrap_or_default();
        format!("{} {field}[{}]{name}", policy.key(), self.rule)
    }
}

/// What one side (the source's egress, or the destination's ingress) decided.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// No policy isolates the pod in this direction: everything passes.
    NotIsolated,
    /// Isolated, and these rules allow the connection.
    Allowed {
        /// The policies that isolate the pod in this direction.
        isolated_by: Vec<usize>,
        /// The rules that allow it.
        allowed_by: Vec<RuleRef>,
    },
    /// Isolated, and no rule allows the connection.
    Blocked {
        /// The policies that isolate the pod in this direction.
        isolated_by: Vec<usize>,
    },
    /// The first matching rule of an ordered cluster-wide policy decided.
    Decided {
        /// The rule.
        rule: RuleRef,
        /// Allowed (Accept, Allow) or denied.
        allowed: bool,
    },
    /// Policies of a tier whose end denies select the pod, and none of their rules matches.
    EndOfTier {
        /// Those policies.
        policies: Vec<usize>,
    },
}

impl Side {
    /// What decided a side before or after the namespace stage (a cluster-wide rule, or a
    /// tier's end), in words; `None` when the namespace stage decided.
    #[must_use]
    pub fn decided_by(&self, cluster: &Cluster) -> Option<String> {
        match self {
            Side::Decided { rule, allowed } => Some(format!(
                "{} by the cluster-wide rule {}",
                if *allowed { "accepted" } else { "denied" },
                rule.describe(cluster)
            )),
            Side::EndOfTier { policies } => Some(format!(
                "selected by {} and no rule of that tier matches: the tier denies",
                policies
                    .iter()
                    .map(|&index| cluster.policies()[index].key())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Side::NotIsolated | Side::Allowed { .. } | Side::Blocked { .. } => None,
        }
    }

    /// Whether this side lets the connection through.
    #[must_use]
    pub fn passes(&self) -> bool {
        match self {
            Side::NotIsolated | Side::Allowed { .. } => true,
            Side::Blocked { .. } | Side::EndOfTier { .. } => false,
            Side::Decided { allowed, .. } => *allowed,
        }
    }
}

/// The decision on one connection, with both sides.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    /// The outcome.
    pub verdict: Verdict,
    /// The source's egress.
    pub egress: Side,
    /// The destination's ingress.
    pub ingress: Side,
}

/// Whether a policy selects `pod`: same namespace (or, for a cluster-wide one, a namespace its
/// selector matches; never a `hostNetwork` pod), labels match.
#[must_use]
pub fn selects(cluster: &Cluster, policy: &Policy, pod: &PodInfo) -> bool {
    if pod.external || !policy.pod_selector.matches(&pod.labels) {
        return false;
    }
    match policy.cluster_wide() {
        None => policy.namespace == pod.namespace,
        Some(wide) => !pod.host_network && wide.namespaces.matches(cluster.namespace_labels(pod)),
    }
}

/// Whether `peer` matches `pod` (an external address matches only `ipBlock` peers).
#[must_use]
pub fn peer_matches(cluster: &Cluster, peer: &Peer, pod: &PodInfo) -> bool {
    match peer {
        Peer::Pods { .. } if pod.external => false,
        Peer::Pods { namespaces, pods } => {
            let namespace_ok = match namespaces {
                NamespaceScope::Own(namespace) => *namespace == pod.namespace,
                NamespaceScope::Matching(selector) => {
                    selector.matches(cluster.namespace_labels(pod))
                }
            };
            namespace_ok && pods.matches(&pod.labels)
        }
        Peer::IpBlock(block) => pod.ips.iter().any(|ip| block.contains(ip)),
        Peer::External(block) => pod.external && pod.ips.iter().any(|ip| block.contains(ip)),
    }
}

/// Whether one `ports` item admits `probe` to `destination` (whose named ports it reads).
#[must_use]
pub fn port_matches(port: &PortMatch, probe: Probe, destination: &PodInfo) -> bool {
    if port.protocol != probe.protocol {
        return false;
    }
    match &port.port {
        PortSpec::All => true,
        PortSpec::Number(number) => *number == probe.port,
        PortSpec::Range(start, end) => (*start..=*end).contains(&probe.port),
        PortSpec::Named(name) => destination.ports.iter().any(|declared| {
            declared.name.as_deref() == Some(name.as_str())
                && declared.protocol == port.protocol
                && declared.number == probe.port
        }),
    }
}

/// Whether a rule's peers match `peer` (absent peers: all).
#[must_use]
pub fn rule_peer_matches(cluster: &Cluster, rule: &Rule, peer: &PodInfo) -> bool {
    rule.peers
        .as_ref()
        .is_none_or(|peers| peers.iter().any(|item| peer_matches(cluster, item, peer)))
}

/// Whether a rule's ports admit `probe` to `destination` (absent ports: all).
#[must_use]
pub fn rule_port_matches(rule: &Rule, probe: Probe, destination: &PodInfo) -> bool {
    rule.ports.as_ref().is_none_or(|ports| {
        ports
            .iter()
            .any(|port| port_matches(port, probe, destination))
    })
}

/// The indices of the policies of the namespace stage that isolate `pod` in `direction`.
#[must_use]
pub fn isolating_policies(cluster: &Cluster, pod: &PodInfo, direction: Direction) -> Vec<usize> {
    cluster
        .policies()
        .iter()
        .enumerate()
        .filter(|(_, policy)| {
            *policy.stage() == Stage::Namespace
                && policy.isolates(direction)
                && selects(cluster, policy, pod)
        })
        .map(|(index, _)| index)
        .collect()
}

/// The indices of the policies of the namespace stage whose `direction` rules apply to `pod`
/// (isolating or not).
#[must_use]
pub fn contributing_policies(cluster: &Cluster, pod: &PodInfo, direction: Direction) -> Vec<usize> {
    cluster
        .policies()
        .iter()
        .enumerate()
        .filter(|(_, policy)| {
            *policy.stage() == Stage::Namespace
                && policy.rules(direction).is_some()
                && selects(cluster, policy, pod)
        })
        .map(|(index, _)| index)
        .collect()
}

/// The ordered stage before (`before`) or after the namespace stage, for one side: the first
/// matching rule decides; `None` when nothing there decides.
fn ordered(
    cluster: &Cluster,
    before: bool,
    direction: Direction,
    pod: &PodInfo,
    peer: &PodInfo,
    destination: &PodInfo,
    probe: Probe,
) -> Option<Side> {
    let mut candidates: Vec<(&Order, String, usize)> = cluster
        .policies()
        .iter()
        .enumerate()
        .filter_map(|(index, policy)| {
            let ((Stage::Before(order), true) | (Stage::After(order), false)) =
                (policy.stage(), before)
            else {
                return None;
            };
            (policy.rules(direction).is_some() && selects(cluster, policy, pod))
                .then(|| (order, policy.key(), index))
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    candidates.sort();
    let mut start = 0;
    while start < candidates.len() {
        let tier = (candidates[start].0.tier_order, &candidates[start].0.tier);
        let end = start
            + candidates[start..]
                .iter()
                .take_while(|(order, _, _)| (order.tier_order, &order.tier) == tier)
                .count();
        let mut passed = false;
        'tier: for &(_, _, policy) in &candidates[start..end] {
            let rules = cluster.policies()[policy]
                .rules(direction)
                .unwrap_or_default();
            for (index, rule) in rules.iter().enumerate() {
                if !(rule_peer_matches(cluster, rule, peer)
                    && rule_port_matches(rule, probe, destination))
                {
                    continue;
                }
                let rule_ref = RuleRef {
                    policy,
                    direction,
                    rule: index,
                };
                match rule.action {
                    Action::Allow => {
                        return Some(Side::Decided {
                            rule: rule_ref,
                            allowed: true,
                        });
                    }
                    Action::Deny => {
                        return Some(Side::Decided {
                            rule: rule_ref,
                            allowed: false,
                        });
                    }
                    Action::Pass => {
                        passed = true;
                        break 'tier;
                    }
                }
            }
        }
        if !passed && candidates[start].0.end_of_tier == EndOfTier::Deny {
            return Some(Side::EndOfTier {
                policies: candidates[start..end]
                    .iter()
                    .map(|(_, _, policy)| *policy)
                    .collect(),
            });
        }
        start = end;
    }
    None
}

/// One side: `pod` is the source (egress) or the destination (ingress), `peer` the other end.
fn side(
    cluster: &Cluster,
    direction: Direction,
    pod: &PodInfo,
    peer: &PodInfo,
    destination: &PodInfo,
    probe: Probe,
) -> Side {
    if let Some(side) = ordered(cluster, true, direction, pod, peer, destination, probe) {
        return side;
    }
    let isolated_by = isolating_policies(cluster, pod, direction);
    if isolated_by.is_empty() {
        return ordered(cluster, false, direction, pod, peer, destination, probe)
            .unwrap_or(Side::NotIsolated);
    }
    let mut allowed_by = Vec::new();
    for policy in contributing_policies(cluster, pod, direction) {
        for (rule_index, rule) in cluster.policies()[policy]
            .rules(direction)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if rule_peer_matches(cluster, rule, peer) && rule_port_matches(rule, probe, destination)
            {
                allowed_by.push(RuleRef {
                    policy,
                    direction,
                    rule: rule_index,
                });
            }
        }
    }
    if allowed_by.is_empty() {
        Side::Blocked { isolated_by }
    } else {
        Side::Allowed {
            isolated_by,
            allowed_by,
        }
    }
}

/// Decide the connection `from` -> `to` (indices into [`Cluster::pods`]) for `probe`.
#[must_use]
pub fn decide(cluster: &Cluster, from: usize, to: usize, probe: Probe) -> Decision {
    let source = &cluster.pods()[from];
    let destination = &cluster.pods()[to];
    let egress = side(
        cluster,
        Direction::Egress,
        source,
        destination,
        destination,
        probe,
    );
    let ingress = side(
        cluster,
        Direction::Ingress,
        destination,
        source,
        destination,
        probe,
    );
    let verdict = if source.host_network || destination.host_network {
        Verdict::NotGoverned
    } else if egress.passes() && ingress.passes() {
        Verdict::Allowed
    } else {
        Verdict::Blocked
    };
    Decision {
        verdict,
        egress,
        ingress,
    }
}

impl Decision {
    /// One sentence on why: the rules that allowed it, or the side that blocked it and the
    /// policies that isolate it. It names policies and rules, not the pods, so pods that no
    /// policy tells apart get the same reason.
    #[must_use]
    pub fn reason(&self, cluster: &Cluster, from: &PodInfo, to: &PodInfo) -> String {
        let policies = |indices: &[usize]| {
            indices
                .iter()
                .map(|&index| cluster.policies()[index].key())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rules = |refs: &[RuleRef]| {
            refs.iter()
                .map(|rule| rule.describe(cluster))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let describe = |side: &Side, direction: &str| match side {
            Side::NotIsolated => format!("{direction} not isolated"),
            Side::Allowed { allowed_by, .. } => {
                format!("{direction} allowed by {}", rules(allowed_by))
            }
            Side::Blocked { isolated_by } => format!(
                "{direction} isolated by {} and no rule allows it",
                policies(isolated_by)
            ),
            Side::Decided { .. } | Side::EndOfTier { .. } => {
                format!(
                    "{direction} {}",
                    side.decided_by(cluster).unwrap_or_default()
                )
            }
        };
        match self.verdict {
            Verdict::NotGoverned => {
                let ends: Vec<&str> = [(from, "source"), (to, "destination")]
                    .into_iter()
                    .filter(|(pod, _)| pod.host_network)
                    .map(|(_, end)| end)
                    .collect();
                format!(
                    "not governed: the {} uses hostNetwork, which NetworkPolicy does not cover",
                    ends.join(" and ")
                )
            }
            Verdict::Allowed => format!(
                "allowed: {}; {}",
                describe(&self.egress, "egress"),
                describe(&self.ingress, "ingress")
            ),
            Verdict::Blocked => {
                let blocked: Vec<String> = [(&self.egress, "egress"), (&self.ingress, "ingress")]
                    .into_iter()
                    .filter(|(side, _)| !side.passes())
                    .map(|(side, direction)| describe(side, direction))
                    .collect();
                format!("blocked: {}", blocked.join("; "))
            }
        }
    }
}
