//! ClusterBaselines through `netfence render` and `netfence verify`, as a platform engineer runs
//! them on a pull request: the real binary, real files, exit codes and messages.

use std::{
    io::Write,
    path::Path,
    process::{Command, Output},
};

fn netfence(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netfence"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("netfence runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_file(content: &str) -> tempfile::TempPath {
    let mut file = tempfile::Builder::new()
        .prefix("baseline")
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    file.write_all(content.as_bytes()).expect("writes");
    file.into_temp_path()
}

#[track_caller]
fn assert_refused(output: &Output, expected: &[&str]) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout: {}",
        text(&output.stdout)
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    for part in expected {
        assert!(stderr.contains(part), "{part:?} not in: {stderr}");
    }
}

const SHOP: &str = r"
apiVersion: netfence.io/v1alpha1
kind: NamespaceIsolation
metadata: {name: shop, namespace: shop}
spec:
  tiers:
    - {name: web, podSelector: {matchLabels: {app: web}}}
    - {name: api, podSelector: {matchLabels: {app: api}}}
  flows:
    - {from: web, to: api, ports: [{port: 8080}]}
  sharedServices:
    - name: metadata
      direction: Egress
      ipBlock: {cidr: 169.254.169.254/32}
      tiers: [api]
      ports: [{port: 80}]
";

/// If this fails, a pipeline that renders a baseline would print something other than the
/// engine's objects (or refuse a valid one): each engine gets its own kinds.
#[test]
fn render_writes_each_engines_kinds() {
    let file = "examples/baselines/cluster-network-policy.yaml";
    for (engine, kinds) in [
        ("ClusterNetworkPolicy", &["kind: ClusterNetworkPolicy"][..]),
        ("Calico", &["kind: Tier", "kind: GlobalNetworkPolicy"][..]),
        ("Cilium", &["kind: CiliumClusterwideNetworkPolicy"][..]),
    ] {
        let output = netfence(&["render", file, "--engine", engine]);
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "{engine}: {}",
            text(&output.stderr)
        );
        for kind in kinds {
            assert!(stdout.contains(kind), "{engine}: no {kind} in {stdout}");
        }
        assert!(
            stdout.contains("netfence.io/baseline: zero-trust"),
            "{engine}: {stdout}"
        );
    }
}

/// If this fails, an engine that cannot hold a guardrail would get the rest applied, leaving the
/// cluster without the guardrail the platform team wrote.
#[test]
fn an_engine_that_cannot_express_a_field_renders_nothing_and_names_it() {
    let output = netfence(&[
        "render",
        "examples/baselines/cluster-network-policy.yaml",
        "--engine",
        "NetworkPolicy",
    ]);
    assert_refused(
        &output,
        &[
            "examples/baselines/cluster-network-policy.yaml: zero-trust: spec.guardrails[0]: NetworkPolicy cannot express this",
            "use the ClusterNetworkPolicy, Calico or Cilium engine",
        ],
    );
    let output = netfence(&[
        "render",
        "examples/baselines/calico.yaml",
        "--engine",
        "ClusterNetworkPolicy",
    ]);
    assert_refused(
        &output,
        &["spec.allow[1].ipBlock.except: ClusterNetworkPolicy cannot express this"],
    );
}

