//! Phone numbers: E.164 and NANP.

use super::classes::*;

/// `+` at `p`, then 8–15 digits with at most two separators (` -.()`) between digits.
pub(super) fn e164(b: &[u8], p: usize) -> Option<usize> {
    let l = before(b, p);
    if has(l, WORD) || l == b'+' || !matches!(at(b, p + 1), b'1'..=b'9') {
        return None;
    }
    let n = b.len();
    let (mut j, mut nd, mut end) = (p + 1, 0, p + 1);
    loop {
        if j < n && b[j].is_ascii_digit() {
            nd += 1;
            j += 1;
            end = j;
            if nd > 15 {
                return None; // a longer digit run
            }
            continue;
        }
        let mut k = j;
        while k < n && k - j < 2 && matches!(b[k], b' ' | b'-' | b'.' | b'(' | b')') {
            k += 1;
        }
        if k > j && k < n && b[k].is_ascii_digit() {
            j = k;
            continue;
        }
        break;
    }
    (nd >= 8 && !has(at(b, end), WORD)).then_some(end)
}

/// NANP area and exchange codes start with 2–9.
pub(super) fn nanp_ok(area: u8, exchange: u8) -> bool {
    matches!(area, b'2'..=b'9') && matches!(exchange, b'2'..=b'9')
}

/// `415-555-0100` or `415.555.0100` at `s`, optionally after a `1-`/`1.` trunk prefix.
pub(super) fn nanp(b: &[u8], s: usize) -> Option<(usize, usize)> {
    let sep = at(b, s + 3);
    if !matches!(sep, b'-' | b'.')
        || !digits(b, s, 3)
        || !digits(b, s + 4, 3)
        || at(b, s + 7) != sep
        || !digits(b, s + 8, 4)
        || !nanp_ok(b[s], b[s + 4])
        || !right_ok(b, s + 12)
    {
        return None;
    }
    let prev = before(b, s);
    let start = if matches!(prev, b'-' | b'.') && s >= 2 && has(b[s - 2], WORD) {
        // Glued to something on the left (`ORD-415-555-0100`): only a `1` trunk prefix is a phone number.
        let l = before(b, s - 2);
        if prev == sep && b[s - 2] == b'1' && !has(l, WORD) && l != b'.' && l != b'-' {
            s - 2
        } else {
            return None;
        }
    } else if prev == b'.' {
        return None;
    } else {
        s
    };
    Some((start, s + 12))
}

/// `(415) 555-0100`, `(415)555.0100` with `(` at `p`.
pub(super) fn nanp_paren(b: &[u8], p: usize) -> Option<usize> {
    if has(before(b, p), WORD) || !digits(b, p + 1, 3) || at(b, p + 4) != b')' {
        return None;
    }
    let mut j = p + 5;
    if at(b, j) == b' ' {
        j += 1;
    }
    let ok = digits(b, j, 3)
        && matches!(at(b, j + 3), b'-' | b'.')
        && digits(b, j + 4, 4)
        && nanp_ok(b[p + 1], b[j])
        && right_ok(b, j + 8);
    ok.then_some(j + 8)
}
