//! What both controllers (NamespaceIsolation, IsolationTemplate) do the same way, written once:
//! the failure count behind each resource's exponential backoff, the `error_policy` kube's
//! `Controller::run` calls, and queued Events. The reconcile steps of each controller stay in its
//! own module; the decisions they take are `netfence_core`'s pure functions.

use std::{
    collections::HashMap,
    fmt::Display,
    hash::Hash,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::{
    controller::Action,
    events::{Event, EventType},
};

use crate::{backoff, cache::Changes, events::EventQueue, metrics::Metrics};

/// A reconcile error: what it says, and the `reason` label of the failure counter.
pub trait ReconcileError: Display {
    /// The label of `netfence_reconcile_failures_total`.
    fn metric_label(&self) -> &'static str;
}

/// Consecutive failures per resource: raised by a failed reconcile, cleared by a good one, read
/// by [`Failures::error_policy`] (`error_policy` is synchronous, so the count is kept here).
pub struct Failures<Key> {
    counts: Mutex<HashMap<Key, u32>>,
}

impl<Key> Default for Failures<Key> {
    fn default() -> Self {
        Failures {
            counts: Mutex::new(HashMap::new()),
        }
    }
}

impl<Key: Eq + Hash + Clone + Display> Failures<Key> {
    /// Count the result of one reconcile of `key` (a failure also in the metrics).
    pub fn record<T, E: ReconcileError>(
        &self,
        key: &Key,
        result: &Result<T, E>,
        metrics: &Metrics,
    ) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(_) => {
                counts.remove(key);
            }
            Err(error) => {
                metrics.failed(error.metric_label());
                *counts.entry(key.clone()).or_insert(0) += 1;
            }
        }
    }

    /// How long `key` waits before its next try: [`backoff`] of its consecutive failures.
    pub fn retry_in(&self, key: &Key) -> Duration {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        backoff(counts.get(key).copied().unwrap_or(1))
    }

    /// kube's `error_policy`: log the failure and retry with this resource's own backoff.
    pub fn error_policy(&self, key: &Key, error: &impl Display) -> Action {
        let delay = self.retry_in(key);
        tracing::warn!(resource = %key, %error, retry_in = ?delay, "reconcile failed");
        Action::requeue(delay)
    }
}

/// The longest a reconcile waits for a cache to see its own writes; then it goes on (the next
/// event corrects anything).
pub const CACHE_WAIT: Duration = Duration::from_secs(5);

/// One write a reconcile made, as its cache should come to show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wrote {
    /// The resourceVersion the write returned; `None` for a deletion.
    pub version: Option<String>,
    /// The resourceVersion the cache held before the write; `None` when it held nothing.
    pub before: Option<String>,
}

impl Wrote {
    /// Whether a cache that holds the object at `cached` (`None`: holds none) shows this write or
    /// a later one: a deletion when it holds none; otherwise the very version written, or any
    /// version other than the one read before (the object moved past it: another writer's
    /// change landing right after this one must end the wait at once). resourceVersions are
    /// opaque: compared for equality only, never as numbers.
    #[must_use]
    pub fn shown_by(&self, cached: Option<Option<&str>>) -> bool {
        match (&self.version, cached) {
            (None, cached) => cached.is_none(),
            (Some(_), None) => false,
            (Some(version), Some(cached)) => {
                cached == Some(version.as_str()) || cached != self.before.as_deref()
            }
        }
    }
}

/// Wait until `store` shows every write (see [`Wrote::shown_by`]), woken by `changes` (signalled
/// by the watch after each event it applied: no polling), at most [`CACHE_WAIT`]. The status
/// write that ends a reconcile triggers another; with a stale cache that one would take fresh
/// objects for missing ones (or an old status for the current one) and write them again.
pub async fn wait_until_shown<K>(
    store: &kube::runtime::reflector::Store<K>,
    changes: &Changes,
    writes: &[(kube::runtime::reflector::ObjectRef<K>, Wrote)],
) where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    if writes.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + CACHE_WAIT;
    let shown = changes
        .wait_until(deadline, || {
            writes.iter().all(|(reference, wrote)| {
                let cached = store.get(reference);
                wrote.shown_by(
                    cached
                        .as_ref()
                        .map(|object| object.meta().resource_version.as_deref()),
                )
            })
        })
        .await;
    if !shown {
        tracing::debug!("the cache did not catch up with this reconcile's writes");
    }
}

/// Queue an Event about `regarding` (see [`crate::events`]): a reconcile never waits for one.
/// Events are for people, the status is the contract.
pub fn event(
    events: &EventQueue,
    regarding: ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
    related: Option<ObjectReference>,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: related,
    };
    events.publish(event, regarding);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failed;

    impl Display for Failed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failed")
        }
    }

    impl ReconcileError for Failed {
        fn metric_label(&self) -> &'static str {
            "test"
        }
    }

    /// If this fails, a reconcile either goes on with a cache that has not seen its write (and
    /// the next one writes it again), or waits out CACHE_WAIT when someone else's write landed
    /// right after its own.
    #[test]
    fn a_write_is_shown_by_its_version_or_any_later_one() {
        let update = Wrote {
            version: Some("20".into()),
            before: Some("10".into()),
        };
        assert!(update.shown_by(Some(Some("20"))));
        assert!(
            update.shown_by(Some(Some("abc"))),
            "opaque: moved past what was read"
        );
        assert!(
            !update.shown_by(Some(Some("10"))),
            "still what was read before"
        );
        assert!(!update.shown_by(None));
        let create = Wrote {
            version: Some("5".into()),
            before: None,
        };
        assert!(create.shown_by(Some(Some("5"))));
        assert!(!create.shown_by(None));
        let delete = Wrote {
            version: None,
            before: Some("7".into()),
        };
        assert!(delete.shown_by(None));
        assert!(!delete.shown_by(Some(Some("7"))));
    }

    /// If this fails, a resource that keeps failing is retried every second (or never backs
    /// off again after one success), and the failure counter misses it.
    #[test]
    fn failures_back_off_per_resource_and_a_success_resets() {
        let failures = Failures::<String>::default();
        let metrics = Metrics::default();
        let key = "shop/shop".to_owned();
        let other = "web/web".to_owned();
        for _ in 0..3 {
            failures.record::<(), _>(&key, &Err(Failed), &metrics);
        }
        assert_eq!(failures.retry_in(&key), Duration::from_secs(4));
        assert_eq!(failures.retry_in(&other), Duration::from_secs(1));
        failures.record::<(), Failed>(&key, &Ok(()), &metrics);
        assert_eq!(failures.retry_in(&key), Duration::from_secs(1));
        assert_eq!(
            failures.error_policy(&key, &Failed),
            Action::requeue(Duration::from_secs(1))
        );
    }
}
