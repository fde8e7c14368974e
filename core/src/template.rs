//! Template expansion (pure): a validated IsolationTemplate, the namespaces, the
//! NamespaceIsolations that exist and the other templates in; the writes that give every matched
//! namespace the template's NamespaceIsolation out. The controller carries a plan out; `netfence
//! render` and `verify` expand templates over Namespace manifests with the same code.
//!
//! ```text
//! [ ValidatedTemplate ] --\
//! [ Namespace x N ] -------+--> plan --> TemplatePlan { apply, delete, conflicts, matched }
//! [ NamespaceIsolation ] --+
//! [ other templates ] ----/
//! ```
//!
//! A namespace gets the template when the selector matches its labels, it is not excluded (by
//! name, or as one of the cluster's own namespaces, or netfence's), and it is not being deleted.
//! The template never writes to a NamespaceIsolation it does not own (controller owner reference
//! to its UID): such a resource is a conflict, reported, never overwritten or deleted. Of two
//! templates that match one namespace with one isolation name, the older (then the one whose name
//! sorts first) wins; the younger yields, and deletes what it generated there.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BTreeSet},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;
use netfence_crd::{IsolationTemplate, NamespaceIsolation, template::TemplateConflict};

use crate::{
    meta::{MANAGED_BY, MANAGED_BY_LABEL, TEMPLATE_LABEL},
    plan::ApplyReason,
    validate::ValidatedTemplate,
};

/// What a template needs to know of a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// The namespace's name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Whether it is being deleted (nothing is written to it then).
    pub terminating: bool,
}

impl From<&k8s_openapi::api::core::v1::Namespace> for NamespaceInfo {
    fn from(namespace: &k8s_openapi::api::core::v1::Namespace) -> Self {
        NamespaceInfo {
            name: namespace.metadata.name.clone().unwrap_or_default(),
            labels: namespace.metadata.labels.clone().unwrap_or_default(),
            terminating: namespace.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// A generated NamespaceIsolation to delete: `uid` is a precondition, so a resource that took the
/// name meanwhile is never deleted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Removal {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID.
    pub uid: Option<String>,
}

/// The writes that make one template's generated resources match it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TemplatePlan {
    /// The namespaces the template applies to, sorted.
    pub matched: Vec<String>,
    /// NamespaceIsolations to server-side apply, with why.
    pub apply: Vec<(ApplyReason, NamespaceIsolation)>,
    /// Generated NamespaceIsolations that are no longer wanted.
    pub delete: Vec<Removal>,
    /// Matched namespaces where nothing is written, and why, sorted by namespace.
    pub conflicts: Vec<TemplateConflict>,
}

impl TemplatePlan {
    /// Whether the plan writes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.apply.is_empty() && self.delete.is_empty()
    }
}

/// What the planner reads of the cluster (or of the manifests).
pub struct World<'a> {
    /// Every namespace.
    pub namespaces: &'a [NamespaceInfo],
    /// Every NamespaceIsolation (of every namespace).
    pub isolations: &'a [&'a NamespaceIsolation],
    /// The other valid templates, to settle which one wins a namespace.
    pub templates: &'a [&'a ValidatedTemplate],
    /// netfence's own namespace, never generated into.
    pub operator_namespace: Option<&'a str>,
    /// The field manager of netfence's applies, to find labels it set earlier and must remove.
    pub field_manager: &'a str,
}

/// Whether `template` applies to `namespace`.
#[must_use]
pub fn applies_to(
    template: &ValidatedTemplate,
    namespace: &NamespaceInfo,
    operator_namespace: Option<&str>,
) -> bool {
    !namespace.terminating
        && !template.excludes(&namespace.name)
        && operator_namespace != Some(namespace.name.as_str())
        && template.namespace_selector().matches(&namespace.labels)
}

/// Whether `a` is older than `b` (it wins a namespace both generate into). Templates without a
/// creation time (manifests) count as younger than any with one; ties go by name.
#[must_use]
pub fn is_older(a: &ValidatedTemplate, b: &ValidatedTemplate) -> bool {
    older((a.created(), a.name()), (b.created(), b.name()))
}

