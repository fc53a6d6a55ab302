//! The broker's client to the real host: TLS that verifies the host's real name (system roots plus
//! `egress.trust`), HTTP/1.1, one connection per tunnel reused request after request, no redirects followed.
//! Every request leaves with the session's credential and without any the client sent.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};

use super::credentials::is_hop_by_hop;
use crate::gateway::SessionCredential;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request or response body the broker passes on.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    #[error("TLS with {0} failed: {1}")]
    Tls(String, String),
    #[error("{0} failed: {1}")]
    Http(String, String),
    #[error("{0} had no answer within {1} s")]
    Timeout(String, u64),
}

/// The TLS client configuration for upstreams: the system's roots and the configured extra ones.
pub fn client_tls(trust: &[PathBuf]) -> Result<Arc<rustls::ClientConfig>, super::BrokerError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for path in trust {
        use rustls::pki_types::pem::PemObject;
        let bad = |e: String| super::BrokerError::Trust(format!("`{}`: {e}", path.display()));
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no certificate in it".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| bad(e.to_string()))?;
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| super::BrokerError::Trust(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// One tunnel's way to its host: dials on first use and again when the connection is gone.
pub struct Upstream {
    pub host: String,
    pub port: u16,
    credential: Option<SessionCredential>,
    tls: Arc<rustls::ClientConfig>,
    egress: crate::config::EgressConfig,
    connect_timeout: std::time::Duration,
    /// Until the upstream's response head arrives.
    response_timeout: std::time::Duration,
    sender: tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<ProxyBody>>>,
}

impl Upstream {
    pub fn new(
        broker: &super::Broker,
        host: &str,
        port: u16,
        credential: Option<SessionCredential>,
        limits: &crate::config::Limits,
    ) -> Upstream {
        Upstream {
            host: host.to_owned(),
            port,
            credential,
            tls: broker.upstream_tls.clone(),
            egress: broker.config().clone(),
            connect_timeout: std::time::Duration::from_secs(limits.upstream_connect_timeout_seconds),
            response_timeout: std::time::Duration::from_secs(limits.upstream_response_timeout_seconds),
            sender: tokio::sync::Mutex::new(None),
        }
    }

    /// The session's credential for this host.
    pub fn credential(&self) -> Option<&SessionCredential> {
        self.credential.as_ref()
    }

    /// Sends `req` (origin-form path, decided already) to the host: its credential headers and hop-by-hop
    /// headers are replaced by the session's credential and the host's name. Redirects come back as they are.
    pub async fn forward(&self, req: Request<ProxyBody>) -> Result<Response<Incoming>, UpstreamError> {
        let req = self.prepare(req);
        let mut slot = self.sender.lock().await;
        let reusable = match slot.as_mut() {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            *slot = Some(self.connect().await?);
        }
        let sender = slot.as_mut().expect("connected");
        let what = format!("the request to {}:{}", self.host, self.port);
        match tokio::time::timeout(self.response_timeout, sender.send_request(req)).await {
            Ok(r) => r.map_err(|e| UpstreamError::Http(what, e.to_string())),
            Err(_) => {
                // The connection is in an unknown state: the next request dials afresh.
                *slot = None;
                Err(UpstreamError::Timeout(what, self.response_timeout.as_secs()))
            }
        }
    }

    fn prepare(&self, req: Request<ProxyBody>) -> Request<ProxyBody> {
        let (mut parts, body) = req.into_parts();
        strip_connection_headers(&mut parts.headers);
        for name in CLIENT_CREDENTIAL_HEADERS {
            parts.headers.remove(*name);
        }
        if let Some(c) = &self.credential {
            parts.headers.remove(c.header.as_str());
        }
        let authority = match self.port {
            443 => self.host.clone(),
            p => format!("{}:{p}", self.host),
        };
        parts.headers.insert(hyper::header::HOST, HeaderValue::from_str(&authority).expect("checked host"));
        if let Some(c) = &self.credential {
            let name = HeaderName::from_bytes(c.header.as_bytes()).expect("checked when the session started");
            let mut value = HeaderValue::from_str(&c.value).expect("checked when the session started");
            value.set_sensitive(true);
            parts.headers.insert(name, value);
        }
        parts.version = hyper::Version::HTTP_11;
        Request::from_parts(parts, body)
    }

    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<ProxyBody>, UpstreamError> {
        let at = format!("{}:{}", self.host, self.port);
        // The egress proxy's dialer: the resolver override, and a host name only to public addresses.
        let tcp = crate::egress::dial::dial(&self.egress, self.connect_timeout, &self.host, self.port)
            .await
            .map_err(|e| UpstreamError::Connect(at.clone(), e.to_string()))?;
        let name =
            ServerName::try_from(self.host.clone()).map_err(|e| UpstreamError::Tls(at.clone(), e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| UpstreamError::Tls(at.clone(), e.to_string()))?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| UpstreamError::Http(at.clone(), e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(upstream = %at, error = %e, "brokered upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// Headers by which a client could present an identity of its own: the broker's credential is the only one
/// that leaves.
const CLIENT_CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Removes hop-by-hop headers and those `Connection` names, so neither side can smuggle framing or an upgrade
/// through the broker; hyper frames each message afresh.
pub fn strip_connection_headers(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    for n in named {
        headers.remove(n.as_str());
    }
    let hop: Vec<HeaderName> = headers.keys().filter(|k| is_hop_by_hop(k.as_str())).cloned().collect();
    for k in hop {
        headers.remove(k);
    }
}

/// The upstream's response as the client gets it: hop-by-hop headers removed, the body streamed.
pub fn relay_response(resp: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    // The length stays: the body was read by it, and a `HEAD` answer's length is the resource's.
    let length = parts.headers.get(hyper::header::CONTENT_LENGTH).cloned();
    strip_connection_headers(&mut parts.headers);
    if let Some(length) = length {
        parts.headers.insert(hyper::header::CONTENT_LENGTH, length);
    }
    Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed_unsync())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_cannot_bring_its_own_identity_or_framing() {
        let broker = crate::broker::Broker::ephemeral(Default::default()).unwrap();
        let credential = SessionCredential {
            host: "api.example.com".into(),
            port: 8443,
            header: "x-api-key".into(),
            value: "brokered".into(),
            mcp_server: None,
        };
        let up = Upstream::new(&broker, "api.example.com", 8443, Some(credential), &Default::default());
        let req = Request::builder()
            .uri("/x")
            .header("host", "evil.example")
            .header("authorization", "Bearer mine")
            .header("x-api-key", "mine")
            .header("X-Api-Key", "mine-too")
            .header("cookie", "a=b")
            .header("proxy-authorization", "Basic eDp5")
            .header("connection", "keep-alive, x-secret-hop")
            .header("x-secret-hop", "1")
            .header("transfer-encoding", "chunked")
            .header("content-length", "3")
            .header("upgrade", "h2c")
            .header("accept", "application/json")
            .body(http_body_util::Empty::new().map_err(|n| match n {}).boxed_unsync())
            .unwrap();
        let out = up.prepare(req);
        let h = out.headers();
        assert_eq!(h.get_all("x-api-key").iter().collect::<Vec<_>>(), ["brokered"]);
        assert!(h.get_all("x-api-key").iter().all(|v| v.is_sensitive()));
        assert_eq!(h.get("host").unwrap(), "api.example.com:8443");
        for gone in [
            "authorization",
            "cookie",
            "proxy-authorization",
            "connection",
            "x-secret-hop",
            "transfer-encoding",
            "content-length",
            "upgrade",
        ] {
            assert!(h.get(gone).is_none(), "{gone}");
        }
        assert_eq!(h.get("accept").unwrap(), "application/json");
    }
}
