//! `netfence run`: the operator. Connects with the usual kube config resolution (`--kubeconfig`,
//! `KUBECONFIG`, `~/.kube/config`, in-cluster), checks that it can work, then reconciles until
//! SIGTERM or Ctrl-C.

use std::{path::PathBuf, process::ExitCode};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{
    Api, Client, Config,
    api::ListParams,
    config::{KubeConfigOptions, Kubeconfig},
};
use netfence_crd::{IsolationTemplate, NamespaceIsolation};

use std::sync::{Arc, atomic::AtomicBool};

use netfence_controller::{
    self as controller,
    metrics::{self, Health, Metrics},
};

pub use super::logging::LogFormat;

/// Arguments of `netfence run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The kubeconfig file (default: `KUBECONFIG`, `~/.kube/config`, then in-cluster).
    #[arg(long, env = "NETFENCE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Watch one namespace only (default: all).
    #[arg(long, env = "NETFENCE_NAMESPACE")]
    pub namespace: Option<String>,

    /// How many resources are reconciled at once. A reconcile mostly waits for the API server
    /// and its own cache, so many run at once cheaply: at 4, restoring 900 deleted policies took
    /// 2 s (see docs/performance.md).
    #[arg(long, env = "NETFENCE_CONCURRENCY", default_value_t = 32)]
    pub concurrency: u16,

    /// Log format. Logs go to stdout; their level is `RUST_LOG` (default `info`, with kube's
    /// controller at `warn`: see `RUN_LOGS`); text is coloured only on a terminal.
    #[arg(long, env = "NETFENCE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Reconcile only while holding a Lease, so that several replicas can run (one leads).
    #[arg(long, env = "NETFENCE_LEADER_ELECTION")]
    pub leader_election: bool,

    /// The namespace of the Lease.
    #[arg(
        long,
        env = "NETFENCE_LEASE_NAMESPACE",
        default_value = "netfence-system"
    )]
    pub lease_namespace: String,

    /// The name of the Lease.
    #[arg(long, env = "NETFENCE_LEASE_NAME", default_value = "netfence")]
    pub lease_name: String,

    /// netfence's own namespace, which no IsolationTemplate generates into (in a pod, set from
    /// the downward API's `metadata.namespace`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "netfence-system")]
    pub operator_namespace: String,

    /// Where `/metrics`, `/healthz` and `/readyz` are served: `HOST:PORT`, HOST an address or a
    /// host name (`localhost:8080`), or `:PORT` for every interface.
    #[arg(
        long,
        env = "NETFENCE_METRICS_ADDR",
        default_value = "0.0.0.0:8080",
        value_parser = super::address::parse
    )]
    pub metrics_addr: std::net::SocketAddr,
}

/// Why `netfence run` could not start, as the one sentence the user reads.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No usable kube config.
    #[error(
        "cannot load a kube config ({0}); pass --kubeconfig, set KUBECONFIG, or run in a cluster"
    )]
    Config(String),
    /// A CRD is not installed.
    #[error("the {0} CRD is not installed; install it with `netfence crd | kubectl apply -f -`")]
    MissingCrd(&'static str),
    /// A list the operator needs is refused.
    #[error(
        "cannot list {what} ({source}); grant the RBAC in config/rbac/ to netfence's service account"
    )]
    Forbidden {
        /// What could not be listed.
        what: &'static str,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The API server is not reachable.
    #[error("cannot reach the Kubernetes API server ({0}); check the kube config and the network")]
    Unreachable(kube::Error),
}

/// Build a client from `--kubeconfig` or the default resolution.
pub async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, StartError> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|error| StartError::Config(error.to_string()))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|error| StartError::Config(error.to_string()))?
        }
        None => Config::infer()
            .await
            .map_err(|error| StartError::Config(error.to_string()))?,
    };
    // Identify the operator's requests in API server audit logs, as client-go does.
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static(USER_AGENT),
    ));
    Client::try_from(config).map_err(|error| StartError::Config(error.to_string()))
}

/// The `User-Agent` of the operator's requests.
pub const USER_AGENT: &str = concat!("netfence/", env!("CARGO_PKG_VERSION"));

