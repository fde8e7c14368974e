//! Scenario tests of netfence: the helpers that give each test a cluster and a namespace.
//!
//! ```text
//! Cluster::start() --NETFENCE_E2E_KUBECONFIG set?--> yes: that cluster (CRDs and config/rbac's roles
//!                 |                                      applied); the operator under test runs as a
//!                 |                                      ServiceAccount of its own bound to those roles,
//!                 |                                      through a fault-injecting proxy
//!                 \-> no: a fresh in-memory sandbox (CRDs installed)
//! cluster.namespace("crud") --> TestNamespace "crud-x7k2p", deleted by `cleanup`
//! ```
//!
//! Every scenario runs in its own namespace, so the same test runs against the sandbox and
//! against a real cluster (`cargo run -p netfence-e2e --bin cluster -- up --dir DIR` starts one).
//! What the sandbox offers tests, the real cluster offers too: [`Cluster::faults`] (the sandbox's
//! own rules, or the proxy's), [`Cluster::audit`] (the sandbox's log, or the real API server's
//! audit log: `audit.log` beside the kubeconfig, or `NETFENCE_E2E_AUDIT_LOG`). On a real cluster,
//! a request of the operator answered 403 fails the scenario at [`Cluster::stop`]: its
//! ServiceAccount has only what `config/rbac/` grants.

pub mod audit;
pub mod cluster;
pub mod dataplane;
pub mod env;
pub mod packets;
pub mod proxy;
pub mod raw;

