//! MCP tool calls of real harnesses, governed at the protocol: the REAL Claude Code and Codex CLIs and the custom harness,
//! each run by `paddock runner` against a real gateway (scripted model) with a remote MCP server — the stand-in
//! with Gmail-shaped tools — reached only through the gateway's `/mcp/google`. The model drafts a mail
//! (allowed: it runs and its result reaches the model), sends one (denied: the server never runs it) and
//! looks up a customer (the server runs it, but its result carries personal data and never reaches the
//! model). The stand-in's log, the model's requests and the audit log show it.

#[path = "../../gateway/tests/mcp_standin/mod.rs"]
mod mcp_standin;
mod support;

use mcp_standin::StandIn;
use support::*;

const SCRIPT: &str = r#"
scripts:
  - name: mail
    match: "mail the team"
    turns:
      - text: "Drafting the status mail, then sending it."
        tool_calls:
          - {name: mcp__google__gmail_create_draft, args: {to: "team", subject: "Status", body: "All green"}}
          - {name: mcp__google__gmail_send_message, args: {to: "team", subject: "Status", body: "All green"}}
        usage: {input_tokens: 900, output_tokens: 50}
      - text: "Looking up the customer."
        tool_calls:
          - {name: mcp__google__lookup_customer, args: {name: "Jane"}}
        usage: {input_tokens: 1000, output_tokens: 30}
      - text: "Done: drafted; sending is not allowed; the customer record was withheld."
        usage: {input_tokens: 1100, output_tokens: 20}
"#;

fn agents(url: &str) -> String {
    let agent = |name: &str, harness: &str| {
        format!(
            r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: {name}}}
spec:
  harness: {harness}
  model: claude-sonnet-4-5
  limits: {{maxTurns: 6, timeoutSeconds: 180}}
  mcpServers:
    - {{name: google, url: "{url}"}}
  rules:
    - {{name: mail, use: gmail}}
    - {{name: pii-results, use: deny_pii_in_llm_request, on: [tool_result], with: {{pii_types: [email, ssn]}}}}
"#
        )
    };
    // Codex speaks the Responses API: a gpt model, the same servers and rules.
    let codex = agent("codex-mail", "codex").replace("claude-sonnet-4-5", "gpt-5-codex");
    [agent("claude-mail", "claude-code"), agent("custom-mail", "custom"), codex].join("---\n")
}

struct Run {
    _dir: tempfile::TempDir,
    standin: StandIn,
    gw: TestGateway,
    session: String,
    run: RunnerRun,
}

async fn run(agent: &str, envs: &[(&str, &std::path::Path)]) -> Run {
    let standin = StandIn::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let agents = agents(&standin.url);
    let gw = TestGateway::start(&dir.join("gw"), &agents, SCRIPT).await;
    let (session, token) = gw.session(agent).await;
    let agent_file = dir.join("agent.yaml");
    let doc = agents.split("---\n").find(|d| d.contains(&format!("name: {agent}}}"))).unwrap().to_owned();
    std::fs::write(&agent_file, doc).unwrap();
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let run = run_runner(&agent_file, "Please mail the team the status.", &ws, &gw.url, &session, &token, envs).await;
    Run { _dir: tmp, standin, gw, session, run }
}

