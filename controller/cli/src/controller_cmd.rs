//! `paddock controller`: the Kubernetes controller (GitSource, Agent and Policy reconcilers, git webhook,
//! `/metrics`, `/healthz`, leader election). See docs/gitsource.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Address of `/healthz`, `/metrics` and the webhook `/hooks/git/{namespace}/{name}`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Directory for the bare git clones of the GitSources (an emptyDir in the pod is enough).
    #[arg(long, default_value = "/tmp/paddock-git")]
    cache_dir: PathBuf,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long)]
    namespace: Option<String>,
    /// Do not take the leader Lease; for a single replica or a run outside the cluster.
    #[arg(long)]
    no_leader_election: bool,
    /// Namespace of the leader Lease (default: `$POD_NAMESPACE`, else `paddock-system`).
    #[arg(long)]
    lease_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = "paddock-controller")]
    lease_name: String,
    /// This replica's identity in the Lease (default: `$POD_NAME`, else the host name).
    #[arg(long)]
    identity: Option<String>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::logging::init(args.log_json);
    let identity = args
        .identity
        .or_else(|| std::env::var("POD_NAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("paddock-controller-{}", std::process::id()));
    let cfg = paddock_operator::Config {
        listen: args.listen,
        cache_dir: args.cache_dir,
        namespace: args.namespace,
        leader_election: !args.no_leader_election,
        lease_namespace: args
            .lease_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "paddock-system".into()),
        lease_name: args.lease_name,
        identity,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(paddock_operator::run(cfg)).context("controller")?;
    Ok(ExitCode::SUCCESS)
}