use std::{
    collections::BTreeMap,
    future::Future,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use anyhow::{Context as _, bail};
use k8s_openapi::{
    api::{
        authentication::v1::TokenRequest,
        core::v1::{Namespace, ServiceAccount},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
    },
    config::{AuthInfo, KubeConfigOptions, Kubeconfig},
};
use netfence_crd::NamespaceIsolation;
use netfence_sandbox::{AuditEntry, FaultId, Sandbox, SandboxOptions};
use serde_json::{Value, json};

pub use crate::env::{Env, Reconciles};
use crate::{audit::AuditLog, proxy::Proxy};

/// The environment variable that points the scenarios at a real cluster.
pub const KUBECONFIG_VARIABLE: &str = "NETFENCE_E2E_KUBECONFIG";

/// The environment variable that names the real cluster's audit log, when it is not
/// `audit.log` beside the kubeconfig.
pub const AUDIT_LOG_VARIABLE: &str = "NETFENCE_E2E_AUDIT_LOG";

/// The field manager the test helpers write with.
pub const FIELD_MANAGER: &str = "netfence-e2e";

/// The namespace of netfence's ServiceAccount and leader-election Role (`config/rbac/`).
pub const OPERATOR_NAMESPACE: &str = "netfence-system";

/// Where the scenarios run: a sandbox of their own, or the configured cluster.
pub struct Cluster {
    client: Client,
    operator_config: kube::Config,
    raw: raw::RawEndpoint,
    target: Target,
}

enum Target {
    Sandbox(Sandbox),
    Real(Box<Real>),
}

/// What a scenario on a real cluster has of its own.
struct Real {
    proxy: Proxy,
    /// `None` when the cluster's audit log cannot be read here.
    audit: Option<AuditLog>,
    /// The same log from the scenario's start on, never cleared.
    since_start: Option<AuditLog>,
    /// The test client's User-Agent, which tells its requests from other scenarios'.
    user_agent: String,
    /// The ServiceAccount the operator runs as.
    service_account: String,
}

impl Real {
    fn operator_user(&self) -> String {
        format!(
            "system:serviceaccount:{OPERATOR_NAMESPACE}:{}",
            self.service_account
        )
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("sandbox", &self.sandbox())
            .finish_non_exhaustive()
    }
}

/// Fault injection: the sandbox's own, or the proxy's in front of a real API server. The same
/// rules mean the same on both.
#[derive(Clone, Debug)]
pub enum Faults {
    /// The sandbox's.
    Sandbox(netfence_sandbox::Faults),
    /// The proxy's.
    Proxy(proxy::ProxyFaults),
}

// The fault id is only needed to remove one fault early: most tests clear them all.
#[allow(clippy::must_use_candidate)]
impl Faults {
    /// Fail `share` (0 to 1, spread evenly) of the requests matching `verb` and `resource` with
    /// `code`.
    pub fn fail(&self, verb: &str, resource: &str, share: f64, code: u16) -> FaultId {
        match self {
            Faults::Sandbox(faults) => faults.fail(verb, resource, share, code),
            Faults::Proxy(faults) => faults.fail(verb, resource, share, code),
        }
    }

    /// Fail the next `count` matching requests with `code`.
    pub fn fail_next(&self, verb: &str, resource: &str, count: u64, code: u16) -> FaultId {
        match self {
            Faults::Sandbox(faults) => faults.fail_next(verb, resource, count, code),
            Faults::Proxy(faults) => faults.fail_next(verb, resource, count, code),
        }
    }

    /// Delay the matching requests by `delay`.
    pub fn latency(&self, verb: &str, resource: &str, delay: Duration) -> FaultId {
        match self {
            Faults::Sandbox(faults) => faults.latency(verb, resource, delay),
            Faults::Proxy(faults) => faults.latency(verb, resource, delay),
        }
    }

    /// Delay the matching requests that carry exactly this `labelSelector` (one of two
    /// watches of the same resource) by `delay`.
    pub fn latency_selected(
        &self,
        verb: &str,
        resource: &str,
        label_selector: &str,
        delay: Duration,
    ) -> FaultId {
        match self {
            Faults::Sandbox(faults) => {
                faults.latency_selected(verb, resource, label_selector, delay)
            }
            Faults::Proxy(faults) => faults.latency_selected(verb, resource, label_selector, delay),
        }
    }

    /// Remove one fault.
    pub fn remove(&self, id: FaultId) {
        match self {
            Faults::Sandbox(faults) => faults.remove(id),
            Faults::Proxy(faults) => faults.remove(id),
        }
    }

    /// Remove every fault.
    pub fn clear(&self) {
        match self {
            Faults::Sandbox(faults) => faults.clear(),
            Faults::Proxy(faults) => faults.clear(),
        }
    }

    /// End every open watch now; clients re-watch from the last `resourceVersion` they saw.
    pub fn close_watches(&self) {
        match self {
            Faults::Sandbox(faults) => faults.close_watches(),
            Faults::Proxy(faults) => faults.close_watches(),
        }
    }

    /// Forget the history: the next watch from any `resourceVersion` issued so far answers
    /// 410 Gone, and clients must list again.
    ///
    /// # Panics
    ///
    /// When the proxy cannot read the real server's current `resourceVersion`.
    pub async fn compact(&self) {
        match self {
            Faults::Sandbox(faults) => faults.compact(),
            Faults::Proxy(faults) => faults
                .compact()
                .await
                .unwrap_or_else(|error| panic!("{error:#}")),
        }
    }
}

/// Read a YAML manifest of the repository (`config/rbac/cluster_role.yaml`) as JSON.
/// A manifest of this repository (`config/...`), as JSON.
///
/// # Errors
///
/// When it cannot be read or is not YAML.
pub fn repository_manifest(path: &str) -> anyhow::Result<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))
}

/// Server-side apply one object given as JSON, as the test helpers' field manager.
pub async fn apply_object(client: &Client, object: &Value) -> anyhow::Result<()> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .with_context(|| format!("failed to apply {kind} {name}"))?;
    Ok(())
}

/// netfence's ServiceAccount as `config/admission/` names it.
const SHIPPED_OPERATOR: &str = "system:serviceaccount:netfence-system:netfence";

