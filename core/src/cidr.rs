//! IP ranges in CIDR notation, for `ipBlock` peers: parse, and test whether an address is inside.
//!
//! ```text
//! "10.0.0.0/8" --Cidr::parse--> Cidr --contains(IpAddr)--> bool
//!              --Cidr::parse_canonical--> the same, refusing host bits (what netfence's own specs must write)
//! ```
//!
//! Like the API server, [`Cidr::parse`] accepts a CIDR with host bits set (`10.1.2.3/8`, which the
//! upstream e2e tests write) and means its network (`10.0.0.0/8`). IPv4 ranges never contain IPv6
//! addresses and the reverse.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// A validated IPv4 or IPv6 range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    v6: bool,
    network: u128,
    prefix: u8,
}

/// Why a text is not a CIDR; its `Display` says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CidrProblem {
    /// No `/`.
    NotCidr,
    /// The part before `/` is not an address.
    NotAddress(String),
    /// The prefix length is not a number within the family's width.
    Prefix {
        /// The prefix as written.
        given: String,
        /// 32 or 128.
        max: u8,
    },
    /// An IPv4-mapped IPv6 address (`::ffff:10.0.0.0/104`), which the API server refuses: the
    /// IPv4 range meant, if the prefix covers the IPv4 part.
    Mapped(Option<Cidr>),
    /// Host bits set (only [`Cidr::parse_canonical`] refuses them): the network meant.
    HostBits(Cidr),
}

impl fmt::Display for CidrProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrProblem::NotCidr => write!(
                f,
                "is not in CIDR notation; write an address and a prefix length, such as 10.0.0.0/8 or 192.0.2.10/32"
            ),
            CidrProblem::NotAddress(address) => {
                write!(f, "{address:?} is not an IPv4 or IPv6 address")
            }
            CidrProblem::Prefix { given, max } => {
                let plain = !given.is_empty()
                    && given.bytes().all(|byte| byte.is_ascii_digit())
                    && (given == "0" || !given.starts_with('0'));
                write!(
                    f,
                    "prefix length {given:?} must be a number from 0 to {max}{}",
                    if plain {
                        ""
                    } else {
                        ", in plain digits without a leading zero or sign"
                    }
                )
            }
            CidrProblem::Mapped(Some(meant)) => write!(
                f,
                "is an IPv4-mapped IPv6 address, which Kubernetes refuses; write the IPv4 range {meant}"
            ),
            CidrProblem::Mapped(None) => write!(
                f,
                "is an IPv4-mapped IPv6 address, which Kubernetes refuses; write an IPv4 range instead"
            ),
            CidrProblem::HostBits(network) => write!(f, "has host bits set; write {network}"),
        }
    }
}

impl Cidr {
    /// Parse `ADDRESS/PREFIX` as the API server does: host bits are masked off.
    pub fn parse(text: &str) -> Result<Self, CidrProblem> {
        let Some((address, prefix)) = text.split_once('/') else {
            return Err(CidrProblem::NotCidr);
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| CidrProblem::NotAddress(address.to_owned()))?;
        let (v6, bits, value) = bits_of(&address);
        // Plain decimal digits, no leading zero (`/08`) and no sign (`/+8`): what the API
        // server's `isCIDR` accepts (Go's netip.ParsePrefix).
        let plain = !prefix.is_empty()
            && prefix.bytes().all(|byte| byte.is_ascii_digit())
            && (prefix == "0" || !prefix.starts_with('0'));
        let prefix: u8 = Some(prefix)
            .filter(|_| plain)
            .and_then(|prefix| prefix.parse().ok())
            .filter(|prefix| *prefix <= bits)
            .ok_or_else(|| CidrProblem::Prefix {
                given: prefix.to_owned(),
                max: bits,
            })?;
        if let IpAddr::V6(v6) = address
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            let meant = prefix
                .checked_sub(96)
                .and_then(|prefix| Cidr::parse(&format!("{v4}/{prefix}")).ok());
            return Err(CidrProblem::Mapped(meant));
        }
        Ok(Cidr {
            v6,
            network: value & mask(bits, prefix),
            prefix,
        })
    }

    /// Parse `ADDRESS/PREFIX`, refusing host bits: the canonical form, which is what Kubernetes
    /// stores and what netfence's own resources must write.
    pub fn parse_canonical(text: &str) -> Result<Self, CidrProblem> {
        let cidr = Cidr::parse(text)?;
        let written = text.split_once('/').map(|(address, _)| address);
        if written.and_then(|address| address.parse::<IpAddr>().ok()) == Some(cidr.first()) {
            Ok(cidr)
        } else {
            Err(CidrProblem::HostBits(cidr))
        }
    }

    /// Whether `address` is inside this range.
    #[must_use]
    pub fn contains(&self, address: &IpAddr) -> bool {
        let (v6, bits, value) = bits_of(address);
        v6 == self.v6 && value & mask(bits, self.prefix) == self.network
    }

    /// Whether `other` lies entirely inside this range.
    #[must_use]
    pub fn covers(&self, other: &Cidr) -> bool {
        let bits = if self.v6 { 128 } else { 32 };
        self.v6 == other.v6
            && other.prefix >= self.prefix
            && other.network & mask(bits, self.prefix) == self.network
    }

    /// Whether `inner` is a smaller range inside this one.
    #[must_use]
    pub fn strictly_contains(&self, inner: &Cidr) -> bool {
        inner.prefix > self.prefix && self.covers(inner)
    }

    /// Whether this is an IPv6 range.
    #[must_use]
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// The prefix length.
    #[must_use]
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The first address of the range.
    #[must_use]
    pub fn first(&self) -> IpAddr {
        address_of(self.v6, self.network)
    }

    /// The last address of the range.
    #[must_use]
    pub fn last(&self) -> IpAddr {
        let bits = if self.v6 { 128 } else { 32 };
        address_of(
            self.v6,
            self.network | (!mask(bits, self.prefix) & width_mask(bits)),
        )
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.first(), self.prefix)
    }
}

