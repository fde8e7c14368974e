//! The CRD's CEL rules, evaluated client-side with kube's `cel` feature (kube-cel), the way the
//! API server evaluates them at admission.
//!
//! If these fail, a real cluster either refuses to install the CRD (a rule that does not compile
//! or blows the cost budget), or admits a NamespaceIsolation that netfence will then reject.

use kube::{
    CustomResourceExt,
    core::cel::{CompiledSchema, Validator, compile_schema},
};
use netfence_crd::{NamespaceIsolation, isolation};
use serde_json::{Value, json};

/// The NamespaceIsolation CRD's schema.
fn schema() -> Value {
    schema_of::<NamespaceIsolation>()
}

/// The OpenAPI schema of `K`'s CRD, as the API server holds it.
fn schema_of<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|schema| schema.open_api_v3_schema.as_ref())
        .expect("the CRD has a schema");
    serde_json::to_value(schema).expect("schema serializes")
}

fn rules(node: &CompiledSchema, found: &mut Vec<String>, problems: &mut Vec<String>) {
    for rule in &node.validations {
        match rule {
            Ok(compiled) => found.push(compiled.rule.rule.clone()),
            Err(error) => problems.push(error.to_string()),
        }
    }
    let children = node
        .properties
        .values()
        .chain(node.items.as_deref())
        .chain(node.additional_properties.as_deref());
    for child in children {
        rules(child, found, problems);
    }
}

