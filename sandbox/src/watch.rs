//! Watches: a stream of newline-delimited watch events, resumed from a `resourceVersion`.
//!
//! ```text
//! resourceVersion unset or "0" --> ADDED for every object that exists, then live changes
//! resourceVersion N            --> every retained change after N, then live changes
//! N older than the history     --> one ERROR event with a 410 Expired Status (HTTP 200), as the real server
//! ```
//!
//! Each change is sent at most once and in `resourceVersion` order: the backlog is read and
//! the live subscription taken under one lock, and live changes at or below the backlog's last
//! revision are skipped. With `allowWatchBookmarks`, a BOOKMARK carries the latest revision the
//! watch has seen; with `sendInitialEvents`, a bookmark annotated `k8s.io/initial-events-end`
//! ends the initial events. A label-selector watch sees an object that stops matching as
//! DELETED and one that starts matching as ADDED. A watch ends at `timeoutSeconds`, when the
//! sandbox closes every watch (fault injection), or when it falls too far behind.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::body::{Body, Bytes};
use futures::{SinkExt, channel::mpsc};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{
    Shared,
    objects::present,
    resources::ResourceInfo,
    selector::{FieldSelector, LabelSelector},
    status::ApiError,
    store::{Change, ChangeType},
    table::Output,
};

