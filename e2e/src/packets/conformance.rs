//! Point 3: the conformance corpus (`verify/tests/conformance/`, translated from Kubernetes' own
//! network policy e2e tests) on real packets.
//!
//! ```text
//! each case: namespaces x, y, z (the case's labels), pods a, b, c (the case's labels, IPs and
//! ports; kept between cases when unchanged), the case's NetworkPolicies only --kube-router synced-->
//! every cell of every expected table, a new connection: measured vs upstream table vs verify
//! ```
//!
//! A cell where kube-router disagrees with both the upstream table and `netfence verify` (which
//! agree, as the engine's own test proves) is kube-router's: it is reported, and counted as a
//! difference unless `e2e/packets/kube-router-differences` documents it (case, probe, cell, why).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use k8s_openapi::api::{core::v1::Pod, networking::v1::NetworkPolicy};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use netfence_crd::isolation::Protocol;
use netfence_verify::{
    Cluster, Probe, Verdict,
    cidr::Cidr,
    conformance::{Case, parse_case, parse_table},
    reachability,
};
use serde_json::{Value, json};

use super::{Endpoint, Harness, Outcome, Totals, word};
use crate::apply_object;

/// The corpus in the repository.
#[must_use]
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../verify/tests/conformance")
}

/// The documented disagreements of kube-router: `case probe from->to: why` lines.
fn documented() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packets/kube-router-differences");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once(':').map(|(cell, _)| cell.trim().to_owned()))
        .collect()
}

fn load(directory: &Path) -> anyhow::Result<Vec<(String, Case)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)
        .with_context(|| format!("failed to read {}", directory.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml")
        })
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("failed to read {}", file.display()))?;
        let case = parse_case(&file.display().to_string(), &text)
            .map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
        cases.push((case.expected.metadata.name.clone(), case));
    }
    Ok(cases)
}

/// A pod of the world, as the harness made it.
struct Running {
    /// Its manifest's spec, to tell when a case needs it made anew.
    spec: Value,
    address: Ipv4Addr,
    endpoint: Endpoint,
}

fn pod_address(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok()
}

fn labels_patch(
    current: Option<&BTreeMap<String, String>>,
    wanted: Option<&BTreeMap<String, String>>,
) -> Value {
    let mut labels = serde_json::Map::new();
    for key in current.into_iter().flatten().map(|(key, _)| key) {
        labels.insert(key.clone(), Value::Null);
    }
    for (key, value) in wanted.into_iter().flatten() {
        labels.insert(key.clone(), json!(value));
    }
    labels.remove(netfence_crd::isolation::NAMESPACE_NAME_LABEL);
    json!({"metadata": {"labels": labels}})
}

fn canonical(text: &mut Value, policy: &str, notes: &mut Vec<String>) {
    let Some(written) = text.as_str().map(str::to_owned) else {
        return;
    };
    let Ok(cidr) = Cidr::parse(&written) else {
        return;
    };
    let network = format!("{}/{}", cidr.first(), cidr.prefix());
    if network != written {
        notes.push(format!(
            "policy {policy}: ipBlock {written} applied as {network} (the API server refuses host bits)"
        ));
        *text = json!(network);
    }
}

/// Rewrite each `ipBlock` CIDR with host bits set (`10.244.0.10/4`, as upstream's tests write
/// them) to its network (`0.0.0.0/4`): Kubernetes refuses host bits since 1.33's stricter IP
/// validation, and every NetworkPolicy implementation (and `netfence verify`) reads both the same.
fn canonical_blocks(policy: &mut Value, notes: &mut Vec<String>) {
    let name = policy["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
        let Some(rules) = policy["spec"][direction].as_array_mut() else {
            continue;
        };
        for peer in rules
            .iter_mut()
            .filter_map(|rule| rule[peers].as_array_mut())
            .flatten()
        {
            let Some(block) = peer.get_mut("ipBlock") else {
                continue;
            };
            if let Some(cidr) = block.get_mut("cidr") {
                canonical(cidr, &name, notes);
            }
            if let Some(except) = block.get_mut("except").and_then(Value::as_array_mut) {
                for text in except {
                    canonical(text, &name, notes);
                }
            }
        }
    }
}

