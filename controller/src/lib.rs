//! The controllers: NamespaceIsolations in, their NetworkPolicies kept true; IsolationTemplates
//! in, their NamespaceIsolations kept true; ClusterBaselines in, their engine's cluster-wide
//! objects kept true (`baseline`). The I/O around the pure `netfence_core`.
//!
//! ```text
//! watch NamespaceIsolation (cached: who each is) -------\
//! NetworkPolicy (managed-by=netfence: cached as facts) --+--> reconcile(resource): read it (GET)
//! NetworkPolicy (the others, whole), DNS namespace -----/    validate -> render -> plan -> apply/prune
//! every hour: every resource (`reconcile::resync`) ----/     -> audit (`audit`) -> status
//!       '-- the same cache, and what it took --> the template controller (`template`)
//! ```
//!
//! Each step is a named function; `validate`, `render` and `plan` are pure and live in their own
//! modules. A reconcile in steady state makes no write: the plan is empty and the status unchanged.

mod audit;
mod baseline;
mod cache;
pub mod compact;
pub mod decode;
pub mod events;
mod leader;
pub mod metrics;
mod namespaces;
mod own_writes;
mod reconcile;
mod relist;
pub mod skeleton;
mod template;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{
    Api, Client,
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::{Event, EventType, Reporter},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use netfence_core::observed::Facts;
use netfence_crd::NamespaceIsolation;

pub use baseline::{
    BaselineError, PreparedBaselines, discover as served_engines, prepare_baselines,
};
pub use cache::{Change, Changes, Keep, PolicyCache, Whole};
pub use compact::Compact;
use decode::{Lenient, Undecodable};
pub use events::Recorder;
pub use leader::{LeaseSettings, run_as_leader};
pub use own_writes::{OwnWrites, Writing};
pub use reconcile::{Error, reconcile};
use relist::RelistAsChanges;
pub use template::{PreparedTemplates, TemplateError, prepare_templates};

pub use netfence_core::meta::{FIELD_MANAGER, FINALIZER};
use netfence_core::{
    meta::{ISOLATION_LABEL, MANAGED_BY, MANAGED_BY_LABEL},
    status,
};

use crate::metrics::Metrics;

/// The first retry delay after a failed reconcile; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The NetworkPolicies carrying the managed-by label, as last observed, by namespace: what
    /// a plan needs of each ([`Facts`]), not the objects.
    pub policies: PolicyCache<Facts>,
    /// The NetworkPolicies without the managed-by label (the intent audit's), by namespace,
    /// whole.
    pub foreign: PolicyCache<Whole>,
    /// The DNS namespace's pods, Services and DaemonSets (the DNS checks').
    pub dns: audit::DnsCaches,
    /// The cluster-wide policies of the engines the cluster serves (the audit's; none when
    /// watching one namespace).
    pub cluster_wide: audit::ClusterWideCache,
    /// The last intent proof of each resource, by the fingerprint of its inputs.
    pub proofs: audit::ProofMemo,
    /// The NamespaceIsolations, as last observed (the controller's own cache), kept compact.
    pub isolations: Store<Compact>,
    /// The policies this controller wrote, so that its own writes trigger no reconcile (what
    /// a held event triggers: the policy watch's changes).
    pub own_policies: OwnWrites<Vec<Change>>,
    /// The NamespaceIsolation statuses this controller wrote (what a held event triggers: its
    /// resource).
    pub own_isolations: OwnWrites<ObjectRef<Compact>>,
    /// Consecutive failures per resource, for exponential backoff.
    pub failures: skeleton::Failures<ObjectRef<Compact>>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// Queues Events about the resources (published by a task of their own).
    pub events: events::EventQueue,
    /// One permit per reconcile that may run (`--concurrency`), handed out first come, first
    /// served. kube's own limit keeps waiting reconciles in a hash set and starts them in no
    /// order: under a burst (900 policies deleted at once) the first deleted waited as long as
    /// the last, and the slowest restorations took the whole burst.
    pub permits: tokio::sync::Semaphore,
}

