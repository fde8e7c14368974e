//! The full matrix: for every probe and every ordered pair of distinct pods, allowed or not.
//!
//! ```text
//! Cluster + [Probe] --group--> classes --per probe: egress rows, ingress rows--> class matrix
//!                                                   --expand--> Connection { from, to, probe, verdict, reason }
//! ```
//!
//! Per probe, each class of sources gets the set of destination classes its egress allows (the
//! union of its isolating policies' egress rules, each rule's peers intersected with the classes
//! whose ports admit the probe), and each class of destinations the set of source classes its
//! ingress allows. A class pair is allowed when both sets say so. Rows are shared by classes with
//! the same isolating policies, so the work grows with the number of distinct behaviours, not
//! with the number of pods squared times the number of rules.

use std::collections::HashMap;

use netfence_crd::isolation::Direction;
use serde::Serialize;

use super::{
    evaluate::{Decision, RuleRef, Side, Verdict, decide},
    grouping::{Bitset, Groups, direction_index, group},
    model::{Cluster, Probe},
};

/// Who can reach whom, per probe, for one cluster.
#[derive(Debug)]
pub struct Reachability<'a> {
    cluster: &'a Cluster,
    groups: Groups,
    probes: Vec<Probe>,
    /// Per probe, `class_count * class_count` bits: `source * class_count + destination`.
    matrices: Vec<Bitset>,
    /// Cluster-wide policies take part: decisions come from the reference semantics.
    general: bool,
}

/// One connection of the matrix, as `netfence verify -o json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// The source, `namespace/pod`.
    pub from: String,
    /// The destination, `namespace/pod`.
    pub to: String,
    /// The destination port.
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: &'static str,
    /// `true` allowed, `false` blocked, `null` not governed by NetworkPolicy (`hostNetwork`).
    pub allowed: Option<bool>,
    /// Why: the rules that allowed it, or what blocked it.
    pub reason: String,
}

/// Compute the matrix of `cluster` for `probes` (deduplicated and sorted).
#[must_use]
pub fn reachability<'a>(cluster: &'a Cluster, probes: &[Probe]) -> Reachability<'a> {
    let mut probes = probes.to_vec();
    probes.sort();
    probes.dedup();
    let groups = group(cluster);
    let general = cluster
        .policies()
        .iter()
        .any(|policy| policy.cluster_wide().is_some());
    let matrices = probes
        .iter()
        .map(|&probe| {
            if general {
                general_class_matrix(cluster, &groups, probe)
            } else {
                class_matrix(&groups, probe)
            }
        })
        .collect();
    Reachability {
        cluster,
        groups,
        probes,
        matrices,
        general,
    }
}

/// The class matrix for one probe when cluster-wide policies take part (ordered stages, actions,
/// tiers): the reference semantics, once per class pair, on each class's first member (classes
/// are built so that every member behaves alike under every policy).
fn general_class_matrix(cluster: &Cluster, groups: &Groups, probe: Probe) -> Bitset {
    let classes = groups.class_count();
    let mut matrix = Bitset::empty(classes * classes);
    for source in 0..classes {
        for destination in 0..classes {
            let decision = decide(
                cluster,
                groups.members[source][0],
                groups.members[destination][0],
                probe,
            );
            if decision.verdict == Verdict::Allowed {
                matrix.insert(source * classes + destination);
            }
        }
    }
    matrix
}

