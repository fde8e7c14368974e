//! Intent proofs of real specs, of broken policy sets, and of random specs.

use std::path::Path;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use netfence_core::{ValidatedIsolation, manifests, render, testing};
use netfence_crd::NamespaceIsolation;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

pub(crate) fn validated(value: &Value) -> ValidatedIsolation {
    let resource: NamespaceIsolation = manifests::typed(value).expect("NamespaceIsolation");
    ValidatedIsolation::try_from(&resource).expect("valid spec")
}

/// Every document of `examples/` (the test reads the files; the core only parses).
fn examples() -> Vec<manifests::Document> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<_> = std::fs::read_dir(&directory)
        .expect("examples/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "examples/ holds YAML files");
    files
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).expect("readable");
            manifests::parse(&path.display().to_string(), &text).expect("parses")
        })
        .collect()
}

pub(crate) fn shop() -> ValidatedIsolation {
    validated(&json!({
        "apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {
            "tiers": [
                {"name": "frontend", "podSelector": {"matchLabels": {"tier": "frontend"}}},
                {"name": "backend", "podSelector": {"matchLabels": {"tier": "backend"}}},
                {"name": "database", "podSelector": {"matchLabels": {"tier": "database"}}},
            ],
            "flows": [
                {"from": "frontend", "to": "backend", "ports": [{"port": 8080}]},
                {"from": "backend", "to": "database", "ports": [{"port": 5432, "protocol": "TCP"}]},
            ],
            "sharedServices": [
                {"name": "ingress", "direction": "Ingress", "namespace": "ingress-nginx", "tiers": ["frontend"], "ports": [{"port": 80}, {"port": 443}]},
                {"name": "metrics", "direction": "Ingress", "namespace": "monitoring",
                 "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}, "tiers": ["backend"], "ports": [{"port": "metrics"}]},
                {"name": "payments", "direction": "Egress", "ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}, "tiers": ["backend"], "ports": [{"port": 443}]},
            ],
        },
    }))
}

/// If this fails, netfence's own renderer produces policies that allow more or less than the
/// resource declares, for the examples users copy: `verify` would have to report them.
#[test]
fn rendered_examples_prove_their_intent() {
    let documents = examples();
    let mut proved = 0;
    for document in documents
        .iter()
        .filter(|document| document.kind() == "NamespaceIsolation")
    {
        let isolation = validated(&document.value);
        let proof = prove(&isolation, &render::network_policies(&isolation)).expect("proof runs");
        assert!(proof.holds(), "{}: {}", document.source, report(&proof));
        proved += 1;
    }
    assert!(proved >= 3, "only {proved} examples proved");
    let proof = prove(&shop(), &render::network_policies(&shop())).expect("proof runs");
    assert!(proof.holds(), "{}", report(&proof));
}

/// If this fails, deleting the DNS policy (the mistake that breaks name resolution with no log
/// line anywhere) would not be caught by the proof, or the message would not say what is missing.
#[test]
fn a_missing_dns_policy_fails_the_proof_and_names_it() {
    let isolation = shop();
    let policies: Vec<NetworkPolicy> = render::network_policies(&isolation)
        .into_iter()
        .filter(|policy| policy.metadata.name.as_deref() != Some("shop-allow-dns"))
        .collect();
    let proof = prove(&isolation, &policies).expect("proof runs");
    assert!(!proof.holds());
    let text = report(&proof);
    assert!(
        text.contains("frontend -> kube-system/dns-peer 53/UDP: declared but blocked by the egress of frontend (isolated by shop/shop-default-deny, shop/shop-tier-frontend; no egress rule allows it)"),
        "{text}"
    );
    assert!(
        proof
            .differences
            .iter()
            .all(|difference| difference.declared && difference.probe.port == 53)
    );
}

/// If this fails, a flow whose ports were widened (to every port) passes the proof: the policies
/// would allow traffic the resource never declared, and nobody would be told.
#[test]
fn a_widened_flow_fails_the_proof_and_names_the_extra_ports() {
    let isolation = shop();
    let mut policies = render::network_policies(&isolation);
    for policy in &mut policies {
        let spec = policy.spec.as_mut().expect("spec");
        match policy.metadata.name.as_deref() {
            Some("shop-tier-backend") => {
                for rule in spec.ingress.iter_mut().flatten() {
                    if rule.ports.iter().flatten().any(|port| {
                        port.port
                            == Some(
                                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(
                                    8080,
                                ),
                            )
                    }) {
                        rule.ports = None;
                    }
                }
            }
            Some("shop-tier-frontend") => {
                for rule in spec.egress.iter_mut().flatten() {
                    rule.ports = None;
                }
            }
            _ => {}
        }
    }
    let proof = prove(&isolation, &policies).expect("proof runs");
    assert!(!proof.holds());
    let text = report(&proof);
    assert!(
        text.contains("frontend -> backend 9/TCP: allowed but not declared (egress allowed by shop/shop-tier-frontend egress[0]; ingress allowed by shop/shop-tier-backend ingress[0])"),
        "{text}"
    );
    assert!(
        proof
            .differences
            .iter()
            .all(|difference| !difference.declared
                && difference.from == "frontend"
                && difference.to == "backend")
    );
}

/// If this fails, overlapping tiers (a pod that gets the traffic of two tiers) and tiers no pod
/// can ever join are no longer reported, and users keep selectors that do not mean what they think.
#[test]
fn overlapping_and_impossible_tiers_are_warned_about() {
    let isolation = validated(&json!({
        "apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation",
        "metadata": {"name": "app", "namespace": "app"},
        "spec": {
            "tiers": [
                {"name": "web", "podSelector": {"matchLabels": {"tier": "web"}}},
                {"name": "anything-labelled", "podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}},
                {"name": "never", "podSelector": {"matchLabels": {"tier": "a"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}},
            ],
            "flows": [{"from": "web", "to": "anything-labelled", "ports": [{"port": 80}]}],
        },
    }));
    let proof = prove(&isolation, &render::network_policies(&isolation)).expect("proof runs");
    assert!(proof.holds(), "{}", report(&proof));
    assert_eq!(
        proof.world.warnings,
        [
            "tier never: no pod can satisfy its selector (tier=a, tier notin (a)); the tier is empty",
            "tiers web and anything-labelled overlap: a pod with labels tier=web is in both, and gets the traffic of both",
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// If this fails, for some valid NamespaceIsolation the rendered policies allow more or less
    /// than the spec declares (or the proof misreads one of them): the printed proof names the
    /// differing connections.
    #[test]
    fn rendered_policies_prove_random_specs(spec in testing::spec()) {
        // Through JSON, as a manifest reaches `netfence verify`.
        let value = serde_json::to_value(testing::resource("random", "team", spec)).expect("serializes");
        let resource: NamespaceIsolation = manifests::typed(&value).expect("NamespaceIsolation");
        let isolation = ValidatedIsolation::try_from(&resource)
            .map_err(|errors| TestCaseError::fail(format!("generator made an invalid spec: {errors}")))?;
        let proof = prove(&isolation, &render::network_policies(&isolation)).expect("proof runs");
        prop_assert!(proof.holds(), "{}\n{}", serde_json::to_string(&value).unwrap_or_default(), report(&proof));
    }
}

/// If this fails, the one-indentation-level mistake (a namespace selector and a pod selector
/// written as two peers, OR, instead of one peer, AND) passes the proof, although it lets every
/// pod of the monitoring namespace scrape the backend.
#[test]
fn a_peer_split_from_and_into_or_fails_the_proof() {
    let isolation = shop();
    let mut policies = render::network_policies(&isolation);
    let backend = policies
        .iter_mut()
        .find(|policy| policy.metadata.name.as_deref() == Some("shop-tier-backend"))
        .expect("backend policy");
    for rule in backend
        .spec
        .as_mut()
        .expect("spec")
        .ingress
        .iter_mut()
        .flatten()
    {
        let mut split = Vec::new();
        for peer in rule.from.take().unwrap_or_default() {
            if peer.namespace_selector.is_some() && peer.pod_selector.is_some() {
                split.push(k8s_openapi::api::networking::v1::NetworkPolicyPeer {
                    pod_selector: None,
                    ..peer.clone()
                });
                split.push(k8s_openapi::api::networking::v1::NetworkPolicyPeer {
                    namespace_selector: None,
                    ..peer
                });
            } else {
                split.push(peer);
            }
        }
        rule.from = Some(split);
    }
    let proof = prove(&isolation, &policies).expect("proof runs");
    let text = report(&proof);
    assert!(
        text.contains("monitoring/metrics-other -> backend metrics/TCP: allowed but not declared (egress not isolated; ingress allowed by shop/shop-tier-backend ingress[1])"),
        "{text}"
    );
    // A named port is shown by its name everywhere: the number behind it is the model world's
    // own invention, and a user would look for it in vain.
    assert!(
        !text.contains("30000"),
        "the invented number of a named port shows:\n{text}"
    );
    let json = json(&proof).to_string();
    assert!(
        json.contains(r#""port":"metrics""#) && !json.contains("30000"),
        "{json}"
    );
}

/// The index of the model endpoint labelled `label`.
fn endpoint(proof: &Proof, label: &str) -> usize {
    proof
        .world
        .endpoints
        .iter()
        .position(|endpoint| endpoint.label == label)
        .unwrap_or_else(|| panic!("no endpoint {label}"))
}

/// A port range (`port` to `endPort`) shows as the range it is, in the matrix, across the
/// boundary and in the summary by policy, whether the spec or another policy declares it; the
/// probes test only its ends. If this fails, `8000-8010` reads as "8000/TCP 8010/TCP", as if
/// the ports between were closed.
#[test]
fn port_ranges_show_as_declared() {
    let isolation = validated(&json!({
        "apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {
            "tiers": [
                {"name": "frontend", "podSelector": {"matchLabels": {"tier": "frontend"}}},
                {"name": "backend", "podSelector": {"matchLabels": {"tier": "backend"}}},
            ],
            "flows": [{"from": "frontend", "to": "backend", "ports": [
                {"port": 8000, "endPort": 8010}, {"port": 8005, "protocol": "UDP"}, {"port": "http"},
            ]}],
        },
    }));
    let mut policies = render::network_policies(&isolation);
    let proof = prove(&isolation, &policies).expect("proof runs");
    assert!(proof.holds(), "{}", report(&proof));
    let (frontend, backend) = (endpoint(&proof, "frontend"), endpoint(&proof, "backend"));
    assert_eq!(
        compact(&proof.allowed[&(frontend, backend)], &proof.world),
        "8000-8010/TCP 8005/UDP http/TCP"
    );

    let open: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "open-range", "namespace": "shop"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                 "ingress": [{"ports": [{"port": 9000, "endPort": 9100}, {"port": "admin"}]}]},
    }))
    .expect("policy");
    policies.push(open);
    let proof = prove(&isolation, &policies).expect("proof runs");
    let text = report(&proof);
    assert!(
        text.contains("  netfence-outside/outside -> backend: 9000-9100/TCP admin/TCP\n"),
        "{text}"
    );
    assert!(
        text.contains("  Widened: open-range lets any pod outside shop reach any pod of shop on 9000-9100/TCP, admin/TCP"),
        "{text}"
    );
}

/// Two single ports another policy allows show as two ports, never as the range between them,
/// even where a declared range spans both; and a range never makes a named port look allowed.
/// If this fails, status and pull-request review say a foreign policy opens `8000-8100` when it
/// opens 8000 and 8100, or that a range opens `metrics`.
#[test]
fn single_ports_inside_a_range_stay_single() {
    let isolation = validated(&json!({
        "apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {
            "tiers": [
                {"name": "frontend", "podSelector": {"matchLabels": {"tier": "frontend"}}},
                {"name": "backend", "podSelector": {"matchLabels": {"tier": "backend"}}},
                {"name": "metrics", "podSelector": {"matchLabels": {"tier": "metrics"}}},
            ],
            "flows": [
                {"from": "frontend", "to": "backend", "ports": [{"port": 7000, "endPort": 40000}]},
                {"from": "frontend", "to": "metrics", "ports": [{"port": "metrics"}]},
            ],
        },
    }));
    let mut policies = render::network_policies(&isolation);
    let proof = prove(&isolation, &policies).expect("proof runs");
    assert!(proof.holds(), "{}", report(&proof));
    let (frontend, backend, metrics) = (
        endpoint(&proof, "frontend"),
        endpoint(&proof, "backend"),
        endpoint(&proof, "metrics"),
    );
    assert_eq!(
        compact(&proof.allowed[&(frontend, backend)], &proof.world),
        "7000-40000/TCP",
        "the range allows no named port"
    );
    assert_eq!(
        compact(&proof.allowed[&(frontend, metrics)], &proof.world),
        "metrics/TCP"
    );

    let singles: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "two-ports", "namespace": "shop"},
        "spec": {"podSelector": {"matchLabels": {"tier": "metrics"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"ports": [{"port": 8000}, {"port": 8100}]}]},
    }))
    .expect("policy");
    policies.push(singles);
    let proof = prove(&isolation, &policies).expect("proof runs");
    let text = report(&proof);
    assert!(
        text.contains("two-ports lets any pod outside shop reach metrics on 8000/TCP, 8100/TCP"),
        "{text}"
    );
    assert!(!text.contains("8000-8100"), "{text}");
}
