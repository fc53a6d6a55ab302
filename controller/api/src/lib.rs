//! Paddock's API: the custom resources of group `paddock.dev`, version `v1alpha1`, and the model catalog.
//!
//! This crate does no IO. Doc comments on fields become CRD descriptions, so `kubectl explain` teaches the
//! API: keep them written for users.

pub mod agent;
pub mod approval;
pub mod catalog;
pub mod crds;
pub mod gitsource;
pub mod policy;
pub mod session;
pub mod status;

pub use agent::{
    Agent, AgentSpec, AgentStatus, BrokeredCredential, CredentialScheme, Harness, McpServer, McpTransport,
};
pub use approval::{Approval, ApprovalSpec, ApprovalStatus, Decision};
pub use gitsource::{GitSource, GitSourceSpec, GitSourceStatus};
pub use policy::{Phase, Policy, PolicyRule, PolicySpec, PolicyStatus, Verdict};
pub use session::{Session, SessionPhase, SessionPolicy, SessionSpec, SessionStatus};
pub use status::{Condition, ConditionStatus};

/// The API group of every Paddock object.
pub const GROUP: &str = "paddock.dev";
/// The only served version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "paddock.dev/v1alpha1";
