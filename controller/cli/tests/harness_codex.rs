//! The `codex` harness with the REAL `codex` CLI (from npm, `.ci/install-clis.sh`), governed by a real
//! gateway whose upstream is a scripted model speaking the Responses API. Codex has no reliable hooks, so
//! the gateway's response gate is the guarantee: the denied force push is removed from the model's answer
//! before Codex sees it. Never skipped: without the CLI it fails.

mod support;

use paddock_runner::TranscriptEvent;
use serde_json::Value;
use support::scenarios::{CODEX_AGENT as AGENT, CODEX_SCRIPT as SCRIPT};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_runs_allowed_tools_and_never_the_denied_push() {
    let codex = cli("codex", "PADDOCK_CODEX_BIN");
    let dir = tempfile::tempdir().unwrap();
    let (ws, remote) = git_workspace(dir.path());
    let remote_main = git(&remote, &["rev-parse", "main"]);
    let gw = TestGateway::start(&dir.path().join("gw"), AGENT, SCRIPT).await;
    let (session, token) = gw.session("codex-coder").await;
    let agent_file = dir.path().join("agent.yaml");
    std::fs::write(&agent_file, AGENT).unwrap();

    let run = run_runner(
        &agent_file,
        "Please tidy the repository.",
        &ws,
        &gw.url,
        &session,
        &token,
        &[("PADDOCK_CODEX_BIN", &codex)],
    )
    .await;
    let ev = &run.events;
    assert!(run.success, "the session failed: {ev:#?}\n{}", run.stderr);
    assert!(!run.stderr.contains(&token), "the runner's stderr shows the session token");

    // What ran and what did not.
    assert_eq!(std::fs::read_to_string(ws.join("allowed.txt")).unwrap(), "ran\n");
    assert_eq!(std::fs::read_to_string(ws.join("notes.md")).unwrap(), "written by codex\n");
    assert_eq!(git(&remote, &["rev-parse", "main"]), remote_main, "the remote moved: the force push ran");

    // The transcript: prompt, calls, results, the deny, usage, done.
    assert!(matches!(&ev[0], TranscriptEvent::Message { role, text } if role == "user" && text.contains("tidy")));
    let calls: Vec<(&str, &Value)> = ev
        .iter()
        .filter_map(|e| match e {
            TranscriptEvent::ToolCall { name, args, .. } => Some((name.as_str(), args)),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].0, "exec_command");
    assert!(calls[0].1["cmd"].as_str().unwrap().contains("echo ran > allowed.txt"), "{calls:?}");
    assert_eq!(calls[1].0, "apply_patch");
    assert!(calls[1].1.to_string().contains("notes.md"), "{calls:?}");
    assert!(!calls.iter().any(|(_, a)| a.to_string().contains("push")), "the denied call reached Codex");
    let results: Vec<&TranscriptEvent> =
        ev.iter().filter(|e| matches!(e, TranscriptEvent::ToolResult { .. })).collect();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| matches!(r, TranscriptEvent::ToolResult { is_error: false, .. })), "{results:?}");
    assert!(
        ev.iter().any(|e| matches!(e, TranscriptEvent::Verdict { verdict, policy: Some(p), tool: Some(t), reason, .. }
            if verdict == "deny" && p == "github-rules" && t == "exec_command" && reason.contains("force"))),
        "no deny verdict in {ev:#?}"
    );
    assert!(ev.iter().any(|e| matches!(e, TranscriptEvent::Usage { output_tokens, .. } if *output_tokens > 0)));
    assert!(
        matches!(ev.last(), Some(TranscriptEvent::Done { phase, message }) if phase == "Succeeded" && message.contains("Done"))
    );

    // The gateway holds the same transcript, for `paddock session logs`.
    assert_eq!(&gw.transcript(&session).await, ev);

    // Cost is on the session's ledger.
    let info = gw.session_info(&session).await;
    assert!(info["usage"]["costUsd"].as_f64().unwrap() > 0.0, "{info}");
    assert_eq!(info["usage"]["inputTokens"], 1200 + 1500 + 1700, "{info}");

    // Every model request and every tool call was decided.
    let audit = gw.audit(&session).await;
    let upstream = gw.upstream.calls();
    let cov = Coverage::of(&audit, &upstream);
    println!("{}", cov.report("codex"));
    assert!(cov.is_full(), "{} — audit: {audit:#?}", cov.report("codex"));
    assert_eq!(upstream.len(), 3, "{upstream:?}");
    assert!(upstream.iter().all(|c| c.path == "/v1/responses"), "{upstream:?}");
    let denied: Vec<&Value> = audit.iter().filter(|r| r["verdict"] == "deny").collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["policy"], "github-rules");
    // Both calls Codex ran (the command, and the patch it ran through its shell tool) were allowed first.
    let allowed_shell = audit
        .iter()
        .filter(|r| r["phase"] == "tool_call" && r["verdict"] == "allow" && r["tool"] == "exec_command")
        .count();
    assert_eq!(allowed_shell, calls.len());
}
