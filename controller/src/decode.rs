//! Objects as the API server holds them, whatever it holds.
//!
//! A watch lists a whole collection and decodes every item: one item that does not decode into
//! its Rust type (a port of `-99999999999` admitted by an older CRD, a status written by someone
//! else) would fail the whole list, every second, and no resource anywhere would be reconciled.
//! So every watch of netfence decodes into [`Lenient`]: the object when it decodes, else its
//! metadata, its raw JSON and the decoding error naming the field. [`typed`] then turns each
//! event back into the Rust type, with what [`Salvage`] recovers of an undecodable object,
//! marked with [`UNDECODABLE_ANNOTATION`] so that its reconcile reports the error instead of
//! acting on a spec that is not there.
//!
//! ```text
//! list/watch --Lenient<K>--> typed() --K (undecodable: salvaged, marked)--> caches, reconcile
//! ```

use std::borrow::Cow;

use k8s_openapi::{
    api::networking::v1::NetworkPolicy, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{Resource, runtime::watcher};
use netfence_core::validate::{FieldError, ValidationErrors};
use netfence_crd::{
    IsolationTemplate, IsolationTemplateSpec, NamespaceIsolation, NamespaceIsolationSpec,
    isolation::DeletionPolicy, template::IsolationTemplateBody,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};

/// The annotation, in memory only, that marks an object salvaged from one that did not decode;
/// its value is the decoding error. Never written: status writes carry only the status, and
/// [`into_typed`] removes it from every object it did not mark itself, so nobody can set it from
/// outside (a template that names it is invalid).
pub use netfence_core::meta::UNDECODABLE_ANNOTATION;

/// An object that decoded into `K`, or what could be read of one that did not.
#[derive(Clone, Debug)]
pub enum Lenient<K> {
    /// It decoded.
    Decoded(K),
    /// It did not.
    Undecodable(Box<Undecodable>),
}

/// An object that does not decode into its Rust type.
#[derive(Clone, Debug)]
pub struct Undecodable {
    /// Its metadata (the API server validates metadata strictly: it always decodes).
    pub metadata: ObjectMeta,
    /// The object as JSON.
    pub raw: serde_json::Value,
    /// The field that failed: `spec.flows[0].ports[0].port` (empty for the object itself).
    pub path: String,
    /// Why: ``invalid value: integer `-99999999999`, expected i32``.
    pub error: String,
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.error)
        } else {
            write!(f, "{}: {}", self.path, self.error)
        }
    }
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(deserializer)?;
        // Decoded plainly first: tracking the path of every field costs about as much as the
        // decoding itself, and only an error needs it.
        if let Ok(object) = K::deserialize(&raw) {
            return Ok(Lenient::Decoded(object));
        }
        match serde_path_to_error::deserialize::<_, K>(&raw) {
            Ok(object) => Ok(Lenient::Decoded(object)),
            Err(error) => {
                let metadata = match raw.get("metadata") {
                    Some(metadata) => {
                        ObjectMeta::deserialize(metadata).map_err(serde::de::Error::custom)?
                    }
                    None => ObjectMeta::default(),
                };
                let path = error.path().to_string();
                Ok(Lenient::Undecodable(Box::new(Undecodable {
                    metadata,
                    path: if path == "." { String::new() } else { path },
                    error: error.into_inner().to_string(),
                    raw,
                })))
            }
        }
    }
}

impl<K: Serialize> Serialize for Lenient<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Lenient::Decoded(object) => object.serialize(serializer),
            Lenient::Undecodable(undecodable) => undecodable.raw.serialize(serializer),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Lenient<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dynamic: &()) -> Cow<'_, str> {
        K::kind(dynamic)
    }

    fn group(dynamic: &()) -> Cow<'_, str> {
        K::group(dynamic)
    }

    fn version(dynamic: &()) -> Cow<'_, str> {
        K::version(dynamic)
    }

    fn plural(dynamic: &()) -> Cow<'_, str> {
        K::plural(dynamic)
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Lenient::Decoded(object) => object.meta(),
            Lenient::Undecodable(undecodable) => &undecodable.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Lenient::Decoded(object) => object.meta_mut(),
            Lenient::Undecodable(undecodable) => &mut undecodable.metadata,
        }
    }
}

