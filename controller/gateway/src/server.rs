//! Assembling and serving the gateway: configuration, the policy set from a directory, the admin
//! credential, the routes, and the egress proxy on the same listener.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use paddock_gitops::source::load_dir;
use paddock_gitops::validate::{Object, validate_files};
use paddock_policy::PolicySet;
use sha2::{Digest, Sha256};

use crate::config::{GatewayConfig, TlsConfig};
use crate::gateway::{Gateway, random_hex};
use crate::store::{Store, StoreOptions};
use crate::upstream::Providers;
use crate::{api, egress, proxy};

/// The gateway's service: the egress proxy in front of [`routes`] (see [`with_egress_proxy`]).
pub fn router(gw: Arc<Gateway>) -> Router {
    with_egress_proxy(gw.clone(), routes(gw))
}

/// `routes` behind the egress proxy: proxy requests (`CONNECT`, absolute-form URIs) go to the proxy before any
/// routing, so that they can never reach a route (`GET http://x/v1/audit` is a request to `x`); everything else
/// goes to `routes`. For a listener that serves more routes than the gateway's (local mode's supervisor).
pub fn with_egress_proxy(gw: Arc<Gateway>, routes: Router) -> Router {
    let dispatch = tower::service_fn(move |req: axum::extract::Request| {
        let (gw, routes) = (gw.clone(), routes.clone());
        async move {
            if egress::is_proxy_request(&req) {
                Ok::<_, std::convert::Infallible>(egress::handle(gw, req).await)
            } else {
                tower::ServiceExt::oneshot(routes, req).await
            }
        }
    });
    Router::new().fallback_service(dispatch)
}

/// The routes. `/llm/*` take a session token; `/v1/*` a session token or the admin credential.
pub fn routes(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/llm/anthropic/v1/messages", post(proxy::anthropic))
        .route("/llm/anthropic/v1/messages/count_tokens", post(proxy::count_tokens))
        .route("/llm/openai/v1/chat/completions", post(proxy::chat))
        .route("/llm/openai/v1/responses", post(proxy::responses))
        .route("/llm/google/{version}/models/{target}", post(proxy::gemini))
        .route("/v1/sessions", post(api::create_session).get(api::list_sessions))
        .route("/v1/sessions/{id}", get(api::get_session))
        .route("/v1/sessions/{id}/end", post(api::end_session))
        .route("/v1/sessions/{id}/decide", post(api::decide))
        .route("/v1/sessions/{id}/approvals/{approval}", get(api::session_approval))
        .route("/v1/sessions/{id}/events", post(api::post_events).get(api::get_events))
        .route("/v1/sessions/{id}/children", post(api::create_child))
        .route("/v1/approvals", get(api::list_approvals))
        .route("/v1/approvals/{id}/approve", post(api::approve))
        .route("/v1/approvals/{id}/deny", post(api::deny))
        .route("/v1/audit", get(api::audit))
        .route("/v1/policies", axum::routing::put(api::put_policies).get(api::get_policies))
        .route("/v1/policies/decisions", get(api::policy_decisions))
        .route("/v1/replicas", get(api::replicas))
        .route("/v1/egress/ca.pem", get(crate::broker::ca_pem))
        .route(
            "/mcp/{server}",
            axum::routing::any(crate::mcp::endpoint).with_state((gw.clone(), crate::mcp::McpEndpoints::new(gw.clone()))),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                // At debug: an info span per request (created, formatted and entered by the log's subscriber)
                // was 2 % of a proxied request's CPU. At the default level a request's own log lines (and
                // tower_http's line for a 5xx) no longer carry its method and path; the LLM proxy's and the
                // egress proxy's spans still name the session.
                .make_span_with(|req: &axum::http::Request<_>| {
                    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
                })
                .on_request(())
                .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG)),
        )
        .with_state(gw)
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], gw.metrics.encode())
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    if gw.store.ping().await {
        let replica = gw.shared().map(|s| format!(" (replica {})", s.replica)).unwrap_or_default();
        (StatusCode::OK, format!("ready: revision {}{replica}\n", gw.policies().revision))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the database is unreachable\n".to_owned())
    }
}

/// Loads and validates every manifest under `dir` and compiles the policy set. Any validation error
/// refuses the whole revision; the message is the validator's report.
pub fn load_policy_set(dir: &Path) -> anyhow::Result<PolicySet> {
    let files = load_dir(dir).with_context(|| format!("cannot read `{}`", dir.display()))?;
    let report = validate_files(&files);
    if !report.is_ok() {
        anyhow::bail!("`{}` does not validate:\n{}", dir.display(), report.render());
    }
    let mut hash = Sha256::new();
    for f in &files {
        hash.update(f.path.as_bytes());
        hash.update([0]);
        if let paddock_gitops::source::Content::Bytes(b) = &f.content {
            hash.update(b);
        }
    }
    let revision = format!("sha256:{}", &crate::gateway::hex_of(&hash.finalize())[..12]);
    policy_set(&revision, &report.objects)
}

/// Compiles the Agents and Policies of a validated revision.
pub fn policy_set(revision: &str, objects: &[paddock_gitops::validate::LoadedObject]) -> anyhow::Result<PolicySet> {
    let mut agents = Vec::new();
    let mut policies = Vec::new();
    for o in objects {
        match &o.object {
            Object::Agent(a) => {
                let mut a = a.clone();
                a.metadata.namespace = Some(crate::policies::namespace_of(&o.namespace));
                agents.push(a);
            }
            Object::Policy(p) => {
                let mut p = p.clone();
                p.metadata.namespace = Some(crate::policies::namespace_of(&o.namespace));
                policies.push(p);
            }
            _ => {}
        }
    }
    let (set, errors) = crate::policies::build_set(revision, &agents, &policies);
    for e in errors {
        tracing::warn!(kind = e.kind, namespace = %e.namespace, name = %e.name, "left out: {}", e.message);
    }
    Ok(set)
}

