//! Teams of agents with the custom harness against a real gateway on loopback and the scripted model: a
//! lead fans out four workers in one turn, three at a time (its `team.maxParallel`), each a child session
//! with its own token, policies and a share of the lead's budget; a worker that spends past its share is
//! stopped while the others finish; a worker consults its advisor model, both metered; the lead's cost is
//! the sum of the tree. The gateway's own bounds — live children across turns, depth, one approval inbox
//! for the tree — are checked through its API.

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::*;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const AGENTS: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: lead}
spec:
  harness: custom
  model: claude-sonnet-4-5
  subAgents: [worker]
  team: {maxParallel: 3, budgetShare: 0.3}
---
apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: worker}
spec:
  harness: custom
  model: claude-haiku-4-5
  tools: [shell]
  advisor: {model: claude-opus-4-1, instructions: Answer in one line., maxConsultations: 2}
  rules:
    - {name: ask-before-deploy, use: tool_denylist, with: {tools: [deploy]}, action: ask}
---
apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: outer}
spec:
  harness: custom
  model: claude-haiku-4-5
  subAgents: [inner]
  team: {maxParallel: 2, maxDepth: 2}
---
apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: inner}
spec:
  harness: custom
  model: claude-haiku-4-5
  subAgents: [outer]
"#;

/// Each worker's first turn waits 600 ms, so that the workers that run together overlap.
const SCRIPT: &str = r#"
scripts:
  - name: lead
    match: "Split the work"
    turns:
      - text: "Four workers, one task each."
        tool_calls:
          - {name: agent__worker, args: {prompt: "task one"}}
          - {name: agent__worker, args: {prompt: "task two"}}
          - {name: agent__worker, args: {prompt: "task three"}}
          - {name: agent__worker, args: {prompt: "task four"}}
        usage: {input_tokens: 2000, output_tokens: 100}
      - text: "All four reported back."
        usage: {input_tokens: 3000, output_tokens: 50}
  - name: one
    match: "task one"
    turns:
      - tool_calls: [{name: shell, args: {command: "echo one > one.txt"}}]
        delay_ms: 600
        usage: {input_tokens: 500, output_tokens: 50}
      - text: "one done"
        usage: {input_tokens: 600, output_tokens: 10}
  - name: two
    match: "task two"
    turns:
      - tool_calls: [{name: shell, args: {command: "echo two > two.txt"}}]
        delay_ms: 600
        usage: {input_tokens: 500, output_tokens: 100000}
      - text: "two done"
        usage: {input_tokens: 600, output_tokens: 10}
  - name: three
    match: "task three"
    turns:
      - tool_calls: [{name: consult_advisor, args: {question: "advise: which approach for task three?"}}]
        delay_ms: 600
        usage: {input_tokens: 500, output_tokens: 40}
      - text: "three done, as advised"
        usage: {input_tokens: 700, output_tokens: 10}
  - name: advisor
    match: "advise:"
    turns:
      - text: "Take approach B."
        usage: {input_tokens: 80, output_tokens: 8}
  - name: four
    match: "task four"
    turns:
      - tool_calls: [{name: shell, args: {command: "echo four > four.txt"}}]
        delay_ms: 600
        usage: {input_tokens: 500, output_tokens: 50}
      - text: "four done"
        usage: {input_tokens: 600, output_tokens: 10}
"#;

fn at(v: &Value, key: &str) -> OffsetDateTime {
    OffsetDateTime::parse(v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}")), &Rfc3339).unwrap()
}

