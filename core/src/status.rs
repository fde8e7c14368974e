//! Status: the outcome of a reconcile in, the NamespaceIsolation's status out (pure). Follows the
//! API conventions and kstatus: `observedGeneration`, one `Ready` condition whose
//! `lastTransitionTime` moves only when its status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use netfence_crd::{NamespaceIsolationStatus, isolation::PlannedChanges};

use crate::validate::ValidationErrors;

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
            format!("{errors}; the previous NetworkPolicies are kept"),
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
        conditions: vec![ready_condition(
            previous.map_or(&[], |status| status.conditions.as_slice()),
            ready,
            reason,
            message,
            generation,
            now,
        )],
        policy_count: Some(i32::try_from(policies.len()).unwrap_or(i32::MAX)),
        policies,
        planned_changes: planned,
    }
}

/// The `Ready` condition; its `lastTransitionTime` stays as in `previous` unless the status flips.
#[must_use]
pub fn ready_condition(
    previous: &[Condition],
    ready: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|condition| condition.type_ == READY && condition.status == ready)
        .map_or(now, |condition| condition.last_transition_time.clone());
    Condition {
        type_: READY.to_owned(),
        status: ready.to_owned(),
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
}
