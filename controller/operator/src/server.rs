//! The HTTP server every replica runs: `/healthz`, `/metrics` and the git webhook.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use kube::Client;

use crate::metrics::Metrics;
use crate::webhook::{self, WebhookState};

/// GitHub sends push payloads of up to 25 MB.
const MAX_BODY: usize = 25 * 1024 * 1024;

pub fn router(client: Client, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .route("/hooks/git/{namespace}/{name}", post(webhook::receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(WebhookState { client, metrics })
}

async fn metrics_text(State(state): State<WebhookState>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
}

/// Serves `router` on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz, /metrics and /hooks/git");
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
