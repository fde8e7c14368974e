//! The intent audit's I/O: the NetworkPolicies netfence does not own, the DNS namespace's pods,
//! Services and DaemonSets, and the audit of one resource from them, computed by each
//! reconcile beside the rest of its status (one write, none in a steady state).
//!
//! ```text
//! reflect NetworkPolicy (managed-by!=netfence) ---> foreign PolicyCache --\   change: reconcile
//! reflect Pod, Service, DaemonSet (kube-system) --> DnsCaches ------------+   the namespace's
//! reflect the served cluster-wide kinds ----------> ClusterWideCache -----+   resources (DNS,
//! PolicyCache (netfence's own) ---------------------------------------------+ cluster-wide: all)
//!                                                                           |
//! reconcile: own + foreign - acknowledged --verify::intent::prove--> findings --\
//!            spec.dns x DnsCaches --core::audit::dns_reality-------------------+--> Isolated, DNSReachable
//! ```

mod cluster_wide;
mod dns;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex, PoisonError},
};

use futures::{Stream, TryStreamExt};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{
    Api,
    runtime::{WatchStreamExt, reflector::ObjectRef, watcher},
};
use netfence_core::{
    ValidatedIsolation,
    audit::{Audit, DnsReality, Isolation},
    observed::Digest,
};
use netfence_crd::{
    NamespaceIsolation,
    isolation::{Direction, Mode},
};
use netfence_verify::{
    cluster_wide::ClusterWidePolicies,
    intent::{
        self,
        audit::{Departure, findings},
    },
    selector::Labels,
};

pub use cluster_wide::ClusterWideCache;
pub use dns::DnsCaches;

/// What a watch error means for the audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// The API server refuses netfence (401, 403): a Role is missing.
    Refused,
    /// The API server does not serve what netfence reads (404, 405, no resourceVersion).
    Unserved,
    /// Anything else (a 410 after a compaction, a 5xx, a cut connection): the watcher mends it
    /// by itself with its backoff, and it must not make an audit condition Unknown for a
    /// moment (seen after a restart: a watch of one DNS cache answered 410 before another
    /// cache had listed, and the status flipped to Unknown and back).
    Transient,
}

impl Failure {
    fn of(error: &watcher::Error) -> Failure {
        let code = match error {
            watcher::Error::InitialListFailed(error)
            | watcher::Error::WatchStartFailed(error)
            | watcher::Error::WatchFailed(error) => match error {
                kube::Error::Api(status) => status.code,
                _ => return Failure::Transient,
            },
            watcher::Error::WatchError(status) => status.code,
            watcher::Error::NoResourceVersion => return Failure::Unserved,
        };
        match code {
            401 | 403 => Failure::Refused,
            404 | 405 => Failure::Unserved,
            _ => Failure::Transient,
        }
    }

    /// Whether retrying will not mend it.
    fn lasts(self) -> bool {
        self != Failure::Transient
    }
}

use super::{
    Context, LIST_PAGE, PolicyCache, Triggers, Whole,
    decode::{self, Lenient},
    metrics::Metrics,
    namespaces::Seen,
};

