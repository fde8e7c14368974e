//! The ClusterBaseline controller, on the sandbox and on the real control plane: a baseline with
//! the ClusterNetworkPolicy engine (the engine's published CRD installed from its pinned Go
//! module) is rendered, reported in status, kept true when someone edits or deletes what it
//! wrote, follows namespaces as they come and go, refuses what its engine cannot express without
//! touching what is written, says when its engine is not served, and takes its objects with it.

use std::time::Duration;

use kube::{
    Api, ResourceExt,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    },
};
use netfence_core::meta::BASELINE_LABEL;
use netfence_crd::ClusterBaseline;
use netfence_e2e::{Env, env::RUN_LABEL, eventually, install_engine_crds};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

fn cluster_network_policies(env: &Env) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "policy.networking.k8s.io",
            "v1alpha2",
            "ClusterNetworkPolicy",
        ),
        "clusternetworkpolicies",
    );
    Api::all_with(env.client.clone(), &resource)
}

/// The names of the ClusterNetworkPolicies of the baseline `name`, sorted.
async fn rendered(env: &Env, name: &str) -> Vec<String> {
    let mut names: Vec<String> = cluster_network_policies(env)
        .list(&ListParams::default().labels(&format!("{BASELINE_LABEL}={name}")))
        .await
        .expect("list")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    names
}

/// Wait until the baseline's Ready condition has `reason`; returns it.
async fn wait_ready(env: &Env, name: &str, reason: &str) -> ClusterBaseline {
    let api: Api<ClusterBaseline> = Api::all(env.client.clone());
    let found = eventually(LIMIT, || {
        let api = api.clone();
        async move {
            let baseline = api.get(name).await.ok()?;
            let condition = baseline.status.as_ref()?.conditions.first()?.clone();
            (condition.reason == reason
                && baseline.status.as_ref()?.observed_generation == baseline.metadata.generation)
                .then_some(baseline)
        }
    })
    .await;
    let last = api
        .get(name)
        .await
        .ok()
        .and_then(|baseline| baseline.status);
    found.unwrap_or_else(|| panic!("ClusterBaseline {name} never reported {reason}: {last:?}"))
}

/// Wait until `check` holds on the baseline's objects.
async fn wait_objects(env: &Env, name: &str, what: &str, check: impl Fn(&[String]) -> bool) {
    let found = eventually(LIMIT, || {
        let check = &check;
        async move {
            let names = rendered(env, name).await;
            check(&names).then_some(())
        }
    })
    .await;
    assert!(
        found.is_some(),
        "{what}: the baseline holds {:?}",
        rendered(env, name).await
    );
}

