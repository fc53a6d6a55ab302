//! Session and Approval reconcilers against kube's `tower-test` mock (a small stateful fake API server that
//! records every request) and the real gateway, in process on 127.0.0.1.
//!
//! The test plays the runner: it reads the token from the Secret the controller applied, asks the gateway
//! for a decision that a Policy turns into an ask, posts transcript events, and moves the pod through its
//! phases.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paddock_api::{Approval, Policy, Session};
use paddock_operator::gateway::{Gateway, GatewayConfig};
use paddock_operator::session::SessionRuntime;
use paddock_operator::{Context, metrics::Metrics};
use serde_json::{Value as Json, json};
use support::*;

const ADMIN: &str = "test-admin-token";
const UID: &str = "0b7c4f2e-9d1a-4e3b-8c5f-6a2d1e0f9b3c";
const SESSION: &str = "/apis/paddock.dev/v1alpha1/namespaces/team-a/sessions/fix-login";
const AGENT_PATH: &str = "/apis/paddock.dev/v1alpha1/namespaces/team-a/agents/coder";
const POD: &str = "/api/v1/namespaces/team-a/pods/fix-login-runner";
const SECRET: &str = "/api/v1/namespaces/team-a/secrets/fix-login-token";
const CONFIGMAP: &str = "/api/v1/namespaces/team-a/configmaps/fix-login-agent";
const NETPOL: &str = "/apis/networking.k8s.io/v1/namespaces/team-a/networkpolicies/fix-login-runner";

/// Agents and Policies the gateway governs with (namespace `team-a`).
const REPO: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: coder, namespace: team-a}
spec:
  harness: custom
  model: claude-sonnet-4-5
  tools: [shell]
  policies: [ask-shell]
  sandbox: {egress: ["api.github.com:443"]}
---
apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: ask-shell, namespace: team-a}
spec:
  rules:
    - {name: ask-before-shell, use: tool_denylist, with: {tools: [shell]}, action: ask}
"#;

async fn gateway(dir: &Path) -> TestGateway {
    start_gateway(dir, REPO, ADMIN).await
}

/// A stateful fake API server: objects by path; server-side apply stores, GET reads, DELETE removes. An apply
/// to a path in the second map is refused with that answer, as admission refuses it.
#[derive(Clone, Default)]
struct Objects(Arc<Mutex<BTreeMap<String, Json>>>, Arc<Mutex<BTreeMap<String, (u16, Json)>>>);

impl Objects {
    fn get(&self, path: &str) -> Option<Json> {
        self.0.lock().unwrap().get(path).cloned()
    }
    fn put(&self, path: &str, v: Json) {
        self.0.lock().unwrap().insert(path.to_owned(), v);
    }
    /// Server-side applies of `path` are answered with `answer` (a Status) until `accept`.
    fn refuse(&self, path: &str, answer: (u16, Json)) {
        self.1.lock().unwrap().insert(path.to_owned(), answer);
    }
    fn accept(&self, path: &str) {
        self.1.lock().unwrap().remove(path);
    }
    fn route(&self) -> Route {
        let objects = self.clone();
        Arc::new(move |s: &Seen| {
            if s.is_ssa()
                && let Some(answer) = objects.1.lock().unwrap().get(&s.path)
            {
                return answer.clone();
            }
            let mut map = objects.0.lock().unwrap();
            match s.method.as_str() {
                "GET" => match map.get(&s.path) {
                    Some(v) => (200, v.clone()),
                    None => not_found(&s.path),
                },
                "PATCH" if s.is_ssa() => {
                    if let Some(parent) = s.path.strip_suffix("/status") {
                        let obj = map.get_mut(parent).expect("status of an existing object");
                        obj["status"] = s.body["status"].clone();
                        return (200, obj.clone());
                    }
                    let mut obj = s.body.clone();
                    obj["metadata"]["resourceVersion"] = json!("1");
                    map.insert(s.path.clone(), obj.clone());
                    (200, obj)
                }
                // The Event recorder counts a repeated Event by patching the one it created (not kept here).
                "PATCH" if s.path.contains("/events/") => echo(s),
                // The finalizer's JSON patch: apply the one operation it uses on `finalizers`.
                "PATCH" => {
                    let obj = map.get_mut(&s.path).expect("patching an existing object");
                    for op in s.body.as_array().into_iter().flatten() {
                        let path = op["path"].as_str().unwrap_or_default();
                        if let Some(i) =
                            path.strip_prefix("/metadata/finalizers/").and_then(|i| i.parse::<usize>().ok())
                            && op["op"] == "remove"
                        {
                            obj["metadata"]["finalizers"].as_array_mut().unwrap().remove(i);
                        }
                        if path == "/metadata/finalizers" {
                            match op["op"].as_str() {
                                Some("add" | "replace") => obj["metadata"]["finalizers"] = op["value"].clone(),
                                Some("remove") => {
                                    obj["metadata"].as_object_mut().unwrap().remove("finalizers");
                                }
                                _ => {}
                            }
                        }
                    }
                    (200, obj.clone())
                }
                "POST" => echo(s),
                "DELETE" => match map.remove(&s.path) {
                    Some(_) => status_ok(),
                    None => not_found(&s.path),
                },
                _ => (405, json!({})),
            }
        })
    }
}

struct Harness {
    objects: Objects,
    api: FakeApi,
    ctx: Arc<Context>,
    gw: TestGateway,
    /// What the controller sent the gateway: (method, path, body).
    sent: Sent,
    /// While set, the gateway is down: the hop answers 503 without asking it.
    gateway_down: Arc<AtomicBool>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

type Sent = Arc<Mutex<Vec<(String, String, Json)>>>;

/// A hop in front of the real gateway that records each request of the controller verbatim and forwards it
/// (or, while `down` is set, answers 503 as a Service without ready endpoints behind a proxy does).
async fn recording_hop(upstream: String, down: Arc<AtomicBool>) -> (String, Sent) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    let sent: Sent = Arc::default();
    let log = sent.clone();
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (log, http, upstream, down) = (log.clone(), http.clone(), upstream.clone(), down.clone());
        async move {
            let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let json = serde_json::from_slice(&body).unwrap_or(Json::Null);
            log.lock().unwrap().push((method.to_string(), uri.path().to_owned(), json));
            if down.load(Ordering::SeqCst) {
                return (StatusCode::SERVICE_UNAVAILABLE, b"no healthy upstream".to_vec());
            }
            let mut req = http.request(method, format!("{upstream}{path}")).body(body.to_vec());
            for name in ["authorization", "content-type"] {
                if let Some(v) = headers.get(name) {
                    req = req.header(name, v.as_bytes());
                }
            }
            let r = req.send().await.unwrap();
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
            (status, r.bytes().await.unwrap().to_vec())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, sent)
}

fn agent_json() -> Json {
    json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "Agent",
        "metadata": {"name": "coder", "namespace": NS, "generation": 1,
                     "annotations": {"paddock.dev/revision": "main@sha1:abc123"}},
        "spec": {"harness": "custom", "model": "claude-sonnet-4-5", "tools": ["shell"], "policies": ["ask-shell"],
                 "sandbox": {"egress": ["api.github.com:443"]}}
    })
}

fn policies(extra: Vec<Json>) -> Vec<Policy> {
    let mut all = vec![json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "Policy",
        "metadata": {"name": "ask-shell", "namespace": NS},
        "spec": {"rules": [{"name": "ask-before-shell", "use": "tool_denylist", "with": {"tools": ["shell"]}, "action": "ask"}]}
    })];
    all.extend(extra);
    all.into_iter().map(|p| serde_json::from_value(p).unwrap()).collect()
}

