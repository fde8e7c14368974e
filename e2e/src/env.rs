//! One scenario's world, shared by every scenario file: a cluster, the namespaces and templates
//! the scenario made, the controllers it runs, and their counters. `finish` removes them all.
//!
//! ```text
//! Env::start() --> Cluster (sandbox or real) + run label
//!   .namespace("x") / .namespace_labelled / .run_namespace("x", selected) --> "x-4f2a1"
//!   .start_controller(Some("x-4f2a1") | None) --> netfence run's controllers, counting into .metrics
//!   .reconciles() ... change ... .wait_reconciled(before, n) --> the controllers did the work
//!   .finish() --> templates deleted, controllers stopped, namespaces deleted, cluster stopped
//! ```
//!
//! A "nothing was written" check is only worth something when the controller is known to have
//! seen the change: [`Env::wait_reconciled`] waits until the controllers' reconcile counters
//! (`netfence_reconciles_total`, and the reconcile duration histogram's count, observed as each
//! reconcile ends) have moved past a value read before the change and no reconcile is in
//! flight. A controller that died fails that wait instead of passing the check.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::{events::v1::Event, networking::v1::NetworkPolicy};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams},
};
use netfence_controller::{self as controller, metrics::Metrics};
use netfence_crd::{IsolationTemplate, NamespaceIsolation};
use serde_json::Value;

use crate::{
    Cluster, KUBECONFIG_VARIABLE, OPERATOR_NAMESPACE, RunningController, TestNamespace, eventually,
    unique_suffix,
};

/// How long a scenario waits for convergence (a bound, not a timing assertion). A real
/// cluster's garbage collector learns a new CRD's kinds on its next discovery resync (30 s).
pub const LIMIT: Duration = Duration::from_secs(90);

/// How long the controllers stay idle before [`Env::relist_and_wait`] takes them as done: a
/// change the watch handed over waits in kube's scheduler for a moment before its reconcile
/// starts and counts.
const QUIET: Duration = Duration::from_millis(300);

/// The label key that ties a run's namespaces to its templates.
pub const RUN_LABEL: &str = "netfence.io/e2e-run";

/// Against a real cluster, scenarios started with [`Env::start_alone`] take turns (one test
/// binary's; `.ci/run` runs those binaries with `--test-threads=1` too).
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How far the controllers of an [`Env`] have got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reconciles {
    /// Reconciles started (`netfence_reconciles_total`).
    pub started: u64,
    /// Reconciles ended, with or without an error (`netfence_reconcile_duration_seconds_count`).
    pub finished: u64,
}

impl Reconciles {
    /// The counters of `metrics`, read from its Prometheus text as a scrape would.
    #[must_use]
    pub fn of(metrics: &Metrics) -> Reconciles {
        Reconciles {
            started: counter(metrics, "netfence_reconciles_total"),
            finished: counter(metrics, "netfence_reconcile_duration_seconds_count"),
        }
    }
}

/// One sample of the controller's metrics without labels (0 when it was never set).
#[must_use]
pub fn counter(metrics: &Metrics, name: &str) -> u64 {
    metrics
        .encode(None)
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} "))?.parse().ok())
        .unwrap_or_default()
}

/// The complete lists of each watch of the controller (`netfence_watch_lists_total`), by watch.
#[must_use]
pub fn lists(metrics: &Metrics) -> std::collections::BTreeMap<String, u64> {
    metrics
        .encode(None)
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("netfence_watch_lists_total{watch=\"")?;
            let (watch, count) = rest.split_once("\"} ")?;
            Some((watch.to_owned(), count.parse().ok()?))
        })
        .collect()
}

/// A running controller and the namespace it watches (`None`: cluster-wide, templates too).
struct Running {
    namespace: Option<String>,
    controller: RunningController,
}

