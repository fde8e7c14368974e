//! `cluster up --dir DIR` / `cluster down --dir DIR`: a real Kubernetes control plane (etcd,
//! kube-apiserver, kube-controller-manager) on loopback, for the scenarios and for trying
//! netfence on the real thing. See `netfence_e2e::cluster`.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use netfence_e2e::cluster;

/// A real Kubernetes control plane on 127.0.0.1, built from the Kubernetes Go modules.
#[derive(Parser)]
#[command(name = "cluster")]
struct Cli {
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Build the upstream programs (once per pin, cached outside the clone: the control plane,
    /// kube-router for the packet suite, Helm 3 and 4 for the chart tests) and print where they
    /// are; `up` builds the control plane first.
    Build,
    /// Build kubectl of the same Kubernetes release (once, cached) and print its folder, for a
    /// machine without kubectl.
    BuildKubectl,
    /// Build (once, cached) and start etcd, kube-apiserver and kube-controller-manager; return
    /// once /readyz answers 200. Writes DIR/admin.kubeconfig; the processes keep running.
    Up {
        /// The folder for state, logs, certificates and the kubeconfig.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Stop the processes `up` started in DIR and remove DIR.
    Down {
        /// The folder `up` was given.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Action::BuildKubectl => cluster::build::ensure_kubectl().map(|kubectl| {
            println!(
                "{}",
                kubectl.parent().unwrap_or(std::path::Path::new(".")).display()
            );
        }),
        Action::Build => cluster::build::ensure().and_then(|binaries| {
            let (kube_router, kube_router_version) = cluster::build::ensure_kube_router()?;
            println!(
                "Kubernetes {} and etcd {} built:",
                binaries.kubernetes_version, binaries.etcd_version
            );
            for program in [
                &binaries.etcd,
                &binaries.apiserver,
                &binaries.controller_manager,
            ] {
                println!("  {}", program.display());
            }
            println!("kube-router {kube_router_version} built:\n  {}", kube_router.display());
            for major in [3, 4] {
                let (helm, helm_version) = cluster::build::ensure_helm(major)?;
                println!("Helm {helm_version} built:\n  {}", helm.display());
            }
            Ok(())
        }),
        Action::Up { dir } => cluster::up(&dir).await.map(|state| {
            let kubeconfig = dir.join(cluster::KUBECONFIG_FILE);
            println!(
                "Kubernetes {} (etcd {}) ready at {}",
                state.kubernetes_version, state.etcd_version, state.server
            );
            println!("  kubeconfig: {}", kubeconfig.display());
            println!(
                "  logs:       {}/{{etcd,kube-apiserver,kube-controller-manager}}.log, audit log {}",
                dir.display(),
                dir.join(cluster::AUDIT_LOG_FILE).display()
            );
            println!(
                "  try:        kubectl --kubeconfig {} get ns",
                kubeconfig.display()
            );
            println!(
                "  scenarios:  NETFENCE_E2E_KUBECONFIG={} cargo test -p netfence-e2e",
                kubeconfig.display()
            );
        }),
        Action::Down { dir } => cluster::down(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cluster: {error:#}");
            ExitCode::FAILURE
        }
    }
}
