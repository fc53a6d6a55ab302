//! The three wire formats the gateway speaks — Anthropic Messages, OpenAI Chat Completions and OpenAI
//! Responses — for the parts it must understand: a request's model, stream flag and output limit; a
//! response's usage and tool calls; and the rewrite that removes a denied tool call before the client sees
//! it. Streaming responses go through a [`Gate`] per format.
//!
//! The rewrite, per format (a denied call is removed and the turn ends with a text that says why):
//! - Anthropic: the `tool_use` block is dropped, later blocks are renumbered, a `text` block with the notes is
//!   added last, and `stop_reason: tool_use` becomes `end_turn` when no tool call is left.
//! - Chat: the call is dropped from `tool_calls` (renumbered), the notes are appended to the content, and
//!   `finish_reason: tool_calls` becomes `stop` when no call is left.
//! - Responses: the `function_call` (or `custom_tool_call`, `local_shell_call`) item is dropped and a `message`
//!   item with the notes is added last, in the stream and in `response.completed`.

pub mod anthropic;
pub mod chat;
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
}

impl Wire {
    pub fn as_str(self) -> &'static str {
        match self {
            Wire::Anthropic => "anthropic",
            Wire::Chat => "openai-chat",
            Wire::Responses => "openai-responses",
        }
    }

    /// The upstream path, below the provider's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Wire::Anthropic => "/v1/messages",
            Wire::Chat => "/v1/chat/completions",
            Wire::Responses => "/v1/responses",
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
        }
    }

    pub fn gate(self, include_usage: bool) -> Box<dyn Gate> {
        match self {
            Wire::Anthropic => Box::new(anthropic::StreamGate::default()),
            Wire::Chat => Box::new(chat::StreamGate::new(include_usage)),
            Wire::Responses => Box::new(responses::StreamGate::default()),
        }
    }

    /// Reads what the gateway needs from a request body.
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
        let limit_field = match self {
            Wire::Anthropic => &["max_tokens"][..],
            Wire::Chat => &["max_completion_tokens", "max_tokens"][..],
            Wire::Responses => &["max_output_tokens"][..],
        };
        let mut max_tokens = None;
        for f in limit_field {
            match obj.get(*f) {
                None | Some(Value::Null) => {}
                Some(v) => match v.as_u64() {
                    Some(n) => {
                        max_tokens = Some(n);
                        break;
                    }
                    None => return Err(format!("`{f}` must be a non-negative integer")),
                },
            }
        }
        if self == Wire::Anthropic && max_tokens.is_none() {
            return Err("`max_tokens` is required".into());
        }
        if !matches!(obj.get("stream_options"), None | Some(Value::Null) | Some(Value::Object(_))) {
            return Err("`stream_options` must be an object".into());
        }
        if self == Wire::Chat && obj.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
            return Err("`n` above 1 is not supported: each choice's tool calls would need their own decisions".into());
        }
        let include_usage = self == Wire::Chat
            && obj.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool) == Some(true);
        Ok(RequestInfo { model, stream, max_tokens, client_wants_usage: include_usage })
    }

    /// Prepares the body to forward: the model (after routing), for streamed Chat the usage chunk that
    /// metering needs, and without provider-hosted tools (web search, code execution, remote MCP servers):
    /// the provider would run those itself, where no policy can see them. Returns what was removed.
    pub fn prepare(self, body: &mut Value, model: &str, stream: bool) -> Vec<String> {
        body["model"] = Value::String(model.to_owned());
        if self == Wire::Chat && stream {
            body["stream_options"]["include_usage"] = Value::Bool(true);
        }
        let mut removed = Vec::new();
        if let Some(tools) = body.get_mut("tools").and_then(Value::as_array_mut) {
            tools.retain(|t| {
                let kind = t["type"].as_str().unwrap_or("");
                let client_side = match self {
                    // Client tools have an input schema; typed ones (`bash_…`, `text_editor_…`) run in the client.
                    Wire::Anthropic => {
                        t.get("input_schema").is_some()
                            || kind == "custom"
                            || !["web_search", "web_fetch", "code_execution", "mcp"].iter().any(|h| kind.starts_with(h))
                    }
                    Wire::Chat => kind == "function" || kind.is_empty(),
                    Wire::Responses => matches!(kind, "function" | "custom" | "local_shell"),
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
        }
    }

    /// Removes the denied calls (by id) from a complete response and adds the notes.
    pub fn rewrite_response(self, body: &mut Value, denied: &[String], notes: &str) {
        match self {
            Wire::Anthropic => anthropic::rewrite_response(body, denied, notes),
            Wire::Chat => chat::rewrite_response(body, denied, notes),
            Wire::Responses => responses::rewrite_response(body, denied, notes),
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

/// Parses a tool call's streamed argument text; an empty string is no arguments.
pub(crate) fn parse_args(text: &str) -> Value {
    if text.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

pub(crate) fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut b = json!({"model": "m", "stream": true, "web_search_options": {}, "tools": [{"type": "function"}],
                           "functions": [{"name": "f"}], "function_call": "auto"});
        assert_eq!(Wire::Chat.prepare(&mut b, "m", true), ["web_search_options", "functions", "function_call"]);
        assert!(Wire::Chat.request_info(&json!({"model": "m", "n": 2})).unwrap_err().contains("`n` above 1"));
        assert_eq!(b["stream_options"]["include_usage"], true);
    }
}
