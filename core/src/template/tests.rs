use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, Time};
use netfence_crd::IsolationTemplate;
use serde_json::json;

use super::*;

const MANAGER: &str = "netfence";

#[allow(clippy::needless_pass_by_value)] // json!() literals read better inline
fn template(name: &str, uid: &str, created: i64, selector: serde_json::Value) -> ValidatedTemplate {
    let mut resource: IsolationTemplate = serde_json::from_value(json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "IsolationTemplate",
        "metadata": {"name": name, "uid": uid},
        "spec": {
            "namespaceSelector": selector,
            "template": {
                "metadata": {"labels": {"team-baseline": "v1"}},
                "spec": {"tiers": [{"name": "web", "podSelector": {}}]},
            },
        },
    }))
    .expect("a template");
    resource.metadata.creation_timestamp = Some(Time(
        k8s_openapi::jiff::Timestamp::from_second(created).expect("a time"),
    ));
    ValidatedTemplate::try_from(&resource).expect("a valid template")
}

fn namespace(name: &str, labels: &[(&str, &str)]) -> NamespaceInfo {
    NamespaceInfo {
        name: name.to_owned(),
        labels: labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        terminating: false,
    }
}

fn world<'a>(
    namespaces: &'a [NamespaceInfo],
    isolations: &'a [&'a Existing],
    templates: &'a [&'a ValidatedTemplate],
) -> World<'a> {
    World {
        namespaces,
        isolations,
        templates,
        operator_namespace: Some("netfence-system"),
    }
}

/// What a plan reads of `isolation`.
fn existing(isolation: &NamespaceIsolation) -> Existing {
    Existing::of(isolation, MANAGER)
}

/// As the API server would hold it after netfence applied it: with a UID and netfence's
/// managed fields.
fn stored(mut isolation: NamespaceIsolation) -> NamespaceIsolation {
    let labels: serde_json::Map<String, serde_json::Value> = isolation
        .metadata
        .labels
        .iter()
        .flatten()
        .map(|(key, _)| (format!("f:{key}"), json!({})))
        .collect();
    isolation.metadata.uid = Some(format!(
        "uid-{}",
        isolation.metadata.namespace.clone().unwrap_or_default()
    ));
    isolation.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some(MANAGER.to_owned()),
        operation: Some("Apply".to_owned()),
        fields_v1: Some(FieldsV1(json!({"f:metadata": {"f:labels": labels}}))),
        ..ManagedFieldsEntry::default()
    }]);
    isolation
}

/// The selector picks namespaces by label; the cluster's own namespaces, netfence's namespace,
/// excluded and terminating namespaces never get a template, even with `{}`.
#[test]
fn matches_by_label_and_never_the_system_namespaces() {
    let every = template("baseline", "t1", 100, json!({}));
    let mut terminating = namespace("going", &[]);
    terminating.terminating = true;
    let namespaces = [
        namespace("team-a", &[("team", "true")]),
        namespace("kube-system", &[]),
        namespace("kube-public", &[]),
        namespace("kube-node-lease", &[]),
        namespace("netfence-system", &[]),
        terminating,
        namespace("default", &[]),
    ];
    let plan = plan(&every, &world(&namespaces, &[], &[]));
    assert_eq!(plan.matched, ["default", "team-a"]);
    let created: Vec<_> = plan
        .apply
        .iter()
        .map(|(reason, namespace)| (*reason, namespace.as_str()))
        .collect();
    assert_eq!(
        created,
        [
            (ApplyReason::Missing, "default"),
            (ApplyReason::Missing, "team-a")
        ]
    );

    let teams = template("teams", "t2", 100, json!({"matchLabels": {"team": "true"}}));
    assert_eq!(plan_of(&teams, &namespaces).matched, ["team-a"]);
}

fn plan_of(template: &ValidatedTemplate, namespaces: &[NamespaceInfo]) -> TemplatePlan {
    plan(template, &world(namespaces, &[], &[]))
}