/// The manifests of `config/admission/` for one scenario: the policy and its binding named
/// `name`, the binding scoped to the namespaces `namespace_selector` selects, and the operator's
/// user name (the installation's ServiceAccount, which the shipped policy names) replaced by
/// `operator`, the ServiceAccount the scenario's operator runs as. Nothing else differs from what
/// ships; nothing of an installation's own is touched.
///
/// # Errors
///
/// When a shipped manifest cannot be read, or no longer names netfence's ServiceAccount.
pub fn admission_manifests(
    name: &str,
    operator: &str,
    namespace_selector: &Value,
) -> anyhow::Result<Vec<Value>> {
    let mut manifests = Vec::new();
    for file in ["generated_policies.yaml", "generated_policies_binding.yaml"] {
        let path = format!("config/admission/{file}");
        let shipped = repository_manifest(&path)?;
        let text = serde_json::to_string(&shipped)?;
        if file.starts_with("generated_policies.")
            && !text.contains(&format!("'{SHIPPED_OPERATOR}'"))
        {
            bail!("{path} no longer names netfence's ServiceAccount {SHIPPED_OPERATOR}");
        }
        let mut object: Value = serde_json::from_str(&text.replace(SHIPPED_OPERATOR, operator))?;
        object["metadata"]["name"] = json!(name);
        if object["kind"] == "ValidatingAdmissionPolicyBinding" {
            object["spec"]["policyName"] = json!(name);
            object["spec"]["matchResources"] = json!({"namespaceSelector": namespace_selector});
        }
        manifests.push(object);
    }
    Ok(manifests)
}

/// Remove what [`admission_manifests`] installed.
pub async fn remove_admission(client: &Client, manifests: &[Value]) {
    for manifest in manifests {
        let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
        let kind = manifest["kind"].as_str().unwrap_or_default();
        let resource = ApiResource {
            group: "admissionregistration.k8s.io".into(),
            version: "v1".into(),
            api_version: "admissionregistration.k8s.io/v1".into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_lowercase()),
        };
        let _ = Api::<DynamicObject>::all_with(client.clone(), &resource)
            .delete(name, &DeleteParams::default())
            .await;
    }
}

/// The audit log of the cluster of `kubeconfig`: `NETFENCE_E2E_AUDIT_LOG`, or `audit.log` beside
/// the kubeconfig (where `cluster up` writes it).
#[must_use]
pub fn audit_log_path(kubeconfig: &Path) -> PathBuf {
    std::env::var_os(AUDIT_LOG_VARIABLE).map_or_else(
        || {
            kubeconfig
                .parent()
                .unwrap_or(Path::new("."))
                .join(cluster::AUDIT_LOG_FILE)
        },
        PathBuf::from,
    )
}

/// The client configuration of the kubeconfig at `path`.
pub async fn kubeconfig_config(path: &Path) -> anyhow::Result<kube::Config> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("failed to load the kubeconfig {}", path.display()))
}

