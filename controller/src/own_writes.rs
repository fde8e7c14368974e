//! The writes this controller made itself, so that the watch event of its own write triggers no
//! reconcile: the reconcile that wrote an object has already made it right, and a reconcile
//! per write doubled the reconciles of convergence and drift.
//!
//! ```text
//! writer:  begin(object) --write--> answer --> Writing::done(version)
//!                                                 |  an event held meanwhile: its own (dropped),
//!                                                 |  or someone else's (released: reconciled)
//! watch:   event --is_own--> the version written last: own, no trigger
//!                            a write of it in flight: held until that write's answer
//!                            otherwise: not own, triggers
//! ```
//!
//! The watch may deliver a write before the write's answer reaches the writer (kube-apiserver
//! sends both at once): without holding such an event, nearly every resource was reconciled a
//! second time at convergence, for nothing. A held event is never lost: a write that fails, or
//! is dropped unanswered, releases what it held, and so does an answer with another version.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};

/// Kind, namespace and name of a written object.
type Key = (String, String, String);

fn key<K: kube::Resource<DynamicType = ()>>(namespace: &str, name: &str) -> Key {
    (
        K::kind(&()).into_owned(),
        namespace.to_owned(),
        name.to_owned(),
    )
}

/// The writes of one kind of trigger. `T` is what a held event would have triggered; it is
/// sent to the receiver [`OwnWrites::new`] returns when the event turns out not to be this
/// controller's. Cloning shares it.
#[derive(Debug)]
pub struct OwnWrites<T> {
    state: Arc<Mutex<State<T>>>,
    released: UnboundedSender<T>,
}

impl<T> Clone for OwnWrites<T> {
    fn clone(&self) -> Self {
        OwnWrites {
            state: self.state.clone(),
            released: self.released.clone(),
        }
    }
}

#[derive(Debug)]
struct State<T> {
    /// The version of each object this controller wrote last, until its event is seen.
    versions: HashMap<Key, String>,
    /// Objects with writes in flight, and the events held for them.
    in_flight: HashMap<Key, InFlight<T>>,
}

#[derive(Debug)]
struct InFlight<T> {
    writes: usize,
    /// Each held event's version, and what it would have triggered.
    held: Vec<(String, T)>,
}

