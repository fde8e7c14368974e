//! Events, published by tasks of their own, as client-go's event broadcaster does: a reconcile
//! queues an Event and goes on, it never waits for the API server to store one. Events are for
//! people; the status is the contract, and restoring a deleted policy must not wait behind the
//! Event that reports it.
//!
//! ```text
//! reconcile --try_send--> [ lane 1..LANES, by series ] --> one publisher per lane --Recorder--> events.k8s.io
//!                '-- full: dropped, counted in netfence_events_dropped_total
//! ```
//!
//! [`Recorder`] folds a repeated Event into a series: the same reason *and note* about the same
//! object within [`SERIES_WINDOW`] raise the count of the first one, as client-go's core/v1
//! recorder does with its message. kube's `Recorder` (like client-go's events.k8s.io recorder)
//! leaves the note out of that key, which fits Events whose note never varies, not netfence's,
//! whose notes name the policies: a drift correction of a second policy showed the first one's
//! note with a count of 2. Every occurrence of one series goes to the same lane, so two of them
//! are never published at once (two creates, or two patches of the same count).
//!
//! Events yield to enforcement: while a reconcile runs, a publisher holds its Events (each at
//! most [`MAX_DEFER`], and never more than [`HELD_BYTES_PER_LANE`] of them, kept compactly as
//! [`Held`]), so that a burst of restorations (a mass drift, a convergence) does not share the
//! API server with the Events reporting it.

use netfence_core::observed::Digest;
use std::{
    collections::{HashMap, VecDeque},
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex, PoisonError},
};

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
use tokio::sync::mpsc::{self, error::TryRecvError};

use crate::metrics::Metrics;

/// How many Events may wait to be published before new ones are dropped (over all lanes).
pub const QUEUE_CAPACITY: usize = 4096;

/// How many Events are published at once: one per lane.
const LANES: usize = 4;

/// The longest a publisher holds an Event while reconciles run: longer than a burst lasts. At
/// 5 s the Events of a longer burst (900 restorations on kube-apiserver: 6 s; 1,000 resources
/// converging there: 26-35 s) went out while it still ran, one more write per restoration or
/// resource; at 30 s the first Events of that convergence came due together before its last
/// resources were Ready. A quiet operator publishes at once.
const MAX_DEFER: std::time::Duration = std::time::Duration::from_secs(60);

/// How much a lane holds while reconciles run, by [`Held::size`]; past it, it publishes its
/// oldest Event as new ones come, and leaves new ones in its queue meanwhile (bounded by
/// [`QUEUE_CAPACITY`], as before). Compact, a drift correction takes about 300 bytes: 2 MiB
/// over the lanes holds some 7,000 of them (512 whole Events of a kilobyte each before). At
/// 10,000 namespaces a drift of 9,000 policies wrote 599 Events before its last restoration,
/// where the 512 held before let the rest go out among the restorations, one Event write per
/// restoration (see docs/performance.md, change 20).
const HELD_BYTES_PER_LANE: usize = 2 * 1024 * 1024 / LANES;

/// How often a publisher holding an Event looks again whether reconciles still run.
const DEFER_STEP: std::time::Duration = std::time::Duration::from_millis(20);

/// How long a published Event can still be continued as a series (kube's and client-go's value).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// How often series older than the window are forgotten.
const PRUNE_EVERY: SignedDuration = SignedDuration::from_secs(1);

/// The longest note the API server accepts (events.k8s.io/v1 validation), in bytes.
const NOTE_LIMIT: usize = 1024;

/// Where reconciles queue Events.
#[derive(Clone)]
pub struct EventQueue {
    lanes: Vec<mpsc::Sender<Queued>>,
    metrics: Arc<Metrics>,
    busy: Busy,
}

/// A queued Event, the object it is about, and when it was queued.
type Queued = (tokio::time::Instant, Event, ObjectReference);

/// How many reconciles run. Cloning shares it.
#[derive(Clone, Debug, Default)]
struct Busy(Arc<std::sync::atomic::AtomicUsize>);

/// A running reconcile, as the publishers see it: counted until dropped.
#[must_use]
pub struct Working(Busy);

