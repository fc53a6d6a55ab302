//! `paddock up --demo`: the governed demo, with the scripted model and no API key. Four short sessions tell
//! the story — an agent writes and tests code, a request carrying personal data is blocked, a budget
//! checkpoint asks the user, a force push is denied — and a cost and audit summary ends it.

use std::io::IsTerminal;
use std::process::ExitCode;

use serde_json::{Value, json};

use super::client::{Client, OnAsk, Style, follow};
use super::up::{Args, start};
use crate::terminal;

/// A one-line field of a gateway answer (which may quote the agent), made inert.
fn field(v: &Value, key: &str) -> String {
    terminal::line(v[key].as_str().unwrap_or("")).into_owned()
}

const FILES: &[(&str, &str)] = &[
    ("agents/demo-coder.yaml", include_str!("../../demo/agents/demo-coder.yaml")),
    ("agents/demo-analyst.yaml", include_str!("../../demo/agents/demo-analyst.yaml")),
    ("policies/demo.yaml", include_str!("../../demo/policies/demo.yaml")),
];
const SCRIPT: &str = include_str!("../../demo/script.yaml");

/// The story: (heading, agent, prompt, what the viewer should notice).
const STORY: &[(&str, &str, &str, &str)] = &[
    (
        "1. An agent writes code and tests it",
        "demo-coder",
        "Write a shell function that adds two numbers, with a test, and run the test.",
        "every tool call was admitted by the gateway before it ran; the agent worked on a copy, and its files \
         came back to the workspace as files (never git's configuration or hooks)",
    ),
    (
        "2. A request with personal data never reaches the model",
        "demo-coder",
        "Email the receipt to jane.doe@example.com and charge card 4111 1111 1111 1111.",
        "the gateway scanned the whole request and refused it: the `pii` policy",
    ),
    (
        "3. Spend past a checkpoint asks a human",
        "demo-analyst",
        "Look at the workspace and summarise the quarterly numbers.",
        "past $0.05 the agent's next step waited until a human approved the checkpoint",
    ),
    (
        "4. A force push is stopped before the agent sees it",
        "demo-coder",
        "Push the fix to main.",
        "the gateway removed the tool call from the model's answer: `github-rules`",
    ),
];

pub async fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let st = Style::stdout();
    let base = args.data_dir.clone().unwrap_or_else(paddock_gateway::server::default_data_dir);
    let data = base.join(format!("demo-{}", paddock_gateway::gateway::random_hex(4)));
    let repo = data.join("repo");
    for (rel, text) in FILES {
        let p = repo.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent"))?;
        std::fs::write(p, text)?;
    }
    std::fs::write(data.join("script.yaml"), SCRIPT)?;
    let workspace = data.join("workspaces/demo");
    std::fs::create_dir_all(&workspace)?;
    let listen = if args.listen == "127.0.0.1:6767" { "127.0.0.1:0".to_owned() } else { args.listen.clone() };
    let console_listen =
        if args.console_listen == "127.0.0.1:6768" { "127.0.0.1:0".to_owned() } else { args.console_listen.clone() };
    let up = Args {
        repo: repo.clone(),
        demo: true,
        listen,
        console_listen,
        data_dir: Some(data.clone()),
        script: Some(data.join("script.yaml")),
        ..args.clone()
    };
    super::supervisor::check_sandbox().map_err(|e| anyhow::anyhow!("the demo runs agents in a sandbox, and {e}"))?;
    let local = start(&up, true).await?;
    let c = Client::new(&local.url, &local.admin_token);
    println!("{}", st.paint("1", "Paddock demo: governed agents, with a scripted model (no API key needed)"));
    println!(
        "gateway {} · agents {} · revision {}\nevery model request and tool call below went through the gateway's policies.\n",
        local.url,
        local.agents.join(", "),
        local.revision
    );
    println!(
        "console {} — sign in with {} (or the admin token in {}); asks below can be approved there too.\n",
        local.console_url,
        local.console_login,
        data.join("admin-token").display()
    );
    let on_ask = if std::io::stdin().is_terminal() { OnAsk::Prompt } else { OnAsk::AutoApprove };
    let mut sessions = Vec::new();
    for (heading, agent, prompt, notice) in STORY {
        println!("{}", st.paint("1;34", heading));
        let v = c.post("/v1/local/sessions", json!({"agent": agent, "prompt": prompt, "workspace": workspace})).await?;
        let id = v["id"].as_str().unwrap_or_default().to_owned();
        let phase = follow(&c, &id, false, on_ask).await?;
        let s = c.get(&format!("/v1/sessions/{id}")).await?;
        if phase != "Succeeded" {
            println!("  session {} {}: {}", terminal::line(&id), terminal::line(&phase), field(&s, "reason"));
        }
        // The agent worked on a copy; its files come back the way `paddock session apply` brings them.
        let applied = c.post(&format!("/v1/local/sessions/{id}/apply"), json!({})).await?;
        let written = terminal::lines(&applied["written"]);
        if !written.is_empty() {
            println!("  {} brought back from the agent's copy: {}", st.paint("2", "↳"), written.join(", "));
        }
        println!("  {} {notice}\n", st.paint("2", "→"));
        sessions.push(s);
    }
    summary(&c, &sessions, &st).await?;
    println!(
        "Files the agent wrote are in {}. Next: `paddock up --repo agents-repo-template` and `paddock session run …`.",
        workspace.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn summary(c: &Client, sessions: &[Value], st: &Style) -> anyhow::Result<()> {
    println!("{}", st.paint("1", "Cost"));
    let mut total = 0.0;
    for s in sessions {
        let cost = s["usage"]["costUsd"].as_f64().unwrap_or(0.0);
        total += cost;
        println!(
            "  {:<14} {:<13} {:<10} ${:.4}  ({} in / {} out tokens)",
            field(s, "id"),
            field(s, "agent"),
            field(s, "phase"),
            cost,
            s["usage"]["inputTokens"].as_u64().unwrap_or(0),
            s["usage"]["outputTokens"].as_u64().unwrap_or(0)
        );
    }
    println!("  total ${total:.4}\n");
    let audit = c.get("/v1/audit").await?;
    let rows = audit.as_array().cloned().unwrap_or_default();
    let count = |v: &str| rows.iter().filter(|r| r["verdict"] == v).count();
    println!("{}", st.paint("1", "Audit log"));
    println!(
        "  {} decisions: {} allowed, {} denied, {} asked a human",
        rows.len(),
        count("allow"),
        count("deny"),
        count("ask")
    );
    for r in rows.iter().filter(|r| r["verdict"] == "deny" || r["verdict"] == "ask" || r["decided_by"].is_string()) {
        let who = r["decided_by"].as_str().map(|b| format!(" (decided by {})", terminal::line(b))).unwrap_or_default();
        let reason: String = r["reason"].as_str().unwrap_or("").chars().take(110).collect();
        println!(
            "  {:<5} {:<12} {:<13} {}{}",
            field(r, "verdict"),
            field(r, "phase"),
            field(r, "policy"),
            terminal::line(&reason),
            who
        );
    }
    println!();
    Ok(())
}
