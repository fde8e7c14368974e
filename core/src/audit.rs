//! The intent audit's decisions (pure): what the DNS peer of a resource really reaches, and the
//! audit's part of the status (conditions `Isolated` and `DNSReachable`, `status.audit`).
//!
//! ```text
//! ValidDns x DNS namespace's pods, Services, DaemonSets --dns_findings--> [finding with its fix]
//! Audit { isolation, dns, foreign, acknowledged } x previous conditions --part--> AuditPart
//! ```
//!
//! The reconcile computes the audit with the rest of the status and writes both at once, so the
//! audit adds no write of its own, and a steady state writes nothing.

use std::{collections::BTreeSet, net::IpAddr};

use k8s_openapi::{
    api::{
        apps::v1::DaemonSet,
        core::v1::{Pod, Service},
    },
    apimachinery::pkg::{
        apis::meta::v1::{Condition, Time},
        util::intstr::IntOrString,
    },
};
use netfence_crd::{NamespaceIsolationStatus, isolation::AuditStatus};
use serde::Serialize;

use crate::{
    cidr::Cidr,
    selector::Labels,
    validate::{Peer, PortValue, ValidDns, ValidPort},
};

/// The condition of the intent audit.
pub const ISOLATED: &str = "Isolated";
/// The condition of the DNS check.
pub const DNS_REACHABLE: &str = "DNSReachable";
/// NodeLocal DNSCache's usual link-local address (its `-localip` when the manifest is unchanged).
pub const NODE_LOCAL_DNS_ADDRESS: &str = "169.254.20.10";
/// How many findings a condition message names before it counts the rest (all are in
/// `status.audit`).
const NAMED_FINDINGS: usize = 3;
/// The most findings `status.audit` lists.
const MAX_FINDINGS: usize = 50;

/// What the intent audit found for one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Every policy that applies together allows exactly the declared intent.
    AsDeclared {
        /// How many NetworkPolicies of the namespace were proven.
        policies: usize,
    },
    /// Some policy widens or narrows the intent.
    Departs {
        /// Connections allowed but not declared, one sentence per policy and destination.
        widened: Vec<String>,
        /// Declared connections blocked.
        narrowed: Vec<String>,
    },
    /// The audit cannot tell yet: why, as `(reason, message)`.
    Unknown(&'static str, String),
}

/// What the DNS peer really reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsReality {
    /// DNS pods match, and the Services' target ports are among the DNS ports.
    Reachable,
    /// What is wrong, each with its fix.
    Findings(Vec<String>),
    /// Egress is not isolated: nothing restricts DNS.
    NotRestricted,
    /// `spec.dns.enabled: false` with Egress isolated: DNS is blocked, as declared.
    Disabled,
    /// It cannot be checked: why.
    Unknown(String),
}

/// Everything one audit decided about one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audit {
    /// The intent proof against every policy that applies.
    pub isolation: Isolation,
    /// The DNS peer in the cluster.
    pub dns: DnsReality,
    /// The NetworkPolicies of the namespace netfence does not own that counted.
    pub foreign: Vec<String>,
    /// The acknowledged ones left out, as `name: reason`.
    pub acknowledged: Vec<String>,
    /// `mode: DryRun`: netfence writes no policy, so the namespace is not expected to hold
    /// the intent (reason `DryRun` instead of `Widened` or `Narrowed`).
    pub dry_run: bool,
}

/// The audit's part of a status: what its field manager writes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AuditPart {
    /// `Isolated` and `DNSReachable`.
    pub conditions: Vec<Condition>,
    /// `status.audit`.
    pub audit: AuditStatus,
}

/// Add the audit's part to a status the reconcile computed.
pub fn merge(status: &mut NamespaceIsolationStatus, part: AuditPart) {
    status.conditions.extend(part.conditions);
    status.audit = Some(part.audit);
}

