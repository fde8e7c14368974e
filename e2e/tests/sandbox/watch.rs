//! Watches: resuming from a resourceVersion, 410 after compaction and the watcher's recovery,
//! bookmarks and streaming lists, label-selector watches.

use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    core::PartialObjectMeta,
    runtime::{WatchStreamExt, watcher},
};
use netfence_e2e::Cluster;
use netfence_sandbox::SandboxOptions;
use serde_json::json;

use super::common::object;

/// A bound on how long one event may take to arrive: a stuck stream fails the test instead of
/// hanging it. Not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

async fn next<S, T>(stream: &mut S) -> T
where
    S: Stream<Item = T> + Unpin,
{
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("an event arrives")
        .expect("the stream goes on")
}

fn policy(name: &str, labels: &serde_json::Value) -> NetworkPolicy {
    object(json!({"metadata": {"name": name, "labels": labels}, "spec": {"podSelector": {}}}))
}

/// What a watch event says, for comparisons: type and name.
fn describe(event: &WatchEvent<NetworkPolicy>) -> (String, String) {
    match event {
        WatchEvent::Added(object) => ("ADDED".into(), object.name_any()),
        WatchEvent::Modified(object) => ("MODIFIED".into(), object.name_any()),
        WatchEvent::Deleted(object) => ("DELETED".into(), object.name_any()),
        WatchEvent::Bookmark(bookmark) => (
            "BOOKMARK".into(),
            bookmark.metadata.resource_version.clone(),
        ),
        WatchEvent::Error(status) => ("ERROR".into(), status.code.to_string()),
    }
}

fn version(event: &WatchEvent<NetworkPolicy>) -> String {
    match event {
        WatchEvent::Added(object) | WatchEvent::Modified(object) | WatchEvent::Deleted(object) => {
            object.resource_version().unwrap_or_default()
        }
        WatchEvent::Bookmark(bookmark) => bookmark.metadata.resource_version.clone(),
        WatchEvent::Error(_) => String::new(),
    }
}

/// Next event that is not a bookmark.
async fn next_change<S>(stream: &mut S) -> WatchEvent<NetworkPolicy>
where
    S: Stream<Item = kube::Result<WatchEvent<NetworkPolicy>>> + Unpin,
{
    for _ in 0..1000 {
        let event = next(stream).await.expect("a watch event");
        if !matches!(event, WatchEvent::Bookmark(_)) {
            return event;
        }
    }
    panic!("only bookmarks arrived")
}

/// A watch resumed from a resourceVersion replays every later change once, in order, and a
/// second watch resumed from the middle continues without repeating. If this fails, the
/// controller misses a deleted or edited NetworkPolicy after a reconnect, or handles one twice.
#[tokio::test]
async fn a_watch_resumed_from_a_resource_version_sees_every_change_exactly_once() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("watch").await.expect("namespace");
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    let start = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();

    api.create(&PostParams::default(), &policy("a", &json!({})))
        .await
        .expect("create a");
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await
    .expect("patch a");
    api.create(&PostParams::default(), &policy("b", &json!({})))
        .await
        .expect("create b");
    api.delete("a", &DeleteParams::default())
        .await
        .expect("delete a");

    let mut stream = api
        .watch(&WatchParams::default(), &start)
        .await
        .expect("watch")
        .boxed();
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(next_change(&mut stream).await);
    }
    let seen: Vec<(String, String)> = events.iter().map(describe).collect();
    let expected = [
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]
    .map(|(kind, name)| (kind.to_owned(), name.to_owned()));
    assert_eq!(seen, expected);
    let versions: Vec<u64> = events
        .iter()
        .map(|event| version(event).parse().expect("numeric"))
        .collect();
    assert!(
        versions.windows(2).all(|pair| pair[0] < pair[1]),
        "resourceVersions grow: {versions:?}"
    );

    let mut resumed = api
        .watch(&WatchParams::default(), &version(&events[1]))
        .await
        .expect("watch")
        .boxed();
    assert_eq!(
        describe(&next_change(&mut resumed).await),
        ("ADDED".to_owned(), "b".to_owned())
    );
    assert_eq!(
        describe(&next_change(&mut resumed).await),
        ("DELETED".to_owned(), "a".to_owned())
    );
    api.create(&PostParams::default(), &policy("sentinel", &json!({})))
        .await
        .expect("sentinel");
    assert_eq!(
        describe(&next_change(&mut resumed).await),
        ("ADDED".to_owned(), "sentinel".to_owned()),
        "nothing is repeated before the next change"
    );
    assert_eq!(
        describe(&next_change(&mut stream).await),
        ("ADDED".to_owned(), "sentinel".to_owned()),
        "the first watch goes on live"
    );
    namespace.cleanup().await;
    cluster.stop().await;
}

