//! Egress entries (`host:port`) and whether a destination matches them: the one matcher behind the engine's
//! `paddock/egress` pre-check, usable by anything else that judges a connection by an Agent's
//! `spec.sandbox.egress`.
//!
//! An entry is one of
//! - a DNS name, `registry.npmjs.org:443`: that name only;
//! - a wildcard, `*.npmjs.org:443`: any name below `npmjs.org`, at any depth (`a.npmjs.org`,
//!   `a.b.npmjs.org`), never `npmjs.org` itself;
//! - an IP address, `10.1.2.3:5432` or `[2001:db8::1]:443`, or a CIDR block, `10.0.0.0/8:5432` or
//!   `[2001:db8::/32]:443`: destinations given as IP literals only, never a name that resolves there.
//!
//! Names compare case-insensitively, with one trailing dot removed (`NPMJS.org.` is `npmjs.org`). A name
//! that ends in a number (`2130706433`, `127.1`, `0x7f.1`, `010.0.0.1`) is an IP address in a spelling
//! that resolvers accept but the dotted-quad form does not: it matches no entry at all. An IPv4-mapped IPv6
//! address (`::ffff:10.0.0.1`) is judged as the IPv4 address it is.
//!
//! Matching allocates nothing: entries are parsed from their text at each call (the lists are short).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A parsed egress entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EgressEntry<'a> {
    pub host: EntryHost<'a>,
    pub port: u16,
}

/// The host part of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryHost<'a> {
    /// A DNS name, trailing dot removed; compared case-insensitively.
    Name(&'a str),
    /// `*.suffix`: the suffix, trailing dot removed.
    Wildcard(&'a str),
    /// An address, or a CIDR block (`prefix` bits).
    Net { addr: IpAddr, prefix: u8 },
}

/// Where a connection goes, as the engine judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination<'a> {
    /// A DNS name, trailing dot removed.
    Name(&'a str),
    /// An IP literal (IPv4-mapped IPv6 addresses as IPv4).
    Ip(IpAddr),
    /// A name that ends in a number: an IP address spelled so that only a resolver knows which.
    NumericName,
    /// Not a host name at all (empty labels, characters no host name has).
    Invalid,
}

/// Why an entry is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{entry}` is not a valid egress entry ({why}); write `host:port`, e.g. `registry.npmjs.org:443`")]
pub struct EntryError {
    pub entry: String,
    pub why: &'static str,
}

/// Parses `host:port`, `*.suffix:port`, `a.b.c.d[/bits]:port` or `[ipv6[/bits]]:port`.
pub fn parse_entry(entry: &str) -> Result<EgressEntry<'_>, EntryError> {
    let bad = |why| EntryError { entry: entry.to_owned(), why };
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        rest.split_once("]:").ok_or_else(|| bad("an IPv6 entry is written `[address]:port`"))?
    } else {
        entry.rsplit_once(':').ok_or_else(|| bad("missing port"))?
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 && !port.starts_with('+') => p,
        _ => return Err(bad("the port must be 1-65535")),
    };
    let host = if entry.starts_with('[') {
        let (addr, prefix) = split_prefix(host, 128).ok_or_else(|| bad("not an IPv6 address or block"))?;
        let addr = addr.parse::<Ipv6Addr>().map_err(|_| bad("not an IPv6 address or block"))?;
        net(IpAddr::V6(addr), prefix)
    } else if host.contains('/') {
        let (addr, prefix) = split_prefix(host, 32).ok_or_else(|| bad("not a CIDR block"))?;
        let addr = addr.parse::<Ipv4Addr>().map_err(|_| bad("not a CIDR block"))?;
        net(IpAddr::V4(addr), prefix)
    } else if let Ok(addr) = host.parse::<Ipv4Addr>() {
        net(IpAddr::V4(addr), 32)
    } else if host.contains(':') {
        return Err(bad("write an IPv6 address in brackets: `[2001:db8::1]:443`"));
    } else if let Some(suffix) = host.strip_prefix("*.") {
        match destination(suffix) {
            Destination::Name(n) => EntryHost::Wildcard(n),
            _ => return Err(bad("`*.` must be followed by a host name")),
        }
    } else {
        match destination(host) {
            Destination::Name(n) => EntryHost::Name(n),
            Destination::NumericName => return Err(bad("a name ending in a number is an IP address; write it as one")),
            _ => return Err(bad("invalid host")),
        }
    };
    Ok(EgressEntry { host, port })
}

