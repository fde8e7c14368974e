//! The Helm chart (`config/helm/netfence/`) with the real `helm`, 3 and 4, built from their Go
//! modules (`e2e/upstream/helm3`, `helm4`) and cached like the control plane:
//!
//! ```text
//! helm lint --strict                   (3, 4) -> no warning
//! helm template, default values        (3, 4) == kubectl kustomize config/default, field for field
//!                                               (but its Namespace: Helm installs into one)
//! helm template, each value            (3, 4) -> the objects say what the value says, and
//!                                               netfence's own CLI parses the Deployment's args
//! helm template, bad or clashing values (3, 4) -> refused, naming the value
//! real control plane (NETFENCE_E2E_KUBECONFIG):
//!   helm 4 install + upgrade, every namespace   |  helm 3 install + upgrade, watchNamespace
//!   -> `netfence run` (the binary) with the Deployment's args and env and the chart's
//!      ServiceAccount token: a NamespaceIsolation becomes Ready, a tenant's edit of a generated
//!      policy is refused by the chart's admission policy, and once an upgrade turns that policy
//!      off an edit is restored; no request of the account is refused by RBAC (audit log)
//!   -> helm uninstall leaves the CRDs and the resources (Helm's rule)
//! ```
//!
//! Rendering needs no cluster and runs on both targets. Installing runs on the real control plane
//! only: the sandbox serves the kinds netfence reads and writes, not the Deployments, Secrets
//! (Helm's release records), RBAC objects and admission policies a chart installs.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use clap::Parser as _;
use netfence::cli::{Cli, Command as NetfenceCommand, run::Args};
use serde_json::{Value, json};

const CHART: &str = "config/helm/netfence";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    repository().join(CHART)
}

/// One `helm` of the pins, with a home of its own (no repository, cache or plugin of the
/// machine's user is read or written).
struct Helm {
    program: PathBuf,
    version: String,
    home: tempfile::TempDir,
}

impl Helm {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        for (variable, folder) in [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ] {
            command.env(variable, self.home.path().join(folder));
        }
        command
            .env_remove("KUBECONFIG")
            .env_remove("HELM_NAMESPACE");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("helm {} does not run: {error}", self.version))
    }

    /// Run, require success, return what it printed (stdout, then stderr).
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "helm {} {args:?} failed:\n{printed}",
            self.version
        );
        printed
    }

    /// `helm template RELEASE CHART -n netfence-system --include-crds -f VALUES`: the objects, or
    /// what helm printed when it refused.
    fn template(&self, release: &str, values: &Value) -> Result<Vec<Value>, String> {
        let file = values_file(values);
        let output = self.run(&[
            "template",
            release,
            &chart().to_string_lossy(),
            "--namespace",
            "netfence-system",
            "--include-crds",
            "--values",
            &file.path().to_string_lossy(),
        ]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "{}{}",
                stdout,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(parse(&format!("helm {} template", self.version), &stdout))
    }
}

/// Values as a file for `--values` (JSON is YAML).
fn values_file(values: &Value) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("a values file");
    file.write_all(values.to_string().as_bytes())
        .expect("the values are written");
    file
}

fn parse(source: &str, text: &str) -> Vec<Value> {
    netfence::manifests::parse(source, text)
        .unwrap_or_else(|error| panic!("{source} printed YAML that does not parse: {error}"))
        .into_iter()
        .map(|document| document.value)
        .collect()
}

