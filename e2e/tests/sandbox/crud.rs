//! Create, read, update, patch and delete of every served kind; lists with selectors and pages.

use std::{fmt::Debug, time::Duration};

use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{Event, Namespace, Pod},
        networking::v1::NetworkPolicy,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use netfence_e2e::{Cluster, eventually};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::common::{code, isolation, isolations, object, send, status};

/// Create, get, replace, merge-patch and delete one object, checking what a client sees.
async fn round_trip<K>(api: &Api<K>, created: K)
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = created.name_any();
    let created = api
        .create(&PostParams::default(), &created)
        .await
        .unwrap_or_else(|error| panic!("create {name}: {error}"));
    let uid = created.meta().uid.clone();
    assert!(uid.is_some(), "{name}: the server sets a uid");
    assert!(
        created.meta().creation_timestamp.is_some(),
        "{name}: and a creationTimestamp"
    );
    let first_version = created.resource_version();

    // A real server's own controllers may write meanwhile (a CRD's status): read and replace
    // again on a conflict, as every client of replace does.
    let mut attempts = 0;
    let replaced = loop {
        attempts += 1;
        let mut fetched = api
            .get(&name)
            .await
            .unwrap_or_else(|error| panic!("get {name}: {error}"));
        assert_eq!(fetched.meta().uid, uid);
        fetched
            .labels_mut()
            .insert("e2e".to_owned(), "replaced".to_owned());
        match api.replace(&name, &PostParams::default(), &fetched).await {
            Ok(replaced) => break replaced,
            Err(error) if code(&error) == Some(409) && attempts < 10 => {}
            Err(error) => panic!("replace {name}: {error}"),
        }
    };
    assert_ne!(
        replaced.resource_version(),
        first_version,
        "{name}: an update moves resourceVersion"
    );

    let patched = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"patched": "yes"}}})),
        )
        .await
        .unwrap_or_else(|error| panic!("patch {name}: {error}"));
    assert_eq!(
        patched.labels().get("e2e").map(String::as_str),
        Some("replaced")
    );
    assert_eq!(
        patched.labels().get("patched").map(String::as_str),
        Some("yes")
    );

    api.delete(&name, &DeleteParams::default())
        .await
        .unwrap_or_else(|error| panic!("delete {name}: {error}"));
    let gone = eventually(Duration::from_secs(60), || async {
        match api.get(&name).await {
            Err(error) if code(&error) == Some(404) => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(gone.is_some(), "{name}: a deleted object is not found");
}

fn widget_crd(group: &str, scope: &str, plural: &str, kind: &str) -> CustomResourceDefinition {
    object(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 1}}},
                    "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
                }}}
            }]
        }
    }))
}

/// Every kind the sandbox serves round-trips through the kube client. If this fails, a user's
/// manifests or the controller's writes of that kind break against the sandbox.
#[tokio::test]
async fn every_served_kind_round_trips() {
    let cluster = Cluster::start().await.expect("cluster");
    let client = cluster.client();
    let namespace = cluster.namespace("crud").await.expect("namespace");
    let ns = namespace.name.as_str();

    round_trip(
        &Api::<Namespace>::all(client.clone()),
        object(json!({"metadata": {"name": format!("{ns}-extra")}})),
    )
    .await;
    round_trip(
        &Api::<Pod>::namespaced(client.clone(), ns),
        object(json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}})),
    )
    .await;
    round_trip(
        &Api::<Event>::namespaced(client.clone(), ns),
        object(json!({"metadata": {"name": "ev"}, "involvedObject": {"kind": "Pod", "name": "web", "namespace": ns}, "reason": "Test", "message": "m"})),
    )
    .await;
    round_trip(
        &Api::<NetworkPolicy>::namespaced(client.clone(), ns),
        object(json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})),
    )
    .await;
    round_trip(
        &Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns),
        object(json!({"metadata": {"name": "ev2"}, "eventTime": "2025-01-01T00:00:00.000000Z", "reportingController": "e2e", "reportingInstance": "e2e", "action": "Test", "reason": "Test", "type": "Normal", "regarding": {"kind": "Pod", "name": "web", "namespace": ns}})),
    )
    .await;
    round_trip(
        &Api::<Lease>::namespaced(client.clone(), ns),
        object(json!({"metadata": {"name": "leader"}, "spec": {"holderIdentity": "me"}})),
    )
    .await;
    round_trip(&isolations(&client, ns), object(isolation("shop"))).await;

    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    // CRDs are cluster-wide: a group of this run's own, so that runs on one cluster never meet.
    let group = format!("e2e-{}.netfence.io", netfence_e2e::unique_suffix());
    round_trip(&crds, widget_crd(&group, "Namespaced", "probes", "Probe")).await;
    for (scope, plural, kind) in [
        ("Namespaced", "widgets", "Widget"),
        ("Cluster", "gadgets", "Gadget"),
    ] {
        let name = format!("{plural}.{group}");
        crds.create(
            &PostParams::default(),
            &widget_crd(&group, scope, plural, kind),
        )
        .await
        .expect("crd");
        // A real server serves a new CRD's resource once the CRD is established.
        let established = eventually(Duration::from_secs(30), || async {
            let crd = crds.get(&name).await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|condition| condition.type_ == "Established" && condition.status == "True")
                .then_some(())
        })
        .await;
        assert!(established.is_some(), "{name} is established");
        let resource = ApiResource {
            group: group.clone(),
            version: "v1".into(),
            api_version: format!("{group}/v1"),
            kind: kind.into(),
            plural: plural.into(),
        };
        let api: Api<DynamicObject> = if scope == "Cluster" {
            Api::all_with(client.clone(), &resource)
        } else {
            Api::namespaced_with(client.clone(), ns, &resource)
        };
        let instance =
            DynamicObject::new(&format!("{ns}-one"), &resource).data(json!({"spec": {"size": 2}}));
        round_trip(&api, instance).await;
        crds.delete(&name, &DeleteParams::default())
            .await
            .expect("crd deleted");
    }
    namespace.cleanup().await;
    cluster.stop().await;
}

