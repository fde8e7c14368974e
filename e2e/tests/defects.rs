//! Defects found when netfence was tried as a new user would (issue 12, point 6), each as the
//! scenario that caught it: it failed before the fix and passes after.
//!
//! Every scenario runs against its own sandbox, or against the cluster of
//! `NETFENCE_E2E_KUBECONFIG` in namespaces of its own, in the shared [`Env`]. The operator under
//! test gets [`Env::operator`] (on a real cluster, a ServiceAccount bound only to what
//! `config/rbac/` grants); the test's own writes use [`Env::client`]. Against a real cluster the
//! scenarios of this file take turns ([`Env::start_alone`]): the template scenarios run cluster-wide controllers,
//! which would also reconcile the other scenarios' resources. A real cluster must not run
//! netfence itself meanwhile.

use std::collections::BTreeSet;

use futures::future::join_all;
use k8s_openapi::{
    api::{core::v1::Namespace, networking::v1::NetworkPolicy},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use netfence_core::plan::is_owned_by;
use netfence_crd::{IsolationTemplate, NamespaceIsolation};
use netfence_e2e::{
    Env,
    env::{LIMIT, RUN_LABEL, counter},
    eventually, shop,
};
use serde_json::{Value, json};

/// How long the controller's watch of NamespaceIsolations stays away while a round of
/// deletions happens (see `deleting_every_isolation_at_once_writes_nothing_for_them`): longer
/// than a real garbage collector takes to delete their policies.
const WATCH_GAP: std::time::Duration = std::time::Duration::from_secs(5);

/// The `shop` resource under another name.
fn shop_named(namespace: &str, name: &str) -> Value {
    let mut resource = shop(namespace);
    resource["metadata"]["name"] = json!(name);
    resource
}

/// The five policies `shop` renders under the resource name `name`.
fn shop_policies(name: &str) -> BTreeSet<String> {
    [
        "allow-dns",
        "default-deny",
        "tier-backend",
        "tier-database",
        "tier-frontend",
    ]
    .into_iter()
    .map(|suffix| format!("{name}-{suffix}"))
    .collect()
}

/// A NetworkPolicy that netfence did not write.
fn hand_written(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"podSelector": {"matchLabels": {"mine": "yes"}}, "policyTypes": ["Ingress"]},
    })
}

/// The Ready condition of a resource, as `status/reason`.
fn ready(isolation: &NamespaceIsolation) -> Option<String> {
    let status = isolation.status.as_ref()?;
    if status.observed_generation != isolation.metadata.generation {
        return None;
    }
    status
        .conditions
        .iter()
        .find(|condition| condition.type_ == "Ready")
        .map(|condition| format!("{}/{}", condition.status, condition.reason))
}

/// The Ready condition of a template: `status/reason` and the message.
fn template_ready(template: &IsolationTemplate) -> Option<(String, String)> {
    template
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|condition| condition.type_ == "Ready")
        .map(|condition| {
            (
                format!("{}/{}", condition.status, condition.reason),
                condition.message.clone(),
            )
        })
}

