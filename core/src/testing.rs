//! Random valid NamespaceIsolation specs for property tests: the one generator every property
//! test of netfence draws from (cargo feature `testing`, enabled only from dev-dependencies, so
//! proptest is never in the binary: `cargo tree -p netfence -e normal` shows no proptest).
//!
//! ```text
//! spec()                   --> NamespaceIsolationSpec, always valid (ValidatedIsolation::try_from holds)
//! resource(name, ns, spec) --> the NamespaceIsolation around it, with a UID
//! ```
//!
//! It covers the union of two shapes, mixed where they differ (a selector, a port, a CIDR, a
//! peer namespace is drawn from one or the other):
//!
//! - random: selectors over small key and value alphabets (`[a-c]` = `[x-z]{1,2}`, every
//!   operator, the empty selector), any port number, port ranges and names with any protocol,
//!   random `/16` CIDRs with an `except`, any namespace name as a peer;
//! - hand-picked, chosen to meet each other: tier selectors that overlap (`tier in (t0, shared)`,
//!   the same `app=x` on two tiers, `canary` DoesNotExist with `tier notin (t0)`), ports that
//!   meet the DNS ports (53/UDP) and each other, named ports the peers may define, a DNS namespace
//!   of its own with a node-local address, peers such as `monitoring` + `app=prometheus`, every
//!   namespace + `role in (client)`, and CIDRs nested in each other.
//!
//! Both give 0-4 tiers, 0-7 flows between them (a tier to itself too), 0-3 shared services in
//! isolated directions only, either isolation and same-namespace setting, DNS on or off.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{
    apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta},
    util::intstr::IntOrString,
};
use netfence_crd::{
    NamespaceIsolation, NamespaceIsolationSpec,
    isolation::{
        DeletionPolicy, Direction, Dns, Flow, IpBlock, Mode, Port, Protocol, SameNamespace,
        SharedService, Tier,
    },
};
use proptest::prelude::*;

/// A LabelSelector from its labels and `(key, operator, values)` expressions.
fn labelled(labels: &[(&str, &str)], expressions: &[(&str, &str, &[&str])]) -> LabelSelector {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    let expressions: Vec<LabelSelectorRequirement> = expressions
        .iter()
        .map(|(key, operator, values)| LabelSelectorRequirement {
            key: (*key).to_owned(),
            operator: (*operator).to_owned(),
            values: (!values.is_empty())
                .then(|| values.iter().map(|value| (*value).to_owned()).collect()),
        })
        .collect();
    LabelSelector {
        match_labels: (!labels.is_empty()).then_some(labels),
        match_expressions: (!expressions.is_empty()).then_some(expressions),
    }
}

/// A selector over small alphabets, so that selectors meet: any operator, empty included.
fn random_selector() -> impl Strategy<Value = LabelSelector> {
    let labels = prop::collection::btree_map("[a-c]", "[x-z]{1,2}", 0..3);
    let expression = (
        "[a-c]",
        prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist"]),
        prop::collection::vec("[x-z]", 1..3),
    )
        .prop_map(|(key, operator, values)| LabelSelectorRequirement {
            key,
            operator: operator.to_owned(),
            values: matches!(operator, "In" | "NotIn").then_some(values),
        });
    (labels, prop::collection::vec(expression, 0..2)).prop_map(|(labels, expressions)| {
        LabelSelector {
            match_labels: (!labels.is_empty()).then_some(labels),
            match_expressions: (!expressions.is_empty()).then_some(expressions),
        }
    })
}

/// Any selector: random, or one of the peers' hand-picked ones.
fn selector() -> impl Strategy<Value = LabelSelector> {
    prop_oneof![
        random_selector(),
        prop::sample::select(vec![
            LabelSelector::default(),
            labelled(&[("app", "prometheus")], &[]),
            labelled(&[("team", "platform")], &[]),
            labelled(&[], &[("role", "In", &["client"])]),
        ]),
    ]
}

