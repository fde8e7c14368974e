//! Benchmark of the verify engine (prints figures; asserts nothing about time).
//!
//! ```text
//! cargo bench -p netfence --bench verify                # both scenarios
//! cargo bench -p netfence --bench verify -- realistic   # one, so that VmHWM is its own
//! NETFENCE_BENCH_REASONS=1 cargo bench ...              # also time every connection's reason
//! ```
//!
//! A generated cluster of 2,000 pods in 100 namespaces with 600 NetworkPolicies (six per
//! namespace, in the shapes netfence and platform teams write: default deny, DNS, tier flows by
//! pod and named port, cross-namespace by namespace labels and matchExpressions, ipBlock with
//! except) and 4 probes. It times the model build, the grouped matrix, and the expansion of every
//! ordered pair of distinct pods for every probe; then it checks a sample of connections against
//! the per-connection reference semantics, and prints the peak resident memory (`VmHWM`).

use std::time::Instant;

use k8s_openapi::api::{
    core::v1::{Namespace, Pod},
    networking::v1::NetworkPolicy,
};
use netfence_verify::{self as verify, Cluster, Probe, Verdict};
use serde_json::{Value, json};

const NAMESPACES: usize = 100;
const PODS_PER_NAMESPACE: usize = 20;
const APPS: [&str; 5] = ["web", "api", "db", "cache", "worker"];

/// A small deterministic generator, so every run measures the same cluster.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % bound
    }
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("generated object")
}

fn namespace_name(index: usize) -> String {
    match index {
        0 => "kube-system".to_owned(),
        1 => "ingress-nginx".to_owned(),
        2 => "monitoring".to_owned(),
        other => format!("team-{other:03}"),
    }
}

fn generate() -> (Vec<Namespace>, Vec<Pod>, Vec<NetworkPolicy>) {
    let mut random = Lcg(7);
    let mut namespaces = Vec::new();
    let mut pods = Vec::new();
    let mut policies = Vec::new();
    for index in 0..NAMESPACES {
        let name = namespace_name(index);
        let purpose = match index {
            0 => "system",
            1 => "ingress",
            2 => "monitoring",
            _ => "team",
        };
        namespaces.push(typed(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {
                "purpose": purpose,
                "team": format!("t{}", index % 10),
                "env": if index % 3 == 0 { "staging" } else { "prod" },
            }},
        })));
        for pod in 0..PODS_PER_NAMESPACE {
            let app = match index {
                0 if pod < 2 => "kube-dns",
                2 if pod < 2 => "prometheus",
                _ => APPS[random.next(APPS.len())],
            };
            let mut labels = json!({"app": app, "version": format!("v{}", random.next(3))});
            if app == "kube-dns" {
                labels["k8s-app"] = json!("kube-dns");
            }
            if random.next(4) == 0 {
                labels["canary"] = json!("true");
            }
            pods.push(typed(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{app}-{pod}"), "namespace": name, "labels": labels},
                "spec": {
                    "hostNetwork": index == 0 && pod == 19,
                    "containers": [{"name": "main", "image": "app", "ports": [
                        {"name": "http", "containerPort": 8080},
                        {"name": "metrics", "containerPort": 9090},
                        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                        {"name": if app == "db" { "postgres" } else { "pg-unused" }, "containerPort": 5432},
                    ]}],
                },
                "status": {"podIP": format!("10.{}.{}.{}", index / 200, index % 200, pod + 10)},
            })));
        }
        policies.extend(namespace_policies(index));
    }
    (namespaces, pods, policies)
}

