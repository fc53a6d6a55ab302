//! IPv4 and IPv6 addresses, and which of them are personal data.
//!
//! An address is reported only if it could point at a person: loopback, private (RFC 1918, IPv6 unique local),
//! link-local, documentation, unspecified, multicast, reserved (`240.0.0.0/4`, so netmasks such as
//! `255.255.255.0`) and shared (CGNAT) addresses are not, nor are the well-known public DNS resolvers (Google,
//! Cloudflare, Quad9, OpenDNS: `8.8.8.8` is a service every developer types, not someone's machine), nor a
//! network written in CIDR (`52.0.0.0/8`), nor a number after a version word (`version 1.0.0.12`), nor four
//! single digits (`2.0.0.1`, read as a version). All of these are still consumed as a whole, so no other
//! detector reads their digits.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::classes::*;

/// Public DNS resolvers, IPv4.
const RESOLVERS_V4: &[[u8; 4]] = &[
    [8, 8, 8, 8],
    [8, 8, 4, 4],
    [1, 1, 1, 1],
    [1, 0, 0, 1],
    [9, 9, 9, 9],
    [149, 112, 112, 112],
    [208, 67, 222, 222],
    [208, 67, 220, 220],
];

/// Public DNS resolvers, IPv6.
const RESOLVERS_V6: &[Ipv6Addr] = &[
    Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888),
    Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8844),
    Ipv6Addr::new(0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1111),
    Ipv6Addr::new(0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1001),
    Ipv6Addr::new(0x2620, 0xfe, 0, 0, 0, 0, 0, 0xfe),
    Ipv6Addr::new(0x2620, 0xfe, 0, 0, 0, 0, 0, 0x9),
    Ipv6Addr::new(0x2620, 0x119, 0x35, 0, 0, 0, 0, 0x35),
    Ipv6Addr::new(0x2620, 0x119, 0x53, 0, 0, 0, 0, 0x53),
];

/// Whether an IPv4 address could be a person's: see the module docs for what is not.
pub(super) fn personal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let not = a == 0 // unspecified, "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_documentation()
        || a >= 224 // multicast, reserved, broadcast (and netmasks)
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || RESOLVERS_V4.contains(&ip.octets());
    !not
}

/// Whether an IPv6 address could be a person's.
pub(super) fn personal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return personal_v4(v4);
    }
    let s = ip.segments();
    let not = ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x3fff && s[1] < 0x1000) // documentation (RFC 9637)
        || RESOLVERS_V6.contains(&ip);
    !not
}

/// Words after which a dotted number is a version, not an address (`version 2.0.0.1`, `"version": "1.2.3.4"`,
/// `__version__ = '…'`, `Release: …`).
const VERSION_WORDS: &[&[u8]] = &[b"version", b"ver", b"release", b"rev", b"revision", b"build", b"tag", b"firmware"];

/// Whether the number at `s` follows a version word, with at most a few quotes, colons, `=` or blanks between.
pub(super) fn after_version_word(b: &[u8], s: usize) -> bool {
    let mut j = s;
    while j > 0 && s - j < 6 && matches!(b[j - 1], b' ' | b'\t' | b':' | b'=' | b'"' | b'\'' | b'`') {
        j -= 1;
    }
    while j > 0 && b[j - 1] == b'_' {
        j -= 1; // `__version__`
    }
    let end = j;
    while j > 0 && end - j < 16 && b[j - 1].is_ascii_alphabetic() {
        j -= 1;
    }
    let word = &b[j..end];
    !word.is_empty()
        && VERSION_WORDS.iter().any(|v| word.len() >= v.len() && word[word.len() - v.len()..].eq_ignore_ascii_case(v))
}

/// A CIDR suffix shorter than a host's (`/0`–`/31` for IPv4, below `/128` for IPv6) at `j`: its end, so that
/// a network is consumed as one token.
fn network_end(b: &[u8], j: usize, host_bits: u32) -> Option<usize> {
    if at(b, j) != b'/' {
        return None;
    }
    let len = run_len(b, j + 1, DIGIT, 4);
    ((1..=3).contains(&len) && number(&b[j + 1..j + 1 + len]) < host_bits && !has(at(b, j + 1 + len), WORD))
        .then_some(j + 1 + len)
}

/// An IPv4 candidate: where it ends, and whether it is personal data (see the module docs).
pub(super) struct V4 {
    pub(super) end: usize,
    pub(super) personal: bool,
}

/// A dotted quad at `s`: octets 0–255 without leading zeros, not followed by a word byte or more dotted digits.
pub(super) fn ipv4(b: &[u8], s: usize) -> Option<V4> {
    let mut j = s;
    let mut octets = [0u8; 4];
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if at(b, j) != b'.' {
                return None;
            }
            j += 1;
        }
        let len = run_len(b, j, DIGIT, 4);
        if len == 0 || len > 3 || (len > 1 && b[j] == b'0') || number(&b[j..j + len]) > 255 {
            return None;
        }
        *octet = number(&b[j..j + len]) as u8;
        j += len;
    }
    if !right_ok(b, j) {
        return None;
    }
    if let Some(e) = network_end(b, j, 32) {
        return Some(V4 { end: e, personal: false });
    }
    // Four single digits (`2.0.0.1`, `1.2.3.4`) read as a version wherever they stand: 10,000 addresses of
    // four billion, and the versions that look like addresses are mostly these.
    let version_like = j - s == 7 || after_version_word(b, s);
    let personal = personal_v4(Ipv4Addr::from(octets)) && !version_like;
    Some(V4 { end: j, personal })
}

/// The IPv6 candidate around the hex token `b[ts..te]`: returns the address if valid (start, end, personal),
/// and the end of the span examined (so that its other tokens are not tried again).
pub(super) fn ipv6(b: &[u8], ts: usize, te: usize) -> (Option<(usize, usize, bool)>, usize) {
    let mut s = ts;
    while s > 0 && ts - s < 40 && (has(b[s - 1], HEX) || b[s - 1] == b':') {
        s -= 1;
    }
    let mut e = te;
    while e < b.len() && e - s < 46 && (has(b[e], HEX) || matches!(b[e], b':' | b'.')) {
        e += 1;
    }
    let span_end = e;
    while e > te && b[e - 1] == b'.' {
        e -= 1; // `… at fe80::1.`
    }
    if e >= s + 2 && b[e - 1] == b':' && b[e - 2] != b':' {
        e -= 1; // `fe80::1: …`
    }
    let (l, r) = (before(b, s), at(b, e));
    if has(l, WORD) || matches!(l, b':' | b'.') || has(r, WORD) || r == b':' || e - s > 45 {
        return (None, span_end);
    }
    let cand = &b[s..e];
    let colons = cand.iter().filter(|&&c| c == b':').count();
    // A group of 3+ hex digits: skips `::`, `::1`, `a::b` (Rust paths) and `[1::2]` (Python slices).
    let long_group = cand.split(|&c| c == b':').any(|g| g.len() >= 3);
    let parsed = (colons >= 2 && long_group && cand.iter().any(u8::is_ascii_digit))
        .then(|| std::str::from_utf8(cand).ok()?.parse::<Ipv6Addr>().ok())
        .flatten();
    let Some(ip) = parsed else { return (None, span_end) };
    match network_end(b, e, 128) {
        Some(ne) => (Some((s, ne, false)), span_end.max(ne)),
        None => (Some((s, e, personal_v6(ip))), span_end),
    }
}
