//! Rules over tool calls: `tool_allowlist`, `tool_denylist`, `max_tool_calls`, `detect_loop`,
//! `tool_args_schema` and `risk_score`. Tool patterns match the harness's name, the canonical kind
//! (`shell` covers `Bash` and `exec_command`), `*` globs, or an MCP tool's suffix.

use std::collections::BTreeMap;

use paddock_api::Phase;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{Action, Builtin, BuiltinDef, Outcome, RuleCtx, TOOL_PHASES, build_with, schema_of};
use crate::event::Event;
use crate::state::{SessionState, StateUpdate};
use crate::tools::ToolUse;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolListParams {
    /// Tool patterns: a harness tool name (`Bash`), a canonical kind (`shell`, `write_file`), a glob
    /// (`mcp__github__*`), or an MCP tool name (`create_issue`).
    pub tools: Vec<String>,
}

pub const TOOL_ALLOWLIST: BuiltinDef = BuiltinDef {
    name: "tool_allowlist",
    summary: "only the listed tools may run",
    phases: TOOL_PHASES,
    schema: schema_of::<ToolListParams>,
    build: |v| build_with(v, |p: ToolListParams| Ok(ToolList { p, allow: true })),
};

pub const TOOL_DENYLIST: BuiltinDef = BuiltinDef {
    name: "tool_denylist",
    summary: "the listed tools may not run",
    phases: TOOL_PHASES,
    schema: schema_of::<ToolListParams>,
    build: |v| build_with(v, |p: ToolListParams| Ok(ToolList { p, allow: false })),
};

struct ToolList {
    p: ToolListParams,
    allow: bool,
}

impl Builtin for ToolList {
    fn evaluate(&self, _: &RuleCtx, _: &Event, tools: &[ToolUse], _: &SessionState) -> Result<Outcome, String> {
        for t in tools {
            let listed = self.p.tools.iter().any(|p| t.matches(p));
            if self.allow && !listed {
                return Ok(Outcome::deny(format!(
                    "tool `{}` is not in the allowlist ({})",
                    t.name,
                    self.p.tools.join(", ")
                )));
            }
            if !self.allow && listed {
                return Ok(Outcome::deny(format!("tool `{}` is on the denylist", t.name)));
            }
        }
        Ok(Outcome::allow())
    }

