//! A real NetworkPolicy dataplane on this machine: kube-router's firewall (iptables and ipset),
//! and pods without a kubelet, each a network namespace with a veth to the "node".
//!
//! ```text
//! run netns "nfpk-<id>" (the node: 10.255.0.1 on lo, ip_forward)
//!   etcd, kube-apiserver, kube-controller-manager, kube-router --run-firewall, the harness
//!   nfpkN --veth-- netns "nfpk-<id>-N" (a pod: eth0 10.244.x.y/32, default via the node)
//!                    agent: listens on the pod's ports, probes on request
//! ```
//!
//! Traffic between two pods is routed by the node and crosses its FORWARD chain, where
//! kube-router's rules and ipsets decide. Everything lives in network namespaces made for the
//! run: `teardown` deletes them, and the machine's own rules are never touched.

pub mod agent;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use netfence_crd::isolation::Protocol;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cluster::Process;
pub use agent::{Agent, Outcome};

/// The Node object the harness plays.
pub const NODE_NAME: &str = "netfence-node";

/// The node's address (its `InternalIP`, every local pod's `hostIP`).
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);

/// The prefix of every network namespace the packet suite makes.
pub const NETNS_PREFIX: &str = "nfpk-";

/// kube-router's log, in the run's folder.
pub const KUBE_ROUTER_LOG: &str = "kube-router.log";

/// What a running dataplane records in its folder, for `down` and for a later run to reuse it.
pub const STATE_FILE: &str = "dataplane.json";

/// Whether this process runs as root (network namespaces, veth and iptables need it).
#[must_use]
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|line| line.starts_with("Uid:"))
            .and_then(|line| line.split_whitespace().nth(2))
            == Some("0")
    })
}

/// Whether the kernel offers SCTP sockets (many VM kernels do not; then SCTP is not measured).
#[must_use]
pub fn sctp_supported() -> bool {
    socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::from(132)),
    )
    .is_ok()
}

/// Run `ip ARGS`, failing with its error output.
///
/// # Errors
///
/// When `ip` fails.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("failed to run `ip` (Debian package iproute2)")?;
    if !output.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The network namespaces whose names start with `prefix`.
#[must_use]
pub fn namespaces_named(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/var/run/netns")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().into_string().ok())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Make the node's network namespace: loopback up, the node's address on it, forwarding on, and
/// no rate limit on the ICMP errors kube-router's REJECT sends (by default a host answers one
/// source with one port-unreachable a second after a burst of six: a refused connect would then
/// wait for its SYN's retransmission, a second later).
///
/// # Errors
///
/// When a step fails (not root, `ip` missing).
pub fn create_node(netns: &str) -> anyhow::Result<()> {
    ip(&["netns", "add", netns])?;
    ip(&["-n", netns, "link", "set", "lo", "up"])?;
    ip(&[
        "-n",
        netns,
        "addr",
        "add",
        &format!("{NODE_IP}/32"),
        "dev",
        "lo",
    ])?;
    let status = Command::new("ip")
        .args(["netns", "exec", netns, "sh", "-c"])
        .arg(
            "echo 1 > /proc/sys/net/ipv4/ip_forward && \
             echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter && \
             echo 0 > /proc/sys/net/ipv4/conf/default/rp_filter && \
             echo 0 > /proc/sys/net/ipv4/icmp_ratelimit && \
             echo 1000000 > /proc/sys/net/ipv4/icmp_msgs_per_sec",
        )
        .status()
        .context("failed to run ip netns exec")?;
    if !status.success() {
        bail!("failed to turn on forwarding in {netns}");
    }
    Ok(())
}

/// Delete the pods' network namespaces of the node `netns` (`NETNS-*`), with their veths.
pub fn delete_pod_namespaces(netns: &str) {
    for pod in namespaces_named(&format!("{netns}-")) {
        let _ = ip(&["netns", "del", &pod]);
    }
}

/// Delete the run's network namespaces: the pods', then the node's.
pub fn delete_namespaces(netns: &str) {
    delete_pod_namespaces(netns);
    let _ = ip(&["netns", "del", netns]);
}

/// What `up` started, recorded in the run's folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// The node's network namespace.
    pub netns: String,
    /// kube-router.
    pub kube_router: Process,
    /// Its release.
    pub kube_router_version: String,
}

