//! The API server under the benchmark: the sandbox, or the real control plane of the e2e harness.
//! The phases see one interface: clients that say who they are, the audit log of the requests
//! of netfence and the benchmark, a forced relist, and a kubeconfig for the operator.
//!
//! ```text
//! --target sandbox  netfence's Sandbox, in this process (the baseline gets one of its own)
//! --target real     etcd + kube-apiserver + kube-controller-manager (`cluster::up` in
//!                   WORK_DIR/cluster, stopped at the end; or NETFENCE_E2E_KUBECONFIG's, left running)
//!                   operator --http--> e2e proxy (forced relist: 410 Gone, closed watches) --> kube-apiserver
//!                   writes counted in kube-apiserver's audit log, by User-Agent
//! ```
//!
//! On the real server the operator and the baseline's plain client both go through the proxy,
//! so the baseline measures the same path; the benchmark's own client goes straight to the
//! API server. All three use the admin identity (exempt from API Priority and Fairness, as a
//! cluster's operator with its own priority level would be): what is measured is the server's
//! pace, not its throttling of one tenant.

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use kube::Client;
use netfence_e2e::{
    AUDIT_LOG_VARIABLE, KUBECONFIG_VARIABLE, audit::AuditLog, cluster, proxy::Proxy,
};
use netfence_sandbox::{AuditEntry, Sandbox, SandboxOptions};

/// Which API server the benchmark runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// netfence's in-memory API server, in this process.
    Sandbox,
    /// etcd, kube-apiserver and kube-controller-manager, built from their Go modules.
    Real,
}

/// A running API server.
pub struct Server {
    kind: Kind,
}

enum Kind {
    Sandbox(Sandbox),
    Real(Box<Real>),
}

struct Real {
    admin: kube::Config,
    proxy: Proxy,
    log: AuditLog,
    /// The entries of netfence's and the benchmark's requests since the last clear.
    entries: Mutex<Vec<AuditEntry>>,
    /// The control plane's directory, when this run started it (and stops it).
    started: Option<PathBuf>,
}

impl Server {
    /// A fresh sandbox whose history keeps the changes of a whole run: a real API server keeps
    /// etcd's history for 5 minutes, so clients resuming a watch do not relist in the middle.
    pub async fn sandbox(namespaces: usize) -> anyhow::Result<Server> {
        let options = SandboxOptions {
            history_limit: SandboxOptions::default()
                .history_limit
                .max(namespaces.saturating_mul(25)),
            ..SandboxOptions::default()
        };
        let sandbox = Sandbox::start_with("127.0.0.1:0".parse()?, options).await?;
        sandbox.install_netfence_crds()?;
        Ok(Server {
            kind: Kind::Sandbox(sandbox),
        })
    }

    /// The real control plane: the one of `NETFENCE_E2E_KUBECONFIG` (its audit log beside it,
    /// or `NETFENCE_E2E_AUDIT_LOG`), or one started in `work_dir/cluster`. netfence's CRDs are
    /// installed.
    pub async fn real(work_dir: &Path) -> anyhow::Result<Server> {
        let (kubeconfig, started) = if let Some(path) = std::env::var_os(KUBECONFIG_VARIABLE) {
            (PathBuf::from(path), None)
        } else {
            let directory = work_dir.join("cluster");
            eprintln!(
                "starting the real control plane in {} (the first run builds it from its Go modules)",
                directory.display()
            );
            cluster::up(&directory).await?;
            (directory.join(cluster::KUBECONFIG_FILE), Some(directory))
        };
        let audit = netfence_e2e::audit_log_path(&kubeconfig);
        anyhow::ensure!(
            audit.is_file(),
            "the API server's audit log {} is not readable here: the benchmark counts writes in it (set {AUDIT_LOG_VARIABLE})",
            audit.display()
        );
        let admin = netfence_e2e::kubeconfig_config(&kubeconfig).await?;
        netfence_e2e::install_crds(&Client::try_from(admin.clone())?).await?;
        let mut upstream = admin.clone();
        upstream.default_retry = false;
        let proxy = Proxy::start(Client::try_from(upstream)?).await?;
        Ok(Server {
            kind: Kind::Real(Box::new(Real {
                admin,
                proxy,
                log: AuditLog::open(&audit),
                entries: Mutex::new(Vec::new()),
                started,
            })),
        })
    }

    /// Whether this is the real control plane.
    pub fn is_real(&self) -> bool {
        matches!(self.kind, Kind::Real(_))
    }

