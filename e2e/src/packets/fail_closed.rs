//! Point 4: fail-closed, measured in packets. `examples/three-tier.yaml` runs; a prober opens a
//! forbidden connection (a pod in no tier, and the frontend, to the database on 5432/TCP) and an
//! allowed one (backend to database on 5432/TCP) every 25 ms each, while:
//!
//! ```text
//! 1 operator killed   the deny deleted and the database's policy narrowed (no ingress) by an
//!                     admin while no operator runs; then the operator restarts and restores them
//! 2 drift             with the operator running: the database's policy deleted, the deny edited
//!                     to select nothing
//! 3 spec changed      the NamespaceIsolation gains 5433 on backend -> database (which must then
//!                     connect)
//! 4 tenant refused    with config/admission/ installed, a tenant with `edit` tries to delete the
//!                     deny and to open the database's policy to everyone: both refused
//! ```
//!
//! After phases 1 and 2 the generated policies must be exactly what they were converged (the
//! deny included). A difference is: a forbidden connection that connected, an attempt that timed
//! out or failed (not a verdict: kube-router refuses at once), an allowed attempt that failed
//! while converged (phase 0). The allowed one's success rate and longest outage are reported per
//! phase (phase 1's outage is, by design, the operator's downtime: an admin's narrowing edit
//! stays until an operator runs).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use netfence_core::{ValidatedIsolation, meta};
use netfence_crd::isolation::Protocol;
use netfence_verify::intent::world;
use serde_json::json;

use super::{
    Harness, Totals,
    examples::{self, Case},
};
use crate::{Env, apply_object};

/// One attempt of the prober.
#[derive(Clone, Debug)]
struct Attempt {
    phase: usize,
    forbidden: bool,
    connected: bool,
    /// Connected or refused (kube-router's answer); a timeout or an error is not a verdict.
    clean: bool,
    at: Instant,
}

/// Per phase: attempts and successes of each kind, and the allowed one's longest outage.
#[derive(Clone, Debug, Default)]
struct PhaseFigures {
    forbidden_attempts: u64,
    forbidden_connected: u64,
    /// Attempts that timed out or failed (a lost packet, a dead agent): never a verdict.
    unclean: u64,
    allowed_attempts: u64,
    allowed_connected: u64,
    longest_outage: Duration,
}

fn figures(attempts: &[Attempt], phases: usize) -> Vec<PhaseFigures> {
    let mut result = vec![PhaseFigures::default(); phases];
    let mut outage_start: Option<Instant> = None;
    for attempt in attempts {
        let figures = &mut result[attempt.phase];
        figures.unclean += u64::from(!attempt.clean);
        if attempt.forbidden {
            figures.forbidden_attempts += 1;
            figures.forbidden_connected += u64::from(attempt.connected);
            continue;
        }
        figures.allowed_attempts += 1;
        if attempt.connected {
            figures.allowed_connected += 1;
            if let Some(start) = outage_start.take() {
                let outage = attempt.at - start;
                figures.longest_outage = figures.longest_outage.max(outage);
            }
        } else if outage_start.is_none() {
            outage_start = Some(attempt.at);
        }
    }
    if let (Some(start), Some(last)) = (outage_start, attempts.last()) {
        let figures = &mut result[last.phase];
        figures.longest_outage = figures.longest_outage.max(last.at - start);
    }
    result
}

const PHASES: [&str; 5] = [
    "converged",
    "operator killed, deny deleted and database policy narrowed, operator restarted",
    "operator running: database policy deleted, deny edited to select nothing",
    "NamespaceIsolation spec changed (a port added)",
    "tenant with edit, admission policy installed: delete and open refused",
];

async fn generated(
    client: &Client,
    namespace: &str,
    role: &str,
    tier: Option<&str>,
) -> anyhow::Result<String> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
    let mut selector = format!(
        "{}={},{}={role}",
        meta::MANAGED_BY_LABEL,
        meta::MANAGED_BY,
        meta::ROLE_LABEL
    );
    if let Some(tier) = tier {
        let _ = write!(selector, ",{}={tier}", meta::TIER_LABEL);
    }
    api.list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .find_map(|policy| policy.metadata.name)
        .with_context(|| format!("no generated policy labelled {selector} in {namespace}"))
}

