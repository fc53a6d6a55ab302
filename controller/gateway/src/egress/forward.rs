//! Plain-HTTP forward proxying (`GET http://host/x`): the gateway sees the request, so the `egress` event
//! carries its method, path and JSON body (read as the broker reads one, see [`super::inspect`]). Hop-by-hop and `Proxy-*` headers stay here, no credential is ever
//! added (plain HTTP would carry it in the clear), redirects come back to the client as they are, and the
//! response is streamed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::uri::Scheme;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Version, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use paddock_api::Phase;
use paddock_policy::Event;

use super::target::{self, Target};
use super::{dial, text};
use crate::gateway::{Gateway, Session};

pub async fn handle(gw: Arc<Gateway>, s: Arc<Session>, req: Request<Body>) -> Response {
    let (mut parts, body) = req.into_parts();
    if parts.uri.scheme() != Some(&Scheme::HTTP) {
        return text(
            StatusCode::BAD_REQUEST,
            "the proxy forwards only http:// URLs; HTTPS goes through a CONNECT tunnel\n",
        );
    }
    let Some(authority) = parts.uri.authority().map(|a| a.as_str().to_owned()) else {
        return text(StatusCode::BAD_REQUEST, "the request's URL has no host\n");
    };
    let target = match target::parse(&authority, Some(80)) {
        Ok(t) => t,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if let Some(why) = super::inspect::method_override(&parts.headers, &path) {
        let reason = format!("{why}; send the method itself");
        return super::refuse_with(&gw, &s, "http", StatusCode::BAD_REQUEST, "paddock/egress-method-override", &reason)
            .await;
    }
    // Counted from here until the upstream connection closes (its response streamed).
    let slot = match super::connection_slot(&gw, &s, "http").await {
        Ok(slot) => slot,
        Err(refusal) => return refusal,
    };
    let max = gw.broker.config().max_inspect_bytes;
    let (body, json) = match super::inspect::inspect(&parts.headers, body, max).await {
        Ok((bytes, json)) => (Body::from(bytes), json),
        Err(why) => {
            let reason = format!("the gateway decides on a request by its body and cannot judge this one: {why}");
            return super::refuse_with(&gw, &s, "http", why.status(), "paddock/egress-inspect", &reason).await;
        }
    };
    let event = Event {
        phase: Phase::Egress,
        host: Some(target.host.clone()),
        port: Some(target.port),
        scheme: Some("http".into()),
        method: Some(parts.method.as_str().to_owned()),
        path: Some(path.clone()),
        body: json,
        ..Event::default()
    };
    let ruling = match super::decide(&gw, &s, event).await {
        Ok(r) => r,
        Err(e) => return super::decide_failed(e),
    };
    if !ruling.allowed() {
        return super::refused(&ruling);
    }
    let timeout = Duration::from_secs(gw.limits.upstream_connect_timeout_seconds);
    let upstream = match dial::dial(gw.broker.config(), timeout, &target.host, target.port).await {
        Ok(u) => u,
        Err(e) if e.is_refusal() => {
            return super::refuse(&gw, &s, "http", "paddock/egress-ssrf", &e.to_string()).await;
        }
        Err(e) => return text(StatusCode::BAD_GATEWAY, format!("{e}\n")),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
        Ok(c) => c,
        Err(e) => return text(StatusCode::BAD_GATEWAY, format!("HTTP with {} failed: {e}\n", target.authority())),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "plain-HTTP upstream connection ended");
        }
        drop(slot);
    });
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::EXPECT);
    parts.headers.insert(header::HOST, host_value(&target));
    parts.uri = path.parse().expect("a path and query from a valid URI");
    parts.version = Version::HTTP_11;
    let wait = Duration::from_secs(gw.limits.upstream_response_timeout_seconds);
    let response = match tokio::time::timeout(wait, sender.send_request(Request::from_parts(parts, body))).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return text(StatusCode::BAD_GATEWAY, format!("the request to {} failed: {e}\n", target.authority()));
        }
        Err(_) => {
            let message = format!("{} sent no response within {} s\n", target.authority(), wait.as_secs());
            return text(StatusCode::GATEWAY_TIMEOUT, message);
        }
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Body::new(body))
}

fn host_value(t: &Target) -> HeaderValue {
    HeaderValue::from_str(&super::host_header(t, 80)).expect("a checked host")
}

/// Removes the headers that describe one connection (and those `Connection` names), so that neither side can
/// pass framing, an upgrade or its proxy credential through; hyper frames each message afresh. When the
/// message came chunked, its `Content-Length` goes too (a message with both is a smuggling attempt).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    for h in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("proxy-connection"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_proxy_headers_stay_here() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("content-length", "5"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("authorization", "Bearer the-clients-own"),
            ("accept", "*/*"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["authorization", "accept"]);
    }
}
