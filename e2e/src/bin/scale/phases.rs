//! The phases of the benchmark, one function each; each adds its figures to the [`Report`].
//!
//! ```text
//! baseline (own sandbox, or the real server) -> [server + operator] convergence -> steady -> drift -> churn
//! [a fresh server + operator] template fan-out
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::{api::networking::v1::NetworkPolicy, apimachinery::pkg::apis::meta::v1::Time};
use kube::{
    Api, Client, Resource,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use netfence::cli::run::USER_AGENT;
use netfence_core::{
    meta::FIELD_MANAGER,
    plan,
    status::{self, Outcome},
};
use netfence_crd::NamespaceIsolation;
use serde_json::json;

use crate::{
    operator::{Operator, Usage, to_f64},
    report::Report,
    server::Server,
    workload::{
        self, BASELINE_AGENT, BENCH_AGENT, FIRST_PORT, Isolations, Policies, Writes, namespace_name,
    },
};

/// What every phase needs to know.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How many namespaces (one NamespaceIsolation each).
    pub namespaces: usize,
    /// How many requests the benchmark's clients (and the baseline) keep in flight.
    pub concurrency: usize,
    /// `netfence run --concurrency`, or netfence's default.
    pub operator_concurrency: Option<u16>,
    /// The steady-state window.
    pub steady: Duration,
    /// The share of policies deleted in the drift phase.
    pub drift_share: f64,
    /// The share of resources edited in the churn phase.
    pub churn_share: f64,
    /// The longest any phase waits.
    pub timeout: Duration,
    /// Where the kubeconfig and the operator's log go.
    pub work_dir: PathBuf,
    /// Write each phase's audit log to `work_dir/<phase>.audit`.
    pub dump_audit: bool,
}

/// How long the operator must make no request before a phase's writes are counted.
const QUIET: Duration = Duration::from_secs(2);

/// The API server, the operator and the benchmark's client, for the phases after the baseline.
pub struct Env {
    /// The settings.
    pub settings: Settings,
    /// The API server.
    pub server: Server,
    /// The benchmark's own client (User-Agent [`BENCH_AGENT`]).
    pub user: Client,
    /// The operator process.
    pub operator: Operator,
    /// When each resource became Ready.
    pub isolations: Isolations,
    /// The namespaces of the workload.
    pub namespaces: Vec<String>,
    /// Policies rendered per resource.
    pub per_resource: usize,
    watch: tokio::task::JoinHandle<()>,
}

impl Env {
    /// Create what a healthy cluster has ([`workload::healthy_cluster`]) and the workload's
    /// namespaces (unless `empty`) on `server`, start the operator and
    /// wait until it is ready. `name` tells this run's files apart.
    pub async fn start(
        settings: Settings,
        per_resource: usize,
        server: Server,
        name: &str,
        empty: bool,
    ) -> anyhow::Result<Env> {
        let user = server.client(BENCH_AGENT, false)?;
        workload::healthy_cluster(&user).await?;
        if !empty {
            workload::create_namespaces(
                &user,
                settings.namespaces,
                namespace_name,
                settings.concurrency,
            )
            .await?;
        }
        let kubeconfig = settings.work_dir.join(format!("{name}.kubeconfig"));
        server.write_operator_kubeconfig(&kubeconfig)?;
        let (isolations, watch) = Isolations::watch(&user);
        let log = settings.work_dir.join(format!("{name}-operator.log"));
        let mut operator = Operator::start(&kubeconfig, settings.operator_concurrency, &log)?;
        operator.wait_ready(Duration::from_secs(60)).await?;
        eprintln!(
            "operator running (pid {}, log {})",
            operator.pid(),
            log.display()
        );
        let namespaces = if empty {
            Vec::new()
        } else {
            (0..settings.namespaces).map(namespace_name).collect()
        };
        Ok(Env {
            settings,
            server,
            user,
            operator,
            isolations,
            namespaces,
            per_resource,
            watch,
        })
    }

    /// Stop the operator and the server.
    pub async fn stop(self) {
        self.watch.abort();
        self.operator.stop().await;
        self.server.stop().await;
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.settings.timeout
    }

