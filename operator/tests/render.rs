//! Render every example and check the output whole (insta snapshots), the patterns every
//! zero-trust namespace relies on, and that the checked-in CRDs are the generated ones.

use std::path::{Path, PathBuf};

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use netfence::{
    cli::render::{Format, baselines, format_policies, isolations},
    manifests,
};
use netfence_core::{
    ValidatedIsolation,
    meta::{ISOLATION_LABEL, MANAGED_BY, MANAGED_BY_LABEL},
    render,
};
use netfence_crd::baseline::Engine;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the operator crate sits in the repository")
        .to_path_buf()
}

fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .expect("examples/ exists")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml")
        })
        .collect();
    files.sort();
    files
}

fn load(path: &Path) -> Vec<ValidatedIsolation> {
    let documents = manifests::load(&[path.to_path_buf()]).expect("example loads");
    isolations(&documents, &mut Vec::new()).expect("example is valid")
}

fn rendered_yaml(file: &Path) -> String {
    let policies: Vec<NetworkPolicy> = load(file)
        .iter()
        .flat_map(render::network_policies)
        .collect();
    format_policies(&policies, Format::Yaml).expect("serializes")
}

fn example(name: &str) -> Vec<NetworkPolicy> {
    load(&repo().join("examples").join(name))
        .iter()
        .flat_map(render::network_policies)
        .collect()
}

fn policy<'a>(policies: &'a [NetworkPolicy], name: &str) -> &'a NetworkPolicy {
    policies
        .iter()
        .find(|policy| policy.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no policy {name}"))
}

fn json(value: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).expect("serializes")
}

/// The output of `netfence render` for each example, compared whole. A change here changes what
/// the operator applies in every cluster: review the diff line by line before accepting it.
#[test]
fn examples_render_as_reviewed() {
    let files = example_files();
    assert!(files.len() >= 5, "expected at least five examples");
    for file in files {
        let policies: Vec<NetworkPolicy> = load(&file)
            .iter()
            .flat_map(render::network_policies)
            .collect();
        let yaml = format_policies(&policies, Format::Yaml).expect("serializes");
        let name = file
            .file_stem()
            .and_then(|stem| stem.to_str())
            .expect("file name");
        insta::assert_snapshot!(name, yaml);
    }
}

/// Rendering twice gives byte-identical output: GitOps diffs show only real changes.
#[test]
fn output_is_deterministic() {
    for file in example_files() {
        assert_eq!(
            rendered_yaml(&file),
            rendered_yaml(&file),
            "{}",
            file.display()
        );
    }
}

/// The default deny selects every pod and covers both directions, with no rule at all.
#[test]
fn default_deny_selects_all_pods_in_both_directions() {
    let policies = example("three-tier.yaml");
    assert_eq!(
        json(&policy(&policies, "shop-default-deny").spec),
        serde_json::json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
    );
}

/// The DNS rule is ONE peer item with namespaceSelector AND podSelector (two items would mean
/// "all of kube-system OR kube-dns pods in our namespace"), on UDP and TCP 53.
#[test]
fn dns_rule_is_one_peer_with_both_selectors() {
    let policies = example("three-tier.yaml");
    assert_eq!(
        json(&policy(&policies, "shop-allow-dns").spec),
        serde_json::json!({
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }],
                "ports": [{"port": 53, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            }],
        })
    );
}

/// NodeLocal DNSCache: the link-local address is added beside the kube-dns peer.
#[test]
fn dns_ip_blocks_are_extra_peers() {
    let policies = example("nodelocal-dns.yaml");
    let spec = json(&policy(&policies, "analytics-allow-dns").spec);
    assert_eq!(
        spec["egress"][0]["to"][1],
        serde_json::json!({"ipBlock": {"cidr": "169.254.20.10/32"}})
    );
}

/// A flow between tiers of the namespace is a `podSelector`-only peer: the policy's own
/// namespace. Ingress on the target tier, egress on the source tier, same ports.
#[test]
fn flows_use_pod_selector_only_peers() {
    let policies = example("three-tier.yaml");
    let backend = json(&policy(&policies, "shop-tier-backend").spec);
    assert_eq!(
        backend["ingress"][0],
        serde_json::json!({
            "from": [{"podSelector": {"matchLabels": {"tier": "frontend"}}}],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        })
    );
    assert_eq!(
        backend["egress"][0],
        serde_json::json!({
            "to": [{"podSelector": {"matchLabels": {"tier": "database"}}}],
            "ports": [{"port": 5432, "protocol": "TCP"}],
        })
    );
    let peer: NetworkPolicyPeer =
        serde_json::from_value(backend["ingress"][0]["from"][0].clone()).expect("peer");
    assert!(peer.namespace_selector.is_none() && peer.ip_block.is_none());
}

/// Ingress-only isolation never writes Egress anywhere: the namespace keeps its egress.
#[test]
fn ingress_only_writes_no_egress() {
    let policies = example("ingress-only.yaml");
    assert!(!policies.is_empty());
    for policy in &policies {
        let spec = policy.spec.as_ref().expect("spec");
        assert_eq!(
            spec.policy_types.as_deref(),
            Some(&["Ingress".to_owned()][..]),
            "{:?}",
            policy.metadata.name
        );
        assert!(spec.egress.is_none(), "{:?}", policy.metadata.name);
    }
    assert!(
        policies.iter().all(|policy| !policy
            .metadata
            .name
            .as_deref()
            .unwrap_or("")
            .ends_with("allow-dns")),
        "no DNS policy when egress is not isolated"
    );
}

