//! OpenAI Chat Completions: `delta.tool_calls` are held until `finish_reason`. Usage is the final chunk that
//! `stream_options.include_usage` asks for, or (as several OpenAI-compatible servers send it) the chunk that
//! carries `finish_reason`; it is metered once. Usage on other chunks (running counts) is only kept: a
//! stream that ends without final usage is charged its worst case by the driver.

use std::collections::BTreeMap;

use paddock_policy::Usage;
use serde_json::{Value, json};

use super::{Gate, ParsedResponse, PendingCall, Sse, Step, has_counts, parse_args, u};

/// A `usage` object's counts; `None` without its prompt and completion counts (see [`has_counts`]).
pub fn usage_of(v: &Value) -> Option<Usage> {
    if !has_counts(v, &["prompt_tokens", "completion_tokens"]) {
        return None;
    }
    let cached = u(&v["prompt_tokens_details"], "cached_tokens");
    Some(Usage {
        // OpenAI counts cached tokens inside prompt_tokens; the price table prices them apart.
        input_tokens: u(v, "prompt_tokens").saturating_sub(cached),
        output_tokens: u(v, "completion_tokens"),
        cache_read_input_tokens: cached,
        cache_creation_input_tokens: 0,
    })
}

fn call_of(c: &Value) -> PendingCall {
    PendingCall {
        id: c["id"].as_str().unwrap_or_default().to_owned(),
        name: c["function"]["name"].as_str().unwrap_or_default().to_owned(),
        args: parse_args(c["function"]["arguments"].as_str().unwrap_or_default()),
    }
}

pub fn parse_response(body: &Value) -> ParsedResponse {
    let calls = body["choices"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["message"]["tool_calls"].as_array().into_iter().flatten())
        .map(call_of)
        .collect();
    ParsedResponse {
        model: body["model"].as_str().map(str::to_owned),
        usage: body.get("usage").and_then(usage_of),
        calls,
        refused: Vec::new(),
    }
}

pub fn rewrite_response(body: &mut Value, denied: &[String], notes: &str) {
    let Some(choices) = body.get_mut("choices").and_then(Value::as_array_mut) else { return };
    // Read with `get_mut`, never by indexing, which panics on a value of another type (a provider's choice
    // that is not an object).
    for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
        let Some(msg) = choice.get_mut("message").and_then(Value::as_object_mut) else { continue };
        let Some(calls) = msg.get_mut("tool_calls").and_then(Value::as_array_mut) else { continue };
        let before = calls.len();
        calls.retain(|c| !denied.iter().any(|d| c["id"].as_str().unwrap_or_default() == d));
        if calls.len() == before {
            continue;
        }
        if calls.is_empty() {
            msg.remove("tool_calls");
        }
        let text = match msg.get("content").and_then(Value::as_str) {
            Some(c) if !c.is_empty() => format!("{c}\n\n{notes}"),
            _ => notes.to_owned(),
        };
        msg.insert("content".into(), json!(text));
        let none_left = !msg.contains_key("tool_calls");
        if none_left && choice.get("finish_reason").is_some_and(|f| f == "tool_calls") {
            choice.insert("finish_reason".into(), json!("stop"));
        }
    }
}

#[derive(Default)]
struct Building {
    id: String,
    name: String,
    args: String,
}

pub struct StreamGate {
    include_usage: bool,
    calls: BTreeMap<u64, Building>,
    waiting: usize,
    kept: Vec<Value>,
    notes: Vec<String>,
    finish: Option<Value>,
    model_seen: bool,
    /// Final usage was metered; later usage chunks repeat it.
    metered: bool,
    /// The latest running usage seen on a chunk that was not final.
    running: Option<Usage>,
}

impl StreamGate {
    pub fn new(client_wants_usage: bool) -> StreamGate {
        StreamGate {
            include_usage: client_wants_usage,
            calls: BTreeMap::new(),
            waiting: 0,
            kept: Vec::new(),
            notes: Vec::new(),
            finish: None,
            model_seen: false,
            metered: false,
            running: None,
        }
    }

