//! Sustained load on a real `paddock gateway` process, in the shape of the peers' measurements: the gateway
//! pinned to one core (as `taskset -c 0` would), this process (the load generator and a fast mock upstream)
//! on the other; closed loops of 1, 8 and 32 connections and an open loop at a fixed rate, 60 s each, on one
//! long-lived session and on many sessions, for the LLM proxy and for admission. Each row reports the
//! requests per second, p50, p99 and the slowest request, and the gateway's resident set at its start and end.
//!
//! ```text
//! cargo bench -p paddock-cli --bench sustained                       # every row, 60 s each
//! cargo bench -p paddock-cli --bench sustained -- --seconds 10       # shorter rows
//! cargo bench -p paddock-cli --bench sustained -- --only proxy       # or: admission
//! cargo bench -p paddock-cli --bench sustained -- --loads c=8,c=32   # some loads only (c=1,c=8,c=32,open)
//! cargo bench -p paddock-cli --bench sustained -- --cores 2          # the gateway on both cores, not pinned
//! cargo bench -p paddock-cli --bench sustained -- --million          # 1,000,000 proxied requests, one session
//! cargo bench -p paddock-cli --bench sustained -- --soak --seconds 60 # 5,000 decisions/s and streaming
//!                                                                    # proxy traffic, an upstream fault mid-run
//! cargo bench -p paddock-cli --bench sustained -- --machine          # no gateway: the stalls of the machine
//!                                                                    # itself on each core, and on both
//!                                                                    # at once
//! cargo bench -p paddock-cli --bench sustained -- --database postgres://postgres@127.0.0.1:55432/bench \
//!     --replicas 3                                                   # replicas sharing PostgreSQL
//! ```
//!
//! With `--database` (a PostgreSQL database that exists) and `--replicas N`, N gateways share it and the
//! rows are the replicas' ones: admission on one session at c = 1, 8 and 32 and on 32 sessions at c = 32,
//! and the proxy at c = 1 and 8, each connection to the next replica in turn; then the mock upstream called
//! directly, which the proxy's added latency is measured against.
//!
//! Every connection goes to 127.0.0.1. Loops are bounded in time (or, for `--million`, in count).

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use paddock_gateway::scripted::{ScriptFile, router};

#[path = "../../gateway/benches/support/load.rs"]
mod load;
use load::{REPO, SCRIPT, ms, open_loop, percentile, read_response};
use serde_json::{Value, json};

const ADMIN: &str = "bench-admin";

struct Opts {
    seconds: u64,
    only: Option<String>,
    pinned: bool,
    million: bool,
    soak: bool,
    machine: bool,
    sessions: usize,
    rate: u64,
    database: Option<String>,
    replicas: usize,
    /// The loads of the table's rows: `c=N` closed loops and `open` (the `--rate`).
    loads: Vec<String>,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    Opts {
        seconds: value("--seconds").map_or(60, |v| v.parse().expect("--seconds N")),
        only: value("--only"),
        pinned: value("--cores").is_none_or(|c| c == "1"),
        million: args.iter().any(|a| a == "--million"),
        soak: args.iter().any(|a| a == "--soak"),
        machine: args.iter().any(|a| a == "--machine"),
        sessions: value("--sessions").map_or(1000, |v| v.parse().expect("--sessions N")),
        rate: value("--rate").map_or(2000, |v| v.parse().expect("--rate N")),
        database: value("--database"),
        replicas: value("--replicas").map_or(1, |v| v.parse().expect("--replicas N")),
        loads: value("--loads").unwrap_or_else(|| "c=1,c=8,c=32,open".into()).split(',').map(str::to_owned).collect(),
    }
}

