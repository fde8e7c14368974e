//! The intent proof: the connections a NamespaceIsolation's policies allow are exactly the ones
//! it declares (its flows, DNS and shared services, on exactly their ports), nothing missing and
//! nothing extra.
//!
//! ```text
//! ValidatedIsolation --world::build--> model world (endpoints, probes, warnings)
//!        |                                   |
//!        +--declared: what the spec says     +--NetworkPolicies (rendered, or any others) --engine--> what they allow
//!                              \___________ compare every ordered pair, every probe ___________/
//!                                                        |
//!                                      Proof { differences, allowed matrix, warnings }
//! ```
//!
//! The spec is read directly ([`declared`]); the policies are evaluated by the same engine as
//! `netfence verify` ([`super::reachability`]). Neither side uses the renderer's code, so a
//! renderer bug shows up as a difference such as
//! `backend -> database 5432/TCP: declared but blocked by the ingress of database (...)`.

pub mod audit;
pub mod declared;
pub mod diff;
pub mod world;

use std::{collections::BTreeMap, fmt, fmt::Write as _};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use netfence_core::ValidatedIsolation;
use serde::Serialize;

use super::{
    cluster_wide::ClusterWidePolicies,
    evaluate::{Decision, Side, Verdict},
    explain::{Explanation, explain},
    model::{Cluster, ModelErrors, Probe},
    reachability::reachability,
    selector::Labels,
};
pub use world::{Endpoint, Role, World};

/// Why a proof could not be attempted.
#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    /// The policies to prove are not valid NetworkPolicies.
    #[error("the policies to prove are invalid: {0}")]
    Policies(#[source] ModelErrors),
}

/// A destination port as the spec and the policies name it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum Port {
    /// A port number.
    Number(u16),
    /// A named container port (`metrics`): its number is the model world's own invention, so
    /// reports show the name only.
    Name(String),
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Number(number) => write!(f, "{number}"),
            Port::Name(name) => f.write_str(name),
        }
    }
}

impl Port {
    /// How reports name the port of `probe` in `world`: by its name when it is one of the
    /// world's named ports, else by its number.
    #[must_use]
    pub fn of(probe: Probe, world: &World) -> Self {
        match named_port(probe, world) {
            Some(name) => Port::Name(name.to_owned()),
            None => Port::Number(probe.port),
        }
    }
}

/// The name of the named port behind `probe` in `world`, if it is one.
fn named_port(probe: Probe, world: &World) -> Option<&str> {
    world
        .named_ports
        .iter()
        .find(|named| named.number == probe.port)
        .and_then(|named| named.name.as_deref())
}

/// One connection where the policies and the spec disagree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The source, as the world names it (a tier, `ns/pod`, `external ADDRESS`).
    pub from: String,
    /// The destination.
    pub to: String,
    /// The destination port: a number, or a named port's name (JSON: `8080` or `"metrics"`).
    pub port: Port,
    /// The protocol.
    pub protocol: &'static str,
    /// What the spec says: `true` declared (so the policies block it), `false` not declared (so
    /// the policies allow something extra).
    pub declared: bool,
    /// What the policies decided, and why.
    pub reason: String,
    /// The policies that decided (`namespace/name`, `Kind/name`): for a connection allowed but
    /// not declared, those whose rules allow it; for one declared but blocked, those whose rules
    /// deny it (none when the only cause is that no rule allows it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// The probe as the model world numbers it (a named port's number is the world's own).
    #[serde(skip)]
    pub probe: Probe,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let probe = format!("{}/{}", self.port, self.protocol);
        if self.declared {
            write!(
                f,
                "{} -> {} {probe}: declared but blocked by {}",
                self.from, self.to, self.reason
            )
        } else {
            write!(
                f,
                "{} -> {} {probe}: allowed but not declared ({})",
                self.from, self.to, self.reason
            )
        }
    }
}

/// The outcome of one proof.
#[derive(Clone, Debug)]
pub struct Proof {
    /// `namespace/name` of the isolation.
    pub isolation: String,
    /// The model world.
    pub world: World,
    /// Per ordered pair of endpoints (indices into `world.endpoints`), the probes the policies
    /// allow; pairs with none are absent.
    pub allowed: BTreeMap<(usize, usize), Vec<Probe>>,
    /// Every disagreement, sorted by source, destination and probe.
    pub differences: Vec<Difference>,
    /// The policies placed over the world (for [`Proof::explain`]).
    pub placed: Placed,
}

impl Proof {
    /// Whether the policies allow exactly what the spec declares.
    #[must_use]
    pub fn holds(&self) -> bool {
        self.differences.is_empty()
    }

