//! Render: a validated NamespaceIsolation in, the NetworkPolicies of its namespace out. Pure.
//!
//! ```text
//! [ ValidatedIsolation "shop" ] -> shop-default-deny     all pods, policyTypes = spec.isolate, no rules
//!                               -> shop-allow-dns        all pods, egress to the DNS pods (Egress isolated only)
//!                               -> shop-same-namespace   all pods <-> all pods (sameNamespace: Allow only)
//!                               -> shop-tier-<tier>      the tier's pods: flows in and out, tiered shared services
//!                               -> shop-shared-<name>    all pods: a shared service without tiers
//! ```
//!
//! Every policy writes `policyTypes`, lists a direction only where `spec.isolate` does, carries
//! the managed-by and isolation labels, and (when the resource has a UID) a controller owner
//! reference. Rules are merged so that no two rules of a policy have the same peer or the same
//! ports, in the order the spec declares them: the same spec gives byte-identical output.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::networking::v1::{
        IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule,
        NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kube::Resource;
use netfence_crd::{
    NamespaceIsolation,
    isolation::{Direction, SameNamespace},
};

use crate::meta::{
    ISOLATION_LABEL, MANAGED_BY, MANAGED_BY_LABEL, ROLE_LABEL, SHARED_SERVICE_LABEL, TIER_LABEL,
};
use crate::validate::{Peer, PortValue, Ports, ValidPort, ValidatedIsolation};

/// What a generated policy is for; its name is `<resource>-<suffix>`, and its labels say it
/// ([`PolicyRole::labels`], read back by [`PolicyRole::from_labels`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyRole {
    /// `<resource>-default-deny`.
    DefaultDeny,
    /// `<resource>-allow-dns`.
    AllowDns,
    /// `<resource>-same-namespace`.
    SameNamespace,
    /// `<resource>-tier-<tier>`.
    Tier(String),
    /// `<resource>-shared-<name>`.
    Shared(String),
}

impl PolicyRole {
    /// The policy name for a resource named `resource`.
    #[must_use]
    pub fn policy_name(&self, resource: &str) -> String {
        match self {
            PolicyRole::DefaultDeny => format!("{resource}-default-deny"),
            PolicyRole::AllowDns => format!("{resource}-allow-dns"),
            PolicyRole::SameNamespace => format!("{resource}-same-namespace"),
            PolicyRole::Tier(tier) => format!("{resource}-tier-{tier}"),
            PolicyRole::Shared(name) => format!("{resource}-shared-{name}"),
        }
    }

    /// The value of [`ROLE_LABEL`] for this role.
    #[must_use]
    pub fn label_value(&self) -> &'static str {
        match self {
            PolicyRole::DefaultDeny => "default-deny",
            PolicyRole::AllowDns => "allow-dns",
            PolicyRole::SameNamespace => "same-namespace",
            PolicyRole::Tier(_) => "tier",
            PolicyRole::Shared(_) => "shared",
        }
    }

    /// The labels that carry this role on its policy: [`ROLE_LABEL`], and for a tier or a shared
    /// service its name under [`TIER_LABEL`] or [`SHARED_SERVICE_LABEL`] (a tier name may be 63
    /// characters, the most a label value holds, so it never shares a value with the role).
    #[must_use]
    pub fn labels(&self) -> Vec<(&'static str, String)> {
        let mut labels = vec![(ROLE_LABEL, self.label_value().to_owned())];
        match self {
            PolicyRole::Tier(tier) => labels.push((TIER_LABEL, tier.clone())),
            PolicyRole::Shared(name) => labels.push((SHARED_SERVICE_LABEL, name.clone())),
            PolicyRole::DefaultDeny | PolicyRole::AllowDns | PolicyRole::SameNamespace => {}
        }
        labels
    }

    /// The role that a policy's labels carry, if they carry one whole.
    #[must_use]
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Option<PolicyRole> {
        let named = |key: &str| labels.get(key).cloned();
        match labels.get(ROLE_LABEL)?.as_str() {
            "default-deny" => Some(PolicyRole::DefaultDeny),
            "allow-dns" => Some(PolicyRole::AllowDns),
            "same-namespace" => Some(PolicyRole::SameNamespace),
            "tier" => named(TIER_LABEL).map(PolicyRole::Tier),
            "shared" => named(SHARED_SERVICE_LABEL).map(PolicyRole::Shared),
            _ => None,
        }
    }

    /// Whether the namespace keeps this policy under `deletionPolicy: KeepDefaultDeny`.
    #[must_use]
    pub fn fails_closed(&self) -> bool {
        matches!(self, PolicyRole::DefaultDeny | PolicyRole::AllowDns)
    }
}