/// The NetworkPolicies without netfence's managed-by label, kept whole, and the stream of the
/// resources to reconcile when one changes (added, edited, deleted, or different after a
/// relist): those of its namespace.
pub(crate) fn foreign_policies(
    api: Api<Lenient<NetworkPolicy>>,
    metrics: &Arc<Metrics>,
    index: &IsolationIndex,
) -> (
    PolicyCache<Whole>,
    impl Stream<Item = ObjectRef<crate::Compact>> + Send + 'static,
) {
    let cache = PolicyCache::default();
    let writer = cache.clone();
    let bad = super::report_undecodable(
        metrics.clone(),
        "undecodable_foreign_policy",
        "NetworkPolicy",
    );
    let index = index.clone();
    let metrics = metrics.clone();
    let events = watcher(
        api,
        watcher::Config::default()
            .labels(&super::foreign_selector())
            .page_size(LIST_PAGE),
    )
    .default_backoff()
    .map_ok(move |event| decode::typed(event, &bad))
    .modify(|policy: &mut NetworkPolicy| policy.metadata.managed_fields = None)
    .map_ok(move |event| {
        let mut changed: Vec<Option<super::Change>> =
            writer.apply(&event).into_iter().map(Some).collect();
        if matches!(event, watcher::Event::InitDone) {
            changed.push(None); // the end of a list, counted once its changes are taken
        }
        changed
    })
    .triggers("NetworkPolicies (the others)", move |change| {
        if let Some(change) = change {
            index.in_namespace(change.namespace())
        } else {
            metrics.listed("NetworkPolicy (the others)");
            Vec::new()
        }
    });
    (cache, events)
}

/// The NamespaceIsolations of each namespace, by name, kept from the resources' watch: a
/// foreign policy's or a namespace's change finds the resources to reconcile without scanning
/// every resource. Cloning shares it.
#[derive(Clone, Default)]
pub struct IsolationIndex {
    inner: Arc<Mutex<IndexState>>,
}

#[derive(Default)]
struct IndexState {
    current: Names,
    /// During a relist, what it has delivered so far (swapped in at its end).
    relisting: Option<Names>,
    /// The namespaces each resource's shared services name (`namespace: x`), by resource
    /// (namespace, name), only for those that name one ...
    names: HashMap<Key, Box<[Arc<str>]>>,
    /// ... and the other way round: the resources that name each namespace. Both maps share
    /// the strings (issue 20: 10,000 resources).
    named_by: HashMap<Arc<str>, BTreeSet<Key>>,
}

/// A resource: its namespace and name.
type Key = (Arc<str>, Arc<str>);

/// The names of the resources of each namespace, sorted (a namespace holds one or a few: a
/// vector of exactly that many, not a tree node of eleven).
type Names = HashMap<Box<str>, Vec<Box<str>>>;

/// Add `namespace/name` to `names`.
fn add_name(names: &mut Names, namespace: &str, name: &str) {
    let names = names.entry(namespace.into()).or_default();
    if let Err(index) = names.binary_search_by(|held| (**held).cmp(name)) {
        names.reserve_exact(1);
        names.insert(index, name.into());
    }
}

/// Whether `names` holds `namespace/name`.
fn has_name(names: &Names, namespace: &str, name: &str) -> bool {
    names
        .get(namespace)
        .is_some_and(|names| names.binary_search_by(|held| (**held).cmp(name)).is_ok())
}

impl IndexState {
    /// Record the namespaces the resource `namespace`/`name`'s shared services name now
    /// (`None`: the resource is gone).
    fn set_names(&mut self, namespace: &str, name: &str, names: Option<BTreeSet<String>>) {
        let key: Key = (Arc::from(namespace), Arc::from(name));
        for old in self.names.remove(&key).into_iter().flatten() {
            if let Some(resources) = self.named_by.get_mut(&old) {
                resources.remove(&key);
                if resources.is_empty() {
                    self.named_by.remove(&old);
                }
            }
        }
        let Some(names) = names.filter(|names| !names.is_empty()) else {
            return;
        };
        let mut shared = Vec::with_capacity(names.len());
        for peer in names {
            let peer: Arc<str> = match self.named_by.get_key_value(peer.as_str()) {
                Some((existing, _)) => existing.clone(),
                None => Arc::from(peer),
            };
            self.named_by
                .entry(peer.clone())
                .or_default()
                .insert(key.clone());
            shared.push(peer);
        }
        self.names.insert(key, shared.into_boxed_slice());
    }
}

/// The namespaces a resource's shared services name by `namespace`.
fn named_namespaces(resource: &NamespaceIsolation) -> BTreeSet<String> {
    resource
        .spec
        .shared_services
        .iter()
        .filter_map(|service| service.namespace.clone())
        .collect()
}

