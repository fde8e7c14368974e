//! Calico GlobalNetworkPolicies and Tiers. Tiers before `default` (by order) are evaluated before
//! the NetworkPolicies, with their first matching rule deciding and a tier whose policies select
//! a pod but match nothing ending in its `defaultAction`; the `default` tier is the NetworkPolicies'
//! own (order 1000 there), so its GlobalNetworkPolicies must hold Allow rules only, which add up
//! with them; tiers after it are evaluated for pods nothing in `default` selects.

use std::collections::{BTreeMap, BTreeSet};

use netfence_crd::{
    engines::calico::{
        self as engine, API_VERSION, DEFAULT_TIER, DEFAULT_TIER_ORDER, EntityRule,
        GlobalNetworkPolicy, PolicyType, RULE_ANNOTATION, Tier,
    },
    isolation::Protocol,
};

use super::thousandths;
use crate::{
    model::{
        Action, ClusterWide, EndOfTier, IpBlock, ModelError, NamespaceScope, Order, Peer, Policy,
        PolicyChecker, PortMatch, PortSpec, Rule, Scope, Stage,
    },
    selector::{Requirement, Selector},
};

const KIND: &str = "GlobalNetworkPolicy";

/// A Calico selector expression as requirements: `all()`, `k == 'v'`, `k != 'v'`,
/// `k in {'a', 'b'}`, `k not in {...}`, `has(k)`, `!has(k)`, joined with `&&`.
///
/// # Errors
///
/// What netfence does not model (`||`, parentheses, `global()`, ...), named.
pub fn parse_expression(text: &str) -> Result<Selector, String> {
    let mut requirements = Vec::new();
    // An empty selector is `all()`, as Calico reads it.
    if text.trim().is_empty() {
        return Ok(Selector::everything());
    }
    for term in text.split("&&").map(str::trim) {
        if term == "all()" {
            continue;
        }
        let requirement = parse_term(term)?;
        if requirement.key().starts_with("projectcalico.org/") {
            return Err(format!(
                "the selector term {term:?} reads Calico's own label {:?}, which netfence verify does not model; choose namespaces with namespaceSelector and the kubernetes.io/metadata.name label",
                requirement.key()
            ));
        }
        requirements.push(requirement);
    }
    Ok(Selector::from_requirements(requirements))
}

fn unquote(text: &str) -> Option<String> {
    let text = text.trim();
    let inner = text
        .strip_prefix('\'')
        .and_then(|rest| rest.strip_suffix('\''))
        .or_else(|| {
            text.strip_prefix('"')
                .and_then(|rest| rest.strip_suffix('"'))
        })?;
    Some(inner.to_owned())
}

fn values(text: &str) -> Option<BTreeSet<String>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(unquote)
        .collect()
}

fn parse_term(term: &str) -> Result<Requirement, String> {
    let unsupported = || {
        format!(
            "the selector term {term:?} is not one netfence verify models (all(), k == 'v', k != 'v', k in {{...}}, k not in {{...}}, has(k), !has(k), joined with &&)"
        )
    };
    if let Some(key) = term
        .strip_prefix("!has(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return Ok(Requirement::DoesNotExist {
            key: key.trim().to_owned(),
        });
    }
    if let Some(key) = term
        .strip_prefix("has(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return Ok(Requirement::Exists {
            key: key.trim().to_owned(),
        });
    }
    for (operator, negated) in [(" not in ", true), (" in ", false)] {
        if let Some((key, set)) = term.split_once(operator) {
            let values = values(set).ok_or_else(unsupported)?;
            let key = key.trim().to_owned();
            return Ok(if negated {
                Requirement::NotIn { key, values }
            } else {
                Requirement::In { key, values }
            });
        }
    }
    for (operator, negated) in [("!=", true), ("==", false)] {
        if let Some((key, value)) = term.split_once(operator) {
            let value = unquote(value).ok_or_else(unsupported)?;
            let key = key.trim().to_owned();
            let values = BTreeSet::from([value]);
            return Ok(if negated {
                Requirement::NotIn { key, values }
            } else {
                Requirement::In { key, values }
            });
        }
    }
    Err(unsupported())
}

fn expression(checker: &mut PolicyChecker<'_>, text: Option<&str>, field: &str) -> Selector {
    match text.map(parse_expression) {
        None => Selector::everything(),
        Some(Ok(selector)) => selector,
        Some(Err(problem)) => {
            checker.problem(field, problem);
            Selector::everything()
        }
    }
}

