//! One reconcile of one NamespaceIsolation, as named steps:
//!
//! ```text
//! read -> finalize? -> validate -> render -> observe -> plan -> apply + prune (Enforce) -> status
//! ```
//!
//! A reconcile reads its resource from the API server first (the cache keeps only who it is,
//! see `compact`): one that is gone is not reconciled, one being deleted gets no write but its
//! finalizer's (see [`Liveness`]). An invalid spec stops after `validate` with status
//! `InvalidSpec`: nothing in the cluster changes. A failed write stops with status
//! `ApplyFailed` and an error, so the controller retries with this resource's backoff.

use std::{collections::BTreeMap, sync::Arc};

use tracing::Instrument;

use k8s_openapi::{
    api::{core::v1::Namespace, networking::v1::NetworkPolicy},
    apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{controller::Action, events::EventType, reflector::ObjectRef},
};
use netfence_core::{
    ValidatedIsolation, audit,
    meta::{ISOLATION_LABEL, MANAGED_BY, MANAGED_BY_LABEL},
    observed::{Facts, Observed},
    plan::{self, ApplyReason, is_owned_by},
    render::{self, PolicyRole},
    status::{self, Outcome},
};
use netfence_crd::{
    NamespaceIsolation,
    isolation::{DeletionPolicy, Mode, PlannedChanges},
};

use super::{
    Compact, Context, FIELD_MANAGER, FINALIZER,
    decode::{Lenient, into_typed},
    skeleton::CACHE_WAIT,
};

/// How long a resource whose policy names are taken by foreign policies waits to look again,
/// should no watch event wake it first (see the end of `reconcile_steps`).
const CONFLICT_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// How often every resource is reconciled without any event: the backstop for what no watch
/// reports. One trigger for every resource ([`resync`]), not a requeue of each: kube's
/// scheduler keeps two copies of the reference of every resource it holds, about 8 MB at
/// 10,000 resources only to wait an hour.
const RESYNC: std::time::Duration = std::time::Duration::from_secs(3600);

/// A tick every [`RESYNC`], the first one [`RESYNC`] after the start (the first list
/// reconciles every resource).
pub(crate) fn resync() -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold((), |()| async {
        tokio::time::sleep(RESYNC).await;
        Some(((), ()))
    })
}

