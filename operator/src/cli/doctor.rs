//! `netfence doctor`: the cluster checked against the common mistakes that break zero trust,
//! before and after adopting netfence. It only reads (lists and discovery); the checks are
//! `netfence_core::doctor`'s.
//!
//! ```text
//! kube config --> lists (DaemonSets, namespaces, NamespaceIsolations, pods, Services,
//!                 ClusterBaselines) + discovery --> Snapshot --doctor::check--> findings
//!   -o text: one block per finding, errors first     -o json: one document
//! ```
//!
//! Exit codes: 0 no error (warnings allowed), 1 an error, 2 the cluster could not be reached.

use std::{collections::BTreeSet, fmt::Write as _, path::PathBuf, process::ExitCode};

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Namespace, Pod, Service},
};
use kube::{
    Api, Client,
    api::{ListParams, ObjectList},
};
use netfence_core::doctor::{self, Finding, Severity, Snapshot, Unread};
use netfence_crd::{ClusterBaseline, NamespaceIsolation};

use super::EXIT_BAD_INPUT;

/// Check the cluster against the common mistakes that break zero trust: a CNI that does not
/// enforce NetworkPolicy, DNS rules that reach no DNS server, namespaces without their name
/// label, hostNetwork pods in isolated namespaces, NamespaceIsolations not Ready or not
/// Isolated, ClusterBaselines on an engine the cluster does not serve. Only reads. Exit 1 when
/// any finding is an error.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The kubeconfig file (default: `KUBECONFIG`, `~/.kube/config`, then in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Check this namespace's NamespaceIsolation, pods and labels only (the CNI and the
    /// ClusterBaselines are cluster-wide either way).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

/// How findings are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One block per finding, errors first.
    #[default]
    Text,
    /// One JSON document: `{"errors", "warnings", "findings": [...]}`.
    Json,
}

