//! Pass 1: at each `@`, an e-mail address or the password of a URL's userinfo.

use super::classes::*;
use super::{Out, PiiType};

pub(super) fn at_signs(b: &[u8], out: &mut Out) {
    let mut from = 0;
    for a in memchr::memchr_iter(b'@', b) {
        if a < from {
            continue;
        }
        // A URL's userinfo is never an e-mail; its password is a secret.
        if let Some(pw) = url_userinfo(b, a) {
            if let Some((s, e)) = pw {
                out.push(PiiType::Secret, "url_password", s, e);
            }
        } else if out.wants(PiiType::Email)
            && let Some((s, e)) = email(b, a)
        {
            out.push(PiiType::Email, "email", s, e);
            from = e;
        }
        if out.done() {
            return;
        }
    }
}

/// `scheme://user[:password]@host`: `None` if the `@` at `a` is not in a URL's userinfo, else the password's
/// span if there is a real one.
pub(super) fn url_userinfo(b: &[u8], a: usize) -> Option<Option<(usize, usize)>> {
    let mut u = a;
    while u > 0 && a - u < 256 && has(b[u - 1], USERINFO) {
        u -= 1;
    }
    if u < 4 || &b[u - 3..u] != b"://" || !has(b[u - 4], ALNUM) || !has(at(b, a + 1), DOMAIN) {
        return None;
    }
    let info = &b[u..a];
    let Some(c) = memchr::memchr(b':', info) else { return Some(None) };
    let pw = &info[c + 1..];
    let placeholder = pw.is_empty()
        || matches!(pw[0], b'$' | b'<' | b'%')
        || pw.iter().all(|&c| matches!(c, b'*' | b'x' | b'X' | b'.'));
    Some((!placeholder).then_some((u + c + 1, a)))
}

/// Bytes scanned each side of the `@`: 64 characters of local part, 253 of domain, in up to 4 bytes each.
const MAX_LOCAL: usize = 64 * 4;
const MAX_DOMAIN: usize = 253 * 4;

pub(super) const IMAGE_EXTS: &[&[u8]] = &[b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"avif", b"ico", b"bmp"];

/// An address around the `@` at `a`. Local part and domain may hold Unicode letters and digits (RFC 6531
/// addresses, IDN domains such as `bücher.de` or `пример.рф`); normalisation has already folded full-width
/// and look-alike characters.
pub(super) fn email(b: &[u8], a: usize) -> Option<(usize, usize)> {
    let n = b.len();
    let mut s = a;
    loop {
        if s == 0 || a - s >= MAX_LOCAL {
            break;
        }
        if has(b[s - 1], LOCAL) {
            s -= 1;
        } else if let Some(k) = alnum_char_before(b, s) {
            s -= k;
        } else {
            break;
        }
    }
    if has(before(b, s), LOCAL) || alnum_char_before(b, s).is_some() || before(b, s) == b'/' {
        return None; // longer than the limit, or URL-ish (`//git@host`)
    }
    while s < a && b[s] == b'.' {
        s += 1;
    }
    let local = &b[s..a];
    if local.is_empty() || local[local.len() - 1] == b'.' || contains(local, b"..") {
        return None;
    }
    let mut e = a + 1;
    while e < n && e - a <= MAX_DOMAIN {
        if has(b[e], DOMAIN) {
            e += 1;
        } else if let Some(k) = alnum_char_at(b, e) {
            e += k;
        } else {
            break;
        }
    }
    while e > a + 1 && matches!(b[e - 1], b'.' | b'-') {
        e -= 1; // `mail alice@example.com.`
    }
    let next = at(b, e);
    if has(next, WORD) || next == b'@' {
        return None;
    }
    let mut labels = 0;
    let mut tld: &[u8] = &[];
    for label in b[a + 1..e].split(|&c| c == b'.') {
        if label.is_empty() || label.len() > 63 || label[0] == b'-' || label[label.len() - 1] == b'-' {
            return None;
        }
        labels += 1;
        tld = label;
    }
    // An ASCII TLD is letters only; an IDN one is Unicode letters (`рф`) or punycode (`xn--p1ai`).
    let tld_ok = tld.iter().all(u8::is_ascii_alphabetic) || !tld.is_ascii() || tld.starts_with(b"xn--");
    if labels < 2 || tld.len() < 2 || !tld_ok {
        return None;
    }
    // `git@github.com:owner/repo` is an SSH remote, not someone's address.
    if local == b"git" && next == b':' {
        return None;
    }
    if IMAGE_EXTS.iter().any(|x| tld.eq_ignore_ascii_case(x)) {
        return None; // `icon@2x.png`
    }
    Some((s, e))
}
