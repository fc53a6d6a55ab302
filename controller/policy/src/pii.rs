//! PII and secret detectors for the gateway's outgoing-request scan (`deny_pii_in_llm_request`).
//!
//! Every outgoing LLM request (system prompt, every message, tool results) goes through [`scan`] or
//! [`contains_any`], so the scanner is built to be accurate (a checksum or a structural check passes before
//! anything fires) and fast (hundreds of MB/s on one core). It is pure: no IO, no allocation per byte.
//!
//! # How it scans
//!
//! No regex ever runs over the whole input. There are three passes, each over the raw bytes:
//!
//! 1. **`@` pass** (`memchr`): at each `@`, scan outward for an e-mail's local part and domain, or for the
//!    `user:password` of a URL (`https://user:pass@host`).
//! 2. **Secret pass**: one multi-pattern search (aho-corasick's SIMD "Teddy" searcher, or its automaton where
//!    the CPU lacks SIMD) over fixed prefixes (`AKIA`, `ghp_`, `sk-`, `eyJ`, `-----BEGIN `, ...) and key words
//!    (`password`, `secret`, `token`, `api_key`, ... in lower, UPPER and Title case). Each hit is validated by a
//!    hand-written shape check on a short window after it.
//! 3. **Digit pass**: jump from digit to digit (eight bytes at a time) and classify the *token* (maximal
//!    `[A-Za-z0-9_]` run) around each one: a pure number is tried as the start of a phone number, SSN, card or IPv4
//!    address; `CC00…` as an IBAN; a hex token next to a `:` as an IPv6 address. Tokens that are identifiers or
//!    hashes (`sha256`, `3f9a2c1`, `550e8400`) are skipped whole, so the cost is one look per token.
//!
//! Every per-hit check looks at a bounded window, so adversarial input (`token=` repeated, thousands of
//! `-----BEGIN` lines) stays linear.
//!
//! Candidates from the passes are then sorted and made non-overlapping: the longer finding wins, and at equal
//! length the more specific one (a named secret over `generic_secret`, a card over a phone number, ...).
//! All spans start and end on ASCII bytes, so they are always on `char` boundaries.
//!
//! # Detectors and decisions
//!
//! | type | fires on | deliberately does not fire on |
//! |------|----------|-------------------------------|
//! | `email` | `local@domain.tld`, local part `[A-Za-z0-9._%+-]`, ≥ 2 labels, alphabetic TLD ≥ 2 | `git@github.com:owner/repo` (an SSH remote, not a person), URL userinfo (`ssh://git@host`, `https://u:p@host`: see `url_password`), retina image names (`icon@2x.png`), `@decorators`, `pkg@1.2.3` |
//! | `phone` | E.164: `+` then 8–15 digits with single spaces, dashes, dots or parentheses between; NANP: `(415) 555-0100`, `415-555-0100`, `415.555.0100` (area and exchange start with 2–9), optionally after `1-` | bare digit runs (timestamps, ids), space-separated NANP (`415 555 0100`), dates, numbers glued to a word (`ORD-415-555-0100`), `+` right after a digit (`…T12:00+05:30`) |
//! | `ssn` | `ddd-dd-dddd` / `ddd dd dddd`: area not 000/666/900–999, group not 00, serial not 0000 | unformatted 9-digit runs (far too many ids and numbers look like one) |
//! | `credit_card` | 13–19 digits, plain or grouped (first group 4–6 digits, then 3–6, one consistent space or dash), a known IIN for that length (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay) and Luhn-valid | longer digit runs, non-IIN numbers (`1…` timestamps in ms), Luhn failures |
//! | `iban` | `CC00` + BBAN, compact or in groups of four, uppercase; the country's length from the registry table and mod-97 == 1 | unknown country codes, lowercase |
//! | `ip_address` | IPv4 dotted quads (octets 0–255, no leading zeros) not glued to a word or to more dotted numbers; IPv6 full and compressed, checked by `Ipv6Addr` | `1.2.3.4.5`, `v1.2.3.4`; IPv6 with no group of 3+ hex digits, which skips `::`, `::1` and Python slices (`[1::2]`), and Rust paths (`a::b`). Loopback/private IPv4 (`127.0.0.1`, `10.0.0.1`) *does* fire: it is an address, and policies can leave `ip_address` out |
//! | `secret` | see the rules below | placeholders (`${VAR}`, `{{ secrets.X }}`, `xxxx`), URLs and paths as values, identifiers as bare values |
//!
//! Rule names (`Finding::rule`): `email`; `e164`, `nanp`; `ssn`; `visa`, `mastercard`, `amex`, `discover`, `jcb`,
//! `diners`, `unionpay`; `iban`; `ipv4`, `ipv6`; and for secrets:
//!
//! - `aws_access_key_id`: `AKIA`/`ASIA` + 16 `[A-Z0-9]`, standing alone;
//! - `aws_secret_access_key`: 40 base64 characters assigned to a name containing `aws_secret` or
//!   `secret_access_key` (`AWS_SECRET_ACCESS_KEY=…`, `secretAccessKey: '…'`);
//! - `github_token`: `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` + 36 alphanumerics; `github_pat`: `github_pat_` + 82
//!   `[A-Za-z0-9_]`;
//! - `openai_api_key`: `sk-proj-`/`sk-svcacct-`/`sk-admin-` + 20+ base64url with digits and both cases, or legacy
//!   `sk-` + exactly 48 alphanumerics;
//! - `anthropic_api_key` / `anthropic_admin_key`: `sk-ant-` (`sk-ant-admin…`) + 32+ base64url with digits and
//!   both cases;
//! - `slack_token`: `xoxb-`/`xoxp-`/`xapp-` + a digit-led, dash-separated body of 20+;
//! - `stripe_key`: `sk_live_`/`rk_live_` + 24+ alphanumerics (test keys do not fire);
//! - `google_api_key`: `AIza` + 35 base64url;
//! - `private_key`: a PEM `-----BEGIN … PRIVATE KEY-----` block through its END line, or through the end of its
//!   base64 body if truncated (public keys and certificates do not fire);
//! - `jwt`: `eyJ…` + three base64url segments whose header decodes to a JSON object with `"alg"`;
//! - `url_password`: the password of `scheme://user:password@host`;
//! - `generic_secret`: a `password|passwd|secret|token|api_key|apikey|api-key` name assigned with `=`, `:`, `:=`
//!   or `=>` a quoted or bare value of 16–256 characters without whitespace and with Shannon entropy ≥ 3.5
//!   bits/char. Bare values must also contain a digit and not look like code (`a.b.c`, `SOME_CONSTANT`), and
//!   names that describe rather than hold a secret (`token_url`, `secret_name`, `max_tokens`, …) are skipped.
//!
//! The rule set follows the shape of public scanners such as gitleaks (prefilter → shape → checksum or
//! entropy) but is written here.
//!
//! Known trade-offs: a Luhn-valid 16-digit id that starts with 4 fires as a card (1 in 10 of them); a four-part
//! version number without a `v` (`1.2.3.4`) fires as an IPv4 address; a `+` followed by 8+ digits fires as a
//! phone number; a space-separated run after an E.164 number can be absorbed into it.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use memchr::memmem;
use serde::{Deserialize, Serialize};

/// What a detector found. Names are the `pii_types` users write in policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiType {
    Email,
    Phone,
    Ssn,
    CreditCard,
    Iban,
    IpAddress,
    Secret,
}

impl PiiType {
    pub const ALL: [PiiType; 7] = [
        PiiType::Email,
        PiiType::Phone,
        PiiType::Ssn,
        PiiType::CreditCard,
        PiiType::Iban,
        PiiType::IpAddress,
        PiiType::Secret,
    ];

    /// The policy name (`credit_card`, ...), as serde spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiType::Email => "email",
            PiiType::Phone => "phone",
            PiiType::Ssn => "ssn",
            PiiType::CreditCard => "credit_card",
            PiiType::Iban => "iban",
            PiiType::IpAddress => "ip_address",
            PiiType::Secret => "secret",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl std::fmt::Display for PiiType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding: `text[start..end]` is the PII or secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub kind: PiiType,
    /// The rule that fired, e.g. `email`, `visa`, `aws_access_key_id`, `github_token`, `private_key`, `jwt`.
    pub rule: &'static str,
    /// Byte offsets into the scanned `str`, on char boundaries.
    pub start: usize,
    pub end: usize,
}

/// All findings of the requested types, sorted by start and non-overlapping (the longer, then the more
/// specific, finding wins an overlap).
pub fn scan(text: &str, types: &[PiiType]) -> Vec<Finding> {
    let mut out = Out::new(types, false);
    run(text.as_bytes(), &mut out);
    resolve(out.found)
}

/// True if [`scan`] would return anything; stops at the first candidate.
pub fn contains_any(text: &str, types: &[PiiType]) -> bool {
    let mut out = Out::new(types, true);
    run(text.as_bytes(), &mut out);
    !out.found.is_empty()
}