/// A cluster (sandbox or real) with netfence's CRDs, and what one scenario made in it.
pub struct Env {
    /// The cluster.
    pub cluster: Cluster,
    /// The test's own client (cluster-admin on a real cluster).
    pub client: Client,
    /// The operator's client: on a real cluster, its ServiceAccount through the proxy.
    pub operator: Client,
    /// A value unique to this scenario: its templates select namespaces labelled
    /// [`RUN_LABEL`]`=run`.
    pub run: String,
    /// The counters every controller of this scenario updates.
    pub metrics: Arc<Metrics>,
    controllers: Vec<Running>,
    namespaces: Vec<TestNamespace>,
    templates: Vec<String>,
    _turn: Option<tokio::sync::MutexGuard<'static, ()>>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

impl Env {
    /// A cluster to test against (see [`Cluster::start`]), no controller yet.
    ///
    /// # Panics
    ///
    /// When no cluster can be started or reached.
    pub async fn start() -> Env {
        Env::start_with_turn(None).await
    }

    /// Like [`Env::start`], but against a real cluster only once no other scenario of this test
    /// binary that started so holds the cluster (cluster-wide controllers, CRDs replaced).
    pub async fn start_alone() -> Env {
        let turn = if std::env::var_os(KUBECONFIG_VARIABLE).is_some() {
            Some(TURN.lock().await)
        } else {
            None
        };
        Env::start_with_turn(turn).await
    }

    async fn start_with_turn(turn: Option<tokio::sync::MutexGuard<'static, ()>>) -> Env {
        let cluster = Cluster::start().await.expect("a cluster to test against");
        let client = cluster.client();
        let operator = cluster.operator_client();
        Env {
            cluster,
            client,
            operator,
            run: unique_suffix(),
            metrics: Arc::new(Metrics::default()),
            controllers: Vec::new(),
            namespaces: Vec::new(),
            templates: Vec::new(),
            _turn: turn,
        }
    }

    /// A namespace of the scenario's own, `prefix-<random>`, deleted by [`Env::finish`].
    pub async fn namespace(&mut self, prefix: &str) -> String {
        self.namespace_labelled(prefix, &BTreeMap::new()).await
    }

    /// A namespace of the scenario's own with these labels.
    ///
    /// # Panics
    ///
    /// When it cannot be created.
    pub async fn namespace_labelled(
        &mut self,
        prefix: &str,
        labels: &BTreeMap<String, String>,
    ) -> String {
        let namespace = self
            .cluster
            .namespace_labelled(prefix, labels)
            .await
            .expect("namespace created");
        let name = namespace.name.clone();
        self.namespaces.push(namespace);
        name
    }

    /// A namespace of the scenario's own; `selected` ones carry [`RUN_LABEL`]`=run`, which its
    /// templates select.
    pub async fn run_namespace(&mut self, prefix: &str, selected: bool) -> String {
        let labels: BTreeMap<String, String> = if selected {
            [(RUN_LABEL.to_owned(), self.run.clone())].into()
        } else {
            BTreeMap::new()
        };
        self.namespace_labelled(prefix, &labels).await
    }

    /// A namespace of the scenario's own with a controller watching only it.
    pub async fn watched_namespace(&mut self, prefix: &str) -> String {
        let name = self.namespace(prefix).await;
        self.start_controller(Some(&name));
        name
    }

    /// The namespaces the scenario made, in order.
    #[must_use]
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .map(|namespace| namespace.name.clone())
            .collect()
    }

    /// Start netfence's controllers as `netfence run` does, counting into [`Env::metrics`]: for
    /// one namespace, or cluster-wide with the template controller. Returns the counters.
    pub fn start_controller(&mut self, namespace: Option<&str>) -> Arc<Metrics> {
        self.start_controller_with_concurrency(namespace, 4)
    }

