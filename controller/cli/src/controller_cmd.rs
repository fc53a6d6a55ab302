//! `paddock controller`: the Kubernetes controller (GitSource, Agent, Policy, Session and Approval
//! reconcilers, git webhook, `/metrics`, `/healthz`, leader election). See docs/gitsource.md and
//! docs/sessions.md.

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
    /// The gateway's admin API (e.g. `https://paddock-gateway.paddock-system.svc:6767`). Without it the
    /// Session and Approval reconcilers do not run.
    #[arg(long, env = "PADDOCK_GATEWAY_URL")]
    gateway_url: Option<String>,
    /// The file holding the gateway's admin token (a mounted Secret).
    #[arg(long, default_value = "/var/run/paddock/gateway/admin-token")]
    gateway_token_file: PathBuf,
    /// The CA certificate (PEM) that signed the gateway's serving certificate, for an `https://` gateway: the
    /// only root the controller trusts for it, and what runner pods get (in their ConfigMap) to trust it. Read
    /// again when it changes. Without it: the system's roots, and runners use their image's.
    #[arg(long, env = "PADDOCK_GATEWAY_CA_FILE")]
    gateway_ca_file: Option<PathBuf>,
    /// The gateway as runner pods reach it (default: `--gateway-url`). Runner pods have no DNS: the controller
    /// resolves this URL's host name when it starts a session and writes the address into the pod's `/etc/hosts`.
    #[arg(long)]
    runner_gateway_url: Option<String>,
    /// Namespace of the gateway pods (for the runners' NetworkPolicy; default: the controller's namespace).
    #[arg(long)]
    gateway_namespace: Option<String>,
    /// Labels of the gateway pods, `k=v,k=v` (for the runners' NetworkPolicy).
    #[arg(long, default_value = "app.kubernetes.io/component=gateway")]
    gateway_pod_labels: String,
    /// The gateway's port (for the runners' NetworkPolicy).
    #[arg(long, default_value_t = 6767)]
    gateway_port: u16,
    /// The runner image.
    #[arg(long, default_value = "ghcr.io/paddock-dev/runner:latest")]
    runner_image: String,
    /// The runner image's pull policy (`IfNotPresent`, `Always`, `Never`).
    #[arg(long)]
    runner_image_pull_policy: Option<String>,
    /// The image that clones workspaces (needs `git`; default: the runner image).
    #[arg(long)]
    clone_image: Option<String>,
    /// Seconds between reads of an active session's figures from the gateway.
    #[arg(long, default_value_t = 5)]
    session_poll_seconds: u64,
}

fn labels(s: &str) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| anyhow::anyhow!("`{p}` is not `key=value`"))
        })
        .collect()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::logging::init(args.log_json);
    let identity = args
        .identity
        .or_else(|| std::env::var("POD_NAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("paddock-controller-{}", std::process::id()));
    let own_namespace = std::env::var("POD_NAMESPACE").ok();
    // A CA means the gateway is meant to be reached over TLS: an http:// URL would send the admin token in
    // clear while the operator believes it is protected (the runner refuses the same pair).
    if let (Some(url), Some(ca)) = (&args.gateway_url, &args.gateway_ca_file)
        && !url.starts_with("https://")
    {
        anyhow::bail!(
            "--gateway-url `{url}` is not https:// but --gateway-ca-file `{}` is set: use the gateway's https:// \
             URL, or drop the CA to speak plain HTTP on purpose",
            ca.display()
        );
    }
    let sessions = match &args.gateway_url {
        None => None,
        Some(url) => Some(paddock_operator::run::SessionsConfig {
            gateway: paddock_operator::gateway::GatewayConfig {
                url: url.clone(),
                admin_token_file: args.gateway_token_file.clone(),
                ca_file: args.gateway_ca_file.clone(),
            },
            cluster: paddock_sandbox::ClusterConfig {
                image: args.runner_image.clone(),
                image_pull_policy: args.runner_image_pull_policy.clone(),
                clone_image: args.clone_image.clone(),
                gateway_url: args.runner_gateway_url.clone().unwrap_or_else(|| url.clone()),
                gateway_namespace: args
                    .gateway_namespace
                    .clone()
                    .or_else(|| own_namespace.clone())
                    .unwrap_or_else(|| "paddock-system".into()),
                gateway_pod_labels: labels(&args.gateway_pod_labels).context("--gateway-pod-labels")?,
                gateway_port: args.gateway_port,
            },
            poll_interval: std::time::Duration::from_secs(args.session_poll_seconds.max(1)),
            status_min_interval: std::time::Duration::from_secs(args.session_poll_seconds.max(1)),
        }),
    };
    let cfg = paddock_operator::Config {
        listen: args.listen,
        cache_dir: args.cache_dir,
        namespace: args.namespace,
        leader_election: !args.no_leader_election,
        lease_namespace: args
            .lease_namespace
            .or_else(|| own_namespace.clone())
            .unwrap_or_else(|| "paddock-system".into()),
        lease_name: args.lease_name,
        identity,
        sessions,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(paddock_operator::run(cfg)).context("controller")?;
    Ok(ExitCode::SUCCESS)
}
