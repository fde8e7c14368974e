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
    observed::Digest,
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
    /// The namespaces whose NamespaceIsolation to server-side apply ([`generated`] builds it
    /// when it is written: at 10,000 namespaces, 10,000 decoded resources held at once were
    /// most of the operator's memory), with why.
    pub apply: Vec<(ApplyReason, String)>,
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

/// What a plan reads of a NamespaceIsolation that exists: who it is and who controls it, and
/// of one a template controls, what a plan compares and whether it is Ready. The controller
/// keeps this, not the resource: decoded, a resource's spec takes tens of kilobytes of heap.
///
/// ```text
/// NamespaceIsolation --of--> Existing { metadata: name, namespace, uid, resourceVersion, generation,
///                                                 deletionTimestamp, the controller ownerReference
///                                       generated: spec digest, labels, annotations,
///                                                  keys the field manager applied, Ready=False }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Existing {
    /// Who it is: the resource's identity, version and controller owner reference, nothing else.
    pub metadata: ObjectMeta,
    /// What a plan compares, for a resource a template controls.
    generated: Option<Box<Compared>>,
}

/// What a plan compares of a generated resource.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Compared {
    spec: Digest,
    labels: Box<[(Box<str>, Box<str>)]>,
    annotations: Box<[(Box<str>, Box<str>)]>,
    /// The label and annotation keys the field manager applied (server-side apply removes a
    /// key the next apply leaves out only if that manager applied it).
    applied_labels: Box<[Box<str>]>,
    applied_annotations: Box<[Box<str>]>,
    /// Its Ready condition's reason and message when it is False for the current generation.
    not_ready: Option<(Box<str>, Box<str>)>,
}

fn pairs(map: Option<&BTreeMap<String, String>>) -> Box<[(Box<str>, Box<str>)]> {
    map.into_iter()
        .flatten()
        .map(|(key, value)| (key.as_str().into(), value.as_str().into()))
        .collect()
}

impl Existing {
    /// What a plan reads of `isolation`, whose netfence writes are `manager`'s.
    #[must_use]
    pub fn of(isolation: &NamespaceIsolation, manager: &str) -> Existing {
        let source = &isolation.metadata;
        let controller = source
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .cloned();
        let generated = controlling_template(isolation).is_some().then(|| {
            let not_ready = isolation
                .status
                .as_ref()
                .filter(|status| status.observed_generation == source.generation)
                .and_then(|status| {
                    status
                        .conditions
                        .iter()
                        .find(|condition| condition.type_ == "Ready" && condition.status == "False")
                })
                .map(|condition| {
                    (
                        condition.reason.as_str().into(),
                        condition.message.as_str().into(),
                    )
                });
            let keys = |field| {
                applied_keys(isolation, manager, field)
                    .into_iter()
                    .map(String::into_boxed_str)
                    .collect()
            };
            Box::new(Compared {
                spec: Digest::of_json(&isolation.spec),
                labels: pairs(source.labels.as_ref()),
                annotations: pairs(source.annotations.as_ref()),
                applied_labels: keys("f:labels"),
                applied_annotations: keys("f:annotations"),
                not_ready,
            })
        });
        Existing {
            metadata: ObjectMeta {
                name: source.name.clone(),
                namespace: source.namespace.clone(),
                uid: source.uid.clone(),
                resource_version: source.resource_version.clone(),
                generation: source.generation,
                deletion_timestamp: source.deletion_timestamp.clone(),
                owner_references: controller.map(|owner| vec![owner]),
                ..ObjectMeta::default()
            },
            generated,
        }
    }

    /// Whether a template's plan and status read `other` as they read this: the same object,
    /// controller, deletion and compared fields. Its version aside: a status write that changes
    /// nothing a template reads (a generated resource turning Ready) leaves them alike.
    #[must_use]
    pub fn same_for_templates(&self, other: &Existing) -> bool {
        let (mine, theirs) = (&self.metadata, &other.metadata);
        mine.uid == theirs.uid
            && mine.deletion_timestamp == theirs.deletion_timestamp
            && mine.owner_references == theirs.owner_references
            && self.generated == other.generated
    }

