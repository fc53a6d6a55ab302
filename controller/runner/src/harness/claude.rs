//! The `claude-code` harness: the real `claude` CLI in print mode (`-p --output-format stream-json`), every
//! model request sent to the gateway (`ANTHROPIC_BASE_URL`, the session token as its API key), and every
//! tool call asked of the admission API by a PreToolUse **command** hook (`paddock hook claude`) that fails
//! closed: it exits 2 on any error and is marked `onFailure: "block"`, and the permission mode is `dontAsk`,
//! so a tool call the hook did not explicitly allow does not run. (Claude Code's HTTP hook type fails open,
//! which is why it is not used.) Its stream-json becomes the transcript.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use super::process::{
    CLAUDE_CODE_VERSION, CliProcess, CliSpec, HarnessError, assistant_text, base_env, paddock_notes, private_home,
};
use crate::transcript::{Transcript, TranscriptEvent};
use crate::{RunContext, RunOutcome};

pub const CLI: CliSpec = CliSpec {
    harness: "claude-code",
    program: "claude",
    package: "@anthropic-ai/claude-code",
    version: CLAUDE_CODE_VERSION,
    env_var: "PADDOCK_CLAUDE_BIN",
};

/// Seconds Claude Code gives the hook. The hook may wait for a human approval (the gateway bounds that
/// wait); when this runs out the hook counts as failed and, with `onFailure: block`, the call is blocked.
const HOOK_TIMEOUT_SECONDS: u64 = 600;

/// The settings file given with `--settings`: the admission hook on every tool, and no prompting.
pub fn settings(ctx: &RunContext) -> Value {
    json!({
        "hooks": {
            "PreToolUse": [{
                "matcher": "*",
                "hooks": [{
                    "type": "command",
                    // Exec form: no shell parses the path.
                    "command": ctx.paddock_bin.display().to_string(),
                    "args": ["hook", "claude"],
                    "onFailure": "block",
                    "timeout": HOOK_TIMEOUT_SECONDS,
                }],
            }],
        },
        "permissions": {"defaultMode": "dontAsk"},
        "disableAllHooks": false,
        "includeCoAuthoredBy": false,
    })
}

/// The `--mcp-config` file: the Agent's servers only (with `--strict-mcp-config`). A remote server is the
/// gateway's endpoint with the session token; a stdio one runs here with the egress proxy's environment.
pub fn mcp_config(ctx: &RunContext) -> Value {
    let servers: serde_json::Map<String, Value> = super::mcp_wiring(ctx)
        .into_iter()
        .map(|w| match w {
            super::McpWiring::Remote { name, url } => (
                name,
                json!({"type": "http", "url": url, "headers": {"Authorization": format!("Bearer {}", ctx.gateway.token)}}),
            ),
            super::McpWiring::Stdio { name, program, args, env } => {
                (name, json!({"type": "stdio", "command": program, "args": args, "env": env}))
            }
        })
        .collect();
    json!({"mcpServers": servers})
}

/// The command line (without the program).
/// `mcp_file`: the `--mcp-config` file, when the Agent has MCP servers.
pub fn args(ctx: &RunContext, settings_file: &str, mcp_file: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--model",
        &ctx.model,
        // The hook's "allow" is the only way a tool call runs; anything else is refused without a prompt.
        "--permission-mode",
        "dontAsk",
        "--settings",
        settings_file,
        // Only our settings: a workspace's `.claude/settings.json` could otherwise switch hooks off.
        "--setting-sources",
        "",
        // MCP servers come from the Agent, not from a `.mcp.json` in the workspace.
        "--strict-mcp-config",
        "--no-session-persistence",
        "--max-turns",
        &ctx.max_turns.max(1).to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(f) = mcp_file {
        a.push("--mcp-config".into());
        a.push(f.to_owned());
    }
    if !ctx.agent.tools.is_empty() {
        a.push("--tools".into());
        a.push(ctx.agent.tools.join(","));
    }
    if let Some(i) = ctx.agent.instructions.as_deref().filter(|i| !i.trim().is_empty()) {
        a.push("--append-system-prompt".into());
        a.push(i.to_owned());
    }
    a
}

/// The environment: the base plus the gateway wiring for the CLI and for its hook.
pub fn env(ctx: &RunContext, home: &std::path::Path) -> BTreeMap<String, String> {
    let mut env = base_env(ctx, home);
    let gw = &ctx.gateway;
    for (k, v) in [
        ("ANTHROPIC_BASE_URL", format!("{}/llm/anthropic", gw.base_url)),
        ("ANTHROPIC_API_KEY", gw.token.clone()),
        // No update checks, telemetry, error reports or feedback surveys: the sandbox reaches the gateway only.
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
        ("DISABLE_AUTOUPDATER", "1".into()),
        ("DISABLE_TELEMETRY", "1".into()),
        ("DISABLE_ERROR_REPORTING", "1".into()),
        ("DISABLE_BUG_COMMAND", "1".into()),
        // Claude Code retries a refused request (even the 401 of an ended session) ten times, for minutes; a
        // few retries are enough to ride out a busy upstream.
        ("CLAUDE_CODE_MAX_RETRIES", "3".into()),
    ] {
        env.insert(k.into(), v);
    }
    // Claude Code sends these headers with every model request: its requests join the session's trace.
    if let Some(t) = gw.traceparent() {
        env.insert("ANTHROPIC_CUSTOM_HEADERS".into(), format!("traceparent: {t}"));
    }
    // For the hook.
    env.extend(super::process::hook_env(ctx).map(|(k, v)| (k.to_owned(), v)));
    // A key from elsewhere would bypass the gateway's accounting; only the session token is a key here.
    env.remove("ANTHROPIC_AUTH_TOKEN");
    env
}

