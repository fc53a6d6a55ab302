//! Session start: how long from `paddock session run` to the harness starting inside its sandbox, and how
//! much of that is the sandbox itself (bubblewrap around `/bin/true`, with the same mounts).
//!
//! `cargo bench -p paddock-cli --bench session_start` (add `-- --quick` for a short run).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use paddock_sandbox::SandboxSpec;
use paddock_sandbox::local::{HostEntry, LocalMounts, SYSTEM_DIRS, render_bwrap};

const PADDOCK: &str = env!("CARGO_BIN_EXE_paddock");

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 1. The sandbox alone.
    for f in ["token", "agent.yaml", "passwd", "group", "sock"] {
        std::fs::write(d.join(f), "").unwrap();
    }
    std::fs::create_dir_all(d.join("ws")).unwrap();
    let system = SYSTEM_DIRS
        .iter()
        .filter_map(|p| {
            let m = std::fs::symlink_metadata(p).ok()?;
            Some(if m.file_type().is_symlink() {
                (p.to_string(), HostEntry::Symlink(std::fs::read_link(p).ok()?.to_string_lossy().into_owned()))
            } else {
                (p.to_string(), HostEntry::Dir)
            })
        })
        .collect();
    let mounts = LocalMounts {
        workspace: d.join("ws"),
        workspace_binds: vec![],
        gateway_socket: d.join("sock"),
        token_file: d.join("token"),
        agent_file: d.join("agent.yaml"),
        paddock_bin: PathBuf::from(PADDOCK),
        passwd: d.join("passwd"),
        group: d.join("group"),
        system,
        extra_read_only: vec![],
    };
    let agent: paddock_api::AgentSpec = serde_json::from_str(r#"{"harness": "custom", "model": "scripted"}"#).unwrap();
    let spec = SandboxSpec::for_agent(&agent, None).unwrap();
    let sb = render_bwrap(&spec, &mounts, &["/bin/true".into()]);
    let n = if quick { 50 } else { 300 };
    let mut bare = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let ok = Command::new(&sb.argv[0]).args(&sb.argv[1..]).stdout(Stdio::null()).status().unwrap().success();
        bare.push(t.elapsed());
        assert!(ok, "bwrap failed: {:?}", sb.argv);
    }
    println!("## Session start\n");
    println!("| what | runs | p50 ms | p99 ms |\n|---|---|---|---|");
    println!(
        "| the sandbox alone: bubblewrap with a session's mounts around `/bin/true` | {n} | {:.2} | {:.2} |",
        pct(&mut bare, 0.5),
        pct(&mut bare, 0.99)
    );

    // 2. End to end through `paddock up`: POST a session → the runner's first transcript event (it is sent
    // once the sandbox is up, Landlock and seccomp are on, and the relay to the gateway works; the harness
    // starts right after).
    std::fs::create_dir_all(d.join("repo")).unwrap();
    std::fs::write(
        d.join("repo/a.yaml"),
        "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {name: quick}\nspec: {harness: custom, model: scripted}\n",
    )
    .unwrap();
    std::fs::write(d.join("script.yaml"), "scripts:\n  - name: s\n    turns:\n      - text: ok\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut up = Command::new(PADDOCK)
        .args(["up", "--repo"])
        .arg(d.join("repo"))
        .arg("--script")
        .arg(d.join("script.yaml"))
        .arg("--data-dir")
        .arg(d.join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--console-listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let m = if quick { 20 } else { 100 };
    let mut e2e = rt.block_on(async {
        let admin = std::fs::read_to_string(d.join("data/admin-token")).unwrap();
        let c = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let mut v = Vec::new();
        for _ in 0..m {
            let t = Instant::now();
            let r: serde_json::Value = c
                .post(format!("{base}/v1/local/sessions"))
                .bearer_auth(&admin)
                .json(&serde_json::json!({"agent": "quick", "prompt": "hi"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = r["id"].as_str().unwrap().to_owned();
            loop {
                let ev: serde_json::Value = c
                    .get(format!("{base}/v1/sessions/{id}/events"))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if ev.as_array().is_some_and(|a| !a.is_empty()) {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            v.push(t.elapsed());
        }
        v
    });
    println!(
        "| `session run` → the runner's first event from inside the sandbox (debug or release build of `paddock` as built) | {m} | {:.2} | {:.2} |",
        pct(&mut e2e, 0.5),
        pct(&mut e2e, 0.99)
    );
    let _ = up.kill();
    let _ = up.wait();
}
