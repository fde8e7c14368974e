//! The model world of an intent proof: the smallest set of endpoints that can tell a correct
//! set of policies from a wrong one.
//!
//! ```text
//! ValidatedIsolation --build--> World { endpoints (pods and external addresses), probes, warnings }
//! ```
//!
//! In the isolation's namespace: for each tier a pod whose labels satisfy its selector, for each
//! pair of overlapping tiers a pod in both, and a pod in no tier. Across the boundary: for each
//! DNS or shared-service peer, a namespace and a pod that match it and, where a pod selector
//! narrows the peer, a pod of that namespace that does not; a namespace outside them all with a
//! pod. For each `ipBlock`: an address inside it, one inside each `except`, and one outside.
//! Model pods carry no address (so only the external endpoints stand for `ipBlock`s) and declare
//! every port name the spec uses. Probes: every port number the spec names (and each range's
//! ends and neighbours), the numbers behind its port names, and one port it never names, each
//! over TCP, UDP and SCTP.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use netfence_core::{
    ValidatedIsolation,
    validate::{Peer, PortValue, Ports, ValidPort},
};
use netfence_crd::isolation::{NAMESPACE_NAME_LABEL, Protocol};

use super::super::{
    cidr::Cidr,
    model::{ContainerPort, NamespaceInfo, PodInfo, Policy, PortSpec, Probe},
    selector::{Labels, Requirement, Selector},
};

/// The label that marks model pods built to be outside a selector.
pub const MODEL_LABEL: &str = "netfence.io/model-world";

/// The pseudo-namespace of external addresses (they match only `ipBlock` peers).
pub const EXTERNAL_NAMESPACE: &str = "external";

/// One endpoint of the model world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The pod or address, as the engine sees it.
    pub pod: PodInfo,
    /// How reports name it: tier names for pods of the namespace, `ns/name` for peers,
    /// `external ADDRESS` for addresses.
    pub label: String,
    /// What the endpoint stands for (how a picture of the world draws it).
    pub role: Role,
}

/// What an endpoint of the model world stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A pod of a tier (or of two overlapping tiers).
    Tier,
    /// A pod of the namespace in no tier.
    NoTier,
    /// A pod of a DNS peer.
    Dns,
    /// A pod of the shared service of this name.
    SharedService(String),
    /// An address of an `ipBlock`, and where it lies: `10.0.0.0/8`, `outside 10.0.0.0/8`,
    /// `10.1.0.0/16, an except of 10.0.0.0/8`.
    External(String),
    /// A pod in a namespace outside every peer.
    Outside,
    /// Any other pod: one in a peer's namespace that its pod selector leaves out, or one the
    /// other policies of the namespace select or name.
    Other,
}

/// The model world of one isolation.
#[derive(Clone, Debug)]
pub struct World {
    /// The isolation's namespace.
    pub namespace: String,
    /// The namespaces of the world, with their labels.
    pub namespaces: Vec<NamespaceInfo>,
    /// Every endpoint.
    pub endpoints: Vec<Endpoint>,
    /// The probes, sorted.
    pub probes: Vec<Probe>,
    /// The port names the spec uses, and the numbers model pods declare them on.
    pub named_ports: Vec<ContainerPort>,
    /// The port ranges (`port` to `endPort`) the spec and the other policies declare, sorted:
    /// reports show allowed probes that one of them joins as that range, not as the probed
    /// numbers ([`super::compact`]).
    pub port_ranges: BTreeSet<(u16, u16)>,
    /// Tier selectors that overlap or that no pod can satisfy, and places the world could not
    /// be built as intended.
    pub warnings: Vec<String>,
}

/// What one label key must satisfy across several selectors.
#[derive(Default)]
struct KeyConstraint {
    allowed: Option<BTreeSet<String>>,
    excluded: BTreeSet<String>,
    exists: bool,
    absent: bool,
}

/// Labels that satisfy every selector, or `None` when no pod can.
#[must_use]
pub fn satisfying(selectors: &[&Selector]) -> Option<Labels> {
    let mut keys: BTreeMap<&str, KeyConstraint> = BTreeMap::new();
    for requirement in selectors
        .iter()
        .flat_map(|selector| selector.requirements())
    {
        let constraint = keys.entry(requirement.key()).or_default();
        match requirement {
            Requirement::In { values, .. } => {
                constraint.allowed = Some(match constraint.allowed.take() {
                    None => values.clone(),
                    Some(allowed) => allowed.intersection(values).cloned().collect(),
                });
            }
            Requirement::NotIn { values, .. } => constraint.excluded.extend(values.iter().cloned()),
            Requirement::Exists { .. } => constraint.exists = true,
            Requirement::DoesNotExist { .. } => constraint.absent = true,
        }
    }
    let mut labels = Labels::new();
    for (key, constraint) in keys {
        if constraint.absent {
            if constraint.exists || constraint.allowed.is_some() {
                return None;
            }
            continue;
        }
        if let Some(allowed) = &constraint.allowed {
            let value = allowed.difference(&constraint.excluded).next()?;
            labels.insert(key.to_owned(), value.clone());
        } else if constraint.exists {
            // One of these is not excluded: there are more candidates than exclusions.
            let value = (0..=constraint.excluded.len())
                .map(|index| {
                    if index == 0 {
                        "x".to_owned()
                    } else {
                        format!("x{index}")
                    }
                })
                .find(|value| !constraint.excluded.contains(value))?;
            labels.insert(key.to_owned(), value);
        }
    }
    Some(labels)
}

