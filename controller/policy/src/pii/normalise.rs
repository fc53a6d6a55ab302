//! Normalisation before the scan: what a reader (or a model) sees as `alice@example.com` is scanned as that,
//! however it is spelled.
//!
//! One round, over the text:
//!
//! - `%XX` (runs that decode to UTF-8), HTML character references (`&#64;`, `&#x40;`, `&commat;`, …) and
//!   escapes (`\u0040`, `\u{40}`, `\x40`, JSON surrogate pairs) are decoded;
//! - format characters (zero-width space and joiners, soft hyphen, bidi controls, word joiner, BOM, variation
//!   selectors, tags) and combining marks are removed;
//! - other characters go through Unicode NFKC (full-width `＠` → `@`, `４` → `4`, mathematical letters →
//!   letters), then a small fold: every Unicode space → ` `, every dash and minus → `-`, every decimal digit
//!   (Arabic-Indic, Devanagari, …) → its ASCII digit, Cyrillic and Greek letters that look Latin → that Latin
//!   letter (after Unicode's confusables).
//!
//! Rounds repeat while the output still holds something to decode, at most [`MAX_ROUNDS`] times, so that
//! `%2540` → `%40` → `@` (double encoding) is seen; each decoded byte is shorter than its escape, so the text
//! cannot grow without bound (NFKC's largest expansion is one character into 18).
//!
//! Every change is recorded as an [`Edit`], so a finding in the normalised text maps back to the original
//! bytes: a match that ran through a removed zero-width space covers it, and a character decoded from `%40`
//! maps to all three bytes of its escape. Text that is ASCII and holds no escape is not copied at all: the
//! fast path costs one pass of `is_ascii` and a `memchr3` for `%`, `&` and `\`.

use std::collections::HashMap;
use std::sync::LazyLock;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// Decoding rounds: enough for double (and triple) encoding.
pub(super) const MAX_ROUNDS: usize = 3;

/// `orig[orig..orig + orig_len]` became `out[out..out + out_len]` (possibly empty: a removed character).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Edit {
    out: usize,
    out_len: usize,
    orig: usize,
    orig_len: usize,
}

/// The normalised text, and how to map its offsets back to the original.
#[derive(Debug)]
pub(super) struct Normalised {
    pub(super) text: String,
    /// One list of edits per round, in order; each maps the round's output to its input.
    rounds: Vec<Vec<Edit>>,
}

impl Normalised {
    /// `text[s..e]` of the normalised text as a range of the original: every original byte that contributed.
    pub(super) fn to_original(&self, mut s: usize, mut e: usize) -> (usize, usize) {
        for edits in self.rounds.iter().rev() {
            (s, e) = (map_start(edits, s), map_end(edits, e));
        }
        (s, e)
    }
}

/// The original offset of the unit that produced output byte `p`.
fn map_start(edits: &[Edit], p: usize) -> usize {
    // The first edit that ends after `p`; removals at `p` end at `p` and so count as before it.
    let i = edits.partition_point(|x| x.out + x.out_len <= p);
    if let Some(x) = edits.get(i)
        && x.out <= p
    {
        return x.orig;
    }
    match i.checked_sub(1).map(|k| edits[k]) {
        Some(x) => x.orig + x.orig_len + (p - x.out - x.out_len),
        None => p,
    }
}

/// The original end of the unit that produced output byte `e - 1` (`e` is an exclusive end, ≥ 1).
fn map_end(edits: &[Edit], e: usize) -> usize {
    let p = e.saturating_sub(1);
    let i = edits.partition_point(|x| x.out + x.out_len <= p);
    if let Some(x) = edits.get(i)
        && x.out <= p
    {
        return x.orig + x.orig_len;
    }
    map_start(edits, p) + 1
}

