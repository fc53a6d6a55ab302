//! Load benchmark over loopback: the gateway's overhead against going straight to the same fast mock
//! upstream, streaming time to first byte, and admission decisions at a fixed 5,000/s.
//!
//! `cargo bench -p paddock-gateway --bench gateway_load` (add `-- --quick` for a short run). The mock
//! upstream, the gateway and the load generator each run on their own threads (the first two on their own
//! async runtimes), as three processes would, but share this machine's cores, so the figures include their
//! contention; they are upper bounds on what the gateway adds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use paddock_gateway::config::{GatewayConfig, ProviderConfig, ProviderKind, SecretSource};
use paddock_gateway::scripted::{ScriptFile, router};
use paddock_gateway::server;

#[path = "support/load.rs"]
mod load;
use load::{REPO, SCRIPT, ms, open_loop, percentile};
use serde_json::{Value, json};

async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
    conc: usize,
    n: usize,
) -> Vec<Duration> {
    let per = n / conc;
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, url, token, body) = (client.clone(), url.to_owned(), token.to_owned(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut v = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                let r = client.post(&url).header("x-api-key", &token).json(&body).send().await.unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                let _ = r.bytes().await.unwrap();
                v.push(t.elapsed());
            }
            v
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

async fn ttfb(client: &reqwest::Client, url: &str, token: &str, body: &Value, n: usize) -> Vec<Duration> {
    let mut v = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let mut r = client.post(url).header("x-api-key", token).json(body).send().await.unwrap();
        let _ = r.chunk().await.unwrap();
        v.push(t.elapsed());
        while r.chunk().await.unwrap().is_some() {}
    }
    v.sort();
    v
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = |name: &str, workers: usize| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap()
    };
    // The gateway gets as many workers as the machine has cores, as `paddock gateway` does.
    let gateway = runtime("gateway", std::thread::available_parallelism().map_or(2, |n| n.get()));
    let upstream = runtime("upstream", 1);
    let load = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    load.block_on(run(quick, gateway.handle(), upstream.handle()));
}

async fn run(quick: bool, gateway: &tokio::runtime::Handle, upstream_rt: &tokio::runtime::Handle) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("repo")).unwrap();
    std::fs::write(dir.path().join("repo/bench.yaml"), REPO).unwrap();
    std::fs::write(dir.path().join("admin"), "bench-admin").unwrap();
    // The mock upstream: the scripted provider on its own port.
    let upstream = upstream_rt.spawn(tokio::net::TcpListener::bind("127.0.0.1:0")).await.unwrap().unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let script = ScriptFile::parse(SCRIPT, "bench").unwrap();
    upstream_rt.spawn(server::serve_on(upstream, router(Arc::new(script)), std::future::pending()));
    // `PADDOCK_BENCH_FSYNC=1`: every group commit synced to disk.
    let fsync = std::env::var_os("PADDOCK_BENCH_FSYNC").is_some();
    let mut cfg = GatewayConfig {
        data_dir: Some(dir.path().join("data")),
        // `PADDOCK_BENCH_DATABASE=postgres://…` measures on PostgreSQL instead of SQLite.
        database: std::env::var("PADDOCK_BENCH_DATABASE").ok(),
        fsync,
        repo: Some(dir.path().join("repo")),
        admin_token: Some(SecretSource { env: None, file: Some(dir.path().join("admin")) }),
        ..GatewayConfig::default()
    };
    cfg.providers.push(ProviderConfig {
        name: "mock".into(),
        kind: ProviderKind::Anthropic,
        base_url: Some(upstream_url.clone()),
        api_key: None,
        script: None,
        models: vec!["claude-*".into()],
    });
    let (gw, gw_url, _) = gateway.spawn(async move { server::serve_loopback(&cfg).await.unwrap() }).await.unwrap();
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let r: Value = client
        .post(format!("{gw_url}/v1/sessions"))
        .bearer_auth("bench-admin")
        .json(&json!({"agent": "bench", "owner": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (sid, token) = (r["id"].as_str().unwrap().to_owned(), r["token"].as_str().unwrap().to_owned());
    let history: Vec<Value> = (0..10)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("message {i}: {}", "lorem ipsum dolor sit amet ".repeat(8))}))
        .collect();
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": history});
    let direct = format!("{upstream_url}/v1/messages");
    let via = format!("{gw_url}/llm/anthropic/v1/messages");
    if std::env::args().any(|a| a == "--admission") {
        // Only the admission run (`-- --admission`), for working on its tail.
        return admission(quick, &gw_url, &sid, &token, &client).await;
    }
    let n = if quick { 400 } else { 4000 };
    println!("## LLM proxy overhead (Anthropic Messages, non-streaming, ~2.3 KB request, {n} requests per row)\n");
    println!(
        "| concurrency | direct p50 ms | via gateway p50 ms | added p50 ms | direct p99 ms | via gateway p99 ms | added p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    closed_loop(&client, &via, &token, &body, 8, 200).await; // warm up
    closed_loop(&client, &direct, &token, &body, 8, 200).await;
    for conc in [1, 8, 32] {
        let d = closed_loop(&client, &direct, &token, &body, conc, n).await;
        let g = closed_loop(&client, &via, &token, &body, conc, n).await;
        let (d50, g50, d99, g99) =
            (percentile(&d, 0.5), percentile(&g, 0.5), percentile(&d, 0.99), percentile(&g, 0.99));
        println!(
            "| {conc} | {} | {} | {} | {} | {} | {} |",
            ms(d50),
            ms(g50),
            ms(g50.saturating_sub(d50)),
            ms(d99),
            ms(g99),
            ms(g99.saturating_sub(d99))
        );
    }
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let m = if quick { 200 } else { 1000 };
    let d = ttfb(&client, &direct, &token, &sbody, m).await;
    let g = ttfb(&client, &via, &token, &sbody, m).await;
    println!("\n## Streaming time to first byte ({m} sequential requests)\n");
    println!("| | p50 ms | p99 ms |\n|---|---|---|");
    println!("| direct | {} | {} |", ms(percentile(&d, 0.5)), ms(percentile(&d, 0.99)));
    println!("| via gateway | {} | {} |", ms(percentile(&g, 0.5)), ms(percentile(&g, 0.99)));
    println!(
        "| added | {} | {} |",
        ms(percentile(&g, 0.5).saturating_sub(percentile(&d, 0.5))),
        ms(percentile(&g, 0.99).saturating_sub(percentile(&d, 0.99)))
    );

    // One durable write (a commit of one audit row), sequential: the floor under every decision.
    let (commits, inproc) = gateway.spawn(floors(gw.clone(), sid.clone(), quick)).await.unwrap();
    let backend = match (gw.store.is_sqlite(), fsync) {
        (true, false) => "SQLite behind the gateway's log",
        (true, true) => "SQLite behind the gateway's log, fsync",
        (false, _) => "PostgreSQL",
    };
    println!("\n## One durable commit ({backend}), sequential\n");
    println!(
        "| p50 ms | p99 ms |\n|---|---|\n| {} | {} |",
        ms(percentile(&commits, 0.5)),
        ms(percentile(&commits, 0.99))
    );
    println!("\n## One decision in-process (engine + durable commit, sequential)\n");
    println!(
        "| p50 ms | p99 ms |\n|---|---|\n| {} | {} |",
        ms(percentile(&inproc, 0.5)),
        ms(percentile(&inproc, 0.99))
    );
    admission(quick, &gw_url, &sid, &token, &client).await;
}

