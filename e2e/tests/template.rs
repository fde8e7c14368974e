//! IsolationTemplates through the real kube client: team namespaces bootstrapped, released,
//! updated; conflicts with hand-written resources and between templates; invalid templates.
//! Each scenario runs against its own sandbox by default, or against the cluster of
//! `NETFENCE_E2E_KUBECONFIG` (its templates select only its own namespaces, by a label unique to
//! the run). The controllers here are cluster-wide, as `netfence run`'s are (templates and
//! namespaces are cluster-scoped): against a real cluster they also reconcile every other
//! NamespaceIsolation and IsolationTemplate in it, so use a dedicated test cluster that does not
//! run netfence itself, and `--test-threads=1` so that one scenario's controller runs at a time
//! (`.ci/run` does). There the controllers run as a ServiceAccount bound only to `config/rbac/`,
//! through the harness's fault-injecting proxy, and writes are read from the audit log.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use k8s_openapi::api::{core::v1::Namespace, networking::v1::NetworkPolicy};
use kube::{
    Api, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use netfence_core::meta::TEMPLATE_LABEL;
use netfence_crd::{IsolationTemplate, NamespaceIsolation};
use netfence_e2e::{Env, env::RUN_LABEL, eventually};
use netfence_sandbox::AuditEntry;
use serde_json::{Value, json};

/// How long a scenario waits for convergence (a bound, not a timing assertion).
const LIMIT: Duration = Duration::from_secs(60);

/// A cluster with netfence's CRDs and a cluster-wide controller (templates included).
async fn start() -> Env {
    let mut env = Env::start().await;
    env.start_controller(None);
    env
}

/// What only these scenarios ask of the shared [`Env`].
trait TemplateEnv {
    async fn netfence_writes(&self) -> (BTreeMap<String, Vec<String>>, usize);
    fn template(&self, name: &str) -> Value;
    async fn wait_invalid(&self, name: &str, field: &str) -> IsolationTemplate;
    async fn wait_generated(&self, namespace: &str, policies: usize) -> NamespaceIsolation;
    async fn wait_flow_port(&self, namespace: &str, port: u16);
    async fn changed_policies(
        &self,
        namespaces: &[String],
        before: &[BTreeMap<String, Value>],
    ) -> BTreeSet<String>;
    async fn wait_released(&self, namespace: &str);
    async fn policy_specs(&self, namespace: &str) -> BTreeMap<String, Value>;
}

impl TemplateEnv for Env {
    /// netfence's writes in this scenario's namespaces and to cluster-scoped objects (see
    /// [`netfence_writes`]).
    async fn netfence_writes(&self) -> (BTreeMap<String, Vec<String>>, usize) {
        let namespaces: BTreeSet<String> = self.namespaces().into_iter().collect();
        let audit = self
            .cluster
            .audit()
            .await
            .into_iter()
            .filter(|entry| {
                entry
                    .namespace
                    .as_deref()
                    .is_none_or(|namespace| namespaces.contains(namespace))
            })
            .collect();
        netfence_writes(audit)
    }

    /// A template named `<name>-<run>` that selects this run's namespaces.
    fn template(&self, name: &str) -> Value {
        json!({
            "apiVersion": "netfence.io/v1alpha1",
            "kind": "IsolationTemplate",
            "metadata": {"name": format!("{name}-{}", self.run)},
            "spec": {
                "namespaceSelector": {"matchLabels": {RUN_LABEL: self.run}},
                "isolationName": "baseline",
                "template": {
                    "metadata": {"labels": {"team.example.com/baseline": "v1"}},
                    "spec": team_spec(8080),
                },
            },
        })
    }

    /// Wait until the template's status is InvalidSpec with a message that names `field`.
    async fn wait_invalid(&self, name: &str, field: &str) -> IsolationTemplate {
        let template = self
            .wait_template(name, "InvalidSpec", |t| {
                ready_reason(t).as_deref() == Some("False/InvalidSpec")
            })
            .await;
        let message = template
            .status
            .as_ref()
            .map(|s| s.conditions[0].message.clone());
        assert!(
            message.as_deref().is_some_and(|m| m.contains(field)),
            "{message:?} does not name {field}"
        );
        template
    }

    /// Wait until `namespace` holds the generated `baseline`, Ready, with `policies` policies.
    async fn wait_generated(&self, namespace: &str, policies: usize) -> NamespaceIsolation {
        let api = self.isolations(namespace);
        let found = eventually(LIMIT, || {
            let api = api.clone();
            async move {
                let isolation = api.get("baseline").await.ok()?;
                let status = isolation.status.as_ref()?;
                let ready = status.observed_generation == isolation.metadata.generation
                    && status
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.reason == "Reconciled");
                (ready && status.policies.len() == policies).then_some(isolation)
            }
        })
        .await;
        found.unwrap_or_else(|| panic!("{namespace}/baseline never became Ready"))
    }

    /// Wait until `namespace`'s `baseline` has the flow on `port` and is Ready for that spec.
    async fn wait_flow_port(&self, namespace: &str, port: u16) {
        let api = self.isolations(namespace);
        let updated = eventually(LIMIT, || {
            let api = api.clone();
            async move {
                let isolation = api.get("baseline").await.ok()?;
                let ports = serde_json::to_value(&isolation.spec.flows[0].ports).ok()?;
                let status = isolation.status.as_ref()?;
                (ports == json!([{"port": port, "protocol": "TCP"}])
                    && status.observed_generation == isolation.metadata.generation
                    && status.conditions.iter().any(|c| c.reason == "Reconciled"))
                .then_some(())
            }
        })
        .await;
        assert!(updated.is_some(), "{namespace}/baseline was not updated");
    }

    /// The policies (`namespace/name`) whose spec differs from `before` (one map per namespace);
    /// the set of names must not have changed.
    async fn changed_policies(
        &self,
        namespaces: &[String],
        before: &[BTreeMap<String, Value>],
    ) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        for (namespace, old) in namespaces.iter().zip(before) {
            let new = self.policy_specs(namespace).await;
            assert_eq!(
                new.keys().collect::<Vec<_>>(),
                old.keys().collect::<Vec<_>>()
            );
            for (policy, spec) in &new {
                if old.get(policy) != Some(spec) {
                    changed.insert(format!("{namespace}/{policy}"));
                }
            }
        }
        changed
    }

    /// Wait until `namespace` holds no `baseline` and none of its policies.
    async fn wait_released(&self, namespace: &str) {
        let isolations = self.isolations(namespace);
        let policies: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), namespace);
        let released = eventually(LIMIT, || {
            let isolations = isolations.clone();
            let policies = policies.clone();
            async move {
                let gone = isolations.get_opt("baseline").await.ok()?.is_none();
                let none_left = policies
                    .list(&ListParams::default().labels("netfence.io/isolation=baseline"))
                    .await
                    .ok()?
                    .items
                    .is_empty();
                (gone && none_left).then_some(())
            }
        })
        .await;
        assert!(
            released.is_some(),
            "{namespace} still holds baseline or its policies"
        );
    }

    async fn policy_specs(&self, namespace: &str) -> BTreeMap<String, Value> {
        let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), namespace);
        api.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .map(|policy| {
                (
                    policy.metadata.name.clone().unwrap_or_default(),
                    serde_json::to_value(&policy.spec).unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// A team baseline: two tiers, web -> api on `port`, and the ingress controller to web.
/// Renders 4 policies: default deny, DNS, one per tier.
fn team_spec(port: u16) -> Value {
    json!({
        "tiers": [
            {"name": "web", "podSelector": {"matchLabels": {"app": "web"}}},
            {"name": "api", "podSelector": {"matchLabels": {"app": "api"}}},
        ],
        "flows": [{"from": "web", "to": "api", "ports": [{"port": port}]}],
        "sharedServices": [{
            "name": "ingress", "direction": "Ingress", "namespace": "ingress-nginx",
            "tiers": ["web"], "ports": [{"port": 80}],
        }],
    })
}

fn name_of(template: &Value) -> String {
    template["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_owned()
}

fn hand_written(namespace: &str) -> NamespaceIsolation {
    serde_json::from_value(json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "NamespaceIsolation",
        "metadata": {"name": "baseline", "namespace": namespace},
        "spec": {"isolate": ["Ingress"], "tiers": [{"name": "all", "podSelector": {}}]},
    }))
    .expect("a NamespaceIsolation")
}

fn matched(template: &IsolationTemplate) -> Option<i32> {
    template.status.as_ref()?.matched_namespaces
}

fn ready_reason(template: &IsolationTemplate) -> Option<String> {
    template
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| format!("{}/{}", c.status, c.reason))
}

fn conflict_namespaces(template: &IsolationTemplate) -> Vec<String> {
    template
        .status
        .iter()
        .flat_map(|status| status.conflicts.iter().map(|c| c.namespace.clone()))
        .collect()
}

/// What a platform team relies on: every labelled namespace gets the baseline and its policies;
/// a new namespace is bootstrapped; a namespace that loses the label loses them; the template's
/// status counts right at each step.
#[tokio::test]
async fn fifty_namespaces_bootstrapped_one_more_added_one_released() {
    let mut env = start().await;
    let mut namespaces = Vec::new();
    for _ in 0..50 {
        namespaces.push(env.run_namespace("team", true).await);
    }
    let unselected = env.run_namespace("other", false).await;
    let template = env.template("teams");
    let name = name_of(&template);
    env.create_template(&template).await;

    let converged = env
        .wait_template(&name, "50 matched, Ready", |t| {
            matched(t) == Some(50) && ready_reason(t).as_deref() == Some("True/Reconciled")
        })
        .await;
    let uid = converged.metadata.uid.clone().expect("uid");
    for namespace in &namespaces {
        let isolation = env.wait_generated(namespace, 4).await;
        let labels = isolation.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(TEMPLATE_LABEL), Some(&name), "{namespace}");
        assert_eq!(
            labels.get("team.example.com/baseline").map(String::as_str),
            Some("v1")
        );
        let owner = isolation
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .expect("a controller owner");
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("IsolationTemplate", uid.as_str())
        );
        assert_eq!(env.policy_specs(namespace).await.len(), 4, "{namespace}");
    }
    assert!(
        env.isolations(&unselected)
            .get_opt("baseline")
            .await
            .expect("get")
            .is_none(),
        "a namespace without the label got the baseline"
    );

    // The 51st namespace is bootstrapped.
    let newcomer = env.run_namespace("team", true).await;
    env.wait_generated(&newcomer, 4).await;
    env.wait_template(&name, "51 matched", |t| matched(t) == Some(51))
        .await;

    // Relabelling one releases it: its NamespaceIsolation and so its policies go.
    let released = namespaces[7].clone();
    let namespaces_api: Api<Namespace> = Api::all(env.client.clone());
    namespaces_api
        .patch(
            &released,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {RUN_LABEL: null}}})),
        )
        .await
        .expect("relabelled");
    env.wait_released(&released).await;
    let after = env
        .wait_template(&name, "50 matched again", |t| matched(t) == Some(50))
        .await;
    assert_eq!(ready_reason(&after).as_deref(), Some("True/Reconciled"));
    for namespace in namespaces.iter().filter(|n| **n != released).take(3) {
        assert!(
            env.isolations(namespace)
                .get_opt("baseline")
                .await
                .expect("get")
                .is_some()
        );
    }
    env.finish().await;
}