/// The NetworkPolicies of one NamespaceIsolation, in the order of the table above.
#[must_use]
pub fn network_policies(isolation: &ValidatedIsolation) -> Vec<NetworkPolicy> {
    roles_and_policies(isolation)
        .into_iter()
        .map(|(_, policy)| policy)
        .collect()
}

/// The NetworkPolicies of one NamespaceIsolation, each with its role.
#[must_use]
pub fn roles_and_policies(isolation: &ValidatedIsolation) -> Vec<(PolicyRole, NetworkPolicy)> {
    let all_pods = LabelSelector::default();
    let isolated = isolation.isolated_directions();
    let mut policies = Vec::new();

    policies.push((
        PolicyRole::DefaultDeny,
        Rules::default().policy(all_pods.clone(), &isolated),
    ));

    if let Some(dns) = isolation.dns() {
        let mut rules = Rules::default();
        for peer in &dns.peers {
            rules.add(
                Direction::Egress,
                external_peer(peer),
                &Ports::Only(dns.ports.clone()),
            );
        }
        policies.push((
            PolicyRole::AllowDns,
            rules.policy(all_pods.clone(), &[Direction::Egress]),
        ));
    }

    if isolation.same_namespace() == SameNamespace::Allow {
        let mut rules = Rules::default();
        for direction in &isolated {
            rules.add(*direction, namespace_peer(all_pods.clone()), &Ports::All);
        }
        policies.push((
            PolicyRole::SameNamespace,
            rules.policy(all_pods.clone(), &isolated),
        ));
    }

    for (index, tier) in isolation.tiers().iter().enumerate() {
        let mut rules = Rules::default();
        for flow in isolation.flows() {
            if flow.to == index {
                let from = &isolation.tiers()[flow.from];
                rules.add(
                    Direction::Ingress,
                    namespace_peer(from.pod_selector.written.clone()),
                    &flow.ports,
                );
            }
            if flow.from == index {
                let to = &isolation.tiers()[flow.to];
                rules.add(
                    Direction::Egress,
                    namespace_peer(to.pod_selector.written.clone()),
                    &flow.ports,
                );
            }
        }
        for service in isolation.shared_services() {
            if service
                .tiers
                .as_ref()
                .is_some_and(|tiers| tiers.contains(&index))
            {
                rules.add(
                    service.direction,
                    external_peer(&service.peer),
                    &service.ports,
                );
            }
        }
        rules.keep_only(&isolated);
        policies.push((
            PolicyRole::Tier(tier.name.clone()),
            rules.policy(tier.pod_selector.written.clone(), &isolated),
        ));
    }

    for service in isolation.shared_services() {
        if service.tiers.is_none() {
            let mut rules = Rules::default();
            rules.add(
                service.direction,
                external_peer(&service.peer),
                &service.ports,
            );
            policies.push((
                PolicyRole::Shared(service.name.clone()),
                rules.policy(all_pods.clone(), &[service.direction]),
            ));
        }
    }

    policies
        .into_iter()
        .map(|(role, mut policy)| {
            policy.metadata = metadata(isolation, &role);
            (role, policy)
        })
        .collect()
}

/// The labels of the policy with `role` generated for the resource named `resource`: managed-by,
/// the resource's name, and the role.
#[must_use]
pub fn labels(resource: &str, role: &PolicyRole) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (ISOLATION_LABEL.to_owned(), resource.to_owned()),
    ]
    .into();
    labels.extend(
        role.labels()
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value)),
    );
    labels
}