/// The six policies of one namespace (kube-system's DNS pods accept queries instead of web).
fn namespace_policies(index: usize) -> Vec<NetworkPolicy> {
    let mut policies = Vec::new();
    let policy = |name: &str, spec: Value| -> NetworkPolicy {
        typed(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace_name(index)},
            "spec": spec,
        }))
    };
    policies.push(policy(
        "default-deny",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    ));
    policies.push(policy("allow-dns", json!({
        "podSelector": {}, "policyTypes": ["Egress"],
        "egress": [{"to": [{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }], "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}],
    })));
    if index == 0 {
        // kube-system: its DNS pods accept queries from every namespace.
        policies.push(policy("dns-from-everywhere", json!({
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": "dns", "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}],
        })));
    } else {
        policies.push(policy("web", json!({
        "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"purpose": "ingress"}}}], "ports": [{"port": "http"}]}],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "api"}}}], "ports": [{"port": "http"}]}],
        })));
    }
    policies.push(policy("api", json!({
        "podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [
            {"podSelector": {"matchLabels": {"app": "web"}}},
            {"namespaceSelector": {"matchLabels": {"team": format!("t{}", index % 10)}},
             "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["worker", "api"]}]}},
        ], "ports": [{"port": 8080, "endPort": 8090}]}],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}, {"podSelector": {"matchLabels": {"app": "cache"}}}]}],
    })));
    policies.push(policy("data", json!({
        "podSelector": {"matchExpressions": [
            {"key": "app", "operator": "In", "values": ["db", "cache"]},
            {"key": "canary", "operator": "DoesNotExist"},
        ]},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}], "ports": [{"port": "postgres"}, {"port": 9090}]}],
    })));
    policies.push(policy("monitoring-and-egress", json!({
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{
            "namespaceSelector": {"matchLabels": {"purpose": "monitoring"}},
            "podSelector": {"matchLabels": {"app": "prometheus"}},
        }], "ports": [{"port": "metrics"}]}],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [format!("10.0.{}.0/24", index % 200)]}}], "ports": [{"port": 9090}]}],
    })));
    policies
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The worst case for grouping: every pod carries a unique `id`, and policies select and admit
/// pods by id, so almost no two pods share a class.
fn generate_distinct() -> (Vec<Namespace>, Vec<Pod>, Vec<NetworkPolicy>) {
    let mut random = Lcg(13);
    let total = NAMESPACES * PODS_PER_NAMESPACE;
    let mut namespaces = Vec::new();
    let mut pods = Vec::new();
    let mut policies = Vec::new();
    for index in 0..NAMESPACES {
        let name = format!("ns-{index:03}");
        namespaces.push(typed(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        ));
        for pod in 0..PODS_PER_NAMESPACE {
            let id = index * PODS_PER_NAMESPACE + pod;
            pods.push(typed(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("pod-{id}"), "namespace": name, "labels": {"id": format!("p{id}")}},
                "spec": {"containers": [{"name": "main", "image": "app", "ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"podIP": format!("10.{}.{}.{}", id / 65536, (id / 256) % 256, id % 256)},
            })));
        }
        for policy in 0..6 {
            let own: Vec<String> = (0..3)
                .map(|_| {
                    format!(
                        "p{}",
                        index * PODS_PER_NAMESPACE + random.next(PODS_PER_NAMESPACE)
                    )
                })
                .collect();
            let peers: Vec<String> = (0..5).map(|_| format!("p{}", random.next(total))).collect();
            policies.push(typed(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("policy-{policy}"), "namespace": name},
                "spec": {
                    "podSelector": {"matchExpressions": [{"key": "id", "operator": "In", "values": own}]},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "id", "operator": "In", "values": peers}]}}], "ports": [{"port": "http"}]}],
                    "egress": [{"to": [{"ipBlock": {"cidr": format!("10.0.{}.0/24", random.next(8))}}]}],
                },
            })));
        }
    }
    (namespaces, pods, policies)
}

