//! Render a validated ClusterBaseline to the objects of one engine. Pure.
//!
//! ```text
//! ValidatedBaseline + covered namespaces + engine
//!   ClusterNetworkPolicy: <name>-guardrails (Admin), <name>-same-namespace-<ns> and <name>-baseline (Baseline)
//!   Calico:               Tier <name>-guardrails (before default, passes the rest) and its policy;
//!                         <name>-baseline and <name>-same-namespace-<ns> in the default tier after the NetworkPolicies
//!   Cilium:               <name>-guardrails (no default deny), <name>-baseline and <name>-same-namespace-<ns>
//!   NetworkPolicy:        in every covered namespace, what a NamespaceIsolation with the baseline's fields renders
//! ```
//!
//! What an engine cannot express is an [`Unsupported`] naming the field and the engine, and then
//! nothing is rendered: a baseline is never applied half. The same input gives byte-identical
//! output: namespaces are sorted, rules keep the spec's order.

mod calico;
mod cilium;
mod cluster_network_policy;
pub mod plan;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::networking::v1::NetworkPolicy,
    apimachinery::pkg::apis::meta::v1::{
        LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
    },
};
use kube::Resource;
use netfence_crd::{
    ClusterBaseline,
    baseline::{Engine, GuardrailAction},
    engines::{
        calico::{GlobalNetworkPolicy, Tier},
        cilium::CiliumClusterwideNetworkPolicy,
        cluster_network_policy::ClusterNetworkPolicy,
    },
    isolation::{Direction, NAMESPACE_NAME_LABEL, SameNamespace},
};
use serde::Serialize;

use crate::{
    meta::{BASELINE_LABEL, ISOLATION_LABEL, MANAGED_BY, MANAGED_BY_LABEL, ROLE_LABEL},
    render,
    selector::Labels,
    template::older,
    validate::{ValidSharedService, ValidatedBaseline},
};

/// One rendered object.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy.
    ClusterNetworkPolicy(Box<ClusterNetworkPolicy>),
    /// `projectcalico.org/v3` Tier.
    CalicoTier(Box<Tier>),
    /// `projectcalico.org/v3` GlobalNetworkPolicy.
    CalicoPolicy(Box<GlobalNetworkPolicy>),
    /// `cilium.io/v2` CiliumClusterwideNetworkPolicy.
    Cilium(Box<CiliumClusterwideNetworkPolicy>),
    /// A namespaced `networking.k8s.io/v1` NetworkPolicy.
    NetworkPolicy(Box<NetworkPolicy>),
}

impl Object {
    /// `Kind/name`, or `Kind/namespace/name` for a NetworkPolicy.
    #[must_use]
    pub fn key(&self) -> String {
        let (kind, metadata) = match self {
            Object::ClusterNetworkPolicy(object) => (object.kind.as_str(), &object.metadata),
            Object::CalicoTier(object) => (object.kind.as_str(), &object.metadata),
            Object::CalicoPolicy(object) => (object.kind.as_str(), &object.metadata),
            Object::Cilium(object) => (object.kind.as_str(), &object.metadata),
            Object::NetworkPolicy(object) => ("NetworkPolicy", &object.metadata),
        };
        let name = metadata.name.as_deref().unwrap_or_default();
        match &metadata.namespace {
            Some(namespace) => format!("{kind}/{namespace}/{name}"),
            None => format!("{kind}/{name}"),
        }
    }
}

/// A field the engine cannot express.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {engine} cannot express this: {message}")]
pub struct Unsupported {
    /// The field path, `spec.guardrails[0].ipBlock.except`.
    pub field: String,
    /// The engine.
    pub engine: &'static str,
    /// Why, and what to do.
    pub message: String,
}

/// Every field the engine cannot express.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct UnsupportedFields(pub Vec<Unsupported>);

/// What a rendered object is for (the value of [`ROLE_LABEL`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Guardrails,
    Baseline,
    SameNamespace,
}

