//! Status: the outcome of a reconcile in, the status of its NamespaceIsolation or
//! IsolationTemplate out (pure). Follows the API conventions and kstatus: `observedGeneration`,
//! one `Ready` condition whose `lastTransitionTime` moves only when its status changes.
//!
//! ```text
//! Outcome         + previous status + now -> NamespaceIsolationStatus
//! TemplateOutcome + previous status + now -> IsolationTemplateStatus
//! ```

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use netfence_crd::{
    IsolationTemplateStatus, NamespaceIsolationStatus,
    isolation::{PlannedChanges, SharedService},
};

use crate::{
    template::{NotReady, TemplatePlan},
    validate::{ValidatedTemplate, ValidationErrors},
};

/// The type of the one condition netfence writes.
pub const READY: &str = "Ready";

/// What a reconcile ended with.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The owned policies equal the rendered ones.
    Reconciled {
        /// Their names.
        policies: Vec<String>,
    },
    /// `mode: DryRun`: nothing written.
    DryRun {
        /// The names of the policies the resource owns now.
        policies: Vec<String>,
        /// What Enforce would write.
        planned: PlannedChanges,
    },
    /// The spec is invalid: nothing was changed.
    InvalidSpec {
        /// Every error.
        errors: ValidationErrors,
        /// The names of the policies the resource still owns.
        policies: Vec<String>,
    },
    /// A write failed: it will be retried.
    ApplyFailed {
        /// What failed.
        message: String,
        /// The names of the policies the resource owns now.
        policies: Vec<String>,
    },
}

/// The status for `outcome` at `generation`, keeping the previous transition time when the
/// condition's status did not change.
#[must_use]
pub fn status(
    outcome: &Outcome,
    generation: Option<i64>,
    previous: Option<&NamespaceIsolationStatus>,
    now: Time,
) -> NamespaceIsolationStatus {
    let (ready, reason, message, policies, planned) = match outcome {
        Outcome::Reconciled { policies } => (
            "True",
            "Reconciled",
            format!("{} NetworkPolicies match the spec", policies.len()),
            policies,
            None,
        ),
        Outcome::DryRun { policies, planned } => (
            "True",
            "DryRun",
            format!(
                "dry run: Enforce would create {}, update {} and delete {} NetworkPolicies",
                planned.create.len(),
                planned.update.len(),
                planned.delete.len()
            ),
            policies,
            Some(sorted(planned)),
        ),
        Outcome::InvalidSpec { errors, policies } => (
            "False",
            "InvalidSpec",
            invalid_message(errors, policies),
            policies,
            None,
        ),
        Outcome::ApplyFailed { message, policies } => {
            ("False", "ApplyFailed", message.clone(), policies, None)
        }
    };
    let mut policies = policies.clone();
    policies.sort();
    NamespaceIsolationStatus {
        observed_generation: generation,
        conditions: vec![condition(
            previous.map_or(&[], |status| status.conditions.as_slice()),
            READY,
            ready,
            reason,
            message,
            generation,
            now,
        )],
        policy_count: Some(i32::try_from(policies.len()).unwrap_or(i32::MAX)),
        policies,
        planned_changes: planned,
        audit: None,
    }
}

/// The message of an invalid spec: every error, then what that leaves in the cluster, from the
/// policies the resource owns (`policies`): kept when there are some; when there are none (a
/// brand-new resource that never had a valid spec), that nothing isolates the namespace for it.
#[must_use]
pub fn invalid_message(errors: &ValidationErrors, policies: &[String]) -> String {
    if policies.is_empty() {
        format!(
            "{errors}; no NetworkPolicies were generated yet: the namespace is not isolated by this resource until the spec is fixed"
        )
    } else {
        format!("{errors}; the previous NetworkPolicies are kept")
    }
}

