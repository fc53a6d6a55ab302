//! The `scripted` provider: a model that replays a YAML script of turns (text, tool calls, usage) in each
//! wire format (Anthropic, OpenAI Chat and Responses, Gemini), streamed or not. It is for the demo and for tests — it is not a model and says so in every
//! response id (`scripted-…`). It runs in-process as a provider, or on its own port as a mock upstream.
//!
//! Which turn to play is derived from the request alone (how many times the assistant has already spoken
//! in the history), so any client, retry or restart gets the same answer.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::wire::{Sse, Wire};

/// A script file: several scripts, chosen by what the first user message contains.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptFile {
    pub scripts: Vec<Script>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub name: String,
    /// Played when the first user message contains this text; a script without it plays otherwise.
    #[serde(default, rename = "match")]
    pub matches: Option<String>,
    pub turns: Vec<Turn>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub tool_calls: Vec<ScriptedCall>,
    /// Reported usage; estimated from the sizes when absent.
    #[serde(default)]
    pub usage: Option<ScriptedUsage>,
    /// Wait this long before answering (to play a slow upstream).
    #[serde(default)]
    pub delay_ms: u64,
    /// When streamed, wait this long between events (to play a long answer).
    #[serde(default)]
    pub chunk_delay_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedCall {
    pub name: String,
    #[serde(default = "empty_object")]
    pub args: Value,
}

fn empty_object() -> Value {
    json!({})
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
}

impl ScriptFile {
    pub fn parse(text: &str, file: &str) -> Result<ScriptFile, String> {
        let f: ScriptFile = serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
            Some(l) => format!("{file}:{}:{}: {e}", l.line(), l.column()),
            None => format!("{file}: {e}"),
        })?;
        if f.scripts.is_empty() {
            return Err(format!("{file}: `scripts` is empty"));
        }
        Ok(f)
    }

    fn pick(&self, first_user: &str) -> &Script {
        self.scripts
            .iter()
            .find(|s| s.matches.as_deref().is_some_and(|m| first_user.contains(m)))
            .or_else(|| self.scripts.iter().find(|s| s.matches.is_none()))
            .unwrap_or(&self.scripts[0])
    }
}

/// The router that answers all four wire formats, at the same paths as the real providers.
pub fn router(script: Arc<ScriptFile>) -> Router {
    Router::new()
        .route("/v1/messages", post(|s, b| answer(Wire::Anthropic, s, b)))
        .route("/v1/chat/completions", post(|s, b| answer(Wire::Chat, s, b)))
        .route("/v1/responses", post(|s, b| answer(Wire::Responses, s, b)))
        .route("/v1beta/models/{target}", post(gemini_answer))
        .with_state(script)
}

fn bad_request(wire: Wire, message: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(wire.error_body(400, message))).into_response()
}

/// Gemini's model and stream flag are in the path.
async fn gemini_answer(
    State(script): State<Arc<ScriptFile>>,
    axum::extract::Path(target): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let target = match crate::wire::gemini::Target::parse(&target) {
        Ok(t) => t,
        Err(e) => return bad_request(Wire::Gemini, &e),
    };
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(Wire::Gemini, &e.to_string()),
    };
    let stream = target.method == crate::wire::gemini::Method::StreamGenerate;
    play(Wire::Gemini, &script, &req, body.len(), &target.model, stream).await
}

async fn answer(wire: Wire, State(script): State<Arc<ScriptFile>>, body: Bytes) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(wire, &e.to_string()),
    };
    let model = req["model"].as_str().unwrap_or("scripted").to_owned();
    let stream = req["stream"].as_bool() == Some(true);
    play(wire, &script, &req, body.len(), &model, stream).await
}

