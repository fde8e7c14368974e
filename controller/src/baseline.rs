//! The ClusterBaseline controller: ClusterBaselines in, the cluster-wide objects of their engine
//! kept exactly as rendered.
//!
//! ```text
//! watch ClusterBaseline ------------------------------------------\
//! reflect Namespace (any change: every baseline) -------------------+--> reconcile(baseline)
//! watch each served engine kind + NetworkPolicy (netfence.io/baseline) /   validate -> engine -> render -> plan -> apply/delete -> status
//! ```
//!
//! The decisions are pure (`netfence_core::baseline`: render, and `plan`: the engine, the writes,
//! the status); this module reads the caches, discovers which engines the cluster serves (at
//! start), carries the writes out by server-side apply and writes the status. A reconcile in
//! steady state makes no write. Deleting a baseline deletes what it rendered through owner
//! references; with `deletionPolicy: Orphan` a finalizer first takes the owner references off.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
        Preconditions,
    },
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::EventType,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use netfence_core::{
    ValidatedBaseline,
    baseline::{
        self, Coverage, Object,
        plan::{BaselineOutcome, Owned, Served, engine_for},
    },
    meta::{BASELINE_LABEL, FINALIZER, is_controlled_by},
    selector::Labels,
};
use netfence_crd::{
    ClusterBaseline,
    baseline::{BaselineDeletionPolicy, Engine},
};
use tracing::Instrument;

use super::{
    FIELD_MANAGER,
    decode::{self, Lenient},
};
use crate::{events::EventQueue, metrics::Metrics, skeleton::Failures};

/// How often a baseline is looked at again without any event.
const RESYNC: Duration = Duration::from_secs(3600);

/// The kinds a baseline may write, with whether each is namespaced.
pub(crate) fn kinds() -> Vec<(Option<Engine>, ApiResource, bool)> {
    let resource = |group: &str, version: &str, kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    };
    vec![
        (
            Some(Engine::ClusterNetworkPolicy),
            resource(
                "policy.networking.k8s.io",
                "v1alpha2",
                "ClusterNetworkPolicy",
                "clusternetworkpolicies",
            ),
            false,
        ),
        (
            Some(Engine::Calico),
            resource("projectcalico.org", "v3", "Tier", "tiers"),
            false,
        ),
        (
            Some(Engine::Calico),
            resource(
                "projectcalico.org",
                "v3",
                "GlobalNetworkPolicy",
                "globalnetworkpolicies",
            ),
            false,
        ),
        (
            Some(Engine::Cilium),
            resource(
                "cilium.io",
                "v2",
                "CiliumClusterwideNetworkPolicy",
                "ciliumclusterwidenetworkpolicies",
            ),
            false,
        ),
        (
            None,
            resource(
                "networking.k8s.io",
                "v1",
                "NetworkPolicy",
                "networkpolicies",
            ),
            true,
        ),
    ]
}

/// Why a baseline reconcile did not complete.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The baseline has no UID (it did not come from an API server).
    #[error("ClusterBaseline {0} has no uid: it did not come from an API server")]
    Incomplete(String),
    /// Objects of the names it renders exist and are not its own: never taken over.
    #[error(
        "{} exist(s) and this baseline does not own them (written by hand or by another tool); netfence never overwrites them: delete them to let the baseline write its own, or rename the baseline",
        .0.join(", ")
    )]
    Taken(Vec<String>),
    /// A write failed.
    #[error("failed to {verb} {key}")]
    Write {
        /// apply, delete, or update.
        verb: &'static str,
        /// `Kind/name`.
        key: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl super::skeleton::ReconcileError for BaselineError {
    fn metric_label(&self) -> &'static str {
        match self {
            BaselineError::Incomplete(_) => "baseline_incomplete",
            BaselineError::Taken(_) => "baseline_taken",
            BaselineError::Write { .. } => "baseline_write",
        }
    }
}

