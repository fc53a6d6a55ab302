//! `paddock up`: the gateway on 127.0.0.1:6767 (and a Unix socket for sandboxes), the Agents and Policies of
//! a repository (reloaded on change), and the local supervisor that runs Sessions in sandboxes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use paddock_gateway::config::{GatewayConfig, ProviderConfig, ProviderKind, SecretSource};
use paddock_gateway::server;
use serde_json::json;

use super::repo::RepoSource;
use super::supervisor::{StartError, StartSession, Supervisor};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// A directory or a local git repository (its committed HEAD) with Agents and Policies.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Run the governed demo with the scripted model (no API key needed), then exit.
    #[arg(long)]
    pub demo: bool,
    /// Address of the gateway.
    #[arg(long, default_value = "127.0.0.1:6767")]
    pub listen: String,
    /// Address of the web console (sign in with the admin token or the one-time link printed at start).
    #[arg(long, default_value = "127.0.0.1:6768")]
    pub console_listen: String,
    /// Where sessions, ledger and audit log live (default: the user's data directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A scripted-model file: serves the model ids `scripted*` (for demos and offline work).
    #[arg(long)]
    pub script: Option<PathBuf>,
    /// Where the credentials Agents name (`spec.credentials`) are read from, one file per key:
    /// `DIR/<secretName>/<key>` (default: `secrets` in the data directory). The gateway injects them;
    /// sandboxes never see them.
    #[arg(long)]
    pub secrets_dir: Option<PathBuf>,
    /// For tests only: the egress proxy connects to NAME at IP instead of resolving it (repeatable).
    #[arg(long = "egress-resolve", value_name = "NAME=IP", value_parser = parse_resolve)]
    pub egress_resolve: Vec<(String, std::net::IpAddr)>,
    /// A PEM file of root certificates the gateway also trusts when it connects to a brokered host (a
    /// server behind a private CA; repeatable).
    #[arg(long = "egress-trust", value_name = "PEM")]
    pub egress_trust: Vec<PathBuf>,
}

/// `NAME=IP` of `--egress-resolve`.
fn parse_resolve(s: &str) -> Result<(String, std::net::IpAddr), String> {
    let (name, ip) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=IP"))?;
    let ip = ip.parse().map_err(|e| format!("`{ip}` is not an IP address: {e}"))?;
    if name.is_empty() {
        return Err(format!("`{s}` names no host"));
    }
    Ok((name.to_ascii_lowercase(), ip))
}

/// A running local Paddock.
pub struct Local {
    pub url: String,
    /// The web console's base URL and a one-time sign-in link (full URL).
    pub console_url: String,
    pub console_login: String,
    pub admin_token: String,
    pub revision: String,
    pub agents: Vec<String>,
}

/// The gateway's providers: the real ones whose keys are in the environment (the keys stay in this
/// process), and the scripted one when a script is given.
pub fn providers(script: Option<PathBuf>) -> Vec<ProviderConfig> {
    let mut out = Vec::new();
    if std::env::var_os("ANTHROPIC_API_KEY").is_some() {
        out.push(ProviderConfig {
            name: "anthropic".into(),
            kind: ProviderKind::Anthropic,
            base_url: Some(env_or("ANTHROPIC_BASE_URL", "https://api.anthropic.com")),
            api_key: Some(SecretSource { env: Some("ANTHROPIC_API_KEY".into()), file: None }),
            script: None,
            models: vec!["claude-*".into()],
        });
    }
    if std::env::var_os("OPENAI_API_KEY").is_some() {
        out.push(ProviderConfig {
            name: "openai".into(),
            kind: ProviderKind::Openai,
            base_url: Some(env_or("OPENAI_BASE_URL", "https://api.openai.com")),
            api_key: Some(SecretSource { env: Some("OPENAI_API_KEY".into()), file: None }),
            script: None,
            models: vec!["gpt-*".into(), "o1*".into(), "o3*".into(), "o4*".into(), "codex-*".into()],
        });
    }
    // Google's key goes by either name (its SDKs read both).
    if let Some(var) = ["GEMINI_API_KEY", "GOOGLE_API_KEY"].into_iter().find(|v| std::env::var_os(v).is_some()) {
        out.push(ProviderConfig {
            name: "google".into(),
            kind: ProviderKind::Google,
            base_url: Some(env_or("GOOGLE_GEMINI_BASE_URL", "https://generativelanguage.googleapis.com")),
            api_key: Some(SecretSource { env: Some(var.into()), file: None }),
            script: None,
            models: vec!["gemini-*".into()],
        });
    }
    if let Some(s) = script {
        out.push(ProviderConfig::scripted(s, &["scripted*"]));
    }
    out
}

