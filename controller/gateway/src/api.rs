//! The gateway's own API: sessions and their tokens, the admission API for hooks and runners, approvals,
//! the audit log. A session token acts only for its own session and never approves; the admin token is the
//! human credential.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use paddock_api::Phase;
use paddock_policy::Event;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::gateway::{Early, Gateway, GatewayError, NewSession, Resolution, Ruling, Session};
use crate::proxy::{bearer, parse_json, read_body};

pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": {"message": self.1, "status": self.0.as_u16()}}))).into_response()
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> ApiError {
        let status = match &e {
            GatewayError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::NoSession(_) | GatewayError::NoApproval(_) => StatusCode::NOT_FOUND,
            GatewayError::SessionEnded(_) => StatusCode::GONE,
            GatewayError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            GatewayError::Conflict(_) => StatusCode::CONFLICT,
            GatewayError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

enum Caller {
    Admin,
    Session(Arc<Session>),
}

async fn caller(gw: &Gateway, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token =
        bearer(headers).ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "a bearer token is required".into()))?;
    if gw.is_admin(token) {
        return Ok(Caller::Admin);
    }
    gw.session_for_token(token)
        .await
        .map(Caller::Session)
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "invalid or expired token".into()))
}

async fn admin(gw: &Gateway, headers: &HeaderMap) -> Result<(), ApiError> {
    match caller(gw, headers).await? {
        Caller::Admin => Ok(()),
        Caller::Session(_) => {
            Err(ApiError(StatusCode::FORBIDDEN, "a session token cannot do this; it needs the admin credential".into()))
        }
    }
}

/// The caller must be the session itself (or, where `admin_ok`, the admin).
async fn own_session(gw: &Gateway, headers: &HeaderMap, id: &str, admin_ok: bool) -> Result<Arc<Session>, ApiError> {
    match caller(gw, headers).await? {
        Caller::Session(s) if s.id == id => Ok(s),
        Caller::Session(_) => Err(ApiError(StatusCode::FORBIDDEN, format!("this token cannot act for session `{id}`"))),
        Caller::Admin if admin_ok => gw.find_session(id).await.ok_or_else(|| GatewayError::NoSession(id.into()).into()),
        Caller::Admin => Err(ApiError(
            StatusCode::FORBIDDEN,
            "only the session's own token can ask for decisions; the admin credential cannot act as a session".into(),
        )),
    }
}

async fn json_body<T: serde::de::DeserializeOwned>(gw: &Gateway, body: Body) -> Result<T, ApiError> {
    let bytes =
        read_body(body, gw.limits.max_body_bytes).await.map_err(|e| ApiError(StatusCode::PAYLOAD_TOO_LARGE, e))?;
    decode(&bytes)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let v = parse_json(bytes).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{}: {}", if path == "." { "body" } else { &path }, e.into_inner()),
        )
    })
}

pub(crate) async fn session_json(gw: &Gateway, s: &Session) -> Result<Value, GatewayError> {
    let (st, _) = gw.spend_of(s).await?;
    let (phase, reason) = s.ended().unwrap_or_else(|| ("Running".into(), String::new()));
    Ok(json!({
        "id": s.id, "namespace": s.namespace, "agent": s.agent, "owner": s.owner, "parent": s.parent,
        "createdAt": s.created_at, "phase": phase, "reason": reason, "model": st.model,
        "usage": {"inputTokens": st.usage.input_tokens, "outputTokens": st.usage.output_tokens,
                  "cacheReadTokens": st.usage.cache_read_tokens, "cacheWriteTokens": st.usage.cache_write_tokens,
                  "costUsd": st.usage.cost_usd, "unpricedTokens": st.usage.unpriced_tokens},
        "toolCalls": st.tool_calls, "riskScore": st.risk_score, "budgetUsd": st.budget_usd,
    }))
}

