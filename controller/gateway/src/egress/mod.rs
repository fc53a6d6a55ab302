//! The egress proxy: every connection out of a sandbox. The gateway's one listener also serves as an HTTP
//! proxy: a `CONNECT host:port` opens a tunnel, an absolute-form request (`GET http://host/x`) is forwarded.
//! Both are authenticated by the session token (`Proxy-Authorization`) and decided as an `egress` event before
//! anything leaves; the decision is in the audit log and counted in `/metrics`. A tunnel to a host name must
//! carry TLS whose SNI is that name, or it is cut. Hosts brokered for the session go to the credential broker,
//! which sees (and decides) each request inside.

pub mod connect;
pub mod dial;
pub mod forward;
pub mod inspect;
pub mod limit;
pub mod sni;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use paddock_api::{Phase, Verdict};
use paddock_policy::Event;
use tracing::Instrument;

use crate::gateway::{Gateway, GatewayError, Ruling, Session};
use crate::metrics::EgressLabels;

/// Whether a request is for the proxy rather than the gateway's own routes: `CONNECT`, or a request whose
/// target carries a scheme or an authority (absolute form). Such a request never reaches a route, whatever
/// its path (`GET http://x/v1/audit` is a request to `x`).
pub fn is_proxy_request<B>(req: &Request<B>) -> bool {
    req.method() == Method::CONNECT || req.uri().scheme().is_some() || req.uri().authority().is_some()
}

/// Serves one proxy request.
pub async fn handle(gw: Arc<Gateway>, req: Request<Body>) -> Response {
    let session = match authenticate(&gw, req.headers()).await {
        Ok(s) => s,
        Err(no) => return no.into_response(),
    };
    // The destination only: a URL's user information, path or query may hold a secret of the agent's.
    let target = req.uri().authority().map_or("", |a| a.as_str().rsplit('@').next().unwrap_or(""));
    let span = tracing::info_span!("egress", session = %session.id, method = %req.method(), %target);
    if req.method() == Method::CONNECT {
        connect::handle(gw, session, req).instrument(span).await
    } else {
        forward::handle(gw, session, req).instrument(span).await
    }
}

/// The session token from `Proxy-Authorization`: `Basic base64(any-user:TOKEN)` (what proxy URLs with user
/// information produce, so every client works) or `Bearer TOKEN`.
pub fn proxy_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::PROXY_AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (_user, password) = decoded.split_once(':')?;
    Some(password.to_owned())
}

/// The live session of the request's proxy credential. The admin token is no proxy credential.
async fn authenticate(gw: &Gateway, headers: &HeaderMap) -> Result<Arc<Session>, NoSession> {
    let token = proxy_token(headers).filter(|t| !t.is_empty()).ok_or(NoSession::Unknown)?;
    if let Some(s) = gw.session_for_token(&token).await {
        return Ok(s);
    }
    match gw.ended_session_for_token(&token).await {
        Some((phase, reason)) => Err(NoSession::Ended { phase, reason }),
        None => Err(NoSession::Unknown),
    }
}

/// Why a proxy request has no session.
enum NoSession {
    /// No token, or one no session has: 407.
    Unknown,
    /// The token's session has ended: 403, saying so.
    Ended { phase: String, reason: String },
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            NoSession::Ended { phase, reason } => text(
                StatusCode::FORBIDDEN,
                format!("the session has ended ({phase}: {reason}); its token no longer opens connections\n"),
            ),
            NoSession::Unknown => {
                let mut answer = text(
                    StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                    "the egress proxy needs the session token: `Proxy-Authorization: Basic base64(paddock:TOKEN)`, \
                     e.g. the proxy URL http://paddock:TOKEN@GATEWAY\n",
                );
                let realm = HeaderValue::from_static("Basic realm=\"paddock\"");
                answer.headers_mut().insert(header::PROXY_AUTHENTICATE, realm);
                answer
            }
        }
    }
}