    /// Whether the template of UID `uid` controls it.
    #[must_use]
    pub fn is_generated_by(&self, uid: &str) -> bool {
        crate::meta::is_controlled_by(&self.metadata, uid)
    }

    /// The name of the template that controls it, if one does.
    #[must_use]
    pub fn controlling_template(&self) -> Option<&str> {
        template_owner(&self.metadata)
    }
}

impl kube::Resource for Existing {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
        NamespaceIsolation::kind(dt)
    }

    fn group(dt: &()) -> std::borrow::Cow<'_, str> {
        NamespaceIsolation::group(dt)
    }

    fn version(dt: &()) -> std::borrow::Cow<'_, str> {
        NamespaceIsolation::version(dt)
    }

    fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
        NamespaceIsolation::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// kube's controller asks that what it watches can be read from JSON (it never does here: the
/// cache is filled from the watch); it reads as the resource does, as netfence's field manager.
impl<'de> serde::Deserialize<'de> for Existing {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        NamespaceIsolation::deserialize(deserializer)
            .map(|isolation| Existing::of(&isolation, crate::meta::FIELD_MANAGER))
    }
}

/// What the planner reads of the cluster (or of the manifests).
pub struct World<'a> {
    /// Every namespace.
    pub namespaces: &'a [NamespaceInfo],
    /// Every NamespaceIsolation (of every namespace), as [`Existing::of`] reads it.
    pub isolations: &'a [&'a Existing],
    /// The other valid templates, to settle which one wins a namespace.
    pub templates: &'a [&'a ValidatedTemplate],
    /// netfence's own namespace, never generated into.
    pub operator_namespace: Option<&'a str>,
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

/// The labels of every resource `template` generates: the template's own, and netfence's.
fn generated_labels(template: &ValidatedTemplate) -> BTreeMap<String, String> {
    let mut labels = template.labels().clone();
    labels.insert(TEMPLATE_LABEL.to_owned(), template.name().to_owned());
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    labels
}

/// The NamespaceIsolation `template` generates in `namespace`: its spec, the template's labels and
/// annotations plus netfence's own labels, and (when the template has a UID) a controller owner
/// reference to the template.
#[must_use]
pub fn generated(template: &ValidatedTemplate, namespace: &str) -> NamespaceIsolation {
    let labels = generated_labels(template);
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
    template_owner(&isolation.metadata)
}

fn template_owner(metadata: &ObjectMeta) -> Option<&str> {
    metadata
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
    let existing: BTreeMap<(&str, &str), &Existing> = world
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
    let owned = |isolation: &Existing| {
        template
            .uid()
            .is_some_and(|uid| isolation.is_generated_by(uid))
    };
    let desired = Desired::of(template);
    let mut result = TemplatePlan::default();
    // Borrowed, not copied: at 10,000 namespaces every plan's copies were megabytes.
    let mut kept: BTreeSet<(&str, &str)> = BTreeSet::new();
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
                    kept.insert((namespace.name.as_str(), name));
                    if differs(isolation, &desired) {
                        result
                            .apply
                            .push((ApplyReason::Drifted, namespace.name.clone()));
                    }
                }
                // (An owned resource being deleted is recreated once it is gone.)
            }
            (Some(isolation), _) => {
                let reason = match isolation.controlling_template() {
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
                .push((ApplyReason::Missing, namespace.name.clone())),
        }
    }
    for isolation in world.isolations.iter().filter(|isolation| owned(isolation)) {
        let (Some(namespace), Some(isolation_name)) = (
            isolation.metadata.namespace.as_deref(),
            isolation.metadata.name.as_deref(),
        ) else {
            continue;
        };
        if isolation.metadata.deletion_timestamp.is_some()
            || kept.contains(&(namespace, isolation_name))
        {
            continue;
        }
        result.delete.push(Removal {
            namespace: namespace.to_owned(),
            name: isolation_name.to_owned(),
            uid: isolation.metadata.uid.clone(),
        });
    }
    result.delete.sort();
    result
}

