//! The template controller: IsolationTemplates in, a generated NamespaceIsolation in every
//! namespace each one matches, kept in line with it.
//!
//! ```text
//! watch IsolationTemplate ----------------------------------\
//! reflect Namespace (any change: every template) -------------+--> reconcile(template)
//! reflect NamespaceIsolation (owner template, same name) ----/     validate -> plan -> apply/delete -> status
//! ```
//!
//! The plan is pure ([`crate::template::plan`]); this module reads the caches, carries the plan
//! out by server-side apply and writes the template's status. A reconcile in steady state makes
//! no write. Deleting a template deletes what it generated through owner-reference garbage
//! collection (each generated resource's own `deletionPolicy` then applies to its policies).

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::{api::core::v1::ObjectReference, apimachinery::pkg::apis::meta::v1::Time};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::EventType,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use netfence_core::{
    ValidatedTemplate,
    plan::ApplyReason,
    status::TemplateOutcome,
    template::{self, Existing, NamespaceInfo, Removal, TemplatePlan, World},
};
use netfence_crd::{IsolationTemplate, NamespaceIsolation, template::TemplateConflict};
use tracing::Instrument;

use super::{
    FIELD_MANAGER,
    decode::{self, Lenient, into_typed},
    status,
};
use crate::{
    Compact,
    cache::Changes,
    events::EventQueue,
    metrics::Metrics,
    skeleton::{Failures, Wrote, wait_until_shown},
};

/// How often a template is looked at again without any event.
const RESYNC: Duration = Duration::from_secs(3600);

/// How many generated resources one reconcile writes at once.
const WRITE_CONCURRENCY: usize = 8;

/// Why a template reconcile did not complete.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template has no UID (it did not come from an API server), or a resource it would
    /// generate has no namespace.
    #[error("{0} has no uid or no namespace: it did not come from an API server")]
    Incomplete(String),
    /// Writing a generated NamespaceIsolation failed.
    #[error("failed to {verb} NamespaceIsolation {namespace}/{name}")]
    Write {
        /// read, apply or delete.
        verb: &'static str,
        /// The namespace.
        namespace: String,
        /// The resource name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the template's status failed.
    #[error("failed to update the status of IsolationTemplate {name}")]
    Status {
        /// The template.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl super::skeleton::ReconcileError for TemplateError {
    fn metric_label(&self) -> &'static str {
        match self {
            TemplateError::Incomplete(_) => "template_incomplete",
            TemplateError::Write { .. } => "template_write",
            TemplateError::Status { .. } => "template_status",
        }
    }
}

/// What every template reconcile shares.
pub struct TemplateContext {
    client: Client,
    namespaces: Store<crate::namespaces::Kept>,
    /// What a plan reads of each NamespaceIsolation ([`Existing`]: of a generated one, a digest
    /// of its spec; kept whole, every resource of the cluster was the largest share of the
    /// operator's memory).
    isolations: Store<Compact>,
    templates: Store<IsolationTemplate>,
    /// Signalled after every event the NamespaceIsolation cache applied.
    isolation_changes: Changes,
    /// Signalled after every event the template cache applied.
    template_changes: Changes,
    failures: Failures<ObjectRef<IsolationTemplate>>,
    metrics: Arc<Metrics>,
    events: EventQueue,
    operator_namespace: Option<String>,
}

/// The template controller, ready to run.
pub struct PreparedTemplates {
    controller: Controller<IsolationTemplate>,
    context: Arc<TemplateContext>,
}

impl PreparedTemplates {
    /// Resolves once every cache of the template controller has its first complete list (false
    /// if one's writer is gone).
    pub fn synced(&self) -> impl std::future::Future<Output = bool> + Send + 'static {
        let context = self.context.clone();
        async move {
            super::synced(&context.templates).await
                && super::synced(&context.namespaces).await
                && super::synced(&context.isolations).await
        }
    }

    /// Run until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
    ) {
        let store = self.controller.store();
        self.controller
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile, error_policy, self.context)
            .take_until(super::forceful_shutdown(shutdown, store))
            .for_each(|result| async move {
                if let Err(error) = result {
                    tracing::debug!(%error, "template reconcile did not complete");
                }
            })
            .await;
    }
}