/// Whether the policy named `name` with `labels`, of the resource named `resource`, is one that
/// `deletionPolicy: KeepDefaultDeny` keeps (the default deny or the DNS allow). The role is read
/// from the labels netfence writes; a policy that carries none (a tenant stripped them, or an
/// older netfence wrote it) is kept when its name is the one the default deny or the DNS allow
/// renders to: the deny never goes to the garbage collector for want of a label.
#[must_use]
pub fn fails_closed(resource: &str, name: &str, labels: &BTreeMap<String, String>) -> bool {
    match PolicyRole::from_labels(labels) {
        Some(role) => role.fails_closed(),
        None => [PolicyRole::DefaultDeny, PolicyRole::AllowDns]
            .iter()
            .any(|role| role.policy_name(resource) == name),
    }
}

/// The controller owner reference to a NamespaceIsolation with this name and UID.
#[must_use]
pub fn owner_reference(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: NamespaceIsolation::api_version(&()).into_owned(),
        kind: NamespaceIsolation::kind(&()).into_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn metadata(isolation: &ValidatedIsolation, role: &PolicyRole) -> ObjectMeta {
    ObjectMeta {
        name: Some(role.policy_name(isolation.name())),
        namespace: isolation.namespace().map(str::to_owned),
        labels: Some(labels(isolation.name(), role)),
        owner_references: isolation
            .uid()
            .map(|uid| vec![owner_reference(isolation.name(), uid)]),
        ..ObjectMeta::default()
    }
}

/// A peer inside this namespace: `podSelector` alone.
fn namespace_peer(pod_selector: LabelSelector) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(pod_selector),
        ..NetworkPolicyPeer::default()
    }
}

/// A peer across the namespace boundary: namespace AND pods in ONE item, or an address block.
fn external_peer(peer: &Peer) -> NetworkPolicyPeer {
    match peer {
        Peer::Pods {
            namespace_selector,
            pod_selector,
        } => NetworkPolicyPeer {
            namespace_selector: Some(namespace_selector.written.clone()),
            pod_selector: pod_selector
                .as_ref()
                .map(|selector| selector.written.clone()),
            ip_block: None,
        },
        Peer::IpBlock(block) => NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: block.written.cidr.clone(),
                except: (!block.written.except.is_empty()).then(|| block.written.except.clone()),
            }),
            ..NetworkPolicyPeer::default()
        },
    }
}

fn policy_port(port: &ValidPort) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(match &port.port {
            PortValue::Number(number) => IntOrString::Int(i32::from(*number)),
            PortValue::Name(name) => IntOrString::String(name.clone()),
        }),
        protocol: Some(port.protocol.as_str().to_owned()),
        end_port: port.end_port.map(i32::from),
    }
}

/// The rules of one policy while they are collected: per direction, one entry per distinct peer
/// with the union of its ports, in the order of first appearance.
#[derive(Default)]
struct Rules {
    ingress: Vec<(NetworkPolicyPeer, Ports)>,
    egress: Vec<(NetworkPolicyPeer, Ports)>,
}

impl Rules {
    fn add(&mut self, direction: Direction, peer: NetworkPolicyPeer, ports: &Ports) {
        let ports = &canonical(ports);
        let entries = match direction {
            Direction::Ingress => &mut self.ingress,
            Direction::Egress => &mut self.egress,
        };
        match entries.iter_mut().find(|(known, _)| *known == peer) {
            Some((_, known_ports)) => *known_ports = union(known_ports, ports),
            None => entries.push((peer, ports.clone())),
        }
    }

    /// Drop the rules of directions that are not isolated: they would have no effect.
    fn keep_only(&mut self, isolated: &[Direction]) {
        if !isolated.contains(&Direction::Ingress) {
            self.ingress.clear();
        }
        if !isolated.contains(&Direction::Egress) {
            self.egress.clear();
        }
    }

    fn policy(self, pod_selector: LabelSelector, policy_types: &[Direction]) -> NetworkPolicy {
        let ingress: Vec<NetworkPolicyIngressRule> = merge_by_ports(self.ingress)
            .into_iter()
            .map(|(from, ports)| NetworkPolicyIngressRule {
                from: Some(from),
                ports,
            })
            .collect();
        let egress: Vec<NetworkPolicyEgressRule> = merge_by_ports(self.egress)
            .into_iter()
            .map(|(to, ports)| NetworkPolicyEgressRule {
                to: Some(to),
                ports,
            })
            .collect();
        NetworkPolicy {
            metadata: ObjectMeta::default(),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(pod_selector),
                policy_types: Some(
                    policy_types
                        .iter()
                        .map(|direction| direction.as_str().to_owned())
                        .collect(),
                ),
                ingress: (!ingress.is_empty()).then_some(ingress),
                egress: (!egress.is_empty()).then_some(egress),
            }),
        }
    }
}