fn split_prefix(host: &str, max: u8) -> Option<(&str, u8)> {
    match host.split_once('/') {
        None => Some((host, max)),
        Some((addr, bits)) => {
            let bits: u8 = bits.parse().ok().filter(|b| *b <= max && !bits.starts_with('+'))?;
            Some((addr, bits))
        }
    }
}

fn net(addr: IpAddr, prefix: u8) -> EntryHost<'static> {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if prefix >= 96 => EntryHost::Net { addr: IpAddr::V4(v4), prefix: prefix - 96 },
            _ => EntryHost::Net { addr, prefix },
        },
        IpAddr::V4(_) => EntryHost::Net { addr, prefix },
    }
}

/// What a connection's host is: a name (case kept, one trailing dot removed), an IP literal (bare or in
/// brackets), a name ending in a number, or nothing valid.
pub fn destination(host: &str) -> Destination<'_> {
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(a)) => Destination::Ip(canonical(IpAddr::V6(a))),
            _ => Destination::Invalid,
        };
    }
    if let Ok(a) = host.parse::<IpAddr>() {
        return Destination::Ip(canonical(a));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return Destination::Invalid;
    }
    let mut last = "";
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Destination::Invalid;
        }
        last = label;
    }
    // WHATWG URL's "ends in a number": such a host is parsed (and resolved) as an IPv4 address.
    let hex =
        last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x")) && last[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if hex || last.bytes().all(|b| b.is_ascii_digit()) {
        return Destination::NumericName;
    }
    Destination::Name(name)
}

fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

impl EgressEntry<'_> {
    /// Whether a connection to `dest` on `port` is what this entry allows.
    pub fn matches(&self, dest: Destination, port: u16) -> bool {
        if port != self.port {
            return false;
        }
        match (self.host, dest) {
            (EntryHost::Name(n), Destination::Name(d)) => n.eq_ignore_ascii_case(d),
            (EntryHost::Wildcard(suffix), Destination::Name(d)) => {
                d.len() > suffix.len() + 1
                    && d.as_bytes()[d.len() - suffix.len() - 1] == b'.'
                    && d.as_bytes()[d.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
            }
            (EntryHost::Net { addr, prefix }, Destination::Ip(ip)) => in_block(ip, addr, prefix),
            _ => false,
        }
    }
}

fn in_block(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Whether any of `entries` allows `host`:`port`. Entries that do not parse allow nothing.
pub fn allows<'e>(entries: impl IntoIterator<Item = &'e str>, host: &str, port: u16) -> bool {
    let dest = destination(host);
    if matches!(dest, Destination::NumericName | Destination::Invalid) {
        return false;
    }
    entries.into_iter().any(|e| parse_entry(e).is_ok_and(|e| e.matches(dest, port)))
}

