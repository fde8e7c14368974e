//! The controller against the sandbox API server, through the real kube client: what a platform
//! engineer sees in a cluster. Each scenario has its own sandbox and namespace; writes are
//! counted from the sandbox's audit log.

use std::{
    collections::BTreeSet,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use k8s_openapi::api::{core::v1::Namespace, events::v1::Event, networking::v1::NetworkPolicy};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use netfence::{controller, metrics::Metrics, plan::is_owned_by, render, sandbox::Sandbox};
use netfence_crd::{NamespaceIsolation, ValidatedIsolation};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A sandbox with netfence's CRDs and the controller running against it.
struct Env {
    sandbox: Sandbox,
    client: Client,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Env {
    async fn start() -> Env {
        let sandbox = Sandbox::start("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("the sandbox starts");
        sandbox.install_netfence_crds().expect("CRDs install");
        let client = sandbox.client().expect("client");
        let mut env = Env {
            sandbox,
            client,
            metrics: Arc::new(Metrics::default()),
            stop: None,
            task: None,
        };
        env.start_controller();
        env
    }

    fn start_controller(&mut self) {
        let prepared = controller::prepare(
            self.client.clone(),
            &controller::Settings {
                namespace: None,
                concurrency: 4,
                instance: Some("e2e".into()),
            },
            self.metrics.clone(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(prepared.run(
            Arc::new(AtomicBool::new(false)),
            async move {
                let _ = stopped.await;
            },
        )));
    }

    async fn stop_controller(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    async fn namespace(&self, name: &str) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace created");
    }

    fn isolations(&self, namespace: &str) -> Api<NamespaceIsolation> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn policies(&self, namespace: &str) -> Api<NetworkPolicy> {
        Api::namespaced(self.client.clone(), namespace)
    }

    async fn create(&self, resource: &Value) -> NamespaceIsolation {
        let resource: NamespaceIsolation =
            serde_json::from_value(resource.clone()).expect("a NamespaceIsolation");
        let namespace = resource.metadata.namespace.clone().expect("namespace");
        self.isolations(&namespace)
            .create(&PostParams::default(), &resource)
            .await
            .expect("created")
    }

    /// Wait until the resource's status describes its current generation with this reason.
    async fn wait_reason(&self, namespace: &str, name: &str, reason: &str) -> NamespaceIsolation {
        let mut last = None;
        for _ in 0..200 {
            let current = self.isolations(namespace).get(name).await.expect("get");
            let done = current.status.as_ref().is_some_and(|status| {
                status.observed_generation == current.metadata.generation
                    && status.conditions.iter().any(|c| c.reason == reason)
            });
            if done {
                return current;
            }
            last = Some(current);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{namespace}/{name} never reached {reason}: {:?}",
            last.and_then(|l| l.status)
        );
    }

    async fn policy_names(&self, namespace: &str) -> BTreeSet<String> {
        self.policies(namespace)
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .filter_map(|policy| policy.metadata.name)
            .collect()
    }

    /// Write requests to NetworkPolicies and NamespaceIsolations since the last clear.
    fn writes(&self) -> Vec<String> {
        self.sandbox
            .audit()
            .into_iter()
            .filter(|entry| {
                matches!(
                    entry.verb.as_str(),
                    "create" | "update" | "patch" | "apply" | "delete"
                ) && matches!(
                    entry.resource.as_str(),
                    "networkpolicies" | "namespaceisolations"
                )
            })
            .map(|entry| {
                format!(
                    "{} {}{} {}",
                    entry.verb,
                    entry.resource,
                    entry
                        .subresource
                        .map(|s| format!("/{s}"))
                        .unwrap_or_default(),
                    entry.name.unwrap_or_default()
                )
            })
            .collect()
    }

    async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..200 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never happened: {what}");
    }
}

/// A policy spec by what it means: an empty rule list is no rule list (the API server drops
/// empty lists; the sandbox stores them as sent).
fn meaning(
    spec: Option<k8s_openapi::api::networking::v1::NetworkPolicySpec>,
) -> Option<k8s_openapi::api::networking::v1::NetworkPolicySpec> {
    spec.map(|mut spec| {
        spec.ingress = spec.ingress.filter(|rules| !rules.is_empty());
        spec.egress = spec.egress.filter(|rules| !rules.is_empty());
        spec
    })
}

fn example(file: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/").to_owned() + file;
    let text = std::fs::read_to_string(path).expect("example");
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).expect("YAML");
    documents
        .into_iter()
        .find(|document| document["kind"] == "NamespaceIsolation")
        .expect("a NamespaceIsolation")
}

fn shop(namespace: &str) -> Value {
    json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "NamespaceIsolation",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {
            "tiers": [
                {"name": "frontend", "podSelector": {"matchLabels": {"tier": "frontend"}}},
                {"name": "backend", "podSelector": {"matchLabels": {"tier": "backend"}}},
                {"name": "database", "podSelector": {"matchLabels": {"tier": "database"}}},
            ],
            "flows": [
                {"from": "frontend", "to": "backend", "ports": [{"port": 8080}]},
                {"from": "backend", "to": "database", "ports": [{"port": 5432}]},
            ],
        },
    })
}

