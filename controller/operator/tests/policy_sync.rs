//! The controller keeps the gateway's Agents and Policies equal to the cluster's (the gateway has no access
//! to the API server): read from the controller's caches, pushed to the real gateway on loopback after a
//! change, with no request to the API server beyond the watches that keep the caches.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use kube::Api;
use kube::client::Body;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use paddock_api::{Agent, Policy};
use paddock_operator::gateway::{Gateway, GatewayConfig};
use paddock_operator::policy_sync::{self, Caches, Timing};
use serde_json::{Value as Json, json};
use support::start_gateway;
use tokio::sync::Notify;

const ADMIN: &str = "sync-admin";

fn agent(ns: &str, name: &str, rv: &str, policies: &[&str]) -> Json {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Agent",
           "metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "uid": format!("uid-{name}"),
                        "managedFields": [{"manager": "paddock"}]},
           "spec": {"harness": "custom", "model": "claude-sonnet-4-5", "policies": policies}})
}

fn policy(ns: &str, name: &str, rv: &str) -> Json {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Policy",
           "metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "uid": format!("uid-{name}")},
           // Named by Agents only: a Policy that selects nobody would govern every Agent of its namespace.
           "spec": {"agents": ["nobody"], "rules": [{"name": "no-force", "use": "github", "with": {"deny_force_push": true}}]}})
}

fn gateway(dir: &std::path::Path, url: &str) -> Gateway {
    std::fs::write(dir.join("controller-token"), ADMIN).unwrap();
    Gateway::new(GatewayConfig { url: url.to_owned(), admin_token_file: dir.join("controller-token"), ca_file: None })
}

const FAST: Timing =
    Timing { debounce: Duration::from_millis(20), resync: Duration::from_secs(60), retry: Duration::from_millis(50) };

/// `GET /v1/policies` until `ok` holds of it (up to 5 s); returns the last answer.
async fn gateway_policies(url: &str, ok: impl Fn(&Json) -> bool) -> Json {
    let http = reqwest::Client::new();
    let mut got = Json::Null;
    for _ in 0..250 {
        got = http.get(format!("{url}/v1/policies")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        if ok(&got) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    got
}

fn coder_policies(v: &Json) -> Json {
    v["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "coder"))
        .map_or(Json::Null, |a| a["policies"].clone())
}

#[tokio::test]
async fn the_caches_reach_the_gateway_a_change_is_pushed_at_once_and_an_unchanged_set_keeps_its_revision() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(dir.path(), "", ADMIN).await;
    let (agents, mut agents_w) = reflector::store::<Agent>();
    let (policies, mut policies_w) = reflector::store::<Policy>();
    let changed = Arc::new(Notify::new());
    let caches = Caches { agents, policies, changed: changed.clone() };
    let (halt_tx, halt) = tokio::sync::watch::channel(false);
    let sync = tokio::spawn(policy_sync::run(caches, gateway(dir.path(), &gw.url), FAST, halt));
    // Nothing is pushed before the caches are filled: an empty set would take every Agent away.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = gateway_policies(&gw.url, |_| true).await;
    assert!(!before["revision"].as_str().unwrap().starts_with("cluster:"), "pushed before the caches filled: {before}");
    let a: Agent = serde_json::from_value(agent("team-a", "coder", "1", &["guard"])).unwrap();
    let p: Policy = serde_json::from_value(policy("team-a", "guard", "7")).unwrap();
    let extra: Policy = serde_json::from_value(policy("team-a", "extra", "8")).unwrap();
    for ev in [Event::Init, Event::InitApply(p), Event::InitApply(extra), Event::InitDone] {
        policies_w.apply_watcher_event(&ev);
    }
    for ev in [Event::Init, Event::InitApply(a.clone()), Event::InitDone] {
        agents_w.apply_watcher_event(&ev);
    }
    changed.notify_one();
    let got = gateway_policies(&gw.url, |v| coder_policies(v) != Json::Null).await;
    assert_eq!(got["agents"], json!([{"namespace": "team-a", "name": "coder", "policies": ["guard"]}]), "{got}");
    let first = got["revision"].as_str().unwrap().to_owned();
    assert!(first.starts_with("cluster:sha256:"));
    // A new resourceVersion with the same content is not a new revision.
    let mut same = a.clone();
    same.metadata.resource_version = Some("2".into());
    agents_w.apply_watcher_event(&Event::Apply(same));
    changed.notify_one();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gateway_policies(&gw.url, |_| true).await["revision"], first.as_str());
    // A changed spec is pushed once the burst settles, long before the minute's resync.
    let changed_spec: Agent = serde_json::from_value(agent("team-a", "coder", "3", &["guard", "extra"])).unwrap();
    agents_w.apply_watcher_event(&Event::Apply(changed_spec));
    changed.notify_one();
    let got = gateway_policies(&gw.url, |v| coder_policies(v) == json!(["guard", "extra"])).await;
    assert_eq!(coder_policies(&got), json!(["guard", "extra"]), "{got}");
    assert_ne!(got["revision"], first.as_str());
    halt_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), sync).await.expect("the sync stops on halt").unwrap();
}

