//! Agent and Policy reconcilers: the status each writes (by server-side apply), and no write when nothing
//! changed.

mod support;

use std::sync::Arc;

use paddock_api::{Agent, Policy};
use serde_json::{Value as Json, json};
use support::*;

fn agent(spec: Json, status: Json) -> Agent {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "Agent",
        "metadata": {"name": "coder", "namespace": NS, "generation": 3, "labels": {"team": "web"},
                     "annotations": {"paddock.dev/revision": "main@sha1:abc"}},
        "spec": spec, "status": status
    }))
    .unwrap()
}

fn policy(name: &str, spec: Json) -> Policy {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "Policy",
        "metadata": {"name": name, "namespace": NS, "generation": 2, "annotations": {"paddock.dev/revision": "main@sha1:abc"}},
        "spec": spec,
        "status": {"decisions": {"allow": 40, "deny": 2, "ask": 1}}
    }))
    .unwrap()
}

fn echo_object(s: &Seen) -> (u16, Json) {
    let mut obj = s.body.clone();
    obj["metadata"] = json!({"name": s.path.split('/').nth_back(1).unwrap(), "namespace": NS});
    obj["spec"] =
        if s.path.contains("/agents/") { json!({"harness": "codex", "model": "gpt-5"}) } else { json!({"rules": []}) };
    (200, obj)
}

fn only_status_patch(api: &FakeApi, path: &str) -> Json {
    let reqs = api.requests();
    assert_eq!(api.lines(), [format!("PATCH {path}")]);
    assert!(reqs[0].is_ssa(), "{:?}", reqs[0]);
    reqs[0].body["status"].clone()
}

const AGENT_STATUS: &str = "/apis/paddock.dev/v1alpha1/namespaces/team-a/agents/coder/status";

#[tokio::test]
async fn an_agent_reports_its_revision_and_governing_policies() {
    let (client, api) = fake_api(Arc::new(echo_object));
    let policies = vec![
        policy("baseline", json!({"rules": [{"name": "b", "use": "cost_budget", "with": {"max_cost_usd": 5}}]})),
        policy("web-only", json!({"selector": {"matchLabels": {"team": "web"}}, "rules": []})),
        policy("other-team", json!({"selector": {"matchLabels": {"team": "data"}}, "rules": []})),
    ];
    let ctx = context_with_policies(client, "/tmp".into(), policies);
    let a = agent(json!({"harness": "codex", "model": "gpt-5", "policies": ["baseline"]}), Json::Null);
    paddock_operator::agent::reconcile(Arc::new(a), ctx).await.unwrap();
    let status = only_status_patch(&api, AGENT_STATUS);
    assert_eq!(status["sourceRevision"], "main@sha1:abc");
    assert_eq!(status["policies"], json!(["baseline", "web-only"]), "named first, then selected; not other teams'");
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
}

#[tokio::test]
async fn invalid_inline_rules_make_an_agent_not_ready_with_the_validators_message() {
    let (client, api) = fake_api(Arc::new(echo_object));
    let ctx = context(client, "/tmp".into());
    let spec = json!({"harness": "codex", "model": "gpt-5",
                      "rules": [{"name": "budget", "use": "cost_budget", "with": {"max_cost": 5}}],
                      "policies": ["missing"]});
    paddock_operator::agent::reconcile(Arc::new(agent(spec, Json::Null)), ctx).await.unwrap();
    let status = only_status_patch(&api, AGENT_STATUS);
    let ready = &status["conditions"][0];
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("InvalidRules")));
    let msg = ready["message"].as_str().unwrap();
    assert!(msg.contains("rule 0 (budget): with.max_cost: unknown parameter `max_cost`"), "{msg}");
    assert!(msg.contains("Policy `missing` does not exist"), "{msg}");
    assert_eq!(status["conditions"][1]["type"], "Stalled");
}

#[tokio::test]
async fn an_unchanged_agent_is_not_written() {
    let (client, api) = fake_api(Arc::new(echo_object));
    let ctx = context(client.clone(), "/tmp".into());
    let spec = json!({"harness": "codex", "model": "gpt-5"});
    paddock_operator::agent::reconcile(Arc::new(agent(spec.clone(), Json::Null)), ctx.clone()).await.unwrap();
    let written = only_status_patch(&api, AGENT_STATUS);
    // The next wake-up (caused by that very write) sees the status it wrote: no second write, no loop.
    paddock_operator::agent::reconcile(Arc::new(agent(spec, written)), ctx).await.unwrap();
    assert_eq!(api.lines().len(), 1);
}

const POLICY_STATUS: &str = "/apis/paddock.dev/v1alpha1/namespaces/team-a/policies/budget/status";

#[tokio::test]
async fn a_policy_with_bad_parameters_is_not_ready_and_its_decision_counts_are_left_alone() {
    let (client, api) = fake_api(Arc::new(echo_object));
    let ctx = context(client, "/tmp".into());
    let p =
        policy("budget", json!({"rules": [{"name": "cap", "use": "cost_budget", "with": {"max_cost_usd": "ten"}}]}));
    paddock_operator::policy::reconcile(Arc::new(p), ctx).await.unwrap();
    let status = only_status_patch(&api, POLICY_STATUS);
    assert!(status.get("decisions").is_none(), "the gateway owns decision counts: {status}");
    assert_eq!(status["ruleCount"], 1);
    assert_eq!(status["sourceRevision"], "main@sha1:abc");
    let ready = &status["conditions"][0];
    assert_eq!(ready["reason"], "InvalidRules");
    assert!(ready["message"].as_str().unwrap().starts_with("rule 0 (cap): with.max_cost_usd:"), "{ready}");
}

#[tokio::test]
async fn a_valid_policy_is_ready_and_then_quiet() {
    let (client, api) = fake_api(Arc::new(echo_object));
    let ctx = context(client, "/tmp".into());
    let mut p =
        policy("budget", json!({"rules": [{"name": "cap", "use": "cost_budget", "with": {"max_cost_usd": 10}}]}));
    paddock_operator::policy::reconcile(Arc::new(p.clone()), ctx.clone()).await.unwrap();
    let status = only_status_patch(&api, POLICY_STATUS);
    assert_eq!(status["conditions"][0]["status"], "True");
    let mut merged = serde_json::to_value(p.status.take().unwrap()).unwrap();
    merged.as_object_mut().unwrap().extend(status.as_object().unwrap().clone());
    p.status = Some(serde_json::from_value(merged).unwrap());
    paddock_operator::policy::reconcile(Arc::new(p), ctx).await.unwrap();
    assert_eq!(api.lines().len(), 1, "no second write");
}