    /// Why the policies decide the connection between two endpoints (indices into
    /// `world.endpoints`) on `probe` as they do: `netfence verify --explain` for the model world.
    #[must_use]
    pub fn explain(&self, from: usize, to: usize, probe: Probe) -> Explanation {
        explain(
            &self.placed.cluster,
            self.placed.index[from],
            self.placed.index[to],
            probe,
        )
    }
}

/// Policies placed over the endpoints of a world: the engine's cluster of them, and where each
/// endpoint is in it (the engine sorts pods).
#[derive(Clone, Debug)]
pub struct Placed {
    /// The world's namespaces and endpoints, with the policies.
    pub cluster: Cluster,
    /// For each endpoint of the world, its pod's index in `cluster`.
    pub index: Vec<usize>,
}

impl Placed {
    /// Place `policies` (built by [`Cluster::build_with`]) over `world`.
    #[must_use]
    pub fn new(world: &World, policies: &Cluster) -> Self {
        let cluster = Cluster::from_parts(
            world.namespaces.clone(),
            world
                .endpoints
                .iter()
                .map(|endpoint| endpoint.pod.clone())
                .collect(),
            policies.policies().to_vec(),
        );
        let index = world
            .endpoints
            .iter()
            .map(|endpoint| cluster.pod_index(&endpoint.pod.key()).unwrap_or_default())
            .collect();
        Self { cluster, index }
    }
}

/// Give each namespace of `world` named in `labels` those labels too (the world's own win).
fn label_namespaces(world: &mut World, labels: &BTreeMap<String, Labels>) {
    for namespace in &mut world.namespaces {
        if let Some(extra) = labels.get(&namespace.name) {
            for (key, value) in extra {
                namespace
                    .labels
                    .entry(key.clone())
                    .or_insert_with(|| value.clone());
            }
        }
    }
}

/// Whether a connection between two endpoints is the resource's to declare: one end at least is
/// in its namespace (traffic between two endpoints outside is not, though cluster-wide policies
/// may well constrain it).
#[must_use]
pub fn in_scope(world: &World, from: usize, to: usize) -> bool {
    from != to
        && (world.endpoints[from].pod.namespace == world.namespace
            || world.endpoints[to].pod.namespace == world.namespace)
}

