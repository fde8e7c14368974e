//! Fault injection: clients retry through injected errors, watchers through closed watches,
//! and the audit log records what happened.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{Api, ResourceExt, api::PostParams, runtime::watcher};
use netfence_e2e::{Cluster, skip};
use serde_json::json;

use super::common::{code, isolation, isolations, object};

/// A client that retries server errors (as the netfence controller's reconcile loop does)
/// gets through injected 500s, and the audit log shows each failed attempt. If this fails,
/// fault injection does not reach the client, and the failure scenarios test nothing.
#[tokio::test]
async fn a_client_retries_through_injected_server_errors() {
    let cluster = Cluster::start().await.expect("cluster");
    let Some(sandbox) = cluster.sandbox() else {
        skip(
            "a_client_retries_through_injected_server_errors",
            "fault injection is a sandbox feature",
        );
        return;
    };
    let namespace = cluster.namespace("faults").await.expect("namespace");
    let api = isolations(&cluster.client(), &namespace.name);
    api.create(&PostParams::default(), &object(isolation("shop")))
        .await
        .expect("create");
    sandbox.audit_clear();
    sandbox
        .faults()
        .fail_next("get", "namespaceisolations", 3, 500);
    let mut attempts = 0;
    let fetched = loop {
        attempts += 1;
        assert!(attempts <= 10, "the retry loop is bounded");
        match api.get("shop").await {
            Ok(object) => break object,
            Err(error) => {
                assert_eq!(code(&error), Some(500), "{error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert_eq!(fetched.name_any(), "shop");
    assert_eq!(attempts, 4);
    let codes: Vec<u16> = sandbox
        .audit()
        .iter()
        .filter(|entry| entry.verb == "get" && entry.resource == "namespaceisolations")
        .map(|entry| entry.code)
        .collect();
    assert_eq!(codes, [500, 500, 500, 200]);
    let entry = sandbox.audit().last().cloned().expect("audited");
    assert_eq!(entry.namespace.as_deref(), Some(namespace.name.as_str()));
    assert_eq!(entry.name.as_deref(), Some("shop"));

    sandbox.faults().fail("create", "networkpolicies", 0.5, 409);
    let policies: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    let mut outcomes = Vec::new();
    for index in 0..4 {
        let policy: NetworkPolicy =
            object(json!({"metadata": {"name": format!("p{index}")}, "spec": {"podSelector": {}}}));
        outcomes.push(
            policies
                .create(&PostParams::default(), &policy)
                .await
                .map_err(|error| code(&error))
                .err(),
        );
    }
    assert_eq!(
        outcomes,
        [None, Some(Some(409)), None, Some(Some(409))],
        "half of the creates fail, evenly"
    );
    sandbox.faults().clear();
    namespace.cleanup().await;
    cluster.stop().await;
}

/// The kube client retries 429 Too Many Requests by itself, honouring Retry-After. If this
/// fails, API priority and fairness throttling surfaces as errors to netfence instead of delay.
#[tokio::test]
async fn the_kube_client_retries_too_many_requests() {
    let cluster = Cluster::start().await.expect("cluster");
    let Some(sandbox) = cluster.sandbox() else {
        skip(
            "the_kube_client_retries_too_many_requests",
            "fault injection is a sandbox feature",
        );
        return;
    };
    let namespace = cluster.namespace("throttle").await.expect("namespace");
    let api = isolations(&cluster.client(), &namespace.name);
    api.create(&PostParams::default(), &object(isolation("shop")))
        .await
        .expect("create");
    sandbox.audit_clear();
    sandbox
        .faults()
        .fail_next("get", "namespaceisolations", 2, 429);
    api.get("shop").await.expect("the client retried");
    let codes: Vec<u16> = sandbox
        .audit()
        .iter()
        .filter(|entry| entry.verb == "get")
        .map(|entry| entry.code)
        .collect();
    assert_eq!(codes, [429, 429, 200]);
    namespace.cleanup().await;
    cluster.stop().await;
}

/// A `kube::runtime::watcher` keeps every object when its watches are closed again and again,
/// and when watch requests fail: it re-watches and carries on. If this fails, the controller
/// misses NetworkPolicy changes after an API server restart or a load-balancer timeout.
#[tokio::test]
async fn a_watcher_survives_closed_and_failed_watches() {
    let cluster = Cluster::start().await.expect("cluster");
    let Some(sandbox) = cluster.sandbox() else {
        skip(
            "a_watcher_survives_closed_and_failed_watches",
            "fault injection is a sandbox feature",
        );
        return;
    };
    let namespace = cluster.namespace("rewatch").await.expect("namespace");
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("the watcher goes on")
            .expect("the stream goes on")
    };
    let mut initialised = false;
    for _ in 0..100 {
        if let Ok(watcher::Event::InitDone) = next().await {
            initialised = true;
            break;
        }
    }
    assert!(initialised, "the watcher lists first");
    for index in 0..5 {
        sandbox.faults().close_watches();
        if index == 2 {
            sandbox
                .faults()
                .fail_next("watch", "networkpolicies", 1, 500);
        }
        let name = format!("p{index}");
        let policy: NetworkPolicy =
            object(json!({"metadata": {"name": name}, "spec": {"podSelector": {}}}));
        api.create(&PostParams::default(), &policy)
            .await
            .expect("create");
        let mut arrived = false;
        for _ in 0..100 {
            if let Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) =
                next().await
                && object.name_any() == name
            {
                arrived = true;
                break;
            }
        }
        assert!(arrived, "{name} arrives despite the closed watch");
    }
    let watches = sandbox
        .audit()
        .iter()
        .filter(|entry| entry.verb == "watch" && entry.resource == "networkpolicies")
        .count();
    assert!(
        watches >= 5,
        "the watcher re-watched after each close ({watches} watches)"
    );
    assert!(
        sandbox
            .audit()
            .iter()
            .any(|entry| entry.verb == "watch" && entry.code == 500),
        "and through an injected failure"
    );
    namespace.cleanup().await;
    cluster.stop().await;
}
