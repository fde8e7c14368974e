//! CiliumClusterwideNetworkPolicy: its allow rules join the namespace stage (they add up with the
//! NetworkPolicies; the policy isolates the pods it selects per `enableDefaultDeny`, by default
//! in each direction it has rules in); its deny rules are evaluated before everything and win. CIDR
//! rules match addresses outside the cluster only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use netfence_crd::{
    engines::cilium::{
        API_VERSION, CidrRule, CiliumClusterwideNetworkPolicy, EgressRule, IngressRule,
        NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX, PortRule,
    },
    isolation::{NAMESPACE_NAME_LABEL, Protocol},
};

use crate::{
    model::{
        Action, ClusterWide, EndOfTier, IpBlock, ModelError, NamespaceScope, Order, Peer, Policy,
        PolicyChecker, PortMatch, PortSpec, Rule, Scope, Stage,
    },
    selector::Selector,
};

const KIND: &str = "CiliumClusterwideNetworkPolicy";
/// Cilium's deny rules come before every allow.
const DENY_TIER_ORDER: i64 = -1_000_000;

/// An endpoint selector split into (namespaces, pods), from Cilium's label sources.
fn split(
    checker: &mut PolicyChecker<'_>,
    selector: &LabelSelector,
    field: &str,
) -> (Selector, Selector) {
    let mut namespaces = LabelSelector::default();
    let mut pods = LabelSelector::default();
    let mut requirements: Vec<LabelSelectorRequirement> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(key, value)| LabelSelectorRequirement {
            key: key.clone(),
            operator: "In".to_owned(),
            values: Some(vec![value.clone()]),
        })
        .collect();
    requirements.extend(selector.match_expressions.iter().flatten().cloned());
    for requirement in requirements {
        let key = requirement
            .key
            .strip_prefix("k8s:")
            .or_else(|| requirement.key.strip_prefix("any:"))
            .unwrap_or(&requirement.key);
        let (target, key) = if key == NAMESPACE_LABEL.trim_start_matches("k8s:") {
            (&mut namespaces, NAMESPACE_NAME_LABEL.to_owned())
        } else if let Some(label) =
            key.strip_prefix(NAMESPACE_LABELS_PREFIX.trim_start_matches("k8s:"))
        {
            (&mut namespaces, label.to_owned())
        } else if key.starts_with("io.cilium.") || key.contains(':') {
            checker.problem(
                field,
                format!("the label {:?} is not one netfence verify models (pod labels, io.kubernetes.pod.namespace, io.cilium.k8s.namespace.labels.*)", requirement.key),
            );
            continue;
        } else {
            (&mut pods, key.to_owned())
        };
        target
            .match_expressions
            .get_or_insert_with(Vec::new)
            .push(LabelSelectorRequirement { key, ..requirement });
    }
    (
        checker.selector(Some(&namespaces), field),
        checker.selector(Some(&pods), field),
    )
}

fn external(checker: &mut PolicyChecker<'_>, rules: &[CidrRule], field: &str) -> Vec<Peer> {
    let mut peers = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let Some(cidr) = checker.cidr(&rule.cidr, &format!("{field}[{index}].cidr")) else {
            continue;
        };
        let except = rule
            .except
            .iter()
            .enumerate()
            .filter_map(|(except_index, text)| {
                checker.cidr(text, &format!("{field}[{index}].except[{except_index}]"))
            })
            .collect();
        peers.push(Peer::External(IpBlock { cidr, except }));
    }
    peers
}

fn entities(checker: &mut PolicyChecker<'_>, entities: &[String], field: &str) -> Vec<Peer> {
    let world = || -> Vec<Peer> {
        super::every_address()
            .into_iter()
            .map(|cidr| {
                Peer::External(IpBlock {
                    cidr,
                    except: Vec::new(),
                })
            })
            .collect()
    };
    let cluster = || Peer::Pods {
        namespaces: NamespaceScope::Matching(Selector::everything()),
        pods: Selector::everything(),
    };
    let mut peers = Vec::new();
    for (index, entity) in entities.iter().enumerate() {
        match entity.as_str() {
            "world" => peers.extend(world()),
            "cluster" => peers.push(cluster()),
            "all" => {
                peers.push(cluster());
                peers.extend(world());
            }
            other => checker.problem(
                &format!("{field}[{index}]"),
                format!(
                    "the entity {other:?} is not one netfence verify models (world, cluster, all)"
                ),
            ),
        }
    }
    peers
}

