//! A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager,
//! built from their Go modules (`e2e/upstream/`) and run as plain processes, for the scenarios
//! to run against as they run against the sandbox.
//!
//! ```text
//! up(DIR):   build::ensure (cached) -> certificates -> etcd -> kube-apiserver --/readyz 200-->
//!            kube-controller-manager --`default` ServiceAccount made--> DIR/state.json
//!            DIR/admin.kubeconfig, DIR/audit.log, DIR/{etcd,kube-apiserver,kube-controller-manager}.log
//! down(DIR): stop the processes of DIR/state.json, remove DIR
//! ```
//!
//! Everything listens on 127.0.0.1, on free ports. The API server authorizes with RBAC and
//! writes an audit log (JSON lines, one per request at `ResponseComplete`, the controller-manager's
//! own requests left out); kube-controller-manager runs the garbage collector, the namespace
//! controller, the ServiceAccount controller and the ClusterRole aggregation (the `edit` role a
//! tenant gets), each as its own ServiceAccount as kubeadm runs them. No kubelet and no CNI: pods are stored, never run.

pub mod build;
pub mod certificates;

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    net::TcpListener,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api, Client,
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::{Deserialize, Serialize};

/// The file `up` writes the running processes to, and `down` reads.
pub const STATE_FILE: &str = "state.json";

/// The admin kubeconfig `up` writes.
pub const KUBECONFIG_FILE: &str = "admin.kubeconfig";

/// The API server's audit log.
pub const AUDIT_LOG_FILE: &str = "audit.log";

/// One process of the control plane.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Process {
    /// `etcd`, `kube-apiserver` or `kube-controller-manager`.
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// The program it runs, to tell it from an unrelated process that reused the id.
    pub program: PathBuf,
}

/// What `up` started, as `DIR/state.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// The Kubernetes release.
    pub kubernetes_version: String,
    /// The etcd release.
    pub etcd_version: String,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// The processes, in start order.
    pub processes: Vec<Process>,
}

const AUDIT_POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: None
    users: [\"system:kube-controller-manager\"]
  - level: None
    userGroups: [\"system:serviceaccounts:kube-system\"]
  - level: Metadata
";

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .context("failed to find a free loopback port")?
        .port())
}

/// The last `count` lines of a log file, for a failure message.
#[must_use]
pub fn last_lines(path: &Path, count: usize) -> String {
    let Ok(file) = File::open(path) else {
        return format!("({} is missing)", path.display());
    };
    let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// The processes started so far; stopped on a failed `up`.
struct Started {
    directory: PathBuf,
    children: Vec<(Process, Child)>,
}

/// Start `program ARGS` logging to `DIR/NAME.log`, in a process group of its own: a Ctrl-C to
/// the harness does not reach it, and it outlives the harness until it is stopped.
///
/// # Errors
///
/// When the log cannot be made or the program cannot start.
pub fn spawn_logged(
    directory: &Path,
    name: &str,
    program: &Path,
    args: &[String],
) -> anyhow::Result<(Process, Child)> {
    let log_path = directory.join(format!("{name}.log"));
    let log = File::create(&log_path)
        .with_context(|| format!("failed to create {}", log_path.display()))?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("failed to start {}", program.display()))?;
    let process = Process {
        name: name.to_owned(),
        pid: child.id(),
        // As /proc/PID/exe names it: a cache behind a symlink is still recognised.
        program: program
            .canonicalize()
            .unwrap_or_else(|_| program.to_owned()),
    };
    Ok((process, child))
}

impl Started {
    fn spawn(&mut self, name: &str, program: &Path, args: &[String]) -> anyhow::Result<()> {
        let started = spawn_logged(&self.directory, name, program, args)?;
        self.children.push(started);
        Ok(())
    }

