//! The `codex` harness: the real `codex exec --json`, with a private `CODEX_HOME` whose `config.toml` names
//! one model provider, the gateway (`wire_api = "responses"`, the session token as its key — Codex ignores
//! `OPENAI_BASE_URL`). Codex's own sandbox and approvals are off because Paddock's sandbox surrounds it, and
//! its hooks are not relied on: every tool call it makes was first released by the gateway's response
//! gate, which removes denied calls before Codex sees them. Its JSON events become the transcript.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::{Value, json};

use super::process::{CODEX_VERSION, CliProcess, CliSpec, HarnessError, assistant_text, base_env, private_home};
use crate::transcript::{Transcript, TranscriptEvent};
use crate::{RunContext, RunOutcome};

pub const CLI: CliSpec = CliSpec {
    harness: "codex",
    program: "codex",
    package: "@openai/codex",
    version: CODEX_VERSION,
    env_var: "PADDOCK_CODEX_BIN",
};

/// The env var that carries the session token to Codex's provider (`env_key`).
const KEY_VAR: &str = "PADDOCK_TOKEN";

/// A TOML basic string. JSON's string escapes (`\"`, `\\`, `\n`, `\uXXXX` …) are all valid TOML.
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// `$CODEX_HOME/config.toml`.
pub fn config_toml(ctx: &RunContext) -> String {
    let mut c = format!(
        "# Written by the Paddock runner for one session; every model request goes to the gateway.\n\
         model = {model}\n\
         model_provider = \"paddock\"\n\
         # Paddock's sandbox surrounds Codex and the gateway decides every tool call.\n\
         approval_policy = \"never\"\n\
         sandbox_mode = \"danger-full-access\"\n\
         # A hosted tool runs at the provider, out of the gateway's sight: off.\n\
         web_search = \"disabled\"\n\
         check_for_update_on_startup = false\n\
         \n\
         [history]\n\
         persistence = \"none\"\n\
         \n\
         [model_providers.paddock]\n\
         name = \"Paddock gateway\"\n\
         base_url = {base}\n\
         wire_api = \"responses\"\n\
         env_key = \"{KEY_VAR}\"\n",
        model = toml_str(&ctx.model),
        base = toml_str(&format!("{}/llm/openai/v1", ctx.gateway.base_url)),
    );
    if let Some(i) = ctx.agent.instructions.as_deref().filter(|i| !i.trim().is_empty()) {
        // Top-level keys must come before the first table.
        c = c.replacen("\n[history]", &format!("developer_instructions = {}\n\n[history]", toml_str(i)), 1);
    }
    // The Agent's MCP servers: a remote one at the gateway's endpoint (the token from the environment, never
    // written here), a stdio one started by Codex inside the sandbox.
    for w in super::mcp_wiring(ctx) {
        match w {
            super::McpWiring::Remote { name, url } => c.push_str(&format!(
                "\n[mcp_servers.{}]\nurl = {}\nbearer_token_env_var = \"{KEY_VAR}\"\n",
                toml_str(&name),
                toml_str(&url)
            )),
            super::McpWiring::Stdio { name, program, args, env } => {
                let args: Vec<String> = args.iter().map(|a| toml_str(a)).collect();
                let env: Vec<String> = env.iter().map(|(k, v)| format!("{} = {}", toml_str(k), toml_str(v))).collect();
                c.push_str(&format!(
                    "\n[mcp_servers.{}]\ncommand = {}\nargs = [{}]\nenv = {{ {} }}\n",
                    toml_str(&name),
                    toml_str(&program),
                    args.join(", "),
                    env.join(", ")
                ));
            }
        }
    }
    c
}

pub fn args(ctx: &RunContext) -> Vec<String> {
    vec![
        "exec".into(),
        "--json".into(),
        // The workspace may be any directory; a repository is not required.
        "--skip-git-repo-check".into(),
        "--cd".into(),
        ctx.workspace.display().to_string(),
        // The prompt is read from stdin: a command line is visible to every process.
        "-".into(),
    ]
}

pub fn env(ctx: &RunContext, home: &Path) -> BTreeMap<String, String> {
    let mut env = base_env(ctx, home);
    env.insert("CODEX_HOME".into(), home.join("codex").display().to_string());
    env.insert(KEY_VAR.into(), ctx.gateway.token.clone());
    // A key or endpoint from elsewhere would bypass the gateway.
    for k in ["OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_API_KEY"] {
        env.remove(k);
    }
    env
}

