//! The web console (docs/console.md): sessions, live transcripts, approvals, the audit log, the Policies
//! that govern each Agent, read-only share links and comments, served as HTML by the gateway on a listener
//! of its own (`console.listen`), so that it is never on the address sandboxes reach.
//!
//! Pages are rendered on the server with `maud`, which escapes every value it is given: agent-controlled
//! text (model output, tool output, comments, names) reaches the page only as text. The little JavaScript
//! there is (`assets/console.js`) adds live updates and builds transcript entries with `textContent`. Every
//! response carries a strict Content-Security-Policy (scripts and styles from this origin only, no inline
//! script) and `Referrer-Policy: same-origin`, so that a share link's token never leaves in a Referer (and
//! the browser still sends `Origin` on the console's own forms, which `no-referrer` would make `null`).

mod actions;
mod auth;
pub mod kube_auth;
mod pages;
mod shared_view;
mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};

pub use auth::{Access, Authority, Viewer};

use crate::config::{ConsoleConfig, ConsoleRole};
use crate::gateway::{Gateway, hash_token, random_hex};

/// Open transcript streams at most: for signed-in pages, and (apart, so that link holders cannot crowd out
/// the people signed in) for share links.
const MAX_STREAMS: usize = 512;
const MAX_SHARED_STREAMS: usize = 128;
/// PBKDF2 rounds from the admin token to the console's keys: a page's CSRF token is an HMAC anyone signed in
/// can see, so a weak admin token must be slow to guess from it offline.
const KEY_ROUNDS: u32 = 100_000;
/// The shortest token a configured console user may have.
const MIN_USER_TOKEN: usize = 16;

/// One-time sign-in links not yet used, at most.
const MAX_LOGIN_CODES: usize = 16;
/// How long a one-time sign-in link works.
const LOGIN_CODE_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The console's state: the gateway it shows, who may sign in, and the key that signs their cookies.
pub struct Console {
    gw: Arc<Gateway>,
    /// `(name, sha256 of the token, role)` of each configured user.
    users: Vec<(String, String, ConsoleRole)>,
    /// Signs sign-in cookies and derives CSRF tokens. Derived from the admin credential, so that every
    /// replica with the same credential accepts the same cookies, and rotating it signs everyone out.
    key: ring::hmac::Key,
    /// Seals a Kubernetes user's token into their cookie (AES-256-GCM); derived like `key`.
    seal_key: [u8; 32],
    /// In Kubernetes: the API server says who signs in and what they may do.
    kube: Option<kube_auth::KubeAuth>,
    sign_in: Duration,
    /// Served over TLS: cookies are `Secure`.
    secure: bool,
    /// One-time sign-in links: the code's hash and when it stops working.
    login_codes: Mutex<HashMap<String, Instant>>,
    /// Failed sign-ins per client address (`None`: not known) in its current window: (start, how many).
    failures: Mutex<HashMap<Option<std::net::IpAddr>, (Instant, u32)>>,
    /// Permits for open transcript streams (signed in; share links).
    streams: Arc<tokio::sync::Semaphore>,
    shared_streams: Arc<tokio::sync::Semaphore>,
}

