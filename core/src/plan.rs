//! Plan: the rendered policies and the owned policies observed in the cluster in, the writes that
//! make the cluster match out. Pure: the controller applies a plan, and `mode: DryRun` reports one.
//!
//! ```text
//! desired [ NetworkPolicy x N ] --\
//!                                  +--> Plan { apply: changed or missing, delete: owned but not desired, unchanged }
//! observed [ NetworkPolicy x M ] --/
//! ```
//!
//! Only observed policies that this resource owns count: those with a controller owner reference
//! to the resource's UID (labels are restored, not required: removing one does not disown it). Anything else in the namespace, even with the
//! same name, is never updated or deleted by a plan (an apply to a name held by a foreign
//! policy is refused by [`Plan::conflicts`] instead), with two exceptions for the policies of an
//! earlier NamespaceIsolation of the same name in the same namespace:
//!
//! - one that it left behind without owner (`deletionPolicy: KeepDefaultDeny` or `Orphan`) and
//!   that still carries netfence's isolation label for this resource name is taken back
//!   ([`ApplyReason::Adopted`]), as a ReplicaSet adopts the orphaned pods its selector matches:
//!   nobody else owns it, netfence wrote it for this very name, and the namespace kept it only
//!   to stay closed until a resource of that name is back. A kept policy has no managed-by
//!   label (netfence removes it when it keeps the policy: nobody manages it any more); one kept
//!   by an older netfence still has `managed-by: netfence`; both are taken back. A policy with
//!   any other controller, without the isolation label, or managed by someone else, stays
//!   untouched;
//! - one still owned by it (that resource is gone: the garbage collector is about to delete the
//!   policy, or its orphaning is still on its way to the cache) is [`Plan::pending`]: neither
//!   foreign nor this resource's yet.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::networking::v1::NetworkPolicy, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use netfence_crd::NamespaceIsolationStatus;

use crate::meta::ISOLATION_LABEL;
pub use crate::observed::{Facts, Observed};

/// Why a policy is in [`Plan::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApplyReason {
    /// No policy of that name exists.
    Missing,
    /// It exists, but its spec, labels or owner reference differ from the rendered ones.
    Drifted,
    /// It exists without a controller, labelled by netfence for this resource's name: kept by
    /// an earlier resource of this name, and taken back.
    Adopted,
}

/// The writes that make the owned policies of one resource equal the rendered ones.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Policies to server-side apply, with why.
    pub apply: Vec<(ApplyReason, NetworkPolicy)>,
    /// Names of owned policies that are no longer rendered.
    pub delete: Vec<String>,
    /// Names of rendered policies that already match.
    pub unchanged: Vec<String>,
    /// Names of rendered policies held by an object this resource does not own: never written.
    pub conflicts: Vec<String>,
    /// Names of rendered policies still owned by an earlier resource of this name, which no
    /// longer exists: not written until they are deleted or orphaned.
    pub pending: Vec<String>,
}

impl Plan {
    /// Whether the plan writes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.apply.is_empty() && self.delete.is_empty()
    }
}

/// Whether `policy` belongs to the resource with UID `owner_uid`: a controller owner reference
/// to that UID. Labels are not required: a tenant who removes netfence's labels from a policy
/// does not make it foreign, and netfence restores them with the spec. A policy with netfence's
/// labels and no such owner reference is foreign (invariant 1). A UID is not guessable, and the
/// garbage collector deletes a policy whose owner is gone, so the reference is netfence's own.
#[must_use]
pub fn is_owned_by(policy: &NetworkPolicy, owner_uid: &str) -> bool {
    crate::meta::is_controlled_by(&policy.metadata, owner_uid)
}

/// Who holds the name of a policy a reconcile creates (its caches hold none under that name, or
/// lag behind), by what the API server answered (`found`: the metadata of the objects of that
/// namespace, by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Nobody: the name is free.
    Nobody,
    /// An object controlled by this resource (`owner_uid`): netfence's own.
    This,
    /// A policy kept by an earlier resource of this name (see [`adoptable`]): adopted.
    Kept,
    /// Anything else (hand-written, without owner, another owner, merely labelled): taken.
    /// netfence never takes over an object it does not own (invariant 1): it reports the name
    /// and never writes it.
    Other,
}

