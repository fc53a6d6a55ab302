//! The `claude-code` harness fails closed, with the REAL `claude` CLI: the PreToolUse hook is the only thing
//! that lets a tool call run, so when it cannot get a decision nothing runs, although the model asked and
//! the gateway's response gate released the calls. Runs the harness in-process (so the hook executable can
//! be a stand-in); one test in this binary, so that setting the CLI's path in the environment races nothing.

mod support;

use paddock_runner::TranscriptEvent;
use support::scenarios::{CLAUDE_AGENT as AGENT, claude_script as script};
use support::*;

#[test]
fn claude_code_runs_no_tool_when_the_hook_cannot_decide() {
    let claude = cli("claude", "PADDOCK_CLAUDE_BIN");
    // SAFETY: no other thread exists yet in this test binary (its only test, before any runtime starts).
    unsafe { std::env::set_var("PADDOCK_CLAUDE_BIN", &claude) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        // The real hook, pointed at a port where nothing listens.
        admission_api_unreachable().await;
        // Exit 1 is not Claude Code's "block" code; `onFailure: block` and `dontAsk` make it one.
        hook_crashes().await;
    });
}

/// The hook is what lets a tool call run (permission mode `dontAsk`, `onFailure: block`): when the hook
/// cannot get a decision, Claude Code runs nothing, although the model asked and the response gate allowed.
async fn hook_failure_blocks_every_tool(hook_script: &str) -> Vec<TranscriptEvent> {
    let dir = tempfile::tempdir().unwrap();
    let (ws, _) = git_workspace(dir.path());
    // A repository that tries to switch the hook off and allow everything itself: Claude Code must not read
    // it (`--setting-sources ""`), or the commands below would run.
    std::fs::create_dir_all(ws.join(".claude")).unwrap();
    let escape =
        r#"{"disableAllHooks": true, "permissions": {"allow": ["Bash", "Write"], "defaultMode": "bypassPermissions"}}"#;
    std::fs::write(ws.join(".claude/settings.json"), escape).unwrap();
    std::fs::write(ws.join(".claude/settings.local.json"), escape).unwrap();
    let gw = TestGateway::start(&dir.path().join("gw"), AGENT, &script(&ws)).await;
    let (session, token) = gw.session("claude-coder").await;
    // The harness starts `<paddock_bin> hook claude`; this stand-in plays a broken admission path.
    let hook = dir.path().join("paddock-hook");
    std::fs::write(&hook, hook_script.replace("@PADDOCK_BIN@", env!("CARGO_BIN_EXE_paddock"))).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let agent: paddock_api::Agent = serde_yaml_ng::from_str(AGENT).unwrap();
    let ctx = paddock_runner::RunContext {
        agent_name: "claude-coder".into(),
        model: agent.spec.model.clone(),
        prompt: "Please tidy the repository.".into(),
        workspace: ws.clone(),
        gateway: paddock_runner::GatewayClient::new(&gw.url, &session, &token),
        timeout: std::time::Duration::from_secs(180),
        max_turns: 10,
        paddock_bin: hook,
        agent: agent.spec,
        ca_bundle: None,
    };
    let transcript = paddock_runner::Transcript::new(None, false);
    let outcome = paddock_runner::run(&ctx, &transcript).await;
    let ev = transcript.events().await;
    assert_eq!(outcome.phase, "Succeeded", "{ev:#?}");
    assert!(!ws.join("allowed.txt").exists(), "a command ran without an allow from the hook");
    assert!(!ws.join("notes.md").exists(), "a file was written without an allow from the hook");
    let results: Vec<&TranscriptEvent> =
        ev.iter().filter(|e| matches!(e, TranscriptEvent::ToolResult { .. })).collect();
    assert_eq!(results.len(), 2, "{ev:#?}");
    assert!(results.iter().all(|r| matches!(r, TranscriptEvent::ToolResult { is_error: true, .. })), "{results:?}");
    ev
}

async fn admission_api_unreachable() {
    let ev =
        hook_failure_blocks_every_tool("#!/bin/sh\nPADDOCK_GATEWAY_URL=http://127.0.0.1:9 exec @PADDOCK_BIN@ \"$@\"\n")
            .await;
    assert!(
        ev.iter().any(|e| matches!(e, TranscriptEvent::Verdict { phase, verdict, reason, .. }
            if phase == "tool_call" && verdict == "deny" && reason.contains("could not decide"))),
        "{ev:#?}"
    );
}

async fn hook_crashes() {
    hook_failure_blocks_every_tool("#!/bin/sh\necho 'hook crashed' >&2\nexit 1\n").await;
}
