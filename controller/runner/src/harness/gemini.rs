//! The `gemini-cli` harness: Google's real `gemini` CLI headless (`-o stream-json`, the prompt on stdin),
//! every model request sent to the gateway's Gemini endpoint (`GOOGLE_GEMINI_BASE_URL`, the session token as
//! `GEMINI_API_KEY`). Every tool call it makes was first released by the gateway's response gate, which
//! removes a denied `functionCall` before the CLI sees it; its `BeforeTool` hook (`paddock hook gemini`)
//! then checks the call again where it runs (a push judged by the remotes the workspace really has), and
//! can only refuse. The settings go in the system settings file, which outranks a workspace's own
//! `.gemini/settings.json`. Its stream-json events become the transcript.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::process::{
    CliProcess, CliSpec, GEMINI_CLI_VERSION, HarnessError, assistant_text, base_env, paddock_notes, private_home,
};
use crate::transcript::{Transcript, TranscriptEvent};
use crate::{RunContext, RunOutcome};

pub const CLI: CliSpec = CliSpec {
    harness: "gemini-cli",
    program: "gemini",
    package: "@google/gemini-cli",
    version: GEMINI_CLI_VERSION,
    env_var: "PADDOCK_GEMINI_BIN",
};

/// Milliseconds the CLI gives the hook (which may wait for a human).
const HOOK_TIMEOUT_MS: u64 = 600_000;

/// The settings: the API key as the way to sign in (with a base URL set the CLI would otherwise pick a
/// "gateway" sign-in that headless mode refuses), no usage statistics sent to Google, the Agent's MCP
/// servers only, the turn limit, and the hook on every tool.
pub fn settings(ctx: &RunContext) -> Value {
    let servers: serde_json::Map<String, Value> = super::mcp_wiring(ctx)
        .into_iter()
        .map(|w| match w {
            super::McpWiring::Remote { name, url } => (
                name,
                json!({"httpUrl": url, "headers": {"Authorization": format!("Bearer {}", ctx.gateway.token)},
                       "trust": true}),
            ),
            super::McpWiring::Stdio { name, program, args, env } => {
                (name, json!({"command": program, "args": args, "env": env, "trust": true}))
            }
        })
        .collect();
    json!({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": false},
        "general": {"disableAutoUpdate": true, "disableUpdateNag": true},
        "model": {"maxSessionTurns": ctx.max_turns.max(1)},
        "mcpServers": servers,
        "hooks": {"BeforeTool": [{"matcher": ".*", "hooks": [{
            "type": "command",
            "command": format!("{} hook gemini", shell_word(&ctx.paddock_bin.display().to_string())),
            "timeout": HOOK_TIMEOUT_MS,
        }]}]},
    })
}