/// `text` with each finding replaced by `[REDACTED:<type>]`. `findings` should come from `scan(text, ..)`; any
/// that are out of order, overlapping, out of range or off a char boundary are skipped rather than panicking.
pub fn redact(text: &str, findings: &[Finding]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for f in findings {
        if f.start < pos || f.start >= f.end || !text.is_char_boundary(f.start) || !text.is_char_boundary(f.end) {
            continue;
        }
        out.push_str(&text[pos..f.start]);
        out.push_str("[REDACTED:");
        out.push_str(f.kind.as_str());
        out.push(']');
        pos = f.end;
    }
    out.push_str(&text[pos..]);
    out
}

/// Luhn (mod 10) check over ASCII digits. False for an empty string or any non-digit: callers strip spaces and
/// dashes first.
pub fn luhn_valid(digits: &str) -> bool {
    let d = digits.as_bytes();
    !d.is_empty() && d.iter().all(u8::is_ascii_digit) && luhn(d.iter().map(|c| c - b'0'))
}

/// ISO 13616 IBAN check: two-letter country code with a known length, two check digits, alphanumeric BBAN and
/// mod-97 of the rearranged number == 1. Spaces (the print format) are ignored and letters may be lowercase.
pub fn iban_valid(iban: &str) -> bool {
    let mut buf = [0u8; 34];
    let mut len = 0;
    for c in iban.bytes().filter(|&c| c != b' ') {
        if len == buf.len() || !c.is_ascii_alphanumeric() {
            return false;
        }
        buf[len] = c.to_ascii_uppercase();
        len += 1;
    }
    let s = &buf[..len];
    len >= 5 && iban_len(s[0], s[1]) == Some(len) && iban_checksum_ok(s)
}

// ---------------------------------------------------------------------------------------------------------
// Plumbing

/// Where candidates go: all of them for `scan`, the first for `contains_any`.
struct Out {
    found: Vec<Finding>,
    mask: u8,
    first_only: bool,
}

impl Out {
    fn new(types: &[PiiType], first_only: bool) -> Out {
        Out { found: Vec::new(), mask: types.iter().fold(0, |m, t| m | t.bit()), first_only }
    }

    fn wants(&self, kind: PiiType) -> bool {
        self.mask & kind.bit() != 0
    }

    fn push(&mut self, kind: PiiType, rule: &'static str, start: usize, end: usize) {
        if self.wants(kind) {
            self.found.push(Finding { kind, rule, start, end });
        }
    }

    fn done(&self) -> bool {
        self.first_only && !self.found.is_empty()
    }
}

const NUMERIC: u8 = PiiType::Phone.bit()
    | PiiType::Ssn.bit()
    | PiiType::CreditCard.bit()
    | PiiType::Iban.bit()
    | PiiType::IpAddress.bit();

fn run(b: &[u8], out: &mut Out) {
    if out.mask == 0 || b.is_empty() {
        return;
    }
    if out.wants(PiiType::Email) || out.wants(PiiType::Secret) {
        at_signs(b, out);
    }
    if !out.done() && out.wants(PiiType::Secret) {
        secrets(b, out);
    }
    if !out.done() && out.mask & NUMERIC != 0 {
        numeric(b, out);
    }
}

/// Tie-break for overlaps of equal length: the more specific finding wins.
fn rank(f: &Finding) -> u8 {
    if f.rule == "generic_secret" {
        return 0;
    }
    match f.kind {
        PiiType::Secret => 7,
        PiiType::CreditCard => 6,
        PiiType::Iban => 5,
        PiiType::Ssn => 4,
        PiiType::Phone => 3,
        PiiType::IpAddress => 2,
        PiiType::Email => 1,
    }
}

fn resolve(mut v: Vec<Finding>) -> Vec<Finding> {
    v.sort_unstable_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)).then(rank(b).cmp(&rank(a))));
    let mut out: Vec<Finding> = Vec::with_capacity(v.len());
    for f in v {
        match out.last_mut() {
            // `f` starts at or after `last`, which starts at or after the one before ends: replacing `last`
            // keeps the list non-overlapping.
            Some(last) if f.start < last.end => {
                let (fl, ll) = (f.end - f.start, last.end - last.start);
                if fl > ll || (fl == ll && rank(&f) > rank(last)) {
                    *last = f;
                }
            }
            _ => out.push(f),
        }
    }
    out
}

// Byte classes, one table lookup per test.
const WORD: u16 = 1 << 0; // [A-Za-z0-9_]
const DIGIT: u16 = 1 << 1; // [0-9]
const HEX: u16 = 1 << 2; // [0-9A-Fa-f]
const UPPER: u16 = 1 << 3; // [A-Z]
const ALNUM: u16 = 1 << 4; // [A-Za-z0-9]
const B64URL: u16 = 1 << 5; // [A-Za-z0-9_-]
const B64STD: u16 = 1 << 6; // [A-Za-z0-9+/=]
const LOCAL: u16 = 1 << 7; // e-mail local part: [A-Za-z0-9._%+-]
const DOMAIN: u16 = 1 << 8; // [A-Za-z0-9.-]
const IDENT: u16 = 1 << 9; // a key name around a key word: [A-Za-z0-9_.-]
const BARE: u16 = 1 << 10; // an unquoted value: ASCII graphic but quotes, brackets of all kinds, `,;&<>\`
const USERINFO: u16 = 1 << 11; // URL userinfo (RFC 3986) less `@`

