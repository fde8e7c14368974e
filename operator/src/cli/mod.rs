//! The `netfence` command line: thin wrappers that read input, call the pure modules, and print.
//!
//! ```text
//! netfence render PATH...   NamespaceIsolation manifests -> NetworkPolicy manifests
//! netfence run             the operator: reconcile NamespaceIsolations into NetworkPolicies
//! netfence verify PATH...   manifests -> who can reach whom, and why; intent proofs
//! netfence diff OLD NEW     what a change opens and closes (`--git REV PATH...`: against a revision)
//! netfence crd              the CustomResourceDefinitions to install
//! netfence doctor           the cluster checked against the mistakes that break zero trust (reads only)
//! netfence sandbox          an in-memory API server with the CRDs, a kubeconfig, and the manifests
//!                           applied (feature `sandbox`, on by default; a build without it says so)
//! ```
//!
//! Exit codes: 0 success, 1 a check failed (verify; diff `--fail-on`), 2 bad input or usage,
//! 3 a connection opened or closed (diff). Output to a pipe the
//! reader closed early (`netfence crd | head -1`) ends quietly ([`output`]).

pub mod address;
pub mod crd;
pub mod diff;
pub mod doctor;
pub mod logging;
pub mod output;
pub mod render;
pub mod run;
#[cfg(feature = "sandbox")]
pub mod sandbox;
#[cfg(not(feature = "sandbox"))]
#[path = "no_sandbox.rs"]
pub mod sandbox;
pub mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// netfence: zero-trust NetworkPolicies from one NamespaceIsolation per namespace.
#[derive(Debug, Parser)]
#[command(name = "netfence", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the NetworkPolicies netfence would apply for NamespaceIsolation manifests.
    Render(render::Args),
    /// Run the operator against a cluster.
    Run(run::Args),
    /// Compute who can reach whom from manifests, explain one connection, or prove that a
    /// NamespaceIsolation's policies allow exactly what it declares.
    Verify(verify::Args),
    /// What a change to the manifests opens and closes: every connection NEW allows that OLD
    /// does not, and the reverse, per namespace and tier (exit 3 when any).
    Diff(diff::Args),
    /// Print the CustomResourceDefinitions netfence needs (`netfence crd | kubectl apply -f -`).
    Crd(crd::Args),
    /// Check the cluster against the common mistakes that break zero trust (reads only; exit 1
    /// on an error).
    Doctor(doctor::Args),
    /// Start an in-memory Kubernetes API server, install the CRDs, write a kubeconfig and apply
    /// manifests: try netfence without a cluster (`netfence sandbox --apply examples/`).
    Sandbox(sandbox::Args),
}

/// Exit code for bad input: nothing was changed or printed on stdout.
pub const EXIT_BAD_INPUT: u8 = 2;

/// Parse the arguments and run the command.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd(args) => crd::run(&args),
        Command::Diff(args) => diff::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Render(args) => render::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Sandbox(args) => sandbox::run(&args),
    }
}
