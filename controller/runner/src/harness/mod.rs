//! The harnesses. Each runs one session and reports into the transcript.
//!
//! Whatever the harness, [`governed`] puts the session's two ends before the gateway's policies: the
//! prompt (`request`) before the harness starts, and the final answer (`response`) before anyone sees it.

pub mod claude;
pub mod codex;
pub mod command;
pub mod custom;
pub mod gemini;
pub mod opencode;
pub mod pi;
pub mod process;

use std::future::Future;

use paddock_api::{Harness, Phase};
use paddock_policy::Event;

use crate::client::{ClientError, Ruling};
use crate::transcript::{Transcript, TranscriptEvent};
use crate::{RunContext, RunOutcome};

/// The gateway could not rule on one end of the session; nothing goes ahead unchecked.
#[derive(Debug, thiserror::Error)]
pub enum PhaseError {
    #[error("the gateway could not decide the prompt (phase `request`), so the harness did not start: {0}")]
    Request(ClientError),
    #[error("the gateway could not check the final answer (phase `response`), so it is withheld: {0}")]
    Response(ClientError),
}

/// Runs the Agent's harness under [`governed`].
/// How a harness reaches one of the Agent's MCP servers: a remote one at the gateway's endpoint (the
/// session token as bearer), a stdio one started in the sandbox with the egress proxy in its environment.
pub enum McpWiring {
    Remote { name: String, url: String },
    Stdio { name: String, program: String, args: Vec<String>, env: std::collections::BTreeMap<String, String> },
}

/// The Agent's MCP servers as every harness wires them.
pub fn mcp_wiring(ctx: &RunContext) -> Vec<McpWiring> {
    ctx.agent
        .mcp_servers
        .iter()
        .map(|s| match &s.url {
            Some(_) => {
                McpWiring::Remote { name: s.name.clone(), url: format!("{}/mcp/{}", ctx.gateway.base_url, s.name) }
            }
            None => {
                let mut env = ctx.egress_env();
                env.extend(s.env.iter().map(|e| (e.name.clone(), e.value.clone())));
                McpWiring::Stdio {
                    name: s.name.clone(),
                    program: s.command[0].clone(),
                    args: s.command[1..].to_vec(),
                    env,
                }
            }
        })
        .collect()
}

pub async fn run(ctx: &RunContext, transcript: &Transcript) -> anyhow::Result<RunOutcome> {
    governed(ctx, transcript, |ctx| async move {
        match ctx.agent.harness {
            Harness::Custom => custom::run(&ctx, transcript).await,
            Harness::ClaudeCode => claude::run(&ctx, transcript).await,
            Harness::Codex => codex::run(&ctx, transcript).await,
            Harness::GeminiCli => gemini::run(&ctx, transcript).await,
            Harness::Pi => pi::run(&ctx, transcript).await,
            Harness::Opencode => opencode::run(&ctx, transcript).await,
            Harness::Command => command::run(&ctx, transcript).await,
        }
    })
    .await
}

/// Runs `harness` between the two phases every harness has, so that each behaves the same:
///
/// - `request`: the prompt is decided first. A deny (or a declined ask) fails the session with the policy's
///   reason and `harness` never starts; an ask waits for the human; a rule that rewrote the prompt (a
///   redaction) gives the harness the rewritten prompt. The prompt enters the transcript (as the user's
///   message) only once admitted, as the harness gets it.
/// - `response`: a successful run's final answer (Claude Code's `result`, Codex's last agent message, the
///   custom loop's last assistant text) is decided before it is shown. The transcript holds back the
///   harness's assistant messages since its last other event meanwhile ([`Transcript::hold_answers`]);
///   allowed, they are emitted (rewritten, if a rule rewrote the answer); denied, they are dropped and the
///   session fails with the policy's reason instead of the answer, so the answer is neither the Session's
///   result nor its last message. A failed run has no final answer; its held messages are decided at
///   `response` all the same and shown only if allowed.
///
/// An unreachable gateway fails the session at either end ([`PhaseError`]): it fails closed.
pub async fn governed<F, Fut>(ctx: &RunContext, transcript: &Transcript, harness: F) -> anyhow::Result<RunOutcome>
where
    F: FnOnce(RunContext) -> Fut,
    Fut: Future<Output = anyhow::Result<RunOutcome>>,
{
    let asked = Event { phase: Phase::Request, text: Some(ctx.prompt.clone()), ..Event::default() };
    let ruling = ctx.gateway.decide(&asked).await.map_err(PhaseError::Request)?;
    if !ruling.allowed() {
        verdict(transcript, Phase::Request, None, &ruling).await;
        return Ok(RunOutcome::failed(format!(
            "the prompt was refused by {}: {}; the harness did not start",
            ruling.by(),
            ruling.reason
        )));
    }
    let prompt = ruling.rewritten_text().map_or_else(|| ctx.prompt.clone(), str::to_owned);
    transcript.emit(TranscriptEvent::Message { role: "user".into(), text: prompt.clone() }).await;
    let ctx = RunContext { prompt, ..ctx.clone() };

    transcript.hold_answers().await;
    let ran = harness(ctx.clone()).await;
    let held = transcript.take_held().await;
    let answer = match ran {
        Ok(o) if o.phase == "Succeeded" => o.message,
        other => {
            // A failed run has no final answer, but what it said last was held all the same: it is shown
            // only if the `response` phase allows it (a secret does not get out by failing the run).
            let said: Vec<&str> = held
                .iter()
                .filter_map(|m| match m {
                    TranscriptEvent::Message { text, .. } => Some(text.as_str()),
                    _ => None,
                })
                .collect();
            if !said.is_empty() {
                let last = Event { phase: Phase::Response, text: Some(said.join("\n")), ..Event::default() };
                match ctx.gateway.decide(&last).await {
                    Ok(r) if r.allowed() => {
                        show_allowed(transcript, &r, held).await;
                    }
                    Ok(r) => verdict(transcript, Phase::Response, None, &r).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "the gateway could not check a failed run's last words; dropped")
                    }
                }
            }
            return other;
        }
    };
    let answered = Event { phase: Phase::Response, text: Some(answer.clone()), ..Event::default() };
    let ruling = ctx.gateway.decide(&answered).await.map_err(PhaseError::Response)?;
    if !ruling.allowed() {
        verdict(transcript, Phase::Response, None, &ruling).await;
        return Ok(RunOutcome::failed(format!("the final answer was withheld by {}: {}", ruling.by(), ruling.reason)));
    }
    let shown = show_allowed(transcript, &ruling, held).await;
    Ok(RunOutcome::succeeded(shown.unwrap_or(answer)))
}

