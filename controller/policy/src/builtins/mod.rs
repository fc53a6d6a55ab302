//! The builtin policies: each a parameter type (whose JSON Schema is derived from it, so the schema and
//! the code cannot disagree) and an `evaluate` over one event and the session state.

use paddock_api::catalog::ModelCatalog;
use paddock_api::{Phase, Verdict};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::event::Event;
use crate::state::{SessionState, StateUpdate};
use crate::tools::ToolUse;

mod blast_radius;
mod cel;
mod cost;
pub(crate) mod github;
mod google;
mod pii;
mod provider_features;
mod routing;
mod sandbox;
mod sequence;
mod toolrules;

/// Where a rule is evaluated: its names (for state keys and messages) and the model catalog.
pub struct RuleCtx<'a> {
    pub policy: &'a str,
    pub rule: &'a str,
    pub catalog: &'static ModelCatalog,
}

impl RuleCtx<'_> {
    /// A state key private to this rule.
    pub fn key(&self, name: &str) -> String {
        format!("{}/{}/{}", self.policy, self.rule, name)
    }
}

/// What a rule says about an event.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub reason: String,
    /// Applied only if the event goes ahead.
    pub updates: Vec<StateUpdate>,
    /// A rewritten event (routing, redaction) that later rules and the gateway see instead.
    pub rewrite: Option<(Event, Mutation)>,
}

/// A change a rule made to the event.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mutation {
    RouteModel { from: String, to: String },
    Redact { findings: usize },
}

impl Outcome {
    pub fn allow() -> Outcome {
        Outcome { verdict: Verdict::Allow, reason: String::new(), updates: Vec::new(), rewrite: None }
    }
    pub fn deny(reason: impl Into<String>) -> Outcome {
        Outcome { verdict: Verdict::Deny, reason: reason.into(), ..Outcome::allow() }
    }
    pub fn ask(reason: impl Into<String>) -> Outcome {
        Outcome { verdict: Verdict::Ask, reason: reason.into(), ..Outcome::allow() }
    }
    /// `deny` or `ask` by a rule's configured action.
    pub fn act(action: Action, reason: impl Into<String>) -> Outcome {
        match action {
            Action::Deny => Outcome::deny(reason),
            Action::Ask => Outcome::ask(reason),
        }
    }
    pub fn with(mut self, updates: Vec<StateUpdate>) -> Outcome {
        self.updates = updates;
        self
    }
}

/// The `deny | ask` choice many builtins offer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Deny,
    Ask,
}

/// `#[serde(default = "super::yes")]`: parameters that default to true.
pub(super) fn yes() -> bool {
    true
}

/// `#[serde(default = "super::ask")]`: actions that default to asking.
pub(super) fn ask() -> Action {
    Action::Ask
}

/// A configured builtin.
pub trait Builtin: Send + Sync {
    /// Decides on one event. `tools` are the event's tool uses, normalised. An `Err` is a failure to
    /// evaluate, handled by the Policy's `failurePolicy`.
    fn evaluate(
        &self,
        ctx: &RuleCtx,
        event: &Event,
        tools: &[ToolUse],
        state: &SessionState,
    ) -> Result<Outcome, String>;

    /// For budget rules: dollars `model` may still spend before this rule's hard limit blocks it. The
    /// gateway cuts a streamed answer that would pass it.
    fn headroom_usd(&self, _model: &str, _state: &SessionState) -> Option<f64> {
        None
    }

    /// For sandbox rules: the RuntimeClasses a runner in `environment` must use (any one of them); `None` when
    /// this rule requires none there. The controller renders the runner pod with one of them.
    fn required_runtime_classes(&self, _environment: &str) -> Option<&[String]> {
        None
    }

    /// For tool-list rules: whether this rule denies every call of `tool`, whatever its arguments. The
    /// gateway leaves such a tool out of an MCP server's `tools/list`.
    fn denies_every_call(&self, _tool: &ToolUse) -> bool {
        false
    }
}

/// A builtin's entry in the registry.
pub struct BuiltinDef {
    pub name: &'static str,
    pub summary: &'static str,
    /// Phases the builtin runs on when a rule gives no `on:`.
    pub phases: &'static [Phase],
    /// JSON Schema of `with:`.
    pub schema: fn() -> Value,
    pub build: fn(Value) -> Result<Box<dyn Builtin>, String>,
}

/// The JSON Schema of a parameter type.
pub fn schema_of<P: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(P)).expect("schemas serialise")
}

/// Deserialises parameters and builds a builtin from them.
pub fn build_with<P: DeserializeOwned, B: Builtin + 'static>(
    v: Value,
    make: fn(P) -> Result<B, String>,
) -> Result<Box<dyn Builtin>, String> {
    let params: P = serde_json::from_value(v).map_err(|e| e.to_string())?;
    Ok(Box::new(make(params)?))
}

use Phase::{LlmResponse, ToolCall, ToolResult};

/// Every builtin, in the order docs list them.
pub static REGISTRY: &[BuiltinDef] = &[
    cost::COST_BUDGET,
    cost::USER_DAILY_COST_BUDGET,
    pii::DENY_PII_IN_LLM_REQUEST,
    routing::DENY_TRIVIAL_TO_EXPENSIVE_MODEL,
    provider_features::PROVIDER_FEATURES,
    sandbox::ENFORCE_SANDBOX,
    toolrules::RISK_SCORE,
    github::GITHUB,
    google::GDRIVE,
    google::GMAIL,
    google::GCALENDAR,
    toolrules::TOOL_ALLOWLIST,
    toolrules::TOOL_DENYLIST,
    toolrules::MAX_TOOL_CALLS,
    toolrules::DETECT_LOOP,
    sequence::SEQUENCE,
    blast_radius::BLAST_RADIUS,
    toolrules::TOOL_ARGS_SCHEMA,
    cel::CEL,
];

/// The phases tool rules run on: before a tool runs, and in the model's response before the harness sees it.
pub const TOOL_PHASES: &[Phase] = &[ToolCall, LlmResponse];
/// Tool rules that also learn from results.
pub const CALL_AND_RESULT_PHASES: &[Phase] = &[ToolCall, ToolResult];

/// The registry entry of a builtin.
pub fn find(name: &str) -> Option<&'static BuiltinDef> {
    REGISTRY.iter().find(|d| d.name == name)
}
