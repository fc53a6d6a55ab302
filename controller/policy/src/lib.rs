//! Paddock's policy engine: pure and synchronous, no IO.
//!
//! For now this crate names the builtins that Policy rules may `use`; the engine that evaluates them
//! builds on this list.

/// The builtin policies a rule may name in `use:`, with one line on what each does.
pub const BUILTINS: &[(&str, &str)] = &[
    ("cost_budget", "session budget: soft asks at thresholds, hard stop or downgrade gate at max_cost_usd"),
    ("user_daily_cost_budget", "the same gating over the owner's spend for the current UTC day"),
    ("deny_pii_in_llm_request", "scan the whole outgoing request for PII and secrets; deny, ask or redact"),
    ("deny_trivial_to_expensive_model", "classify the request; deny or route trivial ones away from expensive models"),
    ("enforce_sandbox", "require a minimum sandbox (runtime class, no egress) per environment"),
    ("risk_score", "add points per tool and sensitivity label; ask or deny above a threshold"),
    ("github", "repository and branch rules over GitHub MCP tools and parsed git/gh shell commands"),
    ("gdrive", "Google Drive read, create, write and write-down rules"),
    ("gmail", "Gmail read, draft, send and modify rules"),
    ("gcalendar", "Google Calendar read, create and modify rules"),
    ("tool_allowlist", "only the listed tools may run"),
    ("tool_denylist", "the listed tools may not run"),
    ("max_tool_calls", "deny once the session has made `limit` tool calls"),
    ("detect_loop", "ask when the same tool call repeats within a window"),
    ("sequence", "after a matching event, ask or deny before another"),
    ("blast_radius", "deny irreversible shell commands, ask before risky ones"),
    ("tool_args_schema", "a tool's arguments must validate against a JSON Schema"),
    ("cel", "a CEL expression over the event decides"),
];

/// Whether `name` is a builtin policy.
pub fn is_builtin(name: &str) -> bool {
    BUILTINS.iter().any(|(n, _)| *n == name)
}

/// Names of the builtins, for messages.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(n, _)| *n)
}