pub async fn run(ctx: &RunContext, transcript: &Transcript) -> anyhow::Result<RunOutcome> {
    let program = CLI.locate()?;
    let home = private_home("paddock-claude-")?;
    let settings_file = home.path().join("paddock-settings.json");
    std::fs::write(&settings_file, serde_json::to_vec_pretty(&settings(ctx))?).map_err(HarnessError::Config)?;
    let mcp_file = home.path().join("paddock-mcp.json");
    let mcp_file = if ctx.agent.mcp_servers.is_empty() {
        None
    } else {
        std::fs::write(&mcp_file, serde_json::to_vec_pretty(&mcp_config(ctx))?).map_err(HarnessError::Config)?;
        Some(mcp_file.display().to_string())
    };
    let mut proc = CliProcess::for_session(
        &program,
        &args(ctx, &settings_file.display().to_string(), mcp_file.as_deref()),
        &env(ctx, home.path()),
        ctx,
    )?;
    let mut state = StreamState::default();
    let status = proc.stream_into(transcript, |ev| state.events(ev)).await?;
    Ok(match state.result {
        Some(Ok(text)) => RunOutcome::succeeded(text),
        Some(Err(why)) => RunOutcome::failed(why),
        None => RunOutcome::failed(proc.failure(Some(status))),
    })
}

/// Turns Claude Code's stream-json events into transcript events.
#[derive(Default)]
pub struct StreamState {
    /// The final answer (`Ok`) or why it failed, from the `result` event.
    pub result: Option<Result<String, String>>,
    tool_names: BTreeMap<String, String>,
    seen_blocks: HashSet<String>,
}

impl StreamState {
    pub fn events(&mut self, ev: &Value) -> Vec<TranscriptEvent> {
        let mut out = Vec::new();
        match ev["type"].as_str() {
            // Claude Code's own error text dressed as a reply (e.g. "Failed to authenticate"): the
            // `result` that follows carries it as the failure.
            Some("assistant") if ev["message"]["model"] == "<synthetic>" => {}
            Some("system") if ev["subtype"] == "api_retry" => {
                tracing::warn!(
                    status = ev["error_status"].as_u64().unwrap_or_default(),
                    error = ev["error"].as_str().unwrap_or_default(),
                    attempt = ev["attempt"].as_u64().unwrap_or_default(),
                    "claude retries a model request the gateway refused"
                );
            }
            Some("assistant") => {
                let msg = &ev["message"];
                let id = msg["id"].as_str().unwrap_or_default();
                for (i, block) in msg["content"].as_array().into_iter().flatten().enumerate() {
                    // Print mode repeats a message's blocks as it grows in some versions; each block counts once.
                    let key = block["id"].as_str().map(str::to_owned).unwrap_or_else(|| format!("{id}/{i}/{block}"));
                    if !self.seen_blocks.insert(key) {
                        continue;
                    }
                    match block["type"].as_str() {
                        Some("text") => {
                            assistant_text(block["text"].as_str().unwrap_or_default(), &mut out);
                        }
                        Some("tool_use") => {
                            let id = block["id"].as_str().unwrap_or_default().to_owned();
                            let name = block["name"].as_str().unwrap_or_default().to_owned();
                            self.tool_names.insert(id.clone(), name.clone());
                            out.push(TranscriptEvent::ToolCall { id, name, args: block["input"].clone() });
                        }
                        _ => {}
                    }
                }
            }
            Some("user") => {
                for block in ev["message"]["content"].as_array().into_iter().flatten() {
                    if block["type"] != "tool_result" {
                        continue;
                    }
                    let id = block["tool_use_id"].as_str().unwrap_or_default().to_owned();
                    let output = result_text(&block["content"]);
                    let is_error = block["is_error"].as_bool().unwrap_or(false);
                    if is_error {
                        // The hook's reason, as Claude Code passes it on, is a `[paddock]` note.
                        for (tool, policy, reason) in paddock_notes(&output) {
                            out.push(TranscriptEvent::Verdict {
                                phase: "tool_call".into(),
                                verdict: "deny".into(),
                                reason,
                                policy,
                                tool: tool.or_else(|| self.tool_names.get(&id).cloned()),
                            });
                        }
                    }
                    out.push(TranscriptEvent::ToolResult { id, output, is_error });
                }
            }
            Some("result") => {
                let u = &ev["usage"];
                let n = |k: &str| u[k].as_u64().unwrap_or(0);
                out.push(TranscriptEvent::Usage {
                    input_tokens: n("input_tokens") + n("cache_read_input_tokens") + n("cache_creation_input_tokens"),
                    output_tokens: n("output_tokens"),
                });
                let text = ev["result"].as_str().unwrap_or_default().to_owned();
                let ok = ev["subtype"] == "success" && ev["is_error"] != true;
                self.result = Some(if ok {
                    Ok(text)
                } else {
                    let kind = ev["terminal_reason"].as_str().or(ev["subtype"].as_str()).unwrap_or("error");
                    let errors: Vec<String> = ev["errors"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e.as_str().map(str::to_owned))
                        .collect();
                    Err(match (text.is_empty(), errors.is_empty()) {
                        (false, _) => format!("claude ended with {kind}: {text}"),
                        (true, false) => format!("claude ended with {kind}: {}", errors.join("; ")),
                        (true, true) => format!("claude ended with {kind}"),
                    })
                });
            }
            _ => {}
        }
        out
    }
}

