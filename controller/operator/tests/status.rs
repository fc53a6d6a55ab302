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

fn counts(allow: u64, deny: u64, ask: u64) -> paddock_api::policy::DecisionCounts {
    paddock_api::policy::DecisionCounts { allow, deny, ask }
}

#[tokio::test]
async fn decision_counts_are_written_under_their_own_field_manager_only_where_they_changed() {
    let (client, api) = fake_api(Arc::new(echo_object));
    // `policy()` shows {allow: 40, deny: 2, ask: 1}.
    let rules = json!({"rules": []});
    let policies = vec![
        Arc::new(policy("budget", rules.clone())),
        Arc::new(policy("unchanged", rules.clone())),
        Arc::new(policy("forgotten", rules)),
    ];
    let gateway = [
        (format!("{NS}/budget"), counts(41, 3, 2)),
        (format!("{NS}/unchanged"), counts(40, 2, 1)),
        ("other-team/budget".to_owned(), counts(9, 9, 9)),
    ]
    .into_iter()
    .collect();
    let written = paddock_operator::policy::write_decisions(&client, &policies, &gateway, None).await;
    assert_eq!(written, 2);
    let reqs = api.requests();
    assert_eq!(
        api.lines(),
        [POLICY_STATUS.to_owned(), POLICY_STATUS.replace("/budget/", "/forgotten/")].map(|p| format!("PATCH {p}"))
    );
    for r in &reqs {
        assert_eq!(r.query.get("fieldManager").map(String::as_str), Some("paddock-decisions"), "{r:?}");
        assert_eq!(r.query.get("force").map(String::as_str), Some("true"));
        assert_eq!(r.content_type.as_deref(), Some("application/apply-patch+yaml"));
    }
    // Only the counts: the reconciler's conditions and rule count are not this writer's to apply.
    assert_eq!(reqs[0].body["status"], json!({"decisions": {"allow": 41, "deny": 3, "ask": 2}}));
    // A Policy the gateway has no decisions for decided nothing there: zeros.
    assert_eq!(reqs[1].body["status"], json!({"decisions": {"allow": 0, "deny": 0, "ask": 0}}));
}

#[tokio::test]
async fn the_policy_status_shows_how_many_gateway_replicas_enforce_the_last_push() {
    let (client, api) = fake_api(Arc::new(echo_object));
    // Counts unchanged ({allow: 40, deny: 2, ask: 1}); two of three replicas have the push so far.
    let mut p = policy("budget", json!({"rules": []}));
    let gateway = [(format!("{NS}/budget"), counts(40, 2, 1))].into_iter().collect();
    let partial = paddock_api::policy::PolicyEnforcement { revision: "r-2".into(), replicas: 3, enforcing: 2 };
    let policies = vec![Arc::new(p.clone())];
    assert_eq!(paddock_operator::policy::write_decisions(&client, &policies, &gateway, Some(&partial)).await, 1);
    let body = &api.requests()[0].body["status"];
    assert_eq!(body["enforcement"], json!({"revision": "r-2", "replicas": 3, "enforcing": 2}));
    assert_eq!(body["decisions"], json!({"allow": 40, "deny": 2, "ask": 1}), "the counts are applied with it");
    // Shown already: nothing to write. All three now: written again.
    p.status.as_mut().unwrap().enforcement = Some(partial.clone());
    let policies = vec![Arc::new(p)];
    assert_eq!(paddock_operator::policy::write_decisions(&client, &policies, &gateway, Some(&partial)).await, 0);
    let all = paddock_api::policy::PolicyEnforcement { enforcing: 3, ..partial };
    assert_eq!(paddock_operator::policy::write_decisions(&client, &policies, &gateway, Some(&all)).await, 1);
    assert_eq!(api.requests()[1].body["status"]["enforcement"]["enforcing"], 3);
}

#[tokio::test]
async fn decision_counts_come_from_the_gateways_ledger_into_the_policy_status() {
    let dir = tempfile::tempdir().unwrap();
    let repo = "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {name: coder}\nspec: {harness: custom, model: claude-sonnet-4-5}\n---\n\
                apiVersion: paddock.dev/v1alpha1\nkind: Policy\nmetadata: {name: guard}\nspec:\n  rules: [{name: no-writes, use: tool_denylist, with: {tools: [Write]}}]\n";
    let gw = start_gateway(dir.path(), repo, "status-admin").await;
    let http = reqwest::Client::new();
    let s: Json = http
        .post(format!("{}/v1/sessions", gw.url))
        .bearer_auth("status-admin")
        .json(&json!({"agent": "coder", "owner": "alice"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, token) = (s["id"].as_str().unwrap(), s["token"].as_str().unwrap());
    for n in 0..3 {
        let event =
            json!({"phase": "tool_call", "tool": "Write", "args": {"file_path": format!("/w/{n}"), "content": "x"}});
        let v: Json = http
            .post(format!("{}/v1/sessions/{id}/decide", gw.url))
            .bearer_auth(token)
            .json(&event)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["policy"], "guard", "{v}");
    }
    std::fs::write(dir.path().join("controller-token"), "status-admin").unwrap();
    let gateway = paddock_operator::gateway::Gateway::new(paddock_operator::gateway::GatewayConfig {
        url: gw.url.clone(),
        admin_token_file: dir.path().join("controller-token"),
        ca_file: None,
    });
    let (client, api) = fake_api(Arc::new(echo_object));
    let (store, mut writer) = kube::runtime::reflector::store::<Policy>();
    let mut guard: Policy = serde_json::from_value(json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Policy",
        "metadata": {"name": "guard", "namespace": "default"}, "spec": {"rules": []}}))
    .unwrap();
    guard.status = None;
    for e in [
        kube::runtime::watcher::Event::Init,
        kube::runtime::watcher::Event::InitApply(guard),
        kube::runtime::watcher::Event::InitDone,
    ] {
        writer.apply_watcher_event(&e);
    }
    let (halt_tx, halt) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(paddock_operator::policy::report_decisions(
        client,
        store,
        gateway,
        std::time::Duration::from_secs(60),
        halt,
    ));
    for _ in 0..100 {
        if !api.requests().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    halt_tx.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(2), task).await.expect("stops on halt").unwrap();
    let reqs = api.requests();
    assert_eq!(api.lines(), ["PATCH /apis/paddock.dev/v1alpha1/namespaces/default/policies/guard/status"]);
    assert_eq!(reqs[0].body["status"]["decisions"], json!({"allow": 0, "deny": 3, "ask": 0}));
    // The gateway alone enforces what it holds (its repository's revision, nothing pushed yet).
    let revision = reqwest::Client::new()
        .get(format!("{}/readyz", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .trim()
        .strip_prefix("ready: revision ")
        .unwrap()
        .to_owned();
    assert_eq!(reqs[0].body["status"]["enforcement"], json!({"revision": revision, "replicas": 1, "enforcing": 1}));
}
