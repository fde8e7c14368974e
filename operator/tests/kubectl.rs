//! kubectl as a user meets it, against `netfence sandbox` (the binary, a kubeconfig, and
//! `kubectl` v1.32+), or, when `NETFENCE_E2E_KUBECONFIG` names a real cluster, against that
//! cluster with `netfence run` (the binary) started by the test:
//!
//! ```text
//! sandbox: netfence sandbox --listen 127.0.0.1:PORT --kubeconfig K (API server + controller)
//! real:    kubectl apply --server-side -f config/crd;  netfence run --kubeconfig $NETFENCE_E2E_KUBECONFIG
//!          (cluster-wide: the IsolationTemplate example needs it), namespaces and cluster-wide
//!          names of the test's own (a suffix), deleted when the test ends
//! kubectl --kubeconfig K apply / get / wait / explain / delete ...
//! ```
//!
//! On a real cluster the tests start a cluster-wide operator and apply `config/default`: run
//! them one at a time, and not beside the e2e scenarios (as `.ci/run` does). Skipped, visibly,
//! when kubectl is not installed: `cargo test` needs only the Rust toolchain. The `--once` tests
//! are about `netfence sandbox` itself and run on it in both cases.

mod common;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// The manifests to apply: the repository's `examples/` when it exists, else the fixture copy.
fn examples() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let examples = root.join("examples");
    if examples.is_dir() {
        examples
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/examples")
    }
}