/// A generated resource that reports it cannot do its job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    /// Its namespace.
    pub namespace: String,
    /// The reason of its Ready condition.
    pub reason: String,
    /// The message of its Ready condition.
    pub message: String,
}

/// The generated resources in the plan's matched namespaces (conflicts aside) whose Ready
/// condition is False for their current generation.
#[must_use]
pub fn not_ready(
    template: &ValidatedTemplate,
    plan: &TemplatePlan,
    isolations: &[&Existing],
) -> Vec<NotReady> {
    let Some(uid) = template.uid() else {
        return Vec::new();
    };
    let conflicted: BTreeSet<&str> = plan
        .conflicts
        .iter()
        .map(|conflict| conflict.namespace.as_str())
        .collect();
    // By namespace: one lookup per matched namespace, not a scan of every resource.
    let failing: BTreeMap<&str, (&str, &str)> = isolations
        .iter()
        .filter(|isolation| {
            isolation.metadata.name.as_deref() == Some(template.isolation_name())
                && isolation.is_generated_by(uid)
        })
        .filter_map(|isolation| {
            let (reason, message) = isolation.generated.as_ref()?.not_ready.as_ref()?;
            Some((
                isolation.metadata.namespace.as_deref()?,
                (&**reason, &**message),
            ))
        })
        .collect();
    plan.matched
        .iter()
        .filter(|namespace| !conflicted.contains(namespace.as_str()))
        .filter_map(|namespace| {
            let (reason, message) = failing.get(namespace.as_str())?;
            Some(NotReady {
                namespace: namespace.clone(),
                reason: (*reason).to_owned(),
                message: (*message).to_owned(),
            })
        })
        .collect()
}

fn older_reason(winner: &ValidatedTemplate, name: &str) -> String {
    format!(
        "the older template {} also matches this namespace with isolation name {name} and wins; exclude the namespace from one template in spec.excludeNamespaces or give them different isolationNames",
        winner.name()
    )
}

/// What a template generates in every namespace, but the namespace: computed once per plan.
struct Desired<'t> {
    spec: Digest,
    labels: BTreeMap<String, String>,
    annotations: &'t BTreeMap<String, String>,
    uid: Option<&'t str>,
}

impl<'t> Desired<'t> {
    fn of(template: &'t ValidatedTemplate) -> Desired<'t> {
        Desired {
            spec: Digest::of_json(template.spec()),
            labels: generated_labels(template),
            annotations: template.annotations(),
            uid: template.uid(),
        }
    }
}

/// Whether the existing generated resource differs from the desired one in what the template
/// sets: the spec, netfence's labels and annotations (values, and keys netfence set earlier and no
/// longer wants, from the field manager's managed fields), the controller owner reference.
fn differs(existing: &Existing, desired: &Desired<'_>) -> bool {
    let Some(compared) = existing.generated.as_deref() else {
        return true;
    };
    let has_all = |have: &[(Box<str>, Box<str>)], want: &BTreeMap<String, String>| {
        want.iter().all(|(key, value)| {
            have.iter()
                .any(|(have_key, have_value)| **have_key == **key && **have_value == **value)
        })
    };
    let stale = |applied: &[Box<str>], want: &BTreeMap<String, String>| {
        applied.iter().any(|key| !want.contains_key(&**key))
    };
    compared.spec != desired.spec
        || !has_all(&compared.labels, &desired.labels)
        || !has_all(&compared.annotations, desired.annotations)
        || desired
            .uid
            .is_some_and(|uid| !existing.is_generated_by(uid))
        || stale(&compared.applied_labels, &desired.labels)
        || stale(&compared.applied_annotations, desired.annotations)
}

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
