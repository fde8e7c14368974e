//! Each value of the chart rendered and read back, and the values the chart refuses.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{
    helms,
    render::{Rendered, render},
    strings,
};

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
