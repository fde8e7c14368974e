//! Server-side apply: create, update, no-op, conflicts, force, removal of dropped fields,
//! atomic NetworkPolicy lists.

use k8s_openapi::api::{coordination::v1::Lease, networking::v1::NetworkPolicy};
use kube::{
    Api, ResourceExt,
    api::{DynamicObject, Patch, PatchParams},
};
use netfence_e2e::Cluster;
use serde_json::{Value, json};

use super::common::{isolation, isolations, labels, send, status};

fn apply(manager: &str) -> PatchParams {
    PatchParams::apply(manager)
}

/// Managers and their operations, as `metadata.managedFields` lists them.
fn managers(object: &DynamicObject) -> Vec<(String, String)> {
    object
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|entry| {
            (
                entry.manager.clone().unwrap_or_default(),
                entry.operation.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn owned_fields(object: &DynamicObject, manager: &str) -> Value {
    object
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|entry| entry.manager.as_deref() == Some(manager))
        .and_then(|entry| entry.fields_v1.as_ref())
        .map_or(Value::Null, |fields| fields.0.clone())
}

/// Apply creates the object, a changed apply updates it (new resourceVersion, new generation),
/// and re-applying the same configuration changes nothing: no new resourceVersion, so no watch
/// event. If the no-op case fails, the netfence controller's every reconcile wakes itself up
/// again (an endless reconcile loop).
#[tokio::test]
async fn apply_creates_updates_and_is_a_no_op_when_nothing_changes() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("apply").await.expect("namespace");
    let api = isolations(&cluster.client(), &namespace.name);
    let config = isolation("shop");
    let created = api
        .patch("shop", &apply("netfence"), &Patch::Apply(&config))
        .await
        .expect("create");
    assert_eq!(
        managers(&created),
        [("netfence".to_owned(), "Apply".to_owned())]
    );
    assert_eq!(created.metadata.generation, Some(1));

    let again = api
        .patch("shop", &apply("netfence"), &Patch::Apply(&config))
        .await
        .expect("no-op");
    assert_eq!(
        again.resource_version(),
        created.resource_version(),
        "a no-op apply keeps the resourceVersion"
    );

    let mut changed = config.clone();
    changed["spec"]["mode"] = json!("DryRun");
    let updated = api
        .patch("shop", &apply("netfence"), &Patch::Apply(&changed))
        .await
        .expect("update");
    assert_ne!(updated.resource_version(), created.resource_version());
    assert_eq!(updated.metadata.generation, Some(2));
    assert_eq!(updated.data["spec"]["mode"], json!("DryRun"));
    let same = api
        .patch("shop", &apply("netfence"), &Patch::Apply(&changed))
        .await
        .expect("no-op");
    assert_eq!(same.resource_version(), updated.resource_version());
    namespace.cleanup().await;
    cluster.stop().await;
}

/// A field another manager owns with a different value is a 409 conflict that names the manager
/// and the field; `force` takes it over, and equal values are shared without conflict. If this
/// fails, netfence silently overwrites (or can never take back) a field an operator changed.
#[tokio::test]
async fn apply_conflicts_without_force_and_takes_over_with_force() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("conflict").await.expect("namespace");
    let api = isolations(&cluster.client(), &namespace.name);
    api.patch("shop", &apply("netfence"), &Patch::Apply(isolation("shop")))
        .await
        .expect("create");

    let mut edit = json!({"apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation", "metadata": {"name": "shop"}, "spec": {"mode": "DryRun"}});
    api.patch("shop", &apply("operator"), &Patch::Apply(&edit))
        .await
        .expect("a new field is not a conflict");

    let mut back = isolation("shop");
    back["spec"]["mode"] = json!("Enforce");
    let error = api
        .patch("shop", &apply("netfence"), &Patch::Apply(&back))
        .await
        .expect_err("conflict");
    let status = status(error);
    assert_eq!(status.code, 409);
    assert!(
        status.message.contains("conflict with \"operator\""),
        "{}",
        status.message
    );
    assert!(status.message.contains(".spec.mode"), "{}", status.message);
    let causes = status
        .details
        .map(|details| details.causes)
        .unwrap_or_default();
    assert_eq!(
        causes.first().map(|cause| cause.field.as_str()),
        Some(".spec.mode")
    );

    let forced = api
        .patch("shop", &apply("netfence").force(), &Patch::Apply(&back))
        .await
        .expect("force");
    assert_eq!(forced.data["spec"]["mode"], json!("Enforce"));
    assert_eq!(
        owned_fields(&forced, "netfence")["f:spec"]["f:mode"],
        json!({})
    );
    assert_eq!(
        owned_fields(&forced, "operator"),
        Value::Null,
        "the operator lost its only field"
    );

    edit["spec"]["mode"] = json!("Enforce");
    api.patch("shop", &apply("operator"), &Patch::Apply(&edit))
        .await
        .expect("the same value is shared");
    namespace.cleanup().await;
    cluster.stop().await;
}

