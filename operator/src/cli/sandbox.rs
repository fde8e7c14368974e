//! `netfence sandbox`: start the in-memory API server, install the CRDs, write a kubeconfig,
//! apply manifests, and keep serving (or, with `--once`, report and exit).
//!
//! ```text
//! --apply PATH... --load--> [ Document x N ] --server-side apply (kube client)--> sandbox
//!                                                                   ^
//!                            kubectl --kubeconfig sandbox.kubeconfig '
//! ```

use std::{collections::BTreeSet, net::SocketAddr, path::PathBuf, process::ExitCode};

use kube::{
    Api,
    api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};

use std::sync::{Arc, atomic::AtomicBool};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use netfence_controller::{self as controller, metrics::Metrics};
use netfence_core::ValidatedIsolation;
use netfence_crd::{IsolationTemplate, NamespaceIsolation};
use netfence_sandbox::{ResourceInfo, Sandbox, SandboxError};
use netfence_verify::intent;

use crate::manifests::{self, Document};

use super::{
    EXIT_BAD_INPUT,
    logging::{self, FilterHandle, LogFormat},
    output::say,
};

/// The field manager of what `netfence sandbox --apply` writes.
pub const FIELD_MANAGER: &str = "netfence-sandbox";

/// Arguments of `netfence sandbox`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address to serve on, `HOST:PORT` (loopback only: the sandbox has no
    /// authentication; `localhost:6443` is 127.0.0.1:6443, other host names are resolved).
    /// Default 127.0.0.1:6443; with --once, a free port when that one is taken.
    #[arg(long, value_name = "ADDR", value_parser = super::address::parse)]
    pub listen: Option<SocketAddr>,

    /// Where to write the kubeconfig that points kubectl and other clients at the sandbox.
    #[arg(long, value_name = "PATH", default_value = "sandbox.kubeconfig")]
    pub kubeconfig: PathBuf,

    /// Manifests to apply once the sandbox is up: files, directories, or `-` for stdin.
    /// Namespaces they name are created when missing.
    #[arg(long = "apply", value_name = "PATH")]
    pub apply: Vec<PathBuf>,

    /// Wait until every IsolationTemplate and NamespaceIsolation is Ready or failed, print the
    /// summary, and exit: 0 only when all are Ready.
    #[arg(long)]
    pub once: bool,

    /// Format of the controller's logs, on stderr. Their level is `RUST_LOG` when set (such as
    /// `RUST_LOG=netfence_controller=debug`); else warnings and errors only until the summary is
    /// printed, then also each change the controller makes (`created`, `drift corrected`, ...).
    /// Text is coloured only on a terminal.
    #[arg(long, env = "NETFENCE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The controller's logs while the sandbox starts, unless `RUST_LOG` says otherwise: problems
/// only. Applying the manifests creates a policy per line at `info`, which would bury the
/// summary that says the same in a few lines.
pub const STARTING_LOGS: &str = "warn";

/// The controller's logs once the summary is printed, unless `RUST_LOG` says otherwise: each
/// change it makes (one line per policy created, corrected or deleted), which is what a user
/// trying `kubectl delete netpol ...` against the sandbox wants to see happen.
pub const SERVING_LOGS: &str = "warn,netfence_controller=info";

/// Where the sandbox listens unless `--listen` says otherwise: the API server's usual port.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 6443);

/// How long `netfence sandbox` waits for every NamespaceIsolation to be Ready or failed.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Where one NamespaceIsolation or IsolationTemplate ended.
struct IsolationOutcome {
    namespace: String,
    name: String,
    ready: bool,
    line: String,
}