    /// A client whose requests carry `agent` as User-Agent: straight to the server, or (with
    /// `through_proxy`, on the real server) the operator's way, through the proxy.
    pub fn client(&self, agent: &'static str, through_proxy: bool) -> anyhow::Result<Client> {
        let mut config = match &self.kind {
            Kind::Sandbox(sandbox) => sandbox.kube_config()?,
            Kind::Real(real) if through_proxy => kube::Config::new(real.proxy.url().parse()?),
            Kind::Real(real) => real.admin.clone(),
        };
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(agent),
        ));
        Ok(Client::try_from(config)?)
    }

    /// Write the operator's kubeconfig to `path`.
    pub fn write_operator_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        match &self.kind {
            Kind::Sandbox(sandbox) => Ok(sandbox.write_kubeconfig(path)?),
            Kind::Real(real) => {
                let text = format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: proxy\n  cluster: {{server: \"{}\"}}\nusers:\n- name: proxy\n  user: {{}}\ncontexts:\n- name: proxy\n  context: {{cluster: proxy, user: proxy}}\ncurrent-context: proxy\n",
                    real.proxy.url()
                );
                std::fs::write(path, text)
                    .with_context(|| format!("failed to write {}", path.display()))
            }
        }
    }

    /// Forget the requests logged so far.
    pub fn audit_clear(&self) {
        match &self.kind {
            Kind::Sandbox(sandbox) => sandbox.audit_clear(),
            Kind::Real(real) => {
                let _ = real.log.take();
                real.entries().clear();
            }
        }
    }

    /// Fails when the log could not be read whole (the real server's audit log was rotated or
    /// truncated under the benchmark): write counts from it would be short, and a "0 writes"
    /// would pass for nothing.
    pub fn audit_complete(&self) -> anyhow::Result<()> {
        if let Kind::Real(real) = &self.kind {
            anyhow::ensure!(
                !real.log.shrank(),
                "the API server's audit log {} was rotated or truncated during the run: its counts would be short (disable rotation, e.g. no --audit-log-maxsize)",
                real.log.path().display()
            );
        }
        Ok(())
    }

    /// The requests logged since the last clear (on the real server: netfence's and the
    /// benchmark's, by User-Agent; the control plane's own are left out).
    pub fn audit(&self) -> Vec<AuditEntry> {
        match &self.kind {
            Kind::Sandbox(sandbox) => sandbox.audit(),
            Kind::Real(real) => {
                real.poll();
                real.entries().clone()
            }
        }
    }

    fn audit_len(&self) -> usize {
        match &self.kind {
            Kind::Sandbox(sandbox) => sandbox.audit_len(),
            Kind::Real(real) => {
                real.poll();
                real.entries().len()
            }
        }
    }

    /// Wait until the server has logged no request for `quiet` (the operator has nothing left
    /// to do), at most `limit`.
    pub async fn wait_quiet(&self, quiet: Duration, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = self.audit_len();
        let mut since = Instant::now();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.audit_len();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }

    /// A forced relist of the operator: history compacted (every watch resumed from a version
    /// issued so far answers 410 Gone, so the operator lists everything again) and every open
    /// watch closed.
    pub async fn force_relist(&self) -> anyhow::Result<()> {
        match &self.kind {
            Kind::Sandbox(sandbox) => {
                let faults = sandbox.faults();
                faults.compact();
                faults.close_watches();
            }
            Kind::Real(real) => {
                let faults = real.proxy.faults();
                faults.compact().await?;
                faults.close_watches();
            }
        }
        Ok(())
    }

    /// Stop the server (a control plane this run started; one it found keeps running).
    pub async fn stop(self) {
        match self.kind {
            Kind::Sandbox(sandbox) => sandbox.shutdown().await,
            Kind::Real(real) => {
                if let Some(directory) = &real.started
                    && let Err(error) = cluster::down(directory)
                {
                    eprintln!("warning: failed to stop the control plane: {error:#}");
                }
            }
        }
    }
}

impl Real {
    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<AuditEntry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Read what the log gained: the requests of netfence's operator (`netfence/...`) and of
    /// the benchmark's clients (`netfence-scale...`).
    fn poll(&self) {
        let new = self.log.take();
        self.entries().extend(
            new.into_iter()
                .map(|audited| audited.entry)
                .filter(|entry| entry.user_agent.starts_with("netfence")),
        );
    }
}