/// An update that carries a stale resourceVersion is refused with 409. If this fails, two
/// writers overwrite each other silently (lost updates in the controller's status writes).
#[tokio::test]
async fn an_update_with_a_stale_resource_version_conflicts() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("stale").await.expect("namespace");
    let api = isolations(&cluster.client(), &namespace.name);
    let created = api
        .create(&PostParams::default(), &object(isolation("shop")))
        .await
        .expect("create");
    let mut fresher = created.clone();
    fresher.labels_mut().insert("a".into(), "1".into());
    api.replace("shop", &PostParams::default(), &fresher)
        .await
        .expect("first update");
    let mut stale = created;
    stale.labels_mut().insert("b".into(), "2".into());
    let error = api
        .replace("shop", &PostParams::default(), &stale)
        .await
        .expect_err("stale");
    let status = status(error);
    assert_eq!(status.code, 409);
    assert_eq!(status.reason, "Conflict");
    assert!(
        status.message.contains("the object has been modified"),
        "{}",
        status.message
    );
    namespace.cleanup().await;
    cluster.stop().await;
}

/// Creating an object that exists is 409 AlreadyExists, and `generateName` gets a unique name.
/// If this fails, create-or-update logic in clients takes the wrong branch.
#[tokio::test]
async fn create_conflicts_with_an_existing_name_and_generates_names() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("names").await.expect("namespace");
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    let policy: NetworkPolicy =
        object(json!({"metadata": {"name": "p"}, "spec": {"podSelector": {}}}));
    api.create(&PostParams::default(), &policy)
        .await
        .expect("create");
    let error = api
        .create(&PostParams::default(), &policy)
        .await
        .expect_err("exists");
    assert_eq!(status(error).reason, "AlreadyExists");
    let generated: NetworkPolicy =
        object(json!({"metadata": {"generateName": "gen-"}, "spec": {"podSelector": {}}}));
    let first = api
        .create(&PostParams::default(), &generated)
        .await
        .expect("generated");
    let second = api
        .create(&PostParams::default(), &generated)
        .await
        .expect("generated");
    assert!(first.name_any().starts_with("gen-"));
    assert_ne!(first.name_any(), second.name_any());
    namespace.cleanup().await;
    cluster.stop().await;
}