/// What can be recovered of an object that does not decode: its metadata, and as much of the
/// rest as still decodes on its own.
pub trait Salvage: Resource<DynamicType = ()> + Sized {
    /// The object, built from `undecodable`, and whether its spec was recovered whole (only its
    /// status failed: the object is then not marked, and its reconcile writes a status of its own).
    fn salvage(undecodable: &Undecodable) -> (Self, bool);
}

/// `raw[key]` decoded on its own, when it does.
fn part<T: DeserializeOwned>(raw: &serde_json::Value, pointer: &str) -> Option<T> {
    T::deserialize(raw.pointer(pointer)?).ok()
}

/// A spec of defaults (every field of a NamespaceIsolation spec has one).
pub(crate) fn default_spec() -> NamespaceIsolationSpec {
    NamespaceIsolationSpec::deserialize(serde_json::json!({}))
        .unwrap_or_else(|_| unreachable!("every field of a NamespaceIsolation spec has a default"))
}

/// A spec of defaults, with the deletion policy the object declares: its own when it decodes,
/// the default (`Delete`) when it declares none, and `KeepDefaultDeny` when it declares one that
/// cannot be read (deleting such a resource keeps its namespace closed).
fn salvaged_spec(raw: &serde_json::Value, pointer: &str) -> NamespaceIsolationSpec {
    let mut spec = default_spec();
    let declared = format!("{pointer}/deletionPolicy");
    spec.deletion_policy = match raw.pointer(&declared) {
        None => DeletionPolicy::default(),
        Some(_) => part(raw, &declared).unwrap_or(DeletionPolicy::KeepDefaultDeny),
    };
    spec
}

impl Salvage for NamespaceIsolation {
    /// The whole spec when only the status is undecodable (the reconcile then writes a status of
    /// its own); else a spec of defaults, with the declared deletion policy when that decodes.
    fn salvage(undecodable: &Undecodable) -> (Self, bool) {
        let spec = part(&undecodable.raw, "/spec");
        let whole = spec.is_some();
        let spec = spec.unwrap_or_else(|| salvaged_spec(&undecodable.raw, "/spec"));
        let object = NamespaceIsolation {
            metadata: undecodable.metadata.clone(),
            spec,
            status: None,
        };
        (object, whole)
    }
}

impl Salvage for IsolationTemplate {
    fn salvage(undecodable: &Undecodable) -> (Self, bool) {
        let spec = part(&undecodable.raw, "/spec");
        let whole = spec.is_some();
        let spec = spec.unwrap_or_else(|| IsolationTemplateSpec {
            namespace_selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_expressions: None,
                match_labels: None,
            },
            exclude_namespaces: Vec::new(),
            isolation_name: part(&undecodable.raw, "/spec/isolationName"),
            template: IsolationTemplateBody {
                metadata: None,
                spec: salvaged_spec(&undecodable.raw, "/spec/template/spec"),
            },
        });
        let object = IsolationTemplate {
            metadata: undecodable.metadata.clone(),
            spec,
            status: None,
        };
        (object, whole)
    }
}

impl Salvage for netfence_crd::ClusterBaseline {
    /// The whole spec when only the status is undecodable; else a spec that covers nothing a
    /// reconcile acts on (the reconcile reports the error and writes nothing, and other
    /// baselines ignore an undecodable one when they share out namespaces).
    fn salvage(undecodable: &Undecodable) -> (Self, bool) {
        let spec: Option<netfence_crd::ClusterBaselineSpec> = part(&undecodable.raw, "/spec");
        let whole = spec.is_some();
        let spec = spec.unwrap_or_else(|| {
            netfence_crd::ClusterBaselineSpec::deserialize(serde_json::json!({
                "namespaceSelector": {"matchExpressions": [{"key": "netfence.io/undecodable", "operator": "Exists"}]}
            }))
            .unwrap_or_else(|_| unreachable!("a namespace selector is the only required field"))
        });
        let object = netfence_crd::ClusterBaseline {
            metadata: undecodable.metadata.clone(),
            spec,
            status: None,
        };
        (object, whole)
    }
}