/// A template edit reaches every generated resource and their policies, and netfence writes
/// nothing else: one apply per generated resource, one per policy that really changed, the
/// statuses that describe the new generation, Events.
#[tokio::test]
async fn template_edit_updates_every_generated_resource_and_writes_nothing_else() {
    let mut env = start().await;
    if !env
        .cluster
        .needs_audit("template_edit_updates_every_generated_resource_and_writes_nothing_else")
    {
        env.finish().await;
        return;
    }
    let mut namespaces = Vec::new();
    for _ in 0..5 {
        namespaces.push(env.run_namespace("team", true).await);
    }
    let template = env.template("teams");
    let name = name_of(&template);
    env.create_template(&template).await;
    env.wait_template(&name, "Ready", |t| {
        ready_reason(t).as_deref() == Some("True/Reconciled") && matched(t) == Some(5)
    })
    .await;
    let mut before = Vec::new();
    for namespace in &namespaces {
        env.wait_generated(namespace, 4).await;
        before.push(env.policy_specs(namespace).await);
    }
    // Let trailing status writes of the convergence land before counting.
    env.cluster
        .audit_clear_when_quiet(Duration::from_millis(300))
        .await;
    let reconciled = env.reconciles();

    env.templates()
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": team_spec(9090)}}})),
        )
        .await
        .expect("template edited");
    env.wait_template(&name, "the edit observed", |t| {
        ready_reason(t).as_deref() == Some("True/Reconciled")
    })
    .await;
    for namespace in &namespaces {
        env.wait_flow_port(namespace, 9090).await;
    }
    // Every generated resource reconciled for its new spec, and nothing left in flight.
    env.wait_reconciled(reconciled, 5, "the template edit")
        .await;

    // The policies that changed: web's egress and api's ingress carry the port.
    let changed = env.changed_policies(&namespaces, &before).await;
    let expected: BTreeSet<String> = namespaces
        .iter()
        .flat_map(|ns| {
            [
                format!("{ns}/baseline-tier-api"),
                format!("{ns}/baseline-tier-web"),
            ]
        })
        .collect();
    assert_eq!(changed, expected);

    let isolations: Vec<String> = expected_isolations(&namespaces);
    // Events yield to reconciles (held a few seconds at most): wait for them too.
    let (mut writes, events) = logged_writes(&env, |writes, events| {
        events >= namespaces.len()
            && writes.contains_key("apply isolationtemplates/status")
            && writes
                .get("apply namespaceisolations/status")
                .is_some_and(|statuses| statuses.len() >= isolations.len())
    })
    .await;
    let mut take = |key: &str| writes.remove(key).unwrap_or_default();
    let policies: Vec<String> = expected.into_iter().collect();
    assert_eq!(
        take("apply namespaceisolations"),
        isolations,
        "one apply per generated resource"
    );
    assert_eq!(
        take("apply networkpolicies"),
        policies,
        "only the changed policies are written"
    );
    assert_eq!(
        take("apply namespaceisolations/status"),
        isolations,
        "one status write per resource"
    );
    assert_eq!(
        take("apply isolationtemplates/status").len(),
        1,
        "one template status write"
    );
    assert!(writes.is_empty(), "unexpected writes: {writes:?}");
    assert!(
        events >= namespaces.len(),
        "each update is reported as an Event ({events} Events)"
    );
    env.finish().await;
}