    fn release(&mut self) -> Vec<Step> {
        let Some(mut finish) = self.finish.take() else { return vec![] };
        let mut out = Vec::new();
        for (i, call) in self.kept.drain(..).enumerate() {
            let mut chunk = finish.clone();
            chunk["choices"][0]["delta"] = json!({"tool_calls": [{
                "index": i, "id": call["id"], "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }]});
            chunk["choices"][0]["finish_reason"] = Value::Null;
            out.push(Sse::json(None, &chunk));
        }
        let kept_any = !out.is_empty();
        if !self.notes.is_empty() {
            let mut chunk = finish.clone();
            chunk["choices"][0]["delta"] = json!({"content": self.notes.join("\n")});
            chunk["choices"][0]["finish_reason"] = Value::Null;
            out.push(Sse::json(None, &chunk));
            if !kept_any && finish["choices"][0]["finish_reason"] == "tool_calls" {
                finish["choices"][0]["finish_reason"] = json!("stop");
            }
        }
        out.push(Sse::json(None, &finish));
        vec![Step::Emit(out)]
    }
}

impl Gate for StreamGate {
    fn push(&mut self, ev: Sse) -> Vec<Step> {
        // A chunk is an object; anything else (a number, a list) is not read, nor passed on (found by fuzzing:
        // a number panicked the stream's task before the answer was metered).
        let Some(mut chunk) = serde_json::from_str::<Value>(&ev.data).ok().filter(Value::is_object) else {
            return super::unreadable(ev);
        };
        let mut steps = Vec::new();
        if !self.model_seen
            && let Some(m) = chunk["model"].as_str()
        {
            self.model_seen = true;
            steps.push(Step::Model(m.to_owned()));
        }
        // The gateway asks for one choice (`n` is refused). A chunk with more, or with one that is not an
        // object, is not read: a call in a second choice would pass undecided.
        if chunk["choices"].as_array().is_some_and(|c| c.len() > 1 || c.first().is_some_and(|c| !c.is_object())) {
            return super::unreadable(ev);
        }
        let usage = chunk.get("usage").and_then(usage_of);
        let no_choices = chunk["choices"].as_array().is_none_or(|c| c.is_empty());
        if no_choices {
            if let Some(u) = usage
                && !std::mem::replace(&mut self.metered, true)
            {
                steps.push(Step::Usage(u));
            }
            // A usage chunk (even one that counts nothing) reaches only a client that asked for usage.
            if self.include_usage || !chunk.get("usage").is_some_and(Value::is_object) {
                steps.push(Step::Emit(vec![ev]));
            }
            return steps;
        }
        let choice = &mut chunk["choices"][0];
        if let Some(deltas) = choice["delta"].as_object_mut().and_then(|d| d.remove("tool_calls")) {
            for d in deltas.as_array().into_iter().flatten() {
                let b = self.calls.entry(d["index"].as_u64().unwrap_or(0)).or_default();
                if let Some(id) = d["id"].as_str() {
                    b.id = id.to_owned();
                }
                if let Some(n) = d["function"]["name"].as_str() {
                    b.name.push_str(n);
                }
                if let Some(a) = d["function"]["arguments"].as_str() {
                    b.args.push_str(a);
                }
            }
        }
        let finished = !choice["finish_reason"].is_null();
        let has_content =
            choice["delta"].as_object().is_some_and(|d| d.iter().any(|(k, v)| k != "role" && !v.is_null()))
                || (choice["delta"].get("role").is_some() && self.calls.is_empty());
        if finished && let Some(u) = usage {
            // Usage on the finishing chunk is final: metered before the chunk is released.
            if !std::mem::replace(&mut self.metered, true) {
                steps.push(Step::Usage(u));
            }
        }
        if finished {
            if self.calls.is_empty() {
                steps.push(Step::Emit(vec![Sse::json(None, &chunk)]));
                return steps;
            }
            if has_content {
                let mut c = chunk.clone();
                c["choices"][0]["finish_reason"] = Value::Null;
                steps.push(Step::Emit(vec![Sse::json(None, &c)]));
            }
            chunk["choices"][0]["delta"] = json!({});
            self.finish = Some(chunk);
            let calls = std::mem::take(&mut self.calls);
            self.waiting = calls.len();
            for (_, b) in calls {
                let call = PendingCall { id: b.id.clone(), name: b.name.clone(), args: parse_args(&b.args) };
                self.kept.push(json!({"id": b.id, "name": b.name, "arguments": b.args, "pending": true}));
                steps.push(Step::Decide(call));
            }
            return steps;
        }
        if has_content {
            steps.push(Step::Emit(vec![Sse::json(None, &chunk)]));
        }
        if usage.is_some() {
            self.running = usage;
        }
        steps
    }

    fn resolve(&mut self, id: &str, denied: Option<String>) -> Vec<Step> {
        if let Some(pos) = self.kept.iter().position(|c| c["id"] == id && c["pending"] == true) {
            if let Some(note) = denied {
                self.kept.remove(pos);
                self.notes.push(note);
            } else {
                self.kept[pos].as_object_mut().map(|o| o.remove("pending"));
            }
            self.waiting = self.waiting.saturating_sub(1);
        }
        if self.waiting == 0 { self.release() } else { vec![] }
    }

    fn finish(&mut self) -> Vec<Step> {
        match (self.metered, self.running.take()) {
            (false, Some(u)) => vec![Step::Usage(u)],
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(v: Value) -> Sse {
        Sse::json(None, &v)
    }

    fn usages(steps: &[Step]) -> Vec<Usage> {
        steps.iter().filter_map(|s| if let Step::Usage(u) = s { Some(*u) } else { None }).collect()
    }

    #[test]
    fn usage_on_the_finishing_chunk_is_metered_once() {
        let usage = json!({"prompt_tokens": 100, "completion_tokens": 40});
        for client_wants_usage in [false, true] {
            let mut g = StreamGate::new(client_wants_usage);
            let mut steps = g.push(chunk(json!({"model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}}]})));
            steps.extend(
                g.push(chunk(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}))),
            );
            // Some servers repeat it in a usage-only chunk: not metered twice.
            steps.extend(g.push(chunk(json!({"choices": [], "usage": usage}))));
            steps.extend(g.finish());
            assert_eq!(usages(&steps), [Usage { input_tokens: 100, output_tokens: 40, ..Usage::default() }]);
        }
        // With tool calls on the finishing chunk: metered before the calls are decided.
        let mut g = StreamGate::new(false);
        g.push(chunk(json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1",
            "function": {"name": "shell", "arguments": "{}"}}]}}]})));
        let steps = g.push(chunk(
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}], "usage": usage}),
        ));
        assert!(matches!(&steps[..], [Step::Usage(_), Step::Decide(_)]), "{steps:?}");
    }

    #[test]
    fn running_usage_is_not_final_but_is_handed_back_at_the_end() {
        let mut g = StreamGate::new(false);
        let steps = g.push(chunk(json!({"choices": [{"index": 0, "delta": {"content": "hi"}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 1}})));
        assert_eq!(usages(&steps), []);
        assert_eq!(usages(&g.finish()), [Usage { input_tokens: 100, output_tokens: 1, ..Usage::default() }]);
    }

    /// Usage without both counts (`{}`, a prompt count alone) says nothing final: not metered (the driver then
    /// charges the worst case), and a usage-only chunk still reaches only a client that asked for usage.
    #[test]
    fn usage_without_both_counts_is_not_metered_and_a_usage_chunk_stays_with_clients_that_asked() {
        for client_wants_usage in [false, true] {
            let mut g = StreamGate::new(client_wants_usage);
            let mut steps = g.push(chunk(json!({"choices": [{"index": 0, "delta": {"content": "hi"},
                "finish_reason": "stop"}], "usage": {"prompt_tokens": 100}})));
            steps.extend(g.push(chunk(json!({"choices": [], "usage": {}}))));
            steps.extend(g.finish());
            assert_eq!(usages(&steps), [], "client_wants_usage={client_wants_usage}");
            let sent: Vec<&Sse> =
                steps.iter().filter_map(|s| if let Step::Emit(e) = s { Some(e) } else { None }).flatten().collect();
            assert_eq!(sent.len(), if client_wants_usage { 2 } else { 1 }, "{sent:?}");
        }
    }
}
