//! Engine tests across modules: the grouped matrix against the per-connection reference, on
//! random clusters, and the semantics users rely on, on small hand-written ones.

use k8s_openapi::api::{
    core::v1::{Namespace, Pod},
    networking::v1::NetworkPolicy,
};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn probes() -> Vec<Probe> {
    ["80/TCP", "81/TCP", "53/UDP", "80/UDP", "81/SCTP"]
        .iter()
        .map(|text| text.parse().expect("probe"))
        .collect()
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("test object")
}

fn label_map() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop::sample::select(vec!["a", "b", "c"])),
        prop::option::of(prop::sample::select(vec!["f", "g"])),
    )
        .prop_map(|(app, tier)| {
            let mut labels = serde_json::Map::new();
            if let Some(app) = app {
                labels.insert("app".into(), json!(app));
            }
            if let Some(tier) = tier {
                labels.insert("tier".into(), json!(tier));
            }
            Value::Object(labels)
        })
}

fn selector() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        prop::sample::select(vec!["a", "b", "c"])
            .prop_map(|app| json!({"matchLabels": {"app": app}})),
        (
            prop::sample::select(vec!["app", "tier", "env"]),
            prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist"]),
            prop::sample::subsequence(vec!["a", "b", "f", "x", "y"], 1..3),
        )
            .prop_map(|(key, operator, values)| {
                let values = if matches!(operator, "In" | "NotIn") {
                    json!(values)
                } else {
                    json!([])
                };
                json!({"matchExpressions": [{"key": key, "operator": operator, "values": values}]})
            }),
    ]
}

fn peer() -> impl Strategy<Value = Value> {
    prop_oneof![
        selector().prop_map(|pods| json!({"podSelector": pods})),
        selector().prop_map(|namespaces| json!({"namespaceSelector": namespaces})),
        (selector(), selector()).prop_map(
            |(namespaces, pods)| json!({"namespaceSelector": namespaces, "podSelector": pods})
        ),
        prop::sample::select(vec![
            json!({"ipBlock": {"cidr": "10.0.0.0/30"}}),
            json!({"ipBlock": {"cidr": "10.0.0.0/29", "except": ["10.0.0.4/31"]}}),
            json!({"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/30"]}}),
        ]),
    ]
}

fn port() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!({"port": 80}),
        json!({"port": 81, "protocol": "TCP"}),
        json!({"port": 80, "endPort": 81}),
        json!({"port": "http"}),
        json!({"port": "dns", "protocol": "UDP"}),
        json!({"protocol": "UDP"}),
        json!({"port": 81, "protocol": "SCTP"}),
    ])
}

fn rule(peer_key: &'static str) -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop::collection::vec(peer(), 0..3)),
        prop::option::of(prop::collection::vec(port(), 0..3)),
    )
        .prop_map(move |(peers, ports)| {
            let mut rule = serde_json::Map::new();
            if let Some(peers) = peers {
                rule.insert(peer_key.into(), json!(peers));
            }
            if let Some(ports) = ports {
                rule.insert("ports".into(), json!(ports));
            }
            Value::Object(rule)
        })
}

fn policy(index: usize) -> impl Strategy<Value = NetworkPolicy> {
    (
        prop::sample::select(vec!["x", "y", "z"]),
        selector(),
        prop::sample::select(vec![
            None,
            Some(vec!["Ingress"]),
            Some(vec!["Egress"]),
            Some(vec!["Ingress", "Egress"]),
        ]),
        prop::option::of(prop::collection::vec(rule("from"), 0..3)),
        prop::option::of(prop::collection::vec(rule("to"), 0..3)),
    )
        .prop_map(move |(namespace, pod_selector, types, ingress, egress)| {
            let mut spec = json!({"podSelector": pod_selector});
            if let Some(types) = types {
                spec["policyTypes"] = json!(types);
            }
            if let Some(ingress) = ingress {
                spec["ingress"] = json!(ingress);
            }
            if let Some(egress) = egress {
                spec["egress"] = json!(egress);
            }
            typed(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("p{index}"), "namespace": namespace},
                "spec": spec,
            }))
        })
}

fn pod(index: usize) -> impl Strategy<Value = Pod> {
    (
        prop::sample::select(vec!["x", "y", "z"]),
        label_map(),
        prop::option::of(0u8..8),
        prop::sample::subsequence(
            vec![
                json!({"name": "http", "containerPort": 80}),
                json!({"name": "http", "containerPort": 81}),
                json!({"name": "dns", "containerPort": 53, "protocol": "UDP"}),
                json!({"containerPort": 81, "protocol": "SCTP"}),
            ],
            0..3,
        ),
        prop::bool::weighted(0.1),
    )
        .prop_map(move |(namespace, labels, ip, ports, host_network)| {
            // Two ports may not share a name: keep the first "http".
            let mut seen_http = false;
            let ports: Vec<Value> = ports
                .into_iter()
                .filter(|port| {
                    let http = port["name"] == "http";
                    let keep = !(http && seen_http);
                    seen_http |= http;
                    keep
                })
                .collect();
            let mut value = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("pod{index}"), "namespace": namespace, "labels": labels},
                "spec": {"hostNetwork": host_network, "containers": [{"name": "c", "image": "i", "ports": ports}]},
            });
            if let Some(ip) = ip {
                value["status"] = json!({"podIP": format!("10.0.0.{ip}")});
            }
            typed(value)
        })
}