/// Wait until the status of every object of `K` (NamespaceIsolations, IsolationTemplates)
/// describes its generation (Ready or failed), or the timeout; then describe each.
async fn wait_settled<K>(client: &kube::Client) -> Vec<IsolationOutcome>
where
    K: kube::Resource<DynamicType = ()>,
{
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        let items = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return vec![IsolationOutcome {
                    namespace: String::new(),
                    name: String::new(),
                    ready: false,
                    line: format!("cannot list {}: {error}", resource.plural),
                }];
            }
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let settled = items.iter().all(|item| {
            let status = &item.data["status"];
            status["observedGeneration"].as_i64() == item.metadata.generation
                && status["conditions"]
                    .as_array()
                    .is_some_and(|conditions| !conditions.is_empty())
        });
        if settled || tokio::time::Instant::now() >= deadline {
            return items
                .iter()
                .map(|item| describe(&resource.kind, item))
                .collect();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn describe(kind: &str, item: &DynamicObject) -> IsolationOutcome {
    let namespace = item.metadata.namespace.clone().unwrap_or_default();
    let name = item.metadata.name.clone().unwrap_or_default();
    let object = if namespace.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {namespace}/{name}")
    };
    let condition = item.data["status"]["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Ready"));
    let text = |field: &str| {
        condition
            .and_then(|condition| condition[field].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let (ready, line) = match condition {
        Some(condition) if condition["status"] == "True" => (
            true,
            format!("{object}: Ready ({}): {}", text("reason"), text("message")),
        ),
        Some(_) => (
            false,
            format!(
                "{object}: not Ready ({}): {}",
                text("reason"),
                text("message")
            ),
        ),
        None => (
            false,
            format!("{object}: no status within {}s", SETTLE_TIMEOUT.as_secs()),
        ),
    };
    IsolationOutcome {
        namespace,
        name,
        ready,
        line,
    }
}

/// Prove each Ready resource's intent against the policies now in the sandbox; true when all hold.
async fn print_proofs(client: &kube::Client, outcomes: &[IsolationOutcome]) -> bool {
    let mut all_hold = true;
    for outcome in outcomes.iter().filter(|outcome| outcome.ready) {
        let isolations: Api<NamespaceIsolation> =
            Api::namespaced(client.clone(), &outcome.namespace);
        let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &outcome.namespace);
        let (resource, found) = match (
            isolations.get(&outcome.name).await,
            policies.list(&ListParams::default()).await,
        ) {
            (Ok(resource), Ok(found)) => (resource, found),
            (Err(error), _) | (_, Err(error)) => {
                eprintln!(
                    "error: cannot read {}/{} back from the sandbox: {error}",
                    outcome.namespace, outcome.name
                );
                all_hold = false;
                continue;
            }
        };
        let Ok(isolation) = ValidatedIsolation::try_from(&resource) else {
            continue;
        };
        say!();
        match intent::prove(&isolation, &found.items) {
            Ok(proof) => {
                say!("{}", intent::report(&proof));
                all_hold &= proof.holds();
            }
            Err(error) => {
                eprintln!(
                    "error: NamespaceIsolation {}/{}: cannot prove its intent: {error}",
                    outcome.namespace, outcome.name
                );
                all_hold = false;
            }
        }
    }
    all_hold
}

