//! The sandbox: an in-memory Kubernetes API server that speaks the real HTTP protocol to real
//! clients (the `kube` crate, `kubectl`), for trying netfence without a cluster and as the
//! ground of every scenario test.
//!
//! ```text
//!  kube::Client / kubectl --HTTP--> http (routes, verbs, bodies, faults, audit)
//!                                     |-- discovery + OpenAPI v3 (+ Table output)
//!                                     |-- protobuf: `kubectl create namespace` body -> JSON
//!                                     '-- objects (create/update/patch/apply/delete, GC)
//!                                           |-- schema: CRD OpenAPI + CEL admission
//!                                           |-- apply + fields: server-side apply, managedFields
//!                                           '-- store: objects, resourceVersion, history --> watch
//! ```
//!
//! Layers, lowest first: each module uses only modules listed above it (the import graph is a
//! DAG; keep it one). What it does, then what it uses:
//!
//! ```text
//! cause      FieldCause: one invalid field of a 422                          -
//! structure  a schema node's list type, map type, child and item schemas      -
//! limits     nesting and size limits of bodies and patches                   -
//! manager    the default field manager, from the User-Agent                  -
//! audit      the audit log and fault rules                                   -
//! protobuf   the protobuf body of `kubectl create namespace`, as JSON         -
//! cel        a CRD's CEL rules: compile, evaluate                            cause, structure
//! resources  the catalog: ResourceInfo, StoreKey, built-ins, CRDs            cause, cel
//! status     Status bodies (ApiError)                                        cause, resources
//! names      upstream's words for bad names and labels (rules: the core)     cause, resources, status
//! selector   label selectors as the core's Selector, field selectors         -
//! fields     managed fields (fieldsV1), write scopes                         resources, structure
//! apply      server-side apply: merge, ownership, conflicts                  fields, resources, structure
//! patch      merge, JSON and strategic merge patches                         limits
//! builtin    built-in kinds: pruning, defaults, validation                   cause, names, resources
//! schema     admission: OpenAPI schema and CEL, built-in kinds               builtin, cause, resources
//! store      objects, resourceVersion, history, change feed                  resources
//! discovery  discovery and OpenAPI v3 documents                              resources
//! table      Table output for `kubectl get`                                  resources
//! objects    State: writes, deletion and GC, reads (one impl, seven files)    apply builtin cause cel fields manager
//!                                                                            names patch resources schema selector status store
//! watch      watch streams                                                   objects resources selector status store table
//! http       routes, verbs, bodies, faults, audit                            audit discovery limits names objects patch
//!                                                                            protobuf resources selector status table watch
//! (this)     Sandbox: the server, its options, faults, CRD installation      audit http objects resources store
//! ```
//!
//! `README.md` beside this file is the user-facing description (quick start, fault injection).
//!
//! What it implements:
//! - resources: core `v1` namespaces, pods, events; `networking.k8s.io/v1` networkpolicies;
//!   `events.k8s.io/v1` events (also served as core `v1` Events); `coordination.k8s.io/v1` leases;
//!   `apiextensions.k8s.io/v1` customresourcedefinitions, and every resource an applied CRD
//!   defines (namespaced or cluster-scoped, every served version, with its status subresource);
//! - discovery (`/api`, `/api/v1`, `/apis`, `/apis/GROUP[/VERSION]`, `/version`) and OpenAPI v3
//!   (`/openapi/v3`), enough for kubectl's resource mapping, `kubectl explain` of custom
//!   resources, and server-side field validation;
//! - get, list (label and field selectors, `limit`/`continue` over a consistent snapshot),
//!   create (`generateName` too; a core v1 Namespace also from the protobuf body of
//!   `kubectl create namespace`), update (409 on a stale `resourceVersion`), delete and
//!   deletecollection, JSON merge patch, JSON patch, strategic merge patch (as a merge patch,
//!   built-in kinds only), and server-side apply with `managedFields`, conflicts and `force`;
//!   writes without `fieldManager` managed by the user agent's product (`unknown` without
//!   one), as upstream;
//! - watch with `resourceVersion`, `allowWatchBookmarks`, `sendInitialEvents`, label and field
//!   selectors and `timeoutSeconds`; 410 Gone for a version older than the retained history;
//! - one monotonic `resourceVersion`; `uid`, `creationTimestamp`, `generation` (spec changes
//!   only); `kubernetes.io/metadata.name` on namespaces; status isolation; empty labels,
//!   annotations, finalizers and owner references not stored;
//! - owner-reference garbage collection (background, foreground, orphan; an object written with
//!   an owner that does not exist is collected, as upstream's collector does), finalizers,
//!   namespace deletion (asynchronous, as upstream); deleting a CRD deletes its objects;
//! - a CRD's OpenAPI schema (pruning, defaults, types, enums, bounds) and CEL rules enforced on
//!   custom resources, with 422, the field path and Kubernetes 1.37's wording; the OpenAPI
//!   errors that block the CEL rules (type, required, enum, length, item count) as upstream;
//! - built-in kinds ([`builtin`]): fields their type lacks pruned, or refused under
//!   `fieldValidation=Strict`; NetworkPolicy defaults (port protocol TCP, `policyTypes`) and
//!   empty lists dropped; Event validation (core and `events.k8s.io`, create and update);
//! - server-side apply as upstream where it fails: a configuration with a field the schema
//!   lacks is a 500 naming it (whatever `fieldValidation`), one without a name cannot create;
//! - hostile input refused as upstream refuses it, and never a crash ([`limits`]): bodies and
//!   patch results nested too deep (400, or 422 for a JSON patch that would build them), JSON
//!   patches of more than 10,000 operations (413) or copying more than 3 MiB (422); a field of
//!   the wrong type in a built-in kind or in any object's metadata (`spec.podSelector: 5`,
//!   `finalizers: [1]`: 400 for a create or an update, 422 for a patch, 500 for an apply);
//!   owner references without apiVersion, kind, name or uid, owned by an Event, or with more
//!   than one controller (422); an update without a name (400) or naming another uid (409, a
//!   failed precondition; a patch or apply changing it: 422; an apply that would create the
//!   object naming one: 409); `DELETE /api/v1/namespaces` and
//!   a namespaced deletecollection across every namespace (405; a custom resource's: 404);
//!   `timeoutSeconds` that is not an integer (400; negative ends a watch at once with an ERROR
//!   event, 0 means the server's limit);
//! - Table output for `kubectl get`; an audit log; fault injection.
//!
//! What it does not: no scheduler, no kubelet, no controllers other than the garbage collector
//! and the namespace lifecycle, no CNI: pods never run, and NetworkPolicies are stored, never
//! enforced (`netfence verify` is what computes connectivity). No authentication or
//! authorization (every request is allowed), no admission webhooks, no conversion between
//! versions of a custom resource (versions share storage), no CBOR, no aggregated discovery, no
//! `kubectl exec`/`logs`/`port-forward`. Plain HTTP on loopback only.
//!
//! No ValidatingAdmissionPolicies either: the sandbox serves no `admissionregistration.k8s.io`
//! and enforces no policy. The one netfence ships in `config/` (only netfence, the garbage
//! collector and the namespace controller may change or delete a generated NetworkPolicy) is
//! enforced by a real control plane; in the sandbox anyone may edit or delete a generated
//! policy, and only netfence's drift correction restores it.
//!
//! Held to the real server: every scenario of `e2e/tests/sandbox/` and the kubectl scenarios of
//! `operator/tests/kubectl.rs` run against the sandbox and against kube-apiserver 1.37.2 (etcd,
//! kube-controller-manager; `NETFENCE_E2E_KUBECONFIG`). Where the answers differ and the
//! sandbox was not changed, the difference is listed here with why it does not matter to
//! netfence or to kubectl, and the scenario asserts each server's answer:
//! - Responses are always JSON. A real server answers protobuf when the client prefers it, as
//!   kubectl's typed requests do (`Accept: application/vnd.kubernetes.protobuf,application/json`);
//!   kubectl reads JSON as well, and netfence's kube client never asks for protobuf.
//! - Protobuf request bodies are decoded only for creating a core v1 Namespace (what
//!   `kubectl create namespace` sends); any other kind, or an update, is a 415 that points to
//!   `kubectl apply -f` (JSON, every kind). A real server decodes them all. A body without the
//!   protobuf prefix, or whose envelope names another kind than the URL, is a 400 on both; so
//!   is a truncated one, worded differently. netfence never sends protobuf.
//! - Traversal in names (`..`, encoded slashes, bad escapes) is a 400 `Status` for every path;
//!   the real server answers 400, 404, or 500 (`invalid key`) depending on where the name is,
//!   and Go's plain-text 400 for a bad escape. Both refuse; no client sends such names.
//! - Built-in kinds are validated only as [`builtin`] says: a NetworkPolicy's ports, CIDRs and
//!   selectors, a Pod's spec are stored as sent, where a real server refuses invalid ones with
//!   422, and only NetworkPolicies are defaulted (a real Pod gets `restartPolicy`,
//!   `dnsPolicy`...; creating one also needs the namespace's `default` ServiceAccount). netfence
//!   writes only NetworkPolicies, from a spec it has validated first (`ValidatedIsolation`:
//!   labels, CIDRs, ports), and every scenario that writes them also runs on the real server,
//!   which validates each; it reads Pods only for `netfence verify`, by labels and IPs.
//! - The fields a built-in kind has are those of k8s-openapi's types (Kubernetes 1.33), so a
//!   field added since 1.34 counts as unknown; unknown fields are listed in key order, where
//!   upstream lists them in the order of the body. Neither kubectl 1.32 nor netfence sends one.
//! - A custom resource's OpenAPI `format`, `maxProperties`, `oneOf`/`anyOf`/`allOf`/`not` and
//!   the CEL cost budget are not checked: netfence's CRDs use none of them, and the real server
//!   checks its CRDs' costs (`config/crd` is applied to it by the kubectl scenarios).
//! - CEL's `isCIDR` is kube-cel's, which accepts a prefix length with a leading zero
//!   (`10.0.0.0/08`) where the real server (Go's netip.ParsePrefix) refuses it; a sign (`/+8`)
//!   and an IPv4-mapped IPv6 address are refused by both (`crd/tests/cel.rs`). `netfence
//!   render` and the controller's validation refuse all three before anything is written.
//! - A CRD is established at once; on a real server a moment later, and its controller then
//!   writes the CRD's status (a get-then-replace of a new CRD may conflict). Clients wait for
//!   `Established` (netfence's `install_crds` does), and retry a conflict.
//! - Bookmarks come every [`SandboxOptions::bookmark_interval`] (5 s); a real server sends one
//!   about once a minute and 2 s before a watch's `timeoutSeconds`. kube's watcher treats a
//!   bookmark only as a newer resourceVersion, whenever it comes.
//! - The audit log records a watch when it starts; a real server's when it ends. The e2e
//!   harness's faults on a real server are answered by its proxy, so that server's audit log
//!   shows only what got through. Only the tests read audit logs.
//! - Kinds it does not serve (ServiceAccount, RBAC, Deployment, Service,
//!   PodDisruptionBudget...) are absent from discovery and OpenAPI, so `kubectl apply -k
//!   config/default` applies the namespace and the CRDs and fails on the others (kubectl's
//!   validation: `failed to download openapi`); netfence's installation is for real clusters,
//!   and the kubectl scenarios apply it to one.
//! - Nesting is limited to 100 levels in JSON and 64 in YAML ([`limits::MAX_DEPTH`],
//!   [`limits::MAX_YAML_DEPTH`]), upstream's to 10,000: the sandbox walks objects
//!   recursively on a tokio worker's 2 MiB stack, and its clients parse with `serde_json`
//!   (128 levels for a whole response). Past either limit both refuse, with upstream's words
//!   and each its own number; no Kubernetes object nests anywhere near 64 levels.
//! - A field of the wrong type is named by its path and serde's words
//!   (`spec.podSelector: invalid type: integer `5`, expected LabelSelector`), after upstream's
//!   prefix; upstream names the Go struct field and type (`json: cannot unmarshal number into Go
//!   struct field NetworkPolicySpec.spec.podSelector of type v1.LabelSelector`). A JSON patch
//!   that fails (a missing path, too deep a result, too many bytes copied) is a 422 naming the
//!   operation; upstream's says only "the server rejected our request due to an error in our
//!   request".
//! - Server-side apply tracks ownership of what the applier sends; upstream's finer points
//!   (`.` membership of structs, version conversion of managed fields) are not reproduced. An
//!   immutable Event field's message shows an object value as JSON, upstream as a Go struct.