/// Whether the resource created at `a.0` and named `a.1` is older than `b`: earlier creation
/// first (a manifest without a creation time counts as newest), then the smaller name. The one
/// rule for templates and baselines that claim the same namespace.
#[must_use]
pub fn older(a: (Option<&Time>, &str), b: (Option<&Time>, &str)) -> bool {
    let by_time = match (a.0, b.0) {
        (Some(a), Some(b)) => a.0.cmp(&b.0),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    by_time.then_with(|| a.1.cmp(b.1)) == Ordering::Less
}

/// The NamespaceIsolation `template` generates in `namespace`: its spec, the template's labels and
/// annotations plus netfence's own labels, and (when the template has a UID) a controller owner
/// reference to the template.
#[must_use]
pub fn generated(template: &ValidatedTemplate, namespace: &str) -> NamespaceIsolation {
    let mut labels = template.labels().clone();
    labels.insert(TEMPLATE_LABEL.to_owned(), template.name().to_owned());
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    let owner_references = template.uid().map(|uid| {
        vec![OwnerReference {
            api_version: IsolationTemplate::api_version(&()).into_owned(),
            kind: IsolationTemplate::kind(&()).into_owned(),
            name: template.name().to_owned(),
            uid: uid.to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]
    });
    NamespaceIsolation {
        metadata: ObjectMeta {
            name: Some(template.isolation_name().to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: (!template.annotations().is_empty())
                .then(|| template.annotations().clone()),
            owner_references,
            ..ObjectMeta::default()
        },
        spec: template.spec().clone(),
        status: None,
    }
}

/// Whether `isolation` is controlled by the template with UID `uid`.
#[must_use]
pub fn is_generated_by(isolation: &NamespaceIsolation, uid: &str) -> bool {
    crate::meta::is_controlled_by(&isolation.metadata, uid)
}

/// The template that controls `isolation`, by name, if one does.
fn controlling_template(isolation: &NamespaceIsolation) -> Option<&str> {
    isolation
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true) && owner.kind == IsolationTemplate::kind(&()))
        .map(|owner| owner.name.as_str())
}

/// Plan `template` against `world`.
#[must_use]
pub fn plan(template: &ValidatedTemplate, world: &World<'_>) -> TemplatePlan {
    let name = template.isolation_name();
    let existing: BTreeMap<(&str, &str), &NamespaceIsolation> = world
        .isolations
        .iter()
        .filter_map(|isolation| {
            Some((
                (
                    isolation.metadata.namespace.as_deref()?,
                    isolation.metadata.name.as_deref()?,
                ),
                *isolation,
            ))
        })
        .collect();
    let owned = |isolation: &NamespaceIsolation| {
        template
            .uid()
            .is_some_and(|uid| is_generated_by(isolation, uid))
    };
    let mut result = TemplatePlan::default();
    let mut kept: BTreeSet<(String, String)> = BTreeSet::new();
    let mut namespaces: Vec<&NamespaceInfo> = world
        .namespaces
        .iter()
        .filter(|namespace| applies_to(template, namespace, world.operator_namespace))
        .collect();
    namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    for namespace in namespaces {
        result.matched.push(namespace.name.clone());
        let winner = world
            .templates
            .iter()
            .filter(|other| {
                other.name() != template.name()
                    && other.isolation_name() == name
                    && is_older(other, template)
                    && applies_to(other, namespace, world.operator_namespace)
            })
            .min_by(|a, b| {
                if is_older(a, b) {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            });
        let conflict = |reason: String| TemplateConflict {
            namespace: namespace.name.clone(),
            reason,
        };
        match (existing.get(&(namespace.name.as_str(), name)), winner) {
            (Some(isolation), _) if owned(isolation) => {
                if let Some(winner) = winner {
                    // Yield to the older template: remove what this one generated there.
                    result.conflicts.push(conflict(older_reason(winner, name)));
                } else if isolation.metadata.deletion_timestamp.is_none() {
                    kept.insert((namespace.name.clone(), name.to_owned()));
                    let desired = generated(template, &namespace.name);
                    if differs(isolation, &desired, world.field_manager) {
                        result.apply.push((ApplyReason::Drifted, desired));
                    }
                }
                // (An owned resource being deleted is recreated once it is gone.)
            }
            (Some(isolation), _) => {
                let reason = match controlling_template(isolation) {
                    Some(other) => format!(
                        "NamespaceIsolation {name} is generated by template {other}, which wins this namespace; exclude the namespace from one template in spec.excludeNamespaces or give them different isolationNames"
                    ),
                    None => format!(
                        "NamespaceIsolation {name} exists and this template does not own it (written by hand or by GitOps); netfence never overwrites it: delete it to adopt the template, or list the namespace in spec.excludeNamespaces"
                    ),
                };
                result.conflicts.push(conflict(reason));
            }
            (None, Some(winner)) => result.conflicts.push(conflict(older_reason(winner, name))),
            (None, None) => result
                .apply
                .push((ApplyReason::Missing, generated(template, &namespace.name))),
        }
    }
    for isolation in world.isolations.iter().filter(|isolation| owned(isolation)) {
        let (Some(namespace), Some(isolation_name)) = (
            isolation.metadata.namespace.clone(),
            isolation.metadata.name.clone(),
        ) else {
            continue;
        };
        if isolation.metadata.deletion_timestamp.is_some()
            || kept.contains(&(namespace.clone(), isolation_name.clone()))
        {
            continue;
        }
        result.delete.push(Removal {
            namespace,
            name: isolation_name,
            uid: isolation.metadata.uid.clone(),
        });
    }
    result.delete.sort();
    result
}

/// A matched namespace whose generated NamespaceIsolation says it cannot do its job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    /// The namespace.
    pub namespace: String,
    /// The reason of the resource's `Ready=False` (`ApplyFailed`, `InvalidSpec`).
    pub reason: String,
    /// Its message.
    pub message: String,
}

/// The generated resources of `template`, in the namespaces `plan` writes to, whose status says
/// `Ready=False` for their current generation: the template is not Ready while one of them
/// cannot apply. One whose status does not describe its generation yet is on its way, and not
/// counted.
#[must_use]
pub fn not_ready(
    template: &ValidatedTemplate,
    plan: &TemplatePlan,
    isolations: &[&NamespaceIsolation],
) -> Vec<NotReady> {
    let Some(uid) = template.uid() else {
        return Vec::new();
    };
    let conflicted: BTreeSet<&str> = plan
        .conflicts
        .iter()
        .map(|conflict| conflict.namespace.as_str())
        .collect();
    let mut found = Vec::new();
    for namespace in plan
        .matched
        .iter()
        .filter(|namespace| !conflicted.contains(namespace.as_str()))
    {
        let generated = isolations.iter().find(|isolation| {
            isolation.metadata.namespace.as_deref() == Some(namespace.as_str())
                && isolation.metadata.name.as_deref() == Some(template.isolation_name())
                && is_generated_by(isolation, uid)
        });
        let Some(status) = generated
            .and_then(|isolation| isolation.status.as_ref().map(|status| (isolation, status)))
            .filter(|(isolation, status)| {
                status.observed_generation == isolation.metadata.generation
            })
            .map(|(_, status)| status)
        else {
            continue;
        };
        if let Some(condition) = status
            .conditions
            .iter()
            .find(|condition| condition.type_ == "Ready" && condition.status == "False")
        {
            found.push(NotReady {
                namespace: namespace.clone(),
                reason: condition.reason.clone(),
                message: condition.message.clone(),
            });
        }
    }
    found
}

fn older_reason(winner: &ValidatedTemplate, name: &str) -> String {
    format!(
        "the older template {} also matches this namespace with isolation name {name} and wins; exclude the namespace from one template in spec.excludeNamespaces or give them different isolationNames",
        winner.name()
    )
}

/// Whether the existing generated resource differs from the desired one in what the template
/// sets: the spec, netfence's labels and annotations (values, and keys netfence set earlier and no
/// longer wants, from the field manager's managed fields), the controller owner reference.
#[must_use]
pub fn differs(existing: &NamespaceIsolation, desired: &NamespaceIsolation, manager: &str) -> bool {
    if existing.spec != desired.spec {
        return true;
    }
    let has_all = |have: Option<&BTreeMap<String, String>>,
                   want: Option<&BTreeMap<String, String>>| {
        want.into_iter()
            .flatten()
            .all(|(key, value)| have.and_then(|have| have.get(key)) == Some(value))
    };
    if !has_all(
        existing.metadata.labels.as_ref(),
        desired.metadata.labels.as_ref(),
    ) || !has_all(
        existing.metadata.annotations.as_ref(),
        desired.metadata.annotations.as_ref(),
    ) {
        return true;
    }
    let owner_missing = desired
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| {
            !existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|have| have.uid == owner.uid && have.controller == Some(true))
        });
    if owner_missing {
        return true;
    }
    let stale = |field: &str, want: Option<&BTreeMap<String, String>>| {
        applied_keys(existing, manager, field)
            .iter()
            .any(|key| !want.is_some_and(|want| want.contains_key(key)))
    };
    stale("f:labels", desired.metadata.labels.as_ref())
        || stale("f:annotations", desired.metadata.annotations.as_ref())
}

/// The keys of `metadata.<field>` that `manager` owns by server-side apply.
fn applied_keys(isolation: &NamespaceIsolation, manager: &str, field: &str) -> Vec<String> {
    isolation
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| {
            entry.manager.as_deref() == Some(manager)
                && entry.operation.as_deref() == Some("Apply")
                && entry.subresource.as_deref().unwrap_or_default().is_empty()
        })
        .filter_map(|entry| entry.fields_v1.as_ref())
        .filter_map(|fields| fields.0.get("f:metadata")?.get(field)?.as_object())
        .flat_map(|keys| keys.keys())
        .filter_map(|key| key.strip_prefix("f:"))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests;