fn cluster() -> impl Strategy<Value = Cluster> {
    (
        prop::collection::vec(
            prop::option::of(prop::sample::select(vec!["a", "b"])),
            3,
        ),
        (1usize..9).prop_flat_map(|count| (0..count).map(pod).collect::<Vec<_>>()),
        (0usize..5).prop_flat_map(|count| (0..count).map(policy).collect::<Vec<_>>()),
        prop::collection::vec(prop::bool::weighted(0.15), 8),
    )
        .prop_map(|(environments, pods, policies, external)| {
            let namespaces: Vec<Namespace> = ["x", "y", "z"]
                .iter()
                .zip(environments)
                .map(|(name, environment)| {
                    let labels = environment.map_or(json!({}), |env| json!({"env": env}));
                    typed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}))
                })
                .collect();
            let cluster =
                Cluster::build(&namespaces, &pods, &policies).expect("generated objects are valid");
            // Some endpoints become addresses outside the cluster, as in the intent proof.
            let pods = cluster
                .pods()
                .iter()
                .zip(external)
                .map(|(pod, external)| model::PodInfo { external, ..pod.clone() })
                .collect();
            Cluster::from_parts(
                cluster.namespaces().to_vec(),
                pods,
                cluster.policies().to_vec(),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// If this fails, grouping pods into classes changed an answer: the fast matrix (what
    /// `netfence verify` prints) disagrees with the rule-by-rule semantics on some connection,
    /// its verdict, or the policies and rules given as its reason.
    #[test]
    fn grouped_matrix_equals_the_reference_semantics(cluster in cluster()) {
        let probes = probes();
        let matrix = reachability(&cluster, &probes);
        for (probe_index, probe) in matrix.probes().iter().enumerate() {
            for from in 0..cluster.pods().len() {
                for to in 0..cluster.pods().len() {
                    let reference = decide(&cluster, from, to, *probe);
                    prop_assert_eq!(matrix.verdict(probe_index, from, to), reference.verdict);
                    prop_assert_eq!(matrix.decision(probe_index, from, to), reference);
                }
            }
            let expected = (0..cluster.pods().len())
                .flat_map(|from| (0..cluster.pods().len()).map(move |to| (from, to)))
                .filter(|(from, to)| from != to && decide(&cluster, *from, *to, *probe).verdict == Verdict::Allowed)
                .count() as u64;
            prop_assert_eq!(matrix.allowed_count(probe_index), expected);
        }
    }
}

fn world(policies: &[Value]) -> Cluster {
    let namespaces: Vec<Namespace> = ["x", "y"]
        .iter()
        .map(|name| {
            typed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        })
        .collect();
    let pods: Vec<Pod> = [("x", "a", "10.0.0.1", false), ("x", "b", "10.0.0.2", false), ("y", "a", "10.0.1.1", false), ("y", "h", "192.168.0.9", true)]
        .iter()
        .map(|(namespace, name, ip, host)| {
            typed(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "labels": {"pod": name}},
                "spec": {"hostNetwork": host, "containers": [{"name": "c", "image": "i", "ports": [{"name": "serve-80-tcp", "containerPort": 80}]}]},
                "status": {"podIP": ip},
            }))
        })
        .collect();
    let policies: Vec<NetworkPolicy> = policies.iter().cloned().map(typed).collect();
    Cluster::build(&namespaces, &pods, &policies).expect("valid")
}

/// If this fails, `-o json` stops printing one entry per ordered pair per probe, or the reason
/// stops naming the rule that allowed a connection.
#[test]
fn connections_cover_every_ordered_pair_with_a_reason() {
    let cluster = world(&[json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-b", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]},
    })]);
    let probe: Probe = "80/TCP".parse().expect("probe");
    let matrix = reachability(&cluster, &[probe]);
    let connections: Vec<Connection> = matrix.connections().collect();
    assert_eq!(connections.len(), 4 * 3);
    let find = |from: &str, to: &str| {
        connections
            .iter()
            .find(|connection| connection.from == from && connection.to == to)
            .expect("connection")
            .clone()
    };
    let allowed = find("x/b", "x/a");
    assert_eq!(allowed.allowed, Some(true));
    assert_eq!(
        allowed.reason,
        "allowed: egress not isolated; ingress allowed by x/allow-b ingress[0]"
    );
    let blocked = find("y/a", "x/a");
    assert_eq!(blocked.allowed, Some(false));
    assert_eq!(
        blocked.reason,
        "blocked: ingress isolated by x/allow-b and no rule allows it"
    );
    let host = find("y/h", "x/b");
    assert_eq!(host.allowed, None);
    assert!(
        host.reason.contains("source uses hostNetwork"),
        "{}",
        host.reason
    );
    assert_eq!(find("x/a", "y/a").allowed, Some(true));
}

/// If this fails, `--explain` no longer shows which peer or port of a rule failed to match,
/// which is the one thing a user debugging a blocked connection needs.
#[test]
fn explanations_show_each_rule_peer_and_port() {
    let cluster = world(&[json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "only-b-on-http", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{
            "from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
            "ports": [{"port": "serve-80-tcp"}],
        }]},
    })]);
    let from = cluster.pod_index("y/a").expect("pod");
    let to = cluster.pod_index("x/a").expect("pod");
    let text = explain(&cluster, from, to, "80/TCP".parse().expect("probe")).to_string();
    assert_eq!(
        text,
        "y/a -> x/a 80/TCP: blocked

egress of y/a: not isolated (no policy selects it with Egress in policyTypes), so every destination passes

ingress of x/a: isolated by x/only-b-on-http
  x/only-b-on-http ingress[0]: does not apply
    from[0] pods pod=b in namespace x: does not match
    ports[0] serve-80-tcp/TCP: matches

blocked: ingress isolated by x/only-b-on-http and no rule allows it"
    );
}