/// How long a resource waits when a policy it renders is still owned by an earlier resource of
/// its name (being garbage-collected or orphaned); that policy's change usually wakes it first.
const PENDING_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a reconcile did not complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The resource has no namespace or UID (it did not come from an API server).
    #[error("NamespaceIsolation {0} has no namespace or uid")]
    Incomplete(String),
    /// A NetworkPolicy write failed.
    #[error("failed to {verb} NetworkPolicy {namespace}/{name}")]
    Write {
        /// read, apply, orphan or delete.
        verb: &'static str,
        /// The namespace.
        namespace: String,
        /// The policy name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A managed NetworkPolicy the intent audit needs whole could not be read.
    #[error("failed to read NetworkPolicy {namespace}/{name}")]
    ReadPolicy {
        /// The namespace.
        namespace: String,
        /// The policy name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The NetworkPolicies of a namespace could not be listed.
    #[error("failed to list the NetworkPolicies of namespace {namespace}")]
    List {
        /// The namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The resource could not be read at the start of a reconcile.
    #[error("failed to read NamespaceIsolation {namespace}/{name}")]
    Read {
        /// The namespace.
        namespace: String,
        /// The resource name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A status or finalizer write failed.
    #[error("failed to update NamespaceIsolation {namespace}/{name}")]
    Update {
        /// The namespace.
        namespace: String,
        /// The resource name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl super::skeleton::ReconcileError for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Incomplete(_) => "incomplete",
            Error::Write { .. } => "policy_write",
            Error::List { .. } => "policy_list",
            Error::ReadPolicy { .. } => "policy_read",
            Error::Read { .. } => "resource_read",
            Error::Update { .. } => "resource_update",
        }
    }
}

/// Reconcile one NamespaceIsolation, and keep its failure count for the backoff.
pub async fn reconcile(resource: Arc<Compact>, context: Arc<Context>) -> Result<Action, Error> {
    // The permits close when the controller is asked to stop: a reconcile still waiting for
    // one then writes nothing (the watches are cut, its caches would no longer move on).
    let Ok(_permit) = context.permits.acquire().await else {
        return Ok(Action::await_change());
    };
    // The reconcile itself is allocated once it has a permit: kube's runner holds many waiting
    // reconciles (see `WAITING_PER_PERMIT`), and each would otherwise take the room of the
    // whole reconcile while it waits.
    Box::pin(reconcile_with_permit(resource, context.clone())).await
}

/// [`reconcile`], once it holds a permit.
async fn reconcile_with_permit(
    resource: Arc<Compact>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let _working = context.events.working();
    context.metrics.reconciles.inc();
    let started = std::time::Instant::now();
    let key = ObjectRef::from_obj(resource.as_ref());
    let namespace = key.namespace.clone().unwrap_or_default();
    let span = tracing::info_span!("reconcile", namespace = %namespace, name = %key.name);
    let result = async {
        // The cache keeps who the resource is, not its spec and status: read them now, from
        // the API server (see `compact`). Gone: nothing is left to reconcile.
        let api: Api<Lenient<NamespaceIsolation>> =
            Api::namespaced(context.client.clone(), &namespace);
        let found = api.get_opt(&key.name).await.map_err(|source| Error::Read {
            namespace: namespace.clone(),
            name: key.name.clone(),
            source,
        })?;
        match found {
            Some(found) => reconcile_steps(&into_typed(found, &|_| {}), &context).await,
            None => Ok(Action::await_change()),
        }
    }
    .instrument(span)
    .await;
    context
        .metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    context.failures.record(&key, &result, &context.metrics);
    result
}

#[allow(clippy::too_many_lines)] // the named steps, in order, read best as one function
async fn reconcile_steps(
    resource: &NamespaceIsolation,
    context: &Context,
) -> Result<Action, Error> {
    let (Some(namespace), Some(uid)) = (resource.namespace(), resource.uid()) else {
        return Err(Error::Incomplete(resource.name_any()));
    };
    // Before the policies' first list is in, every policy would look missing: a restart would
    // apply them all again and report drift that is not there.
    // The same for the foreign cache, which holds the policies kept by an earlier resource.
    context.policies.wait_synced().await;
    context.foreign.wait_synced().await;
    let observed = observe(context, &namespace);

    if resource.metadata.deletion_timestamp.is_some() {
        context.proofs.forget(&namespace, &resource.name_any());
        finalize(resource, context, &namespace).await?;
        return Ok(Action::await_change());
    }
    let liveness = Liveness::read_now(resource);
    if !ensure_finalizer(resource, context, &namespace, &liveness).await? {
        return Ok(Action::await_change());
    }

    // validate (no client); a resource that did not even decode is invalid as well
    let validated = match super::decode::undecodable(resource) {
        Some(errors) => Err(errors),
        None => ValidatedIsolation::try_from(resource),
    };
    let isolation = match validated {
        Ok(isolation) => isolation,
        Err(errors) => {
            // What is left in the cluster is what this resource owns: kept policies, or none.
            let policies = owned_names(&observed, &uid);
            let note = status::invalid_message(&errors, &policies);
            let outcome = Outcome::InvalidSpec { errors, policies };
            if write_status(resource, context, &namespace, &outcome, &liveness, None).await? {
                event(context, resource, EventType::Warning, "InvalidSpec", note);
            }
            return Ok(Action::await_change());
        }
    };
    // render (no client)
    let desired = render::network_policies(&isolation);
    // plan (no client)
    let plan = plan::plan(&desired, &observed, &uid);

    if isolation.mode() == Mode::DryRun {
        let mut update = changed(&plan, ApplyReason::Drifted);
        update.extend(changed(&plan, ApplyReason::Adopted));
        let planned = PlannedChanges {
            create: changed(&plan, ApplyReason::Missing),
            update,
            delete: plan.delete.clone(),
        };
        let outcome = Outcome::DryRun {
            policies: owned_names(&observed, &uid),
            planned,
        };
        write_status(
            resource,
            context,
            &namespace,
            &outcome,
            &liveness,
            Some((&isolation, &desired)),
        )
        .await?;
        return Ok(Action::await_change());
    }

    // An earlier resource of this name still owns some of these names: it is gone, and its
    // policies are about to be deleted or orphaned. Nothing is written (and no conflict
    // reported) until they are; their change wakes this resource.
    if !plan.pending.is_empty() {
        tracing::info!(policies = ?plan.pending, "waiting for an earlier resource of this name to release its NetworkPolicies");
        return Ok(Action::requeue(PENDING_RECHECK));
    }

    // apply and prune (client). If a policy netfence does not own holds the default deny's
    // name, nothing is written: netfence's allows must never go out without netfence's deny.
    let deny = PolicyRole::DefaultDeny.policy_name(&resource.name_any());
    let mut written = Written::default();
    let result = if plan.conflicts.contains(&deny) || plan.is_empty() {
        Ok(())
    } else if liveness.confirm() {
        apply_plan(context, resource, &namespace, &uid, &plan, &mut written).await
    } else {
        return Ok(Action::await_change());
    };
    let policies = existing_policies(&observed, &uid, &written);
    if let Err(error) = result {
        let message = error_message(&error);
        let outcome = Outcome::ApplyFailed {
            message: message.clone(),
            policies,
        };
        if let Err(status_error) = write_status(
            resource,
            context,
            &namespace,
            &outcome,
            &liveness,
            Some((&isolation, &desired)),
        )
        .await
        {
            tracing::warn!(error = %error_message(&status_error), "failed to report ApplyFailed in status");
        }
        event(
            context,
            resource,
            EventType::Warning,
            "ApplyFailed",
            message,
        );
        return Err(error);
    }
    let mut conflicts = plan.conflicts.clone();
    conflicts.extend(written.conflicts.iter().cloned());
    let outcome = if conflicts.is_empty() {
        Outcome::Reconciled { policies }
    } else {
        Outcome::ApplyFailed {
            message: status::taken_message(&conflicts, &deny),
            policies,
        }
    };
    let wrote = write_status(
        resource,
        context,
        &namespace,
        &outcome,
        &liveness,
        Some((&isolation, &desired)),
    )
    .await?;
    if wrote && let Outcome::ApplyFailed { message, .. } = outcome {
        event(
            context,
            resource,
            EventType::Warning,
            "ApplyFailed",
            message,
        );
    }
    // The change of any policy that may hold a name (a hand-written or kept one: the foreign
    // watch; a labelled one nobody controls: netfence's watch) reconciles the resources of its
    // namespace, so a freed name is written at once. The recheck is a backstop for what no
    // watch reports (a name held by another resource's policy).
    Ok(if conflicts.is_empty() {
        Action::await_change()
    } else {
        Action::requeue(CONFLICT_RECHECK)
    })
}

/// Whether this reconcile may still write for its resource: known from the API server (not
/// from the cache), where the reconcile read the resource when it began.
///
/// The caches lag: a reconcile queued by the deletion of a deleted resource's policies would
/// run with that resource still cached, take the policies for drift, and write them back, owned
/// by a UID that no longer exists (garbage collection removes them again, but not the Event
/// that said they "differed from the spec and were restored"). Read from the API server, a
/// deleted resource is not found and nothing is reconciled. What is written between the read
/// and the write for a resource deleted meanwhile is the garbage collector's to remove.
struct Liveness {
    current: bool,
}

impl Liveness {
    /// For `resource` as this reconcile read it from the API server: it exists, and is going
    /// only if it says so.
    fn read_now(resource: &NamespaceIsolation) -> Self {
        Liveness {
            current: resource.metadata.deletion_timestamp.is_none(),
        }
    }

    /// True while the resource exists with this UID and is not being deleted.
    fn confirm(&self) -> bool {
        if !self.current {
            tracing::debug!("the resource is being deleted: nothing is written for it");
        }
        self.current
    }
}

/// The names of the policies that exist and are this resource's after this reconcile: those it
/// owned before, and those it wrote, less those it deleted (or found gone).
fn existing_policies(observed: &[Observed], uid: &str, written: &Written) -> Vec<String> {
    let mut names: std::collections::BTreeSet<String> =
        owned_names(observed, uid).into_iter().collect();
    names.extend(
        written
            .created
            .iter()
            .chain(&written.updated)
            .chain(&written.restored)
            .chain(&written.adopted)
            .cloned(),
    );
    for name in written.deleted.iter().chain(&written.vanished) {
        names.remove(name);
    }
    names.into_iter().collect()
}

/// The policies of the namespace a plan needs, from the caches (no API call): those that carry
/// the managed-by label, and of the others those that carry netfence's isolation label (kept by
/// an earlier resource, which removed their managed-by label; or netfence's own, stripped of it
/// by someone). [`plan::plan`] tells this resource's own from the others; a policy moving
/// between the caches may be in both, and the plan takes the first: netfence's own cache's.
fn observe(context: &Context, namespace: &str) -> Vec<Observed> {
    let mut observed = context.policies.in_namespace(namespace);
    observed.extend(
        context
            .foreign
            .in_namespace(namespace)
            .iter()
            .filter(|policy| {
                policy
                    .metadata
                    .labels
                    .as_ref()
                    .is_some_and(|labels| labels.contains_key(ISOLATION_LABEL))
            })
            .map(Observed::of),
    );
    observed
}

/// The names of the policies this resource owns.
fn owned_names(policies: &[Observed], uid: &str) -> Vec<String> {
    policies
        .iter()
        .filter(|policy| policy.facts.controlled_by(uid))
        .map(|policy| policy.name.clone())
        .collect()
}

/// The namespace's policies that carry the managed-by label, whole, for the intent audit. One
/// whose spec is the spec of the policy of that name in `desired` (the render) is that rendered
/// policy (its digest says so; names, namespace and spec are all a proof reads); any other
/// (another resource's, or not yet restored) is read from the API server.
async fn whole_policies(
    context: &Context,
    namespace: &str,
    desired: &[NetworkPolicy],
) -> Result<Vec<NetworkPolicy>, Error> {
    // Only the managed ones: the audit takes the others whole from the foreign cache.
    let observed = context.policies.in_namespace(namespace);
    if observed.len() > super::audit::MAX_POLICIES {
        // More than the audit proves: it counts them and reads none (nor is any read here).
        return Ok(observed
            .into_iter()
            .map(|policy| NetworkPolicy {
                metadata: ObjectMeta {
                    name: Some(policy.name),
                    ..ObjectMeta::default()
                },
                ..NetworkPolicy::default()
            })
            .collect());
    }
    // Read leniently: a policy that does not decode is salvaged, never a failed status write.
    let api: Api<Lenient<NetworkPolicy>> = Api::namespaced(context.client.clone(), namespace);
    let mut whole = Vec::new();
    for observed in observed {
        let rendered = desired
            .iter()
            .find(|policy| policy.metadata.name.as_deref() == Some(observed.name.as_str()));
        if let Some(rendered) = rendered.filter(|rendered| observed.facts.same_spec(rendered)) {
            whole.push(rendered.clone());
            continue;
        }
        match api.get_opt(&observed.name).await {
            Ok(Some(found)) => {
                let mut policy = into_typed(found, &|_| {});
                policy.metadata.managed_fields = None;
                whole.push(policy);
            }
            // Deleted since: its event is on its way and reconciles again.
            Ok(None) => {}
            Err(source) => {
                return Err(Error::ReadPolicy {
                    namespace: namespace.to_owned(),
                    name: observed.name,
                    source,
                });
            }
        }
    }
    Ok(whole)
}

fn changed(plan: &plan::Plan, reason: ApplyReason) -> Vec<String> {
    plan.apply
        .iter()
        .filter(|(why, _)| *why == reason)
        .filter_map(|(_, policy)| policy.metadata.name.clone())
        .collect()
}

/// What one reconcile wrote, for its Events and status.
#[derive(Debug, Default)]
struct Written {
    created: Vec<String>,
    updated: Vec<String>,
    restored: Vec<String>,
    adopted: Vec<String>,
    deleted: Vec<String>,
    /// Deleted by someone else before this reconcile could.
    vanished: Vec<String>,
    /// Rendered names held by a policy netfence does not own (found by listing).
    conflicts: Vec<String>,
}

/// Apply and prune, recording in `written` what was written, and the names of policies that
/// could not be created because an object netfence does not own already holds the name (a
/// missing policy is created, which the API server refuses while the name is held: netfence
/// never takes over a hand-written policy; see [`create_missing`]).
async fn apply_plan(
    context: &Context,
    resource: &NamespaceIsolation,
    namespace: &str,
    uid: &str,
    plan: &plan::Plan,
    written: &mut Written,
) -> Result<(), Error> {
    let result = apply_and_prune(context, resource, namespace, uid, plan, written).await;
    publish_written(context, resource, written);
    result
}

/// The metadata of the namespace's NetworkPolicies, by name: who holds each name now.
async fn list_held(
    api: &Api<NetworkPolicy>,
    namespace: &str,
) -> Result<BTreeMap<String, ObjectMeta>, Error> {
    Ok(api
        .list_metadata(&ListParams::default())
        .await
        .map_err(|source| Error::List {
            namespace: namespace.to_owned(),
            source,
        })?
        .items
        .into_iter()
        .filter_map(|found| Some((found.metadata.name.clone()?, found.metadata)))
        .collect())
}

/// What became of a policy the caches did not hold (see [`create_missing`]).
enum Created {
    /// Written (created, or applied to this resource's own or a kept policy: `adopted`), at
    /// this resourceVersion.
    Written {
        version: Option<String>,
        adopted: bool,
    },
    /// Held by a policy netfence does not own: reported, never written.
    Taken,
}

/// Write a policy the caches do not hold, by a create: it fails when anything holds the name,
/// so netfence never writes into a policy it does not own, however far behind its caches are
/// (an apply would merge into whatever holds the name). A name the cache of the other policies
/// shows held skips the create. A held name is then looked up in a list of the namespace (one
/// per reconcile, again when the list predates the holder): someone else's is taken; this
/// resource's own, or a kept one (adopted), is applied with the listed object's uid, so that
/// the apply fails (422 for another uid, 409 when gone) if the name changed hands since the
/// list: then the name is listed and decided again, once. Created policies carry netfence's
/// field manager as an update, not an apply; every field netfence writes is set again by each
/// apply (its labels are fixed by the name, owner references are removed only by a write that
/// removes them), so that entry never keeps a field netfence dropped.
#[allow(clippy::too_many_arguments)] // one reconcile's state, passed as it is
async fn create_missing(
    context: &Context,
    api: &Api<NetworkPolicy>,
    namespace: &str,
    uid: &str,
    plan: &plan::Plan,
    policy: &NetworkPolicy,
    name: &str,
    found: &mut Option<BTreeMap<String, ObjectMeta>>,
) -> Result<Created, Error> {
    let create_params = PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_owned()),
    };
    let apply_params = PatchParams::apply(FIELD_MANAGER).force();
    let write_error = |verb, source| Error::Write {
        verb,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source,
    };
    let body = plan::apply_body(policy);
    let mut create = context.foreign.get(namespace, name).is_none();
    let mut rounds = 0;
    loop {
        rounds += 1;
        let last = rounds >= 2;
        if create {
            match api.create(&create_params, &body).await {
                Ok(created) => {
                    return Ok(Created::Written {
                        version: created.metadata.resource_version,
                        adopted: false,
                    });
                }
                Err(kube::Error::Api(status))
                    if !last && status.code == 409 && status.reason == "AlreadyExists" => {}
                Err(source) => return Err(write_error("create", source)),
            }
        }
        if !found.as_ref().is_some_and(|found| found.contains_key(name)) {
            *found = Some(list_held(api, namespace).await?);
        }
        let listed = found.get_or_insert_with(BTreeMap::new);
        let holder = plan::holder(plan, name, listed, uid);
        match holder {
            plan::Holder::Other => return Ok(Created::Taken),
            // Gone since the create was refused, or the other cache was behind.
            plan::Holder::Nobody => create = true,
            plan::Holder::This | plan::Holder::Kept => {
                let mut body = body.clone();
                body.metadata.uid = listed.get(name).and_then(|held| held.uid.clone());
                match api.patch(name, &apply_params, &Patch::Apply(body)).await {
                    Ok(applied) => {
                        return Ok(Created::Written {
                            version: applied.metadata.resource_version,
                            adopted: holder == plan::Holder::Kept,
                        });
                    }
                    // Another object under the name now (422), or none (409): decide again.
                    Err(kube::Error::Api(status))
                        if !last && (status.code == 409 || status.code == 422) =>
                    {
                        *found = None;
                        create = true;
                    }
                    Err(source) => return Err(write_error("apply", source)),
                }
            }
        }
    }
}

