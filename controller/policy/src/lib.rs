//! Paddock's policy engine: pure and synchronous — no IO, no async, no kube. Fast enough to call inline
//! on every LLM request and tool call.
//!
//! ```text
//! compile_policy(name, level, &PolicySpec) -> CompiledPolicy        (once per Policy revision)
//! evaluate(&Event, &SessionState, &[CompiledPolicy]) -> Decision    (per event)
//! state.apply(&decision.state_updates)                              (if the event goes ahead)
//! state.meter(decision.metering)                                    (always, for llm_response)
//! ```

pub mod builtins;
pub mod cost;
pub mod egress;
pub mod engine;
pub mod event;
pub mod git;
pub mod http_path;
pub mod opaque;
pub mod pii;
pub mod set;
pub mod shell;
pub mod state;
pub mod testing;
pub mod tools;
pub mod written;

pub use builtins::{Mutation, REGISTRY};
pub use engine::{
    CompiledPolicy, Decision, Hit, Level, RuleError, compile_agent_rules, compile_policy, compile_session_rules,
    denies_every_call, evaluate, headroom_usd, required_runtime_class, selects, session_policy_name,
};
pub use event::{Event, GraphqlField, GraphqlOperation, MAX_PLAUSIBLE_TOKENS, RefUpdate, ToolCall, Usage, ZERO_OID};
pub use set::{GovernedAgent, PolicySet, SetError};
pub use state::{SessionState, StateUpdate};
pub use tools::{ToolKind, ToolUse};

/// Whether `name` is a builtin policy.
pub fn is_builtin(name: &str) -> bool {
    builtins::find(name).is_some()
}

/// Names of the builtins, for messages.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|d| d.name)
}