async fn harness(with_agent: bool, extra_policies: Vec<Json>, status_min_interval: Duration) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(dir.path()).await;
    std::fs::write(dir.path().join("controller-token"), format!("{ADMIN}\n")).unwrap();
    let objects = Objects::default();
    objects.put(
        SESSION,
        json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "Session",
            "metadata": {"name": "fix-login", "namespace": NS, "uid": UID, "generation": 1, "resourceVersion": "7",
                         "finalizers": ["paddock.dev/session"]},
            "spec": {"agentRef": {"name": "coder"}, "prompt": "Fix the login bug", "owner": "alice", "budgetUsd": 5.0}
        }),
    );
    objects.put(
        "/api/v1/namespaces/team-a",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": {"paddock.dev/environment": "prod"}}}),
    );
    if with_agent {
        objects.put(AGENT_PATH, agent_json());
    }
    let (client, api) = fake_api(objects.route());
    let (reader, mut writer) = kube::runtime::reflector::store::<Policy>();
    for p in policies(extra_policies) {
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(p));
    }
    let gateway_down = Arc::new(AtomicBool::new(false));
    let (hop, sent) = recording_hop(gw.url.clone(), gateway_down.clone()).await;
    let mut rt = SessionRuntime::new(
        Gateway::new(GatewayConfig { url: hop, admin_token_file: dir.path().join("controller-token"), ca_file: None }),
        // Runners reach the gateway by a name the controller resolves for their /etc/hosts.
        paddock_sandbox::ClusterConfig {
            image: "runner:test".into(),
            gateway_url: "http://localhost:6767".into(),
            ..Default::default()
        },
    );
    rt.status_min_interval = status_min_interval;
    let ctx = Arc::new(
        Context::new(client, Arc::new(Metrics::default()), dir.path().to_path_buf(), reader).with_sessions(rt),
    );
    Harness { objects, api, ctx, gw, sent, gateway_down, http: reqwest::Client::new(), _dir: dir }
}

impl Harness {
    fn session(&self) -> Arc<Session> {
        Arc::new(serde_json::from_value(self.objects.get(SESSION).expect("the Session exists")).unwrap())
    }
    async fn reconcile(&self) {
        paddock_operator::session::reconcile(self.session(), self.ctx.clone()).await.expect("reconcile");
    }
    fn status(&self) -> Json {
        self.objects.get(SESSION).unwrap()["status"].clone()
    }
    fn set_pod_status(&self, status: Json) {
        let mut pod = self.objects.get(POD).expect("the pod exists");
        pod["status"] = status;
        self.objects.put(POD, pod);
    }
    /// The token as the runner gets it: from the Secret the controller applied.
    fn token(&self) -> String {
        let secret = self.objects.get(SECRET).expect("the token Secret exists");
        let b64 = secret["data"]["token"].as_str().unwrap();
        String::from_utf8(base64_decode(b64)).unwrap()
    }
    async fn gw(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Json>) -> (u16, Json) {
        let mut req = self.http.request(method, format!("{}{path}", self.gw.url)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Json::Null))
    }
    fn lines_since(&self, n: usize) -> Vec<String> {
        self.api.lines()[n..].iter().filter(|l| !l.contains("/events")).cloned().collect()
    }
    fn events(&self) -> Vec<Json> {
        self.api
            .requests()
            .iter()
            .filter(|s| s.method == "POST" && s.path.contains("/events"))
            .map(|s| s.body.clone())
            .collect()
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        bits = (bits << 6) | A.iter().position(|a| *a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[tokio::test]
async fn a_session_becomes_a_token_secret_configmap_networkpolicy_and_a_hardened_pod() {
    let enforce = json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "Policy",
        "metadata": {"name": "prod-sandbox", "namespace": NS},
        "spec": {"rules": [{"name": "gvisor", "use": "enforce_sandbox", "with": {"environments": ["prod"], "runtime_class_names": ["gvisor"]}}]}
    });
    let h = harness(true, vec![enforce], Duration::ZERO).await;
    h.reconcile().await;
    assert_eq!(
        h.lines_since(0),
        [
            format!("GET {AGENT_PATH}"),
            "GET /api/v1/namespaces/team-a".into(),
            format!("GET {SECRET}"),
            format!("PATCH {SECRET}"),
            format!("PATCH {CONFIGMAP}"),
            format!("PATCH {NETPOL}"),
            format!("PATCH {POD}"),
            format!("PATCH {SESSION}/status"),
        ],
        "Agent, environment, token (Secret first), then the objects, then status; no pod lookup before one was made"
    );
    let reqs = h.api.requests();
    assert!(reqs.iter().filter(|r| r.method == "PATCH").all(|r| r.is_ssa()), "every write is a server-side apply");
    // The pod: hardened, owned by the Session, with the RuntimeClass enforce_sandbox requires in `prod`.
    let pod = h.objects.get(POD).unwrap();
    assert_eq!(pod["spec"]["runtimeClassName"], "gvisor");
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], UID);
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Session");
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["resources"]["limits"], json!({"cpu": "1", "memory": "2Gi"}));
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.windows(2).any(|w| w == ["--session", UID]), "{args:?}");
    assert!(args.windows(2).any(|w| w == ["--gateway", "http://localhost:6767"]));
    // No DNS in the pod: the gateway's address, resolved by the controller, is in its /etc/hosts.
    assert_eq!(pod["spec"]["hostAliases"], json!([{"ip": "127.0.0.1", "hostnames": ["localhost"]}]));
    assert_eq!(pod["spec"]["dnsPolicy"], "None");
    // The NetworkPolicy: the gateway only (the Agent's `api.github.com:443` is enforced by the gateway's proxy).
    let np = h.objects.get(NETPOL).unwrap();
    let egress = np["spec"]["egress"].as_array().unwrap();
    assert_eq!(egress.len(), 1, "{np}");
    assert_eq!(egress[0]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"], "gateway");
    assert!(np["metadata"]["annotations"].is_null(), "{np}");
    // The ConfigMap: the Agent the runner reads, without governance.
    let cm = h.objects.get(CONFIGMAP).unwrap();
    let manifest = cm["data"]["agent.yaml"].as_str().unwrap();
    assert!(manifest.contains("name: coder") && !manifest.contains("ask-shell"), "{manifest}");
    // The token is the gateway's, for this session, and works.
    let (code, info) = h.gw(reqwest::Method::GET, &format!("/v1/sessions/{UID}"), &h.token(), None).await;
    assert_eq!((code, info["agent"].as_str(), info["owner"].as_str()), (200, Some("coder"), Some("alice")));
    // Status and an Event.
    let st = h.status();
    assert_eq!((st["phase"].as_str(), st["podName"].as_str()), (Some("Pending"), Some("fix-login-runner")));
    assert_eq!(st["agentRevision"], "main@sha1:abc123");
    let events = h.events();
    assert_eq!(events[0]["reason"], "Started");
    let note = events[0]["note"].as_str().unwrap();
    assert!(note.contains("runtimeClass gvisor") && note.contains("environment `prod`"), "{note}");
    assert!(note.contains("egress only through the gateway") && !note.contains("directly"), "{note}");
}

