//! The four wire formats the gateway speaks — Anthropic Messages, OpenAI Chat Completions, OpenAI Responses
//! and Google's Gemini API — for the parts it must understand: a request's model, stream flag and output
//! limit; a response's usage and tool calls; and the rewrite that removes a denied tool call before the
//! client sees it. Streaming responses go through a [`Gate`] per format.
//!
//! The rewrite, per format (a denied call is removed and the turn ends with a text that says why):
//! - Anthropic: the `tool_use` block is dropped, later blocks are renumbered, a `text` block with the notes is
//!   added last, and `stop_reason: tool_use` becomes `end_turn` when no tool call is left.
//! - Chat: the call is dropped from `tool_calls` (renumbered), the notes are appended to the content, and
//!   `finish_reason: tool_calls` becomes `stop` when no call is left.
//! - Responses: the `function_call` (or `custom_tool_call`, `local_shell_call`) item is dropped and a `message`
//!   item with the notes is added last, in the stream and in `response.completed`; any other `…_call` item (a
//!   tool the gateway never offers) is dropped the same way without a decision.
//! - Gemini: the `functionCall` part is dropped and a `text` part with the notes is added to its candidate.

pub mod anthropic;
pub mod chat;
pub mod gemini;
pub mod provider_side;
pub mod responses;
pub mod sse;

use paddock_policy::Usage;
use serde_json::{Value, json};

pub use sse::{Sse, SseParser};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wire {
    Anthropic,
    Chat,
    Responses,
    /// Google's Gemini API (`generateContent`); its model and stream flag are in the path.
    Gemini,
}

