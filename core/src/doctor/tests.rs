use super::*;

fn object<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> T {
    serde_json::from_value(value.clone()).expect("an object")
}

fn daemon_set(name: &str, image: &str) -> DaemonSet {
    object(&serde_json::json!({
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "main", "image": image}]},
        }},
    }))
}

fn by_check<'a>(findings: &'a [Finding], check: &str) -> Vec<&'a Finding> {
    findings
        .iter()
        .filter(|finding| finding.check == check)
        .collect()
}

/// Flannel alone: an error that says the policies will not be enforced, with the fix.
#[test]
fn flannel_alone_is_an_error() {
    let snapshot = Snapshot {
        isolations_served: true,
        daemon_sets: vec![daemon_set(
            "kube-flannel-ds",
            "docker.io/flannel/flannel:v0.26.1",
        )],
        ..Snapshot::default()
    };
    let findings = check(&snapshot);
    let cni = by_check(&findings, "cni");
    assert_eq!(cni.len(), 1);
    assert_eq!(cni[0].severity, Severity::Error);
    assert!(
        cni[0]
            .message
            .contains("Flannel (DaemonSet kube-system/kube-flannel-ds)"),
        "{}",
        cni[0].message
    );
    assert!(
        cni[0].message.contains("will not be enforced"),
        "{}",
        cni[0].message
    );
    assert_eq!(findings[0].severity, Severity::Error, "errors come first");
}

/// Flannel with Calico's policy engine beside it (Canal's way), or Cilium by image: enforced.
#[test]
fn an_engine_beside_flannel_enforces() {
    for engines in [
        vec![
            daemon_set("kube-flannel-ds", "flannel/flannel"),
            daemon_set("calico-node", "docker.io/calico/node:v3.29"),
        ],
        vec![daemon_set("agent", "quay.io/cilium/cilium:v1.17")],
    ] {
        let snapshot = Snapshot {
            isolations_served: true,
            daemon_sets: engines,
            ..Snapshot::default()
        };
        let findings = check(&snapshot);
        let cni = by_check(&findings, "cni");
        assert_eq!(cni[0].severity, Severity::Ok, "{cni:?}");
        assert!(
            cni[0].message.ends_with("enforces NetworkPolicy"),
            "{}",
            cni[0].message
        );
    }
}

/// Nothing recognised: a warning, not silence.
#[test]
fn no_engine_recognised_is_a_warning() {
    let findings = check(&Snapshot {
        isolations_served: true,
        ..Snapshot::default()
    });
    assert_eq!(by_check(&findings, "cni")[0].severity, Severity::Warning);
}

fn isolation(namespace: &str, conditions: &serde_json::Value) -> NamespaceIsolation {
    object(&serde_json::json!({
        "apiVersion": "netfence.io/v1alpha1", "kind": "NamespaceIsolation",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {},
        "status": {"conditions": conditions},
    }))
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"type": type_, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": "2026-12-01T00:00:00Z"})
}

/// Resources not Ready or not Isolated are errors naming the reason; hostNetwork pods in an
/// isolated namespace a warning; a namespace without its name label an error.
#[test]
fn isolations_host_network_and_labels() {
    let widened = isolation(
        "shop",
        &serde_json::json!([
            condition(
                "Ready",
                "True",
                "Reconciled",
                "5 NetworkPolicies match the spec"
            ),
            condition(
                "Isolated",
                "False",
                "Widened",
                "allow-all-ingress lets any pod outside shop reach backend on every port"
            ),
        ]),
    );
    let pod: Pod = object(&serde_json::json!({
        "metadata": {"name": "node-exporter", "namespace": "shop"},
        "spec": {"hostNetwork": true, "containers": [{"name": "main"}]},
    }));
    let unlabelled: Namespace = object(&serde_json::json!({"metadata": {"name": "legacy"}}));
    let snapshot = Snapshot {
        isolations_served: true,
        isolations: vec![widened],
        pods: BTreeMap::from([
            ("shop".to_owned(), vec![pod]),
            ("kube-system".to_owned(), Vec::new()),
        ]),
        namespaces: vec![unlabelled],
        ..Snapshot::default()
    };
    let findings = check(&snapshot);
    let isolations = by_check(&findings, "isolations");
    assert_eq!(isolations[0].severity, Severity::Error);
    assert_eq!(isolations[0].subject, "shop/shop");
    assert!(
        isolations[0]
            .message
            .contains("not Isolated (Widened): allow-all-ingress"),
        "{}",
        isolations[0].message
    );
    let host = by_check(&findings, "host-network");
    assert_eq!(host[0].severity, Severity::Warning);
    assert!(
        host[0].message.ends_with("node-exporter"),
        "{}",
        host[0].message
    );
    let labels = by_check(&findings, "namespace-labels");
    assert_eq!(labels[0].severity, Severity::Error);
    assert_eq!(labels[0].subject, "legacy");
    // The DNS of the resource: no DNS pod in kube-system at all.
    let dns = by_check(&findings, "dns");
    assert_eq!(dns[0].severity, Severity::Error);
    assert!(
        dns[0]
            .message
            .starts_with("no pod in namespace kube-system matches spec.dns.podSelector"),
        "{}",
        dns[0].message
    );
}