/// A generated resource carries the template's labels and annotations, netfence's labels and a
/// controller owner reference to the template, and the template's spec.
#[test]
fn generated_resource_is_labelled_and_owned() {
    let teams = template("teams", "t2", 100, json!({}));
    let isolation = generated(&teams, "team-a");
    assert_eq!(isolation.metadata.name.as_deref(), Some("teams"));
    let labels = isolation.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(TEMPLATE_LABEL).map(String::as_str),
        Some("teams")
    );
    assert_eq!(
        labels.get(MANAGED_BY_LABEL).map(String::as_str),
        Some(MANAGED_BY)
    );
    assert_eq!(labels.get("team-baseline").map(String::as_str), Some("v1"));
    assert!(is_generated_by(&isolation, "t2"));
    assert_eq!(isolation.spec, *teams.spec());
}

/// Steady state: a generated resource equal to the template is left alone (no write); a changed
/// spec, a lost label or a label netfence set and no longer wants is a write.
#[test]
fn unchanged_resources_are_not_written() {
    let teams = template("teams", "t2", 100, json!({}));
    let namespaces = [namespace("team-a", &[])];
    let current = stored(generated(&teams, "team-a"));
    let plan_with = |isolation: &NamespaceIsolation| {
        plan(&teams, &world(&namespaces, &[&existing(isolation)], &[]))
    };
    let steady = plan_with(&current);
    assert!(steady.is_empty(), "{steady:?}");
    assert!(steady.conflicts.is_empty());

    let mut edited = current.clone();
    edited.spec.tiers.clear();
    assert_eq!(plan_with(&edited).apply[0].0, ApplyReason::Drifted);

    let mut unlabelled = current.clone();
    unlabelled
        .metadata
        .labels
        .as_mut()
        .map(|labels| labels.remove("team-baseline"));
    assert_eq!(plan_with(&unlabelled).apply.len(), 1);

    // A label netfence applied earlier that the template no longer has.
    let mut stale = current.clone();
    stale
        .metadata
        .labels
        .get_or_insert_default()
        .insert("old".into(), "x".into());
    stale.metadata.managed_fields = stored(stale.clone()).metadata.managed_fields;
    assert_eq!(plan_with(&stale).apply.len(), 1);

    // A label someone else added is theirs: no write.
    let mut foreign = current.clone();
    foreign
        .metadata
        .labels
        .get_or_insert_default()
        .insert("argocd.argoproj.io/instance".into(), "x".into());
    assert!(plan_with(&foreign).is_empty());
}

/// A resource of that name the template does not own is never written or deleted, and is
/// reported by namespace; a namespace that stops matching loses only what the template owns.
#[test]
fn foreign_resources_are_conflicts_and_unmatched_are_removed() {
    let teams = template("teams", "t2", 100, json!({"matchLabels": {"team": "true"}}));
    let namespaces = [
        namespace("team-a", &[("team", "true")]),
        namespace("left", &[]),
    ];
    let mut hand_written = generated(&teams, "team-a");
    hand_written.metadata.owner_references = None;
    let left = stored(generated(&teams, "left"));
    let (hand_written, left) = (existing(&hand_written), existing(&left));
    let plan = plan(&teams, &world(&namespaces, &[&hand_written, &left], &[]));
    assert!(plan.apply.is_empty(), "{plan:?}");
    assert_eq!(plan.conflicts.len(), 1);
    assert_eq!(plan.conflicts[0].namespace, "team-a");
    assert!(
        plan.conflicts[0].reason.contains("does not own"),
        "{}",
        plan.conflicts[0].reason
    );
    assert_eq!(
        plan.delete,
        [Removal {
            namespace: "left".into(),
            name: "teams".into(),
            uid: Some("uid-left".into())
        }]
    );
}

/// Two templates, one namespace, one isolation name: the older writes, the younger reports the
/// conflict and removes what it had generated there.
#[test]
fn older_template_wins() {
    let older = template("baseline", "t1", 100, json!({}));
    let mut younger = template("baseline-v2", "t3", 200, json!({}));
    younger = {
        let mut resource: IsolationTemplate = serde_json::from_value(json!({
            "apiVersion": "netfence.io/v1alpha1",
            "kind": "IsolationTemplate",
            "metadata": {"name": "baseline-v2", "uid": "t3", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "namespaceSelector": {},
                "isolationName": "baseline",
                "template": {"spec": {}},
            },
        }))
        .expect("a template");
        resource.metadata.uid = younger.uid().map(str::to_owned);
        ValidatedTemplate::try_from(&resource).expect("valid")
    };
    assert!(is_older(&older, &younger));
    assert!(!is_older(&younger, &older));
    let namespaces = [namespace("team-a", &[])];
    let from_younger = existing(&stored(generated(&younger, "team-a")));

    let younger_plan = plan(&younger, &world(&namespaces, &[&from_younger], &[&older]));
    assert!(younger_plan.apply.is_empty());
    assert_eq!(younger_plan.delete.len(), 1);
    assert!(
        younger_plan.conflicts[0]
            .reason
            .contains("older template baseline")
    );

    // Until the younger one's resource is gone, the older reports it; then it creates its own.
    let older_plan = plan(&older, &world(&namespaces, &[&from_younger], &[&younger]));
    assert!(older_plan.apply.is_empty());
    assert!(
        older_plan.conflicts[0]
            .reason
            .contains("template baseline-v2")
    );
    let older_plan = plan(&older, &world(&namespaces, &[], &[&younger]));
    assert_eq!(older_plan.apply.len(), 1);
    assert!(older_plan.conflicts.is_empty());
}

