//! Validation of a [`ClusterBaseline`]: the baseline part (`isolate`, `dns`, `sameNamespace`,
//! `allow`) is validated exactly as a NamespaceIsolation with those fields (an `allow` entry is a
//! shared service without tiers), the guardrails as shared services with an action; field paths
//! are the baseline's own.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use netfence_crd::{
    ClusterBaseline, NamespaceIsolation, NamespaceIsolationSpec,
    baseline::{BaselineDeletionPolicy, BaselineRule, Engine, GuardrailAction},
    isolation::{Direction, SharedService},
    template::ALWAYS_EXCLUDED,
};

use crate::{
    names::{dns_label_problem, label_value_problem},
    selector::Selector,
    validate::{
        FieldError, ValidSelector, ValidSharedService, ValidatedIsolation, ValidationErrors,
    },
};

/// A guardrail that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidGuardrail {
    /// Its name, direction, peer and ports (`tiers` is always `None`).
    pub rule: ValidSharedService,
    /// Deny or Allow.
    pub action: GuardrailAction,
}

/// A ClusterBaseline whose every field was checked: what render and the controller use.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedBaseline {
    name: String,
    uid: Option<String>,
    created: Option<Time>,
    engine: Option<Engine>,
    namespace_selector: ValidSelector,
    excluded: BTreeSet<String>,
    baseline: ValidatedIsolation,
    guardrails: Vec<ValidGuardrail>,
    deletion_policy: BaselineDeletionPolicy,
}

impl ValidatedBaseline {
    /// The baseline's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its UID (absent in manifests).
    #[must_use]
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// When it was created (absent in manifests): the older baseline wins a namespace.
    #[must_use]
    pub fn created(&self) -> Option<&Time> {
        self.created.as_ref()
    }

    /// `spec.engine`.
    #[must_use]
    pub fn engine(&self) -> Option<Engine> {
        self.engine
    }

    /// `spec.namespaceSelector`.
    #[must_use]
    pub fn namespace_selector(&self) -> &ValidSelector {
        &self.namespace_selector
    }

    /// `spec.excludeNamespaces`, with the always excluded ones.
    #[must_use]
    pub fn excluded(&self) -> &BTreeSet<String> {
        &self.excluded
    }

    /// Whether the baseline covers a namespace with this name and these labels (`operator`:
    /// netfence's own namespace, always left out).
    #[must_use]
    pub fn covers(
        &self,
        namespace: &str,
        labels: &crate::selector::Labels,
        operator: Option<&str>,
    ) -> bool {
        !self.excluded.contains(namespace)
            && operator != Some(namespace)
            && self.namespace_selector.selector.matches(labels)
    }

    /// The baseline part, as a NamespaceIsolation named after the baseline with no namespace:
    /// isolate, DNS, same namespace, and the allows as shared services without tiers.
    #[must_use]
    pub fn baseline(&self) -> &ValidatedIsolation {
        &self.baseline
    }

    /// The guardrails, in order.
    #[must_use]
    pub fn guardrails(&self) -> &[ValidGuardrail] {
        &self.guardrails
    }

    /// `spec.deletionPolicy`.
    #[must_use]
    pub fn deletion_policy(&self) -> BaselineDeletionPolicy {
        self.deletion_policy
    }
}

/// A baseline rule as the shared service it is validated as.
fn shared_service(rule: &BaselineRule) -> SharedService {
    SharedService {
        name: rule.name.clone(),
        direction: rule.direction,
        namespace: rule.namespace.clone(),
        namespace_selector: rule.namespace_selector.clone(),
        pod_selector: rule.pod_selector.clone(),
        ip_block: rule.ip_block.clone(),
        tiers: None,
        ports: rule.ports.clone(),
    }
}

/// An Enforce NamespaceIsolation spec with no tiers, flows or shared services: every default
/// (both directions isolated, the default DNS rule).
#[must_use]
pub fn isolation_spec() -> NamespaceIsolationSpec {
    NamespaceIsolationSpec {
        mode: netfence_crd::isolation::Mode::Enforce,
        isolate: vec![Direction::Ingress, Direction::Egress],
        dns: netfence_crd::isolation::Dns::default(),
        same_namespace: netfence_crd::isolation::SameNamespace::Deny,
        deletion_policy: netfence_crd::isolation::DeletionPolicy::Delete,
        tiers: Vec::new(),
        flows: Vec::new(),
        shared_services: Vec::new(),
        acknowledged_policies: Vec::new(),
    }
}

/// Validate `spec` as a NamespaceIsolation named `name`, moving `spec.sharedServices` errors to
/// `list` and dropping name errors (reported against metadata.name already).
fn validate_as_isolation(
    name: &str,
    spec: NamespaceIsolationSpec,
    list: &str,
    errors: &mut Vec<FieldError>,
) -> Option<ValidatedIsolation> {
    match ValidatedIsolation::try_from(&NamespaceIsolation::new(name, spec)) {
        Ok(isolation) => Some(isolation),
        Err(found) => {
            for error in found.0 {
                let Some(rest) = error.path.strip_prefix("spec") else {
                    continue;
                };
                let path = match rest.strip_prefix(".sharedServices") {
                    Some(rest) => format!("spec.{list}{rest}"),
                    None => format!("spec{rest}"),
                };
                let message = error
                    .message
                    .replace("spec.sharedServices", &format!("spec.{list}"));
                errors.push(FieldError { path, message });
            }
            None
        }
    }
}