impl Drop for Working {
    fn drop(&mut self) {
        (self.0)
            .0
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Busy {
    fn is_busy(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed) > 0
    }
}

/// The tasks that publish queued Events; they end once every [`EventQueue`] is dropped and the
/// lanes are drained.
pub struct Publisher {
    lanes: Vec<mpsc::Receiver<Queued>>,
    recorder: Recorder,
    busy: Busy,
}

/// A queue and its publisher.
#[must_use]
pub fn queue(recorder: Recorder, metrics: Arc<Metrics>) -> (EventQueue, Publisher) {
    let (senders, receivers) = (0..LANES)
        .map(|_| mpsc::channel(QUEUE_CAPACITY / LANES))
        .unzip();
    let busy = Busy::default();
    (
        EventQueue {
            lanes: senders,
            metrics,
            busy: busy.clone(),
        },
        Publisher {
            lanes: receivers,
            recorder,
            busy,
        },
    )
}

impl EventQueue {
    /// Count a running reconcile until the result is dropped: the publishers hold Events
    /// meanwhile.
    pub fn working(&self) -> Working {
        self.busy
            .0
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Working(self.busy.clone())
    }

    /// Queue an Event about `reference`; when its lane is full it is dropped and counted. Its
    /// note is cut here to what the API server accepts, before anything reads it: the lane is
    /// chosen by the series, and a series is what is published.
    pub fn publish(&self, mut event: Event, reference: ObjectReference) {
        if let Some(note) = &mut event.note
            && note.len() > NOTE_LIMIT
        {
            *note = within_note_limit(note);
        }
        let mut hasher = DefaultHasher::new();
        SeriesKey::of(&event, &reference).hash(&mut hasher);
        let lane = usize::try_from(hasher.finish() % LANES as u64).unwrap_or_default();
        let Some(sender) = self.lanes.get(lane) else {
            return;
        };
        if let Err(error) = sender.try_send((tokio::time::Instant::now(), event, reference)) {
            self.metrics.events_dropped.inc();
            let (_, event, _) = error.into_inner();
            tracing::debug!(reason = %event.reason, "Event queue full: Event dropped");
        }
    }
}

impl Publisher {
    /// Publish until the queue closes (then what is held and queued, at once). A failure to
    /// publish is logged, never retried.
    pub async fn run(self) {
        let recorder = &self.recorder;
        let busy = &self.busy;
        let lanes = self.lanes.into_iter().map(|mut lane| async move {
            let mut held = HeldLane::default();
            let mut open = true;
            loop {
                // Move what is queued into the held lane, compactly, while it has room.
                while open && held.bytes < HELD_BYTES_PER_LANE {
                    match lane.try_recv() {
                        Ok(queued) => held.push(Held::of(queued)),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => open = false,
                    }
                }
                let Some(oldest) = held.events.front() else {
                    if !open {
                        break;
                    }
                    match lane.recv().await {
                        Some(queued) => held.push(Held::of(queued)),
                        None => open = false,
                    }
                    continue;
                };
                // Held at most MAX_DEFER from when it was queued, not from when its turn came:
                // a lane of held Events would otherwise wait MAX_DEFER for each.
                if open
                    && busy.is_busy()
                    && held.bytes < HELD_BYTES_PER_LANE
                    && tokio::time::Instant::now() < oldest.queued + MAX_DEFER
                {
                    tokio::time::sleep(DEFER_STEP).await;
                    continue;
                }
                let Some((event, reference)) = held.pop() else {
                    continue;
                };
                if let Err(error) = recorder.publish(&event, &reference).await {
                    tracing::warn!(%error, reason = %event.reason, "failed to publish an Event");
                }
            }
        });
        futures::future::join_all(lanes).await;
    }
}

/// The Events a lane holds, oldest first, and their [`Held::size`] summed.
#[derive(Default)]
struct HeldLane {
    events: VecDeque<Held>,
    bytes: usize,
}

impl HeldLane {
    fn push(&mut self, held: Held) {
        self.bytes += held.size();
        self.events.push_back(held);
    }

