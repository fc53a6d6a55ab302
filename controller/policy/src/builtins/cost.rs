//! `cost_budget` and `user_daily_cost_budget`, with Omnigent's parameters: soft asks at thresholds
//! (each approved checkpoint is remembered; a declined one asks again), a hard limit that blocks
//! `expensive_models` (a downgrade gate; all models when the list is empty), and an explicit answer for
//! models without a price.

use paddock_api::Phase;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, Builtin, BuiltinDef, Outcome, RuleCtx, build_with, schema_of};
use crate::event::Event;
use crate::state::{SessionState, StateUpdate};
use crate::tools::ToolUse;

/// Parameters of `cost_budget` and `user_daily_cost_budget`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetParams {
    /// Hard limit in US dollars. At or above it, requests on `expensive_models` are denied. Optional when
    /// `ask_thresholds_usd` is given. A Session's `budgetUsd` lowers it.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// Spend levels at which a human is asked once whether to continue.
    #[serde(default)]
    pub ask_thresholds_usd: Vec<f64>,
    /// Models the hard limit blocks (case-insensitive substrings of the model id). Empty or absent blocks
    /// every model: a hard stop.
    #[serde(default)]
    pub expensive_models: Vec<String>,
    /// What to do once a model without a catalog price has been used, since spend can no longer be
    /// enforced: `ask` once (default, as Omnigent does) or `deny`.
    #[serde(default = "super::ask")]
    pub unpriced_action: Action,
}

impl BudgetParams {
    fn check(self) -> Result<BudgetParams, String> {
        if self.max_cost_usd.is_none() && self.ask_thresholds_usd.is_empty() {
            return Err("set `max_cost_usd`, `ask_thresholds_usd`, or both".into());
        }
        if let Some(m) = self.max_cost_usd
            && !(m.is_finite() && m > 0.0)
        {
            return Err(format!("`max_cost_usd` must be more than 0, got {m}"));
        }
        for t in &self.ask_thresholds_usd {
            if !(t.is_finite() && *t > 0.0) || self.max_cost_usd.is_some_and(|m| *t >= m) {
                return Err(format!(
                    "each of `ask_thresholds_usd` must be more than 0 and below `max_cost_usd`, got {t}"
                ));
            }
        }
        Ok(self)
    }
}

const PHASES: &[Phase] = &[Phase::Request, Phase::LlmRequest, Phase::ToolCall];

pub const COST_BUDGET: BuiltinDef = BuiltinDef {
    name: "cost_budget",
    summary: "session budget: soft asks at thresholds, hard stop or downgrade gate at max_cost_usd",
    phases: PHASES,
    schema: schema_of::<BudgetParams>,
    build: |v| build_with(v, |p: BudgetParams| Ok(Budget { p: p.check()?, scope: Scope::Session })),
};

