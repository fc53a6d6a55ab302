//! For the replica tests: `paddock gateway` processes sharing one database, a round-robin TCP balancer in
//! front of them (each new connection goes to the next replica, so the requests of one session land on
//! different ones), and a model upstream that counts the requests it was sent.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const ADMIN: &str = "fleet-admin-token";
/// The model every Agent here uses: $3 per million input tokens, $15 per million output tokens.
pub const MODEL: &str = "claude-sonnet-4-5";
/// The output cap each request asks for; the upstream answers with exactly this many output tokens, so a
/// request costs about what its hold reserved.
pub const MAX_TOKENS: u64 = 1000;
/// Input tokens the upstream reports for every request.
pub const INPUT_TOKENS: u64 = 100;

/// The cost of one answered request at the upstream's usage.
pub fn request_cost() -> f64 {
    (INPUT_TOKENS as f64 * 3.0 + MAX_TOKENS as f64 * 15.0) / 1_000_000.0
}

/// An upper bound of one request's hold (its worst case): the whole output cap and the input as the gateway
/// estimates it from a body of at most 600 bytes (a third of a token per byte).
pub fn hold_bound() -> f64 {
    (200.0 * 3.0 + MAX_TOKENS as f64 * 15.0) / 1_000_000.0
}

/// A model upstream speaking Anthropic's Messages API. Plain answers come after 300 ms (so that concurrent
/// requests overlap); streamed ones trickle 30 text deltas 100 ms apart before their usage.
pub struct Upstream {
    pub url: String,
    bodies: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn sse(kind: &str, v: Value) -> String {
    format!("event: {kind}\ndata: {v}\n\n")
}

async fn messages(bodies: Arc<Mutex<Vec<String>>>, body: String) -> Response {
    bodies.lock().unwrap().push(body.clone());
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let max = req["max_tokens"].as_u64().unwrap_or(MAX_TOKENS);
    if req["stream"] != json!(true) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL,
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": max}});
        return axum::Json(answer).into_response();
    }
    let head = [
        sse(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_2", "type": "message", "role": "assistant",
                "model": MODEL, "content": [], "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}}),
        ),
        sse(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    let deltas = (0..30).map(|_| {
        sse(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "word "}}),
        )
    });
    let tail = [
        sse("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        sse(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 30}}),
        ),
        sse("message_stop", json!({"type": "message_stop"})),
    ];
    let events: Vec<(bool, String)> = head
        .into_iter()
        .map(|e| (false, e))
        .chain(deltas.map(|e| (true, e)))
        .chain(tail.into_iter().map(|e| (false, e)))
        .collect();
    let stream = futures_util::stream::unfold(events.into_iter(), |mut it| async move {
        let (slow, e) = it.next()?;
        if slow {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some((Ok::<_, std::io::Error>(e), it))
    });
    Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap()
}

