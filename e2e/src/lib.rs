//! Scenario tests of netfence: the helpers that give each test a cluster and a namespace.
//!
//! ```text
//! Cluster::start() --NETFENCE_E2E_KUBECONFIG set?--> yes: that cluster (CRDs applied)
//!                                                 \-> no: a fresh in-memory sandbox (CRDs installed)
//! cluster.namespace("crud") --> TestNamespace "crud-x7k2p", deleted by `cleanup`
//! ```
//!
//! Every scenario runs in its own namespace, so the same test runs against the sandbox and
//! against a real cluster. Tests that need what only the sandbox has (fault injection, the
//! audit log, raw HTTP) ask for [`Cluster::sandbox`] and skip with a printed reason otherwise.

use std::{
    collections::BTreeMap,
    future::Future,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use anyhow::{Context as _, bail};
use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use netfence::sandbox::{Sandbox, SandboxOptions};
use netfence_crd::NamespaceIsolation;
use serde_json::Value;

/// The environment variable that points the scenarios at a real cluster.
pub const KUBECONFIG_VARIABLE: &str = "NETFENCE_E2E_KUBECONFIG";

/// The field manager the test helpers write with.
pub const FIELD_MANAGER: &str = "netfence-e2e";

/// Where the scenarios run: a sandbox of their own, or the configured cluster.
pub struct Cluster {
    client: Client,
    sandbox: Option<Sandbox>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("sandbox", &self.sandbox)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A fresh sandbox with netfence's CRDs, or the cluster of `NETFENCE_E2E_KUBECONFIG` with the
    /// CRDs applied.
    pub async fn start() -> anyhow::Result<Cluster> {
        Cluster::start_with(SandboxOptions::default()).await
    }

    /// Like [`Cluster::start`], with sandbox options (ignored against a real cluster).
    pub async fn start_with(options: SandboxOptions) -> anyhow::Result<Cluster> {
        if let Some(path) = std::env::var_os(KUBECONFIG_VARIABLE) {
            let path = PathBuf::from(path);
            let kubeconfig = Kubeconfig::read_from(&path)
                .with_context(|| format!("failed to read {}", path.display()))?;
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .context("failed to load the kubeconfig of NETFENCE_E2E_KUBECONFIG")?;
            let client = Client::try_from(config)?;
            install_crds(&client).await?;
            Ok(Cluster {
                client,
                sandbox: None,
            })
        } else {
            let sandbox = Sandbox::start_with("127.0.0.1:0".parse()?, options).await?;
            sandbox.install_netfence_crds()?;
            let client = sandbox.client()?;
            Ok(Cluster {
                client,
                sandbox: Some(sandbox),
            })
        }
    }

    /// A client for the cluster.
    #[must_use]
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The client the operator under test uses: on a real cluster, a ServiceAccount bound only
    /// to what `config/rbac/` grants, through the harness's fault-injecting proxy; on the
    /// sandbox, the same client as [`Cluster::client`].
    #[must_use]
    pub fn operator_client(&self) -> Client {
        self.client.clone()
    }

    /// The sandbox, when the scenarios run against one.
    #[must_use]
    pub fn sandbox(&self) -> Option<&Sandbox> {
        self.sandbox.as_ref()
    }

    /// Create a namespace named `prefix-<random>` for one test.
    pub async fn namespace(&self, prefix: &str) -> anyhow::Result<TestNamespace> {
        self.namespace_labelled(prefix, &BTreeMap::new()).await
    }

    /// Create a namespace named `prefix-<random>` for one test, with these labels besides
    /// `netfence.io/e2e: "true"`.
    pub async fn namespace_labelled(
        &self,
        prefix: &str,
        labels: &BTreeMap<String, String>,
    ) -> anyhow::Result<TestNamespace> {
        let name = format!("{prefix}-{}", unique_suffix());
        let api: Api<Namespace> = Api::all(self.client.clone());
        let mut all_labels = labels.clone();
        all_labels.insert("netfence.io/e2e".to_owned(), "true".to_owned());
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": all_labels},
        }))?;
        api.create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("failed to create namespace {name}"))?;
        Ok(TestNamespace {
            name,
            client: self.client.clone(),
        })
    }

    /// Stop the sandbox (nothing to do against a real cluster).
    pub async fn stop(self) {
        if let Some(sandbox) = self.sandbox {
            sandbox.shutdown().await;
        }
    }
}

