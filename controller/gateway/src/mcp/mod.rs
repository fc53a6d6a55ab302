//! MCP at the protocol. Each remote MCP server of an Agent (`spec.mcpServers[].url`) is offered to the
//! session's harness at `/mcp/{server}` (streamable HTTP, the session token as `Authorization: Bearer`). The
//! gateway is an MCP server to the harness and an MCP client to the real server (both sides rmcp):
//! `tools/list` leaves out what the Agent's rules never allow, every `tools/call` is decided at `tool_call`
//! before it is forwarded and its result at `tool_result` before the harness sees it, an ask holds the call
//! until a human decides, and the `credentials` entry for the server's host is added by the gateway only.
//!
//! Tools are named `mcp__{server}__{tool}` in every decision, audit row and transcript, the name Claude Code
//! gives them; rules written for that name match Codex's and the custom harness's calls alike.

mod handler;
mod legacy_sse;
mod upstream;

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paddock_api::McpServer;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::gateway::{Gateway, Session};

pub use handler::McpProxy;
pub use upstream::Upstreams;

/// The largest JSON-RPC message a harness may send to an MCP endpoint.
const MAX_REQUEST_BYTES: usize = 4 << 20;

/// What one request to `/mcp/{server}` is for: the session its token belongs to and the server it names.
/// Put into the request's extensions before rmcp sees it; the handler reads it from there on every request,
/// so an MCP session id never stands in for the token.
#[derive(Clone)]
pub struct McpTarget {
    pub session: Arc<Session>,
    pub server: McpServer,
}

/// The MCP endpoints: the rmcp service shared by every session, behind [`endpoint`]'s authentication.
#[derive(Clone)]
pub struct McpEndpoints {
    service: StreamableHttpService<McpProxy, LocalSessionManager>,
}

impl McpEndpoints {
    pub fn new(gw: Arc<Gateway>) -> McpEndpoints {
        let upstreams = Arc::new(Upstreams::new(&gw));
        let factory = move || Ok(McpProxy::new(gw.clone(), upstreams.clone()));
        // Sessions (`Mcp-Session-Id`), because harness clients built on older rmcp (Codex) require one. The
        // handler keeps nothing in them: every request carries its token and the upstream connections live in
        // `Upstreams`; a replica that does not know a session id answers 404 and the client initialises
        // again, as the protocol says. Plain JSON answers. Any Host: the token, not the name the harness
        // used, is what admits a request.
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(true)
            .with_json_response(true)
            .disable_allowed_hosts()
            // Harnesses send no `Origin`; a browser does. A page on another site gets 403 even with a token it
            // came by (DNS rebinding, a token pasted into a page); loopback pages, as MCP's own inspector, pass.
            .with_allowed_origins(["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"])
            .enforce_origin_validation()
            .with_max_request_body_bytes(MAX_REQUEST_BYTES);
        McpEndpoints { service: StreamableHttpService::new(factory, Arc::new(LocalSessionManager::default()), config) }
    }
}

/// `/mcp/{server}` (any method): the session token must be live and its Agent must have a remote MCP server of
/// that name; then the request goes to rmcp with an [`McpTarget`].
pub async fn endpoint(
    State((gw, mcp)): State<(Arc<Gateway>, McpEndpoints)>,
    Path(server): Path<String>,
    mut req: Request,
) -> Response {
    let Some(token) = crate::proxy::bearer(req.headers()) else {
        return refuse(StatusCode::UNAUTHORIZED, "an MCP endpoint takes the session token as `Authorization: Bearer`");
    };
    let Some(session) = gw.session_for_token(token).await else {
        return refuse(StatusCode::UNAUTHORIZED, "the session token is unknown, expired or its session has ended");
    };
    let set = gw.policies();
    let Some(agent) = set.agent(&session.namespace, &session.agent) else {
        return refuse(StatusCode::FORBIDDEN, &format!("agent `{}` is not governed by this gateway", session.agent));
    };
    let Some(entry) = agent.spec.mcp_servers.iter().find(|m| m.name == server) else {
        return refuse(StatusCode::NOT_FOUND, &format!("agent `{}` has no MCP server `{server}`", session.agent));
    };
    if entry.url.is_none() {
        return refuse(
            StatusCode::NOT_FOUND,
            &format!("MCP server `{server}` is a stdio server; it runs inside the sandbox, not at the gateway"),
        );
    }
    req.extensions_mut().insert(McpTarget { session, server: entry.clone() });
    match tower::ServiceExt::oneshot(mcp.service, req).await {
        Ok(r) => r.map(axum::body::Body::new),
        Err(e) => match e {},
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": why}))).into_response()
}
