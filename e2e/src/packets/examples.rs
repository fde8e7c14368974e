//! Point 2: every NamespaceIsolation of `examples/` (and of `--cases DIR`), on real packets.
//!
//! ```text
//! NamespaceIsolation --world::build--> namespaces, a pod per tier, one in no tier, DNS pods,
//!     pods inside and outside each shared-service peer, external addresses of ipBlocks
//! open baseline (no policy yet: every connection must connect, so every listener is there)
//! apply the resource --Ready, kube-router synced--> measure every ordered pair x every probe
//! each connection: measured == netfence verify (the cluster's objects) == declared (the spec)
//! ```

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::{DeleteParams, ListParams},
};
use netfence_core::{ValidatedIsolation, manifests};
use netfence_crd::{NamespaceIsolation, isolation::Protocol};
use netfence_verify::{
    Probe, Verdict,
    intent::{World, declared::Declared, world},
    reachability,
    selector::Labels,
};
use serde_json::{Value, json};

use super::{Endpoint, Harness, Measured, Totals, grid, word};
use crate::{Env, apply_object};

/// One NamespaceIsolation to measure, and the file it came from.
#[derive(Clone, Debug)]
pub struct Case {
    /// The file.
    pub source: PathBuf,
    /// The resource.
    pub isolation: NamespaceIsolation,
}

/// One line of the README's table.
#[derive(Clone, Debug)]
pub struct Row {
    /// `file: namespace/name`.
    pub example: String,
    /// Endpoints (pods and external addresses).
    pub endpoints: usize,
    /// Ordered pairs measured.
    pub pairs: usize,
    /// Probes (port/protocol) per pair.
    pub probes: usize,
    /// Connections that connected.
    pub allowed: usize,
    /// Connections refused.
    pub blocked: usize,
    /// Connections opened: the open baseline's and the measurement's.
    pub connections: usize,
    /// Connections where the measurement, verify and the intent do not all agree, one line each.
    pub differences: Vec<String>,
}

fn yaml_files(path: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("failed to read {}", path.display()))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            // Hidden entries are not manifests, as `netfence render` skips them (the CI jobs
            // of examples/ci/).
            .filter(|entry| {
                !entry
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with('.'))
            })
            .collect();
        entries.sort();
        for entry in entries {
            yaml_files(&entry, files)?;
        }
    } else if path
        .extension()
        .is_some_and(|extension| extension == "yaml" || extension == "yml")
    {
        files.push(path.to_owned());
    }
    Ok(())
}

/// Every NamespaceIsolation in the manifests under `paths` (files or folders, recursively).
///
/// # Errors
///
/// When a path cannot be read, a file is not YAML, or a NamespaceIsolation is invalid: the
/// error names the file and what is wrong.
pub fn load(paths: &[PathBuf]) -> anyhow::Result<Vec<Case>> {
    let mut files = Vec::new();
    for path in paths {
        if !path.exists() {
            anyhow::bail!("{} does not exist", path.display());
        }
        yaml_files(path, &mut files)?;
    }
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("failed to read {}", file.display()))?;
        let documents = manifests::parse(&file.display().to_string(), &text)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        for document in documents {
            if document.kind() != "NamespaceIsolation" {
                continue;
            }
            let isolation: NamespaceIsolation = document
                .typed()
                .map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
            ValidatedIsolation::try_from(&isolation).map_err(|errors| {
                anyhow::anyhow!(
                    "{}: NamespaceIsolation {} is invalid: {errors}",
                    file.display(),
                    document.name()
                )
            })?;
            cases.push(Case {
                source: file.clone(),
                isolation,
            });
        }
    }
    Ok(cases)
}

/// Whether an `ipBlock` address can be a host on the node: IPv4 unicast, not loopback, not the
/// node's own.
fn hostable(address: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V4(v4) = address else {
        return None;
    };
    let first = v4.octets()[0];
    (first != 0 && first != 127 && first < 224 && v4 != Ipv4Addr::BROADCAST).then_some(v4)
}