/// The class matrix for one probe.
fn class_matrix(groups: &Groups, probe: Probe) -> Bitset {
    let classes = groups.class_count();
    let full = Bitset::full(classes);

    // Egress: per source class, the destination classes allowed. Shared by isolating set.
    let mut egress_rows: Vec<Bitset> = Vec::new();
    let mut egress_row_of = Vec::with_capacity(classes);
    let mut egress_cache: HashMap<&[usize], usize> = HashMap::new();
    for class in 0..classes {
        let isolating = groups.isolated_by[class][direction_index(Direction::Egress)].as_slice();
        if isolating.is_empty() {
            egress_row_of.push(None);
            continue;
        }
        let row = *egress_cache.entry(isolating).or_insert_with(|| {
            let mut row = Bitset::empty(classes);
            for &policy in isolating {
                for &rule in &groups.policy_rules[policy][direction_index(Direction::Egress)] {
                    let rule = &groups.rules[rule];
                    let peers = rule.peers.as_ref().unwrap_or(&full);
                    match Groups::ports_admit_everywhere(rule, probe) {
                        Some(false) => {}
                        Some(true) => row.union_with(peers),
                        None => {
                            for destination in peers.iter() {
                                if groups.ports_admit(rule, probe, destination) {
                                    row.insert(destination);
                                }
                            }
                        }
                    }
                }
            }
            egress_rows.push(row);
            egress_rows.len() - 1
        });
        egress_row_of.push(Some(row));
    }

    // Ingress: per destination class, the source classes allowed. Shared by admitting rules.
    let mut ingress_rows: Vec<Bitset> = Vec::new();
    let mut ingress_row_of = Vec::with_capacity(classes);
    let mut ingress_cache: HashMap<Vec<usize>, usize> = HashMap::new();
    for class in 0..classes {
        let isolating = &groups.isolated_by[class][direction_index(Direction::Ingress)];
        if isolating.is_empty() {
            ingress_row_of.push(None);
            continue;
        }
        let admitting: Vec<usize> = isolating
            .iter()
            .flat_map(|&policy| &groups.policy_rules[policy][direction_index(Direction::Ingress)])
            .copied()
            .filter(|&rule| groups.ports_admit(&groups.rules[rule], probe, class))
            .collect();
        let row = *ingress_cache
            .entry(admitting)
            .or_insert_with_key(|admitting| {
                let mut row = Bitset::empty(classes);
                for &rule in admitting {
                    row.union_with(groups.rules[rule].peers.as_ref().unwrap_or(&full));
                }
                ingress_rows.push(row);
                ingress_rows.len() - 1
            });
        ingress_row_of.push(Some(row));
    }

    let mut matrix = Bitset::empty(classes * classes);
    for (source, egress_row) in egress_row_of.iter().enumerate() {
        if groups.host_network[source] {
            continue;
        }
        let destinations = egress_row.map_or(&full, |row| &egress_rows[row]);
        for destination in destinations.iter() {
            let ingress_ok =
                ingress_row_of[destination].is_none_or(|row| ingress_rows[row].contains(source));
            if ingress_ok && !groups.host_network[destination] {
                matrix.insert(source * classes + destination);
            }
        }
    }
    matrix
}

