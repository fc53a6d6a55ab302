//! The `codex` harness with the REAL `codex` CLI (from npm, `.ci/install-clis.sh`), governed by a real
//! gateway whose upstream is a scripted model speaking the Responses API. Codex has no reliable hooks, so
//! the gateway's response gate is the guarantee: the denied force push is removed from the model's answer
//! before Codex sees it. Never skipped: without the CLI it fails.

mod support;

use support::scenarios::{CODEX_AGENT, CODEX_SCRIPT, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_runs_allowed_tools_and_never_the_denied_push() {
    let s =
        Scenario::run(CODEX_AGENT, "codex-coder", |_| CODEX_SCRIPT.to_owned(), ("codex", "PADDOCK_CODEX_BIN")).await;
    let (calls, audit, upstream) = s.check_common("codex", "written by codex\n", "exec_command").await;
    assert_eq!(calls[0].0, "exec_command");
    assert!(calls[0].1["cmd"].as_str().unwrap().contains("echo ran > allowed.txt"), "{calls:?}");
    assert_eq!(calls[1].0, "apply_patch");
    assert!(calls[1].1.to_string().contains("notes.md"), "{calls:?}");
    assert!(upstream.iter().all(|c| c.path == "/v1/responses"), "{upstream:?}");
    // Both calls Codex ran (the command, and the patch it ran through its shell tool) were allowed first.
    let allowed_shell = audit
        .iter()
        .filter(|r| r["phase"] == "tool_call" && r["verdict"] == "allow" && r["tool"] == "exec_command")
        .count();
    assert_eq!(allowed_shell, calls.len());
}