    fn pop(&mut self) -> Option<(Event, ObjectReference)> {
        let held = self.events.pop_front()?;
        self.bytes = self.bytes.saturating_sub(held.size());
        Some(held.into_parts())
    }
}

/// How many strings a [`Held`] Event keeps: reason, action, note, then the regarding object's
/// apiVersion, kind, name, namespace, uid, resourceVersion and fieldPath.
const HELD_FIELDS: usize = 10;

/// A queued Event as a publisher holds it through a burst: its strings in one allocation
/// (an [`Event`] and its [`ObjectReference`] as they are take ten allocations and about a
/// kilobyte; a drift correction held, about 300 bytes); its note was cut to what the API
/// server accepts when it was queued.
struct Held {
    queued: tokio::time::Instant,
    type_: EventType,
    /// Bit `i` is set when field `i` is present.
    present: u16,
    /// Where each field ends in `text`.
    ends: [u32; HELD_FIELDS],
    text: Box<str>,
    secondary: Option<Box<ObjectReference>>,
}

impl Held {
    fn of((queued, event, regarding): Queued) -> Held {
        let fields: [Option<&str>; HELD_FIELDS] = [
            Some(&event.reason),
            Some(&event.action),
            event.note.as_deref(),
            regarding.api_version.as_deref(),
            regarding.kind.as_deref(),
            regarding.name.as_deref(),
            regarding.namespace.as_deref(),
            regarding.uid.as_deref(),
            regarding.resource_version.as_deref(),
            regarding.field_path.as_deref(),
        ];
        let mut text =
            String::with_capacity(fields.iter().flatten().map(|field| field.len()).sum());
        let mut present = 0;
        let mut ends = [0; HELD_FIELDS];
        for ((index, field), end) in fields.iter().enumerate().zip(&mut ends) {
            if let Some(field) = field {
                text.push_str(field);
                present |= 1 << index;
            }
            *end = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        Held {
            queued,
            type_: event.type_,
            present,
            ends,
            text: text.into_boxed_str(),
            secondary: event.secondary.map(Box::new),
        }
    }

    /// Field `index`, when present.
    fn field(&self, index: usize) -> Option<String> {
        if self.present & (1 << index) == 0 {
            return None;
        }
        let start = match index.checked_sub(1) {
            Some(before) => *self.ends.get(before)?,
            None => 0,
        };
        let end = *self.ends.get(index)?;
        self.text
            .get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
            .map(str::to_owned)
    }

    /// What it takes in memory, near enough: itself, its text and what it relates to.
    fn size(&self) -> usize {
        std::mem::size_of::<Held>()
            + self.text.len()
            + self
                .secondary
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<ObjectReference>() + 128)
    }

    fn into_parts(self) -> (Event, ObjectReference) {
        let event = Event {
            type_: self.type_,
            reason: self.field(0).unwrap_or_default(),
            action: self.field(1).unwrap_or_default(),
            note: self.field(2),
            secondary: None,
        };
        let regarding = ObjectReference {
            api_version: self.field(3),
            kind: self.field(4),
            name: self.field(5),
            namespace: self.field(6),
            uid: self.field(7),
            resource_version: self.field(8),
            field_path: self.field(9),
        };
        let event = Event {
            secondary: self.secondary.map(|secondary| *secondary),
            ..event
        };
        (event, regarding)
    }
}

/// What makes two Events occurrences of one series: everything a person reads in them.
#[derive(Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    regarding: [Option<String>; 4],
    related: Option<[Option<String>; 3]>,
    type_: &'static str,
    reason: String,
    action: String,
    note: Option<String>,
}

impl SeriesKey {
    fn of(event: &Event, regarding: &ObjectReference) -> SeriesKey {
        SeriesKey {
            regarding: [
                regarding.uid.clone(),
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
            ],
            related: event.secondary.as_ref().map(|related| {
                [
                    related.kind.clone(),
                    related.namespace.clone(),
                    related.name.clone(),
                ]
            }),
            type_: type_name(event.type_),
            reason: event.reason.clone(),
            action: event.action.clone(),
            note: event.note.clone(),
        }
    }
}

impl SeriesKey {
    /// The key as a digest: the window holds one per series, not the strings.
    fn digest(&self) -> Digest {
        let mut parts: Vec<&[u8]> = Vec::new();
        let related = self.related.iter().flatten();
        for field in self.regarding.iter().chain(related) {
            match field {
                Some(value) => parts.extend([&b"="[..], value.as_bytes()]),
                None => parts.push(b"absent"),
            }
        }
        parts.extend([
            self.type_.as_bytes(),
            self.reason.as_bytes(),
            self.action.as_bytes(),
        ]);
        match &self.note {
            Some(note) => parts.extend([&b"="[..], note.as_bytes()]),
            None => parts.push(b"absent"),
        }
        Digest::of(&parts)
    }
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// One series published within the window: the name of its Event, how many occurrences it
/// counts, and when it last happened (all a continuation needs: at 10,000 namespaces a
/// convergence publishes 10,000 Events, and keeping each whole for the window took megabytes).
#[derive(Clone, Debug)]
struct Series {
    name: Box<str>,
    count: i32,
    last: Timestamp,
}

/// The series published within the window, by the digest of their key.
#[derive(Default)]
struct Published {
    series: HashMap<Digest, Series>,
    pruned: Option<Timestamp>,
}

impl Published {
    /// Forget series older than the window (at most every [`PRUNE_EVERY`]: a burst of Events
    /// must not scan every series each time).
    fn prune(&mut self, now: Timestamp) {
        if self.pruned.is_some_and(|at| at + PRUNE_EVERY > now) {
            return;
        }
        self.pruned = Some(now);
        self.series
            .retain(|_, earlier| earlier.last + SERIES_WINDOW > now);
    }
}

/// Publishes `events.k8s.io/v1` Events, folding repeats into a series (see the module's doc).
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    published: Mutex<Published>,
}

