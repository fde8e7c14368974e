//! Object lifecycle: status isolation, generation, owner-reference garbage collection,
//! finalizers, namespace deletion.

use std::time::Duration;

use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{Namespace, Pod},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
};
use netfence_e2e::{Cluster, eventually};
use serde_json::json;

use super::common::{code, isolation, isolations, object, status};

const PATIENCE: Duration = Duration::from_secs(60);

async fn is_gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(PATIENCE, || async {
        match api.get(name).await {
            Err(error) if code(&error) == Some(404) => Some(()),
            _ => None,
        }
    })
    .await
    .is_some()
}

/// Writes to `/status` change only status, and writes to the object leave status alone. If
/// this fails, the controller's status report erases a user's spec edit, or a `kubectl apply`
/// of the spec wipes the reported readiness.
#[tokio::test]
async fn status_and_spec_are_written_separately() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("status").await.expect("namespace");
    let api = isolations(&cluster.client(), &namespace.name);
    api.create(&PostParams::default(), &object(isolation("shop")))
        .await
        .expect("create");
    let patch =
        json!({"status": {"observedGeneration": 1, "policyCount": 3}, "spec": {"mode": "DryRun"}});
    let written = api
        .patch_status("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("status patch");
    assert_eq!(written.data["status"]["policyCount"], json!(3));
    assert_eq!(
        written.data["spec"]["mode"],
        json!("Enforce"),
        "a status write ignores spec"
    );
    assert_eq!(
        written.metadata.generation,
        Some(1),
        "a status write keeps the generation"
    );

    let spec_patch = json!({"spec": {"sameNamespace": "Allow"}, "status": {"policyCount": 99}});
    let written = api
        .patch("shop", &PatchParams::default(), &Patch::Merge(&spec_patch))
        .await
        .expect("spec patch");
    assert_eq!(written.data["spec"]["sameNamespace"], json!("Allow"));
    assert_eq!(
        written.data["status"]["policyCount"],
        json!(3),
        "a spec write ignores status"
    );

    let applied_status = json!({
        "apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation", "metadata": {"name": "shop"},
        "status": {"policies": ["shop-default-deny"]}
    });
    let written = api
        .patch_status(
            "shop",
            &PatchParams::apply("netfence").force(),
            &Patch::Apply(&applied_status),
        )
        .await
        .expect("status apply");
    let entry = written
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|entry| entry.manager.as_deref() == Some("netfence"))
        .expect("the status manager is recorded");
    assert_eq!(entry.subresource.as_deref(), Some("status"));
    namespace.cleanup().await;
    cluster.stop().await;
}

/// `metadata.generation` moves when the spec changes, not for labels or status. If this fails,
/// `observedGeneration` in status (what Argo CD and Flux read) never matches, or matches a spec
/// that changed.
#[tokio::test]
async fn generation_moves_only_with_the_spec() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("generation").await.expect("namespace");
    let api = isolations(&cluster.client(), &namespace.name);
    let created = api
        .create(&PostParams::default(), &object(isolation("shop")))
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    let labelled = api
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .expect("label");
    assert_eq!(labelled.metadata.generation, Some(1));
    let status_written = api
        .patch_status(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"policyCount": 1}})),
        )
        .await
        .expect("status");
    assert_eq!(status_written.metadata.generation, Some(1));
    let changed = api
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "DryRun"}})),
        )
        .await
        .expect("spec");
    assert_eq!(changed.metadata.generation, Some(2));
    namespace.cleanup().await;
    cluster.stop().await;
}

/// Only the kinds whose upstream strategy keeps a generation get one: a Namespace or a Lease has
/// none, a NetworkPolicy starts at 1. If this fails, `kubectl diff` and `get -o yaml` against
/// the sandbox show a `generation` the real server never writes.
#[tokio::test]
async fn only_kinds_with_a_generation_get_one() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("no-generation").await.expect("namespace");
    let client = cluster.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let read = namespaces.get(&namespace.name).await.expect("namespace");
    assert_eq!(
        read.metadata.generation, None,
        "a Namespace keeps no generation"
    );
    let labelled = namespaces
        .patch(
            &namespace.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .expect("label the namespace");
    assert_eq!(labelled.metadata.generation, None);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace.name);
    let lease = leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}}),
            )
            .expect("lease"),
        )
        .await
        .expect("create the lease");
    assert_eq!(
        lease.metadata.generation, None,
        "a Lease keeps no generation"
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(client, &namespace.name);
    let policy = policies
        .create(&PostParams::default(), &owned_policy("p", &[]))
        .await
        .expect("create the policy");
    assert_eq!(policy.metadata.generation, Some(1));
    namespace.cleanup().await;
    cluster.stop().await;
}