/// The objects the baselines own, as last observed, by key (`Kind/name`, `Kind/ns/name`).
#[derive(Clone, Default)]
struct OwnedCache {
    objects: Arc<Mutex<BTreeMap<String, DynamicObject>>>,
    /// Per kind, the list in progress.
    relists: Arc<Mutex<BTreeMap<String, BTreeMap<String, DynamicObject>>>>,
    /// The kinds listed once.
    synced: Arc<Mutex<std::collections::BTreeSet<String>>>,
}

fn key_of(kind: &str, object: &DynamicObject) -> String {
    match &object.metadata.namespace {
        Some(namespace) => format!("{kind}/{namespace}/{}", object.name_any()),
        None => format!("{kind}/{}", object.name_any()),
    }
}

impl OwnedCache {
    /// Apply one watch event of `resource`'s kind. A relist is buffered and swapped in whole at
    /// its end, so a reconcile never sees a kind half listed. Objects of a list carry no
    /// apiVersion and kind (the API server leaves them out of list items): they are set here.
    fn apply(&self, resource: &ApiResource, event: &watcher::Event<DynamicObject>) {
        let kind = resource.kind.as_str();
        let typed = |object: &DynamicObject| {
            let mut object = object.clone();
            object.metadata.managed_fields = None;
            object.types = Some(kube::api::TypeMeta {
                api_version: resource.api_version.clone(),
                kind: resource.kind.clone(),
            });
            object
        };
        let mut objects = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        let mut relists = self.relists.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Init => {
                relists.insert(kind.to_owned(), BTreeMap::new());
            }
            watcher::Event::InitApply(object) => {
                relists
                    .entry(kind.to_owned())
                    .or_default()
                    .insert(key_of(kind, object), typed(object));
            }
            watcher::Event::InitDone => {
                let listed = relists.remove(kind).unwrap_or_default();
                let prefix = format!("{kind}/");
                objects.retain(|key, _| !key.starts_with(&prefix));
                objects.extend(listed);
                self.synced
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(kind.to_owned());
            }
            watcher::Event::Apply(object) => {
                objects.insert(key_of(kind, object), typed(object));
            }
            watcher::Event::Delete(object) => {
                objects.remove(&key_of(kind, object));
            }
        }
    }

    /// Whether every kind in `kinds` has been listed once.
    fn synced(&self, kinds: &[String]) -> bool {
        let synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        kinds.iter().all(|kind| synced.contains(kind))
    }

    /// The objects of the baseline named `name` with UID `uid`.
    fn owned_by(&self, name: &str, uid: &str) -> Vec<(String, DynamicObject)> {
        let objects = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        objects
            .iter()
            .filter(|(_, object)| {
                object.labels().get(BASELINE_LABEL).map(String::as_str) == Some(name)
                    && is_controlled_by(&object.metadata, uid)
            })
            .map(|(key, object)| (key.clone(), object.clone()))
            .collect()
    }
}

/// What every baseline reconcile shares.
pub struct BaselineContext {
    client: Client,
    namespaces: Store<crate::namespaces::Kept>,
    baselines: Store<ClusterBaseline>,
    owned: OwnedCache,
    /// The engines this cluster served at start.
    served: Served,
    /// The kinds watched: every one must have been listed before a plan.
    watched_kinds: Vec<String>,
    failures: Failures<ObjectRef<ClusterBaseline>>,
    metrics: Arc<Metrics>,
    events: EventQueue,
    operator_namespace: Option<String>,
}

/// The baseline controller, ready to run.
pub struct PreparedBaselines {
    client: Client,
    namespaces: Store<crate::namespaces::Kept>,
    /// One `()` per change of the namespace cache.
    namespace_changes: futures::stream::BoxStream<'static, ()>,
    baselines: Store<ClusterBaseline>,
    baseline_events: futures::stream::BoxStream<'static, Result<ClusterBaseline, watcher::Error>>,
    /// Every baseline change (deleted too), for the other baselines: which one covers a
    /// namespace may change with it.
    sibling_events: futures::stream::BoxStream<'static, Result<ClusterBaseline, watcher::Error>>,
    events: EventQueue,
    metrics: Arc<Metrics>,
    operator_namespace: Option<String>,
}