impl<T> OwnWrites<T> {
    /// Empty, with the receiver of what held events trigger once they turn out to be someone
    /// else's (to be merged into the controller's triggers).
    #[must_use]
    pub fn new() -> (OwnWrites<T>, UnboundedReceiver<T>) {
        let (released, receiver) = unbounded();
        let writes = OwnWrites {
            state: Arc::new(Mutex::new(State {
                versions: HashMap::new(),
                in_flight: HashMap::new(),
            })),
            released,
        };
        (writes, receiver)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A write of `kind` `namespace/name` starts: its events are held until
    /// [`Writing::done`] (or the guard's drop) says whose they are.
    pub fn begin<K: kube::Resource<DynamicType = ()>>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Writing<T> {
        let key = key::<K>(namespace, name);
        self.state()
            .in_flight
            .entry(key.clone())
            .or_insert_with(|| InFlight {
                writes: 0,
                held: Vec::new(),
            })
            .writes += 1;
        Writing {
            writes: self.clone(),
            key: Some(key),
        }
    }

    /// Whether the event of `object` reports this controller's own write: the version it
    /// wrote last (forgotten once seen: only the first event of a write is its own), or, while
    /// a write of the object is in flight, held (`trigger` is kept, and released if the write's
    /// answer shows another version).
    pub fn is_own<K: kube::Resource<DynamicType = ()>>(
        &self,
        object: &K,
        trigger: impl FnOnce() -> T,
    ) -> bool {
        let meta = object.meta();
        let (Some(namespace), Some(name), Some(version)) =
            (&meta.namespace, &meta.name, &meta.resource_version)
        else {
            return false;
        };
        let key = key::<K>(namespace, name);
        let mut state = self.state();
        if state.versions.get(&key) == Some(version) {
            state.versions.remove(&key);
            return true;
        }
        match state.in_flight.get_mut(&key) {
            Some(in_flight) => {
                in_flight.held.push((version.clone(), trigger()));
                true
            }
            None => false,
        }
    }

    fn finish(&self, key: Key, own: Option<&str>) {
        let mut released = Vec::new();
        {
            let mut state = self.state();
            let mut seen = false;
            if let Some(in_flight) = state.in_flight.get_mut(&key) {
                in_flight.writes = in_flight.writes.saturating_sub(1);
                let held = std::mem::take(&mut in_flight.held);
                for (version, trigger) in held {
                    if own == Some(version.as_str()) {
                        seen = true;
                    } else if in_flight.writes == 0 {
                        released.push(trigger);
                    } else {
                        // Another write of it is still in flight: perhaps that one's.
                        in_flight.held.push((version, trigger));
                    }
                }
                if in_flight.writes == 0 {
                    state.in_flight.remove(&key);
                }
            }
            match own {
                Some(version) if !seen => {
                    state.versions.insert(key, version.to_owned());
                }
                _ => {}
            }
        }
        for trigger in released {
            // Closed only when the controller has stopped.
            let _closed = self.released.unbounded_send(trigger);
        }
    }
}

/// A write in flight (see [`OwnWrites::begin`]). Dropped without [`Writing::done`], the write
/// counts as failed: whatever it held is released.
#[must_use = "a write's answer decides whether the events held meanwhile were its own"]
pub struct Writing<T> {
    writes: OwnWrites<T>,
    key: Option<Key>,
}

impl<T> Writing<T> {
    /// The write was answered: `version` is the version it wrote when the event of that
    /// version must trigger no reconcile, `None` when it failed or its event must reconcile.
    pub fn done(mut self, version: Option<&str>) {
        if let Some(key) = self.key.take() {
            self.writes.finish(key, version);
        }
    }
}

impl<T> Drop for Writing<T> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.writes.finish(key, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use kube::api::ObjectMeta;

    use super::*;

    fn policy(version: &str) -> NetworkPolicy {
        NetworkPolicy {
            metadata: ObjectMeta {
                namespace: Some("team".into()),
                name: Some("app-web".into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            ..NetworkPolicy::default()
        }
    }

    fn released(receiver: &mut UnboundedReceiver<&'static str>) -> Vec<&'static str> {
        let mut out = Vec::new();
        while let Some(Some(trigger)) = futures::FutureExt::now_or_never(receiver.next()) {
            out.push(trigger);
        }
        out
    }

    #[test]
    fn the_event_after_the_answer_is_own_once() {
        let (writes, mut receiver) = OwnWrites::new();
        writes
            .begin::<NetworkPolicy>("team", "app-web")
            .done(Some("7"));
        assert!(writes.is_own(&policy("7"), || "reconcile"));
        // Only the first event of a write is its own.
        assert!(!writes.is_own(&policy("7"), || "reconcile"));
        assert!(!writes.is_own(&policy("8"), || "reconcile"));
        assert!(released(&mut receiver).is_empty());
    }

    #[test]
    fn the_event_before_the_answer_is_held_and_dropped_when_it_is_the_write() {
        let (writes, mut receiver) = OwnWrites::new();
        let writing = writes.begin::<NetworkPolicy>("team", "app-web");
        assert!(writes.is_own(&policy("7"), || "reconcile"));
        writing.done(Some("7"));
        assert!(released(&mut receiver).is_empty());
        // Seen already: a later event of the same version is not taken for a new write.
        assert!(!writes.is_own(&policy("7"), || "reconcile"));
    }

    #[test]
    fn someone_elses_event_while_writing_is_released_when_the_answer_comes() {
        let (writes, mut receiver) = OwnWrites::new();
        let writing = writes.begin::<NetworkPolicy>("team", "app-web");
        assert!(writes.is_own(&policy("6"), || "theirs"));
        assert!(released(&mut receiver).is_empty(), "held until the answer");
        writing.done(Some("7"));
        assert_eq!(released(&mut receiver), ["theirs"]);
        // The write's own event, later, is still its own.
        assert!(writes.is_own(&policy("7"), || "reconcile"));
    }

    #[test]
    fn a_failed_or_abandoned_write_releases_what_it_held() {
        let (writes, mut receiver) = OwnWrites::new();
        let writing = writes.begin::<NetworkPolicy>("team", "app-web");
        assert!(writes.is_own(&policy("6"), || "failed"));
        writing.done(None);
        assert_eq!(released(&mut receiver), ["failed"]);
        let writing = writes.begin::<NetworkPolicy>("team", "app-web");
        assert!(writes.is_own(&policy("9"), || "dropped"));
        drop(writing);
        assert_eq!(released(&mut receiver), ["dropped"]);
        // Nothing in flight any more: events trigger again.
        assert!(!writes.is_own(&policy("10"), || "reconcile"));
    }

    #[test]
    fn with_two_writes_in_flight_an_event_waits_for_both() {
        let (writes, mut receiver) = OwnWrites::new();
        let first = writes.begin::<NetworkPolicy>("team", "app-web");
        let second = writes.begin::<NetworkPolicy>("team", "app-web");
        assert!(writes.is_own(&policy("8"), || "second's"));
        assert!(writes.is_own(&policy("5"), || "theirs"));
        first.done(Some("7"));
        assert!(
            released(&mut receiver).is_empty(),
            "the second may still claim them"
        );
        second.done(Some("8"));
        assert_eq!(released(&mut receiver), ["theirs"]);
    }

    #[test]
    fn other_objects_are_not_held() {
        let (writes, _receiver) = OwnWrites::<&str>::new();
        let _writing = writes.begin::<NetworkPolicy>("team", "app-db");
        assert!(!writes.is_own(&policy("7"), || "reconcile"));
    }
}
