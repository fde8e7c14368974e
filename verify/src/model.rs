//! The validated model the engine reasons about, built from Kubernetes objects.
//!
//! ```text
//! [ Namespace ] [ Pod ] [ NetworkPolicy ] --Cluster::build--> Cluster, or every bad field
//!                                                             (kind, object, field path, what to do)
//! ```
//!
//! Building the model applies the API's defaults once, so evaluation never sees an unvalidated
//! object: `policyTypes` inferred when absent (Ingress always, Egress only with egress rules),
//! `protocol` TCP when absent, an absent or empty `from`/`to`/`ports` meaning "all", a peer
//! `podSelector` alone meaning the policy's own namespace. Every namespace carries
//! `kubernetes.io/metadata.name`, as the API server guarantees; a namespace that pods live in but
//! that the input does not hold is assumed to carry only that label (and a note says so).
//! Everything is sorted by namespace and name, so output is deterministic.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
    str::FromStr,
};

use k8s_openapi::{
    api::{
        core::v1::{Namespace, Pod},
        networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort},
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use netfence_crd::isolation::{Direction, NAMESPACE_NAME_LABEL, Protocol};

use netfence_core::names::port_name_problem;

use super::{
    cidr::Cidr,
    cluster_wide::{self, ClusterWidePolicies},
    selector::{Labels, Requirement, Selector},
};

/// A connection attempt to test: a destination port and a protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Probe {
    /// The destination port.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol.as_str())
    }
}

/// The form a probe takes, which every [`ProbeParseError`] repeats.
pub const PROBE_FORM: &str = "write PORT/PROTOCOL: a port number from 1 to 65535, then TCP, UDP or SCTP (such as 80/TCP or 53/UDP; the protocol defaults to TCP)";

/// Why a probe (`--probe`, `--explain`'s third value) does not parse; each message ends with
/// [`PROBE_FORM`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeParseError {
    /// Nothing given.
    #[error("a probe cannot be empty; {PROBE_FORM}")]
    Empty,
    /// More than one `/`, or nothing before or after it.
    #[error("{text:?} is not of the form PORT/PROTOCOL; {PROBE_FORM}")]
    Shape {
        /// The text given.
        text: String,
    },
    /// The port is a number outside 1-65535.
    #[error("port {port} is out of range 1-65535; {PROBE_FORM}")]
    PortOutOfRange {
        /// The port given.
        port: String,
    },
    /// The port is not a number (a port name cannot be probed: it means a number only on a pod).
    #[error(
        "port {port:?} is not a number (a probe needs the port number; a port name has a number only on a pod that declares it); {PROBE_FORM}"
    )]
    PortNotANumber {
        /// The port given.
        port: String,
    },
    /// The protocol is not TCP, UDP or SCTP.
    #[error("unknown protocol {protocol:?} (NetworkPolicy knows TCP, UDP and SCTP); {PROBE_FORM}")]
    UnknownProtocol {
        /// The protocol given.
        protocol: String,
    },
}

impl FromStr for Probe {
    type Err = ProbeParseError;

    /// `80/TCP`, `53/udp`, or `8080` (TCP).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ProbeParseError::Empty);
        }
        let (port, protocol) = text.split_once('/').unwrap_or((text, "TCP"));
        let (port, protocol) = (port.trim(), protocol.trim());
        if port.is_empty() || protocol.is_empty() || protocol.contains('/') {
            return Err(ProbeParseError::Shape {
                text: text.to_owned(),
            });
        }
        let port = if port.bytes().all(|byte| byte.is_ascii_digit()) {
            match port.parse::<u16>() {
                Ok(number) if number > 0 => number,
                _ => {
                    return Err(ProbeParseError::PortOutOfRange {
                        port: port.to_owned(),
                    });
                }
            }
        } else {
            return Err(ProbeParseError::PortNotANumber {
                port: port.to_owned(),
            });
        };
        let protocol = parse_protocol(&protocol.to_ascii_uppercase()).ok_or_else(|| {
            ProbeParseError::UnknownProtocol {
                protocol: protocol.to_owned(),
            }
        })?;
        Ok(Probe { port, protocol })
    }
}

fn parse_protocol(text: &str) -> Option<Protocol> {
    match text {
        "TCP" => Some(Protocol::TCP),
        "UDP" => Some(Protocol::UDP),
        "SCTP" => Some(Protocol::SCTP),
        _ => None,
    }
}

/// A namespace and its labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// The namespace's name.
    pub name: String,
    /// Its labels, always including `kubernetes.io/metadata.name`.
    pub labels: Labels,
}

/// A container port a pod declares.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerPort {
    /// The port's name, which policies may use instead of the number.
    pub name: Option<String>,
    /// The port number.
    pub number: u16,
    /// The protocol.
    pub protocol: Protocol,
}

