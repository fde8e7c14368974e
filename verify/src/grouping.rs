//! Grouping pods that no policy can tell apart, so the matrix is computed once per group.
//!
//! ```text
//! Cluster --group--> Groups { pod -> class, per policy: selected classes, per peer: member classes }
//! ```
//!
//! Two pods are equivalent when they have the same `hostNetwork`, are selected by the same
//! policies, are matched by the same peers (pod peers and `ipBlock`s alike, each peer evaluated
//! once over the whole cluster), and declare the same numbers under the port names that rules use.
//! Every verdict and every reason then depends only on the classes of the two ends, never on which
//! members they are. Per-policy selection and per-peer membership are computed once, as bitsets.

use std::collections::{BTreeSet, HashMap};

use netfence_crd::isolation::{Direction, Protocol};

use super::{
    evaluate::{peer_matches, selects},
    model::{Cluster, NamespaceScope, Peer, PortMatch, PortSpec, Probe},
    selector::Selector,
};

/// A fixed-size set of small integers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bitset {
    words: Vec<u64>,
    len: usize,
}

impl Bitset {
    /// The empty set over `0..len`.
    #[must_use]
    pub fn empty(len: usize) -> Self {
        Bitset {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// The full set `0..len`.
    #[must_use]
    pub fn full(len: usize) -> Self {
        let mut set = Bitset {
            words: vec![u64::MAX; len.div_ceil(64)],
            len,
        };
        if !len.is_multiple_of(64)
            && let Some(last) = set.words.last_mut()
        {
            *last = (1u64 << (len % 64)) - 1;
        }
        set
    }

    /// Add `index`.
    pub fn insert(&mut self, index: usize) {
        self.words[index / 64] |= 1 << (index % 64);
    }

    /// Whether `index` is in the set.
    #[must_use]
    pub fn contains(&self, index: usize) -> bool {
        self.words[index / 64] & (1 << (index % 64)) != 0
    }

    /// Add every member of `other`.
    pub fn union_with(&mut self, other: &Bitset) {
        for (word, other) in self.words.iter_mut().zip(&other.words) {
            *word |= other;
        }
    }

    /// Keep only the members of `other`.
    pub fn intersect_with(&mut self, other: &Bitset) {
        for (word, other) in self.words.iter_mut().zip(&other.words) {
            *word &= other;
        }
    }

    /// The number of members.
    #[must_use]
    pub fn count(&self) -> usize {
        self.words
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum()
    }

    /// The members, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(index, &word)| {
            let mut word = word;
            std::iter::from_fn(move || {
                if word == 0 {
                    return None;
                }
                let bit = word.trailing_zeros() as usize;
                word &= word - 1;
                Some(index * 64 + bit)
            })
        })
    }

    /// The size of the universe.
    #[must_use]
    pub fn universe(&self) -> usize {
        self.len
    }
}

/// One rule, flattened, with the classes its peers match.
#[derive(Clone, Debug)]
pub struct GroupedRule {
    /// Index into [`Cluster::policies`].
    pub policy: usize,
    /// Ingress or egress.
    pub direction: Direction,
    /// Index into the policy's rules of that direction.
    pub index: usize,
    /// The classes its peers match; `None` when the rule has no peers (all).
    pub peers: Option<Bitset>,
    /// The rule's ports; `None`: all.
    pub ports: Option<Vec<PortMatch>>,
}

/// Pods grouped into classes that no policy can tell apart.
#[derive(Clone, Debug)]
pub struct Groups {
    /// The class of each pod.
    pub class_of: Vec<usize>,
    /// The pods of each class, sorted.
    pub members: Vec<Vec<usize>>,
    /// Whether the class's pods use `hostNetwork`.
    pub host_network: Vec<bool>,
    /// Per class, the policies that isolate it for ingress and for egress.
    pub isolated_by: Vec<[Vec<usize>; 2]>,
    /// Per class, the named ports rules refer to: (name, protocol, number), sorted.
    pub named_ports: Vec<Vec<(String, Protocol, u16)>>,
    /// Every rule of every policy.
    pub rules: Vec<GroupedRule>,
    /// Per policy and direction (0 ingress, 1 egress), its rules' indices into `rules`.
    pub policy_rules: Vec<[Vec<usize>; 2]>,
}