/// The label selector of the policies netfence watches: only its own.
#[must_use]
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}

/// The label selector of every other NetworkPolicy (the intent audit's).
#[must_use]
pub fn foreign_selector() -> String {
    format!("{MANAGED_BY_LABEL}!={MANAGED_BY}")
}

/// The retry delay after `failures` consecutive failures: 1 s doubling, at most 5 min.
#[must_use]
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    MIN_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF)
}

/// What `netfence run` and `netfence sandbox` tell the controller.
pub struct Settings {
    /// Watch one namespace; `None` watches all.
    pub namespace: Option<String>,
    /// How many resources are reconciled at once.
    pub concurrency: u16,
    /// This instance's name in Events (the pod name in a cluster).
    pub instance: Option<String>,
    /// Run the cluster-wide controllers too, IsolationTemplate and ClusterBaseline (cluster-wide
    /// only: templates, baselines and namespaces are cluster-scoped).
    pub templates: bool,
    /// netfence's own namespace: no template ever generates into it.
    pub operator_namespace: Option<String>,
}

/// A controller ready to run: read its store (for metrics) before running it.
pub struct Prepared {
    controller: Controller<Compact>,
    policies: PolicyCache<Facts>,
    context: Arc<Context>,
    templates: Option<PreparedTemplates>,
    baselines: Option<PreparedBaselines>,
    publisher: events::Publisher,
}

impl Prepared {
    /// The controller's view of NamespaceIsolations.
    #[must_use]
    pub fn store(&self) -> Store<Compact> {
        self.controller.store()
    }

    /// Run until `shutdown` resolves. `ready` is set once both caches have synced.
    pub async fn run(
        self,
        ready: Arc<AtomicBool>,
        shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    ) {
        let isolations = self.controller.store();
        let policies = self.policies.clone();
        let foreign = self.context.foreign.clone();
        let publisher = tokio::spawn(self.publisher.run());
        // Ready once every cache of both controllers holds its first complete list.
        let templates_synced = self.templates.as_ref().map(PreparedTemplates::synced);
        let baselines_synced = self.baselines.as_ref().map(PreparedBaselines::synced);
        tokio::spawn(async move {
            if synced(&isolations).await {
                policies.wait_synced().await;
                foreign.wait_synced().await;
                if let Some(templates_synced) = templates_synced
                    && !templates_synced.await
                {
                    return;
                }
                if let Some(baselines_synced) = baselines_synced
                    && !baselines_synced.await
                {
                    return;
                }
                ready.store(true, Ordering::Relaxed);
            }
        });
        let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
        // Ended with the run, even when the run is dropped (under leader election a stop is a
        // drop, and `shutdown` never resolves).
        let _close_permits = AbortOnDrop(tokio::spawn({
            let shutdown = shutdown.clone();
            let context = Arc::downgrade(&self.context);
            async move {
                shutdown.await;
                if let Some(context) = context.upgrade() {
                    context.permits.close();
                }
            }
        }));
        let store = self.controller.store();
        let isolations = self
            .controller
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile, error_policy, self.context)
            .take_until(forceful_shutdown(shutdown.clone(), store))
            .for_each(|result| async move {
                if let Err(error) = result {
                    tracing::debug!(%error, "reconcile did not complete");
                }
            });
        match (self.templates, self.baselines) {
            (Some(templates), Some(baselines)) => {
                futures::join!(
                    isolations,
                    templates.run(shutdown.clone()),
                    baselines.run(shutdown)
                );
            }
            (Some(templates), None) => {
                futures::join!(isolations, templates.run(shutdown));
            }
            (None, Some(baselines)) => {
                futures::join!(isolations, baselines.run(shutdown));
            }
            (None, None) => isolations.await,
        }
        // The controller and its context are gone, so the queue is closed: publish what is left.
        if tokio::time::timeout(Duration::from_secs(5), publisher)
            .await
            .is_err()
        {
            tracing::warn!("Events still queued at shutdown were not published");
        }
    }
}