/// A pod, as far as NetworkPolicy is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// Its labels.
    pub labels: Labels,
    /// Its addresses (`status.podIPs`, `status.podIP`), sorted; empty when not yet scheduled.
    pub ips: Vec<IpAddr>,
    /// Its containers' ports, sorted.
    pub ports: Vec<ContainerPort>,
    /// `spec.hostNetwork`: the pod shares its node's network and NetworkPolicy does not govern it.
    pub host_network: bool,
    /// An address outside the cluster rather than a pod (the intent proof's model world uses
    /// them for `ipBlock`s): only `ipBlock` peers match it, and no policy selects it.
    pub external: bool,
    /// Index of its namespace in [`Cluster::namespaces`].
    pub namespace_index: usize,
}

impl PodInfo {
    /// `namespace/name`.
    #[must_use]
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Which namespaces a pod peer looks in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamespaceScope {
    /// The policy's own namespace (a peer with `podSelector` and no `namespaceSelector`).
    Own(String),
    /// The namespaces whose labels match (`namespaceSelector`; `{}` is every namespace).
    Matching(Selector),
}

/// An `ipBlock`: addresses in `cidr` and in none of `except`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpBlock {
    /// The range.
    pub cidr: Cidr,
    /// Sub-ranges left out.
    pub except: Vec<Cidr>,
}

impl IpBlock {
    /// Whether `address` is in the block.
    #[must_use]
    pub fn contains(&self, address: &IpAddr) -> bool {
        self.cidr.contains(address) && !self.except.iter().any(|range| range.contains(address))
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ipBlock {}", self.cidr)?;
        if !self.except.is_empty() {
            let except: Vec<String> = self.except.iter().map(ToString::to_string).collect();
            write!(f, " except {}", except.join(", "))?;
        }
        Ok(())
    }
}

/// One item of a rule's `from` or `to`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// Pods chosen by namespace AND pod labels.
    Pods {
        /// The namespaces.
        namespaces: NamespaceScope,
        /// The pods in them (`{}` when `podSelector` is absent: every pod).
        pods: Selector,
    },
    /// Addresses (they match pods too, by their addresses).
    IpBlock(IpBlock),
    /// Addresses outside the cluster only, never a pod's (Cilium's CIDR rules).
    External(IpBlock),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Pods {
                namespaces: NamespaceScope::Own(namespace),
                pods,
            } => write!(f, "pods {pods} in namespace {namespace}"),
            Peer::Pods {
                namespaces: NamespaceScope::Matching(selector),
                pods,
            } => {
                let namespaces = match selector.requirements() {
                    [] => "every namespace".to_owned(),
                    [Requirement::In { key, values }]
                        if key == NAMESPACE_NAME_LABEL && values.len() == 1 =>
                    {
                        format!(
                            "namespace {}",
                            values.iter().next().map_or("", String::as_str)
                        )
                    }
                    _ => format!("namespaces {selector}"),
                };
                write!(f, "pods {pods} in {namespaces}")
            }
            Peer::IpBlock(block) => write!(f, "{block}"),
            Peer::External(block) => write!(f, "{block} outside the cluster"),
        }
    }
}

/// Which ports of a protocol a rule's port entry covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortSpec {
    /// Every port (`port` absent).
    All,
    /// One port.
    Number(u16),
    /// `port` to `endPort`, both included.
    Range(u16, u16),
    /// A named container port of the destination pod.
    Named(String),
}

/// One item of a rule's `ports`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortMatch {
    /// The protocol (TCP when absent).
    pub protocol: Protocol,
    /// The ports.
    pub port: PortSpec,
}

impl fmt::Display for PortMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = self.protocol.as_str();
        match &self.port {
            PortSpec::All => write!(f, "all {protocol} ports"),
            PortSpec::Number(port) => write!(f, "{port}/{protocol}"),
            PortSpec::Range(start, end) => write!(f, "{start}-{end}/{protocol}"),
            PortSpec::Named(name) => write!(f, "{name}/{protocol}"),
        }
    }
}

/// One ingress or egress rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The peers (`from` or `to`); `None` when absent or empty in a NetworkPolicy: every source
    /// or destination. `Some(vec![])` matches nothing (a Cilium rule without peers).
    pub peers: Option<Vec<Peer>>,
    /// The ports; `None` when absent or empty: every port.
    pub ports: Option<Vec<PortMatch>>,
    /// What a match does: always `Allow` in a NetworkPolicy.
    pub action: Action,
    /// The rule's own name, where the kind has one.
    pub name: Option<String>,
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Allow (`Accept` in a ClusterNetworkPolicy).
    Allow,
    /// Drop.
    Deny,
    /// Skip the rest of the tier.
    Pass,
}

/// Where a policy is evaluated, relative to the NetworkPolicies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Before them, ordered: the first matching rule decides (ClusterNetworkPolicy Admin tier,
    /// Calico tiers before `default`, Cilium deny rules).
    Before(Order),
    /// With them: allows add up, and a policy that selects a pod (and isolates) isolates it.
    Namespace,
    /// After them, for pods no policy of the namespace stage isolates, ordered
    /// (ClusterNetworkPolicy Baseline tier, Calico tiers after `default`).
    After(Order),
}

/// The position of an ordered policy: its tier, then its order inside it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Order {
    /// The tier's order (lower first), in thousandths.
    pub tier_order: i64,
    /// The tier's name: `Pass` skips the rest of it.
    pub tier: String,
    /// The policy's order in the tier (priority; lower first), in thousandths.
    pub order: i64,
    /// What happens when policies of the tier select a pod and none of their rules matches.
    pub end_of_tier: EndOfTier,
}