pub(super) fn run(args: &Args) -> ExitCode {
    let documents = match manifests::load(&args.apply) {
        Ok(documents) => documents,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    // As render and verify: a namespace that cannot be one is refused before anything starts.
    let invalid: Vec<String> = documents
        .iter()
        .filter_map(|document| {
            document.namespace_error().map(|error| {
                format!(
                    "{}: {} {}: {error}",
                    document.source,
                    document.kind(),
                    document.name()
                )
            })
        })
        .collect();
    if !invalid.is_empty() {
        for error in &invalid {
            eprintln!("error: {error}");
        }
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let logs = logging::init(args.log_format, logging::Target::Stderr, STARTING_LOGS);
    runtime.block_on(serve(args, documents, logs.as_ref()))
}

/// Start the sandbox on `--listen`, or on the default address. `--once` reports and exits, so
/// nobody needs to find it at a fixed port: when the default is taken (Docker Desktop's
/// Kubernetes listens there), it takes a free port and says which.
async fn start(args: &Args) -> Result<Sandbox, SandboxError> {
    let listen = args.listen.unwrap_or(DEFAULT_LISTEN);
    match Sandbox::start(listen).await {
        Err(SandboxError::Bind { source, .. })
            if args.once
                && args.listen.is_none()
                && source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            let sandbox = Sandbox::start(SocketAddr::new(listen.ip(), 0)).await?;
            eprintln!(
                "note: {listen} is in use; the sandbox listens on {} instead (--once needs no fixed port)",
                sandbox.address()
            );
            Ok(sandbox)
        }
        other => other,
    }
}

async fn serve(args: &Args, documents: Vec<Document>, logs: Option<&FilterHandle>) -> ExitCode {
    let sandbox = match start(args).await {
        Ok(sandbox) => sandbox,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    say!("sandbox API server listening on {}", sandbox.url());
    match sandbox.install_netfence_crds() {
        Ok(names) => {
            for name in names {
                say!("installed CustomResourceDefinition {name}");
            }
        }
        Err(error) => {
            eprintln!("error: failed to install the netfence CRDs: {error}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(error) = sandbox.write_kubeconfig(&args.kubeconfig) {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    say!("wrote kubeconfig {}", args.kubeconfig.display());
    let client = match sandbox.client() {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let failures = apply_all(&sandbox, &client, &documents).await;
    let (stop_controller, controller_stopped) = tokio::sync::oneshot::channel::<()>();
    let prepared = controller::prepare(
        client.clone(),
        &controller::Settings {
            namespace: None,
            concurrency: 4,
            instance: Some("netfence-sandbox".to_owned()),
            templates: true,
            operator_namespace: None,
        },
        Arc::new(Metrics::default()),
    );
    let controller_task =
        tokio::spawn(prepared.run(Arc::new(AtomicBool::new(false)), async move {
            let _ = controller_stopped.await;
        }));
    say!();
    say!("controller: running in this process (field manager netfence)");
    // Templates first: the NamespaceIsolations they generate are then there to wait for.
    let templates = wait_settled::<IsolationTemplate>(&client).await;
    let outcomes = wait_settled::<NamespaceIsolation>(&client).await;
    let policies = count_network_policies(&client).await;
    say!("NetworkPolicies generated: {policies}");
    let mut all_ready = true;
    for outcome in templates.iter().chain(&outcomes) {
        say!("{}", outcome.line);
        all_ready &= outcome.ready;
    }
    say!();
    say!(
        "look with: kubectl --kubeconfig {} get nsi,netpol -A",
        args.kubeconfig.display()
    );
    if args.once {
        let proofs_hold = print_proofs(&client, &outcomes).await;
        let _ = stop_controller.send(());
        let _ = controller_task.await;
        sandbox.shutdown().await;
        if failures > 0 {
            eprintln!("error: {failures} manifest(s) could not be applied");
        }
        if !all_ready {
            eprintln!("error: not every NamespaceIsolation and IsolationTemplate is Ready");
        }
        if !proofs_hold {
            eprintln!("error: the intent of a NamespaceIsolation does not hold");
        }
        return if failures == 0 && all_ready && proofs_hold {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if let Some(logs) = logs {
        logs.set_default(SERVING_LOGS);
    }
    say!(
        "serving until Ctrl-C; the controller logs each change it makes on stderr (RUST_LOG to choose)"
    );
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("error: cannot wait for Ctrl-C: {error}");
    }
    let _ = stop_controller.send(());
    let _ = controller_task.await;
    sandbox.shutdown().await;
    say!("sandbox stopped");
    ExitCode::SUCCESS
}

fn api_resource(info: &ResourceInfo) -> ApiResource {
    ApiResource {
        group: info.group.clone(),
        version: info.version.clone(),
        api_version: info.api_version(),
        kind: info.kind.clone(),
        plural: info.plural.clone(),
    }
}

/// Whether a document claims to be one of netfence's own kinds: its API group is netfence's.
fn is_netfence_kind(document: &Document) -> bool {
    document
        .api_version()
        .split_once('/')
        .is_some_and(|(group, _)| group == netfence_crd::GROUP)
}

/// The order in which kinds are applied: CRDs, then namespaces, then everything else.
fn rank(document: &Document) -> u8 {
    match document.kind() {
        "CustomResourceDefinition" => 0,
        "Namespace" => 1,
        _ => 2,
    }
}

/// Apply every document with server-side apply; returns how many failed.
#[allow(clippy::too_many_lines)] // one loop: resolve, create the namespace, apply, report
async fn apply_all(sandbox: &Sandbox, client: &kube::Client, documents: &[Document]) -> usize {
    let mut ordered: Vec<&Document> = documents.iter().collect();
    ordered.sort_by_key(|document| rank(document));
    let declared: BTreeSet<String> = documents
        .iter()
        .filter(|document| document.kind() == "Namespace")
        .map(|document| document.name().to_owned())
        .collect();
    let mut created = BTreeSet::new();
    let mut failures = 0;
    for document in ordered {
        if document.kind() == "ClusterBaseline" {
            // The sandbox serves the CRD, and no engine's cluster-wide kinds: a baseline
            // here would only report EngineNotServed, or (with the NetworkPolicy engine)
            // add its policies to the examples' namespaces and change what they prove.
            eprintln!(
                "note: {}: skipping ClusterBaseline {}: the sandbox serves no ClusterNetworkPolicy, Calico or Cilium kinds; `netfence render {}` prints what netfence run writes for it on a cluster that does",
                document.source,
                document.name(),
                document.source
            );
            continue;
        }
        let Some(info) = sandbox.resource_of(document.api_version(), document.kind()) else {
            // Other tools' kinds (an Argo CD Application, a ConfigMap in examples/gitops/) are
            // not netfence's job: a note, as `netfence render` gives. A netfence kind the
            // sandbox does not serve is a mistake (a wrong apiVersion) and stays an error.
            if !is_netfence_kind(document) {
                eprintln!(
                    "note: {}: skipping {} {} ({}): the sandbox does not serve it",
                    document.source,
                    document.kind(),
                    document.name(),
                    document.api_version()
                );
                continue;
            }
            eprintln!(
                "error: {}: {} {} ({}) is not served by the sandbox",
                document.source,
                document.kind(),
                document.name(),
                document.api_version()
            );
            failures += 1;
            continue;
        };
        let namespace = info.namespaced.then(|| {
            document
                .value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned()
        });
        if let Some(namespace) = &namespace
            && !declared.contains(namespace)
            && !created.contains(namespace)
        {
            created.insert(namespace.clone());
            let api: Api<DynamicObject> = Api::all_with(
                client.clone(),
                &ApiResource {
                    group: String::new(),
                    version: "v1".to_owned(),
                    api_version: "v1".to_owned(),
                    kind: "Namespace".to_owned(),
                    plural: "namespaces".to_owned(),
                },
            );
            let body =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
            match api
                .patch(
                    namespace,
                    &PatchParams::apply(FIELD_MANAGER),
                    &Patch::Apply(body),
                )
                .await
            {
                Ok(_) => say!(
                    "applied Namespace {namespace} (missing, created for {})",
                    document.source
                ),
                Err(error) => {
                    eprintln!("error: failed to create namespace {namespace}: {error}");
                    failures += 1;
                    continue;
                }
            }
        }
        let resource = api_resource(&info);
        let api: Api<DynamicObject> = match &namespace {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let mut body = document.value.clone();
        if let (Some(namespace), Some(metadata)) = (&namespace, body.get_mut("metadata")) {
            metadata["namespace"] = json!(namespace);
        }
        let where_ = namespace.as_ref().map_or_else(
            || document.name().to_owned(),
            |namespace| format!("{namespace}/{}", document.name()),
        );
        match api
            .patch(
                document.name(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
        {
            Ok(_) => say!("applied {} {where_} ({})", document.kind(), document.source),
            Err(kube::Error::Api(status)) => {
                eprintln!(
                    "error: {}: {} {where_} was refused: {}",
                    document.source,
                    document.kind(),
                    status.message
                );
                failures += 1;
            }
            Err(error) => {
                eprintln!(
                    "error: {}: failed to apply {} {where_}: {error}",
                    document.source,
                    document.kind()
                );
                failures += 1;
            }
        }
    }
    failures
}

async fn count_network_policies(client: &kube::Client) -> usize {
    let api: Api<k8s_openapi::api::networking::v1::NetworkPolicy> = Api::all(client.clone());
    api.list(&ListParams::default())
        .await
        .map(|list| list.items.len())
        .unwrap_or_default()
}
