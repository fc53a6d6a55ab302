//! The `opencode` harness: the real OpenCode (`opencode run --format json`, the prompt on stdin) with its
//! whole configuration given in `OPENCODE_CONFIG_CONTENT` (which outranks every file) and a project's own
//! configuration switched off: one provider, the gateway, in the wire format of the model's provider, the
//! session token as its key. The gateway's response gate removes a denied call from the model's answer
//! before OpenCode sees it, and a plugin of ours (OpenCode's hooks are JavaScript plugins) asks the gateway
//! again before each call runs, by the call's id, through `paddock hook claude`, failing closed. It also
//! asks the model for a title for the session: one more request, governed like the rest. Its JSON events
//! become the transcript.

use std::collections::BTreeMap;
use std::path::Path;

use paddock_api::catalog::Provider;
use serde_json::{Value, json};

use super::process::{
    CliProcess, CliSpec, HarnessError, OPENCODE_VERSION, assistant_text, base_env, llm_base_urls, private_home,
    provider_of,
};
use crate::transcript::{Transcript, TranscriptEvent};
use crate::{RunContext, RunOutcome};

pub const CLI: CliSpec = CliSpec {
    harness: "opencode",
    program: "opencode",
    package: "opencode-ai",
    version: OPENCODE_VERSION,
    env_var: "PADDOCK_OPENCODE_BIN",
};

const PROVIDER: &str = "paddock";
const KEY_VAR: &str = super::process::TOKEN_VAR;

/// The configuration: the gateway as the one provider (an AI SDK package OpenCode ships), the session's
/// model for the work and for titles, and the Agent's MCP servers.
pub fn config(ctx: &RunContext, plugin: Option<&Path>) -> Value {
    let urls = llm_base_urls(ctx);
    let url = |p: Provider| urls.iter().find(|(q, _)| *q == p).map(|(_, u)| u.clone()).unwrap_or_default();
    let (npm, base) = match provider_of(&ctx.model) {
        Provider::Anthropic => ("@ai-sdk/anthropic", format!("{}/v1", url(Provider::Anthropic))),
        Provider::Google => ("@ai-sdk/google", format!("{}/v1beta", url(Provider::Google))),
        _ => ("@ai-sdk/openai-compatible", url(Provider::Openai)),
    };
    let model = format!("{PROVIDER}/{}", ctx.model);
    let mcp: serde_json::Map<String, Value> = super::mcp_wiring(ctx)
        .into_iter()
        .map(|w| match w {
            super::McpWiring::Remote { name, url } => (
                name,
                json!({"type": "remote", "url": url, "enabled": true,
                       "headers": {"Authorization": format!("Bearer {{env:{KEY_VAR}}}")}}),
            ),
            super::McpWiring::Stdio { name, program, args, env } => {
                let mut command = vec![program];
                command.extend(args);
                (name, json!({"type": "local", "command": command, "environment": env, "enabled": true}))
            }
        })
        .collect();
    let mut c = json!({
        "$schema": "https://opencode.ai/config.json",
        "provider": {PROVIDER: {
            "npm": npm,
            "name": "Paddock gateway",
            "options": {"baseURL": base, "apiKey": format!("{{env:{KEY_VAR}}}")},
            "models": {ctx.model.clone(): {"name": ctx.model, "tool_call": true,
                                            "limit": {"context": 200_000, "output": 16_384}}},
        }},
        "model": model,
        "small_model": model,
        "autoupdate": false,
        "share": "disabled",
        "mcp": mcp,
    });
    if let Some(p) = plugin {
        c["plugin"] = json!([format!("file://{}", p.display())]);
    }
    if let Some(i) = ctx.agent.instructions.as_deref().filter(|i| !i.trim().is_empty()) {
        c["agent"] = json!({"build": {"prompt": i}});
    }
    c
}

