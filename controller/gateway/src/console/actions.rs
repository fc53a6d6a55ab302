//! What a signed-in person does in the console: follow a transcript, comment, decide an ask, make and
//! revoke a read-only share link. Each state change checks the CSRF token (see [`Viewer::check`]).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use serde_json::json;

use super::kube_auth::AskAnswer;
use super::view::{self, html_response};
use super::{Access, Authority, Console, Viewer, pages};
use crate::gateway::{GatewayError, Resolution, Session, TRANSCRIPT_CONSOLE, hash_token, now, random_hex, unix_now};
use crate::store::{ShareKey, ShareRow, Write};

/// The longest comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 4000;
/// The longest a share link may last, in hours.
const MAX_SHARE_HOURS: i64 = 168;

fn gateway_error(e: GatewayError) -> Response {
    let api: crate::api::ApiError = e.into();
    view::error_page(api.0, &api.1)
}

/// The first transcript sequence number a follower wants: after `Last-Event-ID`, else from the start.
pub(super) fn resume_offset(headers: &HeaderMap) -> i64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map_or(0, |n| n.saturating_add(1).max(0))
}

/// How often an open transcript stream checks that its reader is still signed in and may still see it (in
/// Kubernetes, as often as RBAC's answers are renewed).
fn reauthorize_every(console: &Console) -> std::time::Duration {
    console.kube.as_ref().map_or(super::kube_auth::REVIEW_TTL, |k| k.ttl())
}

/// `GET /ui/sessions/{id}/events`: the transcript, then live events, as server-sent events. It does not end
/// at the session's end (comments still arrive), but does when the reader's sign-in or access goes.
pub async fn events(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = match pages::visible_session(&console, &viewer, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let watcher = {
        let (console, headers, namespace) = (console.clone(), headers.clone(), s.namespace.clone());
        let every = reauthorize_every(&console);
        async move {
            loop {
                tokio::time::sleep(every).await;
                let still = match console.viewer(&headers).await {
                    Some(v) => console.may(&v, Access::View, &namespace).await,
                    None => false,
                };
                if !still {
                    return;
                }
            }
        }
    };
    super::shared_view::transcript_until(&console, &s, &headers, console.streams.clone(), watcher).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    /// The transcript event commented on (its sequence number); none for the session as a whole.
    #[serde(default)]
    on: Option<i64>,
    text: String,
}

/// A comment's text, checked: not blank, at most [`MAX_COMMENT_CHARS`], no control characters but line breaks
/// and tabs.
fn comment_text(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("text: a comment needs some text".into());
    }
    if t.chars().count() > MAX_COMMENT_CHARS {
        return Err(format!("text: a comment is at most {MAX_COMMENT_CHARS} characters"));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err("text: control characters are not allowed".into());
    }
    Ok(t.to_owned())
}

/// Appends a comment by `by` to the session's transcript: it is stored like every transcript event and
/// reaches every follower live.
async fn post_comment(
    console: &Console,
    s: &Session,
    by: &str,
    on: Option<i64>,
    text: String,
) -> Result<i64, GatewayError> {
    let mut ev = json!({"type": "comment", "source": TRANSCRIPT_CONSOLE, "by": by, "text": text});
    if let Some(on) = on {
        ev["on"] = json!(on);
    }
    console.gw.append_events(s, vec![ev]).await
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": {"message": message.into(), "status": status.as_u16()}}))).into_response()
}

/// `POST /ui/sessions/{id}/comments` (JSON `{"text": …, "on": seq}`, `X-CSRF-Token`): a comment, attributed to
/// the signed-in user.
pub async fn comment(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = viewer.check(&headers, None) {
        return r.into_response();
    }
    if body.len() > 64 * 1024 {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, "body: at most 64 KiB");
    }
    let req: NewComment = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::UNPROCESSABLE_ENTITY, format!("body: {e}")),
    };
    let text = match comment_text(&req.text) {
        Ok(t) => t,
        Err(e) => return json_error(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    let s = match pages::visible_session(&console, &viewer, &id).await {
        Ok(s) => s,
        Err(_) => return json_error(StatusCode::NOT_FOUND, format!("there is no session `{id}` you may see")),
    };
    if let Some(on) = req.on {
        let target = match console.gw.store.events(&id, on.max(0)).await {
            Ok(rows) => rows.into_iter().next().filter(|(seq, _)| *seq == on),
            Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
        let Some((_, event)) = target else {
            return json_error(StatusCode::UNPROCESSABLE_ENTITY, format!("on: the transcript has no event {on}"));
        };
        if serde_json::from_str::<serde_json::Value>(&event).is_ok_and(|e| e["type"] == "comment") {
            return json_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("on: event {on} is a comment; comment on the event it is about"),
            );
        }
    }
    match post_comment(&console, &s, &viewer.name, req.on, text).await {
        Ok(next) => (StatusCode::CREATED, Json(json!({"seq": next - 1}))).into_response(),
        Err(e) => {
            let api: crate::api::ApiError = e.into();
            json_error(api.0, api.1)
        }
    }
}

#[derive(Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    csrf: Option<String>,
    decision: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    back: Option<String>,
}

