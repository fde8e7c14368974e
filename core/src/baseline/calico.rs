//! Calico: the guardrails in a Tier of the baseline's own, ordered before `default`, whose
//! default action passes what the guardrails do not decide; the baseline in the `default` tier,
//! ordered after the Kubernetes NetworkPolicies (order 1000), so their allows and the baseline's
//! add up and the tier's end-of-tier deny closes the rest.

use std::collections::BTreeSet;

use netfence_crd::{
    baseline::GuardrailAction,
    engines::calico::{
        API_VERSION, Action, EntityRule, GlobalNetworkPolicy, POLICY_KIND, PolicySpec, PolicyType,
        Port, RULE_ANNOTATION, Rule, RuleMetadata, TIER_KIND, Tier, TierSpec,
    },
    isolation::{Direction, NAMESPACE_NAME_LABEL, Protocol},
};

use super::{Context, Object, Role, UnsupportedFields};
use crate::{
    selector::Requirement,
    validate::{self, PortValue, Ports, ValidPort},
};

/// The order of the guardrails' tier: before Calico's own tiers and `default`.
pub const GUARDRAIL_TIER_ORDER: f64 = 100.0;
/// The order of the baseline in the `default` tier: after the NetworkPolicies (1000).
pub const BASELINE_ORDER: f64 = 10_000.0;

