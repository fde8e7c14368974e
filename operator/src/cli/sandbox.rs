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

use crate::{
    manifests::{self, Document},
    sandbox::{ResourceInfo, Sandbox},
};

use super::EXIT_BAD_INPUT;

/// The field manager of what `netfence sandbox --apply` writes.
pub const FIELD_MANAGER: &str = "netfence-sandbox";

/// Arguments of `netfence sandbox`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address to serve on (loopback only: the sandbox has no authentication).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,

    /// Where to write the kubeconfig that points kubectl and other clients at the sandbox.
    #[arg(long, value_name = "PATH", default_value = "sandbox.kubeconfig")]
    pub kubeconfig: PathBuf,

    /// Manifests to apply once the sandbox is up: files, directories, or `-` for stdin.
    /// Namespaces they name are created when missing.
    #[arg(long = "apply", value_name = "PATH")]
    pub apply: Vec<PathBuf>,

    /// Wait until every NamespaceIsolation is Ready or failed, print the summary, and exit:
    /// 0 only when all are Ready.
    #[arg(long)]
    pub once: bool,
}

/// Why no NetworkPolicy appears yet: said plainly, never pretended.
pub const NO_CONTROLLER: &str = "the netfence controller is not part of this build of `netfence sandbox` yet: NamespaceIsolations are stored and validated (schema and CEL rules), but no NetworkPolicy is generated and no status is reported until a controller runs";

pub(super) fn run(args: &Args) -> ExitCode {
    let documents = match manifests::load(&args.apply) {
        Ok(documents) => documents,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
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
    runtime.block_on(serve(args, documents))
}

async fn serve(args: &Args, documents: Vec<Document>) -> ExitCode {
    let sandbox = match Sandbox::start(args.listen).await {
        Ok(sandbox) => sandbox,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    println!("sandbox API server listening on {}", sandbox.url());
    match sandbox.install_netfence_crds() {
        Ok(names) => {
            for name in names {
                println!("installed CustomResourceDefinition {name}");
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
    println!("wrote kubeconfig {}", args.kubeconfig.display());
    let client = match sandbox.client() {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let failures = apply_all(&sandbox, &client, &documents).await;
    println!();
    println!("controller: {NO_CONTROLLER}");
    let policies = count_network_policies(&client).await;
    println!("NetworkPolicies generated: {policies}");
    let isolations = list_isolations(&client).await;
    for (namespace, name) in &isolations {
        println!("NamespaceIsolation {namespace}/{name}: readiness unknown (no controller)");
    }
    println!();
    println!(
        "to reconcile them meanwhile, run the controller against the sandbox in another terminal: netfence run --kubeconfig {} --metrics-addr 127.0.0.1:8080",
        args.kubeconfig.display()
    );
    println!(
        "look with: kubectl --kubeconfig {} get nsi,netpol -A",
        args.kubeconfig.display()
    );
    if args.once {
        sandbox.shutdown().await;
        if failures > 0 {
            eprintln!("error: {failures} manifest(s) could not be applied");
        }
        eprintln!(
            "error: --once waits for every NamespaceIsolation to be Ready, which needs the controller; {NO_CONTROLLER}"
        );
        return ExitCode::FAILURE;
    }
    println!("serving until Ctrl-C");
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("error: cannot wait for Ctrl-C: {error}");
    }
    sandbox.shutdown().await;
    println!("sandbox stopped");
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
        let Some(info) = sandbox.resource_of(document.api_version(), document.kind()) else {
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
                Ok(_) => println!(
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
            Ok(_) => println!("applied {} {where_} ({})", document.kind(), document.source),
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

async fn list_isolations(client: &kube::Client) -> Vec<(String, String)> {
    let api: Api<netfence_crd::NamespaceIsolation> = Api::all(client.clone());
    api.list(&ListParams::default())
        .await
        .map(|list| {
            list.items
                .iter()
                .map(|isolation| {
                    (
                        isolation.metadata.namespace.clone().unwrap_or_default(),
                        isolation.metadata.name.clone().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