/// The [`Holder`] of `name`, a policy `plan` creates.
#[must_use]
pub fn holder(
    plan: &Plan,
    name: &str,
    found: &BTreeMap<String, ObjectMeta>,
    owner_uid: &str,
) -> Holder {
    let Some(meta) = found.get(name) else {
        return Holder::Nobody;
    };
    if crate::meta::is_controlled_by(meta, owner_uid) {
        Holder::This
    } else if adoptable(plan, found, owner_uid)
        .iter()
        .any(|adopted| adopted == name)
    {
        Holder::Kept
    } else {
        Holder::Other
    }
}

/// Of the policies `plan` creates (`ApplyReason::Missing`), those that the API server shows
/// (`found`, as for [`holder`]) to be kept by an earlier resource of this name, which the plan
/// would have adopted had its caches held them: a kept policy moving between the controller's
/// caches (losing its managed-by label) may be in neither for a moment. They are not taken:
/// applying them adopts them.
#[must_use]
pub fn adoptable(
    plan: &Plan,
    found: &BTreeMap<String, ObjectMeta>,
    owner_uid: &str,
) -> Vec<String> {
    plan.apply
        .iter()
        .filter(|(reason, _)| *reason == ApplyReason::Missing)
        .filter_map(|(_, desired)| {
            let name = desired.metadata.name.as_deref()?;
            let existing = Facts::of(&NetworkPolicy {
                metadata: found.get(name)?.clone(),
                ..NetworkPolicy::default()
            });
            matches!(
                predecessor(&existing, desired, owner_uid),
                Some(Predecessor::Orphaned)
            )
            .then(|| name.to_owned())
        })
        .collect()
}

/// Drift: whether writing the policy `name` for `reason` corrects drift rather than carrying out
/// a spec change. It does when the resource's status says this generation was already
/// reconciled, and the policy was then in place: changed since (`Drifted`), or deleted since
/// (`Missing`, and the status listed it). An adoption is never drift.
#[must_use]
pub fn is_drift(
    status: Option<&NamespaceIsolationStatus>,
    generation: Option<i64>,
    reason: ApplyReason,
    name: &str,
) -> bool {
    let Some(status) = status else {
        return false;
    };
    let reconciled = status.observed_generation == generation
        && status.conditions.iter().any(|condition| {
            condition.type_ == crate::status::READY && condition.reason == "Reconciled"
        });
    reconciled
        && match reason {
            ApplyReason::Drifted => true,
            ApplyReason::Missing => status.policies.iter().any(|policy| policy == name),
            ApplyReason::Adopted => false,
        }
}

/// Compare rendered policies with the policies observed in the resource's namespace (what the
/// controller keeps of them: [`Observed`]).
///
/// A name observed twice (a policy moving between the controller's caches, when a kept policy
/// loses its managed-by label or an adopted one gets it back, may be in both for a moment)
/// counts once, as first observed: the controller lists its own cache's entries first.
#[must_use]
pub fn plan(desired: &[NetworkPolicy], observed: &[Observed], owner_uid: &str) -> Plan {
    let mut first: BTreeMap<&str, &Facts> = BTreeMap::new();
    for policy in observed {
        first.entry(policy.name.as_str()).or_insert(&policy.facts);
    }
    let observed = first;
    let mut plan = Plan::default();
    for policy in desired {
        let name = policy.metadata.name.as_deref().unwrap_or_default();
        match observed.get(name) {
            None => plan.apply.push((ApplyReason::Missing, policy.clone())),
            Some(existing) if !existing.controlled_by(owner_uid) => {
                match predecessor(existing, policy, owner_uid) {
                    Some(Predecessor::Orphaned) => {
                        plan.apply.push((ApplyReason::Adopted, policy.clone()));
                    }
                    Some(Predecessor::Owning) => plan.pending.push(name.to_owned()),
                    None => plan.conflicts.push(name.to_owned()),
                }
            }
            Some(existing) if existing.carries(policy) => plan.unchanged.push(name.to_owned()),
            Some(_) => plan.apply.push((ApplyReason::Drifted, policy.clone())),
        }
    }
    let desired_names: Vec<&str> = desired
        .iter()
        .filter_map(|policy| policy.metadata.name.as_deref())
        .collect();
    for (name, existing) in observed {
        if existing.controlled_by(owner_uid) && !desired_names.contains(&name) {
            plan.delete.push(name.to_owned());
        }
    }
    plan
}