/// Every example, created as a user would: exactly the rendered policies appear, owned and
/// labelled, and the status is Ready with their names.
#[tokio::test]
async fn examples_converge_to_exactly_the_rendered_policies() {
    let env = Env::start().await;
    for file in [
        "three-tier.yaml",
        "microservices.yaml",
        "ingress-only.yaml",
        "team-namespace.yaml",
        "nodelocal-dns.yaml",
    ] {
        let resource = example(file);
        let namespace = resource["metadata"]["namespace"]
            .as_str()
            .expect("namespace")
            .to_owned();
        let name = resource["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        env.namespace(&namespace).await;
        env.create(&resource).await;
        let ready = env.wait_reason(&namespace, &name, "Reconciled").await;
        let uid = ready.metadata.uid.clone().expect("uid");
        let expected =
            render::network_policies(&ValidatedIsolation::try_from(&ready).expect("valid"));
        let observed = env
            .policies(&namespace)
            .list(&ListParams::default())
            .await
            .expect("list")
            .items;
        assert_eq!(observed.len(), expected.len(), "{file}");
        for want in &expected {
            let got = observed
                .iter()
                .find(|policy| policy.metadata.name == want.metadata.name)
                .unwrap_or_else(|| panic!("{file}: {:?} missing", want.metadata.name));
            assert_eq!(
                meaning(got.spec.clone()),
                meaning(want.spec.clone()),
                "{file}: {:?}",
                want.metadata.name
            );
            assert!(
                is_owned_by(got, &uid),
                "{file}: {:?} not owned",
                want.metadata.name
            );
            assert_eq!(
                got.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(render::ISOLATION_LABEL)),
                Some(&name)
            );
        }
        let status = ready.status.expect("status");
        let names: BTreeSet<_> = expected
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        assert_eq!(
            status.policies.iter().cloned().collect::<BTreeSet<_>>(),
            names,
            "{file}"
        );
    }
}

/// Steady state: once Ready, a resync and an operator restart make zero writes.
#[tokio::test]
async fn steady_state_and_restart_make_no_writes() {
    let mut env = Env::start().await;
    env.namespace("steady").await;
    env.create(&shop("steady")).await;
    env.wait_reason("steady", "shop", "Reconciled").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.sandbox.audit_clear();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.writes(), Vec::<String>::new(), "writes in steady state");

    env.stop_controller().await;
    env.start_controller();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.writes(), Vec::<String>::new(), "writes after a restart");
}

