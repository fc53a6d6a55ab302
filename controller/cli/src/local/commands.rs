//! `paddock session run|list|logs|stop`, `paddock approvals`, `paddock approve`, `paddock deny`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};

use super::client::{Client, Conn, OnAsk, Style, follow, whoami};

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
                        println!("{v}");
                    } else {
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
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    return Ok(ExitCode::SUCCESS);
                }
                println!("{:<16} {:<18} {:<10} {:>10} {:>6}  REASON", "ID", "AGENT", "PHASE", "COST", "TOOLS");
                for s in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<16} {:<18} {:<10} {:>10} {:>6}  {}",
                        s["id"].as_str().unwrap_or(""),
                        s["agent"].as_str().unwrap_or(""),
                        s["phase"].as_str().unwrap_or(""),
                        format!("${:.4}", s["usage"]["costUsd"].as_f64().unwrap_or(0.0)),
                        s["toolCalls"],
                        s["reason"].as_str().unwrap_or("")
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
                let st = Style::stdout();
                for e in v.as_array().into_iter().flatten() {
                    if out.json() {
                        println!("{}", e["event"]);
                    } else if let Some(line) = super::client::render(&e["event"], &st) {
                        println!("{line}");
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            SessionCommand::Stop { id } => {
                c.post(&format!("/v1/local/sessions/{id}/stop"), json!({})).await?;
                println!("session {id} stopped");
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
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(ExitCode::SUCCESS);
        }
        let list = v.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!("no pending approvals");
        }
        for a in list {
            println!(
                "{}  session {}  {}  {}\n    {}",
                a["id"].as_str().unwrap_or(""),
                a["session"].as_str().unwrap_or(""),
                a["phase"].as_str().unwrap_or(""),
                a["reason"].as_str().unwrap_or(""),
                a["summary"].as_str().unwrap_or("")
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
        println!("{id}: {} by {}", v["status"].as_str().unwrap_or(verb), v["decided_by"].as_str().unwrap_or(""));
        Ok(ExitCode::SUCCESS)
    })
}
