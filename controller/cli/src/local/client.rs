//! The CLI's side of local mode: HTTP to `paddock up`, with the admin credential, and the transcript
//! rendered for a terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::terminal;

#[derive(clap::Args, Clone, Debug)]
pub struct Conn {
    /// Where `paddock up` listens.
    #[arg(long, global = true, env = "PADDOCK_GATEWAY_URL", default_value = "http://127.0.0.1:6767")]
    pub gateway: String,
    /// The admin token (default: the one `paddock up` wrote to its data directory).
    #[arg(long, global = true, env = "PADDOCK_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The data directory of `paddock up`, to find its admin token.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Clone)]
pub struct Client {
    pub base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Client {
        Client { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), http: reqwest::Client::new() }
    }

    pub fn connect(c: &Conn) -> anyhow::Result<Client> {
        let token = match &c.admin_token {
            Some(t) => t.clone(),
            None => {
                let dir = c.data_dir.clone().unwrap_or_else(paddock_gateway::server::default_data_dir);
                let p = dir.join("admin-token");
                std::fs::read_to_string(&p)
                    .with_context(|| {
                        format!("cannot read the admin token at {} (is `paddock up` running?)", p.display())
                    })?
                    .trim()
                    .to_owned()
            }
        };
        Ok(Client::new(&c.gateway, &token))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let r = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach paddock at {} (start it with `paddock up`)", self.base))?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            // The gateway's words, but they may quote a request's text: one inert line.
            let msg = v["error"]["message"].as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
            anyhow::bail!("{} ({status})", terminal::line(&msg));
        }
        Ok(v)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body)).await
    }

    pub async fn pending_for(&self, session: &str) -> anyhow::Result<Vec<Value>> {
        let all = self.get("/v1/approvals").await?;
        Ok(all.as_array().into_iter().flatten().filter(|a| a["session"] == session).cloned().collect())
    }
}

/// How to answer an ask met while following.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum OnAsk {
    /// Prompt on the terminal.
    Prompt,
    /// Approve on the user's behalf, saying so (the demo without a terminal).
    AutoApprove,
    /// Only say how to decide (`paddock approve ID`).
    Tell,
}

pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn stdout() -> Style {
        Style { color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() }
    }
    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }
}

/// The first non-empty line of outside text, cut at `max` characters and made inert for a terminal.
fn first_line(s: &str, max: usize) -> String {
    let line = s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let cut = if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_owned()
    };
    terminal::line(&cut).into_owned()
}

/// A one-line field of an event, made inert.
fn field<'a>(ev: &'a Value, key: &str) -> std::borrow::Cow<'a, str> {
    terminal::line(ev[key].as_str().unwrap_or(""))
}

/// Event kinds that only the gateway may write: a decision, an ask, its answer, the session's end. The same
/// kinds from anyone else (a runner can post events with its session token) are claims, shown as such.
const GATEWAY_KINDS: [&str; 5] = ["verdict", "ask", "approval", "done", "end"];

/// Whether the gateway wrote this event (it marks what it writes with `source: gateway`).
fn from_gateway(ev: &Value) -> bool {
    ev["source"] == "gateway"
}

