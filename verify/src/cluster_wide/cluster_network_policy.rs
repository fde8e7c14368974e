//! ClusterNetworkPolicy (v1alpha2, v1beta1): the Admin tier before the NetworkPolicies, the
//! Baseline tier after them; in a tier, policies by priority (then name: equal priorities are the
//! implementation's choice), rules in order.

use netfence_crd::{
    engines::cluster_network_policy::{
        self as cnp, API_VERSIONS, ClusterNetworkPolicy, NamespacedPod, ProtocolMatch,
    },
    isolation::Protocol,
};

use crate::{
    model::{
        Action, ClusterWide, EndOfTier, IpBlock, ModelError, NamespaceScope, Order, Peer, Policy,
        PolicyChecker, PortMatch, PortSpec, Rule, Scope, Stage,
    },
    selector::Selector,
};

const KIND: &str = "ClusterNetworkPolicy";
/// The tier order of the Admin tier among the ordered stages of other kinds (before them).
const ADMIN_TIER_ORDER: i64 = -2_000_000;
/// The tier order of the Baseline tier.
const BASELINE_TIER_ORDER: i64 = 0;

pub(super) fn policy(
    object: &ClusterNetworkPolicy,
    errors: &mut Vec<ModelError>,
) -> Option<Policy> {
    let (name, mut checker) = super::checker(
        KIND,
        object.metadata.name.as_ref(),
        &object.api_version,
        &API_VERSIONS,
        errors,
    );
    let spec = &object.spec;
    if !(0..=1000).contains(&spec.priority) {
        checker.problem("spec.priority", "must be 0 to 1000");
    }
    let (namespaces, pods) = subject(&mut checker, &spec.subject);
    let ingress: Vec<Rule> = spec
        .ingress
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let field = format!("spec.ingress[{index}]");
            convert_rule(
                &mut checker,
                &field,
                rule.name.clone(),
                rule.action,
                &rule.from,
                "from",
                rule.protocols.as_deref(),
                true,
            )
        })
        .collect();
    let egress: Vec<Rule> = spec
        .egress
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let field = format!("spec.egress[{index}]");
            convert_rule(
                &mut checker,
                &field,
                rule.name.clone(),
                rule.action,
                &rule.to,
                "to",
                rule.protocols.as_deref(),
                false,
            )
        })
        .collect();
    if checker.failed {
        return None;
    }
    let (tier_order, tier) = match spec.tier {
        cnp::Tier::Admin => (ADMIN_TIER_ORDER, "ClusterNetworkPolicy Admin"),
        cnp::Tier::Baseline => (BASELINE_TIER_ORDER, "ClusterNetworkPolicy Baseline"),
    };
    let order = Order {
        tier_order,
        tier: tier.to_owned(),
        order: i64::from(spec.priority) * 1000,
        end_of_tier: EndOfTier::Continue,
    };
    let stage = match spec.tier {
        cnp::Tier::Admin => Stage::Before(order),
        cnp::Tier::Baseline => Stage::After(order),
    };
    Some(Policy {
        namespace: String::new(),
        name,
        pod_selector: pods,
        // A ClusterNetworkPolicy with no rules of a direction does not affect it.
        ingress: (!ingress.is_empty()).then_some(ingress),
        egress: (!egress.is_empty()).then_some(egress),
        scope: Scope::ClusterWide(Box::new(ClusterWide {
            kind: KIND,
            namespaces,
            stage,
            isolates: [true, true],
            fields: ["ingress", "egress"],
        })),
    })
}

/// The subject: (namespaces, pods).
fn subject(checker: &mut PolicyChecker<'_>, subject: &cnp::Subject) -> (Selector, Selector) {
    match (&subject.namespaces, &subject.pods) {
        (Some(namespaces), None) => (
            checker.selector(Some(namespaces), "spec.subject.namespaces"),
            Selector::everything(),
        ),
        (None, Some(pods)) => (
            checker.selector(
                Some(&pods.namespace_selector),
                "spec.subject.pods.namespaceSelector",
            ),
            checker.selector(Some(&pods.pod_selector), "spec.subject.pods.podSelector"),
        ),
        _ => {
            checker.problem("spec.subject", "set exactly one of namespaces and pods");
            (Selector::everything(), Selector::everything())
        }
    }
}

fn pods_peer(checker: &mut PolicyChecker<'_>, pods: &NamespacedPod, field: &str) -> Peer {
    Peer::Pods {
        namespaces: NamespaceScope::Matching(checker.selector(
            Some(&pods.namespace_selector),
            &format!("{field}.namespaceSelector"),
        )),
        pods: checker.selector(Some(&pods.pod_selector), &format!("{field}.podSelector")),
    }
}

