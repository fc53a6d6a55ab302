//! `Policy`: rules that arbitrate what agents may do, written by security teams.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::Labels;
use crate::status::Condition;

/// The rules and which Agents they govern.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "paddock.dev",
    version = "v1alpha1",
    kind = "Policy",
    doc = "A Policy: rules the gateway applies to every LLM request and tool call of the Agents it selects.",
    namespaced,
    status = "PolicyStatus",
    shortname = "pol",
    category = "paddock",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Rules","type":"integer","jsonPath":".status.ruleCount"}"#,
    printcolumn = r#"{"name":"Allow","type":"integer","jsonPath":".status.decisions.allow"}"#,
    printcolumn = r#"{"name":"Deny","type":"integer","jsonPath":".status.decisions.deny"}"#,
    printcolumn = r#"{"name":"Ask","type":"integer","jsonPath":".status.decisions.ask"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// Select Agents by label. A Policy with neither `selector` nor `agents` applies to every Agent in its
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Select Agents by name (same namespace), in addition to `selector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    /// `Enforce` applies verdicts. `Audit` records what would have happened and allows.
    #[serde(default)]
    pub mode: PolicyMode,
    /// What happens when a rule cannot be evaluated (error or timeout): `Fail` denies (for the `request`,
    /// `llm_request` and `tool_call` phases), `Ignore` allows.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// The rules, evaluated in order; the first deny ends evaluation and asks merge into one approval.
    pub rules: Vec<PolicyRule>,
}

/// Whether verdicts are applied or only recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PolicyMode {
    #[default]
    Enforce,
    Audit,
}

/// What to do when a rule cannot be evaluated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FailurePolicy {
    #[default]
    Fail,
    Ignore,
}

/// One rule: a builtin policy with its parameters, the phases it runs on, and an optional verdict override.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Name of the rule, unique within its Policy; it appears in decisions and the audit log.
    pub name: String,
    /// The builtin that implements the rule, e.g. `cost_budget`, `github`, `deny_pii_in_llm_request`,
    /// `sequence` or `cel`. See docs/policies.md for the list and their parameters.
    #[serde(rename = "use")]
    pub uses: String,
    /// Parameters of the builtin; each builtin documents its own.
    #[serde(default, rename = "with", skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::crds::free_form_object")]
    pub params: Option<serde_json::Value>,
    /// Phases the rule runs on. Empty means the builtin's default phases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<Phase>,
    /// Replace the builtin's non-allow verdict, e.g. turn a deny into an ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Verdict>,
}

/// An enforcement point: `request` (the user's prompt), `llm_request` (before each model call),
/// `llm_response` (the model's answer and the tool calls it asks for), `tool_call` (before a tool runs),
/// `tool_result` (after), `response` (the final answer), `egress` (a connection or request out of the sandbox,
/// through the gateway's egress proxy) and `git_push` (the ref updates of a git push, read from the wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Request,
    LlmRequest,
    LlmResponse,
    ToolCall,
    ToolResult,
    Response,
    Egress,
    GitPush,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Request,
        Phase::LlmRequest,
        Phase::LlmResponse,
        Phase::ToolCall,
        Phase::ToolResult,
        Phase::Response,
        Phase::Egress,
        Phase::GitPush,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::LlmRequest => "llm_request",
            Phase::LlmResponse => "llm_response",
            Phase::ToolCall => "tool_call",
            Phase::ToolResult => "tool_result",
            Phase::Response => "response",
            Phase::Egress => "egress",
            Phase::GitPush => "git_push",
        }
    }
}

/// A decision: `allow`, `deny`, or `ask` (a human approves or denies; a timeout denies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
    Ask,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Ask => "ask",
        }
    }
}

/// A Kubernetes label selector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels an Agent must carry, all of them.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub match_labels: Labels,
    /// Set-based requirements, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// A set-based label requirement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: SelectorOperator,
    /// Values for `In` and `NotIn`; must be empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Operator of a set-based label requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// What the Policy controller observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// `Ready` always (False with the validator's message when a rule's parameters are invalid);
    /// `Reconciling` and `Stalled` while true.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Number of rules in the spec.
    #[serde(default)]
    pub rule_count: u32,
    /// Decisions made by this Policy since it was created.
    #[serde(default)]
    pub decisions: DecisionCounts,
    /// Whether every gateway replica enforces the Agents and Policies the controller last pushed (this
    /// Policy among them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<PolicyEnforcement>,
    /// The git revision of the GitSource that applied this Policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_revision: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Which gateway replicas enforce the revision last pushed to the gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyEnforcement {
    /// The revision last pushed (one hash of every Agent and Policy).
    pub revision: String,
    /// The replicas heard from in the last seconds.
    pub replicas: u32,
    /// How many of them enforce `revision`; fewer than `replicas` while a push is reaching them.
    pub enforcing: u32,
}

/// Counts of verdicts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DecisionCounts {
    /// Allowed events.
    #[serde(default)]
    pub allow: u64,
    /// Denied events.
    #[serde(default)]
    pub deny: u64,
    /// Events sent to a human.
    #[serde(default)]
    pub ask: u64,
}