pub async fn create_session(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> ApiResult {
    admin(&gw, &headers).await?;
    let req: NewSession = json_body(&gw, body).await?;
    let (s, token) = gw.create_session(req).await?;
    let mut v = session_json(&gw, &s).await?;
    v["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub async fn list_sessions(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> ApiResult {
    admin(&gw, &headers).await?;
    let mut out = Vec::new();
    for s in gw.all_sessions().await? {
        out.push(session_json(&gw, &s).await?);
    }
    Ok(Json(out).into_response())
}

pub async fn get_session(State(gw): State<Arc<Gateway>>, Path(id): Path<String>, headers: HeaderMap) -> ApiResult {
    let s = own_session(&gw, &headers, &id, true).await?;
    let mut v = session_json(&gw, &s).await?;
    // From the database: with several replicas, an ask may be held by another one.
    let pending = gw.store.approvals(Some("pending")).await.map_err(GatewayError::from)?;
    v["pendingApprovals"] = json!(pending.into_iter().filter(|a| a.session == id).collect::<Vec<_>>());
    v["charges"] = json!(gw.store.charges(&id).await.map_err(GatewayError::from)?);
    let row = gw.store.session_where(crate::store::SessionKey::Id, &id).await.map_err(GatewayError::from)?;
    v["endedAt"] = json!(row.and_then(|r| r.ended_at));
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndSession {
    pub phase: String,
    #[serde(default)]
    pub reason: String,
}

pub async fn end_session(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    // The admin, or the session itself: a runner ends the sub-agent sessions it started with their own
    // tokens, so that a team's live children are counted right. Ending is all a token can do here.
    own_session(&gw, &headers, &id, true).await?;
    let req: EndSession = json_body(&gw, body).await?;
    gw.end_session(&id, &req.phase, &req.reason).await?;
    let s = gw.find_session(&id).await.ok_or_else(|| GatewayError::NoSession(id.clone()))?;
    Ok(Json(session_json(&gw, &s).await?).into_response())
}

#[derive(Deserialize)]
pub struct DecideQuery {
    /// `false`: answer `pending` at once when a human must decide.
    #[serde(default)]
    pub wait: Option<bool>,
    /// `deny-only`: a second look at a tool call the response gate already decided (a harness's hook
    /// whose input names no call id, so its decision cannot be tied to that one): a deny is decided and
    /// recorded; an allow changes nothing and answers `allow` with status `checked`; an ask is decided in
    /// full (recorded, counted, a human asked).
    #[serde(default)]
    pub check: Option<String>,
}

/// How a deny of a `check=deny-only` decision reads in the audit log.
const HOOK_CHECK_READING: &str = "checked again by the harness's hook where the call runs";

/// `POST /v1/sessions/{id}/decide`: an event in, a ruling out. With traces on, the decision's span is
/// under the caller's `traceparent` (a hook's, the runner's).
pub async fn decide(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    Query(q): Query<DecideQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    if gw.telemetry().is_none() {
        return decide_event(gw, id, q, headers, body).await;
    }
    use opentelemetry::context::FutureExt;
    let parent = crate::telemetry::Telemetry::parent(&headers);
    decide_event(gw, id, q, headers, body).with_context(parent).await
}

async fn decide_event(gw: Arc<Gateway>, id: String, q: DecideQuery, headers: HeaderMap, body: Body) -> ApiResult {
    let s = own_session(&gw, &headers, &id, false).await?;
    let event: Event = json_body(&gw, body).await?;
    match q.check.as_deref() {
        None => {}
        Some("deny-only") if event.phase == Phase::ToolCall => {
            match gw.deny_early(&s, event.clone(), HOOK_CHECK_READING).await? {
                Early::Denied(ruling) => return Ok(Json(*ruling).into_response()),
                Early::Passes => return Ok(Json(Ruling::checked()).into_response()),
                // What the gate could not see (where the workspace's remotes point) makes a rule ask: a
                // human decides, as for any ask, rather than the call passing. Decided in full, so counted.
                Early::WouldAsk => {}
            }
        }
        Some("deny-only") => {
            return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, "check=deny-only is for `tool_call` events".into()));
        }
        Some(other) => {
            return Err(ApiError(StatusCode::BAD_REQUEST, format!("check: `{other}` is not known (deny-only)")));
        }
    }
    let wait = if q.wait == Some(false) { Duration::ZERO } else { Duration::from_secs(gw.limits.decide_wait_seconds) };
    let ruling = gw.decide(&s, event, wait).await?;
    Ok(Json(ruling).into_response())
}

#[derive(Deserialize)]
pub struct WaitQuery {
    /// Seconds to wait for a pending approval to be decided.
    #[serde(default)]
    pub wait: Option<u64>,
}

/// `GET /v1/sessions/{id}/approvals/{approval}`: how an ask of this session was decided.
pub async fn session_approval(
    State(gw): State<Arc<Gateway>>,
    Path((id, approval)): Path<(String, String)>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
) -> ApiResult {
    own_session(&gw, &headers, &id, true).await?;
    let belongs = gw.store.approval(&approval).await.map_err(GatewayError::from)?.is_some_and(|a| a.session == id);
    if !belongs {
        return Err(GatewayError::NoApproval(approval).into());
    }
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(gw.limits.decide_wait_seconds));
    Ok(Json(gw.wait_for(&approval, wait).await?).into_response())
}