/// Steady state costs nothing: once converged, a template and its generated resources make no
/// write at all, neither when an unrelated namespace appears (every template is reconciled),
/// nor after watches are closed and history compacted, nor after a restart of the operator.
#[tokio::test]
async fn steady_state_relist_and_restart_make_no_writes() {
    let mut env = start().await;
    if !env
        .cluster
        .needs_audit("steady_state_relist_and_restart_make_no_writes")
    {
        env.finish().await;
        return;
    }
    let faults = env.cluster.faults();
    let mut namespaces = Vec::new();
    for _ in 0..10 {
        namespaces.push(env.run_namespace("team", true).await);
    }
    let template = env.template("teams");
    let name = name_of(&template);
    env.create_template(&template).await;
    env.wait_template(&name, "Ready", |t| {
        ready_reason(t).as_deref() == Some("True/Reconciled") && matched(t) == Some(10)
    })
    .await;
    for namespace in &namespaces {
        env.wait_generated(namespace, 4).await;
    }
    env.cluster
        .audit_clear_when_quiet(Duration::from_millis(300))
        .await;

    // A namespace the template does not select: every template is reconciled, nothing changes.
    env.run_namespace("other", false).await;
    // Every watch relists; nothing changed while they were down, so nothing is reconciled.
    env.relist_and_wait().await;
    // The template controller counts nothing: a namespace it must generate into shows that it
    // has processed everything before (one watch of Namespaces delivers them in order).
    let late = bootstrap_one_more(&mut env, &name, 11).await;
    assert_eq!(
        writes_besides(&env, &late).await,
        (one_template_status_write(&name), 0),
        "writes in steady state"
    );

    // The restart meets a slow policy list (a large cluster): the NamespaceIsolations' list is
    // in first, and a reconcile that planned against the half-filled policy cache would apply
    // every policy again and report drift that is not there.
    env.stop_controllers().await;
    env.cluster
        .audit_clear_when_quiet(Duration::from_millis(300))
        .await;
    let before = env.reconciles();
    let slow = faults.latency("list", "networkpolicies", Duration::from_secs(1));
    env.start_controller(None);
    env.wait_reconciled(before, 11, "a restart").await;
    faults.remove(slow);
    let later = bootstrap_one_more(&mut env, &name, 12).await;
    assert_eq!(
        writes_besides(&env, &later).await,
        (one_template_status_write(&name), 0),
        "writes after a restart"
    );
    env.finish().await;
}