/// If this fails, a ClusterBaseline would not reach the cluster, would not be kept true, or would
/// leave objects behind: the cluster-wide deny a platform team relies on would be missing or
/// wrong without a word.
#[tokio::test]
async fn a_baseline_is_rendered_kept_and_removed() {
    let mut env = Env::start_alone().await;
    install_engine_crds(&env.client)
        .await
        .expect("the engines' CRDs");
    let first = env.run_namespace("baseline-a", true).await;
    let second = env.run_namespace("baseline-b", true).await;
    let name = format!("zt-{}", env.run);
    let api: Api<ClusterBaseline> = Api::all(env.client.clone());
    let baseline = json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "ClusterBaseline",
        "metadata": {"name": name},
        "spec": {
            "engine": "ClusterNetworkPolicy",
            "namespaceSelector": {"matchLabels": {RUN_LABEL: env.run}},
            "sameNamespace": "Allow",
            "guardrails": [{"name": "no-cloud-metadata", "action": "Deny", "direction": "Egress", "ipBlock": {"cidr": "169.254.169.254/32"}}]
        }
    });
    api.create(
        &kube::api::PostParams::default(),
        &serde_json::from_value(baseline).expect("a baseline"),
    )
    .await
    .expect("created");
    // Started after the engine's CRD is served: the controller discovers engines at start.
    env.start_controller(None);

    let ready = wait_ready(&env, &name, "Reconciled").await;
    let status = ready.status.expect("status");
    assert_eq!(
        status.engine,
        Some(netfence_crd::baseline::Engine::ClusterNetworkPolicy)
    );
    assert_eq!(status.covered_namespaces, Some(2));
    let expected = vec![
        format!("{name}-baseline"),
        format!("{name}-guardrails"),
        format!("{name}-same-namespace-{first}"),
        format!("{name}-same-namespace-{second}"),
    ];
    assert_eq!(rendered(&env, &name).await, expected);
    steady_state_writes_nothing(&env, &name).await;

    drift_is_written_back(&env, &name, &expected).await;
    // A namespace that comes gets its same-namespace object; one that leaves loses it.
    let third = env.run_namespace("baseline-c", true).await;
    wait_objects(&env, &name, "the new namespace is covered", |names| {
        names.contains(&format!("{name}-same-namespace-{third}"))
    })
    .await;
    Api::<k8s_openapi::api::core::v1::Namespace>::all(env.client.clone())
        .patch(
            &first,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {RUN_LABEL: null}}})),
        )
        .await
        .expect("relabelled");
    wait_objects(&env, &name, "the relabelled namespace is pruned", |names| {
        !names.contains(&format!("{name}-same-namespace-{first}"))
    })
    .await;

    what_cannot_be_written_is_reported(&env, &api, &name).await;
    // Back to its engine, then deleted: its objects go with it (owner references).
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"engine": "ClusterNetworkPolicy"}})),
    )
    .await
    .expect("patched");
    wait_ready(&env, &name, "Reconciled").await;
    api.delete(&name, &DeleteParams::default())
        .await
        .expect("deleted");
    wait_objects(
        &env,
        &name,
        "the deleted baseline's objects are collected",
        <[String]>::is_empty,
    )
    .await;
    env.finish().await;
}

/// Deleted or edited by someone: written back.
async fn drift_is_written_back(env: &Env, name: &str, expected: &[String]) {
    let objects = cluster_network_policies(env);
    objects
        .delete(&format!("{name}-baseline"), &DeleteParams::default())
        .await
        .expect("deleted");
    wait_objects(
        env,
        name,
        "the deleted baseline object is restored",
        |names| names == expected,
    )
    .await;
    objects
        .patch(
            &format!("{name}-guardrails"),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"egress": [{"name": "opened", "action": "Accept", "to": [{"networks": ["0.0.0.0/0"]}]}]}})),
        )
        .await
        .expect("edited");
    let restored = eventually(LIMIT, || {
        let objects = objects.clone();
        let name = name.to_owned();
        async move {
            let guardrails = objects.get(&format!("{name}-guardrails")).await.ok()?;
            (guardrails.data["spec"]["egress"][0]["action"] == "Deny").then_some(())
        }
    })
    .await;
    assert!(restored.is_some(), "the edited guardrail is written back");
}

/// What the engine cannot express, and an engine the cluster does not serve: reported, and
/// nothing written is touched.
async fn what_cannot_be_written_is_reported(env: &Env, api: &Api<ClusterBaseline>, name: &str) {
    let before = rendered(env, name).await;
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"engine": "NetworkPolicy"}})),
    )
    .await
    .expect("patched");
    let unsupported = wait_ready(env, name, "Unsupported").await;
    let message = unsupported.status.expect("status").conditions[0]
        .message
        .clone();
    assert!(
        message.contains("spec.guardrails[0]: NetworkPolicy cannot express this"),
        "{message}"
    );
    assert_eq!(rendered(env, name).await, before);

    // An engine the cluster does not serve (no Calico here).
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"engine": "Calico"}})),
    )
    .await
    .expect("patched");
    wait_ready(env, name, "EngineNotServed").await;
}

/// In steady state the controller writes nothing: no apply, no status (read from the audit log
/// where the cluster has one readable).
async fn steady_state_writes_nothing(env: &Env, name: &str) {
    if !env.cluster.has_audit() {
        netfence_e2e::skip(
            "baseline_steady_state_writes",
            "it reads the audit log, and this cluster's is not readable here",
        );
        return;
    }
    env.cluster
        .audit_clear_when_quiet(Duration::from_secs(2))
        .await;
    // A relist of everything the controller watches would show here too: wait past a few
    // reconciles' worth of events.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes: Vec<String> = env
        .cluster
        .audit()
        .await
        .into_iter()
        .filter(|entry| {
            entry.field_manager.as_deref() == Some("netfence") || entry.verb == "delete"
        })
        .filter(|entry| {
            entry
                .name
                .as_deref()
                .is_some_and(|object| object.starts_with(name))
        })
        .map(|entry| format!("{} {}/{:?}", entry.verb, entry.resource, entry.name))
        .collect();
    assert!(writes.is_empty(), "steady state wrote: {writes:?}");
}