#[tokio::test]
async fn pod_phases_and_the_gateway_drive_the_session_and_an_approval_is_relayed() {
    let h = harness(true, vec![], Duration::ZERO).await;
    h.reconcile().await;
    let token = h.token();

    // Pending with an image that cannot be pulled: the reason is in the status.
    h.set_pod_status(json!({"phase": "Pending", "containerStatuses": [{"name": "runner", "image": "runner:test", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"runner:test\""}}}]}));
    h.reconcile().await;
    let st = h.status();
    assert_eq!(st["phase"], "Pending");
    let reconciling = st["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Reconciling").unwrap();
    assert!(reconciling["message"].as_str().unwrap().contains("ImagePullBackOff"), "{reconciling}");

    // Running: the runner talks to the gateway; the Policy turns a shell call into an ask.
    h.set_pod_status(json!({"phase": "Running"}));
    let event = json!({"phase": "tool_call", "tool": "shell", "args": {"command": "rm -rf build"}});
    let (code, ruling) =
        h.gw(reqwest::Method::POST, &format!("/v1/sessions/{UID}/decide?wait=false"), &token, Some(event)).await;
    assert_eq!((code, ruling["status"].as_str()), (200, Some("pending")), "{ruling}");
    let ask = ruling["approval_id"].as_str().unwrap().to_owned();
    let (code, _) = h
        .gw(
            reqwest::Method::POST,
            &format!("/v1/sessions/{UID}/events"),
            &token,
            Some(json!([{"type": "message", "role": "assistant", "text": "I need to clean the build directory."}])),
        )
        .await;
    assert_eq!(code, 200);
    h.reconcile().await;
    let st = h.status();
    assert_eq!(st["phase"], "AwaitingApproval");
    assert_eq!(st["pendingApprovalCount"], 1);
    assert_eq!(st["pendingApprovals"][0]["requestId"], ask.as_str());
    assert_eq!(st["pendingApprovals"][0]["tool"], "shell");
    assert_eq!(st["lastMessage"], "I need to clean the build directory.");
    assert!(st["startTime"].is_string());

    // An Approval object relays the decision with the approver's name.
    let approval_path = "/apis/paddock.dev/v1alpha1/namespaces/team-a/approvals/ok-rm";
    h.objects.put(
        approval_path,
        json!({
            "apiVersion": "paddock.dev/v1alpha1", "kind": "Approval",
            "metadata": {"name": "ok-rm", "namespace": NS, "generation": 1, "annotations": {"paddock.dev/decided-by": "sec-bob"}},
            "spec": {"sessionRef": {"name": "fix-login"}, "requestId": ask, "decision": "Approve", "reason": "build dir only"}
        }),
    );
    let a: Approval = serde_json::from_value(h.objects.get(approval_path).unwrap()).unwrap();
    paddock_operator::approval::reconcile(Arc::new(a), h.ctx.clone()).await.unwrap();
    let ast = h.objects.get(approval_path).unwrap()["status"].clone();
    assert_eq!(
        (ast["conditions"][0]["type"].as_str(), ast["conditions"][0]["status"].as_str()),
        (Some("Ready"), Some("True"))
    );
    assert_eq!(ast["decidedBy"], "sec-bob");
    assert!(ast["relayedAt"].is_string());
    let (_, rows) = h.gw(reqwest::Method::GET, "/v1/approvals?status=all", ADMIN, None).await;
    let row = rows.as_array().unwrap().iter().find(|r| r["id"] == ask.as_str()).unwrap().clone();
    assert_eq!((row["status"].as_str(), row["decided_by"].as_str()), (Some("approved"), Some("sec-bob")));
    // Relaying again (a re-list) does nothing.
    let a: Approval = serde_json::from_value(h.objects.get(approval_path).unwrap()).unwrap();
    let before = h.api.lines().len();
    paddock_operator::approval::reconcile(Arc::new(a), h.ctx.clone()).await.unwrap();
    assert_eq!(h.api.lines().len(), before, "a relayed Approval is final");
    h.reconcile().await;
    assert_eq!(h.status()["phase"], "Running");
    assert_eq!(h.status()["pendingApprovalCount"], 0);

    // Succeeded: the session ends at the gateway, which revokes the token.
    h.set_pod_status(json!({"phase": "Succeeded"}));
    h.reconcile().await;
    let st = h.status();
    assert_eq!(st["phase"], "Succeeded");
    assert!(st["completionTime"].is_string());
    assert_eq!(st["conditions"][0]["reason"], "Succeeded");
    let (code, _) = h.gw(reqwest::Method::GET, &format!("/v1/sessions/{UID}"), &token, None).await;
    assert_eq!(code, 401, "the token is revoked once the session ends");
    let (_, info) = h.gw(reqwest::Method::GET, &format!("/v1/sessions/{UID}"), ADMIN, None).await;
    assert_eq!(info["phase"], "Succeeded");
    // A finished session without a TTL is left alone.
    let before = h.api.lines().len();
    h.reconcile().await;
    assert_eq!(h.api.lines().len(), before);
}

