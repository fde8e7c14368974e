//! The diff of real specs: a flow added, a shared service removed, a tier's selector changed,
//! and changes that are no connectivity change (tiers renamed, flows reordered).

use std::collections::BTreeMap;

use netfence_core::{ValidatedIsolation, render};
use serde_json::{Value, json};

use super::*;

fn validated(spec: &Value) -> ValidatedIsolation {
    super::super::tests::validated(&json!({
        "apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": spec,
    }))
}

fn shop() -> Value {
    json!({
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
            {"name": "metrics", "direction": "Ingress", "namespace": "monitoring",
             "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
             "tiers": ["backend"], "ports": [{"port": "metrics"}]},
        ],
    })
}

/// The diff between two specs, each side its rendered policies.
fn diff(before: &Value, after: &Value) -> NamespaceDiff {
    let (before, after) = (validated(before), validated(after));
    let (policies_before, policies_after) = (
        render::network_policies(&before),
        render::network_policies(&after),
    );
    let (isolations_before, isolations_after) = ([&before], [&after]);
    let wide = ClusterWidePolicies::default();
    let labels = BTreeMap::new();
    let side = |isolations, policies| Side {
        isolations,
        policies,
        cluster_wide: &wide,
        labels: &labels,
    };
    compare(
        "shop",
        &side(&isolations_before, &policies_before),
        &side(&isolations_after, &policies_after),
    )
    .expect("valid policies")
}

fn edges(edges: &[Edge]) -> Vec<String> {
    edges
        .iter()
        .map(|edge| format!("{} -> {}: {}", edge.from, edge.to, edge.ports))
        .collect()
}

/// If this fails, a reviewer is told about connections a new flow does not open (or not told
/// about the one it does).
#[test]
fn a_new_flow_opens_exactly_that_flow() {
    let before = shop();
    let mut after = shop();
    after["flows"]
        .as_array_mut()
        .expect("flows")
        .push(json!({"from": "frontend", "to": "database", "ports": [{"port": 5432}]}));
    let diff = diff(&before, &after);
    assert_eq!(edges(&diff.opened), ["frontend -> database: 5432/TCP"]);
    assert!(diff.closed.is_empty(), "{:?}", diff.closed);
    let policies = &diff.opened[0].policies;
    assert!(
        policies.iter().any(|policy| policy.contains("database"))
            && policies.iter().any(|policy| policy.contains("frontend")),
        "the policies that now allow it, both ends: {policies:?}"
    );
}

/// If this fails, removing a shared service goes unseen in review, or shows as more than the
/// peer losing its ports.
#[test]
fn a_removed_shared_service_closes_its_peer() {
    let before = shop();
    let mut after = shop();
    after["sharedServices"] = json!([]);
    let diff = diff(&before, &after);
    assert!(diff.opened.is_empty(), "{:?}", diff.opened);
    assert_eq!(
        edges(&diff.closed),
        ["monitoring/metrics-peer -> backend: metrics/TCP"]
    );
}

/// If this fails, a change that alters no connection (tiers renamed, flows and tiers
/// reordered) is reported as opening or closing something.
#[test]
fn renames_and_reordering_change_nothing() {
    let before = shop();
    let after = json!({
        "tiers": [
            {"name": "db", "podSelector": {"matchLabels": {"tier": "database"}}},
            {"name": "api", "podSelector": {"matchLabels": {"tier": "backend"}}},
            {"name": "web", "podSelector": {"matchLabels": {"tier": "frontend"}}},
        ],
        "flows": [
            {"from": "api", "to": "db", "ports": [{"port": 5432, "protocol": "TCP"}]},
            {"from": "web", "to": "api", "ports": [{"port": 8080}]},
        ],
        "sharedServices": [
            {"name": "metrics", "direction": "Ingress", "namespace": "monitoring",
             "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
             "tiers": ["api"], "ports": [{"port": "metrics"}]},
        ],
    });
    let diff = diff(&before, &after);
    assert!(!diff.changed(), "{:?} {:?}", diff.opened, diff.closed);
    assert!(
        diff.world
            .endpoints
            .iter()
            .any(|endpoint| endpoint.label == "db"),
        "the world names tiers as the side after does"
    );
}

/// If this fails, a tier whose selector changed is compared as if its pods had stayed the same:
/// the pods that leave the tier lose its flows, and the ones that join gain them.
#[test]
fn a_changed_selector_moves_the_flows_to_other_pods() {
    let before = shop();
    let mut after = shop();
    after["tiers"][2]["podSelector"] = json!({"matchLabels": {"tier": "postgres"}});
    let diff = diff(&before, &after);
    assert_eq!(edges(&diff.opened), ["backend -> database: 5432/TCP"]);
    assert_eq!(
        edges(&diff.closed),
        [format!("backend -> database {BEFORE}: 5432/TCP")]
    );
}

