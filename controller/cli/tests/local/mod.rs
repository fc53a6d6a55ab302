//! For the tests that run `paddock up` and its sessions with the real binary: start it on a kernel-picked
//! port with a repo of Agents and a scripted model, and run `paddock` commands against it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

pub const PADDOCK: &str = env!("CARGO_BIN_EXE_paddock");

pub struct Up {
    pub child: Child,
    pub url: String,
    pub data: PathBuf,
    /// Everything `paddock up` printed so far, stdout and stderr (its logs), interleaved by line.
    pub output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `files` (relative path, text) into `dir/repo` and the scripted model's `script` beside it.
pub fn repo(dir: &Path, files: &[(&str, &str)], script: &str) {
    for (rel, text) in files {
        let p = dir.join("repo").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    std::fs::write(dir.join("script.yaml"), script).unwrap();
}

/// Starts `paddock up` for `dir` (see [`repo`]) and reads the address it announces.
pub fn up(dir: &Path) -> Up {
    up_with(dir, &[])
}

/// [`up`] with `envs` set for `paddock up`.
pub fn up_with(dir: &Path, envs: &[(&str, &str)]) -> Up {
    up_args(dir, &[], envs)
}

/// [`up`] with more arguments for `paddock up` and `envs` set for it.
pub fn up_args(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Up {
    let data = dir.join("data");
    let mut child = Command::new(PADDOCK)
        .args(["up", "--repo"])
        .arg(dir.join("repo"))
        .arg("--script")
        .arg(dir.join("script.yaml"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--console-listen", "127.0.0.1:0"])
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    // Its logs still reach the test's stderr, and are kept.
    let (kept, stderr) = (output.clone(), child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            eprintln!("{line}");
            kept.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let url = loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(n > 0, "paddock up ended before it listened");
        output.lock().unwrap().push_str(&line);
        if let Some(rest) = line.strip_prefix("paddock: gateway on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let kept = output.clone();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(out).map_while(Result::ok) {
            kept.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    Up { child, url, data, output }
}

/// Runs `paddock ARGS` against `up`; the raw output, as a terminal or a pipe would receive it.
pub fn paddock_raw(up: &Up, args: &[&str]) -> Output {
    Command::new(PADDOCK)
        .args(args)
        .args(["--gateway", &up.url, "--data-dir"])
        .arg(&up.data)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `paddock ARGS`; whether it succeeded, and stdout and stderr as text.
pub fn paddock(up: &Up, args: &[&str]) -> (bool, String) {
    let out = paddock_raw(up, args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Starts a session without following it; returns its id.
pub fn start(up: &Up, agent: &str, prompt: &str, workspace: &Path) -> String {
    let (ok, out) =
        paddock(up, &["session", "run", agent, prompt, "-o", "json", "--workspace", workspace.to_str().unwrap()]);
    assert!(ok, "{out}");
    serde_json::from_str::<Value>(out.trim()).unwrap()["id"].as_str().unwrap().to_owned()
}

/// Waits until the session has ended; returns its phase.
pub fn wait_end(up: &Up, id: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let (_, list) = paddock(up, &["session", "list", "-o", "json"]);
        let v: Value = serde_json::from_str(&list).unwrap_or(Value::Null);
        if let Some(s) = v.as_array().into_iter().flatten().find(|s| s["id"] == id)
            && s["phase"] != "Running"
        {
            return s["phase"].as_str().unwrap().to_owned();
        }
        assert!(started.elapsed().as_secs() < 120, "session {id} did not end: {list}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Runs a session to its end and returns its transcript events.
pub fn run_session(up: &Up, agent: &str, prompt: &str, workspace: &Path) -> (String, Vec<Value>) {
    let id = start(up, agent, prompt, workspace);
    wait_end(up, &id);
    let (_, out) = paddock(up, &["session", "logs", &id, "-o", "json"]);
    (id, out.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect())
}

/// JSON (which is YAML) with everything outside printable ASCII as an escape YAML reads back: for scripts
/// whose text carries control characters.
pub fn yaml_json(v: &Value) -> String {
    let mut out = String::new();
    for c in v.to_string().chars() {
        match c as u32 {
            0x20..=0x7e => out.push(c),
            n if n <= 0xffff => out.push_str(&format!("\\u{n:04x}")),
            n => out.push_str(&format!("\\U{n:08x}")),
        }
    }
    out
}