/// `spec.namespaceSelector` parsed, and `spec.excludeNamespaces` checked.
fn check_namespaces(
    spec: &netfence_crd::ClusterBaselineSpec,
    errors: &mut Vec<FieldError>,
) -> Option<ValidSelector> {
    let push = |errors: &mut Vec<FieldError>, path: String, message: String| {
        errors.push(FieldError { path, message });
    };
    let namespace_selector = match Selector::parse(&spec.namespace_selector) {
        Ok(selector) => Some(ValidSelector {
            written: spec.namespace_selector.clone(),
            selector,
        }),
        Err(problems) => {
            for problem in problems {
                push(
                    errors,
                    format!("spec.namespaceSelector.{}", problem.field),
                    problem.message,
                );
            }
            None
        }
    };
    for (index, namespace) in spec.exclude_namespaces.iter().enumerate() {
        if let Some(problem) = dns_label_problem(namespace) {
            push(errors, format!("spec.excludeNamespaces[{index}]"), problem);
        }
    }
    namespace_selector
}

impl TryFrom<&ClusterBaseline> for ValidatedBaseline {
    type Error = ValidationErrors;

    fn try_from(resource: &ClusterBaseline) -> Result<Self, Self::Error> {
        let mut errors = Vec::new();
        let push = |errors: &mut Vec<FieldError>, path: String, message: String| {
            errors.push(FieldError { path, message });
        };
        let name = resource.metadata.name.clone().unwrap_or_default();
        let spec = &resource.spec;
        if name.is_empty() {
            push(&mut errors, "metadata.name".into(), "is required".into());
        } else if let Some(problem) = label_value_problem(&name) {
            push(
                &mut errors,
                "metadata.name".into(),
                format!(
                    "{problem}; the baseline's name is the value of a label on what it renders"
                ),
            );
        }
        let namespace_selector = check_namespaces(spec, &mut errors);
        let checked_name = if errors.iter().any(|error| error.path == "metadata.name") {
            "baseline"
        } else {
            name.as_str()
        };
        for (index, rule) in spec.allow.iter().enumerate() {
            if rule.action.is_some() {
                push(
                    &mut errors,
                    format!("spec.allow[{index}].action"),
                    "is for guardrails only: every allow entry allows; remove it, or move the entry to spec.guardrails".into(),
                );
            }
        }
        let baseline = validate_as_isolation(
            checked_name,
            NamespaceIsolationSpec {
                isolate: spec.isolate.clone(),
                dns: spec.dns.clone(),
                same_namespace: spec.same_namespace,
                shared_services: spec.allow.iter().map(shared_service).collect(),
                ..isolation_spec()
            },
            "allow",
            &mut errors,
        );
        // Guardrails: peers and ports as shared services, in both directions.
        let guardrail_spec = validate_as_isolation(
            checked_name,
            NamespaceIsolationSpec {
                isolate: vec![Direction::Ingress, Direction::Egress],
                shared_services: spec.guardrails.iter().map(shared_service).collect(),
                dns: netfence_crd::isolation::Dns {
                    enabled: false,
                    ..netfence_crd::isolation::Dns::default()
                },
                ..isolation_spec()
            },
            "guardrails",
            &mut errors,
        );
        for (index, rule) in spec.guardrails.iter().enumerate() {
            if rule.action.is_none() {
                push(
                    &mut errors,
                    format!("spec.guardrails[{index}].action"),
                    "is required: Deny or Allow".into(),
                );
            }
        }
        match (baseline, guardrail_spec, namespace_selector) {
            (Some(baseline), Some(guardrail_spec), Some(namespace_selector))
                if errors.is_empty() =>
            {
                let guardrails = guardrail_spec
                    .shared_services()
                    .iter()
                    .zip(&spec.guardrails)
                    .map(|(rule, written)| ValidGuardrail {
                        rule: rule.clone(),
                        action: written.action.unwrap_or(GuardrailAction::Deny),
                    })
                    .collect();
                let mut excluded: BTreeSet<String> = ALWAYS_EXCLUDED
                    .iter()
                    .map(|name| (*name).to_owned())
                    .collect();
                excluded.extend(spec.exclude_namespaces.iter().cloned());
                Ok(ValidatedBaseline {
                    name,
                    uid: resource.metadata.uid.clone(),
                    created: resource.metadata.creation_timestamp.clone(),
                    engine: spec.engine,
                    namespace_selector,
                    excluded,
                    baseline,
                    guardrails,
                    deletion_policy: spec.deletion_policy,
                })
            }
            _ => Err(ValidationErrors(errors)),
        }
    }
}
