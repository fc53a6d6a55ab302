//! `CONNECT host:port`: decided, then either handed to the credential broker (a host brokered for the
//! session) or relayed as an end-to-end tunnel. A tunnel to a host *name* must open with a TLS ClientHello
//! whose SNI is that name: otherwise the allowlist, which judges names, would say nothing about where the
//! bytes really go (a TLS client can ask an allowed address for any site it serves). Only a tunnel to an IP
//! address (allowed by an explicit CIDR entry) may carry another protocol.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use paddock_api::Phase;
use paddock_policy::Event;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::sni::{self, Hello};
use super::target::{self, Target};
use super::{dial, text};
use crate::gateway::{Gateway, Session};
use crate::metrics::DirectionLabels;

/// The most a client may send before its ClientHello is complete, and how long it may take: a real one is
/// a few kilobytes and arrives at once.
const MAX_CLIENT_HELLO: usize = 64 << 10;
const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an open tunnel checks that its session is still live.
const SESSION_CHECK: Duration = Duration::from_secs(1);
/// Relay buffers, each way.
const RELAY_BUFFER: usize = 64 << 10;

pub async fn handle(gw: Arc<Gateway>, s: Arc<Session>, req: Request<Body>) -> Response {
    let Some(authority) = req.uri().authority().map(|a| a.as_str().to_owned()) else {
        return text(StatusCode::BAD_REQUEST, "CONNECT needs a `host:port` target\n");
    };
    let target = match target::parse(&authority, None) {
        Ok(t) => t,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    // Counted from here until the tunnel closes; refused before anything is decided or dialled.
    let slot = match super::connection_slot(&gw, &s, "https").await {
        Ok(slot) => slot,
        Err(refusal) => return refusal,
    };
    let event = Event {
        phase: Phase::Egress,
        host: Some(target.host.clone()),
        port: Some(target.port),
        scheme: Some("https".into()),
        ..Event::default()
    };
    let ruling = match super::decide(&gw, &s, event).await {
        Ok(r) => r,
        Err(e) => return super::decide_failed(e),
    };
    if !ruling.allowed() {
        return super::refused(&ruling);
    }
    let upgrade = hyper::upgrade::on(req);
    if gw.broker.credential(&s, &target.host, target.port).is_some() {
        // The broker terminates this tunnel's TLS and decides each request inside.
        tokio::spawn(async move {
            match upgrade.await {
                Ok(io) => crate::broker::serve_tunnel(gw, s, target.host, target.port, TokioIo::new(io)).await,
                Err(e) => tracing::debug!(error = %e, "the client left before its brokered tunnel opened"),
            }
            drop(slot);
        });
        return established();
    }
    // Dial before answering, so that the client learns of a refusal or an unreachable host.
    let timeout = Duration::from_secs(gw.limits.upstream_connect_timeout_seconds);
    let upstream = match dial::dial(gw.broker.config(), timeout, &target.host, target.port).await {
        Ok(u) => u,
        Err(e) if e.is_refusal() => {
            return super::refuse(&gw, &s, "https", "paddock/egress-ssrf", &e.to_string()).await;
        }
        Err(e) => return text(StatusCode::BAD_GATEWAY, format!("{e}\n")),
    };
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => relay(&gw, &s, &target, TokioIo::new(io), upstream).await,
            Err(e) => tracing::debug!(error = %e, "the client left before its tunnel opened"),
        }
        drop(slot);
    });
    established()
}

fn established() -> Response {
    Response::builder().status(StatusCode::OK).body(Body::empty()).expect("response")
}

