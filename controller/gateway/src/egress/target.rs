//! Where a proxied request goes: the `host:port` of a CONNECT or the authority of an absolute-form URI,
//! checked and written one way only, so that the policy, the SNI check and the dialer all see the same name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A checked destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Lowercase, without a trailing dot; an IP address in its canonical form (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Set when the host is an IP address rather than a name.
    pub ip: Option<IpAddr>,
}

impl Target {
    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        match self.ip {
            Some(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// Parses `host:port` (`[v6]:port` for IPv6). `default_port` applies when the port is absent (absent is an
/// error for CONNECT). The error says what is wrong, for a 400 answer.
pub fn parse(authority: &str, default_port: Option<u16>) -> Result<Target, String> {
    let bad = |why: &str| Err(format!("`{authority}` is not a valid destination: {why}"));
    if authority.contains('@') {
        return bad("user information is not allowed");
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return bad("an IPv6 address lacks its closing bracket");
        };
        let Ok(ip) = v6.parse::<Ipv6Addr>() else {
            return bad("the bracketed part is not an IPv6 address");
        };
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return bad("something other than `:port` follows the IPv6 address"),
            },
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (h, p) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if h.contains(':') {
            return bad("an IPv6 address must be written in brackets");
        }
        match host(h) {
            Ok(h) => (h, p),
            Err(why) => return bad(why),
        }
    };
    let port = match port {
        None => match default_port {
            Some(p) => p,
            None => return bad("the port is missing"),
        },
        Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) => {
            return bad("the port is not a number");
        }
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return bad("the port is out of range"),
        },
    };
    Ok(match host {
        Host::Ip(ip) => Target { host: ip.to_string(), port, ip: Some(ip) },
        Host::Name(name) => Target { host: name, port, ip: None },
    })
}

enum Host {
    Ip(IpAddr),
    Name(String),
}

/// A dotted-quad IPv4 address, or a DNS name (letters, digits, `-`, `_`; labels of 1 to 63; at most 253).
/// Names that a resolver would read as an IPv4 address in another spelling (`127.1`, `2130706433`,
/// `0x7f.1`) are refused: they would pass for names in the allowlist and reach an address.
fn host(h: &str) -> Result<Host, &'static str> {
    if let Ok(ip) = h.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    let name = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    if name.is_empty() {
        return Err("the host is empty");
    }
    if name.len() > 253 {
        return Err("the host name is longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("the host name has an empty label or one longer than 63 characters");
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err("the host name holds a character other than letters, digits, `-` and `_`");
        }
    }
    let last = name.rsplit('.').next().expect("one label");
    let hex = last.strip_prefix("0x").is_some_and(|x| x.bytes().all(|b| b.is_ascii_hexdigit()));
    if last.bytes().all(|b| b.is_ascii_digit()) || hex {
        return Err("this is an IP address in an unusual spelling; write IPv4 addresses as four decimal numbers");
    }
    Ok(Host::Name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(a: &str) -> (String, u16, bool) {
        let t = parse(a, None).unwrap_or_else(|e| panic!("{a}: {e}"));
        (t.host, t.port, t.ip.is_some())
    }

    #[test]
    fn names_and_addresses_are_written_one_way() {
        assert_eq!(ok("Registry.NPMJS.org:443"), ("registry.npmjs.org".into(), 443, false));
        assert_eq!(ok("registry.npmjs.org.:443"), ("registry.npmjs.org".into(), 443, false));
        assert_eq!(ok("10.1.2.3:5432"), ("10.1.2.3".into(), 5432, true));
        assert_eq!(ok("[2001:DB8::1]:443"), ("2001:db8::1".into(), 443, true));
        assert_eq!(ok("[::ffff:127.0.0.1]:443"), ("::ffff:127.0.0.1".into(), 443, true));
        assert_eq!(ok("_acme.example:443").0, "_acme.example");
        let t = parse("[2001:db8::1]:8443", None).unwrap();
        assert_eq!(t.authority(), "[2001:db8::1]:8443");
        assert_eq!(parse("example.com", Some(80)).unwrap().port, 80);
    }

    #[test]
    fn junk_is_refused() {
        for a in [
            "",
            ":443",
            "example.com",
            "example.com:",
            "example.com:0",
            "example.com:65536",
            "example.com:+443",
            "example.com:44 3",
            "user:pw@example.com:443",
            "exa mple.com:443",
            "example..com:443",
            "example.com..:443",
            "exam%70le.com:443",
            "2001:db8::1:443",
            "[2001:db8::1:443",
            "[2001:db8::1]x:443",
            "[fe80::1%eth0]:443",
            "[127.0.0.1]:443",
            "127.1:443",
            "2130706433:443",
            "0x7f.1:443",
            "0x7f000001:443",
            "127.0.0.01:443",
            "1.2.3.4.5:443",
            "ex\u{e4}mple.com:443",
        ] {
            assert!(parse(a, None).is_err(), "{a:?} was accepted: {:?}", parse(a, None));
        }
        let long = format!("{}.com:443", "a".repeat(64));
        assert!(parse(&long, None).is_err());
    }
}
