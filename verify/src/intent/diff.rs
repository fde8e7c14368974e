//! What a change opens and closes: the connections one set of policies allows and another does
//! not, in one model world of the namespace built for both.
//!
//! ```text
//! isolations before + after --world::build, merge--> one World (every endpoint either side tells apart)
//!        policies before --engine--> allowed before \
//!                                                     compare every pair in scope, every probe
//!        policies after  --engine--> allowed after  /
//!                                                |
//!                        NamespaceDiff { opened, closed: edges with ports and the policies behind them }
//! ```
//!
//! The world is the same for both sides, so a connection is compared with itself: a tier whose
//! selector changed keeps both of its pods (the old one marked `(before)`), a shared service
//! removed keeps its peer, and a renamed tier or reordered flows change nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use netfence_core::ValidatedIsolation;
use serde::Serialize;

use super::{
    super::{
        cluster_wide::ClusterWidePolicies,
        evaluate::Verdict,
        model::{Cluster, Probe},
        reachability::{Reachability, reachability},
        selector::Labels,
    },
    IntentError, Placed, World, compact, in_scope, label_namespaces, responsible, world,
};

/// How the world marks an endpoint that only the side before a change has (a tier's old
/// selector, say), when the side after uses its name.
pub const BEFORE: &str = "(before)";

/// One side of a change, in one namespace.
#[derive(Clone, Copy, Debug)]
pub struct Side<'a> {
    /// The isolations whose model worlds the comparison runs in (the namespace's, or one with the
    /// defaults for a namespace only a baseline covers). They shape the world only: what is
    /// allowed is what `policies` allow.
    pub isolations: &'a [&'a ValidatedIsolation],
    /// The NetworkPolicies of the namespace.
    pub policies: &'a [NetworkPolicy],
    /// The cluster-wide policies.
    pub cluster_wide: &'a ClusterWidePolicies,
    /// Namespace labels, as [`super::prove_with`] takes them.
    pub labels: &'a BTreeMap<String, Labels>,
}

/// A pair of endpoints whose connection changed, on some probes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// The source, as the world names it (a tier, `ns/pod`, `external ADDRESS`).
    pub from: String,
    /// The destination.
    pub to: String,
    /// The ports that changed, compact (`8080/TCP`, `53/TCP,UDP`, `metrics/TCP`), `every port`,
    /// or `every port except 8080/TCP`.
    pub ports: String,
    /// Each probe that changed, one port and protocol each (`8080/TCP`, `metrics/TCP`).
    pub probes: Vec<String>,
    /// The policies that allow the connection on the side that allows it (after, for an opened
    /// one; before, for a closed one).
    pub policies: Vec<String>,
    /// The source's index in [`NamespaceDiff::world`].
    #[serde(skip)]
    pub source: usize,
    /// The destination's index in [`NamespaceDiff::world`].
    #[serde(skip)]
    pub destination: usize,
}

/// What changed in one namespace.
#[derive(Clone, Debug)]
pub struct NamespaceDiff {
    /// The namespace.
    pub namespace: String,
    /// The world both sides were evaluated in.
    pub world: World,
    /// Connections allowed after and not before, by pair of endpoints.
    pub opened: Vec<Edge>,
    /// Connections allowed before and not after.
    pub closed: Vec<Edge>,
}

impl NamespaceDiff {
    /// Whether any connection changed.
    #[must_use]
    pub fn changed(&self) -> bool {
        !self.opened.is_empty() || !self.closed.is_empty()
    }
}

/// The world of one side: its isolations' worlds, merged (an endpoint of a later one whose
/// label is taken is marked with its isolation's name).
fn world_of(side: &Side<'_>) -> Option<World> {
    side.isolations
        .iter()
        .map(|isolation| (world::build(isolation), isolation.name()))
        .reduce(|(world, name), (other, other_name)| {
            (world::merge(world, other, &format!("({other_name})")), name)
        })
        .map(|(world, _)| world)
}

