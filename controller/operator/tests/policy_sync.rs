//! The controller keeps the gateway's Agents and Policies equal to the cluster's (the gateway has no access
//! to the API server): listed through the fake API, pushed to the real gateway on loopback.

mod support;

use std::sync::Arc;
use std::time::Duration;

use paddock_operator::gateway::{Gateway, GatewayConfig};
use serde_json::{Value as Json, json};
use support::*;

const ADMIN: &str = "sync-admin";

fn list(kind: &str, items: Vec<Json>) -> Json {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": items})
}

fn agent(ns: &str, name: &str, rv: &str) -> Json {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Agent",
           "metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "uid": format!("uid-{name}"),
                        "managedFields": [{"manager": "paddock"}]},
           "spec": {"harness": "custom", "model": "claude-sonnet-4-5", "policies": ["guard"]}})
}

#[tokio::test]
async fn agents_and_policies_reach_the_gateway_and_an_unchanged_set_keeps_its_revision() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(dir.path(), "", ADMIN).await;
    std::fs::write(dir.path().join("controller-token"), ADMIN).unwrap();
    let rv = Arc::new(std::sync::Mutex::new("1".to_owned()));
    let rv2 = rv.clone();
    let (client, api) = fake_api(Arc::new(move |s: &Seen| match (s.method.as_str(), s.path.as_str()) {
        ("GET", "/apis/paddock.dev/v1alpha1/agents") => {
            (200, list("Agent", vec![agent("team-a", "coder", &rv2.lock().unwrap())]))
        }
        ("GET", "/apis/paddock.dev/v1alpha1/policies") => (
            200,
            list(
                "Policy",
                vec![json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Policy",
                    "metadata": {"name": "guard", "namespace": "team-a", "resourceVersion": "7"},
                    "spec": {"rules": [{"name": "no-force", "use": "github", "with": {"deny_force_push": true}}]}})],
            ),
        ),
        _ => not_found(&s.path),
    }));
    let gateway =
        Gateway::new(GatewayConfig { url: gw.url.clone(), admin_token_file: dir.path().join("controller-token"), ca_file: None });
    let (halt_tx, halt) = tokio::sync::watch::channel(false);
    let sync = tokio::spawn(paddock_operator::policy_sync::run(client, None, gateway, Duration::from_millis(50), halt));
    let http = reqwest::Client::new();
    let mut got = Json::Null;
    for _ in 0..100 {
        got =
            http.get(format!("{}/v1/policies", gw.url)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        if got["agents"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got["agents"], json!([{"namespace": "team-a", "name": "coder", "policies": ["guard"]}]), "{got}");
    let first = got["revision"].as_str().unwrap().to_owned();
    assert!(first.starts_with("cluster:sha256:"));
    // A new resourceVersion with the same content is not a new revision.
    *rv.lock().unwrap() = "2".into();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again: Json =
        http.get(format!("{}/v1/policies", gw.url)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!(again["revision"], first.as_str());
    halt_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), sync).await.expect("the sync stops on halt").unwrap();
    let lists = api.lines().iter().filter(|l| l.starts_with("GET")).count();
    assert!(lists >= 4, "it kept watching: {lists} lists");
}