/// Labels that satisfy none of `selectors`, or `None` if the simple candidates all match one.
fn satisfying_none(selectors: &[&Selector], marker: &str) -> Option<Labels> {
    [
        Labels::new(),
        Labels::from([(MODEL_LABEL.to_owned(), marker.to_owned())]),
    ]
    .into_iter()
    .find(|labels| selectors.iter().all(|selector| !selector.matches(labels)))
}

fn describe(labels: &Labels) -> String {
    if labels.is_empty() {
        return "no labels".to_owned();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    format!("labels {}", pairs.join(", "))
}

fn pod(namespace: &str, name: &str, labels: Labels, ports: &[ContainerPort]) -> PodInfo {
    PodInfo {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        labels,
        ips: Vec::new(),
        ports: ports.to_vec(),
        host_network: false,
        external: false,
        namespace_index: 0,
    }
}

/// Every port of the spec: (ports, the DNS ports).
fn all_ports(isolation: &ValidatedIsolation) -> Vec<ValidPort> {
    let only = |ports: &Ports| match ports {
        Ports::All => Vec::new(),
        Ports::Only(ports) => ports.clone(),
    };
    let mut ports: Vec<ValidPort> = isolation
        .flows()
        .iter()
        .flat_map(|flow| only(&flow.ports))
        .collect();
    ports.extend(
        isolation
            .shared_services()
            .iter()
            .flat_map(|service| only(&service.ports)),
    );
    if let Some(dns) = isolation.dns() {
        ports.extend(dns.ports.iter().cloned());
    }
    ports
}

/// The named ports every model pod declares: each name the spec uses, on a number the spec
/// does not name and no range of it covers, with the protocol of its first use.
fn named_ports(ports: &[ValidPort], numbers: &BTreeSet<u16>) -> Vec<ContainerPort> {
    let ranges: BTreeSet<(u16, u16)> = ports
        .iter()
        .filter_map(|port| match (&port.port, port.end_port) {
            (PortValue::Number(start), Some(end)) => Some((*start, end)),
            _ => None,
        })
        .collect();
    let mut declared: Vec<ContainerPort> = Vec::new();
    let mut next = 30_000u16;
    for port in ports {
        if let PortValue::Name(name) = &port.port {
            if declared
                .iter()
                .any(|known| known.name.as_deref() == Some(name.as_str()))
            {
                continue;
            }
            next = free_number(next, numbers, &ranges);
            declared.push(ContainerPort {
                name: Some(name.clone()),
                number: next,
                protocol: port.protocol,
            });
            next += 1;
        }
    }
    declared
}

fn probes(ports: &[ValidPort], named: &[ContainerPort]) -> Vec<Probe> {
    let mut numbers = BTreeSet::new();
    for port in ports {
        if let PortValue::Number(start) = port.port {
            let end = port.end_port.unwrap_or(start);
            numbers.extend([start, end]);
            numbers.extend(start.checked_sub(1).filter(|n| *n > 0));
            numbers.extend(end.checked_add(1));
        }
    }
    numbers.extend(named.iter().map(|port| port.number));
    // A port the spec never names: what "every other port" means.
    if let Some(unnamed) = [9u16, 1, 65_535, 12_345]
        .into_iter()
        .find(|port| !numbers.contains(port))
    {
        numbers.insert(unnamed);
    }
    over_every_protocol(numbers)
}

/// A probe per port number and protocol, sorted.
fn over_every_protocol(numbers: BTreeSet<u16>) -> Vec<Probe> {
    let mut probes: Vec<Probe> = numbers
        .into_iter()
        .flat_map(|port| {
            [Protocol::TCP, Protocol::UDP, Protocol::SCTP]
                .into_iter()
                .map(move |protocol| Probe { port, protocol })
        })
        .collect();
    probes.sort();
    probes
}

/// Where an address of [`block_addresses`] lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place<'a> {
    Inside,
    InExcept(&'a Cidr),
    Outside,
}

impl Place<'_> {
    /// How a picture names the address: by the block it stands for.
    fn describe(self, range: &Cidr) -> String {
        match self {
            Place::Inside => range.to_string(),
            Place::InExcept(except) => format!("{except}, an except of {range}"),
            Place::Outside => format!("outside {range}"),
        }
    }
}