    /// [`Env::start_controller`] with `--concurrency`.
    pub fn start_controller_with_concurrency(
        &mut self,
        namespace: Option<&str>,
        concurrency: u16,
    ) -> Arc<Metrics> {
        let prepared = controller::prepare(
            self.operator.clone(),
            &controller::Settings {
                namespace: namespace.map(str::to_owned),
                concurrency,
                instance: Some("e2e".into()),
                templates: namespace.is_none(),
                operator_namespace: Some(OPERATOR_NAMESPACE.into()),
            },
            self.metrics.clone(),
        );
        self.controllers.push(Running {
            namespace: namespace.map(str::to_owned),
            controller: RunningController::start(prepared),
        });
        self.metrics.clone()
    }

    /// Stop every controller, as on SIGTERM; returns what each watched, to start them again.
    pub async fn stop_controllers(&mut self) -> Vec<Option<String>> {
        self.end_controllers(false).await
    }

    /// Kill every controller, as SIGKILL would; returns what each watched, to start them again.
    pub async fn kill_controllers(&mut self) -> Vec<Option<String>> {
        self.end_controllers(true).await
    }

    async fn end_controllers(&mut self, kill: bool) -> Vec<Option<String>> {
        let mut watched = Vec::new();
        for running in self.controllers.drain(..) {
            if kill {
                running.controller.kill().await;
            } else {
                running.controller.stop().await;
            }
            watched.push(running.namespace);
        }
        watched
    }

    /// Whether every running controller's caches have synced (what `/readyz` answers).
    #[must_use]
    pub fn controllers_ready(&self) -> bool {
        self.controllers
            .iter()
            .all(|running| running.controller.is_ready())
    }

    /// The controllers' reconcile counters now.
    #[must_use]
    pub fn reconciles(&self) -> Reconciles {
        Reconciles::of(&self.metrics)
    }

    /// Wait until the controllers have ended at least `count` reconciles since `before` and
    /// none is in flight: the proof that they saw what happened after `before` was read,
    /// before a check that they wrote nothing about it.
    ///
    /// # Panics
    ///
    /// When that does not happen within [`LIMIT`] (a controller that died or missed the
    /// change), with the counters.
    pub async fn wait_reconciled(&self, before: Reconciles, count: u64, what: &str) -> Reconciles {
        let done = eventually(LIMIT, || async {
            let now = self.reconciles();
            (now.finished >= before.finished + count && now.started == now.finished).then_some(now)
        })
        .await;
        done.unwrap_or_else(|| {
            panic!(
                "the controllers never reconciled {count} more time(s) after {what}: {before:?} then {:?}",
                self.reconciles()
            )
        })
    }

    /// Make every watch of the controllers relist (history compacted, then every watch
    /// closed: the next watch answers 410 Gone), and wait until each has finished its list
    /// (`netfence_watch_lists_total` rose for every watch: it counts a list once the
    /// controller has taken the changes it found) and no reconcile has been in flight for
    /// [`QUIET`]: the proof that they processed everything before it, and what the relist
    /// found (a change taken waits in kube's scheduler for a moment before its reconcile
    /// starts). A relist reconciles only what changed while the watches were down.
    ///
    /// # Panics
    ///
    /// When that does not happen within [`LIMIT`], with the counters.
    pub async fn relist_and_wait(&self) -> Reconciles {
        let before = lists(&self.metrics);
        assert!(
            !before.is_empty(),
            "the controllers have no complete list yet"
        );
        let faults = self.cluster.faults();
        faults.compact().await;
        faults.close_watches();
        let done = eventually(LIMIT, || async {
            let now = lists(&self.metrics);
            let relisted = before
                .iter()
                .all(|(watch, count)| now.get(watch).is_some_and(|now| now > count));
            let idle = || {
                let reconciles = self.reconciles();
                (reconciles.started == reconciles.finished).then_some(reconciles)
            };
            let first = idle().filter(|_| relisted)?;
            tokio::time::sleep(QUIET).await;
            idle().filter(|now| *now == first)
        })
        .await;
        done.unwrap_or_else(|| {
            panic!(
                "the controllers' watches never all relisted: {before:?} then {:?}",
                lists(&self.metrics)
            )
        })
    }