/// Apply a policy the caches hold (changed, or kept and adopted) as netfence's field manager,
/// taking over the fields someone else set.
async fn apply_owned(
    api: &Api<NetworkPolicy>,
    namespace: &str,
    name: &str,
    policy: &NetworkPolicy,
) -> Result<Created, Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api
        .patch(name, &params, &Patch::Apply(plan::apply_body(policy)))
        .await
        .map_err(|source| Error::Write {
            verb: "apply",
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })?;
    Ok(Created::Written {
        version: applied.metadata.resource_version,
        adopted: false,
    })
}

async fn apply_and_prune(
    context: &Context,
    resource: &NamespaceIsolation,
    namespace: &str,
    uid: &str,
    plan: &plan::Plan,
    done: &mut Written,
) -> Result<(), Error> {
    let api: Api<NetworkPolicy> = Api::namespaced(context.client.clone(), namespace);
    let mut versions: Vec<(String, Option<String>)> = Vec::new();
    // Before any write: the watch may deliver a write before its answer arrives.
    let names: Vec<String> = plan
        .apply
        .iter()
        .filter_map(|(_, policy)| policy.metadata.name.clone())
        .chain(plan.delete.iter().cloned())
        .collect();
    let tracked = context.policies.track(namespace, &names);
    let deny = PolicyRole::DefaultDeny.policy_name(&resource.name_any());
    let mut found = None;
    for (reason, policy) in &plan.apply {
        let Some(name) = policy.metadata.name.clone() else {
            continue; // render names every policy
        };
        let writing = context
            .own_policies
            .begin::<NetworkPolicy>(namespace, &name);
        let mut adopted = *reason == ApplyReason::Adopted;
        let created = if *reason == ApplyReason::Missing {
            create_missing(
                context, &api, namespace, uid, plan, policy, &name, &mut found,
            )
            .await?
        } else {
            apply_owned(&api, namespace, &name, policy).await?
        };
        let version = match created {
            Created::Written {
                version,
                adopted: kept,
            } => {
                adopted |= kept;
                version
            }
            Created::Taken => {
                done.conflicts.push(name.clone());
                if name == deny {
                    // Fail closed: never netfence's allows without its deny (see
                    // reconcile_steps). The deny renders first, so nothing went out, and
                    // nothing more does, deletes included.
                    wait_for_cache(context, namespace, &tracked, &versions).await;
                    return Ok(());
                }
                continue;
            }
        };
        writing.done(version.as_deref());
        versions.push((name.clone(), version));
        context.metrics.policies_applied.inc();
        if plan::is_drift(
            resource.status.as_ref(),
            resource.metadata.generation,
            *reason,
            &name,
        ) {
            context.metrics.drift_corrections.inc();
            tracing::info!(policy = %name, "drift corrected");
            done.restored.push(name);
        } else if adopted {
            tracing::info!(policy = %name, "adopted");
            done.adopted.push(name);
        } else if *reason == ApplyReason::Missing {
            tracing::info!(policy = %name, "created");
            done.created.push(name);
        } else {
            tracing::info!(policy = %name, "updated");
            done.updated.push(name);
        }
    }
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {
                versions.push((name.clone(), None));
                context.metrics.policies_deleted.inc();
                tracing::info!(policy = %name, "deleted");
                done.deleted.push(name.clone());
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                done.vanished.push(name.clone());
            }
            Err(source) => {
                return Err(Error::Write {
                    verb: "delete",
                    namespace: namespace.to_owned(),
                    name: name.clone(),
                    source,
                });
            }
        }
    }
    wait_for_cache(context, namespace, &tracked, &versions).await;
    Ok(())
}