/// Every generated policy of `namespace`: name -> spec.
async fn generated_specs(
    client: &Client,
    namespace: &str,
) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{}={}", meta::MANAGED_BY_LABEL, meta::MANAGED_BY);
    let mut specs = BTreeMap::new();
    for policy in api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        if let Some(name) = policy.metadata.name.clone() {
            specs.insert(name, serde_json::to_value(&policy.spec)?);
        }
    }
    Ok(specs)
}

/// Wait until the generated policies are exactly `expected` again (netfence restored every
/// deleted and edited one), then until kube-router has synced them.
async fn wait_restored(
    harness: &Harness,
    namespace: &str,
    expected: &BTreeMap<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let current = generated_specs(&harness.client, namespace).await?;
        if &current == expected {
            return harness.synced().await;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the generated policies of {namespace} were not restored within 60 s: {} differ",
                expected
                    .iter()
                    .filter(|(name, spec)| current.get(*name) != Some(spec))
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The endpoints the prober uses.
struct Roles {
    backend: usize,
    database: usize,
    frontend: usize,
    no_tier: usize,
}

impl Roles {
    fn find(endpoints: &[super::Endpoint]) -> anyhow::Result<Roles> {
        let find = |label: &str| {
            endpoints
                .iter()
                .position(|endpoint| endpoint.label == label)
                .with_context(|| format!("no endpoint {label} in the three-tier world"))
        };
        Ok(Roles {
            backend: find("backend")?,
            database: find("database")?,
            frontend: find("frontend")?,
            no_tier: find("(no tier)")?,
        })
    }
}

/// The disruptions, phase by phase (see the module's documentation); returns the tenant's
/// refused requests.
#[allow(clippy::too_many_lines)]
async fn disrupt(
    harness: &Harness,
    env: &mut Env,
    case: &Case,
    namespace: &str,
    phase: &std::sync::atomic::AtomicUsize,
    endpoints: &[super::Endpoint],
    roles: &Roles,
) -> anyhow::Result<Vec<String>> {
    let client = harness.client.clone();
    let name = case.isolation.metadata.name.clone().unwrap_or_default();
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
    let converged = generated_specs(&client, namespace).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1: the operator killed; an admin deletes the deny and narrows the database's policy.
    phase.store(1, Ordering::Relaxed);
    let watched = env.kill_controllers().await;
    let drift = async {
        let deny = generated(&client, namespace, "default-deny", None).await?;
        let database = generated(&client, namespace, "tier", Some("database")).await?;
        policies.delete(&deny, &DeleteParams::default()).await?;
        policies
            .patch(
                &database,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"ingress": []}})),
            )
            .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        anyhow::Ok(())
    }
    .await;
    // Restarted whatever happened: a dead operator would leave the namespace's finalizer.
    for watched in watched {
        env.start_controller(watched.as_deref());
    }
    drift?;
    wait_restored(harness, namespace, &converged).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 2: drift with the operator running.
    phase.store(2, Ordering::Relaxed);
    let deny = generated(&client, namespace, "default-deny", None).await?;
    let database = generated(&client, namespace, "tier", Some("database")).await?;
    policies.delete(&database, &DeleteParams::default()).await?;
    policies
        .patch(
            &deny,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"podSelector": {"matchLabels": {"netfence.io/packets": "nothing"}}}})),
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_restored(harness, namespace, &converged).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 3: the spec changes: backend -> database gains 5433, which must then connect.
    phase.store(3, Ordering::Relaxed);
    let mut changed = case.clone();
    let flow = changed
        .isolation
        .spec
        .flows
        .iter_mut()
        .find(|flow| flow.from == "backend" && flow.to == "database")
        .context("three-tier.yaml has no backend -> database flow")?;
    let mut ports = flow.ports.clone().unwrap_or_default();
    let mut extra = ports
        .first()
        .cloned()
        .context("the backend -> database flow has no port")?;
    extra.port = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(5433);
    ports.push(extra);
    flow.ports = Some(ports);
    examples::apply_isolation(harness, &changed, namespace).await?;
    examples::wait_ready(env, namespace, &name).await?;
    harness.synced().await?;
    let added = SocketAddr::new(IpAddr::V4(endpoints[roles.database].network.address), 5433);
    let outcome = endpoints[roles.backend]
        .network
        .agent
        .probe(Protocol::TCP, added)
        .await;
    if !outcome.connected() {
        anyhow::bail!(
            "backend -> database 5433/TCP, added to the spec, did not connect: {outcome:?}"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 4: a tenant with `edit` under the admission policy.
    phase.store(4, Ordering::Relaxed);
    let operator = env
        .cluster
        .operator_username()
        .context("the operator's identity on the real cluster")?;
    let admission = crate::admission_manifests(
        &format!("netfence-packets-{}", env.run),
        &operator,
        &json!({"matchLabels": {"kubernetes.io/metadata.name": namespace}}),
    )?;
    let refusals = async {
        for manifest in &admission {
            apply_object(&client, manifest).await?;
        }
        tenant_attempts(env, &client, namespace).await
    }
    .await;
    // Removed whatever happened: the binding names this run's operator.
    crate::remove_admission(&client, &admission).await;
    refusals
}

/// A tenant bound to `edit` in `namespace` tries, twenty times each, to delete the deny and to
/// open the database's policy to everyone; every request must be refused (403).
async fn tenant_attempts(
    env: &Env,
    client: &Client,
    namespace: &str,
) -> anyhow::Result<Vec<String>> {
    let tenant = "packets-tenant";
    apply_object(
        client,
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "packets-tenant-edit", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": tenant}],
        }),
    )
    .await?;
    let tenant_policies: Api<NetworkPolicy> =
        Api::namespaced(env.cluster.client_as(tenant).await?, namespace);
    let deny = generated(client, namespace, "default-deny", None).await?;
    let database = generated(client, namespace, "tier", Some("database")).await?;
    // The admission policy takes effect once the API server has loaded it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tenant_policies
        .delete(&deny, &DeleteParams::default().dry_run())
        .await
        .is_ok()
    {
        if Instant::now() > deadline {
            anyhow::bail!("the admission policy did not take effect within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut refusals = Vec::new();
    for _ in 0..20 {
        match tenant_policies
            .delete(&deny, &DeleteParams::default())
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 403 => {
                refusals.push("delete deny".to_owned());
            }
            other => anyhow::bail!("the tenant's deletion of the deny was not refused: {other:?}"),
        }
        match tenant_policies
            .patch(
                &database,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"ingress": [{}]}})),
            )
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 403 => {
                refusals.push("open database policy".to_owned());
            }
            other => anyhow::bail!("the tenant's opening edit was not refused: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(refusals)
}