/// What a watch asks for.
#[derive(Clone, Debug)]
pub struct WatchRequest {
    /// The resource.
    pub info: ResourceInfo,
    /// The namespace, or every namespace.
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector` (a watch of one object pins `metadata.name`).
    pub fields: FieldSelector,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `sendInitialEvents`.
    pub initial_events: bool,
    /// `timeoutSeconds`, bounded by the server.
    pub timeout: Duration,
    /// How objects are sent: themselves, as Tables (`kubectl get -w`), or metadata only.
    pub output: Output,
}

impl WatchRequest {
    fn selects(&self, namespace: &str, object: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|wanted| wanted == namespace)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    /// The event a change makes for this watch, if any.
    fn event(&self, change: &Change) -> Option<Value> {
        if change.resource != self.info.store_key() {
            return None;
        }
        let namespace = change.key.namespace.as_str();
        let now = self.selects(namespace, &change.object);
        let before = change
            .previous
            .as_ref()
            .is_some_and(|previous| self.selects(namespace, previous));
        let kind = match (change.change, before, now) {
            (ChangeType::Modified, true, true) => "MODIFIED",
            (ChangeType::Added, _, true) | (ChangeType::Modified, false, true) => "ADDED",
            (ChangeType::Modified | ChangeType::Deleted, true, _) => "DELETED",
            _ => return None,
        };
        Some(self.wrap(kind, &change.object))
    }

    fn wrap(&self, kind: &str, object: &Value) -> Value {
        let object = present(&self.info, object);
        json!({"type": kind, "object": self.output.render(&self.info, object)})
    }

    fn bookmark(&self, revision: u64, initial_end: bool) -> Value {
        let mut metadata =
            json!({"resourceVersion": revision.to_string(), "creationTimestamp": null});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({
            "type": "BOOKMARK",
            "object": {"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": metadata},
        })
    }
}

/// One event as a line of JSON, its type before its object as kube-apiserver writes them (the
/// fields of its WatchEvent in order; a JSON map here sorts them). A client that decodes the
/// event as a tagged enum (kube's `WatchEvent`) reads the object straight into its type only
/// when the tag comes first, and otherwise copies the whole object into a buffer before (CPU
/// the operator spent against the sandbox alone).
fn line(event: &Value) -> Bytes {
    let text = match (event.get("type"), event.get("object")) {
        (Some(kind), Some(object)) if event.as_object().is_some_and(|fields| fields.len() == 2) => {
            format!("{{\"type\":{kind},\"object\":{object}}}\n")
        }
        _ => format!("{event}\n"),
    };
    Bytes::from(text)
}

/// A watch that sends `events` and ends.
fn finished(events: &[Value]) -> Body {
    let (mut sender, body) = mpsc::channel::<Result<Bytes, Infallible>>(events.len());
    for event in events {
        let _ = sender.try_send(Ok(line(event)));
    }
    Body::from_stream(body)
}

/// The answer to a watch whose `timeoutSeconds` is negative: its deadline passed before it
/// started, and upstream's watch ends at once with one ERROR event saying so (HTTP 200).
pub fn expired() -> Body {
    let status = ApiError::internal("context deadline exceeded").to_status();
    finished(&[json!({"type": "ERROR", "object": status})])
}

/// Start a watch: the backlog is taken now, the rest streams from a task.
pub(crate) fn start(shared: &Arc<Shared>, request: WatchRequest) -> Result<Body, ApiError> {
    let mut first = Vec::new();
    let (receiver, start_revision) = {
        let state = shared.read_state();
        let current = state.store.revision();
        let receiver = state.store.subscribe();
        let resume = request
            .resource_version
            .as_deref()
            .filter(|version| !version.is_empty() && *version != "0" && !request.initial_events);
        match resume {
            None => {
                for (key, object) in state.store.iter(&request.info.store_key()) {
                    if request.selects(&key.namespace, object) {
                        first.push(request.wrap("ADDED", object));
                    }
                }
                if request.initial_events && request.bookmarks {
                    first.push(request.bookmark(current, true));
                }
            }
            Some(version) => {
                // 400 for a malformed version, 504 for one the server has not reached.
                state.read_revision(Some(version), None)?;
                let requested: u64 = version.parse().unwrap_or_default();
                match state.store.changes_since(requested) {
                    Ok(changes) => {
                        first.extend(changes.iter().filter_map(|change| request.event(change)));
                    }
                    Err(expired) => {
                        let status = ApiError::gone(format!(
                            "too old resource version: {} ({})",
                            expired.requested, expired.oldest
                        ))
                        .to_status();
                        first.push(json!({"type": "ERROR", "object": status}));
                        return Ok(finished(&first));
                    }
                }
            }
        }
        (receiver, current)
    };
    let (sender, body) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let closed = shared.watch_epoch.subscribe();
    let interval = shared.options.bookmark_interval;
    tokio::spawn(stream(
        request,
        first,
        receiver,
        start_revision,
        sender,
        closed,
        interval,
    ));
    Ok(Body::from_stream(body))
}

async fn stream(
    request: WatchRequest,
    first: Vec<Value>,
    mut receiver: tokio::sync::broadcast::Receiver<Arc<Change>>,
    start_revision: u64,
    mut sender: mpsc::Sender<Result<Bytes, Infallible>>,
    mut closed: tokio::sync::watch::Receiver<u64>,
    bookmark_interval: Duration,
) {
    for event in &first {
        if sender.send(Ok(line(event))).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(request.timeout);
    tokio::pin!(deadline);
    let mut bookmarks = tokio::time::interval(bookmark_interval);
    bookmarks.tick().await;
    let mut seen = start_revision;
    loop {
        tokio::select! {
            () = &mut deadline => return,
            _ = closed.changed() => return,
            _ = bookmarks.tick(), if request.bookmarks => {
                if sender.send(Ok(line(&request.bookmark(seen, false)))).await.is_err() {
                    return;
                }
            }
            next = receiver.recv() => match next {
                Ok(change) => {
                    if change.revision <= start_revision {
                        continue;
                    }
                    seen = change.revision;
                    if let Some(event) = request.event(&change)
                        && sender.send(Ok(line(&event))).await.is_err()
                    {
                        return;
                    }
                }
                // Too far behind, or the server is gone: end the watch; the client resumes
                // from the last resourceVersion it saw.
                Err(RecvError::Lagged(_) | RecvError::Closed) => return,
            },
        }
    }
}