/// Give the object `name` exactly the labels `wanted` (the name label of a namespace stays).
async fn replace_labels<K>(
    api: &Api<K>,
    name: &str,
    wanted: Option<&BTreeMap<String, String>>,
) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let current = api.get(name).await?;
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(labels_patch(current.meta().labels.as_ref(), wanted)),
    )
    .await?;
    Ok(())
}

/// Make the cluster hold exactly the case's world: its namespaces' and pods' labels, its pods
/// (made anew when their spec or address changed), its policies and no other in x, y, z.
async fn arrange(
    harness: &Harness,
    case: &Case,
    running: &mut BTreeMap<String, Running>,
    probed: &[(u16, Protocol)],
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    for namespace in &case.namespaces {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        apply_object(
            &harness.client,
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .await?;
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(harness.client.clone());
        replace_labels(&api, &name, namespace.metadata.labels.as_ref()).await?;
    }
    for pod in &case.pods {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let key = format!("{namespace}/{name}");
        let address = pod_address(pod).with_context(|| format!("pod {key} has no status.podIP"))?;
        let spec = serde_json::to_value(&pod.spec)?;
        let reuse = running
            .get(&key)
            .is_some_and(|known| known.spec == spec && known.address == address);
        if reuse {
            let api: Api<Pod> = Api::namespaced(harness.client.clone(), &namespace);
            replace_labels(&api, &name, pod.metadata.labels.as_ref()).await?;
            if let Some(known) = running.get_mut(&key) {
                known.endpoint.info.labels = pod.metadata.labels.clone().unwrap_or_default();
            }
            continue;
        }
        if let Some(old) = running.remove(&key) {
            harness
                .remove_pod(&namespace, &name, old.endpoint.network)
                .await;
        }
        if !harness.reserve(address) {
            anyhow::bail!("pod {key}: address {address} is taken");
        }
        let manifest = serde_json::to_value(pod)?;
        let network = harness.create_pod(&manifest, address, probed).await?;
        let mut info_pod = pod.clone();
        info_pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            pod_ip: Some(address.to_string()),
            ..Default::default()
        });
        let cluster = Cluster::build(&[], &[info_pod], &[])
            .map_err(|errors| anyhow::anyhow!("pod {key}: {errors}"))?;
        let info = cluster.pods()[0].clone();
        running.insert(
            key,
            Running {
                spec,
                address,
                endpoint: Endpoint {
                    label: format!("{namespace}/{name}"),
                    info,
                    network,
                },
            },
        );
    }
    arrange_policies(harness, case, notes).await
}

