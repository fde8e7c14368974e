//! Validation: a [`NamespaceIsolation`] in, a [`ValidatedIsolation`] or every error out.
//!
//! ```text
//! [ NamespaceIsolation ] --TryFrom--> [ ValidatedIsolation ]   flows and shared services point at tiers by index
//!                                 \-> [ ValidationErrors ]     every bad field, with its path
//! ```
//!
//! It enforces the CRD's CEL rules again (the operator may read objects that bypassed admission,
//! and `netfence render` runs with no API server at all) plus what CEL cannot say: label keys and
//! values, selector operators, CIDR syntax, DNS-1123 names, named-port syntax.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString};
use netfence_crd::isolation::{
    self as limits, DeletionPolicy, Direction, IpBlock, Mode, NAMESPACE_NAME_LABEL,
    NamespaceIsolation, NamespaceIsolationSpec, Port, Protocol, SameNamespace,
};

use super::{FieldError, ValidationErrors};
use crate::{
    cidr::Cidr,
    names::{dns_label_problem, dns_subdomain_problem, port_name_problem},
    selector::Selector,
};

/// The longest resource name: it is the value of the `netfence.io/isolation` label on every
/// generated policy, and label values hold at most 63 characters.
pub const MAX_RESOURCE_NAME: usize = crate::names::LABEL_NAME_MAX;

/// A port that passed validation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValidPort {
    /// The port number or name.
    pub port: PortValue,
    /// The protocol.
    pub protocol: Protocol,
    /// The last port of a range (numeric `port` only).
    pub end_port: Option<u16>,
}

/// A numeric or named port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortValue {
    /// A port number, 1-65535.
    Number(u16),
    /// A container port name (IANA service name).
    Name(String),
}

/// The ports of a rule: every port, or a list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ports {
    /// Every port and protocol.
    All,
    /// Only these (never empty).
    Only(Vec<ValidPort>),
}

/// A label selector as written, with its validated meaning: render writes the first, the
/// proofs and the controllers match with the second, and nothing parses it again.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSelector {
    /// As the spec writes it.
    pub written: LabelSelector,
    /// What it means.
    pub selector: Selector,
}

/// An `ipBlock` as written, with its parsed ranges (canonical: no host bits).
#[derive(Clone, Debug, PartialEq)]
pub struct ValidIpBlock {
    /// As the spec writes it.
    pub written: IpBlock,
    /// `cidr`.
    pub cidr: Cidr,
    /// `except`, each strictly inside `cidr`.
    pub except: Vec<Cidr>,
}

/// A tier that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidTier {
    /// The tier's name.
    pub name: String,
    /// Its pods.
    pub pod_selector: ValidSelector,
}

/// A flow between two tiers, by index into [`ValidatedIsolation::tiers`].
#[derive(Clone, Debug, PartialEq)]
pub struct ValidFlow {
    /// The client tier.
    pub from: usize,
    /// The server tier.
    pub to: usize,
    /// The server ports.
    pub ports: Ports,
}

/// Who is on the other side of a shared service, or of the DNS rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Peer {
    /// Pods in namespaces chosen by label, optionally narrowed by pod labels (ANDed).
    Pods {
        /// The namespaces. `namespace: x` becomes a selector on `kubernetes.io/metadata.name`.
        namespace_selector: ValidSelector,
        /// The pods inside them; `None` means all.
        pod_selector: Option<ValidSelector>,
    },
    /// Addresses.
    IpBlock(ValidIpBlock),
}

/// A shared service that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSharedService {
    /// The shared service's name.
    pub name: String,
    /// The direction of the traffic, as seen from this namespace.
    pub direction: Direction,
    /// The other side.
    pub peer: Peer,
    /// The tiers concerned, by index; `None` means every pod of the namespace.
    pub tiers: Option<Vec<usize>>,
    /// The destination ports.
    pub ports: Ports,
}

/// The DNS rule, present only when DNS is enabled and Egress is isolated.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidDns {
    /// The DNS pods, and any extra address blocks.
    pub peers: Vec<Peer>,
    /// The DNS ports.
    pub ports: Vec<ValidPort>,
}

