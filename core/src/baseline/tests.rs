//! The baseline controller's pure decisions.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use netfence_crd::{ClusterBaseline, baseline::Engine};

use super::{
    coverage, engine,
    plan::{BaselineOutcome, Owned, Served, engine_for, plan, status},
    render,
};
use crate::validate::ValidatedBaseline;

fn baseline() -> ValidatedBaseline {
    let resource: ClusterBaseline = serde_json::from_value(serde_json::json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "ClusterBaseline",
        "metadata": {"name": "zero-trust", "uid": "u-1"},
        "spec": {
            "namespaceSelector": {},
            "guardrails": [{"name": "metadata", "action": "Deny", "direction": "Egress", "ipBlock": {"cidr": "169.254.169.254/32"}}]
        }
    }))
    .expect("a baseline");
    ValidatedBaseline::try_from(&resource).expect("valid")
}

fn rendered() -> Vec<super::Object> {
    let baseline = baseline();
    let namespaces = vec![("shop".to_owned(), crate::selector::Labels::new())];
    let coverage = coverage(&baseline, &[], &namespaces, Some("netfence-system"));
    render(
        &baseline,
        engine(&baseline, None),
        &coverage,
        Some("netfence-system"),
    )
    .expect("renders")
}

#[test]
fn the_engine_is_the_specs_when_served_else_the_first_served() {
    let none = Served::default();
    let cnp = Served {
        cluster_network_policy: true,
        ..Served::default()
    };
    let calico_and_cilium = Served {
        calico: true,
        cilium: true,
        ..Served::default()
    };
    assert_eq!(
        engine_for(Some(Engine::Cilium), calico_and_cilium),
        Ok(Engine::Cilium)
    );
    assert_eq!(engine_for(Some(Engine::Cilium), cnp), Err(Engine::Cilium));
    assert_eq!(engine_for(None, calico_and_cilium), Ok(Engine::Calico));
    assert_eq!(engine_for(None, cnp), Ok(Engine::ClusterNetworkPolicy));
    assert_eq!(engine_for(None, none), Ok(Engine::NetworkPolicy));
    assert_eq!(
        engine_for(Some(Engine::NetworkPolicy), none),
        Ok(Engine::NetworkPolicy)
    );
}

fn observed(object: &super::Object) -> Owned {
    let mut value = serde_json::to_value(object).expect("json");
    // What the server adds is not netfence's to compare.
    value["metadata"]["uid"] = "o-1".into();
    value["metadata"]["resourceVersion"] = "7".into();
    value["metadata"]["labels"]["team"] = "someone's own label".into();
    value["status"] = serde_json::json!({"conditions": []});
    Owned {
        key: object.key(),
        uid: Some("o-1".to_owned()),
        object: value,
    }
}

#[test]
fn a_fresh_cluster_gets_everything_and_a_steady_one_nothing() {
    let objects = rendered();
    assert_eq!(objects.len(), 2, "guardrails and baseline");
    let fresh = plan(&objects, &[]);
    assert_eq!(fresh.apply, objects);
    assert!(fresh.delete.is_empty());
    let owned: Vec<Owned> = objects.iter().map(observed).collect();
    let steady = plan(&objects, &owned);
    assert!(
        steady.apply.is_empty() && steady.delete.is_empty(),
        "{steady:?}"
    );
}

#[test]
fn a_rule_list_someone_adds_is_drift_and_the_body_claims_it() {
    let objects = rendered();
    let mut owned: Vec<Owned> = objects.iter().map(observed).collect();
    // The guardrails policy renders no ingress: an ingress list added by hand is drift.
    owned[0].object["spec"]["ingress"] =
        serde_json::json!([{"action": "Accept", "from": [{"namespaces": {}}]}]);
    assert_eq!(plan(&objects, &owned).apply, vec![objects[0].clone()]);
    let body = super::plan::apply_body(&objects[0]);
    assert_eq!(body["spec"]["ingress"], serde_json::json!([]));
    // An empty list the server dropped, and a number written as a float, are not drift.
    let mut owned: Vec<Owned> = objects.iter().map(observed).collect();
    owned[1].object["spec"]["priority"] = serde_json::json!(901.0);
    assert!(plan(&objects, &owned).apply.is_empty());
}

#[test]
fn drift_is_written_back_and_what_is_no_longer_rendered_is_deleted() {
    let objects = rendered();
    let mut owned: Vec<Owned> = objects.iter().map(observed).collect();
    // A tenant opened the baseline's deny: it differs, so it is applied again.
    owned[1].object["spec"]["egress"] = serde_json::json!([]);
    owned.push(Owned {
        key: "ClusterNetworkPolicy/zero-trust-same-namespace-gone".to_owned(),
        uid: Some("o-9".to_owned()),
        object: serde_json::json!({}),
    });
    let drift = plan(&objects, &owned);
    assert_eq!(drift.apply, vec![objects[1].clone()]);
    assert_eq!(
        drift.delete,
        vec![(
            "ClusterNetworkPolicy/zero-trust-same-namespace-gone".to_owned(),
            Some("o-9".to_owned())
        )]
    );
}

#[test]
fn status_reports_the_engine_the_coverage_and_keeps_the_transition_time() {
    let then = Time(Timestamp::from_second(1_000).expect("time"));
    let later = Time(Timestamp::from_second(2_000).expect("time"));
    let done = BaselineOutcome::Done {
        engine: Engine::ClusterNetworkPolicy,
        covered: 3,
        objects: vec!["ClusterNetworkPolicy/zero-trust-baseline".to_owned()],
    };
    let first = status(&done, Some(1), None, then.clone());
    assert_eq!(first.engine, Some(Engine::ClusterNetworkPolicy));
    assert_eq!(first.covered_namespaces, Some(3));
    assert_eq!(first.conditions[0].status, "True");
    assert_eq!(first.conditions[0].reason, "Reconciled");
    let again = status(&done, Some(2), Some(&first), later.clone());
    assert_eq!(again.conditions[0].last_transition_time, then);
    assert_eq!(again.observed_generation, Some(2));
    let not_served = status(
        &BaselineOutcome::EngineNotServed(Engine::Cilium),
        Some(3),
        Some(&again),
        later.clone(),
    );
    assert_eq!(not_served.conditions[0].reason, "EngineNotServed");
    assert_eq!(not_served.conditions[0].last_transition_time, later);
    assert!(
        not_served.conditions[0]
            .message
            .contains("spec.engine is Cilium"),
        "{}",
        not_served.conditions[0].message
    );
    // What it last wrote is still reported.
    assert_eq!(not_served.objects, first.objects);
}
