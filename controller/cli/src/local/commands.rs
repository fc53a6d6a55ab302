//! `paddock session run|list|logs|stop`, `paddock approvals`, `paddock approve`, `paddock deny`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};

use super::client::{Client, Conn, OnAsk, Style, follow, whoami};
use crate::terminal;

#[derive(clap::Subcommand)]
pub enum SessionCommand {
    /// Start a session of AGENT on a task, in a sandbox.
    Run {
        agent: String,
        prompt: String,
        /// The directory the agent works in (default: a fresh one in the data directory).
        #[arg(long)]
        workspace: Option<PathBuf>,
        /// Stay and show the transcript live; on a terminal, asks are put to you.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Lower the session's budget (US dollars).
        #[arg(long)]
        budget_usd: Option<f64>,
        #[command(flatten)]
        out: Output,
    },
    /// List sessions.
    List {
        #[command(flatten)]
        out: Output,
    },
    /// Show a session's transcript; `-f` follows it live.
    Logs {
        id: String,
        #[arg(long, short = 'f')]
        follow: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Stop a running session.
    Stop { id: String },
    /// Show what the agent changed: its copy of the workspace against your directory, as a unified diff.
    ///
    /// The agent works on a copy; no git runs on it to compute this (its git configuration is the agent's).
    Diff {
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Bring the agent's changes back into your directory (the one given to `session run --workspace`).
    ///
    /// Files only: nothing named `.git` at any depth, no symlinks, no special files; a file you changed since
    /// the session started is a conflict, and any conflict refuses the whole apply before anything is written.
    Apply {
        id: String,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(clap::Args)]
pub struct DecideArgs {
    /// The ask's id (from `paddock approvals`).
    pub id: String,
    #[arg(long)]
    pub reason: Option<String>,
    /// In a Kubernetes cluster: create an Approval object (with your kubeconfig's identity) for the
    /// controller to relay, instead of talking to `paddock up`.
    #[arg(long, requires = "session")]
    pub cluster: bool,
    /// With --cluster: the Session the ask belongs to.
    #[arg(long)]
    pub session: Option<String>,
    /// With --cluster: the Session's namespace (default: the kubeconfig's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args)]
pub struct Output {
    /// `text` (default) or `json`.
    #[arg(long, short = 'o', default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
}

impl Output {
    fn json(&self) -> bool {
        self.output == "json"
    }
}

fn rt() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

pub fn session(cmd: SessionCommand, conn: Conn) -> anyhow::Result<ExitCode> {
    let c = Client::connect(&conn)?;
    rt()?.block_on(async {
        match cmd {
            SessionCommand::Run { agent, prompt, workspace, follow: f, budget_usd, out } => {
                let workspace = workspace.map(|w| std::fs::canonicalize(&w).unwrap_or(w));
                let v = c
                    .post(
                        "/v1/local/sessions",
                        json!({"agent": agent, "prompt": prompt, "workspace": workspace, "budgetUsd": budget_usd}),
                    )
                    .await?;
                let id = v["id"].as_str().unwrap_or_default().to_owned();
                if !f {
                    if out.json() {
                        println!("{}", terminal::json(&v));
                    } else {
                        let id = terminal::line(&id);
                        println!("session {id} started; follow it with `paddock session logs {id} -f`");
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                let on_ask = if std::io::stdin().is_terminal() && !out.json() { OnAsk::Prompt } else { OnAsk::Tell };
                let phase = follow(&c, &id, out.json(), on_ask).await?;
                Ok(if phase == "Succeeded" { ExitCode::SUCCESS } else { ExitCode::from(1) })
            }
            SessionCommand::List { out } => {
                let v = c.get("/v1/sessions").await?;
                if out.json() {
                    println!("{}", terminal::json_pretty(&v));
                    return Ok(ExitCode::SUCCESS);
                }
                let field = |s: &Value, k: &str| terminal::line(s[k].as_str().unwrap_or("")).into_owned();
                println!("{:<16} {:<18} {:<10} {:>10} {:>6}  REASON", "ID", "AGENT", "PHASE", "COST", "TOOLS");
                for s in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<16} {:<18} {:<10} {:>10} {:>6}  {}",
                        field(s, "id"),
                        field(s, "agent"),
                        field(s, "phase"),
                        format!("${:.4}", s["usage"]["costUsd"].as_f64().unwrap_or(0.0)),
                        s["toolCalls"].as_u64().unwrap_or(0),
                        field(s, "reason")
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            SessionCommand::Logs { id, follow: f, out } => {
                if f {
                    let on_ask =
                        if std::io::stdin().is_terminal() && !out.json() { OnAsk::Prompt } else { OnAsk::Tell };
                    follow(&c, &id, out.json(), on_ask).await?;
                    return Ok(ExitCode::SUCCESS);
                }
                let v = c.get(&format!("/v1/sessions/{id}/events")).await?;
                // Events are outside text: `render` makes each string inert.
                let st = Style::stdout();
                for e in v.as_array().into_iter().flatten() {
                    if out.json() {
                        println!("{}", terminal::json(&e["event"]));
                    } else if let Some(line) = super::client::render(&e["event"], &st) {
                        println!("{line}");
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            SessionCommand::Diff { id, out } => {
                let v = c.get(&format!("/v1/local/sessions/{id}/diff")).await?;
                if out.json() {
                    println!("{}", terminal::json_pretty(&v));
                    return Ok(ExitCode::SUCCESS);
                }
                // The diff is the agent's text: inert, with its lines kept.
                let diff = v["diff"].as_str().unwrap_or("");
                if diff.is_empty() {
                    println!("no changes");
                } else {
                    print!("{}", terminal::block(diff));
                }
                for c in v["conflicts"].as_array().into_iter().flatten() {
                    eprintln!("conflict: {}", terminal::line(c.as_str().unwrap_or("")));
                }
                print_ignored(&v);
                Ok(ExitCode::SUCCESS)
            }
            SessionCommand::Apply { id, out } => {
                let v = c.post(&format!("/v1/local/sessions/{id}/apply"), json!({})).await?;
                if out.json() {
                    println!("{}", terminal::json_pretty(&v));
                    return Ok(ExitCode::SUCCESS);
                }
                let written: Vec<&str> =
                    v["written"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                println!(
                    "applied {} change{} to {}",
                    written.len(),
                    if written.len() == 1 { "" } else { "s" },
                    terminal::line(v["source"].as_str().unwrap_or(""))
                );
                let mut left: Vec<(String, usize)> = Vec::new();
                for ch in v["changes"].as_array().into_iter().flatten() {
                    let mark = match ch["change"].as_str() {
                        Some("added") => "A",
                        Some("deleted") => "D",
                        _ => "M",
                    };
                    let path = terminal::line(ch["path"].as_str().unwrap_or(""));
                    match ch["note"].as_str() {
                        Some(note) => match left.iter_mut().find(|(n, _)| n == note) {
                            Some((_, count)) => *count += 1,
                            None => left.push((note.to_owned(), 1)),
                        },
                        None if ch["review"] == true => {
                            println!("  {mark} {path}   (review: other tools on your machine read this file)")
                        }
                        None => println!("  {mark} {path}"),
                    }
                }
                for (note, count) in left {
                    println!("  - {count} path{}: {}", if count == 1 { "" } else { "s" }, terminal::line(&note));
                }
                print_ignored(&v);
                Ok(ExitCode::SUCCESS)
            }
            SessionCommand::Stop { id } => {
                c.post(&format!("/v1/local/sessions/{id}/stop"), json!({})).await?;
                println!("session {} stopped", terminal::line(&id));
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

pub fn approvals(conn: Conn, out: Output) -> anyhow::Result<ExitCode> {
    let c = Client::connect(&conn)?;
    rt()?.block_on(async {
        let v = c.get("/v1/approvals").await?;
        if out.json() {
            println!("{}", terminal::json_pretty(&v));
            return Ok(ExitCode::SUCCESS);
        }
        let list = v.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!("no pending approvals");
        }
        // Reasons and summaries quote what the agent asked to run: each is one inert line, so that no text
        // of theirs can erase, hide or fake a line of this list.
        let field = |a: &Value, k: &str| terminal::line(a[k].as_str().unwrap_or("")).into_owned();
        for a in list {
            println!(
                "{}  session {}  {}  {}\n    {}",
                field(&a, "id"),
                field(&a, "session"),
                field(&a, "phase"),
                field(&a, "reason"),
                field(&a, "summary")
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn decide(conn: Conn, id: String, reason: Option<String>, approve: bool) -> anyhow::Result<ExitCode> {
    let c = Client::connect(&conn)?;
    rt()?.block_on(async {
        let verb = if approve { "approve" } else { "deny" };
        let v: Value = c
            .post(&format!("/v1/approvals/{id}/{verb}"), json!({"by": whoami(), "reason": reason.unwrap_or_default()}))
            .await?;
        println!(
            "{}: {} by {}",
            terminal::line(&id),
            terminal::line(v["status"].as_str().unwrap_or(verb)),
            terminal::line(v["decided_by"].as_str().unwrap_or(""))
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Git metadata in the agent's copy is never compared or brought back; say which.
fn print_ignored(v: &Value) {
    let ignored = terminal::lines(&v["ignored"]);
    if !ignored.is_empty() {
        println!("not compared, never brought back (git metadata or names that are not UTF-8): {}", ignored.join(", "));
    }
}