/// Decides an `egress` (or `git_push`) event for a session: the egress proxy's tunnels and forwarded
/// requests, the broker's requests and the git wire's pushes all pass here. An ask holds the caller up to
/// `limits.ask_timeout_seconds`; an ask still pending then counts as refused. Counted in
/// `paddock_gateway_egress_total{phase, scheme, verdict}`; the decision is in the audit log.
pub async fn decide(gw: &Arc<Gateway>, s: &Arc<Session>, event: Event) -> Result<Ruling, GatewayError> {
    let phase = event.phase;
    let scheme = event.scheme.clone().unwrap_or_default();
    let wait = Duration::from_secs(gw.limits.ask_timeout_seconds);
    let result = gw.decide(s, event, wait).await;
    let verdict = match &result {
        Ok(r) if r.status == "pending" => "ask",
        Ok(r) => Verdict::as_str(r.verdict),
        Err(_) => "error",
    };
    count(gw, phase, &scheme, verdict);
    let mut ruling = result?;
    if ruling.status == "pending" {
        ruling.verdict = Verdict::Deny;
        ruling.reason = format!(
            "{} (asked for approval {}; no answer within {} s)",
            ruling.reason,
            ruling.approval_id.as_deref().unwrap_or("?"),
            gw.limits.ask_timeout_seconds
        );
    }
    Ok(ruling)
}

/// Counts one egress outcome: a verdict, or a refusal the proxy made itself (`cut`, `refused`).
pub fn count(gw: &Gateway, phase: Phase, scheme: &str, verdict: &str) {
    let labels =
        EgressLabels { phase: Phase::as_str(phase).to_owned(), scheme: scheme.to_owned(), verdict: verdict.to_owned() };
    gw.metrics.egress.get_or_create(&labels).inc();
}

/// The answer to a refused egress event: 403, plain text naming the policy and its reason, the policy in
/// `x-paddock-policy` and the reason in `x-paddock-reason` (clients show a refused CONNECT's headers but not its
/// body), and an open approval in `x-paddock-approval`.
pub fn refused(ruling: &Ruling) -> Response {
    let policy = ruling.policy.as_deref().unwrap_or("paddock");
    let rule = ruling.rule.as_deref().filter(|r| !r.is_empty()).map(|r| format!(" (rule {r})")).unwrap_or_default();
    let reason = ruling.reason.trim_end();
    let mut answer = text(StatusCode::FORBIDDEN, format!("refused by policy {policy}{rule}: {reason}\n"));
    let headers = answer.headers_mut();
    if let Ok(v) = HeaderValue::from_str(policy) {
        headers.insert("x-paddock-policy", v);
    }
    headers.insert("x-paddock-reason", header_text(reason));
    if let Some(v) = ruling.approval_id.as_deref().and_then(|a| HeaderValue::from_str(a).ok()) {
        headers.insert("x-paddock-approval", v);
    }
    answer
}

/// `text` as a header value: printable ASCII only (anything else becomes `?`), at most 512 characters.
fn header_text(text: &str) -> HeaderValue {
    let mut v: String = text.chars().map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' }).collect();
    if v.len() > 512 {
        v.truncate(509);
        v.push_str("...");
    }
    HeaderValue::from_str(&v).expect("printable ASCII")
}

/// Refuses on the gateway's own account (`policy` names the check, e.g. `paddock/egress-ssrf`): an audit row,
/// a count, and the 403 the client gets.
async fn refuse(gw: &Gateway, s: &Session, scheme: &str, policy: &str, reason: &str) -> Response {
    refuse_with(gw, s, scheme, StatusCode::FORBIDDEN, policy, reason).await
}

/// [`refuse`] with another status than 403: `429` for a session at its connection limit, `400`, `413`, `415`
/// for a request the gateway cannot judge. The body and headers are those of [`refused`].
pub async fn refuse_with(
    gw: &Gateway,
    s: &Session,
    scheme: &str,
    status: StatusCode,
    policy: &str,
    reason: &str,
) -> Response {
    audit_refusal(gw, s, scheme, policy, reason).await;
    let mut answer = refused(&Ruling::refusal(Some(policy), reason));
    *answer.status_mut() = status;
    answer
}

