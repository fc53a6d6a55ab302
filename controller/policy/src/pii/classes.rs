//! Byte classes and small helpers shared by the detectors: one table lookup per test, SWAR digit search.

// Byte classes, one table lookup per test.
pub(super) const WORD: u16 = 1 << 0; // [A-Za-z0-9_]
pub(super) const DIGIT: u16 = 1 << 1; // [0-9]
pub(super) const HEX: u16 = 1 << 2; // [0-9A-Fa-f]
pub(super) const UPPER: u16 = 1 << 3; // [A-Z]
pub(super) const ALNUM: u16 = 1 << 4; // [A-Za-z0-9]
pub(super) const B64URL: u16 = 1 << 5; // [A-Za-z0-9_-]
pub(super) const B64STD: u16 = 1 << 6; // [A-Za-z0-9+/=]
pub(super) const LOCAL: u16 = 1 << 7; // e-mail local part: [A-Za-z0-9._%+-]
pub(super) const DOMAIN: u16 = 1 << 8; // [A-Za-z0-9.-]
pub(super) const IDENT: u16 = 1 << 9; // a key name around a key word: [A-Za-z0-9_.-]
pub(super) const BARE: u16 = 1 << 10; // an unquoted value: ASCII graphic but quotes, brackets of all kinds, `,;&<>\`
pub(super) const USERINFO: u16 = 1 << 11; // URL userinfo (RFC 3986) less `@`

pub(super) static CLASS: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let alnum = c.is_ascii_alphanumeric();
        let mut v = 0;
        if alnum || c == b'_' {
            v |= WORD | IDENT;
        }
        if c.is_ascii_digit() {
            v |= DIGIT;
        }
        if c.is_ascii_hexdigit() {
            v |= HEX;
        }
        if c.is_ascii_uppercase() {
            v |= UPPER;
        }
        if alnum {
            v |= ALNUM | B64STD | LOCAL | DOMAIN | USERINFO;
        }
        if c == b'_' || c == b'-' {
            v |= B64URL;
        }
        if alnum {
            v |= B64URL;
        }
        if matches!(c, b'+' | b'/' | b'=') {
            v |= B64STD;
        }
        if matches!(c, b'.' | b'_' | b'%' | b'+' | b'-') {
            v |= LOCAL;
        }
        if matches!(c, b'.' | b'-') {
            v |= DOMAIN | IDENT;
        }
        if c.is_ascii_graphic()
            && !matches!(c, b'"' | b'\'' | b'`' | b',' | b';' | b'&' | b'(' | b')' | b'[' | b']')
            && !matches!(c, b'{' | b'}' | b'<' | b'>' | b'\\')
        {
            v |= BARE;
        }
        if matches!(c, b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',')
            || matches!(c, b';' | b'=' | b':' | b'%')
        {
            v |= USERINFO;
        }
        t[i] = v;
        i += 1;
    }
    t
};

#[inline(always)]
pub(super) fn has(c: u8, class: u16) -> bool {
    CLASS[c as usize] & class != 0
}

/// `b[i]`, or 0 (no class) past the end.
#[inline(always)]
pub(super) fn at(b: &[u8], i: usize) -> u8 {
    if i < b.len() { b[i] } else { 0 }
}

/// The byte before `i`, or 0 at the start.
#[inline(always)]
pub(super) fn before(b: &[u8], i: usize) -> u8 {
    if i > 0 && i <= b.len() { b[i - 1] } else { 0 }
}

/// Length of the run of `class` bytes at `from`, stopping at `max`.
#[inline]
pub(super) fn run_len(b: &[u8], from: usize, class: u16, max: usize) -> usize {
    let mut j = from;
    while j < b.len() && j - from < max && has(b[j], class) {
        j += 1;
    }
    j - from
}

/// `b[s..s + k]` is all digits.
#[inline]
pub(super) fn digits(b: &[u8], s: usize, k: usize) -> bool {
    s + k <= b.len() && b[s..s + k].iter().all(u8::is_ascii_digit)
}

pub(super) fn number(d: &[u8]) -> u32 {
    d.iter().fold(0, |a, &c| a * 10 + (c - b'0') as u32)
}

pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub(super) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// The non-ASCII character that starts at `i` (on a char boundary of valid UTF-8), if it is a letter or digit:
/// its length in bytes.
pub(super) fn alnum_char_at(b: &[u8], i: usize) -> Option<usize> {
    let lead = *b.get(i)?;
    let len = match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => return None,
    };
    let c = std::str::from_utf8(b.get(i..i + len)?).ok()?.chars().next()?;
    c.is_alphanumeric().then_some(len)
}

/// The non-ASCII character that ends at `i`, if it is a letter or digit: its length in bytes.
pub(super) fn alnum_char_before(b: &[u8], i: usize) -> Option<usize> {
    let mut s = i;
    while s > 0 && i - s < 4 && (0x80..0xC0).contains(&b[s - 1]) {
        s -= 1;
    }
    if s == 0 || s == i || i - s >= 4 {
        return None;
    }
    s -= 1; // the lead byte
    alnum_char_at(b, s).filter(|&len| s + len == i)
}

/// Bytes that may separate the digit groups of a card number: blanks, line breaks, dashes, dots and slashes
/// (normalisation has already turned every Unicode space and dash into ` ` and `-`).
#[inline]
pub(super) fn is_group_sep(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'-' | b'.' | b'/')
}

/// Length of the run of group separators at `j`, at most `max`.
#[inline]
pub(super) fn sep_run(b: &[u8], j: usize, max: usize) -> usize {
    let mut k = j;
    while k < b.len() && k - j < max && is_group_sep(b[k]) {
        k += 1;
    }
    k - j
}

/// Nothing glues the match ending at `e` to more of the same (`…0100-2`, `…0100.5`, `…0100abc`).
#[inline]
pub(super) fn right_ok(b: &[u8], e: usize) -> bool {
    let c = at(b, e);
    let glued = has(c, WORD) || (matches!(c, b'-' | b'.') && has(at(b, e + 1), DIGIT));
    !glued
}

// SWAR ("SIMD within a register"): classify eight bytes at once, without branching per byte. In each helper
// the result has the high bit of a byte set iff that byte is in the class.
pub(super) const LO: u64 = 0x0101_0101_0101_0101;
pub(super) const HI: u64 = 0x8080_8080_8080_8080;

#[inline(always)]
pub(super) fn load8(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// Bytes of `x7` (high bits clear) within `lo..=hi` (both < 0x80). Neither subtraction can borrow across bytes.
#[inline(always)]
pub(super) fn in_range(x7: u64, lo: u8, hi: u8) -> u64 {
    ((x7 | HI) - LO * lo as u64) & ((HI + LO * hi as u64) - x7) & HI
}

#[inline(always)]
pub(super) fn digit_mask(w: u64) -> u64 {
    in_range(w & !HI, b'0', b'9') & !w
}

/// Position of the next ASCII digit at or after `i`.
#[inline]
pub(super) fn find_digit(b: &[u8], mut i: usize) -> Option<usize> {
    while i + 8 <= b.len() {
        let m = digit_mask(load8(b, i));
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    (i..b.len()).find(|&j| b[j].is_ascii_digit())
}

pub(super) fn luhn(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.rev().enumerate() {
        let mut v = d as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum = (sum + v) % 10; // no overflow, however long the input
    }
    sum == 0
}

pub(super) fn entropy(v: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &c in v {
        counts[c as usize] += 1;
    }
    let n = v.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n).map(|p| -p * p.log2()).sum()
}
