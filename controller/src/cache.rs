//! The controller's cache of the NetworkPolicies netfence manages, indexed by namespace, so that a
//! reconcile reads the policies of its own namespace without scanning every policy of the
//! cluster (a scan per reconcile makes convergence quadratic in the number of namespaces).
//!
//! ```text
//! watch NetworkPolicy (managed-by=netfence) --managedFields dropped--> PolicyCache
//!                                                                      namespace -> name -> policy
//! ```
//!
//! Each policy is kept as compact JSON (decoded when a reconcile reads its namespace): a decoded
//! NetworkPolicy takes about 3.7 KiB of heap, and at 9 policies per namespace the decoded cache
//! was most of the operator's memory.
//!
//! It applies watcher events as kube's reflector does: a relist (`Init`, `InitApply`...,
//! `InitDone`) fills a buffer that replaces the content at once. Any number of tasks may wait
//! for the first complete list.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, PoisonError, RwLock},
};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::watcher;

type Namespaces = HashMap<String, BTreeMap<String, Arc<Cached>>>;

/// Per tracked policy (namespace, name): how many reconciles track it, and the resourceVersions
/// delivered since.
type Tracking = HashMap<(String, String), (usize, Vec<String>)>;

/// One policy as the cache keeps it: its resourceVersion, and the object (without
/// managedFields or annotations, which no reconcile reads) as JSON.
struct Cached {
    resource_version: Option<String>,
    json: Box<str>,
}

impl Cached {
    fn new(policy: &NetworkPolicy) -> Cached {
        let mut kept = policy.clone();
        kept.metadata.managed_fields = None;
        kept.metadata.annotations = None;
        Cached {
            resource_version: policy.metadata.resource_version.clone(),
            // Serializing a typed object cannot fail.
            json: serde_json::to_string(&kept).unwrap_or_default().into(),
        }
    }

    fn decode(&self) -> Option<NetworkPolicy> {
        serde_json::from_str(&self.json).ok()
    }
}

#[derive(Default)]
struct Content {
    namespaces: Namespaces,
    /// A relist in progress.
    buffer: Option<Namespaces>,
}

struct Inner {
    content: RwLock<Content>,
    /// The resourceVersions each event delivered, for the objects a reconcile is writing (see
    /// [`PolicyCache::track`]), with how many reconciles track each.
    tracked: std::sync::Mutex<Tracking>,
    synced: tokio::sync::watch::Sender<bool>,
    /// Signalled at every event applied.
    changes: Changes,
}

/// A signal that a cache changed, which any number of tasks can wait on (no polling).
#[derive(Clone, Debug)]
pub struct Changes {
    count: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            count: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

impl Changes {
    /// Tell the waiters that the cache changed.
    pub fn signal(&self) {
        self.count
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Wait until `done` holds (checked at once and after every signal), at most until
    /// `deadline`. Returns whether it holds.
    pub async fn wait_until(
        &self,
        deadline: tokio::time::Instant,
        mut done: impl FnMut() -> bool,
    ) -> bool {
        let mut changes = self.count.subscribe();
        loop {
            changes.mark_unchanged();
            if done() {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return done(),
            }
        }
    }
}

/// The versions this controller itself wrote, per object, so that the watch event of its own
/// write triggers no reconcile: the reconcile that wrote it has already made that object right,
/// and a reconcile per write doubled the reconciles of convergence and drift. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct OwnWrites {
    versions: Arc<std::sync::Mutex<HashMap<WrittenKey, String>>>,
}

/// Kind, namespace and name of a written object.
type WrittenKey = (String, String, String);

impl OwnWrites {
    /// Remember that this controller wrote `object` (as the API server answered it).
    pub fn record<K: kube::Resource<DynamicType = ()>>(&self, object: &K) {
        let meta = object.meta();
        let (Some(namespace), Some(name), Some(version)) =
            (&meta.namespace, &meta.name, &meta.resource_version)
        else {
            return;
        };
        self.versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (K::kind(&()).into_owned(), namespace.clone(), name.clone()),
                version.clone(),
            );
    }