/// Probes as a reviewer reads them: `8080/TCP`, `every port`, or, for most of them, `every port
/// except 8080/TCP`.
fn ports(probes: &[Probe], world: &World) -> String {
    if probes.len() == world.probes.len() {
        return "every port".to_owned();
    }
    if probes.len() * 2 > world.probes.len() {
        let others: Vec<Probe> = world
            .probes
            .iter()
            .filter(|probe| !probes.contains(probe))
            .copied()
            .collect();
        return format!("every port except {}", compact(&others, world));
    }
    compact(probes, world)
}

/// The tiers of a side's isolations: names and selectors.
fn tiers<'a>(side: &Side<'a>) -> Vec<(&'a str, &'a crate::selector::Selector)> {
    side.isolations
        .iter()
        .flat_map(|isolation| isolation.tiers())
        .map(|tier| (tier.name.as_str(), &tier.pod_selector.selector))
        .collect()
}

/// The pod selector of each shared service of a side that chooses pods, by name.
fn peer_selectors<'a>(side: &Side<'a>) -> BTreeMap<&'a str, crate::selector::Selector> {
    side.isolations
        .iter()
        .flat_map(|isolation| isolation.shared_services())
        .filter_map(|service| match &service.peer {
            netfence_core::validate::Peer::Pods { pod_selector, .. } => Some((
                service.name.as_str(),
                pod_selector
                    .as_ref()
                    .map_or_else(crate::selector::Selector::everything, |selector| {
                        selector.selector.clone()
                    }),
            )),
            netfence_core::validate::Peer::IpBlock(_) => None,
        })
        .collect()
}

/// Pods that tell apart the two sides of a shared service whose pod selector changed, in each
/// namespace of the world that stands for its peer.
fn distinguish_peers(world: &mut World, before: &Side<'_>, after: &Side<'_>) {
    let (old, new) = (peer_selectors(before), peer_selectors(after));
    for (name, selector) in &new {
        let Some(previous) = old.get(name).filter(|previous| *previous != selector) else {
            continue;
        };
        let role = world::Role::SharedService((*name).to_owned());
        let namespaces: std::collections::BTreeSet<String> = world
            .endpoints
            .iter()
            .filter(|endpoint| endpoint.role == role)
            .map(|endpoint| endpoint.pod.namespace.clone())
            .collect();
        for namespace in namespaces {
            world::distinguish_in(
                world,
                &namespace,
                &[(name, previous)],
                &[(name, selector)],
                &role,
            );
        }
    }
}

/// One world for both sides (the isolations' worlds merged, pods that tell their tiers apart,
/// the endpoints the other policies need), and that world with each side's own namespace labels
/// (a relabelled namespace is a change); `None` when neither side has an isolation.
fn shared_world(
    before: &Side<'_>,
    after: &Side<'_>,
    policies_before: &Cluster,
    policies_after: &Cluster,
) -> Option<(World, [World; 2])> {
    let mut world = match (world_of(after), world_of(before)) {
        (Some(after), Some(before)) => world::merge(after, before, BEFORE),
        (Some(world), None) | (None, Some(world)) => world,
        (None, None) => return None,
    };
    world::distinguish(&mut world, &tiers(before), &tiers(after));
    distinguish_peers(&mut world, before, after);
    let plain = world.namespaces.clone();
    label_namespaces(&mut world, after.labels);
    label_namespaces(&mut world, before.labels);
    world::extend(&mut world, policies_after.policies());
    world::extend(&mut world, policies_before.policies());
    let labelled = |labels: &BTreeMap<String, Labels>| {
        let mut side = world.clone();
        for namespace in &mut side.namespaces {
            if let Some(own) = plain.iter().find(|known| known.name == namespace.name) {
                namespace.labels.clone_from(&own.labels);
            }
        }
        label_namespaces(&mut side, labels);
        side
    };
    let sides = [labelled(before.labels), labelled(after.labels)];
    Some((world, sides))
}

