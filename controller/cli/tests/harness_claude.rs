//! The `claude-code` harness with the REAL `claude` CLI (from npm, `.ci/install-clis.sh`), governed by a
//! real gateway whose upstream is a scripted model. The model asks for an allowed command, a force push
//! (denied by the `github` policy) and a file write; the files on disk, the git remote, the gateway's
//! ledger and audit log and the transcript show what happened. Never skipped: without the CLI it fails.

mod support;

use paddock_runner::TranscriptEvent;
use serde_json::Value;
use support::scenarios::{CLAUDE_AGENT as AGENT, claude_script as script};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_runs_allowed_tools_and_never_the_denied_push() {
    let claude = cli("claude", "PADDOCK_CLAUDE_BIN");
    let dir = tempfile::tempdir().unwrap();
    let (ws, remote) = git_workspace(dir.path());
    let remote_main = git(&remote, &["rev-parse", "main"]);
    let gw = TestGateway::start(&dir.path().join("gw"), AGENT, &script(&ws)).await;
    let (session, token) = gw.session("claude-coder").await;
    let agent_file = dir.path().join("agent.yaml");
    std::fs::write(&agent_file, AGENT).unwrap();

    let run = run_runner(
        &agent_file,
        "Please tidy the repository.",
        &ws,
        &gw.url,
        &session,
        &token,
        &[("PADDOCK_CLAUDE_BIN", &claude)],
    )
    .await;
    let ev = &run.events;
    assert!(run.success, "the session failed: {ev:#?}\n{}", run.stderr);
    assert!(!run.stderr.contains(&token), "the runner's stderr shows the session token");

    // What ran and what did not.
    assert_eq!(std::fs::read_to_string(ws.join("allowed.txt")).unwrap(), "ran\n");
    assert_eq!(std::fs::read_to_string(ws.join("notes.md")).unwrap(), "written by claude\n");
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
    assert_eq!(calls[0].0, "Bash");
    assert_eq!(calls[0].1["command"], "echo ran > allowed.txt");
    assert_eq!(calls[1].0, "Write");
    assert!(!calls.iter().any(|(_, a)| a.to_string().contains("push")), "the denied call reached Claude Code");
    let results: Vec<&TranscriptEvent> =
        ev.iter().filter(|e| matches!(e, TranscriptEvent::ToolResult { .. })).collect();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| matches!(r, TranscriptEvent::ToolResult { is_error: false, .. })), "{results:?}");
    assert!(
        ev.iter().any(|e| matches!(e, TranscriptEvent::Verdict { verdict, policy: Some(p), tool: Some(t), reason, .. }
            if verdict == "deny" && p == "github-rules" && t == "Bash" && reason.contains("force"))),
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
    println!("{}", cov.report("claude-code"));
    assert!(cov.is_full(), "{} — audit: {audit:#?}", cov.report("claude-code"));
    assert_eq!(upstream.len(), 3, "{upstream:?}");
    let denied: Vec<&Value> = audit.iter().filter(|r| r["verdict"] == "deny").collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["policy"], "github-rules");
    // The calls Claude Code ran were allowed at `tool_call` once each: its hook asked about the very calls
    // the response gate had released, and got the same answer without a second decision.
    let mut allowed_tools: Vec<&str> = audit
        .iter()
        .filter(|r| r["phase"] == "tool_call" && r["verdict"] == "allow")
        .filter_map(|r| r["tool"].as_str())
        .collect();
    allowed_tools.sort();
    let mut ran: Vec<&str> = calls.iter().map(|c| c.0).collect();
    ran.sort();
    assert_eq!(allowed_tools, ran);
}