    /// Whether `object` is exactly the version this controller last wrote (forgotten once
    /// seen: only the first event of a write is its own).
    pub fn take<K: kube::Resource<DynamicType = ()>>(&self, object: &K) -> bool {
        let meta = object.meta();
        let (Some(namespace), Some(name), Some(version)) =
            (&meta.namespace, &meta.name, &meta.resource_version)
        else {
            return false;
        };
        let key = (K::kind(&()).into_owned(), namespace.clone(), name.clone());
        let mut versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        if versions.get(&key) == Some(version) {
            versions.remove(&key);
            true
        } else {
            false
        }
    }
}

/// The managed NetworkPolicies, by namespace and name. Cloning shares the cache.
#[derive(Clone)]
pub struct PolicyCache {
    inner: Arc<Inner>,
}

impl Default for PolicyCache {
    fn default() -> Self {
        PolicyCache {
            inner: Arc::new(Inner {
                content: RwLock::new(Content::default()),
                tracked: std::sync::Mutex::new(HashMap::new()),
                synced: tokio::sync::watch::Sender::new(false),
                changes: Changes::default(),
            }),
        }
    }
}

impl std::fmt::Debug for PolicyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyCache")
            .field("policies", &self.len())
            .finish()
    }
}

/// Insert `policy`; when `known` holds it at the same resourceVersion, share that copy instead
/// (a relist then costs no second copy of every unchanged policy).
fn insert(namespaces: &mut Namespaces, policy: &NetworkPolicy, known: Option<&Namespaces>) {
    let (Some(namespace), Some(name)) = (&policy.metadata.namespace, &policy.metadata.name) else {
        return;
    };
    let shared = known
        .and_then(|known| known.get(namespace)?.get(name))
        .filter(|known| known.resource_version == policy.metadata.resource_version)
        .cloned();
    namespaces.entry(namespace.clone()).or_default().insert(
        name.clone(),
        shared.unwrap_or_else(|| Arc::new(Cached::new(policy))),
    );
}

/// The policies of `new` that are not in `old` at the same resourceVersion, and those of `old`
/// that `new` lacks.
fn differences(old: &Namespaces, new: &Namespaces) -> Vec<NetworkPolicy> {
    let version = |namespaces: &Namespaces, namespace: &str, name: &str| {
        namespaces
            .get(namespace)
            .and_then(|policies| policies.get(name))
            .map(|policy| policy.resource_version.clone())
    };
    let changed = new.iter().flat_map(|(namespace, policies)| {
        policies
            .iter()
            .filter(|(name, policy)| {
                version(old, namespace, name) != Some(policy.resource_version.clone())
            })
            .filter_map(|(_, policy)| policy.decode())
    });
    let gone = old.iter().flat_map(|(namespace, policies)| {
        policies
            .iter()
            .filter(|(name, _)| version(new, namespace, name).is_none())
            .filter_map(|(_, policy)| policy.decode())
    });
    changed.chain(gone).collect()
}

impl PolicyCache {
    /// Apply one watcher event. Returns the policies whose owners must be reconciled: the one
    /// an event adds, changes or deletes; after a relist, only those that differ from what the
    /// cache held before it (changed, added, or gone while the watch was down), so that a
    /// relist of an unchanged cluster reconciles nothing for its policies.
    #[allow(clippy::must_use_candidate)] // filling the cache alone (as tests do) ignores them
    pub fn apply(&self, event: &watcher::Event<NetworkPolicy>) -> Vec<NetworkPolicy> {
        let changed = self.apply_content(event);
        // Once the content shows it (a relist's objects only at its end): a reconcile that sees
        // its write delivered then finds the cache holding it or something later.
        match event {
            watcher::Event::Apply(policy) | watcher::Event::Delete(policy) => {
                self.note_delivered(policy);
            }
            watcher::Event::InitDone => self.note_relisted(),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
        self.inner.changes.signal();
        changed
    }

    fn apply_content(&self, event: &watcher::Event<NetworkPolicy>) -> Vec<NetworkPolicy> {
        let mut content = self
            .inner
            .content
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(policy) => {
                insert(&mut content.namespaces, policy, None);
                vec![policy.clone()]
            }
            watcher::Event::Delete(policy) => {
                let (Some(namespace), Some(name)) =
                    (&policy.metadata.namespace, &policy.metadata.name)
                else {
                    return Vec::new();
                };
                if let Some(policies) = content.namespaces.get_mut(namespace) {
                    policies.remove(name);
                    if policies.is_empty() {
                        content.namespaces.remove(namespace);
                    }
                }
                vec![policy.clone()]
            }
            watcher::Event::Init => {
                content.buffer = Some(Namespaces::new());
                Vec::new()
            }
            watcher::Event::InitApply(policy) => {
                let Content { namespaces, buffer } = &mut *content;
                insert(
                    buffer.get_or_insert_with(Namespaces::new),
                    policy,
                    Some(namespaces),
                );
                Vec::new()
            }
            watcher::Event::InitDone => {
                let new = content.buffer.take().unwrap_or_default();
                let old = std::mem::replace(&mut content.namespaces, new);
                let changed = differences(&old, &content.namespaces);
                drop(content);
                self.inner.synced.send_replace(true);
                changed
            }
        }
    }

