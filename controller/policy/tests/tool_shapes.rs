//! Decide on exactly what the harness will execute: every tool call is read from its tool's known argument
//! shape; a call that carries fields its harness would ignore but a parser might read, whose executed field
//! has the wrong type, or whose shape Paddock does not know, is denied as ambiguous by the engine itself —
//! at `tool_call` and at `llm_response`, whatever Policies are configured.

mod support;

use paddock_api::{Phase, Verdict};
use paddock_policy::engine::{CompiledPolicy, TOOL_SHAPE_POLICY, evaluate};
use paddock_policy::{Event, SessionState, ToolCall, ToolUse};
use serde_json::{Value, json};
use support::{check, policies};

fn tool_call(tool: &str, args: Value) -> Event {
    Event { phase: Phase::ToolCall, tool: Some(tool.into()), args, tool_id: Some("t1".into()), ..Default::default() }
}

fn llm_response(tool: &str, args: Value) -> Event {
    Event {
        phase: Phase::LlmResponse,
        model: Some("gpt-5".into()),
        tool_calls: vec![ToolCall { name: tool.into(), args, id: Some("c1".into()) }],
        ..Default::default()
    }
}

fn state() -> SessionState {
    SessionState { workspace_repo: Some("acme/app".into()), ..SessionState::default() }
}

/// A github rule that denies force pushes and writes outside `feature/*`, the way a user would set it up.
fn github() -> Vec<CompiledPolicy> {
    policies(&[(
        "gh",
        "rules: [{name: g, use: github, with: {write_repos: [acme/app], write_branches: ['feature/*']}}]",
    )])
}

/// Denied at both phases, by the tool-shape check, with or without any Policy; the reason names the tool
/// and every field given.
fn assert_ambiguous(tool: &str, args: Value, fields: &[&str]) {
    for ps in [github(), Vec::new()] {
        for ev in [tool_call(tool, args.clone()), llm_response(tool, args.clone())] {
            let d = evaluate(&ev, &state(), &ps);
            assert_eq!(
                (d.verdict, d.policy.as_deref()),
                (Verdict::Deny, Some(TOOL_SHAPE_POLICY)),
                "{tool} {args} at {:?} with {} policies: {}",
                ev.phase,
                ps.len(),
                d.reason
            );
            assert!(d.reason.contains(&format!("`{tool}`")), "{}", d.reason);
            for f in fields {
                assert!(d.reason.contains(&format!("`{f}`")), "reason should name `{f}`: {}", d.reason);
            }
        }
    }
}

fn assert_allowed(tool: &str, args: Value) {
    for ev in [tool_call(tool, args.clone()), llm_response(tool, args.clone())] {
        let d = evaluate(&ev, &state(), &github());
        assert_eq!(d.verdict, Verdict::Allow, "{tool} {args} at {:?}: {}", ev.phase, d.reason);
    }
}

fn command(tool: &str, args: Value) -> Option<String> {
    ToolUse::new(tool, args, None).command()
}

#[test]
fn the_issue_inputs_are_denied_as_ambiguous_at_tool_call_and_llm_response() {
    assert_ambiguous("exec_command", json!({"command": "echo hi", "cmd": "git push -f origin develop"}), &["command"]);
    assert_ambiguous("write_stdin", json!({"chars": "git push -f origin develop\n", "cmd": "true"}), &["cmd"]);
    assert_ambiguous(
        "shell",
        json!({"command": "echo hi", "cmd": ["bash", "-lc", "git push -f origin develop"]}),
        &["cmd"],
    );
}

