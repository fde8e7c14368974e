//! The workload and what the benchmark observes: the NamespaceIsolation every namespace gets,
//! the write counts from the API server's audit log, and trackers
//! that watch when resources become Ready and when policies come back.
//!
//! ```text
//! audit log --by User-Agent--> Writes { policy applies, status, events, ... }
//! watch NamespaceIsolation --> Isolations: when each became Ready, at which generation
//! watch NetworkPolicy -------> Policies: when each (re)appeared, with which uid
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::{core::v1::Namespace, networking::v1::NetworkPolicy};
use kube::{
    Api, Client,
    api::{PartialObjectMeta, PostParams, ResourceExt},
    runtime::{WatchStreamExt, watcher},
};
use netfence_core::{ValidatedIsolation, render};
use netfence_crd::NamespaceIsolation;
use netfence_sandbox::AuditEntry;
use serde_json::{Value, json};

/// The name of every benchmark NamespaceIsolation (one per namespace).
pub const NAME: &str = "app";

/// The User-Agent of the benchmark's own requests (creating, deleting, editing, watching).
pub const BENCH_AGENT: &str = "netfence-scale/bench";

/// The User-Agent of the baseline's writes.
pub const BASELINE_AGENT: &str = "netfence-scale-baseline/bench";

/// The namespace of resource `index`.
pub fn namespace_name(index: usize) -> String {
    format!("scale-{index:05}")
}

/// The namespace of the baseline's resource `index` (on the real server the baseline shares
/// the server with the phases after it).
pub fn baseline_namespace(index: usize) -> String {
    format!("scale-baseline-{index:05}")
}

/// The tiers of the workload.
const TIERS: [&str; 5] = ["web", "api", "worker", "cache", "db"];

/// The flows: (from, to, port). The first one is what spec churn edits.
const FLOWS: [(&str, &str, u16); 8] = [
    ("web", "api", 8080),
    ("api", "db", 5432),
    ("api", "cache", 6379),
    ("api", "worker", 9000),
    ("worker", "db", 5432),
    ("worker", "cache", 6379),
    ("web", "cache", 6379),
    ("worker", "api", 8080),
];

/// The flows, with the first flow's port replaced by `first_port`.
pub fn flows(first_port: u16) -> Value {
    Value::Array(
        FLOWS
            .iter()
            .enumerate()
            .map(|(index, (from, to, port))| {
                let port = if index == 0 { first_port } else { *port };
                json!({"from": from, "to": to, "ports": [{"port": port}]})
            })
            .collect(),
    )
}

/// The first flow's port before churn.
pub const FIRST_PORT: u16 = FLOWS[0].2;

/// The spec of the workload: 5 tiers, 8 flows, 3 shared services (one folded into a tier
/// policy, two with policies of their own): 9 policies.
pub fn spec() -> Value {
    json!({
        "tiers": TIERS
            .iter()
            .map(|tier| json!({"name": tier, "podSelector": {"matchLabels": {"tier": tier}}}))
            .collect::<Vec<_>>(),
        "flows": flows(FIRST_PORT),
        "sharedServices": [
            {"name": "ingress", "direction": "Ingress", "namespace": "ingress-nginx",
             "tiers": ["web"], "ports": [{"port": 80}, {"port": 443}]},
            {"name": "metrics", "direction": "Ingress", "namespace": "monitoring",
             "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
             "ports": [{"port": "metrics"}]},
            {"name": "logging", "direction": "Egress", "namespace": "logging",
             "ports": [{"port": 24224}]},
        ],
    })
}

/// The NamespaceIsolation of `namespace`.
pub fn isolation(namespace: &str) -> anyhow::Result<NamespaceIsolation> {
    serde_json::from_value(json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "NamespaceIsolation",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": spec(),
    }))
    .context("the benchmark's NamespaceIsolation does not deserialize")
}

/// The policies netfence renders for a resource (with its UID, so with owner references).
pub fn rendered(resource: &NamespaceIsolation) -> anyhow::Result<Vec<NetworkPolicy>> {
    let validated = ValidatedIsolation::try_from(resource)
        .map_err(|errors| anyhow::anyhow!("the benchmark's spec is invalid: {errors}"))?;
    Ok(render::network_policies(&validated))
}

