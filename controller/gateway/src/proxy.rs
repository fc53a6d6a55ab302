//! The LLM endpoints: one flow for the four wire formats. A request is authenticated by its session
//! token, decided at `llm_request` (and possibly rewritten), reserved against the budget at its worst case,
//! sent upstream with the provider's key, metered from the response's usage before the response is
//! released, and its tool calls pass `llm_response` and `tool_call` before the client sees them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path as AxumPath, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use opentelemetry::context::FutureExt as _;
use paddock_api::Phase;
use paddock_api::catalog::ModelCatalog;
use paddock_policy::cost::worst_case_usd;
use paddock_policy::{Event, ToolCall, Usage};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::gateway::{Gateway, GatewayError, Reservation, Ruling, Session};
use crate::metrics::{ProviderLabels, WireLabels};
use crate::telemetry::{self, Telemetry};
use crate::upstream::UpstreamResponse;
use crate::wire::{PendingCall, Sse, SseParser, Step, Wire, gemini, provider_side};

/// A complete upstream response larger than this is refused.
const MAX_UPSTREAM_BODY: usize = 64 << 20;

fn wire_error(wire: Wire, status: StatusCode, message: &str) -> Response {
    (status, axum::Json(wire.error_body(status.as_u16(), message))).into_response()
}

/// The session token from `x-api-key` (Anthropic SDKs), `x-goog-api-key` (Google's) or `Authorization:
/// Bearer` (OpenAI SDKs, `ANTHROPIC_AUTH_TOKEN`).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    for h in ["x-api-key", "x-goog-api-key"] {
        if let Some(k) = headers.get(h).and_then(|v| v.to_str().ok()) {
            return Some(k.trim());
        }
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Reads a request body up to the configured limit.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, String> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(format!("the request body is larger than the gateway's limit of {limit} bytes"))
        }
        Err(e) => Err(format!("cannot read the request body: {e}")),
    }
}

/// Parses a JSON body; the error says where the JSON broke.
pub fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("malformed JSON at line {} column {}: {e}", e.line(), e.column()))
}

pub async fn anthropic(State(gw): State<Arc<Gateway>>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    llm(Wire::Anthropic, gw, uri, headers, body).await
}

pub async fn chat(State(gw): State<Arc<Gateway>>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    llm(Wire::Chat, gw, uri, headers, body).await
}

pub async fn responses(State(gw): State<Arc<Gateway>>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    llm(Wire::Responses, gw, uri, headers, body).await
}

/// `count_tokens` is answered here with an estimate: forwarding it would send the conversation to the
/// provider without passing `llm_request` policies.
pub async fn count_tokens(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let wire = Wire::Anthropic;
    let session = match bearer(&headers) {
        Some(t) => gw.session_for_token(t).await,
        None => None,
    };
    if session.is_none() {
        return wire_error(wire, StatusCode::UNAUTHORIZED, "invalid or expired session token");
    }
    let bytes = match read_body(body, gw.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return wire_error(wire, StatusCode::PAYLOAD_TOO_LARGE, &e),
    };
    let v = match parse_json(&bytes) {
        Ok(v) => v,
        Err(e) => return wire_error(wire, StatusCode::BAD_REQUEST, &e),
    };
    axum::Json(json!({"input_tokens": estimate_tokens(&v)})).into_response()
}

