//! PII and secret detectors for the gateway's outgoing-request scan (`deny_pii_in_llm_request`).
//!
//! Every outgoing LLM request (system prompt, every message, tool results) goes through [`scan`] or
//! [`contains_any`], so the scanner is built to be accurate (a checksum or a structural check passes before
//! anything fires) and fast (hundreds of MB/s on one core). It is pure: no IO, no allocation per byte.
//!
//! # How it scans
//!
//! First the text is **normalised** ((`normalise.rs`)): `%XX`, HTML references and `\u` escapes
//! decoded (up to three levels, so `%2540` is `@`), zero-width and other format characters and combining marks
//! removed, NFKC applied, Unicode spaces, dashes and decimal digits folded to ASCII, and Cyrillic and Greek
//! look-alikes folded to Latin letters. ASCII text without an escape skips this entirely (one `is_ascii` and
//! one `memchr3`). Findings are mapped back to the original: a span covers every byte it was spelled with.
//! Inline base64 documents are decoded by [`for_each_document`] for the rule to scan as text.
//!
//! No regex ever runs over the whole input. There are three passes, each over the normalised bytes:
//!
//! 1. **`@` pass** (`memchr`): at each `@`, scan outward for an e-mail's local part and domain, or for the
//!    `user:password` of a URL (`https://user:pass@host`).
//! 2. **Secret pass**: one multi-pattern search (aho-corasick's SIMD "Teddy" searcher, or its automaton where
//!    the CPU lacks SIMD) over fixed prefixes (`AKIA`, `ghp_`, `sk-`, `eyJ`, `-----BEGIN `, ...) and key words
//!    (`password`, `secret`, `token`, `api_key`, ... in lower, UPPER and Title case). Each hit is validated by a
//!    hand-written shape check on a short window after it.
//! 3. **Digit pass**: jump from digit to digit (eight bytes at a time) and classify the *token* (maximal
//!    `[A-Za-z0-9_]` run) around each one: a pure number is tried as the start of a phone number, SSN, card or IPv4
//!    address; `CC00…` (either case) as an IBAN; letters glued to a 13–19 digit run (`cc4111…`) as a card; a
//!    hex token next to a `:` as an IPv6 address. Other tokens that are identifiers or hashes (`sha256`,
//!    `3f9a2c1`, `550e8400`) are skipped whole, so the cost is one look per token.
//!
//! Every per-hit check looks at a bounded window, so adversarial input (`token=` repeated, thousands of
//! `-----BEGIN` lines) stays linear.
//!
//! Candidates from the passes are then sorted and made non-overlapping: the longer finding wins, and at equal
//! length the more specific one (a named secret over `generic_secret`, a card over a phone number, ...).
//! Spans are on `char` boundaries of the text as given.
//!
//! # Detectors and decisions
//!
//! | type | fires on | deliberately does not fire on |
//! |------|----------|-------------------------------|
//! | `email` | `local@domain.tld`, local part `[A-Za-z0-9._%+-]` or Unicode letters and digits, ≥ 2 labels (IDN labels too), a TLD of ≥ 2 ASCII letters, Unicode letters or punycode (`xn--…`) | `git@github.com:owner/repo` (an SSH remote, not a person), URL userinfo (`ssh://git@host`, `https://u:p@host`: see `url_password`), retina image names (`icon@2x.png`), `@decorators`, `pkg@1.2.3` |
//! | `phone` | E.164: `+` then 8–15 digits with single spaces, dashes, dots or parentheses between; NANP: `(415) 555-0100`, `415-555-0100`, `415.555.0100` (area and exchange start with 2–9), optionally after `1-` | bare digit runs (timestamps, ids), space-separated NANP (`415 555 0100`), dates, numbers glued to a word (`ORD-415-555-0100`), `+` right after a digit (`…T12:00+05:30`) |
//! | `ssn` | `ddd-dd-dddd` with a dash, dot, space or tab (the same twice) between the groups: area not 000/666/900–999, group not 00, serial not 0000 | unformatted 9-digit runs (far too many ids and numbers look like one); ids that go on (`123-45-6789-abc`, `123-45-6789.v2`, `x-123-45-6789`); mixed separators (`802.11-2016`); a number after a version word (`version 123.45.6789`) |
//! | `credit_card` | 13–19 digits, plain, glued to up to 8 letters (`cc4111…`), or grouped (first group 4–8 digits, then 3–8, each after one to three separators of any kind and mix: blank, tab, line break, dash, dot, slash), a known IIN for that length (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay) and Luhn-valid | longer digit runs, non-IIN numbers (`1…` timestamps in ms), Luhn failures, groups of one or two digits |
//! | `iban` | `CC00` + BBAN in either case, compact or in groups of any size after one or two blanks, dashes, dots or slashes; the country's length from the registry table and mod-97 == 1 | unknown country codes; one that is part of a longer dashed or dotted name (a UUID such as `ba9273f4-96b0-48ae-a68e-…`) |
//! | `ip_address` | IPv4 dotted quads (octets 0–255, no leading zeros) not glued to a word or to more dotted numbers; IPv6 full and compressed, checked by `Ipv6Addr`; only addresses that could be a person's (see `ip.rs`) | loopback, private, link-local, documentation, unspecified, multicast, reserved, CGNAT; the public DNS resolvers (`8.8.8.8`, `1.1.1.1`, …); networks (`52.0.0.0/8`); a number after a version word (`version 1.0.0.12`), four single digits (`2.0.0.1`); `1.2.3.4.5`, `v1.2.3.4`; IPv6 with no group of 3+ hex digits, which skips `::`, `::1` and Python slices (`[1::2]`), and Rust paths (`a::b`) |
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
//! version number that is a public address, has a part of two or more digits and no version word or `v` before
//! it (`bump to 1.0.0.12`) fires
//! as an IPv4 address; a `+` followed by 8+ digits fires as a phone number; a space-separated run after an
//! E.164 number can be absorbed into it; card digits split into groups of one or two are not seen (a hex dump
//! or a list of small numbers would fire far too often); a 20-character lowercase code that happens to pass
//! mod-97 for its country prefix fires as an IBAN (1 in 97 of the codes of the right shape).

