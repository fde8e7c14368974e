//! What the DNS checks read: the pods, Services and DaemonSets of the DNS namespace, watched,
//! and what the DNS peer of a resource reaches there (memoized per DNS spec until they change).

use std::{
    collections::{BTreeSet, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{Stream, StreamExt};
use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Pod, PodSpec, Service},
};
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use netfence_core::{
    audit::{DnsNamespace, DnsReality, dns_reality},
    validate::ValidDns,
};

use super::super::LIST_PAGE;

/// The namespace whose DNS pods, Services and DaemonSets netfence reads (its Role there).
pub const DNS_NAMESPACE: &str = "kube-system";

/// How long a reconcile waits for the DNS caches' first list (or first error) before it
/// reports DNS as unknown.
const DNS_SETTLE: Duration = Duration::from_secs(10);

#[derive(Default)]
struct DnsState {
    /// Which of pods, Services, DaemonSets have their first list.
    synced: [bool; 3],
    /// The last watch error, until the next list.
    error: Option<String>,
    /// A digest of what the DNS checks read; the memo is for this digest.
    digest: u64,
    /// DnsReality by DNS spec, for `digest`.
    memo: HashMap<String, DnsReality>,
}

/// What netfence knows of the DNS namespace. Cloning shares it.
#[derive(Clone)]
pub struct DnsCaches {
    pods: Store<Pod>,
    services: Store<Service>,
    daemon_sets: Store<DaemonSet>,
    state: Arc<Mutex<DnsState>>,
    settled: Arc<tokio::sync::watch::Sender<bool>>,
}

/// One event of the DNS watches: which cache, and whether it completed a list.
enum DnsEvent {
    Changed(usize, bool),
    Failed(String),
}

impl DnsCaches {
    /// The caches, and the stream that fills them: it yields when something the DNS checks read
    /// changed after the first lists (never for a pod that only restarted under another name).
    pub fn watch(client: &Client) -> (DnsCaches, impl Stream<Item = ()> + Send + 'static) {
        let (pods, pod_writer) = reflector::store();
        let (services, service_writer) = reflector::store();
        let (daemon_sets, daemon_set_writer) = reflector::store();
        let config = || watcher::Config::default().page_size(LIST_PAGE);
        let pod_events = watcher(
            Api::<Pod>::namespaced(client.clone(), DNS_NAMESPACE),
            config(),
        )
        .default_backoff()
        .modify(strip_pod)
        .reflect(pod_writer)
        .map(|event| classify(0, event));
        let service_events = watcher(
            Api::<Service>::namespaced(client.clone(), DNS_NAMESPACE),
            config(),
        )
        .default_backoff()
        .modify(|service: &mut Service| {
            service.metadata.managed_fields = None;
            service.metadata.annotations = None;
            service.status = None;
        })
        .reflect(service_writer)
        .map(|event| classify(1, event));
        let daemon_set_events = watcher(
            Api::<DaemonSet>::namespaced(client.clone(), DNS_NAMESPACE),
            config(),
        )
        .default_backoff()
        .modify(|daemon_set: &mut DaemonSet| {
            daemon_set.metadata.managed_fields = None;
            daemon_set.metadata.annotations = None;
            daemon_set.status = None;
        })
        .reflect(daemon_set_writer)
        .map(|event| classify(2, event));
        let caches = DnsCaches {
            pods,
            services,
            daemon_sets,
            state: Arc::new(Mutex::new(DnsState::default())),
            settled: Arc::new(tokio::sync::watch::Sender::new(false)),
        };
        let writer = caches.clone();
        let triggers = futures::stream::select(
            futures::stream::select(pod_events, service_events),
            daemon_set_events,
        )
        .filter_map(move |event| std::future::ready(writer.note(event).then_some(())));
        (caches, triggers)
    }

    /// Record one event; whether every resource must be audited again.
    fn note(&self, event: DnsEvent) -> bool {
        let digest = self.digest();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let was_synced = state.synced.iter().all(|synced| *synced);
        match event {
            DnsEvent::Changed(index, listed) => {
                if listed {
                    state.synced[index] = true;
                    state.error = None;
                }
            }
            DnsEvent::Failed(error) => {
                tracing::warn!(namespace = DNS_NAMESPACE, %error, "cannot read the DNS namespace");
                state.error = Some(error);
            }
        }
        let synced = state.synced.iter().all(|synced| *synced);
        if synced || state.error.is_some() {
            self.settled.send_replace(true);
        }
        let changed = digest != state.digest;
        if changed {
            state.digest = digest;
            state.memo.clear();
        }
        // Before the first lists, every reconcile waits for them: nothing to redo.
        was_synced && changed
    }