/// `POST /llm/google/{version}/models/{model}:{method}`: Google's Gemini API. The key Google's SDKs send
/// (`x-goog-api-key`, or `?key=`) is the session token. `countTokens` is answered here with an estimate, as
/// Anthropic's `count_tokens` is.
pub async fn gemini(
    State(gw): State<Arc<Gateway>>,
    AxumPath((version, target)): AxumPath<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let wire = Wire::Gemini;
    if !matches!(version.as_str(), "v1beta" | "v1") {
        return wire_error(
            wire,
            StatusCode::NOT_FOUND,
            &format!("API version `{version}`: the gateway serves v1beta and v1"),
        );
    }
    let target = match gemini::Target::parse(&target) {
        Ok(t) => t,
        Err(e) => return wire_error(wire, StatusCode::NOT_FOUND, &e),
    };
    let query: Vec<(String, String)> =
        uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let token =
        bearer(&headers).map(str::to_owned).or_else(|| query.iter().find(|(k, _)| k == "key").map(|(_, v)| v.clone()));
    let session = match token {
        Some(t) => gw.session_for_token(t.trim()).await,
        None => None,
    };
    let Some(session) = session else {
        return wire_error(wire, StatusCode::UNAUTHORIZED, "invalid or expired session token");
    };
    if target.method == gemini::Method::CountTokens {
        return match read_body(body, gw.limits.max_body_bytes).await.and_then(|b| parse_json(&b)) {
            Ok(v) => axum::Json(json!({"totalTokens": estimate_tokens(&v)})).into_response(),
            Err(e) => wire_error(wire, StatusCode::BAD_REQUEST, &e),
        };
    }
    // Without `alt=sse` Google streams one JSON array; the gateway streams (and gates) events only.
    if target.method == gemini::Method::StreamGenerate && !query.iter().any(|(k, v)| k == "alt" && v == "sse") {
        return wire_error(
            wire,
            StatusCode::BAD_REQUEST,
            "streamGenerateContent is served as server-sent events only: add `alt=sse` to the query",
        );
    }
    session_request(wire, gw, session, Some(target), uri, headers, body).await
}

/// Tokens in a request, estimated at four characters of its strings a token.
fn estimate_tokens(v: &Value) -> usize {
    let mut chars = 0usize;
    paddock_policy::event::walk_strings(v, &mut |s| chars += s.len());
    chars.div_ceil(4)
}

async fn llm(wire: Wire, gw: Arc<Gateway>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let session = match bearer(&headers) {
        Some(t) => gw.session_for_token(t).await,
        None => None,
    };
    let Some(session) = session else {
        return wire_error(wire, StatusCode::UNAUTHORIZED, "invalid or expired session token");
    };
    session_request(wire, gw, session, None, uri, headers, body).await
}

/// One model request of a session, in its log span, and with traces on in its OpenTelemetry span (under
/// the caller's `traceparent`), which ends with the response (a streamed one's when its stream ends).
async fn session_request(
    wire: Wire,
    gw: Arc<Gateway>,
    session: Arc<Session>,
    target: Option<gemini::Target>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = tracing::info_span!("llm", wire = wire.as_str(), session = %session.id);
    let Some(t) = gw.telemetry() else {
        return llm_session(wire, gw, session, target, uri, headers, body).instrument(span).await;
    };
    let cx = t.llm(&Telemetry::parent(&headers), wire, &session.id);
    let response =
        llm_session(wire, gw, session, target, uri, headers, body).instrument(span).with_context(cx.clone()).await;
    telemetry::outcome(&cx, response.status().as_u16());
    response
}

