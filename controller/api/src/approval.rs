//! `Approval`: a human's answer to an ask. A kind of its own so RBAC can grant "may approve" alone.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::LocalObjectReference;
use crate::status::Condition;

/// The annotation naming who decided: the Approval's creator (the chart's admission policy checks that it is
/// the requesting user; `paddock approve --cluster` and the web console set it).
pub const DECIDED_BY_ANNOTATION: &str = "paddock.dev/decided-by";

/// The decision and the ask it answers.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "paddock.dev",
    version = "v1alpha1",
    kind = "Approval",
    doc = "An Approval: a human decision on a pending ask of a Session.",
    namespaced,
    status = "ApprovalStatus",
    shortname = "appr",
    category = "paddock",
    printcolumn = r#"{"name":"Session","type":"string","jsonPath":".spec.sessionRef.name"}"#,
    printcolumn = r#"{"name":"Request","type":"string","jsonPath":".spec.requestId"}"#,
    printcolumn = r#"{"name":"Decision","type":"string","jsonPath":".spec.decision"}"#,
    printcolumn = r#"{"name":"Relayed","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSpec {
    /// The Session that asked (same namespace).
    pub session_ref: LocalObjectReference,
    /// The id of the pending ask, from the Session's `status.pendingApprovals`.
    pub request_id: String,
    /// `Approve` lets the event through; `Deny` blocks it.
    pub decision: Decision,
    /// Why; recorded in the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A human's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Decision {
    Approve,
    Deny,
}

/// What the Approval controller observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalStatus {
    /// `Ready=True` once the gateway has accepted the decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The user who created the Approval, as recorded by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When the gateway accepted the decision (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relayed_at: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