/// Drift: a deleted policy and an edited one (a rule added, a selector changed) are restored,
/// each with a DriftCorrected Event naming the policy.
#[tokio::test]
async fn drift_is_restored_with_an_event() {
    let env = Env::start().await;
    env.namespace("drift").await;
    env.create(&shop("drift")).await;
    env.wait_reason("drift", "shop", "Reconciled").await;
    let policies = env.policies("drift");
    let wanted = policies.get("shop-tier-backend").await.expect("get").spec;
    let wanted_frontend = policies.get("shop-tier-frontend").await.expect("get").spec;

    policies
        .delete("shop-tier-backend", &DeleteParams::default())
        .await
        .expect("delete");
    policies
        .patch(
            "shop-tier-frontend",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {
                "podSelector": {"matchLabels": {"tier": "other"}},
                "ingress": [{"from": [{"namespaceSelector": {}}]}],
            }})),
        )
        .await
        .expect("edit");
    env.eventually("both policies restored", || async {
        let backend = policies.get_opt("shop-tier-backend").await.expect("get");
        let frontend = policies.get("shop-tier-frontend").await.expect("get");
        backend.is_some_and(|b| meaning(b.spec) == meaning(wanted.clone()))
            && meaning(frontend.spec) == meaning(wanted_frontend.clone())
    })
    .await;

    let events: Api<Event> = Api::namespaced(env.client.clone(), "drift");
    env.eventually("DriftCorrected events", || async {
        let notes: Vec<String> = events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|event| event.reason.as_deref() == Some("DriftCorrected"))
            .filter_map(|event| event.note)
            .collect();
        notes.iter().any(|n| n.contains("shop-tier-backend"))
            && notes.iter().any(|n| n.contains("shop-tier-frontend"))
    })
    .await;
    let text = env.metrics.encode(None);
    assert!(
        text.contains("netfence_drift_corrections_total 2"),
        "{text}"
    );
}

/// Spec changes: a removed tier's policy is pruned; an added flow writes only the two tier
/// policies it touches.
#[tokio::test]
async fn spec_changes_write_only_what_changed() {
    let env = Env::start().await;
    env.namespace("change").await;
    env.create(&shop("change")).await;
    env.wait_reason("change", "shop", "Reconciled").await;
    let isolations = env.isolations("change");

    env.sandbox.audit_clear();
    let mut spec = shop("change")["spec"].clone();
    spec["flows"]
        .as_array_mut()
        .expect("flows")
        .push(json!({"from": "frontend", "to": "database", "ports": [{"port": 5432}]}));
    isolations
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": spec})),
        )
        .await
        .expect("add a flow");
    env.wait_reason("change", "shop", "Reconciled").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let applied: BTreeSet<String> = env
        .writes()
        .into_iter()
        .filter(|write| write.starts_with("apply networkpolicies"))
        .collect();
    assert_eq!(
        applied,
        BTreeSet::from([
            "apply networkpolicies shop-tier-database".to_owned(),
            "apply networkpolicies shop-tier-frontend".to_owned(),
        ])
    );

    isolations
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {
                "tiers": [
                    {"name": "frontend", "podSelector": {"matchLabels": {"tier": "frontend"}}},
                    {"name": "backend", "podSelector": {"matchLabels": {"tier": "backend"}}},
                ],
                "flows": [{"from": "frontend", "to": "backend", "ports": [{"port": 8080}]}],
            }})),
        )
        .await
        .expect("remove a tier");
    env.wait_reason("change", "shop", "Reconciled").await;
    env.eventually("database policy pruned", || async {
        !env.policy_names("change")
            .await
            .contains("shop-tier-database")
    })
    .await;
}

