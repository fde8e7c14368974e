//! `netfence render` and `netfence crd` as a user runs them: the real binary, real files, exit
//! codes, stdout and stderr.
//!
//! A GitOps pipeline runs `netfence render` on every pull request: if these fail, a broken
//! resource could pass the pipeline, or a good one could print garbage into the applied manifests.

use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
};

fn netfence(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netfence"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("netfence runs")
}

fn netfence_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netfence"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netfence runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writes");
    child.wait_with_output().expect("finishes")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp_file(name: &str, content: &[u8]) -> tempfile::TempPath {
    let mut file = tempfile::Builder::new()
        .prefix(name)
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    file.write_all(content).expect("writes");
    file.into_temp_path()
}

/// Assert bad input: exit 2, nothing on stdout, no panic, and the stderr lines the user reads.
#[track_caller]
fn assert_bad_input(output: &Output, expected_in_stderr: &str) {
    let stderr = stderr(output);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "stdout must stay empty");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(expected_in_stderr),
        "expected {expected_in_stderr:?} in stderr:\n{stderr}"
    );
}

/// The README's render command works on the examples directory and prints valid policies.
#[test]
fn renders_the_examples_directory() {
    let output = netfence(&["render", "examples/"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout.clone()).expect("UTF-8");
    let all: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).expect("stdout is multi-document YAML");
    // The ClusterBaselines of examples/baselines/ render too, each for its engine.
    let baseline_label = |document: &serde_json::Value| {
        document["metadata"]["labels"]["netfence.io/baseline"]
            .as_str()
            .map(str::to_owned)
    };
    for (kind, baseline) in [
        ("ClusterNetworkPolicy", "zero-trust"),
        ("GlobalNetworkPolicy", "platform"),
        ("CiliumClusterwideNetworkPolicy", "tenants"),
        ("NetworkPolicy", "default-deny"),
    ] {
        assert!(
            all.iter().any(|document| document["kind"] == kind
                && baseline_label(document).as_deref() == Some(baseline)),
            "no {kind} of ClusterBaseline {baseline}"
        );
    }
    let documents: Vec<k8s_openapi::api::networking::v1::NetworkPolicy> = all
        .into_iter()
        .filter(|document| {
            document["kind"] == "NetworkPolicy" && baseline_label(document).is_none()
        })
        .map(|document| serde_json::from_value(document).expect("a NetworkPolicy"))
        .collect();
    // 24 from the five NamespaceIsolations, 4 + 4 that the microservice-team template generates
    // for its two labelled Namespaces (the other Namespaces do not match it).
    assert_eq!(documents.len(), 32);
    let generated: Vec<String> = documents
        .iter()
        .filter(|policy| policy.metadata.name.as_deref() == Some("baseline-default-deny"))
        .filter_map(|policy| policy.metadata.namespace.clone())
        .collect();
    assert_eq!(generated, ["team-payments", "team-search"]);
}

