//! What the ClusterBaseline controller does, decided from values (pure): which engine a
//! baseline uses on a cluster, which writes make the cluster hold exactly what it renders, and
//! its status.
//!
//! ```text
//! spec.engine + served kinds --engine_for--> Engine | EngineNotServed
//! rendered objects + observed objects (owned by the baseline's UID) --plan--> apply, delete
//! outcome --status--> ClusterBaselineStatus (Ready, engine, coveredNamespaces, objects)
//! ```

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use netfence_crd::{ClusterBaselineStatus, baseline::Engine};
use serde_json::Value;

use super::Object;
use crate::{
    status::{READY, condition},
    validate::ValidationErrors,
};

/// Which engines' kinds the cluster serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// `policy.networking.k8s.io/v1alpha2` clusternetworkpolicies.
    pub cluster_network_policy: bool,
    /// `projectcalico.org/v3` globalnetworkpolicies and tiers.
    pub calico: bool,
    /// `cilium.io/v2` ciliumclusterwidenetworkpolicies.
    pub cilium: bool,
}

impl Served {
    /// Whether `engine`'s kinds are served (NetworkPolicy always is).
    #[must_use]
    pub fn serves(&self, engine: Engine) -> bool {
        match engine {
            Engine::ClusterNetworkPolicy => self.cluster_network_policy,
            Engine::Calico => self.calico,
            Engine::Cilium => self.cilium,
            Engine::NetworkPolicy => true,
        }
    }
}

/// The engine a baseline uses on a cluster that serves `served`: its `spec.engine` when served;
/// without one, the first served of ClusterNetworkPolicy, Calico, Cilium, else NetworkPolicy.
///
/// # Errors
///
/// The spec's engine, when the cluster does not serve its kinds.
pub fn engine_for(spec: Option<Engine>, served: Served) -> Result<Engine, Engine> {
    match spec {
        Some(engine) if served.serves(engine) => Ok(engine),
        Some(engine) => Err(engine),
        None => Ok(Engine::ALL
            .into_iter()
            .find(|engine| served.serves(*engine))
            .unwrap_or(Engine::NetworkPolicy)),
    }
}

/// An object the cluster holds that a baseline owns (a controller owner reference to its UID).
#[derive(Clone, Debug, PartialEq)]
pub struct Owned {
    /// `Kind/name` or `Kind/namespace/name`, as [`Object::key`] writes it.
    pub key: String,
    /// Its UID, for a delete that cannot hit a newer object of the same name.
    pub uid: Option<String>,
    /// The object as observed, as JSON.
    pub object: Value,
}

/// The writes that make the cluster hold exactly what a baseline renders.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BaselinePlan {
    /// Objects to server-side apply: missing, or differing in what netfence writes.
    pub apply: Vec<Object>,
    /// Owned objects no longer rendered: (key, uid).
    pub delete: Vec<(String, Option<String>)>,
}

/// The rule lists of each kind netfence writes: sent as `[]` when rendered empty or absent, so
/// that netfence owns them (a rule someone adds to a list netfence never sent would otherwise
/// be theirs, and no apply could remove it).
fn rule_lists(kind: &str) -> &'static [&'static str] {
    match kind {
        "CiliumClusterwideNetworkPolicy" => &["ingress", "egress", "ingressDeny", "egressDeny"],
        "ClusterNetworkPolicy" | "GlobalNetworkPolicy" | "NetworkPolicy" => &["ingress", "egress"],
        _ => &[],
    }
}

/// The body netfence server-side applies for a rendered object: the object, with its kind's rule
/// lists claimed (see [`rule_lists`]).
#[must_use]
pub fn apply_body(object: &Object) -> Value {
    let mut body = serde_json::to_value(object).unwrap_or(Value::Null);
    let kind = body["kind"].as_str().unwrap_or_default().to_owned();
    if kind.is_empty() {
        // A NetworkPolicy serializes without its kind (k8s-openapi adds it on the wire).
        body["apiVersion"] = Value::from("networking.k8s.io/v1");
        body["kind"] = Value::from("NetworkPolicy");
    }
    let kind = body["kind"].as_str().unwrap_or_default().to_owned();
    if let Some(spec) = body.get_mut("spec").and_then(Value::as_object_mut) {
        for list in rule_lists(&kind) {
            let entry = spec.entry((*list).to_owned()).or_insert(Value::Null);
            if entry.is_null() {
                *entry = Value::Array(Vec::new());
            }
        }
    }
    body
}