fn every_address() -> Vec<Peer> {
    super::every_address()
        .into_iter()
        .map(|cidr| {
            Peer::IpBlock(IpBlock {
                cidr,
                except: Vec::new(),
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)] // one rule's fields, either direction
fn convert_rule(
    checker: &mut PolicyChecker<'_>,
    field: &str,
    name: Option<String>,
    action: cnp::Action,
    peers: &[cnp::Peer],
    peers_field: &str,
    protocols: Option<&[ProtocolMatch]>,
    ingress: bool,
) -> Rule {
    let action = match action {
        cnp::Action::Accept => Action::Allow,
        cnp::Action::Deny => Action::Deny,
        cnp::Action::Pass => Action::Pass,
    };
    let mut converted = Vec::new();
    for (index, peer) in peers.iter().enumerate() {
        let field = format!("{field}.{peers_field}[{index}]");
        let set = [
            peer.namespaces.is_some(),
            peer.pods.is_some(),
            peer.nodes.is_some(),
            peer.networks.is_some(),
            peer.domain_names.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        if set > 1 {
            checker.problem(&field, "a peer sets exactly one field");
            continue;
        }
        if let Some(namespaces) = &peer.namespaces {
            converted.push(Peer::Pods {
                namespaces: NamespaceScope::Matching(
                    checker.selector(Some(namespaces), &format!("{field}.namespaces")),
                ),
                pods: Selector::everything(),
            });
        } else if let Some(pods) = &peer.pods {
            converted.push(pods_peer(checker, pods, &format!("{field}.pods")));
        } else if let Some(networks) = &peer.networks {
            if ingress {
                checker.problem(
                    &format!("{field}.networks"),
                    "ingress peers are namespaces and pods only",
                );
            }
            for (cidr_index, text) in networks.iter().enumerate() {
                if let Some(cidr) = checker.cidr(text, &format!("{field}.networks[{cidr_index}]")) {
                    converted.push(Peer::IpBlock(IpBlock {
                        cidr,
                        except: Vec::new(),
                    }));
                }
            }
        } else if peer.nodes.is_some() || peer.domain_names.is_some() {
            let which = if peer.nodes.is_some() {
                "nodes"
            } else {
                "domainNames"
            };
            checker.problem(
                &format!("{field}.{which}"),
                format!("netfence verify does not model {which} peers (node addresses and DNS names are not in its model); remove the rule or verify it on the cluster"),
            );
        } else if action != Action::Allow {
            // A peer with no field (a newer API's field this version cannot read): fail closed,
            // as the API says. A Deny or Pass rule matches everything.
            converted.push(Peer::Pods {
                namespaces: NamespaceScope::Matching(Selector::everything()),
                pods: Selector::everything(),
            });
            converted.extend(every_address());
        }
        // An Accept rule's empty peer matches nothing.
    }
    Rule {
        peers: Some(converted),
        ports: protocols.map(|protocols| ports(checker, field, protocols)),
        action,
        name,
    }
}

fn ports(
    checker: &mut PolicyChecker<'_>,
    field: &str,
    protocols: &[ProtocolMatch],
) -> Vec<PortMatch> {
    let mut ports = Vec::new();
    for (index, item) in protocols.iter().enumerate() {
        let field = format!("{field}.protocols[{index}]");
        let by_protocol = [
            (item.tcp.as_ref(), Protocol::TCP, "tcp"),
            (item.udp.as_ref(), Protocol::UDP, "udp"),
            (item.sctp.as_ref(), Protocol::SCTP, "sctp"),
        ];
        let set = by_protocol
            .iter()
            .filter(|(set, _, _)| set.is_some())
            .count()
            + usize::from(item.destination_named_port.is_some());
        if set != 1 {
            checker.problem(
                &field,
                "set exactly one of tcp, udp, sctp and destinationNamedPort",
            );
            continue;
        }
        if let Some(name) = &item.destination_named_port {
            // The container port of that name, whatever its protocol.
            for protocol in [Protocol::TCP, Protocol::UDP, Protocol::SCTP] {
                ports.push(PortMatch {
                    protocol,
                    port: PortSpec::Named(name.clone()),
                });
            }
            continue;
        }
        for (matched, protocol, key) in by_protocol {
            let Some(matched) = matched else {
                continue;
            };
            let port_field = format!("{field}.{key}.destinationPort");
            let spec = match &matched.destination_port {
                None => Some(PortSpec::All),
                Some(cnp::Port {
                    number: Some(number),
                    range: None,
                }) => port_number(checker, *number, &format!("{port_field}.number"))
                    .map(PortSpec::Number),
                Some(cnp::Port {
                    number: None,
                    range: Some(range),
                }) => {
                    let start =
                        port_number(checker, range.start, &format!("{port_field}.range.start"));
                    let end = port_number(checker, range.end, &format!("{port_field}.range.end"));
                    match (start, end) {
                        (Some(start), Some(end)) if start < end => {
                            Some(PortSpec::Range(start, end))
                        }
                        (Some(_), Some(_)) => {
                            checker.problem(
                                &format!("{port_field}.range"),
                                "start must be less than end",
                            );
                            None
                        }
                        _ => None,
                    }
                }
                Some(_) => {
                    checker.problem(&port_field, "set exactly one of number and range");
                    None
                }
            };
            if let Some(port) = spec {
                ports.push(PortMatch { protocol, port });
            }
        }
    }
    ports
}

fn port_number(checker: &mut PolicyChecker<'_>, number: i32, field: &str) -> Option<u16> {
    let port = u16::try_from(number).ok().filter(|port| *port > 0);
    if port.is_none() {
        checker.problem(field, format!("{number} is not a port; use 1 to 65535"));
    }
    port
}