impl<'a> Reachability<'a> {
    /// The cluster this matrix is about.
    #[must_use]
    pub fn cluster(&self) -> &'a Cluster {
        self.cluster
    }

    /// The probes, sorted.
    #[must_use]
    pub fn probes(&self) -> &[Probe] {
        &self.probes
    }

    /// The number of pod classes no policy can tell apart.
    #[must_use]
    pub fn class_count(&self) -> usize {
        self.groups.class_count()
    }

    /// The verdict for pods `from` -> `to` (indices into [`Cluster::pods`]) and probe `probe`
    /// (index into [`Reachability::probes`]).
    #[must_use]
    pub fn verdict(&self, probe: usize, from: usize, to: usize) -> Verdict {
        let source = self.groups.class_of[from];
        let destination = self.groups.class_of[to];
        self.class_verdict(probe, source, destination)
    }

    fn class_verdict(&self, probe: usize, source: usize, destination: usize) -> Verdict {
        if self.groups.host_network[source] || self.groups.host_network[destination] {
            Verdict::NotGoverned
        } else if self.matrices[probe].contains(source * self.groups.class_count() + destination) {
            Verdict::Allowed
        } else {
            Verdict::Blocked
        }
    }

    /// How many ordered pairs of distinct pods are allowed for probe `probe`.
    #[must_use]
    pub fn allowed_count(&self, probe: usize) -> u64 {
        let classes = self.groups.class_count();
        let mut count = 0u64;
        for source in 0..classes {
            for destination in 0..classes {
                if self.class_verdict(probe, source, destination) == Verdict::Allowed {
                    let sources = self.groups.members[source].len() as u64;
                    let destinations = self.groups.members[destination].len() as u64;
                    count += sources * destinations;
                    if source == destination {
                        count -= sources;
                    }
                }
            }
        }
        count
    }

    /// The decision on `from` -> `to` for probe `probe`, with the policies and rules behind it,
    /// read from the grouped rules (the same answer as [`super::evaluate::decide`], faster).
    #[must_use]
    pub fn decision(&self, probe: usize, from: usize, to: usize) -> Decision {
        let source = self.groups.class_of[from];
        let destination = self.groups.class_of[to];
        self.class_decision(probe, source, destination)
    }

    fn class_decision(&self, probe: usize, source: usize, destination: usize) -> Decision {
        let probe_value = self.probes[probe];
        if self.general {
            return decide(
                self.cluster,
                self.groups.members[source][0],
                self.groups.members[destination][0],
                probe_value,
            );
        }
        let side = |direction: Direction, pod_class: usize, peer_class: usize| {
            let isolated_by =
                self.groups.isolated_by[pod_class][direction_index(direction)].clone();
            if isolated_by.is_empty() {
                return Side::NotIsolated;
            }
            let allowed_by: Vec<RuleRef> = isolated_by
                .iter()
                .flat_map(|&policy| &self.groups.policy_rules[policy][direction_index(direction)])
                .map(|&rule| &self.groups.rules[rule])
                .filter(|rule| {
                    rule.peers
                        .as_ref()
                        .is_none_or(|peers| peers.contains(peer_class))
                        && self.groups.ports_admit(rule, probe_value, destination)
                })
                .map(|rule| RuleRef {
                    policy: rule.policy,
                    direction,
                    rule: rule.index,
                })
                .collect();
            if allowed_by.is_empty() {
                Side::Blocked { isolated_by }
            } else {
                Side::Allowed {
                    isolated_by,
                    allowed_by,
                }
            }
        };
        Decision {
            verdict: self.class_verdict(probe, source, destination),
            egress: side(Direction::Egress, source, destination),
            ingress: side(Direction::Ingress, destination, source),
        }
    }

    /// Every connection: per probe, every ordered pair of distinct pods, sorted by probe, then
    /// source, then destination. Lazy, so a large matrix can be streamed; each reason is computed
    /// once per class pair and probe, and the cache of them is bounded.
    pub fn connections(&self) -> impl Iterator<Item = Connection> + '_ {
        let pods = self.cluster.pods();
        let keys: Vec<String> = pods.iter().map(super::model::PodInfo::key).collect();
        let classes = self.groups.class_count();
        let mut cache = ReasonCache {
            probe: usize::MAX,
            slots: Vec::new(),
            texts: Vec::new(),
            interned: HashMap::new(),
        };
        (0..self.probes.len())
            .flat_map(move |probe| {
                (0..pods.len())
                    .flat_map(move |from| (0..pods.len()).map(move |to| (probe, from, to)))
            })
            .filter(|(_, from, to)| from != to)
            .map(move |(probe, from, to)| {
                let source = self.groups.class_of[from];
                let destination = self.groups.class_of[to];
                if cache.probe != probe || cache.texts.len() >= MAX_CACHED_REASONS {
                    cache.probe = probe;
                    cache.slots.clear();
                    cache.slots.resize(classes * classes, u32::MAX);
                    cache.texts.clear();
                    cache.interned.clear();
                }
                let slot = &mut cache.slots[source * classes + destination];
                if *slot == u32::MAX {
                    let text = self.class_decision(probe, source, destination).reason(
                        self.cluster,
                        &pods[from],
                        &pods[to],
                    );
                    *slot = *cache.interned.entry(text.clone()).or_insert_with(|| {
                        cache.texts.push(text);
                        (cache.texts.len() - 1) as u32
                    });
                }
                let reason = cache.texts[*slot as usize].clone();
                let allowed = match self.class_verdict(probe, source, destination) {
                    Verdict::Allowed => Some(true),
                    Verdict::Blocked => Some(false),
                    Verdict::NotGoverned => None,
                };
                Connection {
                    from: keys[from].clone(),
                    to: keys[to].clone(),
                    port: self.probes[probe].port,
                    protocol: self.probes[probe].protocol.as_str(),
                    allowed,
                    reason,
                }
            })
    }
}

/// The most distinct reasons kept while listing connections; beyond it the cache starts over, so
/// memory stays bounded when nearly every class pair has its own reason.
const MAX_CACHED_REASONS: usize = 100_000;

/// The reasons of one probe's class pairs while its connections are listed: per class pair an
/// index into the distinct reason texts (`u32::MAX` until computed).
struct ReasonCache {
    probe: usize,
    slots: Vec<u32>,
    texts: Vec<String>,
    interned: HashMap<String, u32>,
}
