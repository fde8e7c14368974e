//! Property tests: for random valid NamespaceIsolation specs, render never panics, is
//! deterministic, writes only isolated directions, and every object it makes is a NetworkPolicy
//! that survives the round trip through k8s-openapi's type (what the API server will store).

use std::collections::BTreeSet;

use k8s_openapi::{
    api::networking::v1::NetworkPolicy,
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use netfence_core::{ValidatedIsolation, render};
use netfence_crd::{
    NamespaceIsolation, NamespaceIsolationSpec,
    isolation::{
        DeletionPolicy, Direction, Dns, Flow, IpBlock, Mode, Port, Protocol, SameNamespace,
        SharedService, Tier,
    },
};
use proptest::prelude::*;

fn selector() -> impl Strategy<Value = LabelSelector> {
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

fn port() -> impl Strategy<Value = Port> {
    let protocol = prop::sample::select(vec![Protocol::TCP, Protocol::UDP, Protocol::SCTP]);
    prop_oneof![
        (1..=65535_i32, protocol.clone()).prop_map(|(port, protocol)| Port {
            port: IntOrString::Int(port),
            protocol,
            end_port: None,
        }),
        (1..=60000_i32, 0..100_i32, protocol.clone()).prop_map(|(port, width, protocol)| Port {
            port: IntOrString::Int(port),
            protocol,
            end_port: Some(port + width),
        }),
        (
            prop::sample::select(vec!["http", "metrics", "grpc-web"]),
            protocol
        )
            .prop_map(|(name, protocol)| Port {
                port: IntOrString::String(name.to_owned()),
                protocol,
                end_port: None,
            }),
    ]
}

fn ports() -> impl Strategy<Value = Option<Vec<Port>>> {
    prop::option::of(prop::collection::vec(port(), 1..4))
}

fn ip_block() -> impl Strategy<Value = IpBlock> {
    (0..=255_u8, any::<bool>()).prop_map(|(octet, except)| IpBlock {
        cidr: format!("10.{octet}.0.0/16"),
        except: if except {
            vec![format!("10.{octet}.1.0/24")]
        } else {
            Vec::new()
        },
    })
}

/// A valid spec: tier references are drawn from the declared tiers, shared-service directions
/// from the isolated ones.
fn spec() -> impl Strategy<Value = NamespaceIsolationSpec> {
    let isolate = prop::sample::select(vec![
        vec![Direction::Ingress],
        vec![Direction::Egress],
        vec![Direction::Ingress, Direction::Egress],
    ]);
    (
        isolate,
        prop::collection::vec(selector(), 0..5),
        any::<bool>(),
        prop::collection::vec(ip_block(), 0..2),
        any::<bool>(),
    )
        .prop_flat_map(|(isolate, selectors, dns_enabled, dns_blocks, same_ns)| {
            let tier_count = selectors.len();
            let tiers: Vec<Tier> = selectors
                .into_iter()
                .enumerate()
                .map(|(index, pod_selector)| Tier {
                    name: format!("tier-{index}"),
                    pod_selector,
                })
                .collect();
            let flows = if tier_count == 0 {
                Just(Vec::new()).boxed()
            } else {
                prop::collection::vec((0..tier_count, 0..tier_count, ports()), 0..8)
                    .prop_map(|flows| {
                        flows
                            .into_iter()
                            .map(|(from, to, ports)| Flow {
                                from: format!("tier-{from}"),
                                to: format!("tier-{to}"),
                                ports,
                            })
                            .collect::<Vec<_>>()
                    })
                    .boxed()
            };
            let shared = prop::collection::vec(shared_service(isolate.clone(), tier_count), 0..4)
                .prop_map(|services| {
                    services
                        .into_iter()
                        .enumerate()
                        .map(|(index, mut service)| {
                            service.name = format!("shared-{index}");
                            service
                        })
                        .collect::<Vec<_>>()
                });
            (
                Just(isolate),
                Just(tiers),
                flows,
                shared,
                Just(dns_enabled),
                Just(dns_blocks),
                Just(same_ns),
            )
        })
        .prop_map(
            |(isolate, tiers, flows, shared_services, dns_enabled, ip_blocks, same_ns)| {
                NamespaceIsolationSpec {
                    mode: Mode::Enforce,
                    isolate,
                    dns: Dns {
                        enabled: dns_enabled,
                        ip_blocks,
                        ..Dns::default()
                    },
                    same_namespace: if same_ns {
                        SameNamespace::Allow
                    } else {
                        SameNamespace::Deny
                    },
                    deletion_policy: DeletionPolicy::Delete,
                    tiers,
                    flows,
                    shared_services,
                }
            },
        )
}

fn shared_service(
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
            tiers.map(|tiers| {
                tiers
                    .into_iter()
                    .map(|index| format!("tier-{index}"))
                    .collect()
            })
        })
        .boxed()
    };
    let peer = prop_oneof![
        ("[a-z]{1,8}", prop::option::of(selector())).prop_map(|(namespace, pods)| (
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
        |(direction, (namespace, namespace_selector, pod_selector, ip_block), tiers, ports)| {
            SharedService {
                name: String::new(),
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

fn resource(spec: NamespaceIsolationSpec) -> NamespaceIsolation {
    NamespaceIsolation {
        metadata: ObjectMeta {
            name: Some("prop".into()),
            namespace: Some("prop".into()),
            uid: Some("00000000-0000-0000-0000-000000000001".into()),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any valid spec renders, twice identically, and every object round-trips through
    /// k8s-openapi's NetworkPolicy unchanged.
    #[test]
    fn renders_deterministically_and_round_trips(spec in spec()) {
        let resource = resource(spec);
        let isolation = ValidatedIsolation::try_from(&resource)
            .map_err(|errors| TestCaseError::fail(format!("generator made an invalid spec: {errors}")))?;
        let first = render::network_policies(&isolation);
        let second = render::network_policies(&isolation);
        prop_assert_eq!(
            serde_saphyr::to_string(&first).expect("serializes"),
            serde_saphyr::to_string(&second).expect("serializes")
        );

        let mut names = BTreeSet::new();
        for policy in &first {
            let json = serde_json::to_value(policy).expect("serializes");
            let back: NetworkPolicy = serde_json::from_value(json.clone()).expect("a NetworkPolicy");
            prop_assert_eq!(serde_json::to_value(&back).expect("serializes"), json);
            prop_assert!(names.insert(policy.metadata.name.clone()), "duplicate name");

            let spec = policy.spec.as_ref().expect("spec");
            let types = spec.policy_types.as_ref().expect("policyTypes always written");
            prop_assert!(!types.is_empty());
            for kind in types {
                let direction = if kind == "Ingress" { Direction::Ingress } else { Direction::Egress };
                prop_assert!(isolation.isolates(direction), "{} not isolated", kind);
            }
            prop_assert!(spec.ingress.is_none() || types.iter().any(|t| t == "Ingress"));
            prop_assert!(spec.egress.is_none() || types.iter().any(|t| t == "Egress"));
            for rule in spec.ingress.iter().flatten() {
                let ports: Vec<_> = rule.ports.iter().flatten().collect();
                let unique: BTreeSet<_> = ports.iter().map(|p| serde_json::to_string(p).unwrap_or_default()).collect();
                prop_assert_eq!(unique.len(), ports.len(), "duplicate ports in one rule");
            }
        }
        prop_assert_eq!(
            first.iter().filter(|p| p.metadata.name.as_deref() == Some("prop-default-deny")).count(),
            1
        );
    }
}