/// The end of a tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndOfTier {
    /// On to the next tier (ClusterNetworkPolicy, Cilium; a Calico tier that passes).
    Continue,
    /// Drop (a Calico tier's default).
    Deny,
}

/// A validated NetworkPolicy, or the part of a cluster-wide policy of another kind that one
/// stage evaluates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The policy's namespace (empty for a cluster-wide policy).
    pub namespace: String,
    /// The policy's name.
    pub name: String,
    /// The pods it selects, in its namespace (or in the namespaces of `namespace_selector`).
    pub pod_selector: Selector,
    /// Its ingress rules when `Ingress` is among its policy types (explicit or inferred).
    pub ingress: Option<Vec<Rule>>,
    /// Its egress rules when `Egress` is among its policy types (explicit or inferred).
    pub egress: Option<Vec<Rule>>,
    /// The kind and what it is built from; [`Scope::NetworkPolicy`] for a NetworkPolicy.
    pub scope: Scope,
}

/// What a [`Policy`] is, beyond a NetworkPolicy's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// A namespaced NetworkPolicy.
    #[default]
    NetworkPolicy,
    /// A cluster-wide policy of another kind.
    ClusterWide(Box<ClusterWide>),
}

/// The cluster-wide part of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterWide {
    /// `ClusterNetworkPolicy`, `GlobalNetworkPolicy` or `CiliumClusterwideNetworkPolicy`.
    pub kind: &'static str,
    /// The namespaces whose pods it selects (with [`Policy::pod_selector`]).
    pub namespaces: Selector,
    /// Where it is evaluated.
    pub stage: Stage,
    /// In the namespace stage, per direction (ingress, egress): whether selecting a pod isolates
    /// it (Cilium's `enableDefaultDeny`); a policy that does not only adds allows.
    pub isolates: [bool; 2],
    /// The names of its rule lists (ingress, egress), for messages: `ingress`, `ingressDeny`.
    pub fields: [&'static str; 2],
}

impl Policy {
    /// `namespace/name`, or `Kind/name` for a cluster-wide policy.
    #[must_use]
    pub fn key(&self) -> String {
        match &self.scope {
            Scope::NetworkPolicy => format!("{}/{}", self.namespace, self.name),
            Scope::ClusterWide(wide) => format!("{}/{}", wide.kind, self.name),
        }
    }

    /// The cluster-wide part, if the policy is one.
    #[must_use]
    pub fn cluster_wide(&self) -> Option<&ClusterWide> {
        match &self.scope {
            Scope::NetworkPolicy => None,
            Scope::ClusterWide(wide) => Some(wide),
        }
    }

    /// Where the policy is evaluated.
    #[must_use]
    pub fn stage(&self) -> &Stage {
        self.cluster_wide()
            .map_or(&Stage::Namespace, |wide| &wide.stage)
    }

    /// Whether selecting a pod isolates it in `direction` (in the namespace stage).
    #[must_use]
    pub fn isolates(&self, direction: Direction) -> bool {
        self.rules(direction).is_some()
            && self.cluster_wide().is_none_or(|wide| {
                wide.isolates[match direction {
                    Direction::Ingress => 0,
                    Direction::Egress => 1,
                }]
            })
    }

    /// The rules of one direction, when the policy isolates that direction.
    #[must_use]
    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }
}

/// A problem with the input: the object, the field, and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A field is invalid.
    #[error("{kind} {object}: {field}: {message}")]
    InvalidField {
        /// `Namespace`, `Pod` or `NetworkPolicy`.
        kind: &'static str,
        /// `namespace/name`, or the name of a namespace.
        object: String,
        /// The field path, such as `spec.ingress[0].from[1].ipBlock.cidr`.
        field: String,
        /// What is wrong, and what to do.
        message: String,
    },
    /// The same object is given twice.
    #[error("{kind} {object} is given more than once; keep one copy")]
    Duplicate {
        /// `Namespace`, `Pod` or `NetworkPolicy`.
        kind: &'static str,
        /// `namespace/name`, or the name of a namespace.
        object: String,
    },
}

impl ModelError {
    /// The kind and the name of the object at fault.
    #[must_use]
    pub fn object(&self) -> (&'static str, &str) {
        match self {
            ModelError::InvalidField { kind, object, .. }
            | ModelError::Duplicate { kind, object } => (kind, object),
        }
    }
}

/// Every problem found in the input, in input order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ModelErrors(pub Vec<ModelError>);

/// The validated world: namespaces, pods and policies, each sorted by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Cluster {
    namespaces: Vec<NamespaceInfo>,
    pods: Vec<PodInfo>,
    policies: Vec<Policy>,
    notes: Vec<String>,
}

impl Cluster {
    /// Validate the objects into a model, or return every problem found.
    pub fn build(
        namespaces: &[Namespace],
        pods: &[Pod],
        policies: &[NetworkPolicy],
    ) -> Result<Cluster, ModelErrors> {
        Self::build_with(namespaces, pods, policies, &ClusterWidePolicies::default())
    }