    /// NamespaceIsolations of `namespace`.
    #[must_use]
    pub fn isolations(&self, namespace: &str) -> Api<NamespaceIsolation> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// NetworkPolicies of `namespace`.
    #[must_use]
    pub fn policies(&self, namespace: &str) -> Api<NetworkPolicy> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// IsolationTemplates.
    #[must_use]
    pub fn templates(&self) -> Api<IsolationTemplate> {
        Api::all(self.client.clone())
    }

    /// Create a NamespaceIsolation given as JSON.
    ///
    /// # Panics
    ///
    /// When it is not one, or the API refuses it.
    pub async fn create(&self, resource: &Value) -> NamespaceIsolation {
        let resource: NamespaceIsolation =
            serde_json::from_value(resource.clone()).expect("a NamespaceIsolation");
        let namespace = resource.namespace().expect("a namespace");
        self.isolations(&namespace)
            .create(&PostParams::default(), &resource)
            .await
            .expect("created")
    }

    /// Create a NetworkPolicy given as JSON in `namespace`.
    ///
    /// # Panics
    ///
    /// When it is not one, or the API refuses it.
    pub async fn create_policy(&self, namespace: &str, policy: &Value) -> NetworkPolicy {
        let policy: NetworkPolicy =
            serde_json::from_value(policy.clone()).expect("a NetworkPolicy");
        self.policies(namespace)
            .create(&PostParams::default(), &policy)
            .await
            .expect("policy created")
    }

    /// Create an IsolationTemplate given as JSON; [`Env::finish`] deletes it.
    ///
    /// # Panics
    ///
    /// When it is not one, or the API refuses it.
    pub async fn create_template(&mut self, template: &Value) -> IsolationTemplate {
        let template: IsolationTemplate =
            serde_json::from_value(template.clone()).expect("an IsolationTemplate");
        let created = self
            .templates()
            .create(&PostParams::default(), &template)
            .await
            .expect("template created");
        self.templates.push(created.name_any());
        created
    }

    /// Delete a template [`Env::create_template`] made, now.
    ///
    /// # Panics
    ///
    /// When the API refuses.
    pub async fn delete_template(&mut self, name: &str) {
        self.templates()
            .delete(name, &DeleteParams::default())
            .await
            .expect("template deleted");
        self.templates.retain(|template| template != name);
    }

    /// Wait until the resource exists (a template may not have generated it yet) and its status
    /// describes its generation with this Ready reason.
    ///
    /// # Panics
    ///
    /// When that does not happen within [`LIMIT`], with the last status.
    pub async fn wait_reason(
        &self,
        namespace: &str,
        name: &str,
        reason: &str,
    ) -> NamespaceIsolation {
        self.wait_isolation(
            namespace,
            name,
            &format!("Ready reason {reason}"),
            |isolation| ready_reason(isolation) == Some(reason),
        )
        .await
    }