impl PreparedBaselines {
    /// Resolves once the baseline and namespace caches have their first complete list.
    pub fn synced(&self) -> impl std::future::Future<Output = bool> + Send + 'static {
        let baselines = self.baselines.clone();
        let namespaces = self.namespaces.clone();
        async move { super::synced(&baselines).await && super::synced(&namespaces).await }
    }

    /// Discover the served engines, then run until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
    ) {
        let served = discover(&self.client).await;
        tracing::info!(?served, "engines served for ClusterBaselines");
        let owned = OwnedCache::default();
        let watched: Vec<(ApiResource, bool)> = kinds()
            .into_iter()
            .filter(|(engine, _, _)| engine.is_none_or(|engine| served.serves(engine)))
            .map(|(_, resource, namespaced)| (resource, namespaced))
            .collect();
        let mut controller = Controller::for_stream(self.baseline_events, self.baselines.clone());
        controller = controller.reconcile_all_on(self.namespace_changes);
        let siblings = self.baselines.clone();
        controller =
            controller.watches_stream(self.sibling_events, move |changed: ClusterBaseline| {
                siblings
                    .state()
                    .iter()
                    .filter(|baseline| baseline.uid() != changed.uid())
                    .map(|baseline| ObjectRef::from_obj(baseline.as_ref()))
                    .collect::<Vec<_>>()
            });
        for (resource, _) in &watched {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), resource);
            let watched_resource = resource.clone();
            let cache = owned.clone();
            let events = watcher::watcher(api, watcher::Config::default().labels(BASELINE_LABEL))
                .default_backoff()
                .inspect_ok(move |event| cache.apply(&watched_resource, event))
                .touched_objects();
            controller = controller.watches_stream_with(
                events,
                |object: DynamicObject| {
                    object
                        .labels()
                        .get(BASELINE_LABEL)
                        .map(|name| ObjectRef::<ClusterBaseline>::new(name))
                },
                resource.clone(),
            );
        }
        let context = Arc::new(BaselineContext {
            client: self.client,
            namespaces: self.namespaces,
            baselines: self.baselines,
            owned,
            served,
            watched_kinds: watched
                .iter()
                .map(|(resource, _)| resource.kind.clone())
                .collect(),
            failures: Failures::default(),
            metrics: self.metrics,
            events: self.events,
            operator_namespace: self.operator_namespace,
        });
        let store = controller.store();
        controller
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile, error_policy, context)
            .take_until(super::forceful_shutdown(shutdown, store))
            .for_each(|result| async move {
                if let Err(error) = result {
                    tracing::debug!(%error, "baseline reconcile did not complete");
                }
            })
            .await;
    }
}