/// One request to the fake API server: its method, path and query.
type Log = Arc<Mutex<Vec<String>>>;
/// The open watch responses, per path: send a line to deliver a watch event.
type Watches = Arc<Mutex<Vec<(String, futures::channel::mpsc::UnboundedSender<Result<String, std::io::Error>>)>>>;

/// An API server that answers each kind's LIST with `lists[path]`, keeps each WATCH open (events are sent
/// through `Watches`), and answers anything else 404. Every request is logged.
fn watching_api(lists: Vec<(&'static str, Json)>) -> (kube::Client, Log, Watches) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<axum::body::Body>>();
    let log: Log = Arc::default();
    let watches: Watches = Arc::default();
    let (log2, watches2) = (log.clone(), watches.clone());
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or_default().to_owned();
            let watch = query.split('&').any(|q| q == "watch=true");
            log2.lock().unwrap().push(format!("{} {path} {}", req.method(), if watch { "WATCH" } else { "LIST" }));
            let resp = match (watch, lists.iter().find(|(p, _)| *p == path)) {
                (false, Some((_, list))) => Response::new(axum::body::Body::from(list.to_string())),
                (true, Some(_)) => {
                    let (tx, rx) = futures::channel::mpsc::unbounded();
                    watches2.lock().unwrap().push((path, tx));
                    Response::new(axum::body::Body::from_stream(rx))
                }
                _ => Response::builder().status(404).body(axum::body::Body::from("{}")).unwrap(),
            };
            send.send_response(resp);
        }
    });
    (kube::Client::new(svc, "default"), log, watches)
}

const AGENTS: &str = "/apis/paddock.dev/v1alpha1/agents";
const POLICIES: &str = "/apis/paddock.dev/v1alpha1/policies";

