//! The controller's caches of NetworkPolicies, indexed by namespace, so that a reconcile reads
//! the policies of its own namespace without scanning every policy of the cluster (a scan per
//! reconcile makes convergence quadratic in the number of namespaces).
//!
//! ```text
//! watch NetworkPolicy (managed-by=netfence)  --> PolicyCache<Facts>  namespace -> [name, version, facts]
//! watch NetworkPolicy (the others, the audit's) --> PolicyCache<Whole> namespace -> [name, version, JSON]
//! ```
//!
//! netfence's own policies are kept as their [`Facts`] (about 100 bytes: who controls them, the
//! labels netfence renders and a digest of the spec), not as objects: at 10,000 namespaces
//! that is 90,000 policies, and kept whole (even as compact JSON) they were most of the
//! operator's memory. The others, which the intent audit proves as they are, are kept whole as
//! compact JSON (decoded when a reconcile reads its namespace).
//!
//! A cache applies watcher events in place: a relist (`Init`, `InitApply`..., `InitDone`) marks
//! each policy it lists, replaces those that changed as they come, and at its end removes those
//! it did not list (kube's reflector fills a second copy of everything instead, which at 90,000
//! policies doubled the cache for the relist's duration). Any number of tasks may wait
//! for the first complete list.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
};

use compact_str::CompactString;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::watcher;
use netfence_core::observed::{Facts, Observed};

/// How a cache keeps each policy.
pub trait Keep: Clone + Send + Sync + 'static {
    /// What a reader gets of a kept policy.
    type Read;

    /// What to keep of `policy`.
    fn keep(policy: &NetworkPolicy) -> Self;

    /// What a reader gets of the policy `name` kept as `self`.
    fn read(&self, name: &str) -> Option<Self::Read>;
}

/// A policy kept whole: the object, without managedFields or annotations (which no reconcile
/// reads), as compact JSON (a decoded NetworkPolicy takes about 3.7 KiB of heap). Shared, so a
/// relist keeps one copy of every unchanged policy.
#[derive(Clone, Debug)]
pub struct Whole(Arc<str>);

impl Keep for Whole {
    type Read = NetworkPolicy;

    fn keep(policy: &NetworkPolicy) -> Self {
        let mut kept = policy.clone();
        kept.metadata.managed_fields = None;
        kept.metadata.annotations = None;
        // Serializing a typed object cannot fail.
        Whole(serde_json::to_string(&kept).unwrap_or_default().into())
    }

    fn read(&self, _: &str) -> Option<NetworkPolicy> {
        serde_json::from_str(&self.0).ok()
    }
}

impl Keep for Facts {
    type Read = Observed;

    fn keep(policy: &NetworkPolicy) -> Self {
        Facts::of(policy)
    }

    fn read(&self, name: &str) -> Option<Observed> {
        Some(Observed {
            name: name.to_owned(),
            facts: *self,
        })
    }
}

/// Whether a cache holds a policy, and at which resourceVersion (one from an API server always
/// has one).
enum Held {
    Absent,
    At(Option<Version>),
}

/// A resourceVersion as a cache keeps it: etcd's are decimal numbers, kept as one (no
/// allocation: at 90,000 policies, 2 MiB less than a string each); anything else (the API
/// conventions call them opaque) as it is. Only ever compared for equality, never ordered.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Version {
    Number(u64),
    Text(Box<str>),
}

impl Version {
    fn of(version: &str) -> Version {
        Version::number(version).map_or_else(|| Version::Text(version.into()), Version::Number)
    }

    /// `version` as a number when it is one written canonically ("7", not "07" or "+7"), so
    /// that each string maps to exactly one `Version` and back.
    fn number(version: &str) -> Option<u64> {
        let canonical = !version.is_empty()
            && version.bytes().all(|byte| byte.is_ascii_digit())
            && (version.len() == 1 || !version.starts_with('0'));
        canonical.then(|| version.parse().ok()).flatten()
    }