/// Fields a manager applied before and no longer sends are removed, unless another manager
/// owns them too; items of keyed lists are removed one by one. If this fails, a tier deleted
/// from a NamespaceIsolation in Git stays in the cluster forever.
#[tokio::test]
async fn fields_a_manager_stops_sending_are_removed() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("prune").await.expect("namespace");
    let api = isolations(&cluster.client(), &namespace.name);
    let mut first = isolation("shop");
    first["metadata"]["labels"] = json!({"team": "a", "env": "dev"});
    first["spec"]["tiers"] = json!([
        {"name": "web", "podSelector": {"matchLabels": {"tier": "web"}}},
        {"name": "api", "podSelector": {"matchLabels": {"tier": "api"}}},
        {"name": "db", "podSelector": {"matchLabels": {"tier": "db"}}}
    ]);
    first["spec"]["sameNamespace"] = json!("Allow");
    api.patch("shop", &apply("gitops"), &Patch::Apply(&first))
        .await
        .expect("first");
    let shared = json!({"apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation", "metadata": {"name": "shop", "labels": {"env": "dev"}}});
    api.patch("shop", &apply("labeller"), &Patch::Apply(&shared))
        .await
        .expect("shared label");

    let mut second = isolation("shop");
    second["metadata"]["labels"] = json!({"team": "a"});
    let result = api
        .patch("shop", &apply("gitops"), &Patch::Apply(&second))
        .await
        .expect("second");
    let tiers: Vec<&str> = result.data["spec"]["tiers"]
        .as_array()
        .map(|tiers| {
            tiers
                .iter()
                .filter_map(|tier| tier["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        tiers,
        ["web", "api"],
        "the dropped tier is removed, the others stay"
    );
    assert_eq!(
        result.data["spec"]["sameNamespace"],
        json!("Deny"),
        "a dropped field goes back to its default"
    );
    assert_eq!(
        labels(&serde_json::to_value(&result).expect("json")),
        json!({"team": "a", "env": "dev"}),
        "a label another manager also applied stays"
    );
    namespace.cleanup().await;
    cluster.stop().await;
}

/// NetworkPolicy's `ingress`, `egress` and `policyTypes` are atomic lists: owned and replaced
/// whole, as upstream declares them. If this fails, an applied policy keeps a rule netfence
/// removed (a hole in the fence), or two managers' rules merge into one policy.
#[tokio::test]
async fn network_policy_lists_are_atomic() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("atomic").await.expect("namespace");
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    let config = |ports: Value| {
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p"},
            "spec": {"podSelector": {"matchLabels": {"tier": "api"}}, "policyTypes": ["Ingress"], "ingress": [{"ports": ports}]}
        })
    };
    api.patch(
        "p",
        &apply("netfence"),
        &Patch::Apply(config(json!([{"port": 80}, {"port": 443}]))),
    )
    .await
    .expect("create");
    let replaced = api
        .patch(
            "p",
            &apply("netfence"),
            &Patch::Apply(config(json!([{"port": 8080}]))),
        )
        .await
        .expect("update");
    let rules = serde_json::to_value(replaced.spec.expect("spec").ingress).expect("json");
    assert_eq!(
        rules,
        json!([{"ports": [{"port": 8080, "protocol": "TCP"}]}]),
        "the list is replaced, not merged (and the port's protocol defaulted)"
    );

    let intruder = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p"},
        "spec": {"policyTypes": ["Ingress", "Egress"]}
    });
    let error = api
        .patch("p", &apply("intruder"), &Patch::Apply(&intruder))
        .await
        .expect_err("conflict");
    let status = status(error);
    assert_eq!(status.code, 409);
    assert!(
        status.message.contains(".spec.policyTypes"),
        "{}",
        status.message
    );
    namespace.cleanup().await;
    cluster.stop().await;
}