/// A ClusterBaseline whose engine the cluster does not serve: an error naming it.
#[test]
fn a_baseline_on_an_engine_not_served() {
    let baseline: ClusterBaseline = object(&serde_json::json!({
        "apiVersion": "netfence.io/v1alpha1", "kind": "ClusterBaseline",
        "metadata": {"name": "zero-trust"},
        "spec": {"engine": "Cilium", "namespaceSelector": {}},
    }));
    let snapshot = Snapshot {
        isolations_served: true,
        baselines: vec![baseline],
        ..Snapshot::default()
    };
    let findings = check(&snapshot);
    let found = by_check(&findings, "baselines");
    assert_eq!(found[0].severity, Severity::Error);
    assert!(
        found[0]
            .message
            .starts_with("spec.engine Cilium is not served"),
        "{}",
        found[0].message
    );
}

/// EKS: `aws-node` alone does not enforce; with its network policy agent enabled it does.
#[test]
fn the_vpc_cni_enforces_only_with_its_policy_agent() {
    let aws_node = |args: serde_json::Value| -> DaemonSet {
        object(&serde_json::json!({
            "metadata": {"name": "aws-node", "namespace": "kube-system"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [
                {"name": "aws-node", "image": "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.19.0"},
                {"name": "aws-eks-nodeagent", "image": "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon/aws-network-policy-agent:v1.1.5", "args": args},
            ]}}},
        }))
    };
    for (args, severity) in [
        (
            serde_json::json!(["--enable-network-policy=false"]),
            Severity::Error,
        ),
        (
            serde_json::json!(["--enable-network-policy=true"]),
            Severity::Ok,
        ),
    ] {
        let snapshot = Snapshot {
            isolations_served: true,
            daemon_sets: vec![aws_node(args)],
            ..Snapshot::default()
        };
        let findings = check(&snapshot);
        assert_eq!(
            by_check(&findings, "cni")[0].severity,
            severity,
            "{findings:?}"
        );
    }
}

/// Resources with the same DNS spec share one finding, naming them all.
#[test]
fn one_dns_finding_names_every_resource_it_is_about() {
    let resource = |namespace: &str| {
        isolation(
            namespace,
            &serde_json::json!([
                condition(
                    "Ready",
                    "True",
                    "Reconciled",
                    "4 NetworkPolicies match the spec"
                ),
                condition(
                    "Isolated",
                    "True",
                    "AsDeclared",
                    "the 4 NetworkPolicies that apply allow exactly what it declares"
                ),
            ]),
        )
    };
    let snapshot = Snapshot {
        isolations_served: true,
        isolations: vec![resource("shop"), resource("blog")],
        pods: BTreeMap::from([("kube-system".to_owned(), Vec::new())]),
        ..Snapshot::default()
    };
    let findings = check(&snapshot);
    let dns = by_check(&findings, "dns");
    assert_eq!(dns.len(), 1, "{dns:?}");
    assert_eq!(dns[0].subject, "shop/shop, blog/shop");
}
