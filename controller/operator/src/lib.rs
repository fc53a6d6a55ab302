//! Paddock's Kubernetes controller: the GitSource reconciler (fetch, validate, apply, prune), the Agent
//! and Policy reconcilers (status), the Session reconciler (hardened runner pods, tokens, status from the
//! gateway), the Approval reconciler (decisions relayed to the gateway), the git push webhook, `/metrics`
//! and `/healthz`, and leader election.
//!
//! Each reconciler is a `reconcile`/`error_policy` pair over a shared [`Context`], in the style of kube-rs's
//! controller-rs; everything that can be pure (what to apply and prune) lives in `paddock_gitops::plan`.

pub mod agent;
pub mod approval;
pub mod broker;
pub mod conditions;
pub mod context;
pub mod gateway;
pub mod gitsource;
pub mod metrics;
pub mod policy;
pub mod policy_sync;
pub mod run;
pub mod server;
pub mod session;
pub mod webhook;

pub use context::{Backoff, Context};
pub use run::{Config, run};

/// Field manager of every server-side apply, and the controller name in Events.
pub const FIELD_MANAGER: &str = "paddock";
/// Finalizer on GitSources, so that deleting one prunes what it applied.
pub const FINALIZER: &str = "paddock.dev/gitsource";

/// What can go wrong in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("git: {0}")]
    Fetch(#[from] paddock_gitops::fetch::FetchError),
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("{0}")]
    Apply(String),
    #[error("background task failed: {0}")]
    Task(String),
    #[error("finalizer: {0}")]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
    #[error("gateway: {0}")]
    Gateway(#[from] gateway::GatewayError),
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// A short CamelCase name for metrics labels.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Fetch(_) => "git",
            Error::Credentials(_) => "credentials",
            Error::Apply(_) => "apply",
            Error::Task(_) => "task",
            Error::Finalizer(_) => "finalizer",
            Error::Gateway(_) => "gateway",
            Error::Config(_) => "config",
        }
    }
}
