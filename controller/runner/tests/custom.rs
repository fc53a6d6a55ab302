//! The custom harness against a real gateway on loopback with the scripted provider: allowed commands run,
//! a force push is removed before the runner sees it, files are written, a sub-agent runs as a child
//! session whose cost rolls up, and every LLM request and tool call has a decision in the audit log.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use paddock_gateway::config::{GatewayConfig, ProviderConfig, SecretSource};
use paddock_gateway::server;
use paddock_runner::{GatewayClient, RunContext, Transcript, TranscriptEvent};
use serde_json::{Value, json};

const ADMIN: &str = "admin-for-tests";

const REPO: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: tester}
spec:
  harness: custom
  model: claude-sonnet-4-5
  instructions: Fix the build.
  tools: [shell, write_file, read_file]
  subAgents: [helper]
---
apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: helper}
spec:
  harness: custom
  model: gpt-5
  tools: [write_file]
---
apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: github-rules}
spec:
  rules:
    - name: no-force-push
      use: github
      with: {read_all: true, write_repos: [acme/webshop], write_branches: ["*"], deny_force_push: true}
"#;

const SCRIPT: &str = r#"
scripts:
  - name: helper
    match: "write the summary"
    turns:
      - tool_calls: [{name: write_file, args: {path: summary.md, content: "all green"}}]
        usage: {input_tokens: 300, output_tokens: 30}
      - text: "Summary written."
        usage: {input_tokens: 400, output_tokens: 10}
  - name: tester
    match: "fix the build"
    turns:
      - text: "Running the build."
        tool_calls: [{name: shell, args: {command: "echo ran > allowed.txt"}}]
        usage: {input_tokens: 1000, output_tokens: 50}
      - tool_calls: [{name: write_file, args: {path: notes/fix.md, content: "fixed the import"}}]
        usage: {input_tokens: 1100, output_tokens: 50}
      - tool_calls: [{name: agent__helper, args: {prompt: "write the summary"}}]
        usage: {input_tokens: 1200, output_tokens: 40}
      - tool_calls: [{name: shell, args: {command: "git push --force origin main && touch pushed.txt"}}]
        usage: {input_tokens: 1300, output_tokens: 40}
      - text: "Done."
"#;

async fn gateway(dir: &Path) -> (String, Arc<paddock_gateway::Gateway>) {
    std::fs::create_dir_all(dir.join("repo")).unwrap();
    std::fs::write(dir.join("repo/agents.yaml"), REPO).unwrap();
    std::fs::write(dir.join("script.yaml"), SCRIPT).unwrap();
    std::fs::write(dir.join("admin"), ADMIN).unwrap();
    let mut cfg = GatewayConfig {
        data_dir: Some(dir.join("data")),
        repo: Some(dir.join("repo")),
        admin_token: Some(SecretSource { env: None, file: Some(dir.join("admin")) }),
        ..GatewayConfig::default()
    };
    cfg.providers.push(ProviderConfig::scripted(dir.join("script.yaml"), &["*"]));
    let (gw, url, _) = server::serve_loopback(&cfg).await.unwrap();
    (url, gw)
}

