//! Intent proofs of real specs, of broken policy sets, and of random specs.

use std::path::Path;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use netfence_core::{ValidatedIsolation, manifests, render};
use netfence_crd::NamespaceIsolation;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn validated(value: &Value) -> ValidatedIsolation {
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

fn shop() -> ValidatedIsolation {
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
            .all(|difference| difference.declared && difference.port == 53)
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

fn port() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!({"port": 80}),
        json!({"port": 8080, "protocol": "TCP"}),
        json!({"port": 53, "protocol": "UDP"}),
        json!({"port": 9000, "endPort": 9002}),
        json!({"port": "http"}),
        json!({"port": "metrics", "protocol": "TCP"}),
        json!({"port": 5000, "protocol": "SCTP"}),
    ])
}

fn ports() -> impl Strategy<Value = Option<Value>> {
    prop::option::weighted(
        0.8,
        prop::collection::vec(port(), 1..3).prop_map(Value::from),
    )
}

fn tier_selector(index: usize) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => Just(json!({"matchLabels": {"tier": format!("t{index}")}})),
        1 => Just(json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": [format!("t{index}"), "shared"]}]})),
        1 => Just(json!({"matchLabels": {"app": "x"}})),
        1 => Just(json!({"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}, {"key": "tier", "operator": "NotIn", "values": ["t0"]}]})),
    ]
}

fn shared_service(index: usize, tiers: usize) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["Ingress", "Egress"]),
        prop_oneof![
            Just(json!({"namespace": "ingress-nginx"})),
            Just(json!({"namespace": "monitoring", "podSelector": {"matchLabels": {"app": "prometheus"}}})),
            Just(json!({"namespaceSelector": {"matchLabels": {"team": "platform"}}})),
            Just(json!({"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["client"]}]}})),
            Just(json!({"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.0/28"]}})),
            Just(json!({"ipBlock": {"cidr": "10.0.0.0/8"}})),
        ],
        prop::option::of(prop::sample::subsequence((0..tiers).collect::<Vec<_>>(), 1..=tiers.max(1))),
        ports(),
    )
        .prop_map(move |(direction, peer, tiers, ports)| {
            let mut service = peer;
            service["name"] = json!(format!("s{index}"));
            service["direction"] = json!(direction);
            if let Some(tiers) = tiers {
                service["tiers"] = json!(tiers.iter().map(|tier| format!("t{tier}")).collect::<Vec<_>>());
            }
            if let Some(ports) = ports {
                service["ports"] = ports;
            }
            service
        })
}

fn spec() -> impl Strategy<Value = Value> {
    (1usize..4).prop_flat_map(|tiers| {
        (
            (0..tiers).map(tier_selector).collect::<Vec<_>>(),
            prop::collection::vec((0..tiers, 0..tiers, ports()), 0..4),
            prop::sample::select(vec![vec!["Ingress", "Egress"], vec!["Ingress"], vec!["Egress"]]),
            prop::sample::select(vec!["Deny", "Allow"]),
            prop_oneof![
                Just(json!({})),
                Just(json!({"enabled": false})),
                Just(json!({"namespace": "dns-system", "ipBlocks": [{"cidr": "169.254.20.10/32"}]})),
            ],
            (0usize..3).prop_flat_map(move |count| (0..count).map(|index| shared_service(index, tiers)).collect::<Vec<_>>()),
        )
            .prop_map(|(selectors, flows, isolate, same_namespace, dns, services)| {
                let tiers: Vec<Value> = selectors
                    .into_iter()
                    .enumerate()
                    .map(|(index, selector)| json!({"name": format!("t{index}"), "podSelector": selector}))
                    .collect();
                let flows: Vec<Value> = flows
                    .into_iter()
                    .map(|(from, to, ports)| {
                        let mut flow = json!({"from": format!("t{from}"), "to": format!("t{to}")});
                        if let Some(ports) = ports {
                            flow["ports"] = ports;
                        }
                        flow
                    })
                    .collect();
                // A shared service must go in an isolated direction.
                let services: Vec<Value> = services
                    .into_iter()
                    .filter(|service| isolate.contains(&service["direction"].as_str().unwrap_or_default()))
                    .collect();
                json!({
                    "apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation",
                    "metadata": {"name": "random", "namespace": "team"},
                    "spec": {"isolate": isolate, "sameNamespace": same_namespace, "dns": dns,
                             "tiers": tiers, "flows": flows, "sharedServices": services},
                })
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// If this fails, for some valid NamespaceIsolation the rendered policies allow more or less
    /// than the spec declares (or the proof misreads one of them): the printed proof names the
    /// differing connections.
    #[test]
    fn rendered_policies_prove_random_specs(value in spec()) {
        let resource: NamespaceIsolation = manifests::typed(&value).expect("NamespaceIsolation");
        let isolation = ValidatedIsolation::try_from(&resource);
        prop_assume!(isolation.is_ok(), "invalid spec: {:?}", isolation.err());
        let isolation = isolation.expect("checked");
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
        text.contains("monitoring/metrics-other -> backend 30000/TCP: allowed but not declared (egress not isolated; ingress allowed by shop/shop-tier-backend ingress[1])"),
        "{text}"
    );
}