/// Pins the calling thread (and the threads it starts from now on) to one core.
fn pin_to(core: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The gateway's resident set in MiB, from `/proc`.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// The CPU time the gateway has used so far (all its threads), from `/proc`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (in parentheses): state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // SAFETY: sysconf only reads its argument.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// A `paddock gateway` child process; killed when dropped.
struct Gateway {
    child: std::process::Child,
    addr: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_gateway(dir: &Path, upstream: &str, pinned: bool, database: Option<&str>) -> Gateway {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(dir.join("repo")).unwrap();
    std::fs::write(dir.join("repo/bench.yaml"), REPO).unwrap();
    std::fs::write(dir.join("admin"), ADMIN).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "listen: \"{addr}\"\ndataDir: {data}\nrepo: {repo}\nadminToken: {{file: {admin}}}\nproviders:\n  - {{name: mock, kind: anthropic, baseUrl: \"{upstream}\", models: [\"claude-*\"]}}\n",
        data = dir.join("data").display(),
        repo = dir.join("repo").display(),
        admin = dir.join("admin").display(),
    );
    let config = match database {
        Some(url) => format!("{config}database: \"{url}\"\n"),
        None => config,
    };
    std::fs::write(dir.join("gateway.yaml"), config).unwrap();
    let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
    // `PADDOCK_BENCH_WRAP="heaptrack -o /tmp/gw"` runs the gateway under a profiler.
    let wrap: Vec<String> =
        std::env::var("PADDOCK_BENCH_WRAP").unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    let mut cmd = match wrap.split_first() {
        Some((program, args)) => {
            let mut c = std::process::Command::new(program);
            c.args(args).arg(env!("CARGO_BIN_EXE_paddock"));
            c
        }
        None => std::process::Command::new(env!("CARGO_BIN_EXE_paddock")),
    };
    cmd.args(["gateway", "-c"]).arg(dir.join("gateway.yaml")).stdout(log.try_clone().unwrap()).stderr(log);
    if pinned {
        // SAFETY: between fork and exec only sched_setaffinity runs, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| pin_to(0));
        }
    }
    let child = cmd.spawn().expect("start paddock gateway");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the gateway did not start; see {}", dir.join("gateway.log").display());
        std::thread::sleep(Duration::from_millis(50));
    }
    Gateway { child, addr }
}

