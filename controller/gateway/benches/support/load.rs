//! What the gateway's load benchmarks share (`gateway_load` here, `sustained` in the CLI crate, which includes
//! this file by path): the governed agent and the mock upstream's script, a response reader for kept-alive
//! HTTP/1.1 connections, and an open loop at a fixed rate. Blocking threads and precise sleeps keep the
//! generator's own cost and jitter small.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub const SCRIPT: &str =
    "scripts:\n  - name: fast\n    turns:\n      - {text: 'ok', usage: {input_tokens: 20, output_tokens: 2}}\n";

pub const REPO: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: bench, labels: {team: web}}
spec: {harness: custom, model: claude-sonnet-4-5}
---
apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: baseline}
spec:
  rules:
    - {name: no-pii, use: deny_pii_in_llm_request, with: {pii_types: [email, ssn, credit_card, secret]}}
    - {name: github, use: github, with: {read_all: true, deny_force_push: true}}
    - {name: blast, use: blast_radius}
    - {name: budget, use: cost_budget, with: {max_cost_usd: 1000000}}
    - {name: calls, use: max_tool_calls, with: {limit: 100000000}}
"#;

/// The `p` quantile of sorted latencies (zero when there are none).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Milliseconds with three decimals, as the benchmarks' tables print them.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// Reads one HTTP/1.1 response with a `content-length` from a kept-alive connection: its status and body.
pub fn read_response(conn: &mut TcpStream) -> Option<(u16, Vec<u8>)> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 8192];
    loop {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(head) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
        let len: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        if buf.len() >= head + 4 + len {
            let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            return Some((status, buf[head + 4..head + 4 + len].to_vec()));
        }
    }
}

/// What an open-loop run measured: latencies from send and from schedule (both sorted), how long it took,
/// and the failed requests.
pub struct OpenLoop {
    pub latency: Vec<Duration>,
    pub from_due: Vec<Duration>,
    pub elapsed: Duration,
    pub errors: u64,
}

impl OpenLoop {
    /// Requests answered per second.
    pub fn achieved(&self) -> f64 {
        self.latency.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// An open loop at a fixed rate with evenly spaced requests, as wrk2 makes it: one thread sends each request
/// at its due time on an idle kept-alive connection (of 64), and a thread per connection reads the answers.
/// Latency counts from when a request was sent and from when it was due, so a stalled server cannot hide
/// its queue.
pub fn open_loop(addr: &str, requests: &[String], rate: u64, secs: u64) -> OpenLoop {
    use std::sync::mpsc::channel;
    let total = (rate * secs) as usize;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let (idle_tx, idle) = channel::<usize>();
    let (done_tx, done) = channel::<(bool, Duration, Duration)>();
    let mut conns = Vec::new();
    for i in 0..64 {
        let conn = TcpStream::connect(addr).unwrap();
        conn.set_nodelay(true).unwrap();
        // A server that stops answering fails its requests instead of hanging the run.
        conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut reader = conn.try_clone().unwrap();
        let (sent_tx, sent) = channel::<(Instant, Instant)>();
        let (freed, done_tx) = (idle_tx.clone(), done_tx.clone());
        std::thread::spawn(move || {
            while let Ok((at, due)) = sent.recv() {
                let ok = matches!(read_response(&mut reader), Some((200, _)));
                let now = Instant::now();
                let _ = done_tx.send((ok, now - at, now - due));
                let _ = freed.send(i);
            }
        });
        idle_tx.send(i).unwrap();
        conns.push((conn, requests[i % requests.len()].as_bytes().to_vec(), sent_tx));
    }
    drop(done_tx);
    // The default timer slack (50 µs) would bunch the sends; 1 ns makes each sleep end on time.
    // SAFETY: prctl with PR_SET_TIMERSLACK only changes this thread's timer slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1) };
    let started = Instant::now();
    for k in 0..total {
        let due = started + interval * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let i = idle.recv().unwrap();
        let (conn, request, sent) = &mut conns[i];
        sent.send((Instant::now(), due)).unwrap();
        conn.write_all(request).expect("the gateway closed a connection");
    }
    // SAFETY: as above; 0 restores this thread's default slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 0) };
    let mut out = OpenLoop { latency: Vec::new(), from_due: Vec::new(), elapsed: Duration::ZERO, errors: 0 };
    for (ok, latency, late) in done.iter().take(total) {
        out.errors += u64::from(!ok);
        out.latency.push(latency);
        out.from_due.push(late);
    }
    out.elapsed = started.elapsed();
    out.latency.sort();
    out.from_due.sort();
    out
}
