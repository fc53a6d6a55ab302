//! An Agent's brokered credentials (`spec.credentials`), checked once for every consumer: `paddock validate`
//! (with the field path), the Session reconciler (before it reads a Secret) and local mode. The gateway
//! injects them on the way out; the sandbox never holds them.

use paddock_api::agent::{BrokeredCredential, CredentialScheme};

/// A problem with one entry of `spec.credentials`: the entry, its field and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialProblem {
    pub index: usize,
    /// `host`, `secretName`, `key`, `username` or `header`.
    pub field: &'static str,
    pub message: String,
}

/// Headers the broker may never set: they frame the request or belong to the connection, and one of them
/// set from a Secret would let the Agent's author smuggle a second request or hijack the proxy's own.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "cookie",
];

/// Every problem of `spec.credentials`, in order; empty when all entries are usable.
pub fn credential_problems(credentials: &[BrokeredCredential]) -> Vec<CredentialProblem> {
    let mut out = Vec::new();
    let mut seen: Vec<((String, u16), usize)> = Vec::new();
    for (index, c) in credentials.iter().enumerate() {
        let mut problem = |field, message: String| out.push(CredentialProblem { index, field, message });
        match c.host_port() {
            None => problem(
                "host",
                format!("`{}` is not `host` or `host:port` (an exact DNS name, no wildcard, no scheme)", c.host),
            ),
            Some(hp) => match seen.iter().find(|(h, _)| *h == hp) {
                Some((_, first)) => problem(
                    "host",
                    format!(
                        "`{}:{}` is already brokered by spec.credentials[{first}]; one credential per host",
                        hp.0, hp.1
                    ),
                ),
                None => seen.push((hp, index)),
            },
        }
        if !is_dns_subdomain(&c.secret_name) {
            problem("secretName", format!("`{}` is not a Secret name (lowercase DNS name)", c.secret_name));
        }
        if !is_secret_key(&c.key) {
            problem("key", format!("`{}` is not a Secret key (letters, digits, `-`, `_`, `.`)", c.key));
        }
        match c.scheme {
            CredentialScheme::Bearer | CredentialScheme::Header if c.username.is_some() => {
                problem("username", "only the `basic` scheme takes a username".into())
            }
            CredentialScheme::Basic => match &c.username {
                Some(u) if u.is_empty() || u.contains(':') || u.chars().any(char::is_control) => problem(
                    "username",
                    format!("`{u}` cannot be a Basic user name (not empty, no `:`, no control characters)"),
                ),
                _ => {}
            },
            _ => {}
        }
        match (c.scheme, &c.header) {
            (CredentialScheme::Header, None) => {
                problem("header", "the `header` scheme needs `header`, the header's name (e.g. `X-Api-Key`)".into())
            }
            (CredentialScheme::Header, Some(h)) if !is_header_name(h) => {
                problem("header", format!("`{h}` is not an HTTP header name"))
            }
            (CredentialScheme::Header, Some(h)) if FORBIDDEN_HEADERS.contains(&h.to_ascii_lowercase().as_str()) => {
                problem(
                    "header",
                    format!("`{h}` frames the request or belongs to the connection; it cannot carry a credential"),
                )
            }
            (CredentialScheme::Bearer | CredentialScheme::Basic, Some(_)) => {
                problem("header", "only the `header` scheme takes a header name".into())
            }
            _ => {}
        }
    }
    out
}

/// Every problem of `spec.mcpServers`: each entry's own ([`paddock_api::McpServer::problems`]) and its
/// credential's, as `(server index, field under the server, message)`; the field is empty for the entry.
pub fn mcp_server_problems(servers: &[paddock_api::McpServer]) -> Vec<(usize, String, String)> {
    paddock_api::McpServer::problems(servers)
        .into_iter()
        .map(|(i, f, m)| (i, f.to_owned(), m))
        .chain(mcp_credential_problems(servers))
        .collect()
}

/// Headers of MCP's streamable HTTP transport that the gateway's MCP client sets.
const MCP_CLIENT_HEADERS: &[&str] =
    &["accept", "content-type", "mcp-session-id", "mcp-protocol-version", "last-event-id"];