/// Describe why the blocking sides of `decision` block.
fn blocked_by(decision: &Decision, cluster: &Cluster, from: &str, to: &str) -> String {
    let policies = |indices: &[usize]| {
        indices
            .iter()
            .map(|&index| cluster.policies()[index].key())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    for (side, direction, end) in [
        (&decision.egress, "egress", from),
        (&decision.ingress, "ingress", to),
    ] {
        match side {
            Side::Blocked { isolated_by } => parts.push(format!(
                "the {direction} of {end} (isolated by {}; no {direction} rule allows it)",
                policies(isolated_by)
            )),
            Side::Decided { allowed: false, .. } | Side::EndOfTier { .. } => parts.push(format!(
                "the {direction} of {end} ({})",
                side.decided_by(cluster).unwrap_or_default()
            )),
            Side::NotIsolated | Side::Allowed { .. } | Side::Decided { .. } => {}
        }
    }
    parts.join(" and ")
}

/// The policies that decided `decision` the way it went (see [`Difference::policies`]), sorted.
pub(crate) fn responsible(decision: &Decision, cluster: &Cluster) -> Vec<String> {
    let allowed = decision.verdict == Verdict::Allowed;
    let mut indices = Vec::new();
    for side in [&decision.egress, &decision.ingress] {
        match side {
            Side::Allowed { allowed_by, .. } if allowed => {
                indices.extend(allowed_by.iter().map(|rule| rule.policy));
            }
            Side::Decided { rule, allowed: by } if *by == allowed => indices.push(rule.policy),
            Side::EndOfTier { policies } if !allowed => indices.extend(policies),
            _ => {}
        }
    }
    let mut keys: Vec<String> = indices
        .into_iter()
        .map(|index| cluster.policies()[index].key())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Prove that `policies` allow exactly what `isolation` declares, in its model world.
pub fn prove(
    isolation: &ValidatedIsolation,
    policies: &[NetworkPolicy],
) -> Result<Proof, IntentError> {
    prove_with(
        isolation,
        policies,
        &ClusterWidePolicies::default(),
        &BTreeMap::new(),
    )
}

/// [`prove`], with the cluster-wide policies that apply too (a ClusterBaseline's, other
/// engines'), and the labels the input gives namespaces of the model world (a cluster-wide
/// policy chooses namespaces by label): each world namespace named in `labels` gets them too.
pub fn prove_with(
    isolation: &ValidatedIsolation,
    policies: &[NetworkPolicy],
    cluster_wide: &ClusterWidePolicies,
    labels: &BTreeMap<String, Labels>,
) -> Result<Proof, IntentError> {
    let policies =
        Cluster::build_with(&[], &[], policies, cluster_wide).map_err(IntentError::Policies)?;
    let mut world = world::build(isolation);
    label_namespaces(&mut world, labels);
    world::extend(&mut world, policies.policies());
    let placed = Placed::new(&world, &policies);
    let (cluster, index) = (&placed.cluster, &placed.index);
    let matrix = reachability(cluster, &world.probes);
    let declared = declared::Declared::new(isolation, &world);

    let mut allowed: BTreeMap<(usize, usize), Vec<Probe>> = BTreeMap::new();
    let mut differences = Vec::new();
    for (from, source) in world.endpoints.iter().enumerate() {
        for (to, destination) in world.endpoints.iter().enumerate() {
            if !in_scope(&world, from, to) {
                continue;
            }
            for (probe_index, probe) in matrix.probes().iter().enumerate() {
                let verdict = matrix.verdict(probe_index, index[from], index[to]);
                let is_allowed = verdict == Verdict::Allowed;
                if is_allowed {
                    allowed.entry((from, to)).or_default().push(*probe);
                }
                let is_declared = declared.allows(&source.pod, &destination.pod, *probe);
                if is_allowed == is_declared {
                    continue;
                }
                let decision = matrix.decision(probe_index, index[from], index[to]);
                let reason = if is_declared {
                    blocked_by(&decision, cluster, &source.label, &destination.label)
                } else {
                    decision
                        .reason(cluster, &source.pod, &destination.pod)
                        .trim_start_matches("allowed: ")
                        .to_owned()
                };
                differences.push(Difference {
                    from: source.label.clone(),
                    to: destination.label.clone(),
                    port: Port::of(*probe, &world),
                    probe: *probe,
                    protocol: probe.protocol.as_str(),
                    declared: is_declared,
                    reason,
                    policies: responsible(&decision, cluster),
                });
            }
        }
    }
    Ok(Proof {
        isolation: format!("{}/{}", world.namespace, isolation.name()),
        world,
        allowed,
        differences,
        placed,
    })
}

/// Probes, compact: `8080/TCP`, `53/TCP,UDP`, `8000-8010/TCP` for a range the spec or a policy
/// declares (`port` to `endPort`: the probes test its ends, the report shows what is allowed),
/// `metrics/TCP` for a named port (by its name: the number is the model world's own), `all/UDP`
/// when every probe of a protocol passes, or `all` when every probe of the world passes.
#[must_use]
pub fn compact(probes: &[Probe], world: &World) -> String {
    if probes.len() == world.probes.len() {
        return "all".to_owned();
    }
    port_labels(probes, world)
        .into_iter()
        .map(|(label, protocols)| format!("{label}/{}", protocols.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The allowed ports of `probes` as labels (`all`, `8080`, `8000-8010`, `metrics`), each with
/// its protocols, in port order (names last).
pub(crate) fn port_labels(probes: &[Probe], world: &World) -> Vec<(String, Vec<&'static str>)> {
    use netfence_crd::isolation::Protocol;
    // (order, label) -> protocols
    let mut labels: BTreeMap<(u32, String), Vec<&'static str>> = BTreeMap::new();
    for protocol in [Protocol::TCP, Protocol::UDP, Protocol::SCTP] {
        let of_protocol: Vec<Probe> = world
            .probes
            .iter()
            .filter(|probe| probe.protocol == protocol)
            .copied()
            .collect();
        let allowed: Vec<Probe> = probes
            .iter()
            .filter(|probe| probe.protocol == protocol)
            .copied()
            .collect();
        if allowed.is_empty() {
            continue;
        }
        if allowed.len() == of_protocol.len() {
            labels
                .entry((0, "all".to_owned()))
                .or_default()
                .push(protocol.as_str());
            continue;
        }
        let mut add = |order: u32, label: String| {
            labels
                .entry((order, label))
                .or_default()
                .push(protocol.as_str());
        };
        // Runs of allowed numbers. Every port where some policy's verdict may change (a port,
        // the first and last of a range) is probed with its neighbours (see `world::extend`),
        // so each stretch of ports that all policies treat alike holds a probe: two allowed
        // probes with no probe between them allow every port between them too.
        let mut run: Option<(u16, u16)> = None;
        for probe in &of_protocol {
            if let Some(name) = named_port(*probe, world) {
                if allowed.contains(probe) {
                    add(u32::MAX, name.to_owned());
                }
                continue;
            }
            if !allowed.contains(probe) {
                if let Some((start, end)) = run.take() {
                    add(u32::from(start) + 1, range_label(start, end));
                }
                continue;
            }
            let number = probe.port;
            run = match run {
                Some((start, _)) => Some((start, number)),
                None => Some((number, number)),
            };
        }
        if let Some((start, end)) = run {
            add(u32::from(start) + 1, range_label(start, end));
        }
    }
    labels
        .into_iter()
        .map(|((_, label), protocols)| (label, protocols))
        .collect()
}

fn range_label(start: u16, end: u16) -> String {
    if start == end {
        start.to_string()
    } else {
        format!("{start}-{end}")
    }
}

/// The matrix of the endpoints inside the namespace: rows from, columns to, cells the allowed
/// ports.
fn grid(proof: &Proof, inside: &[usize]) -> String {
    let world = &proof.world;
    let mut out = String::new();
    let cell = |from: usize, to: usize| {
        if from == to {
            "-".to_owned()
        } else {
            proof
                .allowed
                .get(&(from, to))
                .map_or_else(|| ".".to_owned(), |probes| compact(probes, world))
        }
    };
    let label_width = inside
        .iter()
        .map(|&index| world.endpoints[index].label.len())
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = inside
        .iter()
        .map(|&to| {
            inside
                .iter()
                .map(|&from| cell(from, to).len())
                .chain([world.endpoints[to].label.len()])
                .max()
                .unwrap_or(1)
        })
        .collect();
    let mut header = format!("{:label_width$}", "");
    for (&to, width) in inside.iter().zip(&widths) {
        let _ = write!(header, "  {:<width$}", world.endpoints[to].label);
    }
    let _ = writeln!(out, "{}", header.trim_end());
    for &from in inside {
        let mut line = format!("{:<label_width$}", world.endpoints[from].label);
        for (&to, width) in inside.iter().zip(&widths) {
            let _ = write!(line, "  {:<width$}", cell(from, to));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// The proof as text: warnings, the tier-by-tier matrix of the namespace, the connections
/// across its boundary, then `intent holds` or every difference.
#[must_use]
pub fn report(proof: &Proof) -> String {
    let world = &proof.world;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "NamespaceIsolation {}: model world of {} endpoints, {} probes",
        proof.isolation,
        world.endpoints.len(),
        world.probes.len()
    );
    for warning in &world.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    let inside: Vec<usize> = (0..world.endpoints.len())
        .filter(|&index| {
            let pod = &world.endpoints[index].pod;
            !pod.external && pod.namespace == world.namespace
        })
        .collect();
    let _ = writeln!(
        out,
        "\ninside {} (rows: from, columns: to; cells: the allowed ports, . none)",
        world.namespace
    );
    out.push_str(&grid(proof, &inside));
    let _ = writeln!(
        out,
        "\nacross the boundary of {} (allowed ports)",
        world.namespace
    );
    let mut any = false;
    for (&(from, to), probes) in &proof.allowed {
        if inside.contains(&from) == inside.contains(&to) {
            continue;
        }
        any = true;
        let _ = writeln!(
            out,
            "  {} -> {}: {}",
            world.endpoints[from].label,
            world.endpoints[to].label,
            compact(probes, world)
        );
    }
    if !any {
        let _ = writeln!(out, "  nothing");
    }
    let _ = writeln!(out);
    if proof.holds() {
        let _ = write!(
            out,
            "intent holds: the allowed connections are exactly the declared flows, DNS and shared services, on exactly their ports"
        );
    } else {
        let _ = writeln!(
            out,
            "intent does not hold: {} difference(s) between the policies and the spec",
            proof.differences.len()
        );
        let lines: Vec<String> = proof
            .differences
            .iter()
            .map(|difference| format!("  {difference}"))
            .collect();
        let _ = writeln!(out, "{}", lines.join("\n"));
        // The same, told by policy (what the operator's condition Isolated says).
        let summary: Vec<String> = audit::findings(proof)
            .into_iter()
            .map(|finding| format!("  {}: {}", finding.departure.as_str(), finding.message))
            .collect();
        let _ = write!(out, "in short:\n{}", summary.join("\n"));
    }
    out
}

/// The proof as one JSON object: `isolation`, `holds`, `endpoints`, `probes`, `warnings`, `differences`.
#[must_use]
pub fn json(proof: &Proof) -> serde_json::Value {
    serde_json::json!({
        "isolation": proof.isolation,
        "holds": proof.holds(),
        "endpoints": proof.world.endpoints.len(),
        "probes": proof.world.probes.len(),
        "warnings": proof.world.warnings,
        "differences": proof.differences,
    })
}

#[cfg(test)]
pub(crate) mod tests;
