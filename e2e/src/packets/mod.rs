//! The packet suite: NetworkPolicies enforced by a real dataplane (kube-router), connections
//! measured between real network namespaces, compared with `netfence verify` and the intent.
//!
//! ```text
//! examples/ and --cases DIR --world::build--> namespaces, pods (a netns + agent each), addresses
//!     operator converges --kube-router synced--> every ordered pair x every probe, a new connection
//!     measured == netfence verify on the cluster's objects == declared intent ? else a difference
//! verify/tests/conformance --same world (x, y, z; a, b, c)--> measured vs upstream table vs verify
//! fail_closed: operator killed and restarted, policies deleted and edited, spec changed, a tenant
//!     refused by admission, while a prober counts forbidden and allowed connections
//! ```
//!
//! The harness plays the kubelet: it creates Pods, writes their status (`podIP`, `hostIP`, phase
//! Running) and gives each a network namespace with the agent of [`crate::dataplane::agent`].

pub mod conformance;
pub mod examples;
pub mod fail_closed;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};
use futures::{StreamExt as _, stream};
use k8s_openapi::api::{
    core::v1::{Namespace, Pod},
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use netfence_crd::isolation::Protocol;
use netfence_verify::{Cluster, Probe, model::PodInfo};
use serde_json::{Value, json};

use crate::dataplane::{self, NODE_IP, Outcome, PodNetwork, Pods};

/// How many probes run at once.
const CONCURRENCY: usize = 48;

/// The harness: a client, the node's pods, the run's folder.
pub struct Harness {
    /// cluster-admin.
    pub client: Client,
    /// The run's folder (kube-router's log).
    pub directory: PathBuf,
    pods: Pods,
    used: Mutex<BTreeSet<Ipv4Addr>>,
    /// Whether SCTP can be measured here.
    pub sctp: bool,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

/// One end of a measured connection: a pod (with a Pod object) or an address outside the
/// cluster (a network namespace with no Pod, for `ipBlock` peers).
#[derive(Debug)]
pub struct Endpoint {
    /// How the report names it.
    pub label: String,
    /// What the engine and the intent see of it (with its real address).
    pub info: PodInfo,
    /// Its network and agent.
    pub network: PodNetwork,
}

/// One connection attempt.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Index of the source in the endpoints measured.
    pub from: usize,
    /// Index of the destination.
    pub to: usize,
    /// The port and protocol.
    pub probe: Probe,
    /// What happened.
    pub outcome: Outcome,
}

/// The running totals the last line reports.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Connections opened (or tried).
    pub measured: u64,
    /// Those whose outcome differs from an expectation.
    pub differ: u64,
    /// Lines for the summary, one per part.
    pub lines: Vec<String>,
    /// Each difference counted in `differ`, one line each: repeated just before the last line,
    /// so the end of a CI record (all a failed stage shows) names them.
    pub differences: Vec<String>,
}

/// The ports a Pod's containers declare (what its agent serves), as `netfence verify` reads
/// them (protocol TCP when absent).
///
/// # Errors
///
/// When verify refuses the Pod.
pub fn declared_ports(pod: &Pod) -> anyhow::Result<Vec<(u16, Protocol)>> {
    let model = Cluster::build(&[], std::slice::from_ref(pod), &[])
        .map_err(|errors| anyhow::anyhow!("the pod's ports: {errors}"))?;
    let ports: BTreeSet<(u16, Protocol)> = model
        .pods()
        .iter()
        .flat_map(|info| info.ports.iter().map(|port| (port.number, port.protocol)))
        .collect();
    Ok(ports.into_iter().collect())
}

impl Harness {
    /// A harness on the node whose network namespace this process runs in.
    #[must_use]
    pub fn new(client: Client, directory: PathBuf, node_netns: &str, agent: PathBuf) -> Harness {
        Harness {
            client,
            directory,
            pods: Pods::new(node_netns, agent),
            used: Mutex::new(BTreeSet::from([NODE_IP])),
            sctp: dataplane::sctp_supported(),
        }
    }

    /// A free pod address in 10.244.128.0/17.
    ///
    /// # Errors
    ///
    /// When every address of the range is taken.
    pub fn allocate(&self) -> anyhow::Result<Ipv4Addr> {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = u32::from(Ipv4Addr::new(10, 244, 128, 1));
        let address = (start..u32::from(Ipv4Addr::new(10, 244, 255, 255)))
            .map(Ipv4Addr::from)
            .find(|address| !used.contains(address))
            .context("every pod address of 10.244.128.0/17 is taken")?;
        used.insert(address);
        Ok(address)
    }

    /// Reserve `address` (a case's own, or an external one); false when it is taken.
    pub fn reserve(&self, address: Ipv4Addr) -> bool {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(address)
    }