impl Role {
    fn label_value(self) -> &'static str {
        match self {
            Role::Guardrails => "guardrails",
            Role::Baseline => "baseline",
            Role::SameNamespace => "same-namespace",
        }
    }
}

/// The engine a baseline renders to: `--engine` (or the one the controller picked), else the
/// spec's, else ClusterNetworkPolicy.
#[must_use]
pub fn engine(baseline: &ValidatedBaseline, chosen: Option<Engine>) -> Engine {
    chosen
        .or(baseline.engine())
        .unwrap_or(Engine::ClusterNetworkPolicy)
}

/// The namespaces a baseline covers, and those its selector matches that an older baseline won.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Covered: matched, not excluded, not won by an older baseline. Sorted.
    pub covered: Vec<String>,
    /// Matched but won by an older baseline: (namespace, the winner's name). Sorted.
    pub lost: Vec<(String, String)>,
}

/// Which of `namespaces` (name, labels) `baseline` covers, beside the `others` baselines: a
/// namespace two baselines match belongs to the older one (earlier creation, then smaller name);
/// the newer leaves it out of everything it renders and reports it. `operator`: netfence's own
/// namespace, never covered.
#[must_use]
pub fn coverage(
    baseline: &ValidatedBaseline,
    others: &[&ValidatedBaseline],
    namespaces: &[(String, Labels)],
    operator: Option<&str>,
) -> Coverage {
    let mut coverage = Coverage::default();
    for (namespace, labels) in namespaces {
        if !baseline.covers(namespace, labels, operator) {
            continue;
        }
        let winner = others
            .iter()
            .filter(|other| other.name() != baseline.name())
            .filter(|other| other.covers(namespace, labels, operator))
            .filter(|other| {
                older(
                    (other.created(), other.name()),
                    (baseline.created(), baseline.name()),
                )
            })
            .min_by(|a, b| {
                if older((a.created(), a.name()), (b.created(), b.name())) {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            });
        match winner {
            Some(winner) => coverage
                .lost
                .push((namespace.clone(), winner.name().to_owned())),
            None => coverage.covered.push(namespace.clone()),
        }
    }
    coverage.covered.sort();
    coverage.covered.dedup();
    coverage.lost.sort();
    coverage.lost.dedup();
    coverage
}

/// The objects of `baseline` for `engine`, over its `coverage`; `operator` is netfence's own
/// namespace, left out like the cluster's own (a deny there would cut netfence off).
///
/// # Errors
///
/// Every field `engine` cannot express.
pub fn render(
    baseline: &ValidatedBaseline,
    engine: Engine,
    coverage: &Coverage,
    operator: Option<&str>,
) -> Result<Vec<Object>, UnsupportedFields> {
    let mut excluded = baseline.excluded().clone();
    excluded.extend(coverage.lost.iter().map(|(namespace, _)| namespace.clone()));
    excluded.extend(operator.map(str::to_owned));
    let context = Context {
        baseline,
        covered: &coverage.covered,
        excluded,
    };
    match engine {
        Engine::ClusterNetworkPolicy => cluster_network_policy::render(&context),
        Engine::Calico => calico::render(&context),
        Engine::Cilium => cilium::render(&context),
        Engine::NetworkPolicy => network_policies(&context),
    }
}

/// What every engine's renderer reads.
pub(crate) struct Context<'a> {
    pub(crate) baseline: &'a ValidatedBaseline,
    pub(crate) covered: &'a [String],
    /// Left out by name: always, by `excludeNamespaces`, and won by an older baseline.
    pub(crate) excluded: BTreeSet<String>,
}