/// One model request of a session. `target` is Gemini's model and method, from the path.
async fn llm_session(
    wire: Wire,
    gw: Arc<Gateway>,
    session: Arc<Session>,
    target: Option<gemini::Target>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match read_body(body, gw.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return wire_error(wire, StatusCode::PAYLOAD_TOO_LARGE, &e),
    };
    let mut body = match parse_json(&bytes) {
        Ok(v) => v,
        Err(e) => return wire_error(wire, StatusCode::BAD_REQUEST, &e),
    };
    let info = match &target {
        Some(t) => gemini::request_info(&body, t),
        None => wire.request_info(&body),
    };
    let info = match info {
        Ok(i) => i,
        Err(e) => return wire_error(wire, StatusCode::BAD_REQUEST, &e),
    };
    if gw.telemetry().is_some() {
        telemetry::request(wire, &info.model, info.max_tokens);
    }
    let provider_side = provider_side::uses(wire, &body);
    if !provider_side.is_empty() && !gw.governed_by(&session, PROVIDER_FEATURES) {
        let message = provider_side_refused(&provider_side);
        if let Err(e) = gw.refuse(&session, Phase::LlmRequest, PROVIDER_SIDE_CHECK, &message).await {
            return decide_failed(wire, e);
        }
        return wire_error(wire, StatusCode::FORBIDDEN, &message);
    }
    let wait = Duration::from_secs(gw.limits.ask_timeout_seconds + 5);
    let input_estimate = (bytes.len() as u64).div_ceil(3);
    // The output cap the request leaves with; the hold reserves exactly it.
    let max_tokens = info.max_tokens.unwrap_or(gw.limits.default_max_tokens);
    let worst = Usage { input_tokens: input_estimate, output_tokens: max_tokens, ..Usage::default() };
    // The worst case at the requested model; routing only ever moves to a cheaper one.
    let hold = worst_case_usd(ModelCatalog::builtin(), &info.model, input_estimate, max_tokens).unwrap_or(0.0);
    let mut features: Vec<String> = provider_side.iter().map(|u| u.feature.as_str().to_owned()).collect();
    // `uses` reports in body order: the same feature may come back between others.
    features.sort();
    features.dedup();
    let event = Event {
        phase: Phase::LlmRequest,
        model: Some(info.model.clone()),
        max_tokens: info.max_tokens,
        body: Some(body.clone()),
        provider_features: features,
        ..Event::default()
    };
    // The decision's rows commit while the request is upstream; they are durable before any of the
    // response is released (see `decided` below).
    let decision = match gw.decide_deferred(&session, event, wait, hold).await {
        Ok(d) => d,
        Err(e) => return decide_failed(wire, e),
    };
    let (ruling, decided, reservation) = (decision.ruling, decision.durable, decision.reservation);
    let ceiling = decision.headroom_usd.map(|headroom_usd| Ceiling::new(headroom_usd, input_estimate));
    if !ruling.allowed() {
        if let Err(e) = decided.wait().await {
            return decide_failed(wire, e.into());
        }
        return wire_error(wire, StatusCode::FORBIDDEN, &denied_message(&ruling));
    }
    let mut model = info.model.clone();
    if let Some(e) = ruling.event {
        if let Some(m) = e.model {
            model = m;
        }
        if let Some(b) = e.body {
            body = b;
        }
    }
    let Some(provider) = gw.providers.for_model(&model) else {
        let msg = format!(
            "unknown model `{model}`: no provider of this gateway serves it (providers: {})",
            gw.providers.names().join("; ")
        );
        return wire_error(wire, StatusCode::NOT_FOUND, &msg);
    };
    if !provider.speaks(wire) {
        let msg = format!(
            "model `{model}` is served by provider `{}`, which does not speak {}",
            provider.name,
            wire.as_str()
        );
        return wire_error(wire, StatusCode::BAD_REQUEST, &msg);
    }
    if wire == Wire::Gemini
        && let Err(e) = gemini::check_model(&model)
    {
        return wire_error(wire, StatusCode::BAD_REQUEST, &e);
    }
    let removed = wire.prepare(&mut body, &model, info.stream);
    if !removed.is_empty() {
        tracing::info!(removed = ?removed, "removed provider-hosted tools: they would run where no policy sees them");
    }
    // So that concurrent requests pass a hard limit by at most one hold, none may produce more than its hold.
    wire.cap_output(&mut body, max_tokens);
    let out = serde_json::to_vec(&body).expect("json");
    let started = Instant::now();
    let path = wire.upstream_path(&model, info.stream, uri.query());
    let upstream = match gw.providers.send(provider, wire, &path, &headers, out).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "upstream failed");
            let status = match e {
                crate::upstream::UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            };
            return wire_error(wire, status, &e.to_string());
        }
    };
    if let Err(e) = decided.wait().await {
        return decide_failed(wire, e.into());
    }
    gw.metrics
        .upstream_seconds
        .get_or_create(&ProviderLabels { provider: provider.name.clone() })
        .observe(started.elapsed().as_secs_f64());
    if !(200..300).contains(&upstream.status) {
        return pass_through(wire, upstream).await;
    }
    let streaming = info.stream && upstream.content_type.as_deref().is_some_and(|c| c.starts_with("text/event-stream"));
    if streaming {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
        let gate = wire.gate(info.client_wants_usage);
        let ceiling = ceiling.map(|c| c.priced(&model));
        let hold = Hold { reservation, worst };
        let stream = drive_stream(gw.clone(), session, wire, model, upstream, gate, hold, ceiling, tx);
        match gw.telemetry() {
            // The request's span lives until the stream is read to its end.
            Some(_) => tokio::spawn(stream.with_context(opentelemetry::Context::current())),
            None => tokio::spawn(stream),
        };
        let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from_stream(body))
            .expect("response");
    }
    complete(gw, session, wire, model, upstream, Hold { reservation, worst }).await
}

