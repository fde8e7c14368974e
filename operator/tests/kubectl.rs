//! `netfence sandbox` as a user meets it: the binary, a kubeconfig, and `kubectl` (v1.32+).
//! Skipped, with the reason printed, when kubectl is not installed: CI does not need it.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

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

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
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

/// A `netfence sandbox` process, stopped when dropped.
struct Server {
    child: Child,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Server {
    fn start(directory: &Path) -> Server {
        let kubeconfig = directory.join("sandbox.kubeconfig");
        let child = Command::new(env!("CARGO_BIN_EXE_netfence"))
            .args(["sandbox", "--listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("netfence sandbox starts");
        let server = Server {
            child,
            kubeconfig,
            cache: directory.join("kubectl-cache"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(server.kubeconfig.exists()
            && server
                .kubectl(&["get", "--raw", "/readyz"])
                .status
                .success())
        {
            assert!(Instant::now() < deadline, "netfence sandbox came up");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
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
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scratch(name: &str) -> PathBuf {
    let directory =
        std::env::temp_dir().join(format!("netfence-kubectl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("scratch directory");
    directory
}

/// The first thing a newcomer does: `kubectl apply --server-side` the examples into
/// `netfence sandbox` (client-side validation on, as by default), list them, read the policies
/// as YAML, delete them; then `kubectl create namespace`, which sends protobuf. If this fails,
/// the README's first commands fail for every user.
#[test]
fn kubectl_applies_gets_and_deletes_against_netfence_sandbox() {
    if !kubectl_available() {
        eprintln!(
            "skipped kubectl_applies_gets_and_deletes_against_netfence_sandbox: kubectl is not installed"
        );
        return;
    }
    let directory = scratch("apply");
    let server = Server::start(&directory);
    let examples = examples();
    let examples = examples.to_str().expect("UTF-8 path");
    eprintln!("applying {examples}");

    let applied = server.ok(&["apply", "--server-side", "-f", examples]);
    assert!(
        applied.contains("namespaceisolation.netfence.io/shop serverside-applied"),
        "{applied}"
    );

    let listed = server.ok(&["get", "nsi", "-A"]);
    let header: Vec<&str> = listed
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAMESPACE", "NAME", "MODE", "READY", "POLICIES", "AGE"],
        "the printer columns"
    );
    assert!(
        listed.lines().any(|line| line
            .split_whitespace()
            .take(3)
            .eq(["shop", "shop", "Enforce"])),
        "{listed}"
    );

    let policies = server.ok(&["get", "netpol", "-A", "-o", "yaml"]);
    assert!(policies.contains("kind: List"), "{policies}");

    let again = server.ok(&["apply", "-f", examples]);
    assert!(
        again.contains("namespaceisolation.netfence.io/shop configured")
            || again.contains("unchanged"),
        "{again}"
    );

    let explained = server.ok(&["explain", "nsi.spec.tiers"]);
    assert!(explained.contains("podSelector"), "{explained}");

    let deleted = server.ok(&["delete", "-f", examples]);
    assert!(
        deleted.contains("namespaceisolation.netfence.io \"shop\" deleted"),
        "{deleted}"
    );
    let after = server.kubectl(&["get", "nsi", "-A"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&after.stdout),
        String::from_utf8_lossy(&after.stderr)
    );
    assert!(text.contains("No resources found"), "{text}");

    // kubectl sends typed creates as protobuf.
    let created = server.ok(&["create", "namespace", "demo"]);
    assert!(created.contains("namespace/demo created"), "{created}");
    let phase = server.ok(&["get", "namespace", "demo", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Active");
    let dry_run = server.ok(&["create", "ns", "demo2", "--dry-run=server", "-o", "name"]);
    assert_eq!(dry_run.trim(), "namespace/demo2");
    let missing = server.kubectl(&["get", "namespace", "demo2"]);
    assert!(!missing.status.success(), "a server dry run stores nothing");
    let _ = std::fs::remove_dir_all(&directory);
}

/// A NamespaceIsolation that breaks a CEL rule is refused by `kubectl apply` with the field
/// path, as a real cluster refuses it. If this fails, users learn of their mistakes late.
#[test]
fn kubectl_sees_the_field_path_of_an_invalid_isolation() {
    if !kubectl_available() {
        eprintln!(
            "skipped kubectl_sees_the_field_path_of_an_invalid_isolation: kubectl is not installed"
        );
        return;
    }
    let directory = scratch("invalid");
    let server = Server::start(&directory);
    let manifest = directory.join("bad.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: netfence.io/v1alpha1\nkind: NamespaceIsolation\nmetadata: {name: bad, namespace: default}\nspec:\n  tiers: [{name: web, podSelector: {}}]\n  flows: [{from: web, to: db}]\n",
    )
    .expect("manifest");
    let output = server.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        manifest.to_str().expect("UTF-8"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("spec.flows: Invalid value: \"object\": every flow's from and to must name a tier declared in spec.tiers"),
        "{stderr}"
    );
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
/// installed them itself): `netfence crd | kubectl apply --server-side -f -` applies them
/// without a conflict. If this fails, kubectl reports a conflict with the `netfence-sandbox`
/// field manager over `.spec.versions`, and the user is pushed to `--force-conflicts`.
#[test]
fn kubectl_applies_the_crds_server_side_over_netfence_sandbox() {
    if !kubectl_available() {
        eprintln!(
            "skipped kubectl_applies_the_crds_server_side_over_netfence_sandbox: kubectl is not installed"
        );
        return;
    }
    let directory = scratch("crd-ssa");
    let server = Server::start(&directory);
    let crds = output_within_limit(Command::new(env!("CARGO_BIN_EXE_netfence")).arg("crd"));
    assert!(crds.status.success());
    let manifest = directory.join("crds.yaml");
    std::fs::write(&manifest, &crds.stdout).expect("the CRDs written");
    let manifest = manifest.to_str().expect("UTF-8");
    let applied = server.ok(&["apply", "--server-side", "-f", manifest]);
    assert!(
        applied.contains("customresourcedefinition.apiextensions.k8s.io/namespaceisolations.netfence.io serverside-applied"),
        "{applied}"
    );
    let again = server.ok(&["apply", "--server-side", "-f", manifest]);
    assert!(again.contains("serverside-applied"), "{again}");
    let _ = std::fs::remove_dir_all(&directory);
}