pub mod apply;
pub mod audit;
pub mod builtin;
pub mod cause;
pub mod cel;
pub mod discovery;
pub mod fields;
pub mod http;
pub mod limits;
pub mod manager;
pub mod names;
pub mod objects;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod status;
pub mod store;
pub mod structure;
pub mod table;
pub mod watch;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::Duration,
};

use serde_json::Value;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub use audit::{AuditEntry, FaultId};
pub use resources::ResourceInfo;

use audit::{Decision, FaultRules, Matcher};
use objects::{State, WriteOptions};
use store::Store;

/// Tunables of a sandbox.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// How many changes the history keeps for watches to resume from (older ones answer 410).
    pub history_limit: usize,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// The largest request body accepted; larger ones answer 413 (the real server: 3 MiB).
    pub max_body_bytes: usize,
    /// The longest a watch stays open (the real server: 30 to 60 minutes).
    pub max_watch_timeout: Duration,
    /// How long a deleted namespace keeps its content before the namespace controller deletes
    /// it (upstream's controller is asynchronous too).
    pub namespace_cleanup_delay: Duration,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(5),
            max_body_bytes: 3 * 1024 * 1024,
            max_watch_timeout: Duration::from_secs(1800),
            namespace_cleanup_delay: Duration::from_millis(500),
        }
    }
}