#[test]
fn more_spellings_of_a_second_command_field() {
    assert_ambiguous("exec_command", json!({"cmd": "git push -f", "input": "ls"}), &["input"]);
    assert_ambiguous("exec_command", json!({"command": ["bash", "-lc", "ls"], "cmd": "git push -f"}), &["command"]);
    assert_ambiguous("exec_command", json!({"cmd": "git push -f", "command": null}), &["command"]);
    assert_ambiguous("exec_command", json!({"cmd": "ls", "CMD": "git push -f"}), &["CMD"]);
    assert_ambiguous("exec_command", json!({"cmd": "ls", "script": "git push -f"}), &["script"]);
    // Codex's newer argv form; the pinned Codex does not take it, so it is not a shape Paddock knows.
    assert_ambiguous("exec_command", json!({"cmd": " ", "program": "git", "args": ["push", "-f"]}), &["program"]);
    assert_ambiguous(
        "local_shell",
        json!({"action": {"type": "exec", "command": ["ls"]}, "command": "git push -f"}),
        &["action"],
    );
    assert_ambiguous("local_shell", json!({"type": "exec", "command": ["ls"], "cmd": "git push -f"}), &["cmd"]);
    assert_ambiguous("Bash", json!({"command": "ls", "cmd": "git push -f"}), &["cmd"]);
    assert_ambiguous("Bash", json!({"script": "git push -f"}), &["script"]);
    assert_ambiguous("shell_command", json!({"command": "ls", "argv": ["git", "push", "-f"]}), &["argv"]);
    assert_ambiguous("write_stdin", json!({"session_id": 1, "chars": "", "input": "git push -f\n"}), &["input"]);
}

#[test]
fn wrong_types_and_missing_fields_are_ambiguous() {
    assert_ambiguous("exec_command", json!({"cmd": ["git", "push", "-f"]}), &["cmd"]);
    assert_ambiguous("exec_command", json!({"workdir": "/w"}), &["cmd"]);
    assert_ambiguous("Bash", json!({"command": 42}), &["command"]);
    assert_ambiguous("shell", json!({"command": ["bash", 1]}), &["command"]);
    assert_ambiguous("shell", json!({"command": []}), &["command"]);
    assert_ambiguous("container.exec", json!({"command": "git push -f"}), &["command"]);
    assert_ambiguous("local_shell", json!({"type": "exec", "command": "git push -f"}), &["command"]);
    assert_ambiguous("local_shell", json!({"type": "exec", "command": ["ls"], "env": {"A": 1}}), &["env.A"]);
    // Arguments that are not JSON (the gateway keeps them as a string).
    assert_ambiguous("exec_command", json!("{\"cmd\": \"ls\"} trailing"), &[]);
}

#[test]
fn a_shell_tool_of_unknown_shape_is_denied() {
    assert_ambiguous("terminal", json!({"command": "git push -f origin develop"}), &[]);
    assert_ambiguous("execute_command", json!({"command": "ls"}), &[]);
    assert_ambiguous("unified_exec", json!({"input": ["bash", "-lc", "ls"]}), &[]);
}

#[test]
fn unknown_keys_on_a_shell_tool_are_denied_harmless_known_ones_are_fine() {
    assert_ambiguous("shell", json!({"command": ["ls"], "foo": 1}), &["foo"]);
    assert_ambiguous("Bash", json!({"command": "ls", "sandbox": false}), &["sandbox"]);
    assert_allowed(
        "shell",
        json!({"command": ["bash", "-lc", "ls"], "justification": "list", "timeout_ms": 1000, "workdir": "/w"}),
    );
}

#[test]
fn the_exec_command_shell_field_is_read() {
    assert_eq!(command("exec_command", json!({"cmd": "ls", "shell": "/bin/bash"})).as_deref(), Some("ls"));
    assert_eq!(command("exec_command", json!({"cmd": "ls", "shell": "zsh"})).as_deref(), Some("ls"));
    assert_eq!(
        command("exec_command", json!({"cmd": "git push -f", "shell": "pwsh"})).as_deref(),
        Some("pwsh -c 'git push -f'"),
        "PowerShell stays a pwsh command, so the opacity check sees it"
    );
    // A "bash" the agent may have written, or any other program, is not a shell Paddock knows.
    assert_ambiguous("exec_command", json!({"cmd": "ls", "shell": "/tmp/x/bash"}), &["shell"]);
    assert_ambiguous("exec_command", json!({"cmd": "ls", "shell": "python3"}), &["shell"]);
    assert_ambiguous("exec_command", json!({"cmd": "ls", "shell": ["bash"]}), &["shell"]);
}

