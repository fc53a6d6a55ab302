//! `paddock controller`: the HTTP server on every replica, and the reconcilers on the replica that holds
//! the leader Lease (kube-lease-manager; `coordination.k8s.io/v1` Lease).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::Controller;
use kube::runtime::reflector;
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Api, Client, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use paddock_api::{Agent, GitSource, Policy};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::{Context, agent, gitsource, policy, server};

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

/// Resolves once `rx` holds `value`.
async fn until(mut rx: watch::Receiver<bool>, value: bool) {
    let _ = rx.wait_for(|v| *v == value).await;
}

/// The three reconcilers, until `halt` turns true.
async fn controllers(client: Client, cfg: &Config, metrics: Arc<Metrics>, halt: watch::Receiver<bool>) {
    let wc = watcher::Config::default().any_semantic();
    // The Agent reconciler reads Policies from this store; a Policy that appears, changes its spec or goes
    // away re-evaluates every Agent, after the store has it.
    let (policies, writer) = reflector::store::<Policy>();
    let (agents_tx, agents_rx) = futures::channel::mpsc::unbounded::<()>();
    let policy_events = watcher::watcher(scoped::<Policy>(client.clone(), &cfg.namespace), wc.clone())
        .default_backoff()
        .reflect(writer)
        .scan(std::collections::HashMap::<String, Option<i64>>::new(), move |seen, event| {
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
    let ctx = Arc::new(Context::new(client.clone(), metrics, cfg.cache_dir.clone(), policies));
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
    tokio::select! {
        _ = async { tokio::join!(gitsources, agents, policies) } => {},
        _ = policy_events => {},
    }
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
