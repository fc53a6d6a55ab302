//! The gateway, as the processes in a sandbox reach it: plain HTTP on the sandbox's own loopback. The
//! runner listens there and relays each connection to the real gateway:
//!
//! - inside a local sandbox, to the gateway's Unix socket, the only way out ([`relay_to_socket`]);
//! - in a runner pod with an `https://` gateway, over TLS checked against the installation's gateway CA
//!   ([`relay_to_tls`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream, UnixStream};

/// Starts the relay; returns the `http://127.0.0.1:PORT` base URL that reaches the gateway.
pub async fn relay_to_socket(socket: PathBuf) -> std::io::Result<String> {
    // Fail now, with the path in the message, rather than on the first request.
    UnixStream::connect(&socket)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot reach the gateway at {}: {e}", socket.display())))?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { continue };
            let socket = socket.clone();
            tokio::spawn(async move {
                match UnixStream::connect(&socket).await {
                    Ok(mut unix) => {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "gateway socket unreachable"),
                }
            });
        }
    });
    Ok(url)
}

/// Why the relay to an `https://` gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("--gateway `{0}` is not an https://host:port URL")]
    Url(String),
    #[error("--gateway-ca `{path}`: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("no system root certificates found (looked in {0}); give the gateway's CA with --gateway-ca")]
    NoRoots(String),
    #[error("cannot reach the gateway at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("cannot listen on the sandbox's loopback: {0}")]
    Listen(std::io::Error),
}

/// The host and port of an `https://` URL.
fn https_authority(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) => (h, p.parse().ok()?),
            None if after.is_empty() => (h, 443),
            None => return None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, 443),
        }
    };
    (!host.is_empty() && port != 0).then(|| (host.to_owned(), port))
}

/// The roots the relay trusts: the CA file alone when given (the installation's gateway CA), else the
/// system's.
fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, RelayError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |message: String| RelayError::Ca { path: path.to_owned(), message };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
        }
        None => {
            let bundle = crate::egress::SYSTEM_ROOTS.iter().find_map(|p| std::fs::read(p).ok()).unwrap_or_default();
            let certs = CertificateDer::pem_slice_iter(&bundle).filter_map(Result::ok);
            roots.add_parsable_certificates(certs);
            if roots.is_empty() {
                return Err(RelayError::NoRoots(crate::egress::SYSTEM_ROOTS.join(", ")));
            }
        }
    }
    Ok(roots)
}

/// What a failed connection to the gateway means, in the words a user can act on.
fn explain(e: &std::io::Error, host: &str, ca_file: Option<&Path>) -> String {
    let text = e.to_string();
    let trusted = match ca_file {
        Some(p) => format!("the CA in --gateway-ca `{}`", p.display()),
        None => "the system's roots (no --gateway-ca)".to_owned(),
    };
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        format!("{text}: the gateway's certificate is not signed by {trusted}")
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        format!(
            "{text}: the gateway's certificate is not for the name `{host}` (its names must include the host of --gateway)"
        )
    } else if text.contains("Expired") || text.contains("NotValidYet") {
        format!("{text}: check the certificate's dates and this node's clock")
    } else {
        text
    }
}

/// One TLS connection to the gateway.
async fn dial(
    tls: &tokio_rustls::TlsConnector,
    host: &str,
    port: u16,
    name: &rustls::pki_types::ServerName<'static>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    // The host name resolves through /etc/hosts: in a runner pod the controller wrote the gateway's address
    // there (the pod has no DNS).
    let tcp = tokio::time::timeout(std::time::Duration::from_secs(10), TcpStream::connect((host, port)))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out"))??;
    let _ = tcp.set_nodelay(true);
    tls.connect(name.clone(), tcp).await
}