    fn is(&self, version: &str) -> bool {
        match self {
            Version::Number(number) => Version::number(version) == Some(*number),
            Version::Text(text) => **text == *version,
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Number(number) => write!(f, "{number}"),
            Version::Text(text) => f.write_str(text),
        }
    }
}

/// One policy as a cache holds it.
#[derive(Clone, Debug)]
struct Cached<T> {
    /// Up to 24 bytes (`shop-tier-frontend`, most of netfence's names) in place, not on the
    /// heap: at 90,000 policies, 2 MiB less than a boxed string each.
    name: CompactString,
    resource_version: Option<Version>,
    /// The list that last delivered it (or the list in progress when an event did).
    list: u32,
    kept: T,
}

/// The policies of each namespace, sorted by name (a namespace holds a few: a sorted vector
/// costs no node per policy, as a map would).
type Namespaces<T> = HashMap<Box<str>, Vec<Cached<T>>>;

fn find<'a, T>(
    namespaces: &'a Namespaces<T>,
    namespace: &str,
    name: &str,
) -> Option<&'a Cached<T>> {
    let policies = namespaces.get(namespace)?;
    let index = policies
        .binary_search_by(|cached| (*cached.name).cmp(name))
        .ok()?;
    policies.get(index)
}

/// Per tracked policy (namespace, name): how many reconciles track it, and the resourceVersions
/// delivered since.
type Tracking = HashMap<(String, String), (usize, Vec<String>)>;

/// What a change of the cache concerns: a policy that an event added, changed or deleted (or
/// that a relist found changed), or one that a relist no longer found (deleted while the watch
/// was down: only its namespace is known).
#[derive(Clone, Debug)]
pub enum Change {
    /// A policy, as the event delivered it.
    Policy(Box<NetworkPolicy>),
    /// A policy of this namespace that a relist no longer found.
    Gone {
        /// Its namespace.
        namespace: String,
    },
}

impl Change {
    /// The namespace of the changed policy.
    #[must_use]
    pub fn namespace(&self) -> &str {
        match self {
            Change::Policy(policy) => policy.metadata.namespace.as_deref().unwrap_or_default(),
            Change::Gone { namespace } => namespace,
        }
    }
}

struct Content<T> {
    namespaces: Namespaces<T>,
    /// The number of the latest list (the first is 1).
    list: u32,
    /// A relist in progress: the policies it delivered that differ from what the cache held.
    relisting: Option<Vec<NetworkPolicy>>,
}

impl<T> Default for Content<T> {
    fn default() -> Self {
        Content {
            namespaces: HashMap::new(),
            list: 0,
            relisting: None,
        }
    }
}

struct Inner<T> {
    content: RwLock<Content<T>>,
    /// The resourceVersions each event delivered, for the objects a reconcile is writing (see
    /// [`PolicyCache::track`]), with how many reconciles track each.
    tracked: std::sync::Mutex<Tracking>,
    synced: tokio::sync::watch::Sender<bool>,
    /// Signalled at every event applied.
    changes: Changes,
}

/// A signal that a cache changed, which any number of tasks can wait on (no polling): for any
/// change, or for a change in one namespace.
///
/// A reconcile waits for its own namespace only: woken by every event of the cache, each of
/// the 32 reconciles waiting for their writes to show was polled again at each of the 18,000
/// events of a drift restoration at N = 10,000 (the operator's CPU in that phase: 12.1 s
/// before, 11.3 s after, one run each).
#[derive(Clone, Debug, Default)]
pub struct Changes {
    inner: Arc<ChangesInner>,
}

#[derive(Debug)]
struct ChangesInner {
    /// Signalled at every change, for the waiters of any.
    any: tokio::sync::watch::Sender<u64>,
    /// One per namespace someone waits on, signalled at every change there and at every change
    /// of the whole (removed with its last waiter).
    namespaces: std::sync::Mutex<HashMap<Box<str>, tokio::sync::watch::Sender<u64>>>,
}