impl Salvage for NetworkPolicy {
    /// Its metadata only: a plan then finds its spec differing from the rendered one, and
    /// netfence restores a policy it owns.
    fn salvage(undecodable: &Undecodable) -> (Self, bool) {
        let spec: Option<_> = part(&undecodable.raw, "/spec");
        let whole = spec.is_some();
        let object = NetworkPolicy {
            metadata: undecodable.metadata.clone(),
            spec,
        };
        (object, whole)
    }
}

/// The decoding error of an object salvaged by [`typed`], if it is one, as the field that
/// failed and what to do.
#[must_use]
pub fn undecodable<K: Resource>(object: &K) -> Option<ValidationErrors> {
    let marked = object
        .meta()
        .annotations
        .as_ref()?
        .get(UNDECODABLE_ANNOTATION)?;
    let (path, error) = marked.split_once('\n').unwrap_or(("", marked));
    Some(ValidationErrors(vec![FieldError {
        path: path.to_owned(),
        message: format!(
            "{error}: netfence cannot read this value; correct it (a CRD that admitted it is older than this netfence: install the CRDs of this version)"
        ),
    }]))
}

/// The object in its Rust type: decoded (any [`UNDECODABLE_ANNOTATION`] it carries removed), or
/// salvaged and marked. `on_undecodable` hears of each undecodable one.
pub fn into_typed<K: Salvage>(object: Lenient<K>, on_undecodable: &impl Fn(&Undecodable)) -> K {
    match object {
        Lenient::Decoded(mut object) => {
            if let Some(annotations) = object.meta_mut().annotations.as_mut() {
                annotations.remove(UNDECODABLE_ANNOTATION);
            }
            object
        }
        Lenient::Undecodable(undecodable) => {
            on_undecodable(&undecodable);
            let (mut object, whole) = K::salvage(&undecodable);
            if whole {
                if let Some(annotations) = object.meta_mut().annotations.as_mut() {
                    annotations.remove(UNDECODABLE_ANNOTATION);
                }
                return object;
            }
            object
                .meta_mut()
                .annotations
                .get_or_insert_with(Default::default)
                .insert(
                    UNDECODABLE_ANNOTATION.to_owned(),
                    format!("{}\n{}", undecodable.path, undecodable.error),
                );
            object
        }
    }
}