    /// The audit log of the phase that started at `started`, written out when asked for.
    fn audit(
        &self,
        phase: &str,
        started: Instant,
    ) -> anyhow::Result<Vec<netfence_sandbox::AuditEntry>> {
        self.server.audit_complete()?;
        let entries = self.server.audit();
        if self.settings.dump_audit {
            let path = self.settings.work_dir.join(format!("{phase}.audit"));
            workload::dump_audit(&path, &entries, started)?;
        }
        Ok(entries)
    }

    async fn reconciles(&self) -> f64 {
        self.operator
            .metric("netfence_reconciles_total")
            .await
            .unwrap_or_default()
    }

    /// The reconciles since the operator had made `before`.
    async fn report_reconciles(&self, report: &mut Report, phase: &'static str, before: f64) {
        let reconciles = self.reconciles().await - before;
        report.add(phase, "reconciles", format!("{reconciles:.0}"));
    }
}

/// `share` (0 to 1) of `len`, rounded up: a rank or a count of items.
// `share` is in 0..=1, so the product is in 0..=len: neither sign nor size is lost.
#[allow(clippy::cast_sign_loss, clippy::cast_precision_loss)]
fn share_of(share: f64, len: usize, round: fn(f64) -> f64) -> usize {
    (round(share.clamp(0.0, 1.0) * len as f64) as usize).min(len)
}

/// Percentile `share` (0 to 1) of sorted durations, by the nearest-rank method.
fn percentile(sorted: &[Duration], share: f64) -> Duration {
    let rank = share_of(share, sorted.len(), f64::ceil).max(1);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

fn ratio(numerator: usize, denominator: usize) -> f64 {
    if denominator == 0 {
        return if numerator == 0 { 1.0 } else { f64::INFINITY };
    }
    to_f64(numerator as u64) / to_f64(denominator as u64)
}

/// Every `1/share`-th element, spread evenly: `round(len * share)` of them (at least one).
fn every_share<T: Clone>(items: &[T], share: f64) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    let wanted = share_of(share, items.len(), f64::round).max(1);
    (0..wanted)
        .map(|index| items[index * items.len() / wanted].clone())
        .collect()
}

/// The policy and status writes of one phase, next to the minimum, and the Events beside them.
fn report_writes(report: &mut Report, phase: &'static str, writes: &Writes, minimum: usize) {
    report.add(
        phase,
        "writes: policy creates / applies / other / deletes",
        format!(
            "{} / {} / {} / {}",
            writes.policy_creates,
            writes.policy_applies,
            writes.policy_other,
            writes.policy_deletes
        ),
    );
    report.add(
        phase,
        "writes: status / other NamespaceIsolation writes",
        format!("{} / {}", writes.status, writes.resource),
    );
    let value = ratio(writes.counted(), minimum);
    report.check(
        phase,
        "writes / minimum (Events excluded)",
        format!("{} / {minimum} = {value:.2}", writes.counted()),
        "1.00",
        writes.counted() == minimum,
    );
    report.add(
        phase,
        "Events written (for people; not in the minimum)",
        writes.events.to_string(),
    );
    if writes.failed > 0 || writes.other > 0 {
        report.add(
            phase,
            "failed writes / writes to other resources",
            format!("{} / {}", writes.failed, writes.other),
        );
    }
}

fn report_usage(report: &mut Report, phase: &'static str, before: Usage, after: Usage) {
    report.add(
        phase,
        "operator CPU (user + system)",
        format!("{:.2} s", after.cpu_seconds - before.cpu_seconds),
    );
    report.add(
        phase,
        "operator RSS now / peak (VmRSS / VmHWM)",
        format!("{:.1} / {:.1} MiB", after.rss_mib, after.peak_rss_mib),
    );
}

