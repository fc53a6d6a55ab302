//! US social security numbers.

use super::classes::*;

/// Separators between an SSN's groups: dash, dot, blank (Unicode dashes and spaces are normalised to these).
fn ssn_sep(c: u8) -> bool {
    matches!(c, b'-' | b'.' | b' ' | b'\t')
}

/// `ddd-dd-dddd` at `s` (one of the separators above, the same twice) with SSA validity rules. Not an SSN: one glued to
/// more of a word or number on the right (`123-45-6789-abc`, `123-45-6789.5`), one inside a longer
/// blank-separated number, one after a version word (`version 123.45.6789`).
pub(super) fn ssn(b: &[u8], s: usize) -> Option<usize> {
    let (s1, s2) = (at(b, s + 3), at(b, s + 6));
    // One separator throughout: `802.11-2016` (an IEEE standard) mixes them, a written SSN does not.
    if !ssn_sep(s1) || s2 != s1 || !digits(b, s, 3) || !digits(b, s + 4, 2) || !digits(b, s + 7, 4) {
        return None;
    }
    let e = s + 11;
    let r = at(b, e);
    if has(r, WORD) || (matches!(r, b'-' | b'.' | b'_' | b'/' | b':') && has(at(b, e + 1), WORD)) {
        return None;
    }
    let blank = |c: u8| matches!(c, b' ' | b'\t');
    if (blank(s1) || blank(s2))
        && ((blank(r) && has(at(b, e + 1), DIGIT)) || (blank(before(b, s)) && s >= 2 && has(b[s - 2], DIGIT)))
    {
        return None; // part of a longer blank-separated number
    }
    if super::ip::after_version_word(b, s) {
        return None;
    }
    let (area, group, serial) = (number(&b[s..s + 3]), number(&b[s + 4..s + 6]), number(&b[s + 7..e]));
    (area != 0 && area != 666 && area < 900 && group != 0 && serial != 0).then_some(e)
}