/// A provider's address: the user's override (a corporate proxy, say), else the provider's own.
fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_owned())
}

/// Starts everything and returns once it serves; the servers run in the background of the runtime.
pub async fn start(args: &Args, quiet: bool) -> anyhow::Result<Local> {
    let data_dir = args.data_dir.clone().unwrap_or_else(server::default_data_dir);
    std::fs::create_dir_all(data_dir.join("run")).with_context(|| format!("cannot create `{}`", data_dir.display()))?;
    let source = RepoSource::new(&args.repo, &data_dir)?;
    let first = source.load()?;
    let mut cfg = GatewayConfig {
        listen: args.listen.clone(),
        data_dir: Some(data_dir.clone()),
        providers: providers(args.script.clone()),
        ..GatewayConfig::default()
    };
    cfg.egress.secrets_dir = Some(args.secrets_dir.clone().unwrap_or_else(|| data_dir.join("secrets")));
    cfg.egress.resolve = args.egress_resolve.iter().cloned().collect();
    cfg.egress.trust = args.egress_trust.clone();
    // The gateway runs on the user's machine: an address entry for `127.0.0.1` (a local database) is real.
    cfg.egress.allow_loopback = true;
    cfg.console = Some(paddock_gateway::config::ConsoleConfig {
        listen: args.console_listen.clone(),
        users: Vec::new(),
        sign_in_hours: 12,
        kubernetes: false,
    });
    cfg.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    let gw = server::build(&cfg).await?;
    gw.set_policies(first.set);
    let admin_token = server::admin_token(&cfg, &data_dir)?;
    let socket = data_dir.join("run/gateway.sock");
    let paddock_bin = std::env::current_exe().context("cannot find the paddock executable")?;
    let mut sup = Supervisor::new(gw.clone(), data_dir.clone(), socket.clone(), paddock_bin);
    for (var, bin) in [("PADDOCK_CLAUDE_BIN", "claude"), ("PADDOCK_CODEX_BIN", "codex")] {
        if let Some(p) = std::env::var_os(var).map(PathBuf::from).or_else(|| which(bin))
            && let Ok(real) = std::fs::canonicalize(&p)
        {
            // The package directory of an npm CLI holds its code; show it read-only inside.
            if let Some(pkg) = real.ancestors().find(|a| a.parent().is_some_and(|p| p.ends_with("node_modules"))) {
                sup.extra_read_only.push(pkg.to_path_buf());
            }
            sup.harness_env.push((var.into(), real.to_string_lossy().into_owned()));
        }
    }
    let sup = Arc::new(sup);
    let interrupted = sup.recover().await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (is another paddock up running?)", args.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = server::with_egress_proxy(gw.clone(), server::routes(gw.clone()).merge(routes(sup.clone())));
    tokio::spawn(server::serve_on(listener, app.clone(), server::shutdown()));
    let unix_app = app;
    let sock = socket.clone();
    tokio::spawn(async move {
        if let Err(e) = server::serve_unix(&sock, unix_app, server::shutdown()).await {
            tracing::error!(error = %e, "the sandbox socket stopped");
        }
    });
    let (console_url, console) = server::start_console(&gw, &cfg, server::shutdown())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the console is not configured"))?;
    let console_login = format!("{console_url}{}", console.login_link());
    if !quiet {
        println!("paddock: gateway on {url} (sandboxes reach it through {})", socket.display());
        println!("paddock: console on {console_url}; sign in with the admin token or, once, {console_login}");
        println!("paddock: {} at revision {}: agents {}", source.path.display(), first.id, first.agents.join(", "));
        println!("paddock: data in {} (admin token in admin-token)", data_dir.display());
        if let Some(dir) = &cfg.egress.secrets_dir {
            // Where credentials come from, never what they are.
            println!("paddock: brokered credentials (spec.credentials) from {}", dir.display());
        }
        for id in &interrupted {
            println!("paddock: session {id} was running when paddock up stopped; marked Failed");
        }
    }
    let revision = first.id.clone();
    tokio::spawn(watch(source, gw, first.id, quiet));
    Ok(Local { url, console_url, console_login, admin_token, revision, agents: first.agents })
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(bin)).find(|p| p.is_file())
}

/// Reloads on change; a broken revision is refused with its errors and the last good one stays.
async fn watch(source: RepoSource, gw: Arc<paddock_gateway::Gateway>, mut live: String, quiet: bool) {
    let mut seen = source.fingerprint();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = source.fingerprint();
        if now == seen {
            continue;
        }
        seen = now;
        match source.load() {
            Ok(rev) if rev.id == live => {}
            Ok(rev) => {
                if !quiet {
                    println!("paddock: loaded revision {} (agents {})", rev.id, rev.agents.join(", "));
                }
                live = rev.id.clone();
                gw.set_policies(rev.set);
            }
            Err(e) => eprintln!("paddock: refused a new revision; {live} stays live:\n{e:#}"),
        }
    }
}

