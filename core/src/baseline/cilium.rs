//! Cilium: the baseline as a policy that puts the covered pods into default deny with the DNS and
//! baseline allows (Kubernetes NetworkPolicies add to it); guardrails in a policy that enables no
//! default deny, `Deny` ones as `ingressDeny`/`egressDeny`, which Cilium puts above every allow
//! (whatever the guardrails' order), `Allow` ones as allows.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use netfence_crd::{
    baseline::GuardrailAction,
    engines::cilium::{
        API_VERSION, CidrRule, CiliumClusterwideNetworkPolicy, DefaultDeny, EgressRule,
        IngressRule, KIND, NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX, POD_LABEL_PREFIX,
        PortProtocol, PortRule, Spec,
    },
    isolation::Direction,
};

use super::{Context, Object, Role, Unsupported, UnsupportedFields};
use crate::{
    selector::Requirement,
    validate::{self, PortValue, Ports},
};

/// Requirements as an endpoint selector, each key prefixed.
fn selector(prefix: &str, requirements: &[Requirement]) -> LabelSelector {
    let expressions: Vec<LabelSelectorRequirement> = requirements
        .iter()
        .map(|requirement| {
            let (operator, values) = match requirement {
                Requirement::In { values, .. } => ("In", Some(values.iter().cloned().collect())),
                Requirement::NotIn { values, .. } => {
                    ("NotIn", Some(values.iter().cloned().collect()))
                }
                Requirement::Exists { .. } => ("Exists", None),
                Requirement::DoesNotExist { .. } => ("DoesNotExist", None),
            };
            LabelSelectorRequirement {
                key: format!("{prefix}{}", requirement.key()),
                operator: operator.to_owned(),
                values,
            }
        })
        .collect();
    LabelSelector {
        match_labels: None,
        match_expressions: (!expressions.is_empty()).then_some(expressions),
    }
}

/// A selector over endpoints: namespace labels, and pod labels.
fn endpoints(namespaces: &[Requirement], pods: &[Requirement]) -> LabelSelector {
    let mut both = selector(NAMESPACE_LABELS_PREFIX, namespaces);
    if let Some(pods) = selector(POD_LABEL_PREFIX, pods).match_expressions {
        both.match_expressions
            .get_or_insert_with(Vec::new)
            .extend(pods);
    }
    both
}

fn in_namespace(namespace: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some([(NAMESPACE_LABEL.to_owned(), namespace.to_owned())].into()),
        match_expressions: None,
    }
}

fn to_ports(ports: &Ports) -> Option<Vec<PortRule>> {
    let Ports::Only(ports) = ports else {
        return None;
    };
    Some(vec![PortRule {
        ports: ports
            .iter()
            .map(|port| PortProtocol {
                port: match &port.port {
                    PortValue::Name(name) => name.clone(),
                    PortValue::Number(number) => number.to_string(),
                },
                end_port: port
                    .end_port
                    .filter(|end| matches!(port.port, PortValue::Number(start) if *end > start))
                    .map(i32::from),
                protocol: Some(port.protocol.as_str().to_owned()),
            })
            .collect(),
    }])
}

/// One peer and its ports, as the rule of each direction.
fn rule(peer: &validate::Peer, ports: &Ports) -> (IngressRule, EgressRule) {
    let (endpoints_peer, cidrs) = match peer {
        validate::Peer::Pods {
            namespace_selector,
            pod_selector,
        } => (
            Some(vec![endpoints(
                namespace_selector.selector.requirements(),
                pod_selector
                    .as_ref()
                    .map_or(&[][..], |pods| pods.selector.requirements()),
            )]),
            None,
        ),
        validate::Peer::IpBlock(block) => (
            None,
            Some(vec![CidrRule {
                cidr: block.cidr.to_string(),
                except: block.except.iter().map(ToString::to_string).collect(),
            }]),
        ),
    };
    (
        IngressRule {
            from_endpoints: endpoints_peer.clone(),
            from_cidr_set: cidrs.clone(),
            from_entities: None,
            to_ports: to_ports(ports),
        },
        EgressRule {
            to_endpoints: endpoints_peer,
            to_cidr_set: cidrs,
            to_entities: None,
            to_ports: to_ports(ports),
        },
    )
}

fn policy(context: &Context<'_>, name: String, role: Role, spec: Spec) -> Object {
    Object::Cilium(Box::new(CiliumClusterwideNetworkPolicy {
        api_version: API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        metadata: context.metadata(name, role),
        spec,
        status: None,
    }))
}

/// The baseline's rules of a direction: `[{}]` (nothing) when it isolates the direction and has
/// no rule, `None` when it does not isolate it.
fn isolated<T: Default>(isolates: bool, rules: Vec<T>) -> Option<Vec<T>> {
    match (isolates, rules.is_empty()) {
        (false, _) => None,
        (true, true) => Some(vec![T::default()]),
        (true, false) => Some(rules),
    }
}

/// Cilium puts deny rules above every allow: an Allow guardrail listed before a Deny one of its
/// direction would lose to it where they overlap, against the spec's first-match order. Refused,
/// naming the Allow guardrail.
fn order_problems(context: &Context<'_>) -> Vec<Unsupported> {
    let mut problems = Vec::new();
    for direction in [Direction::Ingress, Direction::Egress] {
        let guardrails: Vec<_> = context.guardrails(direction).collect();
        for (index, (path, _, action)) in guardrails.iter().enumerate() {
            let denied_later = guardrails[index + 1..]
                .iter()
                .any(|(_, _, later)| *later == GuardrailAction::Deny);
            if *action == GuardrailAction::Allow && denied_later {
                problems.push(Unsupported {
                    field: format!("{path}.action"),
                    engine: "Cilium",
                    message: "Cilium puts deny rules above every allow, so this Allow would lose to a Deny guardrail listed after it; list every Deny guardrail of its direction first".to_owned(),
                });
            }
        }
    }
    problems
}