/// `POST /ui/approvals/{id}/decide`: approve or deny an ask as the signed-in user (approvers only), with an
/// optional comment on the session's transcript in the same step.
pub async fn decide(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Path(id): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<DecideForm>,
) -> Response {
    if let Err(r) = viewer.check(&headers, form.csrf.as_deref()) {
        return r.into_response();
    }
    let approved = match form.decision.as_str() {
        "approve" => true,
        "deny" => false,
        other => {
            return view::error_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("decision: `{other}` is not approve or deny"),
            );
        }
    };
    let comment = match form.comment.trim() {
        "" => None,
        c => match comment_text(c) {
            Ok(t) => Some(t),
            Err(e) => return view::error_page(StatusCode::UNPROCESSABLE_ENTITY, &e),
        },
    };
    let reason: String = form.reason.trim().chars().take(2000).collect();
    let row = match console.gw.store.approval(&id).await {
        Ok(row) => row,
        Err(e) => return gateway_error(e.into()),
    };
    let missing = || view::error_page(StatusCode::NOT_FOUND, &format!("There is no ask `{id}` you may see."));
    let Some(row) = row else { return missing() };
    let s = match pages::visible_session(&console, &viewer, &row.session).await {
        Ok(s) => s,
        Err(_) => return missing(),
    };
    if !console.may(&viewer, Access::Decide, &s.namespace).await {
        return view::error_page(
            StatusCode::FORBIDDEN,
            &format!("{} may see this ask but only an approver can decide it.", viewer.name),
        );
    }
    if row.status != "pending" {
        let by = row.decided_by.as_deref().unwrap_or("someone");
        return view::error_page(StatusCode::CONFLICT, &format!("This ask was already {} by {by}.", row.status));
    }
    let back = super::auth::console_path(form.back.as_deref(), "/ui/approvals");
    let back = back.as_str();
    if let Authority::Kube { user, token } = &viewer.authority {
        // In Kubernetes a decision is an Approval the person creates themselves; the controller relays it.
        let kube = console.kube.as_ref().expect("a Kubernetes user implies the Kubernetes console");
        let ask = AskAnswer {
            namespace: &s.namespace,
            session_uid: &s.id,
            request_id: &id,
            approve: approved,
            reason: &reason,
        };
        return match kube.create_approval(token, user, &ask).await {
            Ok(name) => {
                tracing::info!(approval = %id, by = %viewer.name, object = %name, "Approval created in the console");
                if let Some(text) = comment
                    && let Err(e) = post_comment(&console, &s, &viewer.name, None, text).await
                {
                    tracing::warn!(error = %e, approval = %id, "the Approval stands; its comment could not be stored");
                }
                Redirect::to(back).into_response()
            }
            Err((status, e)) => view::error_page(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), &e),
        };
    }
    if let Err(e) = console.gw.resolve(&id, Resolution { approved, by: viewer.name.clone(), reason }).await {
        return gateway_error(e);
    }
    tracing::info!(approval = %id, by = %viewer.name, approved, "decided in the console");
    if let Some(text) = comment
        && let Err(e) = post_comment(&console, &s, &viewer.name, None, text).await
    {
        tracing::warn!(error = %e, approval = %id, "the decision stands; its comment could not be stored");
    }
    Redirect::to(back).into_response()
}

#[derive(Deserialize)]
pub struct ShareForm {
    #[serde(default)]
    csrf: Option<String>,
    hours: i64,
}