/// Lists filter by label selector and page with `limit`/`continue` over one consistent
/// snapshot. If this fails, the controller's caches (which list in pages of 500) miss or
/// duplicate objects.
#[tokio::test]
async fn lists_select_by_label_and_paginate_consistently() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("list").await.expect("namespace");
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    for index in 0..7 {
        let tier = if index % 2 == 0 { "web" } else { "api" };
        let policy: NetworkPolicy = object(json!({
            "metadata": {"name": format!("p{index}"), "labels": {"tier": tier, "index": index.to_string()}},
            "spec": {"podSelector": {}}
        }));
        api.create(&PostParams::default(), &policy)
            .await
            .expect("create");
    }
    let web = api
        .list(&ListParams::default().labels("tier=web"))
        .await
        .expect("list");
    assert_eq!(
        web.items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>(),
        ["p0", "p2", "p4", "p6"]
    );
    let set = api
        .list(&ListParams::default().labels("tier in (web,api),index notin (0,1)"))
        .await
        .expect("list");
    assert_eq!(set.items.len(), 5);
    let none = api
        .list(&ListParams::default().labels("!tier"))
        .await
        .expect("list");
    assert!(none.items.is_empty());

    let mut names = Vec::new();
    let mut params = ListParams::default().limit(3);
    let mut snapshot = None;
    for page in 0..10 {
        let list = api.list(&params).await.expect("page");
        assert!(list.items.len() <= 3);
        names.extend(list.items.iter().map(ResourceExt::name_any));
        let version = list.metadata.resource_version.clone();
        snapshot.get_or_insert(version.clone());
        assert_eq!(
            Some(&version),
            snapshot.as_ref(),
            "every page is read at the first page's version"
        );
        if page == 0 {
            let late: NetworkPolicy =
                object(json!({"metadata": {"name": "p99"}, "spec": {"podSelector": {}}}));
            api.create(&PostParams::default(), &late)
                .await
                .expect("late create");
        }
        match list.metadata.continue_ {
            Some(token) if !token.is_empty() => {
                params = ListParams::default().limit(3).continue_token(&token);
            }
            _ => break,
        }
    }
    assert_eq!(
        names,
        ["p0", "p1", "p2", "p3", "p4", "p5", "p6"],
        "pages hold the snapshot, without the late object"
    );
    let bad = api
        .list(&ListParams::default().labels("tier in web"))
        .await
        .expect_err("bad selector");
    assert_eq!(code(&bad), Some(400));
    namespace.cleanup().await;
    cluster.stop().await;
}

/// An Event written through `events.k8s.io/v1` (as netfence's recorder writes them) is also
/// served as a core `v1` Event, as a real server serves one store both ways: without it,
/// `kubectl get events` and `kubectl describe` show nothing of what netfence reports.
#[tokio::test]
async fn events_written_as_events_k8s_io_are_served_as_core_events() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("events").await.expect("namespace");
    let client = cluster.client();
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "e2e".to_owned(),
            instance: None,
        },
    );
    let regarding = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Namespace".to_owned()),
        name: Some(namespace.name.clone()),
        namespace: Some(namespace.name.clone()),
        ..Default::default()
    };
    recorder
        .publish(
            &kube::runtime::events::Event {
                type_: kube::runtime::events::EventType::Warning,
                reason: "Checked".to_owned(),
                note: Some("seen from both APIs".to_owned()),
                action: "Check".to_owned(),
                secondary: None,
            },
            &regarding,
        )
        .await
        .expect("the Event is published");
    let core: Api<Event> = Api::namespaced(client.clone(), &namespace.name);
    let found = eventually(Duration::from_secs(10), || {
        let core = core.clone();
        async move {
            core.list(&ListParams::default().fields("reason=Checked"))
                .await
                .ok()?
                .items
                .into_iter()
                .next()
        }
    })
    .await
    .expect("the core v1 view holds the Event");
    assert_eq!(found.message.as_deref(), Some("seen from both APIs"));
    assert_eq!(found.type_.as_deref(), Some("Warning"));
    assert_eq!(
        found.involved_object.name.as_deref(),
        Some(namespace.name.as_str())
    );
    assert_eq!(found.reporting_component.as_deref(), Some("e2e"));
    namespace.cleanup().await;
    cluster.stop().await;
}

