//! What the engine decides on: one event at one phase. The same JSON shape is used by the gateway's
//! admission API, the harness hooks and `paddock test` files.

use std::collections::BTreeMap;

use paddock_api::Phase;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::tools::ToolUse;

/// One event. Only the fields of its phase are meaningful:
/// - `request`: `text` (the user's prompt)
/// - `llm_request`: `model`, and the outgoing request as `body` (any wire format) and/or `system` +
///   `messages`; `max_tokens`; `provider_features`
/// - `llm_response`: `model`, `usage`, `tool_calls` the model asks for, `text`
/// - `tool_call`: `tool`, `args`, `tool_id`, `git_remotes` (from a hook inside the workspace)
/// - `tool_result`: `tool`, `args`, `output`, `is_error`
/// - `response`: `text` (the final answer)
/// - `egress`: `host`, `port`, `scheme` (`https` for a CONNECT tunnel or a brokered request, `http` for a
///   plain-HTTP request); and where the gateway sees the request (brokered or plain HTTP): `method`, `path`
///   (with its query), `body` (a JSON body, when it is JSON) and `operation` (a GraphQL request's operation)
/// - `git_push`: `host`, `repo` (`owner/name`, from the URL path), `updates` (every ref update of the push,
///   with `fast_forward` worked out from the git objects, not from the command line)
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub args: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// `tool_call` from a hook running inside the workspace (Claude Code): the remotes of the repository
    /// the tool runs in, read there (`git remote get-url --push --all`: name → push URLs, `insteadOf`
    /// applied); empty when that directory is no git repository. The `github` rule judges pushes by
    /// these rather than by the session's `workspace_repo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_remotes: Option<BTreeMap<String, Vec<String>>>,
    /// `llm_request`: what the request asks the provider to fetch or keep (`url_inputs`, `stored_state`,
    /// `background`), as the gateway found it; the `provider_features` rule allows or refuses them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_features: Vec<String>,
    /// `egress`, `git_push`: the destination's host name as the client named it (lowercase, no port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `egress`: the destination's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `egress`: `https` or `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// `egress`: the request's method, when the gateway sees the request (absent for a tunnel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `egress`: the request's path and query, when the gateway sees the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `egress`: a GraphQL request's operation (`POST /graphql` and GitHub Enterprise's `/api/graphql`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<GraphqlOperation>,
    /// `git_push`: the repository, `owner/name` (`.git` removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// `git_push`: every ref update the push asks for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<RefUpdate>,
}

/// The all-zero object id git uses for "no object": `old` of a creation, `new` of a deletion.
pub const ZERO_OID: &str = "0000000000000000000000000000000000000000";

/// One ref update of a git push (`git_push`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefUpdate {
    /// The full ref name, e.g. `refs/heads/main` or `refs/tags/v1`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// 40 hex digits; all zeros for a creation.
    pub old: String,
    /// 40 hex digits; all zeros for a deletion.
    pub new: String,
    /// Whether `old` is an ancestor of `new` in the remote's history plus the pushed objects (true for a
    /// creation; false for a deletion and whenever it cannot be shown).
    #[serde(default)]
    pub fast_forward: bool,
}

impl RefUpdate {
    /// `old` is all zeros (40 for SHA-1, 64 for SHA-256 repositories).
    pub fn is_create(&self) -> bool {
        is_zero_oid(&self.old)
    }
    /// `new` is all zeros.
    pub fn is_delete(&self) -> bool {
        is_zero_oid(&self.new)
    }
}

/// Whether an object id is git's "no object" (all zeros, of either hash's length).
pub fn is_zero_oid(oid: &str) -> bool {
    matches!(oid.len(), 40 | 64) && oid.bytes().all(|b| b == b'0')
}

/// A GraphQL request's operation: its type and the names of its top-level fields (the mutations it runs),
/// with each field's arguments where they are literals or variables given in the request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlOperation {
    /// `query`, `mutation` or `subscription`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The operation's name, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its top-level fields, e.g. `[{name: deleteRef, args: {input: {refId: …}}}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<GraphqlField>,
}

/// A top-level field of a GraphQL operation, with its arguments resolved to JSON (variables substituted).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlField {
    pub name: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub args: Value,
}

/// A tool call the model asks for (`llm_response`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    pub name: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub args: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Tokens of one model call. `input_tokens` excludes cache reads and writes (Anthropic's convention; the
/// gateway converts OpenAI's `prompt_tokens`, which include cached tokens).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    #[serde(default, alias = "prompt_tokens")]
    pub input_tokens: u64,
    #[serde(default, alias = "completion_tokens")]
    pub output_tokens: u64,
    #[serde(default, alias = "cache_read_tokens")]
    pub cache_read_input_tokens: u64,
    #[serde(default, alias = "cache_write_tokens")]
    pub cache_creation_input_tokens: u64,
}

/// The most tokens a provider may report in any one count of one request: fifty times the largest context
/// window of any model. A larger count comes from a broken or hostile provider; it is not used (the gateway
/// charges the request's worst case instead), so no count can overflow a total or a ledger column.
pub const MAX_PLAUSIBLE_TOKENS: u64 = 100_000_000;