/// Create a ClusterBaseline from JSON.
async fn create_baseline(env: &Env, baseline: serde_json::Value) {
    Api::<ClusterBaseline>::all(env.client.clone())
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(baseline).expect("a baseline"),
        )
        .await
        .expect("created");
}

/// If this fails, a tenant (or another tool) that wrote an object under a name the baseline
/// renders would have it adopted as it is (an allow-all rule included) and reported Ready; or a
/// NetworkPolicy-engine deny opened by an added rule would stay open.
#[tokio::test]
async fn a_same_named_object_is_never_taken_over_and_added_rules_are_removed() {
    let mut env = Env::start_alone().await;
    let namespace = env.run_namespace("baseline-np", true).await;
    let name = format!("np-{}", env.run);
    // A tenant's policy under the name of the baseline's DNS policy, before netfence writes it.
    let squatter: k8s_openapi::api::networking::v1::NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-allow-dns"), "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
    }))
    .expect("a policy");
    let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        Api::namespaced(env.client.clone(), &namespace);
    policies
        .create(&kube::api::PostParams::default(), &squatter)
        .await
        .expect("the tenant's policy");
    create_baseline(
        &env,
        json!({
            "apiVersion": "netfence.io/v1alpha1",
            "kind": "ClusterBaseline",
            "metadata": {"name": name},
            "spec": {"engine": "NetworkPolicy", "namespaceSelector": {"matchLabels": {RUN_LABEL: env.run}}},
        }),
    )
    .await;
    env.start_controller(None);
    let failed = wait_ready(&env, &name, "ApplyFailed").await;
    let message = failed.status.expect("status").conditions[0].message.clone();
    assert!(
        message.contains(&format!("NetworkPolicy/{namespace}/{name}-allow-dns"))
            && message.contains("does not own"),
        "{message}"
    );
    let kept = policies
        .get(&format!("{name}-allow-dns"))
        .await
        .expect("still there");
    assert!(kept.metadata.owner_references.is_none(), "not adopted");
    // The rest is written: the default deny is in place.
    let deny = format!("{name}-default-deny");
    let written = eventually(LIMIT, || {
        let policies = policies.clone();
        let deny = deny.clone();
        async move { policies.get_opt(&deny).await.ok().flatten() }
    })
    .await;
    assert!(
        written.is_some(),
        "the default deny is written beside the taken name"
    );

    // The tenant's policy goes: the baseline writes its own and is Reconciled.
    policies
        .delete(&format!("{name}-allow-dns"), &DeleteParams::default())
        .await
        .expect("deleted");
    wait_ready(&env, &name, "Reconciled").await;

    // A rule added to the deny by hand is removed (netfence owns the rule lists).
    policies
        .patch(
            &deny,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ingress": [{}]}})),
        )
        .await
        .expect("opened");
    let closed = eventually(LIMIT, || {
        let policies = policies.clone();
        let deny = deny.clone();
        async move {
            let policy = policies.get(&deny).await.ok()?;
            policy
                .spec?
                .ingress
                .is_none_or(|rules| rules.is_empty())
                .then_some(())
        }
    })
    .await;
    assert!(closed.is_some(), "the added ingress rule is removed");
    Api::<ClusterBaseline>::all(env.client.clone())
        .delete(&name, &DeleteParams::default())
        .await
        .expect("deleted");
    env.finish().await;
}

