//! A fault-injecting proxy, on loopback, between the operator under test and a real API server:
//! the sandbox's fault rules, applied to real traffic.
//!
//! ```text
//! operator --http://127.0.0.1:PORT--> proxy --faults: delay? fail? cut watches? 410?-->
//!          kube::Client (TLS, the operator's ServiceAccount token) --> kube-apiserver
//! ```
//!
//! Requests are classified as the sandbox classifies them (`netfence_sandbox::http::request_info`),
//! so `fail("apply", "networkpolicies", 0.3, 500)` means the same on both. `close_watches` ends
//! every open watch response, as a server restart or a load balancer does; `compact` answers the
//! next watch from any resourceVersion issued so far with the real server's 410 `Expired` ERROR
//! event (and exact lists with 410), so clients list again: what an etcd compaction does once the
//! watch cache has moved past that version.

use std::{
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use axum::{
    body::Body,
    extract::{Request, State},
    response::{IntoResponse as _, Response},
};
use http_body_util::{BodyExt as _, StreamBody};
use kube::Client;
use netfence_sandbox::{
    FaultId,
    audit::{self, FaultRules, Matcher},
    http::{error_response, request_info},
    status::ApiError,
};
use serde_json::json;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

/// The largest request body the proxy forwards (the API server's own limit is 3 MiB).
const BODY_LIMIT: usize = 8 * 1024 * 1024;

struct Shared {
    upstream: Client,
    rules: Mutex<FaultRules>,
    /// Bumped by `close_watches`; every open watch ends when it changes.
    closes: watch::Sender<u64>,
    /// Watches (and exact lists) from a resourceVersion below this answer 410: every version
    /// issued before `compact`, as the sandbox's compaction does. A relist that returns the same
    /// newest version is refused again until something writes (the API server's own lease
    /// renewals do within seconds).
    compacted_below: AtomicU64,
}

impl Shared {
    fn rules(&self) -> MutexGuard<'_, FaultRules> {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running proxy. Dropping it stops it.
pub struct Proxy {
    url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Listen on a free loopback port and forward every request through `upstream`.
    pub async fn start(upstream: Client) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("failed to bind the fault-injecting proxy")?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::new(FaultRules::default()),
            closes: watch::Sender::new(0),
            compacted_below: AtomicU64::new(0),
        });
        let router = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Proxy {
            url: format!("http://{address}"),
            shared,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The fault controls.
    #[must_use]
    pub fn faults(&self) -> ProxyFaults {
        ProxyFaults {
            shared: self.shared.clone(),
        }
    }
}

/// Fault injection into the proxied traffic; the same rules as `netfence_sandbox::Faults`.
#[derive(Clone)]
pub struct ProxyFaults {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ProxyFaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyFaults").finish_non_exhaustive()
    }
}

fn matcher(verb: &str, resource: &str) -> Matcher {
    Matcher {
        verb: verb.to_owned(),
        resource: resource.to_owned(),
        label_selector: None,
    }
}

// The fault id is only needed to remove one fault early: most tests clear them all.
#[allow(clippy::must_use_candidate)]
impl ProxyFaults {
    /// Fail `share` of the matching requests with `code`.
    pub fn fail(&self, verb: &str, resource: &str, share: f64, code: u16) -> FaultId {
        self.shared
            .rules()
            .fail(matcher(verb, resource), share, code)
    }

    /// Fail the next `count` matching requests with `code`.
    pub fn fail_next(&self, verb: &str, resource: &str, count: u64, code: u16) -> FaultId {
        self.shared
            .rules()
            .fail_next(matcher(verb, resource), count, code)
    }

    /// Delay the matching requests.
    pub fn latency(&self, verb: &str, resource: &str, delay: Duration) -> FaultId {
        self.shared.rules().latency(matcher(verb, resource), delay)
    }

    /// Delay the matching requests that carry exactly this `labelSelector`.
    pub fn latency_selected(
        &self,
        verb: &str,
        resource: &str,
        label_selector: &str,
        delay: Duration,
    ) -> FaultId {
        let matcher = Matcher {
            label_selector: Some(label_selector.to_owned()),
            ..matcher(verb, resource)
        };
        self.shared.rules().latency(matcher, delay)
    }