/// How an observed policy that this resource does not own relates to an earlier resource of the
/// same name in the same namespace.
enum Predecessor {
    /// Kept without owner, with netfence's labels for this name: to adopt.
    Orphaned,
    /// Still controlled by that earlier resource (another UID, the same kind and name).
    Owning,
}

/// Whether `existing`, which holds the name of the rendered policy `desired`, was left by an
/// earlier NamespaceIsolation of this name (`desired` carries the name in its isolation label).
/// A policy being deleted, without netfence's labels, or controlled by anything else is not.
/// The controller must be a NamespaceIsolation at the served version exactly: the garbage
/// collector collects a policy whose owner it can look up and find gone, so the wait ends. An
/// owner reference a tenant forged with a version nobody serves is never collected: it is a
/// conflict, reported, not a wait.
fn predecessor(existing: &Facts, desired: &NetworkPolicy, owner_uid: &str) -> Option<Predecessor> {
    let resource = desired
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(ISOLATION_LABEL))?;
    if existing.deleting() || !existing.labelled_for(resource) {
        return None;
    }
    if existing.uncontrolled() {
        Some(Predecessor::Orphaned)
    } else if existing.controlled_by_other(resource, owner_uid) {
        Some(Predecessor::Owning)
    } else {
        None
    }
}

/// The body netfence server-side applies for a rendered policy: rule lists it leaves empty are
/// sent as `[]`, so that netfence owns them. Without that, a rule someone adds by hand to a list
/// netfence never sent would belong to them, and no apply could remove it.
#[must_use]
pub fn apply_body(policy: &NetworkPolicy) -> NetworkPolicy {
    let mut body = policy.clone();
    if let Some(spec) = body.spec.as_mut() {
        spec.ingress.get_or_insert_with(Vec::new);
        spec.egress.get_or_insert_with(Vec::new);
    }
    body
}

