//! `deny_trivial_to_expensive_model`: a deterministic classifier (no judge model) decides whether the
//! last user message is trivial; trivial requests to an expensive model are denied or routed to
//! `cheap_model`.

use paddock_api::Phase;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{Builtin, BuiltinDef, Mutation, Outcome, RuleCtx, build_with, schema_of};
use crate::event::{Event, last_turn_is_tool_result};
use crate::state::SessionState;
use crate::tools::ToolUse;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingParams {
    /// Models (ids from the catalog; aliases and dated ids match too) that trivial requests may not use.
    pub expensive_models: Vec<String>,
    /// `deny` the request, or `route` it to `cheap_model`.
    #[serde(default)]
    pub action: RouteAction,
    /// The model trivial requests go to with `action: route`.
    #[serde(default)]
    pub cheap_model: Option<String>,
    /// Longest message (in characters) that can count as trivial.
    #[serde(default = "default_max_chars")]
    pub max_trivial_chars: usize,
}

fn default_max_chars() -> usize {
    280
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RouteAction {
    #[default]
    Deny,
    Route,
}

pub const DENY_TRIVIAL_TO_EXPENSIVE_MODEL: BuiltinDef = BuiltinDef {
    name: "deny_trivial_to_expensive_model",
    summary: "classify the request; deny or route trivial ones away from expensive models",
    phases: &[Phase::LlmRequest],
    schema: schema_of::<RoutingParams>,
    build: |v| {
        build_with(v, |p: RoutingParams| {
            if p.expensive_models.is_empty() {
                return Err("`expensive_models` must name at least one model".into());
            }
            if p.action == RouteAction::Route {
                let cheap = p.cheap_model.as_deref().ok_or("`action: route` needs `cheap_model`")?;
                if paddock_api::catalog::ModelCatalog::builtin().lookup(cheap).is_none() {
                    return Err(format!("`cheap_model` `{cheap}` is not in the model catalog"));
                }
            }
            Ok(Routing { p })
        })
    },
};

struct Routing {
    p: RoutingParams,
}

impl Builtin for Routing {
    fn evaluate(&self, ctx: &RuleCtx, event: &Event, _: &[ToolUse], state: &SessionState) -> Result<Outcome, String> {
        let Some(model) = event.model.as_deref().or(state.model.as_deref()) else { return Ok(Outcome::allow()) };
        let id_of = |m: &str| ctx.catalog.lookup(m).map_or_else(|| m.to_ascii_lowercase(), |i| i.id.clone());
        let target = id_of(model);
        if !self.p.expensive_models.iter().any(|m| id_of(m) == target) {
            return Ok(Outcome::allow());
        }
        if last_turn_is_tool_result(event) {
            return Ok(Outcome::allow());
        }
        let text = event.last_user_text().unwrap_or_default();
        if classify(&text, self.p.max_trivial_chars) != Complexity::Trivial {
            return Ok(Outcome::allow());
        }
        match (self.p.action, &self.p.cheap_model) {
            (RouteAction::Route, Some(cheap)) => {
                let mut routed = event.clone();
                routed.model = Some(cheap.clone());
                if let Some(Value::Object(body)) = routed.body.as_mut()
                    && body.contains_key("model")
                {
                    body.insert("model".into(), Value::String(cheap.clone()));
                }
                let mut o = Outcome::allow();
                o.reason = format!("trivial request routed from `{model}` to `{cheap}`");
                o.rewrite = Some((routed, Mutation::RouteModel { from: model.to_owned(), to: cheap.clone() }));
                Ok(o)
            }
            _ => Ok(Outcome::deny(format!(
                "`{model}` is reserved for substantial work and this request looks trivial; use a cheaper model"
            ))),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Complexity {
    Trivial,
    Complex,
}

const TASK_WORDS: &[&str] = &[
    "implement",
    "refactor",
    "debug",
    "fix",
    "write",
    "build",
    "design",
    "analyze",
    "analyse",
    "optimize",
    "optimise",
    "migrate",
    "review",
    "test",
    "create",
    "add",
    "deploy",
    "investigate",
    "compare",
    "plan",
    "architect",
    "rewrite",
    "port",
    "profile",
    "benchmark",
    "summarize",
    "summarise",
];

/// Trivial: short, one or two lines, no code, no paths, no error output, and no task verb. Everything
/// else is complex. Deliberately conservative: a wrong "trivial" costs the user a worse answer, a wrong
/// "complex" only costs money. Task verbs match as word prefixes (`fix` covers `fixing`); over-matching
/// (`add` in `address`) only makes a request count as complex, the safe side.
pub fn classify(text: &str, max_chars: usize) -> Complexity {
    let t = text.trim();
    let lower = t.to_lowercase();
    let complex = t.is_empty()
        || t.chars().count() > max_chars
        || t.lines().count() > 2
        || t.contains("```")
        || t.contains("::")
        || lower.contains("traceback")
        || lower.contains("error")
        || lower.contains("exception")
        || t.split_whitespace().any(|w| {
            w.contains('/')
                || (w.contains('.')
                    && w.rsplit('.').next().is_some_and(|ext| {
                        (1..=4).contains(&ext.len()) && ext.chars().all(|c| c.is_ascii_alphabetic())
                    }))
        })
        || lower.contains("explain why")
        || lower.split(|c: char| !c.is_alphanumeric()).any(|word| TASK_WORDS.iter().any(|w| word.starts_with(w)));
    if complex { Complexity::Complex } else { Complexity::Trivial }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier() {
        for t in ["hi", "thanks!", "what is 2+2?", "ok, continue", "What's the capital of France?"] {
            assert_eq!(classify(t, 280), Complexity::Trivial, "{t}");
        }
        for t in [
            "Fix the failing test in src/cart.rs",
            "implement a LRU cache",
            "why does this panic?\n```\nthread main panicked\n```",
            "I get Error: connection refused",
            "look at main.py",
            &"word ".repeat(100),
            "",
        ] {
            assert_eq!(classify(t, 280), Complexity::Complex, "{t}");
        }
    }
}