impl Default for ChangesInner {
    fn default() -> Self {
        ChangesInner {
            any: tokio::sync::watch::Sender::new(0),
            namespaces: std::sync::Mutex::default(),
        }
    }
}

fn bump(count: &tokio::sync::watch::Sender<u64>) {
    count.send_modify(|count| *count = count.wrapping_add(1));
}

impl Changes {
    /// Tell every waiter that the cache changed (anywhere, or in a way not tied to one
    /// namespace: a relist's end).
    pub fn signal(&self) {
        bump(&self.inner.any);
        for count in self.namespaces().values() {
            bump(count);
        }
    }

    /// Tell the waiters of `namespace`, and those of any change, that it changed.
    pub fn signal_in(&self, namespace: &str) {
        bump(&self.inner.any);
        if let Some(count) = self.namespaces().get(namespace) {
            bump(count);
        }
    }

    fn namespaces(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Box<str>, tokio::sync::watch::Sender<u64>>> {
        self.inner
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait until `done` holds (checked at once and after every signal), at most until
    /// `deadline`. Returns whether it holds.
    pub async fn wait_until(
        &self,
        deadline: tokio::time::Instant,
        done: impl FnMut() -> bool,
    ) -> bool {
        wait(&mut self.inner.any.subscribe(), deadline, done).await
    }

    /// [`Changes::wait_until`], woken only by the changes of `namespace` (and those of the
    /// whole).
    pub async fn wait_until_in(
        &self,
        namespace: &str,
        deadline: tokio::time::Instant,
        done: impl FnMut() -> bool,
    ) -> bool {
        let receiver = self
            .namespaces()
            .entry(namespace.into())
            .or_insert_with(|| tokio::sync::watch::Sender::new(0))
            .subscribe();
        let mut waiter = NamespaceWaiter {
            changes: self,
            namespace,
            receiver,
        };
        wait(&mut waiter.receiver, deadline, done).await
    }
}

/// A waiter of one namespace's changes: the last one to go (finished, or dropped with its
/// reconcile) removes the namespace's sender.
struct NamespaceWaiter<'a> {
    changes: &'a Changes,
    namespace: &'a str,
    receiver: tokio::sync::watch::Receiver<u64>,
}

impl Drop for NamespaceWaiter<'_> {
    fn drop(&mut self) {
        let mut namespaces = self.changes.namespaces();
        // Waiters subscribe under the same lock: none can join between the count and the
        // removal. The count includes this waiter's own receiver.
        if namespaces
            .get(self.namespace)
            .is_some_and(|count| count.receiver_count() <= 1)
        {
            namespaces.remove(self.namespace);
        }
    }
}