#[tokio::test]
async fn a_failed_pod_fails_the_session_with_the_containers_message() {
    let h = harness(true, vec![], Duration::ZERO).await;
    h.reconcile().await;
    h.set_pod_status(json!({"phase": "Failed", "containerStatuses": [{"name": "runner", "image": "runner:test", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": "budget exhausted"}}}]}));
    h.reconcile().await;
    let st = h.status();
    assert_eq!(st["phase"], "Failed");
    let ready = &st["conditions"][0];
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("RunnerFailed")));
    assert_eq!(ready["message"], "container `runner` exited with 1 (Error): budget exhausted");
    assert!(h.events().iter().any(|e| e["reason"] == "RunnerFailed" && e["type"] == "Warning"));
}

#[tokio::test]
async fn a_missing_agent_gives_a_clear_condition_and_no_pod() {
    let h = harness(false, vec![], Duration::ZERO).await;
    h.reconcile().await;
    assert_eq!(h.lines_since(0), [format!("GET {AGENT_PATH}"), format!("PATCH {SESSION}/status")]);
    let st = h.status();
    assert_eq!(st["phase"], "Pending");
    let ready = &st["conditions"][0];
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("AgentNotFound")));
    assert!(
        ready["message"].as_str().unwrap().starts_with("Agent `coder` does not exist in namespace `team-a`"),
        "{ready}"
    );
    assert_eq!(h.events()[0]["reason"], "AgentNotFound");
    assert!(h.objects.get(POD).is_none());
    let (_, sessions) = h.gw(reqwest::Method::GET, "/v1/sessions", ADMIN, None).await;
    assert_eq!(sessions, json!([]), "no session at the gateway, no token");
    // Still missing: the same condition, no second Event, no write.
    let before = h.api.requests().len();
    h.reconcile().await;
    assert_eq!(h.lines_since(before), [format!("GET {AGENT_PATH}")]);
    // The Agent appears: the session starts.
    h.objects.put(AGENT_PATH, agent_json());
    h.reconcile().await;
    assert_eq!(h.status()["phase"], "Pending");
    assert!(h.objects.get(POD).is_some());
}

#[tokio::test]
async fn an_agent_whose_policy_is_missing_does_not_start() {
    // The Agent names `ask-shell`; with no Policies known, it cannot be governed: fail closed.
    let h = harness(true, vec![], Duration::ZERO).await;
    let (reader, _writer) = kube::runtime::reflector::store::<Policy>();
    let mut ctx = (*h.ctx).clone();
    ctx.policies = reader;
    paddock_operator::session::reconcile(h.session(), Arc::new(ctx)).await.unwrap();
    let ready = h.status()["conditions"][0].clone();
    assert_eq!(ready["reason"], "AgentNotReady");
    assert!(ready["message"].as_str().unwrap().contains("`ask-shell`"), "{ready}");
    assert!(h.objects.get(POD).is_none() && h.objects.get(SECRET).is_none());
}

#[tokio::test]
async fn deleting_a_session_revokes_its_token_and_deletes_its_objects() {
    let h = harness(true, vec![], Duration::ZERO).await;
    h.reconcile().await;
    let token = h.token();
    h.set_pod_status(json!({"phase": "Running"}));
    let mut s = h.objects.get(SESSION).unwrap();
    s["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    h.objects.put(SESSION, s);
    let before = h.api.requests().len();
    h.reconcile().await;
    assert_eq!(h.lines_since(before), teardown(), "objects deleted, then the finalizer removed");
    for p in [POD, NETPOL, SECRET, CONFIGMAP] {
        assert!(h.objects.get(p).is_none(), "{p}");
    }
    assert_eq!(h.objects.get(SESSION).unwrap()["metadata"]["finalizers"], json!([]), "finalizer removed");
    let (code, _) = h.gw(reqwest::Method::GET, &format!("/v1/sessions/{UID}"), &token, None).await;
    assert_eq!(code, 401, "token revoked");
    let (_, info) = h.gw(reqwest::Method::GET, &format!("/v1/sessions/{UID}"), ADMIN, None).await;
    assert_eq!((info["phase"].as_str(), info["reason"].as_str()), (Some("Failed"), Some("the Session was deleted")));
}

#[tokio::test]
async fn a_busy_session_writes_its_figures_at_most_once_per_interval() {
    let h = harness(true, vec![], Duration::from_secs(3600)).await;
    h.reconcile().await;
    h.set_pod_status(json!({"phase": "Running"}));
    h.reconcile().await;
    assert_eq!(h.status()["phase"], "Running");
    let token = h.token();
    let writes = |h: &Harness| h.api.lines().iter().filter(|l| l.ends_with("/status")).count();
    let before = writes(&h);
    for i in 0..5 {
        let msg = json!([{"type": "message", "role": "assistant", "text": format!("step {i}")}]);
        h.gw(reqwest::Method::POST, &format!("/v1/sessions/{UID}/events"), &token, Some(msg)).await;
        h.reconcile().await;
    }
    assert_eq!(writes(&h), before, "only the last message changed: written later, not five times");
    // A phase change is written at once.
    h.set_pod_status(json!({"phase": "Succeeded"}));
    h.reconcile().await;
    assert_eq!(writes(&h), before + 1);
    assert_eq!(h.status()["lastMessage"], "step 4");
}

#[tokio::test]
async fn a_finished_session_is_deleted_after_its_ttl() {
    let h = harness(true, vec![], Duration::ZERO).await;
    let mut s = h.objects.get(SESSION).unwrap();
    s["spec"]["ttlSecondsAfterFinished"] = json!(60);
    s["status"] = json!({"phase": "Succeeded", "completionTime": "2020-01-01T00:00:00Z"});
    h.objects.put(SESSION, s.clone());
    h.reconcile().await;
    assert_eq!(h.lines_since(0), [format!("DELETE {SESSION}")]);
    // Not yet due: requeued for the time left, nothing written.
    s["status"]["completionTime"] = json!(paddock_operator::conditions::now());
    h.objects.put(SESSION, s);
    let before = h.api.requests().len();
    let action = paddock_operator::session::reconcile(h.session(), h.ctx.clone()).await.unwrap();
    assert_eq!(h.api.requests().len(), before);
    assert!(format!("{action:?}").contains("requeue_after: Some("), "{action:?}");
}

#[tokio::test]
async fn an_approval_for_another_sessions_ask_is_refused() {
    let h = harness(true, vec![], Duration::ZERO).await;
    h.reconcile().await;
    h.set_pod_status(json!({"phase": "Running"}));
    // Another session (another namespace's, say) has an ask.
    let (_, other) = h
        .gw(
            reqwest::Method::POST,
            "/v1/sessions",
            ADMIN,
            Some(json!({"id": "other", "namespace": "team-a", "agent": "coder", "owner": "eve"})),
        )
        .await;
    let event = json!({"phase": "tool_call", "tool": "shell", "args": {"command": "curl evil"}});
    let (_, ruling) = h
        .gw(
            reqwest::Method::POST,
            "/v1/sessions/other/decide?wait=false",
            other["token"].as_str().unwrap(),
            Some(event),
        )
        .await;
    let ask = ruling["approval_id"].as_str().unwrap();
    let path = "/apis/paddock.dev/v1alpha1/namespaces/team-a/approvals/sneaky";
    h.objects.put(
        path,
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Approval", "metadata": {"name": "sneaky", "namespace": NS, "generation": 1},
               "spec": {"sessionRef": {"name": "fix-login"}, "requestId": ask, "decision": "Approve"}}),
    );
    let a: Approval = serde_json::from_value(h.objects.get(path).unwrap()).unwrap();
    paddock_operator::approval::reconcile(Arc::new(a), h.ctx.clone()).await.unwrap();
    let st = h.objects.get(path).unwrap()["status"].clone();
    assert_eq!(st["conditions"][0]["reason"], "RequestNotInSession");
    assert_eq!(st["conditions"][1]["type"], "Stalled");
    let (_, pending) = h.gw(reqwest::Method::GET, "/v1/approvals?status=pending", ADMIN, None).await;
    assert_eq!(pending.as_array().unwrap().len(), 1, "the other session's ask is still pending");
}

const PARENT_UID: &str = "5e1d2c3b-0a9f-4e8d-b7c6-1f2e3d4c5b6a";
const PARENT: &str = "/apis/paddock.dev/v1alpha1/namespaces/team-a/sessions/lead";
const LEAD_AGENT: &str = "/apis/paddock.dev/v1alpha1/namespaces/team-a/agents/lead";

impl Harness {
    /// Makes `fix-login` a sub-agent session of `lead` (owned by `parent_owner`, running Agent `lead`, which
    /// lists `sub_agents`), with the parent already running at the gateway.
    async fn with_parent(&self, parent_owner: &str, sub_agents: &[&str]) {
        let mut child = self.objects.get(SESSION).unwrap();
        child["spec"]["parentRef"] = json!({"name": "lead"});
        self.objects.put(SESSION, child);
        self.objects.put(
            PARENT,
            json!({
                "apiVersion": "paddock.dev/v1alpha1", "kind": "Session",
                "metadata": {"name": "lead", "namespace": NS, "uid": PARENT_UID, "generation": 1, "resourceVersion": "3"},
                "spec": {"agentRef": {"name": "lead"}, "prompt": "Lead the fix", "owner": parent_owner, "budgetUsd": 20.0},
                "status": {"phase": "Running", "podName": "lead-runner"}
            }),
        );
        let mut lead = agent_json();
        lead["metadata"]["name"] = json!("lead");
        lead["spec"]["subAgents"] = json!(sub_agents);
        self.objects.put(LEAD_AGENT, lead);
        let body = json!({"id": PARENT_UID, "namespace": NS, "agent": "coder", "owner": parent_owner});
        let (code, _) = self.gw(reqwest::Method::POST, "/v1/sessions", ADMIN, Some(body)).await;
        assert_eq!(code, 201, "the parent runs at the gateway");
    }

    /// The child was refused as a user would see it: Ready=False with `reason`, Stalled as given, a message
    /// naming spec.parentRef, one Warning Event; no token, no pod, no session at the gateway.
    async fn assert_parent_refused(&self, reason: &str, stalled: bool) {
        let st = self.status();
        assert_eq!(st["phase"], "Pending");
        let cond = |t: &str| st["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).cloned();
        let ready = cond("Ready").expect("Ready");
        assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some(reason)), "{st}");
        assert!(ready["message"].as_str().unwrap().starts_with("spec.parentRef"), "{ready}");
        match cond("Stalled") {
            Some(c) if stalled => {
                assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("True"), Some(reason)))
            }
            Some(c) => assert_ne!(c["status"], "True", "{c}"),
            None => assert!(!stalled, "Stalled=True expected: {st}"),
        }
        let warnings: Vec<Json> = self.events().into_iter().filter(|e| e["reason"] == reason).collect();
        assert_eq!(warnings.len(), 1, "{:?}", self.events());
        assert_eq!(warnings[0]["type"], "Warning");
        assert!(
            self.objects.get(POD).is_none()
                && self.objects.get(SECRET).is_none()
                && self.objects.get(CONFIGMAP).is_none()
        );
        let (_, sessions) = self.gw(reqwest::Method::GET, "/v1/sessions", ADMIN, None).await;
        let ids: Vec<&str> = sessions.as_array().unwrap().iter().filter_map(|s| s["id"].as_str()).collect();
        assert_eq!(ids, [PARENT_UID], "no gateway session for the child");
    }
}

