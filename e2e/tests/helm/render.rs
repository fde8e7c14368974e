//! What the chart renders: `helm lint --strict`, default values against `kubectl kustomize
//! config/default`, the table of values in docs/install.md, and the GitOps examples' values.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

use clap::Parser as _;
use netfence::cli::{Cli, Command as NetfenceCommand, run::Args};
use serde_json::{Value, json};

use super::{Helm, chart, helms, helms_and_kubectl, parse, repository, strings};

/// `(kind, namespace, name)` of an object.
type Identity = (String, String, String);

fn identity(object: &Value) -> Identity {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (
        text("/kind"),
        text("/metadata/namespace"),
        text("/metadata/name"),
    )
}

fn by_identity(objects: &[Value]) -> BTreeMap<Identity, Value> {
    objects
        .iter()
        .map(|object| (identity(object), object.clone()))
        .collect()
}

/// Where `left` and `right` differ, as `path: left != right` lines.
fn differences(left: &Value, right: &Value, path: &str, found: &mut Vec<String>) {
    match (left, right) {
        (Value::Object(left), Value::Object(right)) => {
            let keys: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
            for key in keys {
                let here = format!("{path}/{key}");
                match (left.get(key), right.get(key)) {
                    (Some(a), Some(b)) => differences(a, b, &here, found),
                    (a, b) => found.push(format!("{here}: {} != {}", show(a), show(b))),
                }
            }
        }
        (Value::Array(left_items), Value::Array(right_items))
            if left_items.len() == right_items.len() =>
        {
            for (index, (a, b)) in left_items.iter().zip(right_items).enumerate() {
                differences(a, b, &format!("{path}/{index}"), found);
            }
        }
        // A number is a number to the API server: `65535.0` (how `netfence crd` writes a
        // bound) is kustomize's `65535`.
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        _ if left != right => found.push(format!("{path}: {left} != {right}")),
        _ => {}
    }
}

fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "(absent)".to_owned(), Value::to_string)
}

/// What `helm template` rendered for one set of values.
pub(super) struct Rendered {
    objects: Vec<Value>,
    source: String,
}

impl Rendered {
    pub(super) fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
    }

    pub(super) fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name).unwrap_or_else(|| {
            panic!(
                "{}: no {kind} {name} among {:?}",
                self.source,
                self.objects.iter().map(identity).collect::<Vec<_>>()
            )
        })
    }

    pub(super) fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|object| object["kind"] == kind)
            .collect()
    }

    pub(super) fn deployment(&self) -> &Value {
        let deployments = self.of_kind("Deployment");
        assert_eq!(deployments.len(), 1, "{}: one Deployment", self.source);
        deployments[0]
    }

    pub(super) fn pod(&self) -> &Value {
        &self.deployment()["spec"]["template"]["spec"]
    }

    pub(super) fn container(&self) -> &Value {
        &self.pod()["containers"][0]
    }

    pub(super) fn args(&self) -> Vec<String> {
        strings(&self.container()["args"])
    }

    /// The Deployment's arguments as `netfence run` reads them: an argument the binary refuses
    /// would crash-loop every pod.
    pub(super) fn run_args(&self) -> Args {
        let arguments = std::iter::once("netfence".to_owned()).chain(self.args());
        let cli = Cli::try_parse_from(arguments).unwrap_or_else(|error| {
            panic!(
                "{}: netfence refuses the Deployment's arguments: {error}",
                self.source
            )
        });
        match cli.command {
            NetfenceCommand::Run(args) => args,
            _ => panic!(
                "{}: the Deployment does not run `netfence run`",
                self.source
            ),
        }
    }

    /// Every object read into its Kubernetes type, refusing unknown fields: a value placed at
    /// the wrong depth renders a field the API server would drop or refuse.
    pub(super) fn check_types(&self) {
        use k8s_openapi::api::{
            admissionregistration::v1::{
                ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
            },
            apps::v1::Deployment,
            core::v1::{Service, ServiceAccount},
            policy::v1::PodDisruptionBudget,
            rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
        };
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        fn check<T: serde::de::DeserializeOwned>(value: &Value) -> Result<(), String> {
            netfence::manifests::typed::<T>(value)
                .map(|_| ())
                .map_err(|error| format!("{}: {}", error.path, error.message))
        }
        for object in &self.objects {
            let checked = match object["kind"].as_str().unwrap_or_default() {
                "Deployment" => check::<Deployment>(object),
                "Service" => check::<Service>(object),
                "ServiceAccount" => check::<ServiceAccount>(object),
                "PodDisruptionBudget" => check::<PodDisruptionBudget>(object),
                "ClusterRole" => check::<ClusterRole>(object),
                "ClusterRoleBinding" => check::<ClusterRoleBinding>(object),
                "Role" => check::<Role>(object),
                "RoleBinding" => check::<RoleBinding>(object),
                "ValidatingAdmissionPolicy" => check::<ValidatingAdmissionPolicy>(object),
                "ValidatingAdmissionPolicyBinding" => {
                    check::<ValidatingAdmissionPolicyBinding>(object)
                }
                "CustomResourceDefinition" => check::<CustomResourceDefinition>(object),
                "ClusterBaseline" => check::<netfence_crd::ClusterBaseline>(object),
                // No Rust type: operator/tests/deploy.rs checks config/prometheus's fields, and
                // the case below checks this one's.
                "ServiceMonitor" => Ok(()),
                other => Err(format!("a kind the chart should not render: {other}")),
            };
            if let Err(error) = checked {
                panic!("{}: {:?}: {error}", self.source, identity(object));
            }
        }
    }
}