/// The policies rendered for a NamespaceIsolation `shop` in namespace `shop` with `uid` and
/// `spec` (the fixture of this module's tests and of `observed`'s).
#[cfg(test)]
pub(crate) fn rendered_shop(uid: &str, spec: &serde_json::Value) -> Vec<NetworkPolicy> {
    let resource: netfence_crd::NamespaceIsolation = serde_json::from_value(serde_json::json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "NamespaceIsolation",
        "metadata": {"name": "shop", "namespace": "shop", "uid": uid},
        "spec": spec,
    }))
    .expect("resource");
    crate::render::network_policies(&crate::ValidatedIsolation::try_from(&resource).expect("valid"))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::networking::v1::NetworkPolicyIngressRule;

    use super::*;
    use crate::render;

    const UID: &str = "11111111-2222-3333-4444-555555555555";

    fn desired() -> Vec<NetworkPolicy> {
        rendered_shop(
            UID,
            &serde_json::json!({
                "tiers": [{"name": "web", "podSelector": {"matchLabels": {"app": "web"}}},
                          {"name": "api", "podSelector": {"matchLabels": {"app": "api"}}}],
                "flows": [{"from": "web", "to": "api", "ports": [{"port": 8080}]}],
            }),
        )
    }

    fn seen(policies: &[NetworkPolicy]) -> Vec<Observed> {
        policies.iter().map(Observed::of).collect()
    }

    fn names(policies: &[(ApplyReason, NetworkPolicy)]) -> Vec<(ApplyReason, String)> {
        policies
            .iter()
            .map(|(reason, policy)| (*reason, policy.metadata.name.clone().unwrap_or_default()))
            .collect()
    }

    /// Nothing in the cluster: every policy is created. All present and equal: nothing is
    /// written (a steady-state reconcile makes zero writes).
    #[test]
    fn missing_then_steady() {
        let desired = desired();
        let first = plan(&desired, &[], UID);
        assert_eq!(first.apply.len(), 4);
        assert!(
            first
                .apply
                .iter()
                .all(|(reason, _)| *reason == ApplyReason::Missing)
        );
        let steady = plan(&desired, &seen(&desired), UID);
        assert!(steady.is_empty(), "{steady:?}");
        assert_eq!(steady.unchanged.len(), 4);
    }

    /// An edited rule, a changed selector, a removed label: each is drift to correct.
    #[test]
    fn edits_are_drift() {
        let desired = desired();
        let mut edited = desired.clone();
        edited[3]
            .spec
            .as_mut()
            .expect("spec")
            .ingress
            .get_or_insert_with(Vec::new)
            .push(NetworkPolicyIngressRule::default());
        edited[2].spec.as_mut().expect("spec").pod_selector =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector::default());
        edited[0]
            .metadata
            .labels
            .as_mut()
            .expect("labels")
            .remove(crate::meta::ISOLATION_LABEL);
        let plan = plan(&desired, &seen(&edited), UID);
        assert_eq!(
            names(&plan.apply),
            [
                (ApplyReason::Drifted, "shop-default-deny".to_owned()),
                (ApplyReason::Drifted, "shop-tier-web".to_owned()),
                (ApplyReason::Drifted, "shop-tier-api".to_owned()),
            ]
        );
        assert!(plan.delete.is_empty());
    }

    /// The body applied claims both rule lists, and an empty list is not drift.
    #[test]
    fn apply_body_claims_rule_lists() {
        let desired = desired();
        let body = apply_body(&desired[0]);
        let spec = body.spec.as_ref().expect("spec");
        assert_eq!(spec.ingress.as_deref(), Some(&[][..]));
        assert_eq!(spec.egress.as_deref(), Some(&[][..]));
        assert!(plan(&desired[..1], &seen(&[body]), UID).apply.is_empty());
    }

    /// Labels and annotations added by others (Argo CD, a policy engine) are not drift.
    #[test]
    fn foreign_labels_are_not_drift() {
        let desired = desired();
        let mut observed = desired.clone();
        for policy in &mut observed {
            policy
                .metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert("team".into(), "payments".into());
        }
        assert!(plan(&desired, &seen(&observed), UID).is_empty());
    }

    /// An owned policy no longer rendered is deleted; a hand-written one, or one with the label
    /// but owned by something else, never is, even when its name collides with a rendered one.
    #[test]
    fn prunes_only_what_it_owns() {
        let desired = desired();
        let mut observed = desired.clone();
        let mut stale = desired[3].clone();
        stale.metadata.name = Some("shop-tier-old".into());
        observed.push(stale);
        let mut foreign = desired[0].clone();
        foreign.metadata.name = Some("hand-written".into());
        foreign.metadata.owner_references = None;
        observed.push(foreign);
        let mut other_owner = desired[1].clone();
        other_owner.metadata.name = Some("other".into());
        other_owner
            .metadata
            .owner_references
            .as_mut()
            .expect("owners")[0]
            .uid = "other".into();
        observed.push(other_owner);
        let plan = plan(&desired, &seen(&observed), UID);
        assert_eq!(plan.delete, ["shop-tier-old"]);
        assert!(plan.apply.is_empty());

        let mut squatter = desired[0].clone();
        squatter.metadata.labels = None;
        squatter.metadata.owner_references = None;
        let plan = super::plan(&desired, &seen(&[squatter]), UID);
        assert_eq!(plan.conflicts, ["shop-default-deny"]);
        assert_eq!(plan.apply.len(), 3, "the other policies are still created");
    }

    /// A policy that lost netfence's labels is still this resource's while its controller owner
    /// reference names the resource: a tenant's `kubectl label ... managed-by-` does not disown
    /// it, and the plan restores it (labels and spec).
    #[test]
    fn removing_a_label_does_not_disown() {
        let desired = desired();
        let mut unlabelled = desired[0].clone();
        unlabelled.metadata.labels = None;
        unlabelled.spec = None;
        let plan = plan(&desired[..1], &seen(&[unlabelled]), UID);
        assert_eq!(
            names(&plan.apply),
            [(ApplyReason::Drifted, "shop-default-deny".to_owned())]
        );
        assert!(plan.conflicts.is_empty());
    }

    /// What an earlier `shop` left: the default deny it kept without owner is adopted; a policy
    /// it still owns is pending. With another controller, without netfence's labels, or
    /// labelled for another resource, a policy of a rendered name stays a conflict.
    #[test]
    fn a_predecessors_policies_are_adopted_or_awaited() {
        let desired = desired();
        let mut kept = desired[0].clone();
        kept.metadata.owner_references = None;
        let mut owned_by_predecessor = desired[1].clone();
        owned_by_predecessor
            .metadata
            .owner_references
            .as_mut()
            .expect("owners")[0]
            .uid = "earlier".into();
        let plan = plan(
            &desired[..2],
            &seen(&[kept.clone(), owned_by_predecessor]),
            UID,
        );
        assert_eq!(
            names(&plan.apply),
            [(ApplyReason::Adopted, "shop-default-deny".to_owned())]
        );
        assert_eq!(
            plan.pending,
            [desired[1].metadata.name.clone().unwrap_or_default()]
        );
        assert!(plan.conflicts.is_empty());

        let mut other_controller = desired[0].clone();
        if let Some(owner) = other_controller.metadata.owner_references.as_mut() {
            owner[0].name = "other".into();
            owner[0].uid = "other".into();
        }
        let mut unlabelled = kept.clone();
        unlabelled
            .metadata
            .labels
            .as_mut()
            .expect("labels")
            .remove(crate::meta::ISOLATION_LABEL);
        let mut managed_by_another = kept.clone();
        managed_by_another
            .metadata
            .labels
            .as_mut()
            .expect("labels")
            .insert(crate::meta::MANAGED_BY_LABEL.into(), "helm".into());
        let mut other_resource = kept.clone();
        other_resource
            .metadata
            .labels
            .as_mut()
            .expect("labels")
            .insert(crate::meta::ISOLATION_LABEL.into(), "other".into());
        for foreign in [
            other_controller,
            unlabelled,
            other_resource,
            managed_by_another,
        ] {
            let plan = super::plan(&desired[..1], &seen(&[foreign]), UID);
            assert_eq!(plan.conflicts, ["shop-default-deny"]);
            assert!(plan.apply.is_empty() && plan.pending.is_empty());
        }
    }

    /// What netfence keeps now carries no managed-by label (nobody manages it), only the
    /// isolation label: taken back all the same, as one kept by an older netfence (still
    /// labelled `managed-by: netfence`) is.
    ///
    /// If this fails, a resource created again after `KeepDefaultDeny` finds its own kept
    /// default deny in the way: nothing is written and the namespace stays at deny + DNS.
    #[test]
    fn a_kept_policy_without_managed_by_is_adopted() {
        let desired = desired();
        let mut kept = desired[0].clone();
        kept.metadata.owner_references = None;
        kept.metadata
            .labels
            .as_mut()
            .expect("labels")
            .remove(crate::meta::MANAGED_BY_LABEL);
        let plan = plan(&desired[..1], &seen(&[kept]), UID);
        assert_eq!(
            names(&plan.apply),
            [(ApplyReason::Adopted, "shop-default-deny".to_owned())]
        );
        assert!(plan.conflicts.is_empty());
    }

    /// A policy moving between the controller's caches: observed twice (its own cache's entry
    /// first), it counts once, as its own cache has it; observed in neither, the API server's
    /// answer shows it kept for this resource's name, and it is adopted, not taken.
    ///
    /// If this fails, a kept default deny the caches see twice is adopted twice (two Events),
    /// or one they see in neither is reported taken (ApplyFailed and a Warning Event) though
    /// the next reconcile adopts it.
    #[test]
    fn a_policy_between_the_caches_is_seen_once_and_adopted() {
        let desired = desired();
        let mut kept = desired[0].clone();
        kept.metadata.owner_references = None;
        kept.metadata
            .labels
            .as_mut()
            .expect("labels")
            .remove(crate::meta::MANAGED_BY_LABEL);
        let both = plan(
            &desired[..1],
            &seen(&[desired[0].clone(), kept.clone()]),
            UID,
        );
        assert!(both.apply.is_empty(), "{:?}", names(&both.apply));
        assert_eq!(both.unchanged, ["shop-default-deny"]);

        let neither = plan(&desired[..2], &[], UID);
        let found: BTreeMap<String, ObjectMeta> = [
            ("shop-default-deny".to_owned(), kept.metadata.clone()),
            (
                desired[1].metadata.name.clone().unwrap_or_default(),
                metadata(None),
            ),
        ]
        .into();
        assert_eq!(adoptable(&neither, &found, UID), ["shop-default-deny"]);
        let mut foreign = kept.metadata.clone();
        foreign
            .labels
            .as_mut()
            .expect("labels")
            .insert(crate::meta::MANAGED_BY_LABEL.into(), "helm".into());
        let found: BTreeMap<String, ObjectMeta> =
            [("shop-default-deny".to_owned(), foreign)].into();
        assert!(adoptable(&neither, &found, UID).is_empty());
    }

    fn metadata(owner_uid: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            owner_references: owner_uid.map(|uid| vec![render::owner_reference("shop", uid)]),
            ..ObjectMeta::default()
        }
    }

    /// Who holds a name to create: a name the API server shows held by an object this resource
    /// does not control (hand-written, no owner, or another owner, or merely labelled) is taken;
    /// its own is this resource's; a kept one of an earlier resource of this name is adopted; a
    /// name nobody holds is free.
    #[test]
    fn names_held_by_others_are_taken() {
        let desired = desired();
        let plan = plan(&desired, &[], UID);
        let mut labelled = metadata(None);
        labelled.labels = Some(render::labels("shop", &render::PolicyRole::DefaultDeny));
        let mut kept = metadata(None);
        kept.labels = Some(render::labels("shop", &render::PolicyRole::DefaultDeny));
        kept.labels
            .as_mut()
            .expect("labels")
            .remove(crate::meta::MANAGED_BY_LABEL);
        let name = |index: usize| desired[index].metadata.name.clone().unwrap_or_default();
        let found: BTreeMap<String, ObjectMeta> = [
            (name(0), kept),
            (name(1), metadata(Some(UID))),
            (name(2), metadata(None)),
            (name(3), metadata(Some("other"))),
            ("labelled".to_owned(), labelled),
        ]
        .into();
        let holders: Vec<Holder> = [
            name(0),
            name(1),
            name(2),
            name(3),
            "labelled".into(),
            "free".into(),
        ]
        .iter()
        .map(|name| holder(&plan, name, &found, UID))
        .collect();
        assert_eq!(
            holders,
            [
                Holder::Kept,
                Holder::This,
                Holder::Other,
                Holder::Other,
                Holder::Other,
                Holder::Nobody
            ]
        );
    }

    fn reconciled(generation: i64, policies: &[&str]) -> NamespaceIsolationStatus {
        crate::status::status(
            &crate::status::Outcome::Reconciled {
                policies: policies.iter().map(|name| (*name).to_owned()).collect(),
            },
            Some(generation),
            None,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        )
    }

    /// Drift is a change to a policy of a generation already reconciled: an edit, or the deletion
    /// of a policy the status listed. A new spec, a policy new to the spec, a status that is not
    /// Reconciled, and an adoption are not drift (no DriftCorrected Event, no drift counter).
    #[test]
    fn drift_is_a_change_after_reconciling_this_generation() {
        let status = reconciled(3, &["shop-default-deny"]);
        assert!(is_drift(
            Some(&status),
            Some(3),
            ApplyReason::Drifted,
            "shop-tier-api"
        ));
        assert!(is_drift(
            Some(&status),
            Some(3),
            ApplyReason::Missing,
            "shop-default-deny"
        ));
        assert!(!is_drift(
            Some(&status),
            Some(3),
            ApplyReason::Missing,
            "shop-tier-api"
        ));
        assert!(!is_drift(
            Some(&status),
            Some(3),
            ApplyReason::Adopted,
            "shop-default-deny"
        ));
        assert!(!is_drift(
            Some(&status),
            Some(4),
            ApplyReason::Drifted,
            "shop-default-deny"
        ));
        assert!(!is_drift(
            None,
            Some(3),
            ApplyReason::Drifted,
            "shop-default-deny"
        ));
        let failed = crate::status::status(
            &crate::status::Outcome::ApplyFailed {
                message: "refused".to_owned(),
                policies: vec!["shop-default-deny".to_owned()],
            },
            Some(3),
            None,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        );
        assert!(!is_drift(
            Some(&failed),
            Some(3),
            ApplyReason::Drifted,
            "shop-default-deny"
        ));
    }
}