#[tokio::test]
async fn a_custom_agent_is_governed_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (url, gw) = gateway(dir.path()).await;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{url}/v1/sessions"))
        .bearer_auth(ADMIN)
        .json(&json!({"agent": "tester", "owner": "alice"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, token) = (created["id"].as_str().unwrap(), created["token"].as_str().unwrap());
    let workspace = dir.path().join("ws");
    std::fs::create_dir_all(&workspace).unwrap();
    let agent = gw.policies().agent("default", "tester").unwrap().spec.clone();
    let ctx = RunContext {
        agent_name: "tester".into(),
        model: agent.model.clone(),
        max_turns: 10,
        agent,
        prompt: "Please fix the build and push it.".into(),
        workspace: std::fs::canonicalize(&workspace).unwrap(),
        gateway: GatewayClient::new(&url, id, token),
        timeout: Duration::from_secs(60),
        paddock_bin: "paddock".into(),
        ca_bundle: None,
    };
    let transcript = Transcript::new(Some(ctx.gateway.clone()), false);
    let outcome = paddock_runner::run(&ctx, &transcript).await;
    assert_eq!(outcome.phase, "Succeeded", "{outcome:?}");

    // On disk: the allowed command ran, the files were written (one by the sub-agent), the push never ran.
    assert_eq!(std::fs::read_to_string(workspace.join("allowed.txt")).unwrap(), "ran\n");
    assert_eq!(std::fs::read_to_string(workspace.join("notes/fix.md")).unwrap(), "fixed the import");
    assert_eq!(std::fs::read_to_string(workspace.join("summary.md")).unwrap(), "all green");
    assert!(!workspace.join("pushed.txt").exists(), "the denied command must not run");

    // The transcript has every event, and the gateway serves the same.
    let events = transcript.events().await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            TranscriptEvent::Message { .. } => "message",
            TranscriptEvent::ToolCall { .. } => "tool_call",
            TranscriptEvent::ToolResult { .. } => "tool_result",
            TranscriptEvent::Verdict { .. } => "verdict",
            TranscriptEvent::Usage { .. } => "usage",
            TranscriptEvent::Error { .. } => "error",
            TranscriptEvent::Done { .. } => "done",
        })
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "tool_call").count(), 3, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "tool_result").count(), 3);
    // Four model turns: the fourth asked only for the push, which was removed, so the turn ended there.
    assert_eq!(kinds.iter().filter(|k| **k == "usage").count(), 4);
    assert_eq!(kinds.first(), Some(&"message"));
    assert_eq!(kinds.last(), Some(&"done"));
    let blocked = events.iter().any(
        |e| matches!(e, TranscriptEvent::Message { text, .. } if text.contains("was blocked by policy `github-rules`")),
    );
    assert!(blocked, "the model's last turn says the push was blocked: {events:#?}");
    let served: Vec<Value> = http
        .get(format!("{url}/v1/sessions/{id}/events"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The gateway holds what the runner reported, as the runner's; decisions and the end it writes itself
    // (the runner's own verdicts and `done` stay local: the gateway refuses them from a runner).
    let posted: Vec<Value> = events.iter().filter(|e| e.posted()).map(|e| serde_json::to_value(e).unwrap()).collect();
    let from_runner: Vec<Value> = served
        .iter()
        .map(|r| r["event"].clone())
        .filter(|e| e["source"] == "runner")
        .map(|mut e| {
            e.as_object_mut().unwrap().remove("source");
            e
        })
        .collect();
    assert_eq!(from_runner, posted);
    assert_eq!(served[0]["seq"], 0);
    let denial = served
        .iter()
        .map(|r| &r["event"])
        .find(|e| e["source"] == "gateway" && e["type"] == "verdict")
        .expect("the gateway wrote the push's denial");
    assert_eq!((&denial["policy"], &denial["verdict"]), (&json!("github-rules"), &json!("deny")));
    let r = http
        .post(format!("{url}/v1/sessions/{id}/end"))
        .bearer_auth(ADMIN)
        .json(&json!({"phase": "Succeeded", "reason": "done"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let served: Vec<Value> = http
        .get(format!("{url}/v1/sessions/{id}/events"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = &served.last().unwrap()["event"];
    assert_eq!((&last["type"], &last["source"]), (&json!("done"), &json!("gateway")));

    // Cost: the sub-agent's spend rolls up into the parent's.
    let sessions: Vec<Value> =
        http.get(format!("{url}/v1/sessions")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    let child = sessions.iter().find(|s| s["parent"] == id).expect("a child session for the sub-agent");
    assert_eq!(child["agent"], "helper");
    let parent = sessions.iter().find(|s| s["id"] == id).unwrap();
    let (pc, cc) = (parent["usage"]["costUsd"].as_f64().unwrap(), child["usage"]["costUsd"].as_f64().unwrap());
    assert!(cc > 0.0 && pc > cc, "parent ${pc} includes child ${cc}");

    // Governance coverage from the audit log: every model request and every tool call the model asked for
    // (including the removed push and the sub-agent's) has a decision.
    let audit: Vec<Value> =
        http.get(format!("{url}/v1/audit")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    let llm_decided = audit.iter().filter(|a| a["phase"] == "llm_request").count();
    let mut charges = 0;
    for s in [id, child["id"].as_str().unwrap()] {
        let v: Value =
            http.get(format!("{url}/v1/sessions/{s}")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        charges += v["charges"].as_array().unwrap().len();
    }
    assert_eq!(charges, 6, "four turns of the tester and two of the helper reached the model");
    assert_eq!(llm_decided, charges, "LLM requests decided / total");
    // Each call the model asked for is decided at `llm_response` in the gateway before the runner sees it;
    // those allowed are decided again at `tool_call` (the runner asks before running them).
    let asked = audit.iter().filter(|a| a["phase"] == "llm_response").count();
    assert_eq!(asked, 5, "tool calls decided / total (4 by the tester, 1 by the helper)");
    let push = audit.iter().find(|a| a["verdict"] == "deny").unwrap();
    assert_eq!((push["phase"].as_str(), push["policy"].as_str()), (Some("llm_response"), Some("github-rules")));
    assert_eq!(audit.iter().filter(|a| a["phase"] == "tool_call" && a["verdict"] == "allow").count(), 4);
    // Call by call: every tool call in the transcript has its decision, by id.
    for e in &events {
        if let TranscriptEvent::ToolCall { id, .. } = e {
            assert!(
                audit.iter().any(|a| a["phase"] == "tool_call" && a["tool_id"] == id.as_str()),
                "no tool_call decision for {id}"
            );
        }
    }
    let results = audit.iter().filter(|a| a["phase"] == "tool_result").count();
    assert_eq!(results, 4, "each result that went back to a model was checked");
}

#[tokio::test]
async fn an_agent_that_never_finishes_stops_at_its_turn_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (url, gw) = gateway(dir.path()).await;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{url}/v1/sessions"))
        .bearer_auth(ADMIN)
        .json(&json!({"agent": "tester", "owner": "alice"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let workspace = std::fs::canonicalize(dir.path()).unwrap();
    let agent = gw.policies().agent("default", "tester").unwrap().spec.clone();
    let ctx = RunContext {
        agent_name: "tester".into(),
        model: agent.model.clone(),
        max_turns: 2,
        agent,
        prompt: "fix the build".into(),
        workspace,
        gateway: GatewayClient::new(&url, created["id"].as_str().unwrap(), created["token"].as_str().unwrap()),
        timeout: Duration::from_secs(60),
        paddock_bin: "paddock".into(),
        ca_bundle: None,
    };
    let transcript = Transcript::new(None, false);
    let outcome = paddock_runner::run(&ctx, &transcript).await;
    assert_eq!(outcome.phase, "Failed");
    assert!(outcome.message.contains("all 2 turns"), "{outcome:?}");
    // A gateway that is gone fails the session rather than running tools unchecked.
    let ctx = RunContext { gateway: GatewayClient::new("http://127.0.0.1:9", "s", "t"), ..ctx };
    let outcome = paddock_runner::run(&ctx, &Transcript::new(None, false)).await;
    assert_eq!(outcome.phase, "Failed");
    assert!(outcome.message.contains("gateway unreachable"), "{outcome:?}");
}
