//! A stand-in remote MCP server (rmcp, streamable HTTP on 127.0.0.1) with Gmail-, Drive- and GitHub-shaped
//! tools and a log of every call it ran, with the `Authorization` it was sent: what a test checks to show
//! that a denied call never reached the server and that the credential came from the gateway.
//! Shared by the gateway's tests and the harness tests (`#[path]`).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult, PaginatedRequestParams,
    ResourceContents, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};

/// One call the stand-in ran.
#[derive(Clone, Debug)]
pub struct Call {
    pub tool: String,
    pub args: Value,
    pub authorization: Option<String>,
}

pub struct StandIn {
    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    pub port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A customer record whose result carries personal data (an e-mail address and a US SSN).
pub const PII_RECORD: &str = "Customer: Jane Roe, jane.roe@example.com, SSN 078-05-1120";

/// The tools: Gmail- and Drive-shaped (as a Google Workspace MCP server names them), GitHub's (as
/// github/github-mcp-server names them), and two plain ones.
fn tools() -> Vec<Tool> {
    let schema = |props: Value| -> Arc<serde_json::Map<String, Value>> {
        Arc::new(json!({"type": "object", "properties": props}).as_object().unwrap().clone())
    };
    let s = json!({"type": "string"});
    vec![
        Tool::new("gmail_create_draft", "Draft an e-mail", schema(json!({"to": s, "subject": s, "body": s}))),
        Tool::new("gmail_send_message", "Send an e-mail", schema(json!({"to": s, "subject": s, "body": s}))),
        Tool::new("gmail_update_draft", "Change a draft", schema(json!({"draft_id": s, "body": s}))),
        Tool::new("drive_read_file", "Read a Drive file", schema(json!({"file_id": s}))),
        Tool::new("drive_update_file", "Write a Drive file", schema(json!({"file_id": s, "content": s}))),
        Tool::new("create_issue", "Open an issue", schema(json!({"owner": s, "repo": s, "title": s}))),
        Tool::new("push_files", "Commit files to a branch", schema(json!({"owner": s, "repo": s, "branch": s}))),
        Tool::new("delete_file", "Delete a file", schema(json!({"owner": s, "repo": s, "path": s}))),
        Tool::new("echo", "Echo the text back", schema(json!({"text": s}))),
        Tool::new("lookup_customer", "A customer's record", schema(json!({"name": s}))),
        // A name Claude Code and Codex would rewrite (`files_delete`): decided under one spelling, shown under another.
        Tool::new("files.delete", "Delete a file", schema(json!({"path": s}))),
        // The tools the official conformance suite's server scenarios call (`tools-call-*`).
        Tool::new("test_simple_text", "Returns text", schema(json!({}))),
        Tool::new("test_image_content", "Returns an image", schema(json!({}))),
        Tool::new("test_audio_content", "Returns audio", schema(json!({}))),
        Tool::new("test_embedded_resource", "Returns a resource", schema(json!({}))),
        Tool::new("test_multiple_content_types", "Returns text, an image and a resource", schema(json!({}))),
        Tool::new("test_error_handling", "Fails", schema(json!({}))),
    ]
}

/// A 1×1 PNG and a tiny WAV, base64.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";
const WAV: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=";

/// The conformance suite's tools.
fn conformance_answer(tool: &str) -> Option<CallToolResult> {
    let resource = || ContentBlock::resource(ResourceContents::text("Resource text", "test://embedded"));
    Some(match tool {
        "test_simple_text" => {
            CallToolResult::success(vec![ContentBlock::text("This is a simple text response for testing.")])
        }
        "test_image_content" => CallToolResult::success(vec![ContentBlock::image(PNG, "image/png")]),
        "test_audio_content" => CallToolResult::success(vec![ContentBlock::audio(WAV, "audio/wav")]),
        "test_embedded_resource" => CallToolResult::success(vec![resource()]),
        "test_multiple_content_types" => CallToolResult::success(vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(PNG, "image/png"),
            resource(),
        ]),
        "test_error_handling" => {
            CallToolResult::error(vec![ContentBlock::text("This tool intentionally returns an error for testing")])
        }
        _ => return None,
    })
}

/// What a tool answers.
fn answer(tool: &str, args: &Value) -> CallToolResult {
    if let Some(r) = conformance_answer(tool) {
        return r;
    }
    let text = match tool {
        "gmail_create_draft" => json!({"id": "draft-7", "status": "draft"}).to_string(),
        "gmail_send_message" => json!({"id": "msg-1", "status": "sent"}).to_string(),
        // A file whose id starts with `secret` comes with a sensitivity label, as Drive's API reports one.
        "drive_read_file" => match args["file_id"].as_str().unwrap_or("?") {
            id if id.starts_with("secret") => {
                json!({"id": id, "classification": "confidential", "text": "plans"}).to_string()
            }
            id => format!("contents of {id}"),
        },
        "gmail_update_draft" => json!({"id": args["draft_id"], "status": "draft"}).to_string(),
        "drive_update_file" => "updated".into(),
        "create_issue" => json!({"number": 42, "html_url": "https://github.com/acme/web/issues/42"}).to_string(),
        "push_files" => json!({"commit": "0123abcd"}).to_string(),
        "delete_file" => "deleted".into(),
        "echo" => format!("Echo: {}", args["text"].as_str().unwrap_or("")),
        "lookup_customer" => PII_RECORD.into(),
        _ => return CallToolResult::error(vec![ContentBlock::text(format!("no tool {tool}"))]),
    };
    CallToolResult::success(vec![ContentBlock::text(text)])
}

#[derive(Clone)]
struct Server {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let authorization = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let args = Value::Object(request.arguments.clone().unwrap_or_default());
        let result = answer(&request.name, &args);
        self.calls.lock().unwrap().push(Call { tool: request.name.to_string(), args, authorization });
        Ok(result.into())
    }
}

impl StandIn {
    pub async fn start() -> StandIn {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let server = Server { calls: calls.clone() };
        let config = StreamableHttpServerConfig::default().disable_allowed_hosts();
        let service =
            StreamableHttpService::new(move || Ok(server.clone()), Arc::new(LocalSessionManager::default()), config);
        let app = axum::Router::new().route_service("/mcp", service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        StandIn { url: format!("http://127.0.0.1:{port}/mcp"), port, calls, task }
    }

    /// The calls it ran, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The names of the tools it ran.
    pub fn ran(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.tool).collect()
    }
}