/// Only the case's policies in the case's namespaces.
async fn arrange_policies(
    harness: &Harness,
    case: &Case,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let wanted: BTreeSet<(String, String)> = case
        .policies
        .iter()
        .map(|policy| {
            (
                policy.metadata.namespace.clone().unwrap_or_default(),
                policy.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    for namespace in &case.namespaces {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        let api: Api<NetworkPolicy> = Api::namespaced(harness.client.clone(), &name);
        for policy in api.list(&ListParams::default()).await?.items {
            let policy_name = policy.metadata.name.clone().unwrap_or_default();
            if !wanted.contains(&(name.clone(), policy_name.clone())) {
                api.delete(&policy_name, &DeleteParams::default()).await?;
            }
        }
    }
    for policy in &case.policies {
        let mut object = serde_json::to_value(policy)?;
        canonical_blocks(&mut object, notes);
        object["apiVersion"] = json!("networking.k8s.io/v1");
        object["kind"] = json!("NetworkPolicy");
        apply_object(&harness.client, &object).await?;
    }
    Ok(())
}

/// What the cases measured so far.
#[derive(Default)]
struct Tally {
    cells: u64,
    agreeing_cases: usize,
    /// Cases with no table measured here (SCTP only).
    unmeasured_cases: usize,
    kube_router_own: u64,
    counted: u64,
    skipped_sctp: usize,
    report: String,
    /// The counted cells, one line each.
    differences: Vec<String>,
}

/// Measure every cell of one case's tables (the world arranged and synced), and compare.
async fn measure_case(
    harness: &Harness,
    name: &str,
    case: &Case,
    running: &BTreeMap<String, Running>,
    documented: &BTreeSet<String>,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let endpoints: Vec<&Running> = running.values().collect();
    let index_of: BTreeMap<String, usize> = endpoints
        .iter()
        .enumerate()
        .map(|(index, known)| (known.endpoint.info.key(), index))
        .collect();
    let cluster = Cluster::build(&case.namespaces, &case.pods, &case.policies)
        .map_err(|errors| anyhow::anyhow!("case {name}: {errors}"))?;
    let mut case_differences = 0u64;
    let cells_before = tally.cells;
    for table in &case.expected.expected {
        let probe: Probe = table
            .probe
            .parse()
            .map_err(|error| anyhow::anyhow!("case {name}: {error}"))?;
        if probe.protocol == Protocol::SCTP && !harness.sctp {
            tally.skipped_sctp += 1;
            continue;
        }
        let (_, cells) = parse_table(&table.table)
            .map_err(|error| anyhow::anyhow!("case {name} {}: {error}", table.probe))?;
        let matrix = reachability(&cluster, &[probe]);
        let (endpoints, index_of) = (&endpoints, &index_of);
        let attempts = cells.iter().map(|((from, to), allowed)| async move {
            let (Some(&from_index), Some(&to_index)) = (index_of.get(from), index_of.get(to))
            else {
                return (from, to, *allowed, None);
            };
            let destination = SocketAddr::new(IpAddr::V4(endpoints[to_index].address), probe.port);
            let agent = &endpoints[from_index].endpoint.network.agent;
            let mut outcome = agent.probe(probe.protocol, destination).await;
            // A timeout or an error is no verdict (kube-router refuses with an ICMP
            // port-unreachable, which the kernel rate-limits under many parallel probes): such a
            // cell is measured once more, and counted as unclean only if it stays so.
            if !matches!(outcome, Outcome::Connected | Outcome::Refused) {
                outcome = agent.probe(probe.protocol, destination).await;
            }
            (from, to, *allowed, Some(outcome))
        });
        for (from, to, upstream, outcome) in futures::future::join_all(attempts).await {
            let cell = format!("{name} {probe} {from}->{to}");
            let Some(outcome) = outcome else {
                case_differences += 1;
                tally.counted += 1;
                let line = format!("{cell}: the pod is not in the world");
                let _ = writeln!(tally.report, "  {line}");
                tally.differences.push(line);
                continue;
            };
            tally.cells += 1;
            let measured = outcome.connected();
            let verify = match (cluster.pod_index(from), cluster.pod_index(to)) {
                (Some(from_index), Some(to_index)) => {
                    matrix.verdict(0, from_index, to_index) == Verdict::Allowed
                }
                _ => false,
            };
            // kube-router refuses with an ICMP port-unreachable: a timeout or an error is a lost
            // packet, a dead agent or a broken route, never a verdict to agree with.
            let clean = matches!(outcome, Outcome::Connected | Outcome::Refused);
            if measured == upstream && upstream == verify && clean {
                continue;
            }
            let kube_router_own = upstream == verify && measured != upstream && clean;
            let whose = if kube_router_own {
                tally.kube_router_own += 1;
                "kube-router's own"
            } else if clean {
                "netfence verify or the table"
            } else {
                "the measurement"
            };
            // Only kube-router's own disagreements can be documented away.
            let is_documented = kube_router_own && documented.contains(&cell);
            if !is_documented {
                tally.counted += 1;
                case_differences += 1;
            }
            let line = format!(
                "{cell}: measured {} ({outcome:?}), upstream {}, netfence verify {} [{whose}{}]",
                word(measured),
                word(upstream),
                word(verify),
                if is_documented { ", documented" } else { "" }
            );
            let _ = writeln!(tally.report, "  {line}");
            if !is_documented {
                tally.differences.push(format!("conformance {line}"));
            }
        }
    }
    if tally.cells == cells_before {
        tally.unmeasured_cases += 1;
    } else if case_differences == 0 {
        tally.agreeing_cases += 1;
    }
    Ok(())
}

/// Every port a table probes: each pod listens on all of them, declared or not, so that a table
/// expecting a connection on 53 to a pod that declares only 80 and 81 measures the firewall,
/// not a missing listener.
fn probed_ports(cases: &[(String, Case)]) -> Vec<(u16, Protocol)> {
    cases
        .iter()
        .flat_map(|(_, case)| &case.expected.expected)
        .filter_map(|table| table.probe.parse::<Probe>().ok())
        .map(|probe| (probe.port, probe.protocol))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Run every case of `directory` on real packets; print each case's cells that disagree.
///
/// # Errors
///
/// When the corpus cannot be read or the world cannot be made.
pub async fn run(harness: &Harness, directory: &Path, totals: &mut Totals) -> anyhow::Result<()> {
    let cases = load(directory)?;
    let documented = documented();
    let ports = probed_ports(&cases);
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut tally = Tally::default();
    let mut notes = Vec::new();
    let mut failure = None;
    for (name, case) in &cases {
        let measured = async {
            arrange(harness, case, &mut running, &ports, &mut notes).await?;
            harness.synced().await?;
            measure_case(harness, name, case, &running, &documented, &mut tally).await
        }
        .await;
        if let Err(error) = measured {
            failure = Some(error.context(format!("case {name}")));
            break;
        }
    }
    for (key, known) in running {
        let (namespace, name) = key.split_once('/').unwrap_or_default();
        harness
            .remove_pod(namespace, name, known.endpoint.network)
            .await;
    }
    let names: BTreeSet<String> = cases
        .iter()
        .flat_map(|(_, case)| {
            case.namespaces
                .iter()
                .filter_map(|namespace| namespace.metadata.name.clone())
        })
        .collect();
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(harness.client.clone());
    for name in names {
        let _ = api.delete(&name, &DeleteParams::default()).await;
    }
    if let Some(error) = failure {
        return Err(error);
    }
    let summary = format!(
        "conformance on packets: {} cases, {} measured ({} cells), {} agree on every cell with the upstream table and netfence verify; {} cells are kube-router's own disagreements; {} SCTP tables not measured (no SCTP in this kernel), {} cases only SCTP",
        cases.len(),
        cases.len() - tally.unmeasured_cases,
        tally.cells,
        tally.agreeing_cases,
        tally.kube_router_own,
        tally.skipped_sctp,
        tally.unmeasured_cases
    );
    println!("== {summary}");
    for note in &notes {
        println!("  note: {note}");
    }
    print!("{}", tally.report);
    totals.measured += tally.cells;
    totals.differ += tally.counted;
    totals.differences.append(&mut tally.differences);
    totals.lines.push(summary);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's host-bit CIDRs are applied as their network, and each rewrite is noted.
    #[test]
    fn host_bit_blocks_become_their_network() {
        let mut policy = json!({
            "metadata": {"name": "p"},
            "spec": {
                "egress": [{"to": [
                    {"ipBlock": {"cidr": "10.244.0.10/4", "except": ["10.244.0.10/32"]}},
                    {"podSelector": {}},
                ]}],
                "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}],
            },
        });
        let mut notes = Vec::new();
        canonical_blocks(&mut policy, &mut notes);
        assert_eq!(
            policy["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"],
            "0.0.0.0/4"
        );
        assert_eq!(
            policy["spec"]["egress"][0]["to"][0]["ipBlock"]["except"][0],
            "10.244.0.10/32"
        );
        // A peer without an ipBlock gets none.
        assert!(
            policy["spec"]["egress"][0]["to"][1]
                .get("ipBlock")
                .is_none()
        );
        assert_eq!(
            policy["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"],
            "10.0.0.0/8"
        );
        assert_eq!(
            notes,
            [
                "policy p: ipBlock 10.244.0.10/4 applied as 0.0.0.0/4 (the API server refuses host bits)"
            ]
        );
    }

    /// A case's labels replace the current ones: missing keys are removed (null in a merge patch),
    /// the name label the API server keeps is never touched.
    #[test]
    fn labels_are_replaced_not_merged() {
        let current = BTreeMap::from([
            ("old".to_owned(), "1".to_owned()),
            ("kubernetes.io/metadata.name".to_owned(), "x".to_owned()),
        ]);
        let wanted = BTreeMap::from([("pod".to_owned(), "a".to_owned())]);
        assert_eq!(
            labels_patch(Some(&current), Some(&wanted)),
            json!({"metadata": {"labels": {"old": null, "pod": "a"}}})
        );
    }
}
