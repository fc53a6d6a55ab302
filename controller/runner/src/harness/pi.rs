//! The `pi` harness: the real Pi coding agent (`pi -p --mode json`, the prompt on stdin) with a private
//! agent directory whose `models.json` names one provider, the gateway, in the wire format of the model's
//! provider (Anthropic Messages, OpenAI Chat Completions or Gemini), the session token as its key. Pi asks
//! no one before a tool runs; the gateway's response gate removes a denied call from the model's answer
//! before Pi sees it, and an extension of ours (Pi's hooks are TypeScript extensions; discovery of any
//! other is off) asks the gateway again before each call runs, by the call's id, through
//! `paddock hook claude`, failing closed. Its JSON events become the transcript.

use std::collections::BTreeMap;
use std::path::Path;

use paddock_api::catalog::Provider;
use serde_json::{Value, json};

use super::process::{
    CliProcess, CliSpec, HarnessError, PI_VERSION, assistant_text, base_env, llm_base_urls, private_home, provider_of,
};
use crate::transcript::{Transcript, TranscriptEvent};
use crate::{RunContext, RunOutcome};

pub const CLI: CliSpec = CliSpec {
    harness: "pi",
    program: "pi",
    package: "@mariozechner/pi-coding-agent",
    version: PI_VERSION,
    env_var: "PADDOCK_PI_BIN",
};

/// The provider's name in `models.json`.
const PROVIDER: &str = "paddock";
/// The env var `models.json` names as the key (Pi reads a key named by a variable from the environment).
const KEY_VAR: &str = super::process::TOKEN_VAR;

/// `models.json`: one provider, the gateway, serving the session's model.
pub fn models_json(ctx: &RunContext) -> Value {
    let provider = provider_of(&ctx.model);
    let urls = llm_base_urls(ctx);
    let url = |p: Provider| urls.iter().find(|(q, _)| *q == p).map(|(_, u)| u.clone()).unwrap_or_default();
    let (api, base) = match provider {
        Provider::Anthropic => ("anthropic-messages", url(Provider::Anthropic)),
        Provider::Google => ("google-generative-ai", format!("{}/v1beta", url(Provider::Google))),
        _ => ("openai-completions", url(Provider::Openai)),
    };
    json!({"providers": {PROVIDER: {
        "baseUrl": base,
        "api": api,
        "apiKey": KEY_VAR,
        // The gateway passes the Chat format as OpenAI defines it; a `developer` role is OpenAI's own.
        "compat": {"supportsDeveloperRole": false},
        "models": [{"id": ctx.model, "contextWindow": 200_000, "maxTokens": 16_384}],
    }}})
}

/// The extension that asks the gateway before each tool call (`pi.on("tool_call")`, `{block, reason}`).
pub fn gate_extension(ctx: &RunContext) -> String {
    super::process::js_gate(
        ctx,
        r#"export default function (pi) {
  pi.on("tool_call", async (event) => {
    const why = gate(event.toolName, event.input, event.toolCallId);
    return why === null ? undefined : { block: true, reason: why };
  });
}"#,
    )
}

