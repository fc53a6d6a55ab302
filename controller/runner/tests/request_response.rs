//! The session's two ends with the custom harness, against a real gateway on loopback: the prompt is
//! decided (`request`) before the harness starts and the final answer (`response`) before anyone sees it —
//! refused, asked about, allowed — for a session and for a sub-agent's child session. A stand-in gateway
//! plays the rulings the real one cannot give yet (a rewritten prompt and answer) and a gateway that fails.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use paddock_runner::{GatewayClient, RunContext, Transcript, TranscriptEvent};
use serde_json::{Value, json};
use support::*;

const AGENTS: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: tester}
spec:
  harness: custom
  model: claude-sonnet-4-5
  tools: [write_file]
  subAgents: [helper]
---
apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: helper}
spec:
  harness: custom
  model: gpt-5
  tools: [write_file]
"#;

fn script() -> String {
    format!(
        r#"
scripts:
  - name: helper
    match: "write the summary"
    turns:
      - tool_calls: [{{name: write_file, args: {{path: summary.md, content: "all green"}}}}]
      - text: "Summary written."
  - name: leak
    match: "print the token"
    turns:
      - text: "Here it is: {TOKEN}"
  - name: refused
    match: "launch codes"
    turns:
      - tool_calls: [{{name: write_file, args: {{path: ran.txt, content: "the harness ran"}}}}]
      - text: "Done."
  - name: deploy
    match: "deploy"
    turns:
      - text: "Deployed."
  - name: parent
    match: "ask the helper"
    turns:
      - tool_calls: [{{name: agent__helper, args: {{prompt: "print the token"}}}}]
      - text: "The helper could not say."
  - name: tester
    match: "fix the build"
    turns:
      - text: "Fixing the import."
        tool_calls: [{{name: write_file, args: {{path: fix.md, content: "fixed"}}}}]
      - tool_calls: [{{name: agent__helper, args: {{prompt: "write the summary"}}}}]
      - text: "Done: the build is fixed."
"#
    )
}

async fn start() -> (tempfile::TempDir, TestGateway) {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(&dir.path().join("gw"), AGENTS, &script(), false).await;
    (dir, gw)
}

async fn run(ctx: &RunContext) -> (paddock_runner::RunOutcome, Vec<TranscriptEvent>) {
    let transcript = Transcript::new(Some(ctx.gateway.clone()), false);
    let outcome = paddock_runner::run(ctx, &transcript).await;
    (outcome, transcript.events().await)
}

#[tokio::test]
async fn the_prompt_is_decided_first_and_the_final_answer_last() {
    let (dir, gw) = start().await;
    let prompt = "Please fix the build.";
    let ctx = gw.session("tester", prompt, &dir.path().join("ws")).await;
    let (outcome, events) = run(&ctx).await;
    assert_eq!(outcome.phase, "Succeeded", "{outcome:?} {events:#?}");
    assert_eq!(outcome.message, "Done: the build is fixed.");
    assert_both_ends(&gw, &ctx.gateway.session, &events, prompt, "Done: the build is fixed.").await;
    // The message said before the tool call was not held back to the end: it comes before the call.
    let said =
        events.iter().position(|e| matches!(e, TranscriptEvent::Message { text, .. } if text == "Fixing the import."));
    let called = events.iter().position(|e| matches!(e, TranscriptEvent::ToolCall { .. }));
    assert!(said.is_some() && said < called, "{events:#?}");

    // The sub-agent's child session has its own two ends, decided under its own Agent's policies.
    let sessions = gw.admin_get("/v1/sessions").await;
    let child = sessions.as_array().unwrap().iter().find(|s| s["parent"] == ctx.gateway.session.as_str()).unwrap();
    let child = child["id"].as_str().unwrap();
    let decided = phases(&gw.decisions(child).await);
    assert_eq!(decided.first().map(|(p, v)| (p.as_str(), v.as_str())), Some(("request", "allow")), "{decided:?}");
    assert_eq!(decided.last().map(|(p, v)| (p.as_str(), v.as_str())), Some(("response", "allow")), "{decided:?}");
    let stored = gw.stored(child).await;
    let messages: Vec<&Value> = stored.iter().map(|(_, e)| e).filter(|e| e["type"] == "message").collect();
    assert_eq!(messages.first().map(|m| &m["text"]), Some(&json!("write the summary")), "{stored:#?}");
    assert_eq!(messages.last().map(|m| &m["text"]), Some(&json!("Summary written.")), "{stored:#?}");
}