/// Addresses for an `ipBlock`: one inside it (outside every except), the first and last of each
/// except and the one just past it (when inside), and one just outside the range.
fn block_addresses<'a>(range: &Cidr, excepts: &'a [Cidr]) -> Vec<(IpAddr, Place<'a>)> {
    let step = |address: IpAddr, delta: i128| -> Option<IpAddr> {
        match address {
            IpAddr::V4(v4) => {
                let value = i128::from(u32::from(v4)) + delta;
                u32::try_from(value)
                    .ok()
                    .map(|value| IpAddr::V4(value.into()))
            }
            IpAddr::V6(v6) => {
                let value = u128::from(v6).checked_add_signed(delta)?;
                Some(IpAddr::V6(value.into()))
            }
        }
    };
    let inside = |address: &IpAddr| {
        range.contains(address) && !excepts.iter().any(|block| block.contains(address))
    };
    let mut candidates = vec![
        step(range.first(), 1),
        Some(range.first()),
        step(range.last(), -1),
        Some(range.last()),
    ];
    for block in excepts {
        candidates.push(step(block.last(), 1));
        candidates.push(step(block.first(), -1));
    }
    let mut addresses = Vec::new();
    if let Some(address) = candidates
        .into_iter()
        .flatten()
        .find(|address| inside(address))
    {
        addresses.push((address, Place::Inside));
    }
    for block in excepts {
        addresses.push((block.first(), Place::InExcept(block)));
        // Both ends of the except, and just past it when that is inside the range: an except
        // that grows or shrinks (a diff) moves one of them across.
        if block.last() != block.first() {
            addresses.push((block.last(), Place::InExcept(block)));
        }
        if let Some(after) = step(block.last(), 1).filter(|address| inside(address))
            && !addresses.iter().any(|(known, _)| *known == after)
        {
            addresses.push((after, Place::Inside));
        }
    }
    if let Some(outside) = step(range.last(), 1)
        .filter(|address| !range.contains(address))
        .or_else(|| step(range.first(), -1).filter(|address| !range.contains(address)))
    {
        addresses.push((outside, Place::Outside));
    }
    addresses
}

/// Builds the world step by step.
struct Builder {
    namespace: String,
    namespaces: BTreeMap<String, Labels>,
    endpoints: Vec<Endpoint>,
    warnings: Vec<String>,
    ports: Vec<ContainerPort>,
    external: BTreeMap<IpAddr, String>,
}

impl Builder {
    fn add(&mut self, mut pod: PodInfo, label: String, role: Role) {
        self.namespaces.entry(pod.namespace.clone()).or_default();
        // Pod names are unique per namespace (a shared service may be called "dns").
        let base = pod.name.clone();
        let mut suffix = 1;
        while self
            .endpoints
            .iter()
            .any(|known| known.pod.namespace == pod.namespace && known.pod.name == pod.name)
        {
            suffix += 1;
            pod.name = format!("{base}-{suffix}");
        }
        self.endpoints.push(Endpoint { pod, label, role });
    }

    /// A namespace matching `selector`, named after its name label or `fallback`.
    fn peer_namespace(
        &mut self,
        selector: &Selector,
        fallback: &str,
        what: &str,
    ) -> Option<String> {
        let Some(mut labels) = satisfying(&[selector]) else {
            self.warnings.push(format!(
                "{what}: no namespace can satisfy its namespace selector"
            ));
            return None;
        };
        let name = if let Some(name) = labels.get(NAMESPACE_NAME_LABEL) {
            name.clone()
        } else {
            {
                let name = (1..=self.namespaces.len() + 2)
                    .map(|index| {
                        if index == 1 {
                            fallback.to_owned()
                        } else {
                            format!("{fallback}-{index}")
                        }
                    })
                    .find(|name| {
                        let mut candidate = labels.clone();
                        candidate.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
                        name != &self.namespace && selector.matches(&candidate)
                    })?;
                labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
                name
            }
        };
        let entry = self.namespaces.entry(name.clone()).or_default();
        for (key, value) in labels {
            if entry.get(&key).is_some_and(|known| *known != value) {
                self.warnings.push(format!(
                    "{what}: namespace {name} cannot also carry {key}={value}; the model world keeps {key}={}",
                    entry[&key]
                ));
                continue;
            }
            entry.insert(key, value);
        }
        Some(name)
    }