/// The baseline: a plain client makes exactly the minimum writes of convergence, as fast as it
/// can, on a sandbox of its own (or, on the real server, in namespaces of its own, emptied
/// afterwards). Each of `concurrency` tasks
/// creates a resource (as the user does in the convergence phase), server-side applies its
/// rendered policies and writes its status, then takes the next resource.
pub async fn baseline(
    settings: &Settings,
    per_resource: usize,
    server: &Server,
    report: &mut Report,
) -> anyhow::Result<Baseline> {
    eprintln!(
        "baseline: {} resources, minimum writes from a plain client",
        settings.namespaces
    );
    let user = server.client(BENCH_AGENT, false)?;
    let baseline_client = server.client(BASELINE_AGENT, true)?;
    workload::create_namespaces(
        &user,
        settings.namespaces,
        workload::baseline_namespace,
        settings.concurrency,
    )
    .await?;
    server.wait_quiet(QUIET, settings.timeout).await;
    server.audit_clear();
    let started = Instant::now();
    stream::iter(0..settings.namespaces)
        .map(|index| baseline_one(&user, &baseline_client, index))
        .buffer_unordered(settings.concurrency)
        .try_collect::<()>()
        .await?;
    let elapsed = started.elapsed();
    // The real server logs a request after answering it: the last ones are in once it is quiet.
    server.wait_quiet(QUIET, settings.timeout).await;
    server.audit_complete()?;
    let writes = Writes::of(&server.audit(), BASELINE_AGENT);
    if server.is_real() {
        workload::remove_baseline(&user, settings.namespaces, settings.concurrency).await?;
    }
    let minimum = settings.namespaces * (per_resource + 1);
    report.add(
        "baseline",
        "time: create + minimum writes, plain client",
        seconds(elapsed),
    );
    report.add(
        "baseline",
        "writes (policy applies + status)",
        format!(
            "{} + {} (minimum {minimum}; {} failed)",
            writes.policy_applies, writes.status, writes.failed
        ),
    );
    anyhow::ensure!(
        writes.counted() == minimum && writes.failed == 0,
        "the baseline made {} writes ({} failed) instead of {minimum}",
        writes.counted(),
        writes.failed
    );
    // Every write of the window: the resources' creates too, which the server took meanwhile.
    let all_writes = minimum + settings.namespaces;
    let writes_per_second = to_f64(all_writes as u64) / elapsed.as_secs_f64().max(f64::EPSILON);
    report.add(
        "baseline",
        "write rate the server took (creates, applies, statuses)",
        format!("{writes_per_second:.0} writes/s"),
    );
    Ok(Baseline {
        elapsed,
        writes_per_second,
    })
}

/// What the baseline measured: the time of the minimum writes, and the server's write rate.
#[derive(Clone, Copy, Debug)]
pub struct Baseline {
    /// Creates and minimum writes of N resources, from a plain client.
    pub elapsed: Duration,
    /// Writes per second the server took from it.
    pub writes_per_second: f64,
}

