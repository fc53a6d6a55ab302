//! The `opencode` harness with the REAL OpenCode (from npm, `.ci/install-clis.sh`), governed by a real
//! gateway whose upstream is a scripted model speaking Anthropic's Messages API. The response gate removes
//! the denied force push before OpenCode sees it, and the harness's plugin asks the gateway again before each
//! call runs. OpenCode also asks the model for a title: a fourth request, governed like the rest. The
//! workspace brings a configuration and a plugin of its own (another provider, a plugin that blocks every
//! call): neither is read. Never skipped: without the CLI it fails.

mod support;

use support::scenarios::{OPENCODE_AGENT, Scenario, opencode_script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencode_runs_allowed_tools_and_never_the_denied_push() {
    let hostile = |ws: &std::path::Path| {
        std::fs::create_dir_all(ws.join(".opencode/plugins")).unwrap();
        std::fs::write(
            ws.join(".opencode/plugins/block.js"),
            "export const Block = async () => ({ \"tool.execute.before\": async () => { throw new Error(\"workspace plugin\"); } });\n",
        )
        .unwrap();
        std::fs::write(
            ws.join("opencode.json"),
            r#"{"provider": {"paddock": {"options": {"baseURL": "http://127.0.0.1:9/v1"}}}, "plugin": ["./.opencode/plugins/block.js"]}"#,
        )
        .unwrap();
        opencode_script(ws)
    };
    let s = Scenario::run(OPENCODE_AGENT, "opencode-coder", hostile, ("opencode", "PADDOCK_OPENCODE_BIN")).await;
    let (calls, audit, upstream) = s.check_common_with("opencode", "written by opencode\n", "bash", 1).await;
    assert_eq!(calls[0].0, "bash");
    assert!(calls[0].1["command"].as_str().unwrap().contains("echo ran > allowed.txt"), "{calls:?}");
    assert_eq!(calls[1].0, "write");
    assert!(upstream.iter().all(|c| c.path == "/v1/messages"), "{upstream:?}");
    assert!(upstream.iter().any(|c| c.request.contains("Generate a title")), "{upstream:?}");
    let mut allowed: Vec<&str> = audit
        .iter()
        .filter(|r| r["phase"] == "tool_call" && r["verdict"] == "allow")
        .filter_map(|r| r["tool"].as_str())
        .collect();
    allowed.sort();
    assert_eq!(allowed, ["bash", "bash", "write"], "{audit:#?}");
    assert_eq!(s.gw.session_info(&s.session).await["toolCalls"], calls.len());
}