    fn peer(&mut self, peer: &Peer, what: &str, slug: &str, role: &Role) {
        match peer {
            Peer::Pods {
                namespace_selector,
                pod_selector,
            } => {
                let namespace_selector = &namespace_selector.selector;
                let pod_selector = match pod_selector {
                    Some(selector) => selector.selector.clone(),
                    None => Selector::everything(),
                };
                let Some(namespace) =
                    self.peer_namespace(namespace_selector, &format!("{slug}-namespace"), what)
                else {
                    return;
                };
                match satisfying(&[&pod_selector]) {
                    Some(labels) => {
                        let pod = pod(&namespace, &format!("{slug}-peer"), labels, &self.ports);
                        let label = pod.key();
                        self.add(pod, label, role.clone());
                    }
                    None => self
                        .warnings
                        .push(format!("{what}: no pod can satisfy its pod selector")),
                }
                if !pod_selector.is_everything()
                    && let Some(labels) = satisfying_none(&[&pod_selector], "other")
                {
                    let pod = pod(&namespace, &format!("{slug}-other"), labels, &self.ports);
                    let label = pod.key();
                    self.add(pod, label, Role::Other);
                }
            }
            Peer::IpBlock(block) => {
                for (address, place) in block_addresses(&block.cidr, &block.except) {
                    self.external
                        .entry(address)
                        .or_insert_with(|| place.describe(&block.cidr));
                }
            }
        }
    }
}

/// Build the model world of `isolation`.
#[must_use]
pub fn build(isolation: &ValidatedIsolation) -> World {
    let namespace = isolation.namespace().unwrap_or("default").to_owned();
    let spec_ports = all_ports(isolation);
    let numbers: BTreeSet<u16> = spec_ports
        .iter()
        .filter_map(|port| match port.port {
            PortValue::Number(number) => Some(number),
            PortValue::Name(_) => None,
        })
        .collect();
    let ports = named_ports(&spec_ports, &numbers);
    let mut builder = Builder {
        namespace: namespace.clone(),
        namespaces: BTreeMap::from([(namespace.clone(), Labels::new())]),
        endpoints: Vec::new(),
        warnings: Vec::new(),
        ports: ports.clone(),
        external: BTreeMap::new(),
    };
    builder.tiers(isolation);
    if let Some(dns) = isolation.dns() {
        for (index, peer) in dns.peers.iter().enumerate() {
            let slug = if index == 0 {
                "dns".to_owned()
            } else {
                format!("dns{index}")
            };
            builder.peer(peer, "dns", &slug, &Role::Dns);
        }
    }
    for service in isolation.shared_services() {
        builder.peer(
            &service.peer,
            &format!("shared service {}", service.name),
            &service.name,
            &Role::SharedService(service.name.clone()),
        );
    }
    builder.outside();
    let mut world = builder.finish(probes(&spec_ports, &ports));
    world.port_ranges = spec_ports
        .iter()
        .filter_map(|port| match (&port.port, port.end_port) {
            (PortValue::Number(start), Some(end)) if end > *start => Some((*start, end)),
            _ => None,
        })
        .collect();
    world
}

impl Builder {
    /// A pod per tier, a pod per pair of overlapping tiers, and a pod in no tier.
    fn tiers(&mut self, isolation: &ValidatedIsolation) {
        let namespace = self.namespace.clone();
        let ports = self.ports.clone();
        let tiers: Vec<&Selector> = isolation
            .tiers()
            .iter()
            .map(|tier| &tier.pod_selector.selector)
            .collect();
        for (tier, selector) in isolation.tiers().iter().zip(&tiers) {
            match satisfying(&[selector]) {
                Some(labels) => self.add(
                    pod(&namespace, &format!("tier-{}", tier.name), labels, &ports),
                    tier.name.clone(),
                    Role::Tier,
                ),
                None => self.warnings.push(format!(
                    "tier {}: no pod can satisfy its selector ({selector}); the tier is empty",
                    tier.name
                )),
            }
        }
        for (first, (first_tier, first_selector)) in
            isolation.tiers().iter().zip(&tiers).enumerate()
        {
            for (second_tier, second_selector) in
                isolation.tiers().iter().zip(&tiers).skip(first + 1)
            {
                if let Some(labels) = satisfying(&[first_selector, second_selector]) {
                    self.warnings.push(format!(
                        "tiers {} and {} overlap: a pod with {} is in both, and gets the traffic of both",
                        first_tier.name,
                        second_tier.name,
                        describe(&labels)
                    ));
                    let name = format!("tiers-{}-{}", first_tier.name, second_tier.name);
                    self.add(
                        pod(&namespace, &name, labels, &ports),
                        format!("{}+{}", first_tier.name, second_tier.name),
                        Role::Tier,
                    );
                }
            }
        }
        match satisfying_none(&tiers, "no-tier") {
            Some(labels) => self.add(
                pod(&namespace, "no-tier", labels, &ports),
                "(no tier)".to_owned(),
                Role::NoTier,
            ),
            None => self.warnings.push(
                "every pod of the namespace is in some tier: the model world has no pod outside the tiers"
                    .to_owned(),
            ),
        }
    }