impl Console {
    /// The console of `gw`: its users' tokens are read now (a missing one stops the gateway from starting).
    /// `kube`: people sign in with Kubernetes tokens as well (`console.kubernetes`).
    pub fn new(
        gw: Arc<Gateway>,
        cfg: &ConsoleConfig,
        admin_token: &str,
        secure: bool,
        kube: Option<kube_auth::KubeAuth>,
    ) -> anyhow::Result<Arc<Console>> {
        let mut users = Vec::new();
        for (i, u) in cfg.users.iter().enumerate() {
            let token = u.token.read(&format!("console.users[{i}].token"))?;
            if token.chars().count() < MIN_USER_TOKEN {
                anyhow::bail!(
                    "console.users[{i}].token: `{}`'s token is shorter than {MIN_USER_TOKEN} characters",
                    u.name
                );
            }
            if hash_token(&token) == hash_token(admin_token) {
                anyhow::bail!(
                    "console.users[{i}].token: is the admin credential; give `{}` a token of their own",
                    u.name
                );
            }
            if u.role == ConsoleRole::Admin {
                anyhow::bail!("console.users[{i}].role: must be viewer or approver");
            }
            users.push((u.name.clone(), hash_token(&token), u.role));
        }
        let mut keys = [0u8; 64];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(KEY_ROUNDS).expect("rounds"),
            b"paddock console keys v1",
            admin_token.as_bytes(),
            &mut keys,
        );
        Ok(Arc::new(Console {
            gw,
            users,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &keys[..32]),
            seal_key: keys[32..].try_into().expect("32 bytes"),
            kube,
            failures: Mutex::new(HashMap::new()),
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
            shared_streams: Arc::new(tokio::sync::Semaphore::new(MAX_SHARED_STREAMS)),
            sign_in: Duration::from_secs(cfg.sign_in_hours * 3600),
            secure,
            login_codes: Mutex::new(HashMap::new()),
        }))
    }

    /// A one-time sign-in link's path and query (`/ui/login?code=…`), good for 15 minutes, that signs its
    /// first visitor in as `admin`: what `paddock up` prints.
    pub fn login_link(&self) -> String {
        let code = random_hex(24);
        let mut codes = self.login_codes.lock().expect("login codes");
        let now = Instant::now();
        codes.retain(|_, until| *until > now);
        if codes.len() >= MAX_LOGIN_CODES
            && let Some(oldest) = codes.iter().min_by_key(|(_, until)| **until).map(|(k, _)| k.clone())
        {
            codes.remove(&oldest);
        }
        codes.insert(hash_token(&code), now + LOGIN_CODE_LIFETIME);
        format!("/ui/login?code={code}")
    }

    /// Uses up a one-time sign-in code: true once, for a code [`Console::login_link`] made that has not expired.
    fn take_login_code(&self, code: &str) -> bool {
        let mut codes = self.login_codes.lock().expect("login codes");
        codes.remove(&hash_token(code)).is_some_and(|until| until > Instant::now())
    }
}

/// The console's routes, for its own listener.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(|| async { axum::response::Redirect::to("/ui/sessions") }))
        .route("/ui", get(|| async { axum::response::Redirect::to("/ui/sessions") }))
        .route("/ui/login", get(auth::login_page).post(auth::login))
        .route("/ui/logout", post(auth::logout))
        .route("/ui/sessions", get(pages::sessions))
        .route("/ui/sessions/{id}", get(pages::session))
        .route("/ui/sessions/{id}/summary", get(pages::session_summary))
        .route("/ui/sessions/{id}/decisions", get(pages::session_decisions))
        .route("/ui/sessions/{id}/events", get(actions::events))
        .route("/ui/sessions/{id}/comments", post(actions::comment))
        .route("/ui/sessions/{id}/shares", post(actions::share))
        .route("/ui/shares/{id}/revoke", post(actions::revoke_share))
        .route("/ui/approvals", get(pages::approvals))
        .route("/ui/approvals/{id}/decide", post(actions::decide))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/audit.jsonl", get(pages::audit_export))
        .route("/ui/policies", get(pages::policies))
        .route("/ui/shared/{token}", get(shared_view::page))
        .route("/ui/shared/{token}/events", get(shared_view::events))
        .route("/ui/shared/{token}/summary", get(shared_view::summary))
        .route("/ui/assets/console.js", get(|| async { asset("text/javascript", include_str!("assets/console.js")) }))
        .route("/ui/assets/console.css", get(|| async { asset("text/css", include_str!("assets/console.css")) }))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut r = Response::new(axum::body::Body::from(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

/// What every console response carries: no script or style but the console's own files, no framing, no
/// Referer to another site (share tokens are in URLs), no caching of pages that show who is signed in.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    r
}

/// The address a request came from (the connection's peer), for counting failed sign-ins per client.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, NoDelay>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, NoDelay>) -> ClientAddr {
        ClientAddr(*stream.remote_addr())
    }
}

/// The console's plain-HTTP listener: `TCP_NODELAY` on every connection.
pub struct NoDelay(tokio::net::TcpListener);

impl axum::serve::Listener for NoDelay {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        let _ = io.set_nodelay(true);
        (io, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, crate::tls::TlsListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::tls::TlsListener>) -> ClientAddr {
        ClientAddr(*stream.remote_addr())
    }
}

/// Serves the console on a bound listener until `stop` completes: over TLS when `tls` is given.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    console: Arc<Console>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Sign-in failures are counted per client address: the router is served with connection info.
    let app = router(console).into_make_service_with_connect_info::<ClientAddr>();
    match tls {
        Some(tls) => {
            let listener = crate::tls::TlsListener::new(listener, tls)?;
            axum::serve(listener, app).with_graceful_shutdown(stop).await
        }
        None => {
            // Small SSE writes must not wait on Nagle's algorithm and the client's delayed ACK.
            let listener = NoDelay(listener);
            axum::serve(listener, app).with_graceful_shutdown(stop).await
        }
    }
}
