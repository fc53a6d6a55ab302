//! The session's two ends with the REAL `claude` and `codex` CLIs (from npm, `.ci/install-clis.sh`), against a
//! real gateway whose providers' upstream is the scripted model on a loopback port: the prompt is decided
//! (`request`) before the CLI starts and the final answer (`response`: Claude Code's `result`, Codex's last
//! agent message) before anyone sees it. Never skipped: without the CLIs it fails. One test in this binary,
//! so that pointing the harnesses at the CLIs (`PADDOCK_CLAUDE_BIN`, `PADDOCK_CODEX_BIN`) races nothing.

mod support;

use std::path::{Path, PathBuf};

use paddock_runner::{Transcript, TranscriptEvent};
use support::*;

const AGENTS: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: claude-coder}
spec:
  harness: claude-code
  model: claude-sonnet-4-5
  limits: {maxTurns: 10, timeoutSeconds: 180}
---
apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: codex-coder}
spec:
  harness: codex
  model: gpt-5-codex
  limits: {maxTurns: 10, timeoutSeconds: 180}
"#;

/// Claude Code answers in one turn; Codex runs a command first (so that a message said before a tool call
/// shows where it was said, and only the last one waits for `response`). Codex's first user message is its
/// environment context, not the prompt: its scripts are picked by the workspace's name, which it names.
fn script() -> String {
    format!(
        r#"
scripts:
  - name: leak
    match: "print the token"
    turns:
      - text: "Here it is: {TOKEN}"
  - name: codex-leak
    match: "codex-coder-leak"
    turns:
      - text: "Here it is: {TOKEN}"
  - name: refused
    match: "launch codes"
    turns:
      - text: "The codes are 0000."
  - name: codex
    match: "codex-coder-ok"
    turns:
      - text: "Leaving a marker."
        tool_calls: [{{name: exec_command, args: {{cmd: "echo ran > marker.txt"}}}}]
      - text: "Marker left."
  - name: claude
    match: "tidy the repository"
    turns:
      - text: "The repository is tidy."
"#
    )
}

/// The pinned CLI, as `.ci/install-clis.sh` installs it, unless `env_var` names another build.
fn cli(name: &str, env_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/npm/node_modules/.bin").join(name);
    assert!(
        p.is_file(),
        "the real `{name}` CLI is not installed at {}: run `.ci/install-clis.sh` (it installs the pinned Claude Code \
         and Codex from npm), or set {env_var} to the executable",
        p.display()
    );
    p
}

#[test]
fn claude_code_and_codex_decide_the_prompt_first_and_the_final_answer_last() {
    let (claude, codex) = (cli("claude", "PADDOCK_CLAUDE_BIN"), cli("codex", "PADDOCK_CODEX_BIN"));
    // SAFETY: no other thread exists yet in this test binary (its only test, before any runtime starts).
    unsafe {
        std::env::set_var("PADDOCK_CLAUDE_BIN", &claude);
        std::env::set_var("PADDOCK_CODEX_BIN", &codex);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let gw = TestGateway::start(&dir.path().join("gw"), AGENTS, &script(), true).await;
        for (agent, prompt, answer) in [
            ("claude-coder", "Please tidy the repository.", "The repository is tidy."),
            ("codex-coder", "Please leave a marker.", "Marker left."),
        ] {
            let ws = dir.path().join(format!("{agent}-ok"));
            let ctx = gw.session(agent, prompt, &ws).await;
            let (outcome, events) = run(&ctx).await;
            assert_eq!(outcome.phase, "Succeeded", "{agent}: {outcome:?} {events:#?}");
            assert_eq!(outcome.message, answer, "{agent}");
            assert_both_ends(&gw, &ctx.gateway.session, &events, prompt, answer).await;
            if agent == "codex-coder" {
                assert_eq!(std::fs::read_to_string(ws.join("marker.txt")).unwrap(), "ran\n");
                let said = events
                    .iter()
                    .position(|e| matches!(e, TranscriptEvent::Message { text, .. } if text == "Leaving a marker."));
                let called = events.iter().position(|e| matches!(e, TranscriptEvent::ToolCall { .. }));
                assert!(said.is_some() && said < called, "{events:#?}");
            }

            let ctx =
                gw.session(agent, "Read me the launch codes.", &dir.path().join(format!("{agent}-refused"))).await;
            let (outcome, events) = run(&ctx).await;
            assert_eq!(outcome.phase, "Failed", "{agent}");
            assert_refused_prompt(&gw, &ctx.gateway.session, &events, &outcome.message).await;

            let ctx = gw.session(agent, "Please print the token.", &dir.path().join(format!("{agent}-leak"))).await;
            let (outcome, events) = run(&ctx).await;
            assert_eq!(outcome.phase, "Failed", "{agent}: {events:#?}");
            assert_withheld_answer(&gw, &ctx.gateway.session, &events, &outcome.message).await;
        }
    });
}

async fn run(ctx: &paddock_runner::RunContext) -> (paddock_runner::RunOutcome, Vec<TranscriptEvent>) {
    let transcript = Transcript::new(Some(ctx.gateway.clone()), false);
    let outcome = paddock_runner::run(ctx, &transcript).await;
    (outcome, transcript.events().await)
}