    /// A digest of what the checks read: the pods' labels and ports (as a set: replicas and
    /// restarts change nothing), the Services and DaemonSets whole.
    fn digest(&self) -> u64 {
        let pods: BTreeSet<String> = self
            .pods
            .state()
            .iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none())
            .map(|pod| {
                format!(
                    "{:?}{:?}",
                    pod.metadata.labels,
                    pod.spec.as_ref().map(|spec| &spec.containers)
                )
            })
            .collect();
        let mut others: Vec<String> = self
            .services
            .state()
            .iter()
            .map(|service| format!("{:?}{:?}", service.metadata.name, service.spec))
            .chain(self.daemon_sets.state().iter().map(|daemon_set| {
                format!(
                    "{:?}{:?}{:?}",
                    daemon_set.metadata.name, daemon_set.metadata.labels, daemon_set.spec
                )
            }))
            .collect();
        others.sort();
        let mut hasher = DefaultHasher::new();
        pods.hash(&mut hasher);
        others.hash(&mut hasher);
        hasher.finish()
    }

    /// Wait (at most [`DNS_SETTLE`]) until the caches hold their first lists or a watch failed.
    pub async fn settled(&self) {
        let mut settled = self.settled.subscribe();
        let _ = tokio::time::timeout(DNS_SETTLE, settled.wait_for(|settled| *settled)).await;
    }

    /// What the DNS peer `dns` of a resource whose `spec.dns.namespace` is `namespace` reaches.
    pub fn reality(&self, namespace: &str, dns: &ValidDns) -> DnsReality {
        if namespace != DNS_NAMESPACE {
            return DnsReality::Unknown(format!(
                "netfence reads the DNS pods, Services and DaemonSets of {DNS_NAMESPACE} only (its Role there), and spec.dns.namespace is {namespace}: run `netfence doctor --namespace <this namespace>` to check it"
            ));
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.synced.iter().all(|synced| *synced) {
            return DnsReality::Unknown(match &state.error {
                Some(error) => format!(
                    "netfence cannot read the pods, Services and DaemonSets of {DNS_NAMESPACE}: {error} (grant the Role of config/rbac/dns_role.yaml)"
                ),
                None => {
                    format!("the pods, Services and DaemonSets of {DNS_NAMESPACE} are not read yet")
                }
            });
        }
        let key = format!("{dns:?}");
        if let Some(known) = state.memo.get(&key) {
            return known.clone();
        }
        let pods: Vec<Pod> = self
            .pods
            .state()
            .iter()
            .map(|pod| (**pod).clone())
            .collect();
        let services: Vec<Service> = self
            .services
            .state()
            .iter()
            .map(|service| (**service).clone())
            .collect();
        let daemon_sets: Vec<DaemonSet> = self
            .daemon_sets
            .state()
            .iter()
            .map(|daemon_set| (**daemon_set).clone())
            .collect();
        let reality = dns_reality(
            dns,
            &DnsNamespace {
                name: DNS_NAMESPACE,
                pods: &pods,
                services: &services,
                daemon_sets: &daemon_sets,
            },
        );
        state.memo.insert(key, reality.clone());
        reality
    }
}

fn classify<K>(index: usize, event: Result<watcher::Event<K>, watcher::Error>) -> DnsEvent {
    match event {
        Ok(watcher::Event::InitDone) => DnsEvent::Changed(index, true),
        Ok(_) => DnsEvent::Changed(index, false),
        Err(error) => DnsEvent::Failed(error.to_string()),
    }
}

/// A pod as the DNS checks read it: its name, labels and container ports (a kube-system of a
/// large cluster holds a pod per node for each DaemonSet).
fn strip_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    pod.metadata.owner_references = None;
    pod.status = None;
    if let Some(spec) = &pod.spec {
        let containers = spec
            .containers
            .iter()
            .map(|container| k8s_openapi::api::core::v1::Container {
                name: container.name.clone(),
                ports: container.ports.clone(),
                ..Default::default()
            })
            .collect();
        pod.spec = Some(PodSpec {
            containers,
            ..Default::default()
        });
    }
}