#[derive(Deserialize)]
pub struct ApprovalsQuery {
    #[serde(default)]
    pub status: Option<String>,
    /// Only the asks of this session and of the sub-agent sessions below it: a team's one inbox.
    #[serde(default)]
    pub session: Option<String>,
}

pub async fn list_approvals(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<ApprovalsQuery>,
    headers: HeaderMap,
) -> ApiResult {
    admin(&gw, &headers).await?;
    let rows = match q.status.as_deref() {
        // From the database: with several replicas, an ask may be held by another one.
        None | Some("pending") => gw.store.approvals(Some("pending")).await.map_err(GatewayError::from)?,
        Some("all") => gw.store.approvals(None).await.map_err(GatewayError::from)?,
        Some(s @ ("approved" | "denied" | "expired")) => {
            gw.store.approvals(Some(s)).await.map_err(GatewayError::from)?
        }
        Some(other) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("status: `{other}` is not one of pending, approved, denied, expired, all"),
            ));
        }
    };
    let rows = match &q.session {
        None => rows,
        Some(id) => {
            let tree = gw.tree_of(id).await?;
            rows.into_iter().filter(|a| tree.contains(&a.session)).collect()
        }
    };
    Ok(Json(rows).into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecideApproval {
    #[serde(default)]
    pub reason: String,
    /// Who decided, recorded in the audit log (the controller relays the Approval's author).
    #[serde(default)]
    pub by: Option<String>,
}

async fn resolve(gw: Arc<Gateway>, id: String, headers: HeaderMap, body: Body, approved: bool) -> ApiResult {
    admin(&gw, &headers).await?;
    let bytes =
        read_body(body, gw.limits.max_body_bytes).await.map_err(|e| ApiError(StatusCode::PAYLOAD_TOO_LARGE, e))?;
    // The body is optional: `curl -X POST …/approve` with nothing is an approval without a reason.
    let req: DecideApproval =
        if bytes.iter().all(u8::is_ascii_whitespace) { DecideApproval::default() } else { decode(&bytes)? };
    let by = req.by.filter(|b| !b.trim().is_empty()).unwrap_or_else(|| "admin".into());
    let row = gw.resolve(&id, Resolution { approved, by, reason: req.reason }).await?;
    Ok(Json(row).into_response())
}

pub async fn approve(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    resolve(gw, id, headers, body, true).await
}

pub async fn deny(State(gw): State<Arc<Gateway>>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> ApiResult {
    resolve(gw, id, headers, body, false).await
}

#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    pub session: Option<String>,
    /// `json` (default) or `jsonl`.
    #[serde(default)]
    pub format: Option<String>,
}

pub async fn audit(State(gw): State<Arc<Gateway>>, Query(q): Query<AuditQuery>, headers: HeaderMap) -> ApiResult {
    admin(&gw, &headers).await?;
    let rows = gw.store.audit(q.session.as_deref()).await.map_err(GatewayError::from)?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(rows).into_response()),
        Some("jsonl") => Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], jsonl(&rows)).into_response()),
        Some(other) => Err(ApiError(StatusCode::BAD_REQUEST, format!("format: `{other}` is not json or jsonl"))),
    }
}