/// One HTTP/1.1 request on a fresh connection; the response body as JSON.
fn call(addr: &str, method: &str, path: &str, auth: &str, body: &Value) -> Value {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(request(addr, method, path, auth, &body.to_string()).as_bytes()).unwrap();
    let (status, body) = read_response(&mut conn).expect("an answer");
    assert!((200..300).contains(&status), "{method} {path}: {status} {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn request(addr: &str, method: &str, path: &str, auth: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {auth}\r\nx-api-key: {auth}\r\n\
         anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// What one row measured.
#[derive(Default)]
struct Row {
    latencies: Vec<Duration>,
    /// Open loop: latency counted from when each request was due.
    from_due: Vec<Duration>,
    errors: u64,
    elapsed: Duration,
    rss_start: f64,
    rss_end: f64,
    /// The gateway's CPU time over the row.
    cpu: Duration,
}

impl Row {
    fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// A closed loop: `conc` connections, each sending its next request when the answer to the last arrived,
/// for `secs` (or until `count` requests in all). Connection `i` sends `requests[i % len]` to
/// `addrs[i % addrs.len()]`.
fn closed_loop(addrs: &[&str], requests: &[String], conc: usize, secs: u64, count: Option<u64>) -> Row {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let workers: Vec<_> = (0..conc)
        .map(|i| {
            let addr = addrs[i % addrs.len()].to_owned();
            let (req, stop, sent) = (requests[i % requests.len()].clone().into_bytes(), stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(&addr).unwrap();
                conn.set_nodelay(true).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let (mut lat, mut errors) = (Vec::with_capacity(1 << 16), 0u64);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if count.is_some_and(|c| sent.fetch_add(1, Ordering::Relaxed) >= c) {
                        break;
                    }
                    let t = Instant::now();
                    let ok = conn.write_all(&req).is_ok() && matches!(read_response(&mut conn), Some((200, _)));
                    lat.push(t.elapsed());
                    if !ok {
                        errors += 1;
                        conn = TcpStream::connect(&addr).unwrap();
                        conn.set_nodelay(true).unwrap();
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut row = Row::default();
    for w in workers {
        let (lat, errors) = w.join().unwrap();
        row.latencies.extend(lat);
        row.errors += errors;
    }
    row.elapsed = started.elapsed();
    row.latencies.sort();
    row
}

/// A new session; its id and token.
fn session(addr: &str) -> (String, String) {
    let r = call(addr, "POST", "/v1/sessions", ADMIN, &json!({"agent": "bench", "owner": "bench"}));
    (r["id"].as_str().unwrap().to_owned(), r["token"].as_str().unwrap().to_owned())
}

/// The two workloads: a ~2.3 KB Anthropic Messages request through the proxy, and a `tool_call` decision.
fn workload(addr: &str, which: &str, sid: &str, token: &str) -> String {
    match which {
        "proxy" => {
            let history: Vec<Value> = (0..10)
                .map(|i| {
                    json!({"role": if i % 2 == 0 { "user" } else { "assistant" },
                    "content": format!("message {i}: {}", "lorem ipsum dolor sit amet ".repeat(8))})
                })
                .collect();
            let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": history});
            request(addr, "POST", "/llm/anthropic/v1/messages", token, &body.to_string())
        }
        _ => {
            let body = json!({"phase": "tool_call", "tool": "Bash",
                "args": {"command": "git status && cargo test --workspace"}});
            request(addr, "POST", &format!("/v1/sessions/{sid}/decide"), token, &body.to_string())
        }
    }
}

/// Waits until the gateway's database has caught up with its log (a read returns only then), so that one
/// row's backlog is not applied during the next.
fn settle(addr: &str) {
    call(addr, "GET", "/v1/sessions", ADMIN, &Value::Null);
}

fn print_row(workload: &str, sessions: &str, load: &str, r: &Row) {
    let due = if r.from_due.is_empty() { "–".to_owned() } else { ms(percentile(&r.from_due, 0.99)) };
    println!(
        "| {workload} | {sessions} | {load} | {:.0} | {:.0}% | {} | {} | {} | {} | {due} | {} | {:.1} | {:.1} |",
        r.rps(),
        100.0 * r.cpu.as_secs_f64() / r.elapsed.as_secs_f64(),
        ms(percentile(&r.latencies, 0.5)),
        ms(percentile(&r.latencies, 0.99)),
        ms(r.latencies.last().copied().unwrap_or_default()),
        r.latencies.iter().filter(|l| **l > Duration::from_millis(10)).count(),
        r.errors,
        r.rss_start,
        r.rss_end,
    );
}

fn main() {
    let o = opts();
    let two_cores = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let pinned = o.pinned && two_cores;
    println!("{}", damon_state());
    if o.machine {
        return machine(o.seconds, two_cores);
    }
    if pinned {
        // This process (load generator and mock upstream) keeps off the gateway's core.
        pin_to(1).expect("pin the load generator to core 1");
    }
    let dir = tempfile::tempdir().unwrap();
    // The mock upstream: the scripted provider, answering at once, on a runtime of its own. While `fault`
    // is set (the soak's middle), it resets every connection after the response's head instead.
    let fault = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let broken = fault.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap())).unwrap();
            let script = ScriptFile::parse(SCRIPT, "bench").unwrap();
            let app = router(Arc::new(script)).layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let broken = broken.load(Ordering::Relaxed);
                    async move {
                        if !broken {
                            return next.run(req).await;
                        }
                        let cut = futures_util::stream::iter([
                            Ok(axum::body::Bytes::from_static(
                                b"event: message_start\ndata: {\"type\":\"message_start\"",
                            )),
                            Err(std::io::Error::other("the soak's fault")),
                        ]);
                        axum::response::Response::builder()
                            .header("content-type", "text/event-stream")
                            .body(axum::body::Body::from_stream(cut))
                            .unwrap()
                    }
                },
            ));
            paddock_gateway::server::serve_on(listener, app, std::future::pending()).await
        })
    });
    let upstream = rx.recv().unwrap();
    if let Some(database) = &o.database {
        return replicas(dir.path(), &upstream, pinned, database, o.replicas, o.seconds);
    }
    let gw = start_gateway(dir.path(), &upstream, pinned, None);
    let pid = gw.child.id();
    let addr = gw.addr.clone();
    println!(
        "gateway pid {pid}, {}; {} s a row; RSS idle {:.1} MiB\n",
        if pinned { "pinned to core 0, load generator and upstream on core 1" } else { "on every core" },
        o.seconds,
        rss_mib(pid)
    );
    if o.million {
        return million(&addr, pid);
    }
    if o.soak {
        return soak(&addr, pid, &fault, o.seconds);
    }
    println!(
        "| workload | sessions | load | requests/s | gateway CPU | p50 ms | p99 ms | max ms | over 10 ms | p99 from schedule ms | errors | RSS start MiB | RSS end MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let (sid, token) = session(&addr);
    let many: Vec<(String, String)> = (0..o.sessions).map(|_| session(&addr)).collect();
    for which in ["proxy", "admission"] {
        if o.only.as_deref().is_some_and(|only| only != which) {
            continue;
        }
        let one = vec![workload(&addr, which, &sid, &token)];
        let spread: Vec<String> = many.iter().map(|(s, t)| workload(&addr, which, s, t)).collect();
        // Warm-up: 5 s on the long-lived session.
        closed_loop(&[&addr], &one, 8, 5, None);
        for (sessions, requests) in [("one".to_owned(), &one), (format!("{}", o.sessions), &spread)] {
            for load in &o.loads {
                settle(&addr);
                let rss_start = rss_mib(pid);
                let cpu_start = cpu_time(pid);
                let mut row = match load.as_str() {
                    "open" => {
                        let r = open_loop(&addr, requests, o.rate, o.seconds);
                        Row {
                            latencies: r.latency,
                            from_due: r.from_due,
                            errors: r.errors,
                            elapsed: r.elapsed,
                            ..Row::default()
                        }
                    }
                    c => {
                        let conc = c.strip_prefix("c=").and_then(|n| n.parse().ok()).expect("--loads c=N,...,open");
                        closed_loop(&[&addr], requests, conc, o.seconds, None)
                    }
                };
                row.rss_start = rss_start;
                row.rss_end = rss_mib(pid);
                row.cpu = cpu_time(pid).saturating_sub(cpu_start);
                let load = if load == "open" { format!("{}/s", o.rate) } else { load.clone() };
                print_row(which, &sessions, &load, &row);
            }
        }
    }
    settle(&addr);
    println!("\nRSS after the database caught up: {:.1} MiB", rss_mib(pid));
}

