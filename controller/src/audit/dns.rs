//! What the DNS checks read: the pods, Services and DaemonSets of the DNS namespace, watched,
//! and what the DNS peer of a resource reaches there (memoized per DNS spec until they change).

use std::{
    collections::HashMap,
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

use super::{super::LIST_PAGE, Failure};

/// The namespace whose DNS pods, Services and DaemonSets netfence reads (its Role there).
pub const DNS_NAMESPACE: &str = "kube-system";

/// How long a reconcile waits for the DNS caches' first lists (or an error retrying will not
/// mend) before it reports DNS as unknown.
const DNS_SETTLE: Duration = Duration::from_secs(10);

#[derive(Default)]
struct DnsState {
    /// Which of pods, Services, DaemonSets have their first list.
    synced: [bool; 3],
    /// The last error of each watch that has not listed yet, and what it means, until its
    /// list.
    errors: [Option<(String, Failure)>; 3],
    /// What each DNS spec that resources use reaches, as of the caches' last event.
    memo: HashMap<String, (ValidDns, DnsReality)>,
}

impl DnsState {
    /// The error the status reports while a cache has not listed: the first that lasts, or
    /// else the first.
    fn error(&self) -> Option<(&str, Failure)> {
        let errors = || self.errors.iter().flatten();
        errors()
            .find(|(_, failure)| failure.lasts())
            .or_else(|| errors().next())
            .map(|(error, failure)| (error.as_str(), *failure))
    }

    /// What kind of error the status reports, if any.
    fn failure(&self) -> Option<Failure> {
        self.error().map(|(_, failure)| failure)
    }
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

/// One event of the DNS watches: which cache, and whether it completed a list; or which
/// cache failed, how, and whether retrying will not mend it.
enum DnsEvent {
    Changed(usize, bool),
    Failed(usize, String, Failure),
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

    /// Record one event; whether every resource must be audited again: when the caches
    /// become known (their first lists, or a list after a failure), or when what a DNS spec in
    /// use reaches changed (a restart or a rollout in kube-system changes nothing).
    fn note(&self, event: DnsEvent) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Known once every cache has listed: a watch error after that (a 410 Gone when the
        // history is compacted, a connection cut) leaves the last state, and the watch lists
        // again; only errors before a cache's first list leave DNS unknown, and only one that
        // retrying will not mend (a missing Role) ends the reconciles' wait before
        // DNS_SETTLE: a 410 or a 5xx is retried, and reporting it would flip the status to
        // Unknown and back.
        let known_before = state.synced.iter().all(|synced| *synced);
        let failure_before = state.failure();
        match event {
            DnsEvent::Changed(index, listed) => {
                if listed {
                    if let Some(synced) = state.synced.get_mut(index) {
                        *synced = true;
                    }
                    if let Some(error) = state.errors.get_mut(index) {
                        *error = None;
                    }
                }
            }
            DnsEvent::Failed(index, error, failure) => {
                tracing::warn!(namespace = DNS_NAMESPACE, %error, "cannot read the DNS namespace");
                if state.synced.get(index) == Some(&false)
                    && let Some(last) = state.errors.get_mut(index)
                {
                    *last = Some((error, failure));
                    if failure.lasts() {
                        self.settled.send_replace(true);
                    }
                }
            }
        }
        let known = state.synced.iter().all(|synced| *synced);
        if known {
            self.settled.send_replace(true);
        }
        if known != known_before {
            state.memo.clear();
            return true;
        }
        if !known {
            // An error retrying will not mend, new (a 503 retried became a 403): audit again,
            // so that the status names it; a transient error or a new text alone is no news
            // (every resource audited again, a status written at each retry).
            let failure = state.failure();
            return failure != failure_before && failure.is_some_and(Failure::lasts);
        }
        let mut changed = false;
        for (dns, reality) in state.memo.values_mut() {
            let now = self.compute(dns);
            if now != *reality {
                *reality = now;
                changed = true;
            }
        }
        changed
    }

    /// What `dns` reaches in the caches as they are.
    fn compute(&self, dns: &ValidDns) -> DnsReality {
        let (pods, services, daemon_sets) = (
            self.pods.state(),
            self.services.state(),
            self.daemon_sets.state(),
        );
        let pods: Vec<&Pod> = pods.iter().map(AsRef::as_ref).collect();
        let services: Vec<&Service> = services.iter().map(AsRef::as_ref).collect();
        let daemon_sets: Vec<&DaemonSet> = daemon_sets.iter().map(AsRef::as_ref).collect();
        dns_reality(
            dns,
            &DnsNamespace {
                name: DNS_NAMESPACE,
                pods: &pods,
                services: &services,
                daemon_sets: &daemon_sets,
            },
        )
    }

    /// Wait until the caches hold their first lists or a watch failed in a way retrying will
    /// not mend, at most [`DNS_SETTLE`] once: after that no reconcile waits again (DNS is then
    /// reported unknown until the lists are in).
    pub async fn settled(&self) {
        let mut settled = self.settled.subscribe();
        if tokio::time::timeout(DNS_SETTLE, settled.wait_for(|settled| *settled))
            .await
            .is_err()
        {
            self.settled.send_replace(true);
        }
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
            return DnsReality::Unknown(match state.error() {
                Some((error, Failure::Refused)) => format!(
                    "netfence cannot read the pods, Services and DaemonSets of {DNS_NAMESPACE}: {error} (grant the Role of config/rbac/dns_role.yaml)"
                ),
                Some((error, Failure::Unserved)) => format!(
                    "netfence cannot read the pods, Services and DaemonSets of {DNS_NAMESPACE}: {error} (the API server does not serve them)"
                ),
                Some((error, Failure::Transient)) => format!(
                    "netfence cannot read the pods, Services and DaemonSets of {DNS_NAMESPACE} yet: {error} (retrying)"
                ),
                None => {
                    format!("the pods, Services and DaemonSets of {DNS_NAMESPACE} are not read yet")
                }
            });
        }
        let key = format!("{dns:?}");
        if let Some((_, known)) = state.memo.get(&key) {
            return known.clone();
        }
        let reality = self.compute(dns);
        state.memo.insert(key, (dns.clone(), reality.clone()));
        reality
    }
}

fn classify<K>(index: usize, event: Result<watcher::Event<K>, watcher::Error>) -> DnsEvent {
    match event {
        Ok(watcher::Event::InitDone) => DnsEvent::Changed(index, true),
        Ok(_) => DnsEvent::Changed(index, false),
        Err(error) => DnsEvent::Failed(index, error.to_string(), Failure::of(&error)),
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