/// The repository's root.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether kubectl is there; when not, say so past the output capture and in the skip log.
fn kubectl_or_skip(test: &str) -> bool {
    let available = kubectl_available();
    if !available {
        common::skip(test, "kubectl is not installed");
    }
    available
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// How long one command may run: `netfence sandbox --once` waits up to 60 s for templates and
/// 60 s for NamespaceIsolations; a command past this hangs, and the test says so instead of
/// holding CI until its own timeout.
const COMMAND_LIMIT: Duration = Duration::from_secs(300);

/// Run a command to its end with its output captured; panic, with what it printed, if it runs
/// past [`COMMAND_LIMIT`].
fn output_within_limit(command: &mut Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read(child.stdout.take().map(|pipe| Box::new(pipe) as _));
    let stderr = read(child.stderr.take().map(|pipe| Box::new(pipe) as _));
    let deadline = Instant::now() + COMMAND_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the command can be waited for") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let Some(status) = status else {
        panic!(
            "{command:?} was still running after {}s and was killed:\n{}\n{}",
            COMMAND_LIMIT.as_secs(),
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

/// A suffix no other test run is likely to use.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos % 0xfffff, std::process::id() % 0xfff)
}

/// What kubectl talks to, stopped and cleaned up when dropped: a `netfence sandbox` of the
/// test's own, or the real cluster of `NETFENCE_E2E_KUBECONFIG`.
struct Target {
    kubeconfig: PathBuf,
    cache: PathBuf,
    /// The `netfence sandbox` process, or the `netfence run` processes on a real cluster.
    processes: Vec<Child>,
    /// On a real cluster: the suffix of the names the test gives what it creates.
    suffix: Option<String>,
    /// What to delete when the test ends, as `kubectl delete` arguments (real cluster only).
    created: Vec<Vec<String>>,
    /// The operator's ServiceAccount and bindings: deleted after everything else, since the
    /// operator releases finalizers while the rest is deleted.
    grants: Vec<Vec<String>>,
}

impl Target {
    /// The sandbox, or the real cluster with netfence's CRDs applied by kubectl.
    fn start(directory: &Path) -> Target {
        match std::env::var_os(common::KUBECONFIG_VARIABLE) {
            Some(kubeconfig) => Target::real(directory, PathBuf::from(kubeconfig)),
            None => Target::sandbox(directory),
        }
    }

    fn sandbox(directory: &Path) -> Target {
        let kubeconfig = directory.join("sandbox.kubeconfig");
        let child = Command::new(env!("CARGO_BIN_EXE_netfence"))
            .args(["sandbox", "--listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("netfence sandbox starts");
        let target = Target {
            kubeconfig,
            cache: directory.join("kubectl-cache"),
            processes: vec![child],
            suffix: None,
            created: Vec::new(),
            grants: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(target.kubeconfig.exists()
            && target
                .kubectl(&["get", "--raw", "/readyz"])
                .status
                .success())
        {
            assert!(Instant::now() < deadline, "netfence sandbox came up");
            std::thread::sleep(Duration::from_millis(100));
        }
        target
    }

    fn real(directory: &Path, kubeconfig: PathBuf) -> Target {
        let target = Target {
            kubeconfig,
            cache: directory.join("kubectl-cache"),
            processes: Vec::new(),
            suffix: Some(unique_suffix()),
            created: Vec::new(),
            grants: Vec::new(),
        };
        // `config/crd` installs (structural schemas, CEL cost within budget), as users apply it.
        let crds = repository().join("config/crd");
        target.ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
            crds.to_str().expect("UTF-8"),
        ]);
        target.ok(&[
            "wait",
            "--for=condition=Established",
            "crd/namespaceisolations.netfence.io",
            "crd/isolationtemplates.netfence.io",
            "--timeout=60s",
        ]);
        target
    }

    fn is_real(&self) -> bool {
        self.suffix.is_some()
    }

    /// `name` as the test uses it: on a real cluster with the test's suffix.
    fn name(&self, name: &str) -> String {
        match &self.suffix {
            Some(suffix) => format!("{name}-{suffix}"),
            None => name.to_owned(),
        }
    }

    /// A kubeconfig for a ServiceAccount of this test's own, bound to exactly the roles of
    /// `config/rbac/` (a TokenRequest token, from `kubectl create token`): the operator runs with
    /// what the installation grants it, so a missing grant is a real 403.
    fn operator_kubeconfig(&mut self) -> PathBuf {
        let name = self.name("kubectl-operator");
        let rbac = repository().join("config");
        for manifest in [
            "manager/namespace.yaml",
            "rbac/cluster_role.yaml",
            "rbac/leader_election_role.yaml",
        ] {
            let path = rbac.join(manifest);
            self.ok(&[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                path.to_str().expect("UTF-8"),
            ]);
        }
        let subject = format!("netfence-system:{name}");
        self.ok(&["-n", "netfence-system", "create", "serviceaccount", &name]);
        self.grants
            .push(to_args(&["-n", "netfence-system", "serviceaccount", &name]));
        self.ok(&[
            "create",
            "clusterrolebinding",
            &name,
            "--clusterrole=netfence",
            &format!("--serviceaccount={subject}"),
        ]);
        self.grants.push(to_args(&["clusterrolebinding", &name]));
        self.ok(&[
            "-n",
            "netfence-system",
            "create",
            "rolebinding",
            &name,
            "--role=netfence-leader-election",
            &format!("--serviceaccount={subject}"),
        ]);
        self.grants
            .push(to_args(&["-n", "netfence-system", "rolebinding", &name]));
        let dns_role = rbac.join("rbac/dns_role.yaml");
        self.ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            dns_role.to_str().expect("UTF-8"),
        ]);
        self.ok(&[
            "-n",
            "kube-system",
            "create",
            "rolebinding",
            &name,
            "--role=netfence-dns",
            &format!("--serviceaccount={subject}"),
        ]);
        self.grants
            .push(to_args(&["-n", "kube-system", "rolebinding", &name]));
        let token = self.ok(&[
            "-n",
            "netfence-system",
            "create",
            "token",
            &name,
            "--duration=2h",
        ]);
        let cluster = |field: &str| {
            self.ok(&[
                "config",
                "view",
                "--minify",
                "--raw",
                "-o",
                &format!("jsonpath={{.clusters[0].cluster.{field}}}"),
            ])
        };
        let server = cluster("server");
        let authority = match cluster("certificate-authority-data") {
            data if !data.trim().is_empty() => {
                format!("certificate-authority-data: {}", data.trim())
            }
            _ => format!(
                "certificate-authority: {}",
                cluster("certificate-authority").trim()
            ),
        };
        let path = self.cache.with_file_name("operator.kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n  - name: c\n    cluster:\n      server: {}\n      {authority}\nusers:\n  - name: {name}\n    user:\n      token: {}\ncontexts:\n  - name: c\n    context: {{cluster: c, user: {name}}}\ncurrent-context: c\n",
                server.trim(),
                token.trim()
            ),
        )
        .expect("the operator's kubeconfig");
        path
    }

    /// Run `netfence run` against the real cluster (the sandbox runs its controller itself), as
    /// a ServiceAccount bound to `config/rbac/`.
    fn start_operator(&mut self) {
        if !self.is_real() {
            return;
        }
        let kubeconfig = self.operator_kubeconfig();
        let child = Command::new(env!("CARGO_BIN_EXE_netfence"))
            .arg("run")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("netfence run starts");
        self.processes.push(child);
    }

    /// Delete this when the test ends (real cluster only; a sandbox goes with its process).
    fn created(&mut self, what: &[&str]) {
        if self.is_real() {
            self.created
                .push(what.iter().map(|part| (*part).to_owned()).collect());
        }
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        output_within_limit(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--cache-dir")
                .arg(&self.cache)
                .args(args),
        )
    }

    /// Run kubectl, require success, return stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    }

    /// Wait until `kubectl get KIND NAME` finds it (a template's generated resource).
    fn wait_exists(&self, args: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut get = vec!["get"];
        get.extend_from_slice(args);
        while !self.kubectl(&get).status.success() {
            assert!(
                Instant::now() < deadline,
                "kubectl get {args:?} found nothing"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // The operator runs while what the test made is deleted: finalizers of
        // `deletionPolicy: KeepDefaultDeny` resources are released by it.
        for what in self.created.iter().rev().chain(&self.grants) {
            let mut args = vec!["delete", "--ignore-not-found", "--timeout=120s"];
            args.extend(what.iter().map(String::as_str));
            let _ = self.kubectl(&args);
        }
        for process in &mut self.processes {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// `kubectl` arguments as owned strings.
fn to_args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| (*part).to_owned()).collect()
}

fn scratch(name: &str) -> PathBuf {
    let directory =
        std::env::temp_dir().join(format!("netfence-kubectl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("scratch directory");
    directory
}

/// Every document of `examples/*.yaml`, in file order.
fn example_documents() -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples())
        .expect("examples/")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml")
        })
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).expect("an example");
            serde_saphyr::from_multiple::<Value>(&text).expect("YAML")
        })
        .collect()
}

