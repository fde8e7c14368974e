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

use std::{collections::BTreeSet, fmt, net::IpAddr};

use k8s_openapi::apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString};

use crate::isolation::{
    self as limits, DeletionPolicy, Direction, IpBlock, Mode, NamespaceIsolation,
    NamespaceIsolationSpec, Port, Protocol, SameNamespace,
};

/// The longest resource name: it is the value of the `netfence.io/isolation` label on every
/// generated policy, and label values hold at most 63 characters.
pub const MAX_RESOURCE_NAME: usize = 63;

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, `spec.flows[1].to`; empty for the object as a whole.
    pub path: String,
    /// What is wrong, and what to do.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every invalid field of one resource, in the order of the spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let messages: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", messages.join("; "))
    }
}

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

/// A tier that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidTier {
    /// The tier's name.
    pub name: String,
    /// Its pods.
    pub pod_selector: LabelSelector,
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
        namespace_selector: LabelSelector,
        /// The pods inside them; `None` means all.
        pod_selector: Option<LabelSelector>,
    },
    /// Addresses.
    IpBlock(IpBlock),
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
    let tier_names: Vec<&str> = tiers.iter().map(|tier| tier.name.as_str()).collect();
    let flows = validate_flows(spec, &tier_names, errors);
    let isolated = |direction| match direction {
        Direction::Ingress => ingress_isolated,
        Direction::Egress => egress_isolated,
    };
    let shared_services = validate_shared_services(spec, &tier_names, &isolated, errors);
    let dns = validate_dns(spec, errors);
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
    }
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
                    "tier \"{}\" is declared twice; tier names must be unique",
                    tier.name
                ),
            );
        }
        check_selector(&tier.pod_selector, &format!("{path}.podSelector"), errors);
    }
    spec.tiers
        .iter()
        .map(|tier| ValidTier {
            name: tier.name.clone(),
            pod_selector: tier.pod_selector.clone(),
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
        errors.push(path, format!("unknown tier \"{name}\"; {declared}"));
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
                    "shared service \"{}\" is declared twice; shared service names must be unique",
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
                        errors.push(tier_path, format!("tier \"{tier}\" is listed twice"));
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
    service: &crate::isolation::SharedService,
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
    if let Some(pod_selector) = &service.pod_selector {
        if service.ip_block.is_some() {
            errors.push(
                format!("{path}.podSelector"),
                "goes only beside namespace or namespaceSelector; an ipBlock peer has no pods to select",
            );
        }
        check_selector(pod_selector, &format!("{path}.podSelector"), errors);
    }
    if let Some(namespace) = &service.namespace {
        if let Some(problem) = dns_label_problem(namespace) {
            errors.push(format!("{path}.namespace"), problem);
        }
        return Some(Peer::Pods {
            namespace_selector: namespace_name_selector(namespace),
            pod_selector: service.pod_selector.clone(),
        });
    }
    if let Some(selector) = &service.namespace_selector {
        check_selector(selector, &format!("{path}.namespaceSelector"), errors);
        return Some(Peer::Pods {
            namespace_selector: selector.clone(),
            pod_selector: service.pod_selector.clone(),
        });
    }
    let block = service.ip_block.as_ref()?;
    check_ip_block(block, &format!("{path}.ipBlock"), errors);
    Some(Peer::IpBlock(block.clone()))
}

/// The selector that matches exactly one namespace, by its immutable name label.
#[must_use]
pub fn namespace_name_selector(namespace: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            [(
                crate::isolation::NAMESPACE_NAME_LABEL.to_owned(),
                namespace.to_owned(),
            )]
            .into(),
        ),
        match_expressions: None,
    }
}

fn validate_dns(spec: &NamespaceIsolationSpec, errors: &mut Errors) -> Option<ValidDns> {
    let dns = &spec.dns;
    if !dns.enabled {
        return None;
    }
    if let Some(problem) = dns_label_problem(&dns.namespace) {
        errors.push("spec.dns.namespace", problem);
    }
    check_selector(&dns.pod_selector, "spec.dns.podSelector", errors);
    let ports = match validate_ports(Some(&dns.ports), "spec.dns.ports", errors) {
        Ports::Only(ports) => ports,
        Ports::All => Vec::new(),
    };
    let mut peers = vec![Peer::Pods {
        namespace_selector: namespace_name_selector(&dns.namespace),
        pod_selector: Some(dns.pod_selector.clone()),
    }];
    for (index, block) in dns.ip_blocks.iter().enumerate() {
        check_ip_block(block, &format!("spec.dns.ipBlocks[{index}]"), errors);
        peers.push(Peer::IpBlock(block.clone()));
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
    check_selector(selector, path, &mut errors);
    errors.0
}

/// Check a label selector: keys, values, operators.
fn check_selector(selector: &LabelSelector, path: &str, errors: &mut Errors) {
    for (key, value) in selector.match_labels.iter().flatten() {
        if let Some(problem) = label_key_problem(key) {
            errors.push(
                format!("{path}.matchLabels"),
                format!("key \"{key}\": {problem}"),
            );
        }
        if let Some(problem) = label_value_problem(value) {
            errors.push(
                format!("{path}.matchLabels.{key}"),
                format!("value \"{value}\": {problem}"),
            );
        }
    }
    for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
        let path = format!("{path}.matchExpressions[{index}]");
        if let Some(problem) = label_key_problem(&expression.key) {
            errors.push(
                format!("{path}.key"),
                format!("\"{}\": {problem}", expression.key),
            );
        }
        let values = expression.values.as_deref().unwrap_or_default();
        match expression.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errors.push(
                        format!("{path}.values"),
                        format!("operator {} needs at least one value", expression.operator),
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errors.push(
                        format!("{path}.values"),
                        format!(
                            "operator {} takes no values; remove them",
                            expression.operator
                        ),
                    );
                }
            }
            other => errors.push(
                format!("{path}.operator"),
                format!("unknown operator \"{other}\"; use In, NotIn, Exists or DoesNotExist"),
            ),
        }
        for (position, value) in values.iter().enumerate() {
            if let Some(problem) = label_value_problem(value) {
                errors.push(
                    format!("{path}.values[{position}]"),
                    format!("\"{value}\": {problem}"),
                );
            }
        }
    }
}