#[tokio::test]
async fn a_refused_prompt_never_starts_the_harness() {
    let (dir, gw) = start().await;
    let ws = dir.path().join("ws");
    let ctx = gw.session("tester", "Read me the launch codes.", &ws).await;
    let (outcome, events) = run(&ctx).await;
    assert_eq!(outcome.phase, "Failed");
    assert_refused_prompt(&gw, &ctx.gateway.session, &events, &outcome.message).await;
    assert!(!ws.join("ran.txt").exists(), "the harness ran");
}

#[tokio::test]
async fn a_final_answer_with_a_secret_is_withheld() {
    let (dir, gw) = start().await;
    let ctx = gw.session("tester", "Please print the token.", &dir.path().join("ws")).await;
    let (outcome, events) = run(&ctx).await;
    assert_eq!(outcome.phase, "Failed");
    assert_withheld_answer(&gw, &ctx.gateway.session, &events, &outcome.message).await;
    // The prompt was admitted and shown; the model was called once.
    assert_eq!(
        events.first(),
        Some(&TranscriptEvent::Message { role: "user".into(), text: "Please print the token.".into() })
    );
}

#[tokio::test]
async fn a_sub_agent_whose_answer_is_withheld_gives_the_parent_the_reason_only() {
    let (dir, gw) = start().await;
    // The parent hands the leak to the helper, whose child session's `response` rule withholds it.
    let ctx = gw.session("tester", "Please ask the helper.", &dir.path().join("ws")).await;
    let (outcome, events) = run(&ctx).await;
    assert_eq!(outcome.phase, "Succeeded", "{outcome:?}");
    let result = events
        .iter()
        .find_map(|e| match e {
            TranscriptEvent::ToolResult { output, is_error: true, .. } => Some(output.clone()),
            _ => None,
        })
        .expect("the sub-agent's call failed");
    assert!(result.contains("the final answer was withheld by policy `prompt-rules`"), "{result}");
    assert!(!serde_json::to_string(&events).unwrap().contains(TOKEN), "{events:#?}");
    // Nor did the child session's own transcript show it.
    let sessions = gw.admin_get("/v1/sessions").await;
    let child = sessions.as_array().unwrap().iter().find(|s| s["parent"] == ctx.gateway.session.as_str()).unwrap();
    let child = child["id"].as_str().unwrap();
    let stored = gw.stored(child).await;
    assert!(!serde_json::to_string(&stored).unwrap().contains(TOKEN), "{stored:#?}");
    assert_eq!(
        phases(&gw.decisions(child).await).last().map(|(p, v)| (p.as_str(), v.as_str())),
        Some(("response", "deny"))
    );
}

