//! `paddock gateway`: the LLM proxy and admission API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use paddock_gateway::GatewayConfig;

#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (YAML): providers, limits, database. Flags override it.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    listen: Option<String>,
    /// A directory of Agent and Policy manifests to govern with.
    #[arg(long)]
    repo: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://…`.
    #[arg(long, env = "PADDOCK_DATABASE_URL", hide_env_values = true)]
    database: Option<String>,
    /// Sync every commit to disk before answering (survives a power loss, not only a crash).
    #[arg(long)]
    fsync: bool,
    /// Where the database and the generated admin token live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Serve TLS with this certificate chain (PEM; with --tls-key-file). Overrides `tls` in the file. Read
    /// again when it changes on disk.
    #[arg(long, requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::logging::init(args.log_json);
    let mut cfg = match &args.config {
        Some(p) => GatewayConfig::load(p)?,
        None => GatewayConfig::default(),
    };
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if args.repo.is_some() {
        cfg.repo = args.repo;
    }
    if args.database.is_some() {
        cfg.database = args.database;
    }
    if args.data_dir.is_some() {
        cfg.data_dir = args.data_dir;
    }
    if let (Some(cert_file), Some(key_file)) = (args.tls_cert_file, args.tls_key_file) {
        cfg.tls = Some(paddock_gateway::config::TlsConfig { cert_file, key_file });
    }
    cfg.fsync |= args.fsync;
    cfg.telemetry = paddock_gateway::telemetry::switched(cfg.telemetry.take(), |k| std::env::var(k).ok());
    cfg.check().map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    // On one core (a pinned process, a pod limited to one CPU), one thread serves every request: the
    // multi-threaded scheduler with its one worker cost a fifth of the requests a core can proxy
    // (`docs/performance.md`, "Gateway under sustained load"). The log's applier keeps its own thread.
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let rt = if one_core {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Runtime::new()
    }
    .context("cannot start the async runtime")?;
    if one_core {
        tracing::info!("one core available: serving every request on one thread");
    }
    rt.block_on(async {
        let gw = paddock_gateway::server::build(&cfg).await?;
        paddock_gateway::server::start_console(&gw, &cfg, paddock_gateway::server::shutdown()).await?;
        let telemetry = gw.telemetry().cloned();
        let served = paddock_gateway::server::serve(gw, &cfg.listen, cfg.tls.as_ref()).await;
        // The spans still batched go out before the process ends (the exporter blocks: off the runtime).
        if let Some(t) = telemetry
            && let Ok(Err(e)) = tokio::task::spawn_blocking(move || t.shutdown()).await
        {
            tracing::warn!(error = %e, "exporting the last spans failed");
        }
        served
    })?;
    Ok(ExitCode::SUCCESS)
}