/// `kubectl delete nsi --all` over many resources, several times: once every resource is gone,
/// the controller has written nothing for any of them, and only what a resource created after
/// the deletions renders is left. The controller runs one reconcile at a time: its permits go
/// first come, first served, so once a resource created after the deletions is Ready, every
/// reconcile queued before it has run (a barrier, not a sleep).
///
/// The defect needs the policies' deletion to reach the controller before their resource's: its
/// cache still holds the resource, and the reconcile that the deletions queue takes the policies
/// for drift. Each watch is a connection of its own, so nothing orders the two; to make that
/// order certain, each round cuts the controller's watches as the deletions start, and its watch
/// of NamespaceIsolations comes back only after [`WATCH_GAP`] (the same faults on the sandbox
/// and, through the harness's proxy, on a real cluster, whose garbage collector deletes the
/// policies within that gap).
///
/// If this fails, policies come back after their NamespaceIsolation is deleted, owned by a UID
/// that no longer exists, with an Event saying they "differed from the spec and were restored":
/// the namespace a user meant to open keeps (on the sandbox, forever) policies of nothing.
#[tokio::test]
async fn deleting_every_isolation_at_once_writes_nothing_for_them() {
    const RESOURCES: usize = 12;
    const ROUNDS: usize = 3;
    let mut env = Env::start_alone().await;
    let namespace = env.namespace("delete-all").await;
    let metrics = env.start_controller_with_concurrency(Some(&namespace), 1);
    let faults = env.cluster.faults();
    let api = env.isolations(&namespace);
    let mut previous_sentinel: Option<String> = None;
    for round in 0..ROUNDS {
        let mut names: Vec<String> = (0..RESOURCES)
            .map(|index| format!("shop-{round}-{index}"))
            .collect();
        for name in &names {
            env.create(&shop_named(&namespace, name)).await;
        }
        for name in &names {
            env.wait_reason(&namespace, name, "Reconciled").await;
        }
        names.extend(previous_sentinel.take());
        let applied = counter(&metrics, "netfence_policies_applied_total");
        let restored = counter(&metrics, "netfence_drift_corrections_total");

        // The controller's watches end; its watch of NamespaceIsolations is back only after
        // the gap, so it learns of the policies' deletion first.
        let gap = faults.latency("watch", "namespaceisolations", WATCH_GAP);
        faults.close_watches();
        // `kubectl delete nsi --all`: every resource at once.
        let params = DeleteParams::default();
        let deletions = names.iter().map(|name| api.delete(name, &params));
        for result in join_all(deletions).await {
            result.expect("deleted");
        }

        let sentinel = format!("sentinel-{round}");
        env.create(&shop_named(&namespace, &sentinel)).await;
        env.wait_reason(&namespace, &sentinel, "Reconciled").await;
        assert_eq!(
            (
                counter(&metrics, "netfence_policies_applied_total") - applied,
                counter(&metrics, "netfence_drift_corrections_total") - restored,
            ),
            (5, 0),
            "round {round}: policies applied and restored after the deletion of {names:?}: \
             only the 5 of {sentinel} were due"
        );
        env.wait_policies(&namespace, &shop_policies(&sentinel))
            .await;
        // Only now: the watch cut above may reconnect at any moment until the sentinel is seen.
        faults.remove(gap);
        previous_sentinel = Some(sentinel);
    }
    env.finish().await;
}

/// A NetworkPolicy created with an owner reference to an object that no longer exists is
/// garbage-collected, and one with another owner that exists only loses the dangling reference,
/// as kube-controller-manager's garbage collector does. If this fails, the sandbox keeps
/// dependents a real cluster deletes: a policy written for a deleted resource stays forever, and
/// scenarios that pass on the sandbox leave policies behind on a real cluster (or the reverse).
#[tokio::test]
async fn a_policy_whose_owner_is_gone_is_garbage_collected() {
    let mut env = Env::start_alone().await;
    let namespace = env.namespace("dangling").await;
    let api = env.isolations(&namespace);
    let gone = env.create(&shop_named(&namespace, "gone")).await;
    let kept = env.create(&shop_named(&namespace, "kept")).await;
    api.delete("gone", &DeleteParams::default())
        .await
        .expect("deleted");
    let deleted = eventually(LIMIT, || async {
        api.get_opt("gone").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(deleted.is_some(), "{namespace}/gone was not deleted");
    let owner = |resource: &NamespaceIsolation, controller: bool| {
        json!({
            "apiVersion": "netfence.io/v1alpha1",
            "kind": "NamespaceIsolation",
            "name": resource.name_any(),
            "uid": resource.uid().expect("a uid"),
            "controller": controller,
        })
    };
    let mut orphan = hand_written("owner-gone");
    orphan["metadata"]["ownerReferences"] = json!([owner(&gone, true)]);
    env.create_policy(&namespace, &orphan).await;
    let mut shared = hand_written("one-owner-left");
    shared["metadata"]["ownerReferences"] = json!([owner(&gone, false), owner(&kept, true)]);
    env.create_policy(&namespace, &shared).await;

    let policies = env.policies(&namespace);
    let collected = eventually(LIMIT, || async {
        let orphan = policies.get_opt("owner-gone").await.ok()?;
        let shared = policies.get_opt("one-owner-left").await.ok()??;
        let owners: Vec<String> = shared
            .owner_references()
            .iter()
            .map(|owner| owner.uid.clone())
            .collect();
        (orphan.is_none() && owners == [kept.uid().unwrap_or_default()]).then_some(())
    })
    .await;
    assert!(
        collected.is_some(),
        "owner-gone still exists or one-owner-left kept its dangling owner: {:?}",
        env.policy_names(&namespace).await
    );
    env.finish().await;
}

/// A team baseline: web -> api, the ingress controller to web; `KeepDefaultDeny`.
/// Renders 4 policies: default deny, DNS, one per tier.
fn kept_baseline(run: &str, name: &str) -> Value {
    json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "IsolationTemplate",
        "metadata": {"name": format!("{name}-{run}")},
        "spec": {
            "namespaceSelector": {"matchLabels": {RUN_LABEL: run}},
            "isolationName": "baseline",
            "template": {"spec": {
                "deletionPolicy": "KeepDefaultDeny",
                "tiers": [
                    {"name": "web", "podSelector": {"matchLabels": {"app": "web"}}},
                    {"name": "api", "podSelector": {"matchLabels": {"app": "api"}}},
                ],
                "flows": [{"from": "web", "to": "api", "ports": [{"port": 8080}]}],
                "sharedServices": [{
                    "name": "ingress", "direction": "Ingress", "namespace": "ingress-nginx",
                    "tiers": ["web"], "ports": [{"port": 80}],
                }],
            }},
        },
    })
}