#[tokio::test]
async fn the_sync_lists_nothing_after_the_watches_start_and_pushes_a_change_the_watch_brings() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start_gateway(dir.path(), "", ADMIN).await;
    let list = |kind: &str, items: Vec<Json>| {
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": format!("{kind}List"),
               "metadata": {"resourceVersion": "10"}, "items": items})
    };
    let (client, log, watches) = watching_api(vec![
        (AGENTS, list("Agent", vec![agent("team-a", "coder", "5", &["guard"])])),
        (POLICIES, list("Policy", vec![policy("team-a", "guard", "7"), policy("team-a", "extra", "8")])),
    ]);
    // The caches as the controller keeps them (run.rs: the Agents' with this helper; the Policies' with the
    // same watch and the same notion of a change).
    let changed = Arc::new(Notify::new());
    let (agents, agent_watch) = policy_sync::cache(Api::<Agent>::all(client.clone()), changed.clone());
    let (policies, policy_watch) = policy_sync::cache(Api::<Policy>::all(client), changed.clone());
    let watching = tokio::spawn(async move { tokio::join!(agent_watch, policy_watch) });
    let (halt_tx, halt) = tokio::sync::watch::channel(false);
    let sync =
        tokio::spawn(policy_sync::run(Caches { agents, policies, changed }, gateway(dir.path(), &gw.url), FAST, halt));
    let got = gateway_policies(&gw.url, |v| coder_policies(v) == json!(["guard"])).await;
    assert_eq!(coder_policies(&got), json!(["guard"]), "{got}");
    // The old sync listed every 5 s; ten of its 50 ms test intervals pass with nothing asked.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A change arrives on the Agents' watch, and reaches the gateway.
    let modified = json!({"type": "MODIFIED", "object": agent("team-a", "coder", "11", &["guard", "extra"])});
    let tx = watches.lock().unwrap().iter().find(|(p, _)| p == AGENTS).map(|(_, tx)| tx.clone()).expect("watching");
    tx.unbounded_send(Ok(format!("{modified}\n"))).unwrap();
    let got = gateway_policies(&gw.url, |v| coder_policies(v) == json!(["guard", "extra"])).await;
    assert_eq!(coder_policies(&got), json!(["guard", "extra"]), "the watched change was pushed: {got}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seen = log.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            format!("GET {AGENTS} LIST"),
            format!("GET {AGENTS} WATCH"),
            format!("GET {POLICIES} LIST"),
            format!("GET {POLICIES} WATCH"),
        ],
        "one LIST and one WATCH per kind, nothing per push"
    );
    halt_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), sync).await.expect("the sync stops on halt").unwrap();
    watching.abort();
}

/// A Session's own rules travel with it (`NewSession.policy`, from `spec.policy`) and the gateway evaluates
/// them first: the controller's client and the gateway agree on the wire.
#[tokio::test]
async fn a_sessions_own_rules_reach_the_gateway_with_it_and_decide_first() {
    let dir = tempfile::tempdir().unwrap();
    let repo = "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {name: coder}\nspec: {harness: custom, model: claude-sonnet-4-5}\n";
    let gw = start_gateway(dir.path(), repo, ADMIN).await;
    let client = gateway(dir.path(), &gw.url);
    let spec: paddock_api::SessionSpec = serde_json::from_value(json!({
        "agentRef": {"name": "coder"}, "prompt": "tidy up", "owner": "alice",
        "policy": {"rules": [{"name": "no-shell", "use": "tool_denylist", "with": {"tools": ["Bash"]}, "action": "deny"}]}
    }))
    .unwrap();
    let new = |id: &str| paddock_operator::gateway::NewSession {
        id: id.into(),
        namespace: "default".into(),
        agent: "coder".into(),
        owner: "alice".into(),
        policy: spec.policy.clone(),
        ..Default::default()
    };
    let token = client.create_session(&new("sess-1")).await.unwrap();
    let v: Json = reqwest::Client::new()
        .post(format!("{}/v1/sessions/sess-1/decide", gw.url))
        .bearer_auth(&token)
        .json(&json!({"phase": "tool_call", "tool": "Bash", "args": {"command": "ls"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["verdict"].as_str(), v["policy"].as_str(), v["rule"].as_str()),
        (Some("deny"), Some("session/sess-1"), Some("no-shell")),
        "{v}"
    );
    // One that would allow is refused, naming the field (the Session reconciler shows it as GatewayRejected).
    let mut open = new("sess-2");
    open.policy.as_mut().unwrap().rules[0].action = Some(paddock_api::Verdict::Allow);
    let e = client.create_session(&open).await.unwrap_err();
    assert_eq!(e.status(), Some(422));
    assert!(e.to_string().contains("policy.rules[0].action: a session rule may only tighten"), "{e}");
}