/// One Event per kind of change a reconcile made (not one per policy: a namespace converging
/// writes 9 policies, and Events are writes too), each naming the policies.
fn publish_written(context: &Context, resource: &NamespaceIsolation, written: &Written) {
    let notes = [
        (
            "DriftCorrected",
            &written.restored,
            "differed from the spec and was restored",
            "differed from the spec and were restored",
        ),
        ("PolicyApplied", &written.created, "created", "created"),
        ("PolicyApplied", &written.updated, "updated", "updated"),
        (
            "PolicyApplied",
            &written.adopted,
            "adopted (kept without owner by an earlier NamespaceIsolation of this name)",
            "adopted (kept without owner by an earlier NamespaceIsolation of this name)",
        ),
        (
            "PolicyDeleted",
            &written.deleted,
            "is no longer rendered and was deleted",
            "are no longer rendered and were deleted",
        ),
    ];
    for (reason, names, one, many) in notes {
        let note = match names.as_slice() {
            [] => continue,
            [name] => format!("NetworkPolicy {name} {one}"),
            names => format!("NetworkPolicies {} {many}", names.join(", ")),
        };
        event(context, resource, EventType::Normal, reason, note);
    }
}

/// Wait until the reflector has seen every written policy: the watch delivered the version the
/// write returned (the cache then holds it, or a later version someone else wrote since), or no
/// longer holds a deleted one. The status write that follows triggers another reconcile; with a
/// stale cache that reconcile would take its own fresh policies for missing ones and write them
/// again (and call it drift). A tenant's write that lands right after netfence's must end the
/// wait at once, not hold the reconcile (and the restoration that write calls for) for the
/// whole [`CACHE_WAIT`]: the wait never compares resourceVersions, it asks whether this write
/// went past. After [`CACHE_WAIT`] it goes on: the next event corrects anything.
async fn wait_for_cache(
    context: &Context,
    namespace: &str,
    tracked: &super::cache::Tracked<Facts>,
    written: &[(String, Option<String>)],
) {
    if written.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + CACHE_WAIT;
    let seen = context
        .policies
        .wait_until_in(namespace, deadline, |cache| {
            written.iter().all(|(name, version)| match version {
                Some(version) => {
                    cache.holds(namespace, name, Some(version))
                        || tracked.delivered(namespace, name, version)
                }
                None => cache.holds(namespace, name, None),
            })
        })
        .await;
    if !seen {
        tracing::debug!("the policy cache did not catch up with this reconcile's writes");
    }
}

