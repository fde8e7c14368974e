//! Why one connection is allowed or blocked: which policies select each end, and for every rule
//! of those policies, which peer and which port matched or did not.
//!
//! ```text
//! (Cluster, from, to, Probe) --explain--> Explanation --Display--> the text of `netfence verify --explain`
//! ```

use std::fmt;

use netfence_crd::isolation::Direction;

use super::{
    evaluate::{
        Decision, RuleRef, Side, Verdict, contributing_policies, decide, isolating_policies,
        peer_matches, port_matches, rule_peer_matches, rule_port_matches, selects,
    },
    model::{Cluster, PodInfo, Probe},
};

/// One rule of an isolating policy, checked against the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleCheck {
    /// `ns/policy ingress[0]`.
    pub rule: String,
    /// Each peer item (`from[i]`/`to[i]`) and whether it matches the other end; empty when the
    /// rule has no peers (see `every_peer`).
    pub peers: Vec<(String, bool)>,
    /// Whether the rule lists no peer item at all and so matches every peer (a NetworkPolicy
    /// rule without `from`/`to`); `false` for a rule whose peer list is empty (it matches none).
    pub every_peer: bool,
    /// Each port item and whether it admits the probe; empty when the rule has no ports.
    pub ports: Vec<(String, bool)>,
    /// Whether the rule allows the connection (some peer and some port match).
    pub allows: bool,
}

/// One side of the connection: the source's egress or the destination's ingress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideReport {
    /// Egress (of the source) or ingress (of the destination).
    pub direction: Direction,
    /// The pod on this side, `ns/name`.
    pub pod: String,
    /// The policies that select the pod with this direction in their policy types.
    pub isolated_by: Vec<String>,
    /// The policies that select the pod but do not isolate this direction.
    pub selected_other_direction: Vec<String>,
    /// Every rule of the isolating policies, checked.
    pub rules: Vec<RuleCheck>,
    /// What decided before or after the NetworkPolicies (a cluster-wide rule, or a tier's end),
    /// when something there did.
    pub decided: Option<String>,
}

/// The explanation of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The source, `ns/name`.
    pub from: String,
    /// The destination, `ns/name`.
    pub to: String,
    /// The probe.
    pub probe: Probe,
    /// The decision.
    pub decision: Decision,
    /// The pods on each end that use `hostNetwork`.
    pub host_network: Vec<String>,
    /// The source's egress, then the destination's ingress.
    pub sides: [SideReport; 2],
    /// The one-line reason, as in the matrix.
    pub reason: String,
}

fn side_report(
    cluster: &Cluster,
    direction: Direction,
    pod: &PodInfo,
    peer: &PodInfo,
    destination: &PodInfo,
    probe: Probe,
) -> SideReport {
    let isolated = isolating_policies(cluster, pod, direction);
    let selected_other_direction = cluster
        .policies()
        .iter()
        .enumerate()
        .filter(|(index, policy)| {
            policy.cluster_wide().is_none()
                && selects(cluster, policy, pod)
                && !isolated.contains(index)
        })
        .map(|(_, policy)| policy.key())
        .collect();
    let peer_field = match direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    // Every policy whose rules take part in the namespace stage: the isolating ones, and those
    // that only add allows (a Cilium policy without default deny).
    let mut rules = Vec::new();
    for index in contributing_policies(cluster, pod, direction) {
        let policy = &cluster.policies()[index];
        for (rule_index, rule) in policy
            .rules(direction)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let peers: Vec<(String, bool)> = rule
                .peers
                .iter()
                .flatten()
                .enumerate()
                .map(|(peer_index, item)| {
                    (
                        format!("{peer_field}[{peer_index}] {item}"),
                        peer_matches(cluster, item, peer),
                    )
                })
                .collect();
            let ports: Vec<(String, bool)> = rule
                .ports
                .iter()
                .flatten()
                .enumerate()
                .map(|(port_index, item)| {
                    (
                        format!("ports[{port_index}] {item}"),
                        port_matches(item, probe, destination),
                    )
                })
                .collect();
            let allows = rule_peer_matches(cluster, rule, peer)
                && rule_port_matches(rule, probe, destination);
            rules.push(RuleCheck {
                rule: RuleRef {
                    policy: index,
                    direction,
                    rule: rule_index,
                }
                .describe(cluster),
                every_peer: rule.peers.is_none(),
                peers,
                ports,
                allows,
            });
        }
    }
    SideReport {
        direction,
        decided: None,
        pod: pod.key(),
        isolated_by: isolated
            .iter()
            .map(|&index| cluster.policies()[index].key())
            .collect(),
        selected_other_direction,
        rules,
    }
}