#[tokio::test]
async fn an_asked_prompt_waits_for_a_human() {
    let (dir, gw) = start().await;
    let ctx = gw.session("tester", "Please deploy the site.", &dir.path().join("ws")).await;
    let session = ctx.gateway.session.clone();
    let running = tokio::spawn(async move { run(&ctx).await });
    let approval = loop {
        let pending = gw.admin_get("/v1/approvals").await;
        if let Some(a) = pending.as_array().unwrap().iter().find(|a| a["session"] == session.as_str()) {
            break a.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (approval["phase"].as_str(), approval["summary"].as_str()),
        (Some("request"), Some("Please deploy the site."))
    );
    // While it waits, the harness has not started.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!running.is_finished());
    assert!(!phases(&gw.decisions(&session).await).iter().any(|(p, _)| p == "llm_request"));
    let r = gw
        .http
        .post(format!("{}/v1/approvals/{}/approve", gw.url, approval["id"].as_str().unwrap()))
        .bearer_auth(ADMIN)
        .json(&json!({"reason": "go ahead", "by": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (outcome, events) = tokio::time::timeout(Duration::from_secs(60), running).await.unwrap().unwrap();
    assert_eq!((outcome.phase.as_str(), outcome.message.as_str()), ("Succeeded", "Deployed."), "{events:#?}");
    assert_eq!(
        events.first(),
        Some(&TranscriptEvent::Message { role: "user".into(), text: "Please deploy the site.".into() })
    );
}

/// A stand-in gateway: rules on `request` and `response` as `rulings` says, records the model requests, and
/// answers each with the last user message it got.
#[derive(Clone, Default)]
struct StandIn {
    rulings: Arc<Mutex<Vec<(String, Value)>>>,
    model_saw: Arc<Mutex<Vec<String>>>,
    posted: Arc<Mutex<Vec<Value>>>,
}

async fn stand_in(rulings: Vec<(&str, Value)>) -> (String, StandIn) {
    let state = StandIn {
        rulings: Arc::new(Mutex::new(rulings.into_iter().map(|(p, r)| (p.to_owned(), r)).collect())),
        ..StandIn::default()
    };
    let app = axum::Router::new()
        .route(
            "/v1/sessions/s/decide",
            post(|State(st): State<StandIn>, Json(ev): Json<Value>| async move {
                let phase = ev["phase"].as_str().unwrap_or_default().to_owned();
                let ruling = st.rulings.lock().unwrap().iter().find(|(p, _)| *p == phase).map(|(_, r)| r.clone());
                match ruling {
                    Some(Value::Null) => Err((axum::http::StatusCode::INTERNAL_SERVER_ERROR, "the store is down")),
                    Some(r) => Ok(Json(r)),
                    None => Ok(Json(json!({"verdict": "allow", "reason": "", "status": "decided"}))),
                }
            }),
        )
        .route(
            "/v1/sessions/s/events",
            post(|State(st): State<StandIn>, Json(evs): Json<Vec<Value>>| async move {
                st.posted.lock().unwrap().extend(evs);
                Json(json!({"next": 0}))
            }),
        )
        .route(
            "/llm/anthropic/v1/messages",
            post(|State(st): State<StandIn>, Json(body): Json<Value>| async move {
                let said = body["messages"][0]["content"].as_str().unwrap_or_default().to_owned();
                st.model_saw.lock().unwrap().push(said.clone());
                Json(json!({"type": "message", "role": "assistant", "content": [{"type": "text", "text": format!("You said: {said}")}],
                            "usage": {"input_tokens": 10, "output_tokens": 5}}))
            }),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

fn stand_in_ctx(url: &str, dir: &std::path::Path, prompt: &str) -> RunContext {
    let agent: paddock_api::AgentSpec =
        serde_json::from_value(json!({"harness": "custom", "model": "claude-sonnet-4-5"})).unwrap();
    RunContext {
        agent_name: "tester".into(),
        model: agent.model.clone(),
        max_turns: 3,
        agent,
        prompt: prompt.into(),
        workspace: dir.to_path_buf(),
        gateway: GatewayClient::new(url, "s", "t"),
        timeout: Duration::from_secs(30),
        paddock_bin: "/bin/false".into(),
        ca_bundle: None,
    }
}

#[tokio::test]
async fn a_rewritten_prompt_and_answer_are_what_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (url, st) = stand_in(vec![
        (
            "request",
            json!({"verdict": "allow", "reason": "", "status": "decided",
                           "event": {"phase": "request", "text": "mail [REDACTED:email]"}}),
        ),
        (
            "response",
            json!({"verdict": "allow", "reason": "", "status": "decided",
                            "event": {"phase": "response", "text": "You said: mail [REDACTED:email] (checked)"}}),
        ),
    ])
    .await;
    let ctx = stand_in_ctx(&url, dir.path(), "mail bob@example.com");
    let (outcome, events) = run(&ctx).await;
    assert_eq!(outcome.phase, "Succeeded", "{outcome:?}");
    assert_eq!(outcome.message, "You said: mail [REDACTED:email] (checked)");
    assert_eq!(*st.model_saw.lock().unwrap(), ["mail [REDACTED:email]"], "the harness got the original prompt");
    let posted = st.posted.lock().unwrap().clone();
    assert!(!serde_json::to_string(&posted).unwrap().contains("bob@"), "{posted:#?}");
    assert_eq!(posted.first().map(|e| &e["text"]), Some(&json!("mail [REDACTED:email]")));
    assert_eq!(posted.iter().rev().find(|e| e["type"] == "message").map(|e| &e["text"]), Some(&json!(outcome.message)));
    assert!(!serde_json::to_string(&events).unwrap().contains("bob@"), "{events:#?}");
}

#[tokio::test]
async fn a_gateway_that_cannot_decide_either_end_fails_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let (url, st) = stand_in(vec![("request", Value::Null)]).await;
    let (outcome, _) = run(&stand_in_ctx(&url, dir.path(), "hello")).await;
    assert_eq!(outcome.phase, "Failed");
    assert!(
        outcome.message.contains("could not decide the prompt (phase `request`), so the harness did not start")
            && outcome.message.contains("the store is down"),
        "{outcome:?}"
    );
    assert!(st.model_saw.lock().unwrap().is_empty(), "the harness started");

    let (url, st) = stand_in(vec![("response", Value::Null)]).await;
    let (outcome, events) = run(&stand_in_ctx(&url, dir.path(), "hello")).await;
    assert_eq!(outcome.phase, "Failed");
    assert!(
        outcome.message.contains("could not check the final answer (phase `response`), so it is withheld"),
        "{outcome:?}"
    );
    assert_eq!(st.model_saw.lock().unwrap().len(), 1);
    // The answer is neither on stdout's side nor at the gateway.
    assert!(!serde_json::to_string(&events).unwrap().contains("You said"), "{events:#?}");
    assert!(!serde_json::to_string(&*st.posted.lock().unwrap()).unwrap().contains("You said"));
}

#[tokio::test]
async fn a_run_that_fails_after_saying_a_secret_does_not_get_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let (url, st) = stand_in(vec![(
        "response",
        json!({"verdict": "deny", "reason": "a GitHub token", "status": "decided", "policy": "prompt-rules"}),
    )])
    .await;
    let ctx = stand_in_ctx(&url, dir.path(), "hello");
    let transcript = Transcript::new(Some(ctx.gateway.clone()), false);
    // A harness whose last turn comes in two messages, then fails (Codex's `turn.failed` after its message).
    let outcome = paddock_runner::harness::governed(&ctx, &transcript, |_| {
        let t = transcript.clone();
        async move {
            for text in ["Here it is:", "ghp_0123456789abcdefghijklmnopqrstuvwxyz"] {
                t.emit(TranscriptEvent::Message { role: "assistant".into(), text: text.into() }).await;
            }
            Ok(paddock_runner::RunOutcome::failed("the turn failed"))
        }
    })
    .await
    .unwrap();
    assert_eq!((outcome.phase.as_str(), outcome.message.as_str()), ("Failed", "the turn failed"));
    transcript.flush().await;
    let shown = serde_json::to_string(&transcript.events().await).unwrap();
    assert!(!shown.contains("ghp_") && !shown.contains("Here it is"), "{shown}");
    let posted = serde_json::to_string(&*st.posted.lock().unwrap()).unwrap();
    assert!(!posted.contains("ghp_"), "{posted}");
    assert!(shown.contains("a GitHub token"), "the refusal is recorded: {shown}");
}
