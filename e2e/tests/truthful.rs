//! What netfence tells a user must be true (issue 21): the status of a resource that never had a
//! valid spec, a shared service naming a namespace that does not exist, and the labels of the
//! policies a deleted resource kept. Each scenario failed before its fix and passes after.
//!
//! Every scenario runs against its own sandbox, or against the cluster of
//! `NETFENCE_E2E_KUBECONFIG` in namespaces of its own, in the shared [`Env`]. Scenarios with a
//! cluster-wide controller take turns on a real cluster ([`Env::start_alone`]). A real cluster
//! must not run netfence itself meanwhile.

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use netfence_crd::NamespaceIsolation;
use netfence_e2e::{Env, shop};
use serde_json::json;

/// The Ready condition's status, reason and message.
fn ready(isolation: &NamespaceIsolation) -> Option<(String, String, String)> {
    let condition = isolation
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|condition| condition.type_ == "Ready")?;
    (isolation.status.as_ref()?.observed_generation == isolation.metadata.generation).then(|| {
        (
            condition.status.clone(),
            condition.reason.clone(),
            condition.message.clone(),
        )
    })
}

/// A brand-new NamespaceIsolation whose spec is invalid owns no policy: its status says the
/// namespace is not isolated, not that "the previous NetworkPolicies are kept". Once it was
/// valid (and wrote its policies), a later invalid spec does keep them, and says so.
///
/// If this fails, a user whose very first apply has a typo reads that their namespace is
/// protected while every pod in it is open.
#[tokio::test]
async fn a_new_invalid_resource_says_the_namespace_is_not_isolated() {
    let mut env = Env::start().await;
    let namespace = env.watched_namespace("invalid-new").await;
    // Admitted by the CRD, refused by netfence's validation (a label value may not start
    // with a dash).
    let mut resource = shop(&namespace);
    resource["spec"]["tiers"][0]["podSelector"]["matchLabels"]["tier"] = json!("-bad-");
    env.create(&resource).await;
    let first = env.wait_reason(&namespace, "shop", "InvalidSpec").await;
    let (status, _, message) = ready(&first).expect("a Ready condition");
    assert_eq!(status, "False");
    assert!(
        message.contains("spec.tiers[0].podSelector")
            && message.ends_with(
                "no NetworkPolicies were generated yet: the namespace is not isolated by this resource until the spec is fixed"
            ),
        "{message}"
    );
    assert!(!message.contains("kept"), "{message}");
    assert!(env.policy_names(&namespace).await.is_empty());

    // Fixed, then broken again: now its policies exist and are kept.
    env.isolations(&namespace)
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tiers": shop(&namespace)["spec"]["tiers"]}})),
        )
        .await
        .expect("fixed");
    env.wait_reason(&namespace, "shop", "Reconciled").await;
    env.isolations(&namespace)
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tiers": resource["spec"]["tiers"]}})),
        )
        .await
        .expect("broken again");
    let again = env.wait_reason(&namespace, "shop", "InvalidSpec").await;
    let (_, _, message) = ready(&again).expect("a Ready condition");
    assert!(
        message.ends_with("; the previous NetworkPolicies are kept"),
        "{message}"
    );
    assert_eq!(env.policy_names(&namespace).await.len(), 5);
    env.finish().await;
}

/// A shared service naming a namespace that does not exist (yet): the resource is Ready (its
/// policies are right, and under GitOps the namespace may come later), its Ready message warns
/// naming the field, and a Warning Event `NamespaceNotFound` says it once. When the namespace is
/// created, the warning goes at once: the namespace's creation reconciles the resource (a
/// converged resource is otherwise looked at again only after an hour).
///
/// If this fails, a typo in `namespace: monitoring` silently allows nothing (or the warning
/// stays after the namespace exists), and nobody is told why the scrape fails.
#[tokio::test]
async fn a_shared_service_naming_a_missing_namespace_warns_until_it_exists() {
    let mut env = Env::start_alone().await;
    env.start_controller(None);
    let namespace = env.namespace("missing-peer").await;
    let monitoring = format!("monitoring-{}", env.run);
    let mut resource = shop(&namespace);
    resource["spec"]["sharedServices"] = json!([{
        "name": "metrics", "direction": "Ingress", "namespace": monitoring,
        "tiers": ["backend"], "ports": [{"port": 9090}],
    }]);
    env.create(&resource).await;
    let warning = format!(
        "warning: spec.sharedServices[0].namespace: namespace \"{monitoring}\" does not exist, so shared service metrics allows no traffic until it is created"
    );
    let warned = env
        .wait_isolation(&namespace, "shop", "Ready True with the warning", |found| {
            ready(found).is_some_and(|(status, reason, message)| {
                status == "True" && reason == "Reconciled" && message.ends_with(&warning)
            })
        })
        .await;
    assert_eq!(warned.status.as_ref().map(|s| s.policies.len()), Some(5));
    let events = netfence_e2e::eventually(netfence_e2e::env::LIMIT, || async {
        let found = env.events(&namespace, "shop", "NamespaceNotFound").await;
        (!found.is_empty()).then_some(found)
    })
    .await
    .expect("a NamespaceNotFound Event");
    assert!(
        events[0]
            .note
            .as_deref()
            .is_some_and(|note| note.contains(&monitoring)),
        "{:?}",
        events[0].note
    );

    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": monitoring}})).expect("namespace"),
        )
        .await
        .expect("namespace created");
    let cleared = env
        .wait_isolation(&namespace, "shop", "Ready True without a warning", |found| {
            ready(found).is_some_and(|(status, _, message)| {
                status == "True" && !message.contains("warning")
            })
        })
        .await;
    let (_, _, message) = ready(&cleared).expect("a Ready condition");
    assert_eq!(message, "5 NetworkPolicies match the spec");
    let _ = namespaces
        .delete(&monitoring, &DeleteParams::default())
        .await;
    env.finish().await;
}