fn owned_policy(name: &str, owners: &[&DynamicObject]) -> NetworkPolicy {
    let references: Vec<serde_json::Value> = owners
        .iter()
        .map(|owner| {
            json!({
                "apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation",
                "name": owner.name_any(), "uid": owner.uid().unwrap_or_default(),
                "controller": false, "blockOwnerDeletion": true
            })
        })
        .collect();
    object(json!({
        "metadata": {"name": name, "ownerReferences": references, "labels": {"app.kubernetes.io/managed-by": "netfence"}},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
    }))
}

/// Deleting a NamespaceIsolation deletes the NetworkPolicies it owns (background propagation);
/// a dependent with another living owner only loses the reference. If this fails, deleting a
/// NamespaceIsolation with `deletionPolicy: Delete` leaves its policies behind.
#[tokio::test]
async fn deleting_an_owner_deletes_its_dependents() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("cascade").await.expect("namespace");
    let client = cluster.client();
    let owners = isolations(&client, &namespace.name);
    let first = owners
        .create(&PostParams::default(), &object(isolation("first")))
        .await
        .expect("owner");
    let second = owners
        .create(&PostParams::default(), &object(isolation("second")))
        .await
        .expect("owner");
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace.name);
    policies
        .create(
            &PostParams::default(),
            &owned_policy("only-first", &[&first]),
        )
        .await
        .expect("dependent");
    policies
        .create(
            &PostParams::default(),
            &owned_policy("both", &[&first, &second]),
        )
        .await
        .expect("dependent");
    owners
        .delete("first", &DeleteParams::background())
        .await
        .expect("delete owner");
    assert!(
        is_gone(&policies, "only-first").await,
        "the dependent is collected"
    );
    let survivor = eventually(PATIENCE, || async {
        let policy = policies.get("both").await.ok()?;
        (policy.owner_references().len() == 1).then_some(policy)
    })
    .await
    .expect("the dependent with another owner stays");
    assert_eq!(survivor.owner_references()[0].name, "second");
    namespace.cleanup().await;
    cluster.stop().await;
}

/// `propagationPolicy: Orphan` keeps the dependents and strips their owner reference. If this
/// fails, `deletionPolicy: Orphan` (keep every policy) deletes the fence with its resource.
#[tokio::test]
async fn orphan_propagation_keeps_dependents_without_the_reference() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("orphan").await.expect("namespace");
    let client = cluster.client();
    let owners = isolations(&client, &namespace.name);
    let owner = owners
        .create(&PostParams::default(), &object(isolation("shop")))
        .await
        .expect("owner");
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace.name);
    policies
        .create(&PostParams::default(), &owned_policy("kept", &[&owner]))
        .await
        .expect("dependent");
    owners
        .delete("shop", &DeleteParams::orphan())
        .await
        .expect("delete owner");
    assert!(is_gone(&owners, "shop").await);
    let kept = eventually(PATIENCE, || async {
        let policy = policies.get("kept").await.ok()?;
        policy.owner_references().is_empty().then_some(policy)
    })
    .await;
    assert!(
        kept.is_some(),
        "the dependent stays, without its owner reference"
    );
    namespace.cleanup().await;
    cluster.stop().await;
}