pub fn args(ctx: &RunContext) -> Vec<String> {
    vec![
        "run".into(),
        "--format".into(),
        "json".into(),
        "-m".into(),
        format!("{PROVIDER}/{}", ctx.model),
        // The gateway decides every call; a permission OpenCode would ask about is refused in `run`.
        "--auto".into(),
    ]
}

/// `plugin`: the hook plugin's file.
pub fn env(ctx: &RunContext, home: &Path, plugin: Option<&Path>) -> BTreeMap<String, String> {
    let mut env = base_env(ctx, home);
    env.insert("OPENCODE_CONFIG_CONTENT".into(), config(ctx, plugin).to_string());
    // What the hook needs, the token (KEY_VAR) the provider's key too.
    env.extend(super::process::hook_env(ctx).map(|(k, v)| (k.to_owned(), v)));
    for (k, v) in [
        ("OPENCODE_DISABLE_PROJECT_CONFIG", "1"),
        // The model catalog is not fetched from models.dev, nor anything else at start.
        ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
        ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
        ("OPENCODE_DISABLE_SHARE", "1"),
        ("OPENCODE_DISABLE_DEFAULT_PLUGINS", "1"),
        ("OPENCODE_DISABLE_LSP_DOWNLOAD", "1"),
        ("OPENCODE_DISABLE_CLAUDE_CODE", "1"),
    ] {
        env.insert(k.into(), v.into());
    }
    for k in ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "GEMINI_API_KEY"] {
        env.remove(k);
    }
    env
}

/// The plugin that asks the gateway before each tool call (`tool.execute.before`; throwing blocks it).
pub fn gate_plugin(ctx: &RunContext) -> String {
    super::process::js_gate(
        ctx,
        r#"export const PaddockGate = async () => ({
  "tool.execute.before": async (input, output) => {
    const why = gate(input.tool, output.args, input.callID);
    if (why !== null) throw new Error(why);
  },
});"#,
    )
}