    fn denies_every_call(&self, tool: &ToolUse) -> bool {
        self.allow != self.p.tools.iter().any(|p| tool.matches(p))
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaxToolCallsParams {
    /// Tool calls allowed in one session.
    #[serde(default = "default_limit")]
    pub limit: u64,
}

fn default_limit() -> u64 {
    100
}

pub const MAX_TOOL_CALLS: BuiltinDef = BuiltinDef {
    name: "max_tool_calls",
    summary: "deny once the session has made `limit` tool calls",
    phases: TOOL_PHASES,
    schema: schema_of::<MaxToolCallsParams>,
    build: |v| build_with(v, |p: MaxToolCallsParams| Ok(MaxToolCalls { p })),
};

struct MaxToolCalls {
    p: MaxToolCallsParams,
}

impl Builtin for MaxToolCalls {
    fn evaluate(&self, _: &RuleCtx, event: &Event, tools: &[ToolUse], state: &SessionState) -> Result<Outcome, String> {
        // On a response, each requested call would count; on a tool call, this one would.
        let after = state.tool_calls + if event.phase == Phase::LlmResponse { tools.len() as u64 } else { 1 };
        if !tools.is_empty() && after > self.p.limit {
            return Ok(Outcome::deny(format!("the session reached its limit of {} tool calls", self.p.limit)));
        }
        Ok(Outcome::allow())
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoopParams {
    /// How many recent tool calls to remember.
    #[serde(default = "default_window")]
    #[schemars(range(min = 1))]
    pub window: usize,
    /// Ask when the same call (tool and arguments) appears this many times within the window.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 2))]
    pub threshold: usize,
}

fn default_window() -> usize {
    10
}
fn default_threshold() -> usize {
    3
}

pub const DETECT_LOOP: BuiltinDef = BuiltinDef {
    name: "detect_loop",
    summary: "ask when the same tool call repeats within a window",
    phases: &[Phase::ToolCall],
    schema: schema_of::<LoopParams>,
    build: |v| build_with(v, |p: LoopParams| Ok(DetectLoop { p })),
};

struct DetectLoop {
    p: LoopParams,
}

/// FNV-1a: stable across builds and platforms, unlike std's hasher, because hashes live in stored state.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

impl Builtin for DetectLoop {
    fn evaluate(&self, ctx: &RuleCtx, _: &Event, tools: &[ToolUse], state: &SessionState) -> Result<Outcome, String> {
        let Some(t) = tools.first() else { return Ok(Outcome::allow()) };
        let hash = format!("{:016x}", fnv1a(format!("{}\u{0}{}", t.name, t.args).as_bytes()));
        let key = ctx.key("recent");
        let recent: Vec<&str> = state
            .value(&key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let window_start = recent.len().saturating_sub(self.p.window.saturating_sub(1));
        let seen = recent[window_start..].iter().filter(|h| **h == hash).count() + 1;
        let update = vec![StateUpdate::Push { key, value: Value::String(hash), keep: self.p.window }];
        if seen >= self.p.threshold {
            return Ok(Outcome::ask(format!(
                "the agent made the same `{}` call {seen} times in its last {} calls; it may be stuck in a loop",
                t.name, self.p.window
            ))
            .with(update));
        }
        Ok(Outcome::allow().with(update))
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArgsSchemaParams {
    /// Tool pattern the schema applies to.
    pub tool: String,
    /// A JSON Schema the tool's arguments must validate against.
    #[schemars(with = "BTreeMap<String, Value>")]
    pub schema: Value,
}

pub const TOOL_ARGS_SCHEMA: BuiltinDef = BuiltinDef {
    name: "tool_args_schema",
    summary: "a tool's arguments must validate against a JSON Schema",
    phases: TOOL_PHASES,
    schema: schema_of::<ArgsSchemaParams>,
    build: |v| {
        build_with(v, |p: ArgsSchemaParams| {
            let validator = jsonschema::validator_for(&p.schema)
                .map_err(|e| format!("`schema` is not a valid JSON Schema: {e}"))?;
            Ok(ArgsSchema { tool: p.tool, validator })
        })
    },
};

struct ArgsSchema {
    tool: String,
    validator: jsonschema::Validator,
}

impl Builtin for ArgsSchema {
    fn evaluate(&self, _: &RuleCtx, _: &Event, tools: &[ToolUse], _: &SessionState) -> Result<Outcome, String> {
        for t in tools.iter().filter(|t| t.matches(&self.tool)) {
            let errors: Vec<String> =
                self.validator.iter_errors(&t.args).take(3).map(|e| format!("{}: {e}", e.instance_path())).collect();
            if !errors.is_empty() {
                return Ok(Outcome::deny(format!(
                    "arguments of `{}` do not match the required schema: {}",
                    t.name,
                    errors.join("; ")
                )));
            }
        }
        Ok(Outcome::allow())
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskParams {
    /// Score at which `guarded_tools` escalate.
    #[serde(default = "default_threshold_points")]
    pub threshold: i64,
    /// Points added by each call of a tool (tool pattern → points).
    #[serde(default)]
    pub tool_points: BTreeMap<String, i64>,
    /// Points added when a tool result carries a data-classification label (label → points; the highest
    /// matching label counts).
    #[serde(default)]
    pub sensitive_labels: BTreeMap<String, i64>,
    /// Tools that need approval (or are denied) once the score reaches `threshold`.
    #[serde(default)]
    pub guarded_tools: Vec<String>,
    /// `ask` (default) or `deny`.
    #[serde(default = "super::ask")]
    pub escalate_action: Action,
    /// Keys under which tool results carry their classification.
    #[serde(default = "default_label_keys")]
    pub label_keys: Vec<String>,
    /// Reason shown when escalating.
    #[serde(default)]
    pub reason: Option<String>,
    /// Connections that need approval (or are denied) once the score reaches `threshold`: `host:port` globs
    /// matched against every `egress` event (`*:*` for all; hosts lowercase, IPv6 in brackets). This is
    /// where data leaves, whatever tool or script sends it.
    #[serde(default)]
    pub guarded_egress: Vec<String>,
}

fn default_threshold_points() -> i64 {
    50
}
fn default_label_keys() -> Vec<String> {
    ["label_classification", "classification", "sensitivity", "sensitivity_label", "dlp_label"]
        .map(String::from)
        .to_vec()
}

pub const RISK_SCORE: BuiltinDef = BuiltinDef {
    name: "risk_score",
    summary: "add points per tool and sensitivity label; ask or deny above a threshold",
    phases: &[Phase::ToolCall, Phase::ToolResult, Phase::Egress],
    schema: schema_of::<RiskParams>,
    build: |v| build_with(v, |p: RiskParams| Ok(RiskScore { p })),
};

struct RiskScore {
    p: RiskParams,
}

impl RiskScore {
    fn label_points(&self, v: &Value, depth: usize) -> i64 {
        if depth > 20 {
            return 0;
        }
        match v {
            Value::Object(o) => o
                .iter()
                .map(|(k, x)| {
                    let own = if self.p.label_keys.contains(k) {
                        x.as_str().and_then(|l| self.label(l)).unwrap_or(0)
                    } else {
                        0
                    };
                    own.max(self.label_points(x, depth + 1))
                })
                .max()
                .unwrap_or(0),
            Value::Array(a) => a.iter().map(|x| self.label_points(x, depth + 1)).max().unwrap_or(0),
            Value::String(s) if s.trim_start().starts_with('{') || s.trim_start().starts_with('[') => {
                serde_json::from_str::<Value>(s).map(|j| self.label_points(&j, depth + 1)).unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// An `egress` event once the score is at the threshold: guarded destinations escalate.
    fn egress(&self, event: &Event, state: &SessionState) -> Outcome {
        let (Some(host), Some(port)) = (event.host.as_deref(), event.port) else { return Outcome::allow() };
        let dest = crate::egress::host_port(host, port);
        let guarded = self.p.guarded_egress.iter().any(|g| crate::tools::glob_match(&g.to_ascii_lowercase(), &dest));
        if state.risk_score < self.p.threshold || !guarded {
            return Outcome::allow();
        }
        let reason = self.p.reason.clone().unwrap_or_else(|| {
            format!(
                "the session's risk score is {} (threshold {}) and egress to `{dest}` is guarded",
                state.risk_score, self.p.threshold
            )
        });
        Outcome::act(self.p.escalate_action, reason)
    }

    fn label(&self, l: &str) -> Option<i64> {
        self.p.sensitive_labels.iter().find(|(k, _)| k.eq_ignore_ascii_case(l)).map(|(_, p)| *p)
    }
}

impl Builtin for RiskScore {
    fn evaluate(&self, _: &RuleCtx, event: &Event, tools: &[ToolUse], state: &SessionState) -> Result<Outcome, String> {
        if event.phase == Phase::Egress {
            return Ok(self.egress(event, state));
        }
        let Some(t) = tools.first() else { return Ok(Outcome::allow()) };
        if event.phase == Phase::ToolResult {
            let points = event.output.as_ref().map_or(0, |o| self.label_points(o, 0));
            return Ok(if points > 0 {
                Outcome::allow().with(vec![StateUpdate::AddRisk { points }])
            } else {
                Outcome::allow()
            });
        }
        let points: i64 = self.p.tool_points.iter().filter(|(p, _)| t.matches(p)).map(|(_, n)| *n).max().unwrap_or(0);
        let score = state.risk_score + points;
        let updates = if points > 0 { vec![StateUpdate::AddRisk { points }] } else { Vec::new() };
        if score >= self.p.threshold && self.p.guarded_tools.iter().any(|g| t.matches(g)) {
            let reason = self.p.reason.clone().unwrap_or_else(|| {
                format!(
                    "the session's risk score is {score} (threshold {}) and `{}` is guarded",
                    self.p.threshold, t.name
                )
            });
            return Ok(Outcome::act(self.p.escalate_action, reason).with(updates));
        }
        Ok(Outcome::allow().with(updates))
    }
}
