//! The network as every process the runner starts sees it: the gateway's egress proxy, and the roots a TLS
//! client must trust. The sandbox reaches nothing but the gateway, so a connection out goes through the
//! gateway's proxy (`CONNECT` for HTTPS, plain forwarding for HTTP), which authenticates it by the session's
//! token and decides it. For the hosts whose credentials the gateway brokers it terminates TLS with its own
//! egress CA, so clients must trust that CA besides the system's roots.
//!
//! One function builds the variables ([`proxy_env`]); the harnesses (Claude Code, Codex) and the custom
//! harness's shell tool all take them from there. They hold the session's token (already the sandbox's
//! identity) and nothing else secret: brokered credentials never leave the gateway.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::client::{ClientError, GatewayClient};

/// The gateway's route serving its egress CA certificate (PEM).
pub const CA_ROUTE: &str = "/v1/egress/ca.pem";

/// The system's root certificates, where the common distributions keep them (the first present is used).
pub(crate) const SYSTEM_ROOTS: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
];

/// Variables naming a CA bundle, one per tool family: OpenSSL and Python's `ssl` (`SSL_CERT_FILE`), Node
/// (`NODE_EXTRA_CA_CERTS`, added to Node's own roots), git, Python requests, cargo, pip, curl.
pub const CA_VARS: [&str; 7] = [
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "REQUESTS_CA_BUNDLE",
    "CARGO_HTTP_CAINFO",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
];

/// Variables naming the proxy. curl and git read the lowercase `http_proxy` only (the uppercase one is a
/// CGI header's name), others the uppercase; npm reads its own.
pub const PROXY_VARS: [&str; 8] = [
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "https_proxy",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "npm_config_proxy",
    "npm_config_https_proxy",
];

/// Variables naming what is reached directly, not through the proxy.
pub const NO_PROXY_VARS: [&str; 3] = ["NO_PROXY", "no_proxy", "npm_config_noproxy"];

/// Reached directly: the sandbox's own loopback, where the runner's relay to the gateway listens (local
/// mode) and where the harnesses' model traffic goes.
const LOOPBACK: [&str; 3] = ["127.0.0.1", "localhost", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("cannot fetch the gateway's egress CA: {0}")]
    Fetch(#[from] ClientError),
    #[error("the gateway's egress CA (`{CA_ROUTE}`) is not a PEM certificate")]
    NotPem,
    #[error("cannot write the CA bundle: {0}")]
    Write(std::io::Error),
}

/// The CA bundle of a run: the system's roots and the gateway's egress CA, in a file private to the run
/// (removed when the last clone is dropped).
#[derive(Clone, Debug)]
pub struct CaBundle {
    path: PathBuf,
    _dir: Arc<tempfile::TempDir>,
}

impl CaBundle {
    /// Fetches the gateway's egress CA and writes the bundle. A gateway without the route (404) brokers
    /// nothing, so the bundle is the system's roots alone; any other failure is an error.
    pub async fn fetch(gateway: &GatewayClient) -> Result<CaBundle, EgressError> {
        let url = format!("{}{CA_ROUTE}", gateway.base_url);
        let unreachable = |e: reqwest::Error| ClientError::Unreachable { url: url.clone(), message: e.to_string() };
        let r = gateway.http().get(&url).bearer_auth(&gateway.token).send().await.map_err(unreachable)?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(unreachable)?;
        let ca = match status {
            200 => Some(text),
            404 => {
                tracing::warn!("the gateway serves no egress CA; brokered HTTPS hosts will not be trusted");
                None
            }
            _ => return Err(ClientError::Status { status, body: text }.into()),
        };
        CaBundle::write(ca.as_deref())
    }