/// The text, normalised; `None` if it is already normal (the fast path: scan it as it is).
pub(super) fn normalise(text: &str) -> Option<Normalised> {
    if text.is_ascii() && !has_escape(text.as_bytes()) {
        return None;
    }
    let mut rounds = Vec::new();
    let mut cur: Option<String> = None;
    for _ in 0..MAX_ROUNDS {
        let input = cur.as_deref().unwrap_or(text);
        let Some(r) = round(input) else { break };
        rounds.push(r.edits);
        // What a round wrote is normal (decoded characters are normalised on the spot), unless a decoded
        // character starts another escape (`%2540` → `%40`) or a removed one stood between the parts of one
        // (`%4<ZWSP>0`): only then can another round change anything.
        let again = r.maybe_escape && has_escape(r.text.as_bytes());
        cur = Some(r.text);
        if !again {
            break;
        }
    }
    Some(Normalised { text: cur?, rounds })
}

/// Whether `b` holds an escape that decodes.
fn has_escape(b: &[u8]) -> bool {
    let mut scratch = String::new();
    memchr::memchr3_iter(b'%', b'&', b'\\', b).any(|i| escape_at(b, i, &mut scratch).is_some())
}

/// The position of the first byte at or after `i` that is not ASCII, or `b.len()`.
fn next_non_ascii(b: &[u8], mut i: usize) -> usize {
    while i + 8 <= b.len() {
        let w = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let high = w & 0x8080_8080_8080_8080;
        if high != 0 {
            return i + (high.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    (i..b.len()).find(|&j| b[j] >= 0x80).unwrap_or(b.len())
}

/// The output of one round.
struct Round {
    text: String,
    edits: Vec<Edit>,
    /// A decoded `%`, `&` or `\` or a removed character may have made a new escape.
    maybe_escape: bool,
}

/// One round over `s`, or `None` if nothing changed. Runs of plain ASCII are skipped eight bytes at a time
/// (and `memchr` finds the next `%`, `&`, `\`) and copied only once something before them has changed.
fn round(s: &str) -> Option<Round> {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut edits: Vec<Edit> = Vec::new();
    let mut maybe_escape = false;
    let mut decoded = String::new();
    let mut copied = 0; // `s[copied..i]` is unchanged and not yet copied to `out`
    let mut repl = String::new();
    let find_esc = |i: usize| memchr::memchr3(b'%', b'&', b'\\', &b[i..]).map_or(b.len(), |k| i + k);
    // The next non-ASCII byte and the next `%`, `&` or `\` at or after `i`.
    let (mut hi, mut esc) = (next_non_ascii(b, 0), find_esc(0));
    let mut i = 0;
    loop {
        if hi < i {
            hi = next_non_ascii(b, i);
        }
        if esc < i {
            esc = find_esc(i);
        }
        i = hi.min(esc);
        if i >= b.len() {
            break;
        }
        repl.clear();
        let (len, changed) = if b[i] < 0x80 {
            decoded.clear();
            match escape_at(b, i, &mut decoded) {
                Some(len) => {
                    for ch in decoded.chars() {
                        let before = repl.len();
                        if ch.is_ascii() || !normalise_char(ch, &mut repl) {
                            repl.push(ch);
                        }
                        // A new `%`, `&`, `\`, or a character gone from between the parts of an escape.
                        maybe_escape |= matches!(ch, '%' | '&' | '\\') || repl.len() == before;
                    }
                    (len, true)
                }
                None => (1, false),
            }
        } else {
            let ch = s[i..].chars().next().expect("on a char boundary");
            let changed = normalise_char(ch, &mut repl);
            maybe_escape |= changed && repl.is_empty();
            (ch.len_utf8(), changed)
        };
        if changed {
            if edits.is_empty() {
                out.reserve(s.len() + 16);
            }
            out.push_str(&s[copied..i]);
            edits.push(Edit { out: out.len(), out_len: repl.len(), orig: i, orig_len: len });
            out.push_str(&repl);
            copied = i + len;
        }
        i += len;
    }
    if edits.is_empty() {
        return None;
    }
    out.push_str(&s[copied..]);
    Some(Round { text: out, edits, maybe_escape })
}

/// What [`normalise_slow`] does to each character of the Basic Multilingual Plane, worked out once: one
/// lookup per character instead of NFKC's tables. `class[c]` is [`STABLE`], [`REMOVED`], `FOLDED | byte` or
/// [`EXPANDED`], whose text is in `expansions` (about 5,000 characters: ligatures, compatibility forms).
struct Bmp {
    class: Box<[u8]>,
    expansions: HashMap<u16, Box<str>>,
}

static BMP: LazyLock<Bmp> = LazyLock::new(|| {
    let mut s = String::new();
    let mut expansions = HashMap::new();
    let class = (0..0x1_0000u32)
        .map(|u| {
            let Some(c) = char::from_u32(u) else { return STABLE };
            s.clear();
            match (normalise_slow(c, &mut s), s.as_bytes()) {
                (false, _) => STABLE,
                (true, []) => REMOVED,
                (true, &[a]) if a.is_ascii() => FOLDED | a,
                (true, _) => {
                    expansions.insert(u as u16, s.as_str().into());
                    EXPANDED
                }
            }
        })
        .collect();
    Bmp { class, expansions }
});
const STABLE: u8 = 0;
const REMOVED: u8 = 1;
const EXPANDED: u8 = 2;
const FOLDED: u8 = 0x80; // | the ASCII byte

/// Appends what `c` normalises to; false (and nothing appended) if it stays as it is.
fn normalise_char(c: char, out: &mut String) -> bool {
    let bmp = &*BMP;
    let Some(&class) = bmp.class.get(c as usize) else { return normalise_slow(c, out) };
    match class {
        STABLE => false,
        REMOVED => true,
        EXPANDED => {
            out.push_str(&bmp.expansions[&(c as u16)]);
            true
        }
        folded => {
            out.push((folded & !FOLDED) as char);
            true
        }
    }
}

/// [`normalise_char`] the long way: removal, fold, then NFKC (folding what it yields).
fn normalise_slow(c: char, out: &mut String) -> bool {
    if removed(c) {
        return true;
    }
    if let Some(a) = fold(c) {
        out.push(a);
        return true;
    }
    if is_nfkc_quick(std::iter::once(c)) == IsNormalized::Yes {
        return false;
    }
    let start = out.len();
    for d in std::iter::once(c).nfkc() {
        if removed(d) {
            continue;
        }
        out.push(fold(d).unwrap_or(d));
    }
    let same = out[start..].chars().eq(std::iter::once(c));
    if same {
        out.truncate(start);
    }
    !same
}

/// Invisible characters that only serve to break a match: format characters (general category Cf), the
/// Hangul fillers, variation selectors, and combining marks (a mark on `a` hides it from an ASCII matcher).
fn removed(c: char) -> bool {
    matches!(c,
        '\u{AD}' | '\u{34F}' | '\u{61C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
        || is_combining_mark(c)
}

/// First code points of the Unicode decimal digit (Nd) blocks: `zero..=zero + 9` are the digits 0–9.
const DIGIT_ZEROS: &[u32] = &[
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66, 0x0DE6, 0x0E50,
    0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50,
    0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136,
    0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0,
    0x16A60, 0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// A character that reads as one ASCII character: spaces, dashes, digits, full-width forms, and Cyrillic and
/// Greek letters that look Latin (the letters of Unicode's confusables that matter for addresses, IBANs and
/// tokens).
fn fold(c: char) -> Option<char> {
    let u = c as u32;
    if (0xFF01..=0xFF5E).contains(&u) {
        return char::from_u32(u - 0xFEE0); // full-width ASCII
    }
    if c.is_whitespace() {
        return Some(' ');
    }
    let k = DIGIT_ZEROS.partition_point(|&z| z <= u);
    if let Some(&z) = k.checked_sub(1).map(|k| &DIGIT_ZEROS[k])
        && u - z < 10
    {
        return char::from_u32('0' as u32 + u - z);
    }
    Some(match c {
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{2043}' | '\u{02D7}' | '\u{058A}' | '\u{FE58}' | '\u{FE63}' => '-',
        '\u{2024}' | '\u{3002}' | '\u{FF61}' => '.', // one-dot leader, ideographic full stops
        '\u{FE6B}' => '@',
        // Cyrillic
        'А' => 'A',
        'В' => 'B',
        'Е' | 'Ё' => 'E',
        'К' => 'K',
        'М' => 'M',
        'Н' => 'H',
        'О' => 'O',
        'Р' => 'P',
        'С' => 'C',
        'Т' => 'T',
        'Х' => 'X',
        'У' | 'Ү' => 'Y',
        'Ѕ' => 'S',
        'І' | 'Ӏ' => 'I',
        'Ј' => 'J',
        'Ԛ' => 'Q',
        'Ԝ' => 'W',
        'а' => 'a',
        'е' => 'e',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'у' | 'ү' => 'y',
        'х' => 'x',
        'ѕ' => 's',
        'і' => 'i',
        'ј' => 'j',
        'һ' => 'h',
        'ԁ' => 'd',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ӏ' => 'l',
        'к' => 'k',
        // Greek
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        'Ϲ' => 'C',
        'Ϳ' => 'J',
        'ο' => 'o',
        'ν' => 'v',
        'ρ' => 'p',
        'ι' => 'i',
        'α' => 'a',
        'κ' => 'k',
        'υ' => 'u',
        'ϲ' => 'c',
        'ϳ' => 'j',
        // Latin look-alikes outside ASCII that NFKC keeps
        'ı' => 'i',
        'ȷ' => 'j',
        'ɡ' => 'g',
        'ɑ' => 'a',
        'օ' => 'o',
        'ս' => 'u',
        _ => return None,
    })
}

/// An escape at `b[i]` (`%`, `&` or `\`): appends what it decodes to and returns its length.
fn escape_at(b: &[u8], i: usize, out: &mut String) -> Option<usize> {
    let (len, decoded) = match b[i] {
        b'%' => percent_run(b, i)?,
        b'&' => html_reference(b, i)?,
        b'\\' => backslash_escape(b, i)?,
        _ => return None,
    };
    out.push_str(&decoded);
    Some(len)
}

fn hex_val(c: u8) -> Option<u32> {
    (c as char).to_digit(16)
}

/// `%XX` bytes from `i`, as long as they decode to UTF-8: `%40` → `@`, `%C3%A9` → `é`.
fn percent_run(b: &[u8], i: usize) -> Option<(usize, String)> {
    let mut bytes = Vec::new();
    let mut j = i;
    let byte_at = |j: usize| -> Option<u8> {
        (b.get(j) == Some(&b'%'))
            .then(|| Some((hex_val(*b.get(j + 1)?)? * 16 + hex_val(*b.get(j + 2)?)?) as u8))
            .flatten()
    };
    while bytes.len() < 64
        && let Some(x) = byte_at(j)
    {
        bytes.push(x);
        j += 3;
    }
    if bytes.is_empty() {
        return None;
    }
    // The longest valid UTF-8 prefix; a run that starts with a stray byte decodes nothing.
    let valid = match std::str::from_utf8(&bytes) {
        Ok(s) => s.len(),
        Err(e) => e.valid_up_to(),
    };
    (valid > 0).then(|| (valid * 3, String::from_utf8(bytes[..valid].to_vec()).expect("validated")))
}

/// Named references worth decoding: the ones that spell address and number punctuation or hide characters.
const ENTITIES: &[(&str, &str)] = &[
    ("amp", "&"),
    ("commat", "@"),
    ("period", "."),
    ("lowbar", "_"),
    ("UnderBar", "_"),
    ("hyphen", "\u{2010}"),
    ("dash", "\u{2010}"),
    ("ndash", "\u{2013}"),
    ("mdash", "\u{2014}"),
    ("minus", "\u{2212}"),
    ("plus", "+"),
    ("colon", ":"),
    ("sol", "/"),
    ("num", "#"),
    ("percnt", "%"),
    ("equals", "="),
    ("lpar", "("),
    ("rpar", ")"),
    ("quot", "\""),
    ("apos", "'"),
    ("lt", "<"),
    ("gt", ">"),
    ("nbsp", "\u{A0}"),
    ("shy", "\u{AD}"),
    ("zwj", "\u{200D}"),
    ("zwnj", "\u{200C}"),
    ("ZeroWidthSpace", "\u{200B}"),
    ("NoBreak", "\u{2060}"),
];

/// `&#64;`, `&#x40;` (the `;` may be left out: the digits end the reference, as browsers read it) or a named reference from [`ENTITIES`].
fn html_reference(b: &[u8], i: usize) -> Option<(usize, String)> {
    if b.get(i + 1) == Some(&b'#') {
        let hex = matches!(b.get(i + 2), Some(b'x' | b'X'));
        let d0 = i + if hex { 3 } else { 2 };
        let radix = if hex { 16 } else { 10 };
        let mut j = d0;
        let mut v: u32 = 0;
        while j < b.len() && j - d0 < 8 && (b[j] as char).is_digit(radix) {
            v = v * radix + (b[j] as char).to_digit(radix)?;
            j += 1;
        }
        if j == d0 {
            return None;
        }
        let end = if b.get(j) == Some(&b';') { j + 1 } else { j };
        return char::from_u32(v).map(|c| (end - i, c.to_string()));
    }
    let name_len = b[i + 1..].iter().take(16).take_while(|c| c.is_ascii_alphabetic()).count();
    if b.get(i + 1 + name_len) != Some(&b';') {
        return None;
    }
    let name = &b[i + 1..i + 1 + name_len];
    ENTITIES.iter().find(|(n, _)| n.as_bytes() == name).map(|(_, v)| (name_len + 2, v.to_string()))
}

/// `\uXXXX` (a JSON surrogate pair as one character), `\u{X…}`, `\UXXXXXXXX` or `\xXX` (ASCII only).
fn backslash_escape(b: &[u8], i: usize) -> Option<(usize, String)> {
    let hex_n = |from: usize, n: usize| -> Option<u32> {
        let d = b.get(from..from + n)?;
        d.iter().try_fold(0u32, |a, &c| Some(a * 16 + hex_val(c)?))
    };
    let (len, v) = match *b.get(i + 1)? {
        b'u' if b.get(i + 2) == Some(&b'{') => {
            let n = b[i + 3..].iter().take(7).take_while(|c| c.is_ascii_hexdigit()).count();
            if n == 0 || n > 6 || b.get(i + 3 + n) != Some(&b'}') {
                return None;
            }
            (n + 4, hex_n(i + 3, n)?)
        }
        b'u' => {
            let hi = hex_n(i + 2, 4)?;
            if (0xD800..0xDC00).contains(&hi) {
                let lo = (b.get(i + 6..i + 8) == Some(b"\\u")).then(|| hex_n(i + 8, 4)).flatten()?;
                if !(0xDC00..0xE000).contains(&lo) {
                    return None;
                }
                (12, 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
            } else {
                (6, hi)
            }
        }
        b'U' => (10, hex_n(i + 2, 8)?),
        b'x' => {
            let v = hex_n(i + 2, 2)?;
            if v >= 0x80 {
                return None; // a raw byte, not a character
            }
            (4, v)
        }
        _ => return None,
    };
    char::from_u32(v).map(|c| (len, c.to_string()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn norm(s: &str) -> String {
        normalise(s).map(|n| n.text).unwrap_or_else(|| s.to_string())
    }

    #[test]
    fn plain_ascii_takes_the_fast_path() {
        for s in ["fn main() { a && b; printf(\"%d\\n\", x); }", "100% done & dusted \\ ok", ""] {
            assert!(normalise(s).is_none(), "{s:?}");
        }
    }

    #[test]
    fn spellings_normalise() {
        for (input, want) in [
            ("alice\u{200B}@example.com", "alice@example.com"),
            ("alice\u{AD}@exam\u{AD}ple.com", "alice@example.com"),
            ("alice＠example.com", "alice@example.com"),
            ("аlice@exаmple.com", "alice@example.com"),
            ("alice%40example.com", "alice@example.com"),
            ("alice%2540example.com", "alice@example.com"),
            ("alice&#64;example.com", "alice@example.com"),
            ("alice&#x40;example.com", "alice@example.com"),
            ("alice&commat;example.com", "alice@example.com"),
            ("alice\\u0040example.com", "alice@example.com"),
            ("alice\\u{40}example.com", "alice@example.com"),
            ("alice\\x40example.com", "alice@example.com"),
            ("4111\u{A0}1111\u{2013}1111 1111", "4111 1111-1111 1111"),
            ("４１１１", "4111"),
            ("٤١١١", "4111"),
            ("\\ud83d\\ude00", "😀"),
            ("e\u{301}", "e"),
            ("alice&#xFF20;example.com", "alice@example.com"),
            ("%4\u{200B}0", "@"),
            ("%4&#8203;0", "@"),
            ("%26%2364;", "@"),
        ] {
            assert_eq!(norm(input), want, "{input:?}");
        }
    }

    #[test]
    fn offsets_map_back_to_the_original_bytes() {
        let s = "x alice\u{200B}@ex%61mple.com y";
        let n = normalise(s).unwrap();
        let at = n.text.find("alice").unwrap();
        let end = n.text.find(".com").unwrap() + 4;
        let (os, oe) = n.to_original(at, end);
        assert_eq!(&s[os..oe], "alice\u{200B}@ex%61mple.com");
        // A decoded character maps to its whole escape.
        let a = n.text.find("a").unwrap();
        assert_eq!(n.to_original(a, a + 1), (2, 3));
        let dbl = "%2540";
        let n = normalise(dbl).unwrap();
        assert_eq!(n.text, "@");
        assert_eq!(n.to_original(0, 1), (0, 5));
    }

    #[test]
    fn the_lookup_table_agrees_with_the_long_way() {
        let (mut a, mut b) = (String::new(), String::new());
        for c in (0..0x1_0000u32).filter_map(char::from_u32) {
            a.clear();
            b.clear();
            assert_eq!(normalise_char(c, &mut a), normalise_slow(c, &mut b), "{c:?}");
            assert_eq!(a, b, "{c:?}");
        }
    }

    #[test]
    fn lone_or_broken_escapes_stay() {
        for s in ["%zz", "%C3", "&#;", "&#xZZ;", "&unknown;", "\\u12", "\\ud800 x", "\\xff"] {
            assert_eq!(norm(s), s, "{s:?}");
        }
    }

    /// Pieces that exercise every branch: escapes whole, cut and nested, invisible and folded characters.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("%".to_string()),
            Just("%4".to_string()),
            Just("%40".to_string()),
            Just("%25".to_string()),
            Just("%C3%A9".to_string()),
            Just("%E2%80%8B".to_string()),
            Just("&#".to_string()),
            Just("&#64;".to_string()),
            Just("&#x40".to_string()),
            Just("&#38;".to_string()),
            Just("&amp;".to_string()),
            Just("&commat;".to_string()),
            Just("\\u00".to_string()),
            Just("\\u0040".to_string()),
            Just("\\ud83d".to_string()),
            Just("\\ude00".to_string()),
            Just("\\u{".to_string()),
            Just("\\x4".to_string()),
            Just("\u{200B}".to_string()),
            Just("\u{AD}".to_string()),
            Just("\u{301}".to_string()),
            Just("\u{FDFA}".to_string()),
            Just("＠".to_string()),
            Just("٤".to_string()),
            Just("а".to_string()),
            "[0-9a-fA-F]{1,3}",
            any::<char>().prop_map(String::from),
        ]
    }

    fn check(s: &str) -> Result<(), TestCaseError> {
        let Some(n) = normalise(s) else { return Ok(()) };
        // Bounded: NFKC's largest expansion (U+FDFA, 3 bytes → 33) is the worst any round can do, and
        // decoding only shrinks.
        prop_assert!(n.text.len() <= 11 * s.len(), "{} → {} bytes", s.len(), n.text.len());
        // Every range of the output maps to an ordered range of the input on char boundaries.
        let ends: Vec<usize> = (0..=n.text.len()).filter(|&i| n.text.is_char_boundary(i)).collect();
        for w in ends.windows(2) {
            let (a, b) = n.to_original(w[0], w[1]);
            prop_assert!(a < b && b <= s.len() && s.is_char_boundary(a) && s.is_char_boundary(b), "{:?}", (w, a, b));
        }
        if !n.text.is_empty() {
            let (a, b) = n.to_original(0, n.text.len());
            prop_assert!(a <= b && b <= s.len());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn normalising_never_panics_and_stays_bounded(s in any::<String>()) {
            check(&s)?;
        }

        #[test]
        fn normalising_escape_soup_never_panics_and_maps_back(parts in prop::collection::vec(piece(), 0..40)) {
            check(&parts.concat())?;
        }
    }
}