/// One warning per shared service whose `namespace` names a namespace that does not exist
/// (`exists` answers for a name): its rule selects that namespace by name and so allows
/// nothing until the namespace is created. A warning, not an error: under GitOps the namespace
/// may well come later, and the policies are right as they are.
#[must_use]
pub fn missing_namespaces(shared: &[SharedService], exists: impl Fn(&str) -> bool) -> Vec<String> {
    shared
        .iter()
        .enumerate()
        .filter_map(|(index, service)| {
            let namespace = service.namespace.as_deref()?;
            (!exists(namespace)).then(|| {
                format!(
                    "spec.sharedServices[{index}].namespace: namespace \"{namespace}\" does not exist, so shared service {} allows no traffic until it is created",
                    service.name
                )
            })
        })
        .collect()
}

/// Add `warnings` to a Ready condition that is `True`: the resource did its job, and its message
/// says what will not work as the user may expect. A `False` condition already says what is
/// wrong; its warnings come back once it is fixed.
pub fn warn(status: &mut NamespaceIsolationStatus, warnings: &[String]) {
    if warnings.is_empty() {
        return;
    }
    for condition in &mut status.conditions {
        if condition.type_ == READY && condition.status == "True" {
            condition.message = format!("{}; warning: {}", condition.message, warnings.join("; "));
        }
    }
}