impl Upstream {
    pub async fn start() -> Upstream {
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let b = bodies.clone();
        let app = axum::Router::new()
            .route("/v1/messages", axum::routing::post(move |body: String| messages(b.clone(), body)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Upstream { url, bodies, task }
    }

    /// How many requests whose body contains `tag` reached the upstream.
    pub fn requests_with(&self, tag: &str) -> usize {
        self.bodies.lock().unwrap().iter().filter(|b| b.contains(tag)).count()
    }
}

/// Round-robin over `backends`, one TCP connection at a time; a backend that refuses the connection (a
/// killed replica) is skipped.
pub struct Balancer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Balancer {
    pub async fn start(backends: Vec<SocketAddr>) -> Balancer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                let (backends, next) = (backends.clone(), next.clone());
                tokio::spawn(async move {
                    for _ in 0..backends.len() {
                        let to = backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()];
                        if let Ok(mut up) = tokio::net::TcpStream::connect(to).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { url, task }
    }
}

/// One `paddock gateway` process; killed when dropped.
pub struct Replica {
    pub url: String,
    pub addr: SocketAddr,
    child: std::process::Child,
    pub log: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Starts a replica with its own data directory under `dir`, on `database`, governing `repo`, with the
    /// upstream as its Anthropic provider; returns once it is ready.
    pub async fn start(dir: &Path, database: &str, repo: &Path, upstream: &str) -> Replica {
        Replica::start_with(dir, database, repo, upstream, false).await
    }

    /// [`Replica::start`]; with `one_core`, the process is pinned to core 0 from its start, as
    /// `taskset -c 0` would.
    pub async fn start_with(dir: &Path, database: &str, repo: &Path, upstream: &str, one_core: bool) -> Replica {
        use std::os::unix::process::CommandExt;
        std::fs::create_dir_all(dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = format!(
            "listen: {addr}\ndatabase: {database}\ndataDir: {}\nrepo: {}\nadminToken: {{env: FLEET_ADMIN}}\n\
             providers:\n  - name: upstream\n    kind: anthropic\n    baseUrl: {upstream}\n    apiKey: {{env: FLEET_KEY}}\n    \
             models: [\"claude-*\"]\n",
            dir.join("data").display(),
            repo.display()
        );
        std::fs::write(dir.join("gateway.yaml"), config).unwrap();
        let log = dir.join("gateway.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_paddock"));
        cmd.args(["gateway", "-c"])
            .arg(dir.join("gateway.yaml"))
            .env("FLEET_ADMIN", ADMIN)
            .env("FLEET_KEY", "sk-upstream")
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if one_core {
            // SAFETY: between fork and exec only sched_setaffinity runs, which is async-signal-safe; the
            // set is zeroed, then CPU_SET writes inside it.
            unsafe {
                cmd.pre_exec(|| {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(0, &mut set);
                    match libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    }
                });
            }
        }
        let child = cmd.spawn().expect("paddock gateway starts");
        let r = Replica { url: format!("http://{addr}"), addr, child, log };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(resp) = client().get(format!("{}/readyz", r.url)).send().await
                && resp.status() == 200
            {
                return r;
            }
            assert!(tokio::time::Instant::now() < deadline, "the replica never became ready: {}", r.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process at once (SIGKILL): nothing it held in memory is written anywhere.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The revision `/readyz` reports.
    pub async fn ready_revision(&self) -> String {
        let text = client().get(format!("{}/readyz", self.url)).send().await.unwrap().text().await.unwrap();
        text.trim().strip_prefix("ready: revision ").unwrap_or(&text).split(' ').next().unwrap_or("").to_owned()
    }
}

/// A client that opens a new connection for every request, so that the balancer spreads them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(30)).build().unwrap()
}

/// A database for one test: a new PostgreSQL database on `PADDOCK_TEST_POSTGRES`'s server.
pub async fn postgres_database(base: &str) -> String {
    use sqlx::Connection;
    let name = format!("fleet_{}", std::process::id()) + &format!("_{}", rand_suffix());
    let mut c = sqlx::PgConnection::connect(&format!("{base}/postgres")).await.expect("PostgreSQL answers");
    sqlx::Executor::execute(&mut c, format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    format!("{base}/{name}")
}

fn rand_suffix() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{:x}", t.as_nanos() & 0xffff_ffff)
}

/// The repository every replica governs: Agents with a session hard limit, an owner's daily limit, and none.
pub fn write_repo(dir: &Path) {
    let files = [
        (
            "agents/capped.yaml",
            "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {name: capped, labels: {budget: hard}}\n\
             spec: {harness: custom, model: claude-sonnet-4-5}\n",
        ),
        (
            "agents/daily.yaml",
            "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {name: daily, labels: {budget: daily}}\n\
             spec: {harness: custom, model: claude-sonnet-4-5}\n",
        ),
        (
            "agents/plain.yaml",
            "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {name: plain}\n\
             spec: {harness: custom, model: claude-sonnet-4-5}\n",
        ),
        ("policies/budgets.yaml", POLICIES),
    ];
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// The session hard limit of `capped` and the owner's daily limit of `daily`, in US dollars.
pub const SESSION_LIMIT: f64 = 0.05;
pub const DAILY_LIMIT: f64 = 0.05;

const POLICIES: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: hard-cap}
spec:
  selector: {matchLabels: {budget: hard}}
  rules:
    - name: five-cents
      use: cost_budget
      with: {max_cost_usd: 0.05}
---
apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: daily-cap}
spec:
  selector: {matchLabels: {budget: daily}}
  rules:
    - name: five-cents-a-day
      use: user_daily_cost_budget
      with: {max_cost_usd: 0.05}
"#;

/// The same Agents with one more Policy: model requests carrying an e-mail address are denied. As the
/// controller pushes it (`PUT /v1/policies`).
pub fn push_with_pii_rule(revision: &str) -> Value {
    let agent = |name: &str, labels: Value| {
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Agent",
               "metadata": {"name": name, "namespace": "default", "labels": labels},
               "spec": {"harness": "custom", "model": MODEL}})
    };
    let policy = |name: &str, selector: Value, rule: Value| {
        let mut spec = json!({"rules": [rule]});
        if !selector.is_null() {
            spec["selector"] = selector;
        }
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Policy",
               "metadata": {"name": name, "namespace": "default"}, "spec": spec})
    };
    json!({
        "revision": revision,
        "agents": [agent("capped", json!({"budget": "hard"})), agent("daily", json!({"budget": "daily"})),
                   agent("plain", json!({}))],
        "policies": [
            policy("hard-cap", json!({"matchLabels": {"budget": "hard"}}),
                   json!({"name": "five-cents", "use": "cost_budget", "with": {"max_cost_usd": SESSION_LIMIT}})),
            policy("daily-cap", json!({"matchLabels": {"budget": "daily"}}),
                   json!({"name": "five-cents-a-day", "use": "user_daily_cost_budget",
                          "with": {"max_cost_usd": DAILY_LIMIT}})),
            policy("pii", Value::Null,
                   json!({"name": "no-email", "use": "deny_pii_in_llm_request",
                          "with": {"pii_types": ["email"], "action": "deny"}})),
        ]
    })
}