/// 0 for ingress, 1 for egress: the index of a direction in per-direction arrays.
#[must_use]
pub fn direction_index(direction: Direction) -> usize {
    match direction {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct Signature {
    host_network: bool,
    selected_by: Vec<u32>,
    peer_of: Vec<u32>,
    named_ports: Vec<(String, Protocol, u16)>,
}

/// A cluster's pods by namespace: pods are sorted by namespace, so each namespace is one range.
struct Index<'a> {
    cluster: &'a Cluster,
    ranges: Vec<std::ops::Range<usize>>,
}

impl<'a> Index<'a> {
    fn new(cluster: &'a Cluster) -> Self {
        let pods = cluster.pods();
        let mut ranges = vec![0..0; cluster.namespaces().len()];
        let mut start = 0;
        while start < pods.len() {
            let namespace = pods[start].namespace_index;
            let end = start + pods[start..].partition_point(|pod| pod.namespace_index == namespace);
            ranges[namespace] = start..end;
            start = end;
        }
        Index { cluster, ranges }
    }

    /// The pods of the namespace called `name`.
    fn pods_in(&self, name: &str) -> std::ops::Range<usize> {
        self.cluster
            .namespaces()
            .binary_search_by(|namespace| namespace.name.as_str().cmp(name))
            .map_or(0..0, |namespace| self.ranges[namespace].clone())
    }
}

/// Every rule of every policy, flattened, with its distinct peers numbered.
struct RuleTable<'a> {
    peers: Vec<&'a Peer>,
    /// Per rule: (policy, direction, index, the rule's peer ids or `None` for all).
    rules: Vec<(usize, Direction, usize, Option<Vec<u32>>)>,
    policy_rules: Vec<[Vec<usize>; 2]>,
    port_names: BTreeSet<&'a str>,
}

fn rule_table(cluster: &Cluster) -> RuleTable<'_> {
    let mut peer_ids: HashMap<&Peer, u32> = HashMap::new();
    let mut table = RuleTable {
        peers: Vec::new(),
        rules: Vec::new(),
        policy_rules: vec![[Vec::new(), Vec::new()]; cluster.policies().len()],
        port_names: BTreeSet::new(),
    };
    for (policy_index, policy) in cluster.policies().iter().enumerate() {
        for direction in [Direction::Ingress, Direction::Egress] {
            for (index, rule) in policy
                .rules(direction)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let ids = rule.peers.as_ref().map(|peers| {
                    peers
                        .iter()
                        .map(|peer| {
                            *peer_ids.entry(peer).or_insert_with(|| {
                                table.peers.push(peer);
                                (table.peers.len() - 1) as u32
                            })
                        })
                        .collect::<Vec<u32>>()
                });
                for port in rule.ports.iter().flatten() {
                    if let PortSpec::Named(name) = &port.port {
                        table.port_names.insert(name.as_str());
                    }
                }
                table.policy_rules[policy_index][direction_index(direction)]
                    .push(table.rules.len());
                table.rules.push((policy_index, direction, index, ids));
            }
        }
    }
    table
}

/// Per pod, the policies that select it.
fn selections(index: &Index<'_>) -> Vec<Vec<u32>> {
    let pods = index.cluster.pods();
    let mut selected_by: Vec<Vec<u32>> = vec![Vec::new(); pods.len()];
    for (policy_index, policy) in index.cluster.policies().iter().enumerate() {
        if policy.cluster_wide().is_some() {
            for (pod_index, pod) in pods.iter().enumerate() {
                if selects(index.cluster, policy, pod) {
                    selected_by[pod_index].push(policy_index as u32);
                }
            }
            continue;
        }
        for pod in index.pods_in(&policy.namespace) {
            if !pods[pod].external && policy.pod_selector.matches(&pods[pod].labels) {
                selected_by[pod].push(policy_index as u32);
            }
        }
    }
    selected_by
}