/// The condition `type_`; its `lastTransitionTime` stays as in `previous` unless its status
/// changes.
#[must_use]
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|condition| condition.type_ == type_ && condition.status == status)
        .map_or(now, |condition| condition.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Planned changes in name order, so that the status does not depend on render order.
fn sorted(planned: &PlannedChanges) -> PlannedChanges {
    let mut planned = planned.clone();
    planned.create.sort();
    planned.update.sort();
    planned.delete.sort();
    planned
}

/// One sentence per rendered policy whose name a policy this resource does not own holds; the
/// default deny's (`deny`) says that nothing is written.
#[must_use]
pub fn taken_message(conflicts: &[String], deny: &str) -> String {
    conflicts
        .iter()
        .map(|name| {
            if name == deny {
                format!(
                    "NetworkPolicy {name} exists and is not this resource's, so none of its policies is written (no allow goes out without its default deny): delete or rename it"
                )
            } else {
                format!(
                    "NetworkPolicy {name} exists and is not this resource's, and netfence never overwrites it: delete or rename it"
                )
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a template reconcile ended with.
#[derive(Clone, Debug)]
pub enum TemplateOutcome<'a> {
    /// Every matched namespace holds the generated resource (or reports a conflict); some of
    /// those resources may report that they cannot apply.
    Done {
        /// The valid template.
        template: &'a ValidatedTemplate,
        /// The plan carried out, with the conflicts found on the way.
        plan: &'a TemplatePlan,
        /// The generated resources that say they cannot do their job.
        not_ready: &'a [NotReady],
    },
    /// The spec is invalid: nothing generated or changed.
    InvalidSpec(&'a ValidationErrors),
    /// Writes failed; they are retried.
    ApplyFailed {
        /// The valid template.
        template: &'a ValidatedTemplate,
        /// The plan, with the conflicts found on the way.
        plan: &'a TemplatePlan,
        /// What failed.
        message: String,
    },
}

/// How many not-Ready namespaces a template's message names before it counts the rest.
const NAMED_NOT_READY: usize = 5;

/// The status of a template at `generation` for `outcome`, keeping the previous transition time
/// when Ready did not flip. The selector shown is the validated template's parsed one; an invalid
/// template keeps what it reported last (selector, matched namespaces, conflicts): nothing
/// changed.
#[must_use]
pub fn template_status(
    outcome: &TemplateOutcome<'_>,
    generation: Option<i64>,
    previous: Option<&IsolationTemplateStatus>,
    now: Time,
) -> IsolationTemplateStatus {
    let (selector, matched, conflicts) = match outcome {
        TemplateOutcome::Done { template, plan, .. }
        | TemplateOutcome::ApplyFailed { template, plan, .. } => (
            Some(template.namespace_selector().to_string()),
            Some(i32::try_from(plan.matched.len()).unwrap_or(i32::MAX)),
            plan.conflicts.clone(),
        ),
        TemplateOutcome::InvalidSpec(_) => (
            previous.and_then(|status| status.selector.clone()),
            previous.and_then(|status| status.matched_namespaces),
            previous
                .map(|status| status.conflicts.clone())
                .unwrap_or_default(),
        ),
    };
    let (ready, reason, message) = match outcome {
        TemplateOutcome::Done {
            plan, not_ready, ..
        } if plan.conflicts.is_empty() && not_ready.is_empty() => (
            "True",
            "Reconciled",
            format!(
                "{} namespace(s) hold the generated NamespaceIsolation",
                plan.matched.len()
            ),
        ),
        TemplateOutcome::Done {
            template,
            plan,
            not_ready,
        } if plan.conflicts.is_empty() => (
            "False",
            "IsolationNotReady",
            not_ready_message(template.isolation_name(), plan, not_ready),
        ),
        TemplateOutcome::Done { plan, .. } => (
            "False",
            "Conflict",
            format!(
                "{} of {} matched namespace(s) hold a NamespaceIsolation this template does not own; see status.conflicts",
                plan.conflicts.len(),
                plan.matched.len()
            ),
        ),
        TemplateOutcome::InvalidSpec(errors) => (
            "False",
            "InvalidSpec",
            format!("{errors}; nothing is generated or changed until it is fixed"),
        ),
        TemplateOutcome::ApplyFailed { message, .. } => ("False", "ApplyFailed", message.clone()),
    };
    IsolationTemplateStatus {
        observed_generation: generation,
        conditions: vec![condition(
            previous.map_or(&[], |status| status.conditions.as_slice()),
            READY,
            ready,
            reason,
            message,
            generation,
            now,
        )],
        selector,
        matched_namespaces: matched,
        conflicts,
    }
}

/// `NamespaceIsolation baseline is not Ready in 1 of 2 matched namespace(s): team-a (ApplyFailed:
/// ...)`: the first few namespaces, each with its resource's reason and message.
fn not_ready_message(name: &str, plan: &TemplatePlan, not_ready: &[NotReady]) -> String {
    let mut listed: Vec<String> = not_ready
        .iter()
        .take(NAMED_NOT_READY)
        .map(|entry| format!("{} ({}: {})", entry.namespace, entry.reason, entry.message))
        .collect();
    if not_ready.len() > NAMED_NOT_READY {
        listed.push(format!("and {} more", not_ready.len() - NAMED_NOT_READY));
    }
    format!(
        "NamespaceIsolation {name} is not Ready in {} of {} matched namespace(s): {}",
        not_ready.len(),
        plan.matched.len(),
        listed.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap_or_default())
    }

    /// The same outcome twice gives the same status: a steady-state reconcile has nothing to patch.
    #[test]
    fn same_outcome_same_status() {
        let outcome = Outcome::Reconciled {
            policies: vec!["shop-tier-b".into(), "shop-default-deny".into()],
        };
        let first = status(&outcome, Some(3), None, time(100));
        let second = status(&outcome, Some(3), Some(&first), time(200));
        assert_eq!(first, second);
        assert_eq!(first.policies, ["shop-default-deny", "shop-tier-b"]);
        assert_eq!(first.policy_count, Some(2));
        assert_eq!(first.conditions[0].reason, "Reconciled");
    }

    /// Ready flips: the transition time moves, observedGeneration follows the spec.
    #[test]
    fn transition_time_moves_on_flip() {
        let good = status(
            &Outcome::Reconciled { policies: vec![] },
            Some(1),
            None,
            time(100),
        );
        let bad = status(
            &Outcome::ApplyFailed {
                message: "failed to apply NetworkPolicy shop-tier-a: 500".into(),
                policies: vec![],
            },
            Some(2),
            Some(&good),
            time(200),
        );
        assert_eq!(bad.conditions[0].status, "False");
        assert_eq!(bad.conditions[0].last_transition_time, time(200));
        assert_eq!(bad.observed_generation, Some(2));
    }

    /// A name taken by a policy netfence does not own: one sentence each, and the default deny's
    /// says that nothing is written.
    #[test]
    fn taken_names_get_one_sentence_each() {
        let message = taken_message(
            &["shop-default-deny".into(), "shop-tier-web".into()],
            "shop-default-deny",
        );
        let sentences: Vec<&str> = message.split("; ").collect();
        assert_eq!(sentences.len(), 2, "{message}");
        assert!(sentences[0].starts_with("NetworkPolicy shop-default-deny exists"));
        assert!(sentences[0].contains("none of its policies is written"));
        assert!(sentences[1].starts_with("NetworkPolicy shop-tier-web exists"));
    }

    fn invalid_errors() -> ValidationErrors {
        let resource: netfence_crd::NamespaceIsolation =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "netfence.io/v1alpha1",
                "kind": "NamespaceIsolation",
                "metadata": {"name": "shop", "namespace": "shop", "uid": "u1"},
                "spec": {"flows": [{"from": "web", "to": "db"}]},
            }))
            .expect("resource");
        crate::ValidatedIsolation::try_from(&resource).expect_err("invalid")
    }

    /// A brand-new invalid resource owns no policy: its message says the namespace is not
    /// isolated, not that "the previous NetworkPolicies are kept" (there are none). One that
    /// owns policies keeps saying they are kept.
    ///
    /// If this fails, a user whose first apply has a typo reads that their namespace is still
    /// protected while it is open.
    #[test]
    fn an_invalid_spec_says_whether_anything_is_kept() {
        let errors = invalid_errors();
        let new = status(
            &Outcome::InvalidSpec {
                errors: errors.clone(),
                policies: vec![],
            },
            Some(1),
            None,
            time(100),
        );
        let message = &new.conditions[0].message;
        assert!(message.starts_with(&errors.to_string()), "{message}");
        assert!(
            message.ends_with("; no NetworkPolicies were generated yet: the namespace is not isolated by this resource until the spec is fixed"),
            "{message}"
        );
        assert!(!message.contains("kept"), "{message}");
        let owning = status(
            &Outcome::InvalidSpec {
                errors: errors.clone(),
                policies: vec!["shop-default-deny".into()],
            },
            Some(2),
            None,
            time(100),
        );
        assert_eq!(
            owning.conditions[0].message,
            format!("{errors}; the previous NetworkPolicies are kept")
        );
    }

    /// A shared service naming a namespace that does not exist is a warning in a True Ready's
    /// message, naming the field; `namespaceSelector` and `ipBlock` peers never warn; a False
    /// Ready is left as it is.
    ///
    /// If this fails, a typo in `namespace: monitoring` (or a namespace GitOps has not created
    /// yet) silently allows nothing, and nobody is told why the scrape fails.
    #[test]
    fn a_missing_shared_namespace_is_a_warning() {
        let shared: Vec<SharedService> = serde_json::from_value(serde_json::json!([
            {"name": "ingress", "direction": "Ingress", "namespace": "ingress-nginx"},
            {"name": "metrics", "direction": "Ingress", "namespace": "monitoring"},
            {"name": "any", "direction": "Ingress", "namespaceSelector": {}},
            {"name": "payments", "direction": "Egress", "ipBlock": {"cidr": "203.0.113.0/24"}},
        ]))
        .expect("shared services");
        let warnings = missing_namespaces(&shared, |name| name == "ingress-nginx");
        assert_eq!(
            warnings,
            [
                "spec.sharedServices[1].namespace: namespace \"monitoring\" does not exist, so shared service metrics allows no traffic until it is created"
            ]
        );
        assert!(missing_namespaces(&shared, |_| true).is_empty());

        let mut ready = status(
            &Outcome::Reconciled {
                policies: vec!["shop-default-deny".into()],
            },
            Some(1),
            None,
            time(100),
        );
        warn(&mut ready, &warnings);
        assert_eq!(ready.conditions[0].status, "True");
        assert_eq!(
            ready.conditions[0].message,
            format!("1 NetworkPolicies match the spec; warning: {}", warnings[0])
        );
        let mut failed = status(
            &Outcome::ApplyFailed {
                message: "refused".into(),
                policies: vec![],
            },
            Some(1),
            None,
            time(100),
        );
        warn(&mut failed, &warnings);
        assert_eq!(failed.conditions[0].message, "refused");
    }

    fn template(selector: &serde_json::Value) -> netfence_crd::IsolationTemplate {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "netfence.io/v1alpha1",
            "kind": "IsolationTemplate",
            "metadata": {"name": "baseline", "uid": "t1", "generation": 2},
            "spec": {"namespaceSelector": selector, "isolationName": "team", "template": {"spec": {}}},
        }))
        .expect("template")
    }

    fn plan(matched: &[&str], conflicts: &[&str]) -> TemplatePlan {
        TemplatePlan {
            matched: matched.iter().map(|name| (*name).to_owned()).collect(),
            conflicts: conflicts
                .iter()
                .map(|namespace| netfence_crd::template::TemplateConflict {
                    namespace: (*namespace).to_owned(),
                    reason: "taken".to_owned(),
                })
                .collect(),
            ..TemplatePlan::default()
        }
    }

    fn not_ready(count: usize) -> Vec<NotReady> {
        (0..count)
            .map(|index| NotReady {
                namespace: format!("team-{index}"),
                reason: "ApplyFailed".to_owned(),
                message: "refused".to_owned(),
            })
            .collect()
    }

    /// Template status: Reconciled when every matched namespace holds a Ready resource;
    /// IsolationNotReady naming at most five namespaces; Conflict before either; the selector is
    /// the validated one, written in its canonical form.
    #[test]
    fn template_status_says_why_it_is_not_ready() {
        let resource =
            template(&serde_json::json!({"matchLabels": {"tier": "team", "env": "prod"}}));
        let validated = ValidatedTemplate::try_from(&resource).expect("valid");
        let done = |plan: &TemplatePlan, not_ready: &[NotReady]| {
            template_status(
                &TemplateOutcome::Done {
                    template: &validated,
                    plan,
                    not_ready,
                },
                Some(2),
                None,
                time(100),
            )
        };
        let ready = done(&plan(&["a", "b"], &[]), &[]);
        assert_eq!(ready.conditions[0].reason, "Reconciled");
        assert_eq!(ready.matched_namespaces, Some(2));
        assert_eq!(ready.selector.as_deref(), Some("env=prod, tier=team"));
        assert_eq!(ready.observed_generation, Some(2));

        let seven = not_ready(7);
        let waiting = done(&plan(&["a"], &[]), &seven);
        assert_eq!(waiting.conditions[0].status, "False");
        assert_eq!(waiting.conditions[0].reason, "IsolationNotReady");
        let message = &waiting.conditions[0].message;
        assert!(
            message.starts_with("NamespaceIsolation team is not Ready in 7 of 1 matched"),
            "{message}"
        );
        assert!(
            message.contains("team-4 (ApplyFailed: refused)"),
            "{message}"
        );
        assert!(!message.contains("team-5"), "{message}");
        assert!(message.ends_with("and 2 more"), "{message}");

        let conflicted = done(&plan(&["a", "b"], &["b"]), &seven);
        assert_eq!(conflicted.conditions[0].reason, "Conflict");
        assert_eq!(conflicted.conflicts.len(), 1);
    }

    /// An invalid template changes nothing it reported: the selector, matched namespaces and
    /// conflicts stay as they were, only Ready says InvalidSpec.
    #[test]
    fn an_invalid_template_keeps_what_it_reported() {
        let resource = template(&serde_json::json!({"matchLabels": {"tier": "team"}}));
        let validated = ValidatedTemplate::try_from(&resource).expect("valid");
        let before = template_status(
            &TemplateOutcome::Done {
                template: &validated,
                plan: &plan(&["a", "b"], &["b"]),
                not_ready: &[],
            },
            Some(2),
            None,
            time(100),
        );
        let invalid = template(&serde_json::json!({"matchLabels": {"tier": "no spaces allowed"}}));
        let errors = ValidatedTemplate::try_from(&invalid).expect_err("invalid");
        let after = template_status(
            &TemplateOutcome::InvalidSpec(&errors),
            Some(3),
            Some(&before),
            time(200),
        );
        assert_eq!(after.selector, before.selector);
        assert_eq!(after.matched_namespaces, Some(2));
        assert_eq!(after.conflicts, before.conflicts);
        assert_eq!(after.conditions[0].reason, "InvalidSpec");
        assert_eq!(
            after.conditions[0].last_transition_time,
            time(100),
            "Ready was already False"
        );
        assert_eq!(after.observed_generation, Some(3));
    }
}