/// The examples as the test applies them: on the sandbox `examples/` itself, on a real cluster
/// a copy whose namespaces, IsolationTemplate and template label carry the test's suffix (and
/// that the test deletes when it ends). Returns the path to apply and the namespaces of the
/// NamespaceIsolations, with a NamespaceIsolation each (a template's generated one included).
fn examples_to_apply(target: &mut Target, directory: &Path) -> (PathBuf, Vec<(String, String)>) {
    let mut documents = example_documents();
    let mut isolations = Vec::new();
    for document in &mut documents {
        match document["kind"].as_str() {
            Some("Namespace") => {
                let name = target.name(document["metadata"]["name"].as_str().expect("a name"));
                document["metadata"]["name"] = json!(name);
                if let Some(profile) =
                    document["metadata"]["labels"]["netfence.io/profile"].as_str()
                {
                    document["metadata"]["labels"]["netfence.io/profile"] =
                        json!(target.name(profile));
                    isolations.push((name.clone(), "baseline".to_owned()));
                }
                target.created(&["namespace", &name]);
            }
            Some("NamespaceIsolation") => {
                let namespace = target.name(
                    document["metadata"]["namespace"]
                        .as_str()
                        .expect("a namespace"),
                );
                document["metadata"]["namespace"] = json!(namespace);
                let name = document["metadata"]["name"]
                    .as_str()
                    .expect("a name")
                    .to_owned();
                isolations.push((namespace, name));
            }
            Some("IsolationTemplate") => {
                let name = target.name(document["metadata"]["name"].as_str().expect("a name"));
                document["metadata"]["name"] = json!(name);
                let labels = &mut document["spec"]["namespaceSelector"]["matchLabels"];
                if let Some(profile) = labels["netfence.io/profile"].as_str() {
                    labels["netfence.io/profile"] = json!(target.name(profile));
                }
                target.created(&["isolationtemplate", &name]);
            }
            _ => {}
        }
    }
    if !target.is_real() {
        return (examples(), isolations);
    }
    let copy = directory.join("examples");
    std::fs::create_dir_all(&copy).expect("a directory for the examples");
    for (index, document) in documents.iter().enumerate() {
        std::fs::write(
            copy.join(format!("{index:02}.json")),
            serde_json::to_string_pretty(document).expect("JSON"),
        )
        .expect("an example written");
    }
    (copy, isolations)
}