    /// [`Cluster::build`], with the cluster-wide policies of other engines too.
    pub fn build_with(
        namespaces: &[Namespace],
        pods: &[Pod],
        policies: &[NetworkPolicy],
        cluster_wide: &ClusterWidePolicies,
    ) -> Result<Cluster, ModelErrors> {
        let mut errors = Vec::new();
        let mut notes = Vec::new();

        let mut namespace_map: BTreeMap<String, Labels> = BTreeMap::new();
        for namespace in namespaces {
            let Some(name) = namespace.metadata.name.clone() else {
                errors.push(ModelError::InvalidField {
                    kind: "Namespace",
                    object: "<unnamed>".into(),
                    field: "metadata.name".into(),
                    message: "missing; every namespace needs a name".into(),
                });
                continue;
            };
            let mut labels = namespace.metadata.labels.clone().unwrap_or_default();
            labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
            if namespace_map.insert(name.clone(), labels).is_some() {
                errors.push(ModelError::Duplicate {
                    kind: "Namespace",
                    object: name,
                });
            }
        }

        let mut pod_infos = Vec::new();
        let mut seen_pods = BTreeSet::new();
        for pod in pods {
            if let Some(info) = pod_info(pod, &mut errors, &mut notes) {
                if seen_pods.insert(info.key()) {
                    pod_infos.push(info);
                } else {
                    errors.push(ModelError::Duplicate {
                        kind: "Pod",
                        object: info.key(),
                    });
                }
            }
        }

        let mut policy_infos = Vec::new();
        let mut seen_policies = BTreeSet::new();
        for policy in policies {
            if let Some(info) = policy_info(policy, &mut errors, &mut notes) {
                if seen_policies.insert(info.key()) {
                    policy_infos.push(info);
                } else {
                    errors.push(ModelError::Duplicate {
                        kind: "NetworkPolicy",
                        object: info.key(),
                    });
                }
            }
        }
        let mut seen_wide = BTreeSet::new();
        for (kind, name) in cluster_wide_names(cluster_wide) {
            if !seen_wide.insert((kind, name.clone())) {
                errors.push(ModelError::Duplicate { kind, object: name });
            }
        }
        policy_infos.extend(cluster_wide::policies(cluster_wide, &mut errors));
        if !errors.is_empty() {
            return Err(ModelErrors(errors));
        }

        let missing: BTreeSet<String> = pod_infos
            .iter()
            .map(|pod| pod.namespace.clone())
            .filter(|namespace| !namespace_map.contains_key(namespace))
            .collect();
        for namespace in missing {
            notes.push(format!(
                "namespace {namespace} is not in the input; assumed it carries only the label {NAMESPACE_NAME_LABEL}={namespace}"
            ));
            let labels = Labels::from([(NAMESPACE_NAME_LABEL.to_owned(), namespace.clone())]);
            namespace_map.insert(namespace, labels);
        }
        let namespaces: Vec<NamespaceInfo> = namespace_map
            .into_iter()
            .map(|(name, labels)| NamespaceInfo { name, labels })
            .collect();
        let namespace_index: BTreeMap<&str, usize> = namespaces
            .iter()
            .enumerate()
            .map(|(index, namespace)| (namespace.name.as_str(), index))
            .collect();
        for pod in &mut pod_infos {
            pod.namespace_index = namespace_index
                .get(pod.namespace.as_str())
                .copied()
                .unwrap_or_default();
        }
        pod_infos.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        policy_infos.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        notes.sort();
        notes.dedup();
        Ok(Cluster {
            namespaces,
            pods: pod_infos,
            policies: policy_infos,
            notes,
        })
    }

    /// A model from already validated parts (used by the intent proof's model world and tests).
    /// Pods' `namespace_index` is recomputed; namespaces missing for pods are added.
    #[must_use]
    pub fn from_parts(
        namespaces: Vec<NamespaceInfo>,
        pods: Vec<PodInfo>,
        policies: Vec<Policy>,
    ) -> Cluster {
        let mut namespace_map: BTreeMap<String, Labels> = namespaces
            .into_iter()
            .map(|namespace| (namespace.name, namespace.labels))
            .collect();
        for pod in &pods {
            namespace_map.entry(pod.namespace.clone()).or_default();
        }
        let namespaces: Vec<NamespaceInfo> = namespace_map
            .into_iter()
            .map(|(name, mut labels)| {
                labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
                NamespaceInfo { name, labels }
            })
            .collect();
        let mut pods = pods;
        for pod in &mut pods {
            pod.namespace_index = namespaces
                .iter()
                .position(|namespace| namespace.name == pod.namespace)
                .unwrap_or_default();
        }
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut policies = policies;
        policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Cluster {
            namespaces,
            pods,
            policies,
            notes: Vec::new(),
        }
    }

    /// The namespaces, sorted by name.
    #[must_use]
    pub fn namespaces(&self) -> &[NamespaceInfo] {
        &self.namespaces
    }

    /// The pods, sorted by namespace and name.
    #[must_use]
    pub fn pods(&self) -> &[PodInfo] {
        &self.pods
    }