/// After compaction a watch from an old resourceVersion gets a 410 Expired event, and
/// `kube::runtime::watcher` lists again and carries on. If this fails, the controller stalls or
/// spins after an API server restart or etcd compaction. (On a real cluster the compaction is
/// the e2e proxy's, in front of the operator's client: it answers as the API server does once
/// etcd compacted past a version.)
#[tokio::test]
async fn a_compacted_history_answers_410_and_the_watcher_relists() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("gone").await.expect("namespace");
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.operator_client(), &namespace.name);
    let writer: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    let start = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();
    writer
        .create(&PostParams::default(), &policy("before", &json!({})))
        .await
        .expect("create");
    cluster.faults().compact().await;
    let mut stream = api
        .watch(&WatchParams::default(), &start)
        .await
        .expect("the watch itself opens")
        .boxed();
    match next(&mut stream).await.expect("an event") {
        WatchEvent::Error(status) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected 410 Expired, got {other:?}"),
    }

    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut initialised = false;
    for _ in 0..1000 {
        if let Ok(watcher::Event::InitDone) = next(&mut events).await {
            initialised = true;
            break;
        }
    }
    assert!(initialised, "the watcher lists first");
    cluster.audit_clear();
    cluster.faults().compact().await;
    cluster.faults().close_watches();
    writer
        .create(&PostParams::default(), &policy("after", &json!({})))
        .await
        .expect("create");
    let (mut relisted, mut saw_after, mut saw_expired) = (false, false, false);
    for _ in 0..1000 {
        match next(&mut events).await {
            Ok(watcher::Event::Init) => relisted = true,
            Ok(watcher::Event::InitApply(object) | watcher::Event::Apply(object))
                if object.name_any() == "after" =>
            {
                saw_after = true;
            }
            Err(watcher::Error::WatchError(status)) if status.code == 410 => saw_expired = true,
            _ => {}
        }
        if relisted && saw_after && saw_expired {
            break;
        }
    }
    assert!(saw_expired, "the resumed watch was told 410");
    assert!(relisted, "the watcher listed again");
    assert!(saw_after, "and saw the object created meanwhile");
    let lists = cluster
        .audit()
        .await
        .iter()
        .filter(|entry| entry.verb == "list" && entry.resource == "networkpolicies")
        .count();
    assert!(lists >= 1, "the relist is a list request");
    namespace.cleanup().await;
    cluster.stop().await;
}