/// Create one more namespace the template `name` selects, and wait until it holds its
/// generated resource and the template counts `matched` namespaces. Returns its name.
async fn bootstrap_one_more(env: &mut Env, name: &str, matched_now: i32) -> String {
    let namespace = env.run_namespace("team-late", true).await;
    env.wait_generated(&namespace, 4).await;
    env.wait_template(name, "one more namespace matched", |t| {
        matched(t) == Some(matched_now)
    })
    .await;
    namespace
}

/// netfence's writes (see [`netfence_writes`]) since the last clear, leaving out those in
/// `namespace`.
async fn writes_besides(env: &Env, namespace: &str) -> (BTreeMap<String, Vec<String>>, usize) {
    let besides = |mut writes: BTreeMap<String, Vec<String>>| {
        writes.retain(|_, list| {
            list.retain(|write| !write.starts_with(&format!("{namespace}/")));
            !list.is_empty()
        });
        writes
    };
    // The one write expected outside the namespace is the template's status.
    let (writes, _) = logged_writes(env, |writes, _| {
        besides(writes.clone()).contains_key("apply isolationtemplates/status")
    })
    .await;
    let writes = besides(writes);
    let events = env
        .cluster
        .audit()
        .await
        .iter()
        .filter(|entry| entry.resource == "events" && entry.verb == "create")
        .filter(|entry| entry.namespace.as_deref() != Some(namespace))
        .filter(|entry| {
            entry
                .namespace
                .as_ref()
                .is_none_or(|events_namespace| env.namespaces().contains(events_namespace))
        })
        .count();
    (writes, events)
}