/// How many policies one resource of the workload renders.
pub fn policies_per_resource() -> anyhow::Result<usize> {
    Ok(rendered(&isolation("count")?)?.len())
}

/// Create the namespaces `name(0..count)` (untimed setup), `concurrency` at a time.
pub async fn create_namespaces(
    client: &Client,
    count: usize,
    name: fn(usize) -> String,
    concurrency: usize,
) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    stream::iter(0..count)
        .map(|index| {
            let api = api.clone();
            async move {
                let name = name(index);
                let namespace: Namespace = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"netfence.io/scale": "true"}},
                }))?;
                api.create(&PostParams::default(), &namespace)
                    .await
                    .with_context(|| format!("failed to create namespace {name}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await
}

/// What a healthy cluster has and the workload's spec reads: the namespaces of its shared
/// services and CoreDNS behind kube-dns in kube-system. Without them every resource would be
/// Ready with warnings (a shared service's namespace missing, DNS misconfigured), and report
/// each in an Event: two writes a resource that a working cluster never sees. What exists
/// already is left as it is.
pub async fn healthy_cluster(client: &Client) -> anyhow::Result<()> {
    let objects = [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ingress-nginx"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "logging"}}),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "coredns-scale", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {"containers": [{"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.12.0", "ports": [
                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
            ]}]},
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system"},
            "spec": {"selector": {"k8s-app": "kube-dns"}, "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ]},
        }),
    ];
    for object in objects {
        let object: kube::api::DynamicObject = serde_json::from_value(object)?;
        let types = object.types.clone().unwrap_or_default();
        let (group, version) = types
            .api_version
            .split_once('/')
            .unwrap_or(("", types.api_version.as_str()));
        let resource = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            group,
            version,
            &types.kind,
        ));
        let api: Api<kube::api::DynamicObject> = match object.metadata.namespace.as_deref() {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("failed to create {} {}", types.kind, object.name_any())
                });
            }
        }
    }
    Ok(())
}