mod card;
mod classes;
mod document;
mod email;
mod iban;
mod ip;
mod normalise;
mod numeric;
mod phone;
mod secrets;
mod ssn;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use document::{DocumentText, MAX_DOCUMENT_BYTES, for_each_document, map_documents};

use classes::luhn;
use iban::{iban_checksum_ok, iban_len};

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

    pub(super) const fn bit(self) -> u8 {
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
/// Offsets are into `text` as given: a finding in the normalised text covers every original byte it came
/// from (a removed zero-width space inside it, the whole `%40` a character was decoded from).
pub fn scan(text: &str, types: &[PiiType]) -> Vec<Finding> {
    let mut out = Out::new(types, false);
    let Some(n) = normalise::normalise(text) else {
        run(text.as_bytes(), &mut out);
        return resolve(out.found);
    };
    run(n.text.as_bytes(), &mut out);
    let mut mapped: Vec<Finding> = Vec::with_capacity(out.found.len());
    for mut f in resolve(out.found) {
        (f.start, f.end) = n.to_original(f.start, f.end);
        match mapped.last_mut() {
            // Two findings from one original unit (an NFKC expansion, one escape): one span covers both.
            Some(last) if f.start < last.end => last.end = last.end.max(f.end),
            _ => mapped.push(f),
        }
    }
    mapped
}

/// True if [`scan`] would return anything; stops at the first candidate.
pub fn contains_any(text: &str, types: &[PiiType]) -> bool {
    let mut out = Out::new(types, true);
    match normalise::normalise(text) {
        Some(n) => run(n.text.as_bytes(), &mut out),
        None => run(text.as_bytes(), &mut out),
    }
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
pub(super) struct Out {
    pub(super) found: Vec<Finding>,
    mask: u8,
    first_only: bool,
}

impl Out {
    fn new(types: &[PiiType], first_only: bool) -> Out {
        Out { found: Vec::new(), mask: types.iter().fold(0, |m, t| m | t.bit()), first_only }
    }

    pub(super) fn wants(&self, kind: PiiType) -> bool {
        self.mask & kind.bit() != 0
    }

    pub(super) fn push(&mut self, kind: PiiType, rule: &'static str, start: usize, end: usize) {
        if self.wants(kind) {
            self.found.push(Finding { kind, rule, start, end });
        }
    }

    pub(super) fn done(&self) -> bool {
        self.first_only && !self.found.is_empty()
    }
}

pub(super) const NUMERIC: u8 = PiiType::Phone.bit()
    | PiiType::Ssn.bit()
    | PiiType::CreditCard.bit()
    | PiiType::Iban.bit()
    | PiiType::IpAddress.bit();

fn run(b: &[u8], out: &mut Out) {
    if out.mask == 0 || b.is_empty() {
        return;
    }
    if out.wants(PiiType::Email) || out.wants(PiiType::Secret) {
        email::at_signs(b, out);
    }
    if !out.done() && out.wants(PiiType::Secret) {
        secrets::secrets(b, out);
    }
    if !out.done() && out.mask & NUMERIC != 0 {
        numeric::numeric(b, out);
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