fn with_user_agent(mut config: kube::Config, user_agent: &str) -> anyhow::Result<kube::Config> {
    config
        .headers
        .push((http::header::USER_AGENT, user_agent.try_into()?));
    Ok(config)
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
            Cluster::start_real(&PathBuf::from(path)).await
        } else {
            let sandbox = Sandbox::start_with("127.0.0.1:0".parse()?, options).await?;
            sandbox.install_netfence_crds()?;
            let client = sandbox.client()?;
            Ok(Cluster {
                client,
                operator_config: sandbox.kube_config()?,
                raw: raw::RawEndpoint::Plain(sandbox.address()),
                target: Target::Sandbox(sandbox),
            })
        }
    }

    async fn start_real(kubeconfig: &Path) -> anyhow::Result<Cluster> {
        let suffix = unique_suffix();
        let user_agent = format!("netfence-e2e/{suffix}");
        let admin_config = kubeconfig_config(kubeconfig).await?;
        let raw = raw::RawEndpoint::from_config(&admin_config)?;
        let client = Client::try_from(with_user_agent(admin_config.clone(), &user_agent)?)?;
        install_crds(&client).await?;

        // The operator's identity: a ServiceAccount of this scenario's own, bound to exactly
        // the roles of config/rbac/.
        apply_object(
            &client,
            &repository_manifest("config/manager/namespace.yaml")?,
        )
        .await?;
        for role in [
            "config/rbac/cluster_role.yaml",
            "config/rbac/leader_election_role.yaml",
            "config/rbac/dns_role.yaml",
        ] {
            apply_object(&client, &repository_manifest(role)?).await?;
        }
        let service_account = format!("e2e-operator-{suffix}");
        let subject = json!([{
            "kind": "ServiceAccount", "name": service_account, "namespace": OPERATOR_NAMESPACE,
        }]);
        let labels = json!({"netfence.io/e2e": "true"});
        for object in [
            json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": service_account, "namespace": OPERATOR_NAMESPACE, "labels": labels},
            }),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": service_account, "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "netfence"},
                "subjects": subject,
            }),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": service_account, "namespace": OPERATOR_NAMESPACE, "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "netfence-leader-election"},
                "subjects": subject,
            }),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": service_account, "namespace": "kube-system", "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "netfence-dns"},
                "subjects": subject,
            }),
        ] {
            apply_object(&client, &object).await?;
        }
        let token_request: TokenRequest = serde_json::from_value(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 6 * 3600},
        }))?;
        let token = Api::<ServiceAccount>::namespaced(client.clone(), OPERATOR_NAMESPACE)
            .create_token_request(&service_account, &PostParams::default(), &token_request)
            .await
            .with_context(|| format!("failed to request a token for {service_account}"))?
            .status
            .map(|status| status.token)
            .context("the TokenRequest carries no token")?;

        // The proxy forwards as the ServiceAccount only: no client certificate of the admin.
        let mut upstream = admin_config;
        upstream.auth_info = AuthInfo::default();
        upstream.default_retry = false;
        upstream.headers.push((
            http::header::AUTHORIZATION,
            format!("Bearer {token}").try_into()?,
        ));
        let proxy = Proxy::start(Client::try_from(upstream)?).await?;
        let operator_config = kube::Config::new(proxy.url().parse()?);

        let audit_path = audit_log_path(kubeconfig);
        let audit = audit_path.is_file().then(|| AuditLog::open(&audit_path));
        let since_start = audit_path.is_file().then(|| AuditLog::open(&audit_path));
        Ok(Cluster {
            client,
            operator_config,
            raw,
            target: Target::Real(Box::new(Real {
                proxy,
                audit,
                since_start,
                user_agent,
                service_account,
            })),
        })
    }

    /// The user name the operator under test acts as on a real cluster (its ServiceAccount's,
    /// `system:serviceaccount:netfence-system:e2e-operator-...`); `None` on the sandbox.
    #[must_use]
    pub fn operator_username(&self) -> Option<String> {
        match &self.target {
            Target::Real(real) => Some(real.operator_user()),
            Target::Sandbox(_) => None,
        }
    }

    /// A client that acts as `user` (on a real cluster the admin impersonates it; the sandbox
    /// has no users: its own client).
    ///
    /// # Errors
    ///
    /// When the kubeconfig cannot be read again.
    pub async fn client_as(&self, user: &str) -> anyhow::Result<Client> {
        let Some(path) = std::env::var_os(KUBECONFIG_VARIABLE) else {
            return Ok(self.client.clone());
        };
        let mut config = kubeconfig_config(&PathBuf::from(path)).await?;
        config.auth_info.impersonate = Some(user.to_owned());
        Ok(Client::try_from(config)?)
    }

    /// A client for the cluster (the test's own: cluster-admin on a real cluster).
    #[must_use]
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The client the operator under test uses: on a real cluster, a ServiceAccount bound only
    /// to what `config/rbac/` grants, through the harness's fault-injecting proxy; on the
    /// sandbox, the sandbox's client.
    ///
    /// # Panics
    ///
    /// Never for the configs this harness makes (plain HTTP on loopback).
    #[must_use]
    pub fn operator_client(&self) -> Client {
        Client::try_from(self.operator_config()).expect("a client for the operator's config")
    }

    /// The config of [`Cluster::operator_client`], to add headers to (a User-Agent).
    #[must_use]
    pub fn operator_config(&self) -> kube::Config {
        self.operator_config.clone()
    }

    /// Where raw HTTP requests reach the API server: the sandbox's plain port, or the real
    /// server over TLS as the admin of its kubeconfig.
    #[must_use]
    pub fn raw(&self) -> raw::RawEndpoint {
        self.raw.clone()
    }

    /// Whether the scenarios run against a real API server.
    #[must_use]
    pub fn is_real(&self) -> bool {
        matches!(self.target, Target::Real(_))
    }

    /// The sandbox, when the scenarios run against one.
    #[must_use]
    pub fn sandbox(&self) -> Option<&Sandbox> {
        match &self.target {
            Target::Sandbox(sandbox) => Some(sandbox),
            Target::Real(_) => None,
        }
    }

    /// What the scenarios run against, for messages: `sandbox` or `real`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match &self.target {
            Target::Sandbox(_) => "sandbox",
            Target::Real(_) => "real",
        }
    }

    /// Fault injection into the operator's traffic.
    #[must_use]
    pub fn faults(&self) -> Faults {
        match &self.target {
            Target::Sandbox(sandbox) => Faults::Sandbox(sandbox.faults()),
            Target::Real(real) => Faults::Proxy(real.proxy.faults()),
        }
    }

    /// Whether [`Cluster::audit`] can read requests here (a real cluster's audit log may not be
    /// readable from this machine).
    #[must_use]
    pub fn has_audit(&self) -> bool {
        match &self.target {
            Target::Sandbox(_) => true,
            Target::Real(real) => real.audit.is_some(),
        }
    }

    /// Whether a scenario that counts writes can run here; says why not when it cannot (a
    /// cluster whose audit log this machine cannot read).
    #[must_use]
    pub fn needs_audit(&self, test: &str) -> bool {
        if !self.has_audit() {
            skip(
                test,
                "it counts writes in the audit log, and this cluster's is not readable here (set NETFENCE_E2E_AUDIT_LOG)",
            );
            return false;
        }
        true
    }

    /// Forget the requests audited so far.
    pub fn audit_clear(&self) {
        match &self.target {
            Target::Sandbox(sandbox) => sandbox.audit_clear(),
            Target::Real(real) => {
                if let Some(audit) = &real.audit {
                    audit.clear();
                }
            }
        }
    }

    /// Forget the requests audited so far once the operator has written nothing for `quiet`:
    /// the boundary before a count of writes, so that the trailing writes of an earlier
    /// convergence are not counted. On a real cluster each clear first waits until the log has
    /// caught up with what the API server answered (a marker request).
    ///
    /// # Panics
    ///
    /// When the operator is still writing after a minute.
    pub async fn audit_clear_when_quiet(&self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            self.audit_clear_settled().await;
            tokio::time::sleep(quiet).await;
            let writes: Vec<String> = self
                .audit()
                .await
                .into_iter()
                .filter(|entry| {
                    matches!(
                        entry.verb.as_str(),
                        "create" | "update" | "patch" | "apply" | "delete" | "deletecollection"
                    )
                })
                .map(|entry| format!("{} {}", entry.verb, entry.uri))
                .collect();
            if writes.is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator still writes after a minute: {writes:#?}"
            );
        }
    }

    /// [`Cluster::audit_clear`], once the log shows every request answered so far.
    async fn audit_clear_settled(&self) {
        if let Target::Real(real) = &self.target
            && let Some(audit) = &real.audit
        {
            self.audit_settle(audit).await;
        }
        self.audit_clear();
    }

    /// The requests of this scenario since the last clear: the test client's and the operator's
    /// (on a real cluster, other scenarios' requests are left out). Empty without an audit log
    /// (see [`Cluster::has_audit`]).
    pub async fn audit(&self) -> Vec<AuditEntry> {
        match &self.target {
            Target::Sandbox(sandbox) => sandbox.audit(),
            Target::Real(real) => {
                let Some(audit) = &real.audit else {
                    return Vec::new();
                };
                self.audit_settle(audit).await;
                let operator = real.operator_user();
                audit
                    .read()
                    .into_iter()
                    .filter(|audited| {
                        audited.user == operator || audited.entry.user_agent == real.user_agent
                    })
                    .filter(|audited| !audited.entry.uri.contains(AUDIT_MARKER))
                    .map(|audited| audited.entry)
                    .collect()
            }
        }
    }

    /// Wait until a marker request of the test client is in the audit log: the API server logs
    /// a request once its response is written, so what was answered before is logged by then.
    async fn audit_settle(&self, audit: &AuditLog) {
        let marker = format!("{AUDIT_MARKER}-{}", unique_suffix());
        let api: Api<Namespace> = Api::all(self.client.clone());
        let _ = api.get_opt(&marker).await;
        let logged = eventually(Duration::from_secs(10), || async {
            audit.has_uri_ending(&marker).then_some(())
        })
        .await;
        // A log that never shows the marker is not this cluster's (or is not written): counting
        // writes in it would pass any "no writes" check.
        assert!(
            logged.is_some(),
            "the audit log {} never showed this scenario's marker request: is it the cluster's? (NETFENCE_E2E_AUDIT_LOG)",
            audit.path().display()
        );
    }

    /// The operator's requests the real API server's authorizer refused since the scenario
    /// began (none on the sandbox, which does not authorize).
    async fn forbidden_operator_requests(&self) -> Vec<String> {
        let Target::Real(real) = &self.target else {
            return Vec::new();
        };
        let Some(since_start) = &real.since_start else {
            return Vec::new();
        };
        self.audit_settle(since_start).await;
        let operator = real.operator_user();
        since_start
            .read()
            .into_iter()
            .filter(|audited| audited.user == operator && audited.unauthorized)
            .map(|audited| format!("{} {}", audited.entry.verb, audited.entry.uri))
            .collect()
    }

    /// Give the operator the leader-election Role of `config/rbac/` in `namespace` too (a
    /// scenario's Lease lives in its own namespace, so parallel scenarios never share one).
    /// Nothing to do on the sandbox.
    pub async fn grant_leader_election(&self, namespace: &str) -> anyhow::Result<()> {
        let Target::Real(real) = &self.target else {
            return Ok(());
        };
        let mut role = repository_manifest("config/rbac/leader_election_role.yaml")?;
        role["metadata"]["namespace"] = json!(namespace);
        apply_object(&self.client, &role).await?;
        apply_object(
            &self.client,
            &json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "netfence-leader-election", "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]},
                "subjects": [{"kind": "ServiceAccount", "name": real.service_account, "namespace": OPERATOR_NAMESPACE}],
            }),
        )
        .await
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

    /// Stop the sandbox; on a real cluster, remove the operator's ServiceAccount and binding,
    /// and fail the scenario when the API server refused the operator anything (a grant
    /// missing from `config/rbac/`).
    ///
    /// # Panics
    ///
    /// When the operator was answered 403 on a real cluster.
    pub async fn stop(self) {
        let forbidden = self.forbidden_operator_requests().await;
        match self.target {
            Target::Sandbox(sandbox) => sandbox.shutdown().await,
            Target::Real(real) => {
                let service_accounts: Api<ServiceAccount> =
                    Api::namespaced(self.client.clone(), OPERATOR_NAMESPACE);
                let _ = service_accounts
                    .delete(&real.service_account, &DeleteParams::default())
                    .await;
                let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
                    Api::all(self.client.clone());
                let _ = bindings
                    .delete(&real.service_account, &DeleteParams::default())
                    .await;
                let role_bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
                    Api::namespaced(self.client.clone(), OPERATOR_NAMESPACE);
                let _ = role_bindings
                    .delete(&real.service_account, &DeleteParams::default())
                    .await;
            }
        }
        assert!(
            forbidden.is_empty(),
            "the API server refused the operator (a grant config/rbac/ lacks): {forbidden:#?}"
        );
    }
}