/// The user's data directory for Paddock: `$PADDOCK_DATA_DIR`, else `$XDG_DATA_HOME/paddock`, else
/// `~/.local/share/paddock`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PADDOCK_DATA_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("paddock");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/paddock")
}

/// The admin credential: from the configuration, or generated once into the data directory (mode 0600).
pub fn admin_token(cfg: &GatewayConfig, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(src) = &cfg.admin_token {
        return src.read("adminToken");
    }
    let path = data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_owned()),
        _ => {}
    }
    let token = format!("pdk_admin_{}", random_hex(24));
    write_private(&path, &token)?;
    tracing::info!(path = %path.display(), "generated the admin token");
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Builds a gateway from its configuration.
pub async fn build(cfg: &GatewayConfig) -> anyhow::Result<Arc<Gateway>> {
    let data_dir = cfg.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create `{}`", data_dir.display()))?;
    let url = cfg.database.clone().unwrap_or_else(|| format!("sqlite://{}", data_dir.join("gateway.db").display()));
    let store = Store::open_with(&url, StoreOptions { fsync: cfg.fsync })
        .await
        .with_context(|| format!("cannot open the database `{}`", redact_url(&url)))?;
    let policies = match &cfg.repo {
        Some(dir) => load_policy_set(dir)?,
        None => PolicySet::default(),
    };
    let providers = Providers::from_config(cfg)?;
    let admin = admin_token(cfg, &data_dir)?;
    let broker = crate::broker::Broker::new(cfg.egress.clone(), &data_dir)?;
    let gw = Gateway::with_broker(cfg.limits.clone(), store, providers, policies, &admin, broker).await?;
    if let Some(t) = &cfg.telemetry {
        gw.trace_with(crate::telemetry::Telemetry::start(t)?);
    }
    Ok(gw)
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Serves until ctrl-c or SIGTERM: over TLS when `tls` is set (see [`crate::tls`]), else plain HTTP.
pub async fn serve(gw: Arc<Gateway>, listen: &str, tls: Option<&TlsConfig>) -> anyhow::Result<()> {
    // The certificate first: a gateway that cannot serve its TLS must not start (and never falls back to
    // plain HTTP).
    let tls = tls.map(crate::tls::server_config).transpose()?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %listener.local_addr()?, scheme, revision = %gw.policies().revision, "gateway listening");
    match tls {
        Some(tls) => serve_tls_on(listener, tls, router(gw), shutdown()).await?,
        None => serve_on(listener, router(gw), shutdown()).await?,
    }
    Ok(())
}

/// Starts the web console on its own listener when `cfg.console` is set (over TLS when `cfg.tls` is): returns
/// its base URL and state, the server running in the background until `stop` completes.
pub async fn start_console(
    gw: &Arc<Gateway>,
    cfg: &GatewayConfig,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Option<(String, Arc<crate::console::Console>)>> {
    let Some(c) = &cfg.console else { return Ok(None) };
    let data_dir = cfg.data_dir.clone().unwrap_or_else(default_data_dir);
    let admin = admin_token(cfg, &data_dir)?;
    let tls = cfg.tls.as_ref().map(crate::tls::server_config).transpose()?;
    let kube = match c.kubernetes {
        true => Some(crate::console::kube_auth::KubeAuth::from_environment().await?),
        false => None,
    };
    let console = crate::console::Console::new(gw.clone(), c, &admin, tls.is_some(), kube)?;
    let listener = tokio::net::TcpListener::bind(&c.listen)
        .await
        .with_context(|| format!("console: cannot listen on {}", c.listen))?;
    let url = format!("{}://{}", if tls.is_some() { "https" } else { "http" }, listener.local_addr()?);
    tracing::info!(address = %url, "console listening");
    let task = crate::console::serve_on(listener, console.clone(), tls, stop);
    tokio::spawn(async move {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "the console stopped");
        }
    });
    Ok(Some((url, console)))
}

/// Serves a router on a bound listener until `stop` completes.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Small SSE writes (and a response head before its first event) must not wait on Nagle's algorithm and
    // the client's delayed ACK: that costs 40 ms per stream.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).with_graceful_shutdown(stop).await
}

/// Serves a router over TLS on a bound listener until `stop` completes (see [`crate::tls::TlsListener`]).
pub async fn serve_tls_on(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = crate::tls::TlsListener::new(listener, tls)?;
    axum::serve(listener, app).with_graceful_shutdown(stop).await
}

/// Builds a gateway from `cfg` and serves it on an ephemeral loopback port, for tests and benchmarks: returns
/// the gateway, its base URL (`https://` when `cfg.tls` is set) and the serving task (abort it to stop).
pub async fn serve_loopback(
    cfg: &GatewayConfig,
) -> anyhow::Result<(Arc<Gateway>, String, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let tls = cfg.tls.as_ref().map(crate::tls::server_config).transpose()?;
    let gw = build(cfg).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = router(gw.clone());
    let (url, task) = match tls {
        Some(tls) => {
            (format!("https://{addr}"), tokio::spawn(serve_tls_on(listener, tls, app, std::future::pending())))
        }
        None => (format!("http://{addr}"), tokio::spawn(serve_on(listener, app, std::future::pending()))),
    };
    Ok((gw, url, task))
}

/// Serves a router on a Unix socket (the only way out of a local sandbox) until `stop` completes. The socket
/// is made reachable by its owner only; sandboxes get it bind-mounted.
pub async fn serve_unix(
    path: &Path,
    app: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener =
        tokio::net::UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    axum::serve(listener, app).with_graceful_shutdown(stop).await?;
    Ok(())
}

pub async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}
