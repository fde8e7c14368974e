//! The cluster-wide policies the audit proves with: every object of the engines' kinds the
//! cluster serves (ClusterNetworkPolicy, Calico Tiers and GlobalNetworkPolicies, Cilium
//! CiliumClusterwideNetworkPolicies), whoever wrote them, and the labels of the namespaces they
//! choose by.
//!
//! ```text
//! discovery (once) --> reflect each served kind (all objects) --> ClusterWidePolicies, problems
//!                                                            \--> change: reconcile every resource
//! ```
//!
//! Until every served kind has its first list (while its watch fails, too), and while an object
//! does not read, [`ClusterWideView::problem`] says so, and the audit reports `Isolated`
//! Unknown.

use std::sync::{
    Arc, Mutex, OnceLock, PoisonError,
    atomic::{AtomicBool, Ordering},
};

use futures::StreamExt;
use kube::{
    Api, Client,
    api::DynamicObject,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use netfence_crd::baseline::Engine;
use netfence_verify::{cluster_wide::ClusterWidePolicies, selector::Labels};

use super::super::{LIST_PAGE, baseline};

/// How long a reconcile waits for the cluster-wide lists before it reports them unknown.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// One watched kind.
struct Watched {
    kind: String,
    store: Store<DynamicObject>,
    /// Its first list is in.
    listed: bool,
    /// Its watch's last error, until it lists again.
    error: Option<String>,
}

#[derive(Default)]
struct State {
    /// Discovery ran and the watches exist.
    discovered: bool,
    watched: Vec<Watched>,
    /// What the stores hold, typed.
    policies: Arc<ClusterWidePolicies>,
    /// Objects that do not read, as `Kind name: field: problem`, sorted.
    unreadable: Vec<String>,
    /// Counts the changes of `policies` (what a proof's fingerprint takes of them).
    version: u64,
}

impl State {
    fn ready(&self) -> bool {
        self.discovered && self.watched.iter().all(|watched| watched.listed)
    }

    /// Why the policies are not known, if they are not.
    fn problem(&self) -> Option<String> {
        // A watch that fails before its first list leaves its kind unknown; after it, the
        // store keeps the last state while the watch lists again (a 410 Gone, a cut
        // connection), and the failure is logged.
        let errors: Vec<String> = self
            .watched
            .iter()
            .filter(|watched| !watched.listed)
            .filter_map(|watched| {
                watched
                    .error
                    .as_ref()
                    .map(|error| format!("{}: {error}", watched.kind))
            })
            .collect();
        if !errors.is_empty() {
            return Some(format!(
                "netfence cannot read the cluster-wide policies ({}): what the policies add up to is unknown until it can",
                errors.join("; ")
            ));
        }
        if !self.ready() {
            return Some("netfence has not read the cluster-wide policies yet".to_owned());
        }
        if !self.unreadable.is_empty() {
            return Some(format!(
                "netfence cannot read {}: what the policies add up to is unknown until it can",
                self.unreadable.join("; ")
            ));
        }
        None
    }
}

/// The cluster-wide policies and the namespaces' labels. Cloning shares it.
#[derive(Clone)]
pub struct ClusterWideCache {
    state: Arc<Mutex<State>>,
    /// The template controller's namespace cache, when it runs.
    namespaces: Arc<OnceLock<Store<crate::namespaces::Kept>>>,
    /// Set once the first lists are in, a watch failed in a way retrying will not mend, or a
    /// reconcile waited [`SETTLE`].
    settled: Arc<tokio::sync::watch::Sender<bool>>,
    /// Set once a reconcile waited [`SETTLE`] for the namespace cache's first list.
    namespaces_waited: Arc<AtomicBool>,
}

impl Default for ClusterWideCache {
    /// A cache that watches nothing (a namespace-scoped `netfence run`): known and empty.
    fn default() -> Self {
        ClusterWideCache {
            state: Arc::new(Mutex::new(State {
                discovered: true,
                ..State::default()
            })),
            namespaces: Arc::default(),
            settled: Arc::new(tokio::sync::watch::Sender::new(true)),
            namespaces_waited: Arc::default(),
        }
    }
}

/// What the audit proves with.
pub struct ClusterWideView {
    /// The policies.
    pub policies: Arc<ClusterWidePolicies>,
    /// Their version: it changes whenever they do.
    pub version: u64,
    /// Why they are not known (not listed yet, a watch failing, an object that does not read).
    pub problem: Option<String>,
}

impl ClusterWideCache {
    /// The cache, and the stream that fills it: it discovers which kinds the cluster serves,
    /// watches those, and yields when what they hold changes, or when they become known (first
    /// lists in, or a failing watch listing again). Watching one `namespace`, none (a
    /// namespace-scoped installation may not list cluster-wide kinds).
    pub fn watch(
        client: &Client,
        namespace: Option<&str>,
    ) -> (ClusterWideCache, futures::stream::BoxStream<'static, ()>) {
        if namespace.is_some() {
            return (
                ClusterWideCache::default(),
                futures::stream::empty().boxed(),
            );
        }
        let client = client.clone();
        let cache = ClusterWideCache {
            state: Arc::default(),
            namespaces: Arc::default(),
            settled: Arc::new(tokio::sync::watch::Sender::new(false)),
            namespaces_waited: Arc::default(),
        };
        let writer = cache.clone();
        let stream = futures::stream::once(async move {
            let served = baseline::discover(&client).await;
            let mut streams = Vec::new();
            let mut watched = Vec::new();
            for (engine, resource, namespaced) in baseline::kinds() {
                let Some(engine) = engine.filter(|engine| *engine != Engine::NetworkPolicy) else {
                    continue;
                };
                if namespaced || !served.serves(engine) {
                    continue;
                }
                let store_writer = reflector::store::Writer::new(resource.clone());
                let index = watched.len();
                watched.push(Watched {
                    kind: resource.kind.clone(),
                    store: store_writer.as_reader(),
                    listed: false,
                    error: None,
                });
                let events = watcher(
                    Api::<DynamicObject>::all_with(client.clone(), &resource),
                    watcher::Config::default().page_size(LIST_PAGE),
                )
                .default_backoff()
                .modify(|object: &mut DynamicObject| object.metadata.managed_fields = None)
                .reflect(store_writer)
                .map(move |event| match event {
                    Ok(watcher::Event::InitDone) => (index, Ok(true)),
                    Ok(_) => (index, Ok(false)),
                    Err(error) => (
                        index,
                        Err((error.to_string(), super::Failure::of(&error).lasts())),
                    ),
                });
                streams.push(events.boxed());
            }
            writer.discovered(watched);
            futures::stream::select_all(streams)
                .map(move |(index, event)| writer.note(index, event))
        })
        .flatten()
        .filter_map(|changed| std::future::ready(changed.then_some(())));
        (cache, stream.boxed())
    }

    fn discovered(&self, watched: Vec<Watched>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.watched = watched;
        state.discovered = true;
        if state.ready() {
            self.settled.send_replace(true);
        }
    }

    /// Record one event of watch `index` and read the stores again; whether every resource
    /// must be audited again.
    fn note(&self, index: usize, event: Result<bool, (String, bool)>) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let known_before = state.problem().is_none();
        let Some(watched) = state.watched.get_mut(index) else {
            return false;
        };
        match event {
            Ok(listed) => {
                if listed {
                    watched.listed = true;
                    watched.error = None;
                }
            }
            // Only an error retrying will not mend (see `super::Failure`) ends the reconciles'
            // wait before SETTLE: a 410 or a 5xx before the first list is retried, and
            // reporting it would flip Isolated to Unknown and back.
            Err((error, lasting)) => {
                tracing::warn!(kind = %watched.kind, %error, "cannot read a cluster-wide kind");
                if !watched.listed {
                    watched.error = Some(error);
                    if lasting {
                        self.settled.send_replace(true);
                    }
                }
            }
        }
        // Sorted by kind and name: a relist refills a store in another order, and an order
        // that changed nothing must not look like a change.
        let mut objects: Vec<(String, Arc<DynamicObject>)> = state
            .watched
            .iter()
            .flat_map(|watched| {
                watched
                    .store
                    .state()
                    .into_iter()
                    .map(|object| (watched.kind.clone(), object))
            })
            .collect();
        objects.sort_by(|(kind, object), (other_kind, other)| {
            (kind, &object.metadata.name).cmp(&(other_kind, &other.metadata.name))
        });
        let mut policies = ClusterWidePolicies::default();
        let mut unreadable = Vec::new();
        for (kind, object) in objects {
            let name = object.metadata.name.clone().unwrap_or_default();
            let added = serde_json::to_value(object.as_ref())
                .map_err(|error| error.to_string())
                .and_then(|value| policies.add(&kind, value));
            if let Err(problem) = added {
                unreadable.push(format!("{kind} {name}: {problem}"));
            }
        }
        let changed = *state.policies != policies || state.unreadable != unreadable;
        if changed {
            state.policies = Arc::new(policies);
            state.unreadable = unreadable;
            state.version += 1;
        }
        if state.ready() {
            self.settled.send_replace(true);
        }
        let known = state.problem().is_none();
        (known && changed) || known != known_before
    }

    /// Use the template controller's namespace cache for the namespaces' labels.
    pub fn use_namespaces(&self, namespaces: Store<crate::namespaces::Kept>) {
        let _ = self.namespaces.set(namespaces);
    }

    /// Wait until the served kinds have their first lists (or a watch failed in a way retrying
    /// will not mend), at most
    /// [`SETTLE`] once: after that no reconcile waits again (the audit reports them unknown).
    pub async fn settled(&self) {
        let mut settled = self.settled.subscribe();
        if tokio::time::timeout(SETTLE, settled.wait_for(|settled| *settled))
            .await
            .is_err()
        {
            self.settled.send_replace(true);
        }
    }

    /// The policies, and whether they are known.
    pub fn view(&self) -> ClusterWideView {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        ClusterWideView {
            policies: state.policies.clone(),
            version: state.version,
            problem: state.problem(),
        }
    }

    /// Wait until the namespace cache has its first list, at most [`SETTLE`] once (none
    /// without a namespace cache): a status written before it would lack a warning that the
    /// next one adds, and a resource's status would change with nothing changed. After one
    /// timeout no reconcile waits again: the end of the first list reconciles the resources
    /// that name a namespace it did not find (see `IsolationIndex::namespace_changes`).
    pub async fn namespaces_settled(&self) {
        if self.namespaces_waited.load(Ordering::Relaxed) {
            return;
        }
        if let Some(store) = self.namespaces.get()
            && tokio::time::timeout(SETTLE, crate::synced(store))
                .await
                .is_err()
        {
            self.namespaces_waited.store(true, Ordering::Relaxed);
        }
    }

    /// Whether `namespace` exists, by the namespace cache; `None` while it is unknown (no cache
    /// when watching one namespace, or its first list is not in yet).
    pub fn namespace_exists(&self, namespace: &str) -> Option<bool> {
        let store = self.namespaces.get()?;
        futures::FutureExt::now_or_never(store.wait_until_ready())?.ok()?;
        Some(store.get(&ObjectRef::new(namespace)).is_some())
    }

    /// The labels of `namespace`, when the namespace cache holds it.
    pub fn labels(&self, namespace: &str) -> Option<Labels> {
        let found = self.namespaces.get()?.get(&ObjectRef::new(namespace))?;
        Some(found.label_map().into_iter().collect())
    }
}