#[test]
fn argv_shells_are_unwrapped_only_when_exactly_a_script() {
    let shell = |argv: Value| command("shell", json!({ "command": argv }));
    for argv in [
        json!(["bash", "-lc", "git status"]),
        json!(["bash", "-c", "git status"]),
        json!(["/bin/bash", "-c", "git status"]),
        json!(["/usr/bin/zsh", "-ic", "git status"]),
        json!(["bash.exe", "-c", "git status"]),
        json!(["sh", "-cl", "git status"]),
        json!(["bash", "--login", "-c", "git status"]),
        json!(["bash", "-e", "-c", "git status"]),
    ] {
        assert_eq!(shell(argv.clone()).as_deref(), Some("git status"), "{argv}");
    }
    // Anything else is quoted and joined: the parser sees the program that runs it.
    assert_eq!(shell(json!(["bash", "-c", "git status", "extra"])).as_deref(), Some("bash -c 'git status' extra"));
    assert_eq!(shell(json!(["bash", "script.sh"])).as_deref(), Some("bash script.sh"));
    assert_eq!(shell(json!(["bash", "-o", "pipefail", "-c", "ls"])).as_deref(), Some("bash -o pipefail -c ls"));
    assert_eq!(shell(json!(["bash", "-c", "-c", "ls"])).as_deref(), Some("bash -c -c ls"));
    assert_eq!(shell(json!(["pwsh", "-c", "git push -f"])).as_deref(), Some("pwsh -c 'git push -f'"));
    assert_eq!(shell(json!(["/tmp/x/bash", "-lc", "ls"])).as_deref(), Some("/tmp/x/bash -lc ls"));
    // A force push stays a force push in every argv spelling.
    for argv in [
        json!(["bash", "-lc", "git push -f origin develop"]),
        json!(["bash", "-c", "git push -f origin develop", "extra"]),
        json!(["git", "push", "-f", "origin", "develop"]),
    ] {
        let d = evaluate(&tool_call("shell", json!({ "command": argv })), &state(), &github());
        assert_eq!(d.verdict, Verdict::Deny, "{argv}: {}", d.reason);
        assert_eq!(d.policy.as_deref(), Some("gh"), "{argv}");
    }
}

#[test]
fn local_shell_shows_its_environment() {
    let args =
        json!({"type": "exec", "command": ["git", "push", "origin", "feature/a"], "env": {"GIT_DIR": "/tmp/o/.git"}});
    assert_eq!(command("local_shell", args).as_deref(), Some("export GIT_DIR=/tmp/o/.git; git push origin feature/a"));
    let wrapped = json!({"action": {"type": "exec", "command": ["bash", "-lc", "git push -f origin develop"]}});
    assert_eq!(command("local_shell", wrapped.clone()).as_deref(), Some("git push -f origin develop"));
    assert_eq!(evaluate(&tool_call("local_shell", wrapped), &state(), &github()).policy.as_deref(), Some("gh"));
}

#[test]
fn shell_tools_that_were_not_gated_are_now() {
    // Codex `shell_command` and Claude Code `Monitor` run commands; both used to pass as other tools.
    for (tool, args) in [
        ("shell_command", json!({"command": "git push -f origin develop", "workdir": "/w"})),
        ("Monitor", json!({"command": "git push -f origin develop", "description": "watch", "timeout_ms": 1000})),
    ] {
        let d = evaluate(&tool_call(tool, args.clone()), &state(), &github());
        assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::Deny, Some("gh")), "{tool} {args}: {}", d.reason);
    }
    assert_allowed("Monitor", json!({"ws": {"url": "ws://localhost:8080"}, "description": "watch", "timeout_ms": 1}));
}

#[test]
fn file_tools_with_two_different_paths_are_ambiguous() {
    assert_ambiguous(
        "Write",
        json!({"file_path": "/w/a.txt", "path": "/w/.git/config", "content": "x"}),
        &["file_path", "path"],
    );
    assert_ambiguous("read_file", json!({"path": "a", "notebook_path": "b"}), &["path", "notebook_path"]);
    assert_ambiguous("apply_patch", json!({"input": "*** Begin Patch\n*** End Patch", "patch": "x"}), &["patch"]);
    assert_allowed("Write", json!({"file_path": "/w/a.txt", "path": "/w/a.txt", "content": "x"}));
}