/// A value as compared: `null` and empty lists left out of objects (an absent list and an empty
/// one mean the same, and servers drop either), numbers as numbers (`100` and `100.0` are one
/// order).
fn normal(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, value)| {
                    !value.is_null() && !value.as_array().is_some_and(Vec::is_empty)
                })
                .map(|(key, value)| (key.clone(), normal(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normal).collect()),
        Value::Number(number) => number
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| value.clone(), Value::Number),
        other => other.clone(),
    }
}

/// Whether the observed object is what netfence writes: the same spec exactly (fields added by
/// anyone are drift), and every label and owner reference netfence sets.
fn holds(observed: &Value, desired: &Value) -> bool {
    let labels_hold = desired["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(key, value)| observed["metadata"]["labels"][key] == *value);
    let owners = |value: &Value| normal(&value["metadata"]["ownerReferences"]);
    labels_hold
        && owners(observed) == owners(desired)
        && normal(&observed["spec"]) == normal(&desired["spec"])
}

/// The plan: apply what is missing or differs, delete what is owned and no longer rendered.
#[must_use]
pub fn plan(desired: &[Object], owned: &[Owned]) -> BaselinePlan {
    let mut plan = BaselinePlan::default();
    for object in desired {
        let key = object.key();
        let wanted = apply_body(object);
        let current = owned.iter().find(|owned| owned.key == key);
        if !current.is_some_and(|current| holds(&current.object, &wanted)) {
            plan.apply.push(object.clone());
        }
    }
    let keys: Vec<String> = desired.iter().map(Object::key).collect();
    for owned in owned {
        if !keys.contains(&owned.key) {
            plan.delete.push((owned.key.clone(), owned.uid.clone()));
        }
    }
    plan.delete.sort();
    plan
}

/// How a baseline reconcile ended.
#[derive(Debug)]
pub enum BaselineOutcome<'a> {
    /// Every rendered object is written.
    Done {
        /// The engine in use.
        engine: Engine,
        /// How many namespaces it covers.
        covered: usize,
        /// What it rendered, by key.
        objects: Vec<String>,
    },
    /// The spec is invalid.
    InvalidSpec(&'a ValidationErrors),
    /// The spec's engine's kinds are not served.
    EngineNotServed(Engine),
    /// The engine cannot express some fields.
    Unsupported(Engine, String),
    /// A write failed.
    ApplyFailed(Engine, String),
}

/// The status for `outcome`. Its `Ready` condition's transition time stays as in `previous`
/// unless Ready flips.
#[must_use]
pub fn status(
    outcome: &BaselineOutcome<'_>,
    generation: Option<i64>,
    previous: Option<&ClusterBaselineStatus>,
    now: Time,
) -> ClusterBaselineStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let (ready, reason, message) = match outcome {
        BaselineOutcome::Done {
            engine,
            covered,
            objects,
        } => {
            status.engine = Some(*engine);
            status.covered_namespaces = Some(i32::try_from(*covered).unwrap_or(i32::MAX));
            status.objects.clone_from(objects);
            (
                "True",
                "Reconciled",
                format!(
                    "{} {} object(s) written, covering {covered} namespace(s)",
                    objects.len(),
                    engine.as_str()
                ),
            )
        }
        BaselineOutcome::InvalidSpec(errors) => (
            "False",
            "InvalidSpec",
            format!("{errors}; nothing is written or changed until it is fixed"),
        ),
        BaselineOutcome::EngineNotServed(engine) => (
            "False",
            "EngineNotServed",
            format!(
                "spec.engine is {}, and this cluster does not serve its kinds: install the engine (or its CRDs), or choose another engine; nothing is written",
                engine.as_str()
            ),
        ),
        BaselineOutcome::Unsupported(engine, message) => {
            status.engine = Some(*engine);
            (
                "False",
                "Unsupported",
                format!("{message}; nothing is written or changed until it is fixed"),
            )
        }
        BaselineOutcome::ApplyFailed(engine, message) => {
            status.engine = Some(*engine);
            ("False", "ApplyFailed", message.clone())
        }
    };
    status.observed_generation = generation;
    status.conditions = vec![condition(
        previous.map_or(&[], |status| status.conditions.as_slice()),
        READY,
        ready,
        reason,
        message,
        generation,
        now,
    )];
    status
}
