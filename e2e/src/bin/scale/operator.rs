//! The operator under test, in a process of its own: this binary re-executed with
//! `--run-operator -- <netfence run flags>`, which runs `netfence::cli::run::run` exactly as
//! `netfence run` does. Its CPU time and peak RSS come from `/proc/<pid>`; its counters from
//! its `/metrics` endpoint.
//!
//! ```text
//! scale --spawn--> scale --run-operator -- --kubeconfig K --metrics-addr A [--concurrency C]
//!   |                  '-- exits when its stdin closes (the benchmark stopped or died)
//!   '-- /proc/<pid>/stat (utime + stime), /proc/<pid>/status (VmHWM, VmRSS), GET A/metrics
//! ```

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    process::{Child, Command},
};

/// What the operator process has used so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// User + system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Peak resident set size (VmHWM), in MiB.
    pub peak_rss_mib: f64,
    /// Current resident set size (VmRSS), in MiB.
    pub rss_mib: f64,
}

/// A running operator process.
pub struct Operator {
    child: Child,
    pid: u32,
    metrics: SocketAddr,
    log: PathBuf,
    clock_ticks: f64,
}

impl Operator {
    /// Start the operator against the cluster of `kubeconfig`; its output goes to `log`.
    pub fn start(
        kubeconfig: &Path,
        concurrency: Option<u16>,
        log: &Path,
    ) -> anyhow::Result<Operator> {
        let metrics = free_address()?;
        let output = std::fs::File::create(log)
            .with_context(|| format!("failed to create the operator log {}", log.display()))?;
        let errors = output
            .try_clone()
            .context("failed to share the operator log")?;
        let executable =
            std::env::current_exe().context("failed to find this benchmark's executable")?;
        // For profiling: NETFENCE_SCALE_WRAP="perf record -g -o op.data" runs the operator under
        // that command (CPU and memory figures are then the wrapper's).
        let wrapper = std::env::var("NETFENCE_SCALE_WRAP").unwrap_or_default();
        let mut wrapper = wrapper.split_whitespace();
        let mut command = match wrapper.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(wrapper).arg(executable);
                command
            }
            None => Command::new(executable),
        };
        // As the image runs netfence: with its allocator settings (unless set here).
        for (key, value) in image_malloc_env() {
            if std::env::var_os(key).is_none() {
                command.env(key, value);
            }
        }
        command
            .arg("--run-operator")
            .arg("--")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--metrics-addr")
            .arg(metrics.to_string());
        if let Some(concurrency) = concurrency {
            command.arg("--concurrency").arg(concurrency.to_string());
        }
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::from(output))
            .stderr(Stdio::from(errors))
            .kill_on_drop(true)
            .spawn()
            .context("failed to start the operator process")?;
        let pid = child.id().context("the operator process exited at once")?;
        Ok(Operator {
            child,
            pid,
            metrics,
            log: log.to_path_buf(),
            clock_ticks: clock_ticks(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Wait until `/readyz` answers 200 (both caches synced).
    pub async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the operator exited with {status} before it was ready; see {}",
                    self.log.display()
                );
            }
            if http_get(self.metrics, "/readyz")
                .await
                .is_some_and(|answer| {
                    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
                })
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the operator was not ready within {}s; see {}",
                    limit.as_secs(),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// CPU time and memory so far, from `/proc`.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .context("failed to read the operator's /proc/<pid>/stat")?;
        // The fields after the command name, which is in parentheses and may hold spaces:
        // state is field 3, utime field 14, stime field 15.
        let after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .context("unexpected /proc/<pid>/stat format")?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |index: usize| -> anyhow::Result<f64> {
            let text = fields
                .get(index)
                .context("unexpected /proc/<pid>/stat format")?;
            let value: u64 = text.parse().context("unexpected /proc/<pid>/stat format")?;
            Ok(to_f64(value))
        };
        let cpu_seconds = (ticks(11)? + ticks(12)?) / self.clock_ticks;
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("failed to read the operator's /proc/<pid>/status")?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse::<u64>().ok())
                .map_or(0.0, to_f64)
        };
        Ok(Usage {
            cpu_seconds,
            peak_rss_mib: kib("VmHWM:") / 1024.0,
            rss_mib: kib("VmRSS:") / 1024.0,
        })
    }

    /// One counter or gauge from `/metrics` (the first sample whose name and labels start with
    /// `name`), or `None` when unavailable.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let answer = http_get(self.metrics, "/metrics").await?;
        answer.lines().find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
    }

    /// Stop the operator: close its stdin (it exits at once), then kill it if it lingers.
    pub async fn stop(mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// In the child: exit as soon as stdin closes, so that the operator never outlives the
/// benchmark.
pub fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });
}

/// A loopback address with a free port (bound, read, released).
fn free_address() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("failed to find a free port for the operator's metrics")?;
    Ok(listener.local_addr()?)
}

/// A bare HTTP/1.0 GET: the whole answer (status line, headers, body), or `None`.
async fn http_get(address: SocketAddr, path: &str) -> Option<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.ok()?;
        Some(answer)
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on every common Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse::<u32>().ok())
        .map_or(100.0, f64::from)
}

/// A count as a float, for ratios and units (exact below 2^53).
#[allow(clippy::cast_precision_loss)]
pub fn to_f64(value: u64) -> f64 {
    value as f64
}

/// The allocator settings the operator runs with, as `KEY=value` (the image's, or this
/// environment's where it sets them).
pub fn malloc_env_line() -> String {
    image_malloc_env()
        .into_iter()
        .map(|(key, image)| {
            let value = std::env::var(key).unwrap_or_else(|_| image.to_owned());
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The allocator settings of netfence's image: the `ENV MALLOC_...=...` lines of its Dockerfile.
fn image_malloc_env() -> Vec<(&'static str, &'static str)> {
    include_str!("../../../../Dockerfile")
        .lines()
        .filter_map(|line| line.strip_prefix("ENV "))
        .filter_map(|setting| setting.trim().split_once('='))
        .filter(|(key, _)| key.starts_with("MALLOC_"))
        .collect()
}