    /// The policies, sorted by namespace and name.
    #[must_use]
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Assumptions made while building the model (defaulted namespaces, missing ones).
    #[must_use]
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The index of the pod `namespace/name`.
    #[must_use]
    pub fn pod_index(&self, key: &str) -> Option<usize> {
        let (namespace, name) = key.split_once('/')?;
        self.pods
            .binary_search_by(|pod| {
                (pod.namespace.as_str(), pod.name.as_str()).cmp(&(namespace, name))
            })
            .ok()
    }

    /// The labels of a pod's namespace.
    #[must_use]
    pub fn namespace_labels(&self, pod: &PodInfo) -> &Labels {
        &self.namespaces[pod.namespace_index].labels
    }

    /// Every (port, protocol) that some pod declares, sorted: the default probes.
    #[must_use]
    pub fn declared_probes(&self) -> Vec<Probe> {
        let probes: BTreeSet<Probe> = self
            .pods
            .iter()
            .flat_map(|pod| &pod.ports)
            .map(|port| Probe {
                port: port.number,
                protocol: port.protocol,
            })
            .collect();
        probes.into_iter().collect()
    }
}

/// The kind and name of every cluster-wide object.
fn cluster_wide_names(objects: &ClusterWidePolicies) -> Vec<(&'static str, String)> {
    let name = |metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        metadata.name.clone().unwrap_or_default()
    };
    let mut names = Vec::new();
    names.extend(
        objects
            .cluster_network_policies
            .iter()
            .map(|object| ("ClusterNetworkPolicy", name(&object.metadata))),
    );
    names.extend(
        objects
            .calico_policies
            .iter()
            .map(|object| ("GlobalNetworkPolicy", name(&object.metadata))),
    );
    names.extend(
        objects
            .calico_tiers
            .iter()
            .map(|object| ("Tier", name(&object.metadata))),
    );
    names.extend(
        objects
            .cilium_policies
            .iter()
            .map(|object| ("CiliumClusterwideNetworkPolicy", name(&object.metadata))),
    );
    names
}

fn invalid(
    kind: &'static str,
    object: &str,
    field: &str,
    message: impl Into<String>,
) -> ModelError {
    ModelError::InvalidField {
        kind,
        object: object.to_owned(),
        field: field.to_owned(),
        message: message.into(),
    }
}

fn pod_info(pod: &Pod, errors: &mut Vec<ModelError>, notes: &mut Vec<String>) -> Option<PodInfo> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let Some(name) = pod.metadata.name.clone() else {
        errors.push(invalid(
            "Pod",
            &format!("{namespace}/<unnamed>"),
            "metadata.name",
            "missing; give the pod a name",
        ));
        return None;
    };
    let object = format!("{namespace}/{name}");
    if pod.metadata.namespace.is_none() {
        notes.push(format!(
            "Pod {name} has no metadata.namespace; assumed namespace default"
        ));
    }
    let before = errors.len();
    let mut ips = BTreeSet::new();
    if let Some(status) = &pod.status {
        for (index, entry) in status.pod_ips.iter().flatten().enumerate() {
            match entry.ip.parse::<IpAddr>() {
                Ok(ip) => {
                    ips.insert(ip);
                }
                Err(_) => errors.push(invalid(
                    "Pod",
                    &object,
                    &format!("status.podIPs[{index}].ip"),
                    format!("{:?} is not an IP address", entry.ip),
                )),
            }
        }
        if let Some(ip) = &status.pod_ip {
            match ip.parse::<IpAddr>() {
                Ok(ip) => {
                    ips.insert(ip);
                }
                Err(_) => errors.push(invalid(
                    "Pod",
                    &object,
                    "status.podIP",
                    format!("{ip:?} is not an IP address"),
                )),
            }
        }
    }
    let mut ports = BTreeSet::new();
    let mut host_network = false;
    if let Some(spec) = &pod.spec {
        host_network = spec.host_network.unwrap_or(false);
        for (container_index, container) in spec.containers.iter().enumerate() {
            for (port_index, port) in container.ports.iter().flatten().enumerate() {
                let field = format!("spec.containers[{container_index}].ports[{port_index}]");
                let number = u16::try_from(port.container_port).ok().filter(|n| *n > 0);
                let protocol = parse_protocol(port.protocol.as_deref().unwrap_or("TCP"));
                match (number, protocol) {
                    (Some(number), Some(protocol)) => {
                        ports.insert(ContainerPort {
                            name: port.name.clone(),
                            number,
                            protocol,
                        });
                    }
                    (None, _) => errors.push(invalid(
                        "Pod",
                        &object,
                        &format!("{field}.containerPort"),
                        format!("{} is not a port; use 1 to 65535", port.container_port),
                    )),
                    (_, None) => errors.push(invalid(
                        "Pod",
                        &object,
                        &format!("{field}.protocol"),
                        format!(
                            "unknown protocol {:?}; use TCP, UDP or SCTP",
                            port.protocol.as_deref().unwrap_or_default()
                        ),
                    )),
                }
            }
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(PodInfo {
        namespace,
        name,
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ips: ips.into_iter().collect(),
        ports: ports.into_iter().collect(),
        host_network,
        external: false,
        namespace_index: 0,
    })
}

/// Collects the problems of one policy, with its identity.
pub(crate) struct PolicyChecker<'a> {
    pub(crate) kind: &'static str,
    pub(crate) object: String,
    pub(crate) errors: &'a mut Vec<ModelError>,
    pub(crate) failed: bool,
}