/// What a newcomer does first: `kubectl apply --server-side` the examples (client-side
/// validation on, as by default), and every one becomes Ready (`kubectl wait`), the
/// IsolationTemplate's generated resources too; list them with the printer columns, read the
/// policies as YAML, apply again, `kubectl explain`, delete them; then `kubectl create
/// namespace`, which sends protobuf. On the sandbox and on a real cluster with `netfence run`.
/// If this fails, the README's first commands fail for every user, or an example does not
/// work on a real cluster.
#[test]
fn kubectl_applies_the_examples_and_they_become_ready() {
    if !kubectl_or_skip("kubectl_applies_the_examples_and_they_become_ready") {
        return;
    }
    let directory = scratch("apply");
    let mut target = Target::start(&directory);
    let (examples, isolations) = examples_to_apply(&mut target, &directory);
    let examples = examples.to_str().expect("UTF-8 path").to_owned();
    target.start_operator();

    let applied = target.ok(&["apply", "--server-side", "-f", &examples]);
    assert!(
        applied.contains("namespaceisolation.netfence.io/shop serverside-applied"),
        "{applied}"
    );
    assert!(isolations.len() >= 6, "{isolations:?}");
    for (namespace, name) in &isolations {
        target.wait_exists(&["nsi", name, "-n", namespace]);
        target.ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("nsi/{name}"),
            "-n",
            namespace,
            "--timeout=120s",
        ]);
    }

    let shop = target.name("shop");
    let listed = target.ok(&["get", "nsi", "-n", &shop]);
    let header: Vec<&str> = listed
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "MODE", "READY", "ISOLATED", "POLICIES", "AGE"],
        "the printer columns"
    );
    assert!(
        listed.lines().any(|line| line
            .split_whitespace()
            .take(5)
            .eq(["shop", "Enforce", "True", "True", "5"])),
        "{listed}"
    );

    let policies = target.ok(&["get", "netpol", "-n", &shop, "-o", "yaml"]);
    assert!(policies.contains("kind: List"), "{policies}");
    assert!(policies.contains("name: shop-default-deny"), "{policies}");

    let again = target.ok(&["apply", "-f", &examples]);
    assert!(
        again.contains("namespaceisolation.netfence.io/shop configured")
            || again.contains("unchanged"),
        "{again}"
    );

    let explained = target.ok(&["explain", "nsi.spec.tiers"]);
    assert!(explained.contains("podSelector"), "{explained}");

    let deleted = target.ok(&["delete", "-f", &examples, "--ignore-not-found"]);
    assert!(
        deleted.contains("namespaceisolation.netfence.io \"shop\" deleted"),
        "{deleted}"
    );
    let after = target.kubectl(&["get", "nsi", "-n", &shop]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&after.stdout),
        String::from_utf8_lossy(&after.stderr)
    );
    assert!(
        text.contains("No resources found") || text.contains("not found"),
        "{text}"
    );

    // kubectl sends typed creates as protobuf.
    let demo = target.name("demo");
    target.created(&["namespace", &demo]);
    let created = target.ok(&["create", "namespace", &demo]);
    assert!(
        created.contains(&format!("namespace/{demo} created")),
        "{created}"
    );
    let phase = target.ok(&["get", "namespace", &demo, "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Active");
    let dry_run = target.name("demo2");
    let dry = target.ok(&["create", "ns", &dry_run, "--dry-run=server", "-o", "name"]);
    assert_eq!(dry.trim(), format!("namespace/{dry_run}"));
    let missing = target.kubectl(&["get", "namespace", &dry_run]);
    assert!(!missing.status.success(), "a server dry run stores nothing");
    drop(target);
    let _ = std::fs::remove_dir_all(&directory);
}

