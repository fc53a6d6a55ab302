//! A brokered tunnel: the sandbox's TLS ends here (with a leaf of the installation's CA for the CONNECT host),
//! each HTTP/1.1 request inside is decided as an `egress` event, and the allowed ones go to the real host with
//! the session's credential. What the broker cannot see exactly (a compressed or oversized body, JSON that does
//! not parse, a GraphQL document that does not or that comes with a query string, a method override) is
//! refused, never passed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use paddock_api::Phase;
use paddock_policy::Event;
use tokio::io::{AsyncRead, AsyncWrite};

use super::upstream::{BoxError, ProxyBody, Upstream, relay_response};
use crate::gateway::{Gateway, Session};

/// How long the sandbox may take for its TLS handshake and a request's head (the wait for the next request
/// of a kept-alive connection included). `egress.tunnelIdleTimeoutSeconds` shortens both when it is less.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one brokered tunnel (`CONNECT host:port`, already allowed) until either side closes it. A ClientHello
/// whose SNI is not `host` is cut: the leaf shown and the upstream dialled are always the CONNECT host's.
pub async fn serve_tunnel<IO>(gw: Arc<Gateway>, s: Arc<Session>, host: String, port: u16, io: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let host = host.to_ascii_lowercase();
    let idle = Duration::from_secs(gw.broker.config().tunnel_idle_timeout_seconds);
    let (handshake_timeout, head_timeout) = (HANDSHAKE_TIMEOUT.min(idle), HEAD_TIMEOUT.min(idle));
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = match tokio::time::timeout(handshake_timeout, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            tracing::info!(session = %s.id, %host, error = %e, "brokered tunnel: no TLS ClientHello");
            return;
        }
        Err(_) => {
            tracing::info!(session = %s.id, %host, "brokered tunnel: no TLS ClientHello in time");
            return;
        }
    };
    let sni = start.client_hello().server_name().map(str::to_owned);
    if !sni.as_deref().is_some_and(|n| crate::egress::connect::same_name(n, &host)) {
        tracing::warn!(session = %s.id, %host, sni = ?sni, "brokered tunnel cut: its SNI is not the CONNECT host");
        return;
    }
    let leaf = match gw.broker.ca.leaf(&host) {
        Ok(leaf) => leaf,
        Err(e) => {
            tracing::error!(session = %s.id, %host, error = %e, "brokered tunnel: no certificate");
            return;
        }
    };
    let mut cfg = match rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b.with_no_client_auth().with_cert_resolver(Arc::new(OneCert(leaf))),
        Err(e) => {
            tracing::error!(error = %e, "brokered tunnel: TLS configuration");
            return;
        }
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = match tokio::time::timeout(handshake_timeout, start.into_stream(Arc::new(cfg))).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(session = %s.id, %host, error = %e, "brokered tunnel: TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let credential = gw.broker.credential(&s, &host, port);
    let upstream = Arc::new(Upstream::new(&gw.broker, &host, port, credential, &gw.limits));
    let service = hyper::service::service_fn(move |req| {
        let (gw, s, upstream) = (gw.clone(), s.clone(), upstream.clone());
        async move { Ok::<_, Infallible>(request(&gw, &s, &upstream, req).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .serve_connection(TokioIo::new(tls), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(%host, error = %e, "brokered tunnel ended");
    }
}

#[derive(Debug)]
struct OneCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for OneCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// One request inside the tunnel: decided, then forwarded or refused.
async fn request(gw: &Arc<Gateway>, s: &Arc<Session>, up: &Upstream, req: Request<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    // The upstream is always the CONNECT host: a request naming another (absolute form) is refused, and the
    // `Host` header is replaced on the way out.
    if let Some(authority) = parts.uri.authority() {
        let same = authority.host().eq_ignore_ascii_case(&up.host) && authority.port_u16().unwrap_or(443) == up.port;
        if !same {
            return plain(StatusCode::BAD_REQUEST, "this tunnel reaches only its CONNECT host");
        }
    }
    // Methods are case-sensitive, but a host may not treat them so: `post /graphql` must not pass as something
    // other than the POST it may become.
    if parts.method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return plain(StatusCode::BAD_REQUEST, "a request method is upper case");
    }
    if parts.method == Method::CONNECT {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "CONNECT inside a brokered tunnel is not supported");
    }
    // The path exactly as it goes upstream, query included, never normalised: rules see what the host sees.
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    if let Some(why) = crate::egress::inspect::method_override(&parts.headers, &path) {
        let reason = format!("{why}; send the method itself");
        return refuse(gw, s, StatusCode::BAD_REQUEST, "paddock/egress-method-override", &reason).await;
    }
    let route = route_of(&path);
    let mut event = Event {
        phase: Phase::Egress,
        host: Some(up.host.clone()),
        port: Some(up.port),
        scheme: Some("https".into()),
        method: Some(parts.method.as_str().to_owned()),
        path: Some(path.clone()),
        ..Event::default()
    };
    if crate::gitwire::receive_pack::is_push(&parts.method, &route) {
        // A push is decided by its ref updates (a `git_push` event), not as an `egress` request.
        let Some(mirrors) = gw.broker.mirrors() else {
            return plain(StatusCode::FORBIDDEN, "pushes need the gateway's git mirrors, which it could not set up");
        };
        let to = crate::gitwire::receive_pack::Destination {
            scheme: "https".into(),
            host: up.host.clone(),
            port: up.port,
            credential: up.credential().map(|c| (c.header.clone(), c.value.clone())),
        };
        let req = Request::from_parts(parts, body);
        return crate::gitwire::receive_pack::handle(gw, s, mirrors, &to, req, |r| send(s, up, &path, r)).await;
    }
    // A fetch's negotiation streams through unread (it reads, it cannot change anything); every other body is
    // read, bounded, so that the decision sees it.
    let streamed = parts.method == Method::POST && route.ends_with("/git-upload-pack");
    let body: ProxyBody = if streamed {
        body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()
    } else {
        let max = gw.broker.config().max_inspect_bytes;
        let bytes = match crate::egress::inspect::inspect(&parts.headers, body, max).await {
            Ok((bytes, json)) => {
                event.body = json;
                bytes
            }
            Err(why) => {
                let reason = format!("the gateway decides on a request by its body and cannot judge this one: {why}");
                return refuse(gw, s, why.status(), "paddock/egress-inspect", &reason).await;
            }
        };
        if is_graphql(&route) && parts.method != Method::POST {
            // A GraphQL operation in a query string would go undecided.
            return plain(StatusCode::METHOD_NOT_ALLOWED, "GraphQL requests go by POST through the gateway");
        }
        if is_graphql(&route) && path.contains('?') {
            // A host may run the operation of the query string (`?query=mutation…`) rather than the body's.
            let reason = "a GraphQL request through the gateway carries no query string; put the operation and its \
                          variables in the JSON body";
            return refuse(gw, s, StatusCode::BAD_REQUEST, "paddock/egress-inspect", reason).await;
        }
        if is_graphql(&route) {
            match crate::gitwire::graphql::operation(event.body.as_ref().unwrap_or(&serde_json::Value::Null)) {
                Ok(op) => event.operation = op,
                Err(why) => return plain(StatusCode::BAD_REQUEST, &format!("refused: {why}")),
            }
        }
        Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
    };
    let ruling = match decide(gw, s, event).await {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    if !ruling.allowed() {
        return refused(&ruling);
    }
    send(s, up, &path, Request::from_parts(parts, body)).await
}

/// Sends a decided request upstream with `path` (origin form) as its target; the upstream's answer, or 502.
async fn send(s: &Session, up: &Upstream, path: &str, mut req: Request<ProxyBody>) -> Response<ProxyBody> {
    *req.uri_mut() = match path.parse() {
        Ok(u) => u,
        Err(_) => return plain(StatusCode::BAD_REQUEST, "the request target is not a path"),
    };
    match up.forward(req).await {
        Ok(resp) => relay_response(resp),
        Err(e) => {
            tracing::warn!(session = %s.id, host = %up.host, error = %e, "brokered request failed upstream");
            let status = match e {
                super::upstream::UpstreamError::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            };
            plain(status, &e.to_string())
        }
    }
}

/// The path without its query, percent-decoded and lowercased: only to recognise git and GraphQL endpoints,
/// so that `Git-Receive-Pack` or `%2F` spellings do not slip past the checks that look for them.
fn route_of(path: &str) -> String {
    let raw = path.split('?').next().unwrap_or("");
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) =
                (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_ascii_lowercase().trim_end_matches('/').to_owned()
}

fn is_graphql(route: &str) -> bool {
    route.ends_with("/graphql")
}

/// Decides a brokered request as the egress proxy decides (audit, metrics, an ask waits). A decision that
/// cannot be made refuses the request.
async fn decide(gw: &Arc<Gateway>, s: &Arc<Session>, event: Event) -> Result<crate::Ruling, Response<ProxyBody>> {
    crate::egress::decide(gw, s, event).await.map_err(|e| {
        let status = match e {
            crate::gateway::GatewayError::SessionEnded(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        plain(status, &format!("the gateway could not decide on this request: {e}"))
    })
}

/// The answer to a refused request: the egress proxy's 403, naming the policy and its reason.
fn refused(ruling: &crate::Ruling) -> Response<ProxyBody> {
    crate::egress::refused(ruling).map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync())
}

/// A refusal on the gateway's own account (`policy` names the check), audited and counted like the egress
/// proxy's, with the egress proxy's body and headers.
async fn refuse(gw: &Gateway, s: &Session, status: StatusCode, policy: &str, reason: &str) -> Response<ProxyBody> {
    crate::egress::refuse_with(gw, s, "https", status, policy, reason)
        .await
        .map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync())
}

/// A short text answer of the gateway's own, closing nothing (the client may send its next request).
fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut resp =
        Response::new(Full::new(Bytes::from(format!("paddock: {text}\n"))).map_err(|n| match n {}).boxed_unsync());
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_recognised_in_any_spelling() {
        assert!(route_of("/acme/app.git/git-receive-pack").ends_with("/git-receive-pack"));
        assert!(route_of("/acme/app.git/GIT-Receive-Pack/?x=1").ends_with("/git-receive-pack"));
        assert!(route_of("/acme/app.git%2Fgit-receive%2Dpack").ends_with("/git-receive-pack"));
        assert!(is_graphql(&route_of("/graphql")));
        assert!(is_graphql(&route_of("/api/GraphQL/")));
        assert!(!is_graphql(&route_of("/repos/acme/app")));
    }
}