/// netfence's writes (see [`TemplateEnv::netfence_writes`]) once `complete` holds of them and of
/// the number of Events, or as they are after 10 s. The API server logs a write once its
/// response is sent, which can be after a watch has shown its result to the test (and after the
/// marker request that settles the log): a write the test waited for may reach the log a moment
/// later. Extra writes are
/// still counted: they are in the log by then too.
async fn logged_writes(
    env: &Env,
    complete: impl Fn(&BTreeMap<String, Vec<String>>, usize) -> bool,
) -> (BTreeMap<String, Vec<String>>, usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let logged = env.netfence_writes().await;
        if complete(&logged.0, logged.1) || tokio::time::Instant::now() >= deadline {
            return logged;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The one write a namespace more makes outside it: the template's status (its count).
fn one_template_status_write(name: &str) -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([(
        "apply isolationtemplates/status".to_owned(),
        vec![format!("/{name}")],
    )])
}

/// Several templates after a restart whose Namespace list is slow: every one is reconciled.
/// (They all wait for the Namespace cache; kube's `wait_until_ready` woke only the last waiter,
/// and the other templates were never reconciled again in that process.)
#[tokio::test]
async fn every_template_is_reconciled_after_a_restart_with_a_slow_namespace_list() {
    let mut env = start().await;
    let faults = env.cluster.faults();
    let first = env.run_namespace("team", true).await;
    let generating = env.template("teams");
    let generating_name = name_of(&generating);
    env.create_template(&generating).await;
    // Three more that select nothing: each is still reconciled, and each waits for the caches.
    let mut idle = Vec::new();
    for index in 0..3 {
        let mut template = env.template(&format!("idle{index}"));
        template["spec"]["namespaceSelector"] =
            json!({"matchLabels": {"netfence.io/e2e-none": env.run}});
        idle.push(name_of(&template));
        env.create_template(&template).await;
    }
    env.wait_template(&generating_name, "Ready", |t| matched(t) == Some(1))
        .await;
    env.wait_generated(&first, 4).await;

    // While netfence is down: one more namespace to bootstrap, and every idle template edited.
    env.stop_controllers().await;
    let second = env.run_namespace("team", true).await;
    for name in &idle {
        env.templates()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"template": {"spec": team_spec(9090)}}})),
            )
            .await
            .expect("template edited");
    }
    let slow = faults.latency("list", "namespaces", Duration::from_secs(1));
    env.start_controller(None);
    env.wait_template(&generating_name, "the new namespace matched", |t| {
        matched(t) == Some(2)
    })
    .await;
    env.wait_generated(&second, 4).await;
    for name in &idle {
        env.wait_template(name, "the edit observed", |t| matched(t) == Some(0))
            .await;
    }
    faults.remove(slow);
    env.finish().await;
}