impl PolicyChecker<'_> {
    pub(crate) fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.failed = true;
        self.errors
            .push(invalid(self.kind, &self.object, field, message));
    }

    pub(crate) fn selector(&mut self, selector: Option<&LabelSelector>, field: &str) -> Selector {
        let Some(selector) = selector else {
            return Selector::everything();
        };
        match Selector::parse(selector) {
            Ok(selector) => selector,
            Err(problems) => {
                for problem in problems {
                    self.problem(&format!("{field}.{}", problem.field), problem.message);
                }
                Selector::everything()
            }
        }
    }

    pub(crate) fn cidr(&mut self, text: &str, field: &str) -> Option<Cidr> {
        match Cidr::parse(text) {
            Ok(cidr) => Some(cidr),
            Err(problem) => {
                self.problem(field, format!("\"{text}\": {problem}"));
                None
            }
        }
    }

    fn peer(&mut self, peer: &NetworkPolicyPeer, namespace: &str, field: &str) -> Option<Peer> {
        if let Some(block) = &peer.ip_block {
            if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
                self.problem(
                    field,
                    "ipBlock cannot be combined with podSelector or namespaceSelector; split them into two peers",
                );
                return None;
            }
            let cidr = self.cidr(&block.cidr, &format!("{field}.ipBlock.cidr"))?;
            let mut except = Vec::new();
            for (index, text) in block.except.iter().flatten().enumerate() {
                let except_field = format!("{field}.ipBlock.except[{index}]");
                let Some(range) = self.cidr(text, &except_field) else {
                    continue;
                };
                if !cidr.covers(&range) || range == cidr {
                    self.problem(
                        &except_field,
                        format!("{text} is not strictly inside the cidr {cidr}; an except must be a sub-range of it"),
                    );
                    continue;
                }
                except.push(range);
            }
            except.sort();
            except.dedup();
            return Some(Peer::IpBlock(IpBlock { cidr, except }));
        }
        if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
            self.problem(
                field,
                "a peer needs podSelector, namespaceSelector or ipBlock; to allow every peer, leave out the whole from/to list",
            );
            return None;
        }
        let pods = self.selector(peer.pod_selector.as_ref(), &format!("{field}.podSelector"));
        let namespaces = match &peer.namespace_selector {
            None => NamespaceScope::Own(namespace.to_owned()),
            Some(selector) => NamespaceScope::Matching(
                self.selector(Some(selector), &format!("{field}.namespaceSelector")),
            ),
        };
        Some(Peer::Pods { namespaces, pods })
    }

    pub(crate) fn port(&mut self, port: &NetworkPolicyPort, field: &str) -> Option<PortMatch> {
        let protocol = match port.protocol.as_deref() {
            None => Protocol::TCP,
            Some(text) => {
                let Some(protocol) = parse_protocol(text) else {
                    self.problem(
                        &format!("{field}.protocol"),
                        format!("unknown protocol {text:?}; use TCP, UDP or SCTP"),
                    );
                    return None;
                };
                protocol
            }
        };
        let spec = match (&port.port, port.end_port) {
            (None, None) => PortSpec::All,
            (None, Some(_)) => {
                self.problem(
                    &format!("{field}.endPort"),
                    "endPort needs a numeric port to start the range",
                );
                return None;
            }
            (Some(IntOrString::Int(number)), end_port) => {
                let Some(start) = u16::try_from(*number).ok().filter(|n| *n > 0) else {
                    self.problem(
                        &format!("{field}.port"),
                        format!("{number} is not a port; use 1 to 65535"),
                    );
                    return None;
                };
                match end_port {
                    None => PortSpec::Number(start),
                    Some(end) => {
                        let Some(end) = u16::try_from(end).ok().filter(|end| *end >= start) else {
                            self.problem(
                                &format!("{field}.endPort"),
                                format!("{end} must be a port from {start} (the port) to 65535"),
                            );
                            return None;
                        };
                        PortSpec::Range(start, end)
                    }
                }
            }
            (Some(IntOrString::String(name)), end_port) => {
                if end_port.is_some() {
                    self.problem(
                        &format!("{field}.endPort"),
                        "endPort needs a numeric port; a named port cannot start a range",
                    );
                    return None;
                }
                if let Some(problem) = port_name_problem(name) {
                    self.problem(&format!("{field}.port"), problem);
                    return None;
                }
                PortSpec::Named(name.clone())
            }
        };
        Some(PortMatch {
            protocol,
            port: spec,
        })
    }
}