/// Shows what the `response` phase allowed: the rewritten text as one assistant message when a rule rewrote
/// it (returned), else the held messages as the harness said them.
async fn show_allowed(transcript: &Transcript, ruling: &Ruling, held: Vec<TranscriptEvent>) -> Option<String> {
    match ruling.rewritten_text() {
        Some(text) => {
            transcript.emit(TranscriptEvent::Message { role: "assistant".into(), text: text.to_owned() }).await;
            Some(text.to_owned())
        }
        None => {
            for m in held {
                transcript.emit(m).await;
            }
            None
        }
    }
}

/// The local record of a ruling, on a tool when it was about one (the gateway writes its own into the stored
/// transcript).
async fn verdict(transcript: &Transcript, phase: Phase, tool: Option<&str>, r: &Ruling) {
    transcript
        .emit(TranscriptEvent::Verdict {
            phase: phase.as_str().into(),
            verdict: r.verdict.clone(),
            reason: r.reason.clone(),
            policy: r.policy.clone(),
            tool: tool.map(str::to_owned),
        })
        .await;
}

#[cfg(test)]
mod mcp_wiring_tests {
    use super::*;

    fn ctx() -> RunContext {
        let agent: paddock_api::AgentSpec = serde_json::from_value(serde_json::json!({
            "harness": "claude-code", "model": "claude-sonnet-4-5",
            "mcpServers": [
                {"name": "github", "url": "https://api.githubcopilot.com/mcp/"},
                {"name": "files", "command": ["mcp-server-filesystem", "/workspace"], "env": [{"name": "LOG", "value": "a \"b\""}]}
            ]
        }))
        .unwrap();
        RunContext {
            agent_name: "a".into(),
            model: agent.model.clone(),
            agent,
            prompt: "p".into(),
            workspace: "/workspace".into(),
            gateway: crate::client::GatewayClient::new("http://gw:6767", "s-1", "tok-secret"),
            timeout: std::time::Duration::from_secs(60),
            max_turns: 3,
            paddock_bin: "/bin/paddock".into(),
            ca_bundle: None,
        }
    }

    #[test]
    fn every_harness_reaches_a_remote_server_at_the_gateway_and_starts_a_stdio_one_in_the_sandbox() {
        let c = ctx();
        let claude = claude::mcp_config(&c);
        let gh = &claude["mcpServers"]["github"];
        assert_eq!(gh["type"], "http");
        assert_eq!(gh["url"], "http://gw:6767/mcp/github", "never the server's own URL");
        assert_eq!(gh["headers"]["Authorization"], "Bearer tok-secret");
        let files = &claude["mcpServers"]["files"];
        assert_eq!(files["command"], "mcp-server-filesystem");
        assert_eq!(files["args"], serde_json::json!(["/workspace"]));
        assert_eq!(files["env"]["LOG"], "a \"b\"");
        assert!(files["env"]["HTTPS_PROXY"].as_str().is_some_and(|p| p.contains("gw:6767")), "{files}");

        let toml = codex::config_toml(&c);
        assert!(toml.contains("[mcp_servers.\"github\"]\nurl = \"http://gw:6767/mcp/github\"\nbearer_token_env_var = \"PADDOCK_TOKEN\""), "{toml}");
        let remote = toml.split("[mcp_servers.\"github\"]").nth(1).unwrap().split("\n\n").next().unwrap();
        assert!(!remote.contains("tok-secret"), "a remote server's token is read from the environment: {toml}");
        assert!(!toml.contains("githubcopilot"), "{toml}");
        assert!(
            toml.contains("[mcp_servers.\"files\"]\ncommand = \"mcp-server-filesystem\"\nargs = [\"/workspace\"]"),
            "{toml}"
        );
        assert!(toml.contains("\"LOG\" = \"a \\\"b\\\"\""), "{toml}");
    }
}