/// Policies netfence does not own, even in the same namespace and even with its label or a
/// rendered name, are never touched; a taken name is reported in status.
#[tokio::test]
async fn foreign_policies_are_never_touched() {
    let env = Env::start().await;
    env.namespace("foreign").await;
    let policies = env.policies("foreign");
    let hand_written: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "hand-written"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }))
    .expect("policy");
    let labelled: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "labelled", "labels": {"app.kubernetes.io/managed-by": "netfence", "netfence.io/isolation": "shop"}},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }))
    .expect("policy");
    let squatter: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "shop-tier-database"},
        "spec": {"podSelector": {"matchLabels": {"mine": "yes"}}},
    }))
    .expect("policy");
    for policy in [&hand_written, &labelled, &squatter] {
        policies
            .create(&PostParams::default(), policy)
            .await
            .expect("create");
    }
    env.create(&shop("foreign")).await;
    let failed = env.wait_reason("foreign", "shop", "ApplyFailed").await;
    let message = &failed.status.expect("status").conditions[0].message;
    assert!(message.contains("shop-tier-database"), "{message}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for original in [&hand_written, &labelled, &squatter] {
        let name = original.metadata.name.as_deref().expect("name");
        let now = policies.get(name).await.expect("still there");
        assert_eq!(now.spec, original.spec, "{name} changed");
        assert!(now.metadata.owner_references.is_none(), "{name} adopted");
    }
    assert!(
        env.policy_names("foreign")
            .await
            .contains("shop-tier-backend")
    );
}

/// An invalid update that admission lets through (a label value CEL cannot check): status
/// InvalidSpec with the field path, and every policy stays as it was.
#[tokio::test]
async fn invalid_update_changes_nothing() {
    let env = Env::start().await;
    env.namespace("invalid").await;
    env.create(&shop("invalid")).await;
    env.wait_reason("invalid", "shop", "Reconciled").await;
    let before = env
        .policies("invalid")
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    env.sandbox.audit_clear();
    env.isolations("invalid")
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"tiers": [
                {"name": "frontend", "podSelector": {"matchLabels": {"tier": "-bad-"}}},
                {"name": "backend", "podSelector": {"matchLabels": {"tier": "backend"}}},
                {"name": "database", "podSelector": {"matchLabels": {"tier": "database"}}},
            ]}})),
        )
        .await
        .expect("admitted");
    let invalid = env.wait_reason("invalid", "shop", "InvalidSpec").await;
    let message = &invalid.status.expect("status").conditions[0].message;
    assert!(
        message.contains("spec.tiers[0].podSelector.matchLabels.tier"),
        "{message}"
    );
    let after = env
        .policies("invalid")
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    assert_eq!(
        before
            .iter()
            .map(|p| (&p.metadata.name, &p.spec))
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|p| (&p.metadata.name, &p.spec))
            .collect::<Vec<_>>()
    );
    let policy_writes: Vec<_> = env
        .writes()
        .into_iter()
        .filter(|w| w.contains("networkpolicies"))
        .collect();
    assert_eq!(policy_writes, Vec::<String>::new());
}

/// DryRun writes no policy and reports what Enforce would create.
#[tokio::test]
async fn dry_run_writes_nothing_and_reports() {
    let env = Env::start().await;
    env.namespace("dry").await;
    let mut resource = shop("dry");
    resource["spec"]["mode"] = json!("DryRun");
    env.create(&resource).await;
    let dry = env.wait_reason("dry", "shop", "DryRun").await;
    let planned = dry
        .status
        .expect("status")
        .planned_changes
        .expect("planned");
    assert_eq!(planned.create.len(), 5, "{planned:?}");
    assert!(env.policy_names("dry").await.is_empty());
}