/// If this fails, `deletionPolicy: Orphan` would delete what the baseline wrote (the cluster
/// loses its deny when the platform team only meant to hand the objects over).
#[tokio::test]
async fn orphan_keeps_the_objects_without_the_owner() {
    let mut env = Env::start_alone().await;
    install_engine_crds(&env.client)
        .await
        .expect("the engines' CRDs");
    env.run_namespace("baseline-orphan", true).await;
    let name = format!("orphan-{}", env.run);
    create_baseline(
        &env,
        json!({
            "apiVersion": "netfence.io/v1alpha1",
            "kind": "ClusterBaseline",
            "metadata": {"name": name},
            "spec": {
                "engine": "ClusterNetworkPolicy",
                "namespaceSelector": {"matchLabels": {RUN_LABEL: env.run}},
                "deletionPolicy": "Orphan",
            },
        }),
    )
    .await;
    env.start_controller(None);
    wait_ready(&env, &name, "Reconciled").await;
    let api: Api<ClusterBaseline> = Api::all(env.client.clone());
    api.delete(&name, &DeleteParams::default())
        .await
        .expect("deleted");
    let gone = eventually(LIMIT, || {
        let api = api.clone();
        let name = name.clone();
        async move { api.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(
        gone.is_some(),
        "the baseline goes once its objects are orphaned"
    );
    // Past a garbage collector's pass: still there, with no owner.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let objects = cluster_network_policies(&env);
    let baseline = objects
        .get(&format!("{name}-baseline"))
        .await
        .expect("kept");
    assert!(
        baseline
            .metadata
            .owner_references
            .is_none_or(|owners| owners.is_empty()),
        "orphaned"
    );
    let _ = objects
        .delete(&format!("{name}-baseline"), &DeleteParams::default())
        .await;
    env.finish().await;
}

/// If this fails, a cluster-wide deny that blocks what a team declared goes unseen: the team's
/// NamespaceIsolation says Ready and Isolated while its flow is dropped. A ClusterBaseline
/// guardrail denying port 8080 turns `Isolated` False (`Narrowed`), naming the
/// ClusterNetworkPolicy and the flow; removed, the namespace is Isolated again.
#[tokio::test]
async fn a_cluster_wide_deny_narrows_a_declared_flow() {
    let mut env = Env::start_alone().await;
    install_engine_crds(&env.client)
        .await
        .expect("the engines' CRDs");
    let namespace = env.run_namespace("baseline-audit", true).await;
    let name = format!("narrow-{}", env.run);
    env.start_controller(None);
    env.create(&netfence_e2e::shop(&namespace)).await;
    let isolated = |status: &'static str, reason: &'static str| {
        move |isolation: &netfence_crd::NamespaceIsolation| {
            isolation.status.as_ref().is_some_and(|found| {
                found.conditions.iter().any(|condition| {
                    condition.type_ == "Isolated"
                        && condition.status == status
                        && condition.reason == reason
                })
            })
        }
    };
    env.wait_isolation(
        &namespace,
        "shop",
        "Isolated True",
        isolated("True", "AsDeclared"),
    )
    .await;
    create_baseline(
        &env,
        json!({
            "apiVersion": "netfence.io/v1alpha1",
            "kind": "ClusterBaseline",
            "metadata": {"name": name},
            "spec": {
                "engine": "ClusterNetworkPolicy",
                "namespaceSelector": {"matchLabels": {RUN_LABEL: env.run}},
                "sameNamespace": "Allow",
                "guardrails": [{"name": "no-8080", "action": "Deny", "direction": "Egress",
                    "namespaceSelector": {"matchLabels": {RUN_LABEL: env.run}}, "ports": [{"port": 8080}]}]
            }
        }),
    )
    .await;
    let narrowed = env
        .wait_isolation(
            &namespace,
            "shop",
            "Isolated False, Narrowed",
            isolated("False", "Narrowed"),
        )
        .await;
    let message = narrowed
        .status
        .as_ref()
        .and_then(|status| {
            status
                .conditions
                .iter()
                .find(|condition| condition.type_ == "Isolated")
        })
        .map(|condition| condition.message.clone())
        .unwrap_or_default();
    println!("Isolated False, Narrowed: {message}");
    assert!(
        message.contains(&format!(
            "ClusterNetworkPolicy/{name}-guardrails blocks frontend -> backend on 8080/TCP"
        )),
        "{message}"
    );
    Api::<ClusterBaseline>::all(env.client.clone())
        .delete(&name, &DeleteParams::default())
        .await
        .expect("deleted");
    env.wait_isolation(
        &namespace,
        "shop",
        "Isolated True again",
        isolated("True", "AsDeclared"),
    )
    .await;
    env.finish().await;
}
