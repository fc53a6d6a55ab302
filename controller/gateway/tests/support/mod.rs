//! A real gateway on a loopback port, with a repo of Agents and Policies and a scripted provider.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use paddock_gateway::config::{GatewayConfig, ProviderConfig, ProviderKind, SecretSource};
use paddock_gateway::{Gateway, server};
use serde_json::{Value, json};

pub const ADMIN: &str = "test-admin-token";

pub const REPO: &[(&str, &str)] = &[
    (
        "agents/coder.yaml",
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: coder, labels: {team: web}}
spec:
  harness: custom
  model: claude-sonnet-4-5
  tools: [shell]
"#,
    ),
    (
        "agents/gpt.yaml",
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: gpt, labels: {team: web}}
spec:
  harness: codex
  model: gpt-5
"#,
    ),
    (
        "agents/spender.yaml",
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: spender, labels: {team: web, budget: small}}
spec:
  harness: custom
  model: claude-sonnet-4-5
"#,
    ),
    (
        "agents/capped.yaml",
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: capped, labels: {budget: hard}}
spec:
  harness: custom
  model: claude-sonnet-4-5
"#,
    ),
    (
        "agents/dollar.yaml",
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: dollar, labels: {budget: dollar}}
spec:
  harness: custom
  model: gpt-5
"#,
    ),
    (
        "agents/fetcher.yaml",
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: fetcher, labels: {fetch: urls}}
spec:
  harness: custom
  model: claude-sonnet-4-5
"#,
    ),
    (
        "policies/rules.yaml",
        r#"apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: pii}
spec:
  rules:
    - name: no-pii
      use: deny_pii_in_llm_request
      with: {pii_types: [email, ssn, credit_card], action: deny}
---
apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: github-rules}
spec:
  rules:
    - name: no-force-push
      use: github
      with: {read_all: true, write_repos: [acme/webshop], write_branches: ["*"], deny_force_push: true}
---
apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: budget}
spec:
  selector: {matchLabels: {budget: small}}
  rules:
    - name: ask-early
      use: cost_budget
      with: {max_cost_usd: 100, ask_thresholds_usd: [0.01]}
---
apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: hard-cap}
spec:
  selector: {matchLabels: {budget: hard}}
  rules:
    - name: two-cents
      use: cost_budget
      with: {max_cost_usd: 0.02}
---
apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: one-dollar}
spec:
  selector: {matchLabels: {budget: dollar}}
  rules:
    - name: hard-stop
      use: cost_budget
      with: {max_cost_usd: 1}
---
apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: url-inputs}
spec:
  selector: {matchLabels: {fetch: urls}}
  rules:
    - name: images-by-url
      use: provider_features
      with: {allow: [url_inputs]}
"#,
    ),
];

pub const SCRIPT: &str = r#"
scripts:
  - name: push
    match: "force push"
    turns:
      - text: "I will list the files and push."
        tool_calls:
          - {name: Bash, args: {command: "ls -la"}}
          - {name: Bash, args: {command: "git push --force origin main"}}
        usage: {input_tokens: 1200, output_tokens: 60}
      - text: "Done."
  - name: only-push
    match: "just push"
    turns:
      - text: ""
        tool_calls:
          - {name: Bash, args: {command: "git push -f origin main"}}
        usage: {input_tokens: 500, output_tokens: 20}
  - name: spend
    match: "spend"
    turns:
      - text: "That was expensive."
        usage: {input_tokens: 10000, output_tokens: 100}
      - text: "Still going."
        usage: {input_tokens: 10000, output_tokens: 100}
  - name: dawdle
    match: "take your time"
    turns:
      - text: "Thinking slowly about a long answer, one piece at a time."
        chunk_delay_ms: 60
        usage: {input_tokens: 777, output_tokens: 33}
  - name: concurrent
    match: "all at once"
    turns:
      - text: "One of many."
        delay_ms: 400
        usage: {input_tokens: 100, output_tokens: 500}
  - name: long
    match: "write an essay"
    turns:
      - text: "ESSAY_TEXT"
        chunk_delay_ms: 2
        usage: {input_tokens: 100, output_tokens: 20000}
  - name: slow
    match: "slow"
    turns:
      - text: "Sorry for the wait."
        delay_ms: 3000
  - name: default
    turns:
      - text: "Hello from the scripted model."
        usage: {input_tokens: 100, output_tokens: 10}
      - text: "Second turn."
        usage: {input_tokens: 200, output_tokens: 20}
