//! Events, published by a task of their own, as client-go's event broadcaster does: a reconcile
//! queues an Event and goes on, it never waits for the API server to store one. Events are for
//! people; the status is the contract, and restoring a deleted policy must not wait behind the
//! Event that reports it.
//!
//! ```text
//! reconcile --try_send--> [ queue: QUEUE_CAPACITY ] --> publisher task --Recorder--> events.k8s.io
//!                '-- full: dropped, counted in netfence_events_dropped_total
//! ```

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder};
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