    /// A namespace outside every peer, with a pod; then the external addresses.
    fn outside(&mut self) {
        let ports = self.ports.clone();
        let outside = (1..=self.namespaces.len() + 1)
            .map(|index| {
                if index == 1 {
                    "netfence-outside".to_owned()
                } else {
                    format!("netfence-outside-{index}")
                }
            })
            .find(|name| !self.namespaces.contains_key(name))
            .unwrap_or_default();
        self.add(
            pod(&outside, "outside", Labels::new(), &ports),
            format!("{outside}/outside"),
            Role::Outside,
        );
        for (address, place) in std::mem::take(&mut self.external) {
            let (endpoint, label) = external(address);
            self.add(endpoint, label, Role::External(place));
        }
    }

    fn finish(mut self, probes: Vec<Probe>) -> World {
        // Labels must tell endpoints apart.
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for endpoint in &mut self.endpoints {
            let count = seen.entry(endpoint.label.clone()).or_insert(0);
            *count += 1;
            if *count > 1 {
                endpoint.label = format!("{} #{count}", endpoint.label);
            }
        }
        let namespaces = self
            .namespaces
            .into_iter()
            .map(|(name, mut labels)| {
                labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
                NamespaceInfo { name, labels }
            })
            .collect();
        World {
            namespace: self.namespace,
            namespaces,
            endpoints: self.endpoints,
            probes,
            named_ports: self.ports,
            port_ranges: BTreeSet::new(),
            warnings: self.warnings,
        }
    }
}

/// Extend `world` so that it can tell what the other policies of its namespace, and the
/// cluster-wide ones, allow: for each, a pod it selects (in the namespace), a pod (and
/// namespace) or address for each of its peers, and probes on its ports, wherever the world has
/// none yet. A team's `allow-all-ingress` on pods labelled
/// `tier: api` (no tier of the spec) then has such a pod to open, and a foreign rule on port
/// 9090 a probe on 9090.
pub fn extend(world: &mut World, policies: &[Policy]) {
    let namespace = world.namespace.clone();
    let mut numbers: BTreeSet<u16> = world.probes.iter().map(|probe| probe.port).collect();
    let before = numbers.clone();
    for policy in policies {
        // A policy of another namespace changes nothing the proof looks at; a cluster-wide one
        // may choose the namespace's pods (by the namespace's labels) or name its peers.
        let selects_here = match policy.cluster_wide() {
            None if policy.namespace != namespace => continue,
            None => true,
            Some(wide) => world
                .namespaces
                .iter()
                .find(|info| info.name == namespace)
                .is_some_and(|info| wide.namespaces.matches(&info.labels)),
        };
        let selected = !selects_here
            || world.endpoints.iter().any(|endpoint| {
                !endpoint.pod.external
                    && endpoint.pod.namespace == namespace
                    && policy.pod_selector.matches(&endpoint.pod.labels)
            });
        if !selected && let Some(labels) = satisfying(&[&policy.pod_selector]) {
            let label = format!(
                "pods with {}",
                describe(&labels).trim_start_matches("labels ")
            );
            add_pod(
                world,
                &namespace,
                &format!("selected-by-{}", policy.name),
                labels,
                label,
            );
        }
        for rule in policy.ingress.iter().chain(&policy.egress).flatten() {
            for peer in rule.peers.iter().flatten() {
                add_peer(world, peer, &policy.name);
            }
            for port in rule.ports.iter().flatten() {
                match &port.port {
                    PortSpec::All => {}
                    PortSpec::Number(number) => {
                        // With its neighbours, as the spec's own ports: the display joins
                        // allowed probes into ranges only when no verdict can change unprobed.
                        numbers.insert(*number);
                        numbers.extend(number.checked_sub(1).filter(|n| *n > 0));
                        numbers.extend(number.checked_add(1));
                    }
                    PortSpec::Range(start, end) => {
                        world.port_ranges.insert((*start, *end));
                        numbers.extend([*start, *end]);
                        numbers.extend(start.checked_sub(1).filter(|n| *n > 0));
                        numbers.extend(end.checked_add(1));
                    }
                    PortSpec::Named(name) => {
                        add_named_port(world, name, port.protocol, &mut numbers);
                    }
                }
            }
        }
    }
    if numbers != before {
        world.probes = over_every_protocol(numbers);
    }
}