"#;

pub struct TestGateway {
    pub url: String,
    pub gw: Arc<Gateway>,
    pub dir: PathBuf,
    pub client: reqwest::Client,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn write_repo(dir: &Path) {
    for (rel, text) in REPO {
        let p = dir.join("repo").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    // 80,000 characters: about 20,000 tokens, $0.30 at Sonnet's output price.
    let essay = "All work and no play makes a long essay. ".repeat(2000);
    std::fs::write(dir.join("script.yaml"), SCRIPT.replace("ESSAY_TEXT", &essay)).unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN).unwrap();
}

/// With `PADDOCK_TEST_POSTGRES` (a server URL, e.g. from `.ci/postgres.sh`), each test directory gets its own
/// PostgreSQL database, reused when the test restarts its gateway; otherwise SQLite in the directory.
pub fn database(dir: &Path) -> Option<String> {
    let base = std::env::var("PADDOCK_TEST_POSTGRES").ok()?;
    let marker = dir.join("pg-url");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url);
    }
    let name = format!("t_{}", paddock_gateway::gateway::random_hex(8));
    let admin = format!("{base}/postgres");
    let create = format!("CREATE DATABASE {name}");
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL from PADDOCK_TEST_POSTGRES");
            sqlx::Executor::execute(&mut c, create.as_str()).await.unwrap();
        })
    })
    .join()
    .unwrap();
    let url = format!("{base}/{name}");
    std::fs::write(marker, &url).unwrap();
    Some(url)
}

pub fn config(dir: &Path) -> GatewayConfig {
    let mut cfg = GatewayConfig {
        database: database(dir),
        data_dir: Some(dir.join("data")),
        repo: Some(dir.join("repo")),
        admin_token: Some(SecretSource { env: None, file: Some(dir.join("admin-token")) }),
        ..GatewayConfig::default()
    };
    cfg.limits.ask_timeout_seconds = 20;
    cfg.providers.push(ProviderConfig::scripted(dir.join("script.yaml"), &["claude-*", "gpt-*", "scripted*"]));
    cfg
}

impl TestGateway {
    pub async fn start(dir: &Path) -> TestGateway {
        TestGateway::with_config(dir, config(dir)).await
    }

    pub async fn with_config(dir: &Path, cfg: GatewayConfig) -> TestGateway {
        let (gw, url, server) = server::serve_loopback(&cfg).await.expect("gateway serves");
        TestGateway { url, gw, dir: dir.to_owned(), client: reqwest::Client::new(), server }
    }

    /// Creates a session of `agent`; returns (id, token).
    pub async fn session(&self, agent: &str) -> (String, String) {
        new_session(&self.client, &self.url, agent).await
    }

