//! Events, published by a task of their own, as client-go's event broadcaster does: a reconcile
//! queues an Event and goes on, it never waits for the API server to store one. Events are for
//! people; the status is the contract, and restoring a deleted policy must not wait behind the
//! Event that reports it.
//!
//! ```text
//! reconcile --try_send--> [ queue: QUEUE_CAPACITY ] --> publisher task --Recorder--> events.k8s.io
//!                '-- full: dropped, counted in netfence_events_dropped_total
//! ```
//!
//! [`Recorder`] folds a repeated Event into a series, as client-go's event correlator does: the
//! same reason *and note* about the same object within [`SERIES_WINDOW`] raise the count of the
//! first one. kube's own `Recorder` leaves the note out of that key, so a second drift correction
//! of another policy showed the first one's note with a count of 2.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use futures::StreamExt;
use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1 as events},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::events::{Event, EventType, Reporter},
};
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// How many Events may wait to be published before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 4096;

/// How many Events are published at once.
const PUBLISHING: usize = 4;

/// Where reconciles queue Events.
pub struct EventQueue {
    sender: mpsc::Sender<(Event, ObjectReference)>,
    metrics: Arc<Metrics>,
}

/// The task that publishes queued Events; it ends once every [`EventQueue`] is dropped and the
/// queue is drained.
pub struct Publisher {
    receiver: mpsc::Receiver<(Event, ObjectReference)>,
    recorder: Recorder,
}

/// A queue and its publisher.
#[must_use]
pub fn queue(recorder: Recorder, metrics: Arc<Metrics>) -> (EventQueue, Publisher) {
    let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
    (
        EventQueue { sender, metrics },
        Publisher { receiver, recorder },
    )
}

impl EventQueue {
    /// Queue an Event about `reference`; when the queue is full it is dropped and counted.
    pub fn publish(&self, event: Event, reference: ObjectReference) {
        if let Err(error) = self.sender.try_send((event, reference)) {
            self.metrics.events_dropped.inc();
            let (event, _) = error.into_inner();
            tracing::debug!(reason = %event.reason, "Event queue full: Event dropped");
        }
    }
}

/// How long a published Event can still be continued as a series (kube's and client-go's value).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// What makes two Events the same occurrence: everything a person reads in them.
#[derive(Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    regarding: (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
    related: Option<(Option<String>, Option<String>, Option<String>)>,
    type_: &'static str,
    reason: String,
    action: String,
    note: Option<String>,
}

/// Publishes `events.k8s.io/v1` Events, folding repeats into a series (see the module's doc).
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    published: Mutex<HashMap<SeriesKey, events::Event>>,
}

impl Recorder {
    /// A recorder that reports as `reporter`.
    #[must_use]
    pub fn new(client: Client, reporter: Reporter) -> Recorder {
        Recorder {
            client,
            reporter,
            published: Mutex::new(HashMap::new()),
        }
    }

    /// Create the Event about `regarding`, or raise the count of the same one published within
    /// the window.
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let type_ = match event.type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let key = SeriesKey {
            regarding: (
                regarding.uid.clone(),
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
            ),
            related: event.secondary.as_ref().map(|related| {
                (
                    related.kind.clone(),
                    related.namespace.clone(),
                    related.name.clone(),
                )
            }),
            type_,
            reason: event.reason.clone(),
            action: event.action.clone(),
            note: event.note.clone(),
        };
        let earlier = {
            let mut published = self
                .published
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            published
                .retain(|_, earlier| last_seen(earlier).is_some_and(|at| at + SERIES_WINDOW > now));
            published.get(&key).cloned()
        };
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<events::Event> = Api::namespaced(self.client.clone(), namespace);
        let continued = match earlier {
            Some(mut earlier) => {
                earlier.series = Some(events::EventSeries {
                    count: earlier.series.as_ref().map_or(2, |series| series.count + 1),
                    last_observed_time: MicroTime(now),
                });
                let name = earlier.metadata.name.clone().unwrap_or_default();
                let patch = serde_json::json!({"series": earlier.series});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Some(earlier),
                    // Deleted meanwhile (by someone, or by the API server's Event TTL): the
                    // occurrence starts a new Event.
                    Err(kube::Error::Api(status)) if status.code == 404 => None,
                    Err(error) => return Err(error),
                }
            }
            None => None,
        };
        let stored = if let Some(continued) = continued {
            continued
        } else {
            let created = self.new_event(event, regarding, type_, now);
            api.create(&PostParams::default(), &created).await?;
            created
        };
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, stored);
        Ok(())
    }
}

impl Recorder {
    /// The first Event of a series, named as kube and client-go name them.
    fn new_event(
        &self,
        event: &Event,
        regarding: &ObjectReference,
        type_: &str,
        now: Timestamp,
    ) -> events::Event {
        events::Event {
            metadata: ObjectMeta {
                namespace: Some(
                    regarding
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                ),
                name: Some(format!(
                    "{}.{:x}",
                    regarding
                        .name
                        .as_deref()
                        .unwrap_or(&self.reporter.controller),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(type_.to_owned()),
            reason: Some(event.reason.clone()),
            action: Some(event.action.clone()),
            note: event.note.clone(),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..events::Event::default()
        }
    }
}

/// When an Event last happened: its series' last observation, else its time.
fn last_seen(event: &events::Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .map(|series| series.last_observed_time.0)
        .or_else(|| event.event_time.as_ref().map(|time| time.0))
}

impl Publisher {
    /// Publish until the queue closes. A failure to publish is logged, never retried.
    pub async fn run(self) {
        let recorder = self.recorder;
        let events = futures::stream::unfold(self.receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        events
            .for_each_concurrent(PUBLISHING, |(event, reference)| {
                let recorder = &recorder;
                async move {
                    if let Err(error) = recorder.publish(&event, &reference).await {
                        tracing::warn!(%error, reason = %event.reason, "failed to publish an Event");
                    }
                }
            })
            .await;
    }
}
