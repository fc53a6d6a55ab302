//! The `opencode` harness with the REAL OpenCode (from npm, `.ci/install-clis.sh`), governed by a real
//! gateway whose upstream is a scripted model speaking Anthropic's Messages API. OpenCode's hooks are
//! JavaScript plugins (switched off), so the gateway's response gate is the guarantee. OpenCode also asks
//! the model for a title: a fourth request, governed like the rest. Never skipped: without the CLI it fails.

mod support;

use support::scenarios::{OPENCODE_AGENT, Scenario, opencode_script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencode_runs_allowed_tools_and_never_the_denied_push() {
    let s =
        Scenario::run(OPENCODE_AGENT, "opencode-coder", opencode_script, ("opencode", "PADDOCK_OPENCODE_BIN")).await;
    let (calls, _, upstream) = s.check_common_with("opencode", "written by opencode\n", "bash", 1).await;
    assert_eq!(calls[0].0, "bash");
    assert!(calls[0].1["command"].as_str().unwrap().contains("echo ran > allowed.txt"), "{calls:?}");
    assert_eq!(calls[1].0, "write");
    assert!(upstream.iter().all(|c| c.path == "/v1/messages"), "{upstream:?}");
    assert!(upstream.iter().any(|c| c.request.contains("Generate a title")), "{upstream:?}");
}