/// The reconciles a stream of watch changes calls for, as a stream of references (what kube's
/// `reconcile_on` takes): each change mapped to the resources it concerns. A watch error is
/// logged here; the watch backs off and retries on its own.
pub(crate) trait Triggers<T>:
    futures::Stream<Item = Result<Vec<T>, watcher::Error>> + Sized
{
    fn triggers<F>(
        self,
        what: &'static str,
        targets: F,
    ) -> impl futures::Stream<Item = ObjectRef<Compact>> + Send + 'static
    where
        Self: Send + 'static,
        T: Send + 'static,
        F: Fn(T) -> Vec<ObjectRef<NamespaceIsolation>> + Send + 'static,
    {
        self.filter_map(move |changes| {
            std::future::ready(match changes {
                Ok(changes) => Some(futures::stream::iter(changes)),
                Err(error) => {
                    tracing::debug!(%error, watch = what, "watch failed; it retries");
                    None
                }
            })
        })
        .flatten()
        .flat_map(move |change| {
            futures::stream::iter(targets(change).into_iter().map(compact::reference))
        })
    }
}

impl<T, S> Triggers<T> for S where S: futures::Stream<Item = Result<Vec<T>, watcher::Error>> {}

/// A task that ends when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Each watch backs off its own errors (`default_backoff`, client-go's schedule). kube's
/// controller would also pause all its triggers after any error, on top: after a 410 Gone both
/// watches then relisted 4 s later instead of about 1 s, and drift went unnoticed meanwhile.
struct NoTriggerBackoff;

impl Iterator for NoTriggerBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoTriggerBackoff {
    fn reset(&mut self) {}
}

/// What the template controller gets of the NamespaceIsolation watch (one watch and one cache
/// for both, see `SharedIsolations`): a signal after every event the cache took, and the
/// objects it reads differently from the cached ones. A status write that only makes a
/// generated resource Ready changes nothing of a template's plan or status: at 10,000
/// namespaces each such event made the template plan again, and its copies of every namespace
/// kept the fan-out over 100 MB.
struct TemplateFeed {
    cached: Store<Compact>,
    changes: cache::Changes,
    /// None unless the cluster-wide controllers run.
    sender: Option<futures::channel::mpsc::UnboundedSender<Compact>>,
    /// Whether the event passing through is one to send (each event passes every step of
    /// the watch before the next one starts).
    relevant: AtomicBool,
}

impl TemplateFeed {
    fn new(
        settings: &Settings,
        cached: &Store<Compact>,
    ) -> (Arc<Self>, template::SharedIsolations) {
        let changes = cache::Changes::default();
        let (sender, touched) = futures::channel::mpsc::unbounded();
        let feed = TemplateFeed {
            cached: cached.clone(),
            changes: changes.clone(),
            sender: runs_cluster_wide(settings).then_some(sender),
            relevant: AtomicBool::new(false),
        };
        let shared = template::SharedIsolations {
            store: cached.clone(),
            changes,
            touched,
        };
        (Arc::new(feed), shared)
    }

    /// Before the cache takes `event`: whether templates read it differently.
    fn before(&self, event: &watcher::Event<Compact>) {
        let relevant = self.sender.is_some()
            && match event {
                watcher::Event::Apply(object) => self
                    .cached
                    .get(&ObjectRef::from_obj(object))
                    .is_none_or(|old| !old.existing().same_for_templates(object.existing())),
                watcher::Event::Delete(_) | watcher::Event::InitApply(_) => true,
                watcher::Event::Init | watcher::Event::InitDone => false,
            };
        self.relevant.store(relevant, Ordering::Relaxed);
    }

    /// After the cache took `event`.
    fn after(&self, event: &watcher::Event<Compact>) {
        self.changes.signal();
        if let Some(sender) = &self.sender
            && self.relevant.load(Ordering::Relaxed)
            && let watcher::Event::Apply(object)
            | watcher::Event::Delete(object)
            | watcher::Event::InitApply(object) = event
        {
            // Closed only when the template controller has stopped.
            let _closed = sender.unbounded_send(object.clone());
        }
    }
}