/// The floors under every decision, measured on the gateway's runtime: one durable write, and one whole
/// decision without HTTP.
async fn floors(gw: Arc<paddock_gateway::Gateway>, sid: String, quick: bool) -> (Vec<Duration>, Vec<Duration>) {
    let mut commits = Vec::new();
    for i in 0..(if quick { 2000 } else { 10000 }) {
        let row = paddock_gateway::store::AuditRow {
            id: format!("bench-{i}"),
            seq: 0,
            ts: "2026-01-01T00:00:00Z".into(),
            session: "bench".into(),
            agent: "bench".into(),
            owner: "bench".into(),
            revision: "r".into(),
            phase: "tool_call".into(),
            policy: None,
            rule: None,
            verdict: "allow".into(),
            reason: String::new(),
            tool: None,
            tool_id: None,
            approval_id: None,
            decided_by: None,
        };
        let t = Instant::now();
        gw.store.commit(vec![paddock_gateway::store::Write::Audit(row)]).await.unwrap();
        commits.push(t.elapsed());
    }
    commits.sort();

    // The same decision in-process, sequential: what the engine and the durable write cost without HTTP.
    let session = gw.session(&sid).unwrap();
    let ev: paddock_policy::Event = serde_json::from_value(
        json!({"phase": "tool_call", "tool": "Bash", "args": {"command": "git status && cargo test --workspace"}}),
    )
    .unwrap();
    let mut inproc = Vec::new();
    for _ in 0..(if quick { 2000 } else { 20000 }) {
        let t = Instant::now();
        gw.decide(&session, ev.clone(), Duration::from_secs(1)).await.unwrap();
        inproc.push(t.elapsed());
    }
    inproc.sort();
    (commits, inproc)
}

async fn admission(quick: bool, gw_url: &str, sid: &str, token: &str, client: &reqwest::Client) {
    // Admission: an open-loop load at a fixed rate (see `open_loop`). A read first, which returns once the
    // database has caught up with the gateway's log, so that the rows written above are not applied during it.
    let r = client.get(format!("{gw_url}/v1/sessions/{sid}")).bearer_auth("bench-admin").send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let addr = gw_url.trim_start_matches("http://").to_owned();
    let body = serde_json::to_string(
        &json!({"phase": "tool_call", "tool": "Bash", "args": {"command": "git status && cargo test --workspace"}}),
    )
    .unwrap();
    let request = format!(
        "POST /v1/sessions/{sid}/decide HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let secs = if quick { 2 } else { 10 };
    let rate = 5000u64;
    // The same load on the gateway's no-op `/healthz`: what HTTP alone costs on this machine under it.
    let floor = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n");
    println!("\n## Admission decisions (POST /v1/sessions/{{id}}/decide, tool_call, 5 rules, durable audit + state)\n");
    println!(
        "| endpoint | offered rate | achieved rate | p50 ms | p99 ms | max ms | p99 from schedule ms | errors |\n|---|---|---|---|---|---|---|---|"
    );
    for (name, request) in [("GET /healthz (no-op floor)", floor), ("POST …/decide", request)] {
        let addr = addr.clone();
        let r = tokio::task::spawn_blocking(move || open_loop(&addr, &[request], rate, secs)).await.unwrap();
        println!(
            "| {name} | {rate}/s for {secs}s | {:.0}/s | {} | {} | {} | {} | {} |",
            r.achieved(),
            ms(percentile(&r.latency, 0.5)),
            ms(percentile(&r.latency, 0.99)),
            ms(*r.latency.last().unwrap()),
            ms(percentile(&r.from_due, 0.99)),
            r.errors,
        );
    }
    let audit: Vec<Value> = client
        .get(format!("{gw_url}/v1/audit?session={sid}"))
        .bearer_auth("bench-admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    println!("\naudit rows recorded for the session: {}", audit.len());
}