/// The name of the requests that mark a point in the audit log.
const AUDIT_MARKER: &str = "netfence-e2e-audit-marker";

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

/// Install a CustomResourceDefinition from a YAML file and wait until it is established;
/// returns its name.
///
/// # Errors
///
/// When the file does not read, the API server refuses it, or it is not established in 30 s.
pub async fn install_crd_file(client: &Client, path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let crd: Value =
        serde_saphyr::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))?;
    let name = crd["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    apply_object(client, &crd).await?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    eventually(Duration::from_secs(30), || {
        let api = api.clone();
        let name = name.clone();
        async move {
            let conditions = api.get(&name).await.ok()?.status?.conditions?;
            conditions
                .iter()
                .any(|condition| condition.type_ == "Established" && condition.status == "True")
                .then_some(())
        }
    })
    .await
    .with_context(|| format!("CRD {name} was not established"))?;
    Ok(name)
}

/// Install the engines' published CRDs (ClusterNetworkPolicy, Cilium) from their pinned Go
/// modules (see [`cluster::build::ensure_engine_crds`]).
///
/// # Errors
///
/// When Go or a download fails, or a CRD does not install.
pub async fn install_engine_crds(client: &Client) -> anyhow::Result<()> {
    let crds = tokio::task::spawn_blocking(cluster::build::ensure_engine_crds)
        .await
        .context("the download task failed")??;
    for (engine, path) in crds {
        install_crd_file(client, &path)
            .await
            .with_context(|| format!("the {engine} CRD"))?;
    }
    Ok(())
}