/// The three deletion policies do what they say.
#[tokio::test]
async fn deletion_policies() {
    let env = Env::start().await;
    for (namespace, policy, kept) in [
        ("del-delete", "Delete", vec![]),
        (
            "del-orphan",
            "Orphan",
            vec![
                "shop-allow-dns",
                "shop-default-deny",
                "shop-tier-backend",
                "shop-tier-database",
                "shop-tier-frontend",
            ],
        ),
        (
            "del-keep",
            "KeepDefaultDeny",
            vec!["shop-allow-dns", "shop-default-deny"],
        ),
    ] {
        env.namespace(namespace).await;
        let mut resource = shop(namespace);
        resource["spec"]["deletionPolicy"] = json!(policy);
        env.create(&resource).await;
        env.wait_reason(namespace, "shop", "Reconciled").await;
        env.isolations(namespace)
            .delete("shop", &DeleteParams::default())
            .await
            .expect("delete");
        env.eventually(&format!("{namespace}: resource gone"), || async {
            env.isolations(namespace)
                .get_opt("shop")
                .await
                .expect("get")
                .is_none()
        })
        .await;
        let kept: BTreeSet<String> = kept.into_iter().map(str::to_owned).collect();
        env.eventually(
            &format!("{namespace}: {policy} leaves {kept:?}"),
            || async { env.policy_names(namespace).await == kept },
        )
        .await;
        for name in &kept {
            let left = env.policies(namespace).get(name).await.expect("kept");
            assert!(
                left.metadata
                    .owner_references
                    .unwrap_or_default()
                    .is_empty(),
                "{namespace}/{name} still owned"
            );
        }
    }
}

/// Faults: with 30% of writes failing with 500 and watches closed every second, every
/// resource still converges, nothing foreign is deleted, and the failure metric counts.
#[tokio::test]
async fn converges_through_faults() {
    let env = Env::start().await;
    let faults = env.sandbox.faults();
    faults.fail("apply", "networkpolicies", 0.3, 500);
    faults.fail("patch", "namespaceisolations", 0.3, 500);
    let closer = {
        let faults = env.sandbox.faults();
        tokio::spawn(async move {
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                faults.close_watches();
            }
        })
    };
    let foreign: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "keep-me"},
        "spec": {"podSelector": {}},
    }))
    .expect("policy");
    for index in 0..5 {
        let namespace = format!("faults-{index}");
        env.namespace(&namespace).await;
        env.policies(&namespace)
            .create(&PostParams::default(), &foreign)
            .await
            .expect("foreign");
        env.create(&shop(&namespace)).await;
    }
    for index in 0..5 {
        let namespace = format!("faults-{index}");
        for _ in 0..600 {
            let current = env.isolations(&namespace).get("shop").await;
            let done = current
                .ok()
                .and_then(|c| c.status)
                .is_some_and(|s| s.conditions.iter().any(|c| c.reason == "Reconciled"));
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        env.wait_reason(&namespace, "shop", "Reconciled").await;
        assert!(env.policy_names(&namespace).await.contains("keep-me"));
        assert_eq!(env.policy_names(&namespace).await.len(), 6);
    }
    closer.abort();
    let text = env.metrics.encode(None);
    assert!(
        text.contains("netfence_reconcile_failures_total{reason="),
        "{text}"
    );
}

/// Leader election: two operators on one sandbox, only the Lease holder reconciles; stop it and
/// the other takes over.
#[tokio::test]
async fn only_the_leader_reconciles_and_the_standby_takes_over() {
    let mut env = Env::start().await;
    env.stop_controller().await;
    env.namespace("netfence-system").await;
    let lease = |identity: &str| controller::LeaseSettings {
        namespace: "netfence-system".into(),
        name: "netfence".into(),
        identity: identity.into(),
    };
    let settings = controller::Settings {
        namespace: None,
        concurrency: 2,
        instance: None,
    };
    let start = |identity: &'static str, metrics: Arc<Metrics>| {
        let client = env.client.clone();
        let settings = controller::Settings {
            ..settings_clone(&settings)
        };
        let lease = lease(identity);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            controller::run_as_leader(
                client,
                &settings,
                &lease,
                metrics,
                Arc::new(AtomicBool::new(false)),
                async move {
                    let _ = stopped.await;
                },
            )
            .await
            .expect("leader election runs");
        });
        (stop, task)
    };
    let first_metrics = Arc::new(Metrics::default());
    let (stop_first, first) = start("first", first_metrics.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second_metrics = Arc::new(Metrics::default());
    let (stop_second, second) = start("second", second_metrics.clone());

    env.namespace("leader").await;
    env.create(&shop("leader")).await;
    env.wait_reason("leader", "shop", "Reconciled").await;
    let reconciles = |metrics: &Metrics| {
        metrics
            .encode(None)
            .lines()
            .find_map(|line| {
                line.strip_prefix("netfence_reconciles_total ")
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    };
    assert_ne!(reconciles(&first_metrics), "0", "the leader reconciles");
    assert_eq!(reconciles(&second_metrics), "0", "the standby does not");

    let _ = stop_first.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), first).await;
    env.namespace("takeover").await;
    env.create(&shop("takeover")).await;
    // The standby notices a released or expired Lease on its next poll (within the 15 s lease).
    for _ in 0..40 {
        if reconciles(&second_metrics) != "0" {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    env.wait_reason("takeover", "shop", "Reconciled").await;
    assert_ne!(reconciles(&second_metrics), "0", "the standby took over");
    let _ = stop_second.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), second).await;
}