/// Whether the kernel's DAMON threads (`kdamond`, memory monitoring and reclaim) run: on some virtual machines
/// they page out cold memory in bursts of 10–20 ms of CPU every few seconds, on whichever core they land.
fn damon_state() -> String {
    let states: Vec<String> = std::fs::read_dir("/sys/kernel/mm/damon/admin/kdamonds")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|d| d.path().join("state").exists())
        // The state file is root's alone: say so rather than report none.
        .map(|d| {
            std::fs::read_to_string(d.path().join("state"))
                .map_or("unknown (run as root to read)".into(), |s| s.trim().to_owned())
        })
        .collect();
    match states.is_empty() {
        true => "DAMON: no kdamond configured".into(),
        false => format!("DAMON kdamond threads: {}", states.join(", ")),
    }
}

/// The machine's own stalls, with no gateway: a thread on each core (core 0, the gateway's; core 1, the load
/// generator's and the mock upstream's, whose stalls a proxied request also waits out) reads the clock without
/// pause for `secs`. Every gap between two reads is time that core gave to something else (a kernel thread, an
/// interrupt, the hypervisor): a floor under the slowest request a process pinned there can show. A stretch
/// in which both cores stopped is, as far as the guest can tell, the whole virtual machine stopped.
fn machine(secs: u64, two_cores: bool) {
    let cores = if two_cores { 2 } else { 1 };
    let spinners: Vec<_> = (0..cores)
        .map(|core| {
            std::thread::spawn(move || {
                pin_to(core).expect("pin a spinning thread to its core");
                let (started, mut last) = (Instant::now(), Instant::now());
                let mut gaps: Vec<(Instant, Duration)> = Vec::new();
                while last.duration_since(started) < Duration::from_secs(secs) {
                    let now = Instant::now();
                    if now - last > Duration::from_micros(500) {
                        gaps.push((last, now - last));
                    }
                    last = now;
                }
                gaps
            })
        })
        .collect();
    let gaps: Vec<Vec<(Instant, Duration)>> = spinners.into_iter().map(|s| s.join().unwrap()).collect();
    println!(
        "| core | seconds | gaps > 2 ms | gaps > 5 ms | gaps > 10 ms | longest gap ms |\n|---|---|---|---|---|---|"
    );
    let over = |gaps: &[(Instant, Duration)], ms: u64| gaps.iter().filter(|g| g.1 > Duration::from_millis(ms)).count();
    for (core, gaps) in gaps.iter().enumerate() {
        let longest = gaps.iter().map(|g| g.1).max().unwrap_or_default();
        println!("| {core} | {secs} | {} | {} | {} | {} |", over(gaps, 2), over(gaps, 5), over(gaps, 10), ms(longest));
    }
    if let [zero, one] = &gaps[..] {
        // Each stretch in which both cores were stopped: a gap of core 0 and a gap of core 1, intersected.
        // Not summed over a gap of core 0: two stops of core 1 inside it with core 1 running between them are
        // two stretches, not one.
        let both: Vec<Duration> = zero
            .iter()
            .flat_map(|&(a, a_len)| {
                one.iter().map(move |&(b, b_len)| (a + a_len).min(b + b_len).saturating_duration_since(a.max(b)))
            })
            .filter(|d| !d.is_zero())
            .collect();
        println!(
            "| both at once | {secs} | {} | {} | {} | {} |",
            both.iter().filter(|d| **d > Duration::from_millis(2)).count(),
            both.iter().filter(|d| **d > Duration::from_millis(5)).count(),
            both.iter().filter(|d| **d > Duration::from_millis(10)).count(),
            ms(both.iter().max().copied().unwrap_or_default())
        );
    }
}

