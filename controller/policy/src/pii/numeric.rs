//! Pass 3: digits — classify each number-like token once and try the detectors that start there.

use super::card::card_at;
use super::classes::*;
use super::iban::iban_at;
use super::ip::{ipv4, ipv6};
use super::phone::{e164, nanp, nanp_paren};
use super::ssn::ssn;
use super::{Out, PiiType};

pub(super) fn numeric(b: &[u8], out: &mut Out) {
    let mut i = 0;
    let mut v6_seen = 0; // IPv6 spans examined so far end here
    while let Some(d) = find_digit(b, i) {
        // Plain loops: tokens are short, and per-byte loops beat eight-byte ones here (measured).
        let mut ts = d;
        while ts > i && has(b[ts - 1], WORD) {
            ts -= 1;
        }
        let mut de = d + 1;
        while de < b.len() && b[de].is_ascii_digit() {
            de += 1;
        }
        let mut te = de;
        while te < b.len() && has(b[te], WORD) {
            te += 1;
        }
        let mut next = te;
        // IPv6 before IPv4, so that `::ffff:192.0.2.1` is one address. A colon with hex or another colon beyond
        // it, not JSON's `"count":12`.
        let hexish = |c: u8| has(c, HEX) || c == b':';
        if out.wants(PiiType::IpAddress)
            && ts >= v6_seen
            && ((before(b, ts) == b':' && ts >= 2 && hexish(b[ts - 2])) || (at(b, te) == b':' && hexish(at(b, te + 1))))
            && b[ts..te].iter().all(|&c| has(c, HEX))
        {
            let (hit, span_end) = ipv6(b, ts, te);
            v6_seen = span_end;
            if let Some((s, e, personal)) = hit {
                if personal {
                    out.push(PiiType::IpAddress, "ipv6", s, e);
                }
                next = e.max(te);
            }
        }
        if next == te {
            if ts == d && te == de {
                if let Some(e) = numeric_token(b, ts, te, out) {
                    next = e;
                }
            } else if let Some(e) = lettered_token(b, ts, d, de, te, out) {
                next = e;
            }
        }
        if out.done() {
            return;
        }
        i = next;
    }
}

/// A run of `len` digits followed by `next` could start a card number: the first group or the whole of it.
#[inline(always)]
fn may_be_card(len: usize, next: u8) -> bool {
    ((4..=8).contains(&len) && is_group_sep(next)) || (13..=19).contains(&len)
}

/// A token that starts with letters, `b[ts..te]`, whose first digit is at `d` and first digit run ends at
/// `de`: an IBAN (`DE89…`, `gb82…`), or a card number glued to a short word (`cc4111111111111111`,
/// `card4111 1111 1111 1111`). Returns the end of what fired.
fn lettered_token(b: &[u8], ts: usize, d: usize, de: usize, te: usize, out: &mut Out) -> Option<usize> {
    let letters = b[ts..d].iter().all(u8::is_ascii_alphabetic);
    if letters
        && d == ts + 2
        && de >= d + 2
        && out.wants(PiiType::Iban)
        && let Some(e) = iban_at(b, ts, te)
    {
        out.push(PiiType::Iban, "iban", ts, e);
        return Some(e);
    }
    if letters
        && d - ts <= 8
        && de == te
        && may_be_card(de - d, at(b, de))
        && out.wants(PiiType::CreditCard)
        && let Some((e, brand)) = card_at(b, d, de)
    {
        out.push(PiiType::CreditCard, brand, d, e);
        return Some(e);
    }
    None
}

/// A token of digits only, `b[ts..te]`, not preceded by a word byte: try the detectors that start here.
/// Returns the end of what fired (or of an address that is consumed without being reported).
pub(super) fn numeric_token(b: &[u8], ts: usize, te: usize, out: &mut Out) -> Option<usize> {
    let len = te - ts;
    let prev = before(b, ts);
    let next = at(b, te);
    // `x-415…`, `v1.2…`, `id_123…`: the run continues something on its left.
    let joined = matches!(prev, b'-' | b'.' | b'_') && ts >= 2 && has(b[ts - 2], WORD);
    if prev == b'+'
        && out.wants(PiiType::Phone)
        && let Some(e) = e164(b, ts - 1)
    {
        out.push(PiiType::Phone, "e164", ts - 1, e);
        return Some(e);
    }
    if prev == b'('
        && len == 3
        && out.wants(PiiType::Phone)
        && let Some(e) = nanp_paren(b, ts - 1)
    {
        out.push(PiiType::Phone, "nanp", ts - 1, e);
        return Some(e);
    }
    // A dotted quad is consumed whatever the policy asks for, so that its digits are not read as anything else;
    // it is reported only if it could be a person's address.
    if next == b'.'
        && prev != b'.'
        && len <= 3
        && let Some(v4) = ipv4(b, ts)
    {
        if v4.personal {
            out.push(PiiType::IpAddress, "ipv4", ts, v4.end);
        }
        return Some(v4.end);
    }
    if len == 3
        && matches!(next, b'-' | b'.' | b' ' | b'\t')
        && !joined
        && out.wants(PiiType::Ssn)
        && let Some(e) = ssn(b, ts)
    {
        out.push(PiiType::Ssn, "ssn", ts, e);
        return Some(e);
    }
    if len == 3
        && matches!(next, b'-' | b'.')
        && out.wants(PiiType::Phone)
        && let Some((s, e)) = nanp(b, ts)
    {
        out.push(PiiType::Phone, "nanp", s, e);
        return Some(e);
    }
    if may_be_card(len, next)
        && !joined
        && out.wants(PiiType::CreditCard)
        && let Some((e, brand)) = card_at(b, ts, te)
    {
        out.push(PiiType::CreditCard, brand, ts, e);
        return Some(e);
    }
    None
}
