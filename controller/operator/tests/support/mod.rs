//! A fake API server on kube's `tower-test` mock that records every request exactly (method, path, query,
//! content type, body) and answers from a per-test routing function; plus fixtures.

#![allow(dead_code)]

#[path = "../../../gitops/tests/support/mod.rs"]
pub mod git;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector;
use paddock_api::{GitSource, Policy};
use paddock_operator::Context;
use paddock_operator::metrics::Metrics;
use serde_json::{Value as Json, json};

/// One request as the API server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub body: Json,
}

impl Seen {
    /// `PATCH /apis/…` without the query.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
    pub fn is_ssa(&self) -> bool {
        self.method == "PATCH"
            && self.query.get("fieldManager").map(String::as_str) == Some("paddock")
            && self.query.get("force").map(String::as_str) == Some("true")
            && self.content_type.as_deref() == Some("application/apply-patch+yaml")
    }
}

pub type Route = Arc<dyn Fn(&Seen) -> (u16, Json) + Send + Sync>;

pub struct FakeApi {
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeApi {
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn lines(&self) -> Vec<String> {
        self.requests().iter().map(Seen::line).collect()
    }
}

/// A client whose requests go to `route`.
pub fn fake_api(route: Route) -> (Client, FakeApi) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let query = parts
                .uri
                .query()
                .map(|q| {
                    q.split('&')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').unwrap_or((p, ""));
                            (k.to_owned(), percent_decode(v))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let header = |h: &str| parts.headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query,
                content_type: header("content-type"),
                accept: header("accept"),
                body: if bytes.is_empty() { Json::Null } else { serde_json::from_slice(&bytes).unwrap_or(Json::Null) },
            };
            let (status, reply) = route(&seen);
            log.lock().unwrap().push(seen);
            send.send_response(
                Response::builder().status(status).body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap(),
            );
        }
    });
    (Client::new(svc, "default"), FakeApi { seen })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

pub fn context(client: Client, cache: PathBuf) -> Arc<Context> {
    context_with_policies(client, cache, Vec::new())
}

pub fn context_with_policies(client: Client, cache: PathBuf, policies: Vec<Policy>) -> Arc<Context> {
    let (reader, mut writer) = reflector::store::<Policy>();
    for p in policies {
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(p));
    }
    Arc::new(Context::new(client, Arc::new(Metrics::default()), cache, reader).with_local_git_sources())
}

pub const NS: &str = "team-a";
pub const NAME: &str = "agents";

/// A GitSource as the API server would return it, with the finalizer already added.
pub fn gitsource(url: &str, status: Json) -> GitSource {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1",
        "kind": "GitSource",
        "metadata": {
            "name": NAME, "namespace": NS, "uid": "uid-1", "generation": 1, "resourceVersion": "100",
            "finalizers": ["paddock.dev/gitsource"]
        },
        "spec": {"url": url, "interval": "1m"},
        "status": status
    }))
    .unwrap()
}

/// A metadata-only list, as the API server answers `list_metadata`.
pub fn metadata_list(items: Vec<Json>) -> Json {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {"resourceVersion": "1"}, "items": items})
}

/// A live object labelled as applied by the test GitSource.
pub fn live(name: &str, rv: &str, revision: &str, extra_annotations: Json) -> Json {
    let mut annotations = json!({"paddock.dev/revision": revision});
    if let Json::Object(extra) = extra_annotations {
        annotations.as_object_mut().unwrap().extend(extra);
    }
    json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {
            "name": name, "namespace": NS, "resourceVersion": rv,
            "labels": {"app.kubernetes.io/managed-by": "paddock", "paddock.dev/gitsource-name": NAME, "paddock.dev/gitsource-namespace": NS},
            "annotations": annotations
        }
    })
}

pub const AGENT: &str = "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: coder\nspec:\n  harness: claude-code\n  model: claude-sonnet-4-5\n  policies: [baseline]\n";
pub const POLICY: &str = "apiVersion: paddock.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: baseline\nspec:\n  rules:\n    - {name: budget, use: cost_budget, with: {max_cost_usd: 10}}\n";

pub fn status_ok() -> (u16, Json) {
    (200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
}

pub fn not_found(what: &str) -> (u16, Json) {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{what} not found")}),
    )
}

/// The reply of a server-side apply: the applied body with a resourceVersion.
pub fn applied(seen: &Seen, rv: &str) -> (u16, Json) {
    let mut obj = seen.body.clone();
    obj["metadata"]["resourceVersion"] = json!(rv);
    obj["metadata"]["uid"] = json!(format!("uid-{}", seen.path.rsplit('/').next().unwrap()));
    (200, obj)
}

/// The reply to a GitSource status patch: the object with the applied status.
pub fn gitsource_reply(seen: &Seen, url: &str) -> (u16, Json) {
    let mut gs = serde_json::to_value(gitsource(url, Json::Null)).unwrap();
    gs["status"] = seen.body["status"].clone();
    (200, gs)
}

/// Events: echo back.
pub fn echo(seen: &Seen) -> (u16, Json) {
    (if seen.method == "POST" { 201 } else { 200 }, seen.body.clone())
}

/// The real gateway, in process on 127.0.0.1, governing with `repo` (one YAML file of Agents and Policies).
pub struct TestGateway {
    pub url: String,
    _server: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn start_gateway(dir: &std::path::Path, repo: &str, admin: &str) -> TestGateway {
    use paddock_gateway::config::{GatewayConfig, SecretSource};
    std::fs::create_dir_all(dir.join("repo")).unwrap();
    std::fs::write(dir.join("repo/all.yaml"), repo).unwrap();
    std::fs::write(dir.join("admin-token"), admin).unwrap();
    let cfg = GatewayConfig {
        data_dir: Some(dir.join("data")),
        repo: Some(dir.join("repo")),
        admin_token: Some(SecretSource { env: None, file: Some(dir.join("admin-token")) }),
        ..GatewayConfig::default()
    };
    let (_, url, server) = paddock_gateway::server::serve_loopback(&cfg).await.expect("gateway serves");
    TestGateway { url, _server: server }
}