/// Compare the connections `before` and `after` allow in `namespace`.
///
/// # Errors
///
/// When the policies of a side are not valid NetworkPolicies.
pub fn compare(
    namespace: &str,
    before: &Side<'_>,
    after: &Side<'_>,
) -> Result<NamespaceDiff, IntentError> {
    let build = |side: &Side<'_>| {
        Cluster::build_with(&[], &[], side.policies, side.cluster_wide)
            .map_err(IntentError::Policies)
    };
    let (policies_before, policies_after) = (build(before)?, build(after)?);
    let Some((world, [labelled_before, labelled_after])) =
        shared_world(before, after, &policies_before, &policies_after)
    else {
        return Ok(NamespaceDiff {
            namespace: namespace.to_owned(),
            world: World {
                namespace: namespace.to_owned(),
                namespaces: Vec::new(),
                endpoints: Vec::new(),
                probes: Vec::new(),
                named_ports: Vec::new(),
                port_ranges: std::collections::BTreeSet::new(),
                warnings: Vec::new(),
            },
            opened: Vec::new(),
            closed: Vec::new(),
        });
    };
    let before = Placed::new(&labelled_before, &policies_before);
    let after = Placed::new(&labelled_after, &policies_after);
    let matrix_before = reachability(&before.cluster, &world.probes);
    let matrix_after = reachability(&after.cluster, &world.probes);
    let mut opened = Vec::new();
    let mut closed = Vec::new();
    for from in 0..world.endpoints.len() {
        for to in 0..world.endpoints.len() {
            if !in_scope(&world, from, to) {
                continue;
            }
            let mut changed: [Vec<Probe>; 2] = [Vec::new(), Vec::new()];
            for (probe_index, probe) in world.probes.iter().enumerate() {
                let allowed = |side: &Placed, matrix: &Reachability<'_>| {
                    matrix.verdict(probe_index, side.index[from], side.index[to])
                        == Verdict::Allowed
                };
                match (
                    allowed(&before, &matrix_before),
                    allowed(&after, &matrix_after),
                ) {
                    (false, true) => changed[0].push(*probe),
                    (true, false) => changed[1].push(*probe),
                    _ => {}
                }
            }
            let [now_open, now_closed] = changed;
            for (probes, side, matrix, list) in [
                (now_open, &after, &matrix_after, &mut opened),
                (now_closed, &before, &matrix_before, &mut closed),
            ] {
                if probes.is_empty() {
                    continue;
                }
                let mut policies: Vec<String> = Vec::new();
                for probe in &probes {
                    let Some(probe_index) = world.probes.iter().position(|known| known == probe)
                    else {
                        continue;
                    };
                    let decision = matrix.decision(probe_index, side.index[from], side.index[to]);
                    policies.extend(responsible(&decision, &side.cluster));
                }
                policies.sort();
                policies.dedup();
                let ports = ports(&probes, &world);
                let probes = probes
                    .iter()
                    .map(|probe| compact(std::slice::from_ref(probe), &world))
                    .collect();
                list.push(Edge {
                    from: world.endpoints[from].label.clone(),
                    to: world.endpoints[to].label.clone(),
                    ports,
                    probes,
                    policies,
                    source: from,
                    destination: to,
                });
            }
        }
    }
    Ok(NamespaceDiff {
        namespace: namespace.to_owned(),
        world,
        opened,
        closed,
    })
}

/// The objects that changed between two sides, by key (`namespace/name`, `Kind/name`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ObjectChanges {
    /// Only after.
    pub added: Vec<String>,
    /// Only before.
    pub removed: Vec<String>,
    /// On both, with a different spec.
    pub changed: Vec<String>,
}

impl ObjectChanges {
    /// Compare objects by key: their specs (`serde_json::Value`s, so field order never counts).
    #[must_use]
    pub fn between(
        before: &BTreeMap<String, serde_json::Value>,
        after: &BTreeMap<String, serde_json::Value>,
    ) -> Self {
        let mut changes = Self::default();
        for (key, spec) in after {
            match before.get(key) {
                None => changes.added.push(key.clone()),
                Some(old) if old != spec => changes.changed.push(key.clone()),
                Some(_) => {}
            }
        }
        changes.removed = before
            .keys()
            .filter(|key| !after.contains_key(*key))
            .cloned()
            .collect();
        changes
    }

    /// Whether nothing changed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

#[cfg(test)]
mod tests;
