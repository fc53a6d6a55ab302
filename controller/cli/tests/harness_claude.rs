//! The `claude-code` harness with the REAL `claude` CLI (from npm, `.ci/install-clis.sh`), governed by a
//! real gateway whose upstream is a scripted model. The model asks for an allowed command, a force push
//! (denied by the `github` policy) and a file write; the files on disk, the git remote, the gateway's
//! ledger and audit log and the transcript show what happened. Never skipped: without the CLI it fails.

mod support;

use support::scenarios::{CLAUDE_AGENT, Scenario, claude_script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_runs_allowed_tools_and_never_the_denied_push() {
    let s = Scenario::run(CLAUDE_AGENT, "claude-coder", claude_script, ("claude", "PADDOCK_CLAUDE_BIN")).await;
    let (calls, audit, _) = s.check_common("claude-code", "written by claude\n", "Bash").await;
    assert_eq!(calls[0].0, "Bash");
    assert_eq!(calls[0].1["command"], "echo ran > allowed.txt");
    assert_eq!(calls[1].0, "Write");
    // The calls Claude Code ran were allowed at `tool_call`. Its hook asked about the very calls the response
    // gate had released: `Write` got the recorded answer without a second decision; `Bash` was decided again,
    // because the hook read where the workspace's remotes really point (which the gate could not know).
    let mut allowed_tools: Vec<&str> = audit
        .iter()
        .filter(|r| r["phase"] == "tool_call" && r["verdict"] == "allow")
        .filter_map(|r| r["tool"].as_str())
        .collect();
    allowed_tools.sort();
    assert_eq!(allowed_tools, ["Bash", "Bash", "Write"]);
    // Deciding `Bash` again did not count it again: two calls ran, two were counted.
    let info = s.gw.session_info(&s.session).await;
    assert_eq!(info["toolCalls"], calls.len(), "{info}");
}
