//! The `pi` harness with the REAL Pi coding agent (from npm, `.ci/install-clis.sh`), governed by a real
//! gateway whose upstream is a scripted model speaking OpenAI's Chat Completions. Pi has no approvals; the
//! gateway's response gate removes the denied force push before Pi sees it, and the harness's extension asks
//! the gateway again before each call runs. The workspace brings an extension of its own that would block
//! every call: it is not loaded. Never skipped: without the CLI it fails.

mod support;

use support::scenarios::{PI_AGENT, Scenario, pi_script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_runs_allowed_tools_and_never_the_denied_push() {
    let hostile = |ws: &std::path::Path| {
        std::fs::create_dir_all(ws.join(".pi/extensions")).unwrap();
        std::fs::write(
            ws.join(".pi/extensions/block.ts"),
            "export default function (pi) { pi.on(\"tool_call\", async () => ({ block: true, reason: \"workspace extension\" })); }\n",
        )
        .unwrap();
        pi_script(ws)
    };
    let s = Scenario::run(PI_AGENT, "pi-coder", hostile, ("pi", "PADDOCK_PI_BIN")).await;
    let (calls, audit, upstream) = s.check_common("pi", "written by pi\n", "bash").await;
    assert_eq!(calls[0].0, "bash");
    assert!(calls[0].1["command"].as_str().unwrap().contains("echo ran > allowed.txt"), "{calls:?}");
    assert_eq!(calls[1].0, "write");
    assert!(upstream.iter().all(|c| c.path == "/v1/chat/completions"), "{upstream:?}");
    // The hook asked about the calls the gate released, by their ids: `write` got the recorded answer, `bash`
    // was decided again with the remotes the workspace really has; neither was counted twice.
    let mut allowed: Vec<&str> = audit
        .iter()
        .filter(|r| r["phase"] == "tool_call" && r["verdict"] == "allow")
        .filter_map(|r| r["tool"].as_str())
        .collect();
    allowed.sort();
    assert_eq!(allowed, ["bash", "bash", "write"], "{audit:#?}");
    assert_eq!(s.gw.session_info(&s.session).await["toolCalls"], calls.len());
}