    fn release(&self, address: Ipv4Addr) {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&address);
    }

    /// Create the Pod of `manifest` (its status replaced by ours) at `address`, with its network
    /// and agent, as a kubelet would run it: the agent serves the ports the containers declare,
    /// and `also` (ports a test probes that the pod does not declare).
    ///
    /// # Errors
    ///
    /// When the API server refuses it or the network cannot be made.
    pub async fn create_pod(
        &self,
        manifest: &Value,
        address: Ipv4Addr,
        also: &[(u16, Protocol)],
    ) -> anyhow::Result<PodNetwork> {
        let namespace = manifest["metadata"]["namespace"]
            .as_str()
            .context("a pod without a namespace")?
            .to_owned();
        let name = manifest["metadata"]["name"]
            .as_str()
            .context("a pod without a name")?
            .to_owned();
        let mut manifest = manifest.clone();
        if let Some(object) = manifest.as_object_mut() {
            object.remove("status");
        }
        manifest["spec"]["automountServiceAccountToken"] = json!(false);
        let pod: Pod = serde_json::from_value(manifest.clone())
            .with_context(|| format!("pod {namespace}/{name} is not a Pod"))?;
        let mut ports = declared_ports(&pod).with_context(|| format!("pod {namespace}/{name}"))?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        // A new namespace has no `default` ServiceAccount for a moment: Pod admission waits for it.
        let mut attempts = 0;
        loop {
            match pods.create(&PostParams::default(), &pod).await {
                Ok(_) => break,
                Err(kube::Error::Api(status))
                    if attempts < 60 && status.message.contains("serviceaccount") =>
                {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                // Left by an earlier run that stopped half-way: this run's pod replaces it.
                Err(kube::Error::Api(status)) if attempts < 60 && status.code == 409 => {
                    attempts += 1;
                    let _ = pods
                        .delete(&name, &DeleteParams::default().grace_period(0))
                        .await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("failed to create pod {namespace}/{name}"));
                }
            }
        }
        ports.extend(
            also.iter()
                .filter(|port| !ports.contains(port))
                .copied()
                .collect::<Vec<_>>(),
        );
        let network = match self.pods.create(address, &self.served(&ports)).await {
            Ok(network) => network,
            Err(error) => {
                let _ = pods
                    .delete(&name, &DeleteParams::default().grace_period(0))
                    .await;
                return Err(error)
                    .with_context(|| format!("failed to give pod {namespace}/{name} a network"));
            }
        };
        let address = address.to_string();
        let status = pods
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {
                    "phase": "Running",
                    "hostIP": NODE_IP.to_string(),
                    "hostIPs": [{"ip": NODE_IP.to_string()}],
                    "podIP": address,
                    "podIPs": [{"ip": address}],
                }})),
            )
            .await;
        if let Err(error) = status {
            self.remove_pod(&namespace, &name, network).await;
            return Err(error)
                .with_context(|| format!("failed to write pod {namespace}/{name}'s status"));
        }
        Ok(network)
    }

    /// The ports an agent serves: TCP and UDP, and SCTP when the kernel has it.
    fn served(&self, ports: &[(u16, Protocol)]) -> Vec<(u16, Protocol)> {
        ports
            .iter()
            .copied()
            .filter(|(_, protocol)| self.sctp || *protocol != Protocol::SCTP)
            .collect()
    }

    /// A network namespace at `address` with no Pod: an address outside the cluster.
    ///
    /// # Errors
    ///
    /// When the network cannot be made.
    pub async fn create_external(
        &self,
        address: Ipv4Addr,
        ports: &[(u16, Protocol)],
    ) -> anyhow::Result<PodNetwork> {
        self.pods.create(address, &self.served(ports)).await
    }

    /// Delete a pod at once (no kubelet to wait for) and its network.
    pub async fn remove_pod(&self, namespace: &str, name: &str, network: PodNetwork) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let _ = pods
            .delete(name, &DeleteParams::default().grace_period(0))
            .await;
        self.release(network.address);
        network.remove().await;
    }

    /// Remove an external address's network.
    pub async fn remove_external(&self, network: PodNetwork) {
        self.release(network.address);
        network.remove().await;
    }

    /// Wait until kube-router's rules reflect the cluster as it is now; then forget the tracked
    /// connections, so that what is measured next is new connections only.
    ///
    /// # Errors
    ///
    /// When kube-router does not sync in time, or conntrack fails.
    pub async fn synced(&self) -> anyhow::Result<()> {
        dataplane::wait_synced(&self.directory, SystemTime::now()).await?;
        self.forget_connections()
    }

    /// Forget every tracked connection of the node: each probe after this is a new connection
    /// to the firewall. Without it, a probe whose source port an earlier, allowed connection
    /// used a moment before can match that connection's conntrack entry (a SYN while it is in
    /// LAST_ACK is "established" to conntrack) and pass kube-router's first rule, which accepts
    /// established flows, as on every NetworkPolicy engine (seen once in 280 probes).
    ///
    /// # Errors
    ///
    /// When `conntrack` (Debian package conntrack) is missing or fails.
    pub fn forget_connections(&self) -> anyhow::Result<()> {
        let output = std::process::Command::new("conntrack")
            .arg("-F")
            .output()
            .context("failed to run `conntrack -F` (Debian package conntrack)")?;
        if !output.status.success() {
            bail!(
                "conntrack -F failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Every ordered pair of `endpoints` (not an endpoint to itself, not between two external
    /// addresses) on every probe that can be measured here, each a new connection.
    pub async fn measure(&self, endpoints: &[Endpoint], probes: &[Probe]) -> Vec<Measured> {
        let mut attempts = Vec::new();
        for (from, source) in endpoints.iter().enumerate() {
            for (to, destination) in endpoints.iter().enumerate() {
                if from == to || (source.info.external && destination.info.external) {
                    continue;
                }
                for probe in probes {
                    if probe.protocol == Protocol::SCTP && !self.sctp {
                        continue;
                    }
                    attempts.push((from, to, *probe));
                }
            }
        }
        stream::iter(attempts)
            .map(|(from, to, probe)| async move {
                let address =
                    SocketAddr::new(IpAddr::V4(endpoints[to].network.address), probe.port);
                let outcome = endpoints[from]
                    .network
                    .agent
                    .probe(probe.protocol, address)
                    .await;
                Measured {
                    from,
                    to,
                    probe,
                    outcome,
                }
            })
            .buffered(CONCURRENCY)
            .collect()
            .await
    }

    /// The cluster as `netfence verify` sees it, read from the API server now, with the
    /// external addresses of `endpoints` added; and each endpoint's index in it.
    ///
    /// # Errors
    ///
    /// When listing fails or the objects do not make a model.
    pub async fn verify_model(
        &self,
        endpoints: &[Endpoint],
    ) -> anyhow::Result<(Cluster, Vec<usize>)> {
        let list = ListParams::default();
        let namespaces = Api::<Namespace>::all(self.client.clone())
            .list(&list)
            .await?
            .items;
        let pods = Api::<Pod>::all(self.client.clone())
            .list(&list)
            .await?
            .items;
        let policies = Api::<NetworkPolicy>::all(self.client.clone())
            .list(&list)
            .await?
            .items;
        let cluster = Cluster::build(&namespaces, &pods, &policies).map_err(|errors| {
            anyhow::anyhow!("netfence verify refuses the cluster's objects: {errors}")
        })?;
        let mut infos = cluster.pods().to_vec();
        infos.extend(
            endpoints
                .iter()
                .filter(|endpoint| endpoint.info.external)
                .map(|endpoint| endpoint.info.clone()),
        );
        let cluster = Cluster::from_parts(
            cluster.namespaces().to_vec(),
            infos,
            cluster.policies().to_vec(),
        );
        let mut index = Vec::new();
        for endpoint in endpoints {
            let key = endpoint.info.key();
            index.push(
                cluster
                    .pod_index(&key)
                    .with_context(|| format!("{key} is not in the cluster's pods"))?,
            );
        }
        Ok((cluster, index))
    }
}

/// A grid of what was measured: rows from, columns to, each cell the number of probes that
/// connected (`.` none, `-` the endpoint itself).
#[must_use]
pub fn grid(labels: &[String], measured: &[Measured]) -> String {
    let mut connected: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for measurement in measured {
        let count = connected
            .entry((measurement.from, measurement.to))
            .or_default();
        if measurement.outcome.connected() {
            *count += 1;
        }
    }
    let width = labels.iter().map(String::len).max().unwrap_or(4).max(4);
    let mut text = format!("    {:width$}", "from \\ to");
    for (column, _) in labels.iter().enumerate() {
        let _ = write!(text, " {column:>4}");
    }
    text.push('\n');
    for (row, label) in labels.iter().enumerate() {
        let _ = write!(text, "{row:>3} {label:width$}");
        for column in 0..labels.len() {
            let cell = if row == column {
                "-".to_owned()
            } else {
                match connected.get(&(row, column)) {
                    None => " ".to_owned(),
                    Some(0) => ".".to_owned(),
                    Some(count) => count.to_string(),
                }
            };
            let _ = write!(text, " {cell:>4}");
        }
        text.push('\n');
    }
    text
}

/// What an expectation says of one connection, for the report.
#[must_use]
pub fn word(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "blocked" }
}

/// Fail unless this process runs as root.
///
/// # Errors
///
/// When it does not.
pub fn require_root() -> anyhow::Result<()> {
    if !dataplane::is_root() {
        bail!(
            "the packet suite needs root: it makes network namespaces, veth pairs, routes, and kube-router writes iptables rules and ipsets (inside a network namespace of its own); run it as root, e.g. `sudo -E env PATH=$PATH cargo run --release -p netfence-e2e --bin packets`"
        );
    }
    Ok(())
}
