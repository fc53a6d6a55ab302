//! Local mode end to end, with the real binary: `paddock up` runs sessions in the bubblewrap sandbox (with
//! Landlock and seccomp inside), the demo tells its story, and a killed `paddock up` loses nothing.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PADDOCK: &str = env!("CARGO_BIN_EXE_paddock");

struct Up {
    child: Child,
    url: String,
    data: PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `paddock up` on a port the kernel picks (no race with other tests for a "free" port) and reads the
/// address it announces.
fn up(dir: &Path, envs: &[(&str, &str)]) -> Up {
    let data = dir.join("data");
    let mut cmd = Command::new(PADDOCK);
    cmd.args(["up", "--repo"])
        .arg(dir.join("repo"))
        .arg("--script")
        .arg(dir.join("script.yaml"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--console-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let url = loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(n > 0, "paddock up ended before it listened");
        if let Some(rest) = line.strip_prefix("paddock: gateway on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Next, the console's address and a one-time sign-in link on it.
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let console = line.strip_prefix("paddock: console on http://127.0.0.1:").expect("the console's address");
    let link = console.rsplit("once, ").next().unwrap().trim();
    assert!(link.starts_with("http://127.0.0.1:") && link.contains("/ui/login?code="), "{line}");
    // Keep draining what it prints, so that it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Up { child, url, data }
}

fn paddock(up: &Up, args: &[&str]) -> (bool, String) {
    let out = Command::new(PADDOCK)
        .args(args)
        .args(["--gateway", &up.url, "--data-dir"])
        .arg(&up.data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Runs a session to its end and returns its transcript events.
fn run_session(up: &Up, agent: &str, prompt: &str, workspace: &Path) -> Vec<Value> {
    let (_, out) = paddock(
        up,
        &["session", "run", agent, prompt, "--follow", "-o", "json", "--workspace", workspace.to_str().unwrap()],
    );
    out.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect()
}

const AGENT: &str = "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {name: prober}\nspec:\n  harness: custom\n  model: scripted\n  tools: [shell, write_file]\n";

fn repo(dir: &Path, script: &str) {
    std::fs::create_dir_all(dir.join("repo")).unwrap();
    std::fs::write(dir.join("repo/agent.yaml"), AGENT).unwrap();
    std::fs::write(dir.join("script.yaml"), script).unwrap();
}

#[test]
fn nothing_escapes_the_local_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // Things on the host a sandboxed agent must not reach.
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    std::fs::create_dir_all(dir.join("home/.ssh")).unwrap();
    std::fs::write(dir.join("home/.ssh/id_ed25519"), "-----BEGIN OPENSSH PRIVATE KEY-----").unwrap();
    let other_ws = dir.join("other-workspace");
    std::fs::create_dir_all(&other_ws).unwrap();
    std::fs::write(other_ws.join("secret.txt"), "another session's work").unwrap();
    let me = std::process::id();
    let host_tmp = dir.join("host-tmp");
    std::fs::create_dir_all(&host_tmp).unwrap();
    let probes: Vec<(String, String)> = vec![
        ("tcp".into(), tcp.local_addr().unwrap().to_string()),
        ("tcp".into(), "1.1.1.1:443".into()),
        ("udp".into(), "8.8.8.8:53".into()),
        ("dns".into(), "example.com".into()),
        ("read".into(), dir.join("home/.ssh/id_ed25519").display().to_string()),
        ("read".into(), dir.join("data/gateway.db").display().to_string()),
        ("read".into(), dir.join("data/admin-token").display().to_string()),
        ("read".into(), other_ws.join("secret.txt").display().to_string()),
        ("write".into(), "/usr/escaped".into()),
        ("write".into(), "/opt/paddock/escaped".into()),
        ("write".into(), "/run/escaped".into()),
        ("write".into(), host_tmp.join("escaped").display().to_string()),
        ("env".into(), "ANTHROPIC_API_KEY".into()),
        ("env".into(), "PADDOCK_TOKEN".into()),
        ("signal".into(), me.to_string()),
        ("ptrace".into(), me.to_string()),
        ("ptrace".into(), "1".into()),
        ("userns".into(), "new".into()),
        ("clone-newnet".into(), "new".into()),
    ];
    let mut calls = String::new();
    for (kind, target) in &probes {
        calls.push_str(&format!(
            "          - {{name: shell, args: {{command: \"/opt/paddock/paddock probe {kind} {target}\"}}}}\n"
        ));
    }
    // The UDP probe to the host's loopback "succeeds" inside (the sandbox has its own loopback); what
    // matters is that the host socket never receives it.
    calls.push_str(&format!(
        "          - {{name: shell, args: {{command: \"/opt/paddock/paddock probe udp {} || true\"}}}}\n",
        udp.local_addr().unwrap()
    ));
    let script = format!(
        "scripts:\n  - name: probe\n    turns:\n      - text: probing\n        tool_calls:\n{calls}      - text: done\n"
    );
    repo(dir, &script);
    let up = up(dir, &[("ANTHROPIC_API_KEY", "sk-ant-must-not-leak"), ("HOME", dir.join("home").to_str().unwrap())]);
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let events = run_session(&up, "prober", "probe the sandbox", &ws);
    let results: Vec<&str> =
        events.iter().filter(|e| e["type"] == "tool_result").filter_map(|e| e["output"].as_str()).collect();
    assert_eq!(results.len(), probes.len() + 1, "every probe ran: {events:#?}");
    for (r, (kind, target)) in results.iter().zip(&probes) {
        assert!(r.starts_with("blocked:"), "{kind} {target} must be blocked, got: {r}");
    }
    assert!(tcp.accept().is_err(), "no connection reached the host's TCP service");
    assert!(udp.recv_from(&mut [0u8; 64]).is_err(), "no datagram reached the host's UDP socket");
    assert!(!host_tmp.join("escaped").exists());
    let done = events.iter().find(|e| e["type"] == "done").expect("the session finished");
    assert_eq!(done["phase"], "Succeeded", "{done}");
}

#[test]
fn the_demo_tells_its_story_unattended() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(PADDOCK)
        .args(["up", "--demo", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--console-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for (what, needle) in [
        ("the agent wrote and tested code", "test passed: add 2 3 = 5"),
        // At the prompt (`request`), before the agent started: no model saw it.
        ("PII was blocked", "the prompt was refused by policy `pii` (rule `no-pii-to-models`)"),
        ("the budget asked", "past the $0.05 checkpoint"),
        ("and was approved on the user's behalf, saying so", "the demo approves on your behalf"),
        ("the force push was denied", "was blocked by policy `github-rules`"),
        ("costs are summarised", "total $"),
        ("the audit log is summarised", "2 denied, 1 asked a human"),
        ("the console's address and one-time sign-in link", "/ui/login?code="),
    ] {
        assert!(text.contains(needle), "{what}: `{needle}` missing from:\n{text}");
    }
    let phases: Vec<&str> = text.lines().filter(|l| l.starts_with("  s-")).collect();
    assert_eq!(phases.len(), 4, "four sessions in the cost table: {phases:?}");
    assert!(
        phases[1].contains("Failed") && phases.iter().filter(|l| l.contains("Succeeded")).count() == 3,
        "{phases:?}"
    );
    let files =
        std::fs::read_dir(dir.path()).unwrap().flatten().find(|e| e.file_name().to_string_lossy().starts_with("demo-"));
    let ws = files.unwrap().path().join("workspaces/demo");
    let mut calc = String::new();
    std::fs::File::open(ws.join("calc.sh")).unwrap().read_to_string(&mut calc).unwrap();
    assert!(calc.contains("add()"));
}

/// What a terminal shows: the text with escape sequences and carriage returns taken out.
fn shown_text(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ … final byte in @–~.
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// The demo in a terminal (util-linux `script` gives it one) prompts at the budget's ask; the ask is
/// approved in the web console instead, with the one-time link the demo printed, and the story goes on.
#[tokio::test]
async fn the_demos_ask_can_be_approved_in_the_console_while_the_terminal_asks() {
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "{PADDOCK} up --demo --data-dir {} --listen 127.0.0.1:0 --console-listen 127.0.0.1:0",
        dir.path().display()
    );
    let mut child = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take().unwrap(); // kept open: the terminal never answers
    let mut out = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let text = shown_text(&seen.lock().unwrap());
            if text.contains(needle) {
                return text;
            }
            assert!(std::time::Instant::now() < deadline, "`{needle}` never appeared:\n{text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let text = wait_for("approve? [y/N] (or decide in the console)");
    let link = text
        .lines()
        .find_map(|l| l.split("sign in with ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the demo prints the console's one-time link")
        .to_owned();
    let console = link.split("/ui/login").next().unwrap().to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = http.get(format!("{console}/ui/approvals")).header("cookie", &cookie).send().await.unwrap();
    let html = page.text().await.unwrap();
    let ask = html.split("data-approval=\"").nth(1).expect("the pending ask").split('"').next().unwrap().to_owned();
    let csrf = html.split("name=\"csrf-token\" content=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = http
        .post(format!("{console}/ui/approvals/{ask}/decide"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("decision", "approve"), ("reason", "fine for a demo")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    wait_for("approved by admin elsewhere");
    let text = wait_for("2 denied, 1 asked a human");
    assert!(text.contains("was blocked by policy `github-rules`"), "the story went on:\n{text}");
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "{}", shown_text(&seen.lock().unwrap()));
}

#[test]
fn killing_paddock_up_mid_session_loses_no_ledger_entry() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    repo(
        dir,
        "scripts:\n  - name: slow\n    turns:\n      - text: first\n        tool_calls: [{name: shell, args: {command: \"echo one\"}}]\n        usage: {input_tokens: 1000, output_tokens: 100}\n      - text: second\n        delay_ms: 30000\n",
    );
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let id = {
        let mut up = up(dir, &[]);
        let (ok, out) = paddock(
            &up,
            &["session", "run", "prober", "work slowly", "-o", "json", "--workspace", ws.to_str().unwrap()],
        );
        assert!(ok, "{out}");
        let id = serde_json::from_str::<Value>(out.trim()).unwrap()["id"].as_str().unwrap().to_owned();
        // Wait until the first model call is billed, then kill paddock up while the second one is pending.
        let started = Instant::now();
        loop {
            let (_, list) = paddock(&up, &["session", "list", "-o", "json"]);
            let v: Value = serde_json::from_str(&list).unwrap();
            if v[0]["usage"]["costUsd"].as_f64().unwrap_or(0.0) > 0.0 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "the first turn was never billed: {list}");
            std::thread::sleep(Duration::from_millis(50));
        }
        up.child.kill().unwrap();
        up.child.wait().unwrap();
        id
    };
    let up = up(dir, &[]);
    let (_, list) = paddock(&up, &["session", "list", "-o", "json"]);
    let v: Value = serde_json::from_str(&list).unwrap();
    let s = v.as_array().unwrap().iter().find(|s| s["id"] == id.as_str()).unwrap();
    assert_eq!(s["phase"], "Failed");
    assert!(s["reason"].as_str().unwrap().contains("interrupted"), "{s}");
    assert_eq!(s["usage"]["inputTokens"], 1000, "the billed call is still in the ledger: {s}");
    let (_, text) = paddock(&up, &["session", "list"]);
    assert!(text.contains(&id) && text.contains("Failed"), "{text}");
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn agents(up: &Up) -> String {
    let (_, v) = paddock(up, &["session", "run", "nobody", "x"]);
    v
}

#[test]
fn a_git_repo_is_followed_at_its_committed_head_and_a_broken_commit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    repo(dir, "scripts:\n  - name: s\n    turns:\n      - text: hello\n");
    let r = dir.join("repo");
    git(&r, &["init", "-q"]);
    git(&r, &["add", "."]);
    git(&r, &["commit", "-qm", "first agent"]);
    let mut up = up(dir, &[]);
    assert!(agents(&up).contains("loaded: prober"), "{}", agents(&up));
    // Uncommitted work is not what runs.
    std::fs::write(r.join("second.yaml"), AGENT.replace("prober", "second")).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(!agents(&up).contains("second"), "only committed files count");
    // A commit with a broken manifest is refused whole; the last good revision stays live.
    std::fs::write(
        r.join("broken.yaml"),
        AGENT.replace("harness: custom", "harness: nonsense").replace("prober", "broken"),
    )
    .unwrap();
    git(&r, &["add", "."]);
    git(&r, &["commit", "-qm", "second and a broken one"]);
    std::thread::sleep(Duration::from_millis(2500));
    let now = agents(&up);
    assert!(now.contains("loaded: prober") && !now.contains("second"), "{now}");
    // Fixing it brings both in.
    std::fs::remove_file(r.join("broken.yaml")).unwrap();
    git(&r, &["add", "-A"]);
    git(&r, &["commit", "-qm", "fix"]);
    let started = Instant::now();
    while !agents(&up).contains("prober, second") {
        assert!(started.elapsed() < Duration::from_secs(10), "the fixed revision was not loaded: {}", agents(&up));
        std::thread::sleep(Duration::from_millis(200));
    }
    up.child.kill().unwrap();
    let mut err = String::new();
    up.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("refused a new revision") && err.contains("broken.yaml") && err.contains("harness"), "{err}");
}

#[test]
fn with_a_provider_key_the_same_agents_use_the_real_provider_and_the_key_stays_in_the_gateway() {
    // A stand-in for api.anthropic.com on loopback (the real one is not reachable from tests): it records
    // the key it was sent and answers like the Messages API.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in server.incoming().flatten() {
            let mut stream = stream;
            let mut buf = vec![0u8; 1 << 20];
            let mut got = Vec::new();
            loop {
                let n = std::io::Read::read(&mut stream, &mut buf).unwrap_or(0);
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let len = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if got.len() >= head_end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&got).into_owned();
            log.lock().unwrap().push(text);
            let body = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hello from the provider."}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":5}}"#;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut stream, resp.as_bytes());
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    repo(dir, "scripts:\n  - name: s\n    turns:\n      - text: unused\n");
    std::fs::write(dir.join("repo/agent.yaml"), AGENT.replace("model: scripted", "model: claude-sonnet-4-5")).unwrap();
    let up = up(dir, &[("ANTHROPIC_API_KEY", "sk-ant-real-key"), ("ANTHROPIC_BASE_URL", &format!("http://{addr}"))]);
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let events = run_session(&up, "prober", "say hello", &ws);
    let done = events.iter().find(|e| e["type"] == "done").expect("finished");
    assert_eq!(done["phase"], "Succeeded", "{events:#?}");
    // The end is the gateway's event; the provider's answer is the assistant's last message.
    let said = events.iter().rev().find(|e| e["type"] == "message" && e["role"] == "assistant").expect("an answer");
    assert_eq!(said["text"], "Hello from the provider.");
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let req = requests[0].to_ascii_lowercase();
    assert!(req.starts_with("post /v1/messages"), "{req}");
    assert!(req.contains("x-api-key: sk-ant-real-key"), "the gateway sends the provider key: {req}");
    assert!(!req.contains("pdk_"), "the session token never reaches the provider");
}

#[test]
fn on_a_terminal_the_demo_puts_the_ask_to_the_user() {
    // `script` gives the demo a pseudo-terminal; the answer is typed into it.
    let dir = tempfile::tempdir().unwrap();
    let cmd = format!("{PADDOCK} up --demo --data-dir {} --listen 127.0.0.1:0", dir.path().display());
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("util-linux `script`");
    // One answer per ask the story may meet (an answer not asked for is never read).
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"y\ny\ny\ny\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("approve? [y/N]"), "the ask is put to the user: {text}");
    assert!(!text.contains("on your behalf"), "nobody approved for them: {text}");
    assert!(text.contains("approved by "), "{text}");
}