/// Whether a watch event only reports this controller's own write (it then triggers no
/// reconcile; the caches still apply it), or is held until the write in flight is answered
/// (`trigger` is what it triggers if it turns out to be someone else's).
fn is_own_write<K: kube::Resource<DynamicType = ()>, T>(
    own: &OwnWrites<T>,
    event: &watcher::Event<K>,
    trigger: impl FnOnce(&K) -> T,
) -> bool {
    matches!(event, watcher::Event::Apply(object) if own.is_own(object, || trigger(object)))
}

/// How long a stop waits for the reconciles in flight before it drops them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// When a controller stops even with reconciles in flight: [`SHUTDOWN_GRACE`] after `shutdown`,
/// or at once if its store had no complete list yet.
///
/// kube's graceful shutdown cuts the watches, then waits for the store to be ready before its
/// runner can end; a store whose first list was cut never becomes ready, so a stop during the
/// first list (a SIGTERM right after start, `netfence sandbox --once` on an empty sandbox) would
/// wait forever. Nothing has been reconciled before that list, so there is nothing to wait for.
async fn forceful_shutdown<K>(shutdown: impl std::future::Future<Output = ()>, store: Store<K>)
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    shutdown.await;
    // One poll: a pending answer leaves no waker anyone depends on, since the stop is at once.
    if let Some(Ok(())) = futures::FutureExt::now_or_never(store.wait_until_ready()) {
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    }
}

/// How many reconciles may wait for each permit (see [`Context::permits`]): up to that many
/// start in arrival order. kube's runner polls every waiting one whenever any finishes, a cost
/// that grows with this (perf put it near a quarter of the operator's CPU at convergence). At 8
/// a permit (256 waiting), restoring 900 deleted policies on kube-apiserver took 5.1 and 5.7 s
/// at p99 in two runs, against 3.7 and 4.5 s at 32, where the whole burst keeps its order.
const WAITING_PER_PERMIT: u16 = 32;

/// How many objects a list page holds (see [`prepare`]).
const LIST_PAGE: u32 = 100;

/// Wait until a store has its first complete list; false if its writer is gone.
///
/// kube's `Store::wait_until_ready` wakes only the last task that polled it (a oneshot channel
/// keeps one waker), and the controller itself waits on the NamespaceIsolation store: a second
/// waiter could sleep forever and `/readyz` never turn ready. Polling again every 100 ms
/// re-registers the waker and sees the value once any waiter has taken it.
async fn synced<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(result) =
            tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await
        {
            return result.is_ok();
        }
    }
}