/// Run the scenario on `case` (three-tier); add its attempts, and as differences the forbidden
/// connections that connected, the attempts that were not a verdict, and any failed allowed
/// attempt while converged, to `totals`.
///
/// # Errors
///
/// When the world cannot be made, the operator does not converge or restore, or a tenant's
/// request is not refused.
pub async fn run(
    harness: &Harness,
    env: &mut Env,
    case: &Case,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    let validated = ValidatedIsolation::try_from(&case.isolation)
        .map_err(|errors| anyhow::anyhow!("{}: {errors}", case.source.display()))?;
    let world = world::build(&validated);
    let namespace = world.namespace.clone();
    let name = validated.name().to_owned();
    let mut made = examples::Made::default();
    let mut notes = Vec::new();
    let result = async {
        examples::build(harness, &world, &mut made, &mut notes).await?;
        examples::apply_isolation(harness, case, &namespace).await?;
        examples::wait_ready(env, &namespace, &name).await?;
        harness.synced().await?;
        let roles = Roles::find(&made.endpoints)?;
        let endpoints = &made.endpoints;
        let target = SocketAddr::new(IpAddr::V4(endpoints[roles.database].network.address), 5432);
        let pairs = [
            (roles.backend, false),
            (roles.no_tier, true),
            (roles.frontend, true),
        ];
        let phase = std::sync::atomic::AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let attempts: Mutex<Vec<Attempt>> = Mutex::default();
        let prober = async {
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let current = phase.load(Ordering::Relaxed);
                let at = Instant::now();
                let probes = pairs.iter().map(|(from, forbidden)| async move {
                    let outcome = endpoints[*from]
                        .network
                        .agent
                        .probe(Protocol::TCP, target)
                        .await;
                    Attempt {
                        phase: current,
                        forbidden: *forbidden,
                        connected: outcome.connected(),
                        clean: matches!(
                            outcome,
                            super::Outcome::Connected | super::Outcome::Refused
                        ),
                        at,
                    }
                });
                let results = futures::future::join_all(probes).await;
                if let Ok(mut attempts) = attempts.lock() {
                    attempts.extend(results);
                }
            }
        };
        let actions = async {
            let outcome = disrupt(harness, env, case, &namespace, &phase, endpoints, &roles).await;
            stop.store(true, Ordering::Relaxed);
            outcome
        };
        let ((), refusals) = tokio::join!(prober, actions);
        let attempts = attempts.into_inner().unwrap_or_default();
        Ok::<_, anyhow::Error>((attempts, refusals?))
    }
    .await;
    let _ = env
        .isolations(&namespace)
        .delete(&name, &DeleteParams::default())
        .await;
    examples::remove(harness, made).await;
    let (attempts, refusals) = result?;
    report(case, &namespace, &name, &attempts, &refusals, totals);
    Ok(())
}