    /// Wait until `check` holds on the resource (read fresh each time).
    ///
    /// # Panics
    ///
    /// When that does not happen within [`LIMIT`], with the last status.
    pub async fn wait_isolation(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        check: impl Fn(&NamespaceIsolation) -> bool,
    ) -> NamespaceIsolation {
        let api = self.isolations(namespace);
        let found = eventually(LIMIT, || {
            let api = api.clone();
            let check = &check;
            // `ok()`: a resource no typed client can read is not there yet for this wait.
            async move { api.get_opt(name).await.ok()?.filter(|found| check(found)) }
        })
        .await;
        match found {
            Some(found) => found,
            None => panic!(
                "{namespace}/{name} never reached: {what}; last status: {:?}",
                api.get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|isolation| isolation.status)
            ),
        }
    }

    /// The Ready condition's reason and message of a NamespaceIsolation read as raw JSON: one
    /// that no typed client can read (an older CRD admitted it) still has a status.
    pub async fn raw_ready(&self, namespace: &str, name: &str) -> Option<(String, String)> {
        let resource = ApiResource::erase::<NamespaceIsolation>(&());
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let found = api.get_opt(name).await.ok()??;
        raw_ready(&found.data)
    }

    /// Create an object of kind `K` given as JSON, as kubectl would send it: untyped, so that it
    /// may hold what no typed client could (a port that does not fit in 32 bits).
    ///
    /// # Panics
    ///
    /// When `object` is not a Kubernetes object.
    pub async fn create_raw<K: kube::Resource<DynamicType = ()>>(
        &self,
        object: &Value,
    ) -> kube::Result<DynamicObject> {
        let resource = ApiResource::erase::<K>(&());
        let api: Api<DynamicObject> = match object.pointer("/metadata/namespace") {
            Some(Value::String(namespace)) => {
                Api::namespaced_with(self.client.clone(), namespace, &resource)
            }
            _ => Api::all_with(self.client.clone(), &resource),
        };
        let object: DynamicObject = serde_json::from_value(object.clone()).expect("an object");
        api.create(&PostParams::default(), &object).await
    }

    /// Wait until the template's status describes its generation and `check` holds on it.
    ///
    /// # Panics
    ///
    /// When that does not happen within [`LIMIT`], with the last status.
    pub async fn wait_template(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&IsolationTemplate) -> bool,
    ) -> IsolationTemplate {
        crate::wait_template(&self.templates(), LIMIT, name, what, check).await
    }

    /// Wait until `namespace` holds exactly these NetworkPolicies.
    ///
    /// # Panics
    ///
    /// When that does not happen within [`LIMIT`], with what it holds.
    pub async fn wait_policies(&self, namespace: &str, expected: &BTreeSet<String>) {
        let reached = eventually(LIMIT, || async {
            (self.policy_names(namespace).await == *expected).then_some(())
        })
        .await;
        let holds = self.policy_names(namespace).await;
        assert!(
            reached.is_some(),
            "{namespace} never held exactly {expected:?}: it holds {holds:?}"
        );
    }

    /// The names of the NetworkPolicies of `namespace`.
    ///
    /// # Panics
    ///
    /// When they cannot be listed.
    pub async fn policy_names(&self, namespace: &str) -> BTreeSet<String> {
        self.policies(namespace)
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .filter_map(|policy| policy.metadata.name)
            .collect()
    }

    /// The Events of `namespace` with this reason about the object named `regarding`.
    pub async fn events(&self, namespace: &str, regarding: &str, reason: &str) -> Vec<Event> {
        crate::events(&self.client, namespace, regarding, reason).await
    }

    /// Delete the templates, stop the controllers, delete the namespaces, stop the cluster (on a
    /// real one, failing the scenario when the operator was refused anything).
    pub async fn finish(mut self) {
        for name in std::mem::take(&mut self.templates) {
            let _ = self
                .templates()
                .delete(&name, &DeleteParams::default())
                .await;
        }
        self.stop_controllers().await;
        for namespace in self.namespaces.drain(..) {
            namespace.cleanup().await;
        }
        self.cluster.stop().await;
    }
}

/// The reason of the resource's Ready condition, when its status describes its generation.
#[must_use]
pub fn ready_reason(isolation: &NamespaceIsolation) -> Option<&str> {
    let status = isolation.status.as_ref()?;
    if status.observed_generation != isolation.metadata.generation {
        return None;
    }
    status
        .conditions
        .iter()
        .find(|condition| condition.type_ == "Ready")
        .map(|condition| condition.reason.as_str())
}

/// The Ready condition's reason and message in a raw object.
#[must_use]
pub fn raw_ready(data: &Value) -> Option<(String, String)> {
    data.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == "Ready")
        .map(|condition| {
            (
                condition["reason"].as_str().unwrap_or_default().to_owned(),
                condition["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
}
