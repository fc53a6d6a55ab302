//! A session's brokered credentials: the values the controller handed over, or (local mode) read from
//! `egress.secretsDir` for the Agent's `spec.credentials`. Checked once, when the session starts, so that a
//! request never meets a credential it cannot send.

use std::path::Path;

use paddock_api::AgentSpec;

use crate::gateway::SessionCredential;

/// The credentials of a new session: `given` (from the controller) when there are any, else the Agent's
/// `spec.credentials` read from `secrets_dir`. Errors name the field and, for a file, its path.
pub fn resolve(
    spec: &AgentSpec,
    given: Vec<SessionCredential>,
    given_mcp: Vec<SessionCredential>,
    secrets_dir: Option<&Path>,
) -> Result<Vec<SessionCredential>, String> {
    let creds = if !given.is_empty() || !given_mcp.is_empty() {
        let tagged = |(list, mcp): (Vec<SessionCredential>, bool)| {
            let field = if mcp { "mcpCredentials" } else { "credentials" };
            list.into_iter().enumerate().map(move |(i, mut c)| {
                // An MCP server's credential names its server and comes apart from the brokered ones.
                if c.mcp_server.is_some() != mcp {
                    return Err(format!(
                        "{field}[{i}]: {}",
                        if mcp {
                            "names no MCP server (`mcpServer`)"
                        } else {
                            "names an MCP server; send it in mcpCredentials"
                        }
                    ));
                }
                c.host = c.host.to_ascii_lowercase();
                c.header = c.header.to_ascii_lowercase();
                check(&c).map_err(|e| format!("{field}[{i}]: {e}"))?;
                Ok(c)
            })
        };
        [(given, false), (given_mcp, true)].into_iter().flat_map(tagged).collect::<Result<Vec<_>, String>>()?
    } else {
        spec.credentials
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let at = format!("spec.credentials[{i}]");
                let (host, port) =
                    c.host_port().ok_or_else(|| format!("{at}.host: `{}` is not a host name or host:port", c.host))?;
                let secret = read_secret(secrets_dir, &c.secret_name, &c.key).map_err(|e| format!("{at}: {e}"))?;
                let (header, value) = c.header(&secret);
                let cred = SessionCredential { host, port, header, value, mcp_server: None };
                check(&cred).map_err(|e| format!("{at}: {e}"))?;
                Ok(cred)
            })
            .chain(spec.mcp_servers.iter().enumerate().filter_map(|(i, m)| {
                let at = format!("spec.mcpServers[{i}].credential");
                let c = m.brokered_credential()?;
                Some((|| {
                    let (host, port) = c.host_port().ok_or_else(|| format!("{at}: `{}` is not a host", c.host))?;
                    let secret = read_secret(secrets_dir, &c.secret_name, &c.key).map_err(|e| format!("{at}: {e}"))?;
                    let (header, value) = c.header(&secret);
                    let cred = SessionCredential { host, port, header, value, mcp_server: Some(m.name.clone()) };
                    check(&cred).map_err(|e| format!("{at}: {e}"))?;
                    Ok(cred)
                })())
            }))
            .collect::<Result<Vec<_>, String>>()?
    };
    for (i, c) in creds.iter().enumerate() {
        if creds[..i].iter().any(|o| o.host == c.host && o.port == c.port && o.mcp_server == c.mcp_server) {
            return Err(format!("credentials[{i}]: `{}:{}` has two credentials; give one per host", c.host, c.port));
        }
    }
    Ok(creds)
}

/// Seals credentials for the database (and the gateway's log): ChaCha20-Poly1305 under the CA-derived
/// key, a fresh random nonce each time, base64. No credentials seal to the empty string.
pub fn seal(key: &[u8; 32], creds: &[SessionCredential]) -> String {
    use base64::Engine as _;
    use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    if creds.is_empty() {
        return String::new();
    }
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte key"));
    let mut nonce = [0u8; NONCE_LEN];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
    let mut data = serde_json::to_vec(creds).expect("credentials json");
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(SEAL_AAD), &mut data).expect("seal");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    format!("{SEAL_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(out))
}

/// Opens what [`seal`] sealed. Fails when the text was sealed under another CA's key or altered.
pub fn open(key: &[u8; 32], sealed: &str) -> Result<Vec<SessionCredential>, String> {
    use base64::Engine as _;
    use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    if sealed.is_empty() {
        return Ok(Vec::new());
    }
    let b64 = sealed.strip_prefix(SEAL_PREFIX).ok_or("not sealed credentials")?;
    let mut data = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())?;
    if data.len() < NONCE_LEN {
        return Err("sealed credentials too short".into());
    }
    let nonce = Nonce::try_assume_unique_for_key(&data[..NONCE_LEN]).map_err(|e| e.to_string())?;
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte key"));
    let plain = key
        .open_in_place(nonce, Aad::from(SEAL_AAD), &mut data[NONCE_LEN..])
        .map_err(|_| "the sealed credentials do not open with this installation's CA key".to_owned())?;
    serde_json::from_slice(plain).map_err(|e| e.to_string())
}

const SEAL_PREFIX: &str = "v1:";
const SEAL_AAD: &[u8] = b"paddock session credentials";

/// `DIR/<secretName>/<key>`, trimmed; each part one plain path component, so that an Agent cannot name a
/// file outside the directory.
fn read_secret(dir: Option<&Path>, secret_name: &str, key: &str) -> Result<String, String> {
    let plain = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0']);
    if !plain(secret_name) || !plain(key) {
        return Err(format!("secret `{secret_name}` key `{key}`: a secret name and key are plain names"));
    }
    let Some(dir) = dir else {
        return Err(format!(
            "secret `{secret_name}` key `{key}`: the gateway has no `egress.secretsDir` to read it from, and the \
             session was created without credentials"
        ));
    };
    let path = dir.join(secret_name).join(key);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("secret `{secret_name}` key `{key}`: cannot read `{}`: {e}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!("secret `{secret_name}` key `{key}`: `{}` is empty", path.display()));
    }
    Ok(secret.to_owned())
}