fn main() {
    let probes: Vec<Probe> = ["8080/TCP", "9090/TCP", "53/UDP", "5432/TCP"]
        .iter()
        .map(|text| text.parse().expect("probe"))
        .collect();
    // `cargo bench -p netfence --bench verify -- realistic` (or `worst`) runs one scenario, so
    // that its peak RSS is its own.
    let chosen: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wants = |name: &str| chosen.is_empty() || chosen.iter().any(|arg| arg == name);
    if wants("realistic") {
        run("realistic", generate(), &probes);
    }
    if wants("worst") {
        run("worst case for grouping", generate_distinct(), &probes);
    }
}

fn run(scenario: &str, objects: (Vec<Namespace>, Vec<Pod>, Vec<NetworkPolicy>), probes: &[Probe]) {
    let (namespaces, pods, policies) = objects;
    println!(
        "\n{scenario}: {} namespaces, {} pods, {} NetworkPolicies, {} probes",
        namespaces.len(),
        pods.len(),
        policies.len(),
        probes.len()
    );

    let start = Instant::now();
    let cluster = Cluster::build(&namespaces, &pods, &policies).expect("valid cluster");
    let built = start.elapsed();

    let start = Instant::now();
    let matrix = verify::reachability(&cluster, probes);
    let computed = start.elapsed();

    let start = Instant::now();
    let pod_count = cluster.pods().len();
    let mut allowed = vec![0u64; probes.len()];
    let mut not_governed = 0u64;
    for (probe, count) in allowed.iter_mut().enumerate() {
        for from in 0..pod_count {
            for to in 0..pod_count {
                if from == to {
                    continue;
                }
                match matrix.verdict(probe, from, to) {
                    Verdict::Allowed => *count += 1,
                    Verdict::NotGoverned => not_governed += 1,
                    Verdict::Blocked => {}
                }
            }
        }
    }
    let expanded = start.elapsed();
    let total = built + computed + expanded;

    // The fast matrix must agree with the rule-by-rule semantics; check a sample.
    let mut random = Lcg(11);
    for _ in 0..20_000 {
        let (from, to, probe) = (
            random.next(pod_count),
            random.next(pod_count),
            random.next(probes.len()),
        );
        // Reachability sorts its probes: index them through matrix.probes().
        let reference = verify::decide(&cluster, from, to, matrix.probes()[probe]).verdict;
        assert_eq!(
            matrix.verdict(probe, from, to),
            reference,
            "sample {from} -> {to}"
        );
    }
    for (probe, count) in allowed.iter().enumerate() {
        assert_eq!(*count, matrix.allowed_count(probe));
    }

    let pairs = (pod_count * (pod_count - 1) * probes.len()) as u64;
    println!(
        "pod classes no policy tells apart: {}",
        matrix.class_count()
    );
    for (probe, count) in matrix.probes().iter().zip(&allowed) {
        println!("  {probe}: {count} allowed connections");
    }
    println!("  not governed (hostNetwork): {not_governed}");
    println!(
        "model build:              {:>8.1} ms",
        built.as_secs_f64() * 1e3
    );
    println!(
        "grouping and matrix:      {:>8.1} ms",
        computed.as_secs_f64() * 1e3
    );
    println!(
        "expansion of {pairs} verdicts: {:>8.1} ms",
        expanded.as_secs_f64() * 1e3
    );
    println!(
        "total:                    {:>8.1} ms",
        total.as_secs_f64() * 1e3
    );
    print_peak_rss();

    if std::env::var_os("NETFENCE_BENCH_REASONS").is_some() {
        // What `-o json` streams: every connection with its reason string.
        let start = Instant::now();
        let connections = matrix.connections().count();
        println!(
            "{connections} connections with reasons: {:>8.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
        print_peak_rss();
    }
}

#[allow(clippy::cast_precision_loss)] // KiB counts are far below 2^52
fn print_peak_rss() {
    match peak_rss_kib() {
        Some(kib) => println!("peak RSS (VmHWM):         {:>8.1} MiB", kib as f64 / 1024.0),
        None => println!("peak RSS: /proc/self/status is not available"),
    }
}