/// What every harness must show.
async fn check(harness: &str, r: &Run) {
    let (standin, gw, session, run) = (&r.standin, &r.gw, r.session.as_str(), &r.run);
    assert!(run.success, "{harness}: the session failed: {:#?}\n{}", run.events, run.stderr);
    // Only the allowed calls ran at the server; the send never reached it.
    assert_eq!(standin.ran(), ["gmail_create_draft", "lookup_customer"], "{harness}");
    let requests: Vec<String> = gw.upstream.calls().into_iter().map(|c| c.request).collect();
    // The draft's result reached the model; the customer record never did, in any request.
    assert!(requests.iter().any(|r| r.contains("draft-7")), "{harness}: the draft's result never reached the model");
    for r in &requests {
        assert!(!r.contains("078-05-1120") && !r.contains("jane.roe@example.com"), "{harness}: PII reached the model");
    }
    assert!(!format!("{:?}", run.events).contains("078-05-1120"), "{harness}: PII in the transcript");
    let audit = gw.audit(session).await;
    let verdicts = |tool: &str| -> Vec<(String, String)> {
        audit
            .iter()
            .filter(|r| r["tool"] == tool)
            .map(|r| (r["phase"].as_str().unwrap_or("").to_owned(), r["verdict"].as_str().unwrap_or("").to_owned()))
            .collect()
    };
    let send = verdicts("mcp__google__gmail_send_message");
    assert!(send.iter().any(|(_, v)| v == "deny") && send.iter().all(|(_, v)| v != "allow"), "{harness}: {send:?}");
    let lookup = verdicts("mcp__google__lookup_customer");
    assert!(lookup.contains(&("tool_result".into(), "deny".into())), "{harness}: {lookup:?}");
    let draft = verdicts("mcp__google__gmail_create_draft");
    assert!(draft.contains(&("tool_call".into(), "allow".into())), "{harness}: {draft:?}");
    // Each call that ran was counted once, though the response gate, a hook and the MCP endpoint all saw it.
    let info = gw.session_info(session).await;
    assert_eq!(info["toolCalls"], 2, "{harness}: {info}");
    // Coverage, from the audit log: every MCP call the model asked for has a decision naming server and tool.
    let asked = ["mcp__google__gmail_create_draft", "mcp__google__gmail_send_message", "mcp__google__lookup_customer"];
    let decided = asked.iter().filter(|t| !verdicts(t).is_empty()).count();
    assert_eq!(decided, asked.len(), "{harness}: {audit:#?}");
    let at_endpoint = audit
        .iter()
        .filter(|r| r["phase"] == "tool_result" && r["tool"].as_str().is_some_and(|t| t.starts_with("mcp__")))
        .count();
    println!(
        "MCP coverage ({harness}): tool calls decided {decided} / {} = 100%; ran at the server {}; results decided {at_endpoint}",
        asked.len(),
        standin.ran().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_custom_harness_calls_mcp_tools_through_the_gateway() {
    check("custom", &run("custom-mail", &[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_calls_mcp_tools_through_the_gateway() {
    let bin = cli("claude", "PADDOCK_CLAUDE_BIN");
    check("claude-code", &run("claude-mail", &[("PADDOCK_CLAUDE_BIN", &bin)]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_calls_mcp_tools_through_the_gateway() {
    let bin = cli("codex", "PADDOCK_CODEX_BIN");
    check("codex", &run("codex-mail", &[("PADDOCK_CODEX_BIN", &bin)]).await).await;
}

/// The second scenario: a stdio server from npm (`@modelcontextprotocol/server-filesystem`) the harness starts
/// inside the sandbox, and an ask. The model reads a file (allowed: its text reaches the model), writes one
/// (denied: the file never appears), then opens an issue on the remote server, which a rule asks a human
/// about: the call is held until the test approves it, then runs.
fn files_script(ws: &std::path::Path) -> String {
    format!(
        r#"
scripts:
  - name: files
    match: "read the notes"
    turns:
      - text: "Reading the notes, then writing mine."
        tool_calls:
          - {{name: mcp__files__read_text_file, args: {{path: "{ws}/notes.txt"}}}}
          - {{name: mcp__files__write_file, args: {{path: "{ws}/evil.txt", content: "x"}}}}
        usage: {{input_tokens: 900, output_tokens: 50}}
      - text: "Filing the issue."
        tool_calls:
          - {{name: mcp__google__create_issue, args: {{owner: acme, repo: web, title: "Notes"}}}}
        usage: {{input_tokens: 1000, output_tokens: 30}}
      - text: "Done: notes read, the issue filed."
        usage: {{input_tokens: 1100, output_tokens: 20}}
"#,
        ws = ws.display()
    )
}

fn files_agent(name: &str, harness: &str, model: &str, url: &str, ws: &std::path::Path) -> String {
    let server = repo_root().join(".ci/npm/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    assert!(server.exists(), "{} is missing: run .ci/install-clis.sh", server.display());
    format!(
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: {name}}}
spec:
  harness: {harness}
  model: {model}
  limits: {{maxTurns: 6, timeoutSeconds: 180}}
  mcpServers:
    - {{name: google, url: "{url}"}}
    - {{name: files, command: [node, "{server}", "{ws}"]}}
  rules:
    - {{name: no-writes, use: tool_denylist, with: {{tools: [mcp__files__write_file]}}}}
    - {{name: issues-asked, use: tool_denylist, with: {{tools: [mcp__google__create_issue]}}, action: ask}}
"#,
        server = server.display(),
        ws = ws.display()
    )
}

async fn files_run(harness: &str, model: &str, envs: &[(&str, &std::path::Path)]) {
    let standin = StandIn::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("notes.txt"), "hello from the notes file\n").unwrap();
    let name = format!("files-{harness}");
    let agent = files_agent(&name, harness, model, &standin.url, &ws);
    let gw = TestGateway::start(&tmp.path().join("gw"), &agent, &files_script(&ws)).await;
    let (session, token) = gw.session(&name).await;
    let agent_file = tmp.path().join("agent.yaml");
    std::fs::write(&agent_file, &agent).unwrap();
    // A human approves what is asked about while the session runs (and only then can the held call run).
    let approver = {
        let (url, client, session) = (gw.url.clone(), gw.client.clone(), session.clone());
        tokio::spawn(async move {
            let mut approved = Vec::new();
            loop {
                let list: serde_json::Value = client
                    .get(format!("{url}/v1/approvals"))
                    .bearer_auth(ADMIN)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                for a in list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|a| a["session"] == session && a["status"] == "pending")
                {
                    let id = a["id"].as_str().unwrap().to_owned();
                    let r = client
                        .post(format!("{url}/v1/approvals/{id}/approve"))
                        .bearer_auth(ADMIN)
                        .json(&serde_json::json!({"reason": "fine"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    approved.push(a["rule"].as_str().unwrap_or_default().to_owned());
                }
                if approved.len() >= 8 {
                    return approved;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };
    let run = run_runner(&agent_file, "Please read the notes.", &ws, &gw.url, &session, &token, envs).await;
    assert!(run.success, "{harness}: {:#?}\n{}", run.events, run.stderr);
    approver.abort();
    let approvals: serde_json::Value = gw
        .client
        .get(format!("{}/v1/approvals?status=all", gw.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ours: Vec<&serde_json::Value> =
        approvals.as_array().unwrap().iter().filter(|a| a["session"] == session).collect();
    assert!(
        !ours.is_empty() && ours.iter().all(|a| a["rule"] == "issues-asked" && a["status"] == "approved"),
        "{harness}: {ours:#?}"
    );
    println!(
        "{harness}: the held call needed {} approval(s), at {:?}",
        ours.len(),
        ours.iter().map(|a| a["phase"].clone()).collect::<Vec<_>>()
    );
    // The read ran in the sandbox and its text reached the model; the denied write never ran.
    let requests: Vec<String> = gw.upstream.calls().into_iter().map(|c| c.request).collect();
    assert!(
        requests.iter().any(|r| r.contains("hello from the notes file")),
        "{harness}: the read's result never reached the model"
    );
    assert!(!ws.join("evil.txt").exists(), "{harness}: the denied write ran");
    // The held call ran once approved.
    assert_eq!(standin.ran(), ["create_issue"], "{harness}");
    let audit = gw.audit(&session).await;
    assert!(
        audit.iter().any(|r| r["tool"] == "mcp__files__write_file" && r["verdict"] == "deny"),
        "{harness}: {audit:#?}"
    );
    assert!(
        audit.iter().any(|r| r["tool"] == "mcp__google__create_issue" && r["verdict"] == "ask"),
        "{harness}: {audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_custom_harness_runs_a_stdio_server_and_waits_for_an_approval() {
    files_run("custom", "claude-sonnet-4-5", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_runs_a_stdio_server_and_waits_for_an_approval() {
    let bin = cli("claude", "PADDOCK_CLAUDE_BIN");
    files_run("claude-code", "claude-sonnet-4-5", &[("PADDOCK_CLAUDE_BIN", &bin)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_runs_a_stdio_server_and_waits_for_an_approval() {
    let bin = cli("codex", "PADDOCK_CODEX_BIN");
    files_run("codex", "gpt-5-codex", &[("PADDOCK_CODEX_BIN", &bin)]).await;
}