/// The selector of tier `index`: any selector, or one of the hand-picked tier selectors, which
/// overlap each other.
fn tier_selector(index: usize) -> impl Strategy<Value = LabelSelector> {
    let tier = format!("t{index}");
    prop_oneof![
        2 => selector(),
        4 => Just(labelled(&[("tier", &tier)], &[])),
        1 => Just(labelled(&[], &[("tier", "In", &[&tier, "shared"])])),
        1 => Just(labelled(&[("app", "x")], &[])),
        1 => Just(labelled(
            &[],
            &[("canary", "DoesNotExist", &[]), ("tier", "NotIn", &["t0"])],
        )),
    ]
}

/// A port: random numbers, ranges and names with any protocol, or hand-picked ones.
fn port() -> impl Strategy<Value = Port> {
    let protocol = prop::sample::select(vec![Protocol::TCP, Protocol::UDP, Protocol::SCTP]);
    let number = |port: i32, protocol: Protocol, end_port: Option<i32>| Port {
        port: IntOrString::Int(port),
        protocol,
        end_port,
    };
    let named = |name: &str, protocol: Protocol| Port {
        port: IntOrString::String(name.to_owned()),
        protocol,
        end_port: None,
    };
    prop_oneof![
        (1..=65535_i32, protocol.clone())
            .prop_map(move |(port, protocol)| number(port, protocol, None)),
        (1..=60000_i32, 0..100_i32, protocol.clone())
            .prop_map(move |(port, width, protocol)| number(port, protocol, Some(port + width))),
        (
            prop::sample::select(vec!["http", "metrics", "grpc-web"]),
            protocol
        )
            .prop_map(move |(name, protocol)| named(name, protocol)),
        prop::sample::select(vec![
            number(80, Protocol::TCP, None),
            number(8080, Protocol::TCP, None),
            number(53, Protocol::UDP, None),
            number(9000, Protocol::TCP, Some(9002)),
            named("http", Protocol::TCP),
            named("metrics", Protocol::TCP),
            number(5000, Protocol::SCTP, None),
        ]),
    ]
}

/// No port list (every port), or one to three ports.
fn ports() -> impl Strategy<Value = Option<Vec<Port>>> {
    prop::option::of(prop::collection::vec(port(), 1..4))
}

/// An address block: a random `/16` with or without an `except`, or a hand-picked one.
fn ip_block() -> impl Strategy<Value = IpBlock> {
    let block = |cidr: &str, except: &[&str]| IpBlock {
        cidr: cidr.to_owned(),
        except: except.iter().map(|cidr| (*cidr).to_owned()).collect(),
    };
    prop_oneof![
        (0..=255_u8, any::<bool>()).prop_map(|(octet, except)| IpBlock {
            cidr: format!("10.{octet}.0.0/16"),
            except: if except {
                vec![format!("10.{octet}.1.0/24")]
            } else {
                Vec::new()
            },
        }),
        prop::sample::select(vec![
            block("203.0.113.0/24", &["203.0.113.0/28"]),
            block("10.0.0.0/8", &[]),
            block("169.254.20.10/32", &[]),
        ]),
    ]
}

/// The DNS setting: on or off, in `kube-system` or a namespace of its own, with address blocks.
fn dns() -> impl Strategy<Value = Dns> {
    (
        any::<bool>(),
        prop::sample::select(vec!["kube-system", "dns-system"]),
        prop::collection::vec(ip_block(), 0..2),
    )
        .prop_map(|(enabled, namespace, ip_blocks)| Dns {
            enabled,
            namespace: namespace.to_owned(),
            ip_blocks,
            ..Dns::default()
        })
}

