//! `Session`: one run of an Agent on a prompt, created by a user.

use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::agent::{LocalObjectReference, WorkspaceSource};
use crate::policy::{Phase, PolicyRule};
use crate::status::Condition;

/// What to run, for whom, within which budget.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "paddock.dev",
    version = "v1alpha1",
    kind = "Session",
    doc = "A Session: one run of an Agent on a prompt, in a sandboxed runner governed by the gateway.",
    namespaced,
    status = "SessionStatus",
    shortname = "sess",
    category = "paddock",
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.agentRef.name"}"#,
    printcolumn = r#"{"name":"Owner","type":"string","priority":1,"jsonPath":".spec.owner"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Cost","type":"number","jsonPath":".status.usage.costUsd"}"#,
    printcolumn = r#"{"name":"Risk","type":"integer","jsonPath":".status.riskScore"}"#,
    printcolumn = r#"{"name":"Pending","type":"integer","jsonPath":".status.pendingApprovalCount"}"#,
    printcolumn = r#"{"name":"Last Message","type":"string","priority":1,"jsonPath":".status.lastMessage"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SessionSpec {
    /// The Agent to run (same namespace).
    pub agent_ref: LocalObjectReference,
    /// The task for the agent.
    pub prompt: String,
    /// The user the session acts for. It must equal the user who creates the Session (the Helm chart's
    /// ValidatingAdmissionPolicy enforces this); budgets per user and approvals refer to it.
    pub owner: String,
    /// A git repository to clone into the workspace, replacing the Agent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceSource>,
    /// Run with this model instead of the Agent's. It must be in the model catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_override: Option<String>,
    /// A budget for this session in US dollars. It can only lower the limits the Policies set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// Rules of this session only, evaluated before the Agent's and its namespace's Policies. They can only
    /// tighten: a rule denies or asks, never allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<SessionPolicy>,
    /// Delete the Session this many seconds after it finished. Unset keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u32>,
    /// The parent Session when this session is a sub-agent run; its cost counts towards the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_ref: Option<LocalObjectReference>,
}

/// A Session's own rules: the first level of policy (session, then the Agent's, then the namespace's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionPolicy {
    /// Rules shaped as a Policy's (`name`, `use`, `with`, `on`, `action`), evaluated in order before any
    /// other. `action` may be `deny` or `ask`, never `allow`; a deny here ends evaluation, an ask joins the
    /// other levels' asks, and a budget adds a limit. Names must be unique.
    #[schemars(schema_with = "session_rules_schema")]
    pub rules: Vec<PolicyRule>,
}

/// The schema of `spec.policy.rules`: a Policy's rule whose `action` cannot be `allow`, so that the API server
/// (and `paddock validate`) refuse `spec.policy.rules[i].action: allow` where it was written.
fn session_rules_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut item = generator.subschema_for::<PolicyRule>();
    if let Some(action) = item.get_mut("properties").and_then(|p| p.get_mut("action")) {
        *action = json!({
            "description": "Replace the builtin's non-allow verdict: `deny`, or `ask` to send it to a human. \
                            `allow` is refused: a session's rules only tighten.",
            "enum": ["deny", "ask", null],
            "nullable": true,
            "type": "string"
        });
    }
    json_schema!({
        "description": "Rules shaped as a Policy's, evaluated before any other; `action` may be `deny` or `ask`.",
        "type": "array",
        "items": item
    })
}

/// Where a Session is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SessionPhase {
    #[default]
    Pending,
    Running,
    AwaitingApproval,
    Succeeded,
    Failed,
}

impl SessionPhase {
    pub fn is_finished(self) -> bool {
        matches!(self, SessionPhase::Succeeded | SessionPhase::Failed)
    }
}

/// Tokens used and their cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Input tokens, including cache reads and writes.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Cost in US dollars at the model catalog's prices.
    #[serde(default)]
    pub cost_usd: f64,
}

/// A decision waiting for a human.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingApproval {
    /// Id to approve or deny (`paddock approve ID`, or `spec.requestId` of an Approval).
    pub request_id: String,
    /// The phase that asked.
    pub phase: Phase,
    /// The tool, for tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Why approval is needed, from the Policies that asked.
    pub reason: String,
    /// When the ask was raised (RFC 3339).
    pub requested_at: String,
}

/// What the Session controller and the gateway observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionStatus {
    /// `Pending`, `Running`, `AwaitingApproval`, `Succeeded` or `Failed`.
    #[serde(default)]
    pub phase: SessionPhase,
    /// The runner Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The git revision the Agent came from when the session started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_revision: Option<String>,
    /// Tokens and cost so far.
    #[serde(default)]
    pub usage: Usage,
    /// The session's risk score from `risk_score` rules.
    #[serde(default)]
    pub risk_score: i64,
    /// Decisions waiting for a human.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_approvals: Vec<PendingApproval>,
    /// Number of `pendingApprovals`, for `kubectl get`.
    #[serde(default)]
    pub pending_approval_count: u32,
    /// The agent's latest message, shortened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<String>,
    /// When the runner started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the session finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// `Ready` always; `Reconciling` and `Stalled` while true.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