fn baseline_policies() -> BTreeSet<String> {
    [
        "baseline-allow-dns",
        "baseline-default-deny",
        "baseline-tier-api",
        "baseline-tier-web",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// A generated NamespaceIsolation with `deletionPolicy: KeepDefaultDeny`, deleted by hand: the
/// namespace fails closed meanwhile (deny + DNS kept, without owner), its template creates it
/// again, and the new resource takes back the policies its predecessor kept (they carry
/// netfence's labels, name this same resource, and have no owner), so the namespace gets its
/// whole baseline back and the template is Ready.
///
/// If this fails, the kept default deny blocks every write of the new resource: the namespace
/// stays at deny + DNS, every pod cut off from its flows, until someone finds and deletes two
/// policies by hand.
#[tokio::test]
async fn a_recreated_isolation_takes_back_what_its_predecessor_kept() {
    let mut env = Env::start_alone().await;
    env.start_controller(None);
    let namespace = env.run_namespace("kept", true).await;
    let template = env.create_template(&kept_baseline(&env.run, "kept")).await;
    let template = template.name_any();
    let first = env.wait_reason(&namespace, "baseline", "Reconciled").await;
    env.wait_policies(&namespace, &baseline_policies()).await;
    let first_uid = first.uid().expect("a uid");

    env.isolations(&namespace)
        .delete("baseline", &DeleteParams::default())
        .await
        .expect("deleted by hand");
    let second = env
        .wait_isolation(
            &namespace,
            "baseline",
            "generated again, Ready with its 4 policies",
            |isolation| {
                isolation.uid().is_some_and(|uid| uid != first_uid)
                    && ready(isolation).as_deref() == Some("True/Reconciled")
                    && isolation.status.as_ref().map(|s| s.policies.len()) == Some(4)
            },
        )
        .await;
    let second_uid = second.uid().expect("a uid");
    env.wait_policies(&namespace, &baseline_policies()).await;
    for policy in env
        .policies(&namespace)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        assert!(
            is_owned_by(&policy, &second_uid),
            "{:?} is not owned by the new resource: {:?}",
            policy.metadata.name,
            policy.metadata.owner_references
        );
    }
    env.wait_template(&template, "Ready", |template| {
        template_ready(template).is_some_and(|(ready, _)| ready == "True/Reconciled")
    })
    .await;
    env.finish().await;
}

/// A generated NamespaceIsolation that cannot apply (a hand-written policy holds its default
/// deny's name) makes its template Ready=False, with a message that names the namespace; once
/// the name is free, the resource and the template are Ready again.
///
/// If this fails, `kubectl get nsit` and Argo CD's health check report a template healthy while
/// a namespace it manages has none of its policies.
#[tokio::test]
async fn a_template_is_not_ready_while_a_generated_resource_cannot_apply() {
    let mut env = Env::start_alone().await;
    env.start_controller(None);
    let healthy = env.run_namespace("healthy", true).await;
    let blocked = env.run_namespace("blocked", true).await;
    env.create_policy(&blocked, &hand_written("baseline-default-deny"))
        .await;
    let template = env.create_template(&kept_baseline(&env.run, "truth")).await;
    let template = template.name_any();
    env.wait_reason(&healthy, "baseline", "Reconciled").await;
    env.wait_reason(&blocked, "baseline", "ApplyFailed").await;
    let failing = env
        .wait_template(&template, "Ready=False naming the blocked namespace", |t| {
            template_ready(t).is_some_and(|(ready, message)| {
                ready.starts_with("False/") && message.contains(&blocked)
            })
        })
        .await;
    let (_, message) = template_ready(&failing).unwrap_or_default();
    assert!(!message.contains(&healthy), "{message}");
    assert!(
        message.contains("baseline-default-deny"),
        "the message says why: {message}"
    );

    env.policies(&blocked)
        .delete("baseline-default-deny", &DeleteParams::default())
        .await
        .expect("the name freed");
    env.wait_reason(&blocked, "baseline", "Reconciled").await;
    env.wait_template(&template, "Ready again", |t| {
        template_ready(t).is_some_and(|(ready, _)| ready == "True/Reconciled")
    })
    .await;
    env.finish().await;
}

/// Policy names held by hand-written NetworkPolicies: `status.policies` lists exactly the
/// policies that exist and are this resource's; the Ready message gives one sentence per policy
/// it could not write, and no dump; a Warning Event `ApplyFailed` says it too (the README
/// promises it). With the default deny's name taken nothing is written, and status lists none.
///
/// If this fails, `kubectl describe nsi` shows policies that do not exist, no Event warns anyone
/// watching Events, and the message is kilobytes of repeated API errors.
#[tokio::test]
async fn taken_policy_names_are_reported_truthfully() {
    let mut env = Env::start_alone().await;
    let tiers = env.namespace("taken-tiers").await;
    let deny = env.namespace("taken-deny").await;
    env.start_controller(Some(&tiers));
    env.start_controller(Some(&deny));
    for name in ["shop-tier-database", "shop-tier-frontend"] {
        env.create_policy(&tiers, &hand_written(name)).await;
    }
    env.create_policy(&deny, &hand_written("shop-default-deny"))
        .await;
    env.create(&shop(&tiers)).await;
    env.create(&shop(&deny)).await;

    for (namespace, taken) in [
        (&tiers, vec!["shop-tier-database", "shop-tier-frontend"]),
        (&deny, vec!["shop-default-deny"]),
    ] {
        let failed = env.wait_reason(namespace, "shop", "ApplyFailed").await;
        let uid = failed.uid().expect("a uid");
        let status = failed.status.expect("a status");
        let owned: BTreeSet<String> = env
            .policies(namespace)
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .filter(|policy| is_owned_by(policy, &uid))
            .filter_map(|policy| policy.metadata.name)
            .collect();
        let listed: BTreeSet<String> = status.policies.iter().cloned().collect();
        assert_eq!(
            listed, owned,
            "{namespace}: status.policies must list what exists and is this resource's"
        );
        let message = &status.conditions[0].message;
        for name in &taken {
            assert_eq!(message.matches(name).count(), 1, "{namespace}: {message}");
        }
        assert!(
            message.len() < 200 * taken.len()
                && !message.contains('{')
                && !message.contains("ApiError")
                && !message.contains('\n'),
            "{namespace}: one short sentence per taken name: {message}"
        );
        let warned = eventually(LIMIT, || async {
            env.events(namespace, "shop", "ApplyFailed")
                .await
                .into_iter()
                .find(|event| event.type_.as_deref() == Some("Warning"))
        })
        .await;
        let note = warned
            .and_then(|event| event.note)
            .unwrap_or_else(|| panic!("{namespace}: no Warning Event ApplyFailed about shop"));
        for name in &taken {
            assert!(note.contains(name), "{namespace}: {note}");
        }
    }
    assert_eq!(
        env.policy_names(&deny).await,
        BTreeSet::from(["shop-default-deny".to_owned()]),
        "with its default deny's name taken, netfence writes nothing"
    );
    env.finish().await;
}

/// A NamespaceIsolation whose name is 57 characters (its policies' names are up to 70, one
/// DNS-1123 subdomain part longer than 63) reconciles on both servers. If this fails, a valid
/// resource goes ApplyFailed on the sandbox, where a real cluster takes its policies.
#[tokio::test]
async fn an_isolation_with_a_long_name_reconciles() {
    let mut env = Env::start_alone().await;
    let namespace = env.namespace("long-name").await;
    env.start_controller(Some(&namespace));
    let name = format!("shop-{}", "a".repeat(52));
    assert_eq!(name.len(), 57);
    env.create(&shop_named(&namespace, &name)).await;
    env.wait_reason(&namespace, &name, "Reconciled").await;
    env.wait_policies(&namespace, &shop_policies(&name)).await;
    env.finish().await;
}

/// Object names as the real API server takes them: a NetworkPolicy's name is a DNS-1123
/// subdomain (253 characters in all, a part between dots may be longer than 63); a namespace's
/// is a DNS-1123 label (63 at most). If this fails, the sandbox refuses what a cluster accepts
/// (or the reverse), and what a user tries there does not hold on a cluster.
#[tokio::test]
async fn object_names_follow_the_api_servers_rules() {
    let mut env = Env::start_alone().await;
    let namespace = env.namespace("names").await;
    let long_part = format!("p{}", "x".repeat(99));
    env.create_policy(&namespace, &hand_written(&long_part))
        .await;
    let dotted = format!("{}.{}", "a".repeat(126), "b".repeat(126));
    assert_eq!(dotted.len(), 253);
    env.create_policy(&namespace, &hand_written(&dotted)).await;

    let refused = |result: Result<NetworkPolicy, kube::Error>| match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let too_long: NetworkPolicy =
        serde_json::from_value(hand_written(&"c".repeat(254))).expect("a NetworkPolicy");
    let (code, message) = refused(
        env.policies(&namespace)
            .create(&PostParams::default(), &too_long)
            .await,
    );
    assert_eq!(code, 422, "{message}");
    assert!(
        message.contains("metadata.name") && message.contains("253"),
        "{message}"
    );

    let label = format!("ns-{}", "n".repeat(61));
    assert_eq!(label.len(), 64);
    let namespace_body: Namespace =
        serde_json::from_value(json!({"metadata": {"name": label}})).expect("a Namespace");
    match Api::<Namespace>::all(env.client.clone())
        .create(&PostParams::default(), &namespace_body)
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{}", status.message);
            assert!(
                status.message.contains("metadata.name"),
                "{}",
                status.message
            );
        }
        other => {
            let _ = Api::<Namespace>::all(env.client.clone())
                .delete(&label, &DeleteParams::default())
                .await;
            panic!("a 64-character namespace name was not refused: {other:?}");
        }
    }
    env.finish().await;
}