/// `host:port` as an entry would spell it: lowercase, trailing dot removed, IPv6 in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    match destination(host) {
        Destination::Ip(IpAddr::V6(a)) => format!("[{a}]:{port}"),
        Destination::Ip(a) => format!("{a}:{port}"),
        Destination::Name(n) => format!("{}:{port}", n.to_ascii_lowercase()),
        _ => format!("{host}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(entries: &[&str], host: &str, port: u16) -> bool {
        allows(entries.iter().copied(), host, port)
    }

    #[test]
    fn names_match_exactly_case_insensitively_without_the_trailing_dot() {
        let e = ["registry.npmjs.org:443"];
        assert!(ok(&e, "registry.npmjs.org", 443));
        assert!(ok(&e, "Registry.NPMJS.org", 443));
        assert!(ok(&e, "registry.npmjs.org.", 443));
        assert!(ok(&["registry.npmjs.org.:443"], "registry.npmjs.org", 443));
        assert!(!ok(&e, "registry.npmjs.org", 80), "another port");
        assert!(!ok(&e, "registry.npmjs.org..", 443));
        assert!(!ok(&e, "evil-registry.npmjs.org", 443));
        assert!(!ok(&e, "registry.npmjs.org.evil.io", 443));
        assert!(!ok(&e, "npmjs.org", 443));
        assert!(!ok(&e, "", 443));
        assert!(!ok(&e, "registry.npmjs.org\0", 443));
        assert!(!ok(&e, "registry.npmjs.org:443", 443), "a port inside the host is no host");
        assert!(!ok(&e, "x@registry.npmjs.org", 443));
    }

    #[test]
    fn a_wildcard_matches_subdomains_at_any_depth_but_not_the_domain() {
        let e = ["*.npmjs.org:443"];
        assert!(ok(&e, "registry.npmjs.org", 443));
        assert!(ok(&e, "a.b.NPMJS.org.", 443));
        assert!(!ok(&e, "npmjs.org", 443));
        assert!(!ok(&e, "evilnpmjs.org", 443));
        assert!(!ok(&e, ".npmjs.org", 443));
        assert!(!ok(&e, "npmjs.org.evil.io", 443));
        assert!(!ok(&e, "registry.npmjs.org", 80));
    }

    #[test]
    fn ip_entries_match_ip_literals_only() {
        let e = ["10.0.0.0/8:5432", "[2001:db8::1]:443", "192.168.1.5:22", "[2001:db8:1::/48]:443"];
        assert!(ok(&e, "10.200.3.4", 5432));
        assert!(!ok(&e, "11.0.0.1", 5432));
        assert!(!ok(&e, "10.0.0.1", 5433));
        assert!(ok(&e, "2001:db8::1", 443));
        assert!(ok(&e, "[2001:DB8:0::1]", 443));
        assert!(ok(&e, "2001:db8:1:ffff::9", 443));
        assert!(!ok(&e, "2001:db8:2::9", 443));
        assert!(ok(&e, "192.168.1.5", 22));
        assert!(ok(&e, "::ffff:10.1.1.1", 5432), "an IPv4-mapped address is the IPv4 address");
        assert!(ok(&e, "[::ffff:192.168.1.5]", 22));
        assert!(!ok(&e, "db.internal", 5432), "a name never matches a CIDR entry");
        assert!(!ok(&["localhost:8080"], "127.0.0.1", 8080), "an IP never matches a name entry");
    }

    #[test]
    fn ips_written_as_names_match_nothing() {
        let e = ["127.0.0.1:80", "127.0.0.0/8:80", "*.1:80", "localhost:80"];
        for host in ["2130706433", "127.1", "0x7f.1", "0x7F000001", "017700000001", "127.000.000.001", "127.0.0.01"] {
            assert!(!ok(&e, host, 80), "{host}");
            assert_eq!(destination(host), Destination::NumericName, "{host}");
        }
        assert!(ok(&e, "127.0.0.1", 80));
        assert!(parse_entry("*.1:80").is_err() && parse_entry("2130706433:80").is_err());
    }

    #[test]
    fn entries_that_do_not_parse_allow_nothing() {
        for bad in [
            "registry.npmjs.org",
            "registry.npmjs.org:0",
            "registry.npmjs.org:65536",
            "registry.npmjs.org:+443",
            "::1:443",
            "[::1]443",
            "[nope]:443",
            "10.0.0.0/33:80",
            "*:443",
            "*.:443",
            "a..b:443",
            "-:443",
            "a b:443",
        ] {
            assert!(parse_entry(bad).is_err(), "{bad}");
            assert!(!allows([bad], "a.b", 443), "{bad}");
        }
        assert_eq!(
            parse_entry("[::ffff:10.0.0.0/104]:1").map(|e| e.host),
            Ok(EntryHost::Net { addr: "10.0.0.0".parse().unwrap(), prefix: 8 })
        );
        assert_eq!(
            parse_entry("npmjs.org").unwrap_err().to_string(),
            "`npmjs.org` is not a valid egress entry (missing port); write `host:port`, e.g. `registry.npmjs.org:443`"
        );
    }

    #[test]
    fn no_input_panics() {
        let alphabet = ['a', '1', '.', '*', '[', ']', ':', '/', 'x', 'é', '-', '%'];
        let n = alphabet.len();
        for i in 0..n.pow(4) {
            let s: String = (0..4).map(|k| alphabet[(i / n.pow(k)) % n]).collect();
            let half: String = s.chars().take(2).collect();
            for t in [&s[..], &half[..]] {
                let _ = parse_entry(t);
                let _ = destination(t);
                let _ = allows([t, "*.a:1", "[::1]:1", "1.1.1.1/1:1"], t, 1);
                let _ = host_port(t, 1);
            }
        }
    }

    #[test]
    fn host_port_spells_destinations_like_entries() {
        assert_eq!(host_port("Registry.NPMJS.org.", 443), "registry.npmjs.org:443");
        assert_eq!(host_port("2001:db8::1", 443), "[2001:db8::1]:443");
        assert_eq!(host_port("[2001:db8::1]", 443), "[2001:db8::1]:443");
        assert_eq!(host_port("10.0.0.1", 5432), "10.0.0.1:5432");
    }
}
