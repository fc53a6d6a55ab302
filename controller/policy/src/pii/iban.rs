//! IBANs: the registry's length per country and mod-97.

use super::classes::*;

/// IBAN length by country (SWIFT IBAN registry).
pub(super) fn iban_len(a: u8, b: u8) -> Option<usize> {
    Some(match &[a, b] {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"FK" | b"FO" | b"GL" | b"NL" | b"SD" => 18,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"MN" | b"XK" => 20,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"AE" | b"GI" | b"IL" | b"IQ" | b"OM" | b"SO" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"LY" | b"PT" | b"ST" => 25,
        b"IS" | b"TR" => 26,
        b"BI" | b"DJ" | b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HU" | b"LB" | b"NI" | b"PL" | b"SV" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" | b"YE" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        b"RU" => 33,
        _ => return None,
    })
}

/// Check digits are digits and mod-97 of the rearranged number (BBAN, country, check digits; letters as
/// 10..=35) is 1. `s` is uppercase alphanumeric, at least 5 long.
pub(super) fn iban_checksum_ok(s: &[u8]) -> bool {
    if !s[2].is_ascii_digit() || !s[3].is_ascii_digit() || !s[..2].iter().all(u8::is_ascii_uppercase) {
        return false;
    }
    let mut r = 0u32;
    for &c in s[4..].iter().chain(&s[..4]) {
        r = match c {
            b'0'..=b'9' => (r * 10 + (c - b'0') as u32) % 97,
            b'A'..=b'Z' => (r * 100 + (c - b'A' + 10) as u32) % 97,
            _ => return false,
        };
    }
    r == 1
}

/// Separators between an IBAN's groups: blank, dash, dot, slash.
fn iban_sep(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'-' | b'.' | b'/')
}

/// An IBAN starting at the token `b[ts..te]` (two letters, then at least two digits), in either case: compact
/// (`DE89370400440532013000`, `gb82west12345698765432`) or in groups of any size after one or two separators
/// (`DE89 3704 0044 0532 0130 00`, `GB82-WEST-1234-5698-7654-32`). It ends where the country's length is
/// reached; the checksum decides.
pub(super) fn iban_at(b: &[u8], ts: usize, te: usize) -> Option<usize> {
    let want = iban_len(b[ts].to_ascii_uppercase(), b[ts + 1].to_ascii_uppercase())?;
    if chained(before(b, ts)) && ts >= 2 && has(b[ts - 2], ALNUM) {
        return None; // the middle of a longer dashed or dotted name
    }
    let first = &b[ts..te];
    if first.len() > want || !first.iter().all(|&c| has(c, ALNUM)) {
        return None;
    }
    let mut buf = [0u8; 34];
    for (k, &c) in first.iter().enumerate() {
        buf[k] = c.to_ascii_uppercase();
    }
    let (mut got, mut j) = (first.len(), te);
    while got < want {
        let mut k = j;
        while k < b.len() && k - j < 2 && iban_sep(b[k]) {
            k += 1;
        }
        let gs = k;
        let gl = run_len(b, gs, ALNUM, 35);
        if k == j || gl == 0 || got + gl > want || has(at(b, gs + gl), WORD) {
            return None;
        }
        for (d, &c) in buf[got..got + gl].iter_mut().zip(&b[gs..gs + gl]) {
            *d = c.to_ascii_uppercase();
        }
        got += gl;
        j = gs + gl;
    }
    // A UUID (`ba9273f4-96b0-48ae-a68e-…`) or a dotted name goes on after the country's length: not an IBAN.
    if chained(at(b, j)) && has(at(b, j + 1), ALNUM) {
        return None;
    }
    iban_checksum_ok(&buf[..want]).then_some(j)
}

/// Joins the parts of one name (`a-b`, `a.b`, `a/b`, `a:b`), unlike a blank.
fn chained(c: u8) -> bool {
    matches!(c, b'-' | b'.' | b'/' | b':' | b'_')
}
