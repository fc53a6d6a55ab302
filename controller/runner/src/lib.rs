//! The runner: the process inside a sandbox. Given an Agent, a prompt, a workspace, the gateway's address
//! and the session's token, it starts the Agent's harness — our own loop (`custom`), Claude Code or Codex —
//! with every model request pointed at the gateway, and reports a normalised transcript. It never holds a
//! provider key.

pub mod client;
pub mod confine;
pub mod egress;
pub mod forward;
pub mod harness;
pub mod hook_input;
pub mod transcript;

use std::path::PathBuf;
use std::time::Duration;

use paddock_api::AgentSpec;

pub use client::GatewayClient;
pub use transcript::{Transcript, TranscriptEvent};

/// Everything a harness needs to run one session.
#[derive(Clone)]
pub struct RunContext {
    pub agent_name: String,
    pub agent: AgentSpec,
    /// The model to use (the Session's override, else the Agent's).
    pub model: String,
    pub prompt: String,
    /// The working directory the agent may change.
    pub workspace: PathBuf,
    pub gateway: GatewayClient,
    /// Wall-clock limit for the whole session.
    pub timeout: Duration,
    /// Most model turns.
    pub max_turns: u32,
    /// The `paddock` executable, for harness hooks (`paddock hook claude`).
    pub paddock_bin: PathBuf,
    /// The CA bundle the processes it starts trust (the system's roots and the gateway's egress CA).
    /// `None`: [`run`] fetches the gateway's CA and writes it when the run starts.
    pub ca_bundle: Option<egress::CaBundle>,
}

impl RunContext {
    /// What every process the harness starts gets to reach the network: the gateway's egress proxy with
    /// this session's token, and the CA bundle (see [`egress::proxy_env`]).
    pub fn egress_env(&self) -> std::collections::BTreeMap<String, String> {
        egress::proxy_env(&self.gateway, self.ca_bundle.as_ref())
    }
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunOutcome {
    /// `Succeeded` or `Failed`.
    pub phase: String,
    /// The agent's final answer, or why it failed.
    pub message: String,
}

impl RunOutcome {
    pub fn succeeded(message: impl Into<String>) -> RunOutcome {
        RunOutcome { phase: "Succeeded".into(), message: message.into() }
    }
    pub fn failed(message: impl Into<String>) -> RunOutcome {
        RunOutcome { phase: "Failed".into(), message: message.into() }
    }
}

/// Writes the run's CA bundle (unless the caller gave one), then runs the harness.
async fn prepare_and_run(ctx: &RunContext, transcript: &Transcript) -> anyhow::Result<RunOutcome> {
    if ctx.ca_bundle.is_some() {
        return harness::run(ctx, transcript).await;
    }
    let ctx = RunContext { ca_bundle: Some(egress::CaBundle::fetch(&ctx.gateway).await?), ..ctx.clone() };
    harness::run(&ctx, transcript).await
}

/// Runs the Agent's harness to the end, reporting to `transcript`. The prompt enters the transcript once the
/// `request` phase has admitted it ([`harness::governed`]).
pub async fn run(ctx: &RunContext, transcript: &Transcript) -> RunOutcome {
    let outcome = match tokio::time::timeout(ctx.timeout, prepare_and_run(ctx, transcript)).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => RunOutcome::failed(format!("{e:#}")),
        Err(_) => RunOutcome::failed(format!("the session ran past its limit of {}s", ctx.timeout.as_secs())),
    };
    if outcome.phase == "Failed" {
        transcript.emit(TranscriptEvent::Error { message: outcome.message.clone() }).await;
    }
    transcript.emit(TranscriptEvent::Done { phase: outcome.phase.clone(), message: outcome.message.clone() }).await;
    transcript.flush().await;
    outcome
}