/// A controller a scenario started (`netfence run`'s, in the test's process), stopped as on
/// SIGTERM.
pub struct RunningController {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for RunningController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningController").finish_non_exhaustive()
    }
}

impl RunningController {
    /// Run `prepared` until [`RunningController::stop`].
    #[must_use]
    pub fn start(prepared: netfence_controller::Prepared) -> RunningController {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn(prepared.run(ready.clone(), async move {
            let _ = stopped.await;
        }));
        RunningController { stop, task, ready }
    }

    /// What `/readyz` of this controller would answer: whether every cache has synced.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Kill it, as SIGKILL would: no shutdown, its leases and watches simply end.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Stop it and wait (at most 10 s) for it to end.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Wait (at most `limit`) until the template's status describes its generation and `check`
/// holds on it.
///
/// # Panics
///
/// When it does not happen in time, with the last status.
pub async fn wait_template(
    templates: &Api<netfence_crd::IsolationTemplate>,
    limit: Duration,
    name: &str,
    what: &str,
    check: impl Fn(&netfence_crd::IsolationTemplate) -> bool,
) -> netfence_crd::IsolationTemplate {
    let found = eventually(limit, || {
        let check = &check;
        async move {
            let template = templates.get(name).await.ok()?;
            let status = template.status.as_ref()?;
            (status.observed_generation == template.metadata.generation && check(&template))
                .then_some(template)
        }
    })
    .await;
    match found {
        Some(template) => template,
        None => panic!(
            "template {name} never reached: {what}; last status: {:?}",
            templates.get(name).await.ok().and_then(|t| t.status)
        ),
    }
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

/// The environment variable naming a file every measured figure is also appended to (`.ci/run`
/// prints them in its summary).
pub const FIGURES_LOG_VARIABLE: &str = "NETFENCE_FIGURES_LOG";

/// Report a measured figure: on stderr past the test harness's output capture, and in
/// `$NETFENCE_FIGURES_LOG`. Figures are printed, never asserted beyond the bound a test states.
pub fn figure(line: &str) {
    report(FIGURES_LOG_VARIABLE, line);
}

/// Write `line` to stderr past the test harness's output capture (so it shows even when the
/// test passes), and append it to the file `$variable` names, if it names one.
fn report(variable: &str, line: &str) {
    use std::io::Write as _;
    let line = format!("{}\n", line.trim_end());
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os(variable)
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = file.write_all(line.as_bytes());
    }
}

/// The environment variable naming a file every skip is also appended to (`.ci/run` sets it and
/// prints the skips, with their reasons, in its summary).
pub const SKIP_LOG_VARIABLE: &str = "NETFENCE_SKIP_LOG";

/// Say that a test is skipped, and why: on stderr past the test harness's output capture (so it
/// shows in the test output even when the test passes), and in `$NETFENCE_SKIP_LOG`.
///
/// Under `CI=true` a skip that `.ci/documented-skips` does not list (as `[target] test: why`)
/// fails the test itself, not only `.ci/run`'s summary: a test that cannot run where CI runs it
/// must say so in that file.
///
/// # Panics
///
/// Under `CI=true`, when the skip is not documented.
pub fn skip(test: &str, reason: &str) {
    let target = std::env::var_os(KUBECONFIG_VARIABLE).map_or("sandbox", |_| "real");
    skip_in(target, test, reason);
}

/// [`skip`] for a suite that names its own target (`packets`).
///
/// # Panics
///
/// Under `CI=true`, when the skip is not documented.
pub fn skip_in(target: &str, test: &str, reason: &str) {
    report(
        SKIP_LOG_VARIABLE,
        &format!("SKIPPED [{target}] {test}: {reason}"),
    );
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/documented-skips");
        let documented = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            is_documented_skip(&documented, target, test),
            "[{target}] {test} skipped under CI=true, and {} does not list it: {reason}",
            path.display()
        );
    }
}