pub(super) fn policies(
    tiers: &[Tier],
    objects: &[GlobalNetworkPolicy],
    errors: &mut Vec<ModelError>,
) -> Vec<Policy> {
    let mut orders: BTreeMap<&str, (f64, EndOfTier)> = BTreeMap::new();
    orders.insert(DEFAULT_TIER, (DEFAULT_TIER_ORDER, EndOfTier::Deny));
    for tier in tiers {
        let name = tier.metadata.name.as_deref().unwrap_or_default();
        let end = match tier.spec.default_action {
            Some(engine::Action::Pass) => EndOfTier::Continue,
            _ => EndOfTier::Deny,
        };
        // A tier without an order is evaluated last.
        orders.insert(name, (tier.spec.order.unwrap_or(f64::MAX / 2000.0), end));
    }
    objects
        .iter()
        .filter_map(|object| policy(object, &orders, errors))
        .collect()
}

fn policy(
    object: &GlobalNetworkPolicy,
    tiers: &BTreeMap<&str, (f64, EndOfTier)>,
    errors: &mut Vec<ModelError>,
) -> Option<Policy> {
    let (name, mut checker) = super::checker(
        KIND,
        object.metadata.name.as_ref(),
        &object.api_version,
        &[API_VERSION],
        errors,
    );
    let spec = &object.spec;
    let tier = spec.tier.as_deref().unwrap_or(DEFAULT_TIER);
    let Some(&(tier_order, end_of_tier)) = tiers.get(tier) else {
        checker.problem(
            "spec.tier",
            format!("tier {tier:?} is not in the input; add its Tier object (its order decides when the policy is evaluated)"),
        );
        return None;
    };
    let pods = expression(&mut checker, spec.selector.as_deref(), "spec.selector");
    let namespaces = expression(
        &mut checker,
        spec.namespace_selector.as_deref(),
        "spec.namespaceSelector",
    );
    // Calico's default: Ingress, unless the policy has egress rules and no ingress rule (then
    // Egress only); both when it has both.
    let (ingress_type, egress_type) = match spec.types.as_deref() {
        None | Some([]) => (
            spec.egress.is_empty() || !spec.ingress.is_empty(),
            !spec.egress.is_empty(),
        ),
        Some(types) => (
            types.contains(&PolicyType::Ingress),
            types.contains(&PolicyType::Egress),
        ),
    };
    let ingress: Vec<Rule> = spec
        .ingress
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            convert_rule(&mut checker, &format!("spec.ingress[{index}]"), rule, true)
        })
        .collect();
    let egress: Vec<Rule> = spec
        .egress
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            convert_rule(&mut checker, &format!("spec.egress[{index}]"), rule, false)
        })
        .collect();
    let order = Order {
        tier_order: thousandths(tier_order),
        tier: format!("Calico tier {tier}"),
        order: thousandths(spec.order.unwrap_or(f64::MAX / 2000.0)),
        end_of_tier,
    };
    let default_order = thousandths(DEFAULT_TIER_ORDER);
    let stage = if tier == DEFAULT_TIER {
        let ordered = ingress
            .iter()
            .chain(&egress)
            .position(|rule| rule.action != Action::Allow);
        if ordered.is_some() {
            checker.problem(
                "spec",
                "in the default tier (the Kubernetes NetworkPolicies' own), netfence verify models Allow rules only: their order against the NetworkPolicies' does not matter then; move Deny and Pass rules to a tier of their own",
            );
        }
        Stage::Namespace
    } else if order.tier_order < default_order {
        Stage::Before(order)
    } else {
        Stage::After(order)
    };
    if checker.failed {
        return None;
    }
    Some(Policy {
        namespace: String::new(),
        name,
        pod_selector: pods,
        ingress: ingress_type.then_some(ingress),
        egress: egress_type.then_some(egress),
        scope: Scope::ClusterWide(Box::new(ClusterWide {
            kind: KIND,
            namespaces,
            stage,
            isolates: [true, true],
            fields: ["ingress", "egress"],
        })),
    })
}