/// Every policy carries the labels and, with a UID, the controller owner reference: without
/// them the operator could neither find nor garbage-collect what it made.
#[test]
fn labels_and_owner_reference() {
    let documents = manifests::load(&[repo().join("examples/three-tier.yaml")]).expect("loads");
    let mut resource: netfence_crd::NamespaceIsolation = documents
        .iter()
        .find(|document| document.kind() == "NamespaceIsolation")
        .expect("has one")
        .typed()
        .expect("typed");
    resource.metadata.uid = Some("0b9e4a3c-1111-2222-3333-444455556666".into());
    let isolation = ValidatedIsolation::try_from(&resource).expect("valid");
    let policies = render::network_policies(&isolation);
    for policy in &policies {
        let labels = policy.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(labels[ISOLATION_LABEL], "shop");
        assert_eq!(policy.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(
            json(&policy.metadata.owner_references),
            serde_json::json!([{
                "apiVersion": "netfence.io/v1alpha1",
                "kind": "NamespaceIsolation",
                "name": "shop",
                "uid": "0b9e4a3c-1111-2222-3333-444455556666",
                "controller": true,
                "blockOwnerDeletion": true,
            }])
        );
    }
    let names: Vec<_> = policies
        .iter()
        .map(|policy| policy.metadata.name.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "shop-default-deny",
            "shop-allow-dns",
            "shop-tier-frontend",
            "shop-tier-backend",
            "shop-tier-database",
        ]
    );
}

/// `sameNamespace: Allow` opens the namespace to itself, in every isolated direction.
#[test]
fn same_namespace_allow() {
    let policies = example("team-namespace.yaml");
    assert_eq!(
        json(&policy(&policies, "team-a-same-namespace").spec),
        serde_json::json!({
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
            "egress": [{"to": [{"podSelector": {}}]}],
        })
    );
}

/// Flows repeated or split over several entries never give duplicate rules: one rule per
/// distinct port set, each peer once.
#[test]
fn no_duplicate_rules() {
    let text = r"
apiVersion: netfence.io/v1alpha1
kind: NamespaceIsolation
metadata: {name: dup, namespace: dup}
spec:
  isolate: [Ingress]
  tiers:
    - {name: a, podSelector: {matchLabels: {t: a}}}
    - {name: b, podSelector: {matchLabels: {t: b}}}
    - {name: c, podSelector: {matchLabels: {t: c}}}
  flows:
    - {from: a, to: c, ports: [{port: 80}]}
    - {from: a, to: c, ports: [{port: 80}]}
    - {from: b, to: c, ports: [{port: 80}]}
    - {from: a, to: c, ports: [{port: 81}]}
";
    let documents = manifests::parse("dup.yaml", text).expect("parses");
    let isolation = isolations(&documents, &mut Vec::new()).expect("valid");
    let policies = render::network_policies(&isolation[0]);
    assert_eq!(
        json(&policy(&policies, "dup-tier-c").spec)["ingress"],
        serde_json::json!([
            {"from": [{"podSelector": {"matchLabels": {"t": "a"}}}],
             "ports": [{"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "TCP"}]},
            {"from": [{"podSelector": {"matchLabels": {"t": "b"}}}],
             "ports": [{"port": 80, "protocol": "TCP"}]},
        ])
    );
}

/// `config/crd/` and the Helm chart's `crds/` hold exactly what `netfence crd` generates, and
/// nothing else: a CRD edited by hand, or a type changed without regenerating, would install a
/// schema that differs from what the code reads.
#[test]
fn checked_in_crds_are_generated() {
    for directory in ["config/crd", "config/helm/netfence/crds"] {
        let mut expected = std::collections::BTreeSet::new();
        for crd in netfence_crd::crds() {
            let name = netfence::cli::crd::crd_file_name(&crd);
            let file = repo().join(directory).join(&name);
            let generated = netfence::cli::crd::crd_yaml(&crd).expect("serializes");
            let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
            assert!(
                checked_in == generated,
                "{} differs from the generated CRD; regenerate it with `cargo run -- crd --output-dir {directory}` and commit the result",
                file.display()
            );
            expected.insert(name);
        }
        let found: std::collections::BTreeSet<String> = std::fs::read_dir(repo().join(directory))
            .expect("the directory exists")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| name.ends_with(".netfence.io.yaml"))
            .collect();
        assert_eq!(
            found, expected,
            "{directory}: a CRD file netfence no longer generates"
        );
    }
}

/// Every example ClusterBaseline (`examples/baselines/`) rendered for every engine, compared
/// whole: the objects, or the fields the engine cannot express (then nothing is rendered). A
/// change here changes what the operator applies cluster-wide: review it line by line.
#[test]
fn baselines_render_as_reviewed_for_every_engine() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples/baselines"))
        .expect("examples/baselines exists")
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "one example per engine");
    for file in files {
        let documents = manifests::load(std::slice::from_ref(&file)).expect("example loads");
        let stem = file
            .file_stem()
            .and_then(|stem| stem.to_str())
            .expect("file name");
        // The example's own engine renders.
        baselines(&documents, None, "netfence-system", &mut Vec::new())
            .unwrap_or_else(|errors| panic!("{}: {errors:?}", file.display()));
        for engine in Engine::ALL {
            let text = match baselines(&documents, Some(engine), "netfence-system", &mut Vec::new())
            {
                Ok(objects) => {
                    assert!(!objects.is_empty(), "{stem} {engine:?}: nothing rendered");
                    format_policies(&objects, Format::Yaml).expect("serializes")
                }
                // Paths from the repository's root, wherever it is checked out.
                Err(errors) => format!("refused:\n{}\n", errors.join("\n"))
                    .replace(&format!("{}/", repo().display()), ""),
            };
            insta::assert_snapshot!(format!("baseline-{stem}-{}", engine.as_str()), text);
        }
    }
}