/// Queue an Event about the resource (see [`super::skeleton::event`]).
fn event(
    context: &Context,
    resource: &NamespaceIsolation,
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

/// Patch the status only when it changed, and only for a resource that is still there (see
/// [`Liveness`]): a steady-state reconcile writes nothing. The status holds the intent audit
/// too (conditions `Isolated` and `DNSReachable`, see [`super::audit`]): computed here, from
/// the caches as this reconcile left them, and written with the rest. Returns whether it wrote.
async fn write_status(
    resource: &NamespaceIsolation,
    context: &Context,
    namespace: &str,
    outcome: &Outcome,
    liveness: &Liveness,
    valid: Option<(&ValidatedIsolation, &[NetworkPolicy])>,
) -> Result<bool, Error> {
    let isolation = valid.map(|(isolation, _)| isolation);
    context.foreign.wait_synced().await;
    context.dns.settled().await;
    context.cluster_wide.settled().await;
    if isolation.is_some() {
        context.cluster_wide.namespaces_settled().await;
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut new = status::status(
        outcome,
        resource.metadata.generation,
        resource.status.as_ref(),
        now.clone(),
    );
    let previous = resource
        .status
        .as_ref()
        .map_or(&[][..], |status| status.conditions.as_slice());
    // A shared service naming a namespace that does not exist (yet) allows nothing: a warning
    // in Ready's message, not a failure (GitOps may create the namespace later; its creation
    // reconciles this resource, see `IsolationIndex::naming`). Unknown (no namespace cache when
    // watching one namespace, or before its first list): no warning.
    let warnings = match isolation {
        Some(_) => status::missing_namespaces(&resource.spec.shared_services, |name| {
            context.cluster_wide.namespace_exists(name) != Some(false)
        }),
        None => Vec::new(),
    };
    status::warn(&mut new, &warnings);
    let managed = match valid {
        Some((_, desired)) => whole_policies(context, namespace, desired).await?,
        // An invalid spec has no intent to prove.
        None => Vec::new(),
    };
    let found = super::audit::audit(context, resource, isolation, namespace, managed);
    audit::merge(
        &mut new,
        audit::part(&found, resource.metadata.generation, previous, &now),
    );
    if resource.status.as_ref() == Some(&new) || !liveness.confirm() {
        return Ok(false);
    }
    let api: Api<Lenient<NamespaceIsolation>> = Api::namespaced(context.client.clone(), namespace);
    let writing = context
        .own_isolations
        .begin::<NamespaceIsolation>(namespace, &resource.name_any());
    let written = match super::apply_status(&api, &resource.name_any(), &new).await {
        Ok(written) => written,
        // Deleted since it was read back: there is nobody left to tell.
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(false),
        Err(source) => return Err(update_error(resource, namespace, source)),
    };
    // Only a status written for the generation it describes is this reconcile's own: if the
    // spec changed meanwhile, the event of this write (after a relist perhaps the only one
    // left of that edit) must reconcile.
    let written_meta = kube::Resource::meta(&written);
    writing.done(
        written_meta
            .resource_version
            .as_deref()
            .filter(|_| written_meta.generation == resource.metadata.generation),
    );
    audit_events(context, resource, previous, &new.conditions);
    warning_events(context, resource, previous, &new.conditions, &warnings);
    Ok(true)
}

/// An Event for each audit condition that changed: Warning unless it is now `True` (and none
/// for a first `True`, which every new resource reaches, nor for a `True` whose message alone
/// changed).
fn audit_events(
    context: &Context,
    resource: &NamespaceIsolation,
    previous: &[Condition],
    conditions: &[Condition],
) {
    for type_ in [audit::ISOLATED, audit::DNS_REACHABLE] {
        let find = |conditions: &[Condition]| {
            conditions
                .iter()
                .find(|condition| condition.type_ == type_)
                .map(|condition| {
                    (
                        condition.status.clone(),
                        condition.reason.clone(),
                        condition.message.clone(),
                    )
                })
        };
        let (before, after) = (find(previous), find(conditions));
        let Some((status, reason, message)) = after else {
            continue;
        };
        // A new status or reason; or, while not True, new findings. A True whose message only
        // counts the policies differently is no news.
        let news = match &before {
            None => status != "True",
            Some((was, was_reason, was_message)) => {
                *was != status
                    || *was_reason != reason
                    || (status != "True" && *was_message != message)
            }
        };
        if !news {
            continue;
        }
        // What is about the cluster rather than this resource (cluster-wide kinds or the DNS
        // namespace not read yet, a Role missing) is logged once by the cache, not repeated as
        // an Event on every resource; a declared `dns.enabled: false` is no news either.
        if reason == "ClusterWideUnknown"
            || (type_ == audit::DNS_REACHABLE && (reason == "Unknown" || reason == "Disabled"))
        {
            continue;
        }
        let (type_of_event, event_reason) = match (type_, status.as_str()) {
            (audit::ISOLATED, "True") => (EventType::Normal, "Isolated".to_owned()),
            (audit::ISOLATED, "False") => (EventType::Warning, reason),
            (audit::ISOLATED, _) => (EventType::Warning, "IsolationUnknown".to_owned()),
            (_, "True") => (EventType::Normal, "DNSReachable".to_owned()),
            (_, _) => (EventType::Warning, format!("DNS{reason}")),
        };
        event(context, resource, type_of_event, &event_reason, message);
    }
}

/// A Warning Event `NamespaceNotFound` for each warning that Ready's message did not carry
/// before and carries now (once, not at every status write).
fn warning_events(
    context: &Context,
    resource: &NamespaceIsolation,
    previous: &[Condition],
    conditions: &[Condition],
    warnings: &[String],
) {
    let message = |conditions: &[Condition]| {
        conditions
            .iter()
            .find(|condition| condition.type_ == status::READY && condition.status == "True")
            .map(|condition| condition.message.clone())
            .unwrap_or_default()
    };
    let (before, now) = (message(previous), message(conditions));
    for warning in warnings {
        if now.contains(warning.as_str()) && !before.contains(warning.as_str()) {
            event(
                context,
                resource,
                EventType::Warning,
                "NamespaceNotFound",
                warning.clone(),
            );
        }
    }
}

fn update_error(resource: &NamespaceIsolation, namespace: &str, source: kube::Error) -> Error {
    Error::Update {
        namespace: namespace.to_owned(),
        name: resource.name_any(),
        source,
    }
}

/// `Orphan` and `KeepDefaultDeny` need a finalizer to act before the owner is gone; `Delete`
/// needs none (garbage collection removes the policies). Returns false when the resource is gone
/// or being deleted (see [`Liveness`]): the reconcile then writes nothing.
async fn ensure_finalizer(
    resource: &NamespaceIsolation,
    context: &Context,
    namespace: &str,
    liveness: &Liveness,
) -> Result<bool, Error> {
    let wanted = resource.spec.deletion_policy != DeletionPolicy::Delete;
    let present = resource.finalizers().iter().any(|f| f == FINALIZER);
    if wanted == present {
        return Ok(true);
    }
    if !liveness.confirm() {
        return Ok(false);
    }
    let mut finalizers: Vec<String> = resource
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if wanted {
        finalizers.push(FINALIZER.to_owned());
    }
    patch_finalizers(resource, context, namespace, finalizers).await?;
    Ok(true)
}

async fn patch_finalizers(
    resource: &NamespaceIsolation,
    context: &Context,
    namespace: &str,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let api: Api<Lenient<NamespaceIsolation>> = Api::namespaced(context.client.clone(), namespace);
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": resource.resource_version()}
    });
    match api
        .patch(
            &resource.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        // Gone already: no finalizer left to add or release.
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(update_error(resource, namespace, source)),
    }
}

