//! The listen addresses of the command line (`--listen` of `sandbox`, `--metrics-addr` of
//! `run`): `HOST:PORT` where HOST is an IP address or a host name.
//!
//! ```text
//! "127.0.0.1:6443", "[::1]:6443"  --as is-----------------------------> SocketAddr
//! "localhost:6443"                --loopback, no lookup (RFC 6761)----> 127.0.0.1:6443
//! "node-1.example:8080"           --resolved; the first IPv4 address,
//!                                   else the first address------------> SocketAddr
//! ":8080"                         --every interface (Go's form)--------> 0.0.0.0:8080
//! ```
//!
//! The name is resolved once, when the flag is read: a listener binds one address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// The form every error repeats.
const FORM: &str = "write HOST:PORT, such as 127.0.0.1:6443, [::1]:6443, localhost:6443 or :8080 (every interface)";

/// Parse a listen address (a clap `value_parser`): see the module documentation.
///
/// # Errors
///
/// A message naming what is wrong (no port, a bad port, a host name that does not resolve),
/// and the accepted form.
pub fn parse(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("{text:?} has no port; {FORM}"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port:?} is not a number from 0 to 65535; {FORM}"))?;
    // An IPv6 address in brackets that did not parse above is not an address at all.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    let addresses: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve host name {host:?} ({error}); {FORM}"))?
        .collect();
    addresses
        .iter()
        .find(|address| address.is_ipv4())
        .or_else(|| addresses.first())
        .copied()
        .ok_or_else(|| format!("host name {host:?} resolves to no address; {FORM}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// If this fails, `--listen localhost:6443` or `--metrics-addr :8080` (the forms other
    /// Kubernetes tools take) is refused, or an address is read as another.
    #[test]
    fn host_names_and_addresses_parse() {
        for (text, expected) in [
            ("127.0.0.1:6443", "127.0.0.1:6443"),
            ("[::1]:6443", "[::1]:6443"),
            ("localhost:6443", "127.0.0.1:6443"),
            ("LocalHost:6443", "127.0.0.1:6443"),
            ("api.localhost:7000", "127.0.0.1:7000"),
            (":8080", "0.0.0.0:8080"),
            ("0.0.0.0:8080", "0.0.0.0:8080"),
            ("[::]:8080", "[::]:8080"),
        ] {
            assert_eq!(
                parse(text).map(|address| address.to_string()),
                Ok(expected.to_owned()),
                "{text}"
            );
        }
    }

    /// If this fails, a bad address is accepted, or its error does not say what is wrong.
    #[test]
    fn bad_addresses_say_why() {
        for (text, reason) in [
            ("localhost", "\"localhost\" has no port"),
            (
                "localhost:70000",
                "port \"70000\" is not a number from 0 to 65535",
            ),
            (
                "localhost:http",
                "port \"http\" is not a number from 0 to 65535",
            ),
            (
                "no-such-host.invalid:80",
                "cannot resolve host name \"no-such-host.invalid\"",
            ),
        ] {
            let error = parse(text).expect_err(text);
            assert!(
                error.starts_with(reason) && error.ends_with(FORM),
                "{text}: {error}"
            );
        }
    }
}