    /// Remember `policy`'s resourceVersion if a reconcile tracks it.
    fn note_delivered(&self, policy: &NetworkPolicy) {
        let (Some(namespace), Some(name), Some(version)) = (
            &policy.metadata.namespace,
            &policy.metadata.name,
            &policy.metadata.resource_version,
        ) else {
            return;
        };
        let mut tracked = self
            .inner
            .tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, versions)) = tracked.get_mut(&(namespace.clone(), name.clone())) {
            versions.push(version.clone());
        }
    }

    /// After a relist, record the version now held of every tracked policy.
    fn note_relisted(&self) {
        let mut tracked = self
            .inner
            .tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for ((namespace, name), (_, versions)) in tracked.iter_mut() {
            if let Some(version) = self
                .cached(namespace, name)
                .and_then(|cached| cached.resource_version.clone())
            {
                versions.push(version);
            }
        }
    }

    /// Start recording the resourceVersions the watch delivers for these policies of
    /// `namespace`, until the returned guard is dropped. A reconcile tracks what it is about to
    /// write, then asks [`Tracked::delivered`] whether the watch delivered its write: the cache
    /// then holds that write or a later one, whatever else wrote meanwhile, without ever
    /// comparing resourceVersions (they are opaque) and whether the event came before or after
    /// the write's answer.
    #[must_use]
    pub fn track(&self, namespace: &str, names: &[String]) -> Tracked {
        let keys: Vec<(String, String)> = names
            .iter()
            .map(|name| (namespace.to_owned(), name.clone()))
            .collect();
        let mut tracked = self
            .inner
            .tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for key in &keys {
            tracked.entry(key.clone()).or_default().0 += 1;
        }
        Tracked {
            cache: self.clone(),
            keys,
        }
    }

    /// The policies of one namespace, by name (decoded copies).
    #[must_use]
    pub fn in_namespace(&self, namespace: &str) -> Vec<NetworkPolicy> {
        self.inner
            .content
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .namespaces
            .get(namespace)
            .map(|policies| {
                policies
                    .values()
                    .filter_map(|policy| policy.decode())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One policy (a decoded copy).
    #[must_use]
    pub fn get(&self, namespace: &str, name: &str) -> Option<NetworkPolicy> {
        self.cached(namespace, name)?.decode()
    }

    /// Whether the cache holds `namespace/name` at `version`, or, for `None`, does not hold it.
    #[must_use]
    pub fn holds(&self, namespace: &str, name: &str, version: Option<&str>) -> bool {
        match (self.cached(namespace, name), version) {
            (Some(cached), Some(version)) => cached.resource_version.as_deref() == Some(version),
            (None, None) => true,
            _ => false,
        }
    }

    fn cached(&self, namespace: &str, name: &str) -> Option<Arc<Cached>> {
        self.inner
            .content
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .namespaces
            .get(namespace)
            .and_then(|policies| policies.get(name).cloned())
    }

    /// How many policies the cache holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner
            .content
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .namespaces
            .values()
            .map(BTreeMap::len)
            .sum()
    }

    /// Whether the cache holds no policy.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wait until `done` holds (checked at once and after every change of the cache), at most
    /// until `deadline`. Returns whether it holds.
    pub async fn wait_until(
        &self,
        deadline: tokio::time::Instant,
        mut done: impl FnMut(&PolicyCache) -> bool,
    ) -> bool {
        self.inner.changes.wait_until(deadline, || done(self)).await
    }

    /// Wait until the first complete list is in.
    pub async fn wait_synced(&self) {
        let mut synced = self.inner.synced.subscribe();
        // The sender lives as long as `self`: this cannot fail.
        let _ = synced.wait_for(|synced| *synced).await;
    }
}

/// Policies whose delivered resourceVersions the cache records (see [`PolicyCache::track`]).
pub struct Tracked {
    cache: PolicyCache,
    keys: Vec<(String, String)>,
}

impl Tracked {
    /// Whether the watch delivered `name` at `version` since tracking began.
    #[must_use]
    pub fn delivered(&self, namespace: &str, name: &str, version: &str) -> bool {
        self.cache
            .inner
            .tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(namespace.to_owned(), name.to_owned()))
            .is_some_and(|(_, versions)| versions.iter().any(|seen| seen == version))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut tracked = self
            .cache
            .inner
            .tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for key in &self.keys {
            if let Some((count, _)) = tracked.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    tracked.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(namespace: &str, name: &str) -> NetworkPolicy {
        let mut policy = NetworkPolicy::default();
        policy.metadata.namespace = Some(namespace.to_owned());
        policy.metadata.name = Some(name.to_owned());
        policy
    }

    fn names(cache: &PolicyCache, namespace: &str) -> Vec<String> {
        cache
            .in_namespace(namespace)
            .iter()
            .filter_map(|policy| policy.metadata.name.clone())
            .collect()
    }

    /// Events land in their namespace; a relist replaces everything at once, so a policy deleted
    /// while the watch was down does not linger (a lingering one would never be restored).
    #[tokio::test]
    async fn applies_events_and_relists() {
        let cache = PolicyCache::default();
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(policy("a", "deny")));
        assert!(
            cache.is_empty(),
            "nothing is visible before the list is complete"
        );
        cache.apply(&watcher::Event::InitDone);
        cache.wait_synced().await;
        cache.apply(&watcher::Event::Apply(policy("a", "dns")));
        cache.apply(&watcher::Event::Apply(policy("b", "deny")));
        assert_eq!(names(&cache, "a"), ["deny", "dns"]);
        cache.apply(&watcher::Event::Delete(policy("a", "deny")));
        assert_eq!(names(&cache, "a"), ["dns"]);
        assert!(cache.get("b", "deny").is_some());

        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(policy("b", "deny")));
        assert_eq!(
            cache.len(),
            2,
            "the old content stays until the relist is done"
        );
        cache.apply(&watcher::Event::InitDone);
        let kept = cache.cached("b", "deny").expect("relisted");
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(policy("b", "deny")));
        assert!(cache.apply(&watcher::Event::InitDone).is_empty());
        assert!(
            Arc::ptr_eq(&kept, &cache.cached("b", "deny").expect("relisted")),
            "an unchanged policy is shared, not copied, by a relist"
        );
        assert!(names(&cache, "a").is_empty());
        assert_eq!(cache.len(), 1);
    }

    /// A write the watch delivered counts as seen even when someone else's write overtook it
    /// before the reconcile looked, and whether its event came before or after the answer.
    #[test]
    fn a_delivered_write_is_seen_though_overtaken() {
        let cache = PolicyCache::default();
        let versioned = |version: &str| {
            let mut policy = policy("a", "deny");
            policy.metadata.resource_version = Some(version.to_owned());
            policy
        };
        let tracked = cache.track("a", &["deny".to_owned()]);
        cache.apply(&watcher::Event::Apply(versioned("7")));
        cache.apply(&watcher::Event::Apply(versioned("8")));
        assert!(tracked.delivered("a", "deny", "7"));
        assert!(
            !cache.holds("a", "deny", Some("7")),
            "the tenant's write is newer"
        );
        assert!(!tracked.delivered("a", "deny", "9"));
        drop(tracked);
        assert!(
            cache.inner.tracked.lock().expect("lock").is_empty(),
            "nothing is recorded once nobody tracks"
        );
    }
}