/// The Pod of a model pod: its labels, its named ports, and every probed port (unnamed).
fn pod_manifest(info: &netfence_verify::model::PodInfo, world: &World, sctp: bool) -> Value {
    let mut ports: Vec<Value> = info
        .ports
        .iter()
        .map(|port| {
            json!({"name": port.name, "containerPort": port.number, "protocol": port.protocol.as_str()})
        })
        .collect();
    for probe in &world.probes {
        if probe.protocol == Protocol::SCTP && !sctp {
            continue;
        }
        if info
            .ports
            .iter()
            .any(|port| port.number == probe.port && port.protocol == probe.protocol)
        {
            continue;
        }
        ports.push(json!({"containerPort": probe.port, "protocol": probe.protocol.as_str()}));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": info.name, "namespace": info.namespace, "labels": info.labels},
        "spec": {"containers": [{"name": "serve", "image": "netfence.io/packets-agent", "ports": ports}]},
    })
}

fn namespace_manifest(name: &str, labels: &Labels) -> Value {
    let labels: BTreeMap<&String, &String> = labels
        .iter()
        .filter(|(key, _)| key.as_str() != netfence_crd::isolation::NAMESPACE_NAME_LABEL)
        .collect();
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// What one case made, to remove.
#[derive(Default)]
pub(crate) struct Made {
    pub(crate) namespaces: Vec<String>,
    pub(crate) endpoints: Vec<Endpoint>,
}

async fn wait_namespaces_gone(harness: &Harness, names: &[String]) {
    let api: Api<Namespace> = Api::all(harness.client.clone());
    for _ in 0..240 {
        let Ok(list) = api.list(&ListParams::default()).await else {
            break;
        };
        if !list.items.iter().any(|namespace| {
            names
                .iter()
                .any(|name| Some(name) == namespace.metadata.name.as_ref())
        }) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    eprintln!("packets: namespaces {names:?} still terminating after 60 s");
}

pub(crate) async fn remove(harness: &Harness, made: Made) {
    for endpoint in made.endpoints {
        if endpoint.info.external {
            harness.remove_external(endpoint.network).await;
        } else {
            harness
                .remove_pod(
                    &endpoint.info.namespace,
                    &endpoint.info.name,
                    endpoint.network,
                )
                .await;
        }
    }
    let api: Api<Namespace> = Api::all(harness.client.clone());
    for name in &made.namespaces {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
    wait_namespaces_gone(harness, &made.namespaces).await;
}

/// Build the world of `case` in the cluster: namespaces, pods, external addresses.
pub(crate) async fn build(
    harness: &Harness,
    world: &World,
    made: &mut Made,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(harness.client.clone());
    for namespace in &world.namespaces {
        if namespaces.get_opt(&namespace.name).await?.is_none() {
            made.namespaces.push(namespace.name.clone());
        }
        apply_object(
            &harness.client,
            &namespace_manifest(&namespace.name, &namespace.labels),
        )
        .await?;
    }
    let ports: Vec<(u16, Protocol)> = world
        .probes
        .iter()
        .map(|probe| (probe.port, probe.protocol))
        .collect();
    // The external hosts' addresses are the spec's, a pod's is any free one: reserve those first.
    let mut hosts = BTreeSet::new();
    for endpoint in world
        .endpoints
        .iter()
        .filter(|endpoint| endpoint.pod.external)
    {
        match endpoint.pod.ips.first().copied().and_then(hostable) {
            Some(address) if harness.reserve(address) => {
                hosts.insert(address);
            }
            Some(_) => notes.push(format!(
                "{}: NOT MEASURED (the address is taken)",
                endpoint.label
            )),
            None => notes.push(format!(
                "{}: NOT MEASURED (not an IPv4 unicast address a network namespace can hold)",
                endpoint.label
            )),
        }
    }
    for endpoint in &world.endpoints {
        let mut info = endpoint.pod.clone();
        let network = if info.external {
            let Some(address) = info.ips.first().copied().and_then(hostable) else {
                continue;
            };
            if !hosts.contains(&address) {
                continue;
            }
            harness.create_external(address, &ports).await?
        } else {
            let address = harness.allocate()?;
            info.ips = vec![IpAddr::V4(address)];
            harness
                .create_pod(&pod_manifest(&info, world, harness.sctp), address, &[])
                .await?
        };
        made.endpoints.push(Endpoint {
            label: endpoint.label.clone(),
            info,
            network,
        });
    }
    Ok(())
}

/// The two expectations of a measured connection: `netfence verify` on the cluster's objects,
/// and the spec read directly.
struct Expectations<'a> {
    matrix: netfence_verify::Reachability<'a>,
    /// Each endpoint's index in the verify model.
    index: &'a [usize],
    /// The model world with the endpoints' real addresses.
    world: World,
    validated: &'a ValidatedIsolation,
}

impl Expectations<'_> {
    /// One line per connection where the measurement, verify and the intent do not all agree, or
    /// the probe failed.
    fn differences(&self, endpoints: &[Endpoint], measured: &[Measured]) -> Vec<String> {
        let probe_index: BTreeMap<Probe, usize> = self
            .matrix
            .probes()
            .iter()
            .enumerate()
            .map(|(position, probe)| (*probe, position))
            .collect();
        let declared = Declared::new(self.validated, &self.world);
        let mut differences = Vec::new();
        for measurement in measured {
            let (from, to) = (&endpoints[measurement.from], &endpoints[measurement.to]);
            let connected = measurement.outcome.connected();
            let verify = probe_index.get(&measurement.probe).is_some_and(|probe| {
                self.matrix.verdict(
                    *probe,
                    self.index[measurement.from],
                    self.index[measurement.to],
                ) == Verdict::Allowed
            });
            let intent = declared.allows(&from.info, &to.info, measurement.probe);
            let failed = matches!(measurement.outcome, super::Outcome::Error(_));
            if failed || connected != verify || connected != intent {
                differences.push(format!(
                    "  {} -> {} {}: measured {} ({:?}), netfence verify: {}, declared: {}",
                    from.label,
                    to.label,
                    measurement.probe,
                    if connected { "connected" } else { "blocked" },
                    measurement.outcome,
                    word(verify),
                    word(intent),
                ));
            }
        }
        differences
    }
}

/// Apply the case's NamespaceIsolation in `namespace`, as its file has it.
pub(crate) async fn apply_isolation(
    harness: &Harness,
    case: &Case,
    namespace: &str,
) -> anyhow::Result<()> {
    let mut resource = serde_json::to_value(&case.isolation)?;
    resource["apiVersion"] = json!("netfence.io/v1alpha1");
    resource["kind"] = json!("NamespaceIsolation");
    resource["metadata"]["namespace"] = json!(namespace);
    if let Some(object) = resource.as_object_mut() {
        object.remove("status");
    }
    apply_object(&harness.client, &resource).await
}

/// Wait until the resource is Ready (reason `Reconciled`: its policies match its spec) for its
/// current generation; an error (never a panic) when it is not within 10 s, with its last status.
pub(crate) async fn wait_ready(env: &Env, namespace: &str, name: &str) -> anyhow::Result<()> {
    crate::wait_for_reason(&env.isolations(namespace), name, "Reconciled").await?;
    Ok(())
}

/// The world as the declared side reads it: the model pods with their real addresses.
fn world_with_addresses(world: &World, endpoints: &[Endpoint]) -> World {
    let mut world = world.clone();
    for model in &mut world.endpoints {
        if let Some(endpoint) = endpoints
            .iter()
            .find(|endpoint| endpoint.info.key() == model.pod.key())
        {
            model.pod.ips.clone_from(&endpoint.info.ips);
        }
    }
    world
}

/// Measure one case; print its table; return its row.
///
/// # Errors
///
/// When the world cannot be built or the operator does not converge.
pub async fn run_case(
    harness: &Harness,
    env: &Env,
    case: &Case,
    totals: &mut Totals,
) -> anyhow::Result<Row> {
    let validated = ValidatedIsolation::try_from(&case.isolation)
        .map_err(|errors| anyhow::anyhow!("{}: invalid: {errors}", case.source.display()))?;
    let world = world::build(&validated);
    let namespace = world.namespace.clone();
    let name = validated.name().to_owned();
    let title = format!(
        "{}: {namespace}/{name}",
        case.source.file_name().map_or_else(
            || case.source.display().to_string(),
            |file| file.to_string_lossy().into_owned()
        )
    );
    let started = std::time::Instant::now();
    let mut made = Made::default();
    let mut notes = world.warnings.clone();
    let result = measure_case(
        harness, env, case, &validated, &world, &mut made, &mut notes, &title,
    )
    .await;
    // The resource first (its finalizer removes its policies), then what the world made.
    let _ = env
        .isolations(&namespace)
        .delete(&name, &DeleteParams::default())
        .await;
    remove(harness, made).await;
    let (row, report) = result?;
    println!("{report}");
    for note in &notes {
        println!("  note: {note}");
    }
    println!("  took {:.1} s", started.elapsed().as_secs_f64());
    totals.measured += u64::try_from(row.connections).unwrap_or(u64::MAX);
    totals.differ += u64::try_from(row.differences.len()).unwrap_or(u64::MAX);
    totals.differences.extend(
        row.differences
            .iter()
            .map(|difference| format!("{}: {}", row.example, difference.trim())),
    );
    Ok(row)
}

#[allow(clippy::too_many_arguments)]
async fn measure_case(
    harness: &Harness,
    env: &Env,
    case: &Case,
    validated: &ValidatedIsolation,
    world: &World,
    made: &mut Made,
    notes: &mut Vec<String>,
    title: &str,
) -> anyhow::Result<(Row, String)> {
    build(harness, world, made, notes).await?;
    let endpoints = &made.endpoints;
    let probes: Vec<Probe> = world
        .probes
        .iter()
        .copied()
        .filter(|probe| harness.sctp || probe.protocol != Protocol::SCTP)
        .collect();
    let unmeasured_sctp = world.probes.len() - probes.len();
    if unmeasured_sctp > 0 {
        notes.push(format!(
            "{unmeasured_sctp} SCTP probes not measured: this kernel has no SCTP sockets (verify and the intent still cover them)"
        ));
    }

    // The open baseline: no policy yet, so every connection connects (every listener is there).
    harness.synced().await?;
    let baseline = harness.measure(endpoints, &probes).await;
    let closed: Vec<&Measured> = baseline.iter().filter(|m| !m.outcome.connected()).collect();

    apply_isolation(harness, case, &world.namespace).await?;
    wait_ready(env, &world.namespace, validated.name()).await?;
    harness.synced().await?;
    let measured = harness.measure(endpoints, &probes).await;

    let (cluster, index) = harness.verify_model(endpoints).await?;
    let labels: Vec<String> = endpoints
        .iter()
        .map(|endpoint| endpoint.label.clone())
        .collect();
    let mut report = String::new();
    let mut differences: Vec<String> = closed
        .iter()
        .map(|failure| {
            format!(
                "  open baseline: {} -> {} {}: {:?} with no policy (expected connected: the harness's listener or route is broken)",
                labels[failure.from], labels[failure.to], failure.probe, failure.outcome
            )
        })
        .collect();
    let expectations = Expectations {
        matrix: reachability(&cluster, &probes),
        index: &index,
        world: world_with_addresses(world, endpoints),
        validated,
    };
    differences.extend(expectations.differences(endpoints, &measured));
    let allowed = measured.iter().filter(|m| m.outcome.connected()).count();
    let blocked = measured.len() - allowed;
    let pairs = measured
        .iter()
        .map(|m| (m.from, m.to))
        .collect::<BTreeSet<_>>()
        .len();
    let _ = writeln!(
        report,
        "== {title}: {} endpoints, {pairs} ordered pairs x {} probes = {} connections: {allowed} connected, {blocked} blocked; open baseline {} of {} connected; {} differ",
        endpoints.len(),
        probes.len(),
        measured.len(),
        baseline.len() - closed.len(),
        baseline.len(),
        differences.len()
    );
    let _ = writeln!(
        report,
        "  probes: {}",
        probes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        report,
        "  connected probes per pair (rows from, columns to):"
    );
    report.push_str(&grid(&labels, &measured));
    for difference in &differences {
        let _ = writeln!(report, "{difference}");
    }
    Ok((
        Row {
            example: title.to_owned(),
            endpoints: endpoints.len(),
            pairs,
            probes: probes.len(),
            connections: baseline.len() + measured.len(),
            allowed,
            blocked,
            differences,
        },
        report,
    ))
}

/// The README's table.
#[must_use]
pub fn table(rows: &[Row]) -> String {
    let mut text = String::from(
        "| example | endpoints | pairs | probes | allowed | blocked | differences |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.example,
            row.endpoints,
            row.pairs,
            row.probes,
            row.allowed,
            row.blocked,
            row.differences.len()
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only addresses a network namespace can hold stand for an ipBlock's outside hosts.
    #[test]
    fn hostable_addresses_are_ipv4_unicast() {
        for (address, hostable_here) in [
            ("203.0.113.7", true),
            ("169.254.20.10", true),
            ("0.0.0.1", false),
            ("127.0.0.2", false),
            ("224.0.0.1", false),
            ("255.255.255.255", false),
            ("2001:db8::1", false),
        ] {
            let address: IpAddr = address.parse().expect("an address");
            assert_eq!(hostable(address).is_some(), hostable_here, "{address}");
        }
    }

    /// A model pod's Pod keeps its named ports and declares every probed port (unnamed), so its
    /// agent listens where a probe goes; SCTP only when the kernel has it.
    #[test]
    fn pods_declare_named_and_probed_ports() {
        let text = "apiVersion: netfence.io/v1alpha1\nkind: NamespaceIsolation\nmetadata: {name: shop, namespace: shop}\nspec:\n  tiers:\n    - {name: web, podSelector: {matchLabels: {tier: web}}}\n    - {name: db, podSelector: {matchLabels: {tier: db}}}\n  flows:\n    - {from: web, to: db, ports: [{port: sql}, {port: 5432}]}\n";
        let isolation: NamespaceIsolation = serde_saphyr::from_str(text).expect("a resource");
        let validated = ValidatedIsolation::try_from(&isolation).expect("valid");
        let world = world::build(&validated);
        let web = &world.endpoints[0].pod;
        let pod = pod_manifest(web, &world, false);
        let typed = |pod: Value| -> k8s_openapi::api::core::v1::Pod {
            serde_json::from_value(pod).expect("a Pod")
        };
        let ports = super::super::declared_ports(&typed(pod.clone())).expect("ports");
        assert!(ports.contains(&(5432, Protocol::TCP)), "{ports:?}");
        assert!(ports.contains(&(5432, Protocol::UDP)), "{ports:?}");
        assert!(
            !ports
                .iter()
                .any(|(_, protocol)| *protocol == Protocol::SCTP),
            "{ports:?}"
        );
        let named = &pod["spec"]["containers"][0]["ports"][0];
        assert_eq!(named["name"], "sql");
        assert_eq!(pod["metadata"]["labels"]["tier"], "web");
        let with_sctp =
            super::super::declared_ports(&typed(pod_manifest(web, &world, true))).expect("ports");
        assert!(with_sctp.contains(&(5432, Protocol::SCTP)), "{with_sctp:?}");
    }
}