/// Without a template, a Namespace manifest is skipped with a note (it renders nothing).
#[test]
fn namespaces_without_templates_are_noted() {
    let output = netfence(&["render", "examples/three-tier.yaml"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("note: examples/three-tier.yaml: skipping Namespace shop"));
}

/// `-o json` prints one `List` that kubectl can apply.
#[test]
fn renders_json() {
    let output = netfence(&["render", "-o", "json", "examples/three-tier.yaml"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(list["kind"], "List");
    let items: Vec<k8s_openapi::api::networking::v1::NetworkPolicy> =
        serde_json::from_value(list["items"].clone()).expect("policies");
    assert_eq!(items.len(), 5);
}

/// `-` reads stdin, and `--namespace` fills a namespace the manifest leaves out.
#[test]
fn renders_stdin_with_default_namespace() {
    let input = "apiVersion: netfence.io/v1alpha1\nkind: NamespaceIsolation\nmetadata: {name: lock}\nspec: {}\n";
    let output = netfence_stdin(&["render", "-", "--namespace", "team-b"], input);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        text.contains("name: lock-default-deny\n  namespace: team-b\n"),
        "{text}"
    );
    assert!(text.contains("name: lock-allow-dns\n"), "{text}");
}

/// An invalid resource: every error as `FILE: NAME: PATH: message`, nothing rendered.
#[test]
fn invalid_resource_lists_every_error() {
    let file = temp_file(
        "invalid",
        b"apiVersion: netfence.io/v1alpha1\nkind: NamespaceIsolation\nmetadata: {name: shop, namespace: shop}\nspec:\n  tiers: [{name: frontend, podSelector: {}}, {name: backend, podSelector: {}}]\n  flows:\n    - {from: frontend, to: backend}\n    - {from: backend, to: db}\n  sharedServices:\n    - {name: x, direction: Egress, ipBlock: {cidr: 10.0.0.1/8}}\n",
    );
    let path = file.display().to_string();
    let output = netfence(&["render", &path]);
    assert_bad_input(
        &output,
        &format!(
            "{path}: shop: spec.flows[1].to: unknown tier \"db\"; declared tiers: frontend, backend\n{path}: shop: spec.sharedServices[0].ipBlock.cidr: \"10.0.0.1/8\": has host bits set; write 10.0.0.0/8\nerror: 2 invalid field(s); nothing rendered\n"
        ),
    );
}

/// One bad resource among good ones: nothing at all is rendered (no partial output to apply).
#[test]
fn one_bad_resource_renders_nothing() {
    let file = temp_file(
        "bad",
        b"apiVersion: netfence.io/v1alpha1\nkind: NamespaceIsolation\nmetadata: {name: bad, namespace: bad}\nspec: {isolate: []}\n",
    );
    let path = file.display().to_string();
    let output = netfence(&["render", "examples/", &path]);
    assert_bad_input(
        &output,
        &format!("{path}: bad: spec.isolate: must list at least one direction"),
    );
}

/// Parse-level errors (two unknown fields, a lowercase enum value, a missing required field)
/// hide nothing: every error of the document, each with its file, name and path, exit 2,
/// nothing rendered. If this fails, `render` stops at the first one ("1 invalid field(s)")
/// and the user needs one run per mistake.
#[test]
fn parse_errors_hide_no_other_error() {
    let file = temp_file(
        "several",
        b"apiVersion: netfence.io/v1alpha1\nkind: NamespaceIsolation\nmetadata: {name: shop, namespace: shop}\nspec:\n  isolate: [ingress, Egress]\n  tierz: []\n  flowz: []\n  tiers: [{name: web}, {name: Worker, podSelector: {}}]\n  flows: [{from: web, to: db}]\n",
    );
    let path = file.display().to_string();
    let output = netfence(&["render", &path]);
    assert_bad_input(
        &output,
        &format!(
            "{path}: shop: spec.flowz: unknown field; check its spelling and indentation against `kubectl explain`\n\
             {path}: shop: spec.isolate[0]: unsupported value \"ingress\"; use one of: Ingress, Egress (case matters)\n\
             {path}: shop: spec.tiers[0].podSelector: is required but missing; add it (`kubectl explain` describes it)\n\
             {path}: shop: spec.tierz: unknown field; check its spelling and indentation against `kubectl explain`\n\
             {path}: shop: spec.tiers[1].name: \"Worker\" is not a DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a letter or digit\n\
             {path}: shop: spec.flows[0].to: unknown tier \"db\"; declared tiers: web, Worker\n\
             error: 6 invalid field(s); nothing rendered\n"
        ),
    );
}

/// A label value forgotten in a selector (`tier:`), a misspelt field left empty (`port:`), a
/// label that is not a string and a CIDR the API server refuses: each is an error, with the
/// spec's other errors, exit 2, nothing rendered. If this fails, `render` writes a tier policy
/// that selects every pod (the empty value dropped) and exits 0, or a metadata error hides the
/// spec's errors.
#[test]
fn empty_values_and_bad_metadata_are_errors() {
    let file = temp_file(
        "empty",
        b"apiVersion: netfence.io/v1alpha1\nkind: NamespaceIsolation\nmetadata: {name: shop, namespace: shop, labels: {team: 1}}\nspec:\n  tiers:\n    - {name: web, podSelector: {matchLabels: {tier: }}}\n    - {name: db, podSelector: {matchLabels: {tier: db}}}\n  flows: [{from: web, to: db, port: }, {from: web, to: api}]\n  sharedServices:\n    - {name: x, direction: Egress, ipBlock: {cidr: 10.0.0.0/08}}\n",
    );
    let path = file.display().to_string();
    let output = netfence(&["render", &path]);
    assert_bad_input(
        &output,
        &format!(
            "{path}: shop: spec.flows[0].port: unknown field; check its spelling and indentation against `kubectl explain`\n\
             {path}: shop: spec.tiers[0].podSelector.matchLabels.tier: has no value; the API server drops it and the selector then matches pods whatever their `tier` label: write a value, or remove the key\n\
             {path}: shop: metadata.labels.team: must be a string, not a number; put it in quotes\n\
             {path}: shop: spec.flows[1].to: unknown tier \"api\"; declared tiers: web, db\n\
             {path}: shop: spec.sharedServices[0].ipBlock.cidr: \"10.0.0.0/08\": prefix length \"08\" must be a number from 0 to 32, in plain digits without a leading zero or sign\n\
             error: 5 invalid field(s); nothing rendered\n"
        ),
    );
}

/// A misspelt field is an error with its path, not silently ignored.
#[test]
fn unknown_field_is_an_error() {
    let file = temp_file(
        "typo",
        b"apiVersion: netfence.io/v1alpha1\nkind: NamespaceIsolation\nmetadata: {name: shop}\nspec:\n  sharedService: []\n",
    );
    let path = file.display().to_string();
    assert_bad_input(
        &netfence(&["render", &path]),
        &format!("{path}: shop: spec.sharedService: unknown field"),
    );
}

/// Malformed YAML: one error naming the file.
#[test]
fn malformed_yaml() {
    let file = temp_file("malformed", b"apiVersion: v1\nkind: [NamespaceIsolation\n");
    let path = file.display().to_string();
    assert_bad_input(
        &netfence(&["render", &path]),
        &format!("error: {path}: not valid YAML or JSON"),
    );
}

/// A NamespaceIsolation of an apiVersion that does not exist.
#[test]
fn wrong_api_version() {
    let file = temp_file(
        "version",
        b"apiVersion: netfence.io/v1\nkind: NamespaceIsolation\nmetadata: {name: shop}\nspec: {}\n",
    );
    let path = file.display().to_string();
    assert_bad_input(
        &netfence(&["render", &path]),
        &format!(
            "{path}: shop: apiVersion: \"netfence.io/v1\" is not served; use netfence.io/v1alpha1"
        ),
    );
}

/// Only other kinds: a note for each, then an error that nothing was found.
#[test]
fn no_namespace_isolation() {
    let file = temp_file(
        "other",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n",
    );
    let path = file.display().to_string();
    let output = netfence(&["render", &path]);
    assert_bad_input(
        &output,
        &format!(
            "note: {path}: skipping ConfigMap settings (not a NamespaceIsolation, IsolationTemplate or ClusterBaseline)"
        ),
    );
    assert!(stderr(&output).contains(
        "error: no NamespaceIsolation or ClusterBaseline (apiVersion netfence.io/v1alpha1) found in"
    ));
}

/// An empty file is a mistake worth stopping for.
#[test]
fn empty_file() {
    let file = temp_file("empty", b"");
    let path = file.display().to_string();
    assert_bad_input(
        &netfence(&["render", &path]),
        &format!("error: {path}: holds no Kubernetes object; remove the file or add a manifest"),
    );
}

/// A missing path.
#[test]
fn missing_path() {
    assert_bad_input(
        &netfence(&["render", "does/not/exist.yaml"]),
        "error: does/not/exist.yaml: cannot read",
    );
}

/// 10 MB of junk, binary and text: one clear error, never a panic or a hang.
#[test]
fn ten_megabytes_of_junk() {
    let binary: Vec<u8> = (0..10 * 1024 * 1024_u32)
        .map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = temp_file("binary", &binary);
    let path = file.display().to_string();
    assert_bad_input(
        &netfence(&["render", &path]),
        &format!("error: {path}: not UTF-8 text"),
    );

    let text = "{[: junk ]] ::: - ! & * @ `\n".repeat(10 * 1024 * 1024 / 28);
    let file = temp_file("text", text.as_bytes());
    let path = file.display().to_string();
    assert_bad_input(
        &netfence(&["render", &path]),
        &format!("error: {path}: not valid YAML or JSON"),
    );

    let words = "lorem ipsum dolor sit amet\n".repeat(10 * 1024 * 1024 / 27);
    let file = temp_file("words", words.as_bytes());
    let path = file.display().to_string();
    assert_bad_input(
        &netfence(&["render", &path]),
        &format!("error: {path}: document 1 is not a Kubernetes object"),
    );
}

/// `netfence crd` prints the CRD a user pipes into `kubectl apply -f -`.
#[test]
fn crd_prints_the_crd() {
    let output = netfence(&["crd"]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let crds: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        serde_saphyr::from_multiple(&text).expect("CRD YAML");
    assert_eq!(
        crds.iter()
            .map(|crd| crd.metadata.name.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        [
            "namespaceisolations.netfence.io",
            "isolationtemplates.netfence.io",
            "clusterbaselines.netfence.io"
        ]
    );
}

/// `netfence crd --output-dir DIR` creates DIR (and its parents) when it does not exist. If this
/// fails, a user regenerating `config/crd` into a fresh checkout or a new chart directory gets
/// "No such file or directory" and has to `mkdir -p` first.
#[test]
fn crd_output_dir_is_created_when_missing() {
    let root = tempfile::tempdir().expect("temp dir");
    let directory = root.path().join("new/nested/crds");
    let output = netfence(&[
        "crd",
        "--output-dir",
        directory.to_str().expect("UTF-8 path"),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut files: Vec<String> = std::fs::read_dir(&directory)
        .expect("the directory exists")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "clusterbaselines.netfence.io.yaml",
            "isolationtemplates.netfence.io.yaml",
            "namespaceisolations.netfence.io.yaml"
        ]
    );
    // A path that cannot be a directory (a file is in the way) is one clear error.
    let file = root.path().join("a-file");
    std::fs::write(&file, "").expect("writes");
    let blocked = file.join("crds");
    let output = netfence(&["crd", "--output-dir", blocked.to_str().expect("UTF-8 path")]);
    assert!(!output.status.success());
    let stderr = stderr(&output);
    assert!(
        stderr.starts_with("error: cannot create the directory ") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

const TEAM_TEMPLATE: &str = "apiVersion: netfence.io/v1alpha1
kind: IsolationTemplate
metadata: {name: teams}
spec:
  namespaceSelector: {matchLabels: {team: 'true'}}
  isolationName: baseline
  template:
    spec:
      tiers: [{name: web, podSelector: {matchLabels: {app: web}}}]
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {team: 'true'}}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b, labels: {team: 'true'}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
";

/// A GitOps pipeline sees what every namespace will get from a template before it merges: the
/// template is expanded over the Namespace manifests as the controller would, a hand-written
/// NamespaceIsolation of the same name wins its namespace (with a note), and the rest get the
/// template's policies.
#[test]
fn render_expands_templates_over_namespaces() {
    let hand_written = "---
apiVersion: netfence.io/v1alpha1
kind: NamespaceIsolation
metadata: {name: baseline, namespace: team-b}
spec: {isolate: [Ingress], tiers: [{name: all, podSelector: {}}]}
";
    let output = netfence_stdin(
        &["render", "-o", "json", "-"],
        &format!("{TEAM_TEMPLATE}{hand_written}"),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let names: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            format!(
                "{}/{}",
                item["metadata"]["namespace"].as_str().unwrap_or_default(),
                item["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            // team-b's own resource: Ingress only, one tier, no DNS policy.
            "team-b/baseline-default-deny",
            "team-b/baseline-tier-all",
            // team-a gets the template.
            "team-a/baseline-default-deny",
            "team-a/baseline-allow-dns",
            "team-a/baseline-tier-web",
        ]
    );
    assert!(
        stderr(&output).contains(
            "IsolationTemplate teams: namespace team-b: NamespaceIsolation baseline exists and this template does not own it"
        ),
        "{}",
        stderr(&output)
    );
}

/// An invalid template renders nothing and names the field below `spec.template`.
#[test]
fn render_refuses_an_invalid_template() {
    let invalid = TEAM_TEMPLATE.replace("{matchLabels: {app: web}}", "{matchLabels: {app: -web}}");
    let output = netfence_stdin(&["render", "-"], &invalid);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
    assert!(
        stderr(&output).contains(
            "-: teams: spec.template.spec.tiers[0].podSelector.matchLabels.app: value \"-web\""
        ),
        "{}",
        stderr(&output)
    );
}

/// `netfence verify` proves the intent of every NamespaceIsolation a template generates.
#[test]
fn verify_proves_what_a_template_generates() {
    let output = netfence(&["verify", "examples/microservice-team-template.yaml"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", stderr(&output));
    assert!(
        stdout.contains("NamespaceIsolation team-payments/baseline"),
        "{stdout}"
    );
    assert!(
        stdout.contains("NamespaceIsolation team-search/baseline"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("\nintent holds:").count(), 2, "{stdout}");
}

/// Run netfence with a stdout whose reader is already gone, as `netfence crd | head -1` leaves
/// it once `head` has its line: every write to stdout fails with a broken pipe.
fn netfence_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_netfence"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("netfence runs")
}

/// `netfence crd | head -1`, and the same for every command that prints to stdout: the reader
/// leaving early ends the command quietly, with the exit code it has with a reader. If this
/// fails, a shell pipeline prints a panic and fails with exit 101 (`set -o pipefail` scripts
/// stop there).
#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let kubeconfig = tempfile::Builder::new()
        .prefix("closed-stdout")
        .suffix(".kubeconfig")
        .tempfile()
        .expect("temp file")
        .into_temp_path();
    let listen = format!("127.0.0.1:{port}");
    let kubeconfig = kubeconfig.display().to_string();
    let commands: [&[&str]; 4] = [
        &["crd"],
        &["render", "examples/"],
        &["verify", "examples/three-tier.yaml"],
        &[
            "sandbox",
            "--once",
            "--listen",
            &listen,
            "--kubeconfig",
            &kubeconfig,
            "--apply",
            "examples/three-tier.yaml",
        ],
    ];
    for args in commands {
        let expected = netfence(args).status.code();
        let output = netfence_closed_stdout(args);
        let stderr = stderr(&output);
        assert!(!stderr.contains("panicked"), "netfence {args:?}: {stderr}");
        assert_eq!(
            output.status.code(),
            expected,
            "netfence {args:?}: {stderr}"
        );
        assert_eq!(
            expected,
            Some(0),
            "netfence {args:?} succeeds with a reader"
        );
    }
}

/// What every refusal of a namespace says a namespace is.
const NAMESPACE_RULE: &str = "a namespace is a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit";

/// A NamespaceIsolation manifest in `namespace`, with one tier and a flow, as YAML.
fn isolation_in(namespace: &str) -> String {
    format!(
        "apiVersion: netfence.io/v1alpha1\nkind: NamespaceIsolation\nmetadata: {{name: lock, namespace: {namespace:?}}}\nspec:\n  tiers: [{{name: web, podSelector: {{matchLabels: {{tier: web}}}}}}]\n  flows: [{{from: web, to: web, ports: [{{port: 80}}]}}]\n"
    )
}

/// A NamespaceIsolation whose `metadata.namespace` cannot be a namespace (characters kubectl
/// refuses, a slash, an empty string, too long) makes render, verify and sandbox refuse their
/// input: exit 2, one error naming the file, the object and `metadata.namespace`, saying what a
/// namespace is, and nothing on stdout. If this fails, render prints policies for a namespace no
/// cluster has (an empty one lands in the current context's namespace when applied), and
/// verify proves them against nothing, printing dozens of false differences and exiting 1.
#[test]
fn an_invalid_metadata_namespace_is_refused_by_every_command() {
    let long = "a".repeat(64);
    let too_long = format!("\"{long}\" is not a valid namespace");
    for (namespace, problem) in [
        ("Bad_NS../x", "\"Bad_NS../x\" is not a valid namespace"),
        ("x/y", "\"x/y\" is not a valid namespace"),
        ("", "is empty: name the namespace, or leave the field out"),
        (long.as_str(), too_long.as_str()),
    ] {
        let file = temp_file("namespace", isolation_in(namespace).as_bytes());
        let path = file.display().to_string();
        let expected = format!("{path}: lock: metadata.namespace: ");
        let output = netfence(&["render", &path]);
        assert_bad_input(&output, &format!("{expected}{problem}"));
        assert!(
            stderr(&output).contains(NAMESPACE_RULE),
            "{}",
            stderr(&output)
        );
        let output = netfence(&["verify", &path]);
        assert_bad_input(&output, &format!("error: {expected}{problem}"));
        assert!(
            stderr(&output).contains(NAMESPACE_RULE),
            "{}",
            stderr(&output)
        );
        let kubeconfig = tempfile::NamedTempFile::new().expect("temp file");
        let output = netfence(&[
            "sandbox",
            "--once",
            "--listen",
            "127.0.0.1:0",
            "--kubeconfig",
            &kubeconfig.path().display().to_string(),
            "--apply",
            &path,
        ]);
        assert_bad_input(
            &output,
            &format!("error: {path}: NamespaceIsolation lock: metadata.namespace: {problem}"),
        );
    }
}

/// A Namespace manifest without a name (or with one that cannot be a namespace), beside the
/// template that expands over it, is refused: exit 2 naming `metadata.name`, nothing on stdout.
/// If this fails, render prints the template's policies with `namespace: ""`, which kubectl
/// applies to the current context's namespace.
#[test]
fn a_namespace_manifest_without_a_valid_name_is_refused() {
    for metadata in ["{labels: {team: a}}", "{name: Team_A, labels: {team: a}}"] {
        let input =
            format!("{TEAM_TEMPLATE}---\napiVersion: v1\nkind: Namespace\nmetadata: {metadata}\n");
        let file = temp_file("nameless", input.as_bytes());
        let path = file.display().to_string();
        for command in ["render", "verify"] {
            let output = netfence(&[command, &path]);
            assert_bad_input(&output, "metadata.name: ");
            let stderr = stderr(&output);
            assert!(stderr.contains(&path), "{stderr}");
            assert!(stderr.contains(NAMESPACE_RULE), "{stderr}");
            assert!(
                !stderr.contains("matches none"),
                "no note about the refused Namespace: {stderr}"
            );
        }
    }
    let output = netfence_stdin(
        &["verify", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata: {labels: {a: b}}\n",
    );
    assert_bad_input(
        &output,
        "error: -: Namespace <unnamed>: metadata.name: is missing; a Namespace manifest names its namespace",
    );
}

/// `render --namespace` takes a namespace name only: an empty one or `../UP per` exit 2 with
/// clap's error naming `--namespace`, and nothing on stdout. If this fails, render prints
/// `namespace: ""` (applied to the current context's namespace) or a namespace kubectl refuses.
#[test]
fn render_refuses_an_invalid_namespace_option() {
    let input = "apiVersion: netfence.io/v1alpha1\nkind: NamespaceIsolation\nmetadata: {name: lock}\nspec: {}\n";
    for (namespace, problem) in [
        ("", "is empty"),
        ("../UP per", "\"../UP per\" is not a valid namespace"),
    ] {
        let output = netfence_stdin(&["render", "-", "--namespace", namespace], input);
        assert_bad_input(
            &output,
            &format!("invalid value '{namespace}' for '--namespace <NAMESPACE>': {problem}"),
        );
        assert!(
            stderr(&output).contains(NAMESPACE_RULE),
            "{}",
            stderr(&output)
        );
        let output = netfence_stdin(&["render", "-", &format!("-n={namespace}")], input);
        assert_bad_input(&output, "'--namespace <NAMESPACE>'");
    }
}

/// A Pod or NetworkPolicy whose `metadata.namespace` cannot be one is refused by verify with
/// exit 2, not modelled. If this fails, the matrix shows pods of a namespace no cluster can have.
#[test]
fn verify_refuses_pods_and_policies_in_invalid_namespaces() {
    let input = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: Shop}\nspec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: \"a/b\"}\nspec: {podSelector: {}}\n";
    let output = netfence_stdin(&["verify", "-"], input);
    assert_bad_input(
        &output,
        "error: -: Pod Shop/web: metadata.namespace: \"Shop\" is not a valid namespace",
    );
    assert!(
        stderr(&output).contains(
            "error: -: NetworkPolicy a/b/p: metadata.namespace: \"a/b\" is not a valid namespace"
        ),
        "{}",
        stderr(&output)
    );
}
