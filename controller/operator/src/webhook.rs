//! The git push webhook: `POST /hooks/git/{namespace}/{name}`. A request signed with the GitSource's
//! webhook secret — GitHub's `X-Hub-Signature-256` (HMAC-SHA256 of the body) or GitLab's `X-Gitlab-Token` —
//! stamps the `paddock.dev/requestedAt` annotation, which makes the controller sync at once, as Flux's
//! notification receivers do. Any replica can take the request; the leader does the sync.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use paddock_api::GitSource;
use paddock_gitops::plan::REQUESTED_AT_ANNOTATION;
use serde_json::json;
use sha2::Sha256;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// The key of the webhook Secret that holds the shared secret.
pub const SECRET_KEY: &str = "token";

/// How a request proved it knows the secret.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signature or token matches.
    Valid,
    /// Present but wrong.
    Invalid,
    /// Neither header.
    Missing,
}

/// Checks GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` or GitLab's
/// `X-Gitlab-Token: <secret>`, in constant time.
pub fn verify(headers: &HeaderMap, body: &[u8], secret: &[u8]) -> Verdict {
    if secret.is_empty() {
        // An empty secret would make every request valid.
        return Verdict::Invalid;
    }
    if let Some(sig) = headers.get("x-hub-signature-256") {
        let Some(hex_sig) = sig.to_str().ok().and_then(|s| s.strip_prefix("sha256=")) else {
            return Verdict::Invalid;
        };
        let Ok(expected) = hex::decode(hex_sig) else { return Verdict::Invalid };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(body);
        // verify_slice compares in constant time.
        return if mac.verify_slice(&expected).is_ok() { Verdict::Valid } else { Verdict::Invalid };
    }
    if let Some(token) = headers.get("x-gitlab-token") {
        return if constant_time_eq(token.as_bytes(), secret) { Verdict::Valid } else { Verdict::Invalid };
    }
    Verdict::Missing
}

/// Equality whose time does not depend on where the inputs differ (it still reveals the length, which is
/// not secret for a token the operator chose).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the webhook needs.
#[derive(Clone)]
pub struct WebhookState {
    pub client: Client,
    pub metrics: std::sync::Arc<Metrics>,
}

/// The axum handler.
pub async fn receive(
    State(state): State<WebhookState>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let (status, text, result) = handle(&state.client, &namespace, &name, &headers, &body).await;
    state.metrics.webhook(result);
    (status, text)
}

async fn handle(
    client: &Client,
    namespace: &str,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (StatusCode, &'static str, &'static str) {
    // One answer for "no such GitSource" and "webhook not enabled", so callers learn nothing about which exist.
    const NOT_FOUND: (StatusCode, &str, &str) = (StatusCode::NOT_FOUND, "no such webhook\n", "not_found");
    let sources: Api<GitSource> = Api::namespaced(client.clone(), namespace);
    let gs = match sources.get_opt(name).await {
        Ok(Some(gs)) => gs,
        Ok(None) => return NOT_FOUND,
        Err(e) => {
            warn!(%namespace, %name, error = %e, "webhook: reading the GitSource failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again\n", "error");
        }
    };
    let Some(secret_ref) = gs.spec.webhook_secret_ref.as_ref() else { return NOT_FOUND };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match secrets.get_opt(&secret_ref.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            warn!(%namespace, %name, secret = %secret_ref.name, "webhook: the webhook Secret does not exist");
            return NOT_FOUND;
        }
        Err(e) => {
            warn!(%namespace, %name, error = %e, "webhook: reading the Secret failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again\n", "error");
        }
    };
    let key = secret.data.as_ref().and_then(|d| d.get(SECRET_KEY)).map(|b| b.0.clone()).unwrap_or_default();
    match verify(headers, body, &key) {
        Verdict::Valid => {}
        Verdict::Invalid | Verdict::Missing => {
            warn!(%namespace, %name, "webhook: signature or token does not match; ignored");
            return (StatusCode::UNAUTHORIZED, "signature does not match\n", "unauthorized");
        }
    }
    if headers.get("x-github-event").and_then(|v| v.to_str().ok()) == Some("ping") {
        return (StatusCode::OK, "pong\n", "ignored");
    }
    let patch = json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: crate::conditions::now_precise()}}});
    match sources.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => {
            info!(%namespace, %name, "webhook: sync requested");
            (StatusCode::ACCEPTED, "sync requested\n", "accepted")
        }
        Err(e) => {
            warn!(%namespace, %name, error = %e, "webhook: could not annotate the GitSource");
            (StatusCode::SERVICE_UNAVAILABLE, "try again\n", "error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github(body: &[u8], secret: &[u8]) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        let mut h = HeaderMap::new();
        h.insert(
            "x-hub-signature-256",
            format!("sha256={}", hex::encode(mac.finalize().into_bytes())).parse().unwrap(),
        );
        h
    }

    #[test]
    fn github_signatures() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        assert_eq!(verify(&github(body, b"s3cret"), body, b"s3cret"), Verdict::Valid);
        assert_eq!(verify(&github(body, b"other"), body, b"s3cret"), Verdict::Invalid);
        // The body is what is signed: a changed body fails.
        assert_eq!(verify(&github(body, b"s3cret"), b"{}", b"s3cret"), Verdict::Invalid);
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", "sha1=abcd".parse().unwrap());
        assert_eq!(verify(&h, body, b"s3cret"), Verdict::Invalid);
        h.insert("x-hub-signature-256", "sha256=zz".parse().unwrap());
        assert_eq!(verify(&h, body, b"s3cret"), Verdict::Invalid);
    }

    #[test]
    fn gitlab_tokens_and_missing_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-gitlab-token", "s3cret".parse().unwrap());
        assert_eq!(verify(&h, b"", b"s3cret"), Verdict::Valid);
        assert_eq!(verify(&h, b"", b"s3cret2"), Verdict::Invalid);
        assert_eq!(verify(&HeaderMap::new(), b"", b"s3cret"), Verdict::Missing);
        // An empty configured secret accepts nothing.
        let mut empty = HeaderMap::new();
        empty.insert("x-gitlab-token", "".parse().unwrap());
        assert_eq!(verify(&empty, b"", b""), Verdict::Invalid);
    }
}
