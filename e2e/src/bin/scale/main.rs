//! `scale`: netfence against the limit the Kubernetes API sets, one write per policy that has
//! to change and none otherwise (issue 8).
//!
//! ```text
//! cargo run --release -p netfence-e2e --bin scale -- --namespaces 1000
//!
//! baseline     a plain client makes exactly the minimum writes (own sandbox, or the real server)
//! convergence  server + operator (separate process): N resources created at once
//! steady       a window with a forced resync: 0 writes
//! drift        a share of the policies deleted at once: restored, against the server's pace
//! churn        one flow changed in a share of the resources: writes vs policies changed
//! fan-out      a fresh server + operator: one IsolationTemplate over N namespaces
//! ```
//!
//! `--target sandbox` (default) runs netfence's sandbox in this process; `--target real` the
//! control plane of the e2e harness (see `server`). The operator is this executable re-run with
//! `--run-operator`, which calls `netfence::cli::run::run` as `netfence run` does, so its CPU
//! time and peak RSS are its own. Writes are counted in the server's audit log by User-Agent:
//! the operator's are `netfence/<version>`, the benchmark's and the baseline's have their own.

mod operator;
mod phases;
mod report;
mod server;
mod workload;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;

use crate::{
    phases::{Env, Settings},
    report::Report,
    server::{Server, Target},
};

/// Benchmark netfence at scale: convergence against a minimum-writes baseline, steady state,
/// drift, spec churn and template fan-out, each figure beside its target.
#[derive(Debug, Parser)]
#[command(name = "scale", version, long_about = None)]
#[allow(clippy::struct_excessive_bools)] // independent command-line switches, not a state
struct Args {
    /// How many namespaces, each with one NamespaceIsolation (5 tiers, 8 flows, 3 shared
    /// services: 9 policies).
    #[arg(long, default_value_t = 1000)]
    namespaces: usize,

    /// The API server: netfence's sandbox, or the real control plane (etcd, kube-apiserver,
    /// kube-controller-manager; started in the work directory, or NETFENCE_E2E_KUBECONFIG's).
    #[arg(long, value_enum, default_value_t = Target::Sandbox)]
    target: Target,

    /// The steady-state window after convergence, with a forced resync in its middle.
    #[arg(long, default_value_t = 60)]
    steady_seconds: u64,

    /// Skip the baseline (no ratio is reported).
    #[arg(long)]
    skip_baseline: bool,

    /// Skip the template fan-out phase (a fresh server and operator, N more namespaces).
    #[arg(long, conflicts_with = "fan_out_only")]
    skip_fan_out: bool,

    /// Run the template fan-out phase alone (no baseline, convergence, steady state, drift or
    /// churn): to profile it.
    #[arg(long)]
    fan_out_only: bool,

    /// Requests the benchmark keeps in flight: the baseline's tasks (as many as the operator's
    /// default concurrent reconciles), and the creates, deletes and edits of the phases.
    #[arg(long, default_value_t = 32)]
    concurrency: u16,

    /// `netfence run --concurrency` for the operator (default: netfence's own default).
    #[arg(long)]
    operator_concurrency: Option<u16>,

    /// The share of generated policies deleted in the drift phase.
    #[arg(long, default_value_t = 0.1)]
    drift_share: f64,

    /// The share of resources whose spec changes in the churn phase.
    #[arg(long, default_value_t = 0.1)]
    churn_share: f64,

    /// The longest any phase waits before it fails.
    #[arg(long, default_value_t = 900)]
    timeout_seconds: u64,

    /// Where the kubeconfig and the operator's log are written (default: a new directory under
    /// the system's temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,

    /// Write each phase's audit log (every request, with its time) to the work directory.
    #[arg(long)]
    dump_audit: bool,

    /// Internal: run the operator (the flags after `--` are `netfence run`'s).
    #[arg(long, hide = true)]
    run_operator: bool,

    /// Internal: `netfence run` flags for `--run-operator`.
    #[arg(last = true, hide = true)]
    run_flags: Vec<String>,
}

