//! Pass 2: secrets — an Aho-Corasick prefilter, then a shape check on a small window.

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use memchr::memmem;

use super::classes::*;
use super::{Out, PiiType};

#[derive(Clone, Copy)]
pub(super) enum Trigger {
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

pub(super) const PREFIXES: &[(&str, Trigger)] = &[
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
pub(super) const KEYWORDS: &[&str] = &[
    "password", "Password", "PASSWORD", "passwd", "Passwd", "PASSWD", "secret", "Secret", "SECRET", "token", "Token",
    "TOKEN", "api_key", "Api_Key", "API_KEY", "apikey", "apiKey", "ApiKey", "APIKEY", "api-key", "Api-Key", "API-KEY",
];

/// The prefilter: Teddy (SIMD) through `packed::Searcher` where the CPU has it — `AhoCorasick` with this many
/// patterns picks a byte-set prefilter that is several times slower here — else a plain automaton.
pub(super) enum Finder {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

pub(super) static SECRET_FINDER: LazyLock<(Finder, Vec<Trigger>)> = LazyLock::new(|| {
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

pub(super) fn secrets(b: &[u8], out: &mut Out) {
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
pub(super) fn aws_key_id(b: &[u8], s: usize) -> Option<usize> {
    let ok = !has(before(b, s), ALNUM) && run_len(b, s + 4, UPPER | DIGIT, 17) == 16 && !has(at(b, s + 20), ALNUM);
    ok.then_some(s + 20)
}

/// `ghp_` & co. + 36 alphanumerics.
pub(super) fn github(b: &[u8], s: usize) -> Option<usize> {
    let ok = !has(before(b, s), WORD) && run_len(b, s + 4, ALNUM, 37) == 36 && !has(at(b, s + 40), WORD);
    ok.then_some(s + 40)
}

/// `github_pat_` + 82 `[A-Za-z0-9_]`.
pub(super) fn github_pat(b: &[u8], s: usize) -> Option<usize> {
    (!has(before(b, s), WORD) && run_len(b, s + 11, WORD, 83) == 82).then_some(s + 93)
}

pub(super) fn mixed_case_digits(v: &[u8]) -> bool {
    v.iter().any(u8::is_ascii_digit) && v.iter().any(u8::is_ascii_uppercase) && v.iter().any(u8::is_ascii_lowercase)
}

/// `sk-…`: Anthropic (`sk-ant-`), OpenAI project/service/admin keys, or a legacy OpenAI key.
pub(super) fn sk(b: &[u8], s: usize) -> Option<(usize, &'static str)> {
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
pub(super) fn stripe(b: &[u8], s: usize) -> Option<usize> {
    if has(before(b, s), WORD) {
        return None;
    }
    let k = run_len(b, s + 8, ALNUM, 256);
    ((24..256).contains(&k) && !has(at(b, s + 8 + k), WORD)).then_some(s + 8 + k)
}

/// `xoxb-`/`xoxp-`/`xapp-` + a digit-led, dash-separated body (`xoxb-123-456-abc…`).
pub(super) fn slack(b: &[u8], s: usize) -> Option<usize> {
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
pub(super) fn google(b: &[u8], s: usize) -> Option<usize> {
    (!has(before(b, s), B64URL) && run_len(b, s + 4, B64URL, 36) == 35).then_some(s + 39)
}

pub(super) fn count_b64(v: &[u8]) -> usize {
    v.iter().filter(|&&c| has(c, B64STD)).count()
}

/// Where the next `-----END ` is, remembered so that many BEGIN lines cost one search (no quadratic input).
#[derive(Default)]
pub(super) struct EndCache {
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
pub(super) fn pem(b: &[u8], s: usize, ends: &mut EndCache) -> Option<usize> {
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

pub(super) fn b64url_decode(s: &[u8]) -> Option<Vec<u8>> {
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
pub(super) fn jwt(b: &[u8], s: usize) -> Option<usize> {
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
pub(super) const NOT_SECRET_SUFFIXES: &[&[u8]] = &[
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

pub(super) fn skip_blank(b: &[u8], mut j: usize) -> usize {
    let s = j;
    while j - s < 8 && matches!(at(b, j), b' ' | b'\t') {
        j += 1;
    }
    j
}

pub(super) const MAX_VALUE: usize = 256;

/// The value after an assignment: `"…"`, `'…'`, `` `…` ``, `\"…\"` (inside JSON) or bare. Quoted values with
/// whitespace are prose, not secrets.
pub(super) fn value_at(b: &[u8], mut j: usize) -> Option<(usize, usize, bool)> {
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
pub(super) fn looks_like_identifier(v: &[u8]) -> bool {
    let path = v.split(|&c| c == b'.').all(|seg| {
        !seg.is_empty() && (seg[0].is_ascii_alphabetic() || seg[0] == b'_') && seg.iter().all(|&c| has(c, WORD))
    });
    let constant = v[0].is_ascii_uppercase()
        && v.contains(&b'_')
        && v.iter().all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
    (path && v.contains(&b'.')) || constant
}

/// A key word (`password`, `secret`, `token`, `api_key`, ...) at `ks..ke`: is it a name assigned a secret?
pub(super) fn keyword_secret(b: &[u8], ks: usize, ke: usize) -> Option<(usize, usize, &'static str)> {
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

pub(super) fn generic_ok(name: &[u8], v: &[u8], quoted: bool) -> bool {
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
