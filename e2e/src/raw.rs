//! Raw HTTP/1.1 requests to the API server under test, written byte for byte, so that no client
//! normalises them first: the sandbox on its plain loopback port, a real API server over TLS
//! with the admin client certificate of its kubeconfig.
//!
//! ```text
//! "POST /api/v1/namespaces HTTP/1.1\r\nContent-Type: ..." + body
//!     --> Host + Connection: close added --> TCP (sandbox) | TLS, client certificate (real)
//!     <-- status code + body (chunked transfer decoded) as JSON
//! ```

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use kube::client::ConfigExt as _;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_rustls::{TlsConnector, rustls::pki_types::ServerName};

/// Where raw requests go.
#[derive(Clone)]
pub enum RawEndpoint {
    /// The sandbox: plain HTTP on loopback.
    Plain(SocketAddr),
    /// A real API server: TLS, authenticated by the kubeconfig's client certificate.
    Tls {
        /// The server's address.
        address: SocketAddr,
        /// The name its certificate is checked against.
        server_name: ServerName<'static>,
        /// The TLS client, with the kubeconfig's CA and client certificate.
        connector: TlsConnector,
    },
}

impl std::fmt::Debug for RawEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawEndpoint::Plain(address) => f.debug_tuple("Plain").field(address).finish(),
            RawEndpoint::Tls { address, .. } => f
                .debug_struct("Tls")
                .field("address", address)
                .finish_non_exhaustive(),
        }
    }
}

/// The answer to a raw request.
#[derive(Clone, Debug)]
pub struct RawAnswer {
    /// The HTTP status code.
    pub code: u16,
    /// The response headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// The body as text.
    pub text: String,
}

impl RawEndpoint {
    /// The endpoint of a client config: plain for `http://`, TLS with the config's CA and client
    /// certificate for `https://`. The host must be an IP address (the real cluster of the
    /// harness listens on 127.0.0.1).
    pub fn from_config(config: &kube::Config) -> anyhow::Result<RawEndpoint> {
        let host = config
            .cluster_url
            .host()
            .context("the cluster URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let ip: std::net::IpAddr = host
            .parse()
            .with_context(|| format!("raw requests need an IP address, not {host}"))?;
        let https = config.cluster_url.scheme_str() == Some("https");
        let port = config
            .cluster_url
            .port_u16()
            .unwrap_or(if https { 443 } else { 80 });
        let address = SocketAddr::new(ip, port);
        if !https {
            return Ok(RawEndpoint::Plain(address));
        }
        let tls = config
            .rustls_client_config()
            .context("failed to build a TLS client from the kubeconfig")?;
        let server_name = ServerName::from(ip);
        Ok(RawEndpoint::Tls {
            address,
            server_name,
            connector: TlsConnector::from(Arc::new(tls)),
        })
    }

    /// Send `head` (request line and headers, without the final blank line; `Host` and
    /// `Connection: close` are added) and `body`, and read the whole answer. Write errors are
    /// ignored: a server may answer 413 before reading the body.
    pub async fn send(&self, head: &str, body: &[u8]) -> anyhow::Result<RawAnswer> {
        match self {
            RawEndpoint::Plain(address) => {
                let stream = tokio::net::TcpStream::connect(address)
                    .await
                    .with_context(|| format!("failed to connect to {address}"))?;
                exchange(stream, *address, head, body).await
            }
            RawEndpoint::Tls {
                address,
                server_name,
                connector,
            } => {
                let stream = tokio::net::TcpStream::connect(address)
                    .await
                    .with_context(|| format!("failed to connect to {address}"))?;
                let stream = connector
                    .connect(server_name.clone(), stream)
                    .await
                    .with_context(|| format!("failed to open TLS to {address}"))?;
                exchange(stream, *address, head, body).await
            }
        }
    }
}

async fn exchange<S>(
    mut stream: S,
    address: SocketAddr,
    head: &str,
    body: &[u8],
) -> anyhow::Result<RawAnswer>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!("{head}\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.flush().await;
    let mut response = Vec::new();
    // A TLS peer may close without close_notify after `Connection: close`: what was read counts.
    match tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) if !response.is_empty() => {
            let _ = error;
        }
        Ok(Err(error)) => return Err(error).context("failed to read the answer"),
        Err(_) => bail!("no answer within 60 s"),
    }
    parse(&response)
}

fn parse(response: &[u8]) -> anyhow::Result<RawAnswer> {
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .with_context(|| {
            format!(
                "no end of headers in {:?}",
                String::from_utf8_lossy(response)
            )
        })?;
    let head = String::from_utf8_lossy(response.get(..split).unwrap_or_default()).into_owned();
    let raw_body = response.get(split + 4..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status code in {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked {
        dechunk(raw_body)?
    } else {
        raw_body.to_vec()
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    Ok(RawAnswer {
        code,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|window| window == b"\r\n")
            .context("a chunk size line ends")?;
        let size_text = String::from_utf8_lossy(data.get(..line_end).unwrap_or_default());
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = data.get(line_end + 2..).unwrap_or_default();
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(data.get(..size).context("a chunk is complete")?);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_answers_are_decoded() {
        let answer = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n5\r\n\": 1}\r\n0\r\n\r\n",
        )
        .expect("parses");
        assert_eq!(answer.code, 200);
        assert_eq!(answer.body, serde_json::json!({"a": 1}));
    }

    #[test]
    fn plain_answers_keep_their_body() {
        let answer = parse(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope")
            .expect("parses");
        assert_eq!(answer.code, 404);
        assert_eq!(answer.body, Value::Null);
        assert_eq!(answer.text, "nope");
    }
}