/// Which engines' kinds the cluster serves. A kind the API server says it does not have is not
/// served; any other failure (a timeout, a 403) is tried again a few times, then counted as not
/// served with a warning (a baseline naming that engine then reports EngineNotServed).
pub async fn discover(client: &Client) -> Served {
    let mut served = Served::default();
    for (engine, resource, _) in kinds() {
        let Some(engine) = engine else { continue };
        let gvk = GroupVersionKind::gvk(&resource.group, &resource.version, &resource.kind);
        let mut found = false;
        for attempt in 0..5_u32 {
            match kube::discovery::pinned_kind(client, &gvk).await {
                Ok(_) => {
                    found = true;
                    break;
                }
                Err(kube::Error::Api(status)) if status.code == 404 => break,
                Err(kube::Error::Discovery(_)) => break,
                Err(error) if attempt < 4 => {
                    tracing::info!(%error, kind = %resource.kind, "discovery failed; trying again");
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
                Err(error) => {
                    tracing::warn!(%error, kind = %resource.kind, "discovery failed: counted as not served");
                }
            }
        }
        if found {
            match engine {
                Engine::ClusterNetworkPolicy => served.cluster_network_policy = true,
                Engine::Calico => served.calico = true,
                Engine::Cilium => served.cilium = true,
                Engine::NetworkPolicy => {}
            }
        }
    }
    served
}

/// Build the baseline controller: it watches ClusterBaselines and reflects Namespaces; the
/// engines' kinds are watched once [`PreparedBaselines::run`] has discovered which are served.
#[must_use]
pub fn prepare_baselines(
    client: Client,
    events: EventQueue,
    operator_namespace: Option<String>,
    metrics: Arc<Metrics>,
    namespaces: Store<crate::namespaces::Kept>,
    namespace_changes: impl futures::Stream<Item = ()> + Send + 'static,
) -> PreparedBaselines {
    let (baselines, baseline_writer) = reflector::store();
    let bad_baseline =
        super::report_undecodable(metrics.clone(), "undecodable_baseline", "ClusterBaseline");
    let baseline_events = watcher(
        Api::<Lenient<ClusterBaseline>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map_ok(move |event| decode::typed(event, &bad_baseline))
    .reflect(baseline_writer)
    .applied_objects()
    .boxed();
    let sibling_events = watcher(
        Api::<Lenient<ClusterBaseline>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map_ok(|event| decode::typed(event, &|_| {}))
    .touched_objects()
    .boxed();
    PreparedBaselines {
        client,
        namespaces,
        namespace_changes: namespace_changes.boxed(),
        baselines,
        baseline_events,
        sibling_events,
        events,
        metrics,
        operator_namespace,
    }
}

#[allow(clippy::needless_pass_by_value)] // the signature is kube's `Controller::run` contract
fn error_policy(
    baseline: Arc<ClusterBaseline>,
    error: &BaselineError,
    context: Arc<BaselineContext>,
) -> Action {
    context
        .failures
        .error_policy(&ObjectRef::from(baseline.as_ref()), error)
}

/// Reconcile one ClusterBaseline, and keep its failure count for the backoff.
pub async fn reconcile(
    baseline: Arc<ClusterBaseline>,
    context: Arc<BaselineContext>,
) -> Result<Action, BaselineError> {
    let span = tracing::info_span!("baseline", name = %baseline.name_any());
    let result = reconcile_steps(&baseline, &context).instrument(span).await;
    context.failures.record(
        &ObjectRef::from(baseline.as_ref()),
        &result,
        &context.metrics,
    );
    result
}

async fn reconcile_steps(
    resource: &ClusterBaseline,
    context: &BaselineContext,
) -> Result<Action, BaselineError> {
    let name = resource.name_any();
    let Some(uid) = resource.uid() else {
        return Err(BaselineError::Incomplete(name));
    };
    // A plan made from half-filled caches would delete what it cannot see, or take for missing
    // what is there.
    if !(context.owned.synced(&context.watched_kinds) && super::synced(&context.namespaces).await) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if resource.metadata.deletion_timestamp.is_some() {
        return finish_deletion(resource, &uid, context).await;
    }
    // A spec that does not decode may not even say its deletion policy: its finalizer stays as
    // it is.
    if decode::undecodable(resource).is_none() {
        keep_finalizer(resource, context).await?;
    }
    let (engine, coverage, rendered) = match desired(resource, context).await {
        Ok(desired) => desired,
        Err(action) => return Ok(action),
    };
    let owned: Vec<Owned> = context
        .owned
        .owned_by(&name, &uid)
        .into_iter()
        .map(|(key, object)| Owned {
            key,
            uid: object.uid(),
            object: serde_json::to_value(&object).unwrap_or_default(),
        })
        .collect();
    let plan = baseline::plan::plan(&rendered, &owned);
    if let Err(error) = execute(resource, &uid, context, &plan).await {
        let outcome = BaselineOutcome::ApplyFailed(engine, super::reconcile::error_message(&error));
        report(
            resource,
            context,
            &outcome,
            EventType::Warning,
            "ApplyFailed",
        )
        .await;
        return Err(error);
    }
    let outcome = BaselineOutcome::Done {
        engine,
        covered: coverage.covered.len(),
        objects: rendered.iter().map(Object::key).collect(),
    };
    write_status(resource, context, &outcome).await?;
    Ok(Action::requeue(RESYNC))
}

/// What the baseline renders on this cluster: its engine, coverage and objects; or, when it
/// cannot render (invalid, engine not served, a field the engine cannot express), that reported
/// in status and what to do next.
async fn desired(
    resource: &ClusterBaseline,
    context: &BaselineContext,
) -> Result<(Engine, Coverage, Vec<Object>), Action> {
    let validated = match decode::undecodable(resource) {
        Some(errors) => Err(errors),
        None => ValidatedBaseline::try_from(resource),
    };
    let validated = match validated {
        Ok(validated) => validated,
        Err(errors) => {
            let outcome = BaselineOutcome::InvalidSpec(&errors);
            report(
                resource,
                context,
                &outcome,
                EventType::Warning,
                "InvalidSpec",
            )
            .await;
            return Err(Action::await_change());
        }
    };
    let engine = match engine_for(validated.engine(), context.served) {
        Ok(engine) => engine,
        Err(engine) => {
            let outcome = BaselineOutcome::EngineNotServed(engine);
            report(
                resource,
                context,
                &outcome,
                EventType::Warning,
                "EngineNotServed",
            )
            .await;
            return Err(Action::requeue(RESYNC));
        }
    };
    let coverage = coverage(resource, &validated, context);
    match baseline::render(
        &validated,
        engine,
        &coverage,
        context.operator_namespace.as_deref(),
    ) {
        Ok(rendered) => Ok((engine, coverage, rendered)),
        Err(unsupported) => {
            let outcome = BaselineOutcome::Unsupported(engine, unsupported.to_string());
            report(
                resource,
                context,
                &outcome,
                EventType::Warning,
                "Unsupported",
            )
            .await;
            Err(Action::await_change())
        }
    }
}

/// The namespaces `validated` covers, beside the other baselines (readable, not being deleted).
fn coverage(
    resource: &ClusterBaseline,
    validated: &ValidatedBaseline,
    context: &BaselineContext,
) -> Coverage {
    let namespaces: Vec<(String, Labels)> = context
        .namespaces
        .state()
        .iter()
        .map(|namespace| {
            let name = namespace.name().to_owned();
            let mut labels = namespace.label_map();
            labels.insert(
                netfence_crd::isolation::NAMESPACE_NAME_LABEL.to_owned(),
                name.clone(),
            );
            (name, labels)
        })
        .collect();
    let others: Vec<ValidatedBaseline> = context
        .baselines
        .state()
        .iter()
        .filter(|other| other.uid() != resource.uid())
        .filter(|other| other.metadata.deletion_timestamp.is_none())
        .filter(|other| decode::undecodable(other.as_ref()).is_none())
        .filter_map(|other| ValidatedBaseline::try_from(other.as_ref()).ok())
        // A baseline that renders nothing here (its engine not served, a field it cannot
        // express) claims no namespace: the namespace would be left without any deny.
        .filter(|other| {
            engine_for(other.engine(), context.served).is_ok_and(|engine| {
                baseline::render(
                    other,
                    engine,
                    &Coverage::default(),
                    context.operator_namespace.as_deref(),
                )
                .is_ok()
            })
        })
        .collect();
    let others: Vec<&ValidatedBaseline> = others.iter().collect();
    baseline::coverage(
        validated,
        &others,
        &namespaces,
        context.operator_namespace.as_deref(),
    )
}

/// The API of one rendered object's kind.
fn api_for(client: &Client, object: &serde_json::Value) -> (Api<DynamicObject>, String, String) {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = kinds()
        .into_iter()
        .map(|(_, resource, _)| resource)
        .find(|resource| resource.kind == kind && resource.group == group)
        .unwrap_or_else(|| ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind)));
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let api = match object["metadata"]["namespace"].as_str() {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    (api, kind.to_owned(), name)
}

/// Apply what the plan applies, delete what it deletes. Every write is tried; an object of the
/// same name netfence does not own is never written (named in the error); the first failure is
/// returned after the rest were tried.
async fn execute(
    resource: &ClusterBaseline,
    uid: &str,
    context: &BaselineContext,
    plan: &baseline::plan::BaselinePlan,
) -> Result<(), BaselineError> {
    let mut taken = Vec::new();
    let mut failure = None;
    let owned_keys: Vec<String> = context
        .owned
        .owned_by(&resource.name_any(), uid)
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    for object in &plan.apply {
        let body = baseline::plan::apply_body(object);
        let (api, _, name) = api_for(&context.client, &body);
        let key = object.key();
        if !owned_keys.contains(&key) {
            // Not ours in the cache: never take over an object of that name someone else wrote.
            match api.get_opt(&name).await {
                Ok(Some(existing)) if !is_controlled_by(&existing.metadata, uid) => {
                    taken.push(key);
                    continue;
                }
                Ok(_) => {}
                Err(source) => {
                    failure.get_or_insert(BaselineError::Write {
                        verb: "read",
                        key,
                        source,
                    });
                    continue;
                }
            }
        }
        match api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(object = %key, "applied");
                event(
                    context,
                    resource,
                    EventType::Normal,
                    "ObjectApplied",
                    format!("{key} written"),
                );
            }
            Err(source) => {
                failure.get_or_insert(BaselineError::Write {
                    verb: "apply",
                    key,
                    source,
                });
            }
        }
    }
    if let Some(error) = prune(resource, context, &plan.delete).await {
        failure.get_or_insert(error);
    }
    if !taken.is_empty() {
        return Err(BaselineError::Taken(taken));
    }
    failure.map_or(Ok(()), Err)
}