/// `netfence run`'s flags, parsed by netfence's own definition (defaults included).
#[derive(Debug, Parser)]
#[command(name = "netfence-run")]
struct RunArgs {
    #[command(flatten)]
    args: netfence::cli::run::Args,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.run_operator {
        operator::exit_when_stdin_closes();
        let run = RunArgs::parse_from(
            std::iter::once("netfence-run".to_owned()).chain(args.run_flags.iter().cloned()),
        );
        return netfence::cli::run::run(&run.args);
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
    match runtime.block_on(bench(&args)) {
        Ok(report) => {
            println!("{}", report.table());
            let missed = report.missed();
            if missed > 0 {
                println!("\n{missed} target(s) missed");
            } else {
                println!("\nevery target met");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(args: &Args) -> anyhow::Result<Report> {
    anyhow::ensure!(args.namespaces > 0, "--namespaces must be at least 1");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let work_dir = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("netfence-scale-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work_dir)?;
    let settings = Settings {
        namespaces: args.namespaces,
        concurrency: usize::from(args.concurrency),
        operator_concurrency: args.operator_concurrency,
        steady: Duration::from_secs(args.steady_seconds),
        drift_share: args.drift_share,
        churn_share: args.churn_share,
        timeout: Duration::from_secs(args.timeout_seconds),
        work_dir,
        dump_audit: args.dump_audit,
    };
    let per_resource = workload::policies_per_resource()?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!(
        "netfence scale: {} namespaces x {per_resource} policies; {cores} cores, load average before the run {}; benchmark concurrency {}, operator --concurrency {}; operator environment {}",
        args.namespaces,
        load.join(" "),
        args.concurrency,
        args.operator_concurrency
            .map_or_else(|| "default".to_owned(), |c| c.to_string()),
        operator::malloc_env_line(),
    );
    let mut report = Report::default();
    report.add(
        "run",
        "API server",
        format!("{:?}", args.target).to_lowercase(),
    );
    if !args.fan_out_only {
        run_main(args, &settings, per_resource, &mut report).await?;
    }
    if !args.skip_fan_out {
        // A fresh server and operator: the fan-out's memory is its own, as a cluster whose
        // namespaces all come from a template.
        let server = start_server(args.target, &settings, "fan-out").await?;
        let env = Env::start(settings, per_resource, server, "fan-out", true).await?;
        let result = phases::fan_out(&env, &mut report).await;
        env.stop().await;
        result?;
    }
    Ok(report)
}

/// The baseline (unless skipped) and the phases of the N resources, on a server of their own.
async fn run_main(
    args: &Args,
    settings: &Settings,
    per_resource: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    // The real server is shared by the baseline and the phases; the sandbox baseline has one
    // of its own.
    let server = start_server(args.target, settings, "main").await?;
    let baseline = if args.skip_baseline {
        None
    } else {
        let result = if server.is_real() {
            phases::baseline(settings, per_resource, &server, report).await
        } else {
            let own = Server::sandbox(settings.namespaces).await?;
            let result = phases::baseline(settings, per_resource, &own, report).await;
            own.stop().await;
            result
        };
        match result {
            Ok(baseline) => Some(baseline),
            Err(error) => {
                server.stop().await;
                return Err(error);
            }
        }
    };
    let env = Env::start(settings.clone(), per_resource, server, "main", false).await?;
    let result = run_phases(&env, baseline, report).await;
    env.stop().await;
    result
}

async fn start_server(target: Target, settings: &Settings, name: &str) -> anyhow::Result<Server> {
    match target {
        Target::Sandbox => Server::sandbox(settings.namespaces).await,
        Target::Real => Server::real(&settings.work_dir.join(name)).await,
    }
}

async fn run_phases(
    env: &Env,
    baseline: Option<phases::Baseline>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let converged = phases::convergence(env, report).await?;
    if let Some(baseline) = baseline {
        let ratio = converged.as_secs_f64() / baseline.elapsed.as_secs_f64().max(f64::EPSILON);
        // Issue 8 set 1.5 on the sandbox; on the real server the target is 1.2.
        let target = if env.server.is_real() { 1.2 } else { 1.5 };
        report.check(
            "convergence",
            "operator time / baseline time",
            format!("{ratio:.2}"),
            &format!("<= {target}"),
            ratio <= target,
        );
    }
    phases::steady(env, report).await?;
    phases::drift(env, baseline, report).await?;
    phases::churn(env, report).await?;
    // The memory target covers every phase of the N resources (the resync relist and the drift
    // burst included).
    let peak = env.operator.usage()?.peak_rss_mib;
    report.check(
        "churn",
        "operator peak RSS, convergence to churn (VmHWM)",
        format!("{peak:.1} MiB"),
        "< 100 MB",
        peak < MEMORY_TARGET_MIB,
    );
    Ok(())
}

/// 100 MB, in MiB.
pub const MEMORY_TARGET_MIB: f64 = 100.0 * 1_000_000.0 / 1_048_576.0;