/// What Claude Code, Codex and the custom harness actually send stays allowed.
#[test]
fn ordinary_calls_of_the_real_harnesses_stay_allowed() {
    let calls = [
        // Codex (pinned version): exec_command with every field its schema offers, write_stdin, apply_patch.
        (
            "exec_command",
            json!({"cmd": "cargo test", "workdir": "/workspace", "yield_time_ms": 10000, "max_output_tokens": 10000,
                   "login": true, "tty": false, "sandbox_permissions": "use_default", "justification": "run tests",
                   "prefix_rule": ["cargo", "test"], "environment_id": "primary", "shell": "bash"}),
        ),
        (
            "exec_command",
            json!({"cmd": "apply_patch <<'PATCH'\n*** Begin Patch\n*** Add File: a.md\n+x\n*** End Patch\nPATCH\n"}),
        ),
        ("write_stdin", json!({"session_id": 3, "chars": "", "yield_time_ms": 1000})),
        ("write_stdin", json!({"session_id": 3, "chars": "q\n", "max_output_tokens": 100})),
        ("shell", json!({"command": ["bash", "-lc", "git status"], "workdir": "/w", "timeout_ms": 1000})),
        ("shell_command", json!({"command": "git log --oneline", "login": false, "timeout_ms": 1000})),
        (
            "local_shell",
            json!({"type": "exec", "command": ["ls", "-la"], "working_directory": "/w", "env": {}, "timeout_ms": 1}),
        ),
        ("apply_patch", json!({"input": "*** Begin Patch\n*** Add File: notes.md\n+hi\n*** End Patch"})),
        ("update_plan", json!({"explanation": "x", "plan": [{"step": "a", "status": "pending"}]})),
        ("view_image", json!({"path": "/w/a.png"})),
        // Claude Code.
        ("Bash", json!({"command": "npm test", "description": "Run the tests", "timeout": 120000})),
        ("Bash", json!({"command": "npm run dev", "run_in_background": true, "dangerouslyDisableSandbox": false})),
        ("Read", json!({"file_path": "/w/a.rs", "offset": 1, "limit": 20})),
        ("Write", json!({"file_path": "/w/a.rs", "content": "x"})),
        ("Edit", json!({"file_path": "/w/a.rs", "old_string": "a", "new_string": "b", "replace_all": false})),
        ("Grep", json!({"pattern": "fn main", "path": "/w", "-n": true, "output_mode": "content"})),
        ("Task", json!({"description": "d", "prompt": "p", "subagent_type": "general-purpose"})),
        // Paddock's custom harness.
        ("shell", json!({"command": "cargo build"})),
        ("read_file", json!({"path": "src/main.rs"})),
        ("edit_file", json!({"path": "a", "old_string": "x", "new_string": "y"})),
        ("mcp__github__get_issue", json!({"owner": "acme", "repo": "app", "issue_number": 1})),
    ];
    for (tool, args) in calls {
        assert_allowed(tool, args);
    }
    assert_eq!(command("exec_command", json!({"cmd": "cargo test", "shell": "bash"})).as_deref(), Some("cargo test"));
}

#[test]
fn tool_results_are_not_refused_for_their_arguments() {
    // The call ran already (and was decided at tool_call); a result may come without the arguments.
    let result = Event { phase: Phase::ToolResult, tool: Some("Bash".into()), ..Default::default() };
    assert_eq!(evaluate(&result, &state(), &[]).verdict, Verdict::Allow);
}

#[test]
fn an_audit_policy_cannot_lift_the_deny() {
    let watch = policies(&[("watch", "mode: Audit\nrules: [{name: g, use: github}]")]);
    let d = evaluate(
        &tool_call("exec_command", json!({"command": "echo hi", "cmd": "git push -f origin develop"})),
        &state(),
        &watch,
    );
    assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::Deny, Some(TOOL_SHAPE_POLICY)));
}

#[test]
fn paddock_test_suites_see_the_tool_shape_deny() {
    check(
        r#"
state: {workspace_repo: acme/app}
cases:
  - name: a second command field is denied as ambiguous, whatever the rules say
    steps:
      - {event: {phase: tool_call, tool: exec_command, args: {command: "echo hi", cmd: "git push -f origin develop"}}, expect: deny, policy: paddock/tool-shape, reason_contains: ambiguous}
      - {event: {phase: llm_response, tool_calls: [{name: write_stdin, args: {chars: "git push -f origin develop\n", cmd: "true"}}]}, expect: deny, policy: paddock/tool-shape}
      - {event: {phase: tool_call, tool: exec_command, args: {cmd: "git status"}}, expect: allow}
"#,
        &github(),
    );
}