/// An apply configuration without `metadata` applies to the existing object the URL names, as
/// upstream does (kube-lease-manager renews and takes over Leases that way); it cannot create
/// one: upstream answers 400 because the merged object has no name. If this fails, leader
/// election against the sandbox never renews its Lease, or the sandbox creates objects a real
/// server refuses.
#[tokio::test]
async fn an_apply_without_metadata_targets_the_named_object() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("lease").await.expect("namespace");
    let api: Api<Lease> = Api::namespaced(cluster.client(), &namespace.name);
    let config = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"holderIdentity": "me"}});
    let error = api
        .patch("leader", &apply("leader-election"), &Patch::Apply(&config))
        .await
        .expect_err("no object to take the name from");
    let refused = status(error);
    assert_eq!(refused.code, 400, "{}", refused.message);
    assert_eq!(refused.reason, "BadRequest");
    assert_eq!(
        refused.message,
        "the name of the object (leader based on URL) was undeterminable: name must be provided"
    );

    let mut named = config.clone();
    named["metadata"] = json!({"name": "leader"});
    named["spec"]["holderIdentity"] = json!("nobody");
    api.patch("leader", &apply("leader-election"), &Patch::Apply(&named))
        .await
        .expect("created with a name");
    let renewed = api
        .patch("leader", &apply("leader-election"), &Patch::Apply(&config))
        .await
        .expect("an apply without metadata updates the named object");
    assert_eq!(renewed.name_any(), "leader");
    assert_eq!(
        renewed
            .spec
            .as_ref()
            .and_then(|spec| spec.holder_identity.as_deref()),
        Some("me")
    );
    let renewed = api
        .patch(
            "leader",
            &PatchParams::default(),
            &Patch::Strategic(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {"leaseTransitions": 1}})),
        )
        .await
        .expect("strategic merge patch");
    let spec = renewed.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("me"));
    assert_eq!(spec.lease_transitions, Some(1));
    namespace.cleanup().await;
    cluster.stop().await;
}

/// A create or patch without `fieldManager` (or with an empty one) is managed by the user
/// agent's product, the text before its first `/`, as upstream names it; without a user agent
/// the manager is `unknown`. If this fails, `managedFields` written by kubectl, client-go or
/// kube-rs name other managers than on a real cluster, and later server-side applies conflict
/// (or do not) differently.
#[tokio::test]
async fn writes_without_a_field_manager_are_managed_by_the_user_agent() {
    let cluster = Cluster::start().await.expect("cluster");
    let raw = cluster.raw();
    let name = format!("agents-{}", netfence_e2e::unique_suffix());
    let body = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"created": "yes", "netfence.io/e2e": "true"}},
    })
    .to_string();
    let head = format!(
        "POST /api/v1/namespaces?fieldManager= HTTP/1.1\r\nContent-Type: application/json\r\nUser-Agent: my-tool/1.0 (linux/amd64)\r\nContent-Length: {}",
        body.len()
    );
    let (code, created) = send(&raw, &head, body.as_bytes()).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["metadata"]["managedFields"][0]["manager"],
        "my-tool"
    );

    let patch = json!({"metadata": {"labels": {"patched": "yes"}}}).to_string();
    let head = format!(
        "PATCH /api/v1/namespaces/{name} HTTP/1.1\r\nContent-Type: application/merge-patch+json\r\nContent-Length: {}",
        patch.len()
    );
    let (code, patched) = send(&raw, &head, patch.as_bytes()).await;
    assert_eq!(code, 200, "{patched}");
    let entries = patched["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let anonymous = entries
        .iter()
        .find(|entry| entry["manager"] == "unknown")
        .unwrap_or_else(|| panic!("an entry of the manager \"unknown\": {entries:?}"));
    assert_eq!(
        anonymous["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:patched": {}}}})
    );
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(cluster.client())
        .delete(&name, &kube::api::DeleteParams::default())
        .await;
    cluster.stop().await;
}