/// OpenCode installs its plugin package into its configuration directory at start (from npm); a directory
/// that already has it is left alone, so nothing is fetched.
fn seed_config_dir(home: &Path) -> std::io::Result<()> {
    let dir = home.join(".config/opencode");
    std::fs::create_dir_all(dir.join("node_modules"))?;
    let version = OPENCODE_VERSION;
    std::fs::write(dir.join("package.json"), format!(r#"{{"dependencies":{{"@opencode-ai/plugin":"{version}"}}}}"#))?;
    std::fs::write(
        dir.join("package-lock.json"),
        format!(
            r#"{{"lockfileVersion":3,"packages":{{"":{{"dependencies":{{"@opencode-ai/plugin":"{version}"}}}}}}}}"#
        ),
    )
}

pub async fn run(ctx: &RunContext, transcript: &Transcript) -> anyhow::Result<RunOutcome> {
    let program = CLI.locate()?;
    let home = private_home("paddock-opencode-")?;
    seed_config_dir(home.path()).map_err(HarnessError::Config)?;
    let plugin = home.path().join("paddock-gate.js");
    std::fs::write(&plugin, gate_plugin(ctx)).map_err(HarnessError::Config)?;
    let mut proc = CliProcess::for_session(&program, &args(ctx), &env(ctx, home.path(), Some(&plugin)), ctx)?;
    let mut state = StreamState::default();
    let status = proc.stream_into(transcript, |ev| state.events(ev)).await?;
    Ok(match (&state.failed, status.success()) {
        (Some(why), _) => RunOutcome::failed(format!("opencode: {why}")),
        (None, true) if state.stopped => RunOutcome::succeeded(state.last_message.unwrap_or_default()),
        _ => RunOutcome::failed(proc.failure(Some(status))),
    })
}

/// Turns OpenCode's JSON events into transcript events. A tool is reported once it has finished, with
/// its input and output together.
#[derive(Default)]
pub struct StreamState {
    pub last_message: Option<String>,
    pub failed: Option<String>,
    /// A step ended because the model stopped (not for tool calls): the run's end.
    pub stopped: bool,
}

impl StreamState {
    pub fn events(&mut self, ev: &Value) -> Vec<TranscriptEvent> {
        let mut out = Vec::new();
        let part = &ev["part"];
        match ev["type"].as_str() {
            Some("text") => {
                let rest = assistant_text(part["text"].as_str().unwrap_or_default(), &mut out);
                if !rest.is_empty() {
                    self.last_message = Some(rest);
                }
            }
            Some("tool_use") => {
                let id = part["callID"].as_str().unwrap_or_default().to_owned();
                let state = &part["state"];
                out.push(TranscriptEvent::ToolCall {
                    id: id.clone(),
                    name: part["tool"].as_str().unwrap_or_default().to_owned(),
                    args: state["input"].clone(),
                });
                let failed = state["status"] == "error";
                let output = match failed {
                    true => state["error"].as_str().unwrap_or_default().to_owned(),
                    false => state["output"].as_str().unwrap_or_default().to_owned(),
                };
                out.push(TranscriptEvent::ToolResult { id, output, is_error: failed });
            }
            Some("step_finish") => {
                let t = &part["tokens"];
                let n = |v: &Value| v.as_u64().unwrap_or(0);
                out.push(TranscriptEvent::Usage {
                    input_tokens: n(&t["input"]) + n(&t["cache"]["read"]) + n(&t["cache"]["write"]),
                    output_tokens: n(&t["output"]) + n(&t["reasoning"]),
                });
                self.stopped = part["reason"] != "tool-calls";
            }
            Some("error") => {
                let e = &ev["error"];
                let message = e["data"]["message"].as_str().or(e["message"].as_str()).or(e["name"].as_str());
                self.failed = Some(message.unwrap_or("the run failed").to_owned());
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
    fn json_events_become_the_transcript() {
        let mut s = StreamState::default();
        let lines = [
            json!({"type": "step_start", "part": {"type": "step-start"}}),
            json!({"type": "text", "part": {"type": "text", "text": "Listing.\n[paddock] The tool call `bash` was blocked by policy `github-rules` (rule `r`): no."}}),
            json!({"type": "tool_use", "part": {"type": "tool", "tool": "bash", "callID": "c1",
                "state": {"status": "completed", "input": {"command": "ls"}, "output": "a.txt\n"}}}),
            json!({"type": "step_finish", "part": {"reason": "tool-calls", "tokens": {"input": 100, "output": 20,
                "reasoning": 2, "cache": {"read": 5, "write": 0}}}}),
            json!({"type": "text", "part": {"type": "text", "text": "Done."}}),
            json!({"type": "step_finish", "part": {"reason": "stop", "tokens": {"input": 150, "output": 5}}}),
        ];
        let evs: Vec<TranscriptEvent> = lines.iter().flat_map(|l| s.events(l)).collect();
        assert_eq!(evs[0], TranscriptEvent::Message { role: "assistant".into(), text: "Listing.".into() });
        assert!(
            matches!(&evs[1], TranscriptEvent::Verdict { policy: Some(p), tool: Some(t), .. } if p == "github-rules" && t == "bash")
        );
        assert_eq!(
            evs[2],
            TranscriptEvent::ToolCall { id: "c1".into(), name: "bash".into(), args: json!({"command": "ls"}) }
        );
        assert_eq!(evs[3], TranscriptEvent::ToolResult { id: "c1".into(), output: "a.txt\n".into(), is_error: false });
        assert_eq!(evs[4], TranscriptEvent::Usage { input_tokens: 105, output_tokens: 22 });
        assert!(s.stopped && s.failed.is_none());
        assert_eq!(s.last_message.as_deref(), Some("Done."));
    }

    #[test]
    fn an_error_event_fails_the_run() {
        let mut s = StreamState::default();
        s.events(&json!({"type": "error", "error": {"name": "APIError", "data": {"message": "Forbidden", "statusCode": 403}}}));
        assert_eq!(s.failed.as_deref(), Some("Forbidden"));
    }
}