/// Answers `req` with the script's next turn.
async fn play(wire: Wire, script: &ScriptFile, req: &Value, size: usize, model: &str, stream: bool) -> Response {
    let model = model.to_owned();
    let (first_user, spoken) = history(wire, req);
    let script = script.pick(&first_user);
    let turn = script.turns.get(spoken).cloned().unwrap_or_else(|| Turn {
        text: format!("(scripted model: script `{}` has no turn {})", script.name, spoken + 1),
        ..Turn::default()
    });
    if turn.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(turn.delay_ms)).await;
    }
    let usage = turn.usage.unwrap_or(ScriptedUsage {
        input_tokens: (size as u64 / 4).max(1),
        output_tokens: 5
            + (turn.text.len() + turn.tool_calls.iter().map(|c| c.args.to_string().len()).sum::<usize>()) as u64 / 4,
        cache_read_input_tokens: 0,
    });
    let id = format!("scripted-{}-{}", script.name, spoken + 1);
    if !stream {
        let body = match wire {
            Wire::Anthropic => anthropic_message(&id, &model, &turn, usage),
            Wire::Chat => chat_completion(&id, &model, &turn, usage),
            Wire::Responses => response_object(&id, &model, &turn, usage),
            Wire::Gemini => gemini_response(&id, &model, &turn, usage),
        };
        return axum::Json(body).into_response();
    }
    let events = match wire {
        Wire::Anthropic => anthropic_stream(&id, &model, &turn, usage),
        Wire::Chat => chat_stream(&id, &model, &turn, usage, req),
        Wire::Responses => responses_stream(&id, &model, &turn, usage),
        Wire::Gemini => gemini_stream(&id, &model, &turn, usage),
    };
    let pace = Duration::from_millis(turn.chunk_delay_ms);
    let bytes = futures_util::stream::iter(events.into_iter().map(|e| e.encode())).then(move |b| async move {
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        Ok::<_, std::io::Error>(b)
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(bytes))
        .expect("response")
}

/// The first user message's text and how many assistant turns the history holds.
fn history(wire: Wire, req: &Value) -> (String, usize) {
    let items: &[Value] = match wire {
        Wire::Anthropic | Wire::Chat => req["messages"].as_array().map(Vec::as_slice).unwrap_or(&[]),
        Wire::Responses => match &req["input"] {
            Value::String(s) => return (s.clone(), 0),
            Value::Array(a) => a.as_slice(),
            _ => &[],
        },
        Wire::Gemini => return gemini_history(req),
    };
    let mut first_user = None;
    let mut spoken = 0;
    let mut in_assistant_run = false;
    for m in items {
        let role = m["role"].as_str();
        let assistant = role == Some("assistant")
            || matches!(
                m["type"].as_str(),
                Some("function_call" | "custom_tool_call" | "local_shell_call" | "reasoning")
            );
        if assistant && !in_assistant_run {
            spoken += 1;
        }
        in_assistant_run = assistant;
        if role == Some("user") && first_user.is_none() {
            let mut text = String::new();
            paddock_policy::event::walk_strings(&m["content"], &mut |s| {
                text.push_str(s);
                text.push('\n');
            });
            first_user = Some(text);
        }
    }
    (first_user.unwrap_or_default(), spoken)
}

/// Gemini's history: `user` and `model` turns, parts inside.
fn gemini_history(req: &Value) -> (String, usize) {
    let mut first_user = None;
    let mut spoken = 0;
    let mut in_model_run = false;
    for c in req["contents"].as_array().into_iter().flatten() {
        let model = c["role"] == "model";
        if model && !in_model_run {
            spoken += 1;
        }
        in_model_run = model;
        if c["role"] == "user" && first_user.is_none() {
            let mut text = String::new();
            for p in c["parts"].as_array().into_iter().flatten() {
                if let Some(t) = p["text"].as_str() {
                    text.push_str(t);
                    text.push('\n');
                }
            }
            first_user = Some(text);
        }
    }
    (first_user.unwrap_or_default(), spoken)
}

fn gemini_usage(u: ScriptedUsage) -> Value {
    json!({"promptTokenCount": u.input_tokens + u.cache_read_input_tokens, "candidatesTokenCount": u.output_tokens,
           "totalTokenCount": u.input_tokens + u.cache_read_input_tokens + u.output_tokens,
           "cachedContentTokenCount": u.cache_read_input_tokens})
}

fn gemini_calls(t: &Turn) -> Vec<Value> {
    t.tool_calls.iter().map(|c| json!({"functionCall": {"name": c.name, "args": c.args}})).collect()
}

fn gemini_response(id: &str, model: &str, t: &Turn, u: ScriptedUsage) -> Value {
    let mut parts = Vec::new();
    if !t.text.is_empty() {
        parts.push(json!({"text": t.text}));
    }
    parts.extend(gemini_calls(t));
    json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
           "usageMetadata": gemini_usage(u), "modelVersion": model, "responseId": id})
}