/// Relays a tunnel both ways until either side closes it, its session ends, or it carries nothing for
/// `egress.tunnelIdleTimeoutSeconds`; a tunnel to a name first shows its ClientHello.
async fn relay<C>(gw: &Gateway, s: &Session, target: &Target, client: C, mut upstream: TcpStream)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Arc::new(Activity::new());
    let mut client = Counted::new(gw, client, activity.clone());
    let mut first = Vec::new();
    if target.ip.is_none() {
        let why = match client_hello(&mut client, &mut first).await {
            Ok(Some(name)) if same_name(&name, &target.host) => None,
            Ok(Some(name)) => Some(format!("its TLS ClientHello asks for `{name}`, not the CONNECT host")),
            Ok(None) => Some("its TLS ClientHello names no server (SNI)".to_owned()),
            Err(why) => Some(why),
        };
        if let Some(why) = why {
            let reason = format!(
                "the tunnel to {} was cut: {why}; a tunnel to a host name must carry TLS for that name",
                target.authority()
            );
            tracing::warn!(session = %s.id, target = %target.authority(), "{reason}");
            super::audit_refusal(gw, s, "https", "paddock/egress-sni", &reason).await;
            return;
        }
        if let Err(e) = upstream.write_all(&first).await {
            tracing::debug!(error = %e, "the upstream closed before the ClientHello");
            return;
        }
    }
    let idle = Duration::from_secs(gw.broker.config().tunnel_idle_timeout_seconds);
    activity.touch();
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, RELAY_BUFFER, RELAY_BUFFER);
    tokio::select! {
        r = copy => match r {
            Ok((up, down)) => tracing::debug!(up, down, target = %target.authority(), "tunnel closed"),
            Err(e) => tracing::debug!(error = %e, target = %target.authority(), "tunnel ended"),
        },
        () = ended(s) => tracing::info!(target = %target.authority(), "tunnel cut: its session ended"),
        () = activity.idle_for(idle) => {
            tracing::info!(target = %target.authority(), idle_seconds = idle.as_secs(), "tunnel closed: idle");
        }
    }
}

/// When a tunnel last carried a byte either way (every byte passes its client side: read from it going up,
/// written to it coming down).
struct Activity {
    origin: Instant,
    /// Milliseconds after `origin`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity { origin: Instant::now(), last: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Completes once nothing has passed for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let last = self.origin + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Completes once the session has ended: its open tunnels close with it (checked every second).
pub async fn ended(s: &Session) {
    let mut tick = tokio::time::interval(SESSION_CHECK);
    while s.ended().is_none() {
        tick.tick().await;
    }
}

/// Reads the client's first bytes into `buf` until they hold a ClientHello; its server name, or why the
/// bytes are not one.
async fn client_hello<C: AsyncRead + Unpin>(client: &mut C, buf: &mut Vec<u8>) -> Result<Option<String>, String> {
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match sni::parse(buf) {
                Hello::Incomplete => {}
                Hello::ClientHello { server_name } => return Ok(server_name),
                Hello::NotTls => return Err("it does not carry TLS".to_owned()),
                Hello::Malformed(why) => return Err(format!("its TLS ClientHello is refused: {why}")),
            }
            if buf.len() >= MAX_CLIENT_HELLO {
                return Err(format!("its TLS ClientHello is larger than {MAX_CLIENT_HELLO} bytes"));
            }
            let room = chunk.len().min(MAX_CLIENT_HELLO - buf.len());
            match client.read(&mut chunk[..room]).await {
                Ok(0) => return Err("the client closed it before a complete TLS ClientHello".to_owned()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("reading its TLS ClientHello failed: {e}")),
            }
        }
    };
    match tokio::time::timeout(CLIENT_HELLO_TIMEOUT, read).await {
        Ok(r) => r,
        Err(_) => Err(format!("no complete TLS ClientHello within {} s", CLIENT_HELLO_TIMEOUT.as_secs())),
    }
}

/// Whether a ClientHello's server name is the CONNECT host: without case; a trailing dot (the same name in
/// DNS) is ignored on either side, and nothing else is.
pub fn same_name(sni: &str, host: &str) -> bool {
    let strip = |n: &str| n.strip_suffix('.').unwrap_or(n).to_owned();
    strip(sni).eq_ignore_ascii_case(&strip(host))
}

/// The client side of a tunnel, counting its bytes into `paddock_gateway_egress_bytes_total` as they pass
/// (`up`: from the sandbox, `down`: to it), so that long tunnels show in the metrics while they run.
struct Counted<C> {
    inner: C,
    up: Counter,
    down: Counter,
    activity: Arc<Activity>,
}

impl<C> Counted<C> {
    fn new(gw: &Gateway, inner: C, activity: Arc<Activity>) -> Counted<C> {
        let counter = |d: &str| gw.metrics.egress_bytes.get_or_create(&DirectionLabels { direction: d.into() }).clone();
        Counted { inner, up: counter("up"), down: counter("down"), activity }
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Counted<C> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.up.inc_by(n as u64);
            self.activity.touch();
        }
        r
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Counted<C> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            self.down.inc_by(n as u64);
            self.activity.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_must_be_the_connect_host() {
        assert!(same_name("Registry.Test", "registry.test"));
        assert!(same_name("registry.test.", "registry.test"));
        assert!(!same_name("registry.test..", "registry.test"));
        assert!(!same_name("evil.test", "registry.test"));
        assert!(!same_name("registry.test.evil.test", "registry.test"));
        assert!(!same_name("", "registry.test"));
    }
}