/// Audit rows as JSON lines (the API's `?format=jsonl` and the console's export).
pub(crate) fn jsonl(rows: &[crate::store::AuditRow]) -> String {
    let mut out = String::new();
    for r in rows {
        out.push_str(&serde_json::to_string(r).expect("json"));
        out.push('\n');
    }
    out
}

/// Transcript events in one request.
const MAX_EVENTS_PER_POST: usize = 500;

/// The transcript event types a runner may post: what the agent said and did. Verdicts, asks, approvals
/// and the session's end are written by the gateway alone, when it decides.
pub const RUNNER_EVENT_TYPES: [&str; 5] = ["message", "tool_call", "tool_result", "usage", "error"];

/// `POST /v1/sessions/{id}/events`: the runner reports transcript events (a JSON array of objects, each with
/// a `type` of [`RUNNER_EVENT_TYPES`]). Each is stored with `source: runner`, whatever the runner put there.
pub async fn post_events(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let s = own_session(&gw, &headers, &id, false).await?;
    let mut events: Vec<Value> = json_body(&gw, body).await?;
    if events.len() > MAX_EVENTS_PER_POST {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {MAX_EVENTS_PER_POST} events per request, got {}", events.len()),
        ));
    }
    for (i, e) in events.iter_mut().enumerate() {
        let Some(kind) = e.get("type").and_then(Value::as_str) else {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("[{i}].type: each event needs a string `type`"),
            ));
        };
        if !RUNNER_EVENT_TYPES.contains(&kind) {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "[{i}].type: a runner may post {} events; `{}` events are written by the gateway alone",
                    RUNNER_EVENT_TYPES.join(", "),
                    kind.escape_debug()
                ),
            ));
        }
        e["source"] = Value::String(crate::gateway::TRANSCRIPT_RUNNER.into());
    }
    let next = gw.append_events(&s, events).await?;
    Ok(Json(json!({"next": next})).into_response())
}

#[derive(Deserialize)]
pub struct EventsQuery {
    /// The first sequence number to return (0: from the start).
    #[serde(default)]
    pub offset: Option<i64>,
    /// Keep the response open and stream new events (server-sent events) until the session's `done` event.
    #[serde(default)]
    pub follow: Option<bool>,
}

/// `GET /v1/sessions/{id}/events`: the transcript as JSON, or live as server-sent events (`?follow=true` or
/// `Accept: text/event-stream`), resuming from `?offset=` or `Last-Event-ID`.
pub async fn get_events(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let s = own_session(&gw, &headers, &id, true).await?;
    let resume =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok()).map(|n| n + 1);
    let offset = q.offset.or(resume).unwrap_or(0).max(0);
    let follow = q.follow == Some(true)
        || headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
    if !follow {
        let rows = gw.store.events(&id, offset).await.map_err(GatewayError::from)?;
        let out: Vec<Value> = rows
            .into_iter()
            .map(|(seq, e)| json!({"seq": seq, "event": serde_json::from_str::<Value>(&e).unwrap_or(Value::Null)}))
            .collect();
        return Ok(Json(out).into_response());
    }
    transcript_response(&gw, &s, offset, true).await
}