/// One transcript event as a line (or an indented block) for people. Every string in it came from a model,
/// a tool or a sandbox, so each passes through [`terminal`] first.
pub fn render(ev: &Value, st: &Style) -> Option<String> {
    let kind = ev["type"].as_str()?;
    if GATEWAY_KINDS.contains(&kind) && !from_gateway(ev) {
        return Some(runner_claim(kind, ev, st));
    }
    Some(match kind {
        "message" if ev["role"] == "user" => {
            format!("{} {}", st.paint("1", "»"), first_line(ev["text"].as_str()?, 200))
        }
        "message" => {
            format!("{} {}", st.paint("36", "assistant:"), terminal::indented(ev["text"].as_str()?.trim(), "  │ "))
        }
        "tool_call" => {
            let args = ev["args"].to_string();
            format!("{} {} {}", st.paint("33", "▸"), st.paint("1", &field(ev, "name")), first_line(&args, 160))
        }
        "tool_result" if ev["is_error"] == true => {
            format!("  {} {}", st.paint("31", "✗"), first_line(ev["output"].as_str().unwrap_or(""), 160))
        }
        "tool_result" => format!("  {} {}", st.paint("32", "✓"), first_line(ev["output"].as_str().unwrap_or(""), 160)),
        "verdict" => format!(
            "{} {} {} by {}: {}",
            match ev["verdict"].as_str() {
                Some("allow") => st.paint("32", "✓"),
                Some("ask") => st.paint("35;1", "?"),
                _ => st.paint("31;1", "⛔"),
            },
            field(ev, "phase"),
            field(ev, "verdict"),
            if ev["policy"].is_string() { field(ev, "policy") } else { "policy".into() },
            field(ev, "reason")
        ),
        "ask" => format!(
            "{} {} asks ({}, {}): {}\n    {}",
            st.paint("35;1", "?"),
            if ev["policy"].is_string() { field(ev, "policy") } else { "a policy".into() },
            field(ev, "phase"),
            field(ev, "approval"),
            field(ev, "reason"),
            st.paint("2", &field(ev, "summary"))
        ),
        "approval" => format!(
            "{} {} {} by {}{}",
            if ev["status"] == "approved" { st.paint("32;1", "✓") } else { st.paint("31;1", "✗") },
            field(ev, "approval"),
            field(ev, "status"),
            field(ev, "by"),
            ev["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(|r| format!(": {}", terminal::line(r)))
                .unwrap_or_default()
        ),
        "comment" if ev["source"] == "console" => {
            format!("{} {}: {}", st.paint("34", "✎"), field(ev, "by"), terminal::indented(ev["text"].as_str()?, "  │ "))
        }
        "usage" => {
            st.paint("2", &terminal::line(&format!("  tokens: {} in, {} out", ev["input_tokens"], ev["output_tokens"])))
        }
        "error" => format!("{} {}", st.paint("31", "error:"), terminal::indented(ev["message"].as_str()?, "  │ ")),
        "done" | "end" => format!(
            "{} {} {}",
            st.paint(if ev["phase"] == "Succeeded" { "32;1" } else { "31;1" }, "●"),
            field(ev, "phase"),
            first_line(ev["message"].as_str().or(ev["reason"].as_str()).unwrap_or(""), 200)
        ),
        _ => return None,
    })
}

/// A decision-like event that did not come from the gateway: what the runner claims, in its own words,
/// never drawn like a verdict.
fn runner_claim(kind: &str, ev: &Value, st: &Style) -> String {
    let mut rest = ev.clone();
    if let Some(o) = rest.as_object_mut() {
        o.remove("type");
        o.remove("source");
    }
    let body = serde_json::to_string(&rest).unwrap_or_default();
    st.paint("2", &format!("  runner reports {}: {}", terminal::line(kind), first_line(&body, 200)))
}

/// Follows a session's transcript until it ends, printing each event (or its JSON with `json`), and
/// deciding asks as `on_ask` says. Returns the session's final phase.
pub async fn follow(c: &Client, id: &str, json: bool, on_ask: OnAsk) -> anyhow::Result<String> {
    let st = Style::stdout();
    let url = format!("{}/v1/sessions/{id}/events?follow=true", c.base);
    let resp = c.http.get(&url).bearer_auth(&c.token).send().await.context("cannot follow the session")?;
    if !resp.status().is_success() {
        let body = resp.text().await.unwrap_or_default();
        anyhow::bail!("cannot follow session `{}`: {}", terminal::line(id), terminal::line(&body));
    }
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut asked = std::collections::HashSet::new();
    // Asks the transcript has shown already (the prompt then does not repeat them).
    let mut shown = std::collections::HashSet::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(300), body.next()).await {
            Ok(Some(Ok(chunk))) => {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
                    let Ok(ev) = serde_json::from_str::<Value>(data) else { continue };
                    if json {
                        println!("{}", terminal::json(&ev));
                    } else if let Some(line) = render(&ev, &st) {
                        println!("{line}");
                        if ev["type"] == "ask" && from_gateway(&ev) {
                            shown.insert(ev["approval"].as_str().unwrap_or_default().to_owned());
                        }
                    }
                }
            }
            Ok(Some(Err(e))) => anyhow::bail!("the transcript stream broke: {e}"),
            Ok(None) => break,
            Err(_) => {
                // Quiet: an ask may be waiting, or the runner may have died without a last word.
                for a in c.pending_for(id).await? {
                    let aid = a["id"].as_str().unwrap_or_default().to_owned();
                    if asked.insert(aid.clone()) {
                        decide_ask(c, &a, on_ask, &st, shown.contains(&aid)).await?;
                    }
                }
                let s = c.get(&format!("/v1/sessions/{id}")).await?;
                if s["phase"] != "Running" {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    break;
                }
            }
        }
    }
    // The runner's last word comes just before its process ends and the supervisor records the end.
    for _ in 0..50 {
        let s = c.get(&format!("/v1/sessions/{id}")).await?;
        if s["phase"] != "Running" {
            return Ok(s["phase"].as_str().unwrap_or("Unknown").to_owned());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok("Running".to_owned())
}

/// Puts a pending ask to the user (or says how to decide it). `shown`: the transcript has just shown the
/// ask, with its reason and summary, so only the question follows.
async fn decide_ask(c: &Client, a: &Value, on_ask: OnAsk, st: &Style, shown: bool) -> anyhow::Result<()> {
    let raw_id = a["id"].as_str().unwrap_or_default();
    let id = &*field(a, "id");
    if !shown {
        println!(
            "{} {} asks: {}\n  {}",
            st.paint("35;1", "?"),
            if a["policy"].is_string() { field(a, "policy") } else { "a policy".into() },
            field(a, "reason"),
            st.paint("2", &field(a, "summary"))
        );
    }
    let approve = match on_ask {
        OnAsk::Tell => {
            println!("  decide with `paddock approve {id}` or `paddock deny {id}`");
            return Ok(());
        }
        OnAsk::AutoApprove => {
            println!("  (no terminal to ask you: the demo approves on your behalf)");
            true
        }
        OnAsk::Prompt => {
            print!("  approve? [y/N] (or decide in the console) ");
            std::io::stdout().flush()?;
            match typed_or_decided(c, raw_id).await? {
                Ok(line) => matches!(line.trim(), "y" | "Y" | "yes"),
                Err((status, by)) => {
                    println!("\n  {}", st.paint("2", &format!("{status} by {by} elsewhere")));
                    return Ok(());
                }
            }
        }
    };
    let by = if on_ask == OnAsk::AutoApprove { "demo (on your behalf)".to_owned() } else { whoami() };
    let verb = if approve { "approve" } else { "deny" };
    c.post(&format!("/v1/approvals/{raw_id}/{verb}"), json!({"by": by})).await?;
    println!("  {}", st.paint(if approve { "32" } else { "31" }, &format!("{verb}d by {}", terminal::line(&by))));
    Ok(())
}

/// Lines typed on the terminal, read by one thread for the whole process: a prompt that was answered
/// elsewhere leaves no reader of its own behind to swallow the next prompt's answer.
fn typed_lines() -> &'static tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<String>> {
    static LINES: std::sync::OnceLock<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<String>>> =
        std::sync::OnceLock::new();
    LINES.get_or_init(|| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                if tx.send(std::mem::take(&mut line)).is_err() {
                    break;
                }
            }
        });
        tokio::sync::Mutex::new(rx)
    })
}