/// `POST /ui/sessions/{id}/shares`: a read-only link to this session's page, shown once, recorded in the
/// audit log.
pub async fn share(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Path(id): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<ShareForm>,
) -> Response {
    if let Err(r) = viewer.check(&headers, form.csrf.as_deref()) {
        return r.into_response();
    }
    if !(1..=MAX_SHARE_HOURS).contains(&form.hours) {
        return view::error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("hours: a link lasts 1 to {MAX_SHARE_HOURS} hours"),
        );
    }
    let s = match pages::visible_session(&console, &viewer, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let token = random_hex(24);
    let row = ShareRow {
        id: format!("sh-{}", random_hex(6)),
        session: id.clone(),
        token_hash: hash_token(&token),
        created_by: viewer.name.clone(),
        created_at: now(),
        expires_at: unix_now() + form.hours * 3600,
        revoked_by: None,
        revoked_at: None,
        authority: serde_json::to_string(&super::shared_view::Creator::of(&viewer)).expect("json"),
    };
    let audit = console.gw.person_audit_row(
        &s,
        "share",
        "created",
        &viewer.name,
        format!("read-only link {} made by {}, for {} hours", row.id, viewer.name, form.hours),
    );
    if let Err(e) = console.gw.store.commit(vec![Write::ShareNew(row.clone()), Write::Audit(audit)]).await {
        return gateway_error(e.into());
    }
    tracing::info!(session = %id, share = %row.id, by = %viewer.name, "share link made");
    let scheme = if console.secure { "https" } else { "http" };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let url = format!("{scheme}://{host}/ui/shared/{token}");
    let notice = html! {
        div.notice role="status" {
            p { "Anyone with this link can read this session until it expires or is revoked. It is shown only now." }
            label for="share-url" { "Link " (row.id) }
            input #share-url type="text" readonly value=(url);
        }
    };
    match pages::session_page(&console, &viewer, &id, Some(notice)).await {
        Ok(m) => html_response(StatusCode::CREATED, m),
        Err(r) => r,
    }
}

/// `POST /ui/shares/{id}/revoke`: the link stops working, at once for new visits and within seconds for
/// open pages; recorded in the audit log.
pub async fn revoke_share(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Path(id): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<super::auth::CsrfForm>,
) -> Response {
    if let Err(r) = viewer.check(&headers, form.csrf.as_deref()) {
        return r.into_response();
    }
    let share = match console.gw.store.shares_where(ShareKey::Id, &id).await {
        Ok(mut found) => found.pop(),
        Err(e) => return gateway_error(e.into()),
    };
    let Some(share) = share else {
        return view::error_page(StatusCode::NOT_FOUND, &format!("There is no share link `{id}`."));
    };
    let s = match pages::visible_session(&console, &viewer, &share.session).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if share.revoked_at.is_none() {
        let audit = console.gw.person_audit_row(
            &s,
            "share",
            "revoked",
            &viewer.name,
            format!("read-only link {id} revoked by {}", viewer.name),
        );
        let writes = vec![
            Write::ShareRevoked { id: id.clone(), revoked_by: viewer.name.clone(), revoked_at: now() },
            Write::Audit(audit),
        ];
        if let Err(e) = console.gw.store.commit(writes).await {
            return gateway_error(e.into());
        }
        tracing::info!(share = %id, by = %viewer.name, "share link revoked");
    }
    Redirect::to(&format!("/ui/sessions/{}", share.session)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_checked() {
        assert_eq!(comment_text("  looks fine \n").unwrap(), "looks fine");
        assert!(comment_text("   ").unwrap_err().contains("needs some text"));
        assert!(comment_text(&"x".repeat(MAX_COMMENT_CHARS + 1)).unwrap_err().contains("at most"));
        assert!(comment_text("bell\u{7}").unwrap_err().contains("control"));
        assert!(comment_text("escape \u{1b}[31m red").unwrap_err().contains("control"));
        assert_eq!(comment_text("line one\nline two").unwrap(), "line one\nline two");
    }

    #[test]
    fn resume_after_the_last_event_seen() {
        let mut h = HeaderMap::new();
        assert_eq!(resume_offset(&h), 0);
        h.insert("last-event-id", "41".parse().unwrap());
        assert_eq!(resume_offset(&h), 42);
        h.insert("last-event-id", "-7".parse().unwrap());
        assert_eq!(resume_offset(&h), 0);
        h.insert("last-event-id", "junk".parse().unwrap());
        assert_eq!(resume_offset(&h), 0);
    }
}