/// Held while helm is found or built.
static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Helm 3 and 4, built on first use; none, with the skip said, when Go is not installed (the
/// README's test command needs only the Rust toolchain).
fn helms(test: &str) -> Vec<Helm> {
    let go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !go {
        netfence_e2e::skip(
            test,
            "Go is not installed: helm is built from its Go module (install Go 1.26)",
        );
        return Vec::new();
    }
    // One build at a time: the tests run on threads of one process, and the first builds what
    // the others then find in the cache.
    let _building = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    [3, 4]
        .into_iter()
        .map(|major| {
            let (program, version) = netfence_e2e::cluster::build::ensure_helm(major)
                .unwrap_or_else(|error| panic!("Helm {major} does not build: {error:#}"));
            Helm {
                program,
                version,
                home: tempfile::tempdir().expect("a helm home"),
            }
        })
        .collect()
}

/// [`helms`], for a test that needs kubectl too; none, with the skip said, without it.
fn helms_and_kubectl(test: &str) -> Vec<Helm> {
    let helms = helms(test);
    if helms.is_empty() {
        return helms;
    }
    let kubectl = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !kubectl {
        netfence_e2e::skip(test, "kubectl is not installed");
        return Vec::new();
    }
    helms
}

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
struct Rendered {
    objects: Vec<Value>,
    source: String,
}

impl Rendered {
    fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name).unwrap_or_else(|| {
            panic!(
                "{}: no {kind} {name} among {:?}",
                self.source,
                self.objects.iter().map(identity).collect::<Vec<_>>()
            )
        })
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|object| object["kind"] == kind)
            .collect()
    }

    fn deployment(&self) -> &Value {
        let deployments = self.of_kind("Deployment");
        assert_eq!(deployments.len(), 1, "{}: one Deployment", self.source);
        deployments[0]
    }

    fn pod(&self) -> &Value {
        &self.deployment()["spec"]["template"]["spec"]
    }

    fn container(&self) -> &Value {
        &self.pod()["containers"][0]
    }

    fn args(&self) -> Vec<String> {
        strings(&self.container()["args"])
    }

    /// The Deployment's arguments as `netfence run` reads them: an argument the binary refuses
    /// would crash-loop every pod.
    fn run_args(&self) -> Args {
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
    fn check_types(&self) {
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

fn render(helm: &Helm, release: &str, values: &Value) -> Rendered {
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
        "the README's Helm install labels the namespace as config/default does"
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

/// The strings of a JSON list (none for anything else).
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// One value (or a few that go together), rendered, and what the objects must then say.
struct Case {
    name: &'static str,
    release: &'static str,
    values: Value,
    check: fn(&Rendered),
}

#[allow(clippy::too_many_lines)] // one table: each case is short, and reads best beside the others
fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "image by tag, pull policy and secrets",
            release: "netfence",
            values: json!({"image": {
                "registry": "registry.example.com", "repository": "platform/netfence", "tag": "0.1.1",
                "pullPolicy": "Always", "pullSecrets": [{"name": "regcred"}],
            }}),
            check: |rendered| {
                let container = rendered.container();
                assert_eq!(
                    container["image"],
                    "registry.example.com/platform/netfence:0.1.1"
                );
                assert_eq!(container["imagePullPolicy"], "Always");
                assert_eq!(
                    rendered.pod()["imagePullSecrets"],
                    json!([{"name": "regcred"}])
                );
            },
        },
        Case {
            name: "image by digest, without a registry",
            release: "netfence",
            values: json!({"image": {"registry": "", "digest": format!("sha256:{}", "a".repeat(64))}}),
            check: |rendered| {
                assert_eq!(
                    rendered.container()["image"],
                    format!("netfence/netfence@sha256:{}", "a".repeat(64))
                );
            },
        },
        Case {
            name: "one replica without leader election",
            release: "netfence",
            values: json!({"replicas": 1, "leaderElection": {"enabled": false}}),
            check: |rendered| {
                assert_eq!(rendered.deployment()["spec"]["replicas"], 1);
                assert!(!rendered.run_args().leader_election);
                assert_eq!(
                    rendered.deployment()["spec"]["strategy"],
                    json!({"type": "Recreate"}),
                    "without a Lease, a surge pod would reconcile beside the old one"
                );
                assert!(
                    rendered.of_kind("PodDisruptionBudget").is_empty(),
                    "a budget of one replica would block every node drain"
                );
            },
        },
        Case {
            name: "three replicas, two kept through drains",
            release: "netfence",
            values: json!({"replicas": 3, "podDisruptionBudget": {"minAvailable": 2}}),
            check: |rendered| {
                assert_eq!(rendered.deployment()["spec"]["replicas"], 3);
                assert!(rendered.run_args().leader_election);
                assert_eq!(
                    rendered.get("PodDisruptionBudget", "netfence")["spec"]["minAvailable"],
                    2
                );
            },
        },
        Case {
            // Helm merges values into the defaults: a key of the defaults goes with `null`.
            name: "resources",
            release: "netfence",
            values: json!({"resources": {
                "requests": {"cpu": "250m", "memory": "256Mi"},
                "limits": {"cpu": null, "memory": "1Gi"},
            }}),
            check: |rendered| {
                assert_eq!(
                    rendered.container()["resources"],
                    json!({"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}})
                );
            },
        },
        Case {
            name: "text logs on another metrics port",
            release: "netfence",
            values: json!({"logFormat": "text", "metrics": {"port": 9090}}),
            check: |rendered| {
                let args = rendered.run_args();
                assert!(matches!(
                    args.log_format,
                    netfence::cli::run::LogFormat::Text
                ));
                assert_eq!(args.metrics_addr.port(), 9090);
                assert_eq!(rendered.container()["ports"][0]["containerPort"], 9090);
                let service = rendered.get("Service", "netfence-metrics");
                assert_eq!(service["spec"]["ports"][0]["port"], 9090);
                assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
            },
        },
        Case {
            name: "no metrics Service",
            release: "netfence",
            values: json!({"metrics": {"service": {"enabled": false}}}),
            check: |rendered| assert!(rendered.of_kind("Service").is_empty()),
        },
        Case {
            name: "a ServiceMonitor",
            release: "netfence",
            values: json!({"metrics": {"serviceMonitor": {
                "enabled": true, "interval": "15s", "labels": {"release": "kube-prometheus-stack"},
            }}}),
            check: |rendered| {
                let monitor = rendered.get("ServiceMonitor", "netfence");
                assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
                assert_eq!(monitor["metadata"]["namespace"], "netfence-system");
                assert_eq!(
                    monitor["metadata"]["labels"]["release"],
                    "kube-prometheus-stack"
                );
                assert_eq!(
                    monitor["spec"]["endpoints"],
                    json!([{"port": "metrics", "path": "/metrics", "interval": "15s"}])
                );
                assert_eq!(
                    monitor["spec"]["namespaceSelector"],
                    json!({"matchNames": ["netfence-system"]})
                );
                // It selects the metrics Service, whose port it names.
                let service = rendered.get("Service", "netfence-metrics");
                let labels = &service["metadata"]["labels"];
                for (key, value) in monitor["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .expect("matchLabels")
                {
                    assert_eq!(&labels[key], value, "the ServiceMonitor misses the Service");
                }
                assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
            },
        },
        Case {
            name: "scheduling",
            release: "netfence",
            values: json!({
                "priorityClassName": "",
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"},
                    ]}],
                }}},
                "topologySpreadConstraints": [],
            }),
            check: |rendered| {
                let pod = rendered.pod();
                assert!(pod.get("priorityClassName").is_none());
                assert!(pod.get("topologySpreadConstraints").is_none());
                assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
                assert_eq!(
                    pod["tolerations"],
                    json!([{"key": "CriticalAddonsOnly", "operator": "Exists"}])
                );
                assert_eq!(
                    pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                        ["nodeSelectorTerms"][0]["matchExpressions"][0]["operator"],
                    "DoesNotExist"
                );
            },
        },
        Case {
            name: "extra arguments and environment, pod annotations and labels",
            release: "netfence",
            values: json!({
                "extraArgs": ["--concurrency=64"],
                "extraEnv": [{"name": "RUST_LOG", "value": "netfence=debug"}],
                "podAnnotations": {"example.com/team": "platform"},
                "podLabels": {"example.com/team": "platform"},
            }),
            check: |rendered| {
                assert_eq!(rendered.run_args().concurrency, 64);
                let env = rendered.container()["env"].as_array().expect("env").clone();
                assert_eq!(env.len(), 4, "the chart's three, then the extra one");
                assert_eq!(
                    env[3],
                    json!({"name": "RUST_LOG", "value": "netfence=debug"})
                );
                let template = &rendered.deployment()["spec"]["template"]["metadata"];
                assert_eq!(template["annotations"]["example.com/team"], "platform");
                assert_eq!(
                    template["annotations"]["kubectl.kubernetes.io/default-container"],
                    "manager"
                );
                assert_eq!(template["labels"]["example.com/team"], "platform");
                assert_eq!(
                    rendered.deployment()["spec"]["selector"],
                    json!({"matchLabels": {
                        "app.kubernetes.io/name": "netfence",
                        "app.kubernetes.io/component": "controller",
                    }}),
                    "the selector is immutable: a pod label must never change it"
                );
            },
        },
        Case {
            name: "a namespace-scoped install",
            release: "netfence",
            values: json!({"watchNamespace": "team-a"}),
            check: |rendered| {
                assert_eq!(rendered.run_args().namespace.as_deref(), Some("team-a"));
                assert!(rendered.of_kind("ClusterRole").is_empty());
                assert!(rendered.of_kind("ClusterRoleBinding").is_empty());
                let role = rendered
                    .of_kind("Role")
                    .into_iter()
                    .find(|role| role["metadata"]["namespace"] == "team-a")
                    .expect("a Role in the watched namespace");
                let resources: BTreeSet<String> = role["rules"]
                    .as_array()
                    .expect("rules")
                    .iter()
                    .flat_map(|rule| strings(&rule["resources"]))
                    .collect();
                for cluster_wide in ["isolationtemplates", "clusterbaselines"] {
                    assert!(
                        !resources.contains(cluster_wide),
                        "{cluster_wide} in a Role"
                    );
                }
                // Of Namespaces, the watched one, read by name (a Role in a namespace grants
                // reading that namespace).
                let namespaces: Vec<&Value> = role["rules"]
                    .as_array()
                    .expect("rules")
                    .iter()
                    .filter(|rule| strings(&rule["resources"]).contains(&"namespaces".to_owned()))
                    .collect();
                assert_eq!(
                    namespaces,
                    [
                        &json!({"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["team-a"], "verbs": ["get"]})
                    ]
                );
                for needed in [
                    "namespaceisolations",
                    "namespaceisolations/status",
                    "networkpolicies",
                    "events",
                ] {
                    assert!(resources.contains(needed), "the Role lacks {needed}");
                }
                let binding = rendered
                    .of_kind("RoleBinding")
                    .into_iter()
                    .find(|binding| binding["metadata"]["namespace"] == "team-a")
                    .expect("a RoleBinding in the watched namespace");
                assert_eq!(
                    binding["subjects"],
                    json!([{"kind": "ServiceAccount", "name": "netfence", "namespace": "netfence-system"}])
                );
                // Named after the watched namespace too: one release of the same name per team.
                assert_eq!(
                    rendered.get(
                        "ValidatingAdmissionPolicyBinding",
                        "netfence-team-a-generated-policies"
                    )["spec"]["matchResources"],
                    json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}})
                );
                assert!(
                    rendered
                        .find(
                            "ValidatingAdmissionPolicy",
                            "netfence-team-a-generated-policies"
                        )
                        .is_some()
                );
                assert_eq!(
                    rendered.get("Role", "netfence-team-a-dns")["metadata"]["namespace"],
                    "kube-system"
                );
            },
        },
        Case {
            name: "a release named netfence-prod keeps its name",
            release: "netfence-prod",
            values: json!({}),
            check: |rendered| {
                assert_eq!(rendered.deployment()["metadata"]["name"], "netfence-prod");
                assert_eq!(rendered.run_args().lease_name, "netfence-prod");
            },
        },
        Case {
            name: "keys given twice render once; names that look like numbers stay strings",
            release: "netfence",
            values: json!({
                "podAnnotations": {"kubectl.kubernetes.io/default-container": "sidecar"},
                "metrics": {"serviceMonitor": {"enabled": true, "labels": {
                    "app.kubernetes.io/name": "other", "release": "prometheus",
                }}},
                "priorityClassName": "123",
                "enabled": true,
            }),
            check: |rendered| {
                assert_eq!(
                    rendered.deployment()["spec"]["template"]["metadata"]["annotations"],
                    json!({"kubectl.kubernetes.io/default-container": "sidecar"}),
                    "your annotation wins"
                );
                assert_eq!(
                    rendered.get("ServiceMonitor", "netfence")["metadata"]["labels"],
                    json!({"app.kubernetes.io/name": "netfence", "app.kubernetes.io/part-of": "netfence", "release": "prometheus"}),
                    "the chart's labels win"
                );
                assert_eq!(rendered.pod()["priorityClassName"], json!("123"));
            },
        },
        Case {
            name: "a release of another name",
            release: "platform",
            values: json!({}),
            check: |rendered| {
                let name = "platform-netfence";
                assert_eq!(rendered.deployment()["metadata"]["name"], name);
                assert_eq!(rendered.run_args().lease_name, name);
                assert_eq!(
                    rendered.get("Role", &format!("{name}-leader-election"))["rules"][1]["resourceNames"],
                    json!([name])
                );
                assert_eq!(rendered.pod()["serviceAccountName"], name);
                assert!(
                    rendered
                        .find("Service", &format!("{name}-metrics"))
                        .is_some()
                );
                assert_eq!(
                    rendered.get("ClusterRoleBinding", name)["subjects"][0]["name"],
                    name
                );
                let policy = rendered.get(
                    "ValidatingAdmissionPolicy",
                    &format!("{name}-generated-policies"),
                );
                assert!(
                    policy["spec"]["matchConditions"][1]["expression"]
                        .as_str()
                        .is_some_and(|expression| expression
                            .contains(&format!("'system:serviceaccount:netfence-system:{name}'"))),
                    "the admission policy lets the release's ServiceAccount through: {policy}"
                );
                assert_eq!(
                    rendered.get(
                        "ValidatingAdmissionPolicyBinding",
                        &format!("{name}-generated-policies")
                    )["spec"]["policyName"],
                    format!("{name}-generated-policies")
                );
            },
        },
        Case {
            name: "an existing ServiceAccount",
            release: "netfence",
            values: json!({"serviceAccount": {"create": false, "name": "netfence-operator"}}),
            check: |rendered| {
                assert!(rendered.of_kind("ServiceAccount").is_empty());
                assert_eq!(rendered.pod()["serviceAccountName"], "netfence-operator");
                for kind in ["ClusterRoleBinding", "RoleBinding"] {
                    for binding in rendered.of_kind(kind) {
                        assert_eq!(binding["subjects"][0]["name"], "netfence-operator");
                    }
                }
                let policy =
                    rendered.get("ValidatingAdmissionPolicy", "netfence-generated-policies");
                assert!(
                    policy
                        .to_string()
                        .contains("system:serviceaccount:netfence-system:netfence-operator")
                );
            },
        },
        Case {
            name: "ServiceAccount annotations (workload identity)",
            release: "netfence",
            values: json!({"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/netfence"}}}),
            check: |rendered| {
                assert_eq!(
                    rendered.get("ServiceAccount", "netfence")["metadata"]["annotations"],
                    json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/netfence"})
                );
            },
        },
        Case {
            name: "no RBAC, no admission policy",
            release: "netfence",
            values: json!({"rbac": {"create": false}, "admissionPolicy": {"enabled": false}}),
            check: |rendered| {
                for kind in [
                    "ClusterRole",
                    "ClusterRoleBinding",
                    "Role",
                    "RoleBinding",
                    "ValidatingAdmissionPolicy",
                    "ValidatingAdmissionPolicyBinding",
                ] {
                    assert!(rendered.of_kind(kind).is_empty(), "a {kind} rendered");
                }
                assert!(rendered.find("ServiceAccount", "netfence").is_some());
            },
        },
        Case {
            name: "a ClusterBaseline",
            release: "netfence",
            values: json!({"clusterBaseline": {"enabled": true, "name": "zero-trust", "spec": {
                "namespaceSelector": {}, "excludeNamespaces": ["ingress-nginx"],
                "isolate": ["Ingress", "Egress"], "dns": {}, "sameNamespace": "Allow",
            }}}),
            check: |rendered| {
                let baseline = rendered.get("ClusterBaseline", "zero-trust");
                let typed: netfence_crd::ClusterBaseline =
                    netfence::manifests::typed(baseline).expect("a ClusterBaseline");
                assert_eq!(typed.spec.exclude_namespaces, ["ingress-nginx"]);
                assert_eq!(baseline["spec"]["sameNamespace"], "Allow");
            },
        },
    ]
}