    /// Fail with the log's last lines when a process has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        for (process, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let log = self.directory.join(format!("{}.log", process.name));
                bail!(
                    "{} exited ({status}) while the control plane started; the last lines of {}:\n{}",
                    process.name,
                    log.display(),
                    last_lines(&log, 30)
                );
            }
        }
        Ok(())
    }

    fn stop_all(&mut self) {
        for (process, child) in self.children.iter_mut().rev() {
            stop(process);
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

/// Whether the process still runs the program it was started with (not a zombie, not a reused id).
#[must_use]
pub fn is_alive(process: &Process) -> bool {
    let proc = PathBuf::from(format!("/proc/{}", process.pid));
    let zombie = std::fs::read_to_string(proc.join("stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true);
    let same_program = std::fs::read_link(proc.join("exe")).is_ok_and(|exe| exe == process.program);
    !zombie && same_program
}

fn signal(process: &Process, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(process.pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Stop one process: SIGTERM, then SIGKILL after 10 s.
pub fn stop(process: &Process) {
    if !is_alive(process) {
        return;
    }
    signal(process, "TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_alive(process) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if is_alive(process) {
        signal(process, "KILL");
    }
}

fn kubeconfig_yaml(server: &str, files: &certificates::Files) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
  - name: netfence-e2e
    cluster:
      server: {server}
      certificate-authority: {ca}
users:
  - name: admin
    user:
      client-certificate: {cert}
      client-key: {key}
contexts:
  - name: netfence-e2e
    context: {{cluster: netfence-e2e, user: admin}}
current-context: netfence-e2e
",
        ca = files.ca.display(),
        cert = files.admin_cert.display(),
        key = files.admin_key.display(),
    )
}

fn controller_manager_kubeconfig_yaml(server: &str, files: &certificates::Files) -> String {
    kubeconfig_yaml(server, files)
        .replace(
            &files.admin_cert.display().to_string(),
            &files.controller_manager_cert.display().to_string(),
        )
        .replace(
            &files.admin_key.display().to_string(),
            &files.controller_manager_key.display().to_string(),
        )
}

/// A client from a kubeconfig file.
pub async fn client_from(path: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("failed to load {}", path.display()))?;
    Ok(Client::try_from(config)?)
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("failed to write {}", path.display()))
}

/// Wait until `ready` answers true, failing early when a process exits.
async fn wait_until<F, Fut>(
    started: &mut Started,
    what: &str,
    limit: Duration,
    mut ready: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        started.check_running()?;
        if ready().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{what} not within {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Build (once) and start the control plane in `directory`; return once `/readyz` answers 200
/// and the controller-manager has made the `default` ServiceAccount. The processes keep running.
pub async fn up(directory: &Path) -> anyhow::Result<State> {
    if let Ok(state) = read_state(directory)
        && state.processes.iter().any(is_alive)
    {
        bail!(
            "a control plane already runs in {} ({}); stop it first with `cluster down --dir {}`",
            directory.display(),
            state.server,
            directory.display()
        );
    }
    let binaries = build::ensure()?;
    std::fs::create_dir_all(directory)
        .with_context(|| format!("failed to create {}", directory.display()))?;
    let directory = directory
        .canonicalize()
        .with_context(|| format!("failed to resolve {}", directory.display()))?;
    let mut started = Started {
        directory: directory.clone(),
        children: Vec::new(),
    };
    match start(&directory, &binaries, &mut started).await {
        Ok(state) => {
            // The processes outlive this one: forget the handles without waiting.
            started.children.clear();
            Ok(state)
        }
        Err(error) => {
            started.stop_all();
            Err(error)
        }
    }
}

/// What the processes of one control plane share: their folder, programs, certificates, ports.
struct Plan<'a> {
    directory: &'a Path,
    binaries: &'a build::Binaries,
    files: certificates::Files,
    etcd_client: u16,
    etcd_peer: u16,
    apiserver_port: u16,
    controller_manager_port: u16,
    server: String,
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

async fn start(
    directory: &Path,
    binaries: &build::Binaries,
    started: &mut Started,
) -> anyhow::Result<State> {
    let apiserver_port = free_port()?;
    let plan = Plan {
        directory,
        binaries,
        files: certificates::write(&directory.join("pki"))?,
        etcd_client: free_port()?,
        etcd_peer: free_port()?,
        apiserver_port,
        controller_manager_port: free_port()?,
        server: format!("https://127.0.0.1:{apiserver_port}"),
    };
    start_etcd(&plan, started).await?;
    let client = start_apiserver(&plan, started).await?;
    start_controller_manager(&plan, started, &client).await?;
    let state = State {
        kubernetes_version: binaries.kubernetes_version.clone(),
        etcd_version: binaries.etcd_version.clone(),
        server: plan.server,
        processes: started
            .children
            .iter()
            .map(|(process, _)| process.clone())
            .collect(),
    };
    write(
        &directory.join(STATE_FILE),
        &serde_json::to_string_pretty(&state)?,
    )?;
    Ok(state)
}

/// etcd on tmp storage without fsync (test data), listening once it accepts connections.
async fn start_etcd(plan: &Plan<'_>, started: &mut Started) -> anyhow::Result<()> {
    let Plan {
        etcd_client,
        etcd_peer,
        ..
    } = *plan;
    let etcd_data = plan.directory.join("etcd-data");
    let _ = std::fs::remove_dir_all(&etcd_data);
    started.spawn(
        "etcd",
        &plan.binaries.etcd,
        &[
            "--name=e2e".to_owned(),
            format!("--data-dir={}", path(&etcd_data)),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=e2e=http://127.0.0.1:{etcd_peer}"),
            "--unsafe-no-fsync".to_owned(),
            "--log-level=warn".to_owned(),
        ],
    )?;
    wait_until(
        started,
        "etcd listening",
        Duration::from_secs(30),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", etcd_client))
                .await
                .is_ok()
        },
    )
    .await?;

    Ok(())
}

/// kube-apiserver with RBAC and an audit log; a client of the admin kubeconfig once `/readyz`
/// answers 200.
async fn start_apiserver(plan: &Plan<'_>, started: &mut Started) -> anyhow::Result<Client> {
    let Plan {
        directory,
        ref files,
        etcd_client,
        apiserver_port,
        ref server,
        ..
    } = *plan;
    let audit_policy = directory.join("audit-policy.yaml");
    write(&audit_policy, AUDIT_POLICY)?;
    started.spawn(
        "kube-apiserver",
        &plan.binaries.apiserver,
        &[
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--secure-port={apiserver_port}"),
            format!("--tls-cert-file={}", path(&files.serving_cert)),
            format!("--tls-private-key-file={}", path(&files.serving_key)),
            format!("--client-ca-file={}", path(&files.ca)),
            "--authorization-mode=RBAC".to_owned(),
            "--anonymous-auth=false".to_owned(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!(
                "--service-account-key-file={}",
                path(&files.service_account_public_key)
            ),
            format!(
                "--service-account-signing-key-file={}",
                path(&files.service_account_key)
            ),
            "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
            // The endpoint reconciler refuses a loopback advertise address.
            "--endpoint-reconciler-type=none".to_owned(),
            format!("--audit-policy-file={}", path(&audit_policy)),
            format!("--audit-log-path={}", path(&directory.join(AUDIT_LOG_FILE))),
            "--audit-log-format=json".to_owned(),
            "--audit-log-mode=blocking".to_owned(),
            "--profiling=false".to_owned(),
        ],
    )?;
    let kubeconfig = directory.join(KUBECONFIG_FILE);
    write(&kubeconfig, &kubeconfig_yaml(server, files))?;
    let client = client_from(&kubeconfig).await?;
    wait_until(
        started,
        "kube-apiserver's /readyz answering 200",
        Duration::from_secs(180),
        || {
            let client = client.clone();
            async move {
                let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else {
                    return false;
                };
                client
                    .request_text(request)
                    .await
                    .is_ok_and(|text| text.trim() == "ok")
            }
        },
    )
    .await?;

    Ok(client)
}

/// kube-controller-manager, working once it has made the `default` ServiceAccount.
async fn start_controller_manager(
    plan: &Plan<'_>,
    started: &mut Started,
    client: &Client,
) -> anyhow::Result<()> {
    let Plan {
        directory,
        ref files,
        controller_manager_port,
        ref server,
        ..
    } = *plan;
    let controller_manager_kubeconfig = directory.join("controller-manager.kubeconfig");
    write(
        &controller_manager_kubeconfig,
        &controller_manager_kubeconfig_yaml(server, files),
    )?;
    started.spawn(
        "kube-controller-manager",
        &plan.binaries.controller_manager,
        &[
            format!("--kubeconfig={}", path(&controller_manager_kubeconfig)),
            format!(
                "--authentication-kubeconfig={}",
                path(&controller_manager_kubeconfig)
            ),
            format!(
                "--authorization-kubeconfig={}",
                path(&controller_manager_kubeconfig)
            ),
            // What the scenarios rely on: garbage collection, namespace deletion, the
            // `default` ServiceAccount, and the aggregated `admin`/`edit`/`view` roles a
            // tenant is given. Each controller acts as its own ServiceAccount, as kubeadm
            // runs them (the admission policy of config/admission/ names those identities).
            "--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,clusterrole-aggregation-controller".to_owned(),
            "--use-service-account-credentials=true".to_owned(),
            format!(
                "--service-account-private-key-file={}",
                path(&files.service_account_key)
            ),
            format!("--root-ca-file={}", path(&files.ca)),
            "--leader-elect=false".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={controller_manager_port}"),
            "--profiling=false".to_owned(),
        ],
    )?;
    let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    wait_until(
        started,
        "kube-controller-manager making the `default` ServiceAccount",
        Duration::from_secs(120),
        || {
            let service_accounts = service_accounts.clone();
            async move { matches!(service_accounts.get_opt("default").await, Ok(Some(_))) }
        },
    )
    .await?;

    Ok(())
}

/// The state `up` wrote in `directory`.
pub fn read_state(directory: &Path) -> anyhow::Result<State> {
    read_json(&directory.join(STATE_FILE), "a control plane's state")
}

/// A JSON file the harness wrote: `what` names it in the error.
///
/// # Errors
///
/// When it cannot be read or is not `T`.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not {what}", path.display()))
}

/// Stop the control plane of `directory` and remove the folder. A folder that `up` did not
/// make (no `state.json`) is left alone.
pub fn down(directory: &Path) -> anyhow::Result<()> {
    if !directory.exists() {
        eprintln!(
            "cluster: {} does not exist: nothing to stop",
            directory.display()
        );
        return Ok(());
    }
    let state = read_state(directory).with_context(|| {
        format!(
            "{} holds no control plane started by `cluster up`; nothing was stopped or removed",
            directory.display()
        )
    })?;
    for process in state.processes.iter().rev() {
        stop(process);
    }
    let running: Vec<String> = state
        .processes
        .iter()
        .filter(|process| is_alive(process))
        .map(|process| format!("{} (pid {})", process.name, process.pid))
        .collect();
    if !running.is_empty() {
        bail!(
            "{} still running after SIGKILL; {} is kept",
            running.join(", "),
            directory.display()
        );
    }
    std::fs::remove_dir_all(directory)
        .with_context(|| format!("failed to remove {}", directory.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `down --dir` on a folder `up` did not make (a typo, a home directory) removes nothing.
    #[test]
    fn down_leaves_a_folder_without_a_control_plane_alone() {
        let directory = std::env::temp_dir().join(format!(
            "netfence-down-{}-{}",
            std::process::id(),
            crate::unique_suffix()
        ));
        std::fs::create_dir_all(&directory).expect("folder");
        std::fs::write(directory.join("precious"), "data").expect("file");
        let error = down(&directory).expect_err("no state.json");
        assert!(
            format!("{error:#}").contains("holds no control plane started by `cluster up`"),
            "{error:#}"
        );
        assert!(directory.join("precious").is_file());
        std::fs::remove_dir_all(&directory).expect("cleanup");
        down(&directory).expect("a folder that does not exist: nothing to stop");
    }

    /// The last lines of a process's log are what `up` prints when the process fails.
    #[test]
    fn last_lines_are_the_tail_of_the_log() {
        let path = std::env::temp_dir().join(format!("netfence-log-{}", crate::unique_suffix()));
        std::fs::write(&path, "1\n2\n3\n4\n").expect("log");
        assert_eq!(last_lines(&path, 2), "3\n4");
        let _ = std::fs::remove_file(&path);
        assert!(last_lines(&path, 2).contains("is missing"));
    }
}