/// Read the state of the dataplane in `directory`.
///
/// # Errors
///
/// When there is none.
pub fn read_state(directory: &Path) -> anyhow::Result<State> {
    crate::cluster::read_json(&directory.join(STATE_FILE), "a dataplane's state")
}

/// Whether the dataplane of `state` still runs.
#[must_use]
pub fn is_running(state: &State) -> bool {
    crate::cluster::is_alive(&state.kube_router)
        && Path::new("/var/run/netns").join(&state.netns).exists()
}

/// Register the node (the `InternalIP` kube-router looks its pods up by).
///
/// # Errors
///
/// When the API server refuses.
pub async fn register_node(client: &Client) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let params = PatchParams::apply(crate::FIELD_MANAGER).force();
    nodes
        .patch(
            NODE_NAME,
            &params,
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_NAME},
            })),
        )
        .await
        .context("failed to create the Node")?;
    nodes
        .patch_status(
            NODE_NAME,
            &params,
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Node",
                "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP.to_string()}]},
            })),
        )
        .await
        .context("failed to write the Node's address")?;
    Ok(())
}

/// Start kube-router's firewall (no router, no service proxy) in this process's network
/// namespace, logging to `DIR/kube-router.log`. Its iptables resync every 10 s besides the
/// syncs the watches trigger.
///
/// # Errors
///
/// When it cannot start.
pub fn start_kube_router(
    program: &Path,
    kubeconfig: &Path,
    directory: &Path,
) -> anyhow::Result<Process> {
    let args = [
        format!("--kubeconfig={}", kubeconfig.display()),
        "--run-firewall=true".to_owned(),
        "--run-router=false".to_owned(),
        "--run-service-proxy=false".to_owned(),
        format!("--hostname-override={NODE_NAME}"),
        "--health-port=0".to_owned(),
        "--metrics-port=0".to_owned(),
        "--iptables-sync-period=10s".to_owned(),
        // Info logs carry the sync markers `wait_synced` reads.
        "-v=1".to_owned(),
    ];
    let (process, _child) = crate::cluster::spawn_logged(directory, "kube-router", program, &args)?;
    Ok(process)
}

/// One sync of kube-router's rules, as its log tells.
#[derive(Debug, PartialEq, Eq)]
struct Sync {
    /// When it started (kube-router names a sync by its start time in Unix nanoseconds).
    version: u128,
    /// Its rules were restored.
    finished: bool,
    /// It stopped half-way ("Aborting sync"): not a sync to wait for.
    aborted: bool,
}

fn syncs(log: &str) -> Vec<Sync> {
    let mut syncs: Vec<Sync> = Vec::new();
    for line in log.lines() {
        if let Some((_, version)) = line.split_once("Starting sync of iptables with version: ") {
            if let Ok(version) = version.trim().parse() {
                syncs.push(Sync {
                    version,
                    finished: false,
                    aborted: false,
                });
            }
        } else if line.contains("Aborting sync")
            && let Some(last) = syncs.last_mut()
        {
            // kube-router logs "sync iptables took" after an aborted sync too (a deferred line).
            last.aborted = true;
        } else if line.contains("sync iptables took")
            && let Some(last) = syncs.last_mut()
        {
            last.finished = !last.aborted;
        }
    }
    syncs
}