    /// Remove one fault.
    pub fn remove(&self, id: FaultId) {
        self.shared.rules().remove(id);
    }

    /// Remove every fault.
    pub fn clear(&self) {
        self.shared.rules().clear();
    }

    /// End every open watch now.
    pub fn close_watches(&self) {
        self.shared.closes.send_modify(|count| *count += 1);
    }

    /// Forget the history: watches from any resourceVersion issued so far answer 410.
    pub async fn compact(&self) -> anyhow::Result<()> {
        // The newest resourceVersion of the whole store: a list's, read from the server.
        let request = http::Request::get("/api/v1/namespaces?limit=1").body(Vec::new())?;
        let list: serde_json::Value = self
            .shared
            .upstream
            .request(request)
            .await
            .context("failed to read the current resourceVersion")?;
        let current = list
            .pointer("/metadata/resourceVersion")
            .and_then(|version| version.as_str())
            .and_then(|version| version.parse::<u64>().ok())
            .context("the namespace list carries no numeric resourceVersion")?;
        self.shared
            .compacted_below
            .fetch_max(current + 1, Ordering::SeqCst);
        self.close_watches();
        Ok(())
    }
}

fn query_value(uri: &http::Uri, key: &str) -> Option<String> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.into_owned())
}

/// The 410 a real server answers for a version that is gone: a Status for a list, an ERROR
/// event in a 200 stream for a watch.
fn expired(watching: bool) -> Response {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "too old resource version", "reason": "Expired", "code": 410,
    });
    if watching {
        let event = format!("{}\n", json!({"type": "ERROR", "object": status}));
        ([(http::header::CONTENT_TYPE, "application/json")], event).into_response()
    } else {
        error_response(&ApiError::gone("too old resource version"))
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let info = request_info(&parts.method, &parts.uri, &parts.headers);
    let watching = info.verb == "watch";
    let label_selector = query_value(&parts.uri, "labelSelector");
    let decision = shared.rules().decide(&audit::Request {
        verb: &info.verb,
        resource: &info.resource,
        subresource: info.subresource.as_deref(),
        label_selector: label_selector.as_deref(),
    });
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    if let Some(code) = decision.fail {
        return error_response(&ApiError::injected(code, None, info.name.as_deref()));
    }
    let compacted_below = shared.compacted_below.load(Ordering::SeqCst);
    let exact_list = query_value(&parts.uri, "resourceVersionMatch").as_deref() == Some("Exact");
    if (watching || exact_list)
        && query_value(&parts.uri, "resourceVersion")
            .and_then(|version| version.parse::<u64>().ok())
            .is_some_and(|version| version != 0 && version < compacted_below)
    {
        return expired(watching);
    }
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return error_response(&ApiError::too_large(BODY_LIMIT));
    };
    // The upstream client sets the host, the credentials and the length of its own.
    for header in [
        http::header::HOST,
        http::header::AUTHORIZATION,
        http::header::CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
        http::header::CONNECTION,
    ] {
        parts.headers.remove(header);
    }
    let mut upstream_request = http::Request::new(kube::client::Body::from(bytes.to_vec()));
    *upstream_request.method_mut() = parts.method;
    *upstream_request.uri_mut() = parts.uri.path_and_query().map_or_else(
        || http::Uri::from_static("/"),
        |path| path.as_str().parse().unwrap_or_default(),
    );
    *upstream_request.headers_mut() = parts.headers;
    let response = match shared.upstream.send(upstream_request).await {
        Ok(response) => response,
        Err(error) => {
            return error_response(&ApiError::new(
                503,
                "ServiceUnavailable",
                format!("the proxy could not reach the API server: {error}"),
            ));
        }
    };
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    parts.headers.remove(http::header::CONNECTION);
    if !watching {
        return Response::from_parts(parts, Body::new(body));
    }
    // A watch ends when its stream ends or `close_watches` is called.
    let closes = shared.closes.subscribe();
    let frames = futures::stream::unfold(Some(body), move |body| {
        let mut closes = closes.clone();
        async move {
            let mut body = body?;
            tokio::select! {
                frame = body.frame() => frame.map(|frame| (frame, Some(body))),
                _ = closes.changed() => None,
            }
        }
    });
    Response::from_parts(parts, Body::new(StreamBody::new(frames)))
}
