//! The sandbox a runner lives in, described once ([`SandboxSpec`]) from an Agent and the policies that
//! apply, then rendered for where it runs: a hardened Pod plus NetworkPolicy in Kubernetes, a bubblewrap
//! command line locally. Pure functions only; spawning and applying are the callers' business.

mod clone;
pub mod credentials;
pub mod local;
pub mod pod;
pub mod quantity;
pub mod spec;
pub mod workspace;

pub use pod::{
    ClusterConfig, ObjectNames, SessionInfo, agent_manifest, render_agent_configmap, render_network_policy,
    render_runner_pod, render_token_secret,
};
pub use quantity::{Egress, cpu_millis, memory_bytes, parse_egress};
pub use spec::{RUNNER_UID, SandboxError, SandboxSpec, WORKSPACE_DIR};