/// One world for two of the same namespace (an isolation before and after a change): `world`
/// as it is, then each endpoint of `other` that no endpoint of `world` stands for (the same
/// namespace, labels and addresses), its label followed by `marker` when `world` uses it
/// already. A namespace of `other` whose name `world` has with other labels is renamed; every
/// pod declares the port names of both, and the probes are those of both.
#[must_use]
pub fn merge(mut world: World, other: World, marker: &str) -> World {
    // A namespace of the same name with other labels (a peer's selector changed) is another
    // namespace: renamed, with its labels kept, so each side's selector finds its own.
    let mut renamed: BTreeMap<String, String> = BTreeMap::new();
    for mut info in other.namespaces {
        match world
            .namespaces
            .iter()
            .find(|known| known.name == info.name)
        {
            Some(known) if known.labels == info.labels || info.name == world.namespace => {}
            Some(_) => {
                let name = (2..=world.namespaces.len() + 2)
                    .map(|index| format!("{}-{index}", info.name))
                    .find(|name| world.namespaces.iter().all(|known| known.name != *name))
                    .unwrap_or_default();
                renamed.insert(info.name.clone(), name.clone());
                info.name = name;
                world.namespaces.push(info);
            }
            None => world.namespaces.push(info),
        }
    }
    let mut numbers: BTreeSet<u16> = world
        .probes
        .iter()
        .chain(&other.probes)
        .map(|probe| probe.port)
        .collect();
    for port in &other.named_ports {
        if let Some(name) = &port.name {
            add_named_port(&mut world, name, port.protocol, &mut numbers);
        }
    }
    world.port_ranges.extend(other.port_ranges.iter().copied());
    for mut endpoint in other.endpoints {
        if let Some(name) = renamed.get(&endpoint.pod.namespace) {
            endpoint.pod.namespace.clone_from(name);
        }
        let known = world.endpoints.iter().any(|known| {
            known.pod.namespace == endpoint.pod.namespace
                && known.pod.labels == endpoint.pod.labels
                && known.pod.ips == endpoint.pod.ips
                && known.pod.external == endpoint.pod.external
        });
        if known {
            continue;
        }
        let mut pod = endpoint.pod;
        if !pod.external {
            pod.ports.clone_from(&world.named_ports);
        }
        let base = pod.name.clone();
        let mut suffix = 1;
        while world
            .endpoints
            .iter()
            .any(|known| known.pod.namespace == pod.namespace && known.pod.name == pod.name)
        {
            suffix += 1;
            pod.name = format!("{base}-{suffix}");
        }
        let label = if world
            .endpoints
            .iter()
            .any(|known| known.label == endpoint.label)
        {
            format!("{} {marker}", endpoint.label)
        } else {
            endpoint.label
        };
        world.endpoints.push(Endpoint {
            pod,
            label,
            role: endpoint.role,
        });
    }
    for warning in other.warnings {
        if !world.warnings.contains(&warning) {
            world.warnings.push(warning);
        }
    }
    world.probes = over_every_protocol(numbers);
    world
}

/// The requirement that holds exactly where `requirement` does not.
fn negation(requirement: &Requirement) -> Requirement {
    match requirement.clone() {
        Requirement::In { key, values } => Requirement::NotIn { key, values },
        Requirement::NotIn { key, values } => Requirement::In { key, values },
        Requirement::Exists { key } => Requirement::DoesNotExist { key },
        Requirement::DoesNotExist { key } => Requirement::Exists { key },
    }
}

/// Pods of the namespace that tell two sets of tier selectors (`(name, selector)`: before and
/// after a change) apart. A world has one pod per selector, so a selector that changed (a value
/// added to `In`, a `NotIn` added) could keep the same pod and hide the pods it gains or loses.
/// For each selector of either set, a pod that satisfies it and not one requirement of a
/// selector of the other set, and one per value of each of its `In` lists, unless a pod of the
/// namespace has those labels already; each is labelled `TIER (LABELS)`.
pub fn distinguish(world: &mut World, first: &[(&str, &Selector)], second: &[(&str, &Selector)]) {
    let namespace = world.namespace.clone();
    distinguish_in(world, &namespace, first, second, &Role::Tier);
}

