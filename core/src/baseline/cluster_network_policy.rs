//! ClusterNetworkPolicy: guardrails in the Admin tier, the baseline in the Baseline tier ending
//! in its deny. Ingress peers are pods only (the API has no `networks` for ingress), so traffic
//! from outside the cluster is not denied at the baseline.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use netfence_crd::{
    baseline::GuardrailAction,
    engines::cluster_network_policy::{
        API_VERSION, Action, ClusterNetworkPolicy, EgressRule, IngressRule, KIND, NamespacedPod,
        Peer, Port, PortRange, ProtocolMatch, ProtocolPorts, Spec, Subject, Tier,
    },
    isolation::{Direction, Protocol},
};

use super::{Context, Object, Role, Unsupported, UnsupportedFields};
use crate::validate::{self, PortValue, Ports, namespace_name_selector};

/// The priority of the guardrails in the Admin tier.
pub const GUARDRAIL_PRIORITY: i32 = 100;
/// The priority of the same-namespace allows in the Baseline tier (before the baseline's deny).
pub const SAME_NAMESPACE_PRIORITY: i32 = 900;
/// The priority of the baseline in the Baseline tier.
pub const BASELINE_PRIORITY: i32 = 901;

const ENGINE: &str = "ClusterNetworkPolicy";
/// The most `protocols` items of one rule (the API's limit).
const MAX_PROTOCOLS: usize = 25;

/// Rules of one direction, and what could not be expressed.
#[derive(Default)]
struct Rules {
    ingress: Vec<IngressRule>,
    egress: Vec<EgressRule>,
}

impl Rules {
    fn push(
        &mut self,
        direction: Direction,
        name: String,
        action: Action,
        peers: Vec<Peer>,
        protocols: Option<Vec<ProtocolMatch>>,
    ) {
        match direction {
            Direction::Ingress => self.ingress.push(IngressRule {
                name: Some(name),
                action,
                from: peers,
                protocols,
            }),
            Direction::Egress => self.egress.push(EgressRule {
                name: Some(name),
                action,
                to: peers,
                protocols,
            }),
        }
    }
}

fn policy(
    context: &Context<'_>,
    name: String,
    role: Role,
    tier: Tier,
    priority: i32,
    subject: LabelSelector,
    rules: Rules,
) -> Object {
    Object::ClusterNetworkPolicy(Box::new(ClusterNetworkPolicy {
        api_version: API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        metadata: context.metadata(name, role),
        spec: Spec {
            tier,
            priority,
            subject: Subject {
                namespaces: Some(subject),
                pods: None,
            },
            ingress: rules.ingress,
            egress: rules.egress,
        },
        status: None,
    }))
}

/// A validated peer as ClusterNetworkPolicy peers.
fn peers(
    path: &str,
    peer: &validate::Peer,
    direction: Direction,
    unsupported: &mut Vec<Unsupported>,
) -> Vec<Peer> {
    match peer {
        validate::Peer::Pods {
            namespace_selector,
            pod_selector: None,
        } => vec![Peer {
            namespaces: Some(namespace_selector.written.clone()),
            ..Peer::default()
        }],
        validate::Peer::Pods {
            namespace_selector,
            pod_selector: Some(pods),
        } => vec![Peer {
            pods: Some(NamespacedPod {
                namespace_selector: namespace_selector.written.clone(),
                pod_selector: pods.written.clone(),
            }),
            ..Peer::default()
        }],
        validate::Peer::IpBlock(block) => {
            if direction == Direction::Ingress {
                unsupported.push(Unsupported {
                    field: format!("{path}.ipBlock"),
                    engine: ENGINE,
                    message: "ingress peers are namespaces and pods only (no networks); use the Calico or Cilium engine, or a NamespaceIsolation's shared service".to_owned(),
                });
            }
            if !block.except.is_empty() {
                unsupported.push(Unsupported {
                    field: format!("{path}.ipBlock.except"),
                    engine: ENGINE,
                    message: "networks have no exceptions; list the CIDRs to match instead"
                        .to_owned(),
                });
            }
            vec![Peer {
                networks: Some(vec![block.cidr.to_string()]),
                ..Peer::default()
            }]
        }
    }
}

/// Validated ports as `protocols` (`None`: all traffic). A named port is refused:
/// `destinationNamedPort` is in network-policy-api's experimental channel only, and the standard
/// CRD implementations install refuses it.
fn protocols(
    path: &str,
    ports: &Ports,
    unsupported: &mut Vec<Unsupported>,
) -> Option<Vec<ProtocolMatch>> {
    if let Ports::Only(list) = ports {
        if list.len() > MAX_PROTOCOLS {
            unsupported.push(Unsupported {
                field: format!("{path}.ports"),
                engine: ENGINE,
                message: format!(
                    "has {} ports; a ClusterNetworkPolicy rule holds at most {MAX_PROTOCOLS}: use a port range (endPort) or fewer ports",
                    list.len()
                ),
            });
        }
        for (index, port) in list.iter().enumerate() {
            if let PortValue::Name(name) = &port.port {
                unsupported.push(Unsupported {
                    field: format!("{path}.ports[{index}].port"),
                    engine: ENGINE,
                    message: format!(
                        "the named port {name:?} needs destinationNamedPort, which only network-policy-api's experimental channel has; write the port number"
                    ),
                });
            }
        }
    }
    let Ports::Only(ports) = ports else {
        return None;
    };
    Some(
        ports
            .iter()
            .map(|port| {
                let destination_port = match (&port.port, port.end_port) {
                    (PortValue::Name(name), _) => {
                        return ProtocolMatch {
                            destination_named_port: Some(name.clone()),
                            ..ProtocolMatch::default()
                        };
                    }
                    (PortValue::Number(number), Some(end)) if end > *number => Port {
                        range: Some(PortRange {
                            start: i32::from(*number),
                            end: i32::from(end),
                        }),
                        number: None,
                    },
                    (PortValue::Number(number), _) => Port {
                        number: Some(i32::from(*number)),
                        range: None,
                    },
                };
                let ports = Some(ProtocolPorts {
                    destination_port: Some(destination_port),
                });
                match port.protocol {
                    Protocol::TCP => ProtocolMatch {
                        tcp: ports,
                        ..ProtocolMatch::default()
                    },
                    Protocol::UDP => ProtocolMatch {
                        udp: ports,
                        ..ProtocolMatch::default()
                    },
                    Protocol::SCTP => ProtocolMatch {
                        sctp: ports,
                        ..ProtocolMatch::default()
                    },
                }
            })
            .collect(),
    )
}