impl Wire {
    pub fn as_str(self) -> &'static str {
        match self {
            Wire::Anthropic => "anthropic",
            Wire::Chat => "openai-chat",
            Wire::Responses => "openai-responses",
            Wire::Gemini => "gemini",
        }
    }

    /// The upstream path and query, below the provider's base URL. The client's query goes on for the
    /// Anthropic and OpenAI formats (Claude Code sends `?beta=true`); Gemini's names the model and carries
    /// the client's key (`?key=`), so the gateway writes its own.
    pub fn upstream_path(self, model: &str, stream: bool, query: Option<&str>) -> String {
        let path = match self {
            Wire::Anthropic => "/v1/messages",
            Wire::Chat => "/v1/chat/completions",
            Wire::Responses => "/v1/responses",
            Wire::Gemini => return gemini::upstream_path(model, stream),
        };
        match query {
            Some(q) if !q.is_empty() => format!("{path}?{q}"),
            _ => path.to_owned(),
        }
    }

    /// An error body in this format, so that SDKs show the message.
    pub fn error_body(self, status: u16, message: &str) -> Value {
        match self {
            Wire::Anthropic => {
                json!({"type": "error", "error": {"type": anthropic_error_type(status), "message": message}})
            }
            Wire::Chat | Wire::Responses => json!({"error": {
                "message": message,
                "type": openai_error_type(status),
                "param": null,
                "code": openai_error_code(status),
            }}),
            Wire::Gemini => gemini::error_body(status, message),
        }
    }

    pub fn gate(self, include_usage: bool) -> Box<dyn Gate> {
        match self {
            Wire::Anthropic => Box::new(anthropic::StreamGate::default()),
            Wire::Chat => Box::new(chat::StreamGate::new(include_usage)),
            Wire::Responses => Box::new(responses::StreamGate::default()),
            Wire::Gemini => Box::new(gemini::StreamGate::default()),
        }
    }

    /// Reads what the gateway needs from a request body (Gemini's: [`gemini::request_info`], which needs
    /// the path too).
    pub fn request_info(self, body: &Value) -> Result<RequestInfo, String> {
        let obj = body.as_object().ok_or("the request body must be a JSON object")?;
        let model = match obj.get("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
            Some(Value::String(_)) | None => return Err("`model` is required".into()),
            Some(_) => return Err("`model` must be a string".into()),
        };
        let stream = match obj.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("`stream` must be true or false".into()),
        };
        // Every output limit the request carries is checked; the smallest is the one the provider honours.
        let mut max_tokens: Option<u64> = None;
        for f in self.output_limit_fields() {
            match obj.get(*f) {
                None | Some(Value::Null) => {}
                Some(v) => match v.as_u64() {
                    Some(0) => return Err(format!("`{f}` must be at least 1")),
                    Some(n) => max_tokens = Some(max_tokens.map_or(n, |m| m.min(n))),
                    None => return Err(format!("`{f}` must be a positive integer")),
                },
            }
        }
        if self == Wire::Anthropic && max_tokens.is_none() {
            return Err("`max_tokens` is required".into());
        }
        if !matches!(obj.get("stream_options"), None | Some(Value::Null) | Some(Value::Object(_))) {
            return Err("`stream_options` must be an object".into());
        }
        if self == Wire::Chat
            && !matches!(obj.get("n"), None | Some(Value::Null))
            && obj.get("n").and_then(Value::as_u64) != Some(1)
        {
            return Err(
                "`n` other than 1 is not supported: each choice's tool calls would need their own decisions, and \
                 each choice's output its own budget hold"
                    .into(),
            );
        }
        let include_usage = self == Wire::Chat
            && obj.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool) == Some(true);
        Ok(RequestInfo { model, stream, max_tokens, client_wants_usage: include_usage })
    }

    /// The fields that limit a response's output tokens (reasoning and thinking included, as every provider
    /// counts them as output).
    fn output_limit_fields(self) -> &'static [&'static str] {
        match self {
            Wire::Anthropic => &["max_tokens"],
            Wire::Chat => &["max_completion_tokens", "max_tokens"],
            Wire::Responses => &["max_output_tokens"],
            Wire::Gemini => &[],
        }
    }

    /// Makes the forwarded request's output limit no larger than `cap`, the output tokens its budget hold
    /// reserved: each limit field present is lowered to it, and when none is present the format's own is
    /// set (`max_completion_tokens` for Chat, which OpenAI's reasoning models require). An Anthropic
    /// thinking budget must stay below `max_tokens`, so it is lowered with it.
    pub fn cap_output(self, body: &mut Value, cap: u64) {
        if self == Wire::Gemini {
            return gemini::cap_output(body, cap);
        }
        let Some(obj) = body.as_object_mut() else { return };
        let mut present = false;
        for f in self.output_limit_fields() {
            if let Some(v) = obj.get_mut(*f).filter(|v| !v.is_null()) {
                present = true;
                if v.as_u64().is_none_or(|n| n > cap) {
                    *v = json!(cap);
                }
            }
        }
        if !present {
            obj.insert(self.output_limit_fields()[0].to_owned(), json!(cap));
        }
        if self == Wire::Anthropic
            && let Some(budget) = obj.get_mut("thinking").and_then(|t| t.get_mut("budget_tokens"))
            && budget.as_u64().is_none_or(|b| b >= cap)
        {
            *budget = json!(cap.saturating_sub(1));
        }
    }

    /// Prepares the body to forward: the model (after routing), for streamed Chat the usage chunk that
    /// metering needs, and without provider-hosted tools (web search, code execution, remote MCP servers):
    /// the provider would run those itself, where no policy can see them. Returns what was removed.
    pub fn prepare(self, body: &mut Value, model: &str, stream: bool) -> Vec<String> {
        if self == Wire::Gemini {
            // The model is in the upstream's path; a stray `model` field would be refused by Google.
            body.as_object_mut().map(|o| o.remove("model"));
            return gemini::remove_provider_tools(body);
        }
        body["model"] = Value::String(model.to_owned());
        if self == Wire::Chat && stream {
            body["stream_options"]["include_usage"] = Value::Bool(true);
        }
        let mut removed = Vec::new();
        if let Some(tools) = body.get_mut("tools").and_then(Value::as_array_mut) {
            tools.retain(|t| {
                // A `type` that is not a string is not a client tool's.
                let kind = match &t["type"] {
                    Value::Null => "",
                    Value::String(k) => k.as_str(),
                    _ => "(not a string)",
                };
                let client_side = match self {
                    // A tool is known by its `type`, whatever else it carries: untyped and `custom` tools and the
                    // typed ones the client runs (`bash_…`, `text_editor_…`, `computer_…`, `memory_…`) stay;
                    // every other type (web search and fetch, code execution, MCP toolsets, tool search, and
                    // types not known yet) runs at the provider.
                    Wire::Anthropic => {
                        kind.is_empty()
                            || kind == "custom"
                            || ["bash_", "text_editor_", "computer_", "memory_"].iter().any(|c| kind.starts_with(c))
                    }
                    Wire::Chat => kind == "function" || kind.is_empty(),
                    // A `namespace` groups client-side tools: Codex offers each MCP server's tools as the
                    // namespace `mcp__{server}` (its calls carry `namespace` and are decided as
                    // `mcp__{server}__{tool}`). Kept when every tool in it is a function; Codex's other
                    // namespaces (its own sub-agents) stay out, as before.
                    Wire::Gemini => unreachable!("returned above"),
                    Wire::Responses => {
                        matches!(kind, "function" | "custom" | "local_shell")
                            || (kind == "namespace"
                                && t["name"].as_str().is_some_and(|n| n.starts_with("mcp__"))
                                && t["tools"].as_array().is_some_and(|ts| ts.iter().all(|x| x["type"] == "function")))
                    }
                };
                if !client_side {
                    removed.push(kind.to_owned());
                }
                client_side
            });
        }
        // Chat's legacy `functions` would come back as `function_call`, which the response gate does not hold.
        let legacy: &[&str] = if self == Wire::Chat { &["functions", "function_call"] } else { &[] };
        for key in ["mcp_servers", "web_search_options", "container"].iter().chain(legacy) {
            if body.as_object_mut().and_then(|o| o.remove(*key)).is_some() {
                removed.push((*key).to_owned());
            }
        }
        removed
    }

    /// Usage and tool calls of a complete (non-streamed) response.
    pub fn parse_response(self, body: &Value) -> ParsedResponse {
        match self {
            Wire::Anthropic => anthropic::parse_response(body),
            Wire::Chat => chat::parse_response(body),
            Wire::Responses => responses::parse_response(body),
            Wire::Gemini => gemini::parse_response(body),
        }
    }

    /// Removes the denied calls (by id) from a complete response and adds the notes.
    pub fn rewrite_response(self, body: &mut Value, denied: &[String], notes: &str) {
        match self {
            Wire::Anthropic => anthropic::rewrite_response(body, denied, notes),
            Wire::Chat => chat::rewrite_response(body, denied, notes),
            Wire::Responses => responses::rewrite_response(body, denied, notes),
            Wire::Gemini => gemini::rewrite_response(body, denied, notes),
        }
    }
}

fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

fn openai_error_type(status: u16) -> &'static str {
    match status {
        400 | 404 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "server_error",
    }
}

fn openai_error_code(status: u16) -> &'static str {
    match status {
        401 => "invalid_api_key",
        403 => "policy_denied",
        404 => "model_not_found",
        413 => "request_too_large",
        429 => "rate_limit_exceeded",
        502 | 503 => "upstream_unavailable",
        504 => "upstream_timeout",
        _ => "invalid_request",
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RequestInfo {
    pub model: String,
    pub stream: bool,
    pub max_tokens: Option<u64>,
    /// A streamed Chat client that asked for the usage chunk itself (the gateway always asks for it, and
    /// hides it from clients that did not).
    pub client_wants_usage: bool,
}

/// A tool call the model asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingCall {
    pub id: String,
    pub name: String,
    pub args: Value,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedResponse {
    pub model: Option<String>,
    pub usage: Option<Usage>,
    pub calls: Vec<PendingCall>,
    /// Items removed without a decision (calls of tools the gateway never offers), each with its note: the
    /// id as [`Wire::rewrite_response`] reads it, and the text that takes its place.
    pub refused: Vec<(String, String)>,
}

/// What a streaming gate asks its driver to do, in order.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Send these events to the client.
    Emit(Vec<Sse>),
    /// Decide this tool call, then call [`Gate::resolve`] with the answer.
    Decide(PendingCall),
    /// The final usage of the turn: meter it durably before emitting what follows.
    Usage(Usage),
    /// The model's id as the upstream reported it.
    Model(String),
}

/// A streaming response filter: holds each tool call back from its first event to its last, asks for a
/// decision, and releases or drops it.
pub trait Gate: Send {
    fn push(&mut self, ev: Sse) -> Vec<Step>;
    /// The decision on a call from [`Step::Decide`]: `None` releases it, `Some(note)` removes it.
    fn resolve(&mut self, id: &str, denied: Option<String>) -> Vec<Step>;
    /// The upstream stream ended (normally or not). Returns usage still unmetered, if any is known.
    fn finish(&mut self) -> Vec<Step>;
}

/// A streamed event the gateway cannot read as JSON. The client's parser may read it all the same
/// (JavaScript's and Python's accept a lone surrogate escape, which serde's refuses), and it could carry a
/// tool call no policy saw: it is dropped, not passed on. Chat's end marker `[DONE]` is the one event that
/// is not JSON.
pub(crate) fn unreadable(ev: Sse) -> Vec<Step> {
    if ev.data.trim() == "[DONE]" {
        return vec![Step::Emit(vec![ev])];
    }
    tracing::warn!(bytes = ev.data.len(), "dropped a streamed event that is not JSON: it would pass ungated");
    vec![]
}