/// A NamespaceIsolation a team wrote by hand is never overwritten and is listed as a conflict;
/// once the team deletes it, the template adopts the namespace. Of two templates that overlap,
/// the older generates, the younger reports a conflict per namespace; deleting the older hands
/// the namespaces to the younger.
#[tokio::test]
async fn hand_written_resources_survive_and_overlapping_templates_resolve() {
    let mut env = start().await;
    let team_a = env.run_namespace("team-a", true).await;
    let team_b = env.run_namespace("team-b", true).await;
    let written = env
        .isolations(&team_a)
        .create(&PostParams::default(), &hand_written(&team_a))
        .await
        .expect("hand-written created");

    let older = env.template("older");
    let older_name = name_of(&older);
    env.create_template(&older).await;
    let status = env
        .wait_template(&older_name, "a conflict in team-a", |t| {
            conflict_namespaces(t) == [team_a.clone()] && matched(t) == Some(2)
        })
        .await;
    assert_eq!(ready_reason(&status).as_deref(), Some("False/Conflict"));
    env.wait_generated(&team_b, 4).await;
    let kept = env.isolations(&team_a).get("baseline").await.expect("get");
    assert_eq!(kept.spec, written.spec, "the hand-written spec was changed");
    assert_eq!(kept.metadata.owner_references, None);
    assert!(kept.labels().get(TEMPLATE_LABEL).is_none());

    // The younger template: every namespace is the older one's, or hand-written.
    tokio::time::sleep(Duration::from_millis(1100)).await; // creation times have 1 s resolution
    let younger = env.template("younger");
    let younger_name = name_of(&younger);
    env.create_template(&younger).await;
    let status = env
        .wait_template(&younger_name, "conflicts in both namespaces", |t| {
            conflict_namespaces(t) == sorted_pair(&team_a, &team_b)
        })
        .await;
    assert_eq!(ready_reason(&status).as_deref(), Some("False/Conflict"));
    let reasons: Vec<String> = status
        .status
        .iter()
        .flat_map(|s| s.conflicts.iter().map(|c| c.reason.clone()))
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains(&older_name)),
        "the older template is named: {reasons:?}"
    );
    let generated_b = env.isolations(&team_b).get("baseline").await.expect("get");
    assert!(
        generated_b
            .owner_references()
            .iter()
            .any(|o| o.name == older_name),
        "the older template keeps team-b"
    );

    // The team deletes its own resource: the older template adopts team-a.
    env.isolations(&team_a)
        .delete("baseline", &DeleteParams::default())
        .await
        .expect("deleted");
    env.wait_template(&older_name, "no conflicts", |t| {
        conflict_namespaces(t).is_empty() && ready_reason(t).as_deref() == Some("True/Reconciled")
    })
    .await;
    env.wait_generated(&team_a, 4).await;

    // The older template goes: the younger takes both namespaces.
    env.templates()
        .delete(&older_name, &DeleteParams::default())
        .await
        .expect("older deleted");
    env.wait_template(&younger_name, "both namespaces taken over", |t| {
        conflict_namespaces(t).is_empty() && ready_reason(t).as_deref() == Some("True/Reconciled")
    })
    .await;
    for namespace in [&team_a, &team_b] {
        let api = env.isolations(namespace);
        let younger_name = younger_name.clone();
        let taken = eventually(LIMIT, || {
            let api = api.clone();
            let younger_name = younger_name.clone();
            async move {
                let isolation = api.get("baseline").await.ok()?;
                isolation
                    .owner_references()
                    .iter()
                    .any(|o| o.name == younger_name)
                    .then_some(())
            }
        })
        .await;
        assert!(taken.is_some(), "{namespace} was not taken over");
    }
    env.finish().await;
}