/// Every rule compiles (a rule that does not compile makes the API server refuse the CRD).
#[test]
fn rules_compile() {
    let compiled = compile_schema(&schema());
    let mut found = Vec::new();
    let mut problems = Vec::new();
    rules(&compiled, &mut found, &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    found.sort();
    found.dedup();
    assert_eq!(found.len(), 9, "rules found: {found:#?}");
}

/// The API server refuses a CRD whose rules may cost more than its static budget (10^7 per
/// rule, in units of roughly one comparison of a few characters). The costliest rules nest three
/// lists; their worst case, from the schema's maxItems and 63-character names (about 7 units per
/// comparison), must stay well inside it. kube-cel's own estimator is a coarse heuristic (it
/// picks an arbitrary list of the node for every nesting level), so the bound is computed here.
#[test]
fn costliest_rules_fit_the_budget() {
    const PER_RULE_BUDGET: usize = 10_000_000;
    const COMPARISON: usize = 7;
    let shared_service_tiers = isolation::MAX_SHARED_SERVICES
        * isolation::MAX_SHARED_SERVICE_TIERS
        * isolation::MAX_TIERS
        * COMPARISON;
    let flow_tiers = isolation::MAX_FLOWS * 2 * isolation::MAX_TIERS * COMPARISON;
    assert!(
        shared_service_tiers * 10 < PER_RULE_BUDGET,
        "{shared_service_tiers}"
    );
    assert!(flow_tiers * 10 < PER_RULE_BUDGET, "{flow_tiers}");
}

fn validate(spec: &Value) -> Vec<String> {
    let object = json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "NamespaceIsolation",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": spec,
    });
    match Validator::new().validate(&schema(), &object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn tiers() -> Value {
    json!([
        {"name": "frontend", "podSelector": {}},
        {"name": "backend", "podSelector": {}},
    ])
}

/// Every example in `examples/` passes admission.
#[test]
fn examples_pass() {
    let directory = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(directory).expect("examples/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text).expect("valid YAML");
        for document in documents {
            if document["kind"] == "NamespaceIsolation" {
                assert_eq!(
                    Validator::new().validate(&schema(), &document, None),
                    Ok(()),
                    "{}",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "only {checked} examples checked");
}

/// A flow to an unknown tier is refused at admission, and the message names the tier (as
/// `netfence render` does; the first undeclared `from`, else the first undeclared `to`). If this fails, `kubectl apply` says only that some flow is wrong
/// and the user hunts through every flow for it.
#[test]
fn flow_to_unknown_tier() {
    let errors = validate(&json!({"tiers": tiers(), "flows": [{"from": "frontend", "to": "db"}]}));
    assert_eq!(
        errors,
        [
            "spec.flows: every flow's from and to must name a tier declared in spec.tiers; \"db\" is not declared"
        ]
    );
    let errors = validate(&json!({"tiers": tiers(), "flows": [
        {"from": "frontend", "to": "backend"},
        {"from": "backend", "to": "cache"},
        {"from": "web", "to": "backend"},
    ]}));
    assert_eq!(
        errors,
        [
            "spec.flows: every flow's from and to must name a tier declared in spec.tiers; \"web\" is not declared"
        ]
    );
    let errors = validate(&json!({"flows": [{"from": "a", "to": "b"}]}));
    assert_eq!(
        errors,
        [
            "spec.flows: every flow's from and to must name a tier declared in spec.tiers; \"a\" is not declared"
        ]
    );
}

/// A CIDR that is not one is refused at admission (`isCIDR`, Kubernetes 1.31+), naming the
/// field. If this fails, `kubectl apply` accepts `cidr: 10.0.0.0/33` and netfence reports
/// InvalidSpec only later.
#[test]
fn cidrs_are_cidrs() {
    let errors = validate(&json!({"sharedServices": [
        {"name": "a", "direction": "Egress", "ipBlock": {"cidr": "10.0.0.0/33", "except": ["10.0.0.0/24", "nope"]}},
        {"name": "b", "direction": "Egress", "ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8::/48"]}},
    ], "dns": {"ipBlocks": [{"cidr": "169.254.20.10"}]}}));
    assert_eq!(
        errors,
        [
            "spec.dns.ipBlocks[0].cidr: cidr must be an IP range in CIDR notation, such as 203.0.113.0/24 or 2001:db8::/32",
            "spec.sharedServices[0].ipBlock.cidr: cidr must be an IP range in CIDR notation, such as 203.0.113.0/24 or 2001:db8::/32",
            "spec.sharedServices[0].ipBlock.except: every except must be an IP range in CIDR notation, such as 203.0.113.128/25",
        ]
    );
}

/// What Go's netip.ParsePrefix refuses, `isCIDR` refuses: a sign in the prefix length, an
/// IPv4-mapped IPv6 address. If this fails, the sandbox admits a CIDR the real API server
/// refuses. (A leading zero, `10.0.0.0/08`, is refused by the real API server but accepted by
/// kube-cel's `isCIDR`, which the sandbox uses; `netfence render` refuses it.)
#[test]
fn cidrs_the_api_server_refuses() {
    let errors = validate(&json!({"dns": {"ipBlocks": [
        {"cidr": "10.0.0.0/+8"},
        {"cidr": "::ffff:10.0.0.0/104"},
        {"cidr": "10.0.0.0/08"},
    ]}}));
    assert_eq!(
        errors,
        [
            "spec.dns.ipBlocks[0].cidr: cidr must be an IP range in CIDR notation, such as 203.0.113.0/24 or 2001:db8::/32",
            "spec.dns.ipBlocks[1].cidr: cidr must be an IP range in CIDR notation, such as 203.0.113.0/24 or 2001:db8::/32",
        ]
    );
}

/// A shared service for an unknown tier is refused at admission.
#[test]
fn shared_service_unknown_tier() {
    let errors = validate(&json!({"tiers": tiers(), "sharedServices": [
        {"name": "a", "direction": "Ingress", "namespace": "x", "tiers": ["web"]}
    ]}));
    assert_eq!(
        errors,
        [
            "spec.sharedServices: every shared service's tiers must name tiers declared in spec.tiers"
        ]
    );
}

/// A shared service in a direction that is not isolated is refused.
#[test]
fn shared_service_direction_isolated() {
    let errors = validate(&json!({"isolate": ["Ingress"], "sharedServices": [
        {"name": "a", "direction": "Egress", "namespace": "x"}
    ]}));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with(
        "spec.sharedServices: a shared service's direction must be listed in spec.isolate"
    ));
}

/// A peer is exactly one of namespace / namespaceSelector / ipBlock; podSelector not with ipBlock.
#[test]
fn peers() {
    let errors = validate(&json!({"sharedServices": [
        {"name": "a", "direction": "Ingress", "namespace": "x", "namespaceSelector": {}}
    ]}));
    assert_eq!(
        errors,
        [
            "spec.sharedServices[0]: a shared service names exactly one peer: namespace, namespaceSelector or ipBlock"
        ]
    );
    let errors = validate(&json!({"sharedServices": [
        {"name": "a", "direction": "Egress", "ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}
    ]}));
    assert_eq!(
        errors,
        [
            "spec.sharedServices[0].podSelector: podSelector goes only beside namespace or namespaceSelector, never beside ipBlock"
        ]
    );
}

const PORT_REFUSED: &str = "spec.flows[0].ports[0].port: port must be a number from 1 to 65535 or a port name (lowercase letters, digits and '-', at most 15 characters)";

/// Ports 1..65535 in every form (a number, digits as a string); anything else must look like a
/// port name. A port no typed client can read (`-99999999999`) is refused at admission.
#[test]
fn ports() {
    let flow = |ports: Value| json!({"tiers": tiers(), "flows": [{"from": "frontend", "to": "backend", "ports": ports}]});
    assert_eq!(validate(&flow(json!([{"port": 0}]))), [PORT_REFUSED]);
    assert_eq!(validate(&flow(json!([{"port": 65536}]))), [PORT_REFUSED]);
    for refused in [
        json!(-99_999_999_999_i64),
        json!(99_999_999_999_i64),
        json!(-1),
        json!("-99999999999"),
        json!("99999999999999999999"),
        json!("65536"),
        json!("0"),
        json!("Web"),
        json!("-web"),
    ] {
        assert_eq!(
            validate(&flow(json!([{ "port": refused }]))),
            [PORT_REFUSED],
            "{refused}"
        );
    }
    assert_eq!(
        validate(&flow(json!([{"port": 9000, "endPort": 8000}]))),
        ["spec.flows[0].ports[0].endPort: endPort needs a numeric port, and must be at least port"]
    );
    assert_eq!(
        validate(&flow(json!([{"port": "http", "endPort": 8000}]))),
        ["spec.flows[0].ports[0].endPort: endPort needs a numeric port, and must be at least port"]
    );
    assert_eq!(
        validate(&flow(
            json!([{"port": "http"}, {"port": 8000, "endPort": 8100}])
        )),
        Vec::<String>::new()
    );
}

/// The IsolationTemplate CRD's rules compile (a rule that does not keeps the CRD out of every
/// cluster); its template spec carries the NamespaceIsolation rules, and the reserved labels are
/// refused at admission.
#[test]
fn template_rules_compile_and_refuse() {
    let schema = schema_of::<netfence_crd::IsolationTemplate>();
    let compiled = compile_schema(&schema);
    let (mut found, mut problems) = (Vec::new(), Vec::new());
    rules(&compiled, &mut found, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        found.iter().any(|rule| rule.contains("self.flows.all")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|rule| rule.contains("'netfence.io/template' in self.labels"))
    );

    let template = |labels: Value, flows: Value| {
        json!({
            "apiVersion": "netfence.io/v1alpha1",
            "kind": "IsolationTemplate",
            "metadata": {"name": "t"},
            "spec": {
                "namespaceSelector": {},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"tiers": [{"name": "web", "podSelector": {}}], "flows": flows},
                },
            },
        })
    };
    let errors = |object: &Value| -> Vec<String> {
        match Validator::new().validate(&schema, object, None) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    };
    assert_eq!(
        errors(&template(json!({"team": "a"}), json!([]))),
        Vec::<String>::new()
    );
    let reserved = errors(&template(json!({"netfence.io/template": "x"}), json!([])));
    assert!(
        reserved.len() == 1 && reserved[0].contains("netfence sets the labels"),
        "{reserved:?}"
    );
    let unknown = errors(&template(json!({}), json!([{"from": "web", "to": "db"}])));
    assert!(
        unknown.len() == 1 && unknown[0].contains("every flow's from and to"),
        "{unknown:?}"
    );
}