/// A NetworkPolicy is stored as the real server stores it: a port without a protocol gets TCP,
/// a policy without `policyTypes` gets `[Ingress]` (plus `Egress` when it has egress rules),
/// and empty lists and maps are dropped, in the spec and in the metadata. If this fails,
/// `kubectl get netpol -o yaml` shows the sandbox's policies differently from a cluster's, and
/// a comparison of stored policies with rendered ones (netfence's drift check) is tested
/// against a server that does not exist.
#[tokio::test]
async fn network_policies_are_defaulted_as_upstream() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("defaulted").await.expect("namespace");
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    let created = api
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": {"name": "p", "labels": {}, "annotations": {}, "finalizers": []},
                "spec": {
                    "podSelector": {"matchLabels": {}, "matchExpressions": []},
                    "ingress": [],
                    "egress": [
                        {"ports": [{"port": 53}, {"port": 53, "protocol": "UDP"}], "to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": []}}]},
                        {"ports": [], "to": []},
                    ],
                },
            })),
        )
        .await
        .expect("create");
    let stored = serde_json::to_value(&created).expect("json");
    assert_eq!(
        stored["spec"],
        json!({
            "podSelector": {},
            "egress": [
                {"ports": [{"port": 53, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
                {},
            ],
            "policyTypes": ["Ingress", "Egress"],
        })
    );
    for field in ["labels", "annotations", "finalizers"] {
        assert!(
            stored["metadata"].get(field).is_none(),
            "an empty {field} is not stored: {}",
            stored["metadata"]
        );
    }
    let updated = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"egress": null, "policyTypes": null}})),
        )
        .await
        .expect("patch");
    assert_eq!(
        serde_json::to_value(updated.spec).expect("json")["policyTypes"],
        json!(["Ingress"]),
        "policyTypes defaults again, without Egress once there are no egress rules"
    );
    namespace.cleanup().await;
    cluster.stop().await;
}

/// Events are validated as upstream validates them: a core Event names the namespace of its
/// object, an `events.k8s.io` Event (what netfence's recorder writes) has an action, a note of
/// at most 1024 characters and a series of at least 2, and an update changes no more than its
/// series. If this fails, an Event that a real cluster refuses (and that never reaches
/// `kubectl describe`) passes every sandbox test.
#[tokio::test]
async fn events_are_validated_as_upstream() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("eventcheck").await.expect("namespace");
    let ns = namespace.name.as_str();
    let core: Api<Event> = Api::namespaced(cluster.client(), ns);
    let error = core
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "elsewhere"}, "involvedObject": {"kind": "Pod", "name": "web", "namespace": "other"}, "reason": "Test"})),
        )
        .await
        .expect_err("the involved object is in another namespace");
    let refused = status(error);
    assert_eq!(refused.code, 422, "{}", refused.message);
    assert_eq!(
        refused.message,
        "Event \"elsewhere\" is invalid: involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"
    );

    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(cluster.client(), ns);
    let event = json!({
        "metadata": {"name": "noted"}, "eventTime": "2025-01-01T00:00:00.000000Z",
        "reportingController": "netfence", "reportingInstance": "netfence-0",
        "reason": "Applied", "type": "Normal", "note": "x".repeat(1025),
        "regarding": {"kind": "NamespaceIsolation", "name": "shop", "namespace": ns},
        "series": {"count": 1, "lastObservedTime": "2025-01-01T00:00:00.000000Z"},
    });
    let error = events
        .create(&PostParams::default(), &object(event.clone()))
        .await
        .expect_err("no action, too long a note, a series of one");
    let refused = status(error);
    assert_eq!(refused.code, 422, "{}", refused.message);
    let fields: Vec<String> = refused
        .details
        .map(|details| details.causes)
        .unwrap_or_default()
        .into_iter()
        .map(|cause| format!("{}: {}", cause.field, cause.message))
        .collect();
    assert_eq!(
        fields,
        [
            "action: Required value",
            "message: Invalid value: \"\": can have at most 1024 characters",
            "series.count: Invalid value: \"\": should be at least 2",
        ]
    );

    let mut valid = event;
    valid["action"] = json!("Apply");
    valid["note"] = json!("first");
    valid["series"] = Value::Null;
    events
        .create(&PostParams::default(), &object(valid))
        .await
        .expect("a valid Event");
    let series = json!({"series": {"count": 2, "lastObservedTime": "2025-01-01T00:01:00.000000Z"}});
    events
        .patch("noted", &PatchParams::default(), &Patch::Merge(&series))
        .await
        .expect("a repeat counts in the series");
    let error = events
        .patch(
            "noted",
            &PatchParams::default(),
            &Patch::Merge(json!({"note": "second"})),
        )
        .await
        .expect_err("the note is immutable");
    let refused = status(error);
    assert_eq!(refused.code, 422);
    assert!(
        refused
            .message
            .contains("message: Invalid value: \"second\": field is immutable"),
        "{}",
        refused.message
    );
    namespace.cleanup().await;
    cluster.stop().await;
}