/// A word for the shell that runs hook commands, quoted.
fn shell_word(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub fn args(ctx: &RunContext) -> Vec<String> {
    // The model is always given: without it the CLI first asks a router model which model to use.
    // `yolo`: the gateway and the hook decide every call; the CLI's own prompts would wait for no one.
    vec!["-m".into(), ctx.model.clone(), "-o".into(), "stream-json".into(), "--approval-mode".into(), "yolo".into()]
}

pub fn env(ctx: &RunContext, home: &Path) -> BTreeMap<String, String> {
    let mut env = base_env(ctx, home);
    let gw = &ctx.gateway;
    for (k, v) in [
        ("GOOGLE_GEMINI_BASE_URL", format!("{}/llm/google", gw.base_url)),
        ("GEMINI_API_KEY", gw.token.clone()),
        ("GEMINI_CLI_HOME", home.display().to_string()),
        ("GEMINI_CLI_SYSTEM_SETTINGS_PATH", home.join("system-settings.json").display().to_string()),
        // Headless runs refuse an untrusted folder; the workspace is the session's.
        ("GEMINI_CLI_TRUST_WORKSPACE", "true".into()),
        // One process: no relaunch with a larger heap outside the runner's process group bookkeeping.
        ("GEMINI_CLI_NO_RELAUNCH", "true".into()),
        ("GEMINI_TELEMETRY_ENABLED", "false".into()),
    ] {
        env.insert(k.into(), v);
    }
    // For the hook.
    env.extend(super::process::hook_env(ctx).map(|(k, v)| (k.to_owned(), v)));
    // Another key, Vertex AI or a cloud project would send the model traffic elsewhere.
    for k in ["GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_CLOUD_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS"] {
        env.remove(k);
    }
    env
}

/// Settings of the workspace's own that the CLI would read beside the runner's: a trusted folder's
/// `.gemini/settings.json` adds hooks, MCP servers and tool-discovery commands the CLI runs without a
/// decision (its merge keeps both), and can switch the runner's hook off by its command.
const WORKSPACE_SETTINGS: [&str; 2] = [".gemini/settings.json", ".gemini/settings.jsonc"];

pub async fn run(ctx: &RunContext, transcript: &Transcript) -> anyhow::Result<RunOutcome> {
    if let Some(found) = WORKSPACE_SETTINGS.iter().find(|f| ctx.workspace.join(f).exists()) {
        return Ok(RunOutcome::failed(format!(
            "the workspace has Gemini CLI settings of its own (`{found}`), which the CLI would read with the \
             runner's: hooks and commands no policy decides. Remove the file from the repository (or move it out \
             of `.gemini/`) to run this agent; the gemini-cli harness did not start"
        )));
    }
    let program = CLI.locate()?;
    let home = private_home("paddock-gemini-")?;
    let text = serde_json::to_vec_pretty(&settings(ctx))?;
    let user_dir = home.path().join(".gemini");
    std::fs::create_dir_all(&user_dir).map_err(HarnessError::Config)?;
    for file in [user_dir.join("settings.json"), home.path().join("system-settings.json")] {
        std::fs::write(file, &text).map_err(HarnessError::Config)?;
    }
    let mut proc = CliProcess::for_session(&program, &args(ctx), &env(ctx, home.path()), ctx)?;
    let mut state = StreamState::default();
    let status = proc.stream_into(transcript, |ev| state.events(ev)).await?;
    for t in state.flush() {
        transcript.emit(t).await;
    }
    Ok(match state.result {
        Some(Ok(())) if status.success() => RunOutcome::succeeded(state.last_message.unwrap_or_default()),
        Some(Err(why)) => RunOutcome::failed(format!("gemini: {why}")),
        _ => RunOutcome::failed(proc.failure(Some(status))),
    })
}

/// Turns the CLI's stream-json events into transcript events. The assistant's text arrives in pieces
/// (`delta: true`); it becomes one message when something else happens.
#[derive(Default)]
pub struct StreamState {
    pub result: Option<Result<(), String>>,
    pub last_message: Option<String>,
    text: String,
    tool_names: BTreeMap<String, String>,
}

impl StreamState {
    /// The assistant's text so far, as a message (and the gateway's notes in it as verdicts).
    pub fn flush(&mut self) -> Vec<TranscriptEvent> {
        let mut out = Vec::new();
        let text = std::mem::take(&mut self.text);
        if !text.trim().is_empty() {
            let rest = assistant_text(&text, &mut out);
            if !rest.is_empty() {
                self.last_message = Some(rest);
            }
        }
        out
    }

    pub fn events(&mut self, ev: &Value) -> Vec<TranscriptEvent> {
        match (ev["type"].as_str(), ev["role"].as_str()) {
            (Some("message"), Some("assistant")) => {
                let piece = ev["content"].as_str().unwrap_or_default();
                if ev["delta"] == true {
                    self.text.push_str(piece);
                } else {
                    self.text = piece.to_owned();
                }
                return vec![];
            }
            // The prompt: already in the transcript as the runner gave it.
            (Some("message" | "init"), _) => return vec![],
            _ => {}
        }
        let mut out = self.flush();
        match ev["type"].as_str() {
            Some("tool_use") => {
                let id = ev["tool_id"].as_str().unwrap_or_default().to_owned();
                let name = ev["tool_name"].as_str().unwrap_or_default().to_owned();
                self.tool_names.insert(id.clone(), name.clone());
                out.push(TranscriptEvent::ToolCall { id, name, args: ev["parameters"].clone() });
            }
            Some("tool_result") => {
                let id = ev["tool_id"].as_str().unwrap_or_default().to_owned();
                let ok = ev["status"] == "success";
                let output = match ok {
                    true => ev["output"].as_str().unwrap_or_default().to_owned(),
                    false => ev["error"]["message"].as_str().or(ev["output"].as_str()).unwrap_or_default().to_owned(),
                };
                if !ok {
                    // The hook's reason, as the CLI passes it on.
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
                out.push(TranscriptEvent::ToolResult { id, output, is_error: !ok });
            }
            Some("error") => {
                let message = ev["message"].as_str().unwrap_or_default();
                tracing::warn!(severity = ev["severity"].as_str().unwrap_or_default(), message, "gemini");
            }
            Some("result") => {
                let s = &ev["stats"];
                out.push(TranscriptEvent::Usage {
                    input_tokens: s["input_tokens"].as_u64().unwrap_or(0),
                    output_tokens: s["output_tokens"].as_u64().unwrap_or(0),
                });
                self.result = Some(match ev["status"].as_str() {
                    Some("success") => Ok(()),
                    other => Err(ev["error"]["message"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("the run ended with status {}", other.unwrap_or("(none)")))),
                });
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_json_becomes_the_transcript() {
        let mut s = StreamState::default();
        let lines = [
            json!({"type": "init", "session_id": "x", "model": "gemini-2.5-pro"}),
            json!({"type": "message", "role": "user", "content": "tidy up\n"}),
            json!({"type": "message", "role": "assistant", "content": "Listing", "delta": true}),
            json!({"type": "message", "role": "assistant", "content": ".\n[paddock] The tool call `run_shell_command` was \
                blocked by policy `github-rules` (rule `r`): no. Do not retry it; tell the user.", "delta": true}),
            json!({"type": "tool_use", "tool_name": "run_shell_command", "tool_id": "t1", "parameters": {"command": "ls"}}),
            json!({"type": "tool_result", "tool_id": "t1", "status": "success", "output": "a.txt"}),
            json!({"type": "tool_use", "tool_name": "run_shell_command", "tool_id": "t2", "parameters": {"command": "x"}}),
            json!({"type": "tool_result", "tool_id": "t2", "status": "error", "error": {"type": "policy_violation",
                "message": "[paddock] The tool call `run_shell_command` was blocked by policy `p`: no."}}),
            json!({"type": "message", "role": "assistant", "content": "Done.", "delta": true}),
            json!({"type": "result", "status": "success", "stats": {"input_tokens": 200, "output_tokens": 40}}),
        ];
        let evs: Vec<TranscriptEvent> = lines.iter().flat_map(|l| s.events(l)).collect();
        assert_eq!(evs[0], TranscriptEvent::Message { role: "assistant".into(), text: "Listing.".into() });
        assert!(matches!(&evs[1], TranscriptEvent::Verdict { phase, policy: Some(p), tool: Some(t), .. }
            if phase == "llm_response" && p == "github-rules" && t == "run_shell_command"));
        assert!(
            matches!(&evs[2], TranscriptEvent::ToolCall { id, name, .. } if id == "t1" && name == "run_shell_command")
        );
        assert_eq!(evs[3], TranscriptEvent::ToolResult { id: "t1".into(), output: "a.txt".into(), is_error: false });
        assert!(
            matches!(&evs[5], TranscriptEvent::Verdict { phase, policy: Some(p), .. } if phase == "tool_call" && p == "p")
        );
        assert!(matches!(&evs[6], TranscriptEvent::ToolResult { is_error: true, .. }));
        assert_eq!(evs[7], TranscriptEvent::Message { role: "assistant".into(), text: "Done.".into() });
        assert_eq!(evs[8], TranscriptEvent::Usage { input_tokens: 200, output_tokens: 40 });
        assert_eq!(s.result, Some(Ok(())));
        assert_eq!(s.last_message.as_deref(), Some("Done."));
    }

    #[test]
    fn a_failed_run_says_why() {
        let mut s = StreamState::default();
        s.events(&json!({"type": "result", "status": "error", "error": {"type": "x", "message": "401 invalid key"}}));
        assert_eq!(s.result, Some(Err("401 invalid key".into())));
    }
}