/// A shared service named `shared-<index>` in one of the `isolate`d directions, for some of the
/// `tier_count` tiers.
fn shared_service(
    index: usize,
    isolate: Vec<Direction>,
    tier_count: usize,
) -> impl Strategy<Value = SharedService> {
    let tiers = if tier_count == 0 {
        Just(None).boxed()
    } else {
        prop::option::of(prop::sample::subsequence(
            (0..tier_count).collect::<Vec<_>>(),
            1..=tier_count,
        ))
        .prop_map(|tiers| {
            tiers.map(|tiers| tiers.into_iter().map(|index| format!("t{index}")).collect())
        })
        .boxed()
    };
    let namespace_name = prop_oneof![
        "[a-z]{1,8}".boxed(),
        prop::sample::select(vec!["ingress-nginx".to_owned(), "monitoring".to_owned()]).boxed(),
    ];
    let peer = prop_oneof![
        (namespace_name, prop::option::of(selector())).prop_map(|(namespace, pods)| (
            Some(namespace),
            None,
            pods,
            None
        )),
        (selector(), prop::option::of(selector())).prop_map(|(namespaces, pods)| (
            None,
            Some(namespaces),
            pods,
            None
        )),
        ip_block().prop_map(|block| (None, None, None, Some(block))),
    ];
    (prop::sample::select(isolate), peer, tiers, ports()).prop_map(
        move |(
            direction,
            (namespace, namespace_selector, pod_selector, ip_block),
            tiers,
            ports,
        )| {
            SharedService {
                name: format!("shared-{index}"),
                direction,
                namespace,
                namespace_selector,
                pod_selector,
                ip_block,
                tiers,
                ports,
            }
        },
    )
}

/// A valid NamespaceIsolation spec (see the module doc for what it covers): tiers are named
/// `t0`, `t1`, ...; flows and shared services name only declared tiers; shared services go in
/// isolated directions only.
pub fn spec() -> impl Strategy<Value = NamespaceIsolationSpec> {
    let isolate = prop::sample::select(vec![
        vec![Direction::Ingress],
        vec![Direction::Egress],
        vec![Direction::Ingress, Direction::Egress],
    ]);
    (isolate, 0..5_usize, dns(), any::<bool>())
        .prop_flat_map(|(isolate, tier_count, dns, same_namespace)| {
            let tiers = (0..tier_count)
                .map(|index| {
                    tier_selector(index).prop_map(move |pod_selector| Tier {
                        name: format!("t{index}"),
                        pod_selector,
                    })
                })
                .collect::<Vec<_>>();
            let flows = if tier_count == 0 {
                Just(Vec::new()).boxed()
            } else {
                prop::collection::vec((0..tier_count, 0..tier_count, ports()), 0..8)
                    .prop_map(|flows| {
                        flows
                            .into_iter()
                            .map(|(from, to, ports)| Flow {
                                from: format!("t{from}"),
                                to: format!("t{to}"),
                                ports,
                            })
                            .collect::<Vec<_>>()
                    })
                    .boxed()
            };
            let services = (0..4_usize).prop_flat_map({
                let isolate = isolate.clone();
                move |count| {
                    (0..count)
                        .map(|index| shared_service(index, isolate.clone(), tier_count))
                        .collect::<Vec<_>>()
                }
            });
            (
                Just(isolate),
                tiers,
                flows,
                services,
                Just(dns),
                Just(same_namespace),
            )
        })
        .prop_map(
            |(isolate, tiers, flows, shared_services, dns, same_namespace)| {
                NamespaceIsolationSpec {
                    mode: Mode::Enforce,
                    isolate,
                    dns,
                    same_namespace: if same_namespace {
                        SameNamespace::Allow
                    } else {
                        SameNamespace::Deny
                    },
                    deletion_policy: DeletionPolicy::Delete,
                    tiers,
                    flows,
                    shared_services,
                    acknowledged_policies: Vec::new(),
                }
            },
        )
}

/// The NamespaceIsolation `namespace/name` with this spec and a fixed UID, as the API server
/// would hand it to the controller.
#[must_use]
pub fn resource(name: &str, namespace: &str, spec: NamespaceIsolationSpec) -> NamespaceIsolation {
    NamespaceIsolation {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            uid: Some("00000000-0000-0000-0000-000000000001".into()),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::{
        strategy::{Strategy, ValueTree},
        test_runner::TestRunner,
    };

    use crate::ValidatedIsolation;

    /// If this fails, the generator makes specs validation refuses, and every property test that
    /// draws from it fails on the generator instead of on what it tests.
    #[test]
    fn every_generated_spec_is_valid() {
        let mut runner = TestRunner::deterministic();
        for _ in 0..500 {
            let spec = super::spec()
                .new_tree(&mut runner)
                .expect("a spec")
                .current();
            let resource = super::resource("generated", "team", spec);
            if let Err(errors) = ValidatedIsolation::try_from(&resource) {
                panic!("{errors}: {:?}", resource.spec);
            }
        }
    }
}
