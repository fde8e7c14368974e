//! The operator's memory and CPU, measured: the `netfence` binary (as the Deployment runs it:
//! `netfence run --leader-election`, all namespaces) against an in-memory sandbox in this
//! process, through start, convergence of N namespaces, steady state and drift correction. What
//! `config/manager/deployment.yaml`'s requests and limits are sized from.
//!
//! ```sh
//! cargo build --release -p netfence
//! cargo run -p netfence-e2e --example operator_footprint -- target/release/netfence 500
//! ```
//!
//! Linux only (it reads `/proc/PID/status` and `/proc/PID/stat` of the operator's process).
//! Memory is VmRSS now and VmHWM (peak RSS); CPU is user + system time of the operator process,
//! in clock ticks of 10 ms (USER_HZ).

// Kibibytes and clock ticks of one process stay far below 2^52: the casts to f64 are exact.
#![allow(clippy::cast_precision_loss)]

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use k8s_openapi::api::{core::v1::Namespace, networking::v1::NetworkPolicy};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};
use netfence::sandbox::Sandbox;
use netfence_crd::NamespaceIsolation;
use netfence_e2e::example_isolations;
use serde_json::json;

/// One reading of the operator process.
#[derive(Clone, Copy, Debug)]
struct Reading {
    rss_kib: u64,
    peak_kib: u64,
    cpu_ticks: u64,
}

fn read(pid: u32) -> anyhow::Result<Reading> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading /proc/PID/status (Linux only)")?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at index 2 of the man page.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |index: usize| -> u64 {
        fields
            .get(index - 3)
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    Ok(Reading {
        rss_kib: field("VmRSS:"),
        peak_kib: field("VmHWM:"),
        cpu_ticks: ticks(14) + ticks(15),
    })
}

fn report(phase: &str, before: Reading, after: Reading, elapsed: Duration) {
    let cpu_seconds = (after.cpu_ticks - before.cpu_ticks) as f64 / 100.0;
    println!(
        "{phase:<28} wall {:>6.1} s  cpu {cpu_seconds:>6.2} s ({:>4.0} millicores avg)  rss {:>6.1} MiB  peak {:>6.1} MiB",
        elapsed.as_secs_f64(),
        cpu_seconds * 1000.0 / elapsed.as_secs_f64().max(0.001),
        after.rss_kib as f64 / 1024.0,
        after.peak_kib as f64 / 1024.0,
    );
}

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn all_ready(client: &Client, count: usize) -> anyhow::Result<bool> {
    let isolations: Api<NamespaceIsolation> = Api::all(client.clone());
    let ready = isolations
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|resource| {
            resource.status.as_ref().is_some_and(|status| {
                status.observed_generation == resource.metadata.generation
                    && status
                        .conditions
                        .iter()
                        .any(|condition| condition.reason == "Reconciled")
            })
        })
        .count();
    Ok(ready == count)
}

async fn wait_until(
    what: &str,
    limit: Duration,
    check: impl AsyncFn() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !check().await {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::main]
#[allow(clippy::too_many_lines)] // one measurement, phase after phase, read top to bottom
async fn main() -> anyhow::Result<()> {
    let mut arguments = std::env::args().skip(1);
    let binary = PathBuf::from(
        arguments
            .next()
            .context("usage: operator_footprint NETFENCE_BINARY [NAMESPACES]")?,
    );
    let count: usize = arguments.next().map_or(Ok(500), |text| text.parse())?;

    let sandbox = Sandbox::start("127.0.0.1:0".parse()?).await?;
    sandbox.install_netfence_crds()?;
    let directory = std::env::temp_dir().join(format!("netfence-footprint-{}", std::process::id()));
    std::fs::create_dir_all(&directory)?;
    let kubeconfig = directory.join("kubeconfig");
    sandbox.write_kubeconfig(&kubeconfig)?;
    let client = sandbox.client()?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let create_namespace = async |name: &str| -> anyhow::Result<()> {
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        namespaces
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(())
    };
    create_namespace("netfence-system").await?;

    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = Instant::now();
    let child = Command::new(&binary)
        .args(["run", "--leader-election", "--log-format=json"])
        .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("POD_NAME", "netfence-footprint")
        .env("NETFENCE_LEASE_NAMESPACE", "netfence-system")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("failed to start {}", binary.display()))?;
    let pid = child.id();
    let operator = Operator(child);
    let zero = Reading {
        rss_kib: 0,
        peak_kib: 0,
        cpu_ticks: 0,
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = read(pid)?;
    println!(
        "operator: {} (pid {pid}), {count} namespaces",
        binary.display()
    );
    report("start, lease, empty caches", zero, idle, started.elapsed());

    let isolations = example_isolations()?;
    let converging = Instant::now();
    for index in 0..count {
        let name = format!("team-{index:04}");
        create_namespace(&name).await?;
        let mut resource = isolations[index % isolations.len()].1.clone();
        resource["metadata"]["namespace"] = json!(name);
        let resource: NamespaceIsolation = serde_json::from_value(resource)?;
        Api::<NamespaceIsolation>::namespaced(client.clone(), &name)
            .create(&PostParams::default(), &resource)
            .await?;
    }
    wait_until(
        "every resource Reconciled",
        Duration::from_secs(900),
        async || all_ready(&client, count).await.unwrap_or(false),
    )
    .await?;
    let converged = read(pid)?;
    report("convergence", idle, converged, converging.elapsed());
    let policies: Api<NetworkPolicy> = Api::all(client.clone());
    let policy_count = policies
        .list_metadata(&ListParams::default())
        .await?
        .items
        .len();
    println!("{policy_count} NetworkPolicies");

    let steady = Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let after_steady = read(pid)?;
    report(
        "steady state (20 s)",
        converged,
        after_steady,
        steady.elapsed(),
    );

    // Drift: one generated policy deleted in every namespace; the operator restores them all.
    let drifting = Instant::now();
    for index in 0..count {
        let name = format!("team-{index:04}");
        let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &name);
        let list = api.list_metadata(&ListParams::default()).await?;
        if let Some(first) = list
            .items
            .first()
            .and_then(|policy| policy.metadata.name.clone())
        {
            api.delete(&first, &DeleteParams::default()).await?;
        }
    }
    wait_until(
        "every deleted policy restored",
        Duration::from_secs(900),
        async || {
            policies
                .list_metadata(&ListParams::default())
                .await
                .is_ok_and(|list| list.items.len() == policy_count)
        },
    )
    .await?;
    let after_drift = read(pid)?;
    report(
        "drift: 1 policy/namespace",
        after_steady,
        after_drift,
        drifting.elapsed(),
    );
    println!(
        "peak RSS over the run: {:.1} MiB",
        after_drift.peak_kib as f64 / 1024.0
    );
    drop(operator);
    sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(&directory);
    Ok(())
}
