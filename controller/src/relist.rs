//! A relist as the changes it found.
//!
//! kube's reflector replaces its cache at the end of a relist with a second copy it filled
//! meanwhile, and the stream after it yields every listed object again: at 10,000 namespaces
//! each relist (a 410 Gone, a restarted API server) doubled every cache for its duration and
//! reconciled every resource, changed or not. After the first list, [`as_changes`] turns a
//! relist into what changed while the watch was down, compared with the cache by
//! resourceVersion: an `Apply` for each object new or changed, a `Delete` for each the list no
//! longer has; an unchanged object yields nothing.
//!
//! ```text
//! Init, InitApply(a@7), InitApply(b@9), InitDone     cache: a@7, b@8, c@3
//!   --> Apply(b@9), Delete(c)
//! ```
//!
//! The first list passes unchanged: the cache is empty, and its end marks the cache ready.

use std::collections::HashSet;

use futures::{Stream, TryStreamExt};
use kube::{
    Resource,
    runtime::{
        reflector::{ObjectRef, Store},
        watcher,
    },
};

/// Who an object is: its namespace and name.
type Key = (Option<String>, String);

fn key_of(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (
        metadata.namespace.clone(),
        metadata.name.clone().unwrap_or_default(),
    )
}

/// The events that turn the cache `store` (of `S`, what is kept of each `K`) into what each event
/// of `K` says, a relist after the first as its changes. `deleted` makes the object of a `Delete`
/// from what the cache kept of it; `listed` is called at the end of every list.
pub(crate) fn as_changes<K, S>(
    store: Store<S>,
    deleted: impl Fn(&S) -> K + Send + 'static,
    listed: impl Fn() + Send + 'static,
) -> impl FnMut(watcher::Event<K>) -> Vec<watcher::Event<K>> + Send + 'static
where
    K: Resource + Send + 'static,
    S: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let mut first_done = false;
    // During a relist after the first: who it has listed so far.
    let mut relisting: Option<HashSet<Key>> = None;
    move |event| match event {
        watcher::Event::Init if first_done => {
            relisting = Some(HashSet::new());
            Vec::new()
        }
        watcher::Event::InitApply(object) if first_done => {
            let key = key_of(object.meta());
            let reference = ObjectRef::<S>::new(&key.1).within_opt(key.0.as_deref());
            let unchanged = store.get(&reference).is_some_and(|kept| {
                kept.meta().resource_version.is_some()
                    && kept.meta().resource_version == object.meta().resource_version
            });
            relisting.get_or_insert_default().insert(key);
            if unchanged {
                Vec::new()
            } else {
                vec![watcher::Event::Apply(object)]
            }
        }
        watcher::Event::InitDone if first_done => {
            let listed_now = relisting.take().unwrap_or_default();
            let mut gone: Vec<watcher::Event<K>> = store
                .state()
                .iter()
                .filter(|kept| !listed_now.contains(&key_of(kept.meta())))
                .map(|kept| watcher::Event::Delete(deleted(kept)))
                .collect();
            gone.sort_by_key(|event| match event {
                watcher::Event::Delete(object) => key_of(object.meta()),
                _ => (None, String::new()),
            });
            listed();
            gone
        }
        watcher::Event::InitDone => {
            first_done = true;
            listed();
            vec![watcher::Event::InitDone]
        }
        other => vec![other],
    }
}

/// [`as_changes`] on a watch stream.
pub(crate) trait RelistAsChanges<K>:
    Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Sized
{
    /// This stream, every relist after the first as the changes it found against `store`
    /// (see [`as_changes`]). `listed` is called at the end of each list once whoever reads
    /// this stream has taken every change of the list: it asks for the next event only then.
    fn relist_as_changes<S>(
        self,
        store: Store<S>,
        deleted: impl Fn(&S) -> K + Send + 'static,
        listed: impl Fn() + Send + 'static,
    ) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>
    where
        K: Resource + Send + 'static,
        S: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut changes = as_changes(store, deleted, {
            let ended = ended.clone();
            move || ended.store(true, std::sync::atomic::Ordering::Relaxed)
        });
        self.map_ok(move |event| {
            let mut out: Vec<Option<watcher::Event<K>>> =
                changes(event).into_iter().map(Some).collect();
            if ended.swap(false, std::sync::atomic::Ordering::Relaxed) {
                out.push(None); // the end of a list, counted when reached
            }
            futures::stream::iter(out.into_iter().map(Ok))
        })
        .try_flatten()
        .try_filter_map(move |event| {
            if event.is_none() {
                listed();
            }
            std::future::ready(Ok(event))
        })
    }
}

impl<K, St> RelistAsChanges<K> for St where
    St: Stream<Item = Result<watcher::Event<K>, watcher::Error>>
{
}

/// `ObjectRef::within` for an optional namespace.
trait WithinOpt {
    fn within_opt(self, namespace: Option<&str>) -> Self;
}