fn settings_clone(settings: &controller::Settings) -> controller::Settings {
    controller::Settings {
        namespace: settings.namespace.clone(),
        concurrency: settings.concurrency,
        instance: settings.instance.clone(),
    }
}

/// GitOps hygiene: the labels and annotations Argo CD and Flux put on a NamespaceIsolation never
/// reach the generated policies, so Argo CD neither prunes them nor reports them OutOfSync.
#[tokio::test]
async fn policies_never_inherit_gitops_labels_or_annotations() {
    let env = Env::start().await;
    env.namespace("gitops").await;
    let mut resource = shop("gitops");
    resource["metadata"]["labels"] = json!({
        "argocd.argoproj.io/instance": "team-apps",
        "kustomize.toolkit.fluxcd.io/name": "team-apps",
        "helm.toolkit.fluxcd.io/name": "team-apps",
    });
    resource["metadata"]["annotations"] = json!({
        "argocd.argoproj.io/tracking-id": "team-apps:netfence.io/NamespaceIsolation:gitops/shop",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    });
    env.create(&resource).await;
    env.wait_reason("gitops", "shop", "Reconciled").await;
    for policy in env
        .policies("gitops")
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        let labels: BTreeSet<String> = policy
            .metadata
            .labels
            .unwrap_or_default()
            .into_keys()
            .collect();
        assert_eq!(
            labels,
            BTreeSet::from([
                "app.kubernetes.io/managed-by".to_owned(),
                "netfence.io/isolation".to_owned(),
            ]),
            "{:?}",
            policy.metadata.name
        );
        assert!(
            policy.metadata.annotations.unwrap_or_default().is_empty(),
            "{:?}",
            policy.metadata.name
        );
    }
}

/// Switching Enforce to DryRun leaves the existing policies exactly as they are, and reports
/// nothing to change.
#[tokio::test]
async fn switching_to_dry_run_keeps_the_policies() {
    let env = Env::start().await;
    env.namespace("switch").await;
    env.create(&shop("switch")).await;
    env.wait_reason("switch", "shop", "Reconciled").await;
    let before = env.policy_names("switch").await;
    env.sandbox.audit_clear();
    env.isolations("switch")
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"mode": "DryRun", "flows": []}})),
        )
        .await
        .expect("switch");
    let dry = env.wait_reason("switch", "shop", "DryRun").await;
    assert_eq!(env.policy_names("switch").await, before);
    let policy_writes: Vec<_> = env
        .writes()
        .into_iter()
        .filter(|write| write.contains("networkpolicies"))
        .collect();
    assert_eq!(policy_writes, Vec::<String>::new());
    let planned = dry
        .status
        .expect("status")
        .planned_changes
        .expect("planned");
    assert_eq!(
        planned.update,
        [
            "shop-tier-backend",
            "shop-tier-database",
            "shop-tier-frontend"
        ],
        "dropping the flows would change the three tier policies"
    );
}
