//! The credential broker: for hosts an Agent names in `spec.credentials`, the gateway terminates the
//! sandbox's TLS with a certificate of its own CA, decides every request it then sees (an `egress` event with
//! method, path, JSON body and GraphQL operation), and sends the allowed ones to the real host with the
//! session's credential, which never enters the sandbox. Other allowed hosts stay end-to-end tunnels (the
//! egress proxy's business).

pub mod ca;
pub mod credentials;
pub mod tunnel;
pub mod upstream;

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;

use crate::config::EgressConfig;
use crate::gateway::{Gateway, Session, SessionCredential};
pub use tunnel::serve_tunnel;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("egress CA: {0}")]
    Ca(String),
    #[error("egress.trust: {0}")]
    Trust(String),
}

/// The broker's configuration and keys: the egress configuration, the CA (with its leaf cache) and the TLS
/// client configuration for upstreams.
pub struct Broker {
    config: EgressConfig,
    pub ca: ca::CertificateAuthority,
    upstream_tls: Arc<rustls::ClientConfig>,
    /// The connections out each session holds open (`egress.maxConnectionsPerSession`), counted by the egress
    /// proxy for its tunnels (brokered ones included) and plain-HTTP requests.
    pub connections: crate::egress::limit::PerSession,
    /// Mirrors of pushed-to repositories, to tell a fast-forward from the objects; none without a data
    /// directory (pushes are then refused).
    mirrors: Option<crate::gitwire::mirror::Mirrors>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("config", &self.config).field("ca", &self.ca).finish()
    }
}

impl Broker {
    /// The broker of an installation: the CA from `egress.ca`, else kept in (and generated once into) `data_dir`.
    pub fn new(config: EgressConfig, data_dir: &Path) -> Result<Broker, BrokerError> {
        let ca = match &config.ca {
            Some(files) => ca::CertificateAuthority::load(&files.cert, &files.key)?,
            None => ca::CertificateAuthority::in_dir(data_dir)?,
        };
        let limits = crate::gitwire::limits::PushLimits {
            per_session: config.max_pushes_per_session,
            arrival: std::time::Duration::from_secs(config.push_arrival_seconds),
        };
        let mirrors = match crate::gitwire::mirror::Mirrors::new(data_dir.join("egress-mirrors"), &config) {
            Ok(m) => Some(m.with_push_limits(limits)),
            Err(e) => {
                tracing::warn!(error = %e, "no git mirrors: pushes through the broker will be refused");
                None
            }
        };
        let mut broker = Self::with_ca(config, ca)?;
        broker.mirrors = mirrors;
        Ok(broker)
    }

    /// A broker whose CA lives in memory only, unless `egress.ca` names one (gateways built without a data
    /// directory: tests, benchmarks).
    pub fn ephemeral(config: EgressConfig) -> Result<Broker, BrokerError> {
        let ca = match &config.ca {
            Some(files) => ca::CertificateAuthority::load(&files.cert, &files.key)?,
            None => ca::CertificateAuthority::ephemeral()?,
        };
        Self::with_ca(config, ca)
    }

    fn with_ca(config: EgressConfig, ca: ca::CertificateAuthority) -> Result<Broker, BrokerError> {
        let upstream_tls = upstream::client_tls(&config.trust)?;
        let connections = crate::egress::limit::PerSession::new(config.max_connections_per_session);
        Ok(Broker { config, ca, upstream_tls, connections, mirrors: None })
    }

    /// The TLS client configuration for upstreams (the system's roots and `egress.trust`).
    pub fn upstream_tls(&self) -> Arc<rustls::ClientConfig> {
        self.upstream_tls.clone()
    }

    pub fn config(&self) -> &EgressConfig {
        &self.config
    }

    pub fn mirrors(&self) -> Option<&crate::gitwire::mirror::Mirrors> {
        self.mirrors.as_ref()
    }

    /// The CA certificate (PEM) sandboxes trust for brokered hosts.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// The credential a live session sends to `host:port`: `Some` means the host is brokered for it (its
    /// TLS is terminated and its requests are decided one by one).
    pub fn credential(&self, s: &Session, host: &str, port: u16) -> Option<SessionCredential> {
        if s.ended().is_some() {
            return None;
        }
        s.credentials
            .iter()
            .find(|c| c.mcp_server.is_none() && c.port == port && c.host.eq_ignore_ascii_case(host))
            .cloned()
    }

    /// The credential the gateway's MCP client sends to a live session's remote MCP server: the one held for
    /// that server's name *and* host (a pushed policy set that moves the server elsewhere gets none).
    pub fn mcp_credential(&self, s: &Session, server: &paddock_api::McpServer) -> Option<SessionCredential> {
        if s.ended().is_some() {
            return None;
        }
        let (host, port) = server.host_port()?;
        s.credentials
            .iter()
            .find(|c| c.mcp_server.as_deref() == Some(server.name.as_str()) && c.host == host && c.port == port)
            .cloned()
    }

    /// Every credential of a session's MCP servers, ended or not: to blank them out of texts shown elsewhere.
    pub fn mcp_secrets(s: &Session) -> Vec<String> {
        s.credentials.iter().filter(|c| c.mcp_server.is_some()).flat_map(|c| secret_parts(&c.value)).collect()
    }
}

/// A header value and the secret inside it: `Bearer tok` → itself and `tok`; `Basic b64` → itself, `b64`, and
/// the decoded `user:secret` and `secret`.
fn secret_parts(value: &str) -> Vec<String> {
    use base64::Engine as _;
    let mut out = vec![value.to_owned()];
    if let Some((scheme, rest)) = value.split_once(' ') {
        out.push(rest.to_owned());
        if scheme.eq_ignore_ascii_case("basic")
            && let Some(plain) =
                base64::engine::general_purpose::STANDARD.decode(rest).ok().and_then(|b| String::from_utf8(b).ok())
        {
            if let Some((_, secret)) = plain.split_once(':') {
                out.push(secret.to_owned());
            }
            out.push(plain);
        }
    }
    out.retain(|p| p.len() >= 4);
    out
}

/// `GET /v1/egress/ca.pem`: the CA certificate sandboxes trust. Public: it is a certificate, not a secret.
pub async fn ca_pem(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/x-pem-file")], gw.broker.ca_pem().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_push_limits_come_from_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let config = EgressConfig { max_pushes_per_session: 2, push_arrival_seconds: 7, ..EgressConfig::default() };
        let broker = Broker::new(config, dir.path()).unwrap();
        let limits = broker.mirrors().expect("mirrors in the data directory").push_limits();
        assert_eq!((limits.per_session, limits.arrival), (2, std::time::Duration::from_secs(7)));
    }
}