/// Streaming lists (`sendInitialEvents`) end their initial events with a bookmark, and watches
/// that allow bookmarks get the latest resourceVersion (a real server sends one about once a
/// minute and 2 s before a watch's timeout: this watch times out after 5 s). If this fails,
/// watchers on the streaming-list path never finish initialising, and idle watches resume from
/// stale versions.
#[tokio::test]
async fn streaming_lists_and_bookmarks_work() {
    let options = SandboxOptions {
        bookmark_interval: Duration::from_millis(100),
        ..SandboxOptions::default()
    };
    let cluster = Cluster::start_with(options).await.expect("cluster");
    let namespace = cluster.namespace("bookmark").await.expect("namespace");
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    api.create(&PostParams::default(), &policy("existing", &json!({})))
        .await
        .expect("create");

    let mut streaming = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = Vec::new();
    for _ in 0..100 {
        match next(&mut streaming).await.expect("no error") {
            watcher::Event::InitApply(object) => initial.push(object.name_any()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    // kube's watcher asks for the streaming list at resourceVersion "0" ("any": the API server
    // may serve its watch cache a moment stale, and under load a real one does). What a client
    // may rely on is that the object arrives, in the initial events or right after them; the
    // sandbox always serves its current state, one of the answers the real server may give.
    if initial.is_empty() && cluster.is_real() {
        for _ in 0..100 {
            if let watcher::Event::Apply(object) = next(&mut streaming).await.expect("no error") {
                initial.push(object.name_any());
                break;
            }
        }
    }
    assert_eq!(initial, ["existing"]);

    let current = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &current)
        .await
        .expect("watch")
        .boxed();
    let mut bookmark = None;
    for _ in 0..100 {
        if let WatchEvent::Bookmark(found) = next(&mut stream).await.expect("event") {
            bookmark = Some(found.metadata.resource_version);
            break;
        }
    }
    let bookmark: u64 = bookmark.expect("a bookmark").parse().expect("numeric");
    assert!(bookmark >= current.parse::<u64>().expect("numeric"));
    namespace.cleanup().await;
    cluster.stop().await;
}

/// A label-selector watch sees an object that starts matching as ADDED and one that stops
/// matching as DELETED. If this fails, a controller watching only its managed-by label keeps
/// stale objects in its cache after someone strips the label.
#[tokio::test]
async fn a_label_selector_watch_sees_objects_enter_and_leave() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("selector").await.expect("namespace");
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    let current = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = api
        .watch(&WatchParams::default().labels("app=x"), &current)
        .await
        .expect("watch")
        .boxed();
    api.create(
        &PostParams::default(),
        &policy("other", &json!({"app": "y"})),
    )
    .await
    .expect("create");
    api.create(&PostParams::default(), &policy("p", &json!({"app": "x"})))
        .await
        .expect("create");
    let relabel = |value: &str| Patch::Merge(json!({"metadata": {"labels": {"app": value}}}));
    api.patch("p", &PatchParams::default(), &relabel("y"))
        .await
        .expect("patch");
    api.patch("p", &PatchParams::default(), &relabel("x"))
        .await
        .expect("patch");
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&next_change(&mut stream).await));
    }
    let expected = [("ADDED", "p"), ("DELETED", "p"), ("ADDED", "p")]
        .map(|(kind, name)| (kind.to_owned(), name.to_owned()));
    assert_eq!(seen, expected);
    namespace.cleanup().await;
    cluster.stop().await;
}

/// `kube::runtime::watcher` through a reflector ends with the same objects as a list. If this
/// fails, the controller's view of NetworkPolicies drifts from the server's.
#[tokio::test]
async fn a_reflector_mirrors_the_list() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("reflect").await.expect("namespace");
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = kube::runtime::reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .applied_objects()
        .map_ok(|_| ())
        .boxed();
    let driver = tokio::spawn(async move {
        let mut stream = stream;
        while stream.next().await.is_some() {}
    });
    for name in ["one", "two", "three"] {
        api.create(&PostParams::default(), &policy(name, &json!({})))
            .await
            .expect("create");
    }
    api.delete("two", &DeleteParams::default())
        .await
        .expect("delete");
    let converged = netfence_e2e::eventually(PATIENCE, || {
        let reader = reader.clone();
        async move {
            let mut names: Vec<String> = reader
                .state()
                .iter()
                .map(|object| object.name_any())
                .collect();
            names.sort();
            (names == ["one", "three"]).then_some(())
        }
    })
    .await;
    driver.abort();
    assert!(
        converged.is_some(),
        "the reflector holds exactly the listed objects"
    );
    namespace.cleanup().await;
    cluster.stop().await;
}