pub(super) fn render(helm: &Helm, release: &str, values: &Value) -> Rendered {
    let source = format!("helm {} template {release} with {values}", helm.version);
    let objects = helm
        .template(release, values)
        .unwrap_or_else(|error| panic!("{source} failed:\n{error}"));
    let rendered = Rendered { objects, source };
    rendered.check_types();
    rendered
}

/// If this fails, `helm lint --strict` warns about the chart: Artifact Hub, Argo CD and Flux
/// users meet the same warning, and a chart repository's CI refuses it.
#[test]
fn the_chart_lints_strictly_with_helm_3_and_4() {
    for helm in helms("the_chart_lints_strictly_with_helm_3_and_4") {
        let printed = helm.ok(&["lint", "--strict", &chart().to_string_lossy()]);
        assert!(
            printed.contains("1 chart(s) linted, 0 chart(s) failed")
                && !printed.contains("[WARNING]")
                && !printed.contains("[ERROR]"),
            "helm {} lint --strict:\n{printed}",
            helm.version
        );
    }
}

/// If this fails, `helm install` with default values installs something else than
/// `kubectl apply -k config/default`: a hardening field, an RBAC grant or the sizing is defined
/// twice and the two drifted apart. The one object config/default has and the chart does not is
/// the Namespace, which Helm installs into (`--create-namespace`, Argo CD's
/// managedNamespaceMetadata, or one applied first with its Pod Security labels).
#[test]
fn default_values_render_what_config_default_installs() {
    let test = "default_values_render_what_config_default_installs";
    let helms = helms_and_kubectl(test);
    if helms.is_empty() {
        return;
    }
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(repository().join("config/default"))
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl kustomize config/default failed"
    );
    let mut kustomized = by_identity(&parse(
        "kubectl kustomize config/default",
        &String::from_utf8_lossy(&output.stdout),
    ));
    let namespace = kustomized
        .remove(&(
            "Namespace".to_owned(),
            String::new(),
            "netfence-system".to_owned(),
        ))
        .expect("config/default creates netfence-system");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
        "docs/install.md's Helm install labels the namespace as config/default does"
    );
    for helm in &helms {
        let rendered = render(helm, "netfence", &json!({}));
        let charted = by_identity(&rendered.objects);
        let mut problems = Vec::new();
        for key in kustomized
            .keys()
            .chain(charted.keys())
            .collect::<BTreeSet<_>>()
        {
            match (kustomized.get(key), charted.get(key)) {
                (Some(expected), Some(found)) => {
                    differences(expected, found, &format!("{key:?}"), &mut problems);
                }
                (Some(_), None) => problems.push(format!("{key:?}: only in config/default")),
                (None, _) => problems.push(format!("{key:?}: only in the chart")),
            }
        }
        assert!(
            problems.is_empty(),
            "helm {} template (default values) differs from kubectl kustomize config/default (left):\n{}",
            helm.version,
            problems.join("\n")
        );
        assert_eq!(charted.len(), 15, "{:?}", charted.keys());
    }
}

/// The keys of values.yaml a user sets: every scalar, list and empty map, and `resources` whole.
fn value_keys(value: &Value, prefix: &str, keys: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) if !map.is_empty() && prefix != "resources" => {
            for (key, inner) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                value_keys(inner, &path, keys);
            }
        }
        _ => {
            keys.insert(prefix.to_owned());
        }
    }
}

/// If this fails, the table of values in docs/install.md and values.yaml disagree: a value nobody can
/// find, or a row for a value that no longer exists.
#[test]
fn the_readme_lists_every_value() {
    let text = std::fs::read_to_string(chart().join("values.yaml")).expect("values.yaml");
    let values: Value = serde_saphyr::from_str(&text).expect("values.yaml parses");
    let mut keys = BTreeSet::new();
    value_keys(&values, "", &mut keys);
    let readme =
        std::fs::read_to_string(repository().join("docs/install.md")).expect("docs/install.md");
    let marker = "<!-- the chart's values: e2e/tests/helm/ checks this table -->";
    let table = readme
        .split_once(marker)
        .unwrap_or_else(|| panic!("docs/install.md has no {marker}"))
        .1;
    let listed: BTreeSet<String> = table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|line| line.split_once('`'))
        .map(|(key, _)| key.to_owned())
        .collect();
    assert_eq!(
        listed, keys,
        "the table of docs/install.md (left) and values.yaml (right) list different values"
    );
}

/// If this fails, Argo CD or Flux would refuse the values of a GitOps example when it renders
/// the chart (`examples/gitops/*/netfence-helm.yaml`).
#[test]
fn the_gitops_examples_values_render() {
    let mut examples = Vec::new();
    for document in netfence_e2e::example_documents("gitops/argocd/netfence-helm.yaml")
        .expect("the Argo CD example")
    {
        if let Some(values) = document.pointer("/spec/source/helm/valuesObject") {
            examples.push(("Argo CD", values.clone()));
        }
    }
    for document in
        netfence_e2e::example_documents("gitops/flux/netfence-helm.yaml").expect("the Flux example")
    {
        if document["kind"] == "HelmRelease" {
            examples.push(("Flux", document["spec"]["values"].clone()));
        }
    }
    assert_eq!(examples.len(), 2, "one set of values in each example");
    for helm in helms("the_gitops_examples_values_render") {
        for (tool, values) in &examples {
            eprintln!("helm {}: {tool}'s values", helm.version);
            let rendered = render(&helm, "netfence", values);
            assert_eq!(
                rendered.deployment()["spec"]["replicas"],
                values["replicas"]
            );
        }
    }
}