static CLASS: [u16; 256] = {
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
fn has(c: u8, class: u16) -> bool {
    CLASS[c as usize] & class != 0
}

/// `b[i]`, or 0 (no class) past the end.
#[inline(always)]
fn at(b: &[u8], i: usize) -> u8 {
    if i < b.len() { b[i] } else { 0 }
}

/// The byte before `i`, or 0 at the start.
#[inline(always)]
fn before(b: &[u8], i: usize) -> u8 {
    if i > 0 && i <= b.len() { b[i - 1] } else { 0 }
}

/// Length of the run of `class` bytes at `from`, stopping at `max`.
#[inline]
fn run_len(b: &[u8], from: usize, class: u16, max: usize) -> usize {
    let mut j = from;
    while j < b.len() && j - from < max && has(b[j], class) {
        j += 1;
    }
    j - from
}

/// `b[s..s + k]` is all digits.
#[inline]
fn digits(b: &[u8], s: usize, k: usize) -> bool {
    s + k <= b.len() && b[s..s + k].iter().all(u8::is_ascii_digit)
}

fn number(d: &[u8]) -> u32 {
    d.iter().fold(0, |a, &c| a * 10 + (c - b'0') as u32)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Nothing glues the match ending at `e` to more of the same (`…0100-2`, `…0100.5`, `…0100abc`).
#[inline]
fn right_ok(b: &[u8], e: usize) -> bool {
    let c = at(b, e);
    let glued = has(c, WORD) || (matches!(c, b'-' | b'.') && has(at(b, e + 1), DIGIT));
    !glued
}

// SWAR ("SIMD within a register"): classify eight bytes at once, without branching per byte. In each helper
// the result has the high bit of a byte set iff that byte is in the class.
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

#[inline(always)]
fn load8(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// Bytes of `x7` (high bits clear) within `lo..=hi` (both < 0x80). Neither subtraction can borrow across bytes.
#[inline(always)]
fn in_range(x7: u64, lo: u8, hi: u8) -> u64 {
    ((x7 | HI) - LO * lo as u64) & ((HI + LO * hi as u64) - x7) & HI
}

#[inline(always)]
fn digit_mask(w: u64) -> u64 {
    in_range(w & !HI, b'0', b'9') & !w
}

/// Position of the next ASCII digit at or after `i`.
#[inline]
fn find_digit(b: &[u8], mut i: usize) -> Option<usize> {
    while i + 8 <= b.len() {
        let m = digit_mask(load8(b, i));
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    (i..b.len()).find(|&j| b[j].is_ascii_digit())
}

fn luhn(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
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

fn entropy(v: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &c in v {
        counts[c as usize] += 1;
    }
    let n = v.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n).map(|p| -p * p.log2()).sum()
}

// ---------------------------------------------------------------------------------------------------------
// Pass 1: `@` — e-mail addresses and URL credentials

fn at_signs(b: &[u8], out: &mut Out) {
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
fn url_userinfo(b: &[u8], a: usize) -> Option<Option<(usize, usize)>> {
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
    let placeholder =
        pw.is_empty() || matches!(pw[0], b'$' | b'<' | b'%') || pw.iter().all(|&c| c == b'*' || c == b'x' || c == b'X');
    Some((!placeholder).then_some((u + c + 1, a)))
}

const IMAGE_EXTS: &[&[u8]] = &[b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"avif", b"ico", b"bmp"];

fn email(b: &[u8], a: usize) -> Option<(usize, usize)> {
    let n = b.len();
    let mut s = a;
    while s > 0 && a - s < 64 && has(b[s - 1], LOCAL) {
        s -= 1;
    }
    if has(before(b, s), LOCAL) || before(b, s) == b'/' {
        return None; // longer than 64, or URL-ish (`//git@host`)
    }
    while s < a && b[s] == b'.' {
        s += 1;
    }
    let local = &b[s..a];
    if local.is_empty() || local[local.len() - 1] == b'.' || contains(local, b"..") {
        return None;
    }
    let mut e = a + 1;
    while e < n && e - a <= 253 && has(b[e], DOMAIN) {
        e += 1;
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
    if labels < 2 || tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
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

// ---------------------------------------------------------------------------------------------------------
// Pass 2: secrets — an Aho-Corasick prefilter, then a shape check on a small window

#[derive(Clone, Copy)]
enum Trigger {
    Aws,
    GitHub,
    GitHubPat,
    Sk,
    Stripe,
    Slack,
    Google,
    Pem,
    Jwt,
    Keyword,
}

const PREFIXES: &[(&str, Trigger)] = &[
    ("AKIA", Trigger::Aws),
    ("ASIA", Trigger::Aws),
    ("ghp_", Trigger::GitHub),
    ("gho_", Trigger::GitHub),
    ("ghu_", Trigger::GitHub),
    ("ghs_", Trigger::GitHub),
    ("ghr_", Trigger::GitHub),
    ("github_pat_", Trigger::GitHubPat),
    ("sk-", Trigger::Sk),
    ("sk_live_", Trigger::Stripe),
    ("rk_live_", Trigger::Stripe),
    ("xoxb-", Trigger::Slack),
    ("xoxp-", Trigger::Slack),
    ("xapp-", Trigger::Slack),
    ("AIza", Trigger::Google),
    ("-----BEGIN ", Trigger::Pem),
    ("eyJ", Trigger::Jwt),
];

/// Key words for the generic rule, spelled out in the cases code uses (`password`, `PASSWORD`, `dbPassword`):
/// an ASCII-case-insensitive automaton would lose the SIMD prefilter.
const KEYWORDS: &[&str] = &[
    "password", "Password", "PASSWORD", "passwd", "Passwd", "PASSWD", "secret", "Secret", "SECRET", "token", "Token",
    "TOKEN", "api_key", "Api_Key", "API_KEY", "apikey", "apiKey", "ApiKey", "APIKEY", "api-key", "Api-Key", "API-KEY",
];

/// The prefilter: Teddy (SIMD) through `packed::Searcher` where the CPU has it — `AhoCorasick` with this many
/// patterns picks a byte-set prefilter that is several times slower here — else a plain automaton.
enum Finder {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

static SECRET_FINDER: LazyLock<(Finder, Vec<Trigger>)> = LazyLock::new(|| {
    let mut patterns: Vec<&str> = PREFIXES.iter().map(|p| p.0).collect();
    let mut triggers: Vec<Trigger> = PREFIXES.iter().map(|p| p.1).collect();
    patterns.extend_from_slice(KEYWORDS);
    triggers.extend(KEYWORDS.iter().map(|_| Trigger::Keyword));
    let finder = match aho_corasick::packed::Searcher::new(patterns.iter()) {
        Some(s) => Finder::Packed(s),
        None => Finder::Automaton(AhoCorasick::new(&patterns).expect("fixed patterns build")),
    };
    (finder, triggers)
});

fn secrets(b: &[u8], out: &mut Out) {
    let (finder, triggers) = &*SECRET_FINDER;
    let mut skip = 0;
    let mut ends = EndCache::default();
    let mut on_match = |s: usize, e: usize, pattern: usize| -> bool {
        if s < skip {
            return true;
        }
        let hit = match triggers[pattern] {
            Trigger::Aws => aws_key_id(b, s).map(|e| (s, e, "aws_access_key_id")),
            Trigger::GitHub => github(b, s).map(|e| (s, e, "github_token")),
            Trigger::GitHubPat => github_pat(b, s).map(|e| (s, e, "github_pat")),
            Trigger::Sk => sk(b, s).map(|(e, rule)| (s, e, rule)),
            Trigger::Stripe => stripe(b, s).map(|e| (s, e, "stripe_key")),
            Trigger::Slack => slack(b, s).map(|e| (s, e, "slack_token")),
            Trigger::Google => google(b, s).map(|e| (s, e, "google_api_key")),
            Trigger::Pem => pem(b, s, &mut ends).map(|e| (s, e, "private_key")),
            Trigger::Jwt => jwt(b, s).map(|e| (s, e, "jwt")),
            Trigger::Keyword => keyword_secret(b, s, e),
        };
        if let Some((fs, fe, rule)) = hit {
            out.push(PiiType::Secret, rule, fs, fe);
            if out.done() {
                return false;
            }
            // A generic value may hold a specific token (`GITHUB_TOKEN=ghp_…`): let that one be found too, and
            // win the overlap. Anything else covers its span.
            if rule != "generic_secret" {
                skip = fe;
            }
        }
        true
    };
    match finder {
        Finder::Packed(p) => {
            for m in p.find_iter(b) {
                if !on_match(m.start(), m.end(), m.pattern().as_usize()) {
                    return;
                }
            }
        }
        Finder::Automaton(ac) => {
            for m in ac.find_iter(b) {
                if !on_match(m.start(), m.end(), m.pattern().as_usize()) {
                    return;
                }
            }
        }
    }
}

/// `AKIA`/`ASIA` + 16 `[A-Z0-9]`, standing alone.
fn aws_key_id(b: &[u8], s: usize) -> Option<usize> {
    let ok = !has(before(b, s), ALNUM) && run_len(b, s + 4, UPPER | DIGIT, 17) == 16 && !has(at(b, s + 20), ALNUM);
    ok.then_some(s + 20)
}

/// `ghp_` & co. + 36 alphanumerics.
fn github(b: &[u8], s: usize) -> Option<usize> {
    let ok = !has(before(b, s), WORD) && run_len(b, s + 4, ALNUM, 37) == 36 && !has(at(b, s + 40), WORD);
    ok.then_some(s + 40)
}

/// `github_pat_` + 82 `[A-Za-z0-9_]`.
fn github_pat(b: &[u8], s: usize) -> Option<usize> {
    (!has(before(b, s), WORD) && run_len(b, s + 11, WORD, 83) == 82).then_some(s + 93)
}

fn mixed_case_digits(v: &[u8]) -> bool {
    v.iter().any(u8::is_ascii_digit) && v.iter().any(u8::is_ascii_uppercase) && v.iter().any(u8::is_ascii_lowercase)
}

/// `sk-…`: Anthropic (`sk-ant-`), OpenAI project/service/admin keys, or a legacy OpenAI key.
fn sk(b: &[u8], s: usize) -> Option<(usize, &'static str)> {
    if has(before(b, s), B64URL) {
        return None; // `task-`, `risk-`
    }
    let rest = &b[s + 3..];
    if rest.starts_with(b"ant-") {
        let r0 = s + 7;
        let k = run_len(b, r0, B64URL, 512);
        let rule = if rest[4..].starts_with(b"admin") { "anthropic_admin_key" } else { "anthropic_api_key" };
        return ((32..512).contains(&k) && mixed_case_digits(&b[r0..r0 + k])).then_some((r0 + k, rule));
    }
    for p in [&b"proj-"[..], b"svcacct-", b"admin-"] {
        if rest.starts_with(p) {
            let r0 = s + 3 + p.len();
            let k = run_len(b, r0, B64URL, 512);
            return ((20..512).contains(&k) && mixed_case_digits(&b[r0..r0 + k])).then_some((r0 + k, "openai_api_key"));
        }
    }
    let ok = run_len(b, s + 3, ALNUM, 49) == 48 && !has(at(b, s + 51), B64URL);
    ok.then_some((s + 51, "openai_api_key"))
}

/// `sk_live_`/`rk_live_` + 24 or more alphanumerics.
fn stripe(b: &[u8], s: usize) -> Option<usize> {
    if has(before(b, s), WORD) {
        return None;
    }
    let k = run_len(b, s + 8, ALNUM, 256);
    ((24..256).contains(&k) && !has(at(b, s + 8 + k), WORD)).then_some(s + 8 + k)
}

/// `xoxb-`/`xoxp-`/`xapp-` + a digit-led, dash-separated body (`xoxb-123-456-abc…`).
fn slack(b: &[u8], s: usize) -> Option<usize> {
    if has(before(b, s), WORD) {
        return None;
    }
    let r0 = s + 5;
    let k = run_len(b, r0, B64URL, 256);
    let body = &b[r0..r0 + k];
    let ok = (20..256).contains(&k) && body[0].is_ascii_digit() && body.iter().filter(|&&c| c == b'-').count() >= 2;
    ok.then_some(r0 + k)
}

/// `AIza` + 35 base64url.
fn google(b: &[u8], s: usize) -> Option<usize> {
    (!has(before(b, s), B64URL) && run_len(b, s + 4, B64URL, 36) == 35).then_some(s + 39)
}

fn count_b64(v: &[u8]) -> usize {
    v.iter().filter(|&&c| has(c, B64STD)).count()
}

/// Where the next `-----END ` is, remembered so that many BEGIN lines cost one search (no quadratic input).
#[derive(Default)]
struct EndCache {
    from: usize,
    found: Option<Option<usize>>,
}

impl EndCache {
    fn next_end(&mut self, b: &[u8], pos: usize) -> Option<usize> {
        match self.found {
            Some(f) if self.from <= pos && f.is_none_or(|f| f >= pos) => f,
            _ => {
                let f = memmem::find(&b[pos..], b"-----END ").map(|p| pos + p);
                (self.from, self.found) = (pos, Some(f));
                f
            }
        }
    }
}

/// A PEM private-key block: the BEGIN line through the END line, or through the base64 body if truncated.
fn pem(b: &[u8], s: usize, ends: &mut EndCache) -> Option<usize> {
    let h = s + 11;
    let win = &b[h..(h + 48).min(b.len())];
    let k = memmem::find(win, b"-----")?;
    let label = &win[..k];
    if !(label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK")) {
        return None; // public keys and certificates are not secrets
    }
    let body = h + k + 5;
    let limit = (body + 64 * 1024).min(b.len());
    if let Some(p) = ends.next_end(b, body).filter(|&p| p < limit) {
        let k2 = memmem::find(&b[p + 9..(p + 9 + 48).min(b.len())], b"-----")?;
        return (count_b64(&b[body..p]) >= 32).then_some(p + 9 + k2 + 5);
    }
    let mut e = body;
    while e < limit && (has(b[e], B64STD) || matches!(b[e], b'\r' | b'\n' | b' ' | b'\t' | b'\\')) {
        e += 1;
    }
    while e > body && !has(b[e - 1], B64STD) {
        e -= 1;
    }
    (count_b64(&b[body..e]) >= 64).then_some(e)
}

fn b64url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// `header.payload.signature`, base64url; the header must decode to a JSON object with `"alg"`.
fn jwt(b: &[u8], s: usize) -> Option<usize> {
    let l = before(b, s);
    if has(l, B64URL) || l == b'.' {
        return None;
    }
    let e1 = s + run_len(b, s, B64URL, 4096);
    if e1 - s < 10 || at(b, e1) != b'.' {
        return None;
    }
    let e2 = e1 + 1 + run_len(b, e1 + 1, B64URL, 65536);
    if e2 - e1 < 3 || at(b, e2) != b'.' {
        return None;
    }
    let e3 = e2 + 1 + run_len(b, e2 + 1, B64URL, 4096);
    // A fourth segment (JWE) or a run past the limits is something else.
    if has(at(b, e3), B64URL) || (at(b, e3) == b'.' && has(at(b, e3 + 1), B64URL)) {
        return None;
    }
    let header = b64url_decode(&b[s..e1])?;
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header).ok()?;
    map.contains_key("alg").then_some(e3)
}

/// Names that describe a secret rather than hold one: `token_url`, `secret_name`, `max_tokens`, ...
const NOT_SECRET_SUFFIXES: &[&[u8]] = &[
    b"url",
    b"uri",
    b"file",
    b"path",
    b"name",
    b"type",
    b"ref",
    b"dir",
    b"length",
    b"len",
    b"count",
    b"size",
    b"hint",
    b"field",
    b"header",
    b"prompt",
    b"label",
    b"policy",
    b"format",
    b"endpoint",
    b"expiry",
    b"expires",
    b"ttl",
    b"tokens",
    b"id",
    b"key_id",
    b"env",
    b"var",
    b"version",
    b"mode",
    b"provider",
    b"store",
    b"manager",
];

fn skip_blank(b: &[u8], mut j: usize) -> usize {
    let s = j;
    while j - s < 8 && matches!(at(b, j), b' ' | b'\t') {
        j += 1;
    }
    j
}

const MAX_VALUE: usize = 256;

/// The value after an assignment: `"…"`, `'…'`, `` `…` ``, `\"…\"` (inside JSON) or bare. Quoted values with
/// whitespace are prose, not secrets.
fn value_at(b: &[u8], mut j: usize) -> Option<(usize, usize, bool)> {
    let n = b.len();
    if at(b, j) == b'\\' && matches!(at(b, j + 1), b'"' | b'\'') {
        j += 1;
    }
    let q = at(b, j);
    if matches!(q, b'"' | b'\'' | b'`') {
        let vs = j + 1;
        let mut k = vs;
        while k < n && k - vs <= MAX_VALUE && b[k] != q && b[k] != b'\\' {
            if b[k].is_ascii_whitespace() {
                return None;
            }
            k += 1;
        }
        (k < n && (b[k] == q || b[k] == b'\\')).then_some((vs, k, true))
    } else {
        let mut k = j;
        while k < n && k - j <= MAX_VALUE && has(b[k], BARE) {
            k += 1;
        }
        while k > j && b[k - 1] == b'.' {
            k -= 1;
        }
        Some((j, k, false))
    }
}

/// `a.b.c` or `SOME_CONSTANT`: code, not a literal.
fn looks_like_identifier(v: &[u8]) -> bool {
    let path = v.split(|&c| c == b'.').all(|seg| {
        !seg.is_empty() && (seg[0].is_ascii_alphabetic() || seg[0] == b'_') && seg.iter().all(|&c| has(c, WORD))
    });
    let constant = v[0].is_ascii_uppercase()
        && v.contains(&b'_')
        && v.iter().all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
    (path && v.contains(&b'.')) || constant
}

/// A key word (`password`, `secret`, `token`, `api_key`, ...) at `ks..ke`: is it a name assigned a secret?
fn keyword_secret(b: &[u8], ks: usize, ke: usize) -> Option<(usize, usize, &'static str)> {
    let mut i0 = ks;
    while i0 > 0 && ks - i0 < 64 && has(b[i0 - 1], IDENT) {
        i0 -= 1;
    }
    let mut j = ke;
    while j < b.len() && j - ke < 64 && has(b[j], IDENT) {
        j += 1;
    }
    let name = &b[i0..j];
    // Closing quotes of a key: `"password":`, `\"password\":`, `['TOKEN'] =`.
    let mut q = 0;
    while q < 3 && matches!(at(b, j), b'"' | b'\'' | b'\\' | b'`' | b']') {
        j += 1;
        q += 1;
    }
    j = skip_blank(b, j);
    match at(b, j) {
        b'=' if at(b, j + 1) != b'=' => j += if at(b, j + 1) == b'>' { 2 } else { 1 },
        b':' if at(b, j + 1) != b':' => j += if at(b, j + 1) == b'=' { 2 } else { 1 },
        _ => return None,
    }
    j = skip_blank(b, j);
    let (vs, ve, quoted) = value_at(b, j)?;
    let v = &b[vs..ve];
    let aws = contains_ci(name, b"aws_secret")
        || contains_ci(name, b"secret_access_key")
        || contains_ci(name, b"secretaccesskey");
    if aws && v.len() == 40 && v.iter().all(|&c| has(c, B64STD)) {
        return Some((vs, ve, "aws_secret_access_key"));
    }
    generic_ok(name, v, quoted).then_some((vs, ve, "generic_secret"))
}

fn generic_ok(name: &[u8], v: &[u8], quoted: bool) -> bool {
    if v.len() < 16 || v.len() > MAX_VALUE {
        return false;
    }
    if matches!(v[0], b'$' | b'%' | b'{' | b'<' | b'[' | b'(' | b'*' | b'/' | b'.' | b'~' | b'#' | b'@') {
        return false; // templates, paths, references
    }
    if contains(v, b"://") || contains(v, b"{{") || contains(v, b"${") || contains(v, b"...") || contains(v, b"**") {
        return false;
    }
    if contains_ci(v, b"xxxx") || !v.iter().any(u8::is_ascii_alphabetic) {
        return false; // placeholders; pure numbers are ids and timestamps
    }
    if !quoted && (!v.iter().any(u8::is_ascii_digit) || looks_like_identifier(v)) {
        return false; // `token = self.tokenizer.encode`, `API_KEY=OPENAI_API_KEY`
    }
    let lower = |c: &u8| c.to_ascii_lowercase();
    if NOT_SECRET_SUFFIXES
        .iter()
        .any(|s| name.len() >= s.len() && name[name.len() - s.len()..].iter().map(lower).eq(s.iter().copied()))
    {
        return false;
    }
    entropy(v) >= 3.5
}

// ---------------------------------------------------------------------------------------------------------
// Pass 3: digits — phone, SSN, card, IBAN, IP

fn numeric(b: &[u8], out: &mut Out) {
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
            if let Some((s, e)) = hit {
                out.push(PiiType::IpAddress, "ipv6", s, e);
                next = e.max(te);
            }
        }
        if next == te {
            if ts == d && te == de {
                if let Some(e) = numeric_token(b, ts, te, out) {
                    next = e;
                }
            } else if d == ts + 2
                && de >= d + 2
                && has(b[ts], UPPER)
                && has(b[ts + 1], UPPER)
                && out.wants(PiiType::Iban)
                && let Some(e) = iban_at(b, ts, te)
            {
                out.push(PiiType::Iban, "iban", ts, e);
                next = e;
            }
        }
        if out.done() {
            return;
        }
        i = next;
    }
}

/// A token of digits only, `b[ts..te]`, not preceded by a word byte: try the detectors that start here.
/// Returns the end of what fired.
fn numeric_token(b: &[u8], ts: usize, te: usize, out: &mut Out) -> Option<usize> {
    let len = te - ts;
    let prev = before(b, ts);
    let next = at(b, te);
    // `x-415…`, `v1.2…`: the run continues something on its left.
    let joined = matches!(prev, b'-' | b'.') && ts >= 2 && has(b[ts - 2], WORD);
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
    match next {
        b'.' => {
            if prev != b'.'
                && len <= 3
                && out.wants(PiiType::IpAddress)
                && let Some(e) = ipv4(b, ts)
            {
                out.push(PiiType::IpAddress, "ipv4", ts, e);
                return Some(e);
            }
        }
        b'-' | b' ' => {
            if len == 3
                && !joined
                && out.wants(PiiType::Ssn)
                && let Some(e) = ssn(b, ts)
            {
                out.push(PiiType::Ssn, "ssn", ts, e);
                return Some(e);
            }
            if (4..=6).contains(&len)
                && !joined
                && out.wants(PiiType::CreditCard)
                && let Some((e, brand)) = card_grouped(b, ts, len)
            {
                out.push(PiiType::CreditCard, brand, ts, e);
                return Some(e);
            }
        }
        _ => {}
    }
    if len == 3
        && matches!(next, b'-' | b'.')
        && out.wants(PiiType::Phone)
        && let Some((s, e)) = nanp(b, ts)
    {
        out.push(PiiType::Phone, "nanp", s, e);
        return Some(e);
    }
    if (13..=19).contains(&len) && !joined && right_ok(b, te) && out.wants(PiiType::CreditCard) {
        let mut buf = [0u8; 19];
        for (k, &c) in b[ts..te].iter().enumerate() {
            buf[k] = c - b'0';
        }
        if let Some(brand) = card_brand(&buf[..len]) {
            out.push(PiiType::CreditCard, brand, ts, te);
            return Some(te);
        }
    }
    None
}

/// `+` at `p`, then 8–15 digits with at most two separators (` -.()`) between digits.
fn e164(b: &[u8], p: usize) -> Option<usize> {
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
fn nanp_ok(area: u8, exchange: u8) -> bool {
    matches!(area, b'2'..=b'9') && matches!(exchange, b'2'..=b'9')
}

/// `415-555-0100` or `415.555.0100` at `s`, optionally after a `1-`/`1.` trunk prefix.
fn nanp(b: &[u8], s: usize) -> Option<(usize, usize)> {
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
fn nanp_paren(b: &[u8], p: usize) -> Option<usize> {
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

/// `ddd-dd-dddd` or `ddd dd dddd` at `s` with SSA validity rules.
fn ssn(b: &[u8], s: usize) -> Option<usize> {
    let sep = at(b, s + 3);
    if !matches!(sep, b'-' | b' ')
        || !digits(b, s, 3)
        || !digits(b, s + 4, 2)
        || at(b, s + 6) != sep
        || !digits(b, s + 7, 4)
        || !right_ok(b, s + 11)
    {
        return None;
    }
    let e = s + 11;
    if sep == b' '
        && ((at(b, e) == b' ' && has(at(b, e + 1), DIGIT)) || (before(b, s) == b' ' && has(before(b, s - 1), DIGIT)))
    {
        return None; // part of a longer space-separated number
    }
    let (area, group, serial) = (number(&b[s..s + 3]), number(&b[s + 4..s + 6]), number(&b[s + 7..e]));
    (area != 0 && area != 666 && area < 900 && group != 0 && serial != 0).then_some(e)
}

/// The card brand for these digit values if the IIN and length fit and Luhn passes.
fn card_brand(d: &[u8]) -> Option<&'static str> {
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

/// A grouped card number at `ts` whose first group has `first` digits: groups of 3–6 digits joined by one
/// consistent space or dash. The longest prefix of groups that is a valid card wins.
fn card_grouped(b: &[u8], ts: usize, first: usize) -> Option<(usize, &'static str)> {
    let sep = b[ts + first];
    let mut buf = [0u8; 19];
    for k in 0..first {
        buf[k] = b[ts + k] - b'0';
    }
    let mut ends = [(0usize, 0usize); 8]; // (end offset, digits so far) after each group
    ends[0] = (ts + first, first);
    let (mut groups, mut nd, mut j) = (1, first, ts + first);
    while groups < ends.len() && at(b, j) == sep && has(at(b, j + 1), DIGIT) {
        let gs = j + 1;
        let gl = run_len(b, gs, DIGIT, 7);
        if !(3..=6).contains(&gl) || nd + gl > 19 || has(at(b, gs + gl), WORD) {
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
        if !(13..=19).contains(&cnt) || (sep == b'-' && at(b, e) == b'.' && has(at(b, e + 1), DIGIT)) {
            return None;
        }
        card_brand(&buf[..cnt]).map(|brand| (e, brand))
    })
}

/// IBAN length by country (SWIFT IBAN registry).
fn iban_len(a: u8, b: u8) -> Option<usize> {
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
fn iban_checksum_ok(s: &[u8]) -> bool {
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

/// An IBAN starting at the token `b[ts..te]` (which begins with two uppercase letters and two digits): compact
/// (`DE89370400440532013000`) or grouped by four (`DE89 3704 0044 0532 0130 00`).
fn iban_at(b: &[u8], ts: usize, te: usize) -> Option<usize> {
    let want = iban_len(b[ts], b[ts + 1])?;
    let upper_or_digit = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit();
    if te - ts == want {
        return (b[ts..te].iter().all(|&c| upper_or_digit(c)) && iban_checksum_ok(&b[ts..te])).then_some(te);
    }
    if te - ts != 4 || at(b, te) != b' ' {
        return None;
    }
    let mut buf = [0u8; 34];
    buf[..4].copy_from_slice(&b[ts..te]);
    let (mut got, mut j) = (4, te);
    while got < want {
        if at(b, j) != b' ' {
            return None;
        }
        let gs = j + 1;
        let mut ge = gs;
        while ge < b.len() && ge - gs < 5 && upper_or_digit(b[ge]) {
            ge += 1;
        }
        let gl = ge - gs;
        if gl == 0 || gl > 4 || got + gl > want || (gl < 4 && got + gl != want) || has(at(b, ge), WORD) {
            return None;
        }
        buf[got..got + gl].copy_from_slice(&b[gs..ge]);
        got += gl;
        j = ge;
    }
    iban_checksum_ok(&buf[..want]).then_some(j)
}

/// A dotted quad at `s`: octets 0–255 without leading zeros, not followed by a word byte or more dotted digits.
fn ipv4(b: &[u8], s: usize) -> Option<usize> {
    let mut j = s;
    for k in 0..4 {
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
        j += len;
    }
    right_ok(b, j).then_some(j)
}

/// The IPv6 candidate around the hex token `b[ts..te]`: returns the address if valid, and the end of the span
/// examined (so that its other tokens are not tried again).
fn ipv6(b: &[u8], ts: usize, te: usize) -> (Option<(usize, usize)>, usize) {
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
    let ok = colons >= 2
        && long_group
        && cand.iter().any(u8::is_ascii_digit)
        && std::str::from_utf8(cand).is_ok_and(|c| c.parse::<Ipv6Addr>().is_ok());
    (ok.then_some((s, e)), span_end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: &[PiiType] = &PiiType::ALL;

    /// (kind, rule, matched text) of every finding.
    fn found(text: &str) -> Vec<(PiiType, &'static str, &str)> {
        scan(text, ALL).into_iter().map(|f| (f.kind, f.rule, &text[f.start..f.end])).collect()
    }

    /// The one finding in `text`.
    #[track_caller]
    fn one(text: &str) -> (PiiType, &'static str, &str) {
        let f = found(text);
        assert_eq!(f.len(), 1, "expected one finding in {text:?}, got {f:?}");
        f[0]
    }

    #[track_caller]
    fn none(text: &str) {
        assert_eq!(found(text), vec![], "expected no finding in {text:?}");
        assert!(!contains_any(text, ALL), "contains_any disagrees on {text:?}");
    }

    /// `payload` + its Luhn check digit, by the textbook formula.
    fn with_check_digit(payload: &str) -> String {
        let sum: u32 = payload
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, c)| {
                let d = (c - b'0') as u32;
                if i % 2 == 0 {
                    let x = d * 2;
                    x / 10 + x % 10
                } else {
                    d
                }
            })
            .sum();
        format!("{payload}{}", (10 - sum % 10) % 10)
    }

    fn luhn_reference(s: &str) -> bool {
        let digits: Vec<u32> = s.chars().map(|c| c.to_digit(10).unwrap()).collect();
        let mut total = 0;
        for (i, d) in digits.iter().rev().enumerate() {
            total += if i % 2 == 1 { [0, 2, 4, 6, 8, 1, 3, 5, 7, 9][*d as usize] } else { *d };
        }
        total % 10 == 0
    }

    /// ISO 7064 mod 97-10 the long way: letters to numbers in a decimal string, then 9 digits at a time.
    fn iban_mod97_reference(iban: &str) -> u64 {
        let rearranged = format!("{}{}", &iban[4..], &iban[..4]);
        let numeric: String = rearranged
            .chars()
            .map(|c| if c.is_ascii_digit() { c.to_string() } else { (c as u32 - 'A' as u32 + 10).to_string() })
            .collect();
        let mut rem = String::new();
        for chunk in numeric.as_bytes().chunks(7) {
            let s = format!("{rem}{}", std::str::from_utf8(chunk).unwrap());
            rem = (s.parse::<u64>().unwrap() % 97).to_string();
        }
        rem.parse().unwrap()
    }

    // --- API basics ---------------------------------------------------------------------------------

    #[test]
    fn type_names_match_serde() {
        for t in PiiType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(t.as_str()));
            assert_eq!(serde_json::from_value::<PiiType>(serde_json::json!(t.as_str())).unwrap(), t);
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(PiiType::CreditCard.as_str(), "credit_card");
        assert_eq!(PiiType::IpAddress.as_str(), "ip_address");
    }

    #[test]
    fn only_requested_types_are_reported() {
        let text = "mail alice@example.com, call 415-555-0100, host 10.0.0.1";
        let f = scan(text, &[PiiType::Phone]);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].kind, &text[f[0].start..f[0].end]), (PiiType::Phone, "415-555-0100"));
        assert!(scan(text, &[]).is_empty());
        assert!(!contains_any(text, &[PiiType::Ssn, PiiType::Secret]));
        assert!(contains_any(text, &[PiiType::IpAddress]));
        assert_eq!(scan(text, ALL).len(), 3);
    }

    // --- credit cards -------------------------------------------------------------------------------

    #[test]
    fn luhn_valid_test_cards_fire() {
        for (card, brand) in [
            ("4111 1111 1111 1111", "visa"),
            ("5555 5555 5555 4444", "mastercard"),
            ("3782 822463 10005", "amex"),
            ("6011 1111 1111 1117", "discover"),
            ("4111-1111-1111-1111", "visa"),
            ("4111111111111111", "visa"),
            ("2221000000000009", "mastercard"),
            ("3530111333300000", "jcb"),
            ("3056 930902 5904", "diners"),
            ("6200000000000005", "unionpay"),
        ] {
            let text = format!("pay with {card}, thanks");
            assert_eq!(one(&text), (PiiType::CreditCard, brand, card), "{card}");
        }
    }

    #[test]
    fn cards_with_one_digit_changed_do_not_fire() {
        for card in ["4111 1111 1111 1112", "5555 5555 5555 4445", "3782 822463 10006", "6011 1111 1111 1118"] {
            none(&format!("pay with {card}"));
        }
    }

    #[test]
    fn non_iin_and_glued_numbers_do_not_fire() {
        for prefix in ["1234 5678 9012 345", "9999 9999 9999 999", "7000 0000 0000 000", "8123 4567 8901 234"] {
            let card = with_check_digit(&prefix.replace(' ', ""));
            assert!(luhn_valid(&card));
            none(&format!("id {card} and {prefix}{}", &card[15..]));
        }
        none("ts=1714557600123 ms"); // 13-digit epoch millis: no IIN starts with 1
        none("x4111111111111111"); // glued to a word
        none("41111111111111110"); // 17 digits: no Visa length
        none("4111111111111111.25"); // a decimal number
    }

    // --- IBAN ---------------------------------------------------------------------------------------

    #[test]
    fn ibans_fire_and_checksums_matter() {
        for iban in ["GB82 WEST 1234 5698 7654 32", "DE89 3704 0044 0532 0130 00", "FR14 2004 1010 0505 0001 3M02 606"]
        {
            assert!(iban_valid(iban), "{iban}");
            assert_eq!(one(&format!("IBAN: {iban}.")), (PiiType::Iban, "iban", iban));
            let compact = iban.replace(' ', "");
            assert!(iban_valid(&compact));
            assert_eq!(one(&format!("\"{compact}\"")), (PiiType::Iban, "iban", compact.as_str()));
            // A changed check digit.
            let bad = format!("{}{}{}", &iban[..3], (iban.as_bytes()[3] - b'0' + 1) % 10, &iban[4..]);
            assert!(!iban_valid(&bad), "{bad}");
            none(&format!("IBAN: {bad}."));
        }
        assert!(iban_valid("gb82west12345698765432"));
        assert!(!iban_valid("GB82 WEST 1234 5698 7654 3")); // length
        assert!(!iban_valid("ZZ82WEST12345698765432")); // unknown country
        assert!(!iban_valid("GB82-WEST-1234-5698-7654-32"));
        assert!(!iban_valid(""));
        // The country's length ends the IBAN: what follows is not part of it.
        assert_eq!(one("GB82 WEST 1234 5698 7654 32 99").2, "GB82 WEST 1234 5698 7654 32");
        none("GB82 WEST 1234 5698 7654 3"); // too short
        none("GB82 WEST 12345 698 7654 32"); // not grouped by four
    }

    // --- SSN ----------------------------------------------------------------------------------------

    #[test]
    fn ssns() {
        assert_eq!(one("SSN 123-45-6789."), (PiiType::Ssn, "ssn", "123-45-6789"));
        assert_eq!(one("ssn: 078 05 1120"), (PiiType::Ssn, "ssn", "078 05 1120"));
        for bad in ["000-12-3456", "666-12-3456", "900-12-3456", "999-12-3456", "123-00-4567", "123-45-0000"] {
            none(&format!("SSN {bad}"));
        }
        none("ssn 123456789"); // unformatted: too many ids look like this
        none("1234-56-7890");
        none("123-45-67890");
        none("A-123-45-6789");
        none("123-45-6789-1");
        none("12 123 45 6789 1");
    }

    // --- phone --------------------------------------------------------------------------------------

    #[test]
    fn phones() {
        for p in ["+1 (415) 555-0100", "+14155550100", "+44 20 7946 0958", "+49-30-1234567", "+33.1.23.45.67.89"] {
            assert_eq!(one(&format!("call {p} now")), (PiiType::Phone, "e164", p), "{p}");
        }
        for p in ["(415) 555-0100", "(415)555-0100", "415-555-0100", "415.555.0100", "1-415-555-0100"] {
            assert_eq!(one(&format!("call {p}.")), (PiiType::Phone, "nanp", p), "{p}");
        }
    }

    #[test]
    fn phone_like_numbers_that_are_not_phones() {
        none("order 100-555-0199 shipped"); // NANP area codes never start with 0 or 1
        none("ref 123-456-7890");
        none("ORD-415-555-0100"); // an order number glued to its prefix
        none("SKU 415-555-01000");
        none("call 415 555 0100"); // space-separated NANP: too close to ordinary number lists
        none("id 4155550100 and ts 1714557600");
        none("2024-05-01T12:34:56+05:30");
        none("+1234 points");
        none("x+14155550100");
        assert_eq!(one("192.168.100.200").0, PiiType::IpAddress); // an address, not a 3-3-4 phone number
        // Documented: a bare `#415-555-0100` is indistinguishable from a phone number and fires.
        assert_eq!(one("#415-555-0100").0, PiiType::Phone);
    }

    // --- IP addresses -------------------------------------------------------------------------------

    #[test]
    fn ipv4() {
        for ip in ["127.0.0.1", "10.0.0.1", "192.168.1.254", "8.8.8.8", "255.255.255.255", "0.0.0.0"] {
            assert_eq!(one(&format!("host {ip}.")), (PiiType::IpAddress, "ipv4", ip), "{ip}");
        }
        assert_eq!(one("http://10.1.2.3:8080/x").2, "10.1.2.3");
        assert_eq!(one("cidr 10.0.0.0/8").2, "10.0.0.0");
        for not in ["1.2.3.4.5", "v1.2.3.4", "256.1.1.1", "01.02.03.04", "1.2.3", "x.1.2.3.4", "1.2.3.4a"] {
            none(&format!("see {not} here"));
        }
    }

    #[test]
    fn ipv6() {
        for ip in [
            "2001:db8::1",
            "fe80::1ff:fe23:4567:890a",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "::ffff:192.0.2.1",
            "2001:db8:0:0:1:0:0:1",
        ] {
            assert_eq!(one(&format!("addr {ip}.")), (PiiType::IpAddress, "ipv6", ip), "{ip}");
        }
        assert_eq!(one("curl http://[2001:db8::1]:443/").2, "2001:db8::1");
        assert_eq!(one("ping fe80::1ff:fe23:4567:890a%eth0").2, "fe80::1ff:fe23:4567:890a");
        for not in [
            "::",
            "::1",
            "a::b",
            "dead::beef",
            "use std::net::Ipv6Addr;",
            "let x = u32::MAX;",
            "xs[1::2]",
            "12:34:56",
            "00:1a:2b:3c:4d:5e",
            "at 2024-05-01T12:34:56.789Z",
            "x2001:db8::1",
        ] {
            none(not);
        }
    }

    // --- e-mail -------------------------------------------------------------------------------------

    #[test]
    fn emails() {
        assert_eq!(one("mail alice@example.com."), (PiiType::Email, "email", "alice@example.com"));
        assert_eq!(one("<Bob.Smith+tag@mail.example.co.uk>").2, "Bob.Smith+tag@mail.example.co.uk");
        assert_eq!(one("mailto:alice@example.com").2, "alice@example.com");
        assert_eq!(one("{\"email\":\"carol_99@sub-domain.example.org\"}").2, "carol_99@sub-domain.example.org");
        for not in [
            "git clone git@github.com:owner/repo.git", // SSH remote
            "ssh://git@github.com/owner/repo",
            "https://user@example.com/path",
            "@Override",
            "npm i @types/node lodash@4.17.21",
            "ping user@localhost",
            "icon@2x.png",
            "a@b.c",
            "trailing.@example.com",
            "a..b@example.com",
        ] {
            none(not);
        }
    }

    // --- secrets ------------------------------------------------------------------------------------

    fn secret(text: &str) -> (&'static str, &str) {
        let (kind, rule, m) = one(text);
        assert_eq!(kind, PiiType::Secret, "{text}");
        (rule, m)
    }

    const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn aws_keys() {
        assert_eq!(secret("key = \"AKIAIOSFODNN7EXAMPLE\";"), ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"));
        assert_eq!(secret("ASIAY34FZKBOKMUTVV7A").0, "aws_access_key_id");
        none("AKIAIOSFODNN7EXAMPL");
        none("AKIAIOSFODNN7EXAMPLEX");
        none("AKIAiosfodnn7example");
        none("XAKIAIOSFODNN7EXAMPLE");

        let json = format!(r#"{{"output": "AWS_SECRET_ACCESS_KEY={AWS_SECRET}"}}"#);
        assert_eq!(secret(&json), ("aws_secret_access_key", AWS_SECRET));
        assert_eq!(secret(&format!("aws_secret_access_key = {AWS_SECRET}\n")).0, "aws_secret_access_key");
        assert_eq!(secret(&format!("export AWS_SECRET_ACCESS_KEY=\"{AWS_SECRET}\"")).1, AWS_SECRET);
        assert_eq!(secret(&format!("{{ secretAccessKey: '{AWS_SECRET}' }}")).0, "aws_secret_access_key");
        // Near misses: 39 characters is no AWS secret (the generic rule may still see a random string), and a
        // reference is not a value.
        assert_ne!(secret(&format!("aws_secret_access_key = {}", &AWS_SECRET[..39])).0, "aws_secret_access_key");
        none("aws_secret_access_key = ${AWS_SECRET_ACCESS_KEY}");
    }

    #[test]
    fn github_tokens() {
        let t = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789";
        assert_eq!(secret(&format!("git push https://{t}@github.com/o/r")), ("github_token", t));
        assert_eq!(secret(&format!("GITHUB_TOKEN={t}")), ("github_token", t)); // beats generic_secret
        for p in ["gho_", "ghu_", "ghs_", "ghr_"] {
            let t = format!("{p}{}", &t[4..]);
            assert_eq!(secret(&format!("`{t}`")).0, "github_token");
        }
        none(&format!("ghp_{}", &t[5..])); // 35
        none(&format!("{t}x")); // 37
        let body = "11ABCDEFG0123456789abcd_".repeat(4);
        let pat = format!("github_pat_{}", &body[..82]);
        assert_eq!(secret(&format!("{pat}\n")), ("github_pat", pat.as_str()));
        none(&format!("github_pat_{}", &body[..81]));
    }

    #[test]
    fn openai_and_anthropic_keys() {
        let proj = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_Q-7";
        assert_eq!(secret(&format!("OPENAI_API_KEY={proj}")), ("openai_api_key", proj));
        assert_eq!(secret(&format!("new OpenAI({{ apiKey: \"{proj}\" }})")), ("openai_api_key", proj));
        let legacy = format!("sk-{}", "aB3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf6hIj9kLm2n");
        assert_eq!(legacy.len(), 51);
        assert_eq!(secret(&format!("key: {legacy}")).0, "openai_api_key");
        none(&legacy[..50]);
        none("sk-proj-short-name");
        none("sk-proj-all-lowercase-words-without-digits");
        none("the task-runner and risk-averse desk-bound folk");

        let body = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_Q-7".repeat(3);
        let ant = format!("sk-ant-api03-{}AA", &body[..93]);
        assert_eq!(secret(&format!("x-api-key: {ant}\n")), ("anthropic_api_key", ant.as_str()));
        let admin = format!("sk-ant-admin01-{}AA", &body[..93]);
        assert_eq!(secret(&format!("\"{admin}\"")).0, "anthropic_admin_key");
        none("sk-ant-api03-abc");
    }

    #[test]
    fn slack_stripe_google() {
        let slack = "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx";
        assert_eq!(secret(&format!("SLACK={slack} ")), ("slack_token", slack));
        assert_eq!(secret("xapp-1-A0123456789-1234567890123-abcdef0123456789").0, "slack_token");
        none("xoxb-not-a-real-token-at-all");

        let stripe = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
        assert_eq!(secret(&format!("Stripe::API.key = '{stripe}'")), ("stripe_key", stripe));
        assert_eq!(secret("rk_live_4eC39HqLyjWDarjtT1zdp7dcXYZ").0, "stripe_key");
        none("sk_live_4eC39HqLyjWDarjt");
        none("sk_test_4eC39HqLyjWDarjtT1zdp7dc");

        let google = "AIzaSyA-1234567890abcdefghijklmnopqrstu";
        assert_eq!(secret(&format!("?key={google}&q=1")), ("google_api_key", google));
        none(&google[..38]);
    }

    #[test]
    fn private_keys() {
        let body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0";
        let pem = format!("-----BEGIN RSA PRIVATE KEY-----\n{body}\n{body}\n-----END RSA PRIVATE KEY-----");
        assert_eq!(secret(&format!("cat id_rsa\n{pem}\n$ ")), ("private_key", pem.as_str()));
        // Inside a JSON tool result, newlines escaped.
        let json = serde_json::json!({"output": pem}).to_string();
        let (rule, m) = secret(&json);
        assert_eq!(rule, "private_key");
        assert!(m.starts_with("-----BEGIN RSA") && m.ends_with("PRIVATE KEY-----"));
        // Truncated: through the end of the body.
        let cut = format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n{body}\n");
        assert_eq!(secret(&cut).1, cut.trim_end());
        none(&format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----"));
        none(&format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----"));
        none("grep for -----BEGIN PRIVATE KEY----- lines");
        none("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----");
    }

    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    #[test]
    fn jwts() {
        assert_eq!(secret(&format!("Authorization: Bearer {JWT}\r\n")), ("jwt", JWT));
        assert_eq!(secret(&format!("{{\"id_token\": \"{JWT}\"}}")), ("jwt", JWT)); // beats generic_secret
        // Header without "alg", two segments, five segments.
        none("eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.c2lnbmF0dXJl");
        none("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0");
        none(&format!("{JWT}.eyJhbGci.c2ln"));
    }

    #[test]
    fn generic_secrets() {
        assert_eq!(secret("DB_PASSWORD=9fK2mQ7xLp4vR8sT\n"), ("generic_secret", "9fK2mQ7xLp4vR8sT"));
        assert_eq!(secret(r#"{"api_key": "a8Fk29dLq0Zx7Vb3Nm5T"}"#).1, "a8Fk29dLq0Zx7Vb3Nm5T");
        assert_eq!(secret(r#"{"output": "{\"clientSecret\": \"Qm9vW2x7Lp0sT4rE8yU1\"}"}"#).1, "Qm9vW2x7Lp0sT4rE8yU1");
        assert_eq!(secret("password: 'Tr0ub4dor&3xK9#mQ'").1, "Tr0ub4dor&3xK9#mQ");
        assert_eq!(secret("let api_key = \"Zk8#pL2@vN5!qR7x\";").1, "Zk8#pL2@vN5!qR7x");
        assert_eq!(secret("curl 'https://x.test/v1?token=Ab12Cd34Ef56Gh78Ij90&q=2'").1, "Ab12Cd34Ef56Gh78Ij90");
        for not in [
            "password = \"changeme\"",
            "password = \"aaaaaaaaaaaaaaaaaaaaaaaa\"",
            "password = \"${DB_PASSWORD}\"",
            "secret: \"{{ secrets.API_TOKEN }}\"",
            "token = tokenizer.encode(text, add_special_tokens=True)",
            "api_key=settings.OPENAI_API_KEY_V2",
            "API_KEY=OPENAI_API_KEY_2",
            "\"max_tokens\": 4096,",
            "token_url = \"https://oauth2.googleapis.com/token\"",
            "\"token_file\": \"/var/run/secrets/kubernetes.io/serviceaccount/token\"",
            "secretName: tls-secret-2024-prod",
            "if password == \"Zk8pL2vN5qR7xW3y\" {",
            "password: the quick brown fox jumps over 12 lazy dogs",
            "\"password\": \"correct horse battery staple 42\"",
            "token: xxxxxxxxxxxxxxxxxxxxxxxx1",
            "let secret = compute_secret(&key);",
            "Token::Ident(name) => { ... }",
        ] {
            none(not);
        }
    }

    #[test]
    fn url_passwords() {
        assert_eq!(
            secret("DATABASE_URL=postgres://admin:s3cr3tP4ss@db.internal:5432/app"),
            ("url_password", "s3cr3tP4ss")
        );
        none("https://user@example.com/path");
        none("redis://:${REDIS_PASSWORD}@cache:6379");
        none("https://user:****@example.com");
    }

    #[test]
    fn secrets_inside_code() {
        let code = format!(
            "fn client() -> Client {{\n    // TODO: move to vault\n    let key = \"AKIAIOSFODNN7EXAMPLE\";\n    let secret = \"{AWS_SECRET}\";\n    Client::new(key, secret)\n}}\n"
        );
        let f = found(&code);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0], (PiiType::Secret, "aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"));
        assert_eq!((f[1].0, f[1].2), (PiiType::Secret, AWS_SECRET)); // generic: the name has no `aws`
    }

    // --- no false positives on ordinary developer text -----------------------------------------------

    #[test]
    fn no_false_positives_on_ids_versions_and_times() {
        let text = r#"
Request 550e8400-e29b-41d4-a716-446655440000 (trace 123e4567-e89b-12d3-a456-426614174000) finished in 12.5 ms.
commit 3f9a2c1b7d8e4f6a9b0c1d2e3f4a5b6c7d8e9f0a, parent 9fceb02d0ae598e95dc970b74767f19372d61af8 (HEAD -> main)
Bumped serde from 1.0.197 to 1.0.203, tokio 1.37.0, version 2.0.0-rc.1+build.5, node v20.11.1.
At 2024-05-01T12:34:56.789Z and 2024-05-01 12:34:56+00:00 (epoch 1714566896, 1714566896789 ms).
{"id": 184467, "price": 1299.99, "qty": 3, "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}
let total: u64 = items.iter().map(|i| i.price * i.qty).sum(); assert!(x <= u32::MAX as u64);
for i in 0..=255 { buf[i] = (i * 31 % 256) as u8; } // 0x1F, 0xDEADBEEF
The meeting is at 10:30; room 4.12; page 23-45; ISBN 978-3-16-148410-0; tel. ext 1234.
max_tokens: 4096, "temperature": 0.7, "top_p": 0.95, "tokens_used": 18234567
"#;
        none(text);
    }

    #[test]
    fn ips_that_are_ips_fire() {
        // Loopback and private addresses are addresses: they fire, and policies can drop `ip_address`.
        assert_eq!(one("listening on 127.0.0.1:3000").2, "127.0.0.1");
    }

    // --- output shape -------------------------------------------------------------------------------

    #[test]
    fn redact_replaces_findings() {
        let text = "email alice@example.com and card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE.";
        let f = scan(text, ALL);
        assert_eq!(redact(text, &f), "email [REDACTED:email] and card [REDACTED:credit_card], key [REDACTED:secret].");
        assert_eq!(redact(text, &[]), text);
        // Findings not from `scan` are skipped, not a panic.
        let bogus = [Finding { kind: PiiType::Email, rule: "email", start: 3, end: 999 }];
        assert_eq!(redact(text, &bogus), text);
    }

    #[test]
    fn multibyte_text_around_findings() {
        let text =
            "Grüße — écrivez à alice@example.com → carte 4111 1111 1111 1111 日本 192.168.0.1 ✓ ☎ +49 30 1234567 🙂";
        let f = scan(text, ALL);
        let got: Vec<&str> = f.iter().map(|f| &text[f.start..f.end]).collect();
        assert_eq!(got, ["alice@example.com", "4111 1111 1111 1111", "192.168.0.1", "+49 30 1234567"]);
        assert!(f.windows(2).all(|w| w[0].end <= w[1].start));
        assert_eq!(
            redact(text, &f),
            "Grüße — écrivez à [REDACTED:email] → carte [REDACTED:credit_card] 日本 [REDACTED:ip_address] ✓ ☎ [REDACTED:phone] 🙂"
        );
    }

    #[test]
    fn overlaps_keep_the_longer_then_the_more_specific() {
        // A generic value that is a JWT: one finding, the specific rule.
        assert_eq!(found(&format!("token = \"{JWT}\"")), vec![(PiiType::Secret, "jwt", JWT)]);
        // IPv4 inside an IPv6 address: one finding.
        assert_eq!(found("::ffff:10.0.0.1").len(), 1);
        let text = "a 4111 1111 1111 1111 b 415-555-0100 c alice@example.com d 10.0.0.1 e";
        let f = scan(text, ALL);
        assert!(f.windows(2).all(|w| w[0].end <= w[1].start && w[0].start < w[1].start));
    }

    // --- properties ---------------------------------------------------------------------------------

    const COUNTRIES: &[&str] = &["GB", "DE", "FR", "NL", "NO", "BE", "MT", "RU", "LC", "CH", "ES", "PL", "BR"];

    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("4111".to_string()),
            Just(" ".to_string()),
            Just("-".to_string()),
            Just(".".to_string()),
            Just(":".to_string()),
            Just("@".to_string()),
            Just("+1".to_string()),
            Just("(".to_string()),
            Just("\"".to_string()),
            Just("=".to_string()),
            Just("é".to_string()),
            Just("日本".to_string()),
            Just("🙂".to_string()),
            Just("eyJhbGciOiJIUzI1NiJ9".to_string()),
            Just("sk-".to_string()),
            Just("AKIA".to_string()),
            Just("GB82".to_string()),
            Just("password=".to_string()),
            Just("example.com".to_string()),
            Just("::".to_string()),
            Just("-----BEGIN PRIVATE KEY-----".to_string()),
            Just("-----END PRIVATE KEY-----".to_string()),
            "[0-9]{1,5}",
            "[a-zA-Z0-9_]{1,12}",
            "[a-f0-9:]{1,8}",
            any::<char>().prop_map(String::from),
        ]
    }

    fn check_invariants(text: &str) -> Result<(), TestCaseError> {
        let f = scan(text, ALL);
        for x in &f {
            prop_assert!(x.start < x.end && x.end <= text.len());
            prop_assert!(text.get(x.start..x.end).is_some(), "{x:?} is not on char boundaries");
        }
        prop_assert!(f.windows(2).all(|w| w[0].end <= w[1].start), "overlap or disorder: {f:?}");
        prop_assert_eq!(contains_any(text, ALL), !f.is_empty());
        let _ = redact(text, &f);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn luhn_agrees_with_reference(s in "[0-9]{1,40}") {
            prop_assert_eq!(luhn_valid(&s), luhn_reference(&s));
        }

        #[test]
        fn luhn_rejects_non_digits(s in "[0-9]{0,8}[^0-9][0-9]{0,8}") {
            prop_assert!(!luhn_valid(&s));
        }

        #[test]
        fn appending_the_check_digit_makes_luhn_valid(s in "[0-9]{0,30}") {
            prop_assert!(luhn_valid(&with_check_digit(&s)));
        }

        #[test]
        fn iban_agrees_with_reference(c in 0..COUNTRIES.len(), check in "[0-9]{2}", bban in "[A-Z0-9]{30}") {
            let cc = COUNTRIES[c];
            let len = iban_len(cc.as_bytes()[0], cc.as_bytes()[1]).unwrap();
            let iban = format!("{cc}{check}{}", &bban[..len - 4]);
            prop_assert_eq!(iban_valid(&iban), iban_mod97_reference(&iban) == 1);
            // The right check digits make it valid, in compact and print form.
            let r = iban_mod97_reference(&format!("{cc}00{}", &bban[..len - 4]));
            let good = format!("{cc}{:02}{}", 98 - r, &bban[..len - 4]);
            prop_assert!(iban_valid(&good), "{}", good);
            let spaced: Vec<String> = good.as_bytes().chunks(4).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
            let spaced = spaced.join(" ");
            prop_assert!(iban_valid(&spaced));
            let f = scan(&format!("pay to {spaced} today"), &[PiiType::Iban]);
            prop_assert_eq!(f.len(), 1);
        }

        #[test]
        fn scan_never_panics_on_unicode(s in any::<String>()) {
            check_invariants(&s)?;
        }

        #[test]
        fn scan_never_panics_on_pii_shaped_soup(parts in prop::collection::vec(fragment(), 0..48)) {
            check_invariants(&parts.concat())?;
        }
    }
}
