//! Payment card numbers: IIN ranges, lengths and Luhn.

use super::classes::*;

/// The card brand for these digit values if the IIN and length fit and Luhn passes.
pub(super) fn card_brand(d: &[u8]) -> Option<&'static str> {
    let len = d.len();
    let p = |k: usize| d[..k].iter().fold(0u32, |a, &x| a * 10 + x as u32);
    let brand = match (p(1), p(2), p(3), p(4)) {
        (4, ..) if matches!(len, 13 | 16 | 19) => "visa",
        (_, 51..=55, ..) | (.., 2221..=2720) if len == 16 => "mastercard",
        (_, 34 | 37, ..) if len == 15 => "amex",
        (_, 65, ..) | (_, _, 644..=649, _) | (.., 6011) if (16..=19).contains(&len) => "discover",
        (.., 3528..=3589) if (16..=19).contains(&len) => "jcb",
        (_, _, 300..=305, _) | (_, 36 | 38, ..) if (14..=19).contains(&len) => "diners",
        (_, 62, ..) if (16..=19).contains(&len) => "unionpay",
        _ => return None,
    };
    luhn(d.iter().copied()).then_some(brand)
}

/// A grouped card number at `ts` whose first group has `first` (4–8) digits: more groups of 3–8 digits, each
/// after one to three separators of any kind, mixed (`4111 1111-1111.1111`, `4111\t1111\n…`, 4-4-8, 8-8,
/// 4-6-5). The longest prefix of groups that is a valid card wins.
pub(super) fn card_grouped(b: &[u8], ts: usize, first: usize) -> Option<(usize, &'static str)> {
    let mut buf = [0u8; 19];
    for k in 0..first {
        buf[k] = b[ts + k] - b'0';
    }
    let mut ends = [(0usize, 0usize); 8]; // (end offset, digits so far) after each group
    ends[0] = (ts + first, first);
    let (mut groups, mut nd, mut j) = (1, first, ts + first);
    while groups < ends.len() {
        let k = sep_run(b, j, 3);
        if k == 0 || !has(at(b, j + k), DIGIT) {
            break;
        }
        let gs = j + k;
        let gl = run_len(b, gs, DIGIT, 9);
        if !(3..=8).contains(&gl) || nd + gl > 19 || has(at(b, gs + gl), WORD) {
            break;
        }
        for k in 0..gl {
            buf[nd + k] = b[gs + k] - b'0';
        }
        nd += gl;
        j = gs + gl;
        ends[groups] = (j, nd);
        groups += 1;
    }
    (2..=groups).rev().find_map(|g| {
        let (e, cnt) = ends[g - 1];
        if !(13..=19).contains(&cnt) {
            return None;
        }
        card_brand(&buf[..cnt]).map(|brand| (e, brand))
    })
}

/// A card number whose digits start at `s` and run to `de`: grouped, or 13–19 digits in one run.
pub(super) fn card_at(b: &[u8], s: usize, de: usize) -> Option<(usize, &'static str)> {
    let len = de - s;
    if (4..=8).contains(&len)
        && is_group_sep(at(b, de))
        && let Some(hit) = card_grouped(b, s, len)
    {
        return Some(hit);
    }
    if (13..=19).contains(&len) && right_ok(b, de) {
        let mut buf = [0u8; 19];
        for (k, &c) in b[s..de].iter().enumerate() {
            buf[k] = c - b'0';
        }
        return card_brand(&buf[..len]).map(|brand| (de, brand));
    }
    None
}