/// A NamespaceIsolation that breaks a CEL rule is refused by `kubectl apply` with the field
/// path, the same on the sandbox and on a real cluster. If this fails, users learn of their
/// mistakes late, or the sandbox tells them something a cluster would not.
#[test]
fn kubectl_sees_the_field_path_of_an_invalid_isolation() {
    if !kubectl_or_skip("kubectl_sees_the_field_path_of_an_invalid_isolation") {
        return;
    }
    let directory = scratch("invalid");
    let mut target = Target::start(&directory);
    let namespace = if target.is_real() {
        let namespace = target.name("invalid");
        target.created(&["namespace", &namespace]);
        target.ok(&["create", "namespace", &namespace]);
        namespace
    } else {
        "default".to_owned()
    };
    let manifest = directory.join("bad.yaml");
    std::fs::write(
        &manifest,
        format!("apiVersion: netfence.io/v1alpha1\nkind: NamespaceIsolation\nmetadata: {{name: bad, namespace: {namespace}}}\nspec:\n  tiers: [{{name: web, podSelector: {{}}}}]\n  flows: [{{from: web, to: db}}]\n  colour: blue\n"),
    )
    .expect("manifest");
    let manifest = manifest.to_str().expect("UTF-8");
    for apply in [
        vec!["apply", "--server-side", "-f", manifest],
        vec!["apply", "-f", manifest],
    ] {
        // The unknown field first: kubectl's field validation, then the server's.
        let output = target.kubectl(&apply);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{apply:?}");
        assert!(
            stderr.contains(".spec.colour") || stderr.contains("spec.colour"),
            "{apply:?}: {stderr}"
        );
    }
    let fixed = std::fs::read_to_string(manifest)
        .expect("manifest")
        .replace("  colour: blue\n", "");
    std::fs::write(manifest, fixed).expect("manifest");
    for apply in [
        vec!["apply", "--server-side", "-f", manifest],
        vec!["apply", "-f", manifest],
    ] {
        let output = target.kubectl(&apply);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{apply:?}");
        assert!(
            stderr.contains("spec.flows: Invalid value: every flow's from and to must name a tier declared in spec.tiers"),
            "{apply:?}: {stderr}"
        );
    }
    drop(target);
    let _ = std::fs::remove_dir_all(&directory);
}

/// The README's installation, `kubectl apply -k config/default`: a real cluster accepts every
/// object (CRDs, namespace, RBAC, Deployment, PodDisruptionBudget, Service; its pods cannot run
/// without a kubelet), and applying it again, server-side as the README's upgrade does, changes
/// nothing that conflicts. The sandbox applies what it serves (the namespace and the CRDs) and
/// names each kind it does not. The cluster-scoped objects only this apply makes (the
/// ClusterRoleBinding, the admission policy and its binding) and the namespaced ones are removed
/// afterwards; the CRDs, the
/// `netfence-system` namespace, the ClusterRole and the leader-election Role stay: the e2e
/// harness applies the same ones. If this fails, the one-command installation fails on a
/// cluster.
#[test]
fn kubectl_apply_k_config_default_is_accepted() {
    if !kubectl_or_skip("kubectl_apply_k_config_default_is_accepted") {
        return;
    }
    let directory = scratch("config-default");
    let mut target = Target::start(&directory);
    let base = repository().join("config/default");
    let base = base.to_str().expect("UTF-8");
    if !target.is_real() {
        // kubectl's validation cannot find the schemas of the kinds the sandbox does not serve.
        let output = target.kubectl(&["apply", "-k", base]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "the sandbox serves no RBAC: {stdout}"
        );
        assert!(
            stdout.contains("namespace/netfence-system created"),
            "{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("customresourcedefinition.apiextensions.k8s.io/namespaceisolations.netfence.io configured"),
            "{stdout}\n{stderr}"
        );
        assert!(stderr.contains("failed to download openapi"), "{stderr}");
        // Without it, kubectl names each of them.
        let output = target.kubectl(&["apply", "-k", base, "--validate=false"]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stdout}");
        assert!(
            stdout.contains("namespace/netfence-system unchanged"),
            "{stdout}\n{stderr}"
        );
        for kind in [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ] {
            assert!(
                stderr.contains(&format!("no matches for kind \"{kind}\"")),
                "{kind}: {stderr}"
            );
        }
        drop(target);
        let _ = std::fs::remove_dir_all(&directory);
        return;
    }
    target.created(&["clusterrolebinding", "netfence"]);
    target.created(&[
        "validatingadmissionpolicybinding",
        "netfence-generated-policies",
    ]);
    target.created(&["validatingadmissionpolicy", "netfence-generated-policies"]);
    for (kind, name) in [
        ("deployment", "netfence"),
        ("poddisruptionbudget", "netfence"),
        ("service", "netfence-metrics"),
        ("serviceaccount", "netfence"),
        ("rolebinding", "netfence-leader-election"),
    ] {
        target.created(&["-n", "netfence-system", kind, name]);
    }
    target.created(&["-n", "kube-system", "role", "netfence-dns"]);
    target.created(&["-n", "kube-system", "rolebinding", "netfence-dns"]);
    let applied = target.ok(&["apply", "-k", base]);
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/namespaceisolations.netfence.io",
        "customresourcedefinition.apiextensions.k8s.io/isolationtemplates.netfence.io",
        "namespace/netfence-system",
        "serviceaccount/netfence",
        "clusterrole.rbac.authorization.k8s.io/netfence",
        "clusterrolebinding.rbac.authorization.k8s.io/netfence",
        "deployment.apps/netfence",
        "poddisruptionbudget.policy/netfence",
        "validatingadmissionpolicy.admissionregistration.k8s.io/netfence-generated-policies",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io/netfence-generated-policies",
    ] {
        assert!(applied.contains(object), "{object}: {applied}");
    }
    let listed = target.ok(&["get", "-k", base, "-o", "name"]);
    assert!(listed.contains("deployment.apps/netfence"), "{listed}");
    let again = target.ok(&["apply", "--server-side", "-k", base]);
    assert!(
        again.contains("deployment.apps/netfence serverside-applied"),
        "{again}"
    );
    drop(target);
    let _ = std::fs::remove_dir_all(&directory);
}

