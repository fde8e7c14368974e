//! `packets`: netfence's generated NetworkPolicies enforced by a real dataplane (kube-router's
//! firewall), connectivity measured with real connections. See `netfence_e2e::packets`.
//!
//! ```text
//! packets [--cases DIR]... [--no-conformance] [--no-fail-closed] [--dir DIR [--keep]]
//!   outside: build the upstream programs (cached), make the node's netns (or reuse DIR's)
//!   --ip netns exec--> inside: control plane, kube-router, operator, the three parts
//!   outside: tear everything down (unless --keep or reused): `ip netns del`, processes stopped
//! packets --down --dir DIR     stop what `--keep` left running
//! ```
//!
//! Ends with `packets: N connections measured, M differ`, exit code 0 only when M is 0.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use netfence_e2e::{
    Env, cluster,
    dataplane::{self, NETNS_PREFIX},
    packets::{Harness, Totals, conformance, examples, fail_closed, require_root},
};

/// The environment variable that tells the process it runs inside the node's network namespace.
const INSIDE: &str = "NETFENCE_PACKETS_NETNS";

/// Real packets through kube-router for netfence's examples, the conformance corpus, and
/// fail-closed under disruption.
#[derive(Parser)]
#[command(name = "packets", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    agent: Option<Hidden>,
    /// Also measure every NamespaceIsolation in this folder's manifests (recursively), after
    /// examples/; its namespaces and peers are those of its model world. Repeatable.
    #[arg(long = "cases", value_name = "DIR")]
    cases: Vec<PathBuf>,
    #[command(flatten)]
    skip: Skip,
    /// The folder for the control plane, kube-router's log and the state. A folder holding a
    /// running stack (left by --keep) is reused, and left running. Default: a new temporary
    /// folder, removed at the end.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Leave the stack running for a later run with the same --dir (stop it with --down).
    #[arg(long)]
    keep: bool,
    /// Stop the stack that --keep left in --dir, and exit.
    #[arg(long, requires = "dir")]
    down: bool,
}

/// Parts to leave out, for a quick run.
#[derive(clap::Args)]
struct Skip {
    /// Skip the examples and --cases (point 2), to run the other parts alone.
    #[arg(long)]
    no_examples: bool,
    /// Skip the conformance corpus on packets (point 3).
    #[arg(long)]
    no_conformance: bool,
    /// Skip the fail-closed scenario (point 4).
    #[arg(long)]
    no_fail_closed: bool,
}

