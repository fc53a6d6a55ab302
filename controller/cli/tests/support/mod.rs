//! For the harness tests: a real gateway on a loopback port, governing a repo of Agents and Policies, whose
//! provider is the scripted model served over HTTP by a recorder (so the test knows how many model
//! requests reached the upstream and how many tool calls it asked for); the real CLIs from `.ci/npm`; a
//! workspace that is a git repository with a `file://` remote; and `paddock runner` run as a process.

#![allow(dead_code)]

pub mod scenarios;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use paddock_gateway::config::{GatewayConfig, ProviderConfig, ProviderKind, SecretSource};
use paddock_gateway::scripted::{self, ScriptFile};
use paddock_gateway::server;
use paddock_runner::TranscriptEvent;
use serde_json::{Value, json};

pub const ADMIN: &str = "test-admin-token";

/// The Policies every test runs under: force pushes are denied (`github`), everything else allowed.
pub const POLICIES: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: github-rules}
spec:
  rules:
    - name: no-force-push
      use: github
      with: {read_all: true, write_repos: ["*"], write_branches: ["*"], deny_force_push: true}
"#;

/// One model request the upstream answered.
#[derive(Clone, Debug)]
pub struct UpstreamCall {
    pub path: String,
    /// Tool calls the scripted model asked for in its answer.
    pub tool_calls: usize,
    /// The request as the upstream received it (what the model was shown).
    pub request: String,
}