/// Delete what the baseline no longer renders (each on its UID); the first failure, after every
/// delete was tried.
async fn prune(
    resource: &ClusterBaseline,
    context: &BaselineContext,
    deletes: &[(String, Option<String>)],
) -> Option<BaselineError> {
    let mut failure = None;
    for (key, object_uid) in deletes {
        let Some(object) = context
            .owned
            .objects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
        else {
            continue;
        };
        let body = match serde_json::to_value(&object) {
            Ok(body) => body,
            Err(source) => {
                failure.get_or_insert(BaselineError::Write {
                    verb: "delete",
                    key: key.clone(),
                    source: kube::Error::SerdeError(source),
                });
                continue;
            }
        };
        let (api, _, name) = api_for(&context.client, &body);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: object_uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match api.delete(&name, &params).await {
            Ok(_) => event(
                context,
                resource,
                EventType::Normal,
                "ObjectDeleted",
                format!("{key} deleted: the baseline no longer renders it"),
            ),
            // Gone already, or replaced by another object (the uid precondition failed).
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(source) => {
                failure.get_or_insert(BaselineError::Write {
                    verb: "delete",
                    key: key.clone(),
                    source,
                });
            }
        }
    }
    failure
}

/// With `deletionPolicy: Orphan`, the finalizer that lets the operator take its owner references
/// off before the baseline goes; without, no finalizer (garbage collection deletes).
async fn keep_finalizer(
    resource: &ClusterBaseline,
    context: &BaselineContext,
) -> Result<(), BaselineError> {
    let wanted = resource.spec.deletion_policy == BaselineDeletionPolicy::Orphan;
    let has = resource
        .finalizers()
        .iter()
        .any(|finalizer| finalizer == FINALIZER);
    if wanted == has {
        return Ok(());
    }
    let mut finalizers: Vec<String> = resource
        .finalizers()
        .iter()
        .filter(|finalizer| *finalizer != FINALIZER)
        .cloned()
        .collect();
    if wanted {
        finalizers.push(FINALIZER.to_owned());
    }
    set_finalizers(resource, context, finalizers).await
}

