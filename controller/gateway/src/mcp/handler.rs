//! The MCP server the harness talks to: `tools/list` and `tools/call` of the Agent's remote server, decided
//! by the session's policies on the way. Other requests (resources, prompts, completion) are not offered:
//! the gateway cannot yet judge them, and what it cannot judge it does not pass.

use std::sync::Arc;
use std::time::Duration;

use paddock_api::{Phase, Verdict};
use paddock_policy::Event;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::upstream::{Client, UpstreamError, Upstreams};
use paddock_policy::tools::mcp_tool_name;

use super::McpTarget;
use crate::gateway::{Gateway, Ruling};

pub struct McpProxy {
    gw: Arc<Gateway>,
    upstreams: Arc<Upstreams>,
}

impl McpProxy {
    pub fn new(gw: Arc<Gateway>, upstreams: Arc<Upstreams>) -> McpProxy {
        McpProxy { gw, upstreams }
    }

    async fn client(&self, t: &McpTarget) -> Result<Client, McpError> {
        self.upstreams.client(&t.session, &t.server, &self.gw).await.map_err(|e| {
            let e = self.scrub(t, &e.to_string());
            tracing::warn!(session = %t.session.id, server = %t.server.name, error = %e, "MCP upstream");
            McpError::internal_error(e, None)
        })
    }

    /// An upstream's error text without the server's credential (a server or proxy may echo headers back).
    fn scrub(&self, t: &McpTarget, text: &str) -> String {
        let mut parts = crate::broker::Broker::mcp_secrets(&t.session);
        // Longest first, so that a secret inside a longer form is blanked with it.
        parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
        parts.iter().fold(text.to_owned(), |t, p| t.replace(p.as_str(), "***"))
    }

    /// Decides `event` for the target's session and, for an ask, waits until a human (or the approval's
    /// expiry) has decided: the call is held, never passed while pending.
    async fn decide_held(&self, t: &McpTarget, event: Event, ct: &CancellationToken) -> Result<Ruling, McpError> {
        let wait = Duration::from_secs(self.gw.limits.decide_wait_seconds.max(1));
        let mut ruling = self.gw.decide(&t.session, event, wait).await.map_err(internal)?;
        // What the rules rewrote (a redaction) before asking: an answer read back from the database after the
        // wait does not carry it, and the call must not go on without it.
        let rewritten = ruling.event.clone();
        while ruling.verdict == Verdict::Ask && ruling.status == "pending" {
            let id = ruling.approval_id.clone().expect("an ask has an approval");
            if t.session.ended().is_some() {
                return Ok(Ruling::refusal(None, "the session ended while the call waited for approval"));
            }
            ruling = tokio::select! {
                r = self.gw.wait_for(&id, wait) => r.map_err(internal)?,
                // The harness gave up on the call (cancelled it, or went away): nothing runs for it later.
                _ = ct.cancelled() => {
                    return Err(McpError::internal_error("the call was cancelled while it waited for approval", None));
                }
            };
        }
        if ruling.event.is_none() {
            ruling.event = rewritten;
        }
        Ok(ruling)
    }
}

/// The names every harness shows as they are: what they would rewrite cannot be matched to its decisions.
fn plain_tool_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn internal(e: impl std::fmt::Display) -> McpError {
    McpError::internal_error(e.to_string(), None)
}

fn target(ctx: &RequestContext<RoleServer>) -> Result<McpTarget, McpError> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<McpTarget>())
        .cloned()
        .ok_or_else(|| McpError::invalid_request("no session: use the session's MCP endpoint", None))
}

/// A tool result the model reads instead of the server's: why Paddock refused.
fn refused(what: &str, name: &str, r: &Ruling) -> CallToolResponse {
    let by = r.policy.as_deref().map(|p| format!(" (policy `{p}`)")).unwrap_or_default();
    CallToolResult::error(vec![ContentBlock::text(format!("Paddock refused {what} `{name}`: {}{by}", r.reason))]).into()
}

impl ServerHandler for McpProxy {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("paddock-gateway", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let t = target(&ctx)?;
        let client = self.client(&t).await?;
        let mut list = client.list_tools(request).await.map_err(|e| {
            self.upstreams.forget(&t.session, &t.server.name);
            internal(self.scrub(&t, &UpstreamError::Call(t.server.name.clone(), e.to_string()).to_string()))
        })?;
        let set = self.gw.policies();
        let Some(agent) = set.agent(&t.session.namespace, &t.session.agent) else {
            return Err(McpError::invalid_request("the session's agent is no longer governed here", None));
        };
        list.tools.retain(|tool| {
            let name = mcp_tool_name(&t.server.name, &tool.name);
            // A name a harness would rewrite (Claude Code and Codex replace what is not `[A-Za-z0-9_-]`) would
            // be decided under one spelling and shown under another: such a tool is not offered.
            if !plain_tool_name(&tool.name) {
                tracing::warn!(server = %t.server.name, tool = %tool.name, "MCP tool not offered: its name is not [A-Za-z0-9_-]");
                return false;
            }
            paddock_policy::denies_every_call(t.session.levels(agent), &name).is_none()
        });
        Ok(list)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let t = target(&ctx)?;
        if !plain_tool_name(&request.name) {
            let why = format!(
                "`{}` is not a tool name this gateway offers (only `[A-Za-z0-9_-]`)",
                request.name.escape_debug()
            );
            return Ok(CallToolResult::error(vec![ContentBlock::text(why)]).into());
        }
        let name = mcp_tool_name(&t.server.name, &request.name);
        let args = Value::Object(request.arguments.clone().unwrap_or_default());
        let call = Event { phase: Phase::ToolCall, tool: Some(name.clone()), args, ..Default::default() };
        let ruling = match self.gw.decided_for_mcp(&t.session, &name, &call.args) {
            Some(r) => r,
            None => self.decide_held(&t, call.clone(), &ctx.ct).await?,
        };
        if !ruling.allowed() {
            return Ok(refused("the call", &name, &ruling));
        }
        // The server gets the call as decided, nothing else the harness sent with it (`_meta`, request state):
        // its name and the arguments, as rules rewrote them (redaction).
        let args = ruling.event.map(|e| e.args).unwrap_or(call.args);
        let mut request = CallToolRequestParams::new(request.name.clone());
        request.arguments = match &args {
            Value::Object(m) => Some(m.clone()),
            _ => None,
        };
        let client = self.client(&t).await?;
        let result = match client.call_tool(request).await {
            Ok(r) => r,
            Err(e) => {
                self.upstreams.forget(&t.session, &t.server.name);
                let why = self.scrub(&t, &UpstreamError::Call(t.server.name.clone(), e.to_string()).to_string());
                return Ok(CallToolResult::error(vec![ContentBlock::text(why)]).into());
            }
        };
        let output = serde_json::to_value(&result).map_err(internal)?;
        let seen = Event {
            phase: Phase::ToolResult,
            tool: Some(name.clone()),
            args,
            output: Some(output),
            is_error: result.is_error.unwrap_or(false),
            ..Default::default()
        };
        let ruling = self.decide_held(&t, seen, &ctx.ct).await?;
        if !ruling.allowed() {
            return Ok(refused("the result of", &name, &ruling));
        }
        // A rewritten result (redaction) replaces the server's.
        match ruling.event.and_then(|e| e.output) {
            Some(rewritten) => {
                let r: CallToolResult = serde_json::from_value(rewritten).map_err(internal)?;
                Ok(r.into())
            }
            None => Ok(result.into()),
        }
    }
}
