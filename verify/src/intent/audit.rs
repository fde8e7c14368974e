//! The intent audit: a proof against every policy that applies to a namespace, told as findings
//! a team can act on, each naming the policies responsible.
//!
//! ```text
//! Proof { differences (each with the policies that decided) } --findings--> [Finding]
//!   allowed, not declared -> Widened:  "allow-all-ingress lets any pod outside shop reach backend on every port"
//!   declared, blocked     -> Narrowed: "GlobalNetworkPolicy/deny-dns blocks frontend -> kube-system/dns-peer on 53/UDP"
//! ```
//!
//! Differences are grouped by the policies responsible and the destination, then destinations
//! with the same sources are merged, so an allow-all policy is one sentence, not hundreds.

use std::collections::{BTreeMap, BTreeSet};

use super::{Difference, Proof};
use crate::model::Probe;

/// Which way the policies depart from the declared intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Departure {
    /// Something allows a connection the spec does not declare.
    Widened,
    /// Something blocks a declared connection (a flow, DNS, a shared service).
    Narrowed,
}

impl Departure {
    /// The condition reason: `Widened` or `Narrowed`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Departure::Widened => "Widened",
            Departure::Narrowed => "Narrowed",
        }
    }
}

/// One departure from the intent, told in one sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Widened or narrowed.
    pub departure: Departure,
    /// The policies responsible, as messages name them (`name` in the isolation's namespace,
    /// `namespace/name` elsewhere, `Kind/name` cluster-wide); empty when no policy decided (no
    /// rule allows a declared connection, or nothing isolates a pod).
    pub policies: Vec<String>,
    /// The sentence.
    pub message: String,
}

/// The probes of a group of differences.
type Probes = BTreeSet<Probe>;

/// Endpoints (sources or destinations) and the probes between them.
type Group = (BTreeSet<String>, Probes);

/// How many endpoints a sentence names before it counts the rest.
const NAMED: usize = 4;