pub async fn run(ctx: &RunContext, transcript: &Transcript) -> anyhow::Result<RunOutcome> {
    let program = CLI.locate()?;
    let home = private_home("paddock-codex-")?;
    let codex_home = home.path().join("codex");
    std::fs::create_dir_all(&codex_home).map_err(HarnessError::Config)?;
    std::fs::write(codex_home.join("config.toml"), config_toml(ctx)).map_err(HarnessError::Config)?;
    let mut proc = CliProcess::for_session(&program, &args(ctx), &env(ctx, home.path()), ctx)?;
    let mut state = StreamState::default();
    let status = proc.stream_into(transcript, |ev| state.events(ev)).await?;
    Ok(match (&state.failed, status.success()) {
        (Some(why), _) => RunOutcome::failed(format!("codex: {why}")),
        (None, true) if state.turn_completed => RunOutcome::succeeded(state.last_message.unwrap_or_default()),
        _ => RunOutcome::failed(proc.failure(Some(status))),
    })
}

/// Turns `codex exec --json` events into transcript events.
#[derive(Default)]
pub struct StreamState {
    pub last_message: Option<String>,
    pub failed: Option<String>,
    pub turn_completed: bool,
    started: HashSet<String>,
}

/// The transcript's name and arguments for a tool item. Shell commands keep Codex's tool name so they
/// line up with the gateway's decisions on `exec_command`.
fn tool_call(item: &Value) -> Option<(String, Value)> {
    match item["type"].as_str()? {
        "command_execution" => Some(("exec_command".into(), json!({"cmd": item["command"]}))),
        "file_change" => Some(("apply_patch".into(), json!({"changes": item["changes"]}))),
        "mcp_tool_call" => Some((
            paddock_policy::tools::mcp_tool_name(
                item["server"].as_str().unwrap_or_default(),
                item["tool"].as_str().unwrap_or_default(),
            ),
            item["arguments"].clone(),
        )),
        "web_search" => Some(("web_search".into(), json!({"query": item["query"]}))),
        _ => None,
    }
}

fn tool_result(item: &Value) -> (String, bool) {
    let failed = item["status"] == "failed";
    match item["type"].as_str().unwrap_or_default() {
        "command_execution" => {
            let code = item["exit_code"].as_i64();
            (item["aggregated_output"].as_str().unwrap_or_default().to_owned(), failed || code.is_some_and(|c| c != 0))
        }
        "file_change" => {
            let changes: Vec<String> = item["changes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!("{} {}", c["kind"].as_str().unwrap_or("update"), c["path"].as_str().unwrap_or_default())
                })
                .collect();
            (changes.join("\n"), failed)
        }
        "mcp_tool_call" => {
            let out = if item["error"].is_null() { &item["result"] } else { &item["error"] };
            (
                if out.is_string() { out.as_str().unwrap_or_default().to_owned() } else { out.to_string() },
                failed || !item["error"].is_null(),
            )
        }
        _ => (String::new(), failed),
    }
}