pub(super) fn render(context: &Context<'_>) -> Result<Vec<Object>, UnsupportedFields> {
    let mut unsupported = Vec::new();
    let mut objects = Vec::new();
    let covered = context.covered_selector();
    if !context.baseline.guardrails().is_empty() {
        objects.push(guardrails(context, covered.clone(), &mut unsupported));
    }
    objects.extend(same_namespace(context));
    objects.push(baseline(context, covered, &mut unsupported));
    if unsupported.is_empty() {
        Ok(objects)
    } else {
        Err(UnsupportedFields(unsupported))
    }
}

/// The Admin tier policy: the guardrails in order.
fn guardrails(
    context: &Context<'_>,
    covered: LabelSelector,
    unsupported: &mut Vec<Unsupported>,
) -> Object {
    let mut guardrails = Rules::default();
    for direction in [Direction::Ingress, Direction::Egress] {
        for (path, rule, action) in context.guardrails(direction) {
            let action = match action {
                GuardrailAction::Deny => Action::Deny,
                GuardrailAction::Allow => Action::Accept,
            };
            let peers = peers(&path, &rule.peer, direction, unsupported);
            guardrails.push(
                direction,
                rule.name.clone(),
                action,
                peers,
                protocols(&path, &rule.ports, unsupported),
            );
        }
    }
    policy(
        context,
        format!("{}-guardrails", context.name()),
        Role::Guardrails,
        Tier::Admin,
        GUARDRAIL_PRIORITY,
        covered,
        guardrails,
    )
}

/// The Baseline tier policies that let the pods of each covered namespace reach each other.
fn same_namespace(context: &Context<'_>) -> Vec<Object> {
    let mut objects = Vec::new();
    for namespace in context.same_namespace() {
        let own = namespace_name_selector(namespace).written;
        let mut rules = Rules::default();
        for direction in [Direction::Ingress, Direction::Egress] {
            if context.isolates(direction) {
                let peer = Peer {
                    namespaces: Some(own.clone()),
                    ..Peer::default()
                };
                rules.push(
                    direction,
                    "same-namespace".to_owned(),
                    Action::Accept,
                    vec![peer],
                    None,
                );
            }
        }
        objects.push(policy(
            context,
            format!("{}-same-namespace-{namespace}", context.name()),
            Role::SameNamespace,
            Tier::Baseline,
            SAME_NAMESPACE_PRIORITY,
            own,
            rules,
        ));
    }
    objects
}

/// The Baseline tier policy: DNS, the allows, then the deny.
fn baseline(
    context: &Context<'_>,
    covered: LabelSelector,
    unsupported: &mut Vec<Unsupported>,
) -> Object {
    let mut rules = Rules::default();
    if let Some(dns) = context.baseline.baseline().dns() {
        let dns_ports = Ports::Only(dns.ports.clone());
        let mut to = Vec::new();
        for peer in &dns.peers {
            to.extend(peers("spec.dns", peer, Direction::Egress, unsupported));
        }
        rules.push(
            Direction::Egress,
            "dns".to_owned(),
            Action::Accept,
            to,
            protocols("spec.dns", &dns_ports, unsupported),
        );
    }
    for (path, rule) in context.allows() {
        let peers = peers(&path, &rule.peer, rule.direction, unsupported);
        rules.push(
            rule.direction,
            rule.name.clone(),
            Action::Accept,
            peers,
            protocols(&path, &rule.ports, unsupported),
        );
    }
    let everyone = || Peer {
        namespaces: Some(LabelSelector::default()),
        ..Peer::default()
    };
    if context.isolates(Direction::Ingress) {
        rules.push(
            Direction::Ingress,
            "default-deny".to_owned(),
            Action::Deny,
            vec![everyone()],
            None,
        );
    }
    if context.isolates(Direction::Egress) {
        let everywhere = Peer {
            networks: Some(vec!["0.0.0.0/0".to_owned(), "::/0".to_owned()]),
            ..Peer::default()
        };
        rules.push(
            Direction::Egress,
            "default-deny".to_owned(),
            Action::Deny,
            vec![everyone(), everywhere],
            None,
        );
    }
    policy(
        context,
        format!("{}-baseline", context.name()),
        Role::Baseline,
        Tier::Baseline,
        BASELINE_PRIORITY,
        covered,
        rules,
    )
}