/// A raw request to the API server under test, with a JSON body unless `body` is `Null`.
async fn raw_request(
    cluster: &Cluster,
    method: &str,
    path: &str,
    media: &str,
    body: &Value,
) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nContent-Type: {media}\r\nContent-Length: {}",
        body.len()
    );
    send(&cluster.raw(), &head, body.as_bytes()).await
}

fn text<'a>(answer: &'a (u16, Value), field: &str) -> &'a str {
    answer.1[field].as_str().unwrap_or_default()
}

/// An update (PUT) whose body names no object, without `metadata` or with an empty one, is
/// refused with upstream's 400 and changes nothing. If this fails, a client that loses the
/// metadata of an object it replaces (a careless script, a broken serializer) rewrites the
/// object in the sandbox where a cluster refuses.
#[tokio::test]
async fn an_update_without_metadata_is_refused() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("nometa").await.expect("namespace");
    let object = format!(
        "/apis/networking.k8s.io/v1/namespaces/{}/networkpolicies/p",
        namespace.name
    );
    let collection = object.trim_end_matches("/p").to_owned();
    let created = raw_request(
        &cluster,
        "POST",
        &collection,
        "application/json",
        &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p"}, "spec": {"podSelector": {}}}),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);
    for body in [
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "spec": {"podSelector": {"matchLabels": {"a": "b"}}}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {}, "spec": {"podSelector": {"matchLabels": {"a": "b"}}}}),
    ] {
        let answer = raw_request(&cluster, "PUT", &object, "application/json", &body).await;
        assert_eq!(answer.0, 400, "{body}: {}", answer.1);
        assert_eq!(text(&answer, "reason"), "BadRequest");
        assert_eq!(
            text(&answer, "message"),
            "the name of the object (p based on URL) was undeterminable: name must be provided"
        );
    }
    let stored = send(&cluster.raw(), &format!("GET {object} HTTP/1.1"), b"").await;
    assert_eq!(stored.1["spec"]["podSelector"], json!({}), "unchanged");
    namespace.cleanup().await;
    cluster.stop().await;
}