/// [`distinguish`] for the pods of `namespace` (a tier's, or a shared-service peer's), whose
/// pods get `role` and the label `NAME (LABELS)` (`NAMESPACE/NAME (LABELS)` outside the
/// world's namespace).
pub fn distinguish_in(
    world: &mut World,
    namespace: &str,
    first: &[(&str, &Selector)],
    second: &[(&str, &Selector)],
    role: &Role,
) {
    for (ours, theirs) in [(first, second), (second, first)] {
        for &(name, selector) in ours {
            let mut candidates: Vec<Selector> = Vec::new();
            for (_, other) in theirs {
                candidates.extend(
                    other.requirements().iter().map(|requirement| {
                        Selector::from_requirements(vec![negation(requirement)])
                    }),
                );
            }
            for requirement in selector.requirements() {
                if let Requirement::In { key, values } = requirement {
                    candidates.extend(values.iter().map(|value| {
                        Selector::from_requirements(vec![Requirement::In {
                            key: key.clone(),
                            values: BTreeSet::from([value.clone()]),
                        }])
                    }));
                }
            }
            for candidate in candidates {
                let Some(labels) = satisfying(&[selector, &candidate]) else {
                    continue;
                };
                let known = world.endpoints.iter().any(|endpoint| {
                    !endpoint.pod.external
                        && endpoint.pod.namespace == namespace
                        && endpoint.pod.labels == labels
                });
                if known {
                    continue;
                }
                let described = describe(&labels);
                let described = described.trim_start_matches("labels ");
                let label = if namespace == world.namespace {
                    format!("{name} ({described})")
                } else {
                    format!("{namespace}/{name} ({described})")
                };
                add_pod(world, namespace, &format!("{name}-pod"), labels, label);
                if let Some(endpoint) = world.endpoints.last_mut() {
                    endpoint.role = role.clone();
                }
            }
        }
    }
}

/// The endpoint of an external address, and its label.
fn external(address: IpAddr) -> (PodInfo, String) {
    let mut endpoint = pod(EXTERNAL_NAMESPACE, &address.to_string(), Labels::new(), &[]);
    endpoint.ips = vec![address];
    endpoint.external = true;
    (endpoint, format!("external {address}"))
}

/// A pod of `namespace` with `labels`, declaring the world's named ports.
fn add_pod(world: &mut World, namespace: &str, name: &str, labels: Labels, label: String) {
    let mut name = name.to_owned();
    while world
        .endpoints
        .iter()
        .any(|known| known.pod.namespace == namespace && known.pod.name == name)
    {
        name.push('-');
    }
    let pod = pod(namespace, &name, labels, &world.named_ports);
    let label = if world.endpoints.iter().any(|known| known.label == label) {
        pod.key()
    } else {
        label
    };
    world.endpoints.push(Endpoint {
        pod,
        label,
        role: Role::Other,
    });
}

/// An endpoint for `peer` of policy `owner`, unless one matches it already.
fn add_peer(world: &mut World, peer: &super::super::model::Peer, owner: &str) {
    use super::super::model::{NamespaceScope, Peer as ModelPeer};
    match peer {
        ModelPeer::Pods { namespaces, pods } => {
            let in_scope = |info: &NamespaceInfo| match namespaces {
                NamespaceScope::Own(name) => info.name == *name,
                NamespaceScope::Matching(selector) => selector.matches(&info.labels),
            };
            let matched = world.endpoints.iter().any(|endpoint| {
                !endpoint.pod.external
                    && pods.matches(&endpoint.pod.labels)
                    && world
                        .namespaces
                        .iter()
                        .any(|info| info.name == endpoint.pod.namespace && in_scope(info))
            });
            if matched {
                return;
            }
            let Some(labels) = satisfying(&[pods]) else {
                return;
            };
            let existing = world
                .namespaces
                .iter()
                .find(|info| in_scope(info))
                .map(|info| (info.name.clone(), info.name.clone()));
            let Some((namespace, where_)) =
                existing.or_else(|| new_peer_namespace(world, namespaces, owner))
            else {
                return;
            };
            let who = if labels.is_empty() {
                "any pod".to_owned()
            } else {
                format!(
                    "pods with {}",
                    describe(&labels).trim_start_matches("labels ")
                )
            };
            add_pod(
                world,
                &namespace,
                &format!("peer-of-{owner}"),
                labels,
                format!("{who} in {where_}"),
            );
        }
        ModelPeer::IpBlock(block) | ModelPeer::External(block) => {
            if world.endpoints.iter().any(|endpoint| {
                endpoint
                    .pod
                    .ips
                    .iter()
                    .any(|address| block.contains(address))
            }) {
                return;
            }
            if let Some((address, place)) = block_addresses(&block.cidr, &block.except)
                .into_iter()
                .find(|(address, _)| block.contains(address))
            {
                let (pod, label) = external(address);
                world.endpoints.push(Endpoint {
                    pod,
                    label,
                    role: Role::External(place.describe(&block.cidr)),
                });
            }
        }
    }
}