#[tokio::test]
async fn a_parent_ref_to_another_owners_session_is_refused() {
    let h = harness(true, vec![], Duration::ZERO).await;
    h.with_parent("bob", &["coder"]).await;
    h.reconcile().await;
    h.assert_parent_refused("ParentOwnerMismatch", true).await;
    let msg = h.status()["conditions"][0]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("`lead` belongs to `bob`, not to `alice`"), "{msg}");
    // Reconciled again: the same condition, no second Event, still nothing started.
    h.reconcile().await;
    h.assert_parent_refused("ParentOwnerMismatch", true).await;
}

#[tokio::test]
async fn a_parent_ref_whose_agent_does_not_list_this_one_is_refused() {
    let h = harness(true, vec![], Duration::ZERO).await;
    h.with_parent("alice", &["reviewer"]).await;
    h.reconcile().await;
    h.assert_parent_refused("NotASubAgent", true).await;
    let msg = h.status()["conditions"][0]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("Agent `lead`") && msg.contains("does not list `coder` in spec.subAgents"), "{msg}");
}

#[tokio::test]
async fn a_parent_ref_to_a_missing_session_waits_and_one_to_itself_is_refused() {
    let h = harness(true, vec![], Duration::ZERO).await;
    let mut child = h.objects.get(SESSION).unwrap();
    child["spec"]["parentRef"] = json!({"name": "lead"});
    h.objects.put(SESSION, child.clone());
    h.reconcile().await;
    let ready = h.status()["conditions"][0].clone();
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("ParentNotFound")));
    assert!(ready["message"].as_str().unwrap().contains("Session `lead` does not exist in namespace `team-a`"));
    assert!(h.objects.get(POD).is_none() && h.objects.get(SECRET).is_none());
    let (_, sessions) = h.gw(reqwest::Method::GET, "/v1/sessions", ADMIN, None).await;
    assert_eq!(sessions, json!([]));

    child["spec"]["parentRef"] = json!({"name": "fix-login"});
    h.objects.put(SESSION, child);
    h.reconcile().await;
    assert_eq!(h.status()["conditions"][0]["reason"], "ParentRefInvalid");
    assert!(h.objects.get(POD).is_none());
}

#[tokio::test]
async fn a_parent_ref_of_the_same_owner_listing_this_agent_starts_a_child_of_that_session() {
    let h = harness(true, vec![], Duration::ZERO).await;
    h.with_parent("alice", &["reviewer", "coder"]).await;
    h.reconcile().await;
    assert!(h.objects.get(POD).is_some(), "the child starts");
    assert_eq!(h.status()["phase"], "Pending");
    let (code, info) = h.gw(reqwest::Method::GET, &format!("/v1/sessions/{UID}"), &h.token(), None).await;
    assert_eq!((code, info["parent"].as_str(), info["owner"].as_str()), (200, Some(PARENT_UID), Some("alice")));
}

const AGENT_SECRET: &str = "ghp_AGENT0SECRET0VALUE0000000000000001";
const WORKSPACE_SECRET: &str = "glpat-WORKSPACE-SECRET-0000000002";

fn secret_path(name: &str) -> String {
    format!("/api/v1/namespaces/team-a/secrets/{name}")
}

fn secret(name: &str, data: &[(&str, &str)]) -> Json {
    use base64::Engine as _;
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    let data: serde_json::Map<String, Json> = data.iter().map(|(k, v)| ((*k).to_owned(), json!(b64(v)))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "data": data})
}

impl Harness {
    fn set_workspace(&self, ws: Json) {
        let mut s = self.objects.get(SESSION).unwrap();
        s["spec"]["workspace"] = ws;
        self.objects.put(SESSION, s);
    }
    fn ready(&self) -> (String, String, bool) {
        let st = self.status();
        let cond = |t: &str| st["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).cloned();
        let ready = cond("Ready").expect("Ready");
        let stalled = cond("Stalled").is_some_and(|c| c["status"] == "True");
        (ready["reason"].as_str().unwrap().into(), ready["message"].as_str().unwrap().into(), stalled)
    }
    fn nothing_started(&self) -> bool {
        [POD, SECRET, CONFIGMAP, NETPOL].iter().all(|p| self.objects.get(p).is_none())
            && !self.sent.lock().unwrap().iter().any(|(m, p, _)| m == "POST" && p == "/v1/sessions")
    }
}

#[tokio::test]
async fn brokered_credentials_go_to_the_gateway_and_never_into_the_pod() {
    let h = harness(true, vec![], Duration::ZERO).await;
    let mut agent = agent_json();
    agent["spec"]["credentials"] = json!([{"host": "api.github.com", "secretName": "github-bot", "key": "token"}]);
    agent["spec"]["sandbox"]["egress"] = json!(["github.com:443"]);
    h.objects.put(AGENT_PATH, agent);
    h.set_workspace(
        json!({"git": "https://GitHub.com/acme/shop.git", "ref": "main", "secretRef": {"name": "shop-git"}}),
    );

    // A Secret that does not exist yet: a clear condition, nothing started, not stalled (it may appear).
    h.reconcile().await;
    let (reason, message, stalled) = h.ready();
    assert_eq!((reason.as_str(), stalled), ("CredentialSecretMissing", false));
    assert_eq!(
        message,
        "spec.credentials[0]: Secret `github-bot` does not exist in the Session's namespace (the session starts when it appears)"
    );
    assert!(h.nothing_started());
    // The Agent's Secret appears (with the newline `kubectl create secret --from-file` leaves); the workspace's lacks its key.
    h.objects.put(&secret_path("github-bot"), secret("github-bot", &[("token", &format!("{AGENT_SECRET}\n"))]));
    h.objects.put(&secret_path("shop-git"), secret("shop-git", &[("username", "ci-bot")]));
    h.reconcile().await;
    let (reason, message, _) = h.ready();
    assert_eq!(reason, "CredentialSecretMissing");
    assert_eq!(
        message,
        "spec.workspace.secretRef: Secret `shop-git` has no key `token` (the session starts when it does)"
    );
    assert!(h.nothing_started());
    // A value that would end the header line stalls the session.
    h.objects.put(&secret_path("shop-git"), secret("shop-git", &[("token", "a\r\nX-Evil: 1")]));
    h.reconcile().await;
    assert_eq!((h.ready().0.as_str(), h.ready().2), ("InvalidCredential", true));
    assert!(h.nothing_started());

    h.objects.put(&secret_path("shop-git"), secret("shop-git", &[("token", WORKSPACE_SECRET), ("username", "ci-bot")]));
    h.reconcile().await;
    assert_eq!(h.status()["phase"], "Pending", "{}", h.status());
    assert!(h.objects.get(POD).is_some());

    // The gateway got both credentials, as headers, with the session.
    let sent = h.sent.lock().unwrap().clone();
    let (_, _, body) = sent.iter().find(|(m, p, _)| m == "POST" && p == "/v1/sessions").unwrap();
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ci-bot:{WORKSPACE_SECRET}"));
    assert_eq!(
        body["credentials"],
        json!([
            {"host": "api.github.com", "port": 443, "header": "authorization", "value": format!("Bearer {AGENT_SECRET}")},
            {"host": "github.com", "port": 443, "header": "authorization", "value": format!("Basic {basic}")}
        ])
    );
    // … and accepted them: the token it issued works.
    let (code, _) = h.gw(reqwest::Method::GET, &format!("/v1/sessions/{UID}"), &h.token(), None).await;
    assert_eq!(code, 200);

    // Nothing the controller wrote to the cluster holds a credential: not the value, not its base64, not the
    // Basic encoding; the only secretKeyRef is the session token's.
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    for r in h.api.requests().iter().filter(|r| r.method == "PATCH") {
        let text = r.body.to_string();
        for needle in
            [AGENT_SECRET, WORKSPACE_SECRET, &b64(AGENT_SECRET), &b64(WORKSPACE_SECRET), &basic, "ghp_", "glpat"]
        {
            assert!(!text.contains(needle), "{} holds `{needle}`: {text}", r.path);
        }
    }
    let pod = h.objects.get(POD).unwrap();
    let text = pod.to_string();
    assert_eq!(text.matches("secretKeyRef").count(), 2, "runner and clone step: the token only: {text}");
    assert_eq!(text.matches(r#""secretKeyRef":{"key":"token","name":"fix-login-token"}"#).count(), 2, "{text}");
    assert!(!text.contains("github-bot") && !text.contains("shop-git"), "{text}");
    // The clone goes through the proxy and trusts the gateway's egress CA, which the ConfigMap carries.
    let clone = &pod["spec"]["initContainers"][0];
    let env = clone["env"].to_string();
    assert!(env.contains("http://paddock:$(PADDOCK_TOKEN)@localhost:6767"), "{env}");
    assert!(env.contains("/etc/paddock/agent/egress-ca.pem"), "{env}");
    let ca = h.http.get(format!("{}/v1/egress/ca.pem", h.gw.url)).send().await.unwrap().text().await.unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert_eq!(h.objects.get(CONFIGMAP).unwrap()["data"]["egress-ca.pem"], ca.as_str());
}

#[tokio::test]
async fn a_sessions_workspace_cannot_widen_egress() {
    for (ws, reason, message) in [
        (
            json!({"git": "ssh://169.254.169.254:80/x"}),
            "InvalidWorkspace",
            "spec.workspace.git: `ssh://169.254.169.254:80/x` is an SSH remote; the clone goes through the gateway's egress proxy, which cannot broker an SSH key",
        ),
        (
            json!({"git": "https://evil.example:31337/x.git"}),
            "WorkspaceNotAllowed",
            "spec.workspace.git: the clone goes through the gateway, which lets it reach `evil.example:31337` only when the Agent allows it",
        ),
        (
            // The Session's author may name any Secret of the namespace: it is never sent to a host of theirs.
            json!({"git": "https://attacker.example/x.git", "secretRef": {"name": "github-bot"}}),
            "WorkspaceNotAllowed",
            "spec.workspace.git: the clone goes through the gateway, which lets it reach `attacker.example:443` only when the Agent allows it",
        ),
        (
            json!({"git": "http://api.github.com/x.git", "secretRef": {"name": "creds"}}),
            "InvalidWorkspace",
            "spec.workspace.secretRef: a credential is sent only over https",
        ),
    ] {
        let h = harness(true, vec![], Duration::ZERO).await;
        h.set_workspace(ws.clone());
        h.reconcile().await;
        let (r, m, stalled) = h.ready();
        assert_eq!((r.as_str(), stalled), (reason, true), "{ws}: {m}");
        assert!(m.starts_with(message), "{ws}: {m}");
        assert!(h.nothing_started(), "{ws}");
    }
    // A host the Agent allows: the session starts, and its NetworkPolicy is the gateway alone, as without one.
    let h = harness(true, vec![], Duration::ZERO).await;
    h.set_workspace(json!({"git": "https://api.github.com/acme/x.git"}));
    h.reconcile().await;
    let np = h.objects.get(NETPOL).expect("started");
    let plain = harness(true, vec![], Duration::ZERO).await;
    plain.reconcile().await;
    assert_eq!(np["spec"], plain.objects.get(NETPOL).unwrap()["spec"]);
    // An unbrokered clone is a tunnel: no egress CA needed or fetched.
    assert!(!h.sent.lock().unwrap().iter().any(|(_, p, _)| p == "/v1/egress/ca.pem"));
    assert!(h.objects.get(CONFIGMAP).unwrap()["data"]["egress-ca.pem"].is_null());
}

/// A Status as the API server answers a refused request.
fn refusal(code: u16, reason: &str, message: &str) -> (u16, Json) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
               "reason": reason, "code": code}),
    )
}