/// A NamespaceIsolation that passed every rule. Only [`TryFrom`] builds one, so code that holds
/// one never sees an unvalidated spec.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedIsolation {
    name: String,
    namespace: Option<String>,
    uid: Option<String>,
    mode: Mode,
    ingress_isolated: bool,
    egress_isolated: bool,
    dns: Option<ValidDns>,
    same_namespace: SameNamespace,
    deletion_policy: DeletionPolicy,
    tiers: Vec<ValidTier>,
    flows: Vec<ValidFlow>,
    shared_services: Vec<ValidSharedService>,
    acknowledged: Vec<(String, String)>,
}

impl ValidatedIsolation {
    /// `metadata.name`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
    /// `metadata.namespace`, when the manifest has one.
    #[must_use]
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
    /// `metadata.uid`, when the object came from an API server.
    #[must_use]
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }
    /// Set the namespace when the manifest has none (it leaves it to `kubectl -n`, kustomize
    /// or Argo CD).
    #[must_use]
    pub fn with_default_namespace(mut self, namespace: Option<String>) -> Self {
        if self.namespace.is_none() {
            self.namespace = namespace;
        }
        self
    }
    /// `spec.mode`.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// Whether `spec.isolate` lists `direction`.
    #[must_use]
    pub fn isolates(&self, direction: Direction) -> bool {
        match direction {
            Direction::Ingress => self.ingress_isolated,
            Direction::Egress => self.egress_isolated,
        }
    }
    /// The isolated directions, Ingress first.
    #[must_use]
    pub fn isolated_directions(&self) -> Vec<Direction> {
        [Direction::Ingress, Direction::Egress]
            .into_iter()
            .filter(|direction| self.isolates(*direction))
            .collect()
    }
    /// The DNS rule, when one is generated.
    #[must_use]
    pub fn dns(&self) -> Option<&ValidDns> {
        self.dns.as_ref()
    }
    /// `spec.sameNamespace`.
    #[must_use]
    pub fn same_namespace(&self) -> SameNamespace {
        self.same_namespace
    }
    /// `spec.deletionPolicy`.
    #[must_use]
    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.deletion_policy
    }
    /// The tiers, in spec order.
    #[must_use]
    pub fn tiers(&self) -> &[ValidTier] {
        &self.tiers
    }
    /// The flows, in spec order.
    #[must_use]
    pub fn flows(&self) -> &[ValidFlow] {
        &self.flows
    }
    /// The shared services, in spec order.
    #[must_use]
    pub fn shared_services(&self) -> &[ValidSharedService] {
        &self.shared_services
    }
    /// `spec.acknowledgedPolicies`: the foreign NetworkPolicies the intent audit leaves out, as
    /// (name, reason).
    #[must_use]
    pub fn acknowledged(&self) -> &[(String, String)] {
        &self.acknowledged
    }
}

impl TryFrom<&NamespaceIsolation> for ValidatedIsolation {
    type Error = ValidationErrors;

