//! A session seen through a read-only share link, signed out: its summary and live transcript, nothing else.
//! The link's token is checked on every request, and an open transcript stream ends within
//! [`REVOCATION_CHECK`] of the link being revoked or expiring.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use maud::html;

use super::view::{self, html_response};
use super::{Console, pages};
use crate::gateway::{hash_token, unix_now};
use crate::store::ShareRow;

/// How often an open shared transcript checks that its link still works.
const REVOCATION_CHECK: Duration = Duration::from_secs(2);

/// The live link a token opens, if any.
async fn live_share(console: &Console, token: &str) -> Result<ShareRow, Response> {
    let gone = || {
        view::error_page(
            StatusCode::NOT_FOUND,
            "This link does not work: it was revoked, it expired, or it never existed.",
        )
    };
    // A token is 48 hex digits; anything else is not looked up.
    if token.len() != 48 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(gone());
    }
    let rows = console.gw.store.shares(None, Some(&hash_token(token))).await.map_err(|e| {
        view::error_page(StatusCode::SERVICE_UNAVAILABLE, &format!("The gateway cannot read its database: {e}"))
    })?;
    rows.into_iter().find(|s| s.revoked_at.is_none() && s.expires_at > unix_now()).ok_or_else(gone)
}

/// `GET /ui/shared/{token}`: the shared session's page.
pub async fn page(State(console): State<Arc<Console>>, Path(token): Path<String>) -> Response {
    let share = match live_share(&console, &token).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(s) = console.gw.find_session(&share.session).await else {
        return view::error_page(StatusCode::NOT_FOUND, "The shared session no longer exists.");
    };
    let summary = match pages::summary_block(&console, &s).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let until = time::OffsetDateTime::from_unix_timestamp(share.expires_at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    let body = html! {
        p.notice role="status" { "A read-only view shared by " (share.created_by) ", until " (until) "." }
        div #summary { (summary) }
        (pages::transcript(&format!("/ui/shared/{token}/events"), false))
    };
    html_response(StatusCode::OK, view::page(&format!("Session {} (shared)", s.id), None, body))
}

/// `GET /ui/shared/{token}/events`: the shared session's transcript as server-sent events, ending when the
/// link stops working.
pub async fn events(State(console): State<Arc<Console>>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let share = match live_share(&console, &token).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(s) = console.gw.find_session(&share.session).await else {
        return view::error_page(StatusCode::NOT_FOUND, "The shared session no longer exists.");
    };
    let offset = super::actions::resume_offset(&headers);
    let response = match crate::api::transcript_response(&console.gw, &s, offset, false).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (parts, body) = response.into_parts();
    let watcher = {
        let console = console.clone();
        async move {
            loop {
                tokio::time::sleep(REVOCATION_CHECK).await;
                if live_share(&console, &token).await.is_err() {
                    tracing::info!(share = %share.id, "a shared transcript stream ended: its link no longer works");
                    return;
                }
            }
        }
    };
    let stream = body.into_data_stream().take_until(Box::pin(watcher));
    Response::from_parts(parts, Body::from_stream(stream))
}