impl Usage {
    /// Every count is one a real provider could report (see [`MAX_PLAUSIBLE_TOKENS`]).
    pub fn is_plausible(&self) -> bool {
        [self.input_tokens, self.output_tokens, self.cache_read_input_tokens, self.cache_creation_input_tokens]
            .iter()
            .all(|n| *n <= MAX_PLAUSIBLE_TOKENS)
    }
}

impl Event {
    /// A copy without the request and result content (body, messages, system, output, text), which can be
    /// large; for consumers that look only at the event's shape.
    pub fn clone_without_content(&self) -> Event {
        Event {
            phase: self.phase,
            tool: self.tool.clone(),
            args: self.args.clone(),
            tool_id: self.tool_id.clone(),
            output: None,
            is_error: self.is_error,
            tool_calls: self.tool_calls.clone(),
            model: self.model.clone(),
            body: None,
            system: None,
            messages: Vec::new(),
            max_tokens: self.max_tokens,
            text: None,
            usage: self.usage,
            git_remotes: self.git_remotes.clone(),
            provider_features: self.provider_features.clone(),
            host: self.host.clone(),
            port: self.port,
            scheme: self.scheme.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            operation: self.operation.clone(),
            repo: self.repo.clone(),
            updates: self.updates.clone(),
        }
    }

    /// The tools this event is about: the one tool of `tool_call`/`tool_result`, or every tool call of an
    /// `llm_response`, normalised across harnesses.
    pub fn tool_uses(&self) -> Vec<ToolUse> {
        match self.phase {
            Phase::ToolCall | Phase::ToolResult => {
                self.tool.iter().map(|t| ToolUse::new(t, self.args.clone(), self.tool_id.clone())).collect()
            }
            Phase::LlmResponse => {
                self.tool_calls.iter().map(|c| ToolUse::new(&c.name, c.args.clone(), c.id.clone())).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Visits every string of the event: prompt text, system prompt, every message, the raw body, tool
    /// output, tool arguments and requested tool calls, keys included. PII scanning uses this so that
    /// nothing escapes it.
    pub fn for_each_text(&self, f: &mut dyn FnMut(&str)) {
        if let Some(t) = &self.text {
            f(t);
        }
        for v in self.system.iter().chain(&self.messages).chain(&self.body).chain(&self.output).chain([&self.args]) {
            walk_strings(v, f);
        }
        for c in &self.tool_calls {
            f(&c.name);
            walk_strings(&c.args, f);
        }
    }

    /// The text of the last user message of an `llm_request`, or the prompt of a `request`.
    pub fn last_user_text(&self) -> Option<String> {
        if self.phase == Phase::Request {
            return self.text.clone();
        }
        let from_messages = |msgs: &[Value]| {
            msgs.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")).map(message_text)
        };
        if !self.messages.is_empty() {
            return from_messages(&self.messages);
        }
        let body = self.body.as_ref()?;
        if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
            return from_messages(msgs);
        }
        // OpenAI Responses API: `input` is a string or a list of items.
        match body.get("input")? {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => from_messages(items),
            _ => None,
        }
    }
}

/// Whether the last user turn of a request carries tool results (an agent loop mid-task).
pub fn last_turn_is_tool_result(event: &Event) -> bool {
    let msgs: &[Value] = if !event.messages.is_empty() {
        &event.messages
    } else {
        match event.body.as_ref().and_then(|b| b.get("messages").or_else(|| b.get("input"))).and_then(Value::as_array) {
            Some(m) => m,
            None => return false,
        }
    };
    let Some(last) = msgs.last() else { return false };
    let ty = |v: &Value| v.get("type").and_then(Value::as_str).map(str::to_owned);
    last.get("role").and_then(Value::as_str) == Some("tool")
        || ty(last).is_some_and(|t| t == "function_call_output")
        || last
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|parts| parts.iter().any(|p| ty(p).is_some_and(|t| t == "tool_result")))
}

/// All text of a message: a string `content`, or the `text` of its parts.
pub fn message_text(m: &Value) -> String {
    let mut out = String::new();
    match m.get("content") {
        Some(Value::String(s)) => out.push_str(s),
        Some(Value::Array(parts)) => {
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(t);
                }
            }
        }
        _ => {}
    }
    out
}

/// Calls `f` on every string in a JSON value, object keys included (a secret can be a key), depth-first.
/// Depth is bounded by serde_json's recursion limit (128) on whatever was parsed.
pub fn walk_strings(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|x| walk_strings(x, f)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            f(k);
            walk_strings(x, f)
        }),
        _ => {}
    }
}

/// Rewrites every string in a JSON value in place, object keys included.
pub fn map_strings(v: &mut Value, f: &mut dyn FnMut(&str) -> Option<String>) {
    match v {
        Value::String(s) => {
            if let Some(new) = f(s) {
                *s = new;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| map_strings(x, f)),
        Value::Object(o) => {
            let entries = std::mem::take(o);
            for (k, mut x) in entries {
                map_strings(&mut x, f);
                o.insert(f(&k).unwrap_or(k), x);
            }
        }
        _ => {}
    }
}