/// Carry out the deletion policy, then release the finalizer. A resource whose namespace is
/// being deleted releases it at once: it never blocks the namespace.
async fn finalize(
    resource: &NamespaceIsolation,
    context: &Context,
    namespace: &str,
) -> Result<(), Error> {
    if !resource.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    // The cache may still hold a resource whose finalizer an earlier reconcile released (it is
    // gone since): read it back, and carry out its deletion policy only while it holds the
    // finalizer. Its finalizers are then released from what the API server has.
    let isolations: Api<Lenient<NamespaceIsolation>> =
        Api::namespaced(context.client.clone(), namespace);
    let current = match isolations.get_opt(&resource.name_any()).await {
        Ok(Some(found)) if found.uid() == resource.uid() => into_typed(found, &|_| {}),
        Ok(_) => return Ok(()),
        Err(source) => {
            return Err(Error::Read {
                namespace: namespace.to_owned(),
                name: resource.name_any(),
                source,
            });
        }
    };
    if !current.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let resource = &current;
    let namespaces: Api<Namespace> = Api::all(context.client.clone());
    let namespace_going = match namespaces.get_opt(namespace).await {
        Ok(Some(found)) => found.metadata.deletion_timestamp.is_some(),
        Ok(None) => true,
        // A namespace-scoped installation (`--namespace`) holds Roles only; the chart's grants
        // the read of the watched Namespace by name, roles of one's own may not. Carrying out
        // the deletion policy is right either way (patches are allowed in a terminating
        // namespace); only the shortcut for a namespace that is going is lost.
        Err(kube::Error::Api(status)) if status.code == 403 => false,
        Err(source) => return Err(update_error(resource, namespace, source)),
    };
    if !namespace_going {
        // A resource read from the API server has a UID; one without is refused, never taken
        // for an owner of nothing (that would orphan or delete what it owns).
        let Some(uid) = resource.uid() else {
            return Err(Error::Incomplete(resource.name_any()));
        };
        let api: Api<NetworkPolicy> = Api::namespaced(context.client.clone(), namespace);
        // Every policy it owns, read from the API server: the cache holds only the labelled
        // ones, and a policy whose label a tenant removed is still this resource's to keep
        // (its deny must not go to the garbage collector under KeepDefaultDeny).
        let owned: Vec<NetworkPolicy> = list_held(&api, namespace)
            .await?
            .into_values()
            .map(|metadata| NetworkPolicy {
                metadata,
                ..NetworkPolicy::default()
            })
            .filter(|policy| is_owned_by(policy, &uid))
            .collect();
        for policy in &owned {
            let Some(name) = policy.metadata.name.clone() else {
                continue; // a listed object always has its name
            };
            let kept = match resource.spec.deletion_policy {
                DeletionPolicy::Orphan => true,
                DeletionPolicy::KeepDefaultDeny => render::fails_closed(
                    &resource.name_any(),
                    &name,
                    policy.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                ),
                DeletionPolicy::Delete => false,
            };
            let result = if kept {
                // Remove this resource's owner reference, and only it (the JSON patch tests the
                // uid first), so garbage collection leaves the policy alone; and the managed-by
                // label, since nobody manages the policy any more (its isolation label stays:
                // a new resource of this name takes it back).
                match keep_patch(&policy.metadata, &uid) {
                    Some(patch) => api
                        .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
                        .await
                        .map(|_| ()),
                    None => Ok(()),
                }
            } else {
                api.delete(&name, &DeleteParams::background())
                    .await
                    .map(|_| ())
            };
            match result {
                // Gone already: nothing left to keep or delete.
                Ok(()) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => {
                    return Err(Error::Write {
                        verb: if kept { "orphan" } else { "delete" },
                        namespace: namespace.to_owned(),
                        name,
                        source,
                    });
                }
            }
        }
    }
    let finalizers = resource
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(resource, context, namespace, finalizers).await
}

