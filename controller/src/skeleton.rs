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

use crate::{backoff, events::EventQueue, metrics::Metrics};

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
