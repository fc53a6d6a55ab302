//! `paddock controller`: the HTTP server on every replica, and the reconcilers on the replica that holds
//! the leader Lease (kube-lease-manager; `coordination.k8s.io/v1` Lease).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::Controller;
use kube::runtime::reflector;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Api, Client, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use paddock_api::{Agent, Approval, GitSource, Policy, Session};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::{Context, agent, approval, gitsource, policy, server, session};

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address of `/healthz`, `/metrics` and `/hooks/git/{namespace}/{name}`.
    pub listen: SocketAddr,
    /// Where bare clones of the repositories are kept.
    pub cache_dir: PathBuf,
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Run the reconcilers only while holding the Lease. Off for a single replica or local runs.
    pub leader_election: bool,
    pub lease_namespace: String,
    pub lease_name: String,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
    /// The Session and Approval reconcilers' settings; they do not run when `None` (no gateway configured).
    pub sessions: Option<SessionsConfig>,
}

/// How Sessions become runner pods.
#[derive(Clone, Debug)]
pub struct SessionsConfig {
    pub gateway: crate::gateway::GatewayConfig,
    pub cluster: paddock_sandbox::ClusterConfig,
    /// How often an active session's usage, risk, asks and transcript are read from the gateway.
    pub poll_interval: std::time::Duration,
    /// Usage, risk and last message are written to a Session at most this often.
    pub status_min_interval: std::time::Duration,
}