async fn wait(
    changes: &mut tokio::sync::watch::Receiver<u64>,
    deadline: tokio::time::Instant,
    mut done: impl FnMut() -> bool,
) -> bool {
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

/// NetworkPolicies by namespace and name, each kept as `T`. Cloning shares the cache.
pub struct PolicyCache<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for PolicyCache<T> {
    fn clone(&self) -> Self {
        PolicyCache {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for PolicyCache<T> {
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

impl<T: Keep> std::fmt::Debug for PolicyCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyCache")
            .field("policies", &self.len())
            .finish()
    }
}

/// Insert `policy` in its place, marked as delivered by the list `list`; when the cache holds it
/// at the same resourceVersion, only mark that copy. Returns whether the cache did.
fn insert<T: Keep>(namespaces: &mut Namespaces<T>, policy: &NetworkPolicy, list: u32) -> bool {
    let (Some(namespace), Some(name)) = (&policy.metadata.namespace, &policy.metadata.name) else {
        return false;
    };
    let version = policy.metadata.resource_version.as_deref();
    let policies = namespaces.entry(namespace.as_str().into()).or_default();
    match policies.binary_search_by(|existing| (*existing.name).cmp(name)) {
        Ok(index) if same_version(policies[index].resource_version.as_ref(), version) => {
            policies[index].list = list;
            return true;
        }
        Ok(index) => policies[index] = cached(policy, name, version, list),
        Err(index) => {
            // A namespace holds a few policies: no room kept for more than it has.
            policies.reserve_exact(1);
            policies.insert(index, cached(policy, name, version, list));
        }
    }
    false
}

fn cached<T: Keep>(
    policy: &NetworkPolicy,
    name: &str,
    version: Option<&str>,
    list: u32,
) -> Cached<T> {
    Cached {
        name: name.into(),
        resource_version: version.map(Version::of),
        list,
        kept: T::keep(policy),
    }
}

fn same_version(held: Option<&Version>, version: Option<&str>) -> bool {
    match (held, version) {
        (Some(held), Some(version)) => held.is(version),
        (None, None) => true,
        _ => false,
    }
}

/// Remove `namespace/name`.
fn remove<T>(namespaces: &mut Namespaces<T>, namespace: &str, name: &str) {
    if let Some(policies) = namespaces.get_mut(namespace) {
        policies.retain(|cached| &*cached.name != name);
        if policies.is_empty() {
            namespaces.remove(namespace);
        }
    }
}

/// Remove the policies the list `list` did not deliver, one change each.
fn sweep<T>(namespaces: &mut Namespaces<T>, list: u32) -> Vec<Change> {
    let mut gone = Vec::new();
    namespaces.retain(|namespace, policies| {
        let before = policies.len();
        policies.retain(|cached| cached.list == list);
        gone.extend((policies.len()..before).map(|_| Change::Gone {
            namespace: namespace.to_string(),
        }));
        policies.shrink_to_fit();
        !policies.is_empty()
    });
    gone
}

impl<T: Keep> PolicyCache<T> {
    /// Apply one watcher event. Returns what must be reconciled: the policy an event adds,
    /// changes or deletes; after a relist, only what differs from what the cache held before it
    /// (changed, added, or gone while the watch was down), so that a relist of an unchanged
    /// cluster reconciles nothing for its policies.
    #[allow(clippy::must_use_candidate)] // filling the cache alone (as tests do) ignores them
    pub fn apply(&self, event: &watcher::Event<NetworkPolicy>) -> Vec<Change> {
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
        match event {
            watcher::Event::Apply(policy)
            | watcher::Event::Delete(policy)
            | watcher::Event::InitApply(policy) => self
                .inner
                .changes
                .signal_in(policy.metadata.namespace.as_deref().unwrap_or_default()),
            watcher::Event::Init | watcher::Event::InitDone => self.inner.changes.signal(),
        }
        changed
    }

    fn apply_content(&self, event: &watcher::Event<NetworkPolicy>) -> Vec<Change> {
        let mut content = self
            .inner
            .content
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(policy) => {
                let list = content.list;
                insert(&mut content.namespaces, policy, list);
                vec![Change::Policy(Box::new(policy.clone()))]
            }
            watcher::Event::Delete(policy) => {
                let (Some(namespace), Some(name)) =
                    (&policy.metadata.namespace, &policy.metadata.name)
                else {
                    return Vec::new();
                };
                remove(&mut content.namespaces, namespace, name);
                vec![Change::Policy(Box::new(policy.clone()))]
            }
            watcher::Event::Init => {
                content.list = content.list.wrapping_add(1);
                // A relist that restarts before its end keeps what the broken one found
                // changed: the cache already holds those versions, so the new list would not
                // report them again, and they were never reconciled.
                content.relisting.get_or_insert_default();
                Vec::new()
            }
            watcher::Event::InitApply(policy) => {
                let Content {
                    namespaces,
                    list,
                    relisting,
                } = &mut *content;
                if !insert(namespaces, policy, *list) {
                    relisting.get_or_insert_default().push(policy.clone());
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                let mut delivered = content.relisting.take().unwrap_or_default();
                // A restarted relist may have delivered a policy twice: the later version
                // stands (the sort is stable, so the last delivered comes last of its name).
                delivered.sort_by(|a, b| {
                    (&a.metadata.namespace, &a.metadata.name)
                        .cmp(&(&b.metadata.namespace, &b.metadata.name))
                });
                delivered.reverse();
                // After the reverse the later delivered comes first and is kept; `dedup_by`
                // removes its first argument, the earlier delivered.
                delivered.dedup_by(|earlier, later| {
                    (&earlier.metadata.namespace, &earlier.metadata.name)
                        == (&later.metadata.namespace, &later.metadata.name)
                });
                delivered.reverse();
                let list = content.list;
                let mut changes: Vec<Change> = delivered
                    .into_iter()
                    .map(|policy| Change::Policy(Box::new(policy)))
                    .collect();
                changes.extend(sweep(&mut content.namespaces, list));
                drop(content);
                self.inner.synced.send_replace(true);
                changes
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
            if let Held::At(Some(version)) = self.held(namespace, name) {
                versions.push(version.to_string());
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
    pub fn track(&self, namespace: &str, names: &[String]) -> Tracked<T> {
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

    /// The policies of one namespace, by name.
    #[must_use]
    pub fn in_namespace(&self, namespace: &str) -> Vec<T::Read> {
        self.inner
            .content
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .namespaces
            .get(namespace)
            .map(|policies| {
                policies
                    .iter()
                    .filter_map(|cached| cached.kept.read(&cached.name))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One policy.
    #[must_use]
    pub fn get(&self, namespace: &str, name: &str) -> Option<T::Read> {
        let content = self
            .inner
            .content
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let cached = find(&content.namespaces, namespace, name)?;
        cached.kept.read(&cached.name)
    }

    /// Whether the cache holds `namespace/name` at `version`, or, for `None`, does not hold it.
    #[must_use]
    pub fn holds(&self, namespace: &str, name: &str, version: Option<&str>) -> bool {
        match (self.held(namespace, name), version) {
            (Held::At(held), Some(version)) => same_version(held.as_ref(), Some(version)),
            (Held::Absent, None) => true,
            _ => false,
        }
    }

    /// Whether the cache holds `namespace/name`, and at which resourceVersion.
    fn held(&self, namespace: &str, name: &str) -> Held {
        let content = self
            .inner
            .content
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        find(&content.namespaces, namespace, name).map_or(Held::Absent, |cached| {
            Held::At(cached.resource_version.clone())
        })
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
            .map(Vec::len)
            .sum()
    }

    /// Whether the cache holds no policy.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wait until `done`, which reads only `namespace`, holds (checked at once and after every
    /// change of the namespace's policies, or relist), at most until `deadline`. Returns whether
    /// it holds.
    pub async fn wait_until_in(
        &self,
        namespace: &str,
        deadline: tokio::time::Instant,
        mut done: impl FnMut(&PolicyCache<T>) -> bool,
    ) -> bool {
        self.inner
            .changes
            .wait_until_in(namespace, deadline, || done(self))
            .await
    }

    /// Wait until the first complete list is in.
    pub async fn wait_synced(&self) {
        let mut synced = self.inner.synced.subscribe();
        // The sender lives as long as `self`: this cannot fail.
        let _ = synced.wait_for(|synced| *synced).await;
    }
}

/// Policies whose delivered resourceVersions the cache records (see [`PolicyCache::track`]).
pub struct Tracked<T> {
    cache: PolicyCache<T>,
    keys: Vec<(String, String)>,
}

impl<T> Tracked<T> {
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

impl<T> Drop for Tracked<T> {
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

    #[test]
    fn a_version_is_the_string_it_was_made_of() {
        for version in [
            "0",
            "7",
            "18446744073709551615",
            "07",
            "+7",
            "",
            "abc",
            "18446744073709551616",
        ] {
            let kept = Version::of(version);
            assert_eq!(kept.to_string(), version);
            assert!(kept.is(version), "{version}");
        }
        assert_eq!(Version::of("7"), Version::Number(7));
        assert!(!Version::of("7").is("07"));
        assert!(!Version::of("07").is("7"));
        assert!(!Version::of("7").is("+7"));
        assert!(!Version::of("7").is("8"));
        assert!(!Version::of("abc").is("abd"));
    }

    fn policy(namespace: &str, name: &str) -> NetworkPolicy {
        let mut policy = NetworkPolicy::default();
        policy.metadata.namespace = Some(namespace.to_owned());
        policy.metadata.name = Some(name.to_owned());
        policy
    }

    fn names(cache: &PolicyCache<Whole>, namespace: &str) -> Vec<String> {
        cache
            .in_namespace(namespace)
            .iter()
            .filter_map(|policy| policy.metadata.name.clone())
            .collect()
    }

    fn shared(cache: &PolicyCache<Whole>, namespace: &str, name: &str) -> Option<Arc<str>> {
        let content = cache.inner.content.read().expect("lock");
        find(&content.namespaces, namespace, name).map(|cached| cached.kept.0.clone())
    }

    fn versioned(namespace: &str, name: &str, version: &str) -> NetworkPolicy {
        let mut policy = policy(namespace, name);
        policy.metadata.resource_version = Some(version.to_owned());
        policy
    }

    /// Events land in their namespace; a relist replaces what changed as it comes and removes at
    /// its end what it did not list, so a policy deleted while the watch was down does not linger
    /// (a lingering one would never be restored).
    #[tokio::test]
    async fn applies_events_and_relists() {
        let cache = PolicyCache::<Whole>::default();
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(policy("a", "deny")));
        assert!(
            !*cache.inner.synced.borrow(),
            "readers wait until the first list is complete"
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
        let kept = shared(&cache, "b", "deny").expect("relisted");
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(policy("b", "deny")));
        assert!(cache.apply(&watcher::Event::InitDone).is_empty());
        assert!(
            Arc::ptr_eq(&kept, &shared(&cache, "b", "deny").expect("relisted")),
            "an unchanged policy is shared, not copied, by a relist"
        );
        assert!(names(&cache, "a").is_empty());
        assert_eq!(cache.len(), 1);
    }

    /// A reconcile waiting for its namespace is woken by that namespace's events and by a
    /// relist's end, not by the events of other namespaces; the last waiter of a namespace,
    /// finished or dropped, leaves nothing behind.
    #[tokio::test]
    async fn a_wait_for_one_namespace_is_woken_by_its_events_only() {
        let cache = PolicyCache::<Facts>::default();
        let checks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let waiting = {
            let (cache, checks) = (cache.clone(), checks.clone());
            tokio::spawn(async move {
                cache
                    .wait_until_in("a", deadline, |cache| {
                        checks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        cache.get("a", "deny").is_some()
                    })
                    .await
            })
        };
        let checked = || checks.load(std::sync::atomic::Ordering::SeqCst);
        let settle = || tokio::time::sleep(std::time::Duration::from_millis(50));
        settle().await;
        assert_eq!(checked(), 1, "checked once at the start");
        for index in 0..20 {
            cache.apply(&watcher::Event::Apply(policy("b", &format!("p{index}"))));
        }
        settle().await;
        assert_eq!(checked(), 1, "another namespace's events do not wake it");
        cache.apply(&watcher::Event::InitDone);
        settle().await;
        assert_eq!(checked(), 2, "a relist's end wakes it");
        cache.apply(&watcher::Event::Apply(policy("a", "deny")));
        assert!(waiting.await.expect("the wait ends"));
        assert_eq!(checked(), 3);
        assert!(cache.inner.changes.namespaces().is_empty());

        let dropped = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .wait_until_in("c", deadline, |cache| cache.get("c", "deny").is_some())
                    .await
            })
        };
        settle().await;
        assert_eq!(cache.inner.changes.namespaces().len(), 1);
        dropped.abort();
        assert!(dropped.await.is_err(), "aborted");
        assert!(
            cache.inner.changes.namespaces().is_empty(),
            "a dropped wait leaves nothing behind"
        );
    }

    /// A write the watch delivered counts as seen even when someone else's write overtook it
    /// before the reconcile looked, and whether its event came before or after the answer.
    #[test]
    fn a_delivered_write_is_seen_though_overtaken() {
        let cache = PolicyCache::<Facts>::default();
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

    /// A relist broken off and restarted still reports what its first attempt found changed:
    /// the cache took those versions in, so the second list delivers them as unchanged, and
    /// without the first attempt's findings the change would never be reconciled.
    #[test]
    fn a_restarted_relist_reports_what_the_broken_one_found() {
        let cache = PolicyCache::<Facts>::default();
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(versioned("a", "deny", "1")));
        cache.apply(&watcher::Event::InitApply(versioned("b", "deny", "2")));
        cache.apply(&watcher::Event::InitDone);

        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(versioned("a", "deny", "5")));
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(versioned("a", "deny", "5")));
        cache.apply(&watcher::Event::InitApply(versioned("b", "deny", "6")));
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(versioned("a", "deny", "5")));
        cache.apply(&watcher::Event::InitApply(versioned("b", "deny", "7")));
        let changes = cache.apply(&watcher::Event::InitDone);
        let versions: Vec<String> = changes
            .iter()
            .map(|change| match change {
                Change::Policy(policy) => format!(
                    "{}/{}@{}",
                    change.namespace(),
                    policy.metadata.name.as_deref().unwrap_or_default(),
                    policy
                        .metadata
                        .resource_version
                        .as_deref()
                        .unwrap_or_default()
                ),
                Change::Gone { namespace } => format!("gone from {namespace}"),
            })
            .collect();
        assert_eq!(versions, ["a/deny@5", "b/deny@7"], "each once, the latest");
        assert!(cache.holds("b", "deny", Some("7")));
    }

    /// After a relist, exactly what differs is reported: a policy changed while the watch was
    /// down (whole, as the list delivered it), a new one, and one gone (by its namespace only:
    /// the cache keeps no object to report). An unchanged policy reports nothing.
    #[test]
    fn a_relist_reports_what_changed_meanwhile() {
        let cache = PolicyCache::<Facts>::default();
        cache.apply(&watcher::Event::Init);
        for policy in [
            versioned("a", "deny", "1"),
            versioned("a", "dns", "2"),
            versioned("b", "deny", "3"),
        ] {
            cache.apply(&watcher::Event::InitApply(policy));
        }
        assert_eq!(cache.apply(&watcher::Event::InitDone).len(), 3);
        cache.apply(&watcher::Event::Init);
        for policy in [
            versioned("a", "deny", "1"),
            versioned("a", "dns", "7"),
            versioned("c", "deny", "8"),
        ] {
            cache.apply(&watcher::Event::InitApply(policy));
        }
        let changes = cache.apply(&watcher::Event::InitDone);
        let described: Vec<String> = changes
            .iter()
            .map(|change| match change {
                Change::Policy(policy) => format!(
                    "changed {}/{}",
                    change.namespace(),
                    policy.metadata.name.as_deref().unwrap_or_default()
                ),
                Change::Gone { namespace } => format!("gone from {namespace}"),
            })
            .collect();
        assert_eq!(
            described,
            ["changed a/dns", "changed c/deny", "gone from b"]
        );
        let names: Vec<String> = cache
            .in_namespace("a")
            .into_iter()
            .map(|observed| observed.name)
            .collect();
        assert_eq!(names, ["deny", "dns"], "sorted by name");
        assert!(cache.holds("a", "dns", Some("7")));
        assert!(cache.holds("b", "deny", None));
    }
}
