//! Connecting to a destination for the egress proxy and the broker: the `egress.resolve` override first
//! (tests map names to loopback), else DNS. A host *name* may lead only to public addresses: otherwise a DNS
//! answer could point the proxy at the cloud metadata endpoint, the cluster or the gateway itself (SSRF).
//! An IP-literal host is judged by the allowlist (an explicit CIDR entry); here only the addresses no entry
//! can mean are refused: the gateway's own host (loopback, unspecified; unless `egress.allowLoopback`, local
//! mode) and link-local (the cloud metadata endpoint).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::EgressConfig;

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error(
        "`{host}` resolves to {addr}, which is not a public address; the gateway connects a host name only to \
         public addresses (write an IP address and allow its CIDR in `spec.sandbox.egress` to reach a private one)"
    )]
    NotPublic { host: String, addr: IpAddr },
    #[error("{addr} is {what}; the egress proxy never connects there")]
    Literal { addr: IpAddr, what: &'static str },
    #[error("cannot resolve `{host}`: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("`{host}` has no address")]
    NoAddress { host: String },
    #[error("cannot connect to {target}: {source}")]
    Connect { target: String, source: io::Error },
    #[error("connecting to {target} took longer than {seconds} s")]
    Timeout { target: String, seconds: u64 },
}

impl DialError {
    /// Whether the gateway refused the destination (rather than failing to reach it).
    pub fn is_refusal(&self) -> bool {
        matches!(self, DialError::NotPublic { .. } | DialError::Literal { .. })
    }
}

impl From<DialError> for io::Error {
    fn from(e: DialError) -> io::Error {
        let kind = match &e {
            DialError::NotPublic { .. } | DialError::Literal { .. } => io::ErrorKind::PermissionDenied,
            DialError::Resolve { .. } | DialError::NoAddress { .. } => io::ErrorKind::NotFound,
            DialError::Connect { source, .. } => source.kind(),
            DialError::Timeout { .. } => io::ErrorKind::TimedOut,
        };
        io::Error::new(kind, e)
    }
}

/// [`dial`] with an `io::Error` (its kind `PermissionDenied` for a non-public address).
pub async fn connect(cfg: &EgressConfig, timeout: Duration, host: &str, port: u16) -> io::Result<TcpStream> {
    Ok(dial(cfg, timeout, host, port).await?)
}

/// Connects to `host:port` (`host` as [`super::target::Target::host`]: lowercase, IPv6 without brackets)
/// within `timeout`, resolving included. The stream has `TCP_NODELAY` set.
pub async fn dial(cfg: &EgressConfig, timeout: Duration, host: &str, port: u16) -> Result<TcpStream, DialError> {
    let target = match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    };
    let attempt = async {
        let addrs = addresses(cfg, host, port).await?;
        let mut last = None;
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(DialError::Connect { target: target.clone(), source: last.expect("at least one address") })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(DialError::Timeout { target, seconds: timeout.as_secs() }),
    }
}

/// The addresses to try for `host`: the override, the literal, or every DNS answer, all of them public.
async fn addresses(cfg: &EgressConfig, host: &str, port: u16) -> Result<Vec<SocketAddr>, DialError> {
    if let Some(ip) = overridden(cfg, host) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if let Some(what) = never_a_destination(ip, cfg.allow_loopback) {
            return Err(DialError::Literal { addr: ip, what });
        }
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let answers: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| DialError::Resolve { host: host.to_owned(), source })?
        .collect();
    if answers.is_empty() {
        return Err(DialError::NoAddress { host: host.to_owned() });
    }
    // Every answer must be public, not just the first: a resolver's order is not a guarantee.
    if let Some(a) = answers.iter().find(|a| !is_public(a.ip())) {
        return Err(DialError::NotPublic { host: host.to_owned(), addr: a.ip() });
    }
    Ok(answers)
}

/// Why an IP literal can be no sandbox's destination: the gateway's own host (unless `allow_loopback`), or
/// link-local. IPv4 inside IPv6 (mapped, compatible) is judged as the IPv4 address.
fn never_a_destination(ip: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (own, link_local) = match ip {
        IpAddr::V4(a) => (a.is_loopback() || a.octets()[0] == 0, a.is_link_local()),
        IpAddr::V6(a) => (a.is_loopback() || a.is_unspecified(), (a.segments()[0] & 0xffc0) == 0xfe80),
    };
    if link_local {
        Some("link-local (the cloud metadata endpoint lives there)")
    } else if own && !allow_loopback {
        Some("the gateway's own host (loopback or unspecified), not a sandbox's destination here")
    } else {
        None
    }
}