impl IsolationIndex {
    /// Apply one event of the resources' watch.
    pub fn apply(&self, event: &watcher::Event<NamespaceIsolation>) {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = |resource: &NamespaceIsolation| {
            Some((
                resource.metadata.namespace.clone()?,
                resource.metadata.name.clone()?,
            ))
        };
        match event {
            watcher::Event::Init => state.relisting = Some(HashMap::new()),
            watcher::Event::InitApply(resource) => {
                if let (Some(relisting), Some((namespace, name))) =
                    (state.relisting.as_mut(), key(resource))
                {
                    add_name(relisting, &namespace, &name);
                    state.set_names(&namespace, &name, Some(named_namespaces(resource)));
                }
            }
            watcher::Event::InitDone => {
                if let Some(relisted) = state.relisting.take() {
                    // Those the relist no longer found name nothing any more.
                    let gone: Vec<Key> = state
                        .names
                        .keys()
                        .filter(|(namespace, name)| !has_name(&relisted, namespace, name))
                        .cloned()
                        .collect();
                    for (namespace, name) in &gone {
                        state.set_names(namespace, name, None);
                    }
                    state.current = relisted;
                }
            }
            watcher::Event::Apply(resource) => {
                if let Some((namespace, name)) = key(resource) {
                    add_name(&mut state.current, &namespace, &name);
                    state.set_names(&namespace, &name, Some(named_namespaces(resource)));
                }
            }
            watcher::Event::Delete(resource) => {
                if let Some((namespace, name)) = key(resource) {
                    if let Some(names) = state.current.get_mut(namespace.as_str()) {
                        names.retain(|held| **held != *name);
                        if names.is_empty() {
                            state.current.remove(namespace.as_str());
                        }
                    }
                    state.set_names(&namespace, &name, None);
                }
            }
        }
    }

    /// The resources of `namespace`.
    #[must_use]
    pub fn in_namespace(&self, namespace: &str) -> Vec<ObjectRef<NamespaceIsolation>> {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .current
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|name| ObjectRef::new(name).within(namespace))
            .collect()
    }

    /// The resources whose shared services name `namespace` by `namespace: <name>`.
    #[must_use]
    pub fn naming(&self, namespace: &str) -> Vec<ObjectRef<NamespaceIsolation>> {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .named_by
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|(namespace, name)| ObjectRef::new(name).within(namespace))
            .collect()
    }

    /// The resources whose shared services name a namespace for which `exists` is false.
    fn naming_other_than(
        &self,
        exists: impl Fn(&str) -> bool,
    ) -> Vec<ObjectRef<NamespaceIsolation>> {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .named_by
            .iter()
            .filter(|(namespace, _)| !exists(namespace))
            .flat_map(|(_, resources)| resources)
            .map(|(namespace, name)| ObjectRef::new(name).within(namespace))
            .collect()
    }

    /// What a Namespace watch event must reconcile:
    /// - its resources, when its labels changed since the last event (the first one seen only
    ///   records them; the resources reconcile anyway when they first appear, and a relist of
    ///   unchanged namespaces reconciles nothing);
    /// - the resources whose shared services name it, when it is created or deleted (or a
    ///   relist finds it new or gone), so that their warning that it does not exist comes and
    ///   goes at once;
    /// - when the first list ends, the resources whose shared services name a namespace it did
    ///   not find (their reconciles before it did not know, or stopped waiting for it).
    ///
    /// A relist's changes reconcile at its end, when the namespace cache holds what it found.
    pub fn namespace_changes(
        &self,
    ) -> impl FnMut(watcher::Event<Seen>) -> Vec<ObjectRef<NamespaceIsolation>> + Send + 'static
    {
        let index = self.clone();
        // Each namespace's labels, as a digest (a relabelling is all this needs to see).
        let mut seen: HashMap<String, Digest> = HashMap::new();
        let mut relisting: Option<HashMap<String, Digest>> = None;
        let mut listed = false;
        let parts = |namespace: Seen| (namespace.name, namespace.labels);
        move |event| match event {
            watcher::Event::Apply(namespace) => {
                let (name, labels) = parts(namespace);
                match seen.insert(name.clone(), labels) {
                    Some(previous) if previous != labels => index.in_namespace(&name),
                    Some(_) => Vec::new(),
                    None => index.naming(&name),
                }
            }
            watcher::Event::Delete(namespace) => {
                let (name, _) = parts(namespace);
                seen.remove(&name);
                index.naming(&name)
            }
            watcher::Event::Init => {
                relisting = Some(HashMap::new());
                Vec::new()
            }
            watcher::Event::InitApply(namespace) => {
                let (name, labels) = parts(namespace);
                relisting.get_or_insert_default().insert(name, labels);
                Vec::new()
            }
            watcher::Event::InitDone => {
                let relisted = relisting.take().unwrap_or_default();
                let mut changed = Vec::new();
                if listed {
                    for (name, labels) in &relisted {
                        match seen.get(name) {
                            Some(previous) if previous != labels => {
                                changed.extend(index.in_namespace(name));
                            }
                            Some(_) => {}
                            None => changed.extend(index.naming(name)),
                        }
                    }
                    for name in seen.keys().filter(|name| !relisted.contains_key(*name)) {
                        changed.extend(index.naming(name));
                    }
                } else {
                    listed = true;
                    changed = index.naming_other_than(|name| relisted.contains_key(name));
                }
                seen = relisted;
                changed.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
                changed.dedup();
                changed
            }
        }
    }
}