impl<S: Resource<DynamicType = ()>> WithinOpt for ObjectRef<S> {
    fn within_opt(self, namespace: Option<&str>) -> Self {
        match namespace {
            Some(namespace) => self.within(namespace),
            None => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::runtime::reflector;

    use super::*;

    fn namespace(name: &str, version: &str) -> Namespace {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": name, "resourceVersion": version}}),
        )
        .expect("a namespace")
    }

    fn names(events: &[watcher::Event<Namespace>]) -> Vec<String> {
        events
            .iter()
            .map(|event| match event {
                watcher::Event::Apply(object) => format!(
                    "apply {}",
                    object.metadata.name.as_deref().unwrap_or_default()
                ),
                watcher::Event::Delete(object) => format!(
                    "delete {}",
                    object.metadata.name.as_deref().unwrap_or_default()
                ),
                watcher::Event::Init => "init".to_owned(),
                watcher::Event::InitApply(object) => format!(
                    "listed {}",
                    object.metadata.name.as_deref().unwrap_or_default()
                ),
                watcher::Event::InitDone => "done".to_owned(),
            })
            .collect()
    }

    /// A list counts as done only once the reader has taken its last change (it asks for the
    /// next event): a test that waits for the count and then for idle reconciles would
    /// otherwise check before the relist's changes were scheduled.
    #[tokio::test]
    async fn a_list_is_counted_once_its_changes_are_taken() {
        use futures::StreamExt;
        let (store, _writer) = reflector::store::<Namespace>();
        let lists = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = lists.clone();
        let events = futures::stream::iter(
            [
                watcher::Event::Init,
                watcher::Event::InitApply(namespace("a", "1")),
                watcher::Event::InitDone,
            ]
            .map(Ok::<_, watcher::Error>),
        );
        let mut changes =
            std::pin::pin!(events.relist_as_changes(store, Clone::clone, move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }));
        let count = || lists.load(std::sync::atomic::Ordering::Relaxed);
        for _ in 0..3 {
            assert!(changes.next().await.is_some());
            assert_eq!(count(), 0, "counted before the reader took the list's end");
        }
        assert!(changes.next().await.is_none());
        assert_eq!(count(), 1);
    }

    /// A later relist is counted after its changes (its Deletes come at its end), on a watch
    /// that stays open: the count comes with the poll after the last change, not at the
    /// stream's end.
    #[tokio::test]
    async fn a_relist_is_counted_after_its_last_change_on_an_open_watch() {
        use futures::StreamExt;
        let (store, mut writer) = reflector::store::<Namespace>();
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(namespace("a", "1")));
        writer.apply_watcher_event(&watcher::Event::InitApply(namespace("b", "2")));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let lists = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = lists.clone();
        let events = futures::stream::iter(
            [
                watcher::Event::Init,
                watcher::Event::InitApply(namespace("a", "1")),
                watcher::Event::InitApply(namespace("b", "2")),
                watcher::Event::InitDone,
                watcher::Event::Init,
                watcher::Event::InitApply(namespace("a", "5")),
                watcher::Event::InitDone,
            ]
            .map(Ok::<_, watcher::Error>),
        )
        .chain(futures::stream::pending());
        let mut changes =
            std::pin::pin!(events.relist_as_changes(store, Clone::clone, move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }));
        let count = || lists.load(std::sync::atomic::Ordering::Relaxed);
        // The first list passes whole: Init, a, b, InitDone.
        for _ in 0..4 {
            assert!(changes.next().await.is_some());
        }
        assert_eq!(count(), 0);
        // The relist: a changed, b gone.
        let mut later = Vec::new();
        for _ in 0..2 {
            later.push(changes.next().await.and_then(Result::ok));
            assert_eq!(
                count(),
                1,
                "the relist is counted only after its last change"
            );
        }
        assert!(matches!(later[0], Some(watcher::Event::Apply(_))));
        assert!(matches!(later[1], Some(watcher::Event::Delete(_))));
        assert!(futures::FutureExt::now_or_never(changes.next()).is_none());
        assert_eq!(count(), 2, "counted on the poll after its last change");
    }

    /// The first list passes as it is (its end makes the cache ready); a later relist yields
    /// only what changed while the watch was down, and the cache ends as the list says.
    ///
    /// If this fails, a relist doubles the caches again (kube's reflector fills a second copy)
    /// and reconciles every resource, or an object changed or deleted during a watch outage is
    /// missed.
    #[test]
    fn a_relist_after_the_first_yields_only_its_changes() {
        let (store, mut writer) = reflector::store::<Namespace>();
        let lists = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = lists.clone();
        let mut changes = as_changes(store.clone(), Clone::clone, move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        let mut feed = |event: watcher::Event<Namespace>| {
            let out = changes(event);
            for event in &out {
                writer.apply_watcher_event(event);
            }
            names(&out)
        };
        assert_eq!(feed(watcher::Event::Init), ["init"]);
        assert_eq!(
            feed(watcher::Event::InitApply(namespace("a", "7"))),
            ["listed a"]
        );
        assert_eq!(
            feed(watcher::Event::InitApply(namespace("b", "8"))),
            ["listed b"]
        );
        assert_eq!(
            feed(watcher::Event::InitApply(namespace("c", "3"))),
            ["listed c"]
        );
        assert_eq!(feed(watcher::Event::InitDone), ["done"]);
        assert_eq!(store.state().len(), 3);
        assert_eq!(
            feed(watcher::Event::Apply(namespace("d", "10"))),
            ["apply d"]
        );

        // The relist: a unchanged, b changed, c and d gone, e new.
        assert!(feed(watcher::Event::Init).is_empty());
        assert!(feed(watcher::Event::InitApply(namespace("a", "7"))).is_empty());
        assert_eq!(
            feed(watcher::Event::InitApply(namespace("b", "9"))),
            ["apply b"]
        );
        assert_eq!(
            feed(watcher::Event::InitApply(namespace("e", "11"))),
            ["apply e"]
        );
        assert_eq!(feed(watcher::Event::InitDone), ["delete c", "delete d"]);
        assert_eq!(lists.load(std::sync::atomic::Ordering::Relaxed), 2);
        let mut kept: Vec<(String, String)> = store
            .state()
            .iter()
            .map(|namespace| {
                (
                    namespace.metadata.name.clone().unwrap_or_default(),
                    namespace
                        .metadata
                        .resource_version
                        .clone()
                        .unwrap_or_default(),
                )
            })
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            [
                ("a".into(), "7".into()),
                ("b".into(), "9".into()),
                ("e".into(), "11".into())
            ]
        );
    }
}