/// If this fails, a typo in a baseline would be applied half-read, or reported without the
/// field to fix.
#[test]
fn a_bad_baseline_names_the_file_and_every_field() {
    let file = temp_file(
        r"
apiVersion: netfence.io/v1alpha1
kind: ClusterBaseline
metadata: {name: zero-trust}
spec:
  namespaceSelector: {matchLabels: {Bad Key: x}}
  allow:
    - {name: Prometheus, direction: Ingress, namespace: monitoring}
  guardrails:
    - {name: metadata, direction: Egress, ipBlock: {cidr: 169.254.169.254/32}}
",
    );
    let path = file.to_str().expect("utf-8 path");
    let output = netfence(&["render", path]);
    assert_refused(
        &output,
        &[
            &format!("{path}: zero-trust: spec.namespaceSelector.matchLabels"),
            "spec.allow[0].name",
            "spec.guardrails[0].action: is required: Deny or Allow",
        ],
    );
    let output = netfence(&[
        "render",
        "examples/baselines/calico.yaml",
        "--engine",
        "calicoo",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("use ClusterNetworkPolicy, Calico, Cilium or NetworkPolicy"),
        "{}",
        text(&output.stderr)
    );
}

/// If this fails, `netfence verify` would call a namespace's intent proven while a cluster-wide
/// guardrail blocks one of its declared flows, on every engine that has guardrails.
#[test]
fn a_guardrail_that_blocks_a_declared_flow_fails_the_proof_naming_it() {
    let shop = temp_file(SHOP);
    let shop = shop.to_str().expect("utf-8 path");
    for (file, guardrail) in [
        (
            "examples/baselines/cluster-network-policy.yaml",
            "denied by the cluster-wide rule ClusterNetworkPolicy/zero-trust-guardrails egress[0] (no-cloud-metadata)",
        ),
        (
            "examples/baselines/cilium.yaml",
            "denied by the cluster-wide rule CiliumClusterwideNetworkPolicy/tenants-guardrails egressDeny[0]",
        ),
    ] {
        let labelled = temp_file(&format!(
            "{}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: shop, labels: {{netfence.io/zero-trust: \"true\", tenancy: shared}}}}\n",
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file))
                .expect("example")
                .replace(
                    "  name: shop\n  labels:\n    netfence.io/zero-trust: \"true\"\n---\n",
                    "  name: shop-old\n---\n"
                )
        ));
        let output = netfence(&["verify", labelled.to_str().expect("utf-8"), shop]);
        let stdout = text(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{file}: {stdout}{}",
            text(&output.stderr)
        );
        assert!(
            stdout.contains(
                "api -> external 169.254.169.254 80/TCP: declared but blocked by the egress of api"
            ) && stdout.contains(guardrail),
            "{file}: {stdout}"
        );
    }
    // Without the guardrail's destination among the declared flows, the same baseline proves.
    let without = temp_file(
        &SHOP
            .replace("  sharedServices:", "  unused:")
            .lines()
            .take_while(|line| !line.starts_with("  unused:"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let output = netfence(&[
        "verify",
        "examples/baselines/cluster-network-policy.yaml",
        without.to_str().expect("utf-8"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("intent holds"));
}

/// If this fails, a field netfence does not model in another engine's policy would be read as
/// absent and the matrix would be wrong without a word.
#[test]
fn a_field_verify_does_not_model_is_an_error_naming_it() {
    let file = temp_file(
        r"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.1}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: egress-to-nodes}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {}}
  egress:
    - {action: Deny, to: [{nodes: {}}]}
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: l7}
spec:
  endpointSelector: {}
  egress:
    - toFQDNs: [{matchName: example.com}]
",
    );
    let path = file.to_str().expect("utf-8 path");
    let output = netfence(&["verify", path]);
    assert_refused(
        &output,
        &[
            "ClusterNetworkPolicy egress-to-nodes: spec.egress[0].to[0].nodes: netfence verify does not model nodes peers",
            "CiliumClusterwideNetworkPolicy l7: spec.egress[0].toFQDNs: unknown field",
        ],
    );
}

/// If this fails, `--explain` on a cluster with a ClusterBaseline would blame (or credit) the
/// wrong policy: the decision of a cluster-wide rule must name that rule and its tier's policy.
#[test]
fn explain_names_the_cluster_wide_rule_that_decided() {
    let pods = temp_file(
        r"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}
status: {podIP: 10.0.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: prom, namespace: monitoring, labels: {app.kubernetes.io/name: prometheus}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.20}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: payments}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.30}
",
    );
    let pods = pods.to_str().expect("utf-8");
    let baseline = "examples/baselines/cluster-network-policy.yaml";
    let output = netfence(&[
        "verify",
        baseline,
        pods,
        "--explain",
        "payments/other",
        "shop/web",
        "80/TCP",
    ]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        stdout.contains("payments/other -> shop/web 80/TCP: blocked")
            && stdout.contains("egress of payments/other: denied by the cluster-wide rule ClusterNetworkPolicy/zero-trust-baseline egress[1] (default-deny)")
            && stdout.contains("ingress of shop/web: denied by the cluster-wide rule ClusterNetworkPolicy/zero-trust-baseline ingress[1] (default-deny)"),
        "{stdout}"
    );
    let output = netfence(&[
        "verify",
        baseline,
        pods,
        "--explain",
        "monitoring/prom",
        "shop/web",
        "9090/TCP",
    ]);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("monitoring/prom -> shop/web 9090/TCP: allowed")
            && stdout.contains("accepted by the cluster-wide rule ClusterNetworkPolicy/zero-trust-baseline ingress[0] (prometheus)"),
        "{stdout}"
    );
}

