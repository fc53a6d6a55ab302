//! `cel`: a CEL expression over the event decides. It sees `event` (the event as JSON — its `body`,
//! `messages`, `system`, `output` and `text` only when the expression names them — plus `tools`:
//! the normalised tool uses with `name`, `kind`, `args`, `command`, `paths`; on `egress` also `host`, `port`,
//! `scheme`, `method`, `path`, `operation`, and `body` when named; on `git_push` `host`, `repo`, `updates`)
//! and `session` (agent, owner, labels, model, cost_usd, tool_calls, risk_score, environment, and `sandbox`:
//! `egress`, `brokered`). It returns `true` (the rule fires: deny, or the
//! rule's `action`), `false` (allow), or Omnigent's map `{"result": "DENY"|"ASK"|"ALLOW", "reason": ...}`.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Builtin, BuiltinDef, Outcome, RuleCtx, build_with, schema_of};
use crate::event::Event;
use crate::state::SessionState;
use crate::tools::ToolUse;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CelParams {
    /// The expression, e.g. `event.tools.exists(t, t.kind == "shell" && t.command.contains("curl"))`.
    pub expression: String,
    /// Reason given when the expression fires and returns no reason of its own.
    #[serde(default = "default_reason")]
    pub reason: String,
}

fn default_reason() -> String {
    "Denied by policy.".into()
}

pub const CEL: BuiltinDef = BuiltinDef {
    name: "cel",
    summary: "a CEL expression over the event decides",
    phases: &paddock_api::Phase::ALL,
    schema: schema_of::<CelParams>,
    build: |v| {
        build_with(v, |p: CelParams| {
            let program =
                cel::Program::compile(&p.expression).map_err(|e| format!("`expression` does not compile: {e}"))?;
            let content = CONTENT_FIELDS.iter().filter(|f| p.expression.contains(**f)).copied().collect();
            Ok(CelRule { program, reason: p.reason, content })
        })
    },
};

struct CelRule {
    program: cel::Program,
    reason: String,
    /// The bulky fields the expression names; the others are left out of `event` so that a rule about
    /// tool calls does not convert a 200 KB request body on every evaluation.
    content: Vec<&'static str>,
}

const CONTENT_FIELDS: &[&str] = &["body", "messages", "system", "output", "text"];

thread_local! {
    // Building the standard library costs more than most evaluations: once per thread, then a child
    // scope per evaluation.
    static ROOT: cel::Context<'static, 'static> = cel::Context::default();
}

impl Builtin for CelRule {
    fn evaluate(&self, _: &RuleCtx, event: &Event, tools: &[ToolUse], state: &SessionState) -> Result<Outcome, String> {
        let mut ev = serde_json::to_value(event.clone_without_content()).map_err(|e| e.to_string())?;
        for field in &self.content {
            let v = match *field {
                "body" => event.body.clone().unwrap_or(Value::Null),
                "messages" => Value::Array(event.messages.clone()),
                "system" => event.system.clone().unwrap_or(Value::Null),
                "output" => event.output.clone().unwrap_or(Value::Null),
                _ => event.text.clone().map_or(Value::Null, Value::String),
            };
            ev[*field] = v;
        }
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| json!({"name": t.name, "kind": t.kind.as_str(), "args": t.args, "command": t.command().unwrap_or_default(), "paths": t.paths()}))
            .collect();
        ev["tools"] = Value::Array(tools);
        let session = json!({
            "agent": state.agent, "owner": state.owner, "labels": state.labels, "model": state.model,
            "cost_usd": state.usage.cost_usd, "tool_calls": state.tool_calls, "risk_score": state.risk_score,
            "environment": state.environment,
            "sandbox": {"egress": state.sandbox.egress, "brokered": state.sandbox.brokered},
        });
        let result = ROOT.with(|root| {
            let mut ctx = root.new_inner_scope();
            ctx.add_variable("event", ev).map_err(|e| e.to_string())?;
            ctx.add_variable("session", session).map_err(|e| e.to_string())?;
            self.program.execute(&ctx).map_err(|e| format!("expression failed: {e}"))
        })?;
        match result {
            cel::Value::Bool(true) => Ok(Outcome::deny(self.reason.clone())),
            cel::Value::Bool(false) => Ok(Outcome::allow()),
            cel::Value::Map(m) => {
                let get = |k: &str| m.map.iter().find(|(key, _)| key.to_string() == k).map(|(_, v)| v.clone());
                let reason = match get("reason") {
                    Some(cel::Value::String(s)) => s.to_string(),
                    _ => self.reason.clone(),
                };
                match get("result") {
                    Some(cel::Value::String(r)) => match r.to_ascii_uppercase().as_str() {
                        "DENY" => Ok(Outcome::deny(reason)),
                        "ASK" => Ok(Outcome::ask(reason)),
                        "ALLOW" => Ok(Outcome::allow()),
                        other => Err(format!("`result` must be DENY, ASK or ALLOW, got {other}")),
                    },
                    _ => Err("the returned map needs a string `result`".into()),
                }
            }
            other => Err(format!("expression must return a bool or a map with `result`, got {other:?}")),
        }
    }
}