/// If this fails, a namespace isolated for the first time is not shown closing what was open.
#[test]
fn a_new_isolation_closes_what_was_open() {
    let after = validated(&shop());
    let policies = render::network_policies(&after);
    let wide = ClusterWidePolicies::default();
    let labels = BTreeMap::new();
    let isolations = [&after];
    let diff = compare(
        "shop",
        &Side {
            isolations: &[],
            policies: &[],
            cluster_wide: &wide,
            labels: &labels,
        },
        &Side {
            isolations: &isolations,
            policies: &policies,
            cluster_wide: &wide,
            labels: &labels,
        },
    )
    .expect("valid");
    assert!(diff.opened.is_empty(), "{:?}", diff.opened);
    let closed = edges(&diff.closed);
    assert!(
        closed.contains(&"frontend -> database: every port".to_owned()),
        "{closed:#?}"
    );
    assert!(
        closed.contains(&"frontend -> backend: every port except 8080/TCP".to_owned()),
        "the declared flow stays open on its port: {closed:#?}"
    );
}

/// If this fails, a selector that gains a value (or a `NotIn`) keeps its one model pod and the
/// pods it gains (or loses) go unseen: the diff says nothing changed.
#[test]
fn a_selector_that_keeps_its_model_pod_still_shows_its_change() {
    let before = shop();
    let mut wider = shop();
    wider["tiers"][1]["podSelector"] = json!({"matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["backend", "worker"]},
    ]});
    let widened = diff(&before, &wider);
    assert_eq!(
        edges(&widened.opened),
        [
            "frontend -> backend (tier=worker): 8080/TCP",
            "monitoring/metrics-peer -> backend (tier=worker): metrics/TCP",
            "backend (tier=worker) -> database: 5432/TCP",
        ],
        "the worker pods join the tier, and its shared service"
    );
    let mut narrower = shop();
    narrower["tiers"][1]["podSelector"] = json!({
        "matchLabels": {"tier": "backend"},
        "matchExpressions": [{"key": "version", "operator": "NotIn", "values": ["v1"]}],
    });
    let without_v1 = diff(&before, &narrower);
    assert!(without_v1.opened.is_empty(), "{:?}", without_v1.opened);
    assert!(
        edges(&without_v1.closed)
            .contains(&"frontend -> backend (tier=backend, version=v1): 8080/TCP".to_owned()),
        "the v1 pods leave the tier: {:?}",
        edges(&without_v1.closed)
    );
}

/// If this fails, a shared service whose namespace selector narrows keeps one model namespace
/// for both sides, and the namespaces that lose access go unseen.
#[test]
fn a_narrowed_namespace_selector_closes_the_namespaces_left_out() {
    let mut after = shop();
    after["sharedServices"][0] = json!({"name": "metrics", "direction": "Ingress",
        "namespaceSelector": {"matchLabels": {"team": "monitoring", "env": "prod"}},
        "tiers": ["backend"], "ports": [{"port": "metrics"}]});
    let mut wide = shop();
    wide["sharedServices"][0] = json!({"name": "metrics", "direction": "Ingress",
        "namespaceSelector": {"matchLabels": {"team": "monitoring"}},
        "tiers": ["backend"], "ports": [{"port": "metrics"}]});
    let diff = diff(&wide, &after);
    assert!(diff.opened.is_empty(), "{:?}", diff.opened);
    assert_eq!(diff.closed.len(), 1, "{:?}", edges(&diff.closed));
    assert!(diff.closed[0].to == "backend", "{:?}", edges(&diff.closed));
}

/// If this fails, an ipBlock whose `except` shrinks opens addresses the diff never probes.
#[test]
fn a_shrunk_except_opens_what_it_no_longer_excepts() {
    let with_except = |except: &str| {
        let mut spec = shop();
        spec["sharedServices"] = json!([{"name": "api", "direction": "Egress",
            "ipBlock": {"cidr": "10.0.0.0/8", "except": [except]},
            "tiers": ["backend"], "ports": [{"port": 443}]}]);
        spec
    };
    let diff = diff(&with_except("10.1.0.0/16"), &with_except("10.1.0.0/24"));
    assert!(diff.closed.is_empty(), "{:?}", diff.closed);
    assert!(
        edges(&diff.opened).iter().all(
            |edge| edge.starts_with("backend -> external 10.1.") && edge.ends_with(": 443/TCP")
        ),
        "{:?}",
        edges(&diff.opened)
    );
    assert!(!diff.opened.is_empty());
}

/// If this fails, a shared service whose pod selector gains a value keeps its one model peer
/// pod, and the pods that gain access go unseen.
#[test]
fn a_widened_peer_selector_opens_for_the_pods_it_adds() {
    let before = shop();
    let mut after = shop();
    after["sharedServices"][0]["podSelector"] = json!({"matchExpressions": [
        {"key": "app.kubernetes.io/name", "operator": "In", "values": ["prometheus", "grafana"]},
    ]});
    let diff = diff(&before, &after);
    assert!(diff.closed.is_empty(), "{:?}", diff.closed);
    assert_eq!(diff.opened.len(), 1, "{:?}", edges(&diff.opened));
    let edge = &diff.opened[0];
    assert_eq!(
        (edge.to.as_str(), edge.ports.as_str()),
        ("backend", "metrics/TCP")
    );
    let source = &diff.world.endpoints[edge.source].pod;
    assert_eq!(
        (
            source.namespace.as_str(),
            source
                .labels
                .get("app.kubernetes.io/name")
                .map(String::as_str)
        ),
        ("monitoring", Some("grafana")),
        "the grafana pods gain the scrape"
    );
}