fn sandbox_once(directory: &std::path::Path, apply: &std::path::Path) -> std::process::Output {
    output_within_limit(
        Command::new(env!("CARGO_BIN_EXE_netfence"))
            .args([
                "sandbox",
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
                "--once",
                "--apply",
            ])
            .arg(apply)
            .arg("--kubeconfig")
            .arg(directory.join("sandbox.kubeconfig")),
    )
}

/// The README's first command: `netfence sandbox --apply examples/ --once` applies every example,
/// the controller makes every resource Ready with its policies, the intent of each holds, and it
/// exits 0. If this fails, a newcomer's first command does not show netfence doing its job.
#[test]
fn once_on_the_examples_is_ready_and_proven() {
    let directory = scratch("once");
    let output = sandbox_once(&directory, &examples());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("NetworkPolicies generated: 32"), "{stdout}");
    assert!(
        stdout.contains("IsolationTemplate microservice-team: Ready (Reconciled): 2 namespace(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "NamespaceIsolation shop/shop: Ready (Reconciled): 5 NetworkPolicies match the spec"
        ),
        "{stdout}"
    );
    assert_eq!(stdout.matches("\nintent holds:").count(), 7, "{stdout}");
    if examples().join("gitops").is_dir() {
        assert!(
            stderr.contains("skipping Application netfence (argoproj.io/v1alpha1): the sandbox does not serve it"),
            "{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&directory);
}

/// Kinds of other tools (examples/gitops/) are skipped with a note, but a netfence kind the
/// sandbox does not serve (here a wrong apiVersion) is an error: if this fails, a typo in a
/// NamespaceIsolation's apiVersion goes unnoticed and `--once` reports success without it.
#[test]
fn once_with_an_unserved_netfence_kind_fails() {
    let directory = scratch("once-unserved");
    let manifest = directory.join("unserved.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: elsewhere, namespace: argocd}\n---\napiVersion: netfence.io/v1\nkind: NamespaceIsolation\nmetadata: {name: typo, namespace: default}\nspec: {}\n",
    )
    .expect("manifest");
    let output = sandbox_once(&directory, &manifest);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("note: ") && stderr.contains("skipping Application elsewhere"),
        "{stderr}"
    );
    assert!(
        stderr.contains("NamespaceIsolation typo (netfence.io/v1) is not served by the sandbox"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&directory);
}

/// A resource admission lets through but netfence refuses (a label value CEL does not check):
/// `--once` reports it not Ready with the field path, and exits non-zero.
#[test]
fn once_with_an_invalid_resource_fails() {
    let directory = scratch("once-invalid");
    let manifest = directory.join("invalid.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bad}\n---\napiVersion: netfence.io/v1alpha1\nkind: NamespaceIsolation\nmetadata: {name: bad, namespace: bad}\nspec:\n  tiers: [{name: web, podSelector: {matchLabels: {app: '-web'}}}]\n",
    )
    .expect("manifest");
    let output = sandbox_once(&directory, &manifest);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("NamespaceIsolation bad/bad: not Ready (InvalidSpec): spec.tiers[0].podSelector.matchLabels.app"),
        "{stdout}"
    );
    assert!(
        stderr.contains("error: not every NamespaceIsolation and IsolationTemplate is Ready"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&directory);
}

/// The README's first command, `netfence sandbox --apply examples/ --once`, on a machine where
/// 127.0.0.1:6443 is taken (Docker Desktop's Kubernetes listens there): `--once` takes a free
/// port, says which on stderr, and succeeds. If this fails, a newcomer's first command fails
/// with "address in use" on exactly the laptops that run a local Kubernetes.
#[test]
fn once_takes_a_free_port_when_the_default_is_taken() {
    // Held for the whole test; if another process holds it already, it is taken all the same.
    let _held = TcpListener::bind("127.0.0.1:6443");
    assert!(
        TcpListener::bind("127.0.0.1:6443").is_err(),
        "127.0.0.1:6443 is taken for this test"
    );
    let directory = scratch("once-busy");
    let output = output_within_limit(
        Command::new(env!("CARGO_BIN_EXE_netfence"))
            .args(["sandbox", "--once", "--apply"])
            .arg(examples().join("three-tier.yaml"))
            .arg("--kubeconfig")
            .arg(directory.join("sandbox.kubeconfig")),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("note: 127.0.0.1:6443 is in use; the sandbox listens on 127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stdout.contains("NamespaceIsolation shop/shop: Ready (Reconciled)"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&directory);
}

/// The README's upgrade of the CRDs by server-side apply, on a fresh `netfence sandbox` (which
/// installed them itself) and on a real cluster (where the test installed them):
/// `netfence crd | kubectl apply --server-side -f -` applies them without a conflict. If this
/// fails, kubectl reports a conflict with the `netfence-sandbox` field manager over
/// `.spec.versions`, and the user is pushed to `--force-conflicts`.
#[test]
fn kubectl_applies_the_crds_server_side_over_netfence_sandbox() {
    if !kubectl_or_skip("kubectl_applies_the_crds_server_side_over_netfence_sandbox") {
        return;
    }
    let directory = scratch("crd-ssa");
    let target = Target::start(&directory);
    let crds = output_within_limit(Command::new(env!("CARGO_BIN_EXE_netfence")).arg("crd"));
    assert!(crds.status.success());
    let manifest = directory.join("crds.yaml");
    std::fs::write(&manifest, &crds.stdout).expect("the CRDs written");
    let manifest = manifest.to_str().expect("UTF-8");
    let applied = target.ok(&["apply", "--server-side", "-f", manifest]);
    assert!(
        applied.contains("customresourcedefinition.apiextensions.k8s.io/namespaceisolations.netfence.io serverside-applied"),
        "{applied}"
    );
    let again = target.ok(&["apply", "--server-side", "-f", manifest]);
    assert!(again.contains("serverside-applied"), "{again}");
    drop(target);
    let _ = std::fs::remove_dir_all(&directory);
}

/// `netfence doctor` as a platform engineer runs it, before and after adopting netfence: on a
/// cluster with Calico's DaemonSet and CoreDNS behind kube-dns, a namespace whose
/// NamespaceIsolation is Ready and Isolated passes (exit 0); with only Flannel's DaemonSet, the
/// doctor says the policies will not be enforced and exits 1, in text and in JSON.
#[test]
fn kubectl_doctor_passes_a_healthy_namespace_and_fails_flannel_alone() {
    if !kubectl_or_skip("kubectl_doctor_passes_a_healthy_namespace_and_fails_flannel_alone") {
        return;
    }
    let directory = scratch("doctor");
    let mut target = Target::start(&directory);
    target.start_operator();
    let namespace = target.name("doctor");
    let calico = target.name("calico-node");
    let flannel = target.name("kube-flannel-ds");
    let coredns = target.name("coredns");
    let cluster = doctor_cluster(
        &namespace,
        &coredns,
        &daemon_set(&calico, "docker.io/calico/node:v3.29.1"),
    );
    let manifest = directory.join("cluster.yaml");
    std::fs::write(&manifest, cluster).expect("manifest written");
    target.ok(&["apply", "-f", manifest.to_str().expect("UTF-8")]);
    for what in [
        vec!["namespace", namespace.as_str()],
        vec!["-n", "kube-system", "pod", coredns.as_str()],
        vec!["-n", "kube-system", "service", coredns.as_str()],
        vec!["-n", "kube-system", "daemonset", calico.as_str()],
        vec!["-n", "kube-system", "daemonset", flannel.as_str()],
    ] {
        target.created(&what);
    }
    target.ok(&[
        "wait",
        "--for=condition=Isolated",
        "nsi/shop",
        "-n",
        &namespace,
        "--timeout=120s",
    ]);
    let doctor = |format: &str| {
        output_within_limit(
            Command::new(env!("CARGO_BIN_EXE_netfence"))
                .arg("doctor")
                .arg("--kubeconfig")
                .arg(&target.kubeconfig)
                .args(["--namespace", &namespace, "-o", format]),
        )
    };
    let healthy = doctor("text");
    let text = String::from_utf8_lossy(&healthy.stdout);
    println!("{text}");
    assert_eq!(healthy.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "OK      cni: Calico (DaemonSet kube-system/{calico}) enforces NetworkPolicy"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "OK      isolations [{namespace}/shop]: Ready and Isolated"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "OK      dns [{namespace}/shop]: the DNS pods in kube-system match spec.dns"
        )),
        "{text}"
    );

    target.ok(&["-n", "kube-system", "delete", "daemonset", &calico]);
    let flannel_manifest = directory.join("flannel.yaml");
    std::fs::write(
        &flannel_manifest,
        daemon_set(&flannel, "docker.io/flannel/flannel:v0.26.1"),
    )
    .expect("manifest written");
    target.ok(&["apply", "-f", flannel_manifest.to_str().expect("UTF-8")]);
    let broken = doctor("text");
    let text = String::from_utf8_lossy(&broken.stdout);
    println!("{text}");
    assert_eq!(broken.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("ERROR   cni: Flannel (DaemonSet kube-system/{flannel}) handles pod networking and does not enforce NetworkPolicy")),
        "{text}"
    );
    assert!(text.contains("will not be enforced"), "{text}");
    let json = doctor("json");
    assert_eq!(json.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
    assert!(
        report["errors"].as_u64().is_some_and(|errors| errors >= 1),
        "{report}"
    );
    assert!(
        report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|finding| finding["check"] == "cni" && finding["severity"] == "error"),
        "{report}"
    );
    drop(target);
    let _ = std::fs::remove_dir_all(&directory);
}