/// Foreground deletion keeps the owner (with the `foregroundDeletion` finalizer) until its
/// dependents are gone, dependents held by finalizers included. If this fails,
/// `kubectl delete --cascade=foreground` of a NamespaceIsolation returns before its policies go.
#[tokio::test]
async fn foreground_deletion_waits_for_the_dependents() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("foreground").await.expect("namespace");
    let client = cluster.client();
    let owners = isolations(&client, &namespace.name);
    let owner = owners
        .create(&PostParams::default(), &object(isolation("shop")))
        .await
        .expect("owner");
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace.name);
    let mut held = owned_policy("held", &[&owner]);
    held.metadata.finalizers = Some(vec!["e2e.netfence.io/hold".to_owned()]);
    policies
        .create(&PostParams::default(), &held)
        .await
        .expect("dependent");
    owners
        .delete("shop", &DeleteParams::foreground())
        .await
        .expect("delete owner");
    let waiting = eventually(PATIENCE, || async {
        let owner = owners.get("shop").await.ok()?;
        let policy = policies.get("held").await.ok()?;
        (owner.finalizers().iter().any(|f| f == "foregroundDeletion")
            && owner.metadata.deletion_timestamp.is_some()
            && policy.metadata.deletion_timestamp.is_some())
        .then_some(())
    })
    .await;
    assert!(
        waiting.is_some(),
        "the owner waits, the dependent is being deleted"
    );
    policies
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("release the dependent");
    assert!(is_gone(&policies, "held").await);
    assert!(
        is_gone(&owners, "shop").await,
        "the owner goes once its dependents are gone"
    );
    namespace.cleanup().await;
    cluster.stop().await;
}

/// A finalizer holds a deletion (deletionTimestamp set) until it is removed, and no finalizer
/// can be added meanwhile. If this fails, netfence's clean-up on deletion (KeepDefaultDeny)
/// never gets to run, or runs after the object is already gone.
#[tokio::test]
async fn finalizers_hold_a_deletion_until_removed() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("finalizer").await.expect("namespace");
    let api = isolations(&cluster.client(), &namespace.name);
    let mut held = isolation("shop");
    held["metadata"]["finalizers"] = json!(["netfence.io/cleanup"]);
    api.create(&PostParams::default(), &object(held))
        .await
        .expect("create");
    let answer = api
        .delete("shop", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(answer.is_left(), "a held deletion answers the object");
    let deleting = api.get("shop").await.expect("still there");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    let added = api
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["netfence.io/cleanup", "other"]}})),
        )
        .await
        .expect_err("no new finalizer");
    assert_eq!(code(&added), Some(422));
    api.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    assert!(
        is_gone(&api, "shop").await,
        "removing the last finalizer completes the deletion"
    );
    namespace.cleanup().await;
    cluster.stop().await;
}

/// Deleting a namespace deletes what it holds, waits for finalizers, refuses new content while
/// it terminates, then goes; every namespace carries `kubernetes.io/metadata.name`. If this
/// fails, NetworkPolicies survive their namespace, or the DNS rule (which selects kube-system by
/// that label) matches nothing.
#[tokio::test]
async fn deleting_a_namespace_deletes_what_it_holds() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("doomed").await.expect("namespace");
    let client = cluster.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let fetched = namespaces.get(&namespace.name).await.expect("namespace");
    assert_eq!(
        fetched.labels().get("kubernetes.io/metadata.name"),
        Some(&namespace.name),
        "the server labels every namespace with its name"
    );
    let system = namespaces
        .get("kube-system")
        .await
        .expect("kube-system exists");
    assert_eq!(
        system
            .labels()
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("kube-system")
    );

    let owners = isolations(&client, &namespace.name);
    let mut held = isolation("held");
    held["metadata"]["finalizers"] = json!(["netfence.io/cleanup"]);
    owners
        .create(&PostParams::default(), &object(held))
        .await
        .expect("create");
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace.name);
    policies
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "p"}, "spec": {"podSelector": {}}})),
        )
        .await
        .expect("policy");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace.name);
    pods.create(&PostParams::default(), &object(json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})))
        .await
        .expect("pod");

    namespaces
        .delete(&namespace.name, &DeleteParams::default())
        .await
        .expect("delete namespace");
    assert!(is_gone(&policies, "p").await, "the namespace's policies go");
    let terminating = namespaces
        .get(&namespace.name)
        .await
        .expect("held by the finalizer");
    assert_eq!(
        terminating
            .status
            .and_then(|status| status.phase)
            .as_deref(),
        Some("Terminating")
    );
    let refused = policies
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "late"}, "spec": {"podSelector": {}}})),
        )
        .await
        .expect_err("no new content");
    assert_eq!(status(refused).code, 403);
    owners
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("release");
    assert!(
        is_gone(&namespaces, &namespace.name).await,
        "the namespace goes once empty"
    );
    cluster.stop().await;
}