/// The uid of an object never changes: an update naming another uid is a failed precondition
/// (409, upstream's storage error word for word), a patch or an apply that changes it is 422
/// (`metadata.uid: field is immutable`). If this fails, the sandbox silently keeps the old uid
/// and answers 200 where a cluster refuses, so a client that replaces an object by a stale copy
/// of another (deleted and recreated) never learns it.
#[tokio::test]
async fn a_changed_uid_is_refused() {
    const OTHER: &str = "00000000-0000-4000-8000-000000000001";
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("uid").await.expect("namespace");
    let ns = namespace.name.as_str();
    let object = format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/p");
    let collection = object.trim_end_matches("/p").to_owned();
    let created = raw_request(
        &cluster,
        "POST",
        &collection,
        "application/json",
        &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p"}, "spec": {"podSelector": {}}}),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);
    let uid = created.1["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut other = created.1.clone();
    other["metadata"]["uid"] = json!(OTHER);
    // With the current resourceVersion, and with a stale one: the uid is checked first.
    for resource_version in [created.1["metadata"]["resourceVersion"].clone(), json!("1")] {
        other["metadata"]["resourceVersion"] = resource_version;
        let answer = raw_request(&cluster, "PUT", &object, "application/json", &other).await;
        assert_eq!(answer.0, 409, "{}", answer.1);
        assert_eq!(text(&answer, "reason"), "Conflict");
        assert_eq!(
            text(&answer, "message"),
            format!(
                "Operation cannot be fulfilled on networkpolicies.networking.k8s.io \"p\": StorageError: invalid object, Code: 4, Key: /registry/networkpolicies/{ns}/p, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {OTHER}, UID in object meta: {uid}"
            )
        );
    }
    let immutable = format!(
        "NetworkPolicy.networking.k8s.io \"p\" is invalid: metadata.uid: Invalid value: \"{OTHER}\": field is immutable"
    );
    for (media, body) in [
        (
            "application/merge-patch+json",
            json!({"metadata": {"uid": OTHER}}),
        ),
        (
            "application/json-patch+json",
            json!([{"op": "replace", "path": "/metadata/uid", "value": OTHER}]),
        ),
        (
            "application/strategic-merge-patch+json",
            json!({"metadata": {"uid": OTHER}}),
        ),
        (
            "application/apply-patch+yaml",
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p", "uid": OTHER}}),
        ),
    ] {
        let answer = raw_request(
            &cluster,
            "PATCH",
            &format!("{object}?fieldManager=e2e"),
            media,
            &body,
        )
        .await;
        assert_eq!(answer.0, 422, "{media}: {}", answer.1);
        assert_eq!(text(&answer, "reason"), "Invalid", "{media}");
        assert_eq!(text(&answer, "message"), immutable, "{media}");
    }
    let stored = send(&cluster.raw(), &format!("GET {object} HTTP/1.1"), b"").await;
    assert_eq!(stored.1["metadata"]["uid"], json!(uid), "unchanged");
    namespace.cleanup().await;
    cluster.stop().await;
}

/// An apply that would create an object may not name a uid: upstream's patch handler refuses it
/// (409, "uid mismatch ... no existing object was found") and creates nothing, so a uid cannot
/// make an apply "create only if absent" (netfence looked for such a create, to restore a
/// deleted policy without first checking its name). If this fails, the sandbox creates what a
/// cluster refuses.
#[tokio::test]
async fn an_apply_that_creates_may_not_name_a_uid() {
    const UID: &str = "00000000-0000-4000-8000-000000000002";
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("apply-uid").await.expect("namespace");
    let ns = namespace.name.as_str();
    let object = format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/p");
    let config = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "uid": UID}, "spec": {"podSelector": {}},
    });
    for force in ["false", "true"] {
        let answer = raw_request(
            &cluster,
            "PATCH",
            &format!("{object}?fieldManager=e2e&force={force}"),
            "application/apply-patch+yaml",
            &config,
        )
        .await;
        assert_eq!(answer.0, 409, "force={force}: {}", answer.1);
        assert_eq!(text(&answer, "reason"), "Conflict");
        assert_eq!(
            text(&answer, "message"),
            format!(
                "Operation cannot be fulfilled on networkpolicies.networking.k8s.io \"p\": uid mismatch: the provided object specified uid {UID}, and no existing object was found"
            )
        );
    }
    let stored = send(&cluster.raw(), &format!("GET {object} HTTP/1.1"), b"").await;
    assert_eq!(stored.0, 404, "nothing created: {}", stored.1);
    namespace.cleanup().await;
    cluster.stop().await;
}

/// Namespaces cannot be deleted as a collection (upstream's namespace registry has no
/// deletecollection: 405, and discovery does not list the verb), nor can a namespaced
/// resource across every namespace (405 for built-in kinds, the CRD handler's plain 404 for
/// custom resources). Sent as dry runs, so a server that wrongly serves them deletes nothing.
/// If this fails, one `DELETE /api/v1/namespaces` deletes `default`, `kube-system` and every
/// test namespace in the sandbox.
#[tokio::test]
async fn namespaces_and_every_namespace_cannot_be_deleted_as_a_collection() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("collection").await.expect("namespace");
    for path in [
        "/api/v1/namespaces?dryRun=All",
        "/apis/networking.k8s.io/v1/networkpolicies?dryRun=All",
    ] {
        let answer = raw_request(&cluster, "DELETE", path, "application/json", &Value::Null).await;
        assert_eq!(answer.0, 405, "{path}: {}", answer.1);
        assert_eq!(text(&answer, "reason"), "MethodNotAllowed", "{path}");
        assert_eq!(
            text(&answer, "message"),
            "the server does not allow this method on the requested resource"
        );
    }
    let answer = cluster
        .raw()
        .send(
            "DELETE /apis/netfence.io/v1alpha1/namespaceisolations?dryRun=All HTTP/1.1",
            b"",
        )
        .await
        .expect("an answer");
    assert_eq!(answer.code, 404, "{}", answer.text);
    assert_eq!(answer.text, "404 page not found\n");
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    for name in ["default", "kube-system", namespace.name.as_str()] {
        namespaces.get(name).await.expect("still there");
    }
    let discovery = send(&cluster.raw(), "GET /api/v1 HTTP/1.1", b"").await;
    let verbs = discovery.1["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|resource| resource["name"] == "namespaces")
        .map(|resource| resource["verbs"].clone())
        .unwrap_or_default();
    assert_eq!(
        verbs,
        json!([
            "create", "delete", "get", "list", "patch", "update", "watch"
        ])
    );
    namespace.cleanup().await;
    cluster.stop().await;
}