/// Write the finalizers, on the version read (a conflict retries; another writer's finalizer is
/// never lost).
async fn set_finalizers(
    resource: &ClusterBaseline,
    context: &BaselineContext,
    finalizers: Vec<String>,
) -> Result<(), BaselineError> {
    let api: Api<Lenient<ClusterBaseline>> = Api::all(context.client.clone());
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": resource.resource_version(),
        }
    });
    match api
        .patch(
            &resource.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(BaselineError::Write {
            verb: "update the finalizers of",
            key: format!("ClusterBaseline/{}", resource.name_any()),
            source,
        }),
    }
}

/// A baseline being deleted: with the finalizer (Orphan), take its owner reference off every
/// object it controls (listed from the API server, not the label-selected cache: an object whose
/// label was removed is still its), then the finalizer.
async fn finish_deletion(
    resource: &ClusterBaseline,
    uid: &str,
    context: &BaselineContext,
) -> Result<Action, BaselineError> {
    if !resource
        .finalizers()
        .iter()
        .any(|finalizer| finalizer == FINALIZER)
    {
        return Ok(Action::await_change());
    }
    for (engine, kind, _) in kinds() {
        if engine.is_some_and(|engine| !context.served.serves(engine)) {
            continue;
        }
        let api: Api<DynamicObject> = Api::all_with(context.client.clone(), &kind);
        let listed = api
            .list(&kube::api::ListParams::default())
            .await
            .map_err(|source| BaselineError::Write {
                verb: "list",
                key: kind.plural.clone(),
                source,
            })?;
        for object in listed.items {
            if !is_controlled_by(&object.metadata, uid) {
                continue;
            }
            let name = object.name_any();
            let api: Api<DynamicObject> = match &object.metadata.namespace {
                Some(namespace) => Api::namespaced_with(context.client.clone(), namespace, &kind),
                None => Api::all_with(context.client.clone(), &kind),
            };
            // Only this baseline's reference goes (the JSON patch tests its uid first).
            let Some(patch) = super::reconcile::orphan_patch(&object.metadata, uid) else {
                continue;
            };
            match api
                .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => {
                    return Err(BaselineError::Write {
                        verb: "orphan",
                        key: format!("{}/{name}", kind.kind),
                        source,
                    });
                }
            }
        }
    }
    let finalizers = resource
        .finalizers()
        .iter()
        .filter(|finalizer| *finalizer != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(resource, context, finalizers).await?;
    Ok(Action::await_change())
}