/// Counts one more open connection of the session, or refuses it (`429`, audited as `paddock/egress-limit`)
/// when the session already holds `egress.maxConnectionsPerSession`.
async fn connection_slot(gw: &Gateway, s: &Session, scheme: &str) -> Result<limit::Slot, Response> {
    let limits = &gw.broker.connections;
    match limits.acquire(&s.id) {
        Some(slot) => Ok(slot),
        None => {
            let max = limits.max();
            tracing::warn!(session = %s.id, max, "egress connection refused: the session is at its limit");
            let reason = format!(
                "session {} already holds {max} open connections through the egress proxy, the most \
                 egress.maxConnectionsPerSession allows; close one and retry (or raise the setting)",
                s.id
            );
            Err(refuse_with(gw, s, scheme, StatusCode::TOO_MANY_REQUESTS, "paddock/egress-limit", &reason).await)
        }
    }
}

/// Writes a refusal the gateway made itself to the audit log and counts it (`verdict="refused"`).
async fn audit_refusal(gw: &Gateway, s: &Session, scheme: &str, policy: &str, reason: &str) {
    count(gw, Phase::Egress, scheme, "refused");
    if let Err(e) = gw.refuse(s, Phase::Egress, policy, reason).await {
        tracing::error!(session = %s.id, %policy, error = %e, "cannot write the egress refusal to the audit log");
    }
}

/// The answer to a decision that could not be made.
fn decide_failed(e: GatewayError) -> Response {
    let status = match e {
        GatewayError::SessionEnded(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    text(status, format!("the gateway could not decide on this connection: {e}\n"))
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message.into()).into_response()
}

/// `host:port` of a destination for the `Host` header: the port left out when it is the scheme's default.
fn host_header(t: &target::Target, default_port: u16) -> String {
    let a = t.authority();
    match t.port == default_port {
        true => a.rsplit_once(':').map(|(h, _)| h.to_owned()).unwrap_or(a),
        false => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn reads_the_token_from_basic_or_bearer() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("paddock:pdk_abc:def");
        assert_eq!(proxy_token(&headers(&format!("Basic {b64}"))).as_deref(), Some("pdk_abc:def"));
        let b64 = base64::engine::general_purpose::STANDARD.encode(":tok");
        assert_eq!(proxy_token(&headers(&format!("basic  {b64}"))).as_deref(), Some("tok"));
        assert_eq!(proxy_token(&headers("Bearer tok")).as_deref(), Some("tok"));
        assert_eq!(proxy_token(&headers("Digest tok")), None);
        assert_eq!(proxy_token(&headers("Basic !!!")), None);
        let b64 = base64::engine::general_purpose::STANDARD.encode("no-colon");
        assert_eq!(proxy_token(&headers(&format!("Basic {b64}"))), None);
        assert_eq!(proxy_token(&HeaderMap::new()), None);
    }

    #[test]
    fn proxy_requests_are_told_apart_from_the_gateways_own() {
        let r = |m: Method, u: &str| Request::builder().method(m).uri(u).body(()).unwrap();
        assert!(is_proxy_request(&r(Method::CONNECT, "example.com:443")));
        assert!(is_proxy_request(&r(Method::GET, "http://x/v1/audit")));
        assert!(is_proxy_request(&r(Method::POST, "https://x/v1/sessions")));
        assert!(!is_proxy_request(&r(Method::GET, "/v1/audit")));
        assert!(!is_proxy_request(&r(Method::GET, "//x/v1/audit")));
    }

    #[test]
    fn a_refusal_names_the_policy_and_reason_in_body_and_headers() {
        let ruling = Ruling {
            verdict: Verdict::Deny,
            reason: "egress to `x:443` is not allowed\nsecond line \u{e9}".into(),
            policy: Some("paddock/egress".into()),
            rule: Some(String::new()),
            approval_id: None,
            status: "decided".into(),
            decided_by: None,
            event: None,
        };
        let r = refused(&ruling);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()["x-paddock-policy"], "paddock/egress");
        assert_eq!(r.headers()["x-paddock-reason"], "egress to `x:443` is not allowed?second line ?");
        assert_eq!(header_text(&"a".repeat(600)).len(), 512);
    }

    #[test]
    fn the_host_header_leaves_out_the_default_port() {
        let t = target::parse("example.com:80", None).unwrap();
        assert_eq!(host_header(&t, 80), "example.com");
        let t = target::parse("[2001:db8::1]:8080", None).unwrap();
        assert_eq!(host_header(&t, 80), "[2001:db8::1]:8080");
        let t = target::parse("[2001:db8::1]:80", None).unwrap();
        assert_eq!(host_header(&t, 80), "[2001:db8::1]");
    }
}
