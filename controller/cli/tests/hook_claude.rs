//! `paddock hook claude`, Claude Code's PreToolUse command hook, as Claude Code runs it: JSON on stdin, the
//! session's gateway and token in the environment; exit 0 with an allow decision, or exit 2 with the
//! reason on stderr. Every failure blocks. `paddock hook gemini` answers Gemini CLI's BeforeTool the same
//! way, as a deny-only check.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use support::scenarios::CLAUDE_AGENT;
use support::*;

/// Environment variables for the hook, owned so they can move to a blocking task.
type Env = Vec<(&'static str, String)>;

fn hook(input: &[u8], env: &[(&str, &str)]) -> Output {
    hook_of("claude", input, env)
}

fn hook_of(harness: &str, input: &[u8], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(["hook", harness])
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("paddock runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn pre_tool_use(tool: &str, input: Value, id: &str) -> Vec<u8> {
    json!({"session_id": "c1", "transcript_path": "/tmp/t.jsonl", "cwd": "/w", "permission_mode": "dontAsk",
           "hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": input, "tool_use_id": id})
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_allows_denies_and_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(dir.path(), CLAUDE_AGENT, "scripts: [{name: none, turns: []}]").await;
    let (session, token) = gw.session("claude-coder").await;
    let env = [("PADDOCK_GATEWAY_URL", gw.url.as_str()), ("PADDOCK_SESSION", &session), ("PADDOCK_TOKEN", &token)];

    // The hook blocks, so run it off the runtime's worker threads.
    let run = |input: Vec<u8>, env: Env| {
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            hook(&input, &env)
        })
    };
    let owned = |env: &[(&'static str, &str)]| -> Env { env.iter().map(|(k, v)| (*k, v.to_string())).collect() };

    // Allowed: exit 0 and Claude Code's allow decision on stdout.
    let out = run(pre_tool_use("Bash", json!({"command": "ls -la"}), "toolu_1"), owned(&env)).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["hookSpecificOutput"]["hookEventName"], "PreToolUse");
    assert_eq!(answer["hookSpecificOutput"]["permissionDecision"], "allow");

    // Denied: exit 2, the policy and reason on stderr for the model, nothing on stdout.
    let out = run(pre_tool_use("Bash", json!({"command": "git push --force origin main"}), "toolu_2"), owned(&env))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("[paddock] The tool call `Bash` was blocked by policy `github-rules`"), "{stderr}");
    assert!(stderr.contains("force"), "{stderr}");
    assert!(out.stdout.is_empty());

    // Both decisions are in the audit log, as tool calls of this session.
    let audit = gw.audit(&session).await;
    let tool_calls: Vec<(&str, &str)> = audit
        .iter()
        .filter(|r| r["phase"] == "tool_call")
        .map(|r| (r["tool"].as_str().unwrap(), r["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(tool_calls, [("Bash", "allow"), ("Bash", "deny")]);

    // Every failure blocks (exit 2) and says why; the token is never printed.
    let bash = pre_tool_use("Bash", json!({"command": "ls"}), "toolu_3");
    let cases: Vec<(&str, Vec<u8>, Env, &str)> = vec![
        ("malformed input", b"{not json".to_vec(), owned(&env), "not JSON"),
        ("no tool name", br#"{"hook_event_name":"PreToolUse"}"#.to_vec(), owned(&env), "tool_name"),
        (
            "gateway unreachable",
            bash.clone(),
            owned(&[
                ("PADDOCK_GATEWAY_URL", "http://127.0.0.1:9"),
                ("PADDOCK_SESSION", &session),
                ("PADDOCK_TOKEN", &token),
            ]),
            "could not decide",
        ),
        (
            "wrong token",
            bash.clone(),
            owned(&[("PADDOCK_GATEWAY_URL", &gw.url), ("PADDOCK_SESSION", &session), ("PADDOCK_TOKEN", "pdk_wrong")]),
            "401",
        ),
        (
            "another session's id",
            bash.clone(),
            owned(&[("PADDOCK_GATEWAY_URL", &gw.url), ("PADDOCK_SESSION", "s-other"), ("PADDOCK_TOKEN", &token)]),
            "could not decide",
        ),
        ("no token", bash.clone(), owned(&env[..2]), "PADDOCK_TOKEN is not set"),
    ];
    for (what, input, env, says) in cases {
        let out = run(input, env).await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(stderr.contains("[paddock]") && stderr.contains(says), "{what}: {stderr}");
        assert!(!stderr.contains(&token), "{what}: the token is printed");
        assert!(out.stdout.is_empty(), "{what}");
    }
}

/// Gemini CLI's hook input names no call, so its hook is a deny-only check: a call the policies refuse
/// where it runs is blocked and recorded, an allowed one is neither recorded nor counted again (the
/// response gate already did both), and one a rule asks about waits for a human.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gemini_hook_only_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let agent = format!(
        "{CLAUDE_AGENT}  rules:\n    - {{name: ask-deploy, use: tool_denylist, with: {{tools: [deploy]}}, action: ask}}\n"
    );
    let gw = TestGateway::start(dir.path(), &agent, "scripts: [{name: none, turns: []}]").await;
    let (session, token) = gw.session("claude-coder").await;
    let env: Env =
        vec![("PADDOCK_GATEWAY_URL", gw.url.clone()), ("PADDOCK_SESSION", session.clone()), ("PADDOCK_TOKEN", token)];
    let before_tool = |command: &str| {
        json!({"session_id": "g1", "cwd": "/w", "hook_event_name": "BeforeTool", "tool_name": "run_shell_command",
               "tool_input": {"command": command}})
        .to_string()
        .into_bytes()
    };
    let run = |input: Vec<u8>, env: Env| {
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            hook_of("gemini", &input, &env)
        })
    };
    let out = run(before_tool("ls -la"), env.clone()).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["decision"], "allow");
    assert!(gw.audit(&session).await.is_empty(), "an allowed check records nothing");

    let out = run(before_tool("git push --force origin main"), env.clone()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("blocked by policy `github-rules`"), "{stderr}");
    let audit = gw.audit(&session).await;
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!((audit[0]["phase"].as_str(), audit[0]["verdict"].as_str()), (Some("tool_call"), Some("deny")));
    assert!(audit[0]["reason"].as_str().unwrap().contains("checked again by the harness's hook"), "{audit:#?}");

    // What the check cannot pass alone is decided in full: a rule that asks waits for a human.
    let approver = {
        let (http, url) = (gw.client.clone(), gw.url.clone());
        tokio::spawn(async move {
            loop {
                let pending: Vec<Value> = http
                    .get(format!("{url}/v1/approvals?status=pending"))
                    .bearer_auth(ADMIN)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if let Some(a) = pending.first() {
                    let id = a["id"].as_str().unwrap();
                    let r = http
                        .post(format!("{url}/v1/approvals/{id}/approve"))
                        .bearer_auth(ADMIN)
                        .json(&json!({"by": "carol"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    return a.clone();
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };
    let deploy = json!({"session_id": "g1", "cwd": "/w", "hook_event_name": "BeforeTool", "tool_name": "deploy",
                        "tool_input": {"target": "prod"}});
    let out = run(deploy.to_string().into_bytes(), env.clone()).await.unwrap();
    let asked = approver.await.unwrap();
    assert_eq!(asked["phase"], "tool_call", "{asked}");
    assert_eq!(out.status.code(), Some(0), "approved: {}", String::from_utf8_lossy(&out.stderr));

    // A PreToolUse input is not Gemini's: refused, as every malformed input is.
    let claude_input = pre_tool_use("Bash", json!({"command": "ls"}), "toolu_9");
    let out = run(claude_input, env).await.unwrap();
    assert_eq!(out.status.code(), Some(2));
}