    pub async fn audit(&self, session: &str) -> Vec<Value> {
        let r = self
            .client
            .get(format!("{}/v1/audit?session={session}", self.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// `POST /v1/approvals/{aid}/{action}` (`approve` or `deny`) with `credential` and, if given, a body.
    /// `POST /v1/sessions/{parent}/children` with the parent's token: starts a sub-agent's session of `agent`.
    pub async fn child(&self, parent: &str, token: &str, agent: &str) -> reqwest::Response {
        let url = format!("{}/v1/sessions/{parent}/children", self.url);
        self.client.post(url).bearer_auth(token).json(&json!({"agent": agent})).send().await.unwrap()
    }

    pub async fn settle(&self, aid: &str, action: &str, credential: &str, body: Option<Value>) -> reqwest::Response {
        let mut r = self.client.post(format!("{}/v1/approvals/{aid}/{action}", self.url)).bearer_auth(credential);
        if let Some(body) = body {
            r = r.json(&body);
        }
        r.send().await.unwrap()
    }

    /// `GET /v1/sessions/{session}/approvals/{aid}{query}` with the session's token: how its ask was decided.
    pub async fn approval(&self, session: &str, aid: &str, token: &str, query: &str) -> Value {
        let url = format!("{}/v1/sessions/{session}/approvals/{aid}{query}", self.url);
        self.client.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap()
    }

    pub async fn session_info(&self, session: &str) -> Value {
        let r = self.client.get(format!("{}/v1/sessions/{session}", self.url)).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

/// Starts a session of `agent` for alice on the gateway at `url`; returns its id and token.
pub async fn new_session(client: &reqwest::Client, url: &str, agent: &str) -> (String, String) {
    let r = client
        .post(format!("{url}/v1/sessions"))
        .bearer_auth(ADMIN)
        .json(&json!({"agent": agent, "owner": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    (v["id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned())
}

/// The model each wire format's requests name in the tests: one the test repo prices.
pub fn model_of(wire: &str) -> &'static str {
    match wire {
        "anthropic" => "claude-sonnet-4-5",
        "gemini" => "gemini-2.5-pro",
        _ => "gpt-5",
    }
}

/// Path and a request body for a wire format.
pub fn request(wire: &str, model: &str, messages: &[(&str, &str)], stream: bool) -> (&'static str, Value) {
    match wire {
        "anthropic" => (
            "/llm/anthropic/v1/messages",
            json!({"model": model, "max_tokens": 1024, "stream": stream,
                   "messages": messages.iter().map(|(r, t)| json!({"role": r, "content": t})).collect::<Vec<_>>()}),
        ),
        "chat" => (
            "/llm/openai/v1/chat/completions",
            json!({"model": model, "max_tokens": 1024, "stream": stream,
                   "messages": messages.iter().map(|(r, t)| json!({"role": r, "content": t})).collect::<Vec<_>>()}),
        ),
        "responses" => (
            "/llm/openai/v1/responses",
            json!({"model": model, "max_output_tokens": 1024, "stream": stream,
                   "input": messages.iter().map(|(r, t)| json!({"type": "message", "role": r,
                        "content": [{"type": if *r == "user" { "input_text" } else { "output_text" }, "text": t}]}))
                        .collect::<Vec<_>>()}),
        ),
        // Gemini's model and stream flag are in the path.
        "gemini" => {
            assert_eq!(model, "gemini-2.5-pro", "the Gemini requests of these tests are for gemini-2.5-pro");
            let path = match stream {
                true => "/llm/google/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
                false => "/llm/google/v1beta/models/gemini-2.5-pro:generateContent",
            };
            let contents: Vec<Value> = messages
                .iter()
                .map(|(r, t)| json!({"role": if *r == "assistant" { "model" } else { r }, "parts": [{"text": t}]}))
                .collect();
            (path, json!({"contents": contents, "generationConfig": {"maxOutputTokens": 1024}}))
        }
        _ => unreachable!(),
    }
}

pub const WIRES: [&str; 3] = ["anthropic", "chat", "responses"];

/// The data events of an SSE body, parsed as JSON (`[DONE]` kept as a string).
pub fn sse_events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|block| {
            let data: Vec<&str> = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            if data.is_empty() {
                return None;
            }
            let d = data.join("\n");
            Some(serde_json::from_str(&d).unwrap_or(Value::String(d)))
        })
        .collect()
}

/// What a stand-in provider was sent: (path, body).
pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;

/// A stand-in provider on loopback for all three wire formats: `answer(path, body)` makes each response,
/// after `delay_ms`; every request is recorded. Returns its base URL.
pub async fn upstream<F>(delay_ms: u64, answer: F) -> (String, Seen)
where
    F: Fn(&str, &Value) -> axum::response::Response + Clone + Send + Sync + 'static,
{
    let seen: Seen = Default::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
        let (log, answer) = (log.clone(), answer.clone());
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            log.lock().unwrap().push((uri.path().to_owned(), v.clone()));
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
            answer(uri.path(), &v)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// The gateway's config with the stand-in provider at `base` serving `claude-*` (Anthropic) and `gpt-*`
/// and `my-*` (OpenAI) ahead of the scripted one.
pub fn config_with_upstream(dir: &Path, base: &str) -> GatewayConfig {
    std::fs::write(dir.join("provider-key"), "sk-provider-secret\n").unwrap();
    let mut cfg = config(dir);
    let key = Some(SecretSource { env: None, file: Some(dir.join("provider-key")) });
    for (name, kind, models) in [
        ("anthropic", ProviderKind::Anthropic, vec!["claude-*".to_owned()]),
        ("openai", ProviderKind::Openai, vec!["gpt-*".to_owned(), "my-*".to_owned()]),
        ("google", ProviderKind::Google, vec!["gemini-*".to_owned()]),
    ] {
        cfg.providers.insert(
            0,
            ProviderConfig {
                name: name.into(),
                kind,
                base_url: Some(base.to_owned()),
                api_key: key.clone(),
                script: None,
                models,
            },
        );
    }
    cfg
}

/// The output cap a forwarded request carries, in any wire format (the smallest when Chat has two).
pub fn forwarded_cap(body: &Value) -> Option<u64> {
    ["max_tokens", "max_completion_tokens", "max_output_tokens"].iter().filter_map(|k| body[*k].as_u64()).min()
}

/// A complete answer of `output_tokens` in the wire format of `path`, with its usage.
pub fn answer_with_usage(path: &str, input_tokens: u64, output_tokens: u64) -> Value {
    match path {
        "/v1/messages" => json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "long answer"}], "stop_reason": "max_tokens",
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}),
        "/v1/chat/completions" => json!({"id": "c1", "object": "chat.completion", "model": "gpt-5",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "long answer"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}}),
        _ => json!({"id": "resp_1", "object": "response", "model": "gpt-5", "status": "incomplete",
            "output": [{"type": "message", "id": "m1", "role": "assistant", "status": "incomplete",
                "content": [{"type": "output_text", "text": "long answer", "annotations": []}]}],
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}}),
    }
}

/// A streamed answer: each value one `data:` event (strings as they are, for `[DONE]` or broken JSON).
pub fn sse_response(events: &[Value]) -> axum::response::Response {
    let mut body = String::new();
    for e in events {
        let data = match e {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let name = e["type"].as_str().map(|t| format!("event: {t}\n")).unwrap_or_default();
        body.push_str(&format!("{name}data: {data}\n\n"));
    }
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from(body))
        .unwrap()
}

/// A TCP server that echoes what it gets.
pub async fn echo_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// A gateway in a process of its own, to be killed (or limited) like a real one: this test binary run again
/// with only `test` and `var` set to the gateway's directory; the child serves `cfg(dir)` and writes its URL
/// to `dir/child-url`. The child is killed when this is dropped.
pub struct ChildGateway {
    pub process: std::process::Child,
    pub url: String,
}

impl ChildGateway {
    pub async fn spawn(test: &str, var: &str, dir: &Path) -> ChildGateway {
        let mut process = std::process::Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(var, dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = loop {
            if let Ok(url) = std::fs::read_to_string(dir.join("child-url")) {
                break url;
            }
            assert!(process.try_wait().unwrap().is_none(), "the child gateway exited");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        ChildGateway { process, url }
    }

    /// In the child (when `var` is set): serves `cfg(dir)` until killed; else returns at once.
    pub fn serve_if_asked(var: &str, before: impl FnOnce(), cfg: impl FnOnce(&Path) -> GatewayConfig) {
        let Ok(dir) = std::env::var(var) else { return };
        before();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let dir = Path::new(&dir);
            let t = TestGateway::with_config(dir, cfg(dir)).await;
            let file = dir.join("child-url");
            std::fs::write(file.with_extension("tmp"), &t.url).unwrap();
            std::fs::rename(file.with_extension("tmp"), file).unwrap();
            std::future::pending::<()>().await;
        });
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