fn ports(checker: &mut PolicyChecker<'_>, rules: &[PortRule], field: &str) -> Vec<PortMatch> {
    let mut ports = Vec::new();
    for (rule_index, rule) in rules.iter().enumerate() {
        for (index, port) in rule.ports.iter().enumerate() {
            let field = format!("{field}[{rule_index}].ports[{index}]");
            let protocols: &[Protocol] = match port.protocol.as_deref() {
                None | Some("ANY") => &[Protocol::TCP, Protocol::UDP, Protocol::SCTP],
                Some("TCP") => &[Protocol::TCP],
                Some("UDP") => &[Protocol::UDP],
                Some("SCTP") => &[Protocol::SCTP],
                Some(other) => {
                    checker.problem(
                        &format!("{field}.protocol"),
                        format!("{other:?}: netfence verify models TCP, UDP, SCTP and ANY"),
                    );
                    continue;
                }
            };
            let spec = match port.port.parse::<u16>() {
                Ok(0) => Some(PortSpec::All),
                Ok(start) => match port.end_port {
                    None => Some(PortSpec::Number(start)),
                    Some(end) => u16::try_from(end)
                        .ok()
                        .filter(|end| *end >= start)
                        .map(|end| PortSpec::Range(start, end)),
                },
                Err(_) if !port.port.is_empty() && port.end_port.is_none() => {
                    Some(PortSpec::Named(port.port.clone()))
                }
                Err(_) => None,
            };
            let Some(spec) = spec else {
                checker.problem(
                    &field,
                    "a port is a number, a range (endPort), or a port name",
                );
                continue;
            };
            for &protocol in protocols {
                ports.push(PortMatch {
                    protocol,
                    port: spec.clone(),
                });
            }
        }
    }
    ports
}

/// One rule, either direction: its peers (endpoints, CIDR sets, entities) and ports.
struct Written<'a> {
    endpoints: Option<&'a [LabelSelector]>,
    cidr_sets: Option<&'a [CidrRule]>,
    entities: Option<&'a [String]>,
    to_ports: Option<&'a [PortRule]>,
}

fn convert_rule(
    checker: &mut PolicyChecker<'_>,
    written: &Written<'_>,
    field: &str,
    names: [&str; 3],
    action: Action,
) -> Rule {
    let mut peers = Vec::new();
    for (index, selector) in written.endpoints.iter().copied().flatten().enumerate() {
        let (namespaces, pods) =
            split(checker, selector, &format!("{field}.{}[{index}]", names[0]));
        peers.push(Peer::Pods {
            namespaces: NamespaceScope::Matching(namespaces),
            pods,
        });
    }
    if let Some(sets) = written.cidr_sets {
        peers.extend(external(checker, sets, &format!("{field}.{}", names[1])));
    }
    if let Some(list) = written.entities {
        peers.extend(entities(checker, list, &format!("{field}.{}", names[2])));
    }
    let no_peer_field =
        written.endpoints.is_none() && written.cidr_sets.is_none() && written.entities.is_none();
    Rule {
        // A rule with ports but no peer field applies to every peer; an empty rule, to none.
        peers: if no_peer_field && written.to_ports.is_some() {
            None
        } else {
            Some(peers)
        },
        ports: written
            .to_ports
            .map(|rules| ports(checker, rules, &format!("{field}.toPorts"))),
        action,
        name: None,
    }
}

fn ingress_rules(
    checker: &mut PolicyChecker<'_>,
    list: Option<&Vec<IngressRule>>,
    key: &str,
    action: Action,
) -> Option<Vec<Rule>> {
    list.map(|rules| {
        rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                convert_rule(
                    checker,
                    &Written {
                        endpoints: rule.from_endpoints.as_deref(),
                        cidr_sets: rule.from_cidr_set.as_deref(),
                        entities: rule.from_entities.as_deref(),
                        to_ports: rule.to_ports.as_deref(),
                    },
                    &format!("spec.{key}[{index}]"),
                    ["fromEndpoints", "fromCIDRSet", "fromEntities"],
                    action,
                )
            })
            .collect()
    })
}