/// Parses a tool call's streamed argument text; an empty string is no arguments.
pub(crate) fn parse_args(text: &str) -> Value {
    if text.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Whether a provider's usage object carries every count its format always sends (`keys`). One without them
/// (`usage: {}`, an object with another format's fields, a count left out) does not say what the answer cost:
/// the response is charged as if its usage never came (the worst case), never a missing side as zero.
pub(crate) fn has_counts(v: &Value, keys: &[&str]) -> bool {
    v.is_object() && keys.iter().all(|k| v.get(k).is_some_and(|n| !n.is_null()))
}

/// A provider's token count: 0 when absent. A count that is there but not a whole number of tokens (a
/// float, a string, a negative) reads as `u64::MAX`, which no usage may hold (`Usage::is_plausible`): the
/// gateway then charges the request's worst case, never nothing.
pub(crate) fn u(v: &Value, key: &str) -> u64 {
    match v.get(key) {
        None | Some(Value::Null) => 0,
        Some(n) => n.as_u64().unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `llm_stream` fuzz target: chunks of the wrong shape (a number; a Gemini candidate whose
    /// content is a string) panicked the Chat and Gemini gates, which ended the stream's task before the
    /// answer was metered. And a Chat chunk with a second choice would have passed a call in it undecided.
    #[test]
    fn chunks_of_the_wrong_shape_are_dropped_or_passed_without_a_panic() {
        let hostile = [
            "5",
            "[1, 2]",
            "\"text\"",
            r#"{"candidates": [{"content": "STOP"}], "responseId": "r"}"#,
            r#"{"candidates": ["x", {"content": {"parts": "y"}}]}"#,
            r#"{"choices": [5]}"#,
            r#"{"type": "message_start", "message": 7}"#,
            r#"{"type": "response.completed", "response": [1]}"#,
        ];
        for wire in [Wire::Anthropic, Wire::Chat, Wire::Responses, Wire::Gemini] {
            for data in hostile {
                let mut gate = wire.gate(false);
                let _ = gate.push(Sse::new(None, data));
                let _ = gate.finish();
            }
        }
        let second_choice = r#"{"choices": [{"index": 0, "delta": {}}, {"index": 1, "delta": {"tool_calls": [
            {"index": 0, "id": "c1", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}]}}]}"#;
        let mut gate = Wire::Chat.gate(false);
        assert!(gate.push(Sse::new(None, second_choice)).is_empty(), "a chunk with two choices is not passed on");
    }

    #[test]
    fn provider_hosted_tools_never_leave() {
        let mut b = json!({"model": "m", "tools": [
            {"name": "Bash", "input_schema": {}}, {"type": "web_search_20250305", "name": "web_search"},
            {"type": "bash_20250124", "name": "bash"}], "mcp_servers": [{"url": "https://x"}]});
        let removed = Wire::Anthropic.prepare(&mut b, "m2", false);
        assert_eq!(removed, ["web_search_20250305", "mcp_servers"]);
        assert_eq!(b["tools"].as_array().unwrap().len(), 2);
        assert_eq!(b["model"], "m2");
        let mut b = json!({"model": "m", "tools": [{"type": "function", "name": "shell"}, {"type": "web_search"},
            {"type": "file_search"}, {"type": "custom", "name": "apply_patch"}]});
        assert_eq!(Wire::Responses.prepare(&mut b, "m", true), ["web_search", "file_search"]);
        // Codex's MCP namespaces stay (their calls are decided like any function's); a namespace holding a
        // provider-hosted tool, and Codex's own sub-agent namespace, do not.
        let mut b = json!({"model": "m", "tools": [
            {"type": "namespace", "name": "mcp__google", "tools": [{"type": "function", "name": "gmail_send_message"}]},
            {"type": "namespace", "name": "mcp__x", "tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]},
            {"type": "namespace", "name": "multi_agent_v1", "tools": [{"type": "function", "name": "spawn"}]}]});
        assert_eq!(Wire::Responses.prepare(&mut b, "m", true), ["namespace", "namespace"]);
        assert_eq!(b["tools"][0]["name"], "mcp__google");
        assert_eq!(b["tools"].as_array().unwrap().len(), 1);
        let mut b = json!({"model": "m", "stream": true, "web_search_options": {}, "tools": [{"type": "function"}],
                           "functions": [{"name": "f"}], "function_call": "auto"});
        assert_eq!(Wire::Chat.prepare(&mut b, "m", true), ["web_search_options", "functions", "function_call"]);
        assert!(Wire::Chat.request_info(&json!({"model": "m", "n": 2})).unwrap_err().contains("`n` other than 1"));
        assert_eq!(b["stream_options"]["include_usage"], true);
    }

    #[test]
    fn server_tools_are_known_by_their_type_whatever_else_they_carry() {
        let mut b = json!({"model": "m", "tools": [
            {"type": "web_search_20250305", "name": "web_search", "input_schema": {"type": "object"}},
            {"type": "web_fetch_20250910", "name": "web_fetch", "input_schema": {}},
            {"type": "code_execution_20250825", "name": "code_execution", "input_schema": {}},
            {"type": "mcp_toolset", "mcp_server_name": "x", "input_schema": {}},
            {"type": "tool_search_tool_regex_20251119", "name": "ts"},
            {"type": ["bash_20250124"], "name": "bash", "input_schema": {}},
            {"name": "Bash", "input_schema": {}}, {"type": "custom", "name": "c", "input_schema": {}},
            {"type": "bash_20250124", "name": "bash"}, {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}]});
        let removed = Wire::Anthropic.prepare(&mut b, "m", false);
        assert_eq!(removed.len(), 6, "{removed:?}");
        let kept: Vec<&str> = b["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(kept, ["Bash", "c", "bash", "str_replace_based_edit_tool"]);
        let mut b = json!({"model": "m", "tools": [{"type": "mcp", "server_url": "https://x", "name": "f"},
            {"type": "code_interpreter"}, {"type": "image_generation"}, {"type": "computer_use_preview"},
            {"type": "web_search_preview", "parameters": {}}, {"type": "function", "name": "shell"}]});
        assert_eq!(Wire::Responses.prepare(&mut b, "m", false).len(), 5);
        assert_eq!(b["tools"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn the_forwarded_output_limit_is_never_above_the_cap() {
        let cap = |wire: Wire, mut b: Value, cap: u64| {
            wire.cap_output(&mut b, cap);
            b
        };
        // Absent: the format's own field is set.
        assert_eq!(cap(Wire::Responses, json!({}), 4096), json!({"max_output_tokens": 4096}));
        assert_eq!(cap(Wire::Chat, json!({}), 4096), json!({"max_completion_tokens": 4096}));
        assert_eq!(cap(Wire::Anthropic, json!({}), 4096), json!({"max_tokens": 4096}));
        // Larger: lowered; smaller: kept; Chat's two fields both capped.
        assert_eq!(
            cap(Wire::Chat, json!({"max_tokens": 9000, "max_completion_tokens": 100}), 4096),
            json!({"max_tokens": 4096, "max_completion_tokens": 100})
        );
        assert_eq!(
            cap(Wire::Responses, json!({"max_output_tokens": 100_000}), 4096),
            json!({"max_output_tokens": 4096})
        );
        assert_eq!(cap(Wire::Responses, json!({"max_output_tokens": 50}), 4096), json!({"max_output_tokens": 50}));
        assert_eq!(
            cap(Wire::Responses, json!({"max_output_tokens": "lots"}), 4096),
            json!({"max_output_tokens": 4096})
        );
        // Anthropic thinking stays below max_tokens.
        assert_eq!(
            cap(
                Wire::Anthropic,
                json!({"max_tokens": 64000, "thinking": {"type": "enabled", "budget_tokens": 32000}}),
                4096
            ),
            json!({"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 4095}})
        );
        assert_eq!(
            cap(
                Wire::Anthropic,
                json!({"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2000}}),
                4096
            ),
            json!({"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2000}})
        );
    }

    #[test]
    fn output_limits_and_n_are_checked_in_every_spelling() {
        let err = |wire: Wire, b: Value| wire.request_info(&b).unwrap_err();
        assert!(err(Wire::Anthropic, json!({"model": "m", "max_tokens": 0})).contains("at least 1"));
        assert!(err(Wire::Anthropic, json!({"model": "m", "max_tokens": -5})).contains("positive integer"));
        assert!(err(Wire::Responses, json!({"model": "m", "max_output_tokens": "100"})).contains("positive integer"));
        assert!(
            err(Wire::Chat, json!({"model": "m", "max_completion_tokens": 10, "max_tokens": "x"}))
                .contains("`max_tokens`")
        );
        for n in [json!(2), json!(2.0), json!("2"), json!(0), json!(-1)] {
            assert!(err(Wire::Chat, json!({"model": "m", "n": n})).contains("`n`"), "{n}");
        }
        assert!(Wire::Chat.request_info(&json!({"model": "m", "n": 1})).is_ok());
        let i =
            Wire::Chat.request_info(&json!({"model": "m", "max_completion_tokens": 900, "max_tokens": 50})).unwrap();
        assert_eq!(i.max_tokens, Some(50), "the smaller limit is the one the provider honours");
    }
}
