//! Session reconciler benchmarks (not timed tests): `cargo bench -p paddock-operator --bench sessions`.
//!
//! 1. Start latency: a new Session is reconciled → the Pod's create (server-side apply) request reaches the
//!    API server. kube's `tower-test` mock API answers at once; the real gateway runs in process on
//!    127.0.0.1 with SQLite (issuing the token is part of the path). p50/p99/max over 500 Sessions.
//! 2. Memory: what the controller keeps per Session — the reflector store of 10,000 Sessions (as the API
//!    server sends them, status filled) plus the reconciler's per-session state — as resident set growth.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::reflector;
use paddock_api::{Policy, Session};
use paddock_gateway::config::{GatewayConfig as GwConfig, SecretSource};
use paddock_operator::Context;
use paddock_operator::gateway::{Gateway, GatewayConfig};
use paddock_operator::metrics::Metrics;
use paddock_operator::session::SessionRuntime;
use serde_json::{Value as Json, json};
use support::*;

const REPO: &str = "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {name: coder, namespace: team-a}\nspec: {harness: custom, model: claude-sonnet-4-5, tools: [shell], sandbox: {egress: [\"api.github.com:443\"]}}\n";

fn session(i: usize, status: Json) -> Json {
    json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "Session",
        "metadata": {"name": format!("task-{i:05}"), "namespace": NS, "uid": format!("00000000-0000-4000-8000-{i:012}"),
                     "generation": 1, "resourceVersion": format!("{}", 1000 + i), "finalizers": ["paddock.dev/session"],
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"agentRef": {"name": "coder"}, "prompt": "Fix the flaky checkout test and open a pull request with the change.",
                 "owner": "alice@acme.example", "budgetUsd": 5.0, "ttlSecondsAfterFinished": 86400},
        "status": status
    })
}

/// Counts live heap bytes, so the memory figure is what the objects hold, not allocator slack.
struct Counting;
static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE.fetch_sub(l.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}
#[global_allocator]
static A: Counting = Counting;

fn live() -> usize {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn start_latency() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("repo")).unwrap();
    std::fs::write(dir.path().join("repo/agent.yaml"), REPO).unwrap();
    std::fs::write(dir.path().join("admin"), "bench-admin").unwrap();
    let cfg = GwConfig {
        data_dir: Some(dir.path().join("data")),
        repo: Some(dir.path().join("repo")),
        admin_token: Some(SecretSource { env: None, file: Some(dir.path().join("admin")) }),
        ..GwConfig::default()
    };
    let gw = paddock_gateway::server::build(&cfg).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(paddock_gateway::server::serve_on(
        listener,
        paddock_gateway::server::router(gw),
        std::future::pending(),
    ));

    let pod_seen: Arc<Mutex<Option<Instant>>> = Arc::default();
    let seen = pod_seen.clone();
    let agent = json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "coder", "namespace": NS},
                       "spec": {"harness": "custom", "model": "claude-sonnet-4-5", "tools": ["shell"], "sandbox": {"egress": ["api.github.com:443"]}}});
    let route: Route = Arc::new(move |s: &Seen| {
        if s.method == "PATCH" && s.path.contains("/pods/") {
            seen.lock().unwrap().get_or_insert_with(Instant::now);
        }
        match (s.method.as_str(), s.path.as_str()) {
            ("GET", p) if p.ends_with("/agents/coder") => (200, agent.clone()),
            ("GET", "/api/v1/namespaces/team-a") => {
                (200, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))
            }
            ("GET", p) => not_found(p),
            ("PATCH", p) if p.ends_with("/status") => {
                let mut v = session(0, s.body["status"].clone());
                v["metadata"]["name"] = json!(p.split('/').nth_back(1).unwrap());
                (200, v)
            }
            ("PATCH", _) => applied(s, "1"),
            _ => echo(s),
        }
    });
    let (client, _api) = fake_api(route);
    let (reader, _w) = reflector::store::<Policy>();
    let rt = SessionRuntime::new(
        Gateway::new(GatewayConfig { url, admin_token_file: dir.path().join("admin"), ca_file: None }),
        // A host name the controller resolves for each pod's /etc/hosts, as it does the gateway Service's.
        paddock_sandbox::ClusterConfig { gateway_url: "http://localhost:6767".into(), ..Default::default() },
    );
    let ctx = Arc::new(Context::new(client, Arc::new(Metrics::default()), dir.path().into(), reader).with_sessions(rt));
    let n = 500;
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 20 {
        let s: Session = serde_json::from_value(session(i, Json::Null)).unwrap();
        *pod_seen.lock().unwrap() = None;
        let t0 = Instant::now();
        paddock_operator::session::reconcile(Arc::new(s), ctx.clone()).await.unwrap();
        let at = pod_seen.lock().unwrap().expect("pod create sent");
        if i >= 20 {
            times.push(at - t0); // the first 20 warm up connections and caches
        }
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "session observed -> pod create request sent ({n} sessions): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms",
        pct(&times, 0.5).as_secs_f64() * 1e3,
        pct(&times, 0.99).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3
    );
}

fn memory() {
    let n = 10_000;
    let status = |i: usize| {
        json!({
            "phase": "AwaitingApproval", "podName": format!("task-{i:05}-runner"), "agentRevision": "main@sha1:2f5e3a1c0d9b8e7f6a5b4c3d2e1f0a9b8c7d6e5f",
            "usage": {"inputTokens": 123456, "outputTokens": 7890, "costUsd": 1.2345}, "riskScore": 12,
            "pendingApprovals": [{"requestId": "a-1b2c3d", "phase": "tool_call", "tool": "Bash", "reason": "git push needs approval", "requestedAt": "2026-01-01T00:05:00Z"}],
            "pendingApprovalCount": 1,
            "lastMessage": "I have fixed the test by waiting for the cart to render before clicking checkout; pushing the branch now.".repeat(2),
            "startTime": "2026-01-01T00:00:10Z",
            "conditions": [{"type": "Ready", "status": "True", "reason": "AwaitingApproval", "message": "1 decision(s) wait for a human", "lastTransitionTime": "2026-01-01T00:05:00Z", "observedGeneration": 1}],
            "observedGeneration": 1
        })
    };
    // As the API server sends them: JSON text, parsed one by one into the store (the watcher's path).
    let texts: Vec<String> = (0..n).map(|i| session(i, status(i)).to_string()).collect();
    let text_bytes: usize = texts.iter().map(String::len).sum();
    let (live0, rss0) = (live(), rss_bytes());
    let (reader, mut writer) = reflector::store::<Session>();
    for t in &texts {
        let s: Session = serde_json::from_str(t).unwrap();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(s));
    }
    let (live1, rss1) = (live(), rss_bytes());
    assert_eq!(reader.state().len(), n);
    println!(
        "controller memory for {n} Sessions (reflector store, status filled; {:.0} B of JSON each): {:.1} MiB live heap ({:.2} KiB per Session), {:.1} MiB resident growth",
        text_bytes as f64 / n as f64,
        (live1 - live0) as f64 / 1048576.0,
        (live1 - live0) as f64 / 1024.0 / n as f64,
        rss1.saturating_sub(rss0) as f64 / 1048576.0,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too, quickly enough.
    memory();
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(start_latency());
}