/// A DaemonSet manifest (a CNI's, for `netfence doctor` to recognise).
fn daemon_set(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: {name}, namespace: kube-system}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: main, image: {image}}}]}}\n"
    )
}

/// The doctor's healthy cluster: a namespace with a NamespaceIsolation, CoreDNS (pod
/// `coredns`, labelled `k8s-app: kube-dns`) behind a Service on 53, and `engine`.
fn doctor_cluster(namespace: &str, coredns: &str, engine: &str) -> String {
    format!(
        r"apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: {coredns}, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  containers:
    - name: coredns
      image: registry.k8s.io/coredns/coredns:v1.12.0
      ports: [{{name: dns, containerPort: 53, protocol: UDP}}, {{name: dns-tcp, containerPort: 53, protocol: TCP}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {coredns}, namespace: kube-system}}
spec:
  selector: {{k8s-app: kube-dns}}
  ports: [{{name: dns, port: 53, protocol: UDP}}, {{name: dns-tcp, port: 53, protocol: TCP}}]
---
apiVersion: netfence.io/v1alpha1
kind: NamespaceIsolation
metadata: {{name: shop, namespace: {namespace}}}
spec:
  tiers: [{{name: web, podSelector: {{matchLabels: {{tier: web}}}}}}]
---
{engine}"
    )
}