#[derive(Subcommand)]
enum Hidden {
    /// The harness's agent in a pod's network namespace (internal).
    #[command(hide = true)]
    Agent {
        /// The ports to serve: `80/TCP,53/UDP`.
        #[arg(long, default_value = "")]
        listen: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Hidden::Agent { listen }) = &cli.agent {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("agent: {error}");
                return ExitCode::FAILURE;
            }
        };
        return match runtime.block_on(netfence_e2e::dataplane::agent::serve(listen)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("agent: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("packets: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = if let Ok(netns) = std::env::var(INSIDE) {
        runtime.block_on(inside(&cli, &netns))
    } else {
        runtime.block_on(outside(&cli))
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("packets: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Stop what runs in `directory` and remove only the files the suite wrote there (the folder
/// itself only when `remove_folder`: the temporary one it made).
fn stop_stack(directory: &Path, remove_folder: bool) {
    if let Ok(state) = dataplane::read_state(directory) {
        cluster::stop(&state.kube_router);
        dataplane::delete_namespaces(&state.netns);
    }
    let control_plane = directory.join("cluster");
    if control_plane.join(cluster::STATE_FILE).is_file()
        && let Err(error) = cluster::down(&control_plane)
    {
        eprintln!("packets: {error:#}");
    }
    for file in [dataplane::STATE_FILE, dataplane::KUBE_ROUTER_LOG] {
        let _ = std::fs::remove_file(directory.join(file));
    }
    if remove_folder {
        let _ = std::fs::remove_dir(directory);
    }
}

/// `examples/` and every `--cases` folder.
fn sources(cli: &Cli) -> Vec<PathBuf> {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut sources = vec![repository.join("examples")];
    sources.extend(cli.cases.iter().cloned());
    sources
}

/// Prepare (build, the node's netns), run the suite inside it, tear down.
async fn outside(cli: &Cli) -> anyhow::Result<ExitCode> {
    require_root()?;
    // Bad input is refused before anything starts.
    examples::load(&sources(cli))?;
    if cli.down {
        let directory = cli.dir.clone().context("--down needs --dir")?;
        if dataplane::read_state(&directory).is_err() {
            anyhow::bail!(
                "{} holds no stack started by `packets --keep` (no {}); nothing was stopped or removed",
                directory.display(),
                dataplane::STATE_FILE
            );
        }
        stop_stack(&directory, false);
        println!("packets: stopped what ran in {}", directory.display());
        return Ok(ExitCode::SUCCESS);
    }
    let directory = match &cli.dir {
        Some(directory) => directory.clone(),
        None => std::env::temp_dir().join(format!("netfence-packets-{}", std::process::id())),
    };
    std::fs::create_dir_all(&directory)
        .with_context(|| format!("failed to create {}", directory.display()))?;
    let directory = directory.canonicalize()?;
    let reused = dataplane::read_state(&directory)
        .ok()
        .filter(dataplane::is_running);
    let netns = if let Some(state) = &reused {
        println!(
            "packets: reusing the stack in {} (netns {})",
            directory.display(),
            state.netns
        );
        state.netns.clone()
    } else {
        // Built here, with the module proxy in reach; the node's netns has no way out.
        tokio::task::spawn_blocking(|| -> anyhow::Result<()> {
            cluster::build::ensure()?;
            cluster::build::ensure_kube_router()?;
            Ok(())
        })
        .await??;
        let netns = format!("{NETNS_PREFIX}{}", std::process::id());
        dataplane::create_node(&netns)?;
        netns
    };
    let program = std::env::current_exe()?;
    let status = tokio::process::Command::new("ip")
        .args(["netns", "exec", &netns])
        .arg(&program)
        .args(std::env::args_os().skip(1))
        .env(INSIDE, &netns)
        .env("NETFENCE_PACKETS_DIR", &directory)
        .env(
            netfence_e2e::KUBECONFIG_VARIABLE,
            directory.join("cluster").join(cluster::KUBECONFIG_FILE),
        )
        .status()
        .await
        .context("failed to run ip netns exec")?;
    if cli.keep || reused.is_some() {
        println!(
            "packets: the stack keeps running in {} (netns {netns}); stop it with `packets --down --dir {}`",
            directory.display(),
            directory.display()
        );
    } else {
        stop_stack(&directory, cli.dir.is_none());
        dataplane::delete_namespaces(&netns);
    }
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Bring up, in this network namespace, the control plane and kube-router (unless they run).
async fn bring_up(directory: &Path, netns: &str) -> anyhow::Result<()> {
    if dataplane::read_state(directory).is_ok_and(|state| dataplane::is_running(&state)) {
        return Ok(());
    }
    let control_plane = directory.join("cluster");
    let kubeconfig = control_plane.join(cluster::KUBECONFIG_FILE);
    let state = cluster::up(&control_plane).await?;
    println!(
        "packets: Kubernetes {} (etcd {}) at {} in netns {netns}",
        state.kubernetes_version, state.etcd_version, state.server
    );
    let client = cluster::client_from(&kubeconfig).await?;
    dataplane::register_node(&client).await?;
    let (program, version) = cluster::build::ensure_kube_router()?;
    let process = dataplane::start_kube_router(&program, &kubeconfig, directory)?;
    std::fs::write(
        directory.join(dataplane::STATE_FILE),
        serde_json::to_string_pretty(&dataplane::State {
            netns: netns.to_owned(),
            kube_router: process,
            kube_router_version: version.clone(),
        })?,
    )?;
    println!(
        "packets: kube-router {version} (firewall only) on node {}",
        dataplane::NODE_IP
    );
    Ok(())
}

/// The three parts; a part that fails counts as one difference and the others still run.
async fn run_parts(
    cli: &Cli,
    harness: &Harness,
    env: &mut Env,
    totals: &mut Totals,
) -> anyhow::Result<Vec<examples::Row>> {
    let sources = sources(cli);
    let cases = examples::load(&sources)?;
    let mut rows = Vec::new();
    if !cli.skip.no_examples {
        println!(
            "packets: {} NamespaceIsolations from {}",
            cases.len(),
            sources
                .iter()
                .map(|source| source.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for case in &cases {
            match examples::run_case(harness, env, case, totals).await {
                Ok(row) => rows.push(row),
                Err(error) => {
                    totals.differ += 1;
                    let failed = format!("{}: FAILED: {error:#}", case.source.display());
                    println!("== {failed}");
                    totals.differences.push(failed);
                }
            }
        }
        totals.lines.push(format!(
            "examples: {} NamespaceIsolations, {} connections measured, {} differ",
            rows.len(),
            rows.iter().map(|row| row.connections).sum::<usize>(),
            rows.iter().map(|row| row.differences.len()).sum::<usize>()
        ));
    }
    if !cli.skip.no_conformance
        && let Err(error) = conformance::run(harness, &conformance::corpus(), totals).await
    {
        totals.differ += 1;
        let failed = format!("conformance on packets: FAILED: {error:#}");
        println!("== {failed}");
        totals.differences.push(failed);
    }
    if !cli.skip.no_fail_closed {
        let three_tier = cases
            .iter()
            .find(|case| case.source.ends_with("examples/three-tier.yaml"))
            .cloned()
            .context("examples/three-tier.yaml has no NamespaceIsolation");
        let result = match three_tier {
            Ok(case) => fail_closed::run(harness, env, &case, totals).await,
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            totals.differ += 1;
            let failed = format!("fail-closed on packets: FAILED: {error:#}");
            println!("== {failed}");
            totals.differences.push(failed);
        }
    }
    Ok(rows)
}

/// How many differences the end of the report repeats (all are printed where they occur).
const DIFFERENCES_SHOWN: usize = 40;

/// Inside the node's netns: bring up what is missing, run the parts, report.
async fn inside(cli: &Cli, netns: &str) -> anyhow::Result<ExitCode> {
    let directory = PathBuf::from(
        std::env::var("NETFENCE_PACKETS_DIR").context("NETFENCE_PACKETS_DIR is not set")?,
    );
    let started = std::time::Instant::now();
    bring_up(&directory, netns).await?;
    // Pods of an earlier run on a reused stack are gone with it.
    dataplane::delete_pod_namespaces(netns);
    let mut env = Env::start_alone().await;
    env.start_controller(None);
    let harness = Harness::new(
        env.client.clone(),
        directory.clone(),
        netns,
        std::env::current_exe()?,
    );
    if !harness.sctp {
        netfence_e2e::skip_in(
            "packets",
            "sctp_probes",
            "this kernel has no SCTP sockets: SCTP probes are not measured on packets (each part says how many; netfence verify and the intent still cover them)",
        );
    }
    let mut totals = Totals::default();
    let rows = run_parts(cli, &harness, &mut env, &mut totals).await;
    env.finish().await;
    let rows = rows?;

    println!();
    println!("{}", examples::table(&rows));
    for line in &totals.lines {
        println!("{line}");
    }
    if !totals.differences.is_empty() {
        println!("what differs ({} lines):", totals.differences.len());
        for difference in totals.differences.iter().take(DIFFERENCES_SHOWN) {
            println!("  {difference}");
        }
        if totals.differences.len() > DIFFERENCES_SHOWN {
            println!(
                "  and {} more, above",
                totals.differences.len() - DIFFERENCES_SHOWN
            );
        }
    }
    println!("packets: took {} s", started.elapsed().as_secs());
    println!(
        "packets: {} connections measured, {} differ",
        totals.measured, totals.differ
    );
    netfence_e2e::figure(&format!(
        "packets (kube-router): {}; took {} s",
        totals.lines.join("; "),
        started.elapsed().as_secs()
    ));
    Ok(if totals.differ == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
