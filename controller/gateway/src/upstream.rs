//! Upstream providers: real ones over HTTPS (keys stay here) and the in-process scripted one. Both give
//! back a status, a content type and a byte stream.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use tower::ServiceExt;

use crate::config::{GatewayConfig, ProviderKind};
use crate::scripted::{self, ScriptFile};
use crate::wire::Wire;

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

pub struct UpstreamResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: ByteStream,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream provider `{provider}` is unreachable: {message}")]
    Unreachable { provider: String, message: String },
    #[error("upstream provider `{provider}` did not answer within {seconds}s")]
    Timeout { provider: String, seconds: u64 },
}

enum Backend {
    Http { base: url::Url, key: Option<String>, client: reqwest::Client },
    Scripted(axum::Router),
}

pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    models: Vec<String>,
    backend: Backend,
}

impl Provider {
    pub fn speaks(&self, wire: Wire) -> bool {
        match self.kind {
            ProviderKind::Anthropic => wire == Wire::Anthropic,
            ProviderKind::Openai => matches!(wire, Wire::Chat | Wire::Responses),
            ProviderKind::Google => wire == Wire::Gemini,
            ProviderKind::Scripted => true,
        }
    }
}

/// The provider's base URL with `path` (and its query, if any) after the base's own path. The base is parsed
/// once, at start: parsing the whole URL again for every request was 2–3 % of a proxied request's CPU.
fn upstream_url(base: &url::Url, path: &str) -> url::Url {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut url = base.clone();
    url.set_path(&format!("{}{path}", base.path().trim_end_matches('/')));
    url.set_query(query);
    url
}

#[derive(Default)]
pub struct Providers {
    list: Vec<Provider>,
    response_timeout: Duration,
}

impl Providers {
    /// Builds the providers, reading their keys now so that a missing key fails at start, not mid-session.
    pub fn from_config(cfg: &GatewayConfig) -> anyhow::Result<Providers> {
        let l = &cfg.limits;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(l.upstream_connect_timeout_seconds))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        let mut list = Vec::new();
        for p in &cfg.providers {
            let backend = match p.kind {
                ProviderKind::Scripted => {
                    let path = p.script.as_ref().expect("checked");
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        anyhow::anyhow!("provider `{}`: cannot read script `{}`: {e}", p.name, path.display())
                    })?;
                    let script = ScriptFile::parse(&text, &path.display().to_string()).map_err(anyhow::Error::msg)?;
                    Backend::Scripted(scripted::router(Arc::new(script)))
                }
                ProviderKind::Anthropic | ProviderKind::Openai | ProviderKind::Google => Backend::Http {
                    base: {
                        let base_url = p.base_url.as_deref().expect("checked");
                        url::Url::parse(base_url)
                            .map_err(|e| anyhow::anyhow!("provider `{}`: baseUrl `{base_url}`: {e}", p.name))?
                    },
                    key: match &p.api_key {
                        Some(k) => Some(k.read(&format!("provider `{}` apiKey", p.name))?),
                        None => None,
                    },
                    client: client.clone(),
                },
            };
            list.push(Provider { name: p.name.clone(), kind: p.kind, models: p.models.clone(), backend });
        }
        Ok(Providers { list, response_timeout: Duration::from_secs(l.upstream_response_timeout_seconds) })
    }

    /// The first provider whose model globs match.
    pub fn for_model(&self, model: &str) -> Option<&Provider> {
        self.list.iter().find(|p| p.models.iter().any(|g| paddock_policy::tools::glob_match(g, model)))
    }

    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|p| format!("{} ({})", p.name, p.models.join(", "))).collect()
    }

    /// Sends a request body upstream to `path` ([`Wire::upstream_path`]), with the Anthropic version and
    /// beta headers passed through.
    pub async fn send(
        &self,
        p: &Provider,
        wire: Wire,
        path: &str,
        headers: &axum::http::HeaderMap,
        body: Vec<u8>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let timeout = self.response_timeout;
        let unreachable = |message: String| UpstreamError::Unreachable { provider: p.name.clone(), message };
        match &p.backend {
            Backend::Scripted(router) => {
                let req = axum::http::Request::post(path)
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .expect("request");
                let resp = router.clone().oneshot(req).await.map_err(|e| unreachable(e.to_string()))?;
                Ok(UpstreamResponse {
                    status: resp.status().as_u16(),
                    content_type: content_type(resp.headers()),
                    body: Box::pin(resp.into_body().into_data_stream().map_err(|e| e.to_string())),
                })
            }
            Backend::Http { base, key, client } => {
                let mut req = client.post(upstream_url(base, path)).header("content-type", "application/json");
                for h in ["anthropic-version", "anthropic-beta", "openai-beta"] {
                    if let Some(v) = headers.get(h) {
                        req = req.header(h, v.clone());
                    }
                }
                if wire == Wire::Anthropic && !headers.contains_key("anthropic-version") {
                    req = req.header("anthropic-version", "2023-06-01");
                }
                if let Some(k) = key {
                    req = match p.kind {
                        ProviderKind::Anthropic => req.header("x-api-key", k),
                        ProviderKind::Google => req.header("x-goog-api-key", k),
                        _ => req.bearer_auth(k),
                    };
                }
                let resp = match tokio::time::timeout(timeout, req.body(body).send()).await {
                    Err(_) => {
                        return Err(UpstreamError::Timeout { provider: p.name.clone(), seconds: timeout.as_secs() });
                    }
                    Ok(Err(e)) => return Err(unreachable(error_chain(&e))),
                    Ok(Ok(r)) => r,
                };
                Ok(UpstreamResponse {
                    status: resp.status().as_u16(),
                    content_type: content_type(resp.headers()),
                    body: Box::pin(resp.bytes_stream().map(|r| r.map_err(|e| error_chain(&e)))),
                })
            }
        }
    }
}

fn content_type(h: &axum::http::HeaderMap) -> Option<String> {
    h.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// reqwest's top-level message hides the cause ("error sending request"); show the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The URL built from the base parsed once is the one parsing the base and the path together gave.
    #[test]
    fn the_upstream_url_is_the_base_followed_by_the_path_and_its_query() {
        for (base, path, want) in [
            ("http://127.0.0.1:9/", "/v1/messages", "http://127.0.0.1:9/v1/messages"),
            ("https://api.example.com", "/v1/chat/completions", "https://api.example.com/v1/chat/completions"),
            ("https://h.example/openai/", "/v1/responses?x=1", "https://h.example/openai/v1/responses?x=1"),
            (
                "https://h.example/g",
                "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
                "https://h.example/g/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            ),
            ("http://h.example/a", "/v1/messages?q=a b&c=%20", "http://h.example/a/v1/messages?q=a%20b&c=%20"),
        ] {
            let got = upstream_url(&url::Url::parse(base).unwrap(), path);
            assert_eq!(got.as_str(), want, "{base} + {path}");
            let joined = url::Url::parse(&format!("{}{path}", base.trim_end_matches('/'))).unwrap();
            assert_eq!(got, joined, "{base} + {path}: as one parse gives it");
        }
    }
}