/// Build the NamespaceIsolation controller: it watches the resources and reflects the
/// NetworkPolicies that carry the managed-by label.
#[must_use]
pub fn prepare(client: Client, settings: &Settings, metrics: Arc<Metrics>) -> Prepared {
    let namespace = settings.namespace.as_deref();
    let isolations: Api<Lenient<NamespaceIsolation>> = scoped(&client, namespace);
    let (event_queue, publisher) = event_queue(&client, settings, &metrics);
    // No cache keeps managedFields: reconciles never read them, and they are most of the
    // size of a server-side-applied object. Lists come in pages of LIST_PAGE (kube's default is
    // 500): a page is held whole, managedFields included, while it is decoded, and 500 policies
    // with their managedFields take about 20 MB for a moment at every relist. Every watch
    // decodes leniently (see [`decode`]): one object that does not decode never stops a list.
    let policy_cache = PolicyCache::<Facts>::default();
    let (own_policies, released_policies) = OwnWrites::new();
    let (own_isolations, released_isolations) = OwnWrites::new();
    let own_statuses = own_isolations.clone();
    let index = audit::IsolationIndex::default();
    let policy_events = own_policy_triggers(
        scoped(&client, namespace),
        &policy_cache,
        &own_policies,
        released_policies,
        &index,
        metrics.clone(),
        report_undecodable_policy(metrics.clone(), event_queue.clone()),
    );
    let (isolation_reader, isolation_writer) = reflector::store::<Compact>();
    let (foreign_cache, foreign_events) =
        audit::foreign_policies(scoped(&client, namespace), &metrics, &index);
    let (dns_caches, dns_changes) = audit::DnsCaches::watch(&client);
    let (cluster_wide, cluster_wide_changes) = audit::ClusterWideCache::watch(&client, namespace);
    let bad_isolation = report_undecodable(
        metrics.clone(),
        "undecodable_resource",
        "NamespaceIsolation",
    );
    let index_writer = index.clone();
    let (feed, shared) = TemplateFeed::new(settings, &isolation_reader);
    // managedFields are read by `Compact::of` (the keys netfence applied to a generated
    // resource) and dropped there: no cache keeps them.
    let isolation_events = watcher(isolations, watcher::Config::default().page_size(LIST_PAGE))
        .default_backoff()
        .map_ok(move |event| decode::typed(event, &bad_isolation))
        // A relist reconciles what changed while the watch was down, not every resource.
        .relist_as_changes(isolation_reader.clone(), Compact::deleted, {
            let metrics = metrics.clone();
            move || metrics.listed("NamespaceIsolation")
        })
        .inspect_ok(move |event| index_writer.apply(event))
        .map_ok(Compact::event)
        .inspect_ok({
            let feed = feed.clone();
            move |event| feed.before(event)
        })
        .reflect(isolation_writer)
        .inspect_ok(move |event| feed.after(event))
        .try_filter(move |event| {
            std::future::ready(!is_own_write(&own_statuses, event, ObjectRef::from_obj))
        })
        .applied_objects();
    let context = Arc::new(Context {
        client,
        policies: policy_cache.clone(),
        foreign: foreign_cache,
        dns: dns_caches,
        cluster_wide,
        proofs: audit::ProofMemo::default(),
        isolations: isolation_reader.clone(),
        own_policies,
        own_isolations,
        failures: skeleton::Failures::default(),
        metrics,
        events: event_queue,
        permits: tokio::sync::Semaphore::new(usize::from(settings.concurrency.max(1))),
    });
    // A namespace's labels choose the cluster-wide policies that apply: its changes (seen by
    // the namespace watch the template controller drives) reconcile its resources.
    let (namespace_changes, namespace_events) = futures::channel::mpsc::unbounded();
    let controller = Controller::for_stream(isolation_events, isolation_reader)
        .reconcile_on(policy_events)
        .reconcile_on(foreign_events)
        // The resources whose status event was held for a write of this controller and was
        // someone else's after all.
        .reconcile_on(released_isolations)
        .reconcile_on(namespace_events.flat_map({
            let mut changes = index.namespace_changes();
            move |event| futures::stream::iter(changes(event).into_iter().map(compact::reference))
        }))
        .reconcile_all_on(dns_changes)
        .reconcile_all_on(cluster_wide_changes)
        .reconcile_all_on(reconcile::resync())
        .trigger_backoff(NoTriggerBackoff)
        // The permits in the context limit reconciles, in arrival order; kube's own limit only
        // bounds how many wait for a permit (its runner polls every one of them at each wake-up,
        // so an unbounded number made convergence quadratic).
        .with_config(
            kube::runtime::controller::Config::default().concurrency(
                settings
                    .concurrency
                    .max(1)
                    .saturating_mul(WAITING_PER_PERMIT),
            ),
        );
    let (templates, baselines) =
        prepare_cluster_wide(&context, settings, namespace_changes, shared);
    Prepared {
        controller,
        policies: policy_cache,
        context,
        templates,
        baselines,
        publisher,
    }
}