/// Explain `from` -> `to` (indices into [`Cluster::pods`]) for `probe`.
#[must_use]
pub fn explain(cluster: &Cluster, from: usize, to: usize, probe: Probe) -> Explanation {
    let source = &cluster.pods()[from];
    let destination = &cluster.pods()[to];
    let decision = decide(cluster, from, to, probe);
    let reason = decision.reason(cluster, source, destination);
    let decided = |side: &Side| side.decided_by(cluster);
    let mut sides = [
        side_report(
            cluster,
            Direction::Egress,
            source,
            destination,
            destination,
            probe,
        ),
        side_report(
            cluster,
            Direction::Ingress,
            destination,
            source,
            destination,
            probe,
        ),
    ];
    sides[0].decided = decided(&decision.egress);
    sides[1].decided = decided(&decision.ingress);
    Explanation {
        from: source.key(),
        to: destination.key(),
        probe,
        host_network: [source, destination]
            .iter()
            .filter(|pod| pod.host_network)
            .map(|pod| pod.key())
            .collect(),
        sides,
        decision,
        reason,
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "matches" } else { "does not match" }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.decision.verdict {
            Verdict::Allowed => "allowed",
            Verdict::Blocked => "blocked",
            Verdict::NotGoverned => "not governed by NetworkPolicy",
        };
        writeln!(f, "{} -> {} {}: {verdict}", self.from, self.to, self.probe)?;
        for pod in &self.host_network {
            writeln!(
                f,
                "  {pod} uses hostNetwork: it shares its node's network, and NetworkPolicy does not govern its traffic"
            )?;
        }
        for side in &self.sides {
            let direction = match side.direction {
                Direction::Ingress => "ingress",
                Direction::Egress => "egress",
            };
            writeln!(f)?;
            if let Some(decided) = &side.decided {
                writeln!(f, "{direction} of {}: {decided}", side.pod)?;
                continue;
            }
            if side.isolated_by.is_empty() {
                writeln!(
                    f,
                    "{direction} of {}: not isolated (no policy selects it with {} in policyTypes), so every {} passes",
                    side.pod,
                    side.direction.as_str(),
                    match side.direction {
                        Direction::Ingress => "source",
                        Direction::Egress => "destination",
                    }
                )?;
            } else {
                writeln!(
                    f,
                    "{direction} of {}: isolated by {}",
                    side.pod,
                    side.isolated_by.join(", ")
                )?;
            }
            if !side.selected_other_direction.is_empty() {
                writeln!(
                    f,
                    "  also selected by {}, which do not isolate {direction}",
                    side.selected_other_direction.join(", ")
                )?;
            }
            if !side.isolated_by.is_empty() && side.rules.is_empty() {
                writeln!(f, "  no {direction} rule at all: everything is blocked")?;
            }
            for rule in &side.rules {
                let outcome = if rule.allows {
                    "allows it"
                } else {
                    "does not apply"
                };
                writeln!(f, "  {}: {outcome}", rule.rule)?;
                if rule.peers.is_empty() {
                    if rule.every_peer {
                        writeln!(f, "    peers: none listed, every peer matches")?;
                    } else {
                        writeln!(f, "    peers: an empty list, no peer matches")?;
                    }
                }
                for (peer, ok) in &rule.peers {
                    writeln!(f, "    {peer}: {}", yes_no(*ok))?;
                }
                if rule.ports.is_empty() {
                    writeln!(f, "    ports: none listed, every port matches")?;
                }
                for (port, ok) in &rule.ports {
                    writeln!(f, "    {port}: {}", yes_no(*ok))?;
                }
            }
        }
        writeln!(f)?;
        write!(f, "{}", self.reason)
    }
}
