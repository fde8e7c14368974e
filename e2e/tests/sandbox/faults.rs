//! Fault injection: clients retry through injected errors, watchers through closed watches,
//! and the audit log records what happened. On a real cluster the faults are the e2e proxy's,
//! in front of the API server for the operator's client: an injected failure is answered by
//! the proxy and never reaches the server, so the real audit log shows only the requests that
//! got through.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{Api, ResourceExt, api::PostParams, runtime::watcher};
use netfence_e2e::{Cluster, eventually};
use serde_json::json;

use super::common::{code, isolation, isolations, object};

/// The codes the audit log holds for `verb` on `resource`, once it holds at least `at_least`
/// of them (a real server logs a request when its response is complete).
async fn audited_codes(cluster: &Cluster, verb: &str, resource: &str, at_least: usize) -> Vec<u16> {
    let codes = || async {
        cluster
            .audit()
            .await
            .iter()
            .filter(|entry| entry.verb == verb && entry.resource == resource)
            .map(|entry| entry.code)
            .collect::<Vec<u16>>()
    };
    let settled = eventually(Duration::from_secs(30), || async {
        let found = codes().await;
        (found.len() >= at_least).then_some(found)
    })
    .await;
    match settled {
        Some(found) => found,
        None => codes().await,
    }
}

/// A client that retries server errors (as the netfence controller's reconcile loop does)
/// gets through injected 500s, and the audit log shows each attempt that reached the server.
/// If this fails, fault injection does not reach the client, and the failure scenarios test
/// nothing.
#[tokio::test]
async fn a_client_retries_through_injected_server_errors() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("faults").await.expect("namespace");
    isolations(&cluster.client(), &namespace.name)
        .create(&PostParams::default(), &object(isolation("shop")))
        .await
        .expect("create");
    let operator = cluster.operator_client();
    let api = isolations(&operator, &namespace.name);
    cluster.audit_clear();
    cluster
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
    let codes = audited_codes(&cluster, "get", "namespaceisolations", 1).await;
    if cluster.sandbox().is_some() {
        assert_eq!(codes, [500, 500, 500, 200]);
    } else {
        assert_eq!(codes, [200], "the proxy answered the failures itself");
    }
    let entry = cluster
        .audit()
        .await
        .into_iter()
        .rfind(|entry| entry.verb == "get" && entry.resource == "namespaceisolations")
        .expect("audited");
    assert_eq!(entry.namespace.as_deref(), Some(namespace.name.as_str()));
    assert_eq!(entry.name.as_deref(), Some("shop"));

    cluster.faults().fail("create", "networkpolicies", 0.5, 409);
    let policies: Api<NetworkPolicy> = Api::namespaced(operator, &namespace.name);
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
    cluster.faults().clear();
    namespace.cleanup().await;
    cluster.stop().await;
}

/// The kube client retries 429 Too Many Requests by itself, honouring Retry-After. If this
/// fails, API priority and fairness throttling surfaces as errors to netfence instead of delay.
#[tokio::test]
async fn the_kube_client_retries_too_many_requests() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("throttle").await.expect("namespace");
    isolations(&cluster.client(), &namespace.name)
        .create(&PostParams::default(), &object(isolation("shop")))
        .await
        .expect("create");
    let api = isolations(&cluster.operator_client(), &namespace.name);
    cluster.audit_clear();
    cluster
        .faults()
        .fail_next("get", "namespaceisolations", 2, 429);
    let started = tokio::time::Instant::now();
    api.get("shop").await.expect("the client retried");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the client waited for Retry-After (1 s) before retrying"
    );
    let codes = audited_codes(&cluster, "get", "namespaceisolations", 1).await;
    if cluster.sandbox().is_some() {
        assert_eq!(codes, [429, 429, 200]);
    } else {
        assert_eq!(codes, [200], "the proxy answered the 429s itself");
    }
    namespace.cleanup().await;
    cluster.stop().await;
}

/// A `kube::runtime::watcher` keeps every object when its watches are closed again and again,
/// and when watch requests fail: it re-watches and carries on. If this fails, the controller
/// misses NetworkPolicy changes after an API server restart or a load-balancer timeout.
#[tokio::test]
async fn a_watcher_survives_closed_and_failed_watches() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("rewatch").await.expect("namespace");
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.operator_client(), &namespace.name);
    let writer: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    cluster.audit_clear();
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
        cluster.faults().close_watches();
        if index == 2 {
            cluster
                .faults()
                .fail_next("watch", "networkpolicies", 1, 500);
        }
        let name = format!("p{index}");
        let policy: NetworkPolicy =
            object(json!({"metadata": {"name": name}, "spec": {"podSelector": {}}}));
        writer
            .create(&PostParams::default(), &policy)
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
    // The sandbox logs each watch as it starts, the injected failure included: at least the
    // first and one per close. A real server logs a watch once it ends, and never sees the
    // injected failure; the watcher says InitDone before its first watch is open, so the
    // first close may find no watch to close: at least 4 closed watches.
    let expected = if cluster.sandbox().is_some() { 5 } else { 4 };
    let watches = audited_codes(&cluster, "watch", "networkpolicies", expected).await;
    assert!(
        watches.len() >= expected,
        "the watcher re-watched after each close ({} watches)",
        watches.len()
    );
    if cluster.sandbox().is_some() {
        assert!(
            watches.contains(&500),
            "and through an injected failure (which on a real cluster the proxy answers)"
        );
    }
    namespace.cleanup().await;
    cluster.stop().await;
}