/// The condition `type_` of the Session's status.
fn condition(st: &Json, type_: &str) -> Option<Json> {
    st["conditions"].as_array()?.iter().find(|c| c["type"] == type_).cloned()
}

/// Seconds until the retry an Action asks for (kube's Action shows it only in its Debug form).
fn requeue_secs(action: &kube::runtime::controller::Action) -> f64 {
    let d = format!("{action:?}");
    let inner = d.split("Some(").nth(1).and_then(|r| r.split(')').next()).unwrap_or_else(|| panic!("{d}"));
    match inner.strip_suffix("ms") {
        Some(ms) => ms.parse::<f64>().unwrap() / 1000.0,
        None => inner.strip_suffix('s').unwrap().parse().unwrap(),
    }
}

impl Harness {
    async fn try_reconcile(&self) -> Result<kube::runtime::controller::Action, paddock_operator::Error> {
        paddock_operator::session::reconcile(self.session(), self.ctx.clone()).await
    }
    fn events_with(&self, reason: &str) -> Vec<Json> {
        self.events().into_iter().filter(|e| e["reason"] == reason).collect()
    }
    fn gateway_sessions_created(&self) -> usize {
        self.sent.lock().unwrap().iter().filter(|(m, p, _)| m == "POST" && p == "/v1/sessions").count()
    }
    fn delete_session(&self) {
        let mut s = self.objects.get(SESSION).unwrap();
        s["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        self.objects.put(SESSION, s);
    }
    fn metric(&self, name: &str) -> String {
        let text = self.ctx.metrics.encode();
        text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {text}")).to_owned()
    }
}

#[tokio::test]
async fn a_pending_pod_is_not_ready_and_a_running_one_is() {
    let h = harness(true, vec![], Duration::ZERO).await;
    h.reconcile().await;
    // kstatus: the pod was created, not started: Ready=False (Starting) while Reconciling.
    let st = h.status();
    let (ready, reconciling) = (condition(&st, "Ready").unwrap(), condition(&st, "Reconciling").unwrap());
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("Starting")), "{st}");
    assert_eq!((reconciling["status"].as_str(), reconciling["reason"].as_str()), (Some("True"), Some("PodPending")));
    // The pod is Pending (scheduled, containers being created): still not Ready.
    h.set_pod_status(json!({"phase": "Pending"}));
    h.reconcile().await;
    let st = h.status();
    assert_eq!(st["phase"], "Pending");
    let ready = condition(&st, "Ready").unwrap();
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("Starting")), "{st}");
    assert_eq!(condition(&st, "Reconciling").unwrap()["status"], "True");
    // Running: Ready, and nothing in progress.
    h.set_pod_status(json!({"phase": "Running"}));
    h.reconcile().await;
    let st = h.status();
    let ready = condition(&st, "Ready").unwrap();
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("True"), Some("Running")), "{st}");
    assert!(condition(&st, "Reconciling").is_none() && condition(&st, "Stalled").is_none(), "{st}");
}

