//! The `pi` harness with the REAL Pi coding agent (from npm, `.ci/install-clis.sh`), governed by a real
//! gateway whose upstream is a scripted model speaking OpenAI's Chat Completions. Pi has no approvals and
//! no command hooks, so the gateway's response gate is the guarantee: the denied force push is removed
//! before Pi sees it. Never skipped: without the CLI it fails.

mod support;

use support::scenarios::{PI_AGENT, Scenario, pi_script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_runs_allowed_tools_and_never_the_denied_push() {
    let s = Scenario::run(PI_AGENT, "pi-coder", pi_script, ("pi", "PADDOCK_PI_BIN")).await;
    let (calls, _, upstream) = s.check_common("pi", "written by pi\n", "bash").await;
    assert_eq!(calls[0].0, "bash");
    assert!(calls[0].1["command"].as_str().unwrap().contains("echo ran > allowed.txt"), "{calls:?}");
    assert_eq!(calls[1].0, "write");
    assert!(upstream.iter().all(|c| c.path == "/v1/chat/completions"), "{upstream:?}");
}