fn check_ip_block(block: &IpBlock, path: &str, errors: &mut Errors) {
    check_count(
        block.except.len(),
        limits::MAX_EXCEPT,
        &format!("{path}.except"),
        errors,
    );
    let cidr = match parse_cidr(&block.cidr) {
        Ok(cidr) => Some(cidr),
        Err(problem) => {
            errors.push(
                format!("{path}.cidr"),
                format!("\"{}\": {problem}", block.cidr),
            );
            None
        }
    };
    for (index, except) in block.except.iter().enumerate() {
        let except_path = format!("{path}.except[{index}]");
        match parse_cidr(except) {
            Err(problem) => errors.push(except_path, format!("\"{except}\": {problem}")),
            Ok(inner) => {
                if let Some(outer) = cidr
                    && !outer.strictly_contains(&inner)
                {
                    errors.push(
                        except_path,
                        format!(
                            "\"{except}\" is not strictly inside cidr {}; an except range must be a smaller part of cidr",
                            block.cidr
                        ),
                    );
                }
            }
        }
    }
}

/// An IP range in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The first address.
    pub address: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Whether `address` is inside this range.
    #[must_use]
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = prefix_mask_v4(self.prefix);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = prefix_mask_v6(self.prefix);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }

    /// Whether `inner` is a smaller range inside this one.
    #[must_use]
    pub fn strictly_contains(&self, inner: &Cidr) -> bool {
        inner.prefix > self.prefix && self.contains(inner.address)
    }
}

fn prefix_mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn prefix_mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// Parse `a.b.c.d/n` or `x::/n`, refusing host bits (the canonical form is what Kubernetes stores).
pub fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let Some((address, prefix)) = text.split_once('/') else {
        return Err("is not in CIDR notation; write an address and a prefix length, such as 10.0.0.0/8 or 192.0.2.10/32".to_owned());
    };
    let address: IpAddr = address
        .parse()
        .map_err(|_| format!("\"{address}\" is not an IPv4 or IPv6 address"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|prefix| *prefix <= max)
        .ok_or_else(|| format!("prefix length \"{prefix}\" must be a number from 0 to {max}"))?;
    let cidr = Cidr { address, prefix };
    let network = match address {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & prefix_mask_v4(prefix)).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & prefix_mask_v6(prefix)).into()),
    };
    if network != address {
        return Err(format!("has host bits set; write {network}/{prefix}"));
    }
    Ok(cidr)
}

/// Why `name` is not a DNS-1123 label (lowercase alphanumerics and `-`, at most 63), if it is not.
#[must_use]
pub fn dns_label_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty; use a DNS-1123 label such as \"backend\"".to_owned());
    }
    if name.len() > 63 {
        return Some(format!(
            "\"{name}\" is {} characters; a DNS-1123 label has at most 63",
            name.len()
        ));
    }
    let valid_chars = name
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    if !valid_chars || name.starts_with('-') || name.ends_with('-') {
        return Some(format!(
            "\"{name}\" is not a DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    None
}

fn dns_subdomain_problem(name: &str) -> Option<String> {
    if name.len() > 253 {
        return Some(format!("\"{name}\" is longer than 253 characters"));
    }
    name.split('.').find_map(dns_label_problem).map(|_| {
        format!(
            "\"{name}\" is not a DNS-1123 subdomain: use lowercase letters, digits, '-' and '.'"
        )
    })
}

/// Why `key` is not a label key (`[prefix/]name`), if it is not.
#[must_use]
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty() || dns_subdomain_problem(prefix).is_some())
    {
        return Some(format!(
            "prefix \"{prefix}\" must be a DNS-1123 subdomain such as example.com"
        ));
    }
    if name.is_empty() {
        return Some("has an empty name part".to_owned());
    }
    label_value_problem(name).map(|problem| format!("name part {problem}"))
}

/// Why `value` is not a label value, if it is not.
#[must_use]
pub fn label_value_problem(value: &str) -> Option<String> {
    if value.len() > 63 {
        return Some(format!("is {} characters; at most 63", value.len()));
    }
    let bytes = value.as_bytes();
    let valid = bytes
        .iter()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    let edges = bytes.first().is_none_or(u8::is_ascii_alphanumeric)
        && bytes.last().is_none_or(u8::is_ascii_alphanumeric);
    if valid && edges {
        None
    } else {
        Some(
            "must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
                .to_owned(),
        )
    }
}

/// Why `name` is not a named port (an IANA service name: at most 15 lowercase alphanumerics and
/// `-`, with a letter, no `--`, not starting or ending with `-`), if it is not.
#[must_use]
pub fn port_name_problem(name: &str) -> Option<String> {
    if !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_digit()) {
        return Some(format!(
            "\"{name}\" is a number written as a string; write it without quotes"
        ));
    }
    let valid = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && name.bytes().any(|byte| byte.is_ascii_lowercase())
        && !name.contains("--")
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        None
    } else {
        Some(format!(
            "\"{name}\" is neither a port number nor a port name: a name has at most 15 lowercase letters, digits and single '-', with at least one letter"
        ))
    }
}