#[tokio::test]
async fn a_pod_the_api_server_refuses_stalls_the_session_with_its_words_until_it_is_created() {
    let h = harness(true, vec![], Duration::ZERO).await;
    let no_sa = "pods \"fix-login-runner\" is forbidden: error looking up service account team-a/default: serviceaccount \"default\" not found";
    h.objects.refuse(POD, refusal(403, "Forbidden", no_sa));

    // The first refusal shows at once: Ready=False and Stalled with the API server's words, a Warning Event;
    // the reconcile fails, so the controller's backoff retries it.
    let err = h.try_reconcile().await.expect_err("retried with backoff");
    assert!(err.to_string().contains("serviceaccount"), "{err}");
    let st = h.status();
    assert_eq!(st["phase"], "Pending");
    assert!(st["podName"].is_null(), "{st}");
    let (ready, stalled) = (condition(&st, "Ready").unwrap(), condition(&st, "Stalled").expect("Stalled"));
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("PodRefused")), "{st}");
    assert_eq!((stalled["status"].as_str(), stalled["reason"].as_str()), (Some("True"), Some("PodRefused")));
    let msg = ready["message"].as_str().unwrap();
    assert!(msg.starts_with("the API server refused the runner's Pod `fix-login-runner` (403 Forbidden): "), "{msg}");
    assert!(msg.contains(no_sa), "{msg}");
    assert_eq!(stalled["message"], ready["message"]);
    let warnings = h.events_with("PodRefused");
    assert_eq!(warnings.len(), 1, "{:?}", h.events());
    assert_eq!(warnings[0]["type"], "Warning");
    assert!(warnings[0]["note"].as_str().unwrap().contains("serviceaccount \"default\" not found"), "{warnings:?}");
    assert!(h.objects.get(POD).is_none());
    // Backoff: the delays grow (5 s, then 10 s, with up to 10% jitter).
    let first = requeue_secs(&paddock_operator::session::error_policy(h.session(), &err, h.ctx.clone()));
    let second = requeue_secs(&paddock_operator::session::error_policy(h.session(), &err, h.ctx.clone()));
    assert!((5.0..5.5).contains(&first) && (10.0..11.0).contains(&second), "{first} {second}");

    // Refused again alike: no second Event, no status write, and the token issued once is kept.
    let before = h.api.requests().len();
    h.try_reconcile().await.expect_err("still refused");
    assert!(!h.lines_since(before).iter().any(|l| l.ends_with("/status")), "{:?}", h.lines_since(before));
    assert_eq!(h.events_with("PodRefused").len(), 1);
    assert_eq!(h.gateway_sessions_created(), 1);

    // The ServiceAccount is created; now the RuntimeClass is missing: the new words replace the old.
    let no_rc = "pods \"fix-login-runner\" is forbidden: pod rejected: RuntimeClass \"gvisor\" not found";
    h.objects.refuse(POD, refusal(403, "Forbidden", no_rc));
    h.try_reconcile().await.expect_err("refused");
    let st = h.status();
    assert!(condition(&st, "Stalled").unwrap()["message"].as_str().unwrap().contains(no_rc), "{st}");
    // kube's recorder folds a repeat of the reason into the first Event (its series count goes up, its note
    // stays): the Session's condition is where the current words are.
    let repeats: Vec<Json> = h
        .api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/events/") && r.body["reason"] == "PodRefused")
        .map(|r| r.body)
        .collect();
    assert_eq!(repeats.len(), 1, "{repeats:?}");
    assert_eq!(repeats[0]["series"]["count"], 2);

    // Accepted: the pod is created, Stalled goes, the session starts as usual with the same token.
    h.objects.accept(POD);
    h.reconcile().await;
    let st = h.status();
    assert_eq!(st["podName"], "fix-login-runner");
    assert!(condition(&st, "Stalled").is_none(), "{st}");
    assert_eq!(condition(&st, "Ready").unwrap()["reason"], "Starting");
    assert_eq!(h.events_with("Started").len(), 1);
    assert_eq!(h.gateway_sessions_created(), 1);
    let (code, _) = h.gw(reqwest::Method::GET, &format!("/v1/sessions/{UID}"), &h.token(), None).await;
    assert_eq!(code, 200, "the token in the Secret is the session's");
}

#[tokio::test]
async fn each_object_the_api_server_refuses_is_named_in_the_session() {
    for (path, answer, reason, words) in [
        (
            CONFIGMAP,
            refusal(
                422,
                "Invalid",
                "ConfigMap \"fix-login-agent\" is invalid: data: Forbidden: field is immutable when `immutable` is set",
            ),
            "ConfigMapRefused",
            "(422 Invalid): ConfigMap \"fix-login-agent\" is invalid",
        ),
        (
            NETPOL,
            refusal(404, "NotFound", "the server could not find the requested resource"),
            "NetworkPolicyRefused",
            "runner's NetworkPolicy `fix-login-runner` (404 NotFound)",
        ),
        (
            POD,
            refusal(
                422,
                "Invalid",
                "Pod \"fix-login-runner\" is invalid: spec.runtimeClassName: Invalid value: \"Gvisor\"",
            ),
            "PodRefused",
            "(422 Invalid): Pod \"fix-login-runner\" is invalid",
        ),
    ] {
        let h = harness(true, vec![], Duration::ZERO).await;
        h.objects.refuse(path, answer);
        h.try_reconcile().await.expect_err("retried with backoff");
        let st = h.status();
        let stalled = condition(&st, "Stalled").unwrap_or_else(|| panic!("{path}: {st}"));
        assert_eq!(stalled["reason"], reason, "{st}");
        assert!(stalled["message"].as_str().unwrap().contains(words), "{stalled}");
        assert_eq!(condition(&st, "Ready").unwrap()["status"], "False");
        assert_eq!(h.events_with(reason).len(), 1, "{reason}");
        assert!(h.objects.get(POD).is_none(), "nothing after the refused object is applied");
    }
}