async fn baseline_one(user: &Client, writer: &Client, index: usize) -> anyhow::Result<()> {
    let namespace = workload::baseline_namespace(index);
    let created = Api::<NamespaceIsolation>::namespaced(user.clone(), &namespace)
        .create(&PostParams::default(), &workload::isolation(&namespace)?)
        .await
        .with_context(|| format!("failed to create the resource of {namespace}"))?;
    let policies = workload::rendered(&created)?;
    let api: Api<NetworkPolicy> = Api::namespaced(writer.clone(), &namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for policy in &policies {
        let name = policy.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(plan::apply_body(policy)))
            .await
            .with_context(|| format!("failed to apply {namespace}/{name}"))?;
        names.push(name);
    }
    let new = status::status(
        &Outcome::Reconciled { policies: names },
        created.metadata.generation,
        None,
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
    let body = json!({
        "apiVersion": NamespaceIsolation::api_version(&()),
        "kind": NamespaceIsolation::kind(&()),
        "status": new,
    });
    Api::<NamespaceIsolation>::namespaced(writer.clone(), &namespace)
        .patch_status(workload::NAME, &params, &Patch::Apply(&body))
        .await
        .with_context(|| format!("failed to write the status of {namespace}"))?;
    Ok(())
}

/// Convergence: every resource created at once (`concurrency` creates in flight); the time
/// until each is Ready, the operator's writes next to the minimum, its CPU and memory.
pub async fn convergence(env: &Env, report: &mut Report) -> anyhow::Result<Duration> {
    let count = env.namespaces.len();
    eprintln!("convergence: creating {count} NamespaceIsolations");
    env.server.audit_clear();
    let before = env.operator.usage()?;
    let reconciles = env.reconciles().await;
    let started = Instant::now();
    stream::iter(env.namespaces.clone())
        .map(|namespace| {
            let client = env.user.clone();
            async move {
                Api::<NamespaceIsolation>::namespaced(client, &namespace)
                    .create(&PostParams::default(), &workload::isolation(&namespace)?)
                    .await
                    .with_context(|| format!("failed to create the resource of {namespace}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(env.settings.concurrency)
        .try_collect::<()>()
        .await?;
    let created = started.elapsed();
    let wanted: HashMap<String, i64> = env
        .namespaces
        .iter()
        .map(|namespace| (namespace.clone(), 1))
        .collect();
    let ready = env.isolations.wait_ready(&wanted, env.deadline()).await;
    let peak_during = env.operator.usage()?;
    let elapsed = match ready {
        Ok(last) => last.saturating_duration_since(started),
        Err(missing) => {
            anyhow::bail!(
                "{missing} of {count} resources were not Ready within {}s",
                env.settings.timeout.as_secs()
            )
        }
    };
    env.server.wait_quiet(QUIET, env.settings.timeout).await;
    let after = env.operator.usage()?;
    let entries = env.audit("convergence", started)?;
    let writes = Writes::of(&entries, USER_AGENT);
    let (gets, lists, watches) = workload::reads(&entries, USER_AGENT);
    report.add(
        "convergence",
        "time to create every resource (benchmark client)",
        seconds(created),
    );
    report.add(
        "convergence",
        "time until every resource is Ready",
        seconds(elapsed),
    );
    report_writes(
        report,
        "convergence",
        &writes,
        count * (env.per_resource + 1),
    );
    report.add(
        "convergence",
        "reads: get / list / watch",
        format!("{gets} / {lists} / {watches}"),
    );
    env.report_reconciles(report, "convergence", reconciles)
        .await;
    report_usage(report, "convergence", before, after);
    report.add(
        "convergence",
        "operator peak RSS (VmHWM)",
        format!(
            "{:.1} MiB",
            peak_during.peak_rss_mib.max(after.peak_rss_mib)
        ),
    );
    Ok(elapsed)
}

/// One namespace in this many gets a foreign policy before the steady window.
const FOREIGN_EVERY: usize = 10;

/// A team's own NetworkPolicy in every [`FOREIGN_EVERY`]th namespace (monitoring scraping every
/// pod on 9090), as clusters have them: the steady window then shows the intent audit writes
/// nothing either while they stay. Returns how many resources say `Isolated=False` once the
/// operator is quiet again.
async fn foreign_policies(env: &Env) -> anyhow::Result<usize> {
    stream::iter(env.namespaces.iter().step_by(FOREIGN_EVERY).cloned())
        .map(|namespace| {
            let client = env.user.clone();
            async move {
                let policy: NetworkPolicy = serde_json::from_value(json!({
                    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": "allow-monitoring", "namespace": namespace},
                    "spec": {"podSelector": {}, "ingress": [{
                        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                        "ports": [{"port": 9090}],
                    }]},
                }))?;
                Api::<NetworkPolicy>::namespaced(client, &namespace)
                    .create(&PostParams::default(), &policy)
                    .await
                    .with_context(|| format!("failed to create the foreign policy of {namespace}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(env.settings.concurrency)
        .try_collect::<()>()
        .await?;
    env.server.wait_quiet(QUIET, env.settings.timeout).await;
    let resources = Api::<NamespaceIsolation>::all(env.user.clone())
        .list(&kube::api::ListParams::default())
        .await?;
    Ok(resources
        .items
        .iter()
        .filter(|resource| {
            resource.status.as_ref().is_some_and(|status| {
                status
                    .conditions
                    .iter()
                    .any(|condition| condition.type_ == "Isolated" && condition.status == "False")
            })
        })
        .count())
}

/// Steady state: a window with a forced resync in the middle (history compacted, so every watch
/// answers 410 Gone and the operator lists everything again, and every watch closed). No write
/// at all may happen.
pub async fn steady(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    eprintln!(
        "steady state: {}s with a forced resync (compaction + closed watches)",
        env.settings.steady.as_secs()
    );
    let widened = foreign_policies(env).await?;
    report.add(
        "steady",
        "foreign NetworkPolicies present (every 10th namespace; its audit says Widened)",
        format!(
            "{} ({widened} resources Isolated=False)",
            env.namespaces.len().div_ceil(FOREIGN_EVERY)
        ),
    );
    env.server.audit_clear();
    let before = env.operator.usage()?;
    let reconciles = env.reconciles().await;
    let started = Instant::now();
    let half = env.settings.steady / 2;
    tokio::time::sleep(half).await;
    let resync = Instant::now();
    env.server.force_relist().await?;
    let relisted = wait_relisted(env, resync).await;
    tokio::time::sleep_until((started + env.settings.steady).into()).await;
    // The window ends only once the relist's reconciles are done (their writes must count).
    env.server.wait_quiet(QUIET, env.settings.timeout).await;
    let after = env.operator.usage()?;
    let entries = env.audit("steady", started)?;
    let writes = Writes::of(&entries, USER_AGENT);
    let (gets, lists, watches) = workload::reads(&entries, USER_AGENT);
    let total = writes.counted() + writes.events;
    report.check(
        "steady",
        &format!(
            "writes in {}s, resync included (Events too)",
            env.settings.steady.as_secs()
        ),
        total.to_string(),
        "0",
        total == 0,
    );
    report.add(
        "steady",
        if env.server.is_real() {
            "resync: operator listed everything again after"
        } else {
            "resync: operator watching again after (relist included)"
        },
        relisted.map_or_else(|| "not within the window".to_owned(), seconds),
    );
    report.add(
        "steady",
        "reads: get / list / watch (the relist)",
        format!("{gets} / {lists} / {watches}"),
    );
    report.add(
        "steady",
        "reconciles (a relist reconciles only what changed while the watches were down)",
        format!("{:.0}", env.reconciles().await - reconciles),
    );
    report_usage(report, "steady", before, after);
    Ok(())
}

/// How long after `since` the operator had listed both NamespaceIsolations and NetworkPolicies
/// again and watched both from the new lists (on the real server: listed both); `None` if not
/// within the phase's timeout.
async fn wait_relisted(env: &Env, since: Instant) -> Option<Duration> {
    let deadline = env.deadline();
    while Instant::now() < deadline {
        let entries = env.server.audit();
        let mut listed: [Option<Instant>; 2] = [None; 2];
        let mut watching: [Option<Instant>; 2] = [None; 2];
        for entry in entries
            .iter()
            .filter(|entry| entry.user_agent == USER_AGENT && entry.received >= since)
        {
            let index = usize::from(entry.resource == "networkpolicies");
            match entry.verb.as_str() {
                "list" => listed[index] = Some(entry.received),
                "watch" if listed[index].is_some() => watching[index] = Some(entry.received),
                _ => {}
            }
        }
        // kube-apiserver audits a watch when it ends, not when it starts: there, the relist is
        // done once both lists are answered.
        if env.server.is_real() {
            watching = listed;
        }
        if let [Some(first), Some(second)] = watching {
            return Some(first.max(second).saturating_duration_since(since));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Drift: delete a share of the generated policies at once; how long until each is back, and
/// the writes made for it.
pub async fn drift(
    env: &Env,
    baseline: Option<Baseline>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (policies, task) = Policies::watch(&env.user);
    policies.wait_synced(env.settings.timeout).await?;
    let known: BTreeMap<(String, String), workload::Seen> =
        policies.snapshot().into_iter().collect();
    let keys: Vec<(String, String)> = known.keys().cloned().collect();
    let chosen = every_share(&keys, env.settings.drift_share);
    eprintln!(
        "drift: deleting {} of {} policies at once",
        chosen.len(),
        keys.len()
    );
    env.server.audit_clear();
    let before = env.operator.usage()?;
    let reconciles = env.reconciles().await;
    let started = Instant::now();
    let deleted: HashMap<(String, String), Instant> = stream::iter(chosen.clone())
        .map(|(namespace, name)| {
            let api: Api<NetworkPolicy> = Api::namespaced(env.user.clone(), &namespace);
            async move {
                api.delete(&name, &DeleteParams::default())
                    .await
                    .with_context(|| format!("failed to delete {namespace}/{name}"))?;
                anyhow::Ok(((namespace, name), Instant::now()))
            }
        })
        .buffer_unordered(env.settings.concurrency)
        .try_collect()
        .await?;
    let deadline = env.deadline();
    let restored: Vec<Instant> = loop {
        let back = policies.recreated(&chosen, &known);
        let missing = back.iter().filter(|at| at.is_none()).count();
        if missing == 0 {
            break back.into_iter().flatten().collect();
        }
        if Instant::now() >= deadline {
            task.abort();
            anyhow::bail!(
                "{missing} of {} deleted policies were not restored within {}s",
                chosen.len(),
                env.settings.timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    task.abort();
    let mut latencies: Vec<Duration> = chosen
        .iter()
        .zip(&restored)
        .filter_map(|(key, back)| Some(back.saturating_duration_since(*deleted.get(key)?)))
        .collect();
    latencies.sort();
    let all_back = restored.iter().max().copied().unwrap_or(started);
    env.server.wait_quiet(QUIET, env.settings.timeout).await;
    let after = env.operator.usage()?;
    let writes = Writes::of(&env.audit("drift", started)?, USER_AGENT);
    report.add(
        "drift",
        "policies deleted at once (benchmark client)",
        chosen.len().to_string(),
    );
    report.add(
        "drift",
        "restored, each from its delete: p50 / max",
        format!(
            "{} / {}",
            seconds(percentile(&latencies, 0.5)),
            seconds(latencies.last().copied().unwrap_or_default())
        ),
    );
    report.add(
        "drift",
        "restored, each from its delete: p99",
        seconds(percentile(&latencies, 0.99)),
    );
    let restoration = all_back.saturating_duration_since(started);
    report.add(
        "drift",
        "time from the first delete until all are back",
        seconds(restoration),
    );
    if let Some(baseline) = baseline {
        // The fastest the server takes the writes of the episode, at the rate the plain client
        // got from it: the benchmark's deletes and as many restorations, one write each (the
        // time is counted from the first delete, so the deletes are in it too).
        let episode = 2 * chosen.len();
        let floor = to_f64(episode as u64) / baseline.writes_per_second.max(f64::EPSILON);
        let ratio = restoration.as_secs_f64() / floor.max(f64::EPSILON);
        report.check(
            "drift",
            "all back / ((deletes + restorations) / the baseline's write rate)",
            format!("{} / {floor:.2} s = {ratio:.2}", seconds(restoration)),
            "<= 1.2",
            ratio <= 1.2,
        );
    }
    report_writes(report, "drift", &writes, chosen.len());
    env.report_reconciles(report, "drift", reconciles).await;
    report_usage(report, "drift", before, after);
    Ok(())
}

/// Spec churn: one flow changed in a share of the resources; the writes made next to the
/// policies that really changed (rendered before and after) plus one status write each.
pub async fn churn(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let chosen = every_share(&env.namespaces, env.settings.churn_share);
    eprintln!(
        "churn: changing one flow in {} of {} resources",
        chosen.len(),
        env.namespaces.len()
    );
    let mut before_render = HashMap::new();
    for namespace in &chosen {
        let current = Api::<NamespaceIsolation>::namespaced(env.user.clone(), namespace)
            .get(workload::NAME)
            .await?;
        before_render.insert(namespace.clone(), workload::rendered(&current)?);
    }
    env.server.audit_clear();
    let before = env.operator.usage()?;
    let reconciles = env.reconciles().await;
    let started = Instant::now();
    let patch = json!({"spec": {"flows": workload::flows(FIRST_PORT + 1)}});
    let patched: Vec<NamespaceIsolation> = stream::iter(chosen.clone())
        .map(|namespace| {
            let api: Api<NamespaceIsolation> = Api::namespaced(env.user.clone(), &namespace);
            let patch = patch.clone();
            async move {
                api.patch(
                    workload::NAME,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .with_context(|| format!("failed to edit the resource of {namespace}"))
            }
        })
        .buffer_unordered(env.settings.concurrency)
        .try_collect()
        .await?;
    let mut changed = 0;
    let mut wanted = HashMap::new();
    for resource in &patched {
        let namespace = resource.metadata.namespace.clone().unwrap_or_default();
        let after = workload::rendered(resource)?;
        let old = before_render.get(&namespace).cloned().unwrap_or_default();
        changed += changed_policies(&old, &after);
        wanted.insert(namespace, resource.metadata.generation.unwrap_or_default());
    }
    let elapsed = match env.isolations.wait_ready(&wanted, env.deadline()).await {
        Ok(last) => last.saturating_duration_since(started),
        Err(missing) => anyhow::bail!(
            "{missing} of {} edited resources were not Ready within {}s",
            chosen.len(),
            env.settings.timeout.as_secs()
        ),
    };
    env.server.wait_quiet(QUIET, env.settings.timeout).await;
    let after = env.operator.usage()?;
    let writes = Writes::of(&env.audit("churn", started)?, USER_AGENT);
    report.add(
        "churn",
        "resources edited / policies that really changed",
        format!("{} / {changed}", chosen.len()),
    );
    report.add(
        "churn",
        "time until every edited resource is Ready",
        seconds(elapsed),
    );
    report_writes(report, "churn", &writes, changed + chosen.len());
    env.report_reconciles(report, "churn", reconciles).await;
    report_usage(report, "churn", before, after);
    Ok(())
}

/// Policies that differ between two renders of a resource: changed, added or removed.
fn changed_policies(before: &[NetworkPolicy], after: &[NetworkPolicy]) -> usize {
    let by_name = |policies: &[NetworkPolicy]| -> BTreeMap<String, serde_json::Value> {
        policies
            .iter()
            .map(|policy| {
                (
                    policy.metadata.name.clone().unwrap_or_default(),
                    serde_json::to_value(policy).unwrap_or_default(),
                )
            })
            .collect()
    };
    let before = by_name(before);
    let after = by_name(after);
    let changed_or_removed = before
        .iter()
        .filter(|(name, policy)| after.get(*name) != Some(policy))
        .count();
    let added = after
        .keys()
        .filter(|name| !before.contains_key(*name))
        .count();
    changed_or_removed + added
}

/// The label that selects the fan-out phase's namespaces.
const FAN_OUT_LABEL: &str = "netfence.io/scale-fan-out";

/// Template fan-out: N fresh namespaces (untimed setup), then one IsolationTemplate with the
/// workload's spec selecting them all; the time until every generated resource is Ready, and the
/// writes next to the minimum (one apply per generated resource and per policy, one status per
/// resource, one template status).
pub async fn fan_out(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let count = env.settings.namespaces;
    eprintln!("template fan-out: one IsolationTemplate over {count} new namespaces");
    let names: Vec<String> = (0..count)
        .map(|index| format!("fan-out-{index:05}"))
        .collect();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.user.clone());
    stream::iter(names.clone())
        .map(|name| {
            let namespaces = namespaces.clone();
            async move {
                let namespace = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {FAN_OUT_LABEL: "true"}},
                }))?;
                namespaces
                    .create(&PostParams::default(), &namespace)
                    .await
                    .with_context(|| format!("failed to create namespace {name}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(env.settings.concurrency)
        .try_collect::<()>()
        .await?;
    env.server.wait_quiet(QUIET, env.settings.timeout).await;
    env.server.audit_clear();
    let before = env.operator.usage()?;
    let started = Instant::now();
    let template: netfence_crd::IsolationTemplate = serde_json::from_value(json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "IsolationTemplate",
        "metadata": {"name": "fan-out"},
        "spec": {
            "namespaceSelector": {"matchLabels": {FAN_OUT_LABEL: "true"}},
            "isolationName": workload::NAME,
            "template": {"spec": workload::spec()},
        },
    }))?;
    Api::<netfence_crd::IsolationTemplate>::all(env.user.clone())
        .create(&PostParams::default(), &template)
        .await
        .context("failed to create the IsolationTemplate")?;
    let wanted: HashMap<String, i64> = names.iter().map(|name| (name.clone(), 1)).collect();
    let elapsed = match env.isolations.wait_ready(&wanted, env.deadline()).await {
        Ok(last) => last.saturating_duration_since(started),
        Err(missing) => anyhow::bail!(
            "{missing} of {count} generated resources were not Ready within {}s",
            env.settings.timeout.as_secs()
        ),
    };
    env.server.wait_quiet(QUIET, env.settings.timeout).await;
    let after = env.operator.usage()?;
    let entries = env.audit("fan-out", started)?;
    let writes = Writes::of(&entries, USER_AGENT);
    report.add(
        "fan-out",
        "time until every generated resource is Ready",
        seconds(elapsed),
    );
    report.add(
        "fan-out",
        "writes to the template's status (in \"other\" below)",
        writes.other.to_string(),
    );
    report_writes(
        report,
        "fan-out",
        &writes,
        count * (env.per_resource + 2) + 1,
    );
    report_usage(report, "fan-out", before, after);
    report.check(
        "fan-out",
        "operator peak RSS, its own run (VmHWM)",
        format!("{:.1} MiB", after.peak_rss_mib),
        "< 100 MB",
        after.peak_rss_mib < crate::MEMORY_TARGET_MIB,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_percentiles() {
        let items: Vec<usize> = (0..95).collect();
        let chosen = every_share(&items, 0.1);
        assert_eq!(chosen.len(), 10);
        assert_eq!(chosen[..3], [0, 9, 19]);
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&sorted, 1.0), Duration::from_millis(100));
    }
}