/// Whether `documented` (the text of `.ci/documented-skips`) lists `[target] test: ...`.
fn is_documented_skip(documented: &str, target: &str, test: &str) -> bool {
    let key = format!("[{target}] {test}:");
    documented
        .lines()
        .any(|line| !line.starts_with('#') && line.starts_with(&key))
}

/// The Events of `namespace` with this reason about the object named `regarding`.
///
/// # Panics
///
/// When the Events cannot be listed.
pub async fn events(
    client: &Client,
    namespace: &str,
    regarding: &str,
    reason: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), namespace)
        .list(&kube::api::ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|event| {
            event.reason.as_deref() == Some(reason)
                && event
                    .regarding
                    .as_ref()
                    .and_then(|object| object.name.as_deref())
                    == Some(regarding)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{KUBECONFIG_VARIABLE, SKIP_LOG_VARIABLE, is_documented_skip, skip};

    /// Run one of the `probe_*` tests below in a child process of this test binary, as CI runs
    /// a scenario (`CI=true`, on the sandbox, no skip log of CI's own touched): whether it
    /// passed, and its output.
    fn probe_under_ci(probe: &str) -> (bool, String) {
        let output = std::process::Command::new(std::env::current_exe().expect("this test binary"))
            .args([
                "--exact",
                probe,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CI", "true")
            .env_remove(KUBECONFIG_VARIABLE)
            .env_remove(SKIP_LOG_VARIABLE)
            .output()
            .expect("the probe runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    #[test]
    #[ignore = "a probe: skip_under_ci_fails_unless_documented runs it under CI=true"]
    fn probe_undocumented_skip() {
        skip("no_such_scenario", "a probe of the undocumented skip");
    }

    #[test]
    #[ignore = "a probe: skip_under_ci_fails_unless_documented runs it under CI=true"]
    fn probe_documented_skip() {
        skip(
            "generated_policies_are_tamper_proof",
            "a probe of a skip .ci/documented-skips lists for the sandbox",
        );
    }

    /// If this fails, a scenario that skips where CI runs it passes CI without anyone having
    /// written down why (or a documented skip fails CI): a skipped test must be visible, and
    /// only a documented one may pass.
    #[test]
    fn skip_under_ci_fails_unless_documented() {
        let (passed, output) = probe_under_ci("tests::probe_undocumented_skip");
        assert!(
            !passed,
            "an undocumented skip passed under CI=true: {output}"
        );
        assert!(
            output.contains("SKIPPED [sandbox] no_such_scenario")
                && output.contains("does not list it"),
            "{output}"
        );
        let (passed, output) = probe_under_ci("tests::probe_documented_skip");
        assert!(passed, "a documented skip failed under CI=true: {output}");
        assert!(
            output.contains("SKIPPED [sandbox] generated_policies_are_tamper_proof"),
            "{output}"
        );
    }

    #[test]
    fn a_skip_is_documented_only_for_its_target_and_name() {
        let documented = "# [sandbox] commented: no\n[real] preflight: why\n";
        assert!(is_documented_skip(documented, "real", "preflight"));
        assert!(!is_documented_skip(documented, "sandbox", "preflight"));
        assert!(!is_documented_skip(documented, "real", "preflight_more"));
        assert!(!is_documented_skip(documented, "sandbox", "commented"));
    }
}