/// A JSON value as kubectl sends it: Go writes a float without its fraction when it has none
/// (`maximum: 65535.0` in `netfence crd`'s YAML goes out as `65535`).
fn as_go_writes(value: Value) -> Value {
    match value {
        Value::Number(number) => match number.as_f64() {
            Some(float) if number.is_f64() && float.fract() == 0.0 && float.abs() < 9.0e15 => {
                #[allow(clippy::cast_possible_truncation)] // integral and well inside i64
                let integer = float as i64;
                json!(integer)
            }
            _ => Value::Number(number),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(as_go_writes).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key, as_go_writes(value)))
                .collect(),
        ),
        other => other,
    }
}

/// The CRDs as `netfence crd` prints them, server-side applied again by another field manager
/// without forcing (what `netfence crd | kubectl apply --server-side -f -` sends, the README's
/// upgrade step), are accepted where they are already installed: the same values conflict with
/// no one. If this fails, that command reports a conflict on a fresh sandbox and a user is told
/// to force ownership of the CRDs away from the installer.
#[tokio::test]
async fn the_crds_apply_again_without_a_conflict() {
    let env = Env::start_alone().await;
    let api: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    for crd in netfence_crd::crds() {
        let name = crd.name_any();
        let body = as_go_writes(serde_json::to_value(&crd).expect("JSON"));
        let applied = api
            .patch(&name, &PatchParams::apply("kubectl"), &Patch::Apply(&body))
            .await;
        if let Err(error) = applied {
            panic!("the CRD {name} did not apply again: {error}");
        }
    }
    env.finish().await;
}
