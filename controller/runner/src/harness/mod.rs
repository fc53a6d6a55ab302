//! The harnesses. Each runs one session and reports into the transcript.

pub mod claude;
pub mod codex;
pub mod custom;
pub mod process;

use paddock_api::Harness;

use crate::transcript::Transcript;
use crate::{RunContext, RunOutcome};

pub async fn run(ctx: &RunContext, transcript: &Transcript) -> anyhow::Result<RunOutcome> {
    match ctx.agent.harness {
        Harness::Custom => custom::run(ctx, transcript).await,
        Harness::ClaudeCode => claude::run(ctx, transcript).await,
        Harness::Codex => codex::run(ctx, transcript).await,
    }
}