/// 1,000,000 proxied requests within one session, eight connections: the gateway's resident set along the way.
fn million(addr: &str, pid: u32) {
    let (sid, token) = session(addr);
    let req = vec![workload(addr, "proxy", &sid, &token)];
    println!("| requests so far | RSS MiB | requests/s in the last stretch | p99 ms | max ms |\n|---|---|---|---|---|");
    let mut done = 0u64;
    for upto in [10_000u64, 100_000, 250_000, 500_000, 750_000, 1_000_000] {
        let r = closed_loop(&[addr], &req, 8, 86_400, Some(upto - done));
        done = upto;
        println!(
            "| {upto} | {:.1} | {:.0} | {} | {} |",
            rss_mib(pid),
            r.rps(),
            ms(percentile(&r.latencies, 0.99)),
            ms(r.latencies.last().copied().unwrap_or_default())
        );
    }
    settle(addr);
    println!("\nafter the database caught up: {:.1} MiB", rss_mib(pid));
}

/// `n` replicas on `database`: admission on one session at c = 1, 8 and 32 and the proxy at c = 8, each
/// connection to the next replica in turn; then the mock upstream alone, for the proxy's added latency.
fn replicas(dir: &Path, upstream: &str, pinned: bool, database: &str, n: usize, seconds: u64) {
    let gateways: Vec<Gateway> =
        (0..n).map(|i| start_gateway(&dir.join(format!("replica-{i}")), upstream, pinned, Some(database))).collect();
    let addrs: Vec<&str> = gateways.iter().map(|g| g.addr.as_str()).collect();
    println!(
        "{n} replica(s) on PostgreSQL, {}; {seconds} s a row\n",
        if pinned { "pinned to core 0, load generator and upstream on core 1" } else { "on every core" }
    );
    println!("| workload | replicas | load | requests/s | p50 ms | p99 ms | max ms | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    let print = |which: &str, load: &str, r: &Row| {
        println!(
            "| {which} | {n} | {load} | {:.0} | {} | {} | {} | {} |",
            r.rps(),
            ms(percentile(&r.latencies, 0.5)),
            ms(percentile(&r.latencies, 0.99)),
            ms(r.latencies.last().copied().unwrap_or_default()),
            r.errors
        );
    };
    let (sid, token) = session(addrs[0]);
    let admission = vec![workload(addrs[0], "admission", &sid, &token)];
    closed_loop(&addrs, &admission, 8, 5, None);
    for c in [1, 8, 32] {
        print("admission", &format!("c={c}"), &closed_loop(&addrs, &admission, c, seconds, None));
    }
    // Many sessions: each connection decides for a session of its own, so decisions wait on no other's lock.
    let many: Vec<String> = (0..32)
        .map(|_| {
            let (s, t) = session(addrs[0]);
            workload(addrs[0], "admission", &s, &t)
        })
        .collect();
    print("admission, 32 sessions", "c=32", &closed_loop(&addrs, &many, 32, seconds, None));
    let proxy = vec![workload(addrs[0], "proxy", &sid, &token)];
    closed_loop(&addrs, &proxy, 8, 5, None);
    print("proxy", "c=1", &closed_loop(&addrs, &proxy, 1, seconds, None));
    print("proxy", "c=8", &closed_loop(&addrs, &proxy, 8, seconds, None));
    // The same request straight to the mock upstream: what the proxy adds is the difference.
    let direct_addr = upstream.trim_start_matches("http://");
    let direct =
        vec![workload(direct_addr, "proxy", &sid, &token).replace("/llm/anthropic/v1/messages", "/v1/messages")];
    print("upstream alone", "c=1", &closed_loop(&[direct_addr], &direct, 1, seconds, None));
    print("upstream alone", "c=8", &closed_loop(&[direct_addr], &direct, 8, seconds, None));
}