    fn try_from(resource: &NamespaceIsolation) -> Result<Self, Self::Error> {
        let mut errors = Errors::default();
        let name = resource.metadata.name.clone().unwrap_or_default();
        check_resource_name(&name, &mut errors);
        let spec = validate_spec(&resource.spec, &mut errors);
        if errors.0.is_empty() {
            Ok(ValidatedIsolation {
                name,
                namespace: resource.metadata.namespace.clone(),
                uid: resource.metadata.uid.clone(),
                ..spec
            })
        } else {
            Err(ValidationErrors(errors.0))
        }
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn check_resource_name(name: &str, errors: &mut Errors) {
    if name.is_empty() {
        errors.push("metadata.name", "is required");
    } else if name.len() > MAX_RESOURCE_NAME {
        errors.push(
            "metadata.name",
            format!(
                "is {} characters; at most {MAX_RESOURCE_NAME} are allowed because the name is the value of the netfence.io/isolation label on every generated policy (generated names such as {name}-default-deny stay far below the 253-character limit)",
                name.len()
            ),
        );
    } else if let Some(problem) = dns_subdomain_problem(name) {
        errors.push("metadata.name", problem);
    }
}

/// Validate the spec. Returns the validated parts (name, namespace and uid left empty); the spec
/// is valid only when `errors` stayed empty.
fn validate_spec(spec: &NamespaceIsolationSpec, errors: &mut Errors) -> ValidatedIsolation {
    check_count(spec.tiers.len(), limits::MAX_TIERS, "spec.tiers", errors);
    check_count(spec.flows.len(), limits::MAX_FLOWS, "spec.flows", errors);
    check_count(
        spec.shared_services.len(),
        limits::MAX_SHARED_SERVICES,
        "spec.sharedServices",
        errors,
    );
    check_count(
        spec.dns.ip_blocks.len(),
        limits::MAX_DNS_IP_BLOCKS,
        "spec.dns.ipBlocks",
        errors,
    );
    let (ingress_isolated, egress_isolated) = validate_isolate(&spec.isolate, errors);
    let tiers = validate_tiers(spec, errors);
    let tier_names: Vec<&str> = spec.tiers.iter().map(|tier| tier.name.as_str()).collect();
    let flows = validate_flows(spec, &tier_names, errors);
    let isolated = |direction| match direction {
        Direction::Ingress => ingress_isolated,
        Direction::Egress => egress_isolated,
    };
    let shared_services = validate_shared_services(spec, &tier_names, &isolated, errors);
    let dns = validate_dns(spec, errors);
    let acknowledged = validate_acknowledged(spec, errors);
    ValidatedIsolation {
        name: String::new(),
        namespace: None,
        uid: None,
        mode: spec.mode,
        ingress_isolated,
        egress_isolated,
        dns: if egress_isolated { dns } else { None },
        same_namespace: spec.same_namespace,
        deletion_policy: spec.deletion_policy,
        tiers,
        flows,
        shared_services,
        acknowledged,
    }
}

fn validate_acknowledged(
    spec: &NamespaceIsolationSpec,
    errors: &mut Errors,
) -> Vec<(String, String)> {
    check_count(
        spec.acknowledged_policies.len(),
        limits::MAX_ACKNOWLEDGED,
        "spec.acknowledgedPolicies",
        errors,
    );
    let mut seen = BTreeSet::new();
    for (index, policy) in spec.acknowledged_policies.iter().enumerate() {
        let path = format!("spec.acknowledgedPolicies[{index}]");
        if let Some(problem) = dns_subdomain_problem(&policy.name) {
            errors.push(format!("{path}.name"), problem);
        } else if !seen.insert(policy.name.as_str()) {
            errors.push(
                format!("{path}.name"),
                format!(
                    "policy {:?} is acknowledged twice; list each policy once",
                    policy.name
                ),
            );
        }
        if policy.reason.trim().is_empty() {
            errors.push(
                format!("{path}.reason"),
                "is required: say why the team accepts what this policy allows",
            );
        }
    }
    spec.acknowledged_policies
        .iter()
        .map(|policy| (policy.name.clone(), policy.reason.clone()))
        .collect()
}

/// The CRD bounds every list (the API server refuses longer ones); render enforces the same.
fn check_count(count: usize, max: usize, path: &str, errors: &mut Errors) {
    if count > max {
        errors.push(
            path,
            format!("has {count} items; at most {max} are allowed"),
        );
    }
}

fn validate_isolate(isolate: &[Direction], errors: &mut Errors) -> (bool, bool) {
    if isolate.is_empty() {
        errors.push(
            "spec.isolate",
            "must list at least one direction (Ingress, Egress); an empty list would be read by Kubernetes as Ingress only",
        );
    }
    let mut seen = BTreeSet::new();
    for (index, direction) in isolate.iter().enumerate() {
        if !seen.insert(*direction) {
            errors.push(
                format!("spec.isolate[{index}]"),
                format!("{} is listed twice", direction.as_str()),
            );
        }
    }
    (
        isolate.contains(&Direction::Ingress),
        isolate.contains(&Direction::Egress),
    )
}

fn validate_tiers(spec: &NamespaceIsolationSpec, errors: &mut Errors) -> Vec<ValidTier> {
    let mut seen = BTreeSet::new();
    for (index, tier) in spec.tiers.iter().enumerate() {
        let path = format!("spec.tiers[{index}]");
        if let Some(problem) = dns_label_problem(&tier.name) {
            errors.push(format!("{path}.name"), problem);
        } else if !seen.insert(tier.name.as_str()) {
            errors.push(
                format!("{path}.name"),
                format!(
                    "tier {:?} is declared twice; tier names must be unique",
                    tier.name
                ),
            );
        }
    }
    // Flows and shared services refer to tiers by their position in spec.tiers: a tier whose
    // selector is invalid leaves a gap, but then an error was recorded and nothing is built.
    spec.tiers
        .iter()
        .enumerate()
        .filter_map(|(index, tier)| {
            let path = format!("spec.tiers[{index}].podSelector");
            Some(ValidTier {
                name: tier.name.clone(),
                pod_selector: valid_selector(&tier.pod_selector, &path, errors)?,
            })
        })
        .collect()
}

fn tier_index(tier_names: &[&str], name: &str, path: &str, errors: &mut Errors) -> Option<usize> {
    let index = tier_names.iter().position(|known| *known == name);
    if index.is_none() {
        let declared = if tier_names.is_empty() {
            "no tiers are declared in spec.tiers".to_owned()
        } else {
            format!("declared tiers: {}", tier_names.join(", "))
        };
        errors.push(path, format!("unknown tier {name:?}; {declared}"));
    }
    index
}

fn validate_flows(
    spec: &NamespaceIsolationSpec,
    tier_names: &[&str],
    errors: &mut Errors,
) -> Vec<ValidFlow> {
    let mut flows = Vec::new();
    for (index, flow) in spec.flows.iter().enumerate() {
        let path = format!("spec.flows[{index}]");
        let from = tier_index(tier_names, &flow.from, &format!("{path}.from"), errors);
        let to = tier_index(tier_names, &flow.to, &format!("{path}.to"), errors);
        let ports = validate_ports(flow.ports.as_deref(), &format!("{path}.ports"), errors);
        if let (Some(from), Some(to)) = (from, to) {
            flows.push(ValidFlow { from, to, ports });
        }
    }
    flows
}

fn validate_shared_services(
    spec: &NamespaceIsolationSpec,
    tier_names: &[&str],
    isolated: &dyn Fn(Direction) -> bool,
    errors: &mut Errors,
) -> Vec<ValidSharedService> {
    let mut seen = BTreeSet::new();
    let mut services = Vec::new();
    for (index, service) in spec.shared_services.iter().enumerate() {
        let path = format!("spec.sharedServices[{index}]");
        if let Some(problem) = dns_label_problem(&service.name) {
            errors.push(format!("{path}.name"), problem);
        } else if !seen.insert(service.name.as_str()) {
            errors.push(
                format!("{path}.name"),
                format!(
                    "shared service {:?} is declared twice; shared service names must be unique",
                    service.name
                ),
            );
        }
        if !isolated(service.direction) {
            errors.push(
                format!("{path}.direction"),
                format!(
                    "{direction} is not listed in spec.isolate, so {direction} traffic is not restricted and this shared service has no effect; add {direction} to spec.isolate or remove the shared service",
                    direction = service.direction.as_str()
                ),
            );
        }
        let peer = validate_peer(service, &path, errors);
        let tiers = service.tiers.as_ref().map(|tiers| {
            if tiers.is_empty() {
                errors.push(
                    format!("{path}.tiers"),
                    "is empty; omit tiers to mean every pod of the namespace, or list at least one tier",
                );
            }
            check_count(
                tiers.len(),
                limits::MAX_SHARED_SERVICE_TIERS,
                &format!("{path}.tiers"),
                errors,
            );
            let mut indices = Vec::new();
            for (position, tier) in tiers.iter().enumerate() {
                let tier_path = format!("{path}.tiers[{position}]");
                if let Some(found) = tier_index(tier_names, tier, &tier_path, errors) {
                    if indices.contains(&found) {
                        errors.push(tier_path, format!("tier {tier:?} is listed twice"));
                    } else {
                        indices.push(found);
                    }
                }
            }
            indices
        });
        let ports = validate_ports(service.ports.as_deref(), &format!("{path}.ports"), errors);
        if let Some(peer) = peer {
            services.push(ValidSharedService {
                name: service.name.clone(),
                direction: service.direction,
                peer,
                tiers,
                ports,
            });
        }
    }
    services
}

fn validate_peer(
    service: &netfence_crd::isolation::SharedService,
    path: &str,
    errors: &mut Errors,
) -> Option<Peer> {
    let given = [
        service.namespace.is_some(),
        service.namespace_selector.is_some(),
        service.ip_block.is_some(),
    ]
    .into_iter()
    .filter(|given| *given)
    .count();
    if given != 1 {
        errors.push(
            path,
            format!(
                "names {given} peers; give exactly one of namespace, namespaceSelector or ipBlock"
            ),
        );
        return None;
    }
    if service.pod_selector.is_some() && service.ip_block.is_some() {
        errors.push(
            format!("{path}.podSelector"),
            "goes only beside namespace or namespaceSelector; an ipBlock peer has no pods to select",
        );
    }
    let pod_selector = service
        .pod_selector
        .as_ref()
        .map(|selector| valid_selector(selector, &format!("{path}.podSelector"), errors));
    if let Some(block) = &service.ip_block {
        return valid_ip_block(block, &format!("{path}.ipBlock"), errors).map(Peer::IpBlock);
    }
    let namespace_selector = if let Some(namespace) = &service.namespace {
        if let Some(problem) = dns_label_problem(namespace) {
            errors.push(format!("{path}.namespace"), problem);
            return None;
        }
        namespace_name_selector(namespace)
    } else {
        let selector = service.namespace_selector.as_ref()?;
        valid_selector(selector, &format!("{path}.namespaceSelector"), errors)?
    };
    Some(Peer::Pods {
        namespace_selector,
        pod_selector: match pod_selector {
            Some(parsed) => Some(parsed?),
            None => None,
        },
    })
}

/// The selector that matches exactly one namespace, by its immutable name label; `namespace`
/// must be a valid namespace name (a label value).
#[must_use]
pub fn namespace_name_selector(namespace: &str) -> ValidSelector {
    let written = LabelSelector {
        match_labels: Some([(NAMESPACE_NAME_LABEL.to_owned(), namespace.to_owned())].into()),
        match_expressions: None,
    };
    let selector = Selector::from_requirements(vec![crate::selector::Requirement::In {
        key: NAMESPACE_NAME_LABEL.to_owned(),
        values: BTreeSet::from([namespace.to_owned()]),
    }]);
    ValidSelector { written, selector }
}

fn validate_dns(spec: &NamespaceIsolationSpec, errors: &mut Errors) -> Option<ValidDns> {
    let dns = &spec.dns;
    if !dns.enabled {
        return None;
    }
    let namespace_valid = match dns_label_problem(&dns.namespace) {
        Some(problem) => {
            errors.push("spec.dns.namespace", problem);
            false
        }
        None => true,
    };
    let pod_selector = valid_selector(&dns.pod_selector, "spec.dns.podSelector", errors);
    let ports = match validate_ports(Some(&dns.ports), "spec.dns.ports", errors) {
        Ports::Only(ports) => ports,
        Ports::All => Vec::new(),
    };
    let mut peers = Vec::new();
    if let Some(pod_selector) = pod_selector
        && namespace_valid
    {
        peers.push(Peer::Pods {
            namespace_selector: namespace_name_selector(&dns.namespace),
            pod_selector: Some(pod_selector),
        });
    }
    for (index, block) in dns.ip_blocks.iter().enumerate() {
        let path = format!("spec.dns.ipBlocks[{index}]");
        peers.extend(valid_ip_block(block, &path, errors).map(Peer::IpBlock));
    }
    Some(ValidDns { peers, ports })
}

fn validate_ports(ports: Option<&[Port]>, path: &str, errors: &mut Errors) -> Ports {
    let Some(ports) = ports else {
        return Ports::All;
    };
    if ports.is_empty() {
        errors.push(
            path,
            "is empty; omit ports to allow every port, or list at least one",
        );
        return Ports::All;
    }
    check_count(ports.len(), limits::MAX_PORTS, path, errors);
    let mut valid = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        if let Some(port) = validate_port(port, &format!("{path}[{index}]"), errors)
            && !valid.contains(&port)
        {
            valid.push(port);
        }
    }
    Ports::Only(valid)
}

fn validate_port(port: &Port, path: &str, errors: &mut Errors) -> Option<ValidPort> {
    let value = match &port.port {
        IntOrString::Int(number) => match u16::try_from(*number) {
            Ok(number) if number >= 1 => Some(PortValue::Number(number)),
            _ => {
                errors.push(
                    format!("{path}.port"),
                    format!("{number} is not a port; use a number from 1 to 65535"),
                );
                None
            }
        },
        IntOrString::String(name) => {
            if let Some(problem) = port_name_problem(name) {
                errors.push(format!("{path}.port"), problem);
                None
            } else {
                Some(PortValue::Name(name.clone()))
            }
        }
    };
    let end_port = match (port.end_port, &value) {
        (None, _) | (Some(_), None) => None,
        (Some(end), Some(PortValue::Number(start))) => match u16::try_from(end) {
            Ok(end) if end >= *start => Some(end),
            _ => {
                errors.push(
                    format!("{path}.endPort"),
                    format!("{end} must be at least port ({start}) and at most 65535"),
                );
                None
            }
        },
        (Some(_), Some(PortValue::Name(_))) => {
            errors.push(
                format!("{path}.endPort"),
                "goes only with a numeric port; a named port cannot start a range",
            );
            None
        }
    };
    Some(ValidPort {
        port: value?,
        protocol: port.protocol,
        end_port,
    })
}

/// Every problem of a label selector (keys, values, operators), with paths below `path`.
#[must_use]
pub fn selector_errors(selector: &LabelSelector, path: &str) -> Vec<FieldError> {
    let mut errors = Errors::default();
    valid_selector(selector, path, &mut errors);
    errors.0
}

/// Parse a label selector, recording every problem with its path below `path`.
fn valid_selector(
    selector: &LabelSelector,
    path: &str,
    errors: &mut Errors,
) -> Option<ValidSelector> {
    match Selector::parse(selector) {
        Ok(parsed) => Some(ValidSelector {
            written: selector.clone(),
            selector: parsed,
        }),
        Err(problems) => {
            for problem in problems {
                errors.push(format!("{path}.{}", problem.field), problem.message);
            }
            None
        }
    }
}

fn valid_ip_block(block: &IpBlock, path: &str, errors: &mut Errors) -> Option<ValidIpBlock> {
    check_count(
        block.except.len(),
        limits::MAX_EXCEPT,
        &format!("{path}.except"),
        errors,
    );
    let cidr = match Cidr::parse_canonical(&block.cidr) {
        Ok(cidr) => Some(cidr),
        Err(problem) => {
            errors.push(
                format!("{path}.cidr"),
                format!("{:?}: {problem}", block.cidr),
            );
            None
        }
    };
    let mut except = Vec::new();
    for (index, text) in block.except.iter().enumerate() {
        let except_path = format!("{path}.except[{index}]");
        match Cidr::parse_canonical(text) {
            Err(problem) => errors.push(except_path, format!("{text:?}: {problem}")),
            Ok(inner) => {
                if let Some(outer) = cidr
                    && !outer.strictly_contains(&inner)
                {
                    errors.push(
                        except_path,
                        format!(
                            "{text:?} is not strictly inside cidr {}; an except range must be a smaller part of cidr",
                            block.cidr
                        ),
                    );
                }
                except.push(inner);
            }
        }
    }
    Some(ValidIpBlock {
        written: block.clone(),
        cidr: cidr?,
        except,
    })
}