/// Remove what the baseline wrote in its namespaces: its NamespaceIsolations and policies (one
/// delete-collection each per namespace, which returns once they are gone: none carries a
/// finalizer). The empty namespaces stay: deleting them would have the namespace controller
/// work through them while the operator is measured.
pub async fn remove_baseline(
    client: &Client,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    stream::iter(0..count)
        .map(|index| {
            let client = client.clone();
            async move {
                let namespace = baseline_namespace(index);
                let params = kube::api::DeleteParams::default();
                let list = kube::api::ListParams::default();
                Api::<NetworkPolicy>::namespaced(client.clone(), &namespace)
                    .delete_collection(&params, &list)
                    .await
                    .with_context(|| format!("failed to delete the policies of {namespace}"))?;
                Api::<NamespaceIsolation>::namespaced(client, &namespace)
                    .delete_collection(&params, &list)
                    .await
                    .with_context(|| format!("failed to delete the resource of {namespace}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await
}

/// Writes in an audit log, by what they wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Writes {
    /// Server-side applies of NetworkPolicies.
    pub policy_applies: usize,
    /// NetworkPolicy creates (netfence creates a policy it does not find, and applies the rest).
    pub policy_creates: usize,
    /// Other NetworkPolicy writes (update, patch).
    pub policy_other: usize,
    /// NetworkPolicy deletes.
    pub policy_deletes: usize,
    /// Writes to the status subresource of NamespaceIsolations.
    pub status: usize,
    /// Other NamespaceIsolation writes (finalizers).
    pub resource: usize,
    /// Events (core or events.k8s.io): for people, not part of the minimum.
    pub events: usize,
    /// Anything else (Leases, ...).
    pub other: usize,
    /// Writes answered with an error (counted above too).
    pub failed: usize,
}

impl Writes {
    /// The writes of requests whose User-Agent is `agent`.
    pub fn of(entries: &[AuditEntry], agent: &str) -> Writes {
        let mut writes = Writes::default();
        for entry in entries.iter().filter(|entry| entry.user_agent == agent) {
            if !matches!(
                entry.verb.as_str(),
                "create" | "update" | "patch" | "apply" | "delete" | "deletecollection"
            ) {
                continue;
            }
            if entry.code >= 400 {
                writes.failed += 1;
            }
            let counter = match (
                entry.resource.as_str(),
                entry.subresource.as_deref(),
                entry.verb.as_str(),
            ) {
                ("networkpolicies", _, "apply") => &mut writes.policy_applies,
                ("networkpolicies", _, "create") => &mut writes.policy_creates,
                ("networkpolicies", _, "delete" | "deletecollection") => &mut writes.policy_deletes,
                ("networkpolicies", _, _) => &mut writes.policy_other,
                ("namespaceisolations", Some("status"), _) => &mut writes.status,
                ("namespaceisolations", _, _) => &mut writes.resource,
                ("events", _, _) => &mut writes.events,
                _ => &mut writes.other,
            };
            *counter += 1;
        }
        writes
    }

    /// Every write to a NetworkPolicy.
    pub fn policies(&self) -> usize {
        self.policy_creates + self.policy_applies + self.policy_other + self.policy_deletes
    }

    /// The writes the minimum is made of: policies and NamespaceIsolations (Events excluded).
    pub fn counted(&self) -> usize {
        self.policies() + self.status + self.resource + self.other
    }
}

/// Reads in an audit log (get, list, watch) of requests whose User-Agent is `agent`.
pub fn reads(entries: &[AuditEntry], agent: &str) -> (usize, usize, usize) {
    let mut reads = (0, 0, 0);
    for entry in entries.iter().filter(|entry| entry.user_agent == agent) {
        match entry.verb.as_str() {
            "get" => reads.0 += 1,
            "list" => reads.1 += 1,
            "watch" => reads.2 += 1,
            _ => {}
        }
    }
    reads
}

/// Write audit entries to `path`, one per line: milliseconds since `since`, user agent, verb,
/// resource, namespace/name, code, URI (for finding where time goes).
pub fn dump_audit(
    path: &std::path::Path,
    entries: &[AuditEntry],
    since: Instant,
) -> anyhow::Result<()> {
    let mut text = String::new();
    for entry in entries {
        let millis = if entry.received >= since {
            entry.received.duration_since(since).as_secs_f64() * 1000.0
        } else {
            -(since.duration_since(entry.received).as_secs_f64() * 1000.0)
        };
        let _ = writeln!(
            text,
            "{millis:10.1} {} {} {}{} {}/{} {} {}",
            entry.user_agent,
            entry.verb,
            entry.resource,
            entry
                .subresource
                .as_deref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default(),
            entry.namespace.as_deref().unwrap_or_default(),
            entry.name.as_deref().unwrap_or_default(),
            entry.code,
            entry.uri,
        );
    }
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}

/// When a resource was last seen Ready, at which generation.
#[derive(Clone, Copy, Debug)]
struct Readiness {
    generation: i64,
    at: Instant,
}

/// Watches every NamespaceIsolation and records when each is first seen Ready (Ready=True and
/// `observedGeneration` equal to `generation`) at each generation.
#[derive(Clone, Default)]
pub struct Isolations {
    ready: Arc<Mutex<HashMap<String, Readiness>>>,
}

impl Isolations {
    /// Start watching (a task of its own).
    pub fn watch(client: &Client) -> (Isolations, tokio::task::JoinHandle<()>) {
        let tracker = Isolations::default();
        let api: Api<NamespaceIsolation> = Api::all(client.clone());
        let ready = Arc::clone(&tracker.ready);
        let task = tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                let now = Instant::now();
                let Ok(watcher::Event::Apply(resource) | watcher::Event::InitApply(resource)) =
                    event
                else {
                    continue;
                };
                let Some(generation) = resource.metadata.generation else {
                    continue;
                };
                let is_ready = resource.status.as_ref().is_some_and(|status| {
                    status.observed_generation == Some(generation)
                        && status.conditions.iter().any(|condition| {
                            condition.type_ == "Ready" && condition.status == "True"
                        })
                });
                if !is_ready {
                    continue;
                }
                let key = resource.namespace().unwrap_or_default();
                let mut ready = ready.lock().unwrap_or_else(PoisonError::into_inner);
                let seen = ready.get(&key).map(|readiness| readiness.generation);
                if seen != Some(generation) {
                    ready.insert(
                        key,
                        Readiness {
                            generation,
                            at: now,
                        },
                    );
                }
            }
        });
        (tracker, task)
    }

    /// Wait until every namespace in `wanted` has its resource Ready at a generation at least
    /// the one given. Returns when the last became Ready, or how many are not Ready at `deadline`.
    pub async fn wait_ready(
        &self,
        wanted: &HashMap<String, i64>,
        deadline: Instant,
    ) -> Result<Instant, usize> {
        loop {
            let (latest, missing) = {
                let ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
                let mut latest: Option<Instant> = None;
                let mut missing = 0;
                for (key, generation) in wanted {
                    match ready.get(key) {
                        Some(readiness) if readiness.generation >= *generation => {
                            latest = Some(latest.map_or(readiness.at, |l| l.max(readiness.at)));
                        }
                        _ => missing += 1,
                    }
                }
                (latest, missing)
            };
            if missing == 0 {
                return Ok(latest.unwrap_or_else(Instant::now));
            }
            if Instant::now() >= deadline {
                return Err(missing);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One NetworkPolicy as last seen: its uid and when that uid was first seen.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The object's uid (a restored policy is a new object with a new uid).
    pub uid: String,
    /// When the watch first delivered this uid.
    pub at: Instant,
}

/// Watches the NetworkPolicies netfence manages.
#[derive(Clone, Default)]
pub struct Policies {
    seen: Arc<Mutex<HashMap<(String, String), Seen>>>,
    synced: Arc<std::sync::atomic::AtomicBool>,
}

impl Policies {
    /// Start watching (a task of its own).
    pub fn watch(client: &Client) -> (Policies, tokio::task::JoinHandle<()>) {
        let tracker = Policies::default();
        let api: Api<PartialObjectMeta<NetworkPolicy>> = Api::all(client.clone());
        let seen = Arc::clone(&tracker.seen);
        // Metadata only: the uid is all it needs, and full objects would make the benchmark's
        // own watch cost the sandbox more than the operator's.
        let synced = Arc::clone(&tracker.synced);
        let selector = netfence_controller::managed_selector();
        let task = tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default().labels(&selector))
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                let now = Instant::now();
                let Ok(event) = event else { continue };
                let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                match event {
                    watcher::Event::Apply(policy) | watcher::Event::InitApply(policy) => {
                        let key = (policy.namespace().unwrap_or_default(), policy.name_any());
                        let uid = policy.uid().unwrap_or_default();
                        if seen.get(&key).is_none_or(|known| known.uid != uid) {
                            seen.insert(key, Seen { uid, at: now });
                        }
                    }
                    watcher::Event::Delete(policy) => {
                        seen.remove(&(policy.namespace().unwrap_or_default(), policy.name_any()));
                    }
                    watcher::Event::InitDone => {
                        synced.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    watcher::Event::Init => {}
                }
            }
        });
        (tracker, task)
    }

    /// Wait until the initial list is in.
    pub async fn wait_synced(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while !self.synced.load(std::sync::atomic::Ordering::Relaxed) {
            if Instant::now() >= deadline {
                anyhow::bail!("the benchmark's NetworkPolicy watch did not sync in time");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// For each key: when the watch first delivered it with a uid other than `old`'s (the
    /// policy was recreated), or `None`. Reads only those keys.
    pub fn recreated(
        &self,
        keys: &[(String, String)],
        old: &BTreeMap<(String, String), Seen>,
    ) -> Vec<Option<Instant>> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        keys.iter()
            .map(|key| {
                let now = seen.get(key)?;
                (old.get(key).map(|old| &old.uid) != Some(&now.uid)).then_some(now.at)
            })
            .collect()
    }

    /// Every policy seen, by namespace and name.
    pub fn snapshot(&self) -> HashMap<(String, String), Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