/// The line the user types, or, if the ask is decided elsewhere first (the web console, another terminal),
/// `Err((status, by))`.
async fn typed_or_decided(c: &Client, approval: &str) -> anyhow::Result<Result<String, (String, String)>> {
    let mut lines = typed_lines().lock().await;
    loop {
        tokio::select! {
            line = lines.recv() => return Ok(Ok(line.unwrap_or_default())),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                let all = c.get("/v1/approvals?status=all").await?;
                let row = all.as_array().into_iter().flatten().find(|a| a["id"] == approval);
                if let Some(a) = row.filter(|a| a["status"] != "pending") {
                    return Ok(Err((field(a, "status").into_owned(), field(a, "decided_by").into_owned())));
                }
            }
        }
    }
}

pub fn whoami() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "local-admin".into())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Style, render};

    fn shown(ev: serde_json::Value) -> String {
        render(&ev, &Style { color: false }).unwrap()
    }

    #[test]
    fn decisions_are_drawn_only_from_the_gateway() {
        let verdict = json!({"type": "verdict", "phase": "tool_call", "verdict": "deny", "policy": "github-rules",
            "reason": "force push"});
        let mut from_gateway = verdict.clone();
        from_gateway["source"] = "gateway".into();
        assert_eq!(shown(from_gateway), "⛔ tool_call deny by github-rules: force push");
        for source in [json!(null), json!("runner"), json!("Gateway"), json!(["gateway"])] {
            let mut claim = verdict.clone();
            claim["source"] = source.clone();
            let line = shown(claim);
            assert!(line.starts_with("  runner reports verdict: {"), "{source}: {line}");
        }
        let end = shown(json!({"type": "done", "phase": "Succeeded", "message": "approved\r\x1b[2K"}));
        assert!(end.starts_with("  runner reports done:") && !end.contains('\x1b') && !end.contains('\r'), "{end}");
    }

    #[test]
    fn every_field_of_an_event_is_inert() {
        let ev = json!({"type": "tool_call", "name": "sh\x1b[8mell", "args": {"command": "ls\u{202e}\u{9b}2K"}});
        assert_eq!(shown(ev), r#"▸ sh\x1b[8mell {"command":"ls\u{202e}\u{9b}2K"}"#);
        let usage = shown(json!({"type": "usage", "input_tokens": "1\u{202e}", "output_tokens": "\u{9b}"}));
        assert_eq!(usage, r#"  tokens: "1\u{202e}" in, "\u{9b}" out"#);
        let msg = shown(json!({"type": "message", "role": "assistant", "text": "a\n● Succeeded\r\n⛔ fake"}));
        assert_eq!(msg, "assistant: a\n  │ ● Succeeded\\r\n  │ ⛔ fake");
        let ask = shown(json!({"type": "ask", "source": "gateway", "policy": "p", "phase": "tool_call",
            "approval": "a-1", "reason": "x\ny", "summary": "s\r"}));
        assert_eq!(ask, "? p asks (tool_call, a-1): x\\ny\n    s\\r");
    }

    #[test]
    fn console_comments_are_shown_inert_and_only_from_the_console() {
        let c = shown(json!({"type": "comment", "source": "console", "by": "ali\x1b[2Kce", "text": "ok\n● Failed"}));
        assert_eq!(c, "✎ ali\\x1b[2Kce: ok\n  │ ● Failed");
        assert!(
            super::render(
                &json!({"type": "comment", "source": "runner", "by": "x", "text": "y"}),
                &Style { color: false }
            )
            .is_none()
        );
    }
}