/// An error starting or using a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Only loopback addresses are served.
    #[error(
        "refusing to listen on {address}: the sandbox has no authentication, so it listens on loopback addresses only (127.0.0.1 or ::1)"
    )]
    NotLoopback {
        /// The address asked for.
        address: SocketAddr,
    },
    /// The address is taken or not allowed.
    #[error("failed to listen on {address}: {source}; pick another address with --listen")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The sandbox URL is not a valid URI (cannot happen for a socket address).
    #[error("the sandbox URL {url} is not a valid URI")]
    Url {
        /// The URL.
        url: String,
    },
    /// A client could not be built.
    #[error("failed to build a client for the sandbox at {url}")]
    Client {
        /// The sandbox URL.
        url: String,
        /// The kube error.
        #[source]
        source: kube::Error,
    },
    /// The kubeconfig could not be written.
    #[error("failed to write the kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An object given to [`Sandbox::create`] was refused.
    #[error("the sandbox refused {what}: {source}")]
    Refused {
        /// What was written.
        what: String,
        /// The Status the server answered.
        #[source]
        source: status::ApiError,
    },
}

/// What the HTTP handlers share.
pub(crate) struct Shared {
    /// Read by many requests at once (a get, a list, the catalog of every request), written by
    /// one at a time, as the real server serves reads beside writes.
    state: RwLock<State>,
    audit: Mutex<Vec<AuditEntry>>,
    faults: Mutex<FaultRules>,
    watch_epoch: tokio::sync::watch::Sender<u64>,
    options: SandboxOptions,
    address: SocketAddr,
}