    /// Writes a bundle of the system's roots and `paddock_ca` (PEM) into a new private directory.
    pub fn write(paddock_ca: Option<&str>) -> Result<CaBundle, EgressError> {
        if paddock_ca.is_some_and(|pem| !pem.contains("-----BEGIN CERTIFICATE-----")) {
            return Err(EgressError::NotPem);
        }
        let dir = tempfile::Builder::new().prefix("paddock-egress-").tempdir().map_err(EgressError::Write)?;
        let path = dir.path().join("ca-bundle.pem");
        let mut bundle = SYSTEM_ROOTS.iter().find_map(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
        if let Some(pem) = paddock_ca {
            if !bundle.is_empty() && !bundle.ends_with('\n') {
                bundle.push('\n');
            }
            bundle.push_str("# Paddock egress CA (the gateway terminates TLS for brokered hosts)\n");
            bundle.push_str(pem.trim_end());
            bundle.push('\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(EgressError::Write)?;
        f.write_all(bundle.as_bytes()).map_err(EgressError::Write)?;
        Ok(CaBundle { path, _dir: Arc::new(dir) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The proxy and trust variables for a process of the session `gateway` speaks for. The proxy is the
/// gateway's own listener (`http://paddock:<token>@host:port`: the token is the password of
/// `Proxy-Authorization: Basic`, which every client sends from such a URL).
pub fn proxy_env(gateway: &GatewayClient, ca: Option<&CaBundle>) -> BTreeMap<String, String> {
    let (scheme, authority) = match gateway.base_url.split_once("://") {
        Some((s, rest)) => (s, rest),
        None => ("http", gateway.base_url.as_str()),
    };
    let authority = authority.split('/').next().unwrap_or_default();
    let proxy = format!("{scheme}://paddock:{}@{authority}", userinfo(&gateway.token));
    let mut direct: Vec<String> = LOOPBACK.iter().map(|h| h.to_string()).collect();
    // In Kubernetes the gateway has a name of its own; its model routes are reached directly too.
    let host = host_of(authority);
    if !host.is_empty() && !direct.iter().any(|d| d == host) {
        direct.push(host.to_owned());
    }
    let direct = direct.join(",");
    let mut env = BTreeMap::new();
    for var in PROXY_VARS {
        env.insert(var.to_owned(), proxy.clone());
    }
    for var in NO_PROXY_VARS {
        env.insert(var.to_owned(), direct.clone());
    }
    // Node's own `http`/`https` and `fetch` read the proxy variables only when asked to (Node 24+); older
    // Node ignores this and, with no route out but the gateway, fails closed.
    env.insert("NODE_USE_ENV_PROXY".to_owned(), "1".to_owned());
    if let Some(ca) = ca {
        for var in CA_VARS {
            env.insert(var.to_owned(), ca.path().display().to_string());
        }
    }
    env
}

/// The host of `host:port` or `[v6]:port`, without brackets.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// `s` percent-encoded for the userinfo of a URL (the token is hex today; nothing relies on it).
fn userinfo(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn every_client_is_pointed_at_the_gateway_with_the_session_token() {
        let gw = GatewayClient::new("http://127.0.0.1:41234", "s-1", "pdk_abc");
        let env = proxy_env(&gw, None);
        for var in PROXY_VARS {
            assert_eq!(env[var], "http://paddock:pdk_abc@127.0.0.1:41234", "{var}");
        }
        for var in NO_PROXY_VARS {
            assert_eq!(env[var], "127.0.0.1,localhost,::1", "{var}");
        }
        assert!(CA_VARS.iter().all(|v| !env.contains_key(*v)), "no bundle, no CA variables");
        assert_eq!(env["NODE_USE_ENV_PROXY"], "1", "Node's own http and fetch read the proxy variables");
    }

    #[test]
    fn a_named_gateway_is_reached_directly_and_odd_tokens_are_encoded() {
        let gw = GatewayClient::new("http://paddock-gateway.paddock-system.svc:6767/", "s-1", "a b@c");
        let env = proxy_env(&gw, None);
        assert_eq!(env["HTTPS_PROXY"], "http://paddock:a%20b%40c@paddock-gateway.paddock-system.svc:6767");
        assert_eq!(env["NO_PROXY"], "127.0.0.1,localhost,::1,paddock-gateway.paddock-system.svc");
        let v6 = GatewayClient::new("http://[fd00::1]:6767", "s", "t");
        assert_eq!(proxy_env(&v6, None)["no_proxy"], "127.0.0.1,localhost,::1,fd00::1");
    }

    #[test]
    fn the_bundle_holds_the_system_roots_and_the_paddock_ca() {
        let bundle = CaBundle::write(Some(PEM)).unwrap();
        let text = std::fs::read_to_string(bundle.path()).unwrap();
        assert!(text.ends_with(PEM), "{text}");
        if let Some(system) = SYSTEM_ROOTS.iter().find_map(|p| std::fs::read_to_string(p).ok()) {
            assert!(text.starts_with(&system), "the system roots come first");
        }
        let env = proxy_env(&GatewayClient::new("http://127.0.0.1:1", "s", "t"), Some(&bundle));
        for var in CA_VARS {
            assert_eq!(env[var], bundle.path().display().to_string(), "{var}");
        }
        let dir = bundle.path().parent().unwrap().to_owned();
        drop(bundle);
        assert!(!dir.exists(), "the bundle goes with the run");
        assert!(matches!(CaBundle::write(Some("not a certificate")), Err(EgressError::NotPem)));
    }
}