fn routes(sup: Arc<Supervisor>) -> axum::Router {
    axum::Router::new()
        .route("/v1/local/sessions", post(start_session))
        .route("/v1/local/sessions/{id}/stop", post(stop_session))
        .route("/v1/local/sessions/{id}/diff", get(session_diff))
        .route("/v1/local/sessions/{id}/apply", post(session_apply))
        .with_state(sup)
}

/// The refusal for a caller without the admin credential, if it lacks it.
fn admin_only(sup: &Supervisor, headers: &HeaderMap) -> Option<Response> {
    let token = paddock_gateway::proxy::bearer(headers).unwrap_or("");
    (!sup.gw.is_admin(token)).then(|| {
        (StatusCode::FORBIDDEN, Json(json!({"error": {"message": "the admin credential is required"}}))).into_response()
    })
}

async fn start_session(State(sup): State<Arc<Supervisor>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(refused) = admin_only(&sup, &headers) {
        return refused;
    }
    let req: StartSession = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(json!({"error": {"message": e.to_string()}}))).into_response(),
    };
    match sup.start(req).await {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e @ StartError::Invalid(_)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": {"message": e.to_string()}}))).into_response()
        }
        Err(e) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": {"message": format!("{e:#}")}}))).into_response()
        }
    }
}

async fn stop_session(State(sup): State<Arc<Supervisor>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(refused) = admin_only(&sup, &headers) {
        return refused;
    }
    match sup.stop(&id).await {
        Ok(true) => Json(json!({"id": id, "stopped": true})).into_response(),
        Ok(false) => {
            (StatusCode::CONFLICT, Json(json!({"error": {"message": format!("session `{id}` is not running")}})))
                .into_response()
        }
        Err(e) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": {"message": format!("{e:#}")}}))).into_response()
        }
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": {"message": message}}))).into_response()
}

/// The session's directory for the admin, once its sandbox has stopped (its copy is stable then); else the refusal.
fn ended_session_dir(sup: &Supervisor, headers: &HeaderMap, id: &str) -> Result<PathBuf, Box<Response>> {
    if let Some(refused) = admin_only(sup, headers) {
        return Err(Box::new(refused));
    }
    if sup.gw.session(id).is_none() {
        return Err(Box::new(error(StatusCode::NOT_FOUND, format!("no session `{id}`"))));
    }
    if sup.is_running(id) {
        return Err(Box::new(error(
            StatusCode::CONFLICT,
            format!("session `{id}` is still running; wait for it to end or stop it (`paddock session stop {id}`)"),
        )));
    }
    Ok(sup.data_dir.join("sessions").join(id))
}

/// `GET /v1/local/sessions/{id}/diff`: what the agent changed in its copy of the workspace, as a unified diff
/// against the user's directory, without running git on the copy.
async fn session_diff(State(sup): State<Arc<Supervisor>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let dir = match ended_session_dir(&sup, &headers, &id) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let answer = tokio::task::spawn_blocking(move || {
        let plan = super::apply::plan(&dir)?;
        let diff = super::apply::unified_diff(&plan);
        anyhow::Ok(super::apply::to_json(&id, &plan, Some(diff)))
    })
    .await;
    match answer {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /v1/local/sessions/{id}/apply`: brings the agent's changes back to the user's directory (files only;
/// never git metadata, symlinks or special files); refused whole on any conflict.
async fn session_apply(State(sup): State<Arc<Supervisor>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let dir = match ended_session_dir(&sup, &headers, &id) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let answer = tokio::task::spawn_blocking(move || {
        let plan = super::apply::plan(&dir)?;
        let done = super::apply::apply(&dir, &plan)?;
        let mut v = super::apply::to_json(&id, &plan, None);
        v["written"] = json!(done);
        Ok::<_, super::apply::ApplyError>(v)
    })
    .await;
    match answer {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e @ super::apply::ApplyError::Conflict(_))) => error(StatusCode::CONFLICT, e.to_string()),
        Ok(Err(e @ super::apply::ApplyError::Refused(_))) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::logging::init(false);
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async {
        if args.demo {
            return super::demo::run(&args).await;
        }
        let _local = start(&args, false).await?;
        println!("paddock: ready. Try `paddock session run AGENT \"task\" --follow`. Ctrl-C stops.");
        server::shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
