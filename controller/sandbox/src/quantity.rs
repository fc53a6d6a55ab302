//! Kubernetes quantities and egress entries, parsed to numbers.

/// `500m` → 500, `2` → 2000, `1.5` → 1500.
pub fn cpu_millis(q: &str) -> Result<u64, String> {
    let bad = || format!("`{q}` is not a CPU quantity such as `500m` or `2`");
    let (num, scale) = match q.strip_suffix('m') {
        Some(n) => (n, 1.0),
        None => (q, 1000.0),
    };
    let v = number(num).ok_or_else(bad)? * scale;
    if v < 1.0 {
        return Err(bad());
    }
    Ok(v.round() as u64)
}

/// `512Mi` → 536870912, `1G` → 1e9.
pub fn memory_bytes(q: &str) -> Result<u64, String> {
    const UNITS: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let bad = || format!("`{q}` is not a memory quantity such as `512Mi` or `2Gi`");
    let (num, scale) = UNITS.iter().find_map(|(s, f)| q.strip_suffix(s).map(|n| (n, *f))).unwrap_or((q, 1.0));
    let v = number(num).ok_or_else(bad)? * scale;
    if !(1.0..=u64::MAX as f64).contains(&v) {
        return Err(bad());
    }
    Ok(v as u64)
}

fn number(s: &str) -> Option<f64> {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.') && s.matches('.').count() <= 1;
    plain.then(|| s.parse::<f64>().ok()).flatten().filter(|v| *v > 0.0)
}

/// An egress entry: a DNS name (optionally `*.`-prefixed), an IPv4 address or CIDR, or an IPv6 address; and
/// a port.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Egress {
    pub host: String,
    pub port: u16,
}

impl Egress {
    /// An IP address or CIDR (which a NetworkPolicy can express), not a name.
    pub fn cidr(&self) -> Option<String> {
        if self.host.contains('/') {
            return Some(self.host.clone());
        }
        match self.host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(a)) => Some(format!("{a}/32")),
            Ok(std::net::IpAddr::V6(a)) => Some(format!("{a}/128")),
            Err(_) => None,
        }
    }
}

/// `host:port` where host is a DNS name (optionally `*.`-prefixed), an IPv4 address or CIDR, or a
/// bracketed IPv6 address; port 1–65535.
pub fn parse_egress(entry: &str) -> Result<Egress, String> {
    let bad = |why: &str| {
        Err(format!("`{entry}` is not a valid egress entry ({why}); write `host:port`, e.g. `api.github.com:443`"))
    };
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let Some((h, p)) = rest.split_once("]:") else { return bad("IPv6 needs `[addr]:port`") };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("not an IPv6 address");
        }
        (h, p)
    } else {
        let Some((h, p)) = entry.rsplit_once(':') else { return bad("missing port") };
        (h, p)
    };
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return bad("port must be 1-65535"),
    };
    if !entry.starts_with('[') && !valid_host(host) {
        return bad("invalid host");
    }
    Ok(Egress { host: host.to_owned(), port })
}

fn valid_host(host: &str) -> bool {
    if let Some((ip, bits)) = host.split_once('/') {
        return ip.parse::<std::net::Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 32);
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && !name.chars().all(|c| c.is_ascii_digit() || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_millis("500m"), Ok(500));
        assert_eq!(cpu_millis("2"), Ok(2000));
        assert_eq!(cpu_millis("1.5"), Ok(1500));
        assert!(cpu_millis("0").is_err() && cpu_millis("2Gi").is_err() && cpu_millis("").is_err());
        assert_eq!(memory_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(memory_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(memory_bytes("1024"), Ok(1024));
        assert!(memory_bytes("1.2.3Mi").is_err() && memory_bytes("-1Gi").is_err() && memory_bytes("1Zi").is_err());
    }

    #[test]
    fn egress_entries() {
        assert_eq!(parse_egress("api.github.com:443"), Ok(Egress { host: "api.github.com".into(), port: 443 }));
        assert_eq!(parse_egress("10.0.0.0/8:5432").unwrap().cidr().as_deref(), Some("10.0.0.0/8"));
        assert_eq!(parse_egress("[::1]:8080").unwrap().cidr().as_deref(), Some("::1/128"));
        assert_eq!(parse_egress("*.npmjs.org:443").unwrap().cidr(), None);
        for bad in ["github.com", "github.com:0", "-x.com:443", "[::1:80", "1.2.3.4/40:1"] {
            assert!(parse_egress(bad).is_err(), "{bad}");
        }
    }
}
