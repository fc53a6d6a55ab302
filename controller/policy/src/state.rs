//! What the engine knows about a session between events, and the updates a decision asks for.
//! The gateway persists this (ledger); the engine only reads it and returns updates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cost::Metering;
use crate::written::{Written, WrittenFiles};

/// The state of one session as the engine sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionState {
    pub session: String,
    pub agent: String,
    pub labels: BTreeMap<String, String>,
    /// The user the session acts for.
    pub owner: String,
    pub harness: Option<String>,
    /// The model in use (the Session's override, else the Agent's).
    pub model: Option<String>,
    /// The Session's own budget; it can only lower a `cost_budget` limit.
    pub budget_usd: Option<f64>,
    /// `owner/repo` of the workspace's origin, so `git push origin` can be resolved.
    pub workspace_repo: Option<String>,
    /// The sandbox the session runs in, for `enforce_sandbox`.
    pub sandbox: SandboxFacts,
    /// The environment (`paddock.dev/environment` label of the namespace, or `local`).
    pub environment: Option<String>,
    /// Cumulative usage of this session and its sub-agents.
    pub usage: UsageTotals,
    /// The owner's spend across sessions for the current UTC day.
    pub user_daily: UserDaily,
    /// Allowed tool calls so far.
    pub tool_calls: u64,
    pub risk_score: i64,
    /// Private state of rules, keyed `policy/rule/name`.
    pub values: BTreeMap<String, Value>,
    /// The files this session wrote, so that running one is judged by what was written into it
    /// (see [`crate::written`]).
    pub written: WrittenFiles,
    /// The Session's own rules (`spec.policy.rules`), kept with its state so that a restarted gateway compiles
    /// them again ([`crate::compile_session_rules`]); the engine reads them only as that compiled policy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<paddock_api::PolicyRule>,
    /// When the session's token stops working (Unix seconds), if its creator gave it a lifetime: the
    /// backstop for a token nobody could revoke (a Session deleted while the gateway was down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<i64>,
}

/// Facts about the sandbox a session runs in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxFacts {
    pub runtime_class_name: Option<String>,
    pub egress: Vec<String>,
    pub writable_paths: Vec<String>,
    /// The hosts (`host:port`) whose requests the gateway's credential broker sees and signs.
    pub brokered: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageTotals {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cost_usd: f64,
    /// Tokens of models without a price; their cost is unknown, not zero.
    pub unpriced_tokens: u64,
    pub unpriced_models: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserDaily {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub cost_usd: f64,
    /// The highest daily threshold the user approved today.
    pub approved_usd: f64,
}

/// A change to the state that a decision carries; applied when the event goes ahead (allowed, or asked
/// and approved).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StateUpdate {
    Set {
        key: String,
        value: Value,
    },
    Increment {
        key: String,
        by: f64,
    },
    /// Append to a list, keeping only the last `keep` items.
    Push {
        key: String,
        value: Value,
        keep: usize,
    },
    Delete {
        key: String,
    },
    AddRisk {
        points: i64,
    },
    CountToolCall,
    ApproveUserDaily {
        usd: f64,
    },
    /// The session wrote a file (see [`crate::written`]); `tentative` when a model's response announced the
    /// write and it may still be refused.
    RecordWrite {
        path: String,
        file: Written,
        #[serde(default)]
        tentative: bool,
    },
    /// The session wrote files whose names the gate could not tell; says how.
    UnknownWrites {
        how: String,
    },
}

impl SessionState {
    /// Applies updates in order.
    pub fn apply(&mut self, updates: &[StateUpdate]) {
        for u in updates {
            match u {
                StateUpdate::Set { key, value } => {
                    self.values.insert(key.clone(), value.clone());
                }
                StateUpdate::Increment { key, by } => {
                    let cur = self.values.get(key).and_then(Value::as_f64).unwrap_or(0.0);
                    self.values.insert(key.clone(), serde_json::json!(cur + by));
                }
                StateUpdate::Push { key, value, keep } => {
                    let entry = self.values.entry(key.clone()).or_insert_with(|| Value::Array(Vec::new()));
                    if !entry.is_array() {
                        *entry = Value::Array(Vec::new());
                    }
                    let list = entry.as_array_mut().expect("array");
                    list.push(value.clone());
                    let excess = list.len().saturating_sub(*keep);
                    list.drain(..excess);
                }
                StateUpdate::Delete { key } => {
                    self.values.remove(key);
                }
                StateUpdate::AddRisk { points } => self.risk_score += points,
                StateUpdate::CountToolCall => self.tool_calls += 1,
                StateUpdate::ApproveUserDaily { usd } => {
                    self.user_daily.approved_usd = self.user_daily.approved_usd.max(*usd)
                }
                StateUpdate::RecordWrite { path, file, tentative } => {
                    self.written.record(path, file.clone(), *tentative)
                }
                StateUpdate::UnknownWrites { how } => self.written.note_unknown(how),
            }
        }
    }

    /// Records a model call's usage. Always applied: the tokens were spent whatever the verdict.
    pub fn meter(&mut self, m: &Metering) {
        let u = &mut self.usage;
        u.input_tokens = u.input_tokens.saturating_add(m.usage.input_tokens);
        u.output_tokens = u.output_tokens.saturating_add(m.usage.output_tokens);
        u.cache_read_tokens = u.cache_read_tokens.saturating_add(m.usage.cache_read_input_tokens);
        u.cache_write_tokens = u.cache_write_tokens.saturating_add(m.usage.cache_creation_input_tokens);
        match m.cost_usd {
            Some(c) => {
                u.cost_usd += c;
                self.user_daily.cost_usd += c;
            }
            None => {
                u.unpriced_tokens = u.unpriced_tokens.saturating_add(m.tokens());
                if !u.unpriced_models.contains(&m.model) {
                    u.unpriced_models.push(m.model.clone());
                }
            }
        }
    }

    pub fn value(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }
}