/// If this fails, a value of the chart does not do what the README's table says: each case
/// renders a few values with Helm 3 and 4 and reads the objects, and netfence's own CLI parses the
/// Deployment's arguments (an argument it refused would crash-loop every pod).
#[test]
fn each_value_renders_what_it_says() {
    for helm in helms("each_value_renders_what_it_says") {
        for case in cases() {
            eprintln!("helm {}: {}", helm.version, case.name);
            let rendered = render(&helm, case.release, &case.values);
            (case.check)(&rendered);
        }
    }
}

/// If this fails, a misspelt or mistyped value is silently ignored (the user believes it took
/// effect), or values that cannot work together install an operator that cannot work. Each is
/// refused by `helm template` (so by install and upgrade) with the value named.
#[test]
fn bad_values_are_refused_naming_the_value() {
    let cases = [
        (json!({"replicas": "two"}), "replicas"),
        (json!({"imag": {"tag": "1"}}), "imag"),
        (json!({"image": {"tags": "1"}}), "tags"),
        (json!({"logFormat": "xml"}), "logFormat"),
        (json!({"image": {"digest": "latest"}}), "digest"),
        (json!({"watchNamespace": "Team_A"}), "watchNamespace"),
        (json!({"extraArgs": ["concurrency=64"]}), "extraArgs"),
        (json!({"metrics": {"port": 70000}}), "port"),
        (
            json!({"podAnnotations": {"example.com/count": 3}}),
            "podAnnotations",
        ),
        (
            json!({"replicas": 2, "leaderElection": {"enabled": false}}),
            "enable leaderElection or set replicas: 1",
        ),
        (
            json!({"metrics": {"service": {"enabled": false}, "serviceMonitor": {"enabled": true}}}),
            "metrics.serviceMonitor.enabled needs metrics.service.enabled",
        ),
        (
            json!({"watchNamespace": "team-a", "clusterBaseline": {"enabled": true, "spec": {"namespaceSelector": {}}}}),
            "clusterBaseline.enabled needs a cluster-wide install",
        ),
        (
            json!({"clusterBaseline": {"enabled": true}}),
            "clusterBaseline.spec.namespaceSelector is required",
        ),
        (
            json!({"podLabels": {"app.kubernetes.io/component": "x"}}),
            "podLabels.app.kubernetes.io/component",
        ),
        (
            json!({"watchNamespace": "netfence-system"}),
            "watchNamespace is the release's namespace",
        ),
        (
            json!({"podDisruptionBudget": {"minAvailable": 2}}),
            "podDisruptionBudget.minAvailable is 2 with 2 replicas",
        ),
        (
            json!({"serviceAccount": {"create": false}}),
            "serviceAccount.name is empty",
        ),
        (
            json!({"extraArgs": ["--concurrency=64", "--log-format=text"]}),
            "extraArgs: --log-format is set by the chart",
        ),
        (
            json!({"metrics": {"serviceMonitor": {"interval": "30s30s"}}}),
            "interval",
        ),
        (json!({"fullnameOverride": "123"}), "fullnameOverride"),
    ];
    for helm in helms("bad_values_are_refused_naming_the_value") {
        for (values, named) in &cases {
            match helm.template("netfence", values) {
                Ok(_) => panic!("helm {} rendered {values}", helm.version),
                Err(printed) => assert!(
                    printed.contains(named),
                    "helm {} refused {values} without naming {named}:\n{printed}",
                    helm.version
                ),
            }
        }
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

/// If this fails, the README's table of values and values.yaml disagree: a value nobody can
/// find, or a row for a value that no longer exists.
#[test]
fn the_readme_lists_every_value() {
    let text = std::fs::read_to_string(chart().join("values.yaml")).expect("values.yaml");
    let values: Value = serde_saphyr::from_str(&text).expect("values.yaml parses");
    let mut keys = BTreeSet::new();
    value_keys(&values, "", &mut keys);
    let readme = std::fs::read_to_string(repository().join("README.md")).expect("README.md");
    let marker = "<!-- the chart's values: e2e/tests/helm.rs checks this table -->";
    let table = readme
        .split_once(marker)
        .unwrap_or_else(|| panic!("the README has no {marker}"))
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
        "the README's table (left) and values.yaml (right) list different values"
    );
}

// ---- installed for real ---------------------------------------------------------------------

/// kubectl against the real control plane, as the cluster's admin.
struct Kubectl {
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("kubectl reads its input");
        }
        child.wait_with_output().expect("kubectl ends")
    }

    /// Run, require success, return stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args, None);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl prints JSON")
    }

    fn exists(&self, args: &[&str]) -> bool {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        self.run(&all, None).status.success()
    }

    /// `kubectl apply --server-side` of one object.
    fn apply(&self, object: &Value) {
        let output = self.run(
            &[
                "apply",
                "--server-side",
                "--field-manager=netfence-e2e",
                "-f",
                "-",
            ],
            Some(&object.to_string()),
        );
        assert!(
            output.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Poll `check` every 200 ms until it holds, for at most `limit`; the last value of `what`
/// otherwise, in the panic.
fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(()) => return,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {} s; last: {last}", limit.as_secs());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The `netfence` binary of this workspace (built if this test run has not built it yet).
fn netfence_binary() -> PathBuf {
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(repository())
        .args(["build", "--quiet", "--locked", "-p", "netfence"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p netfence failed");
    // This test is target/<profile>/deps/helm-<hash>; the binary is target/<profile>/netfence.
    let binary = std::env::current_exe()
        .expect("the test's path")
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("netfence");
    assert!(binary.is_file(), "{} was not built", binary.display());
    binary
}

/// A chart installed by one helm, and `netfence run` started as its Deployment would run it.
/// Dropping it stops the operator and removes what the test made.
struct Installed<'a> {
    helm: &'a Helm,
    kubectl: &'a Kubectl,
    release: String,
    namespace: String,
    team: String,
    operator: Option<Child>,
    log: PathBuf,
}

impl Installed<'_> {
    /// The objects' name (the release's, as the chart names them).
    fn name(&self) -> String {
        format!("{}-netfence", self.release)
    }

    fn helm(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        let kubeconfig = self.kubectl.kubeconfig.to_string_lossy().into_owned();
        all.extend(["--namespace", &self.namespace, "--kubeconfig", &kubeconfig]);
        self.helm.ok(&all)
    }

    fn deployment(&self) -> Value {
        self.kubectl
            .json(&["-n", &self.namespace, "get", "deployment", &self.name()])
    }

    /// `netfence run` with the container's arguments and environment as the kubelet would give
    /// them, `--kubeconfig` holding a token of the chart's ServiceAccount, and metrics on a
    /// loopback port of its own.
    fn start_operator(&mut self) {
        let deployment = self.deployment();
        let pod = &deployment["spec"]["template"]["spec"];
        let account = pod["serviceAccountName"]
            .as_str()
            .expect("a ServiceAccount");
        let token = self.kubectl.ok(&[
            "-n",
            &self.namespace,
            "create",
            "token",
            account,
            "--duration=1h",
        ]);
        let cluster = |field: &str| {
            self.kubectl.ok(&[
                "config",
                "view",
                "--minify",
                "--raw",
                // The authority's file, if the kubeconfig names one, as data.
                "--flatten",
                "-o",
                &format!("jsonpath={{.clusters[0].cluster.{field}}}"),
            ])
        };
        let kubeconfig = self.log.with_extension("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n  - name: c\n    cluster:\n      server: {}\n      certificate-authority-data: {}\nusers:\n  - name: operator\n    user:\n      token: {}\ncontexts:\n  - name: c\n    context: {{cluster: c, user: operator}}\ncurrent-context: c\n",
                cluster("server").trim(),
                cluster("certificate-authority-data").trim(),
                token.trim()
            ),
        )
        .expect("the operator's kubeconfig");
        let container = &pod["containers"][0];
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let args: Vec<String> = strings(&container["args"])
            .into_iter()
            .map(|arg| {
                if arg.starts_with("--metrics-addr=") {
                    format!("--metrics-addr=127.0.0.1:{port}")
                } else {
                    arg
                }
            })
            .collect();
        let mut command = Command::new(netfence_binary());
        command.args(&args).arg("--kubeconfig").arg(&kubeconfig);
        for variable in [
            "KUBECONFIG",
            "RUST_LOG",
            "NETFENCE_NAMESPACE",
            "NETFENCE_LEASE_NAME",
        ] {
            command.env_remove(variable);
        }
        for variable in container["env"].as_array().expect("env") {
            let name = variable["name"].as_str().expect("a name");
            let value = match variable["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => format!("{}-0", self.name()),
                Some("metadata.namespace") => self.namespace.clone(),
                Some(other) => panic!("the kubelet's {other} is not played here"),
                None => variable["value"].as_str().unwrap_or_default().to_owned(),
            };
            command.env(name, value);
        }
        let log = std::fs::File::create(&self.log).expect("the operator's log");
        command
            .stdout(Stdio::null())
            .stderr(log)
            .stdin(Stdio::null());
        eprintln!("netfence {}", args.join(" "));
        self.operator = Some(command.spawn().expect("netfence run starts"));
    }

    fn stop_operator(&mut self) {
        if let Some(mut child) = self.operator.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Panic, with its log, if the operator has exited.
    fn exited(&mut self) {
        if let Some(child) = &mut self.operator
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("netfence run exited ({status}):\n{}", self.operator_log());
        }
    }

    fn operator_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        self.stop_operator();
        let kubeconfig = self.kubectl.kubeconfig.to_string_lossy().into_owned();
        let _ = self.helm.run(&[
            "uninstall",
            &self.release,
            "--namespace",
            &self.namespace,
            "--kubeconfig",
            &kubeconfig,
            "--ignore-not-found",
        ]);
        for namespace in [&self.team, &self.namespace] {
            let _ = self.kubectl.run(
                &[
                    "delete",
                    "namespace",
                    namespace,
                    "--ignore-not-found",
                    "--wait=false",
                ],
                None,
            );
        }
    }
}