/// Run `netfence doctor`.
#[must_use]
pub fn run(args: &Args) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let snapshot = runtime.block_on(async {
        let client = super::run::client(args.kubeconfig.as_ref())
            .await
            .map_err(|error| error.to_string())?;
        read(&client, args.namespace.as_deref()).await
    });
    let snapshot = match snapshot {
        Ok(snapshot) => snapshot,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let findings = doctor::check(&snapshot);
    let printed = match args.output {
        Format::Text => text(&findings),
        Format::Json => format!("{:#}\n", json(&findings)),
    };
    if let Err(error) = super::output::write_stdout(&printed) {
        eprintln!("error: cannot write the findings to stdout: {error}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    if findings
        .iter()
        .any(|finding| finding.severity == Severity::Error)
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The findings as text: a summary line, then one block per finding.
#[must_use]
pub fn text(findings: &[Finding]) -> String {
    let count = |severity| {
        findings
            .iter()
            .filter(|finding| finding.severity == severity)
            .count()
    };
    let mut out = format!(
        "netfence doctor: {} error(s), {} warning(s), {} check(s) passed\n",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Ok)
    );
    for finding in findings {
        let subject = if finding.subject.is_empty() {
            String::new()
        } else {
            format!(" [{}]", finding.subject)
        };
        let _ = write!(
            out,
            "\n{:<8}{}{subject}: {}\n",
            finding.severity.label(),
            finding.check,
            finding.message
        );
        if !finding.fix.is_empty() {
            let _ = writeln!(out, "        fix: {}", finding.fix);
        }
    }
    out
}

/// The findings as one JSON document.
#[must_use]
pub fn json(findings: &[Finding]) -> serde_json::Value {
    let count = |severity| {
        findings
            .iter()
            .filter(|finding| finding.severity == severity)
            .count()
    };
    serde_json::json!({
        "errors": count(Severity::Error),
        "warnings": count(Severity::Warning),
        "findings": findings,
    })
}

/// The API server's answer in one sentence.
fn sentence(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// A list, or what kept it from being read (recorded in `unread`).
async fn list<K>(api: Api<K>, what: &str, unread: &mut Vec<Unread>) -> Option<ObjectList<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.list(&ListParams::default()).await {
        Ok(list) => Some(list),
        Err(error) => {
            unread.push(Unread {
                what: what.to_owned(),
                why: sentence(&error),
            });
            None
        }
    }
}

/// A list of a kind that may not be served: (whether it is, its items). A 404 means not served;
/// any other failure is recorded in `unread` (and the kind counted as served).
async fn served_list<K>(api: Api<K>, what: &str, unread: &mut Vec<Unread>) -> (bool, Vec<K>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.list(&ListParams::default()).await {
        Ok(list) => (true, list.items),
        Err(kube::Error::Api(status)) if status.code == 404 => (false, Vec::new()),
        Err(error) => {
            unread.push(Unread {
                what: what.to_owned(),
                why: sentence(&error),
            });
            (true, Vec::new())
        }
    }
}

/// The namespace of `--namespace` (which must exist), or every namespace.
async fn read_namespaces(
    client: &Client,
    namespace: Option<&str>,
    unread: &mut Vec<Unread>,
) -> Result<Vec<Namespace>, String> {
    let api = Api::<Namespace>::all(client.clone());
    let Some(name) = namespace else {
        return Ok(list(api, "namespaces", unread)
            .await
            .map(|list| list.items)
            .unwrap_or_default());
    };
    match api.get_opt(name).await {
        Ok(Some(found)) => Ok(vec![found]),
        Ok(None) => Err(format!(
            "namespace {name} does not exist (--namespace names the namespace to check)"
        )),
        Err(error) => {
            unread.push(Unread {
                what: format!("namespace {name}"),
                why: sentence(&error),
            });
            Ok(Vec::new())
        }
    }
}

/// Read what the checks need. Fails only when the API server cannot be reached at all.
async fn read(client: &Client, namespace: Option<&str>) -> Result<Snapshot, String> {
    client.apiserver_version().await.map_err(|error| {
        format!("cannot reach the Kubernetes API server: {error}; check the kube config")
    })?;
    let mut unread = Vec::new();
    let daemon_sets = list(
        Api::<DaemonSet>::all(client.clone()),
        "DaemonSets in all namespaces",
        &mut unread,
    )
    .await
    .map(|list| list.items)
    .unwrap_or_default();
    let namespaces = read_namespaces(client, namespace, &mut unread).await?;
    let isolation_api: Api<NamespaceIsolation> = match namespace {
        Some(name) => Api::namespaced(client.clone(), name),
        None => Api::all(client.clone()),
    };
    let (isolations_served, isolations) =
        served_list(isolation_api, "NamespaceIsolations", &mut unread).await;
    // Pods of the isolated namespaces (hostNetwork) and of the DNS namespaces; Services of the
    // DNS namespaces.
    let dns_namespaces: BTreeSet<String> = if isolations.is_empty() {
        BTreeSet::from(["kube-system".to_owned()])
    } else {
        isolations
            .iter()
            .map(|isolation| isolation.spec.dns.namespace.clone())
            .collect()
    };
    let mut pods = std::collections::BTreeMap::new();
    let mut services = std::collections::BTreeMap::new();
    let isolated: BTreeSet<String> = isolations
        .iter()
        .filter_map(|isolation| isolation.metadata.namespace.clone())
        .collect();
    for name in isolated.union(&dns_namespaces) {
        if let Some(found) = list(
            Api::<Pod>::namespaced(client.clone(), name),
            &format!("pods in {name}"),
            &mut unread,
        )
        .await
        {
            pods.insert(name.clone(), found.items);
        }
    }
    for name in &dns_namespaces {
        if let Some(found) = list(
            Api::<Service>::namespaced(client.clone(), name),
            &format!("Services in {name}"),
            &mut unread,
        )
        .await
        {
            services.insert(name.clone(), found.items);
        }
    }
    let (_, baselines) = served_list(
        Api::<ClusterBaseline>::all(client.clone()),
        "ClusterBaselines",
        &mut unread,
    )
    .await;
    let served = if baselines.is_empty() {
        netfence_core::baseline::plan::Served::default()
    } else {
        netfence_controller::served_engines(client).await
    };
    Ok(Snapshot {
        namespace: namespace.map(str::to_owned),
        isolations_served,
        daemon_sets,
        namespaces,
        isolations,
        pods,
        services,
        baselines,
        served,
        unread,
    })
}