/// The audit's part for `audit` at `generation`; each condition keeps its previous transition
/// time unless its status changed.
#[must_use]
pub fn part(
    audit: &Audit,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> AuditPart {
    let (status, reason, message) = isolated(audit);
    let isolated = crate::status::condition(
        previous,
        ISOLATED,
        status,
        reason,
        message,
        generation,
        now.clone(),
    );
    let (status, reason, message) = dns_reachable(&audit.dns);
    let dns = crate::status::condition(
        previous,
        DNS_REACHABLE,
        status,
        reason,
        message,
        generation,
        now.clone(),
    );
    let (widened, narrowed) = match &audit.isolation {
        Isolation::Departs { widened, narrowed } => (widened.clone(), narrowed.clone()),
        Isolation::AsDeclared { .. } | Isolation::Unknown(..) => (Vec::new(), Vec::new()),
    };
    AuditPart {
        conditions: vec![isolated, dns],
        audit: AuditStatus {
            foreign_policies: audit.foreign.clone(),
            acknowledged: audit.acknowledged.clone(),
            widened: capped(widened),
            narrowed: capped(narrowed),
            dns: match &audit.dns {
                DnsReality::Findings(findings) => capped(findings.clone()),
                _ => Vec::new(),
            },
        },
    }
}

fn capped(mut findings: Vec<String>) -> Vec<String> {
    if findings.len() > MAX_FINDINGS {
        let rest = findings.len() - MAX_FINDINGS;
        findings.truncate(MAX_FINDINGS);
        findings.push(format!(
            "... and {rest} more (netfence verify lists them all)"
        ));
    }
    findings
}

/// `first; second; third; and N more (status.audit.findings)`.
fn summary(findings: &[String]) -> String {
    let mut named: Vec<String> = findings.iter().take(NAMED_FINDINGS).cloned().collect();
    if findings.len() > NAMED_FINDINGS {
        named.push(format!(
            "and {} more (status.audit)",
            findings.len() - NAMED_FINDINGS
        ));
    }
    named.join("; ")
}

fn isolated(audit: &Audit) -> (&'static str, &'static str, String) {
    let acknowledged = match audit.acknowledged.len() {
        0 => String::new(),
        count => format!(" ({count} acknowledged left out: status.audit.acknowledged)"),
    };
    match &audit.isolation {
        Isolation::AsDeclared { policies } => (
            "True",
            "AsDeclared",
            format!(
                "the {policies} NetworkPolicies that apply allow exactly the declared flows, DNS and shared services{acknowledged}"
            ),
        ),
        Isolation::Departs { widened, narrowed } if audit.dry_run => (
            "False",
            "DryRun",
            format!(
                "dry run: netfence writes no policy, and what the namespace's policies allow today differs from the spec in {} way(s) (status.audit)",
                widened.len() + narrowed.len()
            ),
        ),
        Isolation::Departs { widened, narrowed } if !widened.is_empty() => {
            let mut message = format!("{}{acknowledged}", summary(widened));
            if !narrowed.is_empty() {
                message = format!("{message}; and it is narrowed: {}", summary(narrowed));
            }
            ("False", "Widened", message)
        }
        Isolation::Departs { narrowed, .. } => (
            "False",
            "Narrowed",
            format!("{}{acknowledged}", summary(narrowed)),
        ),
        Isolation::Unknown(reason, message) => ("Unknown", reason, message.clone()),
    }
}

fn dns_reachable(dns: &DnsReality) -> (&'static str, &'static str, String) {
    match dns {
        DnsReality::Reachable => (
            "True",
            "Reachable",
            "pods match spec.dns in its namespace, and the target ports of the Services in front of them are among spec.dns.ports".to_owned(),
        ),
        DnsReality::Findings(findings) => ("False", "Misconfigured", findings.join("; ")),
        DnsReality::NotRestricted => (
            "True",
            "EgressNotIsolated",
            "egress is not isolated: nothing restricts DNS".to_owned(),
        ),
        DnsReality::Disabled => (
            "False",
            "Disabled",
            "spec.dns.enabled is false: the pods of this namespace cannot resolve names through the cluster DNS".to_owned(),
        ),
        DnsReality::Unknown(message) => ("Unknown", "Unknown", message.clone()),
    }
}

/// What the DNS namespace holds, as the audit reads it (in any order: the findings are sorted
/// by name).
#[derive(Clone, Copy, Debug)]
pub struct DnsNamespace<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its pods.
    pub pods: &'a [&'a Pod],
    /// Its Services.
    pub services: &'a [&'a Service],
    /// Its DaemonSets.
    pub daemon_sets: &'a [&'a DaemonSet],
}

/// `objects` sorted by name (a cache holds them in no particular order).
fn by_name<'a, K: kube::Resource>(objects: &[&'a K]) -> Vec<&'a K> {
    let mut sorted = objects.to_vec();
    sorted.sort_by(|one, other| one.meta().name.cmp(&other.meta().name));
    sorted
}