/// The watch of netfence's own policies: it fills `cache` and yields the resources a change
/// must reconcile (none for this controller's own writes).
fn own_policy_triggers(
    api: Api<Lenient<NetworkPolicy>>,
    cache: &PolicyCache<Facts>,
    own_writes: &OwnWrites<Vec<Change>>,
    released: futures::channel::mpsc::UnboundedReceiver<Vec<Change>>,
    index: &audit::IsolationIndex,
    metrics: Arc<Metrics>,
    bad_policy: impl Fn(&Undecodable) + Send + Sync + 'static,
) -> impl futures::Stream<Item = ObjectRef<Compact>> + Send + 'static {
    let cache_writer = cache.clone();
    let own_policies = own_writes.clone();
    let policy_index = index.clone();
    let watched = watcher(
        api,
        watcher::Config::default()
            .labels(&managed_selector())
            .page_size(LIST_PAGE),
    )
    .default_backoff()
    .map_ok(move |event| decode::typed(event, &bad_policy))
    .modify(|policy: &mut NetworkPolicy| policy.metadata.managed_fields = None)
    .map_ok(move |event| {
        let mut changed = cache_writer.apply(&event);
        let own = is_own_write(&own_policies, &event, |_| std::mem::take(&mut changed));
        let mut changed: Vec<Option<Change>> = if own {
            Vec::new()
        } else {
            changed.into_iter().map(Some).collect()
        };
        if matches!(event, watcher::Event::InitDone) {
            changed.push(None); // the end of a list, counted once its changes are taken
        }
        changed
    });
    // The changes held for a write of this controller that were someone else's after all.
    let released = released.map(|changes| Ok(changes.into_iter().map(Some).collect()));
    futures::stream::select(watched, released).triggers(
        "NetworkPolicies (netfence's)",
        move |change| match change {
            None => {
                metrics.listed("NetworkPolicy (netfence's)");
                Vec::new()
            }
            Some(Change::Policy(policy)) => {
                let namespace = policy.metadata.namespace.clone().unwrap_or_default();
                let controlled = policy
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|owner| owner.controller == Some(true));
                let mut targets = reconcile_targets(*policy);
                // A labelled policy nobody controls (kept by an older netfence, or forged) may hold
                // a name another resource of its namespace renders: its change (its deletion
                // above all) frees that name, and that resource must not wait for a recheck.
                if !controlled {
                    targets.extend(policy_index.in_namespace(&namespace));
                }
                targets
            }
            Some(Change::Gone { namespace }) => policy_index.in_namespace(&namespace),
        },
    )
}

/// The queue of Events every controller publishes to, and its publisher.
fn event_queue(
    client: &Client,
    settings: &Settings,
    metrics: &Arc<Metrics>,
) -> (events::EventQueue, events::Publisher) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: settings.instance.clone(),
        },
    );
    events::queue(recorder, metrics.clone())
}

/// An API of `K` in `namespace`, or in all namespaces.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The cluster-wide controllers (templates, baselines), when `settings` runs them.
fn prepare_cluster_wide(
    context: &Context,
    settings: &Settings,
    namespace_changes: futures::channel::mpsc::UnboundedSender<watcher::Event<namespaces::Seen>>,
    isolations: template::SharedIsolations,
) -> (Option<PreparedTemplates>, Option<PreparedBaselines>) {
    if !runs_cluster_wide(settings) {
        return (None, None);
    }
    let (baseline_ticks, namespace_ticks) = futures::channel::mpsc::unbounded();
    let (namespaces, namespace_changes) = namespaces::watch(
        &context.client,
        &context.metrics,
        namespace_changes,
        baseline_ticks,
    );
    context.cluster_wide.use_namespaces(namespaces.clone());
    let templates = prepare_templates(
        context.client.clone(),
        context.events.clone(),
        settings.operator_namespace.clone(),
        context.metrics.clone(),
        namespaces.clone(),
        namespace_changes,
        isolations,
    );
    let baselines = prepare_baselines(
        context.client.clone(),
        context.events.clone(),
        settings.operator_namespace.clone(),
        context.metrics.clone(),
        namespaces,
        namespace_ticks,
    );
    (Some(templates), Some(baselines))
}

/// Whether `settings` run the cluster-wide controllers (templates, baselines).
fn runs_cluster_wide(settings: &Settings) -> bool {
    settings.templates && settings.namespace.is_none()
}