fn event(
    context: &BaselineContext,
    resource: &ClusterBaseline,
    type_: EventType,
    reason: &str,
    note: String,
) {
    super::skeleton::event(
        &context.events,
        resource.object_ref(&()),
        type_,
        reason,
        note,
        None,
    );
}

/// Write a failing outcome's status, with a Warning Event when it changed (a failed status write
/// is logged: the failure is what the reconcile reports).
async fn report(
    resource: &ClusterBaseline,
    context: &BaselineContext,
    outcome: &BaselineOutcome<'_>,
    type_: EventType,
    reason: &str,
) {
    match write_status(resource, context, outcome).await {
        Ok(Some(message)) => event(context, resource, type_, reason, message),
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "failed to write the status"),
    }
}

/// Write the status when it changed; returns the Ready message when it wrote.
async fn write_status(
    resource: &ClusterBaseline,
    context: &BaselineContext,
    outcome: &BaselineOutcome<'_>,
) -> Result<Option<String>, BaselineError> {
    let new = baseline::plan::status(
        outcome,
        resource.metadata.generation,
        resource.status.as_ref(),
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
    if resource.status.as_ref() == Some(&new) {
        return Ok(None);
    }
    let api: Api<Lenient<ClusterBaseline>> = Api::all(context.client.clone());
    super::apply_status(&api, &resource.name_any(), &new)
        .await
        .map_err(|source| BaselineError::Write {
            verb: "write the status of",
            key: format!("ClusterBaseline/{}", resource.name_any()),
            source,
        })?;
    Ok(new
        .conditions
        .first()
        .map(|condition| condition.message.clone()))
}
