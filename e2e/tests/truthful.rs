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
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use netfence_core::plan::is_owned_by;
use netfence_crd::NamespaceIsolation;
use netfence_e2e::{Env, env::LIMIT, shop};
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
/// converged resource is otherwise looked at again only after an hour). Deleted, the warning
/// comes back at once; created again, it goes again.
///
/// If this fails, a typo in `namespace: monitoring` silently allows nothing (or the warning
/// stays after the namespace exists, or is missing after it was deleted), and nobody is told
/// why the scrape fails.
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
    let events = netfence_e2e::eventually(LIMIT, || async {
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
        .wait_isolation(
            &namespace,
            "shop",
            "Ready True without a warning",
            |found| {
                ready(found).is_some_and(|(status, _, message)| {
                    status == "True" && !message.contains("warning")
                })
            },
        )
        .await;
    let (_, _, message) = ready(&cleared).expect("a Ready condition");
    assert_eq!(message, "5 NetworkPolicies match the spec");

    // Deleted: the warning comes back once the namespace is gone (not at the hourly resync);
    // created again: it goes again.
    namespaces
        .delete(&monitoring, &DeleteParams::default())
        .await
        .expect("namespace deleted");
    env.wait_isolation(&namespace, "shop", "the warning back", |found| {
        ready(found)
            .is_some_and(|(status, _, message)| status == "True" && message.ends_with(&warning))
    })
    .await;
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": monitoring}})).expect("namespace"),
        )
        .await
        .expect("namespace created again");
    env.wait_isolation(
        &namespace,
        "shop",
        "Ready True without a warning again",
        |found| {
            ready(found).is_some_and(|(status, _, message)| {
                status == "True" && !message.contains("warning")
            })
        },
    )
    .await;
    let _ = namespaces
        .delete(&monitoring, &DeleteParams::default())
        .await;
    env.finish().await;
}

/// The names of the policies of `namespace` that `selector` selects, sorted.
async fn selected(env: &Env, namespace: &str, selector: &str) -> Vec<String> {
    let mut names: Vec<String> = env
        .policies(namespace)
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    names
}

/// `shop` with `deletionPolicy`, Reconciled, then deleted: returns once it is gone and
/// `expected` policies are left.
async fn keep(env: &Env, namespace: &str, deletion: &str, expected: &[&str]) {
    let mut resource = shop(namespace);
    resource["spec"]["deletionPolicy"] = json!(deletion);
    env.create(&resource).await;
    env.wait_isolation(
        namespace,
        "shop",
        "Reconciled with its finalizer",
        |found| {
            ready(found).is_some_and(|(_, reason, _)| reason == "Reconciled")
                && found
                    .finalizers()
                    .iter()
                    .any(|f| f == netfence_core::meta::FINALIZER)
        },
    )
    .await;
    env.isolations(namespace)
        .delete("shop", &DeleteParams::default())
        .await
        .expect("deleted");
    let left = netfence_e2e::eventually(LIMIT, || async {
        let gone = env
            .isolations(namespace)
            .get_opt("shop")
            .await
            .ok()?
            .is_none();
        let names: Vec<String> = env.policy_names(namespace).await.into_iter().collect();
        (gone && names == expected).then_some(())
    })
    .await;
    assert!(
        left.is_some(),
        "{namespace}: expected {expected:?} left, found {:?}",
        env.policy_names(namespace).await
    );
}

/// What `KeepDefaultDeny` and `Orphan` keep is no longer labelled as managed by netfence
/// (nobody manages it: drift is not corrected, nothing prunes it): `kubectl get netpol -l
/// app.kubernetes.io/managed-by=netfence` no longer lists it. It keeps `netfence.io/isolation`,
/// and a new resource of the same name takes it back, labelled managed again.
///
/// If this fails, the selector every user and dashboard relies on lists policies nobody
/// manages, or a recreated resource no longer takes back what its predecessor kept.
#[tokio::test]
async fn kept_policies_are_not_labelled_as_managed() {
    let mut env = Env::start().await;
    for (deletion, expected) in [
        (
            "KeepDefaultDeny",
            &["shop-allow-dns", "shop-default-deny"][..],
        ),
        (
            "Orphan",
            &[
                "shop-allow-dns",
                "shop-default-deny",
                "shop-tier-backend",
                "shop-tier-database",
                "shop-tier-frontend",
            ][..],
        ),
    ] {
        let namespace = env.watched_namespace("kept-labels").await;
        keep(&env, &namespace, deletion, expected).await;
        assert!(
            selected(&env, &namespace, "app.kubernetes.io/managed-by=netfence")
                .await
                .is_empty(),
            "{deletion}: kept policies still say netfence manages them"
        );
        assert_eq!(
            selected(&env, &namespace, "netfence.io/isolation=shop").await,
            expected,
            "{deletion}: kept policies keep the isolation label"
        );
        for policy in env
            .policies(&namespace)
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
        {
            assert!(
                policy.owner_references().is_empty(),
                "{deletion}: {} kept an owner",
                policy.name_any()
            );
        }

        // A new `shop` takes them back: owned, and labelled managed again.
        env.create(&shop(&namespace)).await;
        let back = env
            .wait_isolation(&namespace, "shop", "Ready with its 5 policies", |found| {
                ready(found).is_some_and(|(_, reason, _)| reason == "Reconciled")
                    && found.status.as_ref().map(|s| s.policies.len()) == Some(5)
            })
            .await;
        let uid = back.uid().expect("a uid");
        let managed = selected(&env, &namespace, "app.kubernetes.io/managed-by=netfence").await;
        assert_eq!(managed.len(), 5, "{deletion}: {managed:?}");
        for policy in env
            .policies(&namespace)
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
        {
            assert!(
                is_owned_by(&policy, &uid),
                "{deletion}: {} is not the new resource's",
                policy.name_any()
            );
        }
    }
    env.finish().await;
}