/// netfence's writes in the audit log, by `verb resource[/subresource]`, each as `namespace/name`;
/// and how many Events were created (they carry no field manager; the test itself writes none).
fn netfence_writes(audit: Vec<AuditEntry>) -> (BTreeMap<String, Vec<String>>, usize) {
    let mut writes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Events carry no field manager; the test itself writes none.
    let events = audit
        .iter()
        .filter(|entry| entry.resource == "events" && entry.verb == "create")
        .count();
    for entry in audit {
        if !matches!(
            entry.verb.as_str(),
            "create" | "update" | "patch" | "apply" | "delete" | "deletecollection"
        ) || entry.field_manager.as_deref() != Some("netfence")
        {
            continue;
        }
        let resource = match &entry.subresource {
            Some(sub) => format!("{} {}/{sub}", entry.verb, entry.resource),
            None => format!("{} {}", entry.verb, entry.resource),
        };
        writes.entry(resource).or_default().push(format!(
            "{}/{}",
            entry.namespace.unwrap_or_default(),
            entry.name.unwrap_or_default()
        ));
    }
    for list in writes.values_mut() {
        list.sort();
    }
    (writes, events)
}

/// `namespace/baseline` for each namespace, sorted.
fn expected_isolations(namespaces: &[String]) -> Vec<String> {
    let mut names: Vec<String> = namespaces
        .iter()
        .map(|ns| format!("{ns}/baseline"))
        .collect();
    names.sort();
    names
}

fn sorted_pair(a: &str, b: &str) -> Vec<String> {
    let mut pair = vec![a.to_owned(), b.to_owned()];
    pair.sort();
    pair
}

