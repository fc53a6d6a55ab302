//! Signing in to the console and who is signed in: a signed cookie names the user; their role is looked up
//! again on every request, so that a user taken out of the configuration (or given a new token) is signed
//! out at once. In Kubernetes the cookie carries the person's own token, sealed (AES-GCM) with a key only
//! the gateway has, and the API server is asked again who it is (see [`super::kube_auth`]). State changes
//! need the CSRF token of the sign-in (a form field or `X-CSRF-Token`) and, when the browser sends one, an
//! `Origin` of the console's own.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;

use super::kube_auth::KubeUser;
use super::{Console, view};
use crate::config::ConsoleRole;
use crate::gateway::{hash_token, random_hex, unix_now};

/// The sign-in cookie's name over plain HTTP (loopback); over TLS it is `__Host-` prefixed, so that no
/// other host (a sibling subdomain) can set it.
const COOKIE: &str = "paddock_console";
/// Failed sign-ins the console answers in a [`FAILURE_WINDOW`] before it answers 429: bounds online guessing
/// and the TokenReviews an anonymous caller can make the gateway send.
const MAX_FAILURES: u32 = 100;
const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// What a sign-in cookie says, signed as JSON (so that no field can spill into another).
#[derive(Clone, Debug, serde::Serialize, Deserialize)]
pub(super) struct SignIn {
    pub kind: SignInKind,
    pub name: String,
    /// A configured user's token fingerprint: a new token signs the old sign-ins out.
    #[serde(default)]
    pub fingerprint: String,
    /// A Kubernetes user's token, sealed.
    #[serde(default)]
    pub sealed: String,
    #[serde(default)]
    pub expires: i64,
    #[serde(default)]
    pub nonce: String,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum SignInKind {
    Admin,
    User,
    Kube,
}

/// What the person signed in may do, and on whose word.
#[derive(Clone, Debug)]
pub enum Authority {
    /// The admin credential or a configured user: the same everywhere.
    Role(ConsoleRole),
    /// A Kubernetes user: per namespace, as their RBAC says; `token` acts for them.
    Kube { user: KubeUser, token: String },
}

/// The person signed in.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub name: String,
    pub authority: Authority,
    /// The token a state change must carry (see [`Viewer::check`]).
    pub csrf: String,
}

/// What a page or an action needs, in the namespace of the session it is about.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Access {
    /// See sessions, transcripts, asks, audit rows; comment; share. Kubernetes: `get sessions`.
    View,
    /// Approve or deny asks. Kubernetes: `create approvals`.
    Decide,
}

impl Viewer {
    /// The role to show beside the name.
    pub fn role_name(&self) -> &'static str {
        match &self.authority {
            Authority::Role(ConsoleRole::Viewer) => "viewer",
            Authority::Role(ConsoleRole::Approver) => "approver",
            Authority::Role(ConsoleRole::Admin) => "admin",
            Authority::Kube { .. } => "Kubernetes RBAC",
        }
    }

    /// A state change is this viewer's own: it carries their CSRF token (a form field `given` or the
    /// `X-CSRF-Token` header), and an `Origin` header, when there is one, names the host it was sent to.
    pub fn check(&self, headers: &HeaderMap, given: Option<&str>) -> Result<(), Refused> {
        if !same_origin(headers) {
            return Err(Refused("This request came from another site."));
        }
        let header = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        match given.or(header) {
            // Compared as digests, so the comparison's time says nothing about the token.
            Some(t) if hash_token(t) == hash_token(&self.csrf) => Ok(()),
            _ => Err(Refused("This form has expired or did not come from the console; reload the page and try again.")),
        }
    }
}

/// A state change refused by [`Viewer::check`]: a 403 page saying why.
#[derive(Debug)]
pub struct Refused(&'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        view::error_page(StatusCode::FORBIDDEN, self.0)
    }
}

/// `Origin`, when the browser sends it, is `http(s)://<Host>`.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin = origin.to_str().unwrap_or("");
    !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}"))
}

