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