/// What happens to a resource that does not decode: counted under `reason` and logged (its
/// reconcile reports it in status, naming the field).
fn report_undecodable(
    metrics: Arc<Metrics>,
    reason: &'static str,
    kind: &'static str,
) -> impl Fn(&Undecodable) + Send + Sync + 'static {
    move |undecodable: &Undecodable| {
        metrics.failed(reason);
        tracing::warn!(
            kind,
            namespace = undecodable.metadata.namespace.as_deref().unwrap_or_default(),
            name = undecodable.metadata.name.as_deref().unwrap_or_default(),
            error = %undecodable,
            "a resource does not decode"
        );
    }
}

/// What happens to a labelled NetworkPolicy that does not decode: counted, logged, and a
/// Warning Event about it (its owner then finds it drifted and writes it again).
fn report_undecodable_policy(
    metrics: Arc<Metrics>,
    events: events::EventQueue,
) -> impl Fn(&Undecodable) + Send + Sync + 'static {
    move |undecodable: &Undecodable| {
        metrics.failed("undecodable_policy");
        tracing::warn!(
            namespace = undecodable.metadata.namespace.as_deref().unwrap_or_default(),
            name = undecodable.metadata.name.as_deref().unwrap_or_default(),
            error = %undecodable,
            "a NetworkPolicy carrying netfence's labels does not decode: its owner restores it"
        );
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("networking.k8s.io/v1".to_owned()),
            kind: Some("NetworkPolicy".to_owned()),
            name: undecodable.metadata.name.clone(),
            namespace: undecodable.metadata.namespace.clone(),
            uid: undecodable.metadata.uid.clone(),
            ..Default::default()
        };
        events.publish(
            Event {
                type_: EventType::Warning,
                reason: "Undecodable".to_owned(),
                note: Some(format!(
                    "netfence cannot read {undecodable}; the NamespaceIsolation that owns it writes it again"
                )),
                action: "Reconcile".to_owned(),
                secondary: None,
            },
            reference,
        );
    }
}

/// The resources a policy's change must reconcile: its owners of netfence's kind (as kube's
/// `owns` maps them) or, for a policy without one, the resource its `netfence.io/isolation`
/// label names in its namespace. Such a policy was kept by an earlier resource of that name
/// (`KeepDefaultDeny`, `Orphan`), and a resource of that name takes it back once it sees it
/// unowned: its orphaning must wake that resource even when the cache learns of it late.
fn reconcile_targets(policy: NetworkPolicy) -> Vec<ObjectRef<NamespaceIsolation>> {
    let metadata = policy.metadata;
    let namespace = metadata.namespace.as_deref();
    let owners: Vec<ObjectRef<NamespaceIsolation>> = metadata
        .owner_references
        .iter()
        .flatten()
        .filter_map(|owner| ObjectRef::from_owner_ref(namespace, owner, ()))
        .collect();
    if !owners.is_empty() {
        return owners;
    }
    let labelled = metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(ISOLATION_LABEL));
    match (labelled, namespace) {
        (Some(name), Some(namespace)) => vec![ObjectRef::new(name).within(namespace)],
        _ => Vec::new(),
    }
}

/// Server-side apply `status` to the status subresource of `name`, as netfence's field manager:
/// fields it no longer sends (an old plannedChanges, a resolved conflict) are removed, which a
/// merge patch would leave, and the status would never settle.
async fn apply_status<K>(
    api: &Api<K>,
    name: &str,
    status: &impl serde::Serialize,
) -> kube::Result<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &kube::api::PatchParams::apply(FIELD_MANAGER).force(),
        &kube::api::Patch::Apply(&patch),
    )
    .await
}

/// After a failure: retry with this resource's own exponential backoff (see [`skeleton`]).
#[allow(clippy::needless_pass_by_value)] // the signature is kube's `Controller::run` contract
fn error_policy(resource: Arc<Compact>, error: &Error, context: Arc<Context>) -> Action {
    context
        .failures
        .error_policy(&ObjectRef::from(resource.as_ref()), error)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backoff doubles from 1 s and stops at 5 minutes: a failing resource neither hammers the
    /// API server nor waits forever.
    #[test]
    fn backoff_doubles_to_five_minutes() {
        let delays: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