fn policy_info(
    policy: &NetworkPolicy,
    errors: &mut Vec<ModelError>,
    notes: &mut Vec<String>,
) -> Option<Policy> {
    let namespace = policy
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let Some(name) = policy.metadata.name.clone() else {
        errors.push(invalid(
            "NetworkPolicy",
            &format!("{namespace}/<unnamed>"),
            "metadata.name",
            "missing; give the policy a name",
        ));
        return None;
    };
    if policy.metadata.namespace.is_none() {
        notes.push(format!(
            "NetworkPolicy {name} has no metadata.namespace; assumed namespace default"
        ));
    }
    let mut checker = PolicyChecker {
        kind: "NetworkPolicy",
        object: format!("{namespace}/{name}"),
        errors,
        failed: false,
    };
    let spec = policy.spec.clone().unwrap_or_default();
    let pod_selector = checker.selector(spec.pod_selector.as_ref(), "spec.podSelector");

    let mut ingress_type = false;
    let mut egress_type = false;
    match spec.policy_types.as_deref() {
        None | Some([]) => {
            ingress_type = true;
            egress_type = spec.egress.as_ref().is_some_and(|rules| !rules.is_empty());
        }
        Some(types) => {
            for (index, policy_type) in types.iter().enumerate() {
                match policy_type.as_str() {
                    "Ingress" => ingress_type = true,
                    "Egress" => egress_type = true,
                    other => checker.problem(
                        &format!("spec.policyTypes[{index}]"),
                        format!("unknown policy type {other:?}; use Ingress or Egress"),
                    ),
                }
            }
        }
    }

    let mut ingress = Vec::new();
    for (rule_index, rule) in spec.ingress.iter().flatten().enumerate() {
        let field = format!("spec.ingress[{rule_index}]");
        let peers = checker.peers(rule.from.as_deref(), &namespace, &format!("{field}.from"));
        let ports = checker.ports(rule.ports.as_deref(), &format!("{field}.ports"));
        ingress.push(Rule {
            peers,
            ports,
            action: Action::Allow,
            name: None,
        });
    }
    let mut egress = Vec::new();
    for (rule_index, rule) in spec.egress.iter().flatten().enumerate() {
        let field = format!("spec.egress[{rule_index}]");
        let peers = checker.peers(rule.to.as_deref(), &namespace, &format!("{field}.to"));
        let ports = checker.ports(rule.ports.as_deref(), &format!("{field}.ports"));
        egress.push(Rule {
            peers,
            ports,
            action: Action::Allow,
            name: None,
        });
    }
    if checker.failed {
        return None;
    }
    Some(Policy {
        namespace,
        name,
        pod_selector,
        ingress: ingress_type.then_some(ingress),
        egress: egress_type.then_some(egress),
        scope: Scope::NetworkPolicy,
    })
}