impl SessionsConfig {
    pub fn runtime(&self) -> crate::session::SessionRuntime {
        let mut rt = crate::session::SessionRuntime::new(
            crate::gateway::Gateway::new(self.gateway.clone()),
            self.cluster.clone(),
        );
        rt.poll_interval = self.poll_interval;
        rt.status_min_interval = self.status_min_interval;
        rt
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(cfg: Config) -> Result<(), RunError> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let server = tokio::spawn(server::serve(
        cfg.listen,
        server::router(client.clone(), metrics.clone()),
        until(stop.clone(), true),
    ));
    if cfg.leader_election {
        let manager = LeaseManagerBuilder::new(client.clone(), &cfg.lease_name)
            .with_namespace(&cfg.lease_namespace)
            .with_identity(&cfg.identity)
            .with_duration(15)
            .with_grace(5)
            .build()
            .await?;
        let (leader, lease_task) = manager.watch().await;
        loop {
            let mut elected = leader.clone();
            let mut stopping = stop.clone();
            tokio::select! {
                r = elected.wait_for(|l| *l) => if r.is_err() { break },
                _ = stopping.wait_for(|s| *s) => break,
            }
            info!(identity = %cfg.identity, "became leader; starting reconcilers");
            metrics.leader.set(1);
            // Stop the reconcilers when leadership is lost or on shutdown, whichever comes first.
            let (halt_tx, halt) = watch::channel(false);
            let mut lost = leader.clone();
            let mut stopping = stop.clone();
            let halter = tokio::spawn(async move {
                tokio::select! {
                    _ = lost.wait_for(|l| !*l) => {},
                    _ = stopping.wait_for(|s| *s) => {},
                }
                let _ = halt_tx.send(true);
            });
            controllers(client.clone(), &cfg, metrics.clone(), halt).await;
            halter.abort();
            metrics.leader.set(0);
            if *stop.borrow() {
                break;
            }
            warn!("lost the leader Lease; reconcilers stopped until it is won again");
        }
        // Dropping the last receiver makes the lease task release the Lease, so a standby takes over at once.
        drop(leader);
        if let Ok(Err(e)) = lease_task.await {
            warn!(error = %e, "could not release the Lease");
        }
    } else {
        controllers(client.clone(), &cfg, metrics.clone(), stop.clone()).await;
    }
    server.await.map_err(|e| std::io::Error::other(e.to_string()))??;
    Ok(())
}

fn scoped<K>(client: Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// How often Policies' `status.decisions` are brought up to the gateway's counts (only those that changed are
/// written).
const DECISIONS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Resolves once `rx` holds `value`.
async fn until(mut rx: watch::Receiver<bool>, value: bool) {
    let _ = rx.wait_for(|v| *v == value).await;
}

/// The reconcilers, until `halt` turns true.
async fn controllers(client: Client, cfg: &Config, metrics: Arc<Metrics>, halt: watch::Receiver<bool>) {
    let wc = watcher::Config::default().any_semantic();
    // The Agent reconciler reads Policies from this store; a Policy that appears, changes its spec or goes
    // away re-evaluates every Agent, after the store has it.
    let (policies, writer) = reflector::store::<Policy>();
    let (agents_tx, agents_rx) = futures::channel::mpsc::unbounded::<()>();
    // The policy sync reads the same cache, and pushes to the gateway when it (or the Agents') changes.
    let sync_changed = Arc::new(tokio::sync::Notify::new());
    let policy_changed = sync_changed.clone();
    let policy_events = watcher::watcher(scoped::<Policy>(client.clone(), &cfg.namespace), wc.clone())
        .default_backoff()
        .reflect(writer)
        .scan(std::collections::HashMap::<String, Option<i64>>::new(), move |seen, event| {
            if crate::policy_sync::is_change(&event) {
                policy_changed.notify_one();
            }
            let changed = match &event {
                Ok(WatchEvent::Apply(p)) | Ok(WatchEvent::InitApply(p)) => {
                    let key = format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
                    seen.insert(key, p.metadata.generation) != Some(p.metadata.generation)
                }
                Ok(WatchEvent::Delete(p)) => {
                    seen.remove(&format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()));
                    true
                }
                Ok(WatchEvent::InitDone) => true,
                _ => false,
            };
            let _ = changed.then(|| agents_tx.unbounded_send(()));
            futures::future::ready(Some(()))
        })
        .for_each(|_| futures::future::ready(()));
    let mut ctx = Context::new(client.clone(), metrics, cfg.cache_dir.clone(), policies);
    if let Some(s) = &cfg.sessions {
        ctx = ctx.with_sessions(s.runtime());
    }
    let ctx = Arc::new(ctx);
    let gitsources = Controller::new(scoped::<GitSource>(client.clone(), &cfg.namespace), wc.clone())
        .graceful_shutdown_on(until(halt.clone(), true))
        .run(gitsource::reconcile, gitsource::error_policy, ctx.clone())
        .for_each(|r| log_result("gitsource", r));
    let agents = Controller::new(scoped::<Agent>(client.clone(), &cfg.namespace), wc.clone())
        .reconcile_all_on(agents_rx)
        .graceful_shutdown_on(until(halt.clone(), true))
        .run(agent::reconcile, agent::error_policy, ctx.clone())
        .for_each(|r| log_result("agent", r));
    let policies = Controller::new(scoped::<Policy>(client.clone(), &cfg.namespace), wc)
        .graceful_shutdown_on(until(halt.clone(), true))
        .run(policy::reconcile, policy::error_policy, ctx.clone())
        .for_each(|r| log_result("policy", r));
    let sessions = async {
        if cfg.sessions.is_none() {
            info!("no gateway configured: the Session and Approval reconcilers do not run");
            return;
        }
        let gateway = crate::gateway::Gateway::new(cfg.sessions.as_ref().expect("checked").gateway.clone());
        // The Agents the sync pushes come from a cache of their own (the Agent reconciler's is internal to it):
        // one more watch, and no LIST per push.
        let (agents, agent_watch) =
            crate::policy_sync::cache(scoped::<Agent>(client.clone(), &cfg.namespace), sync_changed.clone());
        let caches = crate::policy_sync::Caches { agents, policies: ctx.policies.clone(), changed: sync_changed };
        let sync = crate::policy_sync::run(caches, gateway.clone(), Default::default(), halt.clone());
        let decisions =
            policy::report_decisions(client.clone(), ctx.policies.clone(), gateway, DECISIONS_INTERVAL, halt.clone());
        tokio::select! {
            _ = async { tokio::join!(session_controllers(client.clone(), cfg, ctx.clone(), halt.clone()), sync, decisions) } => {},
            _ = agent_watch => {},
        }
    };
    tokio::select! {
        _ = async { tokio::join!(gitsources, agents, policies, sessions) } => {},
        _ = policy_events => {},
    }
}

/// The Session reconciler (woken by its runner pods and by the Agent a waiting Session needs) and the
/// Approval reconciler.
async fn session_controllers(client: Client, cfg: &Config, ctx: Arc<Context>, halt: watch::Receiver<bool>) {
    let wc = watcher::Config::default().any_semantic();
    let pods = watcher::Config::default().labels("app.kubernetes.io/name=paddock-runner").any_semantic();
    let ctrl = Controller::new(scoped::<Session>(client.clone(), &cfg.namespace), wc.clone());
    let store = ctrl.store();
    let sessions = ctrl
        .owns(scoped::<Pod>(client.clone(), &cfg.namespace), pods)
        .watches(scoped::<Agent>(client.clone(), &cfg.namespace), wc.clone(), move |agent| {
            waiting_for(&store.state(), &agent.namespace().unwrap_or_default(), &agent.name_any())
        })
        .graceful_shutdown_on(until(halt.clone(), true))
        .run(session::reconcile, session::error_policy, ctx.clone())
        .for_each(|r| log_result("session", r));
    let approvals = Controller::new(scoped::<Approval>(client.clone(), &cfg.namespace), wc)
        .graceful_shutdown_on(until(halt.clone(), true))
        .run(approval::reconcile, approval::error_policy, ctx)
        .for_each(|r| log_result("approval", r));
    tokio::join!(sessions, approvals);
}

/// The Sessions of `namespace` that have not started and run Agent `agent`.
pub fn waiting_for(sessions: &[Arc<Session>], namespace: &str, agent: &str) -> Vec<ObjectRef<Session>> {
    sessions
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(namespace) && s.spec.agent_ref.name == agent)
        .filter(|s| s.status.as_ref().is_none_or(|st| st.pod_name.is_none() && !st.phase.is_finished()))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Reconcile errors are already logged by each `error_policy`; what reaches here is the runtime's own.
fn log_result<T, E: std::fmt::Display>(controller: &'static str, r: Result<T, E>) -> futures::future::Ready<()> {
    if let Err(e) = r {
        tracing::debug!(controller, error = %e, "controller event");
    }
    futures::future::ready(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