/// A watcher event in the Rust type (see [`into_typed`]).
pub fn typed<K: Salvage>(
    event: watcher::Event<Lenient<K>>,
    on_undecodable: &impl Fn(&Undecodable),
) -> watcher::Event<K> {
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(into_typed(object, on_undecodable)),
        // A deletion needs no error reported: the object is gone.
        watcher::Event::Delete(object) => watcher::Event::Delete(into_typed(object, &|_| {})),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(object) => {
            watcher::Event::InitApply(into_typed(object, on_undecodable))
        }
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isolation(spec: &serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "netfence.io/v1alpha1",
            "kind": "NamespaceIsolation",
            "metadata": {"name": "shop", "namespace": "shop", "uid": "u1", "resourceVersion": "7"},
            "spec": spec.clone(),
        })
    }

    /// One item that does not decode leaves the list readable: the others decode, and it keeps
    /// its name and the field that failed.
    #[test]
    fn one_bad_item_does_not_fail_the_list() {
        let list = serde_json::json!([
            isolation(&serde_json::json!({"tiers": [{"name": "web", "podSelector": {}}]})),
            isolation(&serde_json::json!({
                "deletionPolicy": "Orphan",
                "flows": [{"from": "a", "to": "b", "ports": [{"port": -99_999_999_999_i64}]}],
            })),
        ]);
        let items: Vec<Lenient<NamespaceIsolation>> =
            serde_json::from_value(list).expect("the list decodes");
        assert!(matches!(items[0], Lenient::Decoded(_)));
        let bad = into_typed(items[1].clone(), &|_| {});
        let errors = undecodable(&bad).expect("marked");
        assert_eq!(errors.0.len(), 1);
        assert_eq!(errors.0[0].path, "spec.flows[0].ports[0].port");
        assert!(errors.0[0].message.contains("-99999999999"), "{errors}");
        assert_eq!(bad.metadata.name.as_deref(), Some("shop"));
        assert_eq!(bad.spec.deletion_policy, DeletionPolicy::Orphan);
        assert!(bad.spec.tiers.is_empty());
    }

    /// An undecodable deletion policy keeps the default deny: the namespace stays closed.
    #[test]
    fn an_unreadable_deletion_policy_keeps_the_deny() {
        let object: Lenient<NamespaceIsolation> =
            serde_json::from_value(isolation(&serde_json::json!({"deletionPolicy": "Keep"})))
                .expect("decodes leniently");
        let salvaged = into_typed(object, &|_| {});
        assert_eq!(
            salvaged.spec.deletion_policy,
            DeletionPolicy::KeepDefaultDeny
        );
        let errors = undecodable(&salvaged).expect("marked");
        assert_eq!(errors.0[0].path, "spec.deletionPolicy");
        assert!(
            errors.0[0].message.starts_with("unknown variant"),
            "{errors}"
        );
    }

    /// Only the status is unreadable: the spec is kept whole and the object is not marked (its
    /// reconcile writes a status of its own).
    #[test]
    fn an_unreadable_status_keeps_the_spec() {
        let mut value = isolation(&serde_json::json!({"mode": "DryRun"}));
        value["status"] = serde_json::json!({"policyCount": 99_999_999_999_i64});
        let object: Lenient<NamespaceIsolation> =
            serde_json::from_value(value).expect("decodes leniently");
        let Lenient::Undecodable(ref inner) = object else {
            panic!("the status does not decode");
        };
        assert_eq!(inner.path, "status.policyCount");
        let salvaged = into_typed(object.clone(), &|_| {});
        assert_eq!(salvaged.spec.mode, netfence_crd::isolation::Mode::DryRun);
        assert!(salvaged.status.is_none());
        assert_eq!(undecodable(&salvaged), None);
    }

    /// Nobody can mark a readable object from outside, nor one of which only the status is
    /// unreadable.
    #[test]
    fn the_mark_cannot_be_forged() {
        let mut value = isolation(&serde_json::json!({}));
        value["metadata"]["annotations"] =
            serde_json::json!({UNDECODABLE_ANNOTATION: "spec.tiers\nforged"});
        let object: Lenient<NamespaceIsolation> =
            serde_json::from_value(value.clone()).expect("decodes");
        assert_eq!(undecodable(&into_typed(object, &|_| {})), None);
        value["status"] = serde_json::json!({"policyCount": "many"});
        let object: Lenient<NamespaceIsolation> =
            serde_json::from_value(value).expect("decodes leniently");
        assert!(matches!(object, Lenient::Undecodable(_)));
        assert_eq!(undecodable(&into_typed(object, &|_| {})), None);
    }

    /// A resource that declares no deletion policy has the default one, `Delete`: no finalizer
    /// is added to it for a guess.
    #[test]
    fn an_absent_deletion_policy_is_the_default() {
        let object: Lenient<NamespaceIsolation> =
            serde_json::from_value(isolation(&serde_json::json!({"mode": "Sometimes"})))
                .expect("decodes leniently");
        let salvaged = into_typed(object, &|_| {});
        assert!(undecodable(&salvaged).is_some());
        assert_eq!(salvaged.spec.deletion_policy, DeletionPolicy::Delete);
    }

    /// A labelled NetworkPolicy that does not decode keeps its place in the cache with no spec:
    /// its owner's plan finds it drifted and writes it again.
    #[test]
    fn an_unreadable_policy_keeps_its_name() {
        let policy: Lenient<NetworkPolicy> = serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "shop-default-deny", "namespace": "shop"},
            "spec": {"podSelector": 5},
        }))
        .expect("decodes leniently");
        let salvaged = into_typed(policy, &|_| {});
        assert_eq!(salvaged.metadata.name.as_deref(), Some("shop-default-deny"));
        assert!(salvaged.spec.is_none());
        let errors = undecodable(&salvaged).expect("marked");
        assert_eq!(errors.0[0].path, "spec.podSelector");
    }
}