/// A JSON patch that removes the owner reference to `uid` from an object with `metadata`, after
/// testing that it is still at that position (the NamespaceIsolation's and the ClusterBaseline's
/// Orphan).
pub(super) fn orphan_patch(
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    uid: &str,
) -> Option<json_patch::Patch> {
    let index = metadata
        .owner_references
        .iter()
        .flatten()
        .position(|owner| owner.uid == uid)?;
    serde_json::from_value(serde_json::json!([
        {"op": "test", "path": format!("/metadata/ownerReferences/{index}/uid"), "value": uid},
        {"op": "remove", "path": format!("/metadata/ownerReferences/{index}")},
    ]))
    .ok()
}

/// The JSON patch that keeps a policy with `metadata` when its owner with `uid` goes: its owner
/// reference removed as [`orphan_patch`] does, and its `app.kubernetes.io/managed-by: netfence`
/// label too (tested first), so that `-l app.kubernetes.io/managed-by=netfence` lists only what
/// netfence manages. The other labels stay: `netfence.io/isolation` names the resource of which
/// a new one takes the policy back, and the admission policy keeps protecting it by that label.
fn keep_patch(metadata: &ObjectMeta, uid: &str) -> Option<json_patch::Patch> {
    let mut operations = serde_json::to_value(orphan_patch(metadata, uid)?).ok()?;
    let labelled = metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(MANAGED_BY_LABEL))
        .is_some_and(|value| value == MANAGED_BY);
    if labelled && let Some(operations) = operations.as_array_mut() {
        let path = format!("/metadata/labels/{}", MANAGED_BY_LABEL.replace('/', "~1"));
        operations.push(serde_json::json!({"op": "test", "path": path, "value": MANAGED_BY}));
        operations.push(serde_json::json!({"op": "remove", "path": path}));
    }
    serde_json::from_value(operations).ok()
}