impl PolicyChecker<'_> {
    fn peers(
        &mut self,
        peers: Option<&[NetworkPolicyPeer]>,
        namespace: &str,
        field: &str,
    ) -> Option<Vec<Peer>> {
        let peers = peers.filter(|peers| !peers.is_empty())?;
        let checked: Vec<Peer> = peers
            .iter()
            .enumerate()
            .filter_map(|(index, peer)| self.peer(peer, namespace, &format!("{field}[{index}]")))
            .collect();
        Some(checked)
    }

    fn ports(
        &mut self,
        ports: Option<&[NetworkPolicyPort]>,
        field: &str,
    ) -> Option<Vec<PortMatch>> {
        let ports = ports.filter(|ports| !ports.is_empty())?;
        let checked: Vec<PortMatch> = ports
            .iter()
            .enumerate()
            .filter_map(|(index, port)| self.port(port, &format!("{field}[{index}]")))
            .collect();
        Some(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> NetworkPolicy {
        serde_saphyr::from_str(yaml).expect("test policy")
    }

    fn build_policy(yaml: &str) -> Result<Cluster, ModelErrors> {
        Cluster::build(&[], &[], &[policy(yaml)])
    }

    /// If this fails, a policy without `policyTypes` isolates the wrong directions: an
    /// ingress-only policy would cut egress, or an egress rule would be ignored.
    #[test]
    fn policy_types_are_inferred_when_absent() {
        let cluster = build_policy(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{}]\n",
        )
        .expect("valid");
        let policy = &cluster.policies()[0];
        assert!(policy.ingress.is_some());
        assert!(
            policy.egress.is_none(),
            "no egress rules: egress not isolated"
        );

        let cluster = build_policy(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  egress: [{ports: [{port: 53, protocol: UDP}]}]\n",
        )
        .expect("valid");
        let policy = &cluster.policies()[0];
        assert_eq!(
            policy.ingress.as_deref(),
            Some(&[][..]),
            "ingress always isolated"
        );
        assert_eq!(policy.egress.as_ref().map(Vec::len), Some(1));
    }

    /// If this fails, a malformed policy is read as something else and the verdicts are wrong
    /// without any message; each problem must name the object and the field.
    #[test]
    fn malformed_policies_name_object_and_field() {
        let errors = build_policy(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: x}\nspec:\n  podSelector: {matchExpressions: [{key: tier, operator: Equals, values: [a]}]}\n  policyTypes: [Ingress, Sideways]\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/33}\n    - ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}\n    - {}\n    ports:\n    - {port: 80, protocol: tcp}\n    - {port: http, endPort: 90}\n    - {port: 90, endPort: 80}\n    - {port: \"8080\"}\n",
        )
        .expect_err("invalid");
        let fields: Vec<String> = errors
            .0
            .iter()
            .map(|error| match error {
                ModelError::InvalidField {
                    field,
                    object,
                    kind,
                    ..
                } => {
                    assert_eq!((*kind, object.as_str()), ("NetworkPolicy", "x/bad"));
                    field.clone()
                }
                ModelError::Duplicate { .. } => String::new(),
            })
            .collect();
        assert_eq!(
            fields,
            [
                "spec.podSelector.matchExpressions[0].operator",
                "spec.policyTypes[1]",
                "spec.ingress[0].from[0].ipBlock.cidr",
                "spec.ingress[0].from[1].ipBlock.except[0]",
                "spec.ingress[0].from[2]",
                "spec.ingress[0].ports[0].protocol",
                "spec.ingress[0].ports[1].endPort",
                "spec.ingress[0].ports[2].endPort",
                "spec.ingress[0].ports[3].port",
            ]
        );
        assert_eq!(
            errors.0[2].to_string(),
            "NetworkPolicy x/bad: spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.0/33\": prefix length \"33\" must be a number from 0 to 32"
        );
        assert_eq!(
            errors.0[8].to_string(),
            "NetworkPolicy x/bad: spec.ingress[0].ports[3].port: \"8080\" is a number written as a string; write it without quotes"
        );
    }

    /// If this fails, a peer with only a podSelector would look in every namespace instead of the
    /// policy's own, opening traffic from other tenants.
    #[test]
    fn pod_selector_alone_means_the_policy_namespace() {
        let cluster = build_policy(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}, {namespaceSelector: {}}]}]\n",
        )
        .expect("valid");
        let rules = cluster.policies()[0].ingress.clone().expect("ingress");
        let peers = rules[0].peers.clone().expect("peers");
        assert!(
            matches!(&peers[0], Peer::Pods { namespaces: NamespaceScope::Own(ns), .. } if ns == "x")
        );
        assert!(
            matches!(&peers[1], Peer::Pods { namespaces: NamespaceScope::Matching(s), pods } if s.is_everything() && pods.is_everything())
        );
    }

    /// If this fails, pods in namespaces missing from a partial dump cannot be matched by
    /// `kubernetes.io/metadata.name` selectors, and the user is not told an assumption was made.
    #[test]
    fn missing_namespaces_get_the_name_label_and_a_note() {
        let pod: Pod = serde_saphyr::from_str(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: y}\nstatus: {podIP: 10.0.0.1}\n",
        )
        .expect("pod");
        let cluster = Cluster::build(&[], &[pod], &[]).expect("valid");
        let labels = cluster.namespace_labels(&cluster.pods()[0]);
        assert_eq!(
            labels.get(NAMESPACE_NAME_LABEL).map(String::as_str),
            Some("y")
        );
        assert_eq!(cluster.notes().len(), 1);
        assert!(cluster.notes()[0].contains("namespace y is not in the input"));
    }

    /// If this fails, `--probe` rejects what users type or accepts nonsense.
    #[test]
    fn probes_parse_from_the_command_line_form() {
        assert_eq!(
            "53/udp".parse::<Probe>(),
            Ok(Probe {
                port: 53,
                protocol: Protocol::UDP
            })
        );
        assert_eq!(
            "8080".parse::<Probe>().map(|probe| probe.to_string()),
            Ok("8080/TCP".to_owned())
        );
        for bad in ["0/TCP", "80/ICMP", "http/TCP", "70000"] {
            assert!(bad.parse::<Probe>().is_err(), "{bad}");
        }
    }

    /// Each way a probe can be wrong says which, and the form to write. If this fails, a user
    /// who types `--probe 70000/TCP` or `--probe 80/ICMP` is told only "is not a probe" and
    /// has to guess what is wrong.
    #[test]
    fn a_bad_probe_says_why() {
        let message = |text: &str| text.parse::<Probe>().expect_err("a bad probe").to_string();
        let cases = [
            ("70000/TCP", "port 70000 is out of range 1-65535"),
            ("0/TCP", "port 0 is out of range 1-65535"),
            (
                "99999999999999",
                "port 99999999999999 is out of range 1-65535",
            ),
            (
                "80/ICMP",
                "unknown protocol \"ICMP\" (NetworkPolicy knows TCP, UDP and SCTP)",
            ),
            ("http/TCP", "port \"http\" is not a number"),
            ("-1/TCP", "port \"-1\" is not a number"),
            ("80/TCP/x", "\"80/TCP/x\" is not of the form PORT/PROTOCOL"),
            ("/TCP", "\"/TCP\" is not of the form PORT/PROTOCOL"),
            ("80/", "\"80/\" is not of the form PORT/PROTOCOL"),
            ("", "a probe cannot be empty"),
        ];
        for (text, reason) in cases {
            let message = message(text);
            assert!(
                message.starts_with(reason) && message.ends_with(PROBE_FORM),
                "{text:?}: {message}"
            );
        }
    }
}