impl Shared {
    fn lock_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, entry: AuditEntry) {
        self.audit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
    }

    fn decide(&self, request: &audit::Request<'_>) -> Decision {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .decide(request)
    }

    fn close_watches(&self) {
        self.watch_epoch.send_modify(|epoch| *epoch += 1);
    }
}

/// A running in-memory API server.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use netfence_sandbox::Sandbox;
/// let sandbox = Sandbox::start("127.0.0.1:0".parse()?).await?;
/// sandbox.install_netfence_crds()?;
/// let client = sandbox.client()?;
/// // ... use `client` as against any cluster ...
/// sandbox.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Sandbox {
    shared: Arc<Shared>,
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    controllers: JoinHandle<()>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Start serving on `listen` (port 0 picks a free port) with the default options.
    pub async fn start(listen: SocketAddr) -> Result<Sandbox, SandboxError> {
        Sandbox::start_with(listen, SandboxOptions::default()).await
    }

    /// Start serving on `listen` with `options`.
    pub async fn start_with(
        listen: SocketAddr,
        options: SandboxOptions,
    ) -> Result<Sandbox, SandboxError> {
        if !listen.ip().is_loopback() {
            return Err(SandboxError::NotLoopback { address: listen });
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| SandboxError::Bind {
                address: listen,
                source,
            })?;
        let address = listener.local_addr().map_err(|source| SandboxError::Bind {
            address: listen,
            source,
        })?;
        let (events, _) = tokio::sync::broadcast::channel(16_384);
        let mut state = State::new(Store::new(options.history_limit, events));
        state.create_system_namespaces();
        let (watch_epoch, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            audit: Mutex::new(Vec::new()),
            faults: Mutex::new(FaultRules::default()),
            watch_epoch,
            options,
            address,
        });
        let router = axum::Router::new()
            .fallback(http::handle)
            .with_state(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let closing = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
                closing.close_watches();
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "the sandbox API server stopped");
            }
        });
        let controlled = Arc::clone(&shared);
        let controllers = tokio::spawn(async move {
            let delay = controlled.options.namespace_cleanup_delay;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                controlled.lock_state().run_namespace_controller(delay);
            }
        });
        Ok(Sandbox {
            shared,
            address,
            stop: Some(stop),
            task: Some(task),
            controllers,
        })
    }

    /// The address served.
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A `kube::Config` for this sandbox (default namespace `default`).
    pub fn kube_config(&self) -> Result<kube::Config, SandboxError> {
        let url = self.url();
        let uri = axum::http::Uri::try_from(url.as_str()).map_err(|_| SandboxError::Url { url })?;
        Ok(kube::Config::new(uri))
    }

    /// A `kube::Client` for this sandbox.
    pub fn client(&self) -> Result<kube::Client, SandboxError> {
        let config = self.kube_config()?;
        kube::Client::try_from(config).map_err(|source| SandboxError::Client {
            url: self.url(),
            source,
        })
    }

    /// Every request served so far, oldest first.
    #[must_use]
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.shared
            .audit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many requests the audit log holds (cheaper than [`Sandbox::audit`] for polling).
    #[must_use]
    pub fn audit_len(&self) -> usize {
        self.shared
            .audit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Forget the audit log.
    pub fn audit_clear(&self) {
        self.shared
            .audit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The fault-injection handle.
    #[must_use]
    pub fn faults(&self) -> Faults {
        Faults {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The kubeconfig that points at this sandbox.
    #[must_use]
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: netfence-sandbox\n  cluster:\n    server: {url}\ncontexts:\n- name: netfence-sandbox\n  context:\n    cluster: netfence-sandbox\n    user: netfence-sandbox\n    namespace: default\ncurrent-context: netfence-sandbox\nusers:\n- name: netfence-sandbox\n  user: {{}}\npreferences: {{}}\n",
            url = self.url()
        )
    }

    /// Write the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), SandboxError> {
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| SandboxError::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The served resource of an `apiVersion` and `kind`.
    #[must_use]
    pub fn resource_of(&self, api_version: &str, kind: &str) -> Option<ResourceInfo> {
        self.shared
            .lock_state()
            .catalog
            .find_kind(api_version, kind)
            .cloned()
    }

    /// Create an object directly in the store (no HTTP, not audited), as the server's own
    /// bootstrap does. The object goes through admission like any create.
    pub fn create(&self, object: &Value) -> Result<Value, SandboxError> {
        let what = format!(
            "{} {}",
            object
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("object"),
            object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("<unnamed>")
        );
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut state = self.shared.lock_state();
        let Some(info) = state.catalog.find_kind(api_version, kind).cloned() else {
            return Err(SandboxError::Refused {
                what,
                source: status::ApiError::no_route(),
            });
        };
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| info.namespaced.then(|| "default".to_owned()));
        let options = WriteOptions {
            field_manager: Some("netfence-sandbox".to_owned()),
            ..WriteOptions::default()
        };
        state
            .create(&info, namespace.as_deref(), object.clone(), &options)
            .map(|answer| answer.body)
            .map_err(|source| SandboxError::Refused { what, source })
    }

    /// Install netfence's CustomResourceDefinitions.
    pub fn install_netfence_crds(&self) -> Result<Vec<String>, SandboxError> {
        let mut names = Vec::new();
        for crd in netfence_crd::crds() {
            let value = serde_json::to_value(&crd).unwrap_or(Value::Null);
            let created = self.create(&value)?;
            names.push(
                created
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        Ok(names)
    }

    /// Stop serving: open watches end, then the server stops.
    pub async fn shutdown(mut self) {
        self.controllers.abort();
        self.shared.close_watches();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.controllers.abort();
        self.shared.close_watches();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Fault injection, set from tests.
#[derive(Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults").finish_non_exhaustive()
    }
}

// The fault id is only needed to remove one fault early: most tests clear them all.
#[allow(clippy::must_use_candidate)]
impl Faults {
    fn rules(&self) -> MutexGuard<'_, FaultRules> {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn matcher(verb: &str, resource: &str) -> Matcher {
        Matcher {
            verb: verb.to_owned(),
            resource: resource.to_owned(),
            label_selector: None,
        }
    }

    /// Fail `share` (0 to 1, spread evenly) of the requests matching `verb` (as the audit log
    /// names it, or `*`) and `resource` (plural, `plural/status`, or `*`) with `code` (500, 429,
    /// 409, 503...).
    pub fn fail(&self, verb: &str, resource: &str, share: f64, code: u16) -> FaultId {
        self.rules()
            .fail(Faults::matcher(verb, resource), share, code)
    }

    /// Fail the next `count` matching requests with `code`.
    pub fn fail_next(&self, verb: &str, resource: &str, count: u64, code: u16) -> FaultId {
        self.rules()
            .fail_next(Faults::matcher(verb, resource), count, code)
    }

    /// Delay the matching requests by `delay`.
    pub fn latency(&self, verb: &str, resource: &str, delay: Duration) -> FaultId {
        self.rules().latency(Faults::matcher(verb, resource), delay)
    }

    /// Delay the matching requests that carry exactly this `labelSelector` by `delay`.
    pub fn latency_selected(
        &self,
        verb: &str,
        resource: &str,
        label_selector: &str,
        delay: Duration,
    ) -> FaultId {
        let matcher = Matcher {
            label_selector: Some(label_selector.to_owned()),
            ..Faults::matcher(verb, resource)
        };
        self.rules().latency(matcher, delay)
    }

    /// Remove one fault.
    pub fn remove(&self, id: FaultId) {
        self.rules().remove(id);
    }

    /// Remove every fault.
    pub fn clear(&self) {
        self.rules().clear();
    }

    /// End every open watch now; clients re-watch from the last `resourceVersion` they saw.
    pub fn close_watches(&self) {
        self.shared.close_watches();
    }

    /// Forget the history: the next watch (or exact list) from any `resourceVersion` issued so
    /// far answers 410 Gone, and clients must list again.
    pub fn compact(&self) {
        self.shared.lock_state().store.compact();
    }
}