/// If this fails, a baseline over every namespace would deny netfence's own namespace too and
/// cut the operator off from the API server: it is always left out, like kube-system.
#[test]
fn netfences_own_namespace_is_never_covered() {
    let file = temp_file(
        r"
apiVersion: netfence.io/v1alpha1
kind: ClusterBaseline
metadata: {name: everything}
spec: {engine: NetworkPolicy, namespaceSelector: {}}
---
apiVersion: v1
kind: Namespace
metadata: {name: netfence-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: platform}
---
apiVersion: v1
kind: Namespace
metadata: {name: team}
",
    );
    let path = file.to_str().expect("utf-8");
    let output = netfence(&["render", path]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.contains("namespace: team") && stdout.contains("namespace: platform"),
        "{stdout}"
    );
    assert!(!stdout.contains("namespace: netfence-system"), "{stdout}");
    let output = netfence(&["render", path, "--operator-namespace", "platform"]);
    let stdout = text(&output.stdout);
    assert!(
        !stdout.contains("namespace: platform") && stdout.contains("namespace: netfence-system"),
        "{stdout}"
    );
    let output = netfence(&["render", path, "--engine", "ClusterNetworkPolicy"]);
    assert!(
        text(&output.stdout).contains("- netfence-system"),
        "the cluster-wide selector leaves it out"
    );
}

/// If this fails, Cilium would get an Allow guardrail that its deny rules silently override,
/// against the order the platform team wrote.
#[test]
fn cilium_refuses_an_allow_guardrail_listed_before_a_deny() {
    let file = temp_file(
        r"
apiVersion: netfence.io/v1alpha1
kind: ClusterBaseline
metadata: {name: ordered}
spec:
  engine: Cilium
  namespaceSelector: {}
  guardrails:
    - {name: scanner, action: Allow, direction: Egress, namespace: security}
    - {name: no-egress-to-security, action: Deny, direction: Egress, namespace: security}
",
    );
    let path = file.to_str().expect("utf-8");
    assert_refused(
        &netfence(&["render", path]),
        &[
            "ordered: spec.guardrails[0].action: Cilium cannot express this: Cilium puts deny rules above every allow",
        ],
    );
    // The same order means what it says on ClusterNetworkPolicy (Admin tier, rules in order).
    assert!(
        netfence(&["render", path, "--engine", "ClusterNetworkPolicy"])
            .status
            .success()
    );
}

/// If this fails, a namespace under a NetworkPolicy-engine baseline would be proved against the
/// baseline's policies alone, and its own declared flows would show as blocked; or the
/// baseline's allow (monitoring on 9090, which NetworkPolicies add to the namespace's own) would
/// go unseen: it widens what the resource declares, and the proof names it.
#[test]
fn the_proof_adds_a_network_policy_baseline_to_the_namespaces_own_policies() {
    let shop = temp_file(
        r"
apiVersion: netfence.io/v1alpha1
kind: NamespaceIsolation
metadata: {name: shop, namespace: team-c}
spec:
  tiers:
    - {name: web, podSelector: {matchLabels: {app: web}}}
    - {name: api, podSelector: {matchLabels: {app: api}}}
  flows:
    - {from: web, to: api, ports: [{port: 8080}]}
",
    );
    let output = netfence(&[
        "verify",
        "examples/baselines/network-policy.yaml",
        shop.to_str().expect("utf-8"),
    ]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("proving against the policies netfence renders for it and the 3 NetworkPolicies of ClusterBaselines there")
            && stdout.contains("web        -    8080/TCP")
            && !stdout.contains("declared but blocked"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Widened: default-deny-shared-monitoring lets any pod in namespaces with kubernetes.io/metadata.name=monitoring reach any pod of team-c on 9090/TCP"),
        "{stdout}"
    );
}