/// Metadata-only reads (`as=PartialObjectMetadata`, what `Controller::owns` watches with) answer
/// PartialObjectMetadata, for one object, lists and watches. If this fails, the controller's
/// owned-object watch downloads whole policies, or breaks on clients that check the kind.
#[tokio::test]
async fn metadata_only_reads_answer_partial_objects() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("metadata").await.expect("namespace");
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    api.create(
        &PostParams::default(),
        &policy("p", &json!({"app.kubernetes.io/managed-by": "netfence"})),
    )
    .await
    .expect("create");
    let one = api.get_metadata("p").await.expect("metadata");
    assert_eq!(
        one.types.map(|types| types.kind).as_deref(),
        Some("PartialObjectMetadata")
    );
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .expect("list");
    assert_eq!(
        list.items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>(),
        ["p"]
    );
    let metadata: Api<PartialObjectMeta<NetworkPolicy>> =
        Api::namespaced(cluster.client(), &namespace.name);
    let mut events = watcher(
        metadata,
        watcher::Config::default().labels("app.kubernetes.io/managed-by=netfence"),
    )
    .boxed();
    let mut seen = Vec::new();
    for _ in 0..100 {
        match next(&mut events).await.expect("no error") {
            watcher::Event::InitApply(object) => seen.push(object.name_any()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(seen, ["p"]);
    namespace.cleanup().await;
    cluster.stop().await;
}

/// A watch ends at its `timeoutSeconds`, so clients re-watch and the server never holds a
/// connection forever. If this fails, watches pile up on a long-running sandbox.
#[tokio::test]
async fn a_watch_ends_at_its_timeout() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("timeout").await.expect("namespace");
    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    let current = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = api
        .watch(
            &WatchParams::default().timeout(1).disable_bookmarks(),
            &current,
        )
        .await
        .expect("watch")
        .boxed();
    let ended = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("the stream ends within the bound");
    assert!(ended.is_none(), "no event, then the end: {ended:?}");
    namespace.cleanup().await;
    cluster.stop().await;
}

/// `timeoutSeconds` is an integer, as upstream parses it for lists and watches: anything else
/// is 400 with Go's words; a negative one ends the watch at once with an ERROR event (its
/// deadline has passed); 0 means the server's own limit, not "end now". If this fails, a
/// client's typo holds a watch open for 30 minutes, or a watch asked with 0 ends before its
/// first event.
#[tokio::test]
async fn watch_and_list_timeouts_are_integers() {
    let cluster = Cluster::start().await.expect("cluster");
    let namespace = cluster.namespace("timeouts").await.expect("namespace");
    let raw = cluster.raw();
    let policies = format!(
        "/apis/networking.k8s.io/v1/namespaces/{}/networkpolicies",
        namespace.name
    );
    for (query, problem) in [
        ("timeoutSeconds=abc", "parsing \"abc\": invalid syntax"),
        ("timeoutSeconds=1.5", "parsing \"1.5\": invalid syntax"),
        (
            "watch=true&timeoutSeconds=abc",
            "parsing \"abc\": invalid syntax",
        ),
        ("watch=true&timeoutSeconds=", "parsing \"\": invalid syntax"),
        (
            "watch=true&timeoutSeconds=99999999999999999999",
            "parsing \"99999999999999999999\": value out of range",
        ),
    ] {
        let answer = raw
            .send(&format!("GET {policies}?{query} HTTP/1.1"), b"")
            .await
            .expect("an answer");
        assert_eq!(answer.code, 400, "{query}: {}", answer.text);
        assert_eq!(answer.body["reason"], "BadRequest", "{query}");
        assert_eq!(
            answer.body["message"],
            format!("strconv.ParseInt: {problem}"),
            "{query}"
        );
    }
    let answer = tokio::time::timeout(
        PATIENCE,
        raw.send(
            &format!("GET {policies}?watch=true&timeoutSeconds=-5 HTTP/1.1"),
            b"",
        ),
    )
    .await
    .expect("the watch ends at once")
    .expect("an answer");
    assert_eq!(answer.code, 200, "{}", answer.text);
    // A real server races its expired deadline against the stream's start: under load it
    // sometimes ends the stream before writing the ERROR event (seen in CI: an empty 200). The
    // sandbox always writes the event; either way the watch ends at once, with no object.
    if !(cluster.is_real() && answer.body.is_null()) {
        assert_eq!(answer.body["type"], "ERROR", "{}", answer.text);
        assert_eq!(answer.body["object"]["code"], 500, "{}", answer.text);
        assert_eq!(
            answer.body["object"]["message"],
            "context deadline exceeded"
        );
    }

    let api: Api<NetworkPolicy> = Api::namespaced(cluster.client(), &namespace.name);
    let current = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = api
        .watch(&WatchParams::default().timeout(0), &current)
        .await
        .expect("watch")
        .boxed();
    api.create(&PostParams::default(), &policy("after", &json!({})))
        .await
        .expect("create");
    loop {
        match next(&mut stream).await.expect("event") {
            WatchEvent::Added(object) => {
                assert_eq!(object.name_any(), "after");
                break;
            }
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    namespace.cleanup().await;
    cluster.stop().await;
}