/// Wait until kube-router has finished a sync that started after `after` and none has started
/// since for 500 ms: its rules then reflect what its watches had seen by `after`.
///
/// # Errors
///
/// When that does not happen within 60 s (kube-router resyncs every 10 s anyway), with the
/// log's last lines.
pub async fn wait_synced(directory: &Path, after: SystemTime) -> anyhow::Result<()> {
    let after = after
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let log_path = directory.join(KUBE_ROUTER_LOG);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since: Option<(usize, Instant)> = None;
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let syncs = syncs(&log);
        let done = syncs
            .last()
            .is_some_and(|last| last.finished && last.version >= after);
        if done {
            match quiet_since {
                Some((count, since)) if count == syncs.len() => {
                    if since.elapsed() >= Duration::from_millis(500) {
                        return Ok(());
                    }
                }
                _ => quiet_since = Some((syncs.len(), Instant::now())),
            }
        } else {
            quiet_since = None;
        }
        if Instant::now() >= deadline {
            bail!(
                "kube-router did not finish a sync of its rules within 60 s; the last lines of {}:\n{}",
                log_path.display(),
                crate::cluster::last_lines(&log_path, 20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Makes pods' network namespaces in the node's.
#[derive(Debug)]
pub struct Pods {
    node: String,
    agent_program: PathBuf,
    next: AtomicU32,
}

/// One pod's network: its namespace, its veth, its address, its agent.
#[derive(Debug)]
pub struct PodNetwork {
    /// The pod's network namespace.
    pub netns: String,
    /// The node's end of the veth.
    pub veth: String,
    /// The pod's address.
    pub address: Ipv4Addr,
    /// The agent listening and probing in it.
    pub agent: Agent,
}

impl Pods {
    /// Pods of the node `node` (this process runs in its network namespace), whose agent is
    /// `agent_program agent`.
    #[must_use]
    pub fn new(node: &str, agent_program: PathBuf) -> Pods {
        Pods {
            node: node.to_owned(),
            agent_program,
            next: AtomicU32::new(0),
        }
    }

    /// A network namespace with `address`, routed through the node, its agent listening on
    /// `ports`.
    ///
    /// # Errors
    ///
    /// When a step fails.
    pub async fn create(
        &self,
        address: Ipv4Addr,
        ports: &[(u16, Protocol)],
    ) -> anyhow::Result<PodNetwork> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let netns = format!("{}-{index}", self.node);
        // Interface names hold 15 bytes.
        let veth = format!("nfpk{index}");
        let address_text = address.to_string();
        let node = NODE_IP.to_string();
        let steps: [&[&str]; 9] = [
            &["netns", "add", &netns],
            &["-n", &netns, "link", "set", "lo", "up"],
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ],
            &[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{address_text}/32"),
                "dev",
                "eth0",
            ],
            &["-n", &netns, "link", "set", "eth0", "up"],
            &["-n", &netns, "route", "add", &node, "dev", "eth0"],
            &[
                "-n", &netns, "route", "add", "default", "via", &node, "dev", "eth0",
            ],
            &["link", "set", &veth, "up"],
            &["route", "add", &format!("{address_text}/32"), "dev", &veth],
        ];
        for step in steps {
            if let Err(error) = ip(step) {
                let _ = ip(&["netns", "del", &netns]);
                let _ = ip(&["link", "del", &veth]);
                return Err(error);
            }
        }
        match Agent::start(&self.agent_program, &netns, ports).await {
            Ok(agent) => Ok(PodNetwork {
                netns,
                veth,
                address,
                agent,
            }),
            Err(error) => {
                let _ = ip(&["netns", "del", &netns]);
                Err(error)
            }
        }
    }
}

impl PodNetwork {
    /// Stop the agent and delete the namespace (and with it the veth and its route).
    pub async fn remove(self) {
        self.agent.stop().await;
        let _ = ip(&["netns", "del", &self.netns]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The barrier reads kube-router's own markers: a sync is named by its start time, and
    /// finished by the line that times it.
    #[test]
    fn syncs_are_read_from_kube_routers_log() {
        let log = "\
I1201 19:51:53.693860 network_policy_controller.go:240] Starting sync of iptables with version: 100
I1201 19:51:53.745537 network_policy_controller.go:237] sync iptables took 51.697144ms
I1201 19:51:54.693860 network_policy_controller.go:240] Starting sync of iptables with version: 200
E1201 19:51:54.693890 network_policy_controller.go:250] Aborting sync. Failed to build network policies: x
I1201 19:51:54.693900 network_policy_controller.go:237] sync iptables took 1ms
";
        assert_eq!(
            syncs(log),
            vec![
                Sync {
                    version: 100,
                    finished: true,
                    aborted: false,
                },
                Sync {
                    version: 200,
                    finished: false,
                    aborted: true,
                }
            ]
        );
    }
}
