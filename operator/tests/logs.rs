//! The logs of `netfence sandbox` and `netfence run` as a user gets them: redirected to a file
//! or a pipe, chosen by `RUST_LOG`, and the listen flags given a host name.
//!
//! The processes log to files in a scratch directory; each test stops what it started.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("netfence-logs-{name}-"))
        .tempdir()
        .expect("scratch directory")
}

/// A process this test started, stopped (by its id) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait until `path` holds `text` (the process writes it), or panic with what it holds.
fn wait_for(path: &Path, text: &str, also: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let content = std::fs::read_to_string(path).unwrap_or_default();
        if content.contains(text) {
            return content;
        }
        assert!(
            Instant::now() < deadline,
            "{text:?} never appeared in {}:\n{content}\n{}:\n{}",
            path.display(),
            also.display(),
            std::fs::read_to_string(also).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Start `netfence ARGS` with stdout and stderr to files of `directory`.
fn start(directory: &Path, name: &str, args: &[&str], rust_log: Option<&str>) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_netfence"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(directory.join(format!("{name}.out"))).expect("file"))
        .stderr(std::fs::File::create(directory.join(format!("{name}.err"))).expect("file"));
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    Running(command.spawn().expect("netfence starts"))
}

/// `netfence sandbox --once`, with `RUST_LOG` as given, stderr captured.
fn sandbox_once(rust_log: Option<&str>) -> (bool, String, String) {
    let directory = scratch("once");
    let listen = format!("localhost:{}", free_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_netfence"));
    command
        .args(["sandbox", "--once", "--listen", &listen, "--apply"])
        .arg(examples().join("three-tier.yaml"))
        .arg("--kubeconfig")
        .arg(directory.path().join("sandbox.kubeconfig"))
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let output = command.output().expect("netfence sandbox runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `netfence sandbox` logs the controller as `netfence run` does: `RUST_LOG` chooses the level,
/// and text sent to a pipe carries no colour codes; `--listen localhost:PORT` listens on
/// 127.0.0.1. By default its start-up shows problems only, so the summary stays readable. If
/// this fails, a user debugging the sandbox sees no controller log whatever `RUST_LOG` says, a
/// log file fills with `ESC[` sequences, or `--listen localhost:6443` is refused.
#[test]
fn sandbox_logs_follow_rust_log_without_colour_in_a_pipe() {
    let (success, stdout, stderr) = sandbox_once(Some("netfence_controller=info"));
    assert!(success, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("sandbox API server listening on http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stderr.contains("netfence_controller::reconcile: created policy=shop-default-deny"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "colour codes in a pipe:\n{stderr:?}"
    );

    let (success, stdout, stderr) = sandbox_once(None);
    assert!(success, "{stdout}\n{stderr}");
    assert!(
        !stderr.contains(" INFO "),
        "the default start-up logs problems only:\n{stderr}"
    );
}

/// Once `netfence sandbox` serves, it logs each change the controller makes by default: delete a
/// generated policy and the log says it was put back. If this fails, a user trying drift
/// correction against the sandbox sees the policy come back with no word of why.
#[test]
fn a_serving_sandbox_logs_each_change() {
    let directory = scratch("serving");
    let port = free_port();
    let listen = format!("localhost:{port}");
    let kubeconfig = directory.path().join("sandbox.kubeconfig");
    let three_tier = examples().join("three-tier.yaml");
    let _sandbox = start(
        directory.path(),
        "sandbox",
        &[
            "sandbox",
            "--listen",
            &listen,
            "--apply",
            three_tier.to_str().expect("UTF-8"),
            "--kubeconfig",
            kubeconfig.to_str().expect("UTF-8"),
        ],
        None,
    );
    let (out, err) = (
        directory.path().join("sandbox.out"),
        directory.path().join("sandbox.err"),
    );
    wait_for(&out, "serving until Ctrl-C", &err);
    let url = format!(
        "http://127.0.0.1:{port}/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/shop-default-deny"
    );
    ureq::delete(&url).call().expect("the policy is deleted");
    let log = wait_for(&err, "policy=shop-default-deny", &out);
    assert!(
        log.contains("INFO") && !log.contains('\x1b'),
        "a plain info line in the file:\n{log:?}"
    );
}

/// `netfence run` writes plain text logs to a file (no colour codes), and `--metrics-addr`
/// takes a host name. If this fails, the operator's log file (a container runtime's, a `tee`)
/// fills with escape sequences, or `--metrics-addr localhost:8080` is refused.
#[test]
fn run_logs_plain_text_to_a_file_and_listens_on_a_host_name() {
    let directory = scratch("run");
    let kubeconfig = directory.path().join("sandbox.kubeconfig");
    let _sandbox = start(
        directory.path(),
        "sandbox",
        &[
            "sandbox",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--kubeconfig",
            kubeconfig.to_str().expect("UTF-8"),
        ],
        None,
    );
    wait_for(
        &directory.path().join("sandbox.out"),
        "serving until Ctrl-C",
        &directory.path().join("sandbox.err"),
    );
    let metrics = free_port();
    let _run = start(
        directory.path(),
        "run",
        &[
            "run",
            "--kubeconfig",
            kubeconfig.to_str().expect("UTF-8"),
            "--metrics-addr",
            &format!("localhost:{metrics}"),
        ],
        Some("info"),
    );
    let log = wait_for(
        &directory.path().join("run.out"),
        "netfence started",
        &directory.path().join("run.err"),
    );
    assert!(
        log.contains(&format!("metrics=127.0.0.1:{metrics}")),
        "{log}"
    );
    assert!(!log.contains('\x1b'), "colour codes in a file:\n{log:?}");
    let health = ureq::get(&format!("http://localhost:{metrics}/healthz"))
        .call()
        .expect("/healthz answers on localhost");
    assert_eq!(health.status(), 200);
}