/// Check that the CRDs are installed and that the operator can list what it watches: in one
/// namespace, NamespaceIsolations and NetworkPolicies; cluster-wide, also IsolationTemplates and
/// Namespaces (the template controller's).
pub async fn preflight(client: &Client, namespace: Option<&str>) -> Result<(), StartError> {
    let one = ListParams::default().limit(1);
    let scoped = |client: &Client| match namespace {
        Some(namespace) => (
            Api::<NamespaceIsolation>::namespaced(client.clone(), namespace),
            Api::<NetworkPolicy>::namespaced(client.clone(), namespace),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let (isolations, policies) = scoped(client);
    check_list(
        isolations.list_metadata(&one).await,
        "namespaceisolations.netfence.io",
        Some("NamespaceIsolation"),
    )?;
    check_list(
        policies.list_metadata(&one).await,
        "networkpolicies.networking.k8s.io",
        None,
    )?;
    if namespace.is_none() {
        let templates: Api<IsolationTemplate> = Api::all(client.clone());
        check_list(
            templates.list_metadata(&one).await,
            "isolationtemplates.netfence.io",
            Some("IsolationTemplate"),
        )?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        check_list(namespaces.list_metadata(&one).await, "namespaces", None)?;
    }
    Ok(())
}

/// The start error of a list answer: 404 on a netfence kind is a missing CRD, 403 missing RBAC.
fn check_list<T>(
    result: Result<T, kube::Error>,
    what: &'static str,
    crd_kind: Option<&'static str>,
) -> Result<(), StartError> {
    match (result, crd_kind) {
        (Ok(_), _) => Ok(()),
        (Err(kube::Error::Api(status)), Some(kind)) if status.code == 404 => {
            Err(StartError::MissingCrd(kind))
        }
        (Err(kube::Error::Api(status)), _) if status.code == 403 => Err(StartError::Forbidden {
            what,
            source: kube::Error::Api(status),
        }),
        (Err(error), _) => Err(StartError::Unreachable(error)),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = async {
                match terminate.as_mut() {
                    Some(signal) => { signal.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The controller settings `netfence run` derives from its arguments; `instance` names this
/// replica (the pod name in a cluster). Cluster-wide it runs the template controller too.
#[must_use]
pub fn settings(args: &Args, instance: Option<String>) -> controller::Settings {
    controller::Settings {
        namespace: args.namespace.clone(),
        concurrency: args.concurrency,
        instance,
        templates: args.namespace.is_none(),
        operator_namespace: Some(args.operator_namespace.clone()),
    }
}

/// The logs of `netfence run` unless `RUST_LOG` says otherwise: `info`, but for kube's
/// controller, which logs nothing at `info` and opens a span per queued reconcile ("reconciling
/// object"; netfence's own `reconcile` span names the resource too). kube's runner polls every
/// queued reconcile (up to 1,024) each time one finishes, and each poll entered and left that
/// span: an eighth of the operator's CPU while 9,000 deleted policies were restored at
/// N = 10,000.
pub const RUN_LOGS: &str = "info,kube_runtime::controller=warn";

/// Run the operator as `netfence run` does, until SIGTERM or Ctrl-C (the scale benchmark runs it
/// this way in a process of its own).
#[must_use]
pub fn run(args: &Args) -> ExitCode {
    let _ = super::logging::init(args.log_format, super::logging::Target::Stdout, RUN_LOGS);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let client = match client(args.kubeconfig.as_ref()).await {
            Ok(client) => client,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(error) = preflight(&client, args.namespace.as_deref()).await {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
        let metrics = Arc::new(Metrics::default());
        let settings = settings(args, std::env::var("POD_NAME").ok());
        let prepared = controller::prepare(client.clone(), &settings, metrics.clone());
        let health_metrics = metrics.clone();
        let ready = Arc::new(AtomicBool::new(false));
        let health = Health {
            metrics,
            // With leader election the controller is rebuilt at each lease change; the resources
            // gauge is left out rather than read from a store that is not the running one.
            store: (!args.leader_election).then(|| prepared.store()),
            ready: ready.clone(),
        };
        let listener = match tokio::net::TcpListener::bind(args.metrics_addr).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!(
                    "error: cannot listen on {} for metrics ({error}); pass another --metrics-addr",
                    args.metrics_addr
                );
                return ExitCode::FAILURE;
            }
        };
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, metrics::router(health))
                .with_graceful_shutdown(shutdown_signal())
                .await
            {
                tracing::error!(%error, "the metrics server stopped");
            }
        });
        tracing::info!(
            namespace = args.namespace.as_deref().unwrap_or("<all>"),
            metrics = %args.metrics_addr,
            "netfence started"
        );
        if args.leader_election {
            let lease = controller::LeaseSettings {
                namespace: args.lease_namespace.clone(),
                name: args.lease_name.clone(),
                identity: settings
                    .instance
                    .clone()
                    .unwrap_or_else(|| format!("netfence-{}", std::process::id())),
            };
            drop(prepared);
            if let Err(error) =
                controller::run_as_leader(client, &settings, &lease, health_metrics, ready, shutdown_signal())
                    .await
            {
                eprintln!(
                    "error: leader election failed ({error}); check that netfence may get, create and patch Leases in namespace {}",
                    args.lease_namespace
                );
                return ExitCode::FAILURE;
            }
        } else {
            prepared.run(ready, shutdown_signal()).await;
        }
        tracing::info!("netfence stopped");
        ExitCode::SUCCESS
    })
}