#[tokio::test]
async fn a_refused_token_secret_keeps_its_token_for_the_next_attempt() {
    let h = harness(true, vec![], Duration::ZERO).await;
    let quota = "secrets \"fix-login-token\" is forbidden: exceeded quota: team-a, requested: secrets=1, used: secrets=10, limited: secrets=10";
    h.objects.refuse(SECRET, refusal(403, "Forbidden", quota));
    h.try_reconcile().await.expect_err("refused");
    let stalled = condition(&h.status(), "Stalled").unwrap();
    assert_eq!(stalled["reason"], "SecretRefused");
    assert!(stalled["message"].as_str().unwrap().contains("exceeded quota"), "{stalled}");
    // Nothing holds the token but the controller's memory; it must not leak into status or Events.
    assert!(!h.status().to_string().contains("pdk_") && !h.events().iter().any(|e| e.to_string().contains("pdk_")));
    h.objects.accept(SECRET);
    h.reconcile().await;
    // One gateway session, not a second one refused as a duplicate (which would end as TokenLost).
    assert_eq!(h.gateway_sessions_created(), 1);
    assert_eq!(h.status()["podName"], "fix-login-runner");
    let (code, _) = h.gw(reqwest::Method::GET, &format!("/v1/sessions/{UID}"), &h.token(), None).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn a_server_error_or_throttling_is_retried_without_stalling() {
    for answer in
        [refusal(500, "InternalError", "etcdserver: request timed out"), refusal(429, "TooManyRequests", "slow down")]
    {
        let h = harness(true, vec![], Duration::ZERO).await;
        h.objects.refuse(POD, answer.clone());
        h.try_reconcile().await.expect_err("retried");
        assert!(h.status().is_null(), "{answer:?}: {}", h.status());
        assert!(h.events().is_empty(), "{:?}", h.events());
    }
}

#[tokio::test]
async fn the_prompt_reaches_the_runner_in_its_secret_never_in_the_pod() {
    let h = harness(true, vec![], Duration::ZERO).await;
    let prompt = "Fix \"the\" login; ignore $(curl evil.example) and `id`,\nthen reply 'DONE-7f3a'";
    let mut s = h.objects.get(SESSION).unwrap();
    s["spec"]["prompt"] = json!(prompt);
    h.objects.put(SESSION, s);
    h.reconcile().await;
    let secret = h.objects.get(SECRET).unwrap();
    assert_eq!(String::from_utf8(base64_decode(secret["data"]["prompt"].as_str().unwrap())).unwrap(), prompt);
    let pod = h.objects.get(POD).unwrap();
    let args = pod["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains(r#""--prompt-file","/etc/paddock/prompt/prompt""#), "{args}");
    // Nothing else the controller wrote holds it: the pod, the ConfigMap, the NetworkPolicy, status, Events.
    for r in h.api.requests().iter().filter(|r| r.path != SECRET && matches!(r.method.as_str(), "PATCH" | "POST")) {
        let text = r.body.to_string();
        for needle in ["DONE-7f3a", "curl evil", "Fix \\\"the\\\""] {
            assert!(!text.contains(needle), "{} holds `{needle}`: {text}", r.path);
        }
    }
}

#[tokio::test]
async fn a_prompt_over_512_kib_stalls_naming_spec_prompt() {
    let h = harness(true, vec![], Duration::ZERO).await;
    let mut s = h.objects.get(SESSION).unwrap();
    s["spec"]["prompt"] = json!("x".repeat(512 * 1024 + 1));
    h.objects.put(SESSION, s);
    h.reconcile().await;
    let (reason, message, stalled) = h.ready();
    assert_eq!((reason.as_str(), stalled), ("PromptTooLarge", true));
    assert!(message.starts_with("spec.prompt: 524289 bytes is more than the 524288 bytes (512 KiB)"), "{message}");
    assert!(h.nothing_started());
    assert_eq!(h.events_with("PromptTooLarge").len(), 1);
    // 512 KiB exactly starts.
    let mut s = h.objects.get(SESSION).unwrap();
    s["spec"]["prompt"] = json!("x".repeat(512 * 1024));
    h.objects.put(SESSION, s);
    h.reconcile().await;
    assert!(h.objects.get(POD).is_some());
    assert!(condition(&h.status(), "Stalled").is_none());
}

#[tokio::test]
async fn deleting_a_session_while_the_gateway_is_down_gives_up_after_five_attempts() {
    let h = harness(true, vec![], Duration::ZERO).await;
    h.reconcile().await;
    let token = h.token();
    h.set_pod_status(json!({"phase": "Running"}));
    // Earlier failures of this Session (a refused pod, say) do not stretch the deletion's retries.
    for _ in 0..6 {
        h.ctx.backoff.failed("Session/team-a/fix-login");
    }
    h.delete_session();
    h.gateway_down.store(true, Ordering::SeqCst);
    let mut delays = Vec::new();
    for attempt in 1..paddock_operator::session::REVOCATION_ATTEMPTS {
        let before = h.api.requests().len();
        let err = h.try_reconcile().await.expect_err("the gateway is down: tried again later");
        assert!(err.to_string().contains("503"), "{err}");
        delays.push(requeue_secs(&paddock_operator::session::error_policy(h.session(), &err, h.ctx.clone())));
        assert_eq!(h.lines_since(before), Vec::<String>::new(), "attempt {attempt}: nothing deleted yet");
        assert_eq!(h.objects.get(SESSION).unwrap()["metadata"]["finalizers"], json!(["paddock.dev/session"]));
        assert!(h.events_with("TokenNotRevoked").is_empty());
    }
    for (d, want) in delays.iter().zip([5.0, 10.0, 20.0, 40.0]) {
        assert!((want..want * 1.1).contains(d), "backoff {delays:?}");
    }
    // The fifth failure lets the Session go: its objects are deleted and the finalizer removed.
    let before = h.api.requests().len();
    h.try_reconcile().await.expect("given up");
    assert_eq!(h.lines_since(before), teardown());
    assert_eq!(h.objects.get(SESSION).unwrap()["metadata"]["finalizers"], json!([]));
    let ends = h.sent.lock().unwrap().iter().filter(|(m, p, _)| m == "POST" && p.ends_with("/end")).count();
    assert_eq!(ends, 5, "five attempts");
    let warnings = h.events_with("TokenNotRevoked");
    assert_eq!(warnings.len(), 1, "{:?}", h.events());
    assert_eq!(warnings[0]["type"], "Warning");
    let note = warnings[0]["note"].as_str().unwrap();
    assert!(note.starts_with(&format!("Session `team-a/fix-login` was deleted, but its session `{UID}`")), "{note}");
    assert!(note.contains("in 5 attempts") && note.contains("503"), "{note}");
    assert_eq!(
        h.metric("paddock_controller_session_revocations_abandoned_total"),
        "paddock_controller_session_revocations_abandoned_total 1"
    );
    assert!(note.contains("stops working on its own when its lifetime ends"), "{note}");
    // That lifetime: the session was created with the pod's deadline (120 s + 300 s) and an hour's slack.
    let created = h.sent.lock().unwrap().iter().find(|(m, p, _)| m == "POST" && p == "/v1/sessions").cloned();
    let body = created.expect("the session was created").2;
    let spec: paddock_api::AgentSpec = serde_json::from_value(agent_json()["spec"].clone()).unwrap();
    assert_eq!(body["expiresInSeconds"], json!(u64::from(spec.limits.timeout_seconds) + 300 + 3600), "{body}");
    // What the Event warns about: the gateway, back, still honours the token until it is ended or expires.
    h.gateway_down.store(false, Ordering::SeqCst);
    let (code, _) = h.gw(reqwest::Method::GET, &format!("/v1/sessions/{UID}"), &token, None).await;
    assert_eq!(code, 200);
}

/// The controller's gateway unreachable when a Session is applied: nothing starts (no pod runs without a
/// session at the gateway), the error says why, it is tried again, and once the gateway is back the Session
/// starts without anyone touching it.
#[tokio::test]
async fn a_session_applied_while_the_gateway_is_down_starts_when_it_is_back() {
    let h = harness(true, vec![], Duration::ZERO).await;
    h.gateway_down.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let err = h.try_reconcile().await.expect_err("the gateway is down: tried again later");
        assert!(err.to_string().contains("503"), "{err}");
        assert!(h.objects.get(POD).is_none(), "no pod without a session at the gateway");
        assert!(h.objects.get(SECRET).is_none(), "no token without a session at the gateway");
    }
    h.gateway_down.store(false, Ordering::SeqCst);
    h.reconcile().await;
    assert!(h.objects.get(POD).is_some(), "the pod is created once the gateway is back");
    let token = h.token();
    let (code, _) = h.gw(reqwest::Method::GET, &format!("/v1/sessions/{UID}"), &token, None).await;
    assert_eq!(code, 200, "its token works at the gateway");
}

#[tokio::test]
async fn deleting_a_session_when_the_gateway_comes_back_revokes_its_token() {
    let h = harness(true, vec![], Duration::ZERO).await;
    h.reconcile().await;
    let token = h.token();
    h.delete_session();
    h.gateway_down.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        h.try_reconcile().await.expect_err("the gateway is down");
    }
    h.gateway_down.store(false, Ordering::SeqCst);
    h.try_reconcile().await.expect("revoked");
    assert_eq!(h.objects.get(SESSION).unwrap()["metadata"]["finalizers"], json!([]));
    assert!(h.objects.get(POD).is_none() && h.objects.get(SECRET).is_none());
    let (code, _) = h.gw(reqwest::Method::GET, &format!("/v1/sessions/{UID}"), &token, None).await;
    assert_eq!(code, 401, "token revoked");
    assert!(h.events_with("TokenNotRevoked").is_empty());
    assert_eq!(
        h.metric("paddock_controller_session_revocations_abandoned_total"),
        "paddock_controller_session_revocations_abandoned_total 0"
    );
}

#[tokio::test]
async fn a_session_rule_that_would_allow_stalls_naming_its_field_and_nothing_starts() {
    let h = harness(true, vec![], Duration::ZERO).await;
    let mut s = h.objects.get(SESSION).unwrap();
    // The CRD's enum refuses this at apply; an older CRD or a client that skips validation still reaches here.
    s["spec"]["policy"] = json!({"rules": [{"name": "let-it-through", "use": "tool_allowlist", "action": "allow", "with": {"tools": ["shell"]}}]});
    h.objects.put(SESSION, s);
    h.reconcile().await;
    let (reason, message, stalled) = h.ready();
    assert_eq!((reason.as_str(), stalled), ("InvalidSessionPolicy", true), "{message}");
    assert!(message.starts_with("spec.policy.rules[0].action:"), "{message}");
    assert!(h.nothing_started(), "no gateway session, no pod");
}

/// The requests of a Session's teardown, in order: its objects deleted, then its finalizer removed.
fn teardown() -> [String; 5] {
    [
        format!("DELETE {POD}"),
        format!("DELETE {NETPOL}"),
        format!("DELETE {SECRET}"),
        format!("DELETE {CONFIGMAP}"),
        format!("PATCH {SESSION}"),
    ]
}