/// A selector expression: every requirement ANDed; `all()` when there is none.
#[must_use]
pub fn expression(requirements: &[Requirement]) -> String {
    let quoted = |values: &BTreeSet<String>| {
        values
            .iter()
            .map(|value| format!("'{value}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let parts: Vec<String> = requirements
        .iter()
        .map(|requirement| match requirement {
            Requirement::In { key, values } if values.len() == 1 => {
                format!("{key} == {}", quoted(values))
            }
            Requirement::In { key, values } => format!("{key} in {{{}}}", quoted(values)),
            Requirement::NotIn { key, values } => format!("{key} not in {{{}}}", quoted(values)),
            Requirement::Exists { key } => format!("has({key})"),
            Requirement::DoesNotExist { key } => format!("!has({key})"),
        })
        .collect();
    if parts.is_empty() {
        "all()".to_owned()
    } else {
        parts.join(" && ")
    }
}

fn name_is(namespace: &str) -> String {
    format!("{NAMESPACE_NAME_LABEL} == '{namespace}'")
}

/// A validated peer as an entity rule (without ports).
fn entity(peer: &validate::Peer) -> EntityRule {
    match peer {
        validate::Peer::Pods {
            namespace_selector,
            pod_selector,
        } => EntityRule {
            namespace_selector: Some(expression(namespace_selector.selector.requirements())),
            selector: pod_selector
                .as_ref()
                .map(|pods| expression(pods.selector.requirements())),
            ..EntityRule::default()
        },
        validate::Peer::IpBlock(block) => EntityRule {
            nets: Some(vec![block.cidr.to_string()]),
            not_nets: (!block.except.is_empty())
                .then(|| block.except.iter().map(ToString::to_string).collect()),
            ..EntityRule::default()
        },
    }
}

fn calico_port(port: &ValidPort) -> Port {
    match (&port.port, port.end_port) {
        (PortValue::Name(name), _) => Port::Text(name.clone()),
        (PortValue::Number(start), Some(end)) if end > *start => {
            Port::Text(format!("{start}:{end}"))
        }
        (PortValue::Number(number), _) => Port::Number(*number),
    }
}

/// The rules for one peer and its ports: one rule per protocol (a Calico rule names one), in
/// the order the ports first name them; one rule for every protocol when the ports are all.
fn rules(
    name: &str,
    direction: Direction,
    action: Action,
    peer: &validate::Peer,
    ports: &Ports,
) -> Vec<Rule> {
    let rule = |protocol: Option<Protocol>, ports: Option<Vec<Port>>| {
        let peer = entity(peer);
        let (source, destination) = match direction {
            Direction::Ingress => (
                Some(peer),
                ports.map(|ports| EntityRule {
                    ports: Some(ports),
                    ..EntityRule::default()
                }),
            ),
            Direction::Egress => (None, Some(EntityRule { ports, ..peer })),
        };
        Rule {
            action,
            protocol: protocol.map(|protocol| protocol.as_str().to_owned()),
            source,
            destination,
            metadata: Some(RuleMetadata {
                annotations: [(RULE_ANNOTATION.to_owned(), name.to_owned())].into(),
            }),
        }
    };
    match ports {
        Ports::All => vec![rule(None, None)],
        Ports::Only(ports) => {
            let mut protocols: Vec<Protocol> = Vec::new();
            for port in ports {
                if !protocols.contains(&port.protocol) {
                    protocols.push(port.protocol);
                }
            }
            protocols
                .into_iter()
                .map(|protocol| {
                    let ports = ports
                        .iter()
                        .filter(|port| port.protocol == protocol)
                        .map(calico_port)
                        .collect();
                    rule(Some(protocol), Some(ports))
                })
                .collect()
        }
    }
}

fn types(ingress: bool, egress: bool) -> Vec<PolicyType> {
    let mut types = Vec::new();
    if ingress {
        types.push(PolicyType::Ingress);
    }
    if egress {
        types.push(PolicyType::Egress);
    }
    types
}

/// A GlobalNetworkPolicy of the baseline's.
fn policy(context: &Context<'_>, name: String, role: Role, spec: PolicySpec) -> Object {
    Object::CalicoPolicy(Box::new(GlobalNetworkPolicy {
        api_version: API_VERSION.to_owned(),
        kind: POLICY_KIND.to_owned(),
        metadata: context.metadata(name, role),
        spec,
    }))
}

/// A policy spec for every pod of the namespaces `namespaces` selects.
fn spec(
    tier: Option<String>,
    order: f64,
    namespaces: String,
    ingress: Vec<Rule>,
    egress: Vec<Rule>,
    types: Vec<PolicyType>,
) -> PolicySpec {
    PolicySpec {
        tier,
        order: Some(order),
        selector: Some("all()".to_owned()),
        namespace_selector: Some(namespaces),
        types: Some(types),
        ingress,
        egress,
    }
}

#[allow(clippy::unnecessary_wraps)] // every engine's renderer has the same signature
pub(super) fn render(context: &Context<'_>) -> Result<Vec<Object>, UnsupportedFields> {
    let mut covered: Vec<Requirement> = context
        .baseline
        .namespace_selector()
        .selector
        .requirements()
        .to_vec();
    covered.push(Requirement::NotIn {
        key: NAMESPACE_NAME_LABEL.to_owned(),
        values: context.excluded.clone(),
    });
    let covered = expression(&covered);
    let mut objects = Vec::new();
    if !context.baseline.guardrails().is_empty() {
        objects.extend(guardrails(context, covered.clone()));
    }
    objects.extend(same_namespace(context));
    objects.push(baseline(context, covered));
    Ok(objects)
}

/// The guardrails' tier, and its one policy.
fn guardrails(context: &Context<'_>, covered: String) -> [Object; 2] {
    let tier = format!("{}-guardrails", context.name());
    let tier_object = Object::CalicoTier(Box::new(Tier {
        api_version: API_VERSION.to_owned(),
        kind: TIER_KIND.to_owned(),
        metadata: context.metadata(tier.clone(), Role::Guardrails),
        spec: TierSpec {
            order: Some(GUARDRAIL_TIER_ORDER),
            default_action: Some(Action::Pass),
        },
    }));
    let [ingress, egress] = [Direction::Ingress, Direction::Egress].map(|direction| {
        let mut list = Vec::new();
        for (_, rule, action) in context.guardrails(direction) {
            let action = match action {
                GuardrailAction::Deny => Action::Deny,
                GuardrailAction::Allow => Action::Allow,
            };
            list.extend(rules(
                &rule.name,
                direction,
                action,
                &rule.peer,
                &rule.ports,
            ));
        }
        list
    });
    let types = types(!ingress.is_empty(), !egress.is_empty());
    let spec = spec(
        Some(tier.clone()),
        GUARDRAIL_TIER_ORDER,
        covered,
        ingress,
        egress,
        types,
    );
    [
        tier_object,
        policy(context, format!("{tier}.{tier}"), Role::Guardrails, spec),
    ]
}

/// The policies that let the pods of each covered namespace reach each other.
fn same_namespace(context: &Context<'_>) -> Vec<Object> {
    let isolated =
        [Direction::Ingress, Direction::Egress].map(|direction| context.isolates(direction));
    context
        .same_namespace()
        .iter()
        .map(|namespace| {
            let own = validate::Peer::Pods {
                namespace_selector: validate::namespace_name_selector(namespace),
                pod_selector: None,
            };
            let [ingress, egress] = [Direction::Ingress, Direction::Egress].map(|direction| {
                if context.isolates(direction) {
                    rules(
                        "same-namespace",
                        direction,
                        Action::Allow,
                        &own,
                        &Ports::All,
                    )
                } else {
                    Vec::new()
                }
            });
            let spec = spec(
                None,
                BASELINE_ORDER,
                name_is(namespace),
                ingress,
                egress,
                types(isolated[0], isolated[1]),
            );
            policy(
                context,
                format!("{}-same-namespace-{namespace}", context.name()),
                Role::SameNamespace,
                spec,
            )
        })
        .collect()
}

/// The baseline in the default tier: DNS and the allows. No deny rule: the default tier's
/// end-of-tier deny closes what no policy of the tier (the NetworkPolicies included) allows, for
/// every pod this policy selects.
fn baseline(context: &Context<'_>, covered: String) -> Object {
    let mut ingress = Vec::new();
    let mut egress = Vec::new();
    if let Some(dns) = context.baseline.baseline().dns() {
        for peer in &dns.peers {
            egress.extend(rules(
                "dns",
                Direction::Egress,
                Action::Allow,
                peer,
                &Ports::Only(dns.ports.clone()),
            ));
        }
    }
    for (_, rule) in context.allows() {
        let list = match rule.direction {
            Direction::Ingress => &mut ingress,
            Direction::Egress => &mut egress,
        };
        list.extend(rules(
            &rule.name,
            rule.direction,
            Action::Allow,
            &rule.peer,
            &rule.ports,
        ));
    }
    let types = types(
        context.isolates(Direction::Ingress),
        context.isolates(Direction::Egress),
    );
    let spec = spec(None, BASELINE_ORDER, covered, ingress, egress, types);
    policy(
        context,
        format!("{}-baseline", context.name()),
        Role::Baseline,
        spec,
    )
}