/// The NamespaceIsolations as the isolation controller's watch keeps them, shared with the
/// template controller: one watch and one cache of NamespaceIsolations for both (a second
/// cache took some 7 MB at 10,000 namespaces).
pub struct SharedIsolations {
    /// The cache (of every namespace: the template controller runs only cluster-wide).
    pub store: Store<Compact>,
    /// Signalled after every event the cache applied.
    pub changes: Changes,
    /// Every object the cache took (added, changed, deleted), as it took it.
    pub touched: futures::channel::mpsc::UnboundedReceiver<Compact>,
}

/// Build the template controller: it watches IsolationTemplates, and reads Namespaces and
/// NamespaceIsolations (of every namespace: a resource it does not own is a conflict to see).
#[must_use]
pub fn prepare_templates(
    client: Client,
    events: EventQueue,
    operator_namespace: Option<String>,
    metrics: Arc<Metrics>,
    namespaces: Store<crate::namespaces::Kept>,
    namespace_changes: impl futures::Stream<Item = ()> + Send + 'static,
    isolations: SharedIsolations,
) -> PreparedTemplates {
    let SharedIsolations {
        store: isolations,
        changes: isolation_changes,
        touched: isolation_events,
    } = isolations;
    let (templates, template_writer) = reflector::store();
    let template_changes = Changes::default();
    let bad_template =
        super::report_undecodable(metrics.clone(), "undecodable_template", "IsolationTemplate");
    let template_events = watcher(
        Api::<Lenient<IsolationTemplate>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map_ok(move |event| decode::typed(event, &bad_template))
    .reflect(template_writer)
    .inspect_ok({
        let changes = template_changes.clone();
        move |_| changes.signal()
    })
    .applied_objects();
    let controller = Controller::for_stream(template_events, templates.clone());
    let same_name = templates.clone();
    let controller = controller
        // A namespace created, relabelled or deleted may change what any template matches.
        .reconcile_all_on(namespace_changes)
        // A generated resource changed (its template restores it), or a resource of a
        // template's isolation name came or went (a conflict starts or ends).
        .watches_stream(isolation_events.map(Ok), move |isolation: Compact| {
            let name = isolation.name_any();
            same_name
                .state()
                .iter()
                .filter(|template| {
                    template
                        .spec
                        .isolation_name
                        .as_deref()
                        .unwrap_or(&template.name_any())
                        == name
                        || isolation.owner_references().iter().any(|owner| {
                            owner.controller == Some(true)
                                && owner.kind == IsolationTemplate::kind(&())
                                && owner.name == template.name_any()
                        })
                })
                .map(|template| ObjectRef::from_obj(template.as_ref()))
                .collect::<Vec<_>>()
        });
    PreparedTemplates {
        controller,
        context: Arc::new(TemplateContext {
            client,
            namespaces,
            isolations,
            templates,
            isolation_changes,
            template_changes,
            failures: Failures::default(),
            metrics,
            events,
            operator_namespace,
        }),
    }
}

#[allow(clippy::needless_pass_by_value)] // the signature is kube's `Controller::run` contract
fn error_policy(
    template: Arc<IsolationTemplate>,
    error: &TemplateError,
    context: Arc<TemplateContext>,
) -> Action {
    context
        .failures
        .error_policy(&ObjectRef::from(template.as_ref()), error)
}

/// Reconcile one IsolationTemplate, and keep its failure count for the backoff.
pub async fn reconcile(
    template: Arc<IsolationTemplate>,
    context: Arc<TemplateContext>,
) -> Result<Action, TemplateError> {
    let span = tracing::info_span!("template", name = %template.name_any());
    let result = reconcile_steps(&template, &context).instrument(span).await;
    context.failures.record(
        &ObjectRef::from(template.as_ref()),
        &result,
        &context.metrics,
    );
    result
}

async fn reconcile_steps(
    template: &IsolationTemplate,
    context: &TemplateContext,
) -> Result<Action, TemplateError> {
    if template.metadata.deletion_timestamp.is_some() {
        // Garbage collection removes the generated resources: they are owned by the template.
        return Ok(Action::await_change());
    }
    let Some(uid) = template.uid() else {
        return Err(TemplateError::Incomplete(format!(
            "IsolationTemplate {}",
            template.name_any()
        )));
    };
    // A plan made from half-filled caches would delete what it cannot see matched. (`synced`,
    // not `wait_until_ready`: that wakes only the last of the reconciles waiting on it, and
    // with several templates the others would wait forever.)
    if !(super::synced(&context.namespaces).await && super::synced(&context.isolations).await) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    // validate (no client); a template that did not even decode is invalid as well
    let validated = match decode::undecodable(template) {
        Some(errors) => Err(errors),
        None => ValidatedTemplate::try_from(template),
    };
    let validated = match validated {
        Ok(validated) => validated,
        Err(errors) => {
            let note = format!("{errors}; nothing is generated or changed until it is fixed");
            if write_status(template, context, &TemplateOutcome::InvalidSpec(&errors)).await? {
                event(
                    context,
                    template,
                    EventType::Warning,
                    "InvalidSpec",
                    note,
                    None,
                );
            }
            return Ok(Action::await_change());
        }
    };
    // plan (no client)
    let plan = plan_from_caches(template, &validated, context);
    // apply and delete (client)
    let (plan, failure) = execute(template, &validated, &uid, context, plan).await;
    if let Some(error) = failure {
        let message = super::reconcile::error_message(&error);
        let outcome = TemplateOutcome::ApplyFailed {
            template: &validated,
            plan: &plan,
            message: message.clone(),
        };
        if let Err(status_error) = write_status(template, context, &outcome).await {
            tracing::warn!(error = %status_error, "failed to report ApplyFailed in status");
        }
        event(
            context,
            template,
            EventType::Warning,
            "ApplyFailed",
            message,
            None,
        );
        return Err(error);
    }
    let conflicts: Vec<String> = plan
        .conflicts
        .iter()
        .map(|conflict| conflict.namespace.clone())
        .collect();
    // Whether what it generated can do its job: a generated resource that reports Ready=False
    // (a policy name taken, a write refused) makes the template not Ready either.
    let isolations = context.isolations.state();
    let isolations: Vec<&Existing> = isolations.iter().map(|kept| kept.existing()).collect();
    let not_ready = template::not_ready(&validated, &plan, &isolations);
    let outcome = TemplateOutcome::Done {
        template: &validated,
        plan: &plan,
        not_ready: &not_ready,
    };
    if write_status(template, context, &outcome).await? && !conflicts.is_empty() {
        let note = format!(
            "not written in {} namespace(s): {}",
            conflicts.len(),
            conflicts.join(", ")
        );
        event(
            context,
            template,
            EventType::Warning,
            "Conflict",
            note,
            None,
        );
    }
    Ok(Action::requeue(RESYNC))
}

/// The plan for `validated` against the caches: namespaces, NamespaceIsolations, and the other
/// templates (valid, not being deleted).
fn plan_from_caches(
    template: &IsolationTemplate,
    validated: &ValidatedTemplate,
    context: &TemplateContext,
) -> TemplatePlan {
    let namespaces: Vec<NamespaceInfo> = context
        .namespaces
        .state()
        .iter()
        .map(|namespace| namespace.info())
        .collect();
    let isolations = context.isolations.state();
    let isolations: Vec<&Existing> = isolations.iter().map(|kept| kept.existing()).collect();
    let others: Vec<ValidatedTemplate> = context
        .templates
        .state()
        .iter()
        .filter(|other| other.uid() != template.uid())
        .filter(|other| other.metadata.deletion_timestamp.is_none())
        // A template netfence cannot read claims nothing: its salvaged spec (no selector, a spec
        // of defaults) must never make another template yield a namespace to it.
        .filter(|other| decode::undecodable(other.as_ref()).is_none())
        .filter_map(|other| ValidatedTemplate::try_from(other.as_ref()).ok())
        .collect();
    let others: Vec<&ValidatedTemplate> = others.iter().collect();
    template::plan(
        validated,
        &World {
            namespaces: &namespaces,
            isolations: &isolations,
            templates: &others,
            operator_namespace: context.operator_namespace.as_deref(),
        },
    )
}

/// Carry out the plan: every write is tried; the first error is returned beside the plan (with
/// the conflicts found on the way added to it).
async fn execute(
    template: &IsolationTemplate,
    validated: &ValidatedTemplate,
    uid: &str,
    context: &TemplateContext,
    mut plan: TemplatePlan,
) -> (TemplatePlan, Option<TemplateError>) {
    let applies = std::mem::take(&mut plan.apply);
    let results: Vec<Result<Written, TemplateError>> = stream::iter(applies)
        .map(|(reason, namespace)| {
            // Built when written, eight at a time: never every generated resource at once.
            let isolation = template::generated(validated, &namespace);
            apply_one(context, template, uid, reason, isolation)
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .chain(
            stream::iter(plan.delete.clone())
                .map(|removal| delete_one(context, template, removal))
                .buffer_unordered(WRITE_CONCURRENCY),
        )
        .collect()
        .await;
    let mut written = Vec::new();
    let mut failure = None;
    for result in results {
        match result {
            Ok(Written::Version(reference, version)) => written.push((reference, version)),
            Ok(Written::Conflict(conflict)) => plan.conflicts.push(conflict),
            Ok(Written::Nothing) => {}
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    plan.conflicts.sort();
    wait_until_shown(&context.isolations, &context.isolation_changes, &written).await;
    (plan, failure)
}

enum Written {
    /// Written: the object, and what the cache should come to show of it.
    Version(ObjectRef<Compact>, Wrote),
    /// The name is held by a resource the template does not own.
    Conflict(TemplateConflict),
    /// Nothing to do after all.
    Nothing,
}

async fn apply_one(
    context: &TemplateContext,
    template: &IsolationTemplate,
    uid: &str,
    reason: ApplyReason,
    isolation: NamespaceIsolation,
) -> Result<Written, TemplateError> {
    let name = isolation.name_any();
    // The plan names a namespace for every resource it generates.
    let Some(namespace) = isolation.namespace() else {
        return Err(TemplateError::Incomplete(format!(
            "NamespaceIsolation {name}"
        )));
    };
    let api: Api<Lenient<NamespaceIsolation>> = Api::namespaced(context.client.clone(), &namespace);
    let error = |verb, source| TemplateError::Write {
        verb,
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    };
    if reason == ApplyReason::Missing {
        // The cache may not have seen a resource created a moment ago: never take one over.
        if let Some(existing) = api
            .get_opt(&name)
            .await
            .map_err(|source| error("read", source))?
            && !template::is_generated_by(&into_typed(existing, &|_| {}), uid)
        {
            return Ok(Written::Conflict(TemplateConflict {
                namespace: namespace.clone(),
                reason: format!(
                    "NamespaceIsolation {name} exists and this template does not own it (written by hand or by GitOps); netfence never overwrites it: delete it to adopt the template, or list the namespace in spec.excludeNamespaces"
                ),
            }));
        }
    }
    let cache_key = ObjectRef::new(&name).within(&namespace);
    // Read before writing: the watch may deliver the write before its answer arrives.
    let before = context
        .isolations
        .get(&cache_key)
        .and_then(|cached| cached.meta().resource_version.clone());
    let mut body = serde_json::to_value(&isolation)
        .map_err(|source| error("apply", kube::Error::SerdeError(source)))?;
    if let Some(object) = body.as_object_mut() {
        object.remove("status");
    }
    let applied = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|source| error("apply", source))?;
    let verb = if reason == ApplyReason::Missing {
        "created"
    } else {
        "updated"
    };
    tracing::info!(namespace = %namespace, name = %name, "NamespaceIsolation {verb}");
    let reason_name = if reason == ApplyReason::Missing {
        "IsolationCreated"
    } else {
        "IsolationUpdated"
    };
    let note = format!("NamespaceIsolation {namespace}/{name} {verb} from the template");
    event(
        context,
        template,
        EventType::Normal,
        reason_name,
        note,
        Some(reference(&namespace, &name)),
    );
    Ok(Written::Version(
        cache_key,
        Wrote {
            version: applied.meta().resource_version.clone(),
            before,
        },
    ))
}

async fn delete_one(
    context: &TemplateContext,
    template: &IsolationTemplate,
    removal: Removal,
) -> Result<Written, TemplateError> {
    let api: Api<Lenient<NamespaceIsolation>> =
        Api::namespaced(context.client.clone(), &removal.namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: removal.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&removal.name, &params).await {
        Ok(_) => {
            tracing::info!(namespace = %removal.namespace, name = %removal.name, "NamespaceIsolation deleted");
            let note = format!(
                "NamespaceIsolation {}/{} deleted: the template no longer applies to the namespace",
                removal.namespace, removal.name
            );
            event(
                context,
                template,
                EventType::Normal,
                "IsolationDeleted",
                note,
                Some(reference(&removal.namespace, &removal.name)),
            );
            Ok(Written::Version(
                ObjectRef::new(&removal.name).within(&removal.namespace),
                Wrote {
                    version: None,
                    before: None,
                },
            ))
        }
        // Gone already, or replaced by another object (the uid precondition failed).
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            Ok(Written::Nothing)
        }
        Err(source) => Err(TemplateError::Write {
            verb: "delete",
            namespace: removal.namespace,
            name: removal.name,
            source,
        }),
    }
}

fn reference(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(NamespaceIsolation::api_version(&()).into_owned()),
        kind: Some(NamespaceIsolation::kind(&()).into_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        ..ObjectReference::default()
    }
}

/// Queue an Event about the template (see [`super::skeleton::event`]).
fn event(
    context: &TemplateContext,
    template: &IsolationTemplate,
    type_: EventType,
    reason: &str,
    note: String,
    related: Option<ObjectReference>,
) {
    super::skeleton::event(
        &context.events,
        template.object_ref(&()),
        type_,
        reason,
        note,
        related,
    );
}

/// Write the status when it changed (server-side apply on the status subresource). Returns
/// whether it wrote.
async fn write_status(
    template: &IsolationTemplate,
    context: &TemplateContext,
    outcome: &TemplateOutcome<'_>,
) -> Result<bool, TemplateError> {
    let new = status::template_status(
        outcome,
        template.metadata.generation,
        template.status.as_ref(),
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
    if template.status.as_ref() == Some(&new) {
        return Ok(false);
    }
    let api: Api<Lenient<IsolationTemplate>> = Api::all(context.client.clone());
    let written = super::apply_status(&api, &template.name_any(), &new)
        .await
        .map_err(|source| TemplateError::Status {
            name: template.name_any(),
            source,
        })?;
    // The next reconcile must see this status, or it would write it again.
    wait_until_shown(
        &context.templates,
        &context.template_changes,
        &[(
            ObjectRef::new(&template.name_any()),
            Wrote {
                version: written.meta().resource_version.clone(),
                before: template.metadata.resource_version.clone(),
            },
        )],
    )
    .await;
    Ok(true)
}
