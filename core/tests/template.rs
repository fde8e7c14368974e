//! IsolationTemplate validation: each rule, with a template that breaks it and the error a user
//! reads. If one fails, a broken template either generates resources the API server would refuse,
//! or its status does not say which field to fix.

use netfence_core::ValidatedTemplate;
use netfence_crd::IsolationTemplate;
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "apiVersion": "netfence.io/v1alpha1",
        "kind": "IsolationTemplate",
        "metadata": {"name": "microservice-team"},
        "spec": {
            "namespaceSelector": {"matchLabels": {"netfence.io/profile": "team"}},
            "template": {"spec": {"tiers": [{"name": "web", "podSelector": {}}]}},
        },
    })
}

fn errors(template: &Value) -> Vec<String> {
    let template: IsolationTemplate =
        serde_json::from_value(template.clone()).expect("the template deserializes");
    match ValidatedTemplate::try_from(&template) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

/// The generated resources are named after the template unless isolationName says otherwise.
#[test]
fn isolation_name_defaults_to_the_template_name() {
    let template: IsolationTemplate = serde_json::from_value(base()).expect("template");
    let valid = ValidatedTemplate::try_from(&template).expect("valid");
    assert_eq!(valid.isolation_name(), "microservice-team");
    assert!(valid.excludes("kube-system") && valid.excludes("kube-node-lease"));
    assert!(!valid.excludes("team-a"));
}

/// A template name that cannot name a NamespaceIsolation needs isolationName, and says so.
#[test]
fn a_long_template_name_needs_an_isolation_name() {
    let mut template = base();
    template["metadata"]["name"] = json!("platform.example.com-microservice-team");
    assert_eq!(
        errors(&template),
        [
            "metadata.name: \"platform.example.com-microservice-team\" is not a DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a letter or digit; it names the generated NamespaceIsolations: set spec.isolationName to a DNS-1123 label"
        ]
    );
    template["spec"]["isolationName"] = json!("baseline");
    assert_eq!(errors(&template), Vec::<String>::new());
}

/// The labels netfence sets cannot be set by the template; label keys and values are checked;
/// spec errors are reported below `spec.template.spec`; excluded names must be namespace names;
/// the selector's operators are checked.
#[test]
fn every_field_is_checked_with_its_path() {
    let mut template = base();
    template["spec"]["template"]["metadata"] = json!({
        "labels": {"netfence.io/template": "x", "team": "-bad"},
        "annotations": {"bad key!": "x"},
    });
    template["spec"]["template"]["spec"]["flows"] = json!([{"from": "web", "to": "db"}]);
    template["spec"]["excludeNamespaces"] = json!(["Team_A"]);
    template["spec"]["namespaceSelector"] =
        json!({"matchExpressions": [{"key": "team", "operator": "in", "values": ["a"]}]});
    let found = errors(&template);
    let paths: Vec<&str> = found
        .iter()
        .map(|error| error.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        paths,
        [
            "spec.namespaceSelector.matchExpressions[0].operator",
            "spec.excludeNamespaces[0]",
            "spec.template.metadata.labels.netfence.io/template",
            "spec.template.metadata.labels.team",
            "spec.template.metadata.annotations.bad key!",
            "spec.template.spec.flows[0].to",
        ],
        "{found:#?}"
    );
    assert!(
        found[2].ends_with("is set by netfence on every generated NamespaceIsolation; remove it")
    );
}

/// `namespaceSelector` is required: selecting every namespace must be written as `{}`.
#[test]
fn the_selector_is_required() {
    let mut template = base();
    template["spec"]
        .as_object_mut()
        .map(|spec| spec.remove("namespaceSelector"));
    let parsed: Result<IsolationTemplate, _> = serde_json::from_value(template.clone());
    assert!(
        parsed.is_err(),
        "a template without namespaceSelector was read"
    );
    template["spec"]["namespaceSelector"] = json!({});
    assert_eq!(errors(&template), Vec::<String>::new());
}
