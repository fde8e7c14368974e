//! Every validation rule, with a resource that breaks it and the error a user reads.
//!
//! If one of these fails, a user with a broken NamespaceIsolation either gets policies that do not
//! do what the spec says, or an error that does not tell them which field to fix.

use netfence_core::ValidatedIsolation;
use netfence_crd::NamespaceIsolation;

/// A valid resource to break one field at a time.
const BASE: &str = r"
apiVersion: netfence.io/v1alpha1
kind: NamespaceIsolation
metadata: {name: shop, namespace: shop}
spec:
  tiers:
    - {name: frontend, podSelector: {matchLabels: {tier: frontend}}}
    - {name: backend, podSelector: {matchLabels: {tier: backend}}}
  flows:
    - {from: frontend, to: backend, ports: [{port: 8080}]}
  sharedServices:
    - {name: ingress, direction: Ingress, namespace: ingress-nginx, tiers: [frontend], ports: [{port: 80}]}
";

fn resource(yaml: &str) -> NamespaceIsolation {
    let value: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&yaml_value(yaml)).expect("value serializes"))
            .expect("json");
    serde_json::from_value(value).expect("the test resource deserializes")
}

fn yaml_value(yaml: &str) -> serde_json::Value {
    serde_saphyr::from_str(yaml).expect("test YAML parses")
}