fn report(
    case: &Case,
    namespace: &str,
    name: &str,
    attempts: &[Attempt],
    refusals: &[String],
    totals: &mut Totals,
) {
    let phases = figures(attempts, PHASES.len());
    println!(
        "== fail-closed on packets ({}: {namespace}/{name}), a probe every 25 ms per connection:",
        case.source.display()
    );
    println!(
        "   forbidden: (no tier) -> database and frontend -> database 5432/TCP; allowed: backend -> database 5432/TCP"
    );
    for (index, (figure, title)) in phases.iter().zip(PHASES).enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let rate = if figure.allowed_attempts == 0 {
            0.0
        } else {
            100.0 * figure.allowed_connected as f64 / figure.allowed_attempts as f64
        };
        println!(
            "   phase {index} ({title}): forbidden {}/{} connected; allowed {}/{} connected ({rate:.1}%), longest outage {} ms; {} attempts timed out or failed",
            figure.forbidden_connected,
            figure.forbidden_attempts,
            figure.allowed_connected,
            figure.allowed_attempts,
            figure.longest_outage.as_millis(),
            figure.unclean
        );
    }
    let mut counted: BTreeMap<&str, usize> = BTreeMap::new();
    for refusal in refusals {
        *counted.entry(refusal.as_str()).or_default() += 1;
    }
    println!("   the tenant's requests refused by admission: {counted:?}");
    let sum = |field: fn(&PhaseFigures) -> u64| phases.iter().map(field).sum::<u64>();
    let forbidden_connected = sum(|figure| figure.forbidden_connected);
    let unclean = sum(|figure| figure.unclean);
    // Converged, before any disruption, the allowed connection must always connect.
    let converged_failures = phases[0].allowed_attempts - phases[0].allowed_connected;
    if converged_failures > 0 {
        println!(
            "   DIFFERENCE: {converged_failures} allowed attempts failed while converged (phase 0)"
        );
    }
    let longest = phases
        .iter()
        .map(|figure| figure.longest_outage)
        .max()
        .unwrap_or_default();
    let summary = format!(
        "fail-closed: forbidden {forbidden_connected} of {} attempts connected; allowed {} of {} connected, longest outage {} ms; {unclean} attempts timed out or failed; {} tenant requests refused",
        sum(|figure| figure.forbidden_attempts),
        sum(|figure| figure.allowed_connected),
        sum(|figure| figure.allowed_attempts),
        longest.as_millis(),
        refusals.len()
    );
    println!("== {summary}");
    totals.measured += u64::try_from(attempts.len()).unwrap_or(u64::MAX);
    let differ = forbidden_connected + unclean + converged_failures;
    totals.differ += differ;
    if differ > 0 {
        totals.differences.push(format!(
            "{summary}; {converged_failures} allowed attempts failed while converged (phase 0)"
        ));
    }
    totals.lines.push(summary);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The longest outage runs from the first failed attempt to the next success.
    #[test]
    fn outages_run_from_the_first_failure_to_the_next_success() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let attempt = |ms, connected| Attempt {
            phase: 0,
            forbidden: false,
            connected,
            clean: true,
            at: at(ms),
        };
        let figures = figures(
            &[
                attempt(0, true),
                attempt(25, false),
                attempt(50, false),
                attempt(75, true),
                attempt(100, false),
                attempt(110, true),
            ],
            1,
        );
        assert_eq!(figures[0].allowed_attempts, 6);
        assert_eq!(figures[0].allowed_connected, 3);
        assert_eq!(figures[0].longest_outage, Duration::from_millis(50));
    }
}
