//! The gateway's MCP clients: one connection (an initialised rmcp client) per session and server, opened on
//! first use with the session's brokered credential for the server's host, closed when the session ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paddock_api::{McpServer, McpTransport};
use rmcp::RoleClient;
use rmcp::service::{RunningService, ServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use super::legacy_sse::LegacySse;
use crate::gateway::{Gateway, Session};

/// Open connections at most; the oldest is closed for a new one beyond this.
const MAX_CONNECTIONS: usize = 1024;

pub type Client = Arc<RunningService<RoleClient, ()>>;

/// Why the gateway could not talk to an MCP server. The message names the server, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("MCP server `{0}`: cannot connect: {1}")]
    Connect(String, String),
    #[error("MCP server `{0}`: {1}")]
    Call(String, String),
}

pub struct Upstreams {
    http: reqwest_mcp::Client,
    open: Mutex<HashMap<(String, String), (u64, Client)>>,
    /// Orders connections by their opening, for closing the oldest.
    opened: std::sync::atomic::AtomicU64,
    connect_timeout: Duration,
}

impl Upstreams {
    pub fn new(gw: &Gateway) -> Upstreams {
        let cfg = gw.broker.config();
        let connect_timeout = Duration::from_secs(gw.limits.upstream_connect_timeout_seconds);
        let mut b = reqwest_mcp::Client::builder()
            .tls_backend_preconfigured((*gw.broker.upstream_tls()).clone())
            .connect_timeout(connect_timeout)
            // A server that redirects is answered with its redirect, never followed with the credential.
            .redirect(reqwest_mcp::redirect::Policy::none())
            .pool_max_idle_per_host(0);
        for (host, ip) in &cfg.resolve {
            b = b.resolve(host, SocketAddr::new(*ip, 0));
        }
        Upstreams {
            http: b.build().expect("MCP HTTP client"),
            open: Mutex::new(HashMap::new()),
            opened: Default::default(),
            connect_timeout,
        }
    }

    /// The session's connection to `server`, opened (and initialised) when there is none.
    pub async fn client(&self, s: &Session, server: &McpServer, gw: &Gateway) -> Result<Client, UpstreamError> {
        // The server's whole definition is in the key: a pushed policy set that moves a server (another URL or
        // transport) gets a new connection, never the old one.
        let key = (
            s.id.clone(),
            format!("{}\u{0}{}\u{0}{:?}", server.name, server.url.as_deref().unwrap_or(""), server.transport),
        );
        if let Some((_, c)) = self.open.lock().expect("mcp upstreams").get(&key)
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let url = server.url.clone().expect("a remote server");
        let mut headers = HashMap::new();
        if let Some(cred) = gw.broker.mcp_credential(s, server) {
            let name = http::HeaderName::from_bytes(cred.header.as_bytes());
            let value = http::HeaderValue::from_str(&cred.value);
            match (name, value) {
                (Ok(n), Ok(mut v)) => {
                    v.set_sensitive(true);
                    headers.insert(n, v);
                }
                _ => return Err(UpstreamError::Connect(server.name.clone(), "its credential is no header".into())),
            }
        }
        let connect = async {
            match server.transport.unwrap_or_default() {
                McpTransport::StreamableHttp => {
                    let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers);
                    let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
                    ().serve(transport).await.map_err(|e| e.to_string())
                }
                McpTransport::Sse => {
                    let transport = LegacySse::connect(self.http.clone(), &url, headers.into_iter().collect())
                        .await
                        .map_err(|e| e.to_string())?;
                    ().serve(transport).await.map_err(|e| e.to_string())
                }
            }
        };
        let client = tokio::time::timeout(self.connect_timeout * 2, connect)
            .await
            .map_err(|_| UpstreamError::Connect(server.name.clone(), "no answer to `initialize`".into()))?
            .map_err(|e| UpstreamError::Connect(server.name.clone(), e))?;
        let client = Arc::new(client);
        let n = self.opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut open = self.open.lock().expect("mcp upstreams");
        // Connections of sessions that ended go; then the oldest, beyond the bound.
        open.retain(|(id, _), _| gw.session(id).is_some_and(|s| s.ended().is_none()));
        while open.len() >= MAX_CONNECTIONS {
            let oldest = open.iter().min_by_key(|(_, (n, _))| *n).map(|(k, _)| k.clone()).expect("not empty");
            open.remove(&oldest);
        }
        open.insert(key, (n, client.clone()));
        Ok(client)
    }

    /// Forgets the session's connection to `server` (after it failed), so that the next call opens another.
    pub fn forget(&self, s: &Session, server: &str) {
        let prefix = format!("{server}\u{0}");
        self.open.lock().expect("mcp upstreams").retain(|(id, k), _| !(*id == s.id && k.starts_with(&prefix)));
    }
}