fn convert_rule(
    checker: &mut PolicyChecker<'_>,
    field: &str,
    rule: &engine::Rule,
    ingress: bool,
) -> Rule {
    let action = match rule.action {
        engine::Action::Allow => Action::Allow,
        engine::Action::Deny => Action::Deny,
        engine::Action::Pass => Action::Pass,
    };
    let protocol = rule.protocol.as_deref().and_then(|text| {
        let protocol = match text {
            "TCP" => Some(Protocol::TCP),
            "UDP" => Some(Protocol::UDP),
            "SCTP" => Some(Protocol::SCTP),
            _ => None,
        };
        if protocol.is_none() {
            checker.problem(
                &format!("{field}.protocol"),
                format!("{text:?}: netfence verify models TCP, UDP and SCTP"),
            );
        }
        protocol
    });
    let (peer, own, peer_field, own_field) = if ingress {
        (&rule.source, &rule.destination, "source", "destination")
    } else {
        (&rule.destination, &rule.source, "destination", "source")
    };
    if let Some(own) = own {
        // Only the destination's ports may sit on the policy's own side (ingress).
        let restricts = own.nets.is_some()
            || own.not_nets.is_some()
            || own.selector.is_some()
            || own.namespace_selector.is_some()
            || (!ingress && own.ports.is_some());
        if restricts {
            checker.problem(
                &format!("{field}.{own_field}"),
                "netfence verify models the peer's side and the destination ports only; remove the rest, or verify the policy on the cluster",
            );
        }
    }
    let peers = peer
        .as_ref()
        .and_then(|entity| peers(checker, entity, &format!("{field}.{peer_field}")));
    let ports_entity = if ingress { own } else { peer };
    let written_ports = ports_entity
        .as_ref()
        .and_then(|entity| entity.ports.as_ref());
    let ports = match (protocol, written_ports) {
        (None, None) => None,
        (None, Some(_)) => {
            checker.problem(&format!("{field}.protocol"), "ports need a protocol");
            None
        }
        (Some(protocol), None) => Some(vec![PortMatch {
            protocol,
            port: PortSpec::All,
        }]),
        (Some(protocol), Some(ports)) => Some(
            ports
                .iter()
                .enumerate()
                .filter_map(|(index, port)| {
                    let spec = port_spec(port);
                    if spec.is_none() {
                        checker.problem(
                            &format!("{field}.{}.ports[{index}]", "destination"),
                            "a port is a number from 1 to 65535, start:end, or a port name",
                        );
                    }
                    spec.map(|port| PortMatch { protocol, port })
                })
                .collect(),
        ),
    };
    Rule {
        peers,
        ports,
        action,
        // Calico rules have no name; netfence writes the guardrail's or allow's in an annotation.
        name: rule
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.annotations.get(RULE_ANNOTATION).cloned()),
    }
}

fn port_spec(port: &engine::Port) -> Option<PortSpec> {
    let number = |text: &str| text.trim().parse::<u16>().ok().filter(|port| *port > 0);
    match port {
        engine::Port::Number(value) => (*value > 0).then_some(PortSpec::Number(*value)),
        engine::Port::Text(text) => {
            if let Some((start, end)) = text.split_once(':') {
                let (start, end) = (number(start)?, number(end)?);
                (start <= end).then_some(PortSpec::Range(start, end))
            } else if let Some(value) = number(text) {
                Some(PortSpec::Number(value))
            } else if text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !text.is_empty()
            {
                Some(PortSpec::Named(text.clone()))
            } else {
                None
            }
        }
    }
}

/// The peer of an entity rule: pods by selectors, or addresses; `None` when it names none (every
/// peer).
fn peers(checker: &mut PolicyChecker<'_>, entity: &EntityRule, field: &str) -> Option<Vec<Peer>> {
    let by_labels = entity.selector.is_some() || entity.namespace_selector.is_some();
    let by_address = entity.nets.is_some() || entity.not_nets.is_some();
    if by_labels && by_address {
        checker.problem(
            field,
            "netfence verify models a peer chosen by selectors or by nets, not both",
        );
        return None;
    }
    if by_labels {
        let pods = expression(
            checker,
            entity.selector.as_deref(),
            &format!("{field}.selector"),
        );
        let namespaces = expression(
            checker,
            entity.namespace_selector.as_deref(),
            &format!("{field}.namespaceSelector"),
        );
        return Some(vec![Peer::Pods {
            namespaces: NamespaceScope::Matching(namespaces),
            pods,
        }]);
    }
    if !by_address {
        return None;
    }
    let except: Vec<_> = entity
        .not_nets
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, text)| checker.cidr(text, &format!("{field}.notNets[{index}]")))
        .collect();
    let nets: Vec<_> = match &entity.nets {
        Some(nets) => nets
            .iter()
            .enumerate()
            .filter_map(|(index, text)| checker.cidr(text, &format!("{field}.nets[{index}]")))
            .collect(),
        None => super::every_address(),
    };
    Some(
        nets.into_iter()
            .map(|cidr| {
                Peer::IpBlock(IpBlock {
                    except: except
                        .iter()
                        .filter(|range| cidr.covers(range))
                        .copied()
                        .collect(),
                    cidr,
                })
            })
            .collect(),
    )
}