/// What the DNS peer `dns` of a resource reaches in `cluster`: the pods it matches, whether the
/// DNS Services' target ports are among its ports (a policy sees the pod's port, not the
/// Service's), and whether NodeLocal DNSCache answers at an address its `ipBlocks` lack.
#[must_use]
pub fn dns_reality(dns: &ValidDns, cluster: &DnsNamespace<'_>) -> DnsReality {
    let (all_pods, services, daemon_sets) = (
        by_name(cluster.pods),
        by_name(cluster.services),
        by_name(cluster.daemon_sets),
    );
    let cluster = &DnsNamespace {
        name: cluster.name,
        pods: &all_pods,
        services: &services,
        daemon_sets: &daemon_sets,
    };
    let selectors: Vec<_> = dns
        .peers
        .iter()
        .filter_map(|peer| match peer {
            Peer::Pods {
                namespace_selector,
                pod_selector,
            } => Some((namespace_selector, pod_selector)),
            Peer::IpBlock(_) => None,
        })
        .collect();
    let namespace_labels = Labels::from([(
        netfence_crd::isolation::NAMESPACE_NAME_LABEL.to_owned(),
        cluster.name.to_owned(),
    )]);
    let pods: Vec<&Pod> = cluster
        .pods
        .iter()
        .copied()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            selectors.iter().any(|(namespaces, pods)| {
                namespaces.selector.matches(&namespace_labels)
                    && pods
                        .as_ref()
                        .is_none_or(|selector| selector.selector.matches(&labels))
            })
        })
        .collect();
    let mut findings = Vec::new();
    if pods.is_empty() {
        findings.push(no_dns_pods(cluster));
    }
    findings.extend(service_port_findings(dns, &pods, cluster));
    findings.extend(node_local_dns_finding(dns, cluster));
    if findings.is_empty() {
        DnsReality::Reachable
    } else {
        DnsReality::Findings(findings)
    }
}

fn no_dns_pods(cluster: &DnsNamespace<'_>) -> String {
    // Name the labels of what looks like the DNS server, when something does (not its name:
    // a pod's name changes with every restart, and the status would with it).
    let likely = cluster.pods.iter().find(|pod| {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        name.starts_with("coredns") || name.starts_with("kube-dns")
    });
    let hint = likely.map_or_else(
        || {
            " (no pod there looks like CoreDNS either: set spec.dns.namespace to where the DNS server runs)"
                .to_owned()
        },
        |pod| {
            let labels: Vec<String> = pod
                .metadata
                .labels
                .iter()
                .flatten()
                .map(|(key, value)| format!("{key}: {value}"))
                .collect();
            format!(
                " (a pod there named like CoreDNS carries the labels {})",
                labels.join(", ")
            )
        },
    );
    format!(
        "no pod in namespace {} matches spec.dns.podSelector, so the DNS rule reaches no server: set spec.dns.podSelector to the DNS pods' labels{hint}",
        cluster.name
    )
}

/// The numbers a port of the spec stands for on `pods` (a name resolves on their containers).
fn numbers(port: &ValidPort, pods: &[&Pod]) -> Vec<(u16, u16)> {
    match &port.port {
        PortValue::Number(number) => vec![(*number, port.end_port.unwrap_or(*number))],
        PortValue::Name(name) => container_ports(pods)
            .filter(|(port_name, _, protocol)| {
                port_name.as_deref() == Some(name.as_str()) && *protocol == port.protocol.as_str()
            })
            .map(|(_, number, _)| (number, number))
            .collect(),
    }
}

/// Every declared container port of `pods`: (name, number, protocol).
fn container_ports<'a>(
    pods: &'a [&'a Pod],
) -> impl Iterator<Item = (Option<String>, u16, String)> + 'a {
    pods.iter()
        .filter_map(|pod| pod.spec.as_ref())
        .flat_map(|spec| &spec.containers)
        .flat_map(|container| container.ports.iter().flatten())
        .filter_map(|port| {
            Some((
                port.name.clone(),
                u16::try_from(port.container_port).ok()?,
                port.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
            ))
        })
}

