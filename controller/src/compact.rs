//! NamespaceIsolations as the controller's cache holds them: who each one is, and what the
//! metrics read of its status. A reconcile reads the resource itself from the API server.
//!
//! ```text
//! watch NamespaceIsolation --> Compact { existing: Existing (core::template): name, namespace, uid,
//!                                                  resourceVersion, generation, deletionTimestamp,
//!                                                  the controller ownerReference (the cache's keys,
//!                                                  the triggers); of a generated resource, what
//!                                                  the template controller's plan compares
//!                                        summary: Ready and the audit's findings (the metrics) }
//! reconcile(Compact) --GET--> the NamespaceIsolation, whole (the read also says it still exists)
//! ```
//!
//! The template controller reads the same cache (one watch of NamespaceIsolations, not two:
//! at 10,000 namespaces a second cache took some 7 MB).
//!
//! Decoded, a resource with its status takes tens of kilobytes of heap (every label, port and
//! message its own allocation), and even as JSON a few: at 10,000 namespaces the cache alone
//! came near the operator's 100 MB, twice that while a relist replaced it. A reconcile already
//! asked the API server whether its resource still existed before writing; it now reads the
//! resource at its start instead, so the cache keeps what a trigger needs and no more.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::{reflector::ObjectRef, watcher};
use netfence_core::{meta::FIELD_MANAGER, template::Existing};
use netfence_crd::NamespaceIsolation;

/// One NamespaceIsolation, as the cache keeps it.
#[derive(Clone, Debug)]
pub struct Compact {
    existing: Existing,
    summary: Summary,
}

/// What the metrics read of a resource's status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// The status of its Ready condition: `True`, `False` or `Unknown` (also without one).
    pub ready: &'static str,
    /// How many findings its intent audit has: widened, narrowed, DNS.
    pub findings: [usize; 3],
}

impl Compact {
    /// What the cache keeps of `resource` (with its managedFields: a generated resource's
    /// [`Existing`] keeps the keys netfence applied).
    #[must_use]
    pub fn of(resource: &NamespaceIsolation) -> Compact {
        let existing = Existing::of(resource, FIELD_MANAGER);
        let status = resource.status.as_ref();
        let ready = status
            .and_then(|status| status.conditions.iter().find(|c| c.type_ == "Ready"))
            .map_or("Unknown", |condition| match condition.status.as_str() {
                "True" => "True",
                "False" => "False",
                _ => "Unknown",
            });
        let findings = status
            .and_then(|status| status.audit.as_ref())
            .map_or([0; 3], |audit| {
                [audit.widened.len(), audit.narrowed.len(), audit.dns.len()]
            });
        Compact {
            existing,
            summary: Summary { ready, findings },
        }
    }

    /// The resource of a `Delete` event, from what the cache kept of it: who it was, with a
    /// spec of defaults (nothing reads the spec of a deleted resource).
    #[must_use]
    pub fn deleted(&self) -> NamespaceIsolation {
        NamespaceIsolation {
            metadata: self.existing.metadata.clone(),
            spec: crate::decode::default_spec(),
            status: None,
        }
    }

    /// What the template controller's plan reads.
    #[must_use]
    pub fn existing(&self) -> &Existing {
        &self.existing
    }

    /// What the metrics read.
    #[must_use]
    pub fn summary(&self) -> Summary {
        self.summary
    }

    /// The watcher event of the compact form.
    #[must_use]
    pub fn event(event: watcher::Event<NamespaceIsolation>) -> watcher::Event<Compact> {
        map_event(event, Compact::of)
    }
}

/// `event`, its objects replaced by what `keep` keeps of each.
pub fn map_event<K, Kept>(
    event: watcher::Event<K>,
    keep: impl Fn(&K) -> Kept,
) -> watcher::Event<Kept> {
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(keep(&object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(keep(&object)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(object) => watcher::Event::InitApply(keep(&object)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// The reference to the compact form of the resource `reference` names.
#[must_use]
pub fn reference(reference: ObjectRef<NamespaceIsolation>) -> ObjectRef<Compact> {
    reference.into_kind_unchecked(())
}

impl kube::Resource for Compact {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        NamespaceIsolation::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        NamespaceIsolation::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        NamespaceIsolation::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        NamespaceIsolation::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.existing.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.existing.metadata
    }
}

/// kube's controller asks that what it reconciles can be read from JSON (it never does here:
/// the cache is filled from the watch); it reads as the resource does.
impl<'de> serde::Deserialize<'de> for Compact {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        NamespaceIsolation::deserialize(deserializer).map(|resource| Compact::of(&resource))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache keeps the resource's identity and version, and its Ready condition.
    #[test]
    fn keeps_identity_version_and_readiness() {
        let resource: NamespaceIsolation = serde_json::from_value(serde_json::json!({
            "apiVersion": "netfence.io/v1alpha1",
            "kind": "NamespaceIsolation",
            "metadata": {"name": "shop", "namespace": "shop", "uid": "u", "resourceVersion": "7",
                         "generation": 2, "labels": {"team": "a"}, "finalizers": ["netfence.io/deletion-policy"],
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"tiers": [{"name": "web", "podSelector": {"matchLabels": {"app": "web"}}}]},
            "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True",
                "reason": "Reconciled", "message": "", "lastTransitionTime": "2026-12-02T00:00:00Z"}]},
        }))
        .expect("resource");
        let compact = Compact::of(&resource);
        assert_eq!(
            kube::Resource::meta(&compact).resource_version.as_deref(),
            Some("7")
        );
        assert_eq!(compact.summary().ready, "True");
        assert_eq!(
            ObjectRef::from_obj(&compact),
            reference(ObjectRef::from_obj(&resource))
        );
    }
}
