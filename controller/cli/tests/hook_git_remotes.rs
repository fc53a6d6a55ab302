//! `paddock hook claude` reads, inside the workspace, where the repository's remotes really point and sends
//! them with the tool call: the `github` rule judges `git push origin …` by the real `origin`, not by the
//! session's `workspace_repo` (issue 14, "remote identity").

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use paddock_gateway::config::{GatewayConfig, SecretSource};
use paddock_gateway::server;
use serde_json::{Value, json};
use support::{ADMIN, git};

const AGENT: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: claude-coder}
spec:
  harness: claude-code
  model: claude-sonnet-4-5
"#;

/// Pushes to `acme/app`'s feature branches only.
const POLICY: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: github-rules}
spec:
  rules:
    - name: repos
      use: github
      with: {write_repos: [acme/app], write_branches: ["feature/*"]}
"#;

fn hook(input: &[u8], env: &[(&str, String)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(["hook", "claude"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", "/nonexistent")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("paddock runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// A PreToolUse input for a Bash call in `dir`; each case its own call id (the gateway answers a repeated
/// id with the same decision).
fn bash_in(dir: &Path, command: &str, id: usize) -> Vec<u8> {
    json!({"session_id": "c1", "cwd": dir, "hook_event_name": "PreToolUse", "tool_name": "Bash",
           "tool_input": {"command": command}, "tool_use_id": format!("toolu_{id}")})
    .to_string()
    .into_bytes()
}

/// A repository whose `origin` is `url`, with `extra` settings (`key value`) in its own config.
fn repo(dir: &Path, name: &str, url: &str, extra: &[(&str, &str)]) -> std::path::PathBuf {
    let r = dir.join(name);
    std::fs::create_dir_all(&r).unwrap();
    git(&r, &["init", "-q", "-b", "main"]);
    git(&r, &["remote", "add", "origin", url]);
    for (k, v) in extra {
        git(&r, &["config", k, v]);
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_judged_by_the_remote_the_repository_really_has() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let gitops = root.join("repo");
    std::fs::create_dir_all(gitops.join("agents")).unwrap();
    std::fs::create_dir_all(gitops.join("policies")).unwrap();
    std::fs::write(gitops.join("agents/agents.yaml"), AGENT).unwrap();
    std::fs::write(gitops.join("policies/github.yaml"), POLICY).unwrap();
    std::fs::write(root.join("admin-token"), ADMIN).unwrap();
    let mut cfg = GatewayConfig {
        data_dir: Some(root.join("data")),
        repo: Some(gitops),
        admin_token: Some(SecretSource { env: None, file: Some(root.join("admin-token")) }),
        ..GatewayConfig::default()
    };
    // An ask nobody answers ends quickly as a refusal.
    cfg.limits.ask_timeout_seconds = 1;
    cfg.limits.decide_wait_seconds = 1;
    let (_, url, server) = server::serve_loopback(&cfg).await.expect("gateway serves");
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/sessions"))
        .bearer_auth(ADMIN)
        .json(&json!({"agent": "claude-coder", "owner": "alice", "workspaceRepo": "acme/app"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let env = vec![
        ("PADDOCK_GATEWAY_URL", url.clone()),
        ("PADDOCK_SESSION", v["id"].as_str().unwrap().to_owned()),
        ("PADDOCK_TOKEN", v["token"].as_str().unwrap().to_owned()),
    ];

    let ours = repo(root, "ours", "https://github.com/acme/app.git", &[]);
    let other = repo(root, "other", "https://github.com/evil/other.git", &[]);
    let pushurl = repo(
        root,
        "pushurl",
        "https://github.com/acme/app.git",
        &[("remote.origin.pushurl", "git@github.com:evil/other.git")],
    );
    let rewritten = repo(
        root,
        "rewritten",
        "https://github.com/acme/app.git",
        &[("url.https://github.com/evil/.pushInsteadOf", "https://github.com/acme/")],
    );
    let broken = repo(root, "broken", "https://github.com/acme/app.git", &[]);
    std::fs::write(broken.join(".git/config"), "[remote \"origin\"\n\turl = https://github.com/acme/app\n").unwrap();
    let plain = root.join("plain");
    std::fs::create_dir_all(&plain).unwrap();

    let cases: Vec<(&str, &Path, i32, &str)> = vec![
        ("origin is the workspace repository", &ours, 0, ""),
        ("origin is another repository", &other, 2, "evil/other"),
        ("origin pushes to another repository", &pushurl, 2, "evil/other"),
        ("origin's URL is rewritten for pushes", &rewritten, 2, "evil/app"),
        ("no repository: origin is unknown", &plain, 2, "[paddock]"),
        ("a config git cannot read blocks", &broken, 2, "cannot read the git remotes"),
    ];
    for (i, (what, dir, code, says)) in cases.into_iter().enumerate() {
        let input = bash_in(dir, "git push origin feature/x", i);
        let env = env.clone();
        let out = tokio::task::spawn_blocking(move || hook(&input, &env)).await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{what}: {stderr}");
        assert!(stderr.contains(says), "{what}: {stderr}");
    }

    // The response gate decides the same call first, without remotes, and allows it; the hook's call, with
    // the remotes it read, is decided again and denied.
    let gate = reqwest::Client::new()
        .post(format!("{url}/v1/sessions/{}/decide", env[1].1))
        .bearer_auth(&env[2].1)
        .json(&json!({"phase": "tool_call", "tool": "Bash", "args": {"command": "git push origin feature/x"},
                      "tool_id": "toolu_gate"}))
        .send()
        .await
        .unwrap();
    let gate: Value = gate.json().await.unwrap();
    assert_eq!(gate["verdict"], "allow", "{gate}");
    let input = json!({"session_id": "c1", "cwd": other, "hook_event_name": "PreToolUse", "tool_name": "Bash",
                       "tool_input": {"command": "git push origin feature/x"}, "tool_use_id": "toolu_gate"})
    .to_string()
    .into_bytes();
    let env2 = env.clone();
    let out = tokio::task::spawn_blocking(move || hook(&input, &env2)).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "after the response gate: {stderr}");
    assert!(stderr.contains("evil/other"), "{stderr}");

    // The remotes the hook read are in the audit log with the decision.
    let audit: Vec<Value> = reqwest::Client::new()
        .get(format!("{url}/v1/audit?session={}", env[1].1))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let denied = audit.iter().find(|r| r["verdict"] == "deny").expect("a denial is audited");
    assert!(denied.to_string().contains("evil/other"), "{denied}");
    server.abort();
}