/// What a plan reads of a generated resource: its Ready condition only when it is False for the
/// current generation (a stale False is not the resource's state), and nothing of one a
/// template does not control but who it is.
#[test]
fn existing_reads_readiness_of_the_current_generation() {
    let teams = template("teams", "t2", 100, json!({}));
    let mut isolation = stored(generated(&teams, "team-a"));
    isolation.metadata.generation = Some(3);
    let ready_false = |observed: i64| {
        serde_json::from_value(json!({
            "observedGeneration": observed,
            "conditions": [{"type": "Ready", "status": "False", "reason": "PolicyNameTaken",
                "message": "taken", "lastTransitionTime": "2026-12-02T00:00:00Z"}],
        }))
        .expect("a status")
    };
    let namespaces = [namespace("team-a", &[])];
    let matched = plan(&teams, &world(&namespaces, &[], &[]));

    isolation.status = Some(ready_false(2));
    assert!(not_ready(&teams, &matched, &[&existing(&isolation)]).is_empty());
    isolation.status = Some(ready_false(3));
    let found = not_ready(&teams, &matched, &[&existing(&isolation)]);
    assert_eq!(
        found,
        [NotReady {
            namespace: "team-a".into(),
            reason: "PolicyNameTaken".into(),
            message: "taken".into()
        }]
    );

    // Kept of a resource no template controls: who it is, not its spec or status.
    isolation.metadata.owner_references = None;
    let foreign = existing(&isolation);
    assert!(foreign.generated.is_none());
    assert_eq!(foreign.metadata.name.as_deref(), Some("teams"));
    assert!(not_ready(&teams, &matched, &[&foreign]).is_empty());
}

/// A status write that makes a generated resource Ready changes nothing a template reads; a
/// Ready=False, an edit of its labels or spec, its deletion or another owner does.
#[test]
fn templates_read_a_status_write_only_when_it_says_not_ready() {
    let teams = template("teams", "t2", 100, json!({}));
    let mut isolation = stored(generated(&teams, "team-a"));
    isolation.metadata.generation = Some(1);
    isolation.metadata.resource_version = Some("10".into());
    let before = existing(&isolation);
    let status = |status: &str| {
        serde_json::from_value(json!({
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": status, "reason": "Reason",
                "message": "a message", "lastTransitionTime": "2026-12-02T00:00:00Z"}],
        }))
        .expect("a status")
    };

    let mut ready = isolation.clone();
    ready.metadata.resource_version = Some("11".into());
    ready.status = Some(status("True"));
    assert!(before.same_for_templates(&existing(&ready)));

    let mut not_ready = ready.clone();
    not_ready.status = Some(status("False"));
    assert!(!before.same_for_templates(&existing(&not_ready)));

    let mut relabelled = isolation.clone();
    relabelled
        .metadata
        .labels
        .get_or_insert_default()
        .insert("team".into(), "b".into());
    assert!(!before.same_for_templates(&existing(&relabelled)));

    let mut edited = isolation.clone();
    edited.spec.tiers.clear();
    assert!(!before.same_for_templates(&existing(&edited)));

    let mut deleting = isolation.clone();
    deleting.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2026-12-02T00:00:00Z")).expect("a time"));
    assert!(!before.same_for_templates(&existing(&deleting)));

    let mut orphaned = isolation;
    orphaned.metadata.owner_references = None;
    assert!(!before.same_for_templates(&existing(&orphaned)));
}