impl Context<'_> {
    pub(crate) fn name(&self) -> &str {
        self.baseline.name()
    }

    pub(crate) fn isolates(&self, direction: Direction) -> bool {
        self.baseline.baseline().isolates(direction)
    }

    /// The namespaces that get a same-namespace allow (none unless `sameNamespace: Allow`).
    pub(crate) fn same_namespace(&self) -> &[String] {
        if self.baseline.baseline().same_namespace() == SameNamespace::Allow {
            self.covered
        } else {
            &[]
        }
    }

    /// The covered namespaces as one label selector: `namespaceSelector` AND not excluded by
    /// name.
    pub(crate) fn covered_selector(&self) -> LabelSelector {
        let mut selector = self.baseline.namespace_selector().written.clone();
        let excluded: Vec<String> = self.excluded.iter().cloned().collect();
        selector
            .match_expressions
            .get_or_insert_with(Vec::new)
            .push(LabelSelectorRequirement {
                key: NAMESPACE_NAME_LABEL.to_owned(),
                operator: "NotIn".to_owned(),
                values: Some(excluded),
            });
        selector
    }

    /// The allows, with their field path.
    pub(crate) fn allows(&self) -> impl Iterator<Item = (String, &ValidSharedService)> {
        self.baseline
            .baseline()
            .shared_services()
            .iter()
            .enumerate()
            .map(|(index, rule)| (format!("spec.allow[{index}]"), rule))
    }

    /// The guardrails of one direction, with their field path and action, in order.
    pub(crate) fn guardrails(
        &self,
        direction: Direction,
    ) -> impl Iterator<Item = (String, &ValidSharedService, GuardrailAction)> {
        self.baseline
            .guardrails()
            .iter()
            .enumerate()
            .filter(move |(_, guardrail)| guardrail.rule.direction == direction)
            .map(|(index, guardrail)| {
                (
                    format!("spec.guardrails[{index}]"),
                    &guardrail.rule,
                    guardrail.action,
                )
            })
    }

    /// The metadata of a cluster-scoped object named `name` with `role`.
    pub(crate) fn metadata(&self, name: String, role: Role) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            labels: Some(labels(self.name(), role.label_value())),
            owner_references: self.baseline.uid().map(|uid| vec![owner(self.name(), uid)]),
            ..ObjectMeta::default()
        }
    }
}

/// The labels of an object the baseline named `baseline` renders with role `role`.
fn labels(baseline: &str, role: &str) -> BTreeMap<String, String> {
    [
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (BASELINE_LABEL.to_owned(), baseline.to_owned()),
        (ROLE_LABEL.to_owned(), role.to_owned()),
    ]
    .into()
}

/// The controller owner reference to a ClusterBaseline.
#[must_use]
pub fn owner(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: ClusterBaseline::api_version(&()).into_owned(),
        kind: ClusterBaseline::kind(&()).into_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The NetworkPolicy engine: in every covered namespace, the NetworkPolicies of the baseline's
/// fields, labelled as the baseline's (not as a NamespaceIsolation's) and owned by it.
fn network_policies(context: &Context<'_>) -> Result<Vec<Object>, UnsupportedFields> {
    let unsupported: Vec<Unsupported> = context
        .baseline
        .guardrails()
        .iter()
        .enumerate()
        .map(|(index, _)| Unsupported {
            field: format!("spec.guardrails[{index}]"),
            engine: Engine::NetworkPolicy.as_str(),
            message: "NetworkPolicies have no level above a namespace's own policies, so nothing can be decided before them; use the ClusterNetworkPolicy, Calico or Cilium engine, or remove the guardrails".to_owned(),
        })
        .collect();
    if !unsupported.is_empty() {
        return Err(UnsupportedFields(unsupported));
    }
    let mut objects = Vec::new();
    for namespace in context.covered {
        let isolation = context
            .baseline
            .baseline()
            .clone()
            .with_default_namespace(Some(namespace.clone()));
        for (role, mut policy) in render::roles_and_policies(&isolation) {
            let mut labels = policy.metadata.labels.take().unwrap_or_default();
            labels.remove(ISOLATION_LABEL);
            labels.insert(BASELINE_LABEL.to_owned(), context.name().to_owned());
            labels.insert(ROLE_LABEL.to_owned(), role.label_value().to_owned());
            policy.metadata.labels = Some(labels);
            policy.metadata.owner_references = context
                .baseline
                .uid()
                .map(|uid| vec![owner(context.name(), uid)]);
            objects.push(Object::NetworkPolicy(Box::new(policy)));
        }
    }
    Ok(objects)
}