pub const USER_DAILY_COST_BUDGET: BuiltinDef = BuiltinDef {
    name: "user_daily_cost_budget",
    summary: "the same gating over the owner's spend across sessions for the current UTC day",
    phases: PHASES,
    schema: schema_of::<BudgetParams>,
    build: |v| {
        build_with(v, |p: BudgetParams| {
            if p.max_cost_usd.is_none() {
                return Err("`max_cost_usd` is required".into());
            }
            Ok(Budget { p: p.check()?, scope: Scope::UserDaily })
        })
    },
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scope {
    Session,
    UserDaily,
}

struct Budget {
    p: BudgetParams,
    scope: Scope,
}

impl Budget {
    /// The hard limit that applies to `model`, if it is blocked there, and what counts against it.
    fn limit_for(&self, model: &str, state: &SessionState) -> Option<(f64, f64)> {
        let max = self.max_usd(state)?;
        let spent = match self.scope {
            Scope::Session => state.usage.cost_usd,
            Scope::UserDaily => state.user_daily.cost_usd,
        };
        self.blocks(model).then_some((max, spent))
    }

    /// The hard limit: the rule's, lowered by the Session's own budget.
    fn max_usd(&self, state: &SessionState) -> Option<f64> {
        match (self.p.max_cost_usd, self.scope, state.budget_usd) {
            (Some(m), Scope::Session, Some(b)) => Some(m.min(b)),
            (None, Scope::Session, Some(b)) => Some(b),
            (m, _, _) => m,
        }
    }

    /// Whether the hard limit stops `model` (every model when `expensive_models` is empty).
    fn blocks(&self, model: &str) -> bool {
        self.p.expensive_models.is_empty()
            || self.p.expensive_models.iter().any(|m| model.to_ascii_lowercase().contains(&m.to_ascii_lowercase()))
    }
}

impl Builtin for Budget {
    fn headroom_usd(&self, model: &str, state: &SessionState) -> Option<f64> {
        self.limit_for(model, state).map(|(max, spent)| (max - spent).max(0.0))
    }

    fn evaluate(&self, ctx: &RuleCtx, event: &Event, _: &[ToolUse], state: &SessionState) -> Result<Outcome, String> {
        let who = match self.scope {
            Scope::Session => "this session",
            Scope::UserDaily => "you today",
        };
        let usage = &state.usage;
        let (spent, approved) = match self.scope {
            Scope::Session => {
                (usage.cost_usd, state.value(&ctx.key("approved_usd")).and_then(|v| v.as_f64()).unwrap_or(0.0))
            }
            Scope::UserDaily => (state.user_daily.cost_usd, state.user_daily.approved_usd),
        };
        let max = self.max_usd(state);
        if let Some(max) = max
            && spent >= max
        {
            let model = event.model.as_deref().or(state.model.as_deref()).unwrap_or("");
            if self.blocks(model) {
                let what = if self.p.expensive_models.is_empty() {
                    "no further model use is allowed".to_owned()
                } else {
                    format!("`{model}` is blocked; switch to a cheaper model")
                };
                let reason = match event.phase {
                    Phase::ToolCall => format!(
                        "Budget exhausted: {who} spent ${spent:.2} of ${max:.2} and {what}. Stop and tell the user; do not retry."
                    ),
                    _ => format!("Budget exhausted: {who} spent ${spent:.2} of ${max:.2}; {what}."),
                };
                return Ok(Outcome::deny(reason));
            }
        }
        // Unpriced usage is asked about only below the hard limit: over it, the deny above stands. A request
        // to a model without a price is asked about before it leaves: the gateway cannot hold its worst case,
        // so its first answer could pass any limit.
        let unpriced_request = (event.phase == Phase::LlmRequest)
            .then_some(event.model.as_deref())
            .flatten()
            .filter(|m| ctx.catalog.lookup(m).is_none());
        if usage.unpriced_tokens > 0 || unpriced_request.is_some() {
            let key = ctx.key("unpriced_approved");
            if state.value(&key).and_then(|v| v.as_bool()) != Some(true) {
                let mut unpriced = usage.unpriced_models.clone();
                if let Some(m) = unpriced_request
                    && !unpriced.iter().any(|u| u == m)
                {
                    unpriced.push(m.to_owned());
                }
                let models = unpriced.join(", ");
                let reason = match self.p.unpriced_action {
                    Action::Ask => format!(
                        "model {models} has no price in the model catalog, so the budget cannot be enforced for it; continue without budget enforcement?"
                    ),
                    Action::Deny => format!(
                        "model {models} has no price in the model catalog, so the budget cannot be enforced for it"
                    ),
                };
                return Ok(Outcome::act(self.p.unpriced_action, reason)
                    .with(vec![StateUpdate::Set { key, value: true.into() }]));
            }
        }
        let crossed = self
            .p
            .ask_thresholds_usd
            .iter()
            .copied()
            .filter(|t| *t > approved && spent >= *t)
            .fold(None, |acc: Option<f64>, t| Some(acc.map_or(t, |a| a.max(t))));
        if let Some(t) = crossed {
            let limit = max.map(|m| format!(" (limit ${m:.2})")).unwrap_or_default();
            let update = match self.scope {
                Scope::Session => StateUpdate::Set { key: ctx.key("approved_usd"), value: t.into() },
                Scope::UserDaily => StateUpdate::ApproveUserDaily { usd: t },
            };
            return Ok(Outcome::ask(format!(
                "Spend by {who} is ${spent:.2}, past the ${t:.2} checkpoint{limit}. Continue?"
            ))
            .with(vec![update]));
        }
        Ok(Outcome::allow())
    }
}