/// The `egress.resolve` entry for `host` (keys compare without case and without a trailing dot).
pub fn overridden(cfg: &EgressConfig, host: &str) -> Option<IpAddr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    cfg.resolve.iter().find(|(k, _)| k.strip_suffix('.').unwrap_or(k).eq_ignore_ascii_case(host)).map(|(_, ip)| *ip)
}

/// Whether an address is on the public internet: not loopback, private, link-local, shared (CGNAT),
/// unspecified, multicast, reserved or documentation space, including IPv4 addresses inside IPv6 ones
/// (mapped, compatible, NAT64, 6to4). Unknown IPv6 space outside global unicast counts as not public.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// IPv4 ranges that are not the public internet (RFC 6890 and friends): `(network, prefix length)`.
const NOT_PUBLIC_V4: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),       // "this network"
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (carrier-grade NAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, the cloud metadata endpoint
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation
    ([203, 0, 113, 0], 24),  // documentation
    ([224, 0, 0, 0], 3),     // multicast, reserved, broadcast
];

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let ip = u32::from(ip);
    !NOT_PUBLIC_V4.iter().any(|(net, len)| (ip ^ u32::from_be_bytes(*net)) >> (32 - len) == 0)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if s[..6] == [0; 6] {
        // `::`, `::1` and the deprecated IPv4-compatible `::a.b.c.d`: no public host answers there.
        return false;
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 well-known prefix: the IPv4 address it reaches decides.
        return is_public_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        // 6to4: the embedded IPv4 address decides.
        return is_public_v4(embedded_v4(s[1], s[2]));
    }
    if s[0] == 0x2001 && (s[1] == 0 || s[1] == 0xdb8) {
        // Teredo (an IPv4 address hides inside) and documentation.
        return false;
    }
    // Global unicast 2000::/3 only: this leaves out unique-local fc00::/7, link-local fe80::/10, site-local
    // fec0::/10, multicast ff00::/8 and the local-use NAT64 prefix 64:ff9b:1::/48.
    (s[0] & 0xe000) == 0x2000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_on_the_gateways_own_host_or_link_local_are_never_destinations() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for own in ["127.0.0.1", "127.9.9.9", "0.0.0.0", "0.1.2.3", "::1", "::", "::ffff:127.0.0.1", "::127.0.0.1"] {
            assert!(never_a_destination(ip(own), false).is_some_and(|w| w.contains("own host")), "{own}");
            assert_eq!(never_a_destination(ip(own), true), None, "{own}: local mode");
        }
        for metadata in ["169.254.169.254", "::ffff:169.254.169.254", "fe80::1", "febf::1"] {
            assert!(never_a_destination(ip(metadata), true).is_some_and(|w| w.contains("link-local")), "{metadata}");
        }
        for fine in ["10.1.2.3", "192.168.1.5", "8.8.8.8", "2001:db8::1", "fd00::5"] {
            assert_eq!(never_a_destination(ip(fine), false), None, "{fine}: an explicit entry decides");
        }
    }

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for a in [
            "0.0.0.0",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2001::1",
            "2001:db8::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!public(a), "{a} counted as public");
        }
    }

    #[test]
    fn public_addresses_are_public() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "169.253.1.1",
            "140.82.112.3",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(public(a), "{a} counted as not public");
        }
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_unless_overridden() {
        let timeout = Duration::from_secs(5);
        let mut cfg = EgressConfig::default();
        let e = dial(&cfg, timeout, "localhost", 9).await.unwrap_err();
        assert!(e.is_refusal(), "{e}");
        assert!(e.to_string().contains("not a public address"), "{e}");
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::PermissionDenied);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        cfg.resolve.insert("Registry.Test".into(), "127.0.0.1".parse().unwrap());
        dial(&cfg, timeout, "registry.test", port).await.expect("the override is trusted");
        // An IP literal is the allowlist's business, except on the gateway's own host outside local mode.
        let e = dial(&EgressConfig::default(), timeout, "127.0.0.1", port).await.unwrap_err();
        assert!(e.is_refusal() && e.to_string().contains("own host"), "{e}");
        let local = EgressConfig { allow_loopback: true, ..EgressConfig::default() };
        dial(&local, timeout, "127.0.0.1", port).await.expect("a loopback literal in local mode");
    }
}
