//! The cluster-wide policies the audit proves with: every object of the engines' kinds the
//! cluster serves (ClusterNetworkPolicy, Calico Tiers and GlobalNetworkPolicies, Cilium
//! CiliumClusterwideNetworkPolicies), whoever wrote them, and the labels of the namespaces they
//! choose by.
//!
//! ```text
//! discovery (once) --> reflect each served kind (all objects) --> ClusterWidePolicies + unreadable
//!                                                            \--> change: reconcile every resource
//! ```

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::DynamicObject,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use netfence_crd::baseline::Engine;
use netfence_verify::{cluster_wide::ClusterWidePolicies, selector::Labels};

use super::super::{LIST_PAGE, baseline};

#[derive(Default)]
struct State {
    /// Each served kind's store, with its kind.
    stores: Vec<(String, Store<DynamicObject>)>,
    /// How many of them have their first list.
    synced: usize,
    /// What the stores hold, typed.
    policies: Arc<ClusterWidePolicies>,
    /// Objects that do not read, as `Kind name: field: problem`.
    unreadable: Vec<String>,
}

/// The cluster-wide policies and the namespaces' labels. Cloning shares it.
#[derive(Clone)]
pub struct ClusterWideCache {
    state: Arc<Mutex<State>>,
    /// The template controller's namespace cache, when it runs.
    namespaces: Arc<OnceLock<Store<Namespace>>>,
    /// Set once discovery ran and every served kind has its first list.
    settled: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for ClusterWideCache {
    /// A cache that watches nothing (a namespace-scoped `netfence run`): settled at once.
    fn default() -> Self {
        ClusterWideCache {
            state: Arc::default(),
            namespaces: Arc::default(),
            settled: Arc::new(tokio::sync::watch::Sender::new(true)),
        }
    }
}

/// How long a reconcile waits for the cluster-wide lists before it proves without them.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// What the audit proves with.
pub struct ClusterWideView {
    /// The policies.
    pub policies: Arc<ClusterWidePolicies>,
    /// Objects that do not read: while there is one, what the policies add up to is unknown.
    pub unreadable: Vec<String>,
}

impl ClusterWideCache {
    /// The cache, and the stream that fills it: it discovers which kinds the cluster serves,
    /// watches those, and yields after each change once their first lists are in. Watching one
    /// `namespace`, none (a namespace-scoped installation may not list cluster-wide kinds).
    pub fn watch(
        client: &Client,
        namespace: Option<&str>,
    ) -> (ClusterWideCache, futures::stream::BoxStream<'static, ()>) {
        if namespace.is_some() {
            return (ClusterWideCache::default(), futures::stream::empty().boxed());
        }
        let client = client.clone();
        let cache = ClusterWideCache {
            settled: Arc::new(tokio::sync::watch::Sender::new(false)),
            ..ClusterWideCache::default()
        };
        let writer = cache.clone();
        let stream = futures::stream::once(async move {
            let served = baseline::discover(&client).await;
            let mut streams = Vec::new();
            let mut stores = Vec::new();
            for (engine, resource, namespaced) in baseline::kinds() {
                let Some(engine) = engine.filter(|engine| *engine != Engine::NetworkPolicy) else {
                    continue;
                };
                if namespaced || !served.serves(engine) {
                    continue;
                }
                let store_writer = reflector::store::Writer::new(resource.clone());
                let store = store_writer.as_reader();
                stores.push((resource.kind.clone(), store));
                let events = watcher(
                    Api::<DynamicObject>::all_with(client.clone(), &resource),
                    watcher::Config::default().page_size(LIST_PAGE),
                )
                .default_backoff()
                .modify(|object: &mut DynamicObject| object.metadata.managed_fields = None)
                .reflect(store_writer)
                .map(|event| matches!(event, Ok(watcher::Event::InitDone)));
                streams.push(events.boxed());
            }
            if stores.is_empty() {
                writer.settled.send_replace(true);
            }
            writer
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .stores = stores;
            futures::stream::select_all(streams).map(move |listed| writer.note(listed))
        })
        .flatten()
        .filter_map(|changed| std::future::ready(changed.then_some(())));
        (cache, stream.boxed())
    }

    /// Read the stores again after an event; whether every resource must be audited again.
    fn note(&self, listed: bool) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if listed {
            state.synced += 1;
        }
        let mut policies = ClusterWidePolicies::default();
        let mut unreadable = Vec::new();
        for (kind, store) in &state.stores {
            for object in store.state() {
                let name = object.metadata.name.clone().unwrap_or_default();
                let added = serde_json::to_value(object.as_ref())
                    .map_err(|error| error.to_string())
                    .and_then(|value| policies.add(kind, value));
                if let Err(problem) = added {
                    unreadable.push(format!("{kind} {name}: {problem}"));
                }
            }
        }
        let changed = *state.policies != policies || state.unreadable != unreadable;
        state.policies = Arc::new(policies);
        state.unreadable = unreadable;
        let synced = state.synced >= state.stores.len();
        if synced && listed {
            self.settled.send_replace(true);
        }
        changed && synced
    }

    /// Wait (at most 10 s) until the served kinds have their first lists.
    pub async fn settled(&self) {
        let mut settled = self.settled.subscribe();
        let _ = tokio::time::timeout(SETTLE, settled.wait_for(|settled| *settled)).await;
    }

    /// Use the template controller's namespace cache for the namespaces' labels.
    pub fn use_namespaces(&self, namespaces: Store<Namespace>) {
        let _ = self.namespaces.set(namespaces);
    }

    /// The policies, and what does not read.
    pub fn view(&self) -> ClusterWideView {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        ClusterWideView {
            policies: state.policies.clone(),
            unreadable: state.unreadable.clone(),
        }
    }

    /// The labels of `namespace`, when the namespace cache holds it.
    pub fn labels(&self, namespace: &str) -> Option<Labels> {
        let store = self.namespaces.get()?;
        store
            .get(&kube::runtime::reflector::ObjectRef::new(namespace))
            .map(|found| {
                found
                    .metadata
                    .labels
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect()
            })
    }
}