/// Deleting a template removes what it generated (and their policies), and nothing a team
/// wrote: neither a hand-written resource of the same name nor one of another name.
#[tokio::test]
async fn deleting_the_template_removes_only_what_it_generated() {
    let mut env = start().await;
    let generated_in = env.run_namespace("team", true).await;
    let conflicted = env.run_namespace("team", true).await;
    env.isolations(&conflicted)
        .create(&PostParams::default(), &hand_written(&conflicted))
        .await
        .expect("hand-written created");
    let mut other_name = hand_written(&generated_in);
    other_name.metadata.name = Some("team-own".into());
    env.isolations(&generated_in)
        .create(&PostParams::default(), &other_name)
        .await
        .expect("second resource created");
    let template = env.template("teams");
    let name = name_of(&template);
    env.create_template(&template).await;
    env.wait_template(&name, "one conflict", |t| {
        conflict_namespaces(t) == [conflicted.clone()]
    })
    .await;
    env.wait_generated(&generated_in, 4).await;

    env.delete_template(&name).await;
    let api = env.isolations(&generated_in);
    let gone = eventually(LIMIT, || {
        let api = api.clone();
        async move { api.get_opt("baseline").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(
        gone.is_some(),
        "the generated resource outlived its template"
    );
    env.wait_released(&generated_in).await;
    assert!(
        env.isolations(&generated_in)
            .get_opt("team-own")
            .await
            .expect("get")
            .is_some()
    );
    let survivor = env
        .isolations(&conflicted)
        .get_opt("baseline")
        .await
        .expect("get");
    assert!(survivor.is_some(), "the hand-written resource was deleted");
    env.finish().await;
}

/// What the API can refuse, it refuses, naming the field: a template a user cannot apply never
/// reaches netfence.
#[tokio::test]
async fn the_api_refuses_invalid_templates() {
    let env = start().await;

    // Refused by the API server: the schema and the CRD's CEL rules.
    let mut bad_name = env.template("bad-name");
    bad_name["spec"]["isolationName"] = json!("Not_A_Label");
    let mut unknown_tier = env.template("unknown-tier");
    unknown_tier["spec"]["template"]["spec"]["flows"] =
        json!([{"from": "web", "to": "db", "ports": [{"port": 5432}]}]);
    let mut no_selector = env.template("no-selector");
    no_selector["spec"]
        .as_object_mut()
        .map(|spec| spec.remove("namespaceSelector"));
    let mut reserved = env.template("reserved");
    reserved["spec"]["template"]["metadata"]["labels"] = json!({TEMPLATE_LABEL: "mine"});
    for (template, field) in [
        (&reserved, "spec.template.metadata.labels"),
        (&bad_name, "spec.isolationName"),
        (&unknown_tier, "spec.template.spec.flows"),
        (&no_selector, "spec.namespaceSelector"),
    ] {
        let dynamic: Api<DynamicObject> = Api::all_with(
            env.client.clone(),
            &ApiResource::erase::<IsolationTemplate>(&()),
        );
        let object: DynamicObject = serde_json::from_value(template.clone()).expect("an object");
        let created = dynamic.create(&PostParams::default(), &object).await;
        match created {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{field}: {status:?}");
                assert!(
                    status.message.contains(field),
                    "{field}: {}",
                    status.message
                );
            }
            other => panic!("{field}: the API accepted an invalid template: {other:?}"),
        }
    }

    env.finish().await;
}

/// What only netfence can check gives status InvalidSpec naming the field (below
/// `spec.template`), and nothing is generated or changed: a template that was valid keeps its
/// generated resources and their policies exactly as they were.
#[tokio::test]
async fn invalid_templates_change_nothing() {
    let mut env = start().await;
    let team = env.run_namespace("team", true).await;
    // Accepted by the API, refused by netfence: a label value that is not one.
    let mut bad_label = env.template("bad-label");
    bad_label["spec"]["template"]["metadata"]["labels"] = json!({"team": "-a"});
    let bad_label_name = name_of(&bad_label);
    env.create_template(&bad_label).await;
    // The status describes the template's generation: its reconcile has ended, and an
    // invalid template's reconcile writes its status and nothing else.
    env.wait_invalid(&bad_label_name, "spec.template.metadata.labels.team")
        .await;
    assert!(
        env.isolations(&team)
            .get_opt("baseline")
            .await
            .expect("get")
            .is_none(),
        "an invalid template generated a resource"
    );
    env.templates()
        .delete(&bad_label_name, &DeleteParams::default())
        .await
        .expect("deleted");

    // A valid template, then an edit only netfence refuses: nothing generated changes.
    let template = env.template("teams");
    let name = name_of(&template);
    env.create_template(&template).await;
    let before = env.wait_generated(&team, 4).await;
    let policies_before = env.policy_specs(&team).await;
    let mut broken = team_spec(8080);
    broken["sharedServices"] = json!([{
        "name": "payments", "direction": "Egress", "ipBlock": {"cidr": "203.0.113.7/24"},
        "ports": [{"port": 443}],
    }]);
    env.templates()
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": broken}}})),
        )
        .await
        .expect("the API accepts what only netfence checks");
    let status = env
        .wait_invalid(&name, "spec.template.spec.sharedServices[0].ipBlock.cidr")
        .await;
    assert_eq!(matched(&status), Some(1), "the last good count is kept");
    let after = env.isolations(&team).get("baseline").await.expect("get");
    assert_eq!(
        after.spec, before.spec,
        "an invalid template changed a generated resource"
    );
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(env.policy_specs(&team).await, policies_before);
    env.finish().await;
}