/// Apply a JSON merge patch (RFC 7386) to the base resource, then validate.
fn errors_after(patch: &str) -> Vec<String> {
    let mut base = yaml_value(BASE);
    merge(&mut base, &yaml_value(patch));
    let resource: NamespaceIsolation =
        serde_json::from_value(base).expect("the patched resource deserializes");
    match ValidatedIsolation::try_from(&resource) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(target), serde_json::Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(
                        target.entry(key.clone()).or_insert(serde_json::Value::Null),
                        value,
                    );
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Assert the patched base fails with exactly one error equal to `expected`.
#[track_caller]
fn assert_single_error(patch: &str, expected: &str) {
    let errors = errors_after(patch);
    assert_eq!(errors, [expected], "patch: {patch}");
}

/// The base and every example must be valid, or the tests below prove nothing.
#[test]
fn base_is_valid() {
    assert_eq!(errors_after("{}"), Vec::<String>::new());
    let validated = ValidatedIsolation::try_from(&resource(BASE)).expect("valid");
    assert_eq!(validated.tiers().len(), 2);
    assert_eq!(validated.flows()[0].from, 0);
    assert_eq!(validated.flows()[0].to, 1);
}

/// A flow naming a tier that does not exist would silently allow nothing.
#[test]
fn flow_to_unknown_tier() {
    assert_single_error(
        "spec: {flows: [{from: frontend, to: backend}, {from: backend, to: db}]}",
        r#"spec.flows[1].to: unknown tier "db"; declared tiers: frontend, backend"#,
    );
    assert_single_error(
        "spec: {flows: [{from: web, to: backend}]}",
        r#"spec.flows[0].from: unknown tier "web"; declared tiers: frontend, backend"#,
    );
}

/// A shared service for an unknown tier.
#[test]
fn shared_service_unknown_tier() {
    assert_single_error(
        "spec: {sharedServices: [{name: ingress, direction: Ingress, namespace: ingress-nginx, tiers: [frontnd]}]}",
        r#"spec.sharedServices[0].tiers[0]: unknown tier "frontnd"; declared tiers: frontend, backend"#,
    );
}

/// Two tiers with one name would fight over one policy.
#[test]
fn duplicate_tier_name() {
    assert_single_error(
        "spec: {tiers: [{name: frontend, podSelector: {}}, {name: frontend, podSelector: {}}], flows: null, sharedServices: null}",
        r#"spec.tiers[1].name: tier "frontend" is declared twice; tier names must be unique"#,
    );
}

/// Two shared services with one name would fight over one policy.
#[test]
fn duplicate_shared_service_name() {
    assert_single_error(
        "spec: {sharedServices: [{name: a, direction: Ingress, namespace: x}, {name: a, direction: Egress, namespace: other}]}",
        r#"spec.sharedServices[1].name: shared service "a" is declared twice; shared service names must be unique"#,
    );
}

/// Tier and shared-service names end up in policy names: DNS-1123 labels only.
#[test]
fn names_must_be_dns_labels() {
    assert_single_error(
        "spec: {tiers: [{name: Front_End, podSelector: {}}], flows: null, sharedServices: null}",
        r#"spec.tiers[0].name: "Front_End" is not a DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a letter or digit"#,
    );
    assert_single_error(
        "spec: {sharedServices: [{name: '-x', direction: Ingress, namespace: other}]}",
        r#"spec.sharedServices[0].name: "-x" is not a DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a letter or digit"#,
    );
}

/// A peer must be exactly one of namespace, namespaceSelector, ipBlock.
#[test]
fn peer_exactly_one() {
    assert_single_error(
        "spec: {sharedServices: [{name: a, direction: Ingress, namespace: x, ipBlock: {cidr: 10.0.0.0/8}}]}",
        "spec.sharedServices[0]: names 2 peers; give exactly one of namespace, namespaceSelector or ipBlock",
    );
    assert_single_error(
        "spec: {sharedServices: [{name: a, direction: Ingress}]}",
        "spec.sharedServices[0]: names 0 peers; give exactly one of namespace, namespaceSelector or ipBlock",
    );
}

/// A podSelector beside an ipBlock would be silently meaningless.
#[test]
fn pod_selector_only_beside_namespace_peer() {
    assert_single_error(
        "spec: {sharedServices: [{name: a, direction: Egress, ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}",
        "spec.sharedServices[0].podSelector: goes only beside namespace or namespaceSelector; an ipBlock peer has no pods to select",
    );
}

/// A shared service in a direction that is not isolated has no effect.
#[test]
fn shared_service_direction_must_be_isolated() {
    assert_single_error(
        "spec: {isolate: [Ingress], sharedServices: [{name: out, direction: Egress, namespace: x}]}",
        "spec.sharedServices[0].direction: Egress is not listed in spec.isolate, so Egress traffic is not restricted and this shared service has no effect; add Egress to spec.isolate or remove the shared service",
    );
}

/// `isolate: []` would be read by Kubernetes as Ingress only: never what was meant.
#[test]
fn isolate_not_empty_nor_repeated() {
    assert_single_error(
        "spec: {isolate: [], sharedServices: null}",
        "spec.isolate: must list at least one direction (Ingress, Egress); an empty list would be read by Kubernetes as Ingress only",
    );
    assert_single_error(
        "spec: {isolate: [Ingress, Ingress]}",
        "spec.isolate[1]: Ingress is listed twice",
    );
}

/// Ports: 1..65535, names as IANA service names, endPort numeric and >= port, no empty list.
#[test]
fn ports() {
    assert_single_error(
        "spec: {flows: [{from: frontend, to: backend, ports: [{port: 0}]}]}",
        "spec.flows[0].ports[0].port: 0 is not a port; use a number from 1 to 65535",
    );
    assert_single_error(
        "spec: {flows: [{from: frontend, to: backend, ports: [{port: 70000}]}]}",
        "spec.flows[0].ports[0].port: 70000 is not a port; use a number from 1 to 65535",
    );
    assert_single_error(
        "spec: {flows: [{from: frontend, to: backend, ports: [{port: '8080'}]}]}",
        r#"spec.flows[0].ports[0].port: "8080" is a number written as a string; write it without quotes"#,
    );
    assert_single_error(
        "spec: {flows: [{from: frontend, to: backend, ports: [{port: HTTP_PORT}]}]}",
        r#"spec.flows[0].ports[0].port: "HTTP_PORT" is neither a port number nor a port name: a name has at most 15 lowercase letters, digits and single '-', with at least one letter"#,
    );
    assert_single_error(
        "spec: {flows: [{from: frontend, to: backend, ports: [{port: 9000, endPort: 8000}]}]}",
        "spec.flows[0].ports[0].endPort: 8000 must be at least port (9000) and at most 65535",
    );
    assert_single_error(
        "spec: {flows: [{from: frontend, to: backend, ports: [{port: http, endPort: 8000}]}]}",
        "spec.flows[0].ports[0].endPort: goes only with a numeric port; a named port cannot start a range",
    );
    assert_single_error(
        "spec: {flows: [{from: frontend, to: backend, ports: []}]}",
        "spec.flows[0].ports: is empty; omit ports to allow every port, or list at least one",
    );
}

/// An unknown protocol is refused when the resource is read, with the field path.
#[test]
fn protocol_must_be_tcp_udp_or_sctp() {
    let mut base = yaml_value(BASE);
    merge(
        &mut base,
        &yaml_value(
            "spec: {flows: [{from: frontend, to: backend, ports: [{port: 80, protocol: ICMP}]}]}",
        ),
    );
    let error = serde_path_to_error::deserialize::<_, NamespaceIsolation>(base)
        .expect_err("ICMP is not a protocol");
    assert_eq!(error.path().to_string(), "spec.flows[0].ports[0].protocol");
    assert!(error.inner().to_string().contains("unknown variant `ICMP`"));
}

/// Selectors: label keys and values, operators and their values.
#[test]
fn selectors() {
    assert_single_error(
        "spec: {tiers: [{name: a, podSelector: {matchLabels: {'bad key!': x}}}], flows: null, sharedServices: null}",
        r#"spec.tiers[0].podSelector.matchLabels: key "bad key!": name part must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"#,
    );
    assert_single_error(
        "spec: {tiers: [{name: a, podSelector: {matchLabels: {app: '-web'}}}], flows: null, sharedServices: null}",
        r#"spec.tiers[0].podSelector.matchLabels.app: value "-web": must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"#,
    );
    assert_single_error(
        "spec: {tiers: [{name: a, podSelector: {matchExpressions: [{key: app, operator: In}]}}], flows: null, sharedServices: null}",
        "spec.tiers[0].podSelector.matchExpressions[0].values: operator In needs at least one value",
    );
    assert_single_error(
        "spec: {tiers: [{name: a, podSelector: {matchExpressions: [{key: app, operator: Exists, values: [x]}]}}], flows: null, sharedServices: null}",
        "spec.tiers[0].podSelector.matchExpressions[0].values: operator Exists takes no values; remove them",
    );
    assert_single_error(
        "spec: {tiers: [{name: a, podSelector: {matchExpressions: [{key: app, operator: Equals, values: [x]}]}}], flows: null, sharedServices: null}",
        r#"spec.tiers[0].podSelector.matchExpressions[0].operator: unknown operator "Equals"; use In, NotIn, Exists or DoesNotExist"#,
    );
    assert_single_error(
        "spec: {sharedServices: [{name: a, direction: Ingress, namespaceSelector: {matchLabels: {'example..com/team': x}}}]}",
        r#"spec.sharedServices[0].namespaceSelector.matchLabels: key "example..com/team": prefix "example..com" must be a DNS-1123 subdomain such as example.com"#,
    );
}

/// CIDRs: syntax, host bits, and except strictly inside cidr.
#[test]
fn cidrs() {
    assert_single_error(
        "spec: {sharedServices: [{name: a, direction: Egress, ipBlock: {cidr: 10.0.0.0}}]}",
        r#"spec.sharedServices[0].ipBlock.cidr: "10.0.0.0": is not in CIDR notation; write an address and a prefix length, such as 10.0.0.0/8 or 192.0.2.10/32"#,
    );
    assert_single_error(
        "spec: {sharedServices: [{name: a, direction: Egress, ipBlock: {cidr: 10.0.0.300/32}}]}",
        r#"spec.sharedServices[0].ipBlock.cidr: "10.0.0.300/32": "10.0.0.300" is not an IPv4 or IPv6 address"#,
    );
    assert_single_error(
        "spec: {sharedServices: [{name: a, direction: Egress, ipBlock: {cidr: 203.0.113.5/24}}]}",
        r#"spec.sharedServices[0].ipBlock.cidr: "203.0.113.5/24": has host bits set; write 203.0.113.0/24"#,
    );
    assert_single_error(
        "spec: {sharedServices: [{name: a, direction: Egress, ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]}",
        r#"spec.sharedServices[0].ipBlock.except[0]: "192.168.0.0/16" is not strictly inside cidr 10.0.0.0/8; an except range must be a smaller part of cidr"#,
    );
    assert_single_error(
        "spec: {dns: {ipBlocks: [{cidr: 'fd00::/129'}]}}",
        r#"spec.dns.ipBlocks[0].cidr: "fd00::/129": prefix length "129" must be a number from 0 to 128"#,
    );
    // What the API server's `isCIDR` refuses (Go's netip.ParsePrefix): a leading zero or a sign
    // in the prefix length, an IPv4-mapped IPv6 address.
    assert_single_error(
        "spec: {dns: {ipBlocks: [{cidr: 10.0.0.0/08}]}}",
        r#"spec.dns.ipBlocks[0].cidr: "10.0.0.0/08": prefix length "08" must be a number from 0 to 32, in plain digits without a leading zero or sign"#,
    );
    assert_single_error(
        "spec: {dns: {ipBlocks: [{cidr: '::ffff:10.0.0.0/104'}]}}",
        r#"spec.dns.ipBlocks[0].cidr: "::ffff:10.0.0.0/104": is an IPv4-mapped IPv6 address, which Kubernetes refuses; write the IPv4 range 10.0.0.0/8"#,
    );
    assert_eq!(
        errors_after(
            "spec: {sharedServices: [{name: a, direction: Egress, ipBlock: {cidr: '2001:db8::/32', except: ['2001:db8:1::/48']}}]}"
        ),
        Vec::<String>::new()
    );
}

/// The resource name is the value of a label on every policy: at most 63 characters. Policy
/// names are `<name>-<suffix>` with a suffix of at most 70 characters, so this also keeps every
/// generated policy name far within the 253-character limit of object names.
#[test]
fn resource_name_fits_a_label_value() {
    let name = "a".repeat(64);
    assert_single_error(
        &format!("metadata: {{name: {name}}}"),
        &format!(
            "metadata.name: is 64 characters; at most 63 are allowed because the name is the value of the netfence.io/isolation label on every generated policy (generated names such as {name}-default-deny stay far below the 253-character limit)"
        ),
    );
}

/// The DNS namespace must be a namespace name.
#[test]
fn dns_namespace() {
    assert_single_error(
        "spec: {dns: {namespace: Kube_System}}",
        r#"spec.dns.namespace: "Kube_System" is not a DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a letter or digit"#,
    );
}

/// Every error is reported at once, in spec order, so one round of fixes is enough.
#[test]
fn every_error_is_collected() {
    let errors = errors_after(
        "spec: {flows: [{from: a, to: b}], sharedServices: [{name: X, direction: Ingress}]}",
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(errors[0].starts_with("spec.flows[0].from: unknown tier \"a\""));
    assert!(errors[1].starts_with("spec.flows[0].to: unknown tier \"b\""));
    assert!(errors[2].starts_with("spec.sharedServices[0].name:"));
    assert!(errors[3].starts_with("spec.sharedServices[0]: names 0 peers"));
}

/// Lists longer than the CRD allows are refused by render too, so render never accepts what
/// admission would refuse.
#[test]
fn list_bounds() {
    let tiers: Vec<String> = (0..33)
        .map(|index| format!("{{name: t{index}, podSelector: {{}}}}"))
        .collect();
    assert_single_error(
        &format!(
            "spec: {{tiers: [{}], flows: null, sharedServices: null}}",
            tiers.join(", ")
        ),
        "spec.tiers: has 33 items; at most 32 are allowed",
    );
}