/// Ports sorted and without duplicates, so that equal sets compare equal.
fn canonical(ports: &Ports) -> Ports {
    match ports {
        Ports::All => Ports::All,
        Ports::Only(ports) => {
            let mut ports = ports.clone();
            ports.sort();
            ports.dedup();
            Ports::Only(ports)
        }
    }
}

/// The union of two port sets; every port absorbs the rest.
fn union(left: &Ports, right: &Ports) -> Ports {
    match (left, right) {
        (Ports::Only(left), Ports::Only(right)) => {
            let mut ports = left.clone();
            ports.extend(right.iter().cloned());
            canonical(&Ports::Only(ports))
        }
        _ => Ports::All,
    }
}

/// Peers with the same ports share one rule: `(peers, ports)` in the order of first appearance.
fn merge_by_ports(
    entries: Vec<(NetworkPolicyPeer, Ports)>,
) -> Vec<(Vec<NetworkPolicyPeer>, Option<Vec<NetworkPolicyPort>>)> {
    let mut rules: Vec<(Vec<NetworkPolicyPeer>, Ports)> = Vec::new();
    for (peer, ports) in entries {
        match rules.iter_mut().find(|(_, known)| *known == ports) {
            Some((peers, _)) => peers.push(peer),
            None => rules.push((vec![peer], ports)),
        }
    }
    rules
        .into_iter()
        .map(|(peers, ports)| {
            let ports = match ports {
                Ports::All => None,
                Ports::Only(ports) => Some(ports.iter().map(policy_port).collect()),
            };
            (peers, ports)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every role reads back from the labels it writes: the deletion policy keeps the right
    /// policies whatever their names look like.
    #[test]
    fn roles_read_back_from_their_labels() {
        let long_tier = "t".repeat(63);
        for role in [
            PolicyRole::DefaultDeny,
            PolicyRole::AllowDns,
            PolicyRole::SameNamespace,
            PolicyRole::Tier(long_tier.clone()),
            PolicyRole::Shared("metrics".to_owned()),
        ] {
            let labels = labels("shop", &role);
            assert_eq!(PolicyRole::from_labels(&labels), Some(role.clone()));
            assert!(labels.values().all(|value| value.len() <= 63), "{labels:?}");
        }
        assert_eq!(
            labels("shop", &PolicyRole::Tier("api".to_owned())),
            BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                (ISOLATION_LABEL.to_owned(), "shop".to_owned()),
                (ROLE_LABEL.to_owned(), "tier".to_owned()),
                (TIER_LABEL.to_owned(), "api".to_owned()),
            ])
        );
    }

    /// A tier named like a role does not pass for one: the role is a label of its own.
    #[test]
    fn a_tier_named_default_deny_is_a_tier() {
        let role = PolicyRole::Tier("default-deny".to_owned());
        let labels = labels("shop", &role);
        assert!(!fails_closed("shop", &role.policy_name("shop"), &labels));
        assert!(fails_closed(
            "shop",
            "anything",
            &super::labels("shop", &PolicyRole::AllowDns)
        ));
    }

    /// A policy whose role labels a tenant stripped is kept under KeepDefaultDeny only when it is
    /// the default deny or the DNS allow by its rendered name; a role label without its name
    /// carries no role.
    #[test]
    fn a_policy_without_role_labels_falls_back_to_its_rendered_name() {
        let none = BTreeMap::new();
        assert!(fails_closed("shop", "shop-default-deny", &none));
        assert!(fails_closed("shop", "shop-allow-dns", &none));
        assert!(!fails_closed("shop", "shop-tier-api", &none));
        assert!(!fails_closed("shop", "shop-same-namespace", &none));
        let half: BTreeMap<String, String> = [(ROLE_LABEL.to_owned(), "tier".to_owned())].into();
        assert_eq!(PolicyRole::from_labels(&half), None);
    }
}
