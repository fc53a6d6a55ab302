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
/// bracketed IPv6 address; port 1–65535. The syntax is the policy engine's (the gateway judges connections
/// with the same parser, [`paddock_policy::egress`]); on top of it, what a NetworkPolicy `ipBlock` may open.
pub fn parse_egress(entry: &str) -> Result<Egress, String> {
    use paddock_policy::egress::{EntryHost, parse_entry};
    use std::net::IpAddr;
    let parsed = parse_entry(entry).map_err(|e| e.to_string())?;
    let host = match parsed.host {
        EntryHost::Name(n) => n.to_ascii_lowercase(),
        EntryHost::Wildcard(suffix) => format!("*.{}", suffix.to_ascii_lowercase()),
        // The parser reads an IPv4-mapped IPv6 address as the IPv4 one; the entry must say which it opens.
        EntryHost::Net { addr: IpAddr::V4(a), .. } if entry.starts_with('[') => {
            return Err(format!("`{entry}`: an IPv4-mapped address; write the IPv4 address `{a}`"));
        }
        EntryHost::Net { addr: IpAddr::V4(a), prefix } if entry.contains('/') => format!("{a}/{prefix}"),
        EntryHost::Net { addr, prefix: 32 | 128 } => addr.to_string(),
        EntryHost::Net { .. } => {
            return Err(format!("`{entry}`: IPv6 blocks are not supported; list each address as `[address]:port`"));
        }
    };
    if let Err(why) = check_address(&host) {
        return Err(format!("`{entry}`: {why}"));
    }
    Ok(Egress { host, port: parsed.port })
}

/// This entry as the policy engine reads it (IPv6 in brackets).
impl Egress {
    pub fn entry(&self) -> String {
        match self.host.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{}]:{}", self.host, self.port),
            Err(_) => format!("{}:{}", self.host, self.port),
        }
    }
}

/// The narrowest prefix an IPv4 CIDR entry may have. A CIDR entry opens a subnet directly (a database
/// network), past the gateway; the internet is reached by name, through the gateway.
pub const WIDEST_CIDR_PREFIX: u8 = 8;

/// Address and CIDR entries become `ipBlock`s of the NetworkPolicy, past the gateway: they may not be
/// wider than a /8, may not have host bits set (the policy says exactly what was written), and may not
/// reach link-local addresses (the cloud metadata endpoint, `169.254.169.254`). Names pass.
fn check_address(host: &str) -> Result<(), String> {
    use std::net::{IpAddr, Ipv4Addr};
    let link_local = |ip: IpAddr| match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    };
    if let Some((ip, bits)) = host.split_once('/') {
        let (Ok(ip), Ok(bits)) = (ip.parse::<Ipv4Addr>(), bits.parse::<u8>()) else { return Ok(()) };
        if bits < WIDEST_CIDR_PREFIX {
            return Err(format!(
                "a CIDR entry opens a subnet past the gateway and may be at most a /{WIDEST_CIDR_PREFIX}; \
                 reach the internet by name (`host:port`), through the gateway"
            ));
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
        let net = Ipv4Addr::from(u32::from(ip) & mask);
        if net != ip {
            return Err(format!("host bits are set; write `{net}/{bits}`"));
        }
        // Overlap with 169.254.0.0/16: the wider of the two contains the other's network.
        let link = u32::from(Ipv4Addr::new(169, 254, 0, 0));
        let wider = mask.min(0xffff_0000);
        if u32::from(ip) & wider == link & wider {
            return Err("link-local addresses (the cloud metadata endpoint) are never opened".into());
        }
        return Ok(());
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) if a.to_ipv4_mapped().is_some() => {
            Err(format!("an IPv4-mapped address; write the IPv4 address `{}`", a.to_ipv4_mapped().expect("mapped")))
        }
        Ok(ip) if link_local(ip) => Err("link-local addresses (the cloud metadata endpoint) are never opened".into()),
        _ => Ok(()),
    }
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

    #[test]
    fn address_entries_never_open_the_internet_or_the_metadata_endpoint() {
        for (entry, why) in [
            ("0.0.0.0/0:443", "at most a /8"),
            ("128.0.0.0/1:443", "at most a /8"),
            ("8.0.0.0/7:53", "at most a /8"),
            ("10.1.2.3/8:5432", "write `10.0.0.0/8`"),
            ("169.254.169.254:80", "link-local"),
            ("169.254.0.0/16:80", "link-local"),
            ("169.254.169.0/24:80", "link-local"),
            ("169.0.0.0/8:80", "link-local"),
            ("[fe80::1]:80", "link-local"),
            ("[::ffff:169.254.169.254]:80", "write the IPv4 address `169.254.169.254`"),
        ] {
            let e = parse_egress(entry).unwrap_err();
            assert!(e.contains(why), "{entry}: {e}");
        }
        for ok in ["10.0.0.0/8:5432", "10.20.0.0/16:5432", "192.168.1.10:6379", "[2001:db8::1]:443", "170.0.0.0/8:1"] {
            assert!(parse_egress(ok).is_ok(), "{ok}");
        }
    }
}
