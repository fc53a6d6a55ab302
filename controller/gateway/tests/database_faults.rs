//! Fault injection on the database: the disk under the gateway's SQLite file and log fills up, and the
//! PostgreSQL server is stopped mid-run and started again. For each: the client gets a clear error while the
//! fault lasts, every decision it was answered is kept, and service resumes without a restart.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

async fn decide(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    id: &str,
    tool_id: &str,
) -> reqwest::Result<reqwest::Response> {
    let event = json!({"phase": "tool_call", "tool": "Bash", "args": {"command": "ls"}, "tool_id": tool_id});
    client.post(format!("{url}/v1/sessions/{id}/decide")).bearer_auth(token).json(&event).send().await
}

/// Decides until one is answered 200 (service resumed) or `limit` passes; the answered tool ids go in `answered`.
async fn until_served(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    id: &str,
    answered: &mut Vec<String>,
    limit: Duration,
) {
    let until = Instant::now() + limit;
    for n in 0.. {
        let tool_id = format!("after-{n}");
        if let Ok(r) = decide(client, url, token, id, &tool_id).await
            && r.status() == 200
        {
            answered.push(tool_id);
            return;
        }
        assert!(Instant::now() < until, "service did not resume within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn assert_all_audited(t: &TestGateway, id: &str, answered: &[String]) {
    let audited: std::collections::HashSet<String> =
        t.audit(id).await.iter().filter_map(|r| r["tool_id"].as_str().map(str::to_owned)).collect();
    let lost: Vec<&String> = answered.iter().filter(|a| !audited.contains(*a)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered decisions are not in the audit log: {lost:?}",
        lost.len(),
        answered.len()
    );
}

fn sqlite_config(dir: &Path) -> paddock_gateway::GatewayConfig {
    let mut cfg = config(dir);
    cfg.database = Some(format!("sqlite://{}", dir.join("gateway.db").display()));
    cfg
}

/// The largest file under `dir`.
fn largest_file(dir: &Path) -> u64 {
    fn walk(p: &Path, max: &mut u64) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk(&e.path(), max);
            } else {
                *max = (*max).max(m.len());
            }
        }
    }
    let mut max = 0;
    walk(dir, &mut max);
    max
}

fn set_file_size_limit(pid: u32, bytes: u64) {
    let limit = libc::rlimit { rlim_cur: bytes, rlim_max: libc::RLIM_INFINITY };
    let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn a_full_disk_refuses_decisions_clearly_keeps_what_was_answered_and_recovers_without_a_restart() {
    // The gateway runs in this test binary's own process, run again, so that its file size limit can be
    // lowered from outside, as a full disk stops its writes. SIGXFSZ is ignored, so a write past the limit
    // fails (EFBIG) instead of killing the process, as a write to a full disk fails.
    ChildGateway::serve_if_asked(
        "PADDOCK_TEST_FULL_DISK_GATEWAY",
        || unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        },
        sqlite_config,
    );
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        write_repo(dir.path());
        let mut gateway = ChildGateway::spawn(
            "a_full_disk_refuses_decisions_clearly_keeps_what_was_answered_and_recovers_without_a_restart",
            "PADDOCK_TEST_FULL_DISK_GATEWAY",
            dir.path(),
        )
        .await;
        let (child, url) = (&mut gateway.process, gateway.url.clone());
        let client = reqwest::Client::new();
        let (id, token) = new_session(&client, &url, "coder").await;
        let mut answered = Vec::new();
        for n in 0..20 {
            let r = decide(&client, &url, &token, &id, &format!("before-{n}")).await.unwrap();
            assert_eq!(r.status(), 200);
            answered.push(format!("before-{n}"));
        }
        // The disk fills: no file may grow past a few KiB beyond the log's segment as it is now (the log is
        // what a decision waits for; the database files behind it fail as soon as they grow too).
        set_file_size_limit(child.id(), largest_file(&dir.path().join("gateway.db.paddock-log")) + 8 * 1024);
        let mut refused = None;
        for n in 0..5000 {
            let tool_id = format!("during-{n}");
            let r = decide(&client, &url, &token, &id, &tool_id).await.unwrap();
            match r.status().as_u16() {
                200 => answered.push(tool_id),
                status => {
                    refused = Some((status, r.json::<Value>().await.unwrap()));
                    break;
                }
            }
        }
        let (status, body) = refused.expect("a decision was refused once the disk was full");
        assert_eq!(status, 503, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("could not record it") && message.contains("File too large"), "a clear error: {body}");
        // Still full: still refused, never answered without a record.
        let r = decide(&client, &url, &token, &id, "still-full").await.unwrap();
        assert_eq!(r.status(), 503);
        // Space comes back: decisions are served again by the same process.
        set_file_size_limit(child.id(), libc::RLIM_INFINITY);
        until_served(&client, &url, &token, &id, &mut answered, Duration::from_secs(30)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        // Nothing answered is lost, across the fault and a kill.
        let t = TestGateway::with_config(dir.path(), sqlite_config(dir.path())).await;
        assert_all_audited(&t, &id, &answered).await;
    });
}

/// A PostgreSQL server of this test's own, which it can stop and start.
struct Postgres {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server (Debian's postgresql package; .ci/postgres.sh installs it)")
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists())
            .expect("initdb");
        let data = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Postgres { bin, data, port };
        if root() {
            // The server refuses to run as root: as `postgres`, as .ci/postgres.sh runs it.
            Command::new("chown").args(["postgres", &pg.data.path().display().to_string()]).status().unwrap();
        }
        pg.run("initdb", &["-D", &pg.dir(), "-A", "trust", "-U", "postgres"]);
        pg.up();
        pg
    }

    fn dir(&self) -> String {
        self.data.path().join("db").display().to_string()
    }

    fn command(&self, program: &str) -> Command {
        if !root() {
            return Command::new(self.bin.join(program));
        }
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) {
        let mut cmd = self.command(program);
        cmd.args(args);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{program}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn up(&self) {
        let opts =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.data.path().display());
        let log = self.data.path().join("log").display().to_string();
        self.run("pg_ctl", &["-D", &self.dir(), "-l", &log, "-o", &opts, "-w", "start"]);
    }

    /// Stopped as a crash stops it: connections cut, no checkpoint.
    fn crash(&self) {
        self.run("pg_ctl", &["-D", &self.dir(), "-m", "immediate", "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

fn root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").args(["-D", &self.dir(), "-m", "immediate", "stop"]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_run_refuses_decisions_clearly_and_they_resume_when_it_is_back() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let mut cfg = config(dir.path());
    cfg.database = Some(pg.url());
    let t = TestGateway::with_config(dir.path(), cfg).await;
    let (id, token) = t.session("coder").await;
    let mut answered = Vec::new();
    for n in 0..20 {
        let r = decide(&t.client, &t.url, &token, &id, &format!("before-{n}")).await.unwrap();
        assert_eq!(r.status(), 200);
        answered.push(format!("before-{n}"));
    }
    pg.crash();
    let r = decide(&t.client, &t.url, &token, &id, "while-down").await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("database") || m.contains("could not record it")),
        "a clear error: {body}"
    );
    pg.up();
    until_served(&t.client, &t.url, &token, &id, &mut answered, Duration::from_secs(30)).await;
    // The gateway reads its own audit back from the restarted server: everything answered is there.
    assert_all_audited(&t, &id, &answered).await;
}