/// What the DNS peer of a valid resource reaches.
fn dns_reality(
    dns: &DnsCaches,
    resource: &NamespaceIsolation,
    isolation: &ValidatedIsolation,
) -> DnsReality {
    match (isolation.isolates(Direction::Egress), isolation.dns()) {
        (false, _) => DnsReality::NotRestricted,
        (true, None) => DnsReality::Disabled,
        (true, Some(valid)) => dns.reality(&resource.spec.dns.namespace, valid),
    }
}

/// The most NetworkPolicies of the namespace the audit proves: each one's pods, peers and ports
/// join the model world, so whoever may write policies there sets the proof's size.
pub(crate) const MAX_POLICIES: usize = 200;

/// The audit of one resource: its namespace's NetworkPolicies (netfence's and the others, but
/// those it acknowledges) and the cluster-wide policies proven against its spec, and its DNS
/// peer as the cluster has it. `policies` are the namespace's policies that carry netfence's
/// managed-by label, whole. `isolation` is `None` for an invalid spec. Whatever netfence has
/// not read (the cluster-wide kinds, the namespace's labels they choose by) makes `Isolated`
/// Unknown, never True.
pub(crate) fn audit(
    context: &Context,
    resource: &NamespaceIsolation,
    isolation: Option<&ValidatedIsolation>,
    namespace: &str,
    mut policies: Vec<NetworkPolicy>,
) -> Audit {
    let acknowledged_names: HashMap<&str, &str> = isolation
        .map(|isolation| {
            isolation
                .acknowledged()
                .iter()
                .map(|(name, reason)| (name.as_str(), reason.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut foreign = Vec::new();
    let mut acknowledged = Vec::new();
    for policy in context.foreign.in_namespace(namespace) {
        let name = policy.metadata.name.clone().unwrap_or_default();
        if let Some(reason) = acknowledged_names.get(name.as_str()) {
            acknowledged.push(format!("{name}: {reason}"));
        } else {
            foreign.push(name);
            policies.push(policy);
        }
    }
    let (isolation_found, dns_found) = match isolation {
        None => {
            let message =
                "the spec is invalid (condition Ready says why): there is no intent to prove";
            (
                Isolation::Unknown("InvalidSpec", message.to_owned()),
                DnsReality::Unknown(message.to_owned()),
            )
        }
        Some(isolation) => (
            prove(context, resource, isolation, &policies, namespace),
            dns_reality(&context.dns, resource, isolation),
        ),
    };
    Audit {
        isolation: isolation_found,
        dns: dns_found,
        foreign,
        acknowledged,
        dry_run: isolation.is_some_and(|isolation| isolation.mode() == Mode::DryRun),
    }
}

/// The proof of `policies` with the cluster-wide ones, as a condition's outcome.
fn prove(
    context: &Context,
    resource: &NamespaceIsolation,
    isolation: &ValidatedIsolation,
    policies: &[NetworkPolicy],
    namespace: &str,
) -> Isolation {
    if policies.len() > MAX_POLICIES {
        return Isolation::Unknown(
            "TooManyPolicies",
            format!(
                "the namespace holds {} NetworkPolicies; the audit proves at most {MAX_POLICIES} (run netfence verify on a dump of the namespace)",
                policies.len()
            ),
        );
    }
    let cluster_wide = context.cluster_wide.view();
    if let Some(problem) = cluster_wide.problem {
        return Isolation::Unknown("ClusterWideUnknown", problem);
    }
    let labels = context.cluster_wide.labels(namespace);
    if labels.is_none() && !cluster_wide.policies.is_empty() {
        return Isolation::Unknown(
            "ClusterWideUnknown",
            format!(
                "netfence has not read the labels of namespace {namespace} yet, and the cluster-wide policies choose namespaces by label"
            ),
        );
    }
    let labels: BTreeMap<String, Labels> = labels
        .map(|labels| (namespace.to_owned(), labels))
        .into_iter()
        .collect();
    // The same inputs, the same proof: a restored policy, a relist or a status write reconciles
    // with nothing new to prove (a proof costs milliseconds of CPU the restorations need).
    let fingerprint = fingerprint(resource, policies, cluster_wide.version, &labels);
    let key = format!("{namespace}/{}", isolation.name());
    if let Some(known) = context.proofs.get(&key, fingerprint) {
        return known;
    }
    let proven = proven(isolation, policies, &cluster_wide.policies, &labels);
    context.proofs.put(key, fingerprint, proven.clone());
    proven
}

/// A digest of everything a proof reads: the spec (by the resource's uid and generation), the
/// policies (by content, not version), the cluster-wide policies (by the cache's version of
/// them) and the namespace's labels.
fn fingerprint(
    resource: &NamespaceIsolation,
    policies: &[NetworkPolicy],
    cluster_wide: u64,
    labels: &BTreeMap<String, Labels>,
) -> u64 {
    let mut hasher = DefaultHasher::new();
    // The spec is the resource's at this generation.
    resource.metadata.uid.hash(&mut hasher);
    resource.metadata.generation.hash(&mut hasher);
    for policy in policies {
        policy.metadata.name.hash(&mut hasher);
        serde_json::to_string(&policy.spec)
            .unwrap_or_default()
            .hash(&mut hasher);
    }
    cluster_wide.hash(&mut hasher);
    labels.hash(&mut hasher);
    hasher.finish()
}

/// The last proof of each resource (`namespace/name`), with the fingerprint of its inputs.
#[derive(Default)]
pub struct ProofMemo {
    known: Mutex<HashMap<String, (u64, Isolation)>>,
}

impl ProofMemo {
    fn get(&self, key: &str, fingerprint: u64) -> Option<Isolation> {
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known
            .get(key)
            .filter(|(known, _)| *known == fingerprint)
            .map(|(_, isolation)| isolation.clone())
    }

    fn put(&self, key: String, fingerprint: u64, isolation: Isolation) {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (fingerprint, isolation));
    }

    /// Forget a resource that is gone.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&format!("{namespace}/{name}"));
    }
}

/// The proof itself, as a condition's outcome.
fn proven(
    isolation: &ValidatedIsolation,
    policies: &[NetworkPolicy],
    cluster_wide: &ClusterWidePolicies,
    labels: &BTreeMap<String, Labels>,
) -> Isolation {
    match intent::prove_with(isolation, policies, cluster_wide, labels) {
        Ok(proof) => {
            let found = findings(&proof);
            if found.is_empty() {
                return Isolation::AsDeclared {
                    policies: policies.len(),
                };
            }
            let (widened, narrowed): (Vec<_>, Vec<_>) = found
                .into_iter()
                .partition(|finding| finding.departure == Departure::Widened);
            Isolation::Departs {
                widened: widened.into_iter().map(|finding| finding.message).collect(),
                narrowed: narrowed
                    .into_iter()
                    .map(|finding| finding.message)
                    .collect(),
            }
        }
        Err(error) => Isolation::Unknown(
            "InvalidPolicy",
            format!("{error}: netfence cannot tell what the namespace's policies allow"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(namespace: &str, name: &str) -> NamespaceIsolation {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation",
            "metadata": {"name": name, "namespace": namespace}, "spec": {},
        }))
        .expect("a resource")
    }

    fn names(refs: Vec<ObjectRef<NamespaceIsolation>>) -> Vec<String> {
        refs.into_iter().map(|found| found.name).collect()
    }

    /// The index follows the watch: applied and deleted resources, and a relist that drops
    /// what was deleted meanwhile; a namespace's event reconciles its resources only when its
    /// labels changed.
    #[test]
    fn the_index_follows_the_watch_and_label_changes() {
        let index = IsolationIndex::default();
        index.apply(&watcher::Event::Apply(resource("shop", "shop")));
        index.apply(&watcher::Event::Apply(resource("shop", "second")));
        index.apply(&watcher::Event::Apply(resource("blog", "blog")));
        assert_eq!(names(index.in_namespace("shop")), ["second", "shop"]);
        index.apply(&watcher::Event::Delete(resource("shop", "second")));
        assert_eq!(names(index.in_namespace("shop")), ["shop"]);
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(resource("blog", "blog")));
        assert_eq!(
            names(index.in_namespace("shop")),
            ["shop"],
            "the old index serves until the relist ends"
        );
        index.apply(&watcher::Event::InitDone);
        assert!(
            index.in_namespace("shop").is_empty(),
            "shop was deleted while the watch was down"
        );
        assert_eq!(names(index.in_namespace("blog")), ["blog"]);

        let mut changes = index.namespace_changes();
        let mut labels = |labels: serde_json::Value| {
            changes(watcher::Event::Apply(Seen::of(
                &crate::namespaces::Kept::of(
                    &serde_json::from_value(
                        serde_json::json!({"metadata": {"name": "blog", "labels": labels}}),
                    )
                    .expect("a namespace"),
                ),
            )))
        };
        assert!(
            labels(serde_json::json!({"team": "a"})).is_empty(),
            "first seen"
        );
        assert!(
            labels(serde_json::json!({"team": "a"})).is_empty(),
            "unchanged"
        );
        assert_eq!(names(labels(serde_json::json!({"team": "b"}))), ["blog"]);
    }

    fn naming(namespace: &str, name: &str, named: &[&str]) -> NamespaceIsolation {
        let services: Vec<serde_json::Value> = named
            .iter()
            .map(
                |peer| serde_json::json!({"name": peer, "direction": "Ingress", "namespace": peer}),
            )
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"sharedServices": services},
        }))
        .expect("a resource")
    }

    /// A namespace first seen (created) reconciles the resources whose shared services name it,
    /// as the index knows them now: an edit that stops naming it, a deletion, or a relist that
    /// no longer finds the resource forgets them.
    ///
    /// If this fails, a resource warns that a namespace does not exist for an hour after it was
    /// created (until the resync), or a namespace's creation reconciles resources that do not
    /// care.
    #[test]
    fn a_new_namespace_reconciles_the_resources_naming_it() {
        let index = IsolationIndex::default();
        index.apply(&watcher::Event::Apply(naming(
            "shop",
            "shop",
            &["monitoring"],
        )));
        index.apply(&watcher::Event::Apply(naming(
            "blog",
            "blog",
            &["monitoring", "ingress"],
        )));
        index.apply(&watcher::Event::Apply(naming("cart", "cart", &["ingress"])));
        let mut changes = index.namespace_changes();
        let mut created = |name: &str| changes(watcher::Event::Apply(namespace(name)));
        assert_eq!(names(created("monitoring")), ["blog", "shop"]);
        assert!(created("monitoring").is_empty(), "seen before: nothing new");
        index.apply(&watcher::Event::Apply(naming("blog", "blog", &["ingress"])));
        index.apply(&watcher::Event::Delete(naming(
            "cart",
            "cart",
            &["ingress"],
        )));
        assert_eq!(names(index.naming("ingress")), ["blog"]);
        assert_eq!(names(index.naming("monitoring")), ["shop"]);
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(naming(
            "blog",
            "blog",
            &["ingress"],
        )));
        index.apply(&watcher::Event::InitDone);
        assert!(index.naming("monitoring").is_empty(), "shop is gone");
        assert_eq!(names(created("ingress")), ["blog"]);
    }

    fn namespace(name: &str) -> Seen {
        Seen::of(&crate::namespaces::Kept::of(
            &serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
                .expect("a namespace"),
        ))
    }

    /// A namespace deleted, and one a relist no longer finds, reconcile the resources whose
    /// shared services name it; created again, it reconciles them again; the end of the first
    /// list reconciles the resources naming a namespace it did not find, and only those.
    ///
    /// If this fails, a resource's warning that a namespace does not exist goes stale: it does
    /// not appear when the namespace is deleted, or stays after it is created again (until the
    /// hourly resync), or a restart leaves it out when the namespace list came late.
    #[test]
    fn a_deleted_namespace_reconciles_the_resources_naming_it() {
        let index = IsolationIndex::default();
        index.apply(&watcher::Event::Apply(naming(
            "shop",
            "shop",
            &["monitoring"],
        )));
        index.apply(&watcher::Event::Apply(naming("blog", "blog", &["ingress"])));
        let mut changes = index.namespace_changes();
        changes(watcher::Event::Init);
        changes(watcher::Event::InitApply(namespace("monitoring")));
        changes(watcher::Event::InitApply(namespace("shop")));
        assert_eq!(
            names(changes(watcher::Event::InitDone)),
            ["blog"],
            "the first list did not find ingress"
        );
        assert_eq!(
            names(changes(watcher::Event::Delete(namespace("monitoring")))),
            ["shop"]
        );
        assert_eq!(
            names(changes(watcher::Event::Apply(namespace("monitoring")))),
            ["shop"],
            "created again"
        );
        assert!(changes(watcher::Event::Apply(namespace("monitoring"))).is_empty());
        // A relist that no longer finds monitoring, and finds ingress.
        changes(watcher::Event::Init);
        assert!(changes(watcher::Event::InitApply(namespace("shop"))).is_empty());
        assert!(changes(watcher::Event::InitApply(namespace("ingress"))).is_empty());
        assert_eq!(names(changes(watcher::Event::InitDone)), ["blog", "shop"]);
        changes(watcher::Event::Init);
        changes(watcher::Event::InitApply(namespace("shop")));
        changes(watcher::Event::InitApply(namespace("ingress")));
        assert!(
            changes(watcher::Event::InitDone).is_empty(),
            "a relist that changes nothing reconciles nothing"
        );
    }
}