/// The command line; `gate`: the hook extension's file.
pub fn args(ctx: &RunContext, gate: &Path) -> Vec<String> {
    let mut a: Vec<String> = [
        "-p",
        "--mode",
        "json",
        "--provider",
        PROVIDER,
        "--model",
        &ctx.model,
        "--no-session",
        // Extensions, skills and templates from the workspace or home are code and prompts the Agent did
        // not name.
        "--no-extensions",
        "--no-skills",
        "--no-prompt-templates",
        "--offline",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // The one extension: the hook (an explicit `-e` loads even with discovery off).
    a.push("-e".into());
    a.push(gate.display().to_string());
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

pub fn env(ctx: &RunContext, home: &Path) -> BTreeMap<String, String> {
    let mut env = base_env(ctx, home);
    env.insert("PI_CODING_AGENT_DIR".into(), home.join("pi").display().to_string());
    env.insert("PI_OFFLINE".into(), "1".into());
    env.insert("PI_TELEMETRY".into(), "0".into());
    // The key `models.json` names (KEY_VAR), and what the hook needs.
    env.extend(super::process::hook_env(ctx).map(|(k, v)| (k.to_owned(), v)));
    // Pi's built-in providers read these; only the gateway's provider is named, but none may be there.
    for k in ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "AZURE_OPENAI_BASE_URL"] {
        env.remove(k);
    }
    env
}

pub async fn run(ctx: &RunContext, transcript: &Transcript) -> anyhow::Result<RunOutcome> {
    let program = CLI.locate()?;
    let home = private_home("paddock-pi-")?;
    let dir = home.path().join("pi");
    std::fs::create_dir_all(&dir).map_err(HarnessError::Config)?;
    std::fs::write(dir.join("models.json"), serde_json::to_vec_pretty(&models_json(ctx))?)
        .map_err(HarnessError::Config)?;
    let gate = home.path().join("paddock-gate.ts");
    std::fs::write(&gate, gate_extension(ctx)).map_err(HarnessError::Config)?;
    let mut proc = CliProcess::for_session(&program, &args(ctx, &gate), &env(ctx, home.path()), ctx)?;
    let mut state = StreamState::default();
    let status = proc.stream_into(transcript, |ev| state.events(ev)).await?;
    Ok(match (&state.failed, state.ended, status.success()) {
        (Some(why), _, _) => RunOutcome::failed(format!("pi: {why}")),
        (None, true, true) => RunOutcome::succeeded(state.last_message.unwrap_or_default()),
        _ => RunOutcome::failed(proc.failure(Some(status))),
    })
}

/// Turns Pi's JSON events into transcript events: an assistant message when it ends, each tool run from
/// its start and end.
#[derive(Default)]
pub struct StreamState {
    pub last_message: Option<String>,
    pub failed: Option<String>,
    pub ended: bool,
}

impl StreamState {
    pub fn events(&mut self, ev: &Value) -> Vec<TranscriptEvent> {
        let mut out = Vec::new();
        match ev["type"].as_str() {
            Some("message_end") if ev["message"]["role"] == "assistant" => {
                let m = &ev["message"];
                let text: Vec<&str> = m["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|b| b["type"] == "text")
                    .filter_map(|b| b["text"].as_str())
                    .collect();
                let rest = assistant_text(&text.join("\n"), &mut out);
                if !rest.is_empty() {
                    self.last_message = Some(rest);
                }
                let u = &m["usage"];
                let n = |k: &str| u[k].as_u64().unwrap_or(0);
                if n("input") + n("output") > 0 {
                    out.push(TranscriptEvent::Usage {
                        input_tokens: n("input") + n("cacheRead") + n("cacheWrite"),
                        output_tokens: n("output"),
                    });
                }
                // A model request that failed for good (after Pi's retries) ends the message with an error.
                if matches!(m["stopReason"].as_str(), Some("error" | "aborted")) {
                    self.failed = Some(m["errorMessage"].as_str().unwrap_or("the model request failed").to_owned());
                }
            }
            Some("tool_execution_start") => out.push(TranscriptEvent::ToolCall {
                id: ev["toolCallId"].as_str().unwrap_or_default().to_owned(),
                name: ev["toolName"].as_str().unwrap_or_default().to_owned(),
                args: ev["args"].clone(),
            }),
            Some("tool_execution_end") => {
                let text: Vec<&str> = ev["result"]["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b["text"].as_str())
                    .collect();
                out.push(TranscriptEvent::ToolResult {
                    id: ev["toolCallId"].as_str().unwrap_or_default().to_owned(),
                    output: text.join("\n"),
                    is_error: ev["isError"] == true,
                });
            }
            Some("agent_end") => self.ended = true,
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
            json!({"type": "session", "version": 3}),
            json!({"type": "message_end", "message": {"role": "user", "content": [{"type": "text", "text": "hi"}]}}),
            json!({"type": "message_end", "message": {"role": "assistant", "content": [
                {"type": "text", "text": "Listing.\n[paddock] The tool call `bash` was blocked by policy `github-rules` (rule `r`): no."},
                {"type": "toolCall", "id": "c1", "name": "bash", "arguments": {"command": "ls"}}],
                "usage": {"input": 100, "output": 20, "cacheRead": 5, "cacheWrite": 0}, "stopReason": "toolUse"}}),
            json!({"type": "tool_execution_start", "toolCallId": "c1", "toolName": "bash", "args": {"command": "ls"}}),
            json!({"type": "tool_execution_end", "toolCallId": "c1", "toolName": "bash",
                "result": {"content": [{"type": "text", "text": "a.txt\n"}]}, "isError": false}),
            json!({"type": "message_end", "message": {"role": "assistant", "content": [{"type": "text", "text": "Done."}],
                "usage": {"input": 150, "output": 5}, "stopReason": "stop"}}),
            json!({"type": "agent_end", "messages": []}),
        ];
        let evs: Vec<TranscriptEvent> = lines.iter().flat_map(|l| s.events(l)).collect();
        assert_eq!(evs[0], TranscriptEvent::Message { role: "assistant".into(), text: "Listing.".into() });
        assert!(
            matches!(&evs[1], TranscriptEvent::Verdict { policy: Some(p), tool: Some(t), .. } if p == "github-rules" && t == "bash")
        );
        assert_eq!(evs[2], TranscriptEvent::Usage { input_tokens: 105, output_tokens: 20 });
        assert_eq!(
            evs[3],
            TranscriptEvent::ToolCall { id: "c1".into(), name: "bash".into(), args: json!({"command": "ls"}) }
        );
        assert_eq!(evs[4], TranscriptEvent::ToolResult { id: "c1".into(), output: "a.txt\n".into(), is_error: false });
        assert_eq!(evs[5], TranscriptEvent::Message { role: "assistant".into(), text: "Done.".into() });
        assert!(s.ended && s.failed.is_none());
        assert_eq!(s.last_message.as_deref(), Some("Done."));
    }

    #[test]
    fn a_failed_model_request_fails_the_run() {
        let mut s = StreamState::default();
        s.events(&json!({"type": "message_end", "message": {"role": "assistant", "content": [], "usage": {},
            "stopReason": "error", "errorMessage": "403 denied by policy"}}));
        assert_eq!(s.failed.as_deref(), Some("403 denied by policy"));
    }
}