/// Per pod, the peers that match it; each peer is evaluated once over the cluster, and each
/// namespace selector once over the namespaces.
fn memberships(index: &Index<'_>, peers: &[&Peer]) -> Vec<Vec<u32>> {
    let cluster = index.cluster;
    let pods = cluster.pods();
    let mut peer_of: Vec<Vec<u32>> = vec![Vec::new(); pods.len()];
    let mut namespace_cache: HashMap<&Selector, Vec<String>> = HashMap::new();
    for (peer_id, peer) in peers.iter().enumerate() {
        let mut add = |pod: usize| peer_of[pod].push(peer_id as u32);
        match peer {
            Peer::Pods {
                namespaces: NamespaceScope::Own(name),
                pods: selector,
            } => {
                for pod in index.pods_in(name) {
                    if !pods[pod].external && selector.matches(&pods[pod].labels) {
                        add(pod);
                    }
                }
            }
            Peer::Pods {
                namespaces: NamespaceScope::Matching(namespace_selector),
                pods: selector,
            } => {
                let names = namespace_cache
                    .entry(namespace_selector)
                    .or_insert_with(|| {
                        cluster
                            .namespaces()
                            .iter()
                            .filter(|namespace| namespace_selector.matches(&namespace.labels))
                            .map(|namespace| namespace.name.clone())
                            .collect()
                    });
                for name in names.iter() {
                    for pod in index.pods_in(name) {
                        if !pods[pod].external && selector.matches(&pods[pod].labels) {
                            add(pod);
                        }
                    }
                }
            }
            Peer::IpBlock(_) | Peer::External(_) => {
                for (pod_index, pod) in pods.iter().enumerate() {
                    if peer_matches(cluster, peer, pod) {
                        add(pod_index);
                    }
                }
            }
        }
    }
    peer_of
}

/// Group the pods of `cluster`.
#[must_use]
pub fn group(cluster: &Cluster) -> Groups {
    let pods = cluster.pods();
    let policies = cluster.policies();
    let index = Index::new(cluster);
    let table = rule_table(cluster);
    let mut selected_by = selections(&index);
    let mut peer_of = memberships(&index, &table.peers);

    // Classes by signature, numbered in pod order.
    let mut classes: HashMap<Signature, usize> = HashMap::new();
    let mut class_of = Vec::with_capacity(pods.len());
    let mut signatures: Vec<Signature> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (pod_index, pod) in pods.iter().enumerate() {
        let named_ports: Vec<(String, Protocol, u16)> = pod
            .ports
            .iter()
            .filter_map(|port| {
                let name = port.name.as_deref()?;
                table
                    .port_names
                    .contains(name)
                    .then(|| (name.to_owned(), port.protocol, port.number))
            })
            .collect();
        let signature = Signature {
            host_network: pod.host_network,
            selected_by: std::mem::take(&mut selected_by[pod_index]),
            peer_of: std::mem::take(&mut peer_of[pod_index]),
            named_ports,
        };
        let class = if let Some(&class) = classes.get(&signature) {
            class
        } else {
            let class = signatures.len();
            signatures.push(signature.clone());
            classes.insert(signature, class);
            members.push(Vec::new());
            class
        };
        members[class].push(pod_index);
        class_of.push(class);
    }
    let class_count = members.len();

    let mut peer_classes = vec![Bitset::empty(class_count); table.peers.len()];
    for (class, signature) in signatures.iter().enumerate() {
        for &peer in &signature.peer_of {
            peer_classes[peer as usize].insert(class);
        }
    }
    let rules = table
        .rules
        .iter()
        .map(|(policy, direction, index, ids)| GroupedRule {
            policy: *policy,
            direction: *direction,
            index: *index,
            peers: ids.as_ref().map(|ids| {
                let mut set = Bitset::empty(class_count);
                for &id in ids {
                    set.union_with(&peer_classes[id as usize]);
                }
                set
            }),
            ports: policies[*policy].rules(*direction).unwrap_or_default()[*index]
                .ports
                .clone(),
        })
        .collect();
    let isolated_by = signatures
        .iter()
        .map(|signature| {
            let of = |direction| {
                signature
                    .selected_by
                    .iter()
                    .map(|&policy| policy as usize)
                    .filter(|&policy| policies[policy].isolates(direction))
                    .collect::<Vec<usize>>()
            };
            [of(Direction::Ingress), of(Direction::Egress)]
        })
        .collect();
    Groups {
        class_of,
        members,
        host_network: signatures
            .iter()
            .map(|signature| signature.host_network)
            .collect(),
        isolated_by,
        named_ports: signatures
            .into_iter()
            .map(|signature| signature.named_ports)
            .collect(),
        rules,
        policy_rules: table.policy_rules,
    }
}