/// Every problem of the remote MCP servers' `credential`s, checked as brokered credentials for their hosts:
/// `(server index, field under the server, message)`, e.g. `(0, "credential.secretName", …)`.
fn mcp_credential_problems(servers: &[paddock_api::McpServer]) -> Vec<(usize, String, String)> {
    servers
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i, s.brokered_credential()?)))
        .flat_map(|(i, c)| {
            let mut found: Vec<_> = credential_problems(std::slice::from_ref(&c))
                .into_iter()
                // The host is the server's `url`'s.
                .map(|p| {
                    (i, if p.field == "host" { "url".to_owned() } else { format!("credential.{}", p.field) }, p.message)
                })
                .collect();
            // Headers the MCP client sets itself.
            if let Some(h) =
                c.header.as_deref().filter(|h| MCP_CLIENT_HEADERS.contains(&h.to_ascii_lowercase().as_str()))
            {
                found.push((
                    i,
                    "credential.header".into(),
                    format!("`{h}` is set by the gateway's MCP client; it cannot carry a credential"),
                ));
            }
            found
        })
        .collect()
}

/// Whether `value` (a Secret's value) can be sent as a header value: visible ASCII and spaces, nothing that
/// would end the header line.
pub fn is_header_value(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
}

/// A Kubernetes object name (DNS-1123 subdomain).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn is_secret_key(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// RFC 9110 `token`.
fn is_header_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(json: &str) -> Vec<BrokeredCredential> {
        serde_json::from_str(json).unwrap()
    }

    fn problems(json: &str) -> Vec<(usize, &'static str, String)> {
        credential_problems(&creds(json)).into_iter().map(|p| (p.index, p.field, p.message)).collect()
    }

    #[test]
    fn good_credentials_pass() {
        let ok = r#"[
            {"host": "api.github.com", "secretName": "github-bot", "key": "token"},
            {"host": "github.com", "secretName": "github-bot", "key": "token", "scheme": "basic", "username": "x-access-token"},
            {"host": "registry.acme.dev:8443", "secretName": "npm", "key": "api.key", "scheme": "header", "header": "X-Api-Key"}
        ]"#;
        assert_eq!(problems(ok), vec![]);
    }

    #[test]
    fn each_bad_field_is_named() {
        let bad = r#"[
            {"host": "*.github.com", "secretName": "gh", "key": "t"},
            {"host": "https://api.github.com", "secretName": "gh", "key": "t"},
            {"host": "api.github.com", "secretName": "GitHub_Bot", "key": "a/b"},
            {"host": "api.github.com:443", "secretName": "gh", "key": "t"},
            {"host": "a.dev", "secretName": "s", "key": "k", "username": "u"},
            {"host": "b.dev", "secretName": "s", "key": "k", "scheme": "basic", "username": "a:b"},
            {"host": "c.dev", "secretName": "s", "key": "k", "scheme": "header"},
            {"host": "d.dev", "secretName": "s", "key": "k", "scheme": "header", "header": "Transfer-Encoding"},
            {"host": "e.dev", "secretName": "s", "key": "k", "scheme": "header", "header": "X Key"},
            {"host": "f.dev", "secretName": "s", "key": "k", "header": "X-Key"}
        ]"#;
        let got = problems(bad);
        let fields: Vec<(usize, &str)> = got.iter().map(|(i, f, _)| (*i, *f)).collect();
        assert_eq!(
            fields,
            [
                (0, "host"),
                (1, "host"),
                (2, "secretName"),
                (2, "key"),
                (3, "host"),
                (4, "username"),
                (5, "username"),
                (6, "header"),
                (7, "header"),
                (8, "header"),
                (9, "header")
            ]
        );
        assert!(got[4].2.contains("already brokered by spec.credentials[2]"), "{}", got[4].2);
    }

    #[test]
    fn header_values_cannot_end_the_line() {
        assert!(is_header_value("Bearer ghp_abc"));
        for bad in ["", "a\r\nX-Evil: 1", "a\nb", "caf\u{e9}", "nul\0"] {
            assert!(!is_header_value(bad), "{bad:?}");
        }
    }
}