/// The transcript of `s` from `offset` on as server-sent events: the stored events, then live ones. With
/// `stop_at_done` the stream ends after the session's `done` event (the CLI's `--follow`); without, it keeps
/// following (the console, where comments arrive after the end).
pub(crate) async fn transcript_response(gw: &Arc<Gateway>, s: &Session, offset: i64, stop_at_done: bool) -> ApiResult {
    // Subscribe before reading the stored events, so nothing falls between the two.
    let live = gw.follow(s);
    let stored = gw.store.events(&s.id, offset).await.map_err(GatewayError::from)?;
    let headers = [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")];
    let ended = stop_at_done && s.ended().is_some();
    if gw.shared().is_some() {
        // Replicas: events another replica appends reach this one through the database only.
        let stream = polled_transcript(gw.clone(), s.id.clone(), stored, ended, stop_at_done);
        return Ok((headers, Body::from_stream(stream)).into_response());
    }
    let stream = transcript_stream(stored, ended, live, stop_at_done);
    Ok((headers, Body::from_stream(stream)).into_response())
}

fn frame(seq: i64, data: &str) -> bytes::Bytes {
    bytes::Bytes::from(format!("id: {seq}\nevent: transcript\ndata: {data}\n\n"))
}

fn is_done(data: &str) -> bool {
    serde_json::from_str::<Value>(data).is_ok_and(|v| v["type"] == "done")
}

/// How often a follower on a replica reads the transcript's new events.
const TRANSCRIPT_POLL: Duration = Duration::from_millis(250);

/// [`transcript_stream`] for replicas: stored events, then new ones read from the database every
/// [`TRANSCRIPT_POLL`], ending after a `done` event.
fn polled_transcript(
    gw: Arc<Gateway>,
    id: String,
    stored: Vec<(i64, String)>,
    ended: bool,
    stop_at_done: bool,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    let finished = ended || (stop_at_done && stored.iter().any(|(_, e)| is_done(e)));
    let last = stored.last().map(|(s, _)| *s).unwrap_or(-1);
    let queue: std::collections::VecDeque<(i64, String)> = stored.into();
    futures_util::stream::unfold((queue, last, finished), move |(mut queue, last, finished)| {
        let (gw, id) = (gw.clone(), id.clone());
        async move {
            loop {
                if let Some((seq, e)) = queue.pop_front() {
                    let done = stop_at_done && is_done(&e);
                    let rest = if done { Default::default() } else { queue };
                    return Some((Ok(frame(seq, &e)), (rest, seq, finished || done)));
                }
                if finished {
                    return None;
                }
                tokio::time::sleep(TRANSCRIPT_POLL).await;
                match gw.store.events(&id, last + 1).await {
                    Ok(rows) => queue.extend(rows),
                    // The follower resumes with `Last-Event-ID`.
                    Err(_) => return None,
                }
            }
        }
    })
}

type Live = tokio::sync::broadcast::Receiver<(i64, Arc<Value>)>;

/// Replays stored events, then live ones, ending after a `done` event (or at once when the session has
/// ended and the replay held everything).
fn transcript_stream(
    stored: Vec<(i64, String)>,
    ended: bool,
    live: Live,
    stop_at_done: bool,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    let finished = ended || (stop_at_done && stored.iter().any(|(_, e)| is_done(e)));
    let last = stored.last().map(|(s, _)| *s).unwrap_or(-1);
    let replay: Vec<Result<bytes::Bytes, std::io::Error>> = stored.iter().map(|(s, e)| Ok(frame(*s, e))).collect();
    let follow = futures_util::stream::unfold((live, last, finished), move |(mut rx, last, finished)| async move {
        if finished {
            return None;
        }
        loop {
            match rx.recv().await {
                Ok((seq, e)) if seq > last => {
                    let data = e.to_string();
                    let done = stop_at_done && is_done(&data);
                    return Some((Ok(frame(seq, &data)), (rx, seq, done)));
                }
                Ok(_) => continue,
                // A follower too slow for the live buffer ends here; it resumes with `Last-Event-ID`, replayed
                // from the database, so nothing is lost.
                Err(_) => return None,
            }
        }
    });
    futures_util::StreamExt::chain(futures_util::stream::iter(replay), follow)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewChild {
    pub agent: String,
}

/// `POST /v1/sessions/{id}/children`: a session starts a sub-agent's session with its own token.
pub async fn create_child(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let parent = own_session(&gw, &headers, &id, false).await?;
    let req: NewChild = json_body(&gw, body).await?;
    let (child, token) = gw.create_child(&parent, &req.agent).await?;
    let mut v = session_json(&gw, &child).await?;
    v["token"] = json!(token);
    // The runner needs the sub-agent's definition to run it; it comes from the revision the gateway enforces.
    v["agentSpec"] = json!(gw.policies().agent(&child.namespace, &child.agent).map(|a| &a.spec));
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `PUT /v1/policies`: in Kubernetes the controller sends the cluster's Agents and Policies here (the gateway
/// needs no access to the API server). What cannot be compiled is left out and listed, so its sessions fail
/// closed while the rest works.
pub async fn put_policies(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> ApiResult {
    admin(&gw, &headers).await?;
    let push: crate::policies::PolicyPush = json_body(&gw, body).await?;
    if push.revision.trim().is_empty() {
        return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, "revision: required".into()));
    }
    let (set, errors) = gw.push_policies(&push).await?;
    let mut agents: Vec<String> = set.agents().map(|a| format!("{}/{}", a.namespace, a.name)).collect();
    agents.sort();
    tracing::info!(revision = %push.revision, agents = agents.len(), left_out = errors.len(), "policies pushed");
    let left_out: Vec<Value> = errors
        .iter()
        .map(|e| json!({"kind": e.kind, "namespace": e.namespace, "name": e.name, "message": e.message}))
        .collect();
    Ok(Json(json!({"revision": push.revision, "agents": agents, "leftOut": left_out})).into_response())
}

/// `GET /v1/policies`: the revision the gateway enforces and its Agents with the Policies that govern them.
pub async fn get_policies(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> ApiResult {
    admin(&gw, &headers).await?;
    let set = gw.policies();
    let mut agents: Vec<Value> = set
        .agents()
        .map(|a| json!({"namespace": a.namespace, "name": a.name, "policies": a.policy_names().collect::<Vec<_>>()}))
        .collect();
    agents.sort_by_key(|a| (a["namespace"].to_string(), a["name"].to_string()));
    Ok(Json(json!({"revision": set.revision, "agents": agents})).into_response())
}

/// `GET /v1/policies/decisions`: how often each Policy decided, keyed `<namespace>/<policy>`, as
/// `{"allow": n, "deny": n, "ask": n}` (see [`crate::store::Store::policy_decisions`]), for the controller to
/// write into each Policy's `status.decisions`. Counted from the audit log, not from this process's metrics:
/// totals survive a restart and are the same on every replica of a shared database. Only Policy objects are
/// listed: an Agent's inline rules (`agent/…`), a session's own (`session/…`) and the gateway's own checks
/// (`paddock/…`) have a `/` in their name, which no Policy can have. Admin only.
pub async fn policy_decisions(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> ApiResult {
    admin(&gw, &headers).await?;
    let rows = gw.store.policy_decisions().await.map_err(GatewayError::from)?;
    let mut out: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    for (namespace, policy, verdict, n) in rows {
        if policy.contains('/') || policy.is_empty() {
            continue;
        }
        let counts =
            out.entry(format!("{namespace}/{policy}")).or_insert_with(|| json!({"allow": 0, "deny": 0, "ask": 0}));
        counts[verdict.as_str()] = json!(n.max(0));
    }
    Ok(Json(out).into_response())
}

/// `GET /v1/replicas`: the gateway replicas heard from in the last seconds, each with the policy revision it
/// enforces (this gateway alone on SQLite), and the revision last pushed (`pushed`), so that the controller
/// can tell whether all enforce it. Admin only.
pub async fn replicas(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> ApiResult {
    admin(&gw, &headers).await?;
    let rows = gw.replicas().await?;
    let revision = gw.policies().revision.clone();
    let pushed = match gw.shared() {
        Some(shared) => shared.last_pushed().await.map_err(GatewayError::from)?.unwrap_or_else(|| revision.clone()),
        None => revision.clone(),
    };
    Ok(Json(json!({"revision": revision, "pushed": pushed, "replicas": rows})).into_response())
}