impl Groups {
    /// The number of classes.
    #[must_use]
    pub fn class_count(&self) -> usize {
        self.members.len()
    }

    /// Whether a rule's ports admit `probe` to a destination of class `class`.
    #[must_use]
    pub fn ports_admit(&self, rule: &GroupedRule, probe: Probe, class: usize) -> bool {
        rule.ports.as_ref().is_none_or(|ports| {
            ports.iter().any(|port| {
                port.protocol == probe.protocol
                    && match &port.port {
                        PortSpec::All => true,
                        PortSpec::Number(number) => *number == probe.port,
                        PortSpec::Range(start, end) => (*start..=*end).contains(&probe.port),
                        PortSpec::Named(name) => {
                            self.named_ports[class]
                                .iter()
                                .any(|(declared, protocol, number)| {
                                    declared == name
                                        && *protocol == port.protocol
                                        && *number == probe.port
                                })
                        }
                    }
            })
        })
    }

    /// Whether a rule's ports admit `probe` regardless of the destination (no named ports), as
    /// `Some(answer)`; `None` when the answer depends on the destination's named ports.
    #[must_use]
    pub fn ports_admit_everywhere(rule: &GroupedRule, probe: Probe) -> Option<bool> {
        let Some(ports) = &rule.ports else {
            return Some(true);
        };
        let mut named = false;
        for port in ports.iter().filter(|port| port.protocol == probe.protocol) {
            match &port.port {
                PortSpec::All => return Some(true),
                PortSpec::Number(number) if *number == probe.port => return Some(true),
                PortSpec::Range(start, end) if (*start..=*end).contains(&probe.port) => {
                    return Some(true);
                }
                PortSpec::Named(_) => named = true,
                PortSpec::Number(_) | PortSpec::Range(..) => {}
            }
        }
        if named { None } else { Some(false) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// If this fails, set operations lose members at word boundaries and the matrix drops or
    /// invents connections for clusters of more than 64 pod groups.
    #[test]
    fn bitsets_keep_members_across_word_boundaries() {
        let mut set = Bitset::empty(130);
        for index in [0, 63, 64, 127, 129] {
            set.insert(index);
        }
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 63, 64, 127, 129]);
        assert_eq!(set.count(), 5);
        let full = Bitset::full(130);
        assert_eq!(full.count(), 130);
        let mut both = full.clone();
        both.intersect_with(&set);
        assert_eq!(both, set);
        let mut union = Bitset::empty(130);
        union.union_with(&full);
        assert_eq!(union.count(), 130);
        assert!(!set.contains(1) && set.contains(129));
    }
}