/// A tool result's content: a string, or blocks of which the text ones count.
fn result_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_events(lines: &[Value]) -> (Vec<TranscriptEvent>, StreamState) {
        let mut s = StreamState::default();
        let evs = lines.iter().flat_map(|l| s.events(l)).collect();
        (evs, s)
    }

    #[test]
    fn stream_json_becomes_the_transcript() {
        let (evs, s) = state_events(&[
            json!({"type": "system", "subtype": "init", "tools": ["Bash"]}),
            json!({"type": "assistant", "message": {"id": "m1", "content": [{"type": "text", "text": "Listing."}]}}),
            json!({"type": "assistant", "message": {"id": "m1", "content": [
                {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]}}),
            json!({"type": "assistant", "message": {"id": "m1", "content": [{"type": "text", "text":
                "[paddock] The tool call `Bash` was blocked by policy `github-rules` (rule `x`): no. Do not retry it; tell the user."}]}}),
            json!({"type": "user", "message": {"content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "a.txt"}]}]}}),
            json!({"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t2", "is_error": true,
                "content": "PreToolUse:Bash hook error: [paddock] The tool call `Bash` was blocked by policy `p`: denied."}]}}),
            json!({"type": "result", "subtype": "success", "is_error": false, "result": "Done.",
                   "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 7}}),
        ]);
        assert_eq!(evs[0], TranscriptEvent::Message { role: "assistant".into(), text: "Listing.".into() });
        assert_eq!(
            evs[1],
            TranscriptEvent::ToolCall { id: "t1".into(), name: "Bash".into(), args: json!({"command": "ls"}) }
        );
        assert!(matches!(&evs[2], TranscriptEvent::Verdict { phase, verdict, policy: Some(p), tool: Some(t), .. }
            if phase == "llm_response" && verdict == "deny" && p == "github-rules" && t == "Bash"));
        assert_eq!(evs[3], TranscriptEvent::ToolResult { id: "t1".into(), output: "a.txt".into(), is_error: false });
        assert!(
            matches!(&evs[4], TranscriptEvent::Verdict { phase, policy: Some(p), .. } if phase == "tool_call" && p == "p")
        );
        assert!(matches!(&evs[5], TranscriptEvent::ToolResult { is_error: true, .. }));
        assert_eq!(evs[6], TranscriptEvent::Usage { input_tokens: 15, output_tokens: 7 });
        assert_eq!(s.result, Some(Ok("Done.".into())));
    }

    #[test]
    fn a_failed_result_says_why() {
        let (_, s) =
            state_events(&[json!({"type": "result", "subtype": "error_max_turns", "is_error": true, "usage": {}})]);
        assert_eq!(s.result, Some(Err("claude ended with error_max_turns".into())));
    }

    #[test]
    fn a_refused_token_is_a_failure_not_a_reply() {
        let (evs, s) = state_events(&[
            json!({"type": "assistant", "message": {"id": "x", "model": "<synthetic>", "content": [
                {"type": "text", "text": "Failed to authenticate. API Error: 401 invalid or expired session token"}]}}),
            json!({"type": "result", "subtype": "success", "is_error": true, "terminal_reason": "api_error",
                   "result": "Failed to authenticate. API Error: 401 invalid or expired session token", "usage": {}}),
        ]);
        assert!(!evs.iter().any(|e| matches!(e, TranscriptEvent::Message { .. })), "{evs:?}");
        assert_eq!(
            s.result,
            Some(Err(
                "claude ended with api_error: Failed to authenticate. API Error: 401 invalid or expired session token"
                    .into()
            ))
        );
    }

    #[test]
    fn a_repeated_block_counts_once() {
        let m = json!({"type": "assistant", "message": {"id": "m1", "content": [
            {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]}});
        let (evs, _) = state_events(&[m.clone(), m]);
        assert_eq!(evs.len(), 1);
    }
}