fn egress_rules(
    checker: &mut PolicyChecker<'_>,
    list: Option<&Vec<EgressRule>>,
    key: &str,
    action: Action,
) -> Option<Vec<Rule>> {
    list.map(|rules| {
        rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                convert_rule(
                    checker,
                    &Written {
                        endpoints: rule.to_endpoints.as_deref(),
                        cidr_sets: rule.to_cidr_set.as_deref(),
                        entities: rule.to_entities.as_deref(),
                        to_ports: rule.to_ports.as_deref(),
                    },
                    &format!("spec.{key}[{index}]"),
                    ["toEndpoints", "toCIDRSet", "toEntities"],
                    action,
                )
            })
            .collect()
    })
}

pub(super) fn policies(
    object: &CiliumClusterwideNetworkPolicy,
    errors: &mut Vec<ModelError>,
) -> Vec<Policy> {
    let (name, mut checker) = super::checker(
        KIND,
        object.metadata.name.as_ref(),
        &object.api_version,
        &[API_VERSION],
        errors,
    );
    let spec = &object.spec;
    let (namespaces, pods) = split(
        &mut checker,
        &spec.endpoint_selector,
        "spec.endpointSelector",
    );
    let ingress = ingress_rules(
        &mut checker,
        spec.ingress.as_ref(),
        "ingress",
        Action::Allow,
    );
    let ingress_deny = ingress_rules(
        &mut checker,
        spec.ingress_deny.as_ref(),
        "ingressDeny",
        Action::Deny,
    );
    let egress = egress_rules(&mut checker, spec.egress.as_ref(), "egress", Action::Allow);
    let egress_deny = egress_rules(
        &mut checker,
        spec.egress_deny.as_ref(),
        "egressDeny",
        Action::Deny,
    );
    if checker.failed {
        return Vec::new();
    }
    let default_deny = spec.enable_default_deny.clone().unwrap_or_default();
    // Cilium's default: default deny in each direction the policy has rules in (a list that is
    // present and empty holds none).
    let has_rules = |allow: &Option<Vec<Rule>>, deny: &Option<Vec<Rule>>| {
        allow.as_ref().is_some_and(|rules| !rules.is_empty())
            || deny.as_ref().is_some_and(|rules| !rules.is_empty())
    };
    let isolates = [
        default_deny
            .ingress
            .unwrap_or_else(|| has_rules(&ingress, &ingress_deny)),
        default_deny
            .egress
            .unwrap_or_else(|| has_rules(&egress, &egress_deny)),
    ];
    let scope = |stage, isolates, fields| {
        Scope::ClusterWide(Box::new(ClusterWide {
            kind: KIND,
            namespaces: namespaces.clone(),
            stage,
            isolates,
            fields,
        }))
    };
    let mut policies = Vec::new();
    // The allows, and the default deny: a direction the policy isolates takes part even with no
    // allow rule.
    let with_isolation =
        |rules: Option<Vec<Rule>>, isolates: bool| rules.or_else(|| isolates.then(Vec::new));
    let allow_ingress = with_isolation(ingress, isolates[0]);
    let allow_egress = with_isolation(egress, isolates[1]);
    if allow_ingress.is_some() || allow_egress.is_some() {
        policies.push(Policy {
            namespace: String::new(),
            name: name.clone(),
            pod_selector: pods.clone(),
            ingress: allow_ingress,
            egress: allow_egress,
            scope: scope(Stage::Namespace, isolates, ["ingress", "egress"]),
        });
    }
    if ingress_deny.is_some() || egress_deny.is_some() {
        policies.push(Policy {
            namespace: String::new(),
            name,
            pod_selector: pods,
            ingress: ingress_deny,
            egress: egress_deny,
            scope: scope(
                Stage::Before(Order {
                    tier_order: DENY_TIER_ORDER,
                    tier: "Cilium deny rules".to_owned(),
                    order: 0,
                    end_of_tier: EndOfTier::Continue,
                }),
                [false, false],
                ["ingressDeny", "egressDeny"],
            ),
        });
    }
    policies
}