/// The soak: an open loop of 5,000 decisions a second and, beside it, eight connections streaming proxied
/// answers back to back, for `seconds` in three stretches: before, during and after a fault in the middle
/// (for a sixth of the run the upstream resets every stream after its first bytes). Each stretch reports
/// its rates, tails, errors and the gateway's resident set at its end.
fn soak(addr: &str, pid: u32, fault: &AtomicBool, seconds: u64) {
    let (sid, token) = session(addr);
    let decisions = vec![workload(addr, "admission", &sid, &token)];
    let (_, stream_token) = session(addr);
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": true,
        "messages": [{"role": "user", "content": "stream me an answer"}]});
    let streamed = request(addr, "POST", "/llm/anthropic/v1/messages", &stream_token, &body.to_string());
    closed_loop(&[addr], &decisions, 8, 3, None);
    println!(
        "| stretch | seconds | decisions/s | decide p50 ms | decide p99 ms | decide max ms | decide errors | streams/s | stream p99 ms | streams cut | RSS end MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let rss_start = rss_mib(pid);
    let fault_secs = (seconds / 6).max(1);
    let calm = (seconds - fault_secs) / 2;
    for (name, secs, broken) in
        [("before", calm, false), ("fault", fault_secs, true), ("after", seconds - calm - fault_secs, false)]
    {
        fault.store(broken, Ordering::Relaxed);
        let streams = std::thread::scope(|scope| {
            let streaming: Vec<_> = (0..8).map(|_| scope.spawn(|| stream_loop(addr, &streamed, secs))).collect();
            let decided = open_loop(addr, &decisions, 5000, secs);
            let mut s = (Vec::new(), 0u64);
            for t in streaming {
                let (lat, cut) = t.join().unwrap();
                s.0.extend(lat);
                s.1 += cut;
            }
            s.0.sort();
            (decided, s)
        });
        let (d, (stream_lat, cut)) = streams;
        println!(
            "| {name} | {secs} | {:.0} | {} | {} | {} | {} | {:.0} | {} | {cut} | {:.1} |",
            d.achieved(),
            ms(percentile(&d.latency, 0.5)),
            ms(percentile(&d.latency, 0.99)),
            ms(d.latency.last().copied().unwrap_or_default()),
            d.errors,
            stream_lat.len() as f64 / secs as f64,
            ms(percentile(&stream_lat, 0.99)),
            rss_mib(pid),
        );
    }
    fault.store(false, Ordering::Relaxed);
    settle(addr);
    println!("\nRSS at the start {rss_start:.1} MiB, after the database caught up {:.1} MiB", rss_mib(pid));
}

/// One connection streaming answers back to back for `secs`: each answer's latency to its last byte, and
/// how many failed (an error event, an error status, or no end).
fn stream_loop(addr: &str, request: &str, secs: u64) -> (Vec<Duration>, u64) {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut lat, mut cut) = (Vec::new(), 0u64);
    let connect = || {
        let c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c
    };
    let mut conn = connect();
    let mut chunk = [0u8; 16384];
    while Instant::now() < deadline {
        let t = Instant::now();
        let mut buf = Vec::new();
        let mut ok = conn.write_all(request.as_bytes()).is_ok();
        // A streamed answer is chunked and ends with the zero-length chunk; an error before the stream began
        // (a 502 when the upstream failed at once) has a length.
        let complete = |buf: &[u8]| {
            let Some(head) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
            let text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
            match text.lines().find_map(|l| l.strip_prefix("content-length:")) {
                Some(len) => buf.len() >= head + 4 + len.trim().parse::<usize>().unwrap_or(0),
                None => buf.ends_with(b"0\r\n\r\n"),
            }
        };
        while ok && !complete(&buf) {
            match conn.read(&mut chunk) {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => ok = false,
            }
        }
        lat.push(t.elapsed());
        let text = String::from_utf8_lossy(&buf);
        if !ok || !text.starts_with("HTTP/1.1 200") || text.contains("event: error") {
            cut += 1;
        }
        if !ok {
            conn = connect();
        }
    }
    (lat, cut)
}