/// The README's way to remove a kept policy (a cluster admin deletes it): the other resources
/// of the namespace see it go at once, by the watch of the policies netfence does not manage,
/// not at a periodic recheck: the intent audit of `team` counted the kept deny and DNS policies
/// among those that apply in its namespace, and stops counting them.
///
/// If this fails, a namespace's status describes policies that are gone (for an hour, until
/// the next resync): the proof that the namespace is isolated as declared is a proof about
/// something else.
#[tokio::test]
async fn deleting_kept_policies_updates_the_namespace_at_once() {
    let mut env = Env::start().await;
    let namespace = env.watched_namespace("kept-deleted").await;
    keep(
        &env,
        &namespace,
        "KeepDefaultDeny",
        &["shop-allow-dns", "shop-default-deny"],
    )
    .await;
    let mut team = shop(&namespace);
    team["metadata"]["name"] = json!("team");
    env.create(&team).await;
    let isolated = |count: usize| {
        move |found: &NamespaceIsolation| {
            found.status.as_ref().is_some_and(|status| {
                status.conditions.iter().any(|condition| {
                    condition.type_ == "Isolated"
                        && condition
                            .message
                            .contains(&format!("the {count} NetworkPolicies that apply"))
                })
            })
        }
    };
    env.wait_isolation(
        &namespace,
        "team",
        "its audit counts 7 policies",
        isolated(7),
    )
    .await;
    for name in ["shop-default-deny", "shop-allow-dns"] {
        env.policies(&namespace)
            .delete(name, &DeleteParams::default())
            .await
            .expect("the admin deletes a kept policy");
    }
    env.wait_isolation(
        &namespace,
        "team",
        "its audit counts 5 policies",
        isolated(5),
    )
    .await;
    env.finish().await;
}

/// A policy labelled as netfence's that nobody controls and that no resource of this name may
/// take back (its `netfence.io/isolation` names another resource) holds `shop`'s default deny
/// name: nothing of `shop` is written (no allow without its deny) and the namespace has no deny
/// of shop's. Deleting that policy must let `shop` write at once: its deletion reconciles the
/// resources of the namespace, not only the resource its label names (there is none).
///
/// If this fails, the namespace stays without shop's default deny until the 30 s conflict
/// recheck: open for up to 30 s after the name was freed.
#[tokio::test]
async fn a_freed_deny_name_is_written_at_once() {
    let mut env = Env::start().await;
    let namespace = env.watched_namespace("freed-name").await;
    env.create_policy(
        &namespace,
        &json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "shop-default-deny", "namespace": namespace, "labels": {
                "app.kubernetes.io/managed-by": "netfence",
                "netfence.io/isolation": "another",
                "netfence.io/role": "default-deny",
            }},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
        }),
    )
    .await;
    env.create(&shop(&namespace)).await;
    env.wait_isolation(
        &namespace,
        "shop",
        "ApplyFailed: the deny's name is taken",
        |found| {
            ready(found).is_some_and(|(_, reason, message)| {
                reason == "ApplyFailed" && message.contains("shop-default-deny exists")
            })
        },
    )
    .await;
    env.policies(&namespace)
        .delete("shop-default-deny", &DeleteParams::default())
        .await
        .expect("deleted");
    // Well under the conflict recheck (30 s): only a watch trigger gets there in time.
    let api = env.isolations(&namespace);
    let written = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        loop {
            if let Ok(Some(found)) = api.get_opt("shop").await
                && ready(&found).is_some_and(|(_, reason, _)| reason == "Reconciled")
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        written.is_ok(),
        "shop did not write its policies within 15 s of the name being freed: {:?}",
        env.policy_names(&namespace).await
    );
    assert!(
        env.policy_names(&namespace)
            .await
            .contains("shop-default-deny")
    );
    env.finish().await;
}