impl StreamState {
    pub fn events(&mut self, ev: &Value) -> Vec<TranscriptEvent> {
        let mut out = Vec::new();
        let item = &ev["item"];
        let id = item["id"].as_str().unwrap_or_default().to_owned();
        match ev["type"].as_str() {
            Some("item.started") => {
                if let Some((name, args)) = tool_call(item)
                    && self.started.insert(id.clone())
                {
                    out.push(TranscriptEvent::ToolCall { id, name, args });
                }
            }
            Some("item.completed") => match item["type"].as_str() {
                Some("agent_message") => {
                    let rest = assistant_text(item["text"].as_str().unwrap_or_default(), &mut out);
                    if !rest.is_empty() {
                        self.last_message = Some(rest);
                    }
                }
                // Codex's own notices (e.g. that it has no metadata for a model id it does not know) are
                // not part of the conversation.
                Some("error") => tracing::warn!(message = item["message"].as_str().unwrap_or_default(), "codex"),
                _ => {
                    if let Some((name, args)) = tool_call(item) {
                        if self.started.insert(id.clone()) {
                            out.push(TranscriptEvent::ToolCall { id: id.clone(), name, args });
                        }
                        let (output, is_error) = tool_result(item);
                        out.push(TranscriptEvent::ToolResult { id, output, is_error });
                    }
                }
            },
            Some("turn.completed") => {
                self.turn_completed = true;
                let u = &ev["usage"];
                out.push(TranscriptEvent::Usage {
                    input_tokens: u["input_tokens"].as_u64().unwrap_or(0),
                    output_tokens: u["output_tokens"].as_u64().unwrap_or(0),
                });
            }
            Some("turn.failed") => {
                self.failed = Some(ev["error"]["message"].as_str().unwrap_or("the turn failed").to_owned());
            }
            // A stream error Codex may retry; a fatal one is followed by `turn.failed` or a non-zero exit.
            Some("error") => tracing::warn!(message = ev["message"].as_str().unwrap_or_default(), "codex"),
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_json_becomes_the_transcript() {
        let mut s = StreamState::default();
        let lines = [
            json!({"type": "thread.started", "thread_id": "t"}),
            json!({"type": "item.completed", "item": {"id": "item_0", "type": "error", "message": "Model metadata not found"}}),
            json!({"type": "item.completed", "item": {"id": "item_1", "type": "agent_message", "text":
                "[paddock] The tool call `exec_command` was blocked by policy `github-rules` (rule `r`): no. Do not retry it; tell the user."}}),
            json!({"type": "item.started", "item": {"id": "item_2", "type": "command_execution", "command": "bash -lc 'ls'",
                   "aggregated_output": "", "exit_code": null, "status": "in_progress"}}),
            json!({"type": "item.completed", "item": {"id": "item_2", "type": "command_execution", "command": "bash -lc 'ls'",
                   "aggregated_output": "a\n", "exit_code": 0, "status": "completed"}}),
            json!({"type": "item.completed", "item": {"id": "item_3", "type": "file_change",
                   "changes": [{"path": "/w/n.txt", "kind": "add"}], "status": "completed"}}),
            json!({"type": "item.completed", "item": {"id": "item_4", "type": "agent_message", "text": "Done."}}),
            json!({"type": "turn.completed", "usage": {"input_tokens": 30, "cached_input_tokens": 0, "output_tokens": 4}}),
        ];
        let evs: Vec<TranscriptEvent> = lines.iter().flat_map(|l| s.events(l)).collect();
        assert!(matches!(&evs[0], TranscriptEvent::Verdict { verdict, tool: Some(t), policy: Some(p), .. }
            if verdict == "deny" && t == "exec_command" && p == "github-rules"));
        assert_eq!(
            evs[1],
            TranscriptEvent::ToolCall {
                id: "item_2".into(),
                name: "exec_command".into(),
                args: json!({"cmd": "bash -lc 'ls'"})
            }
        );
        assert_eq!(evs[2], TranscriptEvent::ToolResult { id: "item_2".into(), output: "a\n".into(), is_error: false });
        assert!(matches!(&evs[3], TranscriptEvent::ToolCall { name, .. } if name == "apply_patch"));
        assert_eq!(
            evs[4],
            TranscriptEvent::ToolResult { id: "item_3".into(), output: "add /w/n.txt".into(), is_error: false }
        );
        assert_eq!(evs[5], TranscriptEvent::Message { role: "assistant".into(), text: "Done.".into() });
        assert_eq!(evs[6], TranscriptEvent::Usage { input_tokens: 30, output_tokens: 4 });
        assert!(s.turn_completed && s.failed.is_none());
        assert_eq!(s.last_message.as_deref(), Some("Done."));
    }

    #[test]
    fn a_failed_command_is_an_error_result() {
        let mut s = StreamState::default();
        let evs = s.events(&json!({"type": "item.completed", "item": {"id": "i", "type": "command_execution",
            "command": "false", "aggregated_output": "", "exit_code": 1, "status": "failed"}}));
        assert!(matches!(&evs[1], TranscriptEvent::ToolResult { is_error: true, .. }));
    }

    #[test]
    fn turn_failed_is_the_outcome() {
        let mut s = StreamState::default();
        s.events(&json!({"type": "turn.failed", "error": {"message": "unexpected status 403"}}));
        assert_eq!(s.failed.as_deref(), Some("unexpected status 403"));
    }
}
