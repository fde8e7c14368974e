//! The harness's program inside each pod's network namespace: it listens on every port the pod
//! declares and opens connections to other pods when asked, each a new one.
//!
//! ```text
//! packets (node's netns) --stdin: "ID 10.244.0.11 80/TCP\n"--> agent (pod's netns)
//!                        <--stdout: "ID connected" | "ID refused" | "ID timeout" | "ID error WHY"--
//! ```
//!
//! The agent is the `packets` binary itself (`packets agent --listen 80/TCP,53/UDP`), started with
//! `ip netns exec POD`. It prints `ready` once every listener is bound. A TCP probe is a connect;
//! a UDP probe sends one datagram and waits for its echo. kube-router rejects a refused packet
//! with an ICMP port-unreachable, which a connect sees as `refused` at once; every listener the
//! pod declares is open, so a refusal is the firewall's (and the suite's open baseline shows it).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use netfence_crd::isolation::Protocol;
use netfence_verify::Probe;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream, UdpSocket},
    process::{Child, ChildStdin, Command},
    sync::{mpsc, oneshot},
};

/// How long a probe waits for a connection or an echo.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// What one probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The connection opened (TCP) or the echo came back (UDP).
    Connected,
    /// Refused: the firewall's ICMP port-unreachable (or a reset).
    Refused,
    /// No answer within [`PROBE_TIMEOUT`].
    Timeout,
    /// The probe could not be made (the harness's fault, never a verdict).
    Error(String),
}

impl Outcome {
    /// Whether the connection went through.
    #[must_use]
    pub fn connected(&self) -> bool {
        matches!(self, Outcome::Connected)
    }

    fn parse(text: &str) -> Outcome {
        match text {
            "connected" => Outcome::Connected,
            "refused" => Outcome::Refused,
            "timeout" => Outcome::Timeout,
            other => Outcome::Error(other.trim_start_matches("error ").to_owned()),
        }
    }

    fn word(&self) -> String {
        match self {
            Outcome::Connected => "connected".to_owned(),
            Outcome::Refused => "refused".to_owned(),
            Outcome::Timeout => "timeout".to_owned(),
            Outcome::Error(why) => format!("error {}", why.replace('\n', " ")),
        }
    }
}

/// `80/TCP,53/UDP` as the agent's command line takes it (`netfence verify`'s probe format).
#[must_use]
pub fn listen_argument(ports: &[(u16, Protocol)]) -> String {
    ports
        .iter()
        .map(|&(port, protocol)| Probe { port, protocol }.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

// --- inside the pod ------------------------------------------------------------------------------

/// Run the agent: listen on `listen` (`80/TCP,53/UDP`; SCTP is not served: see
/// [`crate::dataplane::sctp_supported`]), print `ready`, answer probes from stdin until it closes.
///
/// # Errors
///
/// When a port cannot be bound or the argument does not parse.
pub async fn serve(listen: &str) -> anyhow::Result<()> {
    for item in listen.split(',').filter(|item| !item.is_empty()) {
        let Probe { port, protocol } = item.parse::<Probe>()?;
        match protocol {
            Protocol::TCP => {
                let listener = TcpListener::bind(("0.0.0.0", port))
                    .await
                    .with_context(|| format!("failed to listen on {port}/TCP"))?;
                tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        drop(stream);
                    }
                });
            }
            Protocol::UDP => {
                let socket = UdpSocket::bind(("0.0.0.0", port))
                    .await
                    .with_context(|| format!("failed to listen on {port}/UDP"))?;
                tokio::spawn(async move {
                    let mut buffer = [0u8; 512];
                    while let Ok((length, peer)) = socket.recv_from(&mut buffer).await {
                        let _ = socket.send_to(&buffer[..length], peer).await;
                    }
                });
            }
            Protocol::SCTP => {}
        }
    }
    let (lines, mut replies) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = replies.recv().await {
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let _ = lines.send("ready\n".to_owned());
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = stdin.next_line().await {
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut words = line.split_whitespace();
            let (Some(id), Some(address), Some(target)) =
                (words.next(), words.next(), words.next())
            else {
                return;
            };
            let outcome = match (address.parse::<IpAddr>(), target.parse::<Probe>()) {
                (Ok(address), Ok(Probe { port, protocol })) => {
                    probe(protocol, SocketAddr::new(address, port)).await
                }
                _ => Outcome::Error(format!("cannot read the request {line:?}")),
            };
            let _ = lines.send(format!("{id} {}\n", outcome.word()));
        });
    }
    drop(lines);
    let _ = writer.await;
    Ok(())
}

/// Refused is kube-router's answer (REJECT with port-unreachable) or a reset; anything else (a
/// host or network unreachable: a broken route) is the harness's failure, never a verdict.
fn classify(error: &std::io::Error) -> Outcome {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset => {
            Outcome::Refused
        }
        _ => Outcome::Error(error.to_string()),
    }
}