impl Recorder {
    /// A recorder that reports as `reporter`.
    #[must_use]
    pub fn new(client: Client, reporter: Reporter) -> Recorder {
        Recorder {
            client,
            reporter,
            published: Mutex::new(Published::default()),
        }
    }

    /// Create the Event about `regarding`, or raise the count of the same one published within
    /// the window. Occurrences of one series must not be published concurrently (the
    /// [`Publisher`]'s lanes see to it).
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = SeriesKey::of(event, regarding).digest();
        let earlier = {
            let mut published = self
                .published
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            published.prune(now);
            published.series.get(&key).cloned()
        };
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<events::Event> = Api::namespaced(self.client.clone(), namespace);
        let continued = match earlier {
            Some(earlier) => {
                let series = Series {
                    count: earlier.count + 1,
                    last: now,
                    ..earlier
                };
                let patch = serde_json::json!({"series": events::EventSeries {
                    count: series.count,
                    last_observed_time: MicroTime(now),
                }});
                match api
                    .patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Some(series),
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
            let created = self.new_event(event, regarding, now);
            api.create(&PostParams::default(), &created).await?;
            Series {
                name: created.metadata.name.unwrap_or_default().into(),
                count: 1,
                last: now,
            }
        };
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .series
            .insert(key, stored);
        Ok(())
    }

    /// The first Event of a series, named as kube and client-go name them.
    fn new_event(
        &self,
        event: &Event,
        regarding: &ObjectReference,
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
            type_: Some(type_name(event.type_).to_owned()),
            reason: Some(event.reason.clone()),
            action: Some(event.action.clone()),
            note: event.note.as_deref().map(within_note_limit),
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

/// A note the API server accepts: cut at a character boundary to [`NOTE_LIMIT`] bytes, ending
/// in "..." when cut (an InvalidSpec note lists every error; a refused Event is a lost one).
fn within_note_limit(note: &str) -> String {
    if note.len() <= NOTE_LIMIT {
        return note.to_owned();
    }
    let mut end = NOTE_LIMIT - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &note[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_event_is_the_event_queued() {
        let event = || Event {
            type_: EventType::Warning,
            reason: "DriftCorrected".into(),
            action: "Reconcile".into(),
            note: Some(
                "NetworkPolicy shop-default-deny differed from the spec and was restored".into(),
            ),
            secondary: Some(ObjectReference {
                kind: Some("NetworkPolicy".into()),
                name: Some("shop-default-deny".into()),
                ..ObjectReference::default()
            }),
        };
        let regarding = ObjectReference {
            api_version: Some("netfence.io/v1alpha1".into()),
            kind: Some("NamespaceIsolation".into()),
            name: Some("shop".into()),
            namespace: Some("team-a".into()),
            uid: Some("0b5c6b8e-5f0e-4d5e-9d3c-2f4b8a1c7e90".into()),
            resource_version: Some(String::new()),
            field_path: None,
        };
        let held = Held::of((tokio::time::Instant::now(), event(), regarding.clone()));
        let (back, back_regarding) = held.into_parts();
        let event = event();
        assert_eq!(type_name(back.type_), type_name(event.type_));
        assert_eq!(
            (&back.reason, &back.action, &back.note, &back.secondary),
            (&event.reason, &event.action, &event.note, &event.secondary)
        );
        // An empty field stays empty, an absent one absent.
        assert_eq!(back_regarding, regarding);

        let bare = Event {
            note: None,
            secondary: None,
            ..event
        };
        let held = Held::of((
            tokio::time::Instant::now(),
            bare,
            ObjectReference::default(),
        ));
        let (back, back_regarding) = held.into_parts();
        assert_eq!((back.note, back.secondary), (None, None));
        assert_eq!(back_regarding, ObjectReference::default());
    }

    #[test]
    fn long_notes_are_cut_to_what_the_api_server_accepts() {
        assert_eq!(within_note_limit("short"), "short");
        let exact = "a".repeat(NOTE_LIMIT);
        assert_eq!(within_note_limit(&exact), exact);
        // A multi-byte character across the limit is not split.
        let long = format!("{}é{}", "a".repeat(NOTE_LIMIT - 4), "b".repeat(100));
        let cut = within_note_limit(&long);
        assert!(cut.len() <= NOTE_LIMIT, "{}", cut.len());
        assert!(cut.ends_with("..."));
        assert!(cut.starts_with(&"a".repeat(NOTE_LIMIT - 4)));
    }
}