/// Text in pieces, running usage on each; the calls (whole, as Gemini sends them), the finish reason and
/// the final usage on the last chunk.
fn gemini_stream(id: &str, model: &str, t: &Turn, u: ScriptedUsage) -> Vec<Sse> {
    let mut out = Vec::new();
    let running = json!({"promptTokenCount": u.input_tokens + u.cache_read_input_tokens,
                         "totalTokenCount": u.input_tokens + u.cache_read_input_tokens});
    for p in pieces(&t.text).into_iter().filter(|p| !p.is_empty()) {
        out.push(Sse::json(
            None,
            &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": p}]}, "index": 0}],
                    "usageMetadata": running, "modelVersion": model, "responseId": id}),
        ));
    }
    out.push(Sse::json(
        None,
        &json!({"candidates": [{"content": {"role": "model", "parts": gemini_calls(t)}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": gemini_usage(u), "modelVersion": model, "responseId": id}),
    ));
    out
}

fn call_id(id: &str, i: usize) -> String {
    format!("call_{}_{i}", id.replace('-', "_"))
}

fn anthropic_message(id: &str, model: &str, t: &Turn, u: ScriptedUsage) -> Value {
    let mut content = Vec::new();
    if !t.text.is_empty() {
        content.push(json!({"type": "text", "text": t.text}));
    }
    for (i, c) in t.tool_calls.iter().enumerate() {
        content.push(json!({"type": "tool_use", "id": call_id(id, i), "name": c.name, "input": c.args}));
    }
    json!({
        "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": if t.tool_calls.is_empty() { "end_turn" } else { "tool_use" }, "stop_sequence": null,
        "usage": {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                  "cache_read_input_tokens": u.cache_read_input_tokens, "cache_creation_input_tokens": 0},
    })
}

/// Splits text into deltas of at most 64 characters (at least three for short text), as models stream.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len().div_ceil(3).clamp(1, 64);
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

fn anthropic_stream(id: &str, model: &str, t: &Turn, u: ScriptedUsage) -> Vec<Sse> {
    let ev = |name: &str, v: Value| Sse::json(Some(name), &v);
    let mut out = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": u.input_tokens, "output_tokens": 1,
                      "cache_read_input_tokens": u.cache_read_input_tokens, "cache_creation_input_tokens": 0}}}),
    )];
    let mut index = 0;
    if !t.text.is_empty() {
        out.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ));
        out.push(ev("ping", json!({"type": "ping"})));
        for p in pieces(&t.text) {
            out.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}),
            ));
        }
        out.push(ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
        index = 1;
    }
    for (i, c) in t.tool_calls.iter().enumerate() {
        let at = index + i;
        out.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": at,
                   "content_block": {"type": "tool_use", "id": call_id(id, i), "name": c.name, "input": {}}}),
        ));
        for p in pieces(&c.args.to_string()) {
            out.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": at, "delta": {"type": "input_json_delta", "partial_json": p}}),
            ));
        }
        out.push(ev("content_block_stop", json!({"type": "content_block_stop", "index": at})));
    }
    out.push(ev(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": if t.tool_calls.is_empty() { "end_turn" } else { "tool_use" }, "stop_sequence": null},
               "usage": {"output_tokens": u.output_tokens}}),
    ));
    out.push(ev("message_stop", json!({"type": "message_stop"})));
    out
}

fn chat_usage(u: ScriptedUsage) -> Value {
    json!({"prompt_tokens": u.input_tokens + u.cache_read_input_tokens, "completion_tokens": u.output_tokens,
           "total_tokens": u.input_tokens + u.cache_read_input_tokens + u.output_tokens,
           "prompt_tokens_details": {"cached_tokens": u.cache_read_input_tokens}})
}

fn chat_completion(id: &str, model: &str, t: &Turn, u: ScriptedUsage) -> Value {
    let mut message =
        json!({"role": "assistant", "content": if t.text.is_empty() { Value::Null } else { json!(t.text) }});
    if !t.tool_calls.is_empty() {
        message["tool_calls"] = t
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({"id": call_id(id, i), "type": "function",
                       "function": {"name": c.name, "arguments": c.args.to_string()}})
            })
            .collect();
    }
    json!({
        "id": id, "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": if t.tool_calls.is_empty() { "stop" } else { "tool_calls" }}],
        "usage": chat_usage(u),
    })
}

