//! A session seen through a read-only share link, signed out: its summary and live transcript, nothing else.
//! A link works while it has not expired, is not revoked, and its creator may still see the session (a
//! configured user still configured; a Kubernetes user still allowed `get sessions` there). That is checked
//! on every request, and an open transcript stream ends within [`RECHECK`] of the link stopping.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use maud::html;
use serde::{Deserialize, Serialize};

use super::kube_auth::KubeUser;
use super::view::{self, html_response};
use super::{Authority, Console, Viewer, pages};
use crate::config::ConsoleRole;
use crate::gateway::{Session, hash_token, unix_now};
use crate::store::{ShareKey, ShareRow};

/// How often an open shared transcript checks that its link still works.
const RECHECK: Duration = Duration::from_secs(2);

/// Who made a link, as they signed in: what is checked again each time the link is used.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(super) enum Creator {
    Admin,
    User { name: String },
    Kube { user: KubeUser },
}

impl Creator {
    pub(super) fn of(v: &Viewer) -> Creator {
        match &v.authority {
            Authority::Role(ConsoleRole::Admin) => Creator::Admin,
            Authority::Role(_) => Creator::User { name: v.name.clone() },
            Authority::Kube { user, .. } => Creator::Kube { user: user.clone() },
        }
    }
}

impl Console {
    /// Whether the creator of a link may still see a session of `namespace`; a record that cannot be read is
    /// a no.
    async fn creator_may_see(&self, authority: &str, namespace: &str) -> bool {
        match serde_json::from_str::<Creator>(authority) {
            Ok(Creator::Admin) => true,
            Ok(Creator::User { name }) => self.users.iter().any(|(n, _, _)| *n == name),
            Ok(Creator::Kube { user }) => match &self.kube {
                Some(kube) => kube.allows(&user, "get", "sessions", namespace).await,
                None => false,
            },
            Err(_) => false,
        }
    }
}

/// The live link a token opens, with its session, if any.
async fn live_share(console: &Console, token: &str) -> Result<(ShareRow, Arc<Session>), Response> {
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
    let rows = console.gw.store.shares_where(ShareKey::TokenHash, &hash_token(token)).await.map_err(|e| {
        view::error_page(StatusCode::SERVICE_UNAVAILABLE, &format!("The gateway cannot read its database: {e}"))
    })?;
    let share = rows.into_iter().find(|s| s.revoked_at.is_none() && s.expires_at > unix_now()).ok_or_else(gone)?;
    let session = console.gw.find_session(&share.session).await.ok_or_else(gone)?;
    if !console.creator_may_see(&share.authority, &session.namespace).await {
        return Err(gone());
    }
    Ok((share, session))
}

/// `GET /ui/shared/{token}`: the shared session's page.
pub async fn page(State(console): State<Arc<Console>>, Path(token): Path<String>) -> Response {
    let (share, s) = match live_share(&console, &token).await {
        Ok(v) => v,
        Err(r) => return r,
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
        div #summary data-refresh-url={"/ui/shared/" (token) "/summary"} { (summary) }
        (pages::transcript(&format!("/ui/shared/{token}/events"), None))
    };
    html_response(StatusCode::OK, view::page(&format!("Session {} (shared)", s.id), None, body))
}

/// `GET /ui/shared/{token}/summary`: the shared session's summary, refreshed by the page.
pub async fn summary(State(console): State<Arc<Console>>, Path(token): Path<String>) -> Response {
    let (_, s) = match live_share(&console, &token).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match pages::summary_block(&console, &s).await {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(r) => r,
    }
}

/// `GET /ui/shared/{token}/events`: the shared session's transcript as server-sent events, ending when the
/// link stops working.
pub async fn events(State(console): State<Arc<Console>>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let (share, s) = match live_share(&console, &token).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let watcher = {
        let console = console.clone();
        async move {
            loop {
                tokio::time::sleep(RECHECK).await;
                if live_share(&console, &token).await.is_err() {
                    tracing::info!(share = %share.id, "a shared transcript stream ended: its link no longer works");
                    return;
                }
            }
        }
    };
    transcript_until(&console, &s, &headers, console.shared_streams.clone(), watcher).await
}

/// The transcript of `s` as server-sent events (from `Last-Event-ID` on), holding one of `permits` while open
/// and ending when `stop` completes; 503 when no permit is left.
pub(super) async fn transcript_until(
    console: &Console,
    s: &Session,
    headers: &HeaderMap,
    permits: Arc<tokio::sync::Semaphore>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Response {
    let Ok(permit) = permits.try_acquire_owned() else {
        return view::error_page(StatusCode::SERVICE_UNAVAILABLE, "Too many transcripts are open; try again later.");
    };
    let offset = super::actions::resume_offset(headers);
    let response = match crate::api::transcript_response(&console.gw, s, offset, false).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (parts, body) = response.into_parts();
    let stream = body.into_data_stream().take_until(Box::pin(stop)).map(move |chunk| {
        // The permit goes when the stream does.
        let _held = &permit;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}