/// The builtin that allows provider-side fetches and state; without one, the gateway refuses them.
const PROVIDER_FEATURES: &str = "provider_features";
/// The gateway's own check, as the audit log and transcript name it.
const PROVIDER_SIDE_CHECK: &str = "paddock/provider-features";

fn provider_side_refused(uses: &[provider_side::Use]) -> String {
    let list: Vec<String> = uses.iter().map(|u| format!("{} ({})", u.at, u.feature.as_str())).collect();
    format!(
        "Paddock refused this request: it asks the provider to fetch a URL or use state the provider keeps, \
         which no policy can see: {}. Send the content inline (base64 or text) instead, or allow it with a \
         `{PROVIDER_FEATURES}` policy rule.",
        list.join(", ")
    )
}

/// A request's budget hold and the usage it reserved: what a response that reports no usage is charged.
struct Hold {
    /// Given back by the settlement (replicas), or when dropped (one gateway, or a call never settled).
    reservation: Option<Reservation>,
    worst: Usage,
}

fn decide_failed(wire: Wire, e: GatewayError) -> Response {
    let status = match e {
        GatewayError::SessionEnded(_) => StatusCode::UNAUTHORIZED,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    tracing::error!(error = %e, "decision failed; refusing");
    wire_error(wire, status, &format!("the gateway could not decide this request, so it is refused: {e}"))
}

fn policy_name(r: &Ruling) -> String {
    match (&r.policy, &r.rule) {
        (Some(p), Some(rule)) => format!("`{p}` (rule `{rule}`)"),
        (Some(p), None) => format!("`{p}`"),
        _ => "of the gateway".into(),
    }
}

fn denied_message(r: &Ruling) -> String {
    format!("Paddock policy {} denied this request: {}", policy_name(r), r.reason)
}

/// A provider's error answer (not 2xx): nothing was generated, so nothing is charged and the hold goes
/// back. The provider's own error object reaches the client as it came (its SDK reads it); a body that is
/// not one (a proxy's HTML page, an answer cut off, one too large) becomes an error in the client's format
/// with the provider's status.
async fn pass_through(wire: Wire, mut up: UpstreamResponse) -> Response {
    let mut buf = Vec::new();
    let mut whole = true;
    while let Some(chunk) = up.body.next().await {
        match chunk {
            Ok(c) if buf.len() + c.len() <= MAX_UPSTREAM_BODY => buf.extend_from_slice(&c),
            _ => {
                whole = false;
                break;
            }
        }
    }
    let status = StatusCode::from_u16(up.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let readable = whole && serde_json::from_slice::<Value>(&buf).is_ok_and(|v| v.is_object());
    if !readable {
        let how = if whole { "a body that is not an error object" } else { "a body that broke off" };
        return wire_error(wire, status, &format!("the provider answered HTTP {} with {how}", up.status));
    }
    (status, [(header::CONTENT_TYPE, "application/json")], buf).into_response()
}

/// Decides one tool call of a response: `llm_response`, then `tool_call`. `None` lets it through;
/// `Some(note)` removes it, with the note the client gets instead.
async fn gate_call(gw: &Arc<Gateway>, s: &Arc<Session>, model: &str, call: &PendingCall) -> Option<String> {
    match gw.telemetry() {
        None => decide_call(gw, s, model, call).await,
        // The call's span, under the request's, holds its two decisions.
        Some(t) => decide_call(gw, s, model, call).with_context(t.tool_call(&s.id, &call.name, &call.id)).await,
    }
}

async fn decide_call(gw: &Arc<Gateway>, s: &Arc<Session>, model: &str, call: &PendingCall) -> Option<String> {
    let wait = Duration::from_secs(gw.limits.ask_timeout_seconds + 5);
    let tc = ToolCall { name: call.name.clone(), args: call.args.clone(), id: Some(call.id.clone()) };
    let events = [
        Event { phase: Phase::LlmResponse, model: Some(model.to_owned()), tool_calls: vec![tc], ..Event::default() },
        Event {
            phase: Phase::ToolCall,
            tool: Some(call.name.clone()),
            args: call.args.clone(),
            tool_id: Some(call.id.clone()),
            ..Event::default()
        },
    ];
    for e in events {
        match gw.decide(s, e, wait).await {
            Ok(r) if r.allowed() => {}
            Ok(r) => {
                return Some(format!(
                    "[paddock] The tool call `{}` was blocked by policy {}: {} Do not retry it; tell the user.",
                    call.name,
                    policy_name(&r),
                    r.reason.trim_end_matches('.').to_owned() + "."
                ));
            }
            Err(err) => {
                return Some(format!(
                    "[paddock] The tool call `{}` was blocked: the gateway could not decide it ({err}).",
                    call.name
                ));
            }
        }
    }
    None
}

async fn complete(
    gw: Arc<Gateway>,
    s: Arc<Session>,
    wire: Wire,
    model: String,
    mut up: UpstreamResponse,
    hold: Hold,
) -> Response {
    let mut buf = Vec::new();
    while let Some(chunk) = up.body.next().await {
        match chunk {
            Ok(c) if buf.len() + c.len() <= MAX_UPSTREAM_BODY => buf.extend_from_slice(&c),
            Ok(_) => return unread(&gw, &s, wire, &model, hold, "the upstream response is too large").await,
            Err(e) => {
                return unread(&gw, &s, wire, &model, hold, &format!("the upstream response broke off: {e}")).await;
            }
        }
    }
    let Ok(mut body) = serde_json::from_slice::<Value>(&buf) else {
        return unread(&gw, &s, wire, &model, hold, "the upstream sent a response that is not JSON").await;
    };
    // A response the gateway cannot read as its format's object could carry calls it does not see.
    if !body.is_object() {
        return unread(&gw, &s, wire, &model, hold, "the upstream sent a response that is not a JSON object").await;
    }
    // Gemini's calls get the gateway's ids; the client then gets the body as decided, with them.
    let named = wire == Wire::Gemini && gemini::name_calls(&mut body, &gemini::nonce(), 0);
    let parsed = wire.parse_response(&body);
    if let Some(m) = parsed.model.as_deref().filter(|_| gw.telemetry().is_some()) {
        telemetry::response_model(m);
    }
    // No usage block, or one no provider could mean: charge the worst case rather than nothing.
    let usage = match parsed.usage {
        Some(u) if u.is_plausible() => u,
        unusable => {
            tracing::warn!(reported = ?unusable, usage = ?hold.worst, "the response has no usable usage; charging the worst case");
            usage_missing(&gw, wire);
            hold.worst
        }
    };
    if let Err(e) = gw.settle(&s, &model, usage, true, hold.reservation.as_ref()).await {
        tracing::error!(error = %e, "metering failed; withholding the response");
        return wire_error(
            wire,
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the gateway could not record the cost: {e}"),
        );
    }
    drop(hold);
    let mut denied = Vec::new();
    let mut notes = Vec::new();
    for call in &parsed.calls {
        if let Some(note) = gate_call(&gw, &s, &model, call).await {
            denied.push(call.id.clone());
            notes.push(note);
        }
    }
    for (id, note) in parsed.refused {
        tracing::warn!(%note, "the provider answered with a call of a tool the gateway never offers; removed");
        denied.push(id);
        notes.push(note);
    }
    if denied.is_empty() && !named {
        // Nothing changed: the upstream's bytes go back as they came.
        return ([(header::CONTENT_TYPE, "application/json")], buf).into_response();
    }
    wire.rewrite_response(&mut body, &denied, &notes.join("\n"));
    axum::Json(body).into_response()
}

/// A successful answer the gateway could not read (cut off, too large, not JSON): the provider produced it
/// and bills it, so the request's worst case is charged, never nothing, and the client gets a 502 in its
/// format. Nothing of the answer is passed on: it could carry calls no policy saw.
async fn unread(gw: &Gateway, s: &Arc<Session>, wire: Wire, model: &str, hold: Hold, why: &str) -> Response {
    tracing::warn!(why, usage = ?hold.worst, "an answer the gateway could not read; charging the worst case");
    usage_missing(gw, wire);
    if let Err(e) = gw.settle(s, model, hold.worst, false, hold.reservation.as_ref()).await {
        tracing::error!(error = %e, "metering the unreadable answer's worst case failed");
    }
    drop(hold);
    wire_error(wire, StatusCode::BAD_GATEWAY, why)
}

/// A streamed answer's running cost against a budget's hard limit: input from the provider's count when it
/// gives one up front (Anthropic), else estimated; output estimated at four characters a token.
#[derive(Clone, Debug)]
struct Ceiling {
    headroom_usd: f64,
    input_tokens: u64,
    output_chars: u64,
    price: Option<(f64, f64)>,
}

impl Ceiling {
    fn new(headroom_usd: f64, input_estimate: u64) -> Ceiling {
        Ceiling { headroom_usd, input_tokens: input_estimate, output_chars: 0, price: None }
    }

    fn priced(mut self, model: &str) -> Ceiling {
        self.price = ModelCatalog::builtin().lookup(model).map(|m| (m.price.input, m.price.output));
        self
    }

    fn usage(&self) -> Usage {
        Usage { input_tokens: self.input_tokens, output_tokens: self.output_chars.div_ceil(4), ..Usage::default() }
    }

    fn spent_usd(&self) -> f64 {
        let u = self.usage();
        self.price.map_or(0.0, |(i, o)| (u.input_tokens as f64 * i + u.output_tokens as f64 * o) / 1_000_000.0)
    }

    /// Counts an event; true when the answer has passed the limit.
    fn observe(&mut self, ev: &Sse) -> bool {
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else { return false };
        if let Some(n) = v["message"]["usage"]["input_tokens"].as_u64() {
            self.input_tokens = n;
        }
        self.output_chars += delta_chars(&v) as u64;
        self.price.is_some() && self.spent_usd() > self.headroom_usd
    }
}

/// Characters of generated text and arguments in one streamed event, in any of the three formats.
fn delta_chars(v: &Value) -> usize {
    let of = |d: &Value| -> usize {
        match d {
            Value::String(s) => s.len(),
            Value::Object(m) => {
                let direct: usize = ["text", "partial_json", "thinking", "content"]
                    .iter()
                    .filter_map(|k| m.get(*k).and_then(Value::as_str))
                    .map(str::len)
                    .sum();
                let calls: usize = m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["function"]["arguments"].as_str())
                    .map(str::len)
                    .sum();
                direct + calls
            }
            _ => 0,
        }
    };
    // Gemini: each chunk's new parts, text and whole calls.
    let gemini: usize = v["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["content"]["parts"].as_array().into_iter().flatten())
        .map(|p| p["text"].as_str().map_or(0, str::len) + p.get("functionCall").map_or(0, |f| f.to_string().len()))
        .sum();
    of(&v["delta"]) + v["choices"].as_array().into_iter().flatten().map(|c| of(&c["delta"])).sum::<usize>() + gemini
}

fn stream_error(wire: Wire, message: &str) -> Sse {
    match wire {
        Wire::Anthropic => Sse::json(Some("error"), &wire.error_body(502, message)),
        Wire::Chat => Sse::json(None, &wire.error_body(502, message)),
        Wire::Responses => {
            Sse::json(Some("error"), &json!({"type": "error", "code": "upstream_error", "message": message}))
        }
        // Google's SDKs read a chunk with a top-level `error` as the stream's failure.
        Wire::Gemini => Sse::json(None, &wire.error_body(502, message)),
    }
}

/// Reads the upstream stream to its end even when the client has gone, so that usage is still metered.
#[allow(clippy::too_many_arguments)]
async fn drive_stream(
    gw: Arc<Gateway>,
    s: Arc<Session>,
    wire: Wire,
    model: String,
    mut up: UpstreamResponse,
    mut gate: Box<dyn crate::wire::Gate>,
    hold: Hold,
    mut ceiling: Option<Ceiling>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let idle = Duration::from_secs(gw.limits.upstream_idle_timeout_seconds);
    let mut parser = SseParser::default();
    let mut relay = Relay { tx: &tx, client_gone: false, metered: false, reservation: hold.reservation.as_ref() };
    let mut failed: Option<String> = None;
    let mut complete = false;
    let mut cut: Option<Ceiling> = None;
    'read: loop {
        let chunk = match tokio::time::timeout(idle, up.body.next()).await {
            Err(_) => {
                failed = Some(format!("the upstream sent nothing for {}s", idle.as_secs()));
                break;
            }
            Ok(None) => {
                complete = true;
                break;
            }
            Ok(Some(Err(e))) => {
                failed = Some(format!("the upstream stream broke off: {e}"));
                break;
            }
            Ok(Some(Ok(c))) => c,
        };
        let events = match parser.push(&chunk) {
            Ok(e) => e,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        for ev in events {
            if let Some(c) = ceiling.as_mut()
                && c.observe(&ev)
            {
                cut = Some(c.clone());
                break 'read;
            }
            let steps = gate.push(ev);
            if let Err(e) = run_steps(&gw, &s, &model, &mut *gate, steps, &mut relay).await {
                failed = Some(e);
                break 'read;
            }
        }
    }
    if let Some(c) = cut {
        // Dropping the upstream body closes the connection, which stops the generation and its billing.
        drop(up);
        let message = format!(
            "[paddock] The answer was cut: a budget's hard limit leaves ${:.4} for this session, and this \
             answer had used about ${:.4}.",
            c.headroom_usd,
            c.spent_usd()
        );
        tracing::warn!(headroom = c.headroom_usd, "cut a streamed answer at the budget's hard limit");
        let usage = worst_case(hold.worst, None, Some(c.usage()));
        if let Err(e) = gw.settle(&s, &model, usage, false, hold.reservation.as_ref()).await {
            tracing::error!(error = %e, "metering the cut answer failed");
        }
        let _ = tx.send(Ok(stream_error(wire, &message).encode())).await;
        drop(hold);
        return;
    }
    if failed.is_none()
        && let Some(ev) = parser.finish()
    {
        let steps = gate.push(ev);
        if let Err(e) = run_steps(&gw, &s, &model, &mut *gate, steps, &mut relay).await {
            failed = Some(e);
        }
    }
    if !relay.metered {
        // No final usage (cut off, malformed, or a server that never sends it): the worst case the hold
        // reserved is charged, never nothing. Usage the stream announced on the way (the input count of
        // Anthropic's message_start, a running count) raises it; so does text beyond the cap.
        let announced = gate
            .finish()
            .into_iter()
            .find_map(|st| if let Step::Usage(u) = st { Some(u) } else { None })
            .filter(Usage::is_plausible);
        let usage = worst_case(hold.worst, announced, ceiling.as_ref().map(Ceiling::usage));
        tracing::warn!(complete, ?usage, "the stream ended without final usage; charging the worst case");
        usage_missing(&gw, wire);
        if let Err(e) = gw.settle(&s, &model, usage, false, hold.reservation.as_ref()).await {
            tracing::error!(error = %e, "metering the stream's worst case failed");
        }
    }
    if let Some(e) = failed {
        tracing::warn!(error = %e, complete, "stream ended with an error");
        let _ = tx.send(Ok(stream_error(wire, &e).encode())).await;
    }
    drop(hold);
}

fn usage_missing(gw: &Gateway, wire: Wire) {
    gw.metrics.usage_missing.get_or_create(&WireLabels { wire: wire.as_str().into() }).inc();
}

/// What a response without final usage is charged: the hold's worst case, raised by any count seen.
fn worst_case(hold: Usage, announced: Option<Usage>, observed: Option<Usage>) -> Usage {
    let mut u = hold;
    for seen in announced.into_iter().chain(observed) {
        u.input_tokens = u.input_tokens.max(seen.input_tokens);
        u.output_tokens = u.output_tokens.max(seen.output_tokens);
        u.cache_read_input_tokens = u.cache_read_input_tokens.max(seen.cache_read_input_tokens);
        u.cache_creation_input_tokens = u.cache_creation_input_tokens.max(seen.cache_creation_input_tokens);
    }
    u
}

/// Where a stream's steps go: the client's channel (until the client leaves), and the request's hold, given
/// back by the settlement when the usage arrives.
struct Relay<'a> {
    tx: &'a mpsc::Sender<Result<Bytes, std::io::Error>>,
    client_gone: bool,
    metered: bool,
    reservation: Option<&'a Reservation>,
}

async fn run_steps(
    gw: &Arc<Gateway>,
    s: &Arc<Session>,
    model: &str,
    gate: &mut dyn crate::wire::Gate,
    steps: Vec<Step>,
    relay: &mut Relay<'_>,
) -> Result<(), String> {
    let mut queue: VecDeque<Step> = steps.into();
    while let Some(step) = queue.pop_front() {
        match step {
            Step::Emit(events) => {
                for e in events {
                    if !relay.client_gone && relay.tx.send(Ok(e.encode())).await.is_err() {
                        relay.client_gone = true;
                        tracing::info!("client went away mid-stream; reading on to meter usage");
                    }
                }
            }
            Step::Decide(call) => {
                let denied = gate_call(gw, s, model, &call).await;
                for (i, st) in gate.resolve(&call.id, denied).into_iter().enumerate() {
                    queue.insert(i, st);
                }
            }
            // A count no provider could mean is not metered: the stream's end charges the worst case.
            Step::Usage(u) if !u.is_plausible() => {
                tracing::warn!(reported = ?u, "the stream reported an impossible usage; it is not used");
            }
            Step::Usage(u) => {
                relay.metered = true;
                gw.settle(s, model, u, true, relay.reservation)
                    .await
                    .map_err(|e| format!("the gateway could not record the cost: {e}"))?;
            }
            Step::Model(m) if gw.telemetry().is_some() => telemetry::response_model(&m),
            Step::Model(_) => {}
        }
    }
    Ok(())
}