/// The findings of `proof`, widenings first, each group in a stable order.
#[must_use]
pub fn findings(proof: &Proof) -> Vec<Finding> {
    let namespace = &proof.world.namespace;
    let short = |key: &str| {
        key.strip_prefix(namespace.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(key)
            .to_owned()
    };
    // (departure, policies, destination) -> (sources, probes)
    let mut by_destination: BTreeMap<(Departure, Vec<String>, String), Group> = BTreeMap::new();
    for difference in &proof.differences {
        let departure = departure(difference);
        let policies = difference.policies.iter().map(|key| short(key)).collect();
        let entry = by_destination
            .entry((departure, policies, difference.to.clone()))
            .or_default();
        entry.0.insert(difference.from.clone());
        entry.1.insert(difference.probe);
    }
    // (departure, policies, sources) -> (destinations, probes)
    let mut merged: BTreeMap<(Departure, Vec<String>, BTreeSet<String>), Group> = BTreeMap::new();
    for ((departure, policies, to), (sources, probes)) in by_destination {
        let entry = merged.entry((departure, policies, sources)).or_default();
        entry.0.insert(to);
        entry.1.extend(probes);
    }
    merged
        .into_iter()
        .map(|((departure, policies, sources), (destinations, probes))| {
            let from = endpoints(proof, &sources, &destinations);
            let to = endpoints(proof, &destinations, &sources);
            let ports = ports(proof, &probes);
            let named = policies.join(", ");
            let message = match (departure, policies.is_empty()) {
                (Departure::Widened, false) => format!("{named} lets {from} reach {to} on {ports}"),
                (Departure::Widened, true) => {
                    format!("nothing isolates them: {from} reach {to} on {ports}")
                }
                (Departure::Narrowed, false) => {
                    format!("{named} blocks {from} -> {to} on {ports}, which the spec declares")
                }
                (Departure::Narrowed, true) => format!(
                    "no policy allows {from} -> {to} on {ports}, which the spec declares (is one of netfence's own policies missing?)"
                ),
            };
            Finding {
                departure,
                policies,
                message,
            }
        })
        .collect()
}

fn departure(difference: &Difference) -> Departure {
    if difference.declared {
        Departure::Narrowed
    } else {
        Departure::Widened
    }
}

/// `set` in words: `any pod or address`, `any pod`, `any pod of NS`, `any pod outside NS` when it holds every such
/// endpoint but those of `other` (a pod never connects to itself), else the labels.
fn endpoints(proof: &Proof, set: &BTreeSet<String>, other: &BTreeSet<String>) -> String {
    let world = &proof.world;
    let covers = |keep: &dyn Fn(&super::Endpoint) -> bool| {
        let all: BTreeSet<&String> = world
            .endpoints
            .iter()
            .filter(|endpoint| {
                keep(endpoint) && !(other.len() == 1 && other.contains(&endpoint.label))
            })
            .map(|endpoint| &endpoint.label)
            .collect();
        all.len() > 1 && all.iter().all(|label| set.contains(*label))
    };
    if covers(&|_| true) {
        return "any pod or address".to_owned();
    }
    if covers(&|endpoint| !endpoint.pod.external) {
        return "any pod".to_owned();
    }
    if covers(&|endpoint| !endpoint.pod.external && endpoint.pod.namespace == world.namespace) {
        return format!("any pod of {}", world.namespace);
    }
    if covers(&|endpoint| !endpoint.pod.external && endpoint.pod.namespace != world.namespace) {
        return format!("any pod outside {}", world.namespace);
    }
    let mut named: Vec<&str> = set.iter().take(NAMED).map(String::as_str).collect();
    let rest = set.len().saturating_sub(NAMED);
    let more = format!("{rest} more");
    if rest > 0 {
        named.push(&more);
    }
    match named.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The ports in words: `every port` when every port number of the world is among them, else
/// `8080/TCP, 53/TCP,UDP, 8000-8010/TCP, metrics/TCP` (a declared range as such, a named port
/// by its name: see [`super::compact`]).
fn ports(proof: &Proof, probes: &Probes) -> String {
    let world: BTreeSet<u16> = proof.world.probes.iter().map(|probe| probe.port).collect();
    let numbers: BTreeSet<u16> = probes.iter().map(|probe| probe.port).collect();
    if numbers.len() > 1 && world.iter().all(|port| numbers.contains(port)) {
        return "every port".to_owned();
    }
    let probes: Vec<Probe> = probes.iter().copied().collect();
    super::port_labels(&probes, &proof.world)
        .into_iter()
        .map(|(label, protocols)| format!("{label}/{}", protocols.join(",")))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use netfence_core::ValidatedIsolation;

    use super::*;
    use crate::intent::prove;

    fn isolation() -> ValidatedIsolation {
        let resource: netfence_crd::NamespaceIsolation =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "netfence.io/v1alpha1",
                "kind": "NamespaceIsolation",
                "metadata": {"name": "shop", "namespace": "shop"},
                "spec": {
                    "tiers": [
                        {"name": "frontend", "podSelector": {"matchLabels": {"tier": "frontend"}}},
                        {"name": "backend", "podSelector": {"matchLabels": {"tier": "backend"}}}
                    ],
                    "flows": [{"from": "frontend", "to": "backend", "ports": [{"port": 8080}]}]
                }
            }))
            .expect("a valid resource");
        ValidatedIsolation::try_from(&resource).expect("valid")
    }

    fn policy(value: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(value).expect("a NetworkPolicy")
    }

    /// netfence's own policies: the proof holds, nothing to report.
    #[test]
    fn own_policies_have_no_findings() {
        let isolation = isolation();
        let own = netfence_core::render::network_policies(&isolation);
        let proof = prove(&isolation, &own).expect("provable");
        assert!(findings(&proof).is_empty(), "{:?}", proof.differences);
    }

    /// A team's allow-all ingress on backend is one sentence naming it, the pods it lets in and
    /// every port.
    #[test]
    fn an_allow_all_ingress_is_one_widening_naming_the_policy() {
        let isolation = isolation();
        let mut policies = netfence_core::render::network_policies(&isolation);
        policies.push(policy(serde_json::json!({
            "metadata": {"name": "allow-all-ingress", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"tier": "backend"}}, "ingress": [{}]}
        })));
        let proof = prove(&isolation, &policies).expect("provable");
        let found = findings(&proof);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].departure, Departure::Widened);
        assert_eq!(found[0].policies, ["allow-all-ingress"]);
        assert_eq!(
            found[0].message,
            "allow-all-ingress lets any pod outside shop reach backend on every port"
        );
    }

    /// Policies that choose pods, peers and ports the spec never names still get probed: pods
    /// labelled `tier: api` (in no tier), a monitoring namespace, port 9090.
    #[test]
    fn other_policies_are_probed_on_their_own_pods_peers_and_ports() {
        let isolation = isolation();
        let mut policies = netfence_core::render::network_policies(&isolation);
        policies.push(policy(serde_json::json!({
            "metadata": {"name": "open-api", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"tier": "api"}}, "ingress": [{}]}
        })));
        policies.push(policy(serde_json::json!({
            "metadata": {"name": "scrape", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"tier": "backend"}}, "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
                "ports": [{"port": 9090}]
            }]}
        })));
        let proof = prove(&isolation, &policies).expect("provable");
        let messages: Vec<String> = findings(&proof)
            .into_iter()
            .map(|found| found.message)
            .collect();
        assert_eq!(
            messages,
            [
                "open-api lets any pod outside shop reach pods with tier=api on every port",
                "scrape lets any pod in namespaces with team=monitoring reach backend on 9090/TCP",
            ],
            "{:#?}",
            proof.differences
        );
    }

    /// A cluster-wide Accept that selects the namespace (by its real labels) opens pods, from
    /// peers, on ports the spec never names: the model world grows to probe them.
    #[test]
    fn a_cluster_wide_accept_widens_on_its_own_pods_peers_and_ports() {
        let isolation = isolation();
        let policies = netfence_core::render::network_policies(&isolation);
        let mut cluster_wide = crate::cluster_wide::ClusterWidePolicies::default();
        let added = cluster_wide.add(
            "ClusterNetworkPolicy",
            serde_json::json!({
                "apiVersion": "policy.networking.k8s.io/v1alpha2",
                "kind": "ClusterNetworkPolicy",
                "metadata": {"name": "open-api"},
                "spec": {
                    "tier": "Admin",
                    "priority": 10,
                    "subject": {"pods": {
                        "namespaceSelector": {"matchLabels": {"team": "shop"}},
                        "podSelector": {"matchLabels": {"tier": "api"}}
                    }},
                    "ingress": [{
                        "name": "monitoring",
                        "action": "Accept",
                        "from": [{"namespaces": {"matchLabels": {"monitoring": "true"}}}],
                        "protocols": [{"tcp": {"destinationPort": {"number": 9090}}}]
                    }]
                }
            }),
        );
        assert_eq!(added, Ok(true));
        let labels = std::collections::BTreeMap::from([(
            "shop".to_owned(),
            crate::selector::Labels::from([("team".to_owned(), "shop".to_owned())]),
        )]);
        let proof = crate::intent::prove_with(&isolation, &policies, &cluster_wide, &labels)
            .expect("provable");
        let messages: Vec<String> = findings(&proof)
            .into_iter()
            .map(|found| found.message)
            .collect();
        assert_eq!(
            messages,
            [
                "ClusterNetworkPolicy/open-api lets any pod in namespaces with monitoring=true reach pods with tier=api on 9090/TCP"
            ],
            "{:#?}",
            proof.differences
        );
    }

    /// A missing allow of netfence's own narrows a declared flow: named, with the port.
    #[test]
    fn a_missing_allow_narrows_the_declared_flow() {
        let isolation = isolation();
        let policies: Vec<NetworkPolicy> = netfence_core::render::network_policies(&isolation)
            .into_iter()
            .filter(|policy| policy.metadata.name.as_deref() != Some("shop-tier-backend"))
            .collect();
        let proof = prove(&isolation, &policies).expect("provable");
        let found = findings(&proof);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].departure, Departure::Narrowed);
        assert_eq!(
            found[0].message,
            "no policy allows frontend -> backend on 8080/TCP, which the spec declares (is one of netfence's own policies missing?)"
        );
    }
}