/// A merge patch that opens a default deny to every source.
const OPEN: &str = r#"{"spec":{"ingress":[{}]}}"#;

/// One install, upgrade and uninstall by `helm`, with `netfence run` working in between as the
/// chart's ServiceAccount: cluster-wide, or watching one namespace.
#[allow(clippy::too_many_lines)] // one scenario, step after step
fn install_run_upgrade_uninstall(helm: &Helm, kubectl: &Kubectl, namespace_scoped: bool) {
    let suffix = netfence_e2e::unique_suffix();
    let mut installed = Installed {
        helm,
        kubectl,
        release: format!("nf{suffix}"),
        namespace: format!("netfence-helm-{suffix}"),
        team: format!("helm-team-{suffix}"),
        operator: None,
        log: std::env::temp_dir().join(format!("netfence-helm-{suffix}.log")),
    };
    let name = installed.name();
    let team = installed.team.clone();
    let namespace = installed.namespace.clone();
    let chart = chart().to_string_lossy().into_owned();
    let scope = if namespace_scoped {
        format!("watching {team}")
    } else {
        "cluster-wide".to_owned()
    };
    eprintln!(
        "helm {}: install {name} into {namespace}, {scope}",
        helm.version
    );
    kubectl.ok(&["create", "namespace", &team]);

    let watch = format!("watchNamespace={team}");
    let mut install = vec![
        "install",
        installed.release.as_str(),
        &chart,
        "--create-namespace",
        "--timeout",
        "2m",
    ];
    if namespace_scoped {
        install.extend(["--set", &watch]);
    }
    let printed = installed.helm(&install);
    assert!(
        printed.contains("Check that it works") && printed.contains(&format!("deployment/{name}")),
        "helm install does not print the chart's NOTES:\n{printed}"
    );
    let deployment = installed.deployment();
    assert_eq!(
        deployment["metadata"]["annotations"]["meta.helm.sh/release-name"],
        installed.release.as_str(),
        "Helm marks what it installed as the release's"
    );
    assert_eq!(
        kubectl.exists(&["clusterrole", &name]),
        !namespace_scoped,
        "a ClusterRole exactly when cluster-wide"
    );
    assert_eq!(
        kubectl.exists(&["-n", &team, "role", &name]),
        namespace_scoped,
        "a Role in the watched namespace exactly when namespace-scoped"
    );
    // A namespace-scoped release's cluster-wide names carry the watched namespace.
    let admission = if namespace_scoped {
        format!("{name}-{team}-generated-policies")
    } else {
        format!("{name}-generated-policies")
    };
    assert!(kubectl.exists(&["validatingadmissionpolicy", &admission]));

    // The operator, as the chart runs it, with the chart's ServiceAccount: its leader-election
    // Role, its ClusterRole or Role, and the admission policy that lets it write.
    let audit = installed
        .kubectl
        .kubeconfig
        .parent()
        .map(|directory| directory.join(netfence_e2e::cluster::AUDIT_LOG_FILE))
        .filter(|path| path.is_file())
        .map(|path| netfence_e2e::audit::AuditLog::open(&path));
    installed.start_operator();
    kubectl.apply(&netfence_e2e::shop(&team));
    wait_until(Duration::from_secs(90), "shop becomes Ready", || {
        installed.exited();
        let status = kubectl.ok(&[
            "-n",
            &team,
            "get",
            "namespaceisolation",
            "shop",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ]);
        if status == "True" {
            Ok(())
        } else {
            Err(format!(
                "Ready={status}; the operator's log:\n{}",
                installed.operator_log()
            ))
        }
    });
    let holder = kubectl.ok(&[
        "-n",
        &namespace,
        "get",
        "lease",
        &name,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(
        holder,
        format!("{name}-0"),
        "the operator leads by the chart's Lease"
    );
    let generated = |kubectl: &Kubectl| -> Vec<String> {
        let mut names: Vec<String> = kubectl
            .ok(&[
                "-n",
                &team,
                "get",
                "networkpolicies",
                "-l",
                "app.kubernetes.io/managed-by=netfence",
                "-o",
                "name",
            ])
            .lines()
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    };
    assert_eq!(generated(kubectl).len(), 5, "shop's five policies");

    // A tenant's edit (here the admin's: the policy binds every user) is refused once the API
    // server has loaded the chart's admission policy; netfence restores one that got in before.
    let patch = [
        "-n",
        team.as_str(),
        "patch",
        "networkpolicy",
        "shop-default-deny",
        "--type=merge",
        "-p",
        OPEN,
    ];
    wait_until(
        Duration::from_secs(30),
        "the chart's admission policy refuses an edit",
        || {
            let output = kubectl.run(&patch, None);
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            if output.status.success() {
                Err("the edit went through".to_owned())
            } else if stderr.contains(&admission) && stderr.contains("is generated by netfence") {
                Ok(())
            } else {
                Err(stderr)
            }
        },
    );

    // The NOTES' check, a server-side dry run of a deletion, is refused too.
    let dry_run = kubectl.run(
        &[
            "-n",
            &team,
            "delete",
            "networkpolicy",
            "shop-default-deny",
            "--dry-run=server",
        ],
        None,
    );
    assert!(
        !dry_run.status.success() && String::from_utf8_lossy(&dry_run.stderr).contains(&admission),
        "the NOTES' dry run is not refused: {}",
        String::from_utf8_lossy(&dry_run.stderr)
    );

    // Upgrade: the admission policy off, three replicas, text logs.
    installed.helm(&[
        "upgrade",
        installed.release.as_str(),
        &chart,
        "--reuse-values",
        "--set",
        "admissionPolicy.enabled=false",
        "--set",
        "replicas=3",
        "--set",
        "logFormat=text",
        "--timeout",
        "2m",
    ]);
    let upgraded = installed.deployment();
    assert_eq!(upgraded["spec"]["replicas"], 3);
    let args = strings(&upgraded["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(args.contains(&"--log-format=text".to_owned()), "{args:?}");
    assert_eq!(
        args.contains(&format!("--namespace={team}")),
        namespace_scoped,
        "{args:?}"
    );
    assert!(!kubectl.exists(&["validatingadmissionpolicy", &admission]));
    let history: Value = serde_json::from_str(&installed.helm(&[
        "history",
        installed.release.as_str(),
        "-o",
        "json",
    ]))
    .expect("helm history prints JSON");
    let revisions = history.as_array().expect("revisions");
    assert_eq!(revisions.len(), 2, "{history}");
    assert_eq!(revisions[1]["status"], "deployed", "{history}");

    // With the admission policy gone, an edit goes through, and netfence restores the policy.
    wait_until(
        Duration::from_secs(30),
        "an edit goes through without the admission policy",
        || {
            let output = kubectl.run(&patch, None);
            if output.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&output.stderr).into_owned())
            }
        },
    );
    wait_until(
        Duration::from_secs(60),
        "netfence restores the edited deny",
        || {
            let policy = kubectl.json(&["-n", &team, "get", "networkpolicy", "shop-default-deny"]);
            match &policy["spec"]["ingress"] {
                Value::Null => Ok(()),
                Value::Array(rules) if rules.is_empty() => Ok(()),
                other => Err(other.to_string()),
            }
        },
    );
    // Deleting the resource with `deletionPolicy: KeepDefaultDeny`: netfence reads the Namespace
    // (is it going?), keeps the deny and DNS policies and releases its finalizer; the garbage
    // collector takes the allows.
    kubectl.ok(&[
        "-n",
        &team,
        "patch",
        "namespaceisolation",
        "shop",
        "--type=merge",
        "-p",
        r#"{"spec":{"deletionPolicy":"KeepDefaultDeny"}}"#,
    ]);
    wait_until(
        Duration::from_secs(60),
        "netfence adds its finalizer",
        || {
            let resource = kubectl.json(&["-n", &team, "get", "namespaceisolation", "shop"]);
            if strings(&resource["metadata"]["finalizers"])
                .contains(&"netfence.io/deletion-policy".to_owned())
            {
                Ok(())
            } else {
                Err(resource["metadata"].to_string())
            }
        },
    );
    kubectl.ok(&[
        "-n",
        &team,
        "delete",
        "namespaceisolation",
        "shop",
        "--timeout=60s",
    ]);
    wait_until(
        Duration::from_secs(60),
        "the deny and DNS policies stay, the allows go",
        || {
            let names = generated(kubectl);
            if names
                == [
                    "networkpolicy.networking.k8s.io/shop-allow-dns",
                    "networkpolicy.networking.k8s.io/shop-default-deny",
                ]
            {
                Ok(())
            } else {
                Err(format!("{names:?}"))
            }
        },
    );
    installed.stop_operator();

    // Every request of the chart's ServiceAccount was granted by the chart's roles.
    let user = format!("system:serviceaccount:{namespace}:{name}");
    if let Some(audit) = &audit {
        let made: Vec<_> = audit
            .read()
            .into_iter()
            .filter(|audited| audited.user == user)
            .collect();
        assert!(made.len() > 10, "{user} made {} requests", made.len());
        let refused: Vec<String> = made
            .iter()
            .filter(|audited| audited.unauthorized)
            .map(|audited| format!("{} {}", audited.entry.verb, audited.entry.uri))
            .collect();
        assert!(
            refused.is_empty(),
            "RBAC refused the chart's ServiceAccount:\n{}",
            refused.join("\n")
        );
        eprintln!("{user}: {} requests, none refused", made.len());
    } else {
        let log = installed.operator_log();
        assert!(!log.contains("403"), "a request was refused:\n{log}");
        eprintln!("no audit log beside the kubeconfig: the operator's log shows no 403");
    }

    // Uninstall: Helm leaves the CRDs (and every resource of their kinds), and the kept policies.
    installed.helm(&["uninstall", installed.release.as_str(), "--timeout", "2m"]);
    for crd in netfence_crd::crds() {
        let crd_name = crd.metadata.name.unwrap_or_default();
        assert!(
            kubectl.exists(&["crd", &crd_name]),
            "helm uninstall removed {crd_name}"
        );
    }
    assert_eq!(generated(kubectl).len(), 2, "the kept policies stay");
    assert!(!kubectl.exists(&["-n", &namespace, "deployment", &name]));
    assert!(!kubectl.exists(&["clusterrole", &name]));
}

/// If this fails, the chart does not install or upgrade on a real API server, or netfence cannot
/// work with what it grants: see the module's picture.
#[test]
fn the_chart_installs_and_upgrades_and_netfence_runs_with_its_account() {
    let test = "the_chart_installs_and_upgrades_and_netfence_runs_with_its_account";
    let Some(kubeconfig) = std::env::var_os(netfence_e2e::KUBECONFIG_VARIABLE) else {
        netfence_e2e::skip(
            test,
            "the sandbox does not serve what a chart installs (Deployments, Secrets for Helm's release records, RBAC, admission policies); this runs on the real control plane",
        );
        return;
    };
    let helms = helms_and_kubectl(test);
    if helms.is_empty() {
        return;
    }
    let kubectl = Kubectl {
        kubeconfig: PathBuf::from(kubeconfig),
    };
    let by_major = |major: &str| {
        helms
            .iter()
            .find(|helm| helm.version.starts_with(major))
            .expect("Helm 3 and 4")
    };
    install_run_upgrade_uninstall(by_major("v4."), &kubectl, false);
    install_run_upgrade_uninstall(by_major("v3."), &kubectl, true);
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