fn chat_stream(id: &str, model: &str, t: &Turn, u: ScriptedUsage, req: &Value) -> Vec<Sse> {
    let chunk = |delta: Value, finish: Value| {
        Sse::json(
            None,
            &json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut out = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    for p in pieces(&t.text).into_iter().filter(|p| !p.is_empty()) {
        out.push(chunk(json!({"content": p}), Value::Null));
    }
    for (i, c) in t.tool_calls.iter().enumerate() {
        out.push(chunk(
            json!({"tool_calls": [{"index": i, "id": call_id(id, i), "type": "function",
                                   "function": {"name": c.name, "arguments": ""}}]}),
            Value::Null,
        ));
        for p in pieces(&c.args.to_string()) {
            out.push(chunk(json!({"tool_calls": [{"index": i, "function": {"arguments": p}}]}), Value::Null));
        }
    }
    out.push(chunk(json!({}), json!(if t.tool_calls.is_empty() { "stop" } else { "tool_calls" })));
    if req["stream_options"]["include_usage"] == true {
        out.push(Sse::json(
            None,
            &json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [],
                    "usage": chat_usage(u)}),
        ));
    }
    out.push(Sse::new(None, "[DONE]"));
    out
}

fn responses_items(id: &str, t: &Turn) -> Vec<Value> {
    let mut items = Vec::new();
    if !t.text.is_empty() {
        items.push(json!({"type": "message", "id": format!("msg_{id}"), "status": "completed", "role": "assistant",
                          "content": [{"type": "output_text", "text": t.text, "annotations": []}]}));
    }
    for (i, c) in t.tool_calls.iter().enumerate() {
        let mut item = json!({"type": "function_call", "id": format!("fc_{id}_{i}"), "call_id": call_id(id, i),
                              "name": c.name, "arguments": c.args.to_string(), "status": "completed"});
        // An MCP tool is called in its server's namespace, as the Responses API does (`mcp__s__t` → `mcp__s`, `t`).
        if let Some((server, tool)) = paddock_policy::tools::split_mcp_tool_name(&c.name) {
            item["namespace"] = json!(format!("mcp__{server}"));
            item["name"] = json!(tool);
        }
        items.push(item);
    }
    items
}

fn responses_usage(u: ScriptedUsage) -> Value {
    json!({"input_tokens": u.input_tokens + u.cache_read_input_tokens,
           "input_tokens_details": {"cached_tokens": u.cache_read_input_tokens},
           "output_tokens": u.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
           "total_tokens": u.input_tokens + u.cache_read_input_tokens + u.output_tokens})
}

fn response_object(id: &str, model: &str, t: &Turn, u: ScriptedUsage) -> Value {
    json!({"id": id, "object": "response", "created_at": 0, "status": "completed", "model": model,
           "output": responses_items(id, t), "usage": responses_usage(u)})
}

fn responses_stream(id: &str, model: &str, t: &Turn, u: ScriptedUsage) -> Vec<Sse> {
    let ev = |name: &str, mut v: Value| {
        v["type"] = json!(name);
        Sse::json(Some(name), &v)
    };
    let mut skeleton = response_object(id, model, t, u);
    skeleton["status"] = json!("in_progress");
    skeleton["output"] = json!([]);
    skeleton.as_object_mut().map(|o| o.remove("usage"));
    let mut out = vec![
        ev("response.created", json!({"response": skeleton.clone()})),
        ev("response.in_progress", json!({"response": skeleton})),
    ];
    for (index, item) in responses_items(id, t).into_iter().enumerate() {
        let item_id = item["id"].clone();
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        if item["type"] == "message" {
            added["content"] = json!([]);
            out.push(ev("response.output_item.added", json!({"output_index": index, "item": added})));
            out.push(ev(
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": index, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": []}}),
            ));
            for p in pieces(&t.text) {
                out.push(ev(
                    "response.output_text.delta",
                    json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": p}),
                ));
            }
            out.push(ev(
                "response.output_text.done",
                json!({"item_id": item_id, "output_index": index, "content_index": 0, "text": t.text}),
            ));
            out.push(ev(
                "response.content_part.done",
                json!({"item_id": item_id, "output_index": index, "content_index": 0,
                       "part": {"type": "output_text", "text": t.text, "annotations": []}}),
            ));
        } else {
            added["arguments"] = json!("");
            out.push(ev("response.output_item.added", json!({"output_index": index, "item": added})));
            let args = item["arguments"].as_str().unwrap_or_default().to_owned();
            for p in pieces(&args) {
                out.push(ev(
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": index, "delta": p}),
                ));
            }
            out.push(ev(
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": index, "arguments": args}),
            ));
        }
        out.push(ev("response.output_item.done", json!({"output_index": index, "item": item})));
    }
    out.push(ev("response.completed", json!({"response": response_object(id, model, t, u)})));
    out
}