fn bits_of(address: &IpAddr) -> (bool, u8, u128) {
    match address {
        IpAddr::V4(v4) => (false, 32, u128::from(u32::from(*v4))),
        IpAddr::V6(v6) => (true, 128, u128::from(*v6)),
    }
}

fn address_of(v6: bool, value: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(value))
    } else {
        // A v4 network is built from a u32, so it fits.
        IpAddr::V4(Ipv4Addr::from(value as u32))
    }
}

fn width_mask(bits: u8) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// The network mask of a `prefix` in an address of `bits` bits.
fn mask(bits: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        width_mask(bits) & !(width_mask(bits - prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    /// If this fails, ipBlock peers match the wrong pods: traffic meant for a /24 leaks to its
    /// neighbours, or a single-address /32 stops matching its pod.
    #[test]
    fn ranges_contain_exactly_their_addresses() {
        let range = Cidr::parse("10.1.2.0/24").expect("valid");
        assert!(range.contains(&ip("10.1.2.0")));
        assert!(range.contains(&ip("10.1.2.255")));
        assert!(!range.contains(&ip("10.1.3.0")));
        assert!(
            !range.contains(&ip("::ffff:10.1.2.3")),
            "families never mix"
        );
        let host = Cidr::parse("192.168.0.7/32").expect("valid");
        assert!(host.contains(&ip("192.168.0.7")));
        assert!(!host.contains(&ip("192.168.0.8")));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .expect("valid")
                .contains(&ip("8.8.8.8"))
        );
        let v6 = Cidr::parse("2001:db8::/32").expect("valid");
        assert!(v6.contains(&ip("2001:db8:ffff::1")));
        assert!(!v6.contains(&ip("2001:db9::1")));
        assert_eq!(range.last(), ip("10.1.2.255"));
    }

    /// If this fails, the upstream CIDR tests (which write `POD_IP/4`) are refused or read as a
    /// single address.
    #[test]
    fn host_bits_are_masked_like_the_api_server_does() {
        let range = Cidr::parse("10.1.2.3/4").expect("valid");
        assert_eq!(range.to_string(), "0.0.0.0/4");
        assert!(range.contains(&ip("15.255.0.1")));
        assert!(range.covers(&Cidr::parse("10.1.2.3/32").expect("valid")));
    }

    /// If this fails, a malformed CIDR in a policy is accepted and matches nothing, silently.
    #[test]
    fn malformed_ranges_are_refused_with_a_reason() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.300/8",
            "::/129",
            "x/8",
            "10.0.0.0/-1",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad} must be refused");
        }
        let message = Cidr::parse("10.0.0.0/33").expect_err("bad").to_string();
        assert!(message.contains("from 0 to 32"), "{message}");
        assert_eq!(
            Cidr::parse_canonical("203.0.113.5/24")
                .expect_err("host bits")
                .to_string(),
            "has host bits set; write 203.0.113.0/24"
        );
        assert!(Cidr::parse_canonical("2001:db8::/32").is_ok());
    }

    /// What the API server's `isCIDR` (Go's netip.ParsePrefix) refuses, render refuses too, each
    /// with its reason. If this fails, `render` passes a range that `kubectl apply` then refuses,
    /// or (`::ffff:10.0.0.0/104`) one whose meaning depends on the network plugin.
    #[test]
    fn prefixes_the_api_server_refuses_are_refused() {
        for bad in [
            "10.0.0.0/08",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0.0/",
            "::/064",
        ] {
            let message = Cidr::parse(bad).expect_err(bad).to_string();
            assert!(
                message.ends_with("in plain digits without a leading zero or sign"),
                "{bad}: {message}"
            );
        }
        assert_eq!(
            Cidr::parse("::ffff:10.0.0.0/104")
                .expect_err("mapped")
                .to_string(),
            "is an IPv4-mapped IPv6 address, which Kubernetes refuses; write the IPv4 range 10.0.0.0/8"
        );
        assert!(Cidr::parse("::ffff:10.0.0.1/128").is_err());
        for good in ["0.0.0.0/0", "10.0.0.0/8", "::/0", "2001:db8::/32"] {
            assert!(Cidr::parse(good).is_ok(), "{good} must be accepted");
        }
    }
}