impl Console {
    /// Whether `v` may do `access` in `namespace`.
    pub async fn may(&self, v: &Viewer, access: Access, namespace: &str) -> bool {
        match (&v.authority, access) {
            (Authority::Role(_), Access::View) => true,
            (Authority::Role(r), Access::Decide) => *r >= ConsoleRole::Approver,
            (Authority::Kube { user, .. }, access) => {
                let Some(kube) = &self.kube else { return false };
                match access {
                    Access::View => kube.allows(user, "get", "sessions", namespace).await,
                    // Deciding creates an Approval naming the Session, found by listing them.
                    Access::Decide => {
                        kube.allows(user, "create", "approvals", namespace).await
                            && kube.allows(user, "list", "sessions", namespace).await
                    }
                }
            }
        }
    }

    /// The role of a configured user, as configured now: `None` for a name no longer there or a token
    /// changed since (`fingerprint`).
    pub(super) fn role_of(&self, name: &str, fingerprint: &str) -> Option<ConsoleRole> {
        self.users.iter().find(|(n, h, _)| n == name && h[..16] == *fingerprint).map(|(_, _, r)| *r)
    }

    /// Who a token signs in as: the admin credential, a configured user's token, or (in Kubernetes) a token
    /// the API server authenticates. `Err`: a status and what the sign-in page says.
    async fn sign_in_as(
        &self,
        token: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<Option<SignIn>, (StatusCode, &'static str)> {
        let blank = |kind, name: &str, fingerprint: &str| SignIn {
            kind,
            name: name.to_owned(),
            fingerprint: fingerprint.to_owned(),
            sealed: String::new(),
            expires: 0,
            nonce: String::new(),
        };
        if self.gw.is_admin(token) {
            return Ok(Some(blank(SignInKind::Admin, "admin", "")));
        }
        let h = hash_token(token);
        if let Some((n, uh, _)) = self.users.iter().find(|(_, uh, _)| *uh == h) {
            return Ok(Some(blank(SignInKind::User, n, &uh[..16])));
        }
        let Some(kube) = &self.kube else { return Ok(None) };
        if !self.failures_allow(client) {
            return Err((StatusCode::TOO_MANY_REQUESTS, "Too many failed sign-ins; wait a few seconds and try again."));
        }
        let user = match kube.review(token).await {
            Ok(Some(u)) => u,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "the console could not review a token");
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The API server cannot be asked who you are; try again.",
                ));
            }
        };
        // A name is what the console records (comments, share links, decisions): it must be one line, and
        // never the admin's or a configured user's, so that nobody is taken for somebody else.
        if user.username.chars().any(char::is_control) || user.username.len() > 512 {
            return Err((
                StatusCode::FORBIDDEN,
                "Your Kubernetes user name cannot be shown safely; the console refuses it.",
            ));
        }
        if user.username == "admin" || self.users.iter().any(|(n, _, _)| *n == user.username) {
            return Err((
                StatusCode::FORBIDDEN,
                "Your Kubernetes user name is also a console user's here; the console cannot tell you apart.",
            ));
        }
        let mut signed = blank(SignInKind::Kube, &user.username, "");
        signed.sealed = self.seal(token);
        Ok(Some(signed))
    }

    /// Counts one failed sign-in from `client`.
    fn note_failure(&self, client: Option<std::net::IpAddr>) {
        let mut map = self.failures.lock().expect("failures");
        if map.len() >= 4096 {
            map.retain(|_, (start, _)| start.elapsed() <= FAILURE_WINDOW);
            if map.len() >= 4096 {
                map.clear();
            }
        }
        let f = map.entry(client).or_insert((std::time::Instant::now(), 0));
        if f.0.elapsed() > FAILURE_WINDOW {
            *f = (std::time::Instant::now(), 0);
        }
        f.1 += 1;
    }

    /// Whether `client` is under [`MAX_FAILURES`] in its current window (per address, so that one client
    /// guessing does not lock everybody else out).
    fn failures_allow(&self, client: Option<std::net::IpAddr>) -> bool {
        let map = self.failures.lock().expect("failures");
        map.get(&client).is_none_or(|f| f.0.elapsed() > FAILURE_WINDOW || f.1 < MAX_FAILURES)
    }

    /// The sign-in cookie's name: `__Host-` prefixed over TLS.
    fn cookie_name(&self) -> &'static str {
        if self.secure { "__Host-paddock_console" } else { COOKIE }
    }

    fn tag(&self, what: &str) -> String {
        B64.encode(ring::hmac::sign(&self.key, what.as_bytes()).as_ref())
    }

    /// A Kubernetes token sealed for the cookie: nonce and AES-256-GCM ciphertext.
    fn seal(&self, token: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        let key = ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &self.seal_key).expect("key"),
        );
        let mut data = token.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::empty(),
            &mut data,
        )
        .expect("seal");
        let mut out = nonce.to_vec();
        out.extend(data);
        B64.encode(out)
    }

    fn unseal(&self, sealed: &str) -> Option<String> {
        let raw = B64.decode(sealed).ok()?;
        if raw.len() < 12 + 16 {
            return None;
        }
        let (nonce, data) = raw.split_at(12);
        let key =
            ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &self.seal_key).ok()?);
        let mut data = data.to_vec();
        let plain = key
            .open_in_place(
                ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?,
                ring::aead::Aad::empty(),
                &mut data,
            )
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }

    /// A signed cookie for a sign-in, lasting the configured sign-in time.
    fn cookie_for(&self, mut signed: SignIn) -> HeaderValue {
        signed.expires = unix_now() + self.sign_in.as_secs() as i64;
        signed.nonce = random_hex(16);
        let payload = serde_json::to_string(&signed).expect("json");
        let value = format!("{}.{}", B64.encode(payload.as_bytes()), self.tag(&payload));
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.cookie_name(),
            self.sign_in.as_secs()
        ))
        .expect("cookie is ASCII")
    }

    /// The sign-in a request's cookie carries, if its signature holds and it has not expired.
    fn cookie_sign_in(&self, headers: &HeaderMap) -> Option<SignIn> {
        let prefix = format!("{}=", self.cookie_name());
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(&prefix).map(str::to_owned))?;
        let (payload, tag) = value.split_once('.')?;
        let payload = B64.decode(payload).ok()?;
        let tag = B64.decode(tag).ok()?;
        ring::hmac::verify(&self.key, &payload, &tag).ok()?;
        let signed: SignIn = serde_json::from_slice(&payload).ok()?;
        (signed.expires > unix_now()).then_some(signed)
    }

    /// The viewer a request's cookie names, if its signature holds, it has not expired and its user is still
    /// configured with the same token (or, in Kubernetes, the API server still authenticates their token).
    pub(super) async fn viewer(&self, headers: &HeaderMap) -> Option<Viewer> {
        let signed = self.cookie_sign_in(headers)?;
        let csrf = self.tag(&format!("csrf\n{}", signed.nonce));
        let authority = match signed.kind {
            SignInKind::Admin => Authority::Role(ConsoleRole::Admin),
            SignInKind::User => Authority::Role(self.role_of(&signed.name, &signed.fingerprint)?),
            SignInKind::Kube => {
                let token = self.unseal(&signed.sealed)?;
                let user = self.kube.as_ref()?.review(&token).await.ok()??;
                if user.username != signed.name {
                    return None;
                }
                Authority::Kube { user, token }
            }
        };
        Some(Viewer { name: signed.name, authority, csrf })
    }
}

