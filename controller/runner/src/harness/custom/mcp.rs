//! The custom harness's MCP client (rmcp). A remote server is reached at the gateway's `/mcp/{server}` with
//! the session token (the gateway decides each call and injects the server's credential); a stdio server is
//! started here, inside the sandbox, with the egress proxy as its only way out. Tools are offered to the
//! model as `mcp__{server}__{tool}`, the name every harness and every rule uses.

use std::process::Stdio;
use std::sync::Arc;

use paddock_policy::tools::{mcp_tool_name, split_mcp_tool_name};
use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RunningService, ServiceExt};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::Value;

use super::tools::ToolOutput;
use crate::RunContext;
use crate::harness::{McpWiring, mcp_wiring};

struct Server {
    name: String,
    /// Reached through the gateway (which decides its calls), not started here.
    remote: bool,
    client: RunningService<RoleClient, ()>,
}

/// The Agent's MCP servers, connected, and the tools they offered.
#[derive(Default)]
pub struct McpServers {
    servers: Vec<Server>,
    /// `(mcp__server__tool, description, input schema)`.
    pub tools: Vec<(String, String, Value)>,
}

fn http_client() -> reqwest_mcp::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest_mcp::Client::builder().tls_backend_preconfigured(tls).build().expect("MCP HTTP client")
}

impl McpServers {
    /// Connects to every server of the Agent and lists its tools. A server that cannot be reached is an
    /// error naming it: the agent was defined with it, so running without it would be another agent.
    pub async fn connect(ctx: &RunContext) -> anyhow::Result<McpServers> {
        let mut out = McpServers::default();
        for w in mcp_wiring(ctx) {
            let (name, remote) = match &w {
                McpWiring::Remote { name, .. } => (name.clone(), true),
                McpWiring::Stdio { name, .. } => (name.clone(), false),
            };
            let client = match w {
                McpWiring::Remote { url, .. } => {
                    let config =
                        StreamableHttpClientTransportConfig::with_uri(url).auth_header(ctx.gateway.token.clone());
                    ().serve(StreamableHttpClientTransport::with_client(http_client(), config)).await
                }
                McpWiring::Stdio { program, args, env, .. } => {
                    let mut cmd = tokio::process::Command::new(&program);
                    cmd.args(&args).current_dir(&ctx.workspace).env_clear();
                    cmd.envs(std::env::vars().filter(|(k, _)| k == "PATH" || k == "HOME" || k == "LANG"));
                    cmd.envs(env);
                    let child = TokioChildProcess::builder(cmd)
                        .stderr(Stdio::null())
                        .spawn()
                        .map(|(t, _)| t)
                        .map_err(|e| anyhow::anyhow!("MCP server `{name}`: cannot start `{program}`: {e}"))?;
                    ().serve(child).await
                }
            }
            .map_err(|e| anyhow::anyhow!("MCP server `{name}`: {e}"))?;
            let listed =
                client.list_all_tools().await.map_err(|e| anyhow::anyhow!("MCP server `{name}`: tools/list: {e}"))?;
            for t in listed {
                let schema = Value::Object((*t.input_schema).clone());
                let desc = t.description.as_deref().unwrap_or_default().to_owned();
                out.tools.push((mcp_tool_name(&name, &t.name), desc, schema));
            }
            out.servers.push(Server { name, remote, client });
        }
        Ok(out)
    }

    /// Whether `name` is a tool of a remote server (decided by the gateway at its MCP endpoint).
    pub fn is_remote(&self, name: &str) -> bool {
        self.server_of(name).is_some_and(|(s, _)| s.remote)
    }

    fn server_of<'a>(&self, name: &'a str) -> Option<(&Server, &'a str)> {
        let (server, tool) = split_mcp_tool_name(name)?;
        Some((self.servers.iter().find(|s| s.name == server)?, tool))
    }

    /// Runs `mcp__server__tool`. The call was already admitted by the gateway (`tool_call`).
    pub async fn call(&self, name: &str, args: &Value) -> ToolOutput {
        let fail = |text: String| ToolOutput { text, is_error: true };
        let Some((s, tool)) = self.server_of(name) else {
            return fail(format!("`{name}` is no tool of the agent's MCP servers"));
        };
        let server = &s.name;
        let mut p = CallToolRequestParams::new(tool.to_owned());
        p.arguments = args.as_object().cloned();
        match s.client.call_tool(p).await {
            Ok(r) => ToolOutput { text: result_text(&r), is_error: r.is_error == Some(true) },
            Err(e) => fail(format!("MCP server `{server}`: {e}")),
        }
    }
}

/// A result as the model reads it: its text blocks, or the whole content as JSON when it has other kinds.
fn result_text(r: &CallToolResult) -> String {
    let v = serde_json::to_value(&r.content).unwrap_or(Value::Null);
    let texts: Option<Vec<&str>> =
        v.as_array().and_then(|a| a.iter().map(|b| b.get("text").and_then(Value::as_str)).collect::<Option<Vec<_>>>());
    match texts {
        Some(t) if !t.is_empty() => t.join("\n"),
        _ => v.to_string(),
    }
}