fn first_prompt(gw_events: &[(String, Value)]) -> String {
    gw_events
        .iter()
        .find(|(_, e)| e["type"] == "message" && e["role"] == "user")
        .map(|(_, e)| e["text"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_fans_out_workers_in_parallel_within_its_cap_and_budget() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(dir.path(), AGENTS, SCRIPT, false).await;
    let ws = dir.path().join("ws");
    // The lead has a dollar; each worker gets 30% of what is left when it starts.
    let created: Value = gw
        .http
        .post(format!("{}/v1/sessions", gw.url))
        .bearer_auth(ADMIN)
        .json(&json!({"agent": "lead", "owner": "alice", "budgetUsd": 1.0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ctx = gw.session("lead", "Split the work in four.", &ws).await;
    ctx.gateway = paddock_runner::GatewayClient::new(
        &gw.url,
        created["id"].as_str().unwrap(),
        created["token"].as_str().unwrap(),
    );
    let lead = created["id"].as_str().unwrap().to_owned();
    let transcript = paddock_runner::Transcript::new(Some(ctx.gateway.clone()), false);
    let outcome = paddock_runner::run(&ctx, &transcript).await;
    assert_eq!(outcome.phase, "Succeeded", "{outcome:?}");

    let sessions: Vec<Value> = serde_json::from_value(gw.admin_get("/v1/sessions").await).unwrap();
    let workers: Vec<&Value> = sessions.iter().filter(|s| s["parent"] == lead.as_str()).collect();
    assert_eq!(workers.len(), 4, "{sessions:#?}");
    let mut by_task = BTreeMap::new();
    for w in &workers {
        let id = w["id"].as_str().unwrap();
        let info = gw.admin_get(&format!("/v1/sessions/{id}")).await;
        by_task.insert(first_prompt(&gw.stored(id).await), info);
    }
    let task = |t: &str| by_task.get(t).unwrap_or_else(|| panic!("no worker for `{t}`: {:?}", by_task.keys()));

    // Every worker's session ended. The one whose first answer cost more than its share was stopped there:
    // the command of that answer did not run, and it made no other model request; the others finished.
    for (t, info) in &by_task {
        assert!(info["endedAt"].is_string(), "{t}: {info}");
        assert_eq!(info["phase"], "Succeeded", "{t}: {info}");
    }
    let two = task("task two");
    assert!(two["reason"].as_str().unwrap().contains("Budget exhausted"), "{two}");
    assert_eq!(two["charges"].as_array().unwrap().len(), 1, "{two}");
    for (file, ran) in [("one.txt", true), ("two.txt", false), ("four.txt", true)] {
        assert_eq!(ws.join(file).exists(), ran, "{file}");
    }
    for t in ["task one", "task three", "task four"] {
        assert!(task(t)["reason"].as_str().unwrap().contains("done"), "{t}: {}", task(t));
    }

    // In parallel: three at once at some moment, never four (the cap), so the fourth started after one ended.
    let spans: Vec<(OffsetDateTime, OffsetDateTime)> =
        by_task.values().map(|i| (at(i, "createdAt"), at(i, "endedAt"))).collect();
    let most_at_once =
        spans.iter().map(|(start, _)| spans.iter().filter(|(s, e)| s <= start && start < e).count()).max();
    assert_eq!(most_at_once, Some(3), "{spans:?}");

    // Each worker's budget was its share of what the lead had left, and is its own hard limit.
    for info in by_task.values() {
        let budget = info["budgetUsd"].as_f64().unwrap_or_else(|| panic!("a worker's budget: {info}"));
        assert!(budget > 0.0 && budget <= 0.3, "{info}");
    }

    // The advisor was consulted through the gateway and metered on the worker's session, at its own model.
    let models: Vec<&str> =
        task("task three")["charges"].as_array().unwrap().iter().map(|c| c["model"].as_str().unwrap()).collect();
    assert!(models.contains(&"claude-opus-4-1") && models.contains(&"claude-haiku-4-5"), "{models:?}");

    // The lead's cost is the tree's: its own charges and every worker's.
    let lead_info = gw.admin_get(&format!("/v1/sessions/{lead}")).await;
    let charged =
        |info: &Value| info["charges"].as_array().unwrap().iter().map(|c| c["cost_usd"].as_f64().unwrap()).sum::<f64>();
    let tree: f64 = charged(&lead_info) + by_task.values().map(charged).sum::<f64>();
    let total = lead_info["usage"]["costUsd"].as_f64().unwrap();
    assert!((total - tree).abs() < 1e-9, "lead {total} vs tree {tree}");
    assert!(charged(task("task two")) > 0.3, "the over-budget worker's spend is on the ledger too");
}

async fn start_child(gw: &TestGateway, token: &str, parent: &str, agent: &str) -> reqwest::Response {
    gw.http
        .post(format!("{}/v1/sessions/{parent}/children", gw.url))
        .bearer_auth(token)
        .json(&json!({"agent": agent}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_gateway_bounds_live_children_depth_and_keeps_one_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(dir.path(), AGENTS, SCRIPT, false).await;
    let ctx = gw.session("lead", "p", &dir.path().join("ws")).await;
    let (lead, token) = (ctx.gateway.session.clone(), ctx.gateway.token.clone());

    // Live children count across turns: three started (and not ended) leave no room for a fourth.
    let mut children = Vec::new();
    for _ in 0..3 {
        let r = start_child(&gw, &token, &lead, "worker").await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        children.push((v["id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned()));
    }
    let r = start_child(&gw, &token, &lead, "worker").await;
    assert_eq!(r.status(), 429);
    let text = r.text().await.unwrap();
    assert!(text.contains("3 sub-agents alive") && text.contains("team.maxParallel"), "{text}");
    // A child ends itself (its own token; never another's); then there is room again.
    let end = |id: String, token: String| {
        gw.http
            .post(format!("{}/v1/sessions/{id}/end", gw.url))
            .bearer_auth(token)
            .json(&json!({"phase": "Succeeded", "reason": "done"}))
            .send()
    };
    let r = end(children[1].0.clone(), children[0].1.clone()).await.unwrap();
    assert_eq!(r.status(), 403, "a token ends no other session");
    let r = end(children[0].0.clone(), children[0].1.clone()).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(start_child(&gw, &token, &lead, "worker").await.status(), 201);
    // Concurrent starts cannot both take the last place.
    let end_one = end(children[1].0.clone(), children[1].1.clone()).await.unwrap();
    assert_eq!(end_one.status(), 200);
    let (a, b) = tokio::join!(start_child(&gw, &token, &lead, "worker"), start_child(&gw, &token, &lead, "worker"));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 429]);

    // One inbox: a worker's ask is listed with its lead's, by the lead's session.
    let (child, child_token) = children[2].clone();
    let asked: Value = gw
        .http
        .post(format!("{}/v1/sessions/{child}/decide?wait=false", gw.url))
        .bearer_auth(&child_token)
        .json(&json!({"phase": "tool_call", "tool": "deploy", "args": {}, "tool_id": "t1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(asked["status"], "pending", "{asked}");
    let inbox: Vec<Value> =
        serde_json::from_value(gw.admin_get(&format!("/v1/approvals?session={lead}")).await).unwrap();
    assert_eq!(inbox.len(), 1, "{inbox:#?}");
    assert_eq!(inbox[0]["session"], child.as_str());
    let other = gw.session("outer", "q", &dir.path().join("ws2")).await;
    let none: Vec<Value> =
        serde_json::from_value(gw.admin_get(&format!("/v1/approvals?session={}", other.gateway.session)).await)
            .unwrap();
    assert!(none.is_empty(), "another tree's inbox is its own: {none:#?}");

    // Depth: `outer` allows two levels below it; a third is refused, naming whose limit it is.
    let (root, root_token) = (other.gateway.session.clone(), other.gateway.token.clone());
    let v: Value = start_child(&gw, &root_token, &root, "inner").await.json().await.unwrap();
    let (d1, d1_token) = (v["id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned());
    let v: Value = start_child(&gw, &d1_token, &d1, "outer").await.json().await.unwrap();
    let (d2, d2_token) = (v["id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned());
    let r = start_child(&gw, &d2_token, &d2, "inner").await;
    assert_eq!(r.status(), 422);
    let text = r.text().await.unwrap();
    assert!(
        text.contains(&format!("would nest 3 deep below session `{root}`")) && text.contains("maxDepth is 2"),
        "{text}"
    );
}