/// The scripted model on its own port, recording what it answered.
pub struct Upstream {
    pub url: String,
    calls: Arc<Mutex<Vec<UpstreamCall>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start(script: &str) -> Upstream {
        let script = Arc::new(ScriptFile::parse(script, "script.yaml").expect("the test script parses"));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let rec = calls.clone();
        let app = scripted::router(script).layer(axum::middleware::from_fn(move |req: Request, next: Next| {
            let rec = rec.clone();
            async move { record(rec, req, next).await }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Upstream { url, calls, task }
    }

    pub fn calls(&self) -> Vec<UpstreamCall> {
        self.calls.lock().unwrap().clone()
    }
}

async fn record(rec: Arc<Mutex<Vec<UpstreamCall>>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let (parts, body) = req.into_parts();
    let sent = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let request = String::from_utf8_lossy(&sent).into_owned();
    let resp = next.run(Request::from_parts(parts, Body::from(sent))).await;
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    rec.lock().unwrap().push(UpstreamCall { path, tool_calls: count_tool_calls(&text), request });
    Response::from_parts(parts, Body::from(bytes))
}

/// Tool calls in a model answer, streamed (SSE) or not, in any of the four wire formats.
fn count_tool_calls(body: &str) -> usize {
    // Gemini's calls are parts of candidates; Chat's are in `tool_calls` (streamed: the chunk with the id).
    let gemini = |v: &Value| {
        v["candidates"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["content"]["parts"].as_array().cloned().unwrap_or_default())
            .filter(|p| p.get("functionCall").is_some())
            .count()
    };
    let chat = |v: &Value, key: &str| {
        v["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c[key]["tool_calls"].as_array().cloned().unwrap_or_default())
            .filter(|t| t.get("id").is_some_and(|i| !i.is_null()))
            .count()
    };
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let items = v["content"].as_array().or(v["output"].as_array()).cloned().unwrap_or_default();
        return items.iter().filter(|i| matches!(i["type"].as_str(), Some("tool_use" | "function_call"))).count()
            + gemini(&v)
            + chat(&v, "message");
    }
    body.split("\n\n")
        .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .map(|e| {
            let one = (e["type"] == "content_block_start" && e["content_block"]["type"] == "tool_use")
                || (e["type"] == "response.output_item.added" && e["item"]["type"] == "function_call");
            usize::from(one) + gemini(&e) + chat(&e, "delta")
        })
        .sum()
}

pub struct TestGateway {
    pub url: String,
    pub upstream: Upstream,
    pub client: reqwest::Client,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestGateway {
    /// A gateway in `dir` governing `agents` (manifests) under [`POLICIES`], with `script` as the upstream.
    pub async fn start(dir: &Path, agents: &str, script: &str) -> TestGateway {
        let repo = dir.join("repo");
        std::fs::create_dir_all(repo.join("agents")).unwrap();
        std::fs::create_dir_all(repo.join("policies")).unwrap();
        std::fs::write(repo.join("agents/agents.yaml"), agents).unwrap();
        std::fs::write(repo.join("policies/rules.yaml"), POLICIES).unwrap();
        std::fs::write(dir.join("admin-token"), ADMIN).unwrap();
        let upstream = Upstream::start(script).await;
        let mut cfg = GatewayConfig {
            data_dir: Some(dir.join("data")),
            repo: Some(repo),
            admin_token: Some(SecretSource { env: None, file: Some(dir.join("admin-token")) }),
            ..GatewayConfig::default()
        };
        cfg.limits.ask_timeout_seconds = 20;
        for (name, kind, models) in [
            ("anthropic", ProviderKind::Anthropic, vec!["claude-*".to_owned()]),
            ("openai", ProviderKind::Openai, vec!["gpt-*".to_owned(), "o*".to_owned()]),
            ("google", ProviderKind::Google, vec!["gemini-*".to_owned()]),
        ] {
            cfg.providers.push(ProviderConfig {
                name: name.into(),
                kind,
                base_url: Some(upstream.url.clone()),
                api_key: None,
                script: None,
                models,
            });
        }
        let (_, url, server) = server::serve_loopback(&cfg).await.expect("gateway serves");
        TestGateway { url, upstream, client: reqwest::Client::new(), server }
    }

    /// Creates a session of `agent`; returns (id, token).
    pub async fn session(&self, agent: &str) -> (String, String) {
        let r = self
            .client
            .post(format!("{}/v1/sessions", self.url))
            .bearer_auth(ADMIN)
            .json(&json!({"agent": agent, "owner": "alice"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        (v["id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned())
    }

    pub async fn audit(&self, session: &str) -> Vec<Value> {
        self.admin_get(&format!("/v1/audit?session={session}")).await
    }

    pub async fn session_info(&self, session: &str) -> Value {
        self.admin_get(&format!("/v1/sessions/{session}")).await
    }

    /// The transcript the gateway stored for the session (what `paddock session logs` shows).
    /// The stored transcript, each event with the `source` the gateway stamped on it (`runner` or `gateway`).
    pub async fn transcript(&self, session: &str) -> Vec<(String, TranscriptEvent)> {
        let rows: Vec<Value> = self.admin_get(&format!("/v1/sessions/{session}/events")).await;
        rows.into_iter()
            .map(|r| {
                let mut event = r["event"].clone();
                let source = event.as_object_mut().and_then(|o| o.remove("source"));
                let source = source.and_then(|s| s.as_str().map(str::to_owned)).unwrap_or_default();
                (source, serde_json::from_value(event).unwrap())
            })
            .collect()
    }

    async fn admin_get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let r = self.client.get(format!("{}{path}", self.url)).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }
}

/// The repository root (`.ci/` lives there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// A real CLI: `$env_var`, else `.ci/npm/node_modules/.bin/<name>`. Missing is a failure, never a skip.
pub fn cli(name: &str, env_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env_var} is set to `{}`, which is not a file", p.display());
        return p;
    }
    let p = repo_root().join(".ci/npm/node_modules/.bin").join(name);
    assert!(
        p.is_file(),
        "the real `{name}` CLI is not installed at {}: run `.ci/install-clis.sh` (it installs the pinned Claude \
         Code, Codex, Gemini CLI, Pi and OpenCode from npm), or set {env_var} to the executable",
        p.display()
    );
    p
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A workspace that is a clone of a bare `file://` remote with one commit on `main`, and a second local
/// commit that a (force) push would publish. Returns (workspace, remote).
pub fn git_workspace(dir: &Path) -> (PathBuf, PathBuf) {
    let remote = dir.join("remote.git");
    let ws = dir.join("ws");
    std::fs::create_dir_all(&remote).unwrap();
    std::fs::create_dir_all(&ws).unwrap();
    git(&remote, &["init", "--bare", "-q", "-b", "main"]);
    git(&ws, &["init", "-q", "-b", "main"]);
    std::fs::write(ws.join("README.md"), "hello\n").unwrap();
    git(&ws, &["add", "."]);
    git(&ws, &["commit", "-q", "-m", "first"]);
    git(&ws, &["remote", "add", "origin", &format!("file://{}", remote.display())]);
    git(&ws, &["push", "-q", "origin", "main"]);
    std::fs::write(ws.join("README.md"), "rewritten\n").unwrap();
    git(&ws, &["commit", "-q", "-am", "unpublished"]);
    (ws.canonicalize().unwrap(), remote)
}

/// What `paddock runner` printed and how it ended.
pub struct RunnerRun {
    pub events: Vec<TranscriptEvent>,
    pub success: bool,
    pub stderr: String,
}

/// Runs `paddock runner` for one session, as the sandbox would.
pub async fn run_runner(
    agent_file: &Path,
    prompt: &str,
    workspace: &Path,
    gateway: &str,
    session: &str,
    token: &str,
    envs: &[(&str, &Path)],
) -> RunnerRun {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_paddock"));
    cmd.arg("runner")
        .arg("--agent")
        .arg(agent_file)
        .arg("--prompt")
        .arg(prompt)
        .arg("--workspace")
        .arg(workspace)
        .arg("--gateway")
        .arg(gateway)
        .arg("--session")
        .arg(session)
        .env("PADDOCK_TOKEN", token)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("the runner finishes within 240s")
        .expect("paddock runner starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("transcript line `{l}`: {e}")))
        .collect();
    RunnerRun { events, success: out.status.success(), stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

/// Governance coverage of one session, from the gateway's audit log and what the upstream answered.
#[derive(Debug)]
pub struct Coverage {
    /// Model requests with an `llm_request` decision / model requests the upstream answered.
    pub llm_decided: usize,
    pub llm_total: usize,
    /// Tool calls with a decision (`llm_response`) / tool calls the model asked for.
    pub tools_decided: usize,
    pub tools_total: usize,
}

impl Coverage {
    pub fn of(audit: &[Value], upstream: &[UpstreamCall]) -> Coverage {
        let phase = |p: &str| audit.iter().filter(|r| r["phase"] == p).count();
        Coverage {
            llm_decided: phase("llm_request"),
            llm_total: upstream.len(),
            tools_decided: audit.iter().filter(|r| r["phase"] == "llm_response" && r["tool"].is_string()).count(),
            tools_total: upstream.iter().map(|c| c.tool_calls).sum(),
        }
    }

    pub fn report(&self, harness: &str) -> String {
        let pct = |a: usize, b: usize| if b == 0 { 100.0 } else { 100.0 * a as f64 / b as f64 };
        format!(
            "governance coverage ({harness}): LLM requests decided {}/{} = {:.0}%, tool calls decided {}/{} = {:.0}%",
            self.llm_decided,
            self.llm_total,
            pct(self.llm_decided, self.llm_total),
            self.tools_decided,
            self.tools_total,
            pct(self.tools_decided, self.tools_total)
        )
    }

    pub fn is_full(&self) -> bool {
        self.llm_total > 0 && self.llm_decided == self.llm_total && self.tools_decided == self.tools_total
    }
}