/// Starts a relay to an `https://` gateway: returns the `http://127.0.0.1:PORT` base URL on the sandbox's
/// own loopback that reaches it. Each connection to that port becomes a TLS connection to the gateway,
/// checked against `ca_file` (the installation's gateway CA) alone, else the system's roots.
///
/// Why a relay rather than `HTTPS_PROXY=https://…`: every process in the sandbox (the harnesses, git, curl,
/// pip, npm, Node's own `fetch`) then sees exactly what it sees in local mode, a plain proxy and model
/// endpoint on loopback, and none has to support TLS to its proxy or be told about a CA. The plain bytes
/// never leave the pod's network namespace; what crosses the pod network is TLS.
pub async fn relay_to_tls(url: &str, ca_file: Option<&Path>) -> Result<String, RelayError> {
    let (host, port) = https_authority(url).ok_or_else(|| RelayError::Url(url.to_owned()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions")
        .with_root_certificates(roots(ca_file)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| RelayError::Url(url.to_owned()))?;
    // Fail now, with why, rather than on the harness's first request.
    let unreachable =
        |e: std::io::Error| RelayError::Unreachable { url: url.to_owned(), message: explain(&e, &host, ca_file) };
    drop(dial(&tls, &host, port, &name).await.map_err(unreachable)?);
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(RelayError::Listen)?;
    let local = format!("http://{}", listener.local_addr().map_err(RelayError::Listen)?);
    let ca_file = ca_file.map(Path::to_owned);
    tokio::spawn(async move {
        loop {
            let mut tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "the relay cannot accept");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (tls, host, name, ca_file) = (tls.clone(), host.clone(), name.clone(), ca_file.clone());
            tokio::spawn(async move {
                match dial(&tls, &host, port, &name).await {
                    Ok(mut gateway) => {
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut gateway).await;
                    }
                    Err(e) => tracing::warn!(error = %explain(&e, &host, ca_file.as_deref()), "gateway unreachable"),
                }
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use paddock_gateway::config::{GatewayConfig, ProviderConfig, SecretSource, TlsConfig};
    use serde_json::{Value, json};

    use super::*;
    use crate::GatewayClient;

    const ADMIN: &str = "relay-test-admin";

    /// A gateway over TLS with a certificate for `localhost`, an Agent `coder` and a scripted model; returns
    /// its URL (by the name its certificate holds) and the CA file.
    async fn tls_gateway(dir: &Path) -> (String, PathBuf) {
        let certs = paddock_gateway::tls::generate(&["localhost"]).unwrap();
        for (file, text) in [("tls.crt", &certs.cert_pem), ("tls.key", &certs.key_pem), ("ca.crt", &certs.ca_pem)] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        std::fs::create_dir_all(dir.join("repo")).unwrap();
        std::fs::write(
            dir.join("repo/coder.yaml"),
            "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {name: coder}\nspec: {harness: custom, model: claude-sonnet-4-5}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("script.yaml"),
            "scripts:\n  - name: hi\n    turns:\n      - text: \"hello through TLS\"\n",
        )
        .unwrap();
        std::fs::write(dir.join("admin"), ADMIN).unwrap();
        let mut cfg = GatewayConfig {
            data_dir: Some(dir.join("data")),
            repo: Some(dir.join("repo")),
            admin_token: Some(SecretSource { env: None, file: Some(dir.join("admin")) }),
            tls: Some(TlsConfig { cert_file: dir.join("tls.crt"), key_file: dir.join("tls.key") }),
            ..GatewayConfig::default()
        };
        cfg.providers.push(ProviderConfig::scripted(dir.join("script.yaml"), &["*"]));
        let (_, url, _) = paddock_gateway::server::serve_loopback(&cfg).await.unwrap();
        let port = url.rsplit(':').next().unwrap().to_owned();
        (format!("https://localhost:{port}"), dir.join("ca.crt"))
    }

    #[tokio::test]
    async fn a_session_reaches_an_https_gateway_through_the_plain_loopback_relay() {
        let dir = tempfile::tempdir().unwrap();
        let (url, ca) = tls_gateway(dir.path()).await;
        let local = relay_to_tls(&url, Some(&ca)).await.unwrap();
        assert!(local.starts_with("http://127.0.0.1:"), "{local}");
        // The controller's part: the session, created over TLS with the admin token.
        let admin = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
            .build()
            .unwrap();
        let created: Value = admin
            .post(format!("{url}/v1/sessions"))
            .bearer_auth(ADMIN)
            .json(&json!({"agent": "coder", "owner": "alice"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The runner's part, in plain HTTP on loopback: a model call and the egress CA every run fetches.
        let gw = GatewayClient::new(&local, created["id"].as_str().unwrap(), created["token"].as_str().unwrap());
        let body =
            json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
        let answer = gw.llm("/llm/anthropic/v1/messages", &body).await.unwrap();
        assert_eq!(answer["content"][0]["text"], "hello through TLS", "{answer}");
        let bundle = crate::egress::CaBundle::fetch(&gw).await.unwrap();
        assert!(std::fs::read_to_string(bundle.path()).unwrap().contains("Paddock egress CA"));
    }

    #[tokio::test]
    async fn the_relay_refuses_a_gateway_it_cannot_trust_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let (url, _) = tls_gateway(dir.path()).await;
        // Another installation's CA.
        let other = paddock_gateway::tls::generate(&["localhost"]).unwrap();
        std::fs::write(dir.path().join("other-ca.crt"), &other.ca_pem).unwrap();
        let e = relay_to_tls(&url, Some(&dir.path().join("other-ca.crt"))).await.unwrap_err().to_string();
        assert!(e.contains("the gateway's certificate is not signed by the CA in --gateway-ca"), "{e}");
        // The right CA, by an address the certificate does not name.
        let by_ip = url.replace("localhost", "127.0.0.1");
        let e = relay_to_tls(&by_ip, Some(&dir.path().join("ca.crt"))).await.unwrap_err().to_string();
        assert!(e.contains("is not for the name `127.0.0.1`"), "{e}");
        // Not a CA file; not an https URL.
        let e = relay_to_tls(&url, Some(&dir.path().join("tls.key"))).await.unwrap_err().to_string();
        assert!(e.starts_with("--gateway-ca `") && e.contains("no PEM certificate"), "{e}");
        let e = relay_to_tls("http://localhost:1", None).await.unwrap_err().to_string();
        assert!(e.contains("is not an https://host:port URL"), "{e}");
    }

    #[test]
    fn https_authorities() {
        assert_eq!(https_authority("https://gw.ns.svc:6767/"), Some(("gw.ns.svc".into(), 6767)));
        assert_eq!(https_authority("https://gw"), Some(("gw".into(), 443)));
        assert_eq!(https_authority("https://[fd00::1]:6767"), Some(("fd00::1".into(), 6767)));
        assert_eq!(https_authority("https://u:p@gw:1"), None, "no credentials in the gateway URL");
        assert_eq!(https_authority("http://gw:1"), None);
    }
}
