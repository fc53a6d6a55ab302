//! The `command` harness running agents written with the REAL agent SDKs: the Claude Agent SDK (npm, driving
//! the real Claude Code CLI) and the OpenAI Agents SDK (PyPI), both installed by `.ci/install-clis.sh`, the
//! programs those of `examples/programs`. Nothing in them is wired by hand: the harness gives them the
//! gateway's base URLs and the session token, and the gateway's response gate removes the denied force push
//! before the SDK sees it. Never skipped: without the SDKs it fails.

mod support;

use std::path::Path;

use support::scenarios::{Scenario, claude_script, command_agent, openai_agents_script};
use support::{cli, repo_root};

/// A copy of an example program beside `node_modules` (where the SDK is found), in `dir`.
fn program_beside_modules(dir: &Path, example: &str, modules: &Path) -> std::path::PathBuf {
    assert!(modules.is_dir(), "{} is missing: run `.ci/install-clis.sh`", modules.display());
    let file = dir.join(Path::new(example).file_name().unwrap());
    std::fs::copy(repo_root().join(example), &file).unwrap();
    std::os::unix::fs::symlink(modules, dir.join("node_modules")).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_agent_sdk_program_runs_allowed_tools_and_never_the_denied_push() {
    let claude = cli("claude", "PADDOCK_CLAUDE_BIN");
    let prog = tempfile::tempdir().unwrap();
    let agent_mjs = program_beside_modules(
        prog.path(),
        "examples/programs/claude-agent-sdk/agent.mjs",
        &repo_root().join(".ci/npm-sdk/node_modules"),
    );
    let agent = command_agent(
        "sdk-claude",
        "claude-sonnet-4-5",
        &["node", &agent_mjs.display().to_string()],
        &[("CLAUDE_CODE_EXECUTABLE", claude.display().to_string())],
    );
    let s = Scenario::run_with(&agent, "sdk-claude", claude_script, &[]).await;
    let (calls, audit, upstream) = s.check_common("command (Claude Agent SDK)", "written by claude\n", "Bash").await;
    assert_eq!(calls[0].0, "Bash");
    assert_eq!(calls[1].0, "Write");
    assert!(upstream.iter().all(|c| c.path == "/v1/messages"), "{upstream:?}");
    // The program's own PreToolUse hook asked the gateway about each call it ran, by the call's id.
    let hooked = audit.iter().filter(|r| r["phase"] == "tool_call" && r["verdict"] == "allow").count();
    assert_eq!(hooked, 2, "{audit:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_agents_sdk_program_runs_allowed_tools_and_never_the_denied_push() {
    let site = repo_root().join(".ci/py-agents");
    assert!(site.is_dir(), "{} is missing: run `.ci/install-clis.sh`", site.display());
    let program = repo_root().join("examples/programs/openai-agents/agent.py");
    let agent = command_agent(
        "sdk-openai",
        "gpt-5",
        &["python3", &program.display().to_string()],
        &[("PYTHONPATH", site.display().to_string())],
    );
    let s = Scenario::run_with(&agent, "sdk-openai", openai_agents_script, &[]).await;
    let (calls, _, upstream) =
        s.check_common("command (OpenAI Agents SDK)", "written by the openai agent\n", "shell").await;
    assert_eq!(calls[0].0, "shell");
    assert_eq!(calls[1].0, "write_file");
    assert!(upstream.iter().all(|c| c.path == "/v1/chat/completions"), "{upstream:?}");
}