/// What a credential must be to be sent: a host name, a port, a header name and a value a header can carry.
fn check(c: &SessionCredential) -> Result<(), String> {
    let probe = paddock_api::agent::BrokeredCredential {
        host: format!("{}:{}", c.host, c.port),
        secret_name: String::new(),
        key: String::new(),
        scheme: Default::default(),
        username: None,
        header: None,
    };
    if probe.host_port().is_none_or(|(h, p)| h != c.host || p != c.port) {
        return Err(format!("host: `{}:{}` is not a host name and port", c.host, c.port));
    }
    if hyper::header::HeaderName::from_bytes(c.header.as_bytes()).is_err() || is_hop_by_hop(&c.header) {
        return Err(format!("header: `{}` is not a header the broker can set", c.header));
    }
    if hyper::header::HeaderValue::from_str(&c.value).is_err() {
        // The value itself is never shown.
        return Err(format!("the value for header `{}` holds characters a header cannot carry", c.header));
    }
    Ok(())
}

/// Headers that describe one connection, not the request: the broker never forwards them, so a credential
/// cannot live in one.
pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(creds: &str) -> AgentSpec {
        let yaml = format!("harness: claude-code\nmodel: m\ncredentials: {creds}\n");
        serde_yaml_ng::from_str(&yaml).expect("agent spec")
    }

    #[test]
    fn reads_secrets_and_names_the_field_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("gh")).unwrap();
        std::fs::write(dir.path().join("gh/token"), "ghp_abc\n").unwrap();
        let spec = agent(
            "[{host: api.github.com, secretName: gh, key: token}, {host: 'GitHub.com', secretName: gh, key: token, \
             scheme: basic, username: x-access-token}]",
        );
        let c = resolve(&spec, vec![], vec![], Some(dir.path())).unwrap();
        assert_eq!((c[0].host.as_str(), c[0].port, c[0].header.as_str()), ("api.github.com", 443, "authorization"));
        assert_eq!(c[0].value, "Bearer ghp_abc");
        assert_eq!(c[1].host, "github.com");
        assert!(c[1].value.starts_with("Basic "));

        let spec = agent("[{host: api.github.com, secretName: gh, key: missing}]");
        let e = resolve(&spec, vec![], vec![], Some(dir.path())).unwrap_err();
        assert!(e.starts_with("spec.credentials[0]: ") && e.contains("gh/missing"), "{e}");
        let e = resolve(&spec, vec![], vec![], None).unwrap_err();
        assert!(e.contains("egress.secretsDir"), "{e}");
        let spec = agent("[{host: api.github.com, secretName: '..', key: token}]");
        assert!(resolve(&spec, vec![], vec![], Some(dir.path())).unwrap_err().contains("plain names"));
        let spec = agent("[{host: 'api.github.com/x', secretName: gh, key: token}]");
        assert!(resolve(&spec, vec![], vec![], Some(dir.path())).unwrap_err().contains("spec.credentials[0].host"));
    }

    #[test]
    fn sealed_credentials_open_only_with_the_same_key() {
        let c = vec![SessionCredential {
            host: "api.github.com".into(),
            port: 443,
            header: "authorization".into(),
            value: "Bearer ghp_sealed".into(),
            mcp_server: None,
        }];
        let sealed = seal(&[7; 32], &c);
        assert!(!sealed.contains("ghp_sealed") && sealed != seal(&[7; 32], &c));
        assert_eq!(open(&[7; 32], &sealed).unwrap(), c);
        assert!(open(&[8; 32], &sealed).is_err());
        assert_eq!(seal(&[7; 32], &[]), "");
        assert!(open(&[7; 32], "").unwrap().is_empty());
    }

    #[test]
    fn refuses_values_a_header_cannot_carry_without_showing_them() {
        let bad = SessionCredential {
            host: "api.github.com".into(),
            port: 443,
            header: "authorization".into(),
            value: "Bearer s3cret\r\nX-Evil: 1".into(),
            mcp_server: None,
        };
        let e = resolve(&agent("[]"), vec![bad.clone()], vec![], None).unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        let hop = SessionCredential { header: "connection".into(), value: "x".into(), ..bad.clone() };
        assert!(resolve(&agent("[]"), vec![hop], vec![], None).is_err());
        let ok = SessionCredential { value: "Bearer x".into(), ..bad };
        let twice = resolve(&agent("[]"), vec![ok.clone(), ok.clone()], vec![], None).unwrap_err();
        assert!(twice.contains("two credentials"), "{twice}");
        // An MCP server's credential comes apart and names its server; never mixed with the brokered ones.
        let mcp = SessionCredential { mcp_server: Some("github".into()), ..ok.clone() };
        let e = resolve(&agent("[]"), vec![mcp.clone()], vec![], None).unwrap_err();
        assert!(e.starts_with("credentials[0]: names an MCP server"), "{e}");
        let e = resolve(&agent("[]"), vec![], vec![ok.clone()], None).unwrap_err();
        assert!(e.starts_with("mcpCredentials[0]: names no MCP server"), "{e}");
        // The same host as a brokered credential and as an MCP server's: two credentials, kept apart.
        let both = resolve(&agent("[]"), vec![ok], vec![mcp], None).unwrap();
        assert_eq!(both.iter().filter(|c| c.mcp_server.is_some()).count(), 1);
    }
}