impl FromRequestParts<Arc<Console>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Arc<Console>) -> Result<Viewer, Response> {
        if let Some(v) = console.viewer(&parts.headers).await {
            return Ok(v);
        }
        // A page asks the browser to sign in first; anything else (a script's request) is refused.
        let wants_page = parts.method == axum::http::Method::GET
            && parts.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
        if wants_page {
            let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/ui/sessions");
            let to = format!("/ui/login?next={}", view::query_escape(next));
            return Err(Redirect::to(&to).into_response());
        }
        Err(view::error_page(StatusCode::UNAUTHORIZED, "Sign in to the console first."))
    }
}

/// Where to go after signing in: a console page, never another site (`//host`, `/\host`).
fn safe_next(next: Option<&str>) -> String {
    console_path(next, "/ui/sessions")
}

/// A path of the console's own to send the browser to after a form, else `default`: under `/ui/`, visible
/// ASCII only (a control character would make the `Location` header fail), never `//host` or `\`.
pub(super) fn console_path(path: Option<&str>, default: &str) -> String {
    match path {
        Some(p)
            if p.starts_with("/ui/")
                && !p.contains('\\')
                && p.bytes().all(|b| b.is_ascii_graphic())
                && p.len() <= 2048 =>
        {
            p.to_owned()
        }
        _ => default.to_owned(),
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    code: Option<String>,
    next: Option<String>,
}

/// `GET /ui/login`: the sign-in form, or a one-time link's code signing in at once.
pub async fn login_page(State(console): State<Arc<Console>>, Query(q): Query<LoginQuery>) -> Response {
    if let Some(code) = q.code.as_deref() {
        if console.take_login_code(code) {
            tracing::info!(user = "admin", "signed in to the console with a one-time link");
            let admin = SignIn {
                kind: SignInKind::Admin,
                name: "admin".into(),
                fingerprint: String::new(),
                sealed: String::new(),
                expires: 0,
                nonce: String::new(),
            };
            return signed_in(&console, admin, "/ui/sessions");
        }
        return view::login_form(
            StatusCode::UNAUTHORIZED,
            Some("This sign-in link has been used or has expired. Sign in with the admin token."),
            "/ui/sessions",
        );
    }
    view::login_form(StatusCode::OK, None, &safe_next(q.next.as_deref()))
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /ui/login`: a token in, a cookie out.
pub async fn login(
    State(console): State<Arc<Console>>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    // The peer's address when the console is served with it (`serve_on`); a router served otherwise counts
    // everyone together.
    let client = extensions.get::<axum::extract::ConnectInfo<super::ClientAddr>>().map(|c| c.0.0.ip());
    let next = safe_next(form.next.as_deref());
    if !same_origin(&headers) {
        return view::error_page(StatusCode::FORBIDDEN, "This request came from another site.");
    }
    let token = form.token.trim();
    // A session token, live or ended, is refused before anything else is asked: it is never sent to the API
    // server.
    let ended_session = matches!(
        console.gw.store.session_where(crate::store::SessionKey::TokenHash, &hash_token(token)).await,
        Ok(Some(_))
    );
    if ended_session || console.gw.session_for_token(token).await.is_some() {
        tracing::warn!("a session token was offered to the console's sign-in and refused");
        let message = "A session token cannot sign in to the console. Use your own token or the admin token.";
        return view::login_form(StatusCode::UNAUTHORIZED, Some(message), &next);
    }
    match console.sign_in_as(token, client).await {
        Ok(Some(signed)) => {
            tracing::info!(user = %signed.name, "signed in to the console");
            signed_in(&console, signed, &next)
        }
        Ok(None) => {
            console.note_failure(client);
            let message = if console.kube.is_some() {
                "The API server does not accept that token, and it is not the admin token."
            } else {
                "That token is not the admin token or a console user's."
            };
            view::login_form(StatusCode::UNAUTHORIZED, Some(message), &next)
        }
        Err((status, message)) => {
            console.note_failure(client);
            view::login_form(status, Some(message), &next)
        }
    }
}

fn signed_in(console: &Console, signed: SignIn, next: &str) -> Response {
    let mut r = Redirect::to(next).into_response();
    r.headers_mut().insert(header::SET_COOKIE, console.cookie_for(signed));
    r
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: Option<String>,
}

/// `POST /ui/logout`: the cookie is cleared.
pub async fn logout(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    if let Err(r) = viewer.check(&headers, form.csrf.as_deref()) {
        return r.into_response();
    }
    let mut r = Redirect::to("/ui/login").into_response();
    let secure = if console.secure { "; Secure" } else { "" };
    let clear = format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}", console.cookie_name());
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&clear).expect("ASCII"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_sign_in_only_console_pages() {
        assert_eq!(safe_next(Some("/ui/audit?session=s-1")), "/ui/audit?session=s-1");
        for hostile in
            ["//evil.example/ui/", "https://evil.example/", "/ui/\\evil", "/v1/audit", "", "/ui/a\nb", "/ui/a b"]
        {
            assert_eq!(safe_next(Some(hostile)), "/ui/sessions", "{hostile}");
        }
    }

    #[test]
    fn origin_must_be_the_console() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:6768"));
        assert!(same_origin(&h), "no Origin: a same-origin form in an older browser");
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:6768"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }
}