/// A namespace one test owns.
#[derive(Clone)]
pub struct TestNamespace {
    /// Its name.
    pub name: String,
    client: Client,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestNamespace {
    /// Delete the namespace (and what it holds), ignoring that it may be gone already.
    pub async fn cleanup(self) {
        let api: Api<Namespace> = Api::all(self.client);
        let _ = api.delete(&self.name, &DeleteParams::default()).await;
    }
}

/// A short suffix no other call in this process returns (and unlikely in another).
#[must_use]
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!("{:x}{count}", nanos % 0xfffff)
}

/// Apply netfence's CRDs and wait until they are established.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in netfence_crd::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("failed to apply CRD {name}"))?;
        let established = eventually(Duration::from_secs(30), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.ok()?;
                let conditions = crd.status?.conditions?;
                conditions
                    .iter()
                    .any(|condition| condition.type_ == "Established" && condition.status == "True")
                    .then_some(())
            }
        })
        .await;
        if established.is_none() {
            bail!("CRD {name} was not established in time");
        }
    }
    Ok(())
}

/// Poll `check` until it returns `Some`, at most for `limit` (a bound on the loop, not a
/// timing assertion: a sandbox answers at once, a real cluster converges in seconds).
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The documents of `examples/FILE`, as users copy them.
pub fn example_documents(file: &str) -> anyhow::Result<Vec<Value>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    serde_saphyr::from_multiple(&text).with_context(|| format!("{} is not YAML", path.display()))
}

/// The `NamespaceIsolation` of `examples/FILE` (the first one of the file), as users copy it.
pub fn example(file: &str) -> anyhow::Result<Value> {
    example_documents(file)?
        .into_iter()
        .find(|document| document["kind"] == "NamespaceIsolation")
        .with_context(|| format!("examples/{file} holds no NamespaceIsolation"))
}

/// Every `NamespaceIsolation` of `examples/*.yaml` (not its subdirectories), with its file, in
/// file order. Files that hold none (an IsolationTemplate example) contribute nothing.
pub fn example_isolations() -> anyhow::Result<Vec<(String, Value)>> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&directory)
        .with_context(|| format!("failed to read {}", directory.display()))?
    {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|extension| extension == "yaml")
            && let Some(name) = path.file_name().and_then(|name| name.to_str())
        {
            files.push(name.to_owned());
        }
    }
    files.sort();
    let mut isolations = Vec::new();
    for file in files {
        for document in example_documents(&file)? {
            if document["kind"] == "NamespaceIsolation" {
                isolations.push((file.clone(), document));
            }
        }
    }
    Ok(isolations)
}

/// A three-tier `shop` resource in `namespace`: frontend -> backend -> database.
#[must_use]
pub fn shop(namespace: &str) -> Value {
    serde_json::json!({
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

/// A merge patch that removes `shop`'s database tier (and the flow to it): its policy is pruned.
#[must_use]
pub fn shop_without_database() -> Value {
    serde_json::json!({"spec": {
        "tiers": [
            {"name": "frontend", "podSelector": {"matchLabels": {"tier": "frontend"}}},
            {"name": "backend", "podSelector": {"matchLabels": {"tier": "backend"}}},
        ],
        "flows": [{"from": "frontend", "to": "backend", "ports": [{"port": 8080}]}],
    }})
}

/// Wait until the resource's status describes its current generation with this Ready reason.
pub async fn wait_for_reason(
    api: &Api<NamespaceIsolation>,
    name: &str,
    reason: &str,
) -> anyhow::Result<NamespaceIsolation> {
    let mut last = None;
    for _ in 0..200 {
        let current = api
            .get(name)
            .await
            .with_context(|| format!("failed to get NamespaceIsolation {name}"))?;
        let done = current.status.as_ref().is_some_and(|status| {
            status.observed_generation == current.metadata.generation
                && status
                    .conditions
                    .iter()
                    .any(|condition| condition.reason == reason)
        });
        if done {
            return Ok(current);
        }
        last = Some(current);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "{}/{name} never reached {reason}: {:?}",
        api.namespace().unwrap_or_default(),
        last.and_then(|resource| resource.status)
    )
}

/// Print why a test is skipped.
pub fn skip(test: &str, reason: &str) {
    eprintln!("skipped {test}: {reason}");
}