/// An error and its causes as one sentence, for a status message or an Event: each cause
/// once, and of an API error only the message the API server gave (a `kube::Error`'s own text
/// repeats that message and adds a debug dump of the whole Status).
pub(super) fn error_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = String::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let text = match current.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(status)) if !status.message.is_empty() => status.message.clone(),
            Some(kube::Error::Api(status)) => format!("{} ({})", status.reason, status.code),
            _ => current.to_string(),
        };
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        if matches!(
            current.downcast_ref::<kube::Error>(),
            Some(kube::Error::Api(_))
        ) {
            break;
        }
        next = current.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    /// Keeping a policy removes its owner reference and its managed-by label (each tested
    /// first), and nothing else: the isolation and role labels stay. A policy whose managed-by
    /// label is already gone (a tenant removed it) only loses its owner reference.
    ///
    /// If this fails, `kubectl get netpol -l app.kubernetes.io/managed-by=netfence` lists
    /// policies nobody manages (or a kept policy loses what lets a new resource take it back).
    #[test]
    fn keeping_a_policy_removes_its_owner_and_managed_by() {
        let mut metadata = ObjectMeta {
            labels: Some(netfence_core::render::labels(
                "shop",
                &PolicyRole::DefaultDeny,
            )),
            owner_references: Some(vec![netfence_core::render::owner_reference("shop", "u1")]),
            ..ObjectMeta::default()
        };
        let patch =
            serde_json::to_value(keep_patch(&metadata, "u1").expect("a patch")).expect("json");
        assert_eq!(
            patch,
            serde_json::json!([
                {"op": "test", "path": "/metadata/ownerReferences/0/uid", "value": "u1"},
                {"op": "remove", "path": "/metadata/ownerReferences/0"},
                {"op": "test", "path": "/metadata/labels/app.kubernetes.io~1managed-by", "value": "netfence"},
                {"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1managed-by"},
            ])
        );
        let mut object = serde_json::json!({"metadata": metadata.clone()});
        json_patch::patch(&mut object, &keep_patch(&metadata, "u1").expect("a patch"))
            .expect("applies");
        let labels = &object["metadata"]["labels"];
        assert!(labels.get(MANAGED_BY_LABEL).is_none(), "{labels}");
        assert_eq!(labels[ISOLATION_LABEL], "shop");
        assert_eq!(object["metadata"]["ownerReferences"], serde_json::json!([]));

        metadata
            .labels
            .as_mut()
            .expect("labels")
            .remove(MANAGED_BY_LABEL);
        let patch =
            serde_json::to_value(keep_patch(&metadata, "u1").expect("a patch")).expect("json");
        assert_eq!(patch.as_array().map(Vec::len), Some(2), "{patch}");
        assert!(keep_patch(&metadata, "another").is_none());
    }

    /// An API error reads as one sentence: what failed, then the API server's message, once,
    /// without the debug dump a `kube::Error` carries in its own text.
    #[test]
    fn an_api_error_is_one_sentence() {
        let status = Status::failure(
            "NetworkPolicy.networking.k8s.io \"shop-tier-web\" is invalid: metadata.name: Invalid value: \"shop-tier-web\": must be no more than 253 characters",
            "Invalid",
        )
        .with_code(422);
        let error = Error::Write {
            verb: "apply",
            namespace: "shop".into(),
            name: "shop-tier-web".into(),
            source: kube::Error::Api(Box::new(status)),
        };
        assert_eq!(
            error_message(&error),
            "failed to apply NetworkPolicy shop/shop-tier-web: NetworkPolicy.networking.k8s.io \"shop-tier-web\" is invalid: metadata.name: Invalid value: \"shop-tier-web\": must be no more than 253 characters"
        );
    }
}