async fn probe(protocol: Protocol, address: SocketAddr) -> Outcome {
    match protocol {
        Protocol::TCP => {
            match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(address)).await {
                Ok(Ok(_)) => Outcome::Connected,
                Ok(Err(error)) => classify(&error),
                Err(_) => Outcome::Timeout,
            }
        }
        Protocol::UDP => {
            let socket = match UdpSocket::bind(("0.0.0.0", 0)).await {
                Ok(socket) => socket,
                Err(error) => return Outcome::Error(error.to_string()),
            };
            if let Err(error) = socket.connect(address).await {
                return classify(&error);
            }
            if let Err(error) = socket.send(b"netfence-probe").await {
                return classify(&error);
            }
            let mut buffer = [0u8; 64];
            match tokio::time::timeout(PROBE_TIMEOUT, socket.recv(&mut buffer)).await {
                Ok(Ok(length)) if &buffer[..length] == b"netfence-probe" => Outcome::Connected,
                Ok(Ok(_)) => Outcome::Error("an echo that was not the probe's".to_owned()),
                Ok(Err(error)) => classify(&error),
                Err(_) => Outcome::Timeout,
            }
        }
        Protocol::SCTP => Outcome::Error("SCTP is not probed".to_owned()),
    }
}

// --- in the harness ------------------------------------------------------------------------------

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Outcome>>>>;

/// A running agent in one pod's network namespace.
pub struct Agent {
    child: Child,
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Pending,
    next: AtomicU64,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Start `program agent --listen PORTS` in the network namespace `netns`; return once it
    /// listens.
    ///
    /// # Errors
    ///
    /// When it cannot start or exits before it is ready.
    pub async fn start(
        program: &std::path::Path,
        netns: &str,
        ports: &[(u16, Protocol)],
    ) -> anyhow::Result<Agent> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(program)
            .args(["agent", "--listen", &listen_argument(ports)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start the agent in {netns}"))?;
        let stdin = child.stdin.take().context("the agent's stdin")?;
        let stdout = child.stdout.take().context("the agent's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        match tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await {
            Ok(Ok(Some(line))) if line == "ready" => {}
            other => bail!("the agent in {netns} did not get ready: {other:?}"),
        }
        let pending: Pending = Arc::default();
        let answers = pending.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let Some((id, outcome)) = line.split_once(' ') else {
                    continue;
                };
                let Ok(id) = id.parse::<u64>() else { continue };
                let sender = answers
                    .lock()
                    .ok()
                    .and_then(|mut pending| pending.remove(&id));
                if let Some(sender) = sender {
                    let _ = sender.send(Outcome::parse(outcome));
                }
            }
        });
        Ok(Agent {
            child,
            stdin: tokio::sync::Mutex::new(stdin),
            pending,
            next: AtomicU64::new(0),
        })
    }

    /// Open a new connection from this pod to `address`.
    pub async fn probe(&self, protocol: Protocol, address: SocketAddr) -> Outcome {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(id, sender);
        }
        let request = format!(
            "{id} {} {}\n",
            address.ip(),
            Probe {
                port: address.port(),
                protocol
            }
        );
        {
            let mut stdin = self.stdin.lock().await;
            if let Err(error) = stdin.write_all(request.as_bytes()).await {
                return Outcome::Error(format!("the agent is gone: {error}"));
            }
            let _ = stdin.flush().await;
        }
        match tokio::time::timeout(PROBE_TIMEOUT * 4, receiver).await {
            Ok(Ok(outcome)) => outcome,
            _ => Outcome::Error("the agent did not answer".to_owned()),
        }
    }

    /// Stop it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the agent writes, the harness reads back as the same outcome.
    #[test]
    fn outcomes_survive_the_pipe() {
        for outcome in [
            Outcome::Connected,
            Outcome::Refused,
            Outcome::Timeout,
            Outcome::Error("no route\nto host".to_owned()),
        ] {
            let read = Outcome::parse(&outcome.word());
            match outcome {
                Outcome::Error(_) => {
                    assert_eq!(read, Outcome::Error("no route to host".to_owned()));
                }
                other => assert_eq!(read, other),
            }
        }
        assert_eq!(
            listen_argument(&[(80, Protocol::TCP), (53, Protocol::UDP)]),
            "80/TCP,53/UDP"
        );
    }

    /// A real agent on loopback: a listening port connects, a closed one is refused, a UDP
    /// echo comes back.
    #[tokio::test]
    async fn probes_tell_open_from_closed() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let open = listener.local_addr().expect("address");
        tokio::spawn(async move { while listener.accept().await.is_ok() {} });
        let closed = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind")
            .local_addr()
            .expect("address");
        let echo = UdpSocket::bind(("127.0.0.1", 0)).await.expect("bind");
        let echo_address = echo.local_addr().expect("address");
        tokio::spawn(async move {
            let mut buffer = [0u8; 64];
            while let Ok((length, peer)) = echo.recv_from(&mut buffer).await {
                let _ = echo.send_to(&buffer[..length], peer).await;
            }
        });
        assert_eq!(probe(Protocol::TCP, open).await, Outcome::Connected);
        assert_eq!(probe(Protocol::TCP, closed).await, Outcome::Refused);
        assert_eq!(probe(Protocol::UDP, echo_address).await, Outcome::Connected);
        assert_eq!(probe(Protocol::UDP, closed).await, Outcome::Refused);
    }
}