/// A namespace of the world that `namespaces` matches, made for policy `owner`: its name and
/// how messages name it (`namespaces with team=monitoring`).
fn new_peer_namespace(
    world: &mut World,
    namespaces: &super::super::model::NamespaceScope,
    owner: &str,
) -> Option<(String, String)> {
    let super::super::model::NamespaceScope::Matching(selector) = namespaces else {
        return None;
    };
    let mut labels = satisfying(&[selector])?;
    let name = labels
        .get(NAMESPACE_NAME_LABEL)
        .cloned()
        .unwrap_or_else(|| format!("peer-of-{owner}"));
    let where_ = format!(
        "namespaces with {}",
        describe(&labels).trim_start_matches("labels ")
    );
    labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
    if !selector.matches(&labels) {
        return None;
    }
    world.namespaces.push(NamespaceInfo {
        name: name.clone(),
        labels,
    });
    Some((name, where_))
}

/// Declare `name` on every model pod, on a number no probe uses yet, and probe it.
/// The first number from `from` on that no probe uses, no range covers and no probe neighbours:
/// a model pod's named port, which no policy then reaches by number (the picture would show the
/// name allowed wherever a range covers its invented number). `from` when none is left.
fn free_number(from: u16, numbers: &BTreeSet<u16>, ranges: &BTreeSet<(u16, u16)>) -> u16 {
    let taken = |number: u16| {
        [number.saturating_sub(1), number, number.saturating_add(1)]
            .iter()
            .any(|near| numbers.contains(near))
            || ranges
                .iter()
                .any(|&(low, high)| low <= number && number <= high)
    };
    (from..=u16::MAX)
        .chain(1024..from)
        .find(|number| !taken(*number))
        .unwrap_or(from)
}

fn add_named_port(world: &mut World, name: &str, protocol: Protocol, numbers: &mut BTreeSet<u16>) {
    if world
        .named_ports
        .iter()
        .any(|known| known.name.as_deref() == Some(name) && known.protocol == protocol)
    {
        return;
    }
    let number = free_number(30_000, numbers, &world.port_ranges);
    numbers.insert(number);
    let port = ContainerPort {
        name: Some(name.to_owned()),
        number,
        protocol,
    };
    world.named_ports.push(port.clone());
    for endpoint in &mut world.endpoints {
        if !endpoint.pod.external {
            endpoint.pod.ports.push(port.clone());
            endpoint.pod.ports.sort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(yaml: &str) -> Selector {
        Selector::parse(&serde_saphyr::from_str(yaml).expect("selector")).expect("valid")
    }

    /// If this fails, the model world builds tier pods that are not in their tier (the proof
    /// would then test nothing), or reports satisfiable selectors as impossible.
    #[test]
    fn labels_are_found_for_satisfiable_selectors_only() {
        let tier = selector(
            "{matchLabels: {tier: web}, matchExpressions: [{key: track, operator: NotIn, values: [canary]}, {key: zone, operator: Exists}]}",
        );
        let labels = satisfying(&[&tier]).expect("satisfiable");
        assert!(tier.matches(&labels), "{labels:?}");
        let impossible = selector(
            "{matchLabels: {tier: web}, matchExpressions: [{key: tier, operator: NotIn, values: [web]}]}",
        );
        assert_eq!(satisfying(&[&impossible]), None);
        let absent = selector(
            "{matchExpressions: [{key: tier, operator: DoesNotExist}, {key: tier, operator: Exists}]}",
        );
        assert_eq!(satisfying(&[&absent]), None);
        let web = selector("{matchLabels: {tier: web}}");
        let api = selector("{matchLabels: {tier: api}}");
        assert_eq!(
            satisfying(&[&web, &api]),
            None,
            "disjoint tiers do not overlap"
        );
        let any_tier = selector("{matchExpressions: [{key: tier, operator: Exists}]}");
        assert!(satisfying(&[&web, &any_tier]).is_some(), "these overlap");
    }

    /// If this fails, the ipBlock endpoints of the world stop probing the edges of the block:
    /// an except that is ignored, or a range that is too wide, would go unnoticed.
    #[test]
    fn block_addresses_probe_inside_except_and_outside() {
        let cidr = |text: &str| Cidr::parse(text).expect("valid");
        let range = cidr("10.0.0.0/24");
        let excepts = [cidr("10.0.0.0/28")];
        let addresses = block_addresses(&range, &excepts);
        let text: Vec<String> = addresses
            .iter()
            .map(|(address, place)| format!("{address}: {}", place.describe(&range)))
            .collect();
        assert_eq!(
            text,
            [
                "10.0.0.254: 10.0.0.0/24",
                "10.0.0.0: 10.0.0.0/28, an except of 10.0.0.0/24",
                "10.0.0.15: 10.0.0.0/28, an except of 10.0.0.0/24",
                "10.0.0.16: 10.0.0.0/24",
                "10.0.1.0: outside 10.0.0.0/24"
            ]
        );
        let single = block_addresses(&cidr("169.254.20.10/32"), &[]);
        assert_eq!(single[0].0.to_string(), "169.254.20.10");
        assert_eq!(single[1].0.to_string(), "169.254.20.11");
    }
}
