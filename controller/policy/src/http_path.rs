//! A request path as the server will route it, for rules that judge HTTP requests by their path. Every
//! spelling of one path gives the same segments: percent-encoding (also of `/`, and encoded twice), `\` for
//! `/`, doubled and trailing slashes, `.` and `..` segments, a query or fragment, an absolute-form URL.
//! Segments keep their case; callers compare the fixed ones with `eq_ignore_ascii_case`.

/// How many rounds of percent-decoding are undone (`%252F` → `%2F` → `/`). Decoding more than the server
/// does can only make a path look like more of what rules watch, never less.
const DECODE_ROUNDS: usize = 3;

/// The path's segments, decoded and normalised (see the module).
pub fn segments(raw: &str) -> Vec<String> {
    let path = strip_origin(raw);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut decoded = path.to_owned();
    for _ in 0..DECODE_ROUNDS {
        let next = percent_decode(&decoded);
        if next == decoded {
            break;
        }
        decoded = next;
    }
    let mut out: Vec<String> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_owned()),
        }
    }
    out
}

/// The value of a query parameter (decoded once), e.g. `service` of `/o/r.git/info/refs?service=…`.
pub fn query_param(raw: &str, name: &str) -> Option<String> {
    let query = strip_origin(raw).split_once('?')?.1.split('#').next().unwrap_or_default();
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// Every parameter of the query string, as a lenient server may read it: everything after the first `?`
/// (a `#` is no end: a client does not send a fragment, so one in a request is the server's to read), split at
/// `&` and `;`, `+` read as a space. Names are decoded until they stop changing and lower-cased, and cut at a
/// `[` (`force[]` is `force`), so that every spelling of a name is found; values are decoded once, as the
/// server does (decoding more could turn a value the server reads as true into `false`).
pub fn query_pairs(raw: &str) -> Vec<(String, String)> {
    let Some((_, query)) = strip_origin(raw).split_once('?') else { return Vec::new() };
    query
        .split(['&', ';'])
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let mut name = k.replace('+', " ");
            for _ in 0..DECODE_ROUNDS {
                let next = percent_decode(&name);
                if next == name {
                    break;
                }
                name = next;
            }
            let name = name.split('[').next().unwrap_or_default().trim().to_ascii_lowercase();
            (name, percent_decode(&v.replace('+', " ")))
        })
        .collect()
}

/// `https://host/path` → `/path` (a plain-HTTP proxy request is in absolute form).
fn strip_origin(raw: &str) -> &str {
    let lower = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &raw[8..]
    } else if lower.starts_with("http://") {
        &raw[7..]
    } else {
        return raw;
    };
    rest.find(['/', '?', '#']).map_or("", |i| &rest[i..])
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok())
            && let Ok(byte) = u8::from_str_radix(v, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_gives_the_same_segments() {
        let want = vec!["repos", "acme", "app", "git", "refs", "heads", "main"];
        for raw in [
            "/repos/acme/app/git/refs/heads/main",
            "/repos/acme/app/git/refs/heads%2Fmain",
            "/repos/acme/app/git/refs/heads%2fmain",
            "/repos/acme/app/git/refs/heads%252Fmain",
            "//repos//acme/app/git/refs/heads/main/",
            "/repos/acme/app/git/refs/heads/main?force=true",
            "/repos/acme/app/git/refs/heads/main#x",
            "/repos/acme/app/pulls/../git/refs/heads/main",
            "/repos/./acme/app/git/refs/heads/main",
            "/repos\\acme\\app/git/refs/heads/main",
            "https://api.github.com/repos/acme/app/git/refs/heads/main",
            "HTTP://api.github.com/repos/acme/app/git/refs/heads/main",
            "/%72epos/acme/app/git/refs/heads/main",
        ] {
            assert_eq!(segments(raw), want, "{raw}");
        }
        assert_eq!(segments("/Repos/Acme/App"), vec!["Repos", "Acme", "App"], "case is kept");
        assert_eq!(segments("/../../x"), vec!["x"]);
        assert_eq!(segments("/a/%zz/%"), vec!["a", "%zz", "%"]);
    }

    #[test]
    fn no_input_panics() {
        let alphabet = ['/', '%', '2', 'f', '.', '?', '=', 'é', 'h', ':', '\\', 's'];
        let n = alphabet.len();
        for i in 0..n.pow(4) {
            let s: String = (0..4).map(|k| alphabet[(i / n.pow(k)) % n]).collect();
            for t in [s.clone(), format!("https:{s}"), format!("http://{s}")] {
                let _ = segments(&t);
                let _ = query_param(&t, "s");
                let _ = query_pairs(&t);
            }
        }
    }

    #[test]
    fn query_parameters() {
        assert_eq!(
            query_param("/o/r.git/info/refs?service=git-receive-pack", "service").as_deref(),
            Some("git-receive-pack")
        );
        assert_eq!(
            query_param("/o/r.git/info/refs?a=1&service=git%2Dupload-pack", "service").as_deref(),
            Some("git-upload-pack")
        );
        assert_eq!(query_param("/o/r.git/info/refs", "service"), None);
    }

    #[test]
    fn query_pairs_find_every_spelling_of_a_name() {
        let pairs = |raw: &str| query_pairs(raw);
        assert_eq!(pairs("/x?force=true"), vec![("force".into(), "true".into())]);
        assert_eq!(pairs("/x?a=1;FORCE=1"), vec![("a".into(), "1".into()), ("force".into(), "1".into())]);
        assert_eq!(pairs("/x?%66orce=%74rue"), vec![("force".into(), "true".into())]);
        assert_eq!(pairs("/x?%2566orce=%2574rue"), vec![("force".into(), "%74rue".into())], "values once");
        assert_eq!(pairs("/x?force[]=+true"), vec![("force".into(), " true".into())]);
        assert_eq!(pairs("/x#y?force"), vec![("force".into(), String::new())]);
        assert_eq!(pairs("https://h/x?a=b#&force=1")[1], ("force".into(), "1".into()));
        assert!(pairs("/x").is_empty() && pairs("/x?").is_empty() && pairs("https://h?").is_empty());
    }
}