/// For each Service that selects the DNS pods, each port whose target (the pods' port) the DNS
/// ports lack.
fn service_port_findings(dns: &ValidDns, pods: &[&Pod], cluster: &DnsNamespace<'_>) -> Vec<String> {
    let mut findings = Vec::new();
    for service in cluster.services {
        let Some(spec) = &service.spec else { continue };
        let Some(selector) = spec
            .selector
            .as_ref()
            .filter(|selector| !selector.is_empty())
        else {
            continue;
        };
        let selected: Vec<&Pod> = pods
            .iter()
            .copied()
            .filter(|pod| {
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                selector
                    .iter()
                    .all(|(key, value)| labels.get(key) == Some(value))
            })
            .collect();
        if selected.is_empty() {
            continue;
        }
        for port in spec.ports.iter().flatten() {
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
            // Only the ports clients dial for DNS (kube-dns also serves metrics on 9153).
            let dialled = u16::try_from(port.port).is_ok_and(|number| {
                dns.ports.iter().any(|allowed| {
                    allowed.protocol.as_str() == protocol
                        && numbers(allowed, &selected)
                            .iter()
                            .any(|(first, last)| (*first..=*last).contains(&number))
                })
            });
            if !dialled {
                continue;
            }
            let targets: BTreeSet<u16> = match &port.target_port {
                None => u16::try_from(port.port).into_iter().collect(),
                Some(IntOrString::Int(number)) => u16::try_from(*number).into_iter().collect(),
                Some(IntOrString::String(name)) => container_ports(&selected)
                    .filter(|(port_name, _, port_protocol)| {
                        port_name.as_deref() == Some(name.as_str()) && *port_protocol == protocol
                    })
                    .map(|(_, number, _)| number)
                    .collect(),
            };
            for target in targets {
                let covered = dns.ports.iter().any(|allowed| {
                    allowed.protocol.as_str() == protocol
                        && numbers(allowed, &selected)
                            .iter()
                            .any(|(first, last)| (*first..=*last).contains(&target))
                });
                if !covered {
                    findings.push(format!(
                        "Service {}/{} sends {}/{protocol} to the DNS pods' port {target}, which spec.dns.ports lacks (a NetworkPolicy sees the pod's port, not the Service's): add {{port: {target}, protocol: {protocol}}} to spec.dns.ports",
                        cluster.name,
                        service.metadata.name.as_deref().unwrap_or_default(),
                        port.port,
                    ));
                }
            }
        }
    }
    findings
}

/// NodeLocal DNSCache: a DaemonSet `node-local-dns` (or labelled `k8s-app: node-local-dns`)
/// answers on a link-local address of every node (its `-localip`), on the host network: only
/// an `ipBlock` reaches it.
fn node_local_dns_finding(dns: &ValidDns, cluster: &DnsNamespace<'_>) -> Option<String> {
    let daemon_set = cluster.daemon_sets.iter().find(|daemon_set| {
        daemon_set.metadata.name.as_deref() == Some("node-local-dns")
            || daemon_set
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get("k8s-app"))
                .is_some_and(|app| app == "node-local-dns")
    })?;
    let addresses = local_addresses(daemon_set);
    let blocks: Vec<&Cidr> = dns
        .peers
        .iter()
        .filter_map(|peer| match peer {
            Peer::IpBlock(block) => Some(&block.cidr),
            Peer::Pods { .. } => None,
        })
        .collect();
    let missing: Vec<&IpAddr> = addresses
        .iter()
        .filter(|address| !blocks.iter().any(|block| block.contains(address)))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let fixes: Vec<String> = missing
        .iter()
        .map(|address| {
            let suffix = if address.is_ipv4() { 32 } else { 128 };
            format!("{{cidr: {address}/{suffix}}}")
        })
        .collect();
    Some(format!(
        "NodeLocal DNSCache runs (DaemonSet {}/{}) and answers at {}, which spec.dns.ipBlocks lacks: pods that resolve through it are blocked; add {} to spec.dns.ipBlocks",
        cluster.name,
        daemon_set.metadata.name.as_deref().unwrap_or_default(),
        missing
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        fixes.join(" and ")
    ))
}

/// The containers of a DaemonSet's pod template.
#[must_use]
pub fn containers(daemon_set: &DaemonSet) -> &[k8s_openapi::api::core::v1::Container] {
    daemon_set
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .map(|spec| spec.containers.as_slice())
        .unwrap_or_default()
}

/// The addresses in a NodeLocal DNSCache container's `-localip` argument (its link-local
/// address, and in iptables mode the kube-dns ClusterIP it also answers on, from the host
/// network), or its usual address when it has none.
fn local_addresses(daemon_set: &DaemonSet) -> Vec<IpAddr> {
    let arguments: Vec<&String> = containers(daemon_set)
        .iter()
        .flat_map(|container| container.args.iter().flatten())
        .collect();
    let mut addresses = Vec::new();
    for (index, argument) in arguments.iter().enumerate() {
        let value = if let Some(value) = argument
            .strip_prefix("-localip=")
            .or_else(|| argument.strip_prefix("--localip="))
        {
            Some(value.to_owned())
        } else if *argument == "-localip" || *argument == "--localip" {
            arguments.get(index + 1).map(|value| (*value).clone())
        } else {
            None
        };
        for part in value.iter().flat_map(|value| value.split(',')) {
            if let Ok(address) = part.trim().parse::<IpAddr>() {
                addresses.push(address);
            }
        }
    }
    if addresses.is_empty()
        && let Ok(address) = NODE_LOCAL_DNS_ADDRESS.parse()
    {
        addresses.push(address);
    }
    addresses
}

#[cfg(test)]
mod tests;
