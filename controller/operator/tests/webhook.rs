//! The HTTP server: the git webhook (signatures checked, then the GitSource annotated for an immediate
//! sync), `/healthz` and `/metrics`.

mod support;

use std::sync::Arc;

use axum::body::Body as AxumBody;
use hmac::{Hmac, KeyInit, Mac};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use paddock_operator::metrics::Metrics;
use serde_json::{Value as Json, json};
use sha2::Sha256;
use support::*;
use tower::ServiceExt;

const GS: &str = "/apis/paddock.dev/v1alpha1/namespaces/team-a/gitsources/agents";
const SECRET: &str = "/api/v1/namespaces/team-a/secrets/webhook";

fn cluster(with_webhook: bool) -> Route {
    Arc::new(move |s: &Seen| {
        let mut gs = serde_json::to_value(gitsource("https://example.com/agents.git", Json::Null)).unwrap();
        if with_webhook {
            gs["spec"]["webhookSecretRef"] = json!({"name": "webhook"});
        }
        match (s.method.as_str(), s.path.as_str()) {
            ("GET", GS) | ("PATCH", GS) => (200, gs),
            ("GET", SECRET) => (
                200,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "webhook", "namespace": NS},
                       "data": {"token": "czNjcmV0"}}), // "s3cret"
            ),
            ("GET", _) => not_found("gitsources.paddock.dev \"other\""),
            _ => (500, json!({})),
        }
    })
}

fn signed(body: &str, secret: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post(route: Route, uri: &str, headers: &[(&str, String)], body: &str) -> (StatusCode, FakeApi, Arc<Metrics>) {
    let (client, api) = fake_api(route);
    let metrics = Arc::new(Metrics::default());
    let app = paddock_operator::server::router(client, metrics.clone());
    let mut req = Request::post(uri);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = app.oneshot(req.body(AxumBody::from(body.to_owned())).unwrap()).await.unwrap();
    (resp.status(), api, metrics)
}

const PUSH: &str = r#"{"ref":"refs/heads/main","after":"0123abcd"}"#;

#[tokio::test]
async fn a_signed_github_push_requests_a_sync() {
    let headers = [("x-hub-signature-256", signed(PUSH, b"s3cret")), ("x-github-event", "push".into())];
    let (status, api, metrics) = post(cluster(true), "/hooks/git/team-a/agents", &headers, PUSH).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(api.lines(), [format!("GET {GS}"), format!("GET {SECRET}"), format!("PATCH {GS}")]);
    let patch = &api.requests()[2];
    assert_eq!(patch.content_type.as_deref(), Some("application/merge-patch+json"));
    let at = patch.body["metadata"]["annotations"]["paddock.dev/requestedAt"].as_str().unwrap();
    assert!(at.parse::<k8s_openapi::jiff::Timestamp>().is_ok(), "{at}");
    assert!(metrics.encode().contains(r#"paddock_controller_webhook_requests_total{result="accepted"} 1"#));
}

#[tokio::test]
async fn a_gitlab_token_requests_a_sync() {
    let (status, api, _) =
        post(cluster(true), "/hooks/git/team-a/agents", &[("x-gitlab-token", "s3cret".into())], PUSH).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(api.lines().last().unwrap(), &format!("PATCH {GS}"));
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_changes_nothing() {
    for headers in [
        vec![("x-hub-signature-256", signed(PUSH, b"wrong"))],
        vec![("x-hub-signature-256", signed("{}", b"s3cret"))],
        vec![("x-gitlab-token", "s3cre".to_owned())],
        vec![],
    ] {
        let (status, api, metrics) = post(cluster(true), "/hooks/git/team-a/agents", &headers, PUSH).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert!(api.requests().iter().all(|s| s.method != "PATCH"), "no sync requested: {:?}", api.lines());
        assert!(metrics.encode().contains(r#"result="unauthorized"} 1"#));
    }
}

#[tokio::test]
async fn unknown_sources_and_sources_without_a_webhook_secret_look_the_same() {
    let headers = [("x-gitlab-token", "s3cret".to_owned())];
    let (a, _, _) = post(cluster(true), "/hooks/git/team-a/other", &headers, PUSH).await;
    let (b, api, _) = post(cluster(false), "/hooks/git/team-a/agents", &headers, PUSH).await;
    assert_eq!((a, b), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(api.lines(), [format!("GET {GS}")], "the secret is not even read");
}

#[tokio::test]
async fn a_github_ping_is_answered_without_a_sync() {
    let headers = [("x-hub-signature-256", signed("{}", b"s3cret")), ("x-github-event", "ping".into())];
    let (status, api, _) = post(cluster(true), "/hooks/git/team-a/agents", &headers, "{}").await;
    assert_eq!(status, StatusCode::OK);
    assert!(api.requests().iter().all(|s| s.method != "PATCH"));
}

#[tokio::test]
async fn healthz_and_metrics() {
    let (client, _api) = fake_api(cluster(true));
    let metrics = Arc::new(Metrics::default());
    metrics.reconciled("gitsource", "success", 0.02);
    let app = paddock_operator::server::router(client, metrics);
    let resp = app.clone().oneshot(Request::get("/healthz").body(AxumBody::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app.oneshot(Request::get("/metrics").body(AxumBody::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        text.contains(r#"paddock_controller_reconciles_total{controller="gitsource",result="success"} 1"#),
        "{text}"
    );
    assert!(text.contains("paddock_controller_reconcile_duration_seconds_bucket"), "{text}");
}