pub(super) fn render(context: &Context<'_>) -> Result<Vec<Object>, UnsupportedFields> {
    let problems = order_problems(context);
    if !problems.is_empty() {
        return Err(UnsupportedFields(problems));
    }
    let mut covered = endpoints(
        context
            .baseline
            .namespace_selector()
            .selector
            .requirements(),
        &[],
    );
    covered
        .match_expressions
        .get_or_insert_with(Vec::new)
        .push(LabelSelectorRequirement {
            key: NAMESPACE_LABEL.to_owned(),
            operator: "NotIn".to_owned(),
            values: Some(context.excluded.iter().cloned().collect()),
        });
    let mut objects = Vec::new();
    if !context.baseline.guardrails().is_empty() {
        objects.push(guardrails(context, &covered));
    }
    objects.extend(same_namespace(context));
    objects.push(baseline(context, covered));
    Ok(objects)
}

/// The guardrails: a policy that enables no default deny.
fn guardrails(context: &Context<'_>, covered: &LabelSelector) -> Object {
    let mut spec = Spec {
        description: Some(format!(
            "Guardrails of ClusterBaseline {}: decided before any namespace policy",
            context.name()
        )),
        endpoint_selector: covered.clone(),
        enable_default_deny: Some(DefaultDeny {
            ingress: Some(false),
            egress: Some(false),
        }),
        ..Spec::default()
    };
    for (_, guardrail, action) in context.guardrails(Direction::Ingress) {
        let (rule, _) = rule(&guardrail.peer, &guardrail.ports);
        match action {
            GuardrailAction::Deny => spec.ingress_deny.get_or_insert_with(Vec::new).push(rule),
            GuardrailAction::Allow => spec.ingress.get_or_insert_with(Vec::new).push(rule),
        }
    }
    for (_, guardrail, action) in context.guardrails(Direction::Egress) {
        let (_, rule) = rule(&guardrail.peer, &guardrail.ports);
        match action {
            GuardrailAction::Deny => spec.egress_deny.get_or_insert_with(Vec::new).push(rule),
            GuardrailAction::Allow => spec.egress.get_or_insert_with(Vec::new).push(rule),
        }
    }
    policy(
        context,
        format!("{}-guardrails", context.name()),
        Role::Guardrails,
        spec,
    )
}

/// The policies that let the pods of each covered namespace reach each other.
fn same_namespace(context: &Context<'_>) -> Vec<Object> {
    let ingress_isolated = context.isolates(Direction::Ingress);
    let egress_isolated = context.isolates(Direction::Egress);
    let mut objects = Vec::new();
    for namespace in context.same_namespace() {
        let own = || vec![in_namespace(namespace)];
        objects.push(policy(
            context,
            format!("{}-same-namespace-{namespace}", context.name()),
            Role::SameNamespace,
            Spec {
                description: Some(format!(
                    "ClusterBaseline {}: pods of {namespace} reach each other",
                    context.name()
                )),
                endpoint_selector: in_namespace(namespace),
                ingress: ingress_isolated.then(|| {
                    vec![IngressRule {
                        from_endpoints: Some(own()),
                        ..IngressRule::default()
                    }]
                }),
                egress: egress_isolated.then(|| {
                    vec![EgressRule {
                        to_endpoints: Some(own()),
                        ..EgressRule::default()
                    }]
                }),
                enable_default_deny: Some(DefaultDeny {
                    ingress: ingress_isolated.then_some(true),
                    egress: egress_isolated.then_some(true),
                }),
                ..Spec::default()
            },
        ));
    }
    objects
}

/// The baseline: default deny with DNS and the allows.
fn baseline(context: &Context<'_>, covered: LabelSelector) -> Object {
    let ingress_isolated = context.isolates(Direction::Ingress);
    let egress_isolated = context.isolates(Direction::Egress);
    let mut ingress = Vec::new();
    let mut egress = Vec::new();
    if let Some(dns) = context.baseline.baseline().dns() {
        for peer in &dns.peers {
            egress.push(rule(peer, &Ports::Only(dns.ports.clone())).1);
        }
    }
    for (_, allow) in context.allows() {
        let (in_rule, out_rule) = rule(&allow.peer, &allow.ports);
        match allow.direction {
            Direction::Ingress => ingress.push(in_rule),
            Direction::Egress => egress.push(out_rule),
        }
    }
    policy(
        context,
        format!("{}-baseline", context.name()),
        Role::Baseline,
        Spec {
            description: Some(format!(
                "Baseline of ClusterBaseline {}: default deny, DNS and baseline allows; namespace policies add to it",
                context.name()
            )),
            endpoint_selector: covered,
            ingress: isolated(ingress_isolated, ingress),
            egress: isolated(egress_isolated, egress),
            enable_default_deny: Some(DefaultDeny {
                ingress: ingress_isolated.then_some(true),
                egress: egress_isolated.then_some(true),
            }),
            ..Spec::default()
        },
    )
}
