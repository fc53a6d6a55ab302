//! Google's Gemini API: `models/{model}:generateContent` and `:streamGenerateContent?alt=sse`. The model
//! and the streaming flag are in the path, not the body. Tool calls are `functionCall` parts, each whole in
//! one chunk (Gemini does not stream a call's arguments), so a chunk that carries calls is held until they
//! are decided and passed on without the denied ones, with a text part that says why. Usage is
//! `usageMetadata`: running on every chunk, final on the chunk whose candidate has a `finishReason`.
//!
//! Gemini's calls need not carry an `id`; the gateway gives each one of its own (a nonce of the response
//! and where the call is) and the client gets them, so the decision, the rewrite and a hook that asks again
//! all know the call by the same id.

use paddock_policy::Usage;
use serde_json::{Value, json};

use super::{Gate, ParsedResponse, PendingCall, RequestInfo, Sse, Step, has_counts, u};

/// The methods the gateway serves under `models/{model}:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Generate,
    StreamGenerate,
    CountTokens,
}

/// A request's target, `{model}:{method}` as the last path segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub model: String,
    pub method: Method,
}

impl Target {
    /// Reads `gemini-2.5-pro:streamGenerateContent`. The model goes into the upstream's path, so only the
    /// characters model ids use are accepted (nothing that could step out of the path segment).
    pub fn parse(segment: &str) -> Result<Target, String> {
        let Some((model, method)) = segment.rsplit_once(':') else {
            return Err(format!("`{segment}`: expected `{{model}}:generateContent` or `:streamGenerateContent`"));
        };
        let method = match method {
            "generateContent" => Method::Generate,
            "streamGenerateContent" => Method::StreamGenerate,
            "countTokens" => Method::CountTokens,
            other => {
                return Err(format!(
                    "method `{other}` is not served by the gateway (generateContent, streamGenerateContent, countTokens)"
                ));
            }
        };
        check_model(model)?;
        Ok(Target { model: model.to_owned(), method })
    }
}

/// A model id fit for a path segment: letters, digits, `.`, `-`, `_`, at most 128 characters.
pub fn check_model(model: &str) -> Result<(), String> {
    let ok = !model.is_empty()
        && model.len() <= 128
        && !model.starts_with('.')
        && model.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    match ok {
        true => Ok(()),
        false => Err(format!("`{model}` is not a model id (letters, digits, `.`, `-` and `_` only)")),
    }
}

/// The upstream path for `model`, streamed or not.
pub fn upstream_path(model: &str, stream: bool) -> String {
    match stream {
        true => format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"),
        false => format!("/v1beta/models/{model}:generateContent"),
    }
}

/// The request's shape, as far as the gateway reads it. Google's API also takes snake_case field names
/// (`generation_config`, `file_data`, `cached_content`) and a single object where a list belongs (`"parts":
/// {…}`, `"tools": {…}`); the gateway reads one spelling only, so every other is refused rather than
/// forwarded unread — a `file_data` the gateway did not see is a URL the provider fetches. Checked: the
/// request's own keys, `generationConfig` and its `thinkingConfig`, `systemInstruction`, each content, each
/// part (and the parts of a function's response), each tool and `toolConfig`; not what the caller owns
/// inside them (a call's `args`, a function's `response`, a schema).
pub fn check_request(body: &Value) -> Result<(), String> {
    fn keys(v: &Value, at: &str) -> Result<(), String> {
        let Some(obj) = v.as_object() else { return Err(format!("`{at}` must be an object")) };
        match obj.keys().find(|k| k.contains('_')) {
            Some(k) => Err(format!(
                "`{at}.{k}`: the gateway reads Gemini requests in camelCase (`{}`); other spellings are refused",
                camel(k)
            )),
            None => Ok(()),
        }
    }
    fn camel(k: &str) -> String {
        let mut out = String::new();
        let mut up = false;
        for ch in k.chars() {
            match (ch, up) {
                ('_', _) => up = true,
                (c, true) => {
                    out.extend(c.to_uppercase());
                    up = false
                }
                (c, false) => out.push(c),
            }
        }
        out
    }
    fn list<'a>(v: &'a Value, at: &str) -> Result<&'a [Value], String> {
        match v {
            Value::Null => Ok(&[]),
            Value::Array(a) => Ok(a),
            _ => Err(format!("`{at}` must be a list")),
        }
    }
    fn parts(v: &Value, at: &str) -> Result<(), String> {
        for (i, part) in list(v, at)?.iter().enumerate() {
            let at = format!("{at}[{i}]");
            keys(part, &at)?;
            if let Some(r) = part.get("functionResponse").filter(|r| !r.is_null()) {
                keys(r, &format!("{at}.functionResponse"))?;
                parts(&r["parts"], &format!("{at}.functionResponse.parts"))?;
            }
        }
        Ok(())
    }
    keys(body, "body")?;
    for (field, inner) in [("generationConfig", Some("thinkingConfig")), ("toolConfig", None)] {
        if let Some(c) = body.get(field).filter(|c| !c.is_null()) {
            keys(c, field)?;
            if let Some(inner) = inner
                && let Some(t) = c.get(inner).filter(|t| !t.is_null())
            {
                keys(t, &format!("{field}.{inner}"))?;
            }
        }
    }
    if let Some(si) = body.get("systemInstruction").filter(|s| !s.is_null()) {
        match si {
            // A bare string is the API's shorthand for one text part.
            Value::String(_) => {}
            _ => {
                keys(si, "systemInstruction")?;
                parts(&si["parts"], "systemInstruction.parts")?;
            }
        }
    }
    for (i, c) in list(&body["contents"], "contents")?.iter().enumerate() {
        keys(c, &format!("contents[{i}]"))?;
        parts(&c["parts"], &format!("contents[{i}].parts"))?;
    }
    for (i, t) in list(&body["tools"], "tools")?.iter().enumerate() {
        keys(t, &format!("tools[{i}]"))?;
    }
    Ok(())
}

/// What the gateway needs from a request: the output limit (`generationConfig.maxOutputTokens`) and that one
/// candidate is asked for (each candidate's calls would need decisions and its output a hold of its own).
pub fn request_info(body: &Value, target: &Target) -> Result<RequestInfo, String> {
    let obj = body.as_object().ok_or("the request body must be a JSON object")?;
    check_request(body)?;
    let config = match obj.get("generationConfig") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => Some(c),
        Some(_) => return Err("`generationConfig` must be an object".into()),
    };
    let field = |name: &str| config.and_then(|c| c.get(name)).filter(|v| !v.is_null());
    let max_tokens = match field("maxOutputTokens") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(0) => return Err("`generationConfig.maxOutputTokens` must be at least 1".into()),
            Some(n) => Some(n),
            None => return Err("`generationConfig.maxOutputTokens` must be a positive integer".into()),
        },
    };
    if let Some(n) = field("candidateCount")
        && n.as_u64() != Some(1)
    {
        return Err("`generationConfig.candidateCount` other than 1 is not supported: each candidate's tool calls \
                    would need their own decisions, and each candidate's output its own budget hold"
            .into());
    }
    if !matches!(obj.get("contents"), Some(Value::Array(_))) {
        return Err("`contents` (an array) is required".into());
    }
    Ok(RequestInfo {
        model: target.model.clone(),
        stream: target.method == Method::StreamGenerate,
        max_tokens,
        client_wants_usage: true,
    })
}

/// Lowers `generationConfig.maxOutputTokens` to `cap` (setting it when absent). Gemini counts thinking
/// within it; a thinking budget at or above the cap (or `-1`, dynamic) is lowered below it.
pub fn cap_output(body: &mut Value, cap: u64) {
    let Some(obj) = body.as_object_mut() else { return };
    let config = obj.entry("generationConfig").or_insert_with(|| json!({}));
    if !config.is_object() {
        *config = json!({});
    }
    let max = &mut config["maxOutputTokens"];
    if max.as_u64().is_none_or(|n| n > cap) {
        *max = json!(cap);
    }
    if let Some(budget) = config.get_mut("thinkingConfig").and_then(|t| t.get_mut("thinkingBudget"))
        && budget.as_u64().is_none_or(|b| b >= cap)
    {
        *budget = json!(cap.saturating_sub(1));
    }
}

/// Keeps only the tools the client runs (`functionDeclarations`); Google Search, code execution, URL
/// context, file search, maps and the rest run at Google. Returns the names of what was removed.
pub fn remove_provider_tools(body: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    if let Some(tools) = body.get_mut("tools").and_then(Value::as_array_mut) {
        tools.retain(|t| {
            let Some(obj) = t.as_object() else {
                removed.push("(not an object)".to_owned());
                return false;
            };
            let others: Vec<&String> = obj.keys().filter(|k| k.as_str() != "functionDeclarations").collect();
            removed.extend(others.iter().map(|k| (*k).clone()));
            others.is_empty()
        });
    }
    removed
}

/// A `usageMetadata` object's counts; `None` without `promptTokenCount` (see [`has_counts`]).
/// `candidatesTokenCount` is left out when nothing was generated (a blocked prompt), so it may be absent.
pub fn usage_of(v: &Value) -> Option<Usage> {
    if !has_counts(v, &["promptTokenCount"]) {
        return None;
    }
    let cached = u(v, "cachedContentTokenCount");
    Some(Usage {
        // Gemini counts cached tokens inside promptTokenCount; the price table prices them apart. The
        // results of tools Google ran are input too.
        input_tokens: u(v, "promptTokenCount").saturating_add(u(v, "toolUsePromptTokenCount")).saturating_sub(cached),
        // Thinking is billed as output.
        output_tokens: u(v, "candidatesTokenCount").saturating_add(u(v, "thoughtsTokenCount")),
        cache_read_input_tokens: cached,
        cache_creation_input_tokens: 0,
    })
}

/// Gives every `functionCall` part without an `id` one of the gateway's: `gemini-{nonce}#{chunk}.{candidate}.{part}`.
/// The client gets the response with these ids, so a call is known by the same id to the gateway's decision,
/// the client and a hook that asks again. `nonce` is this response's own (see [`nonce`]): an id the provider
/// would choose (or none at all) could repeat, and a later call with an earlier one's id would have that
/// one's decision stand for it. Returns whether any part was named.
pub fn name_calls(response: &mut Value, nonce: &str, chunk: usize) -> bool {
    let mut named = false;
    let candidates = response.get_mut("candidates").and_then(Value::as_array_mut);
    for (c, cand) in candidates.into_iter().flatten().enumerate() {
        for (p, part) in parts_of(cand).into_iter().flatten().enumerate() {
            for (k, key) in CALL_KEYS.iter().enumerate() {
                let Some(call) = part.get_mut(*key).and_then(Value::as_object_mut) else { continue };
                if call.get("id").and_then(Value::as_str).is_none_or(str::is_empty) {
                    let suffix = if k == 0 { "" } else { ".s" };
                    call.insert("id".into(), json!(format!("gemini-{nonce}#{chunk}.{c}.{p}{suffix}")));
                    named = true;
                }
            }
        }
    }
    named
}

/// The keys of a part that hold a call: Google's, and its snake_case spelling, which Google's Python SDK
/// also reads — a provider that sends it gets it decided (and removed) like any call.
const CALL_KEYS: [&str; 2] = ["functionCall", "function_call"];

/// A response's nonce for [`name_calls`]: random, the same for every chunk of one response.
pub fn nonce() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

/// Every `functionCall` part of a response (or a chunk of one), with its place. Its id is its own: the
/// gateway names every call ([`name_calls`]) before it reads them; one that is still without an id (a
/// `functionCall` that is not an object) is named by its place.
fn calls_of(response: &Value) -> Vec<(PendingCall, usize, usize)> {
    let mut out = Vec::new();
    for (c, cand) in response["candidates"].as_array().into_iter().flatten().enumerate() {
        for (p, part) in cand["content"]["parts"].as_array().into_iter().flatten().enumerate() {
            for key in CALL_KEYS {
                let Some(call) = part.get(key).filter(|f| !f.is_null()) else { continue };
                let args = match &call["args"] {
                    Value::Null => json!({}),
                    a => a.clone(),
                };
                let id = match call["id"].as_str().filter(|i| !i.is_empty()) {
                    Some(id) => id.to_owned(),
                    None => format!("unnamed#{c}.{p}.{key}"),
                };
                // A call without a string name is still a call: decided as the empty name, which no allow rule
                // names.
                let name = call["name"].as_str().unwrap_or_default().to_owned();
                out.push((PendingCall { id, name, args }, c, p));
            }
        }
    }
    out
}

pub fn parse_response(body: &Value) -> ParsedResponse {
    ParsedResponse {
        model: body["modelVersion"].as_str().map(str::to_owned),
        usage: body.get("usageMetadata").and_then(usage_of),
        calls: calls_of(body).into_iter().map(|(c, _, _)| c).collect(),
        refused: Vec::new(),
    }
}

/// Removes the parts at `places` (candidate, part) and adds `notes` as a text part to each candidate that
/// lost one.
fn remove_parts(body: &mut Value, mut places: Vec<(usize, usize)>, notes: &str) {
    places.sort_unstable();
    // A part with two calls (both spellings) is one part.
    places.dedup();
    for (c, p) in places.iter().rev() {
        if let Some(parts) = candidate(body, *c).and_then(parts_of)
            && *p < parts.len()
        {
            parts.remove(*p);
        }
    }
    let mut touched: Vec<usize> = places.iter().map(|(c, _)| *c).collect();
    touched.dedup();
    for c in touched {
        if let Some(parts) = candidate(body, c).and_then(parts_of) {
            parts.push(json!({"text": notes}));
        }
    }
}

/// A candidate of a response, when the response has it. A provider's answer is read with `get_mut`, never
/// by indexing, which panics on a value of another type (found by fuzzing).
fn candidate(body: &mut Value, c: usize) -> Option<&mut Value> {
    body.get_mut("candidates")?.get_mut(c)
}

/// A candidate's parts, when it has them as a list.
fn parts_of(candidate: &mut Value) -> Option<&mut Vec<Value>> {
    candidate.get_mut("content")?.get_mut("parts")?.as_array_mut()
}

pub fn rewrite_response(body: &mut Value, denied: &[String], notes: &str) {
    let places = calls_of(body).into_iter().filter(|(call, _, _)| denied.contains(&call.id)).map(|(_, c, p)| (c, p));
    let places: Vec<(usize, usize)> = places.collect();
    if !places.is_empty() {
        remove_parts(body, places, notes);
    }
}

struct HeldCall {
    id: String,
    place: (usize, usize),
    pending: bool,
    denied: bool,
}

/// A chunk with calls, waiting for their decisions.
struct Held {
    chunk: Value,
    calls: Vec<HeldCall>,
    notes: Vec<String>,
}

pub struct StreamGate {
    /// This response's nonce for the ids of its calls ([`name_calls`]).
    nonce: String,
    chunks: usize,
    held: Option<Held>,
    model_seen: bool,
    metered: bool,
    running: Option<Usage>,
}

impl Default for StreamGate {
    fn default() -> StreamGate {
        StreamGate { nonce: nonce(), chunks: 0, held: None, model_seen: false, metered: false, running: None }
    }
}

impl StreamGate {
    fn release(&mut self) -> Vec<Step> {
        let Some(mut held) = self.held.take() else { return vec![] };
        let places: Vec<(usize, usize)> = held.calls.iter().filter(|c| c.denied).map(|c| c.place).collect();
        if !places.is_empty() {
            remove_parts(&mut held.chunk, places, &held.notes.join("\n"));
        }
        vec![Step::Emit(vec![Sse::json(None, &held.chunk)])]
    }
}

impl Gate for StreamGate {
    fn push(&mut self, ev: Sse) -> Vec<Step> {
        // A chunk is an object; anything else (a number, a list) is not read, nor passed on (found by fuzzing:
        // a number panicked the stream's task before the answer was metered).
        let Some(mut chunk) = serde_json::from_str::<Value>(&ev.data).ok().filter(Value::is_object) else {
            return super::unreadable(ev);
        };
        let n = self.chunks;
        self.chunks += 1;
        let mut steps = Vec::new();
        if !self.model_seen
            && let Some(m) = chunk["modelVersion"].as_str()
        {
            self.model_seen = true;
            steps.push(Step::Model(m.to_owned()));
        }
        let finished = chunk["candidates"].as_array().into_iter().flatten().any(|c| !c["finishReason"].is_null());
        if let Some(usage) = chunk.get("usageMetadata").and_then(usage_of) {
            if finished {
                // Final: metered before the chunk (or its calls) goes on.
                if !std::mem::replace(&mut self.metered, true) {
                    steps.push(Step::Usage(usage));
                }
            } else {
                self.running = Some(usage);
            }
        }
        // A chunk with calls goes out re-written anyway (when they are decided), with the gateway's ids.
        name_calls(&mut chunk, &self.nonce, n);
        let calls = calls_of(&chunk);
        if calls.is_empty() {
            steps.push(Step::Emit(vec![ev]));
            return steps;
        }
        let held = calls
            .iter()
            .map(|(call, c, p)| HeldCall { id: call.id.clone(), place: (*c, *p), pending: true, denied: false })
            .collect();
        self.held = Some(Held { chunk, calls: held, notes: Vec::new() });
        steps.extend(calls.into_iter().map(|(call, _, _)| Step::Decide(call)));
        steps
    }

    fn resolve(&mut self, id: &str, denied: Option<String>) -> Vec<Step> {
        let Some(held) = self.held.as_mut() else { return vec![] };
        if let Some(call) = held.calls.iter_mut().find(|c| c.pending && c.id == id) {
            call.pending = false;
            if let Some(note) = denied {
                call.denied = true;
                held.notes.push(note);
            }
        }
        if held.calls.iter().any(|c| c.pending) { vec![] } else { self.release() }
    }

    fn finish(&mut self) -> Vec<Step> {
        match (self.metered, self.running.take()) {
            (false, Some(u)) => vec![Step::Usage(u)],
            _ => vec![],
        }
    }
}

/// The error body Google's API sends, so that its SDKs show the message.
pub fn error_body(status: u16, message: &str) -> Value {
    let code = match status {
        400 | 413 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    json!({"error": {"code": status, "message": message, "status": code}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usages(steps: &[Step]) -> Vec<Usage> {
        steps.iter().filter_map(|s| if let Step::Usage(u) = s { Some(*u) } else { None }).collect()
    }

    fn decides(steps: &[Step]) -> Vec<PendingCall> {
        steps.iter().filter_map(|s| if let Step::Decide(c) = s { Some(c.clone()) } else { None }).collect()
    }

    fn emitted(steps: &[Step]) -> Vec<Value> {
        steps
            .iter()
            .filter_map(|s| if let Step::Emit(e) = s { Some(e) } else { None })
            .flatten()
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect()
    }

    #[test]
    fn targets_are_read_from_the_path_and_nothing_else_gets_into_it() {
        let t = Target::parse("gemini-2.5-pro:streamGenerateContent").unwrap();
        assert_eq!((t.model.as_str(), t.method), ("gemini-2.5-pro", Method::StreamGenerate));
        assert_eq!(Target::parse("gemini-2.5-flash:countTokens").unwrap().method, Method::CountTokens);
        for bad in [
            "gemini-2.5-pro",
            "..:generateContent",
            "a/b:generateContent",
            "a%2fb:generateContent",
            ":generateContent",
            "m:embedContent",
            "m?x:generateContent",
            "m:generateContent:generateContent",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            upstream_path("gemini-2.5-pro", true),
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn request_limits_are_checked_and_capped() {
        let t = Target::parse("gemini-2.5-pro:generateContent").unwrap();
        let info = |b: Value| request_info(&b, &t);
        assert_eq!(info(json!({"contents": []})).unwrap().max_tokens, None);
        assert_eq!(
            info(json!({"contents": [], "generationConfig": {"maxOutputTokens": 99}})).unwrap().max_tokens,
            Some(99)
        );
        assert!(
            info(json!({"contents": [], "generationConfig": {"maxOutputTokens": 0}}))
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(info(json!({"contents": [], "generationConfig": {"maxOutputTokens": "9"}})).is_err());
        assert!(
            info(json!({"contents": [], "generationConfig": {"candidateCount": 2}}))
                .unwrap_err()
                .contains("candidateCount")
        );
        assert!(info(json!({"contents": [], "generationConfig": {"candidateCount": 1}})).is_ok());
        assert!(info(json!({"contents": [], "generationConfig": []})).is_err());
        assert!(info(json!({})).unwrap_err().contains("contents"));
        let mut b = json!({"contents": []});
        cap_output(&mut b, 4096);
        assert_eq!(b["generationConfig"]["maxOutputTokens"], 4096);
        let mut b = json!({"generationConfig": {"maxOutputTokens": 65536, "thinkingConfig": {"thinkingBudget": -1}}});
        cap_output(&mut b, 4096);
        assert_eq!(b["generationConfig"], json!({"maxOutputTokens": 4096, "thinkingConfig": {"thinkingBudget": 4095}}));
        let mut b = json!({"generationConfig": {"maxOutputTokens": 100}});
        cap_output(&mut b, 4096);
        assert_eq!(b["generationConfig"]["maxOutputTokens"], 100);
    }

    #[test]
    fn other_spellings_and_shapes_are_refused_not_forwarded_unread() {
        let t = Target::parse("gemini-2.5-pro:generateContent").unwrap();
        let refused = |b: Value| request_info(&b, &t).unwrap_err();
        let text = json!([{"text": "hi"}]);
        for (body, says) in [
            (json!({"contents": [], "generation_config": {"candidate_count": 8}}), "generationConfig"),
            (json!({"contents": [], "generationConfig": {"max_output_tokens": 65536}}), "maxOutputTokens"),
            (
                json!({"contents": [], "generationConfig": {"thinkingConfig": {"thinking_budget": -1}}}),
                "thinkingBudget",
            ),
            (json!({"contents": [], "cached_content": "cachedContents/x"}), "cachedContent"),
            (
                json!({"contents": [{"role": "user", "parts": [{"file_data": {"file_uri": "https://evil/?d=x"}}]}]}),
                "fileData",
            ),
            (
                json!({"contents": [{"role": "user", "parts": {"fileData": {"fileUri": "https://evil/"}}}]}),
                "must be a list",
            ),
            (json!({"contents": [{"role": "user", "parts": text}], "tools": {"googleSearch": {}}}), "must be a list"),
            (json!({"contents": [], "tools": [{"url_context": {}}]}), "urlContext"),
            (json!({"contents": [], "system_instruction": {"parts": text}}), "systemInstruction"),
            (
                json!({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {},
                "parts": [{"file_data": {}}]}}]}]}),
                "fileData",
            ),
            (json!({"contents": [], "tool_config": {}}), "toolConfig"),
        ] {
            let e = refused(body.clone());
            assert!(e.contains(says), "{body}: {e}");
        }
        // What the caller owns inside (a call's arguments, a function's response, a schema) is its own.
        let ok = json!({"contents": [
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"file_path": "a", "dir_path": "b"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"exit_code": 0}}}]}],
            "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"properties": {"file_path": {}}}}]}],
            "systemInstruction": "be brief"});
        assert!(request_info(&ok, &t).is_ok());
    }

    #[test]
    fn only_function_declarations_leave() {
        let mut b = json!({"tools": [{"functionDeclarations": [{"name": "run_shell_command"}]}, {"googleSearch": {}},
            {"codeExecution": {}}, {"functionDeclarations": [], "urlContext": {}}, "x"]});
        let removed = remove_provider_tools(&mut b);
        assert_eq!(removed, ["googleSearch", "codeExecution", "urlContext", "(not an object)"]);
        assert_eq!(b["tools"], json!([{"functionDeclarations": [{"name": "run_shell_command"}]}]));
    }

    #[test]
    fn usage_counts_thinking_as_output_and_cache_apart() {
        let u = usage_of(&json!({"promptTokenCount": 1000, "cachedContentTokenCount": 400, "candidatesTokenCount": 50,
            "thoughtsTokenCount": 200, "toolUsePromptTokenCount": 10, "totalTokenCount": 1260}));
        assert_eq!(
            u,
            Some(Usage { input_tokens: 610, output_tokens: 250, cache_read_input_tokens: 400, ..Usage::default() })
        );
    }

    #[test]
    fn a_denied_call_leaves_the_response_and_a_note_takes_its_place() {
        let mut body = json!({"responseId": "r1", "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Running two commands."},
            {"functionCall": {"name": "run_shell_command", "args": {"command": "ls"}}},
            {"functionCall": {"name": "run_shell_command", "args": {"command": "git push"}}}]},
            "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5}});
        assert!(name_calls(&mut body, "n1", 0));
        let parsed = parse_response(&body);
        assert_eq!(parsed.calls.len(), 2);
        assert_eq!(parsed.calls[1].id, "gemini-n1#0.0.2");
        // Named once: a call that has an id keeps it.
        assert!(!name_calls(&mut body, "n2", 0));
        assert_eq!(parsed.calls[1].args["command"], "git push");
        rewrite_response(&mut body, &[parsed.calls[1].id.clone()], "[paddock] denied");
        let parts = &body["candidates"][0]["content"]["parts"];
        assert_eq!(parts.as_array().unwrap().len(), 3);
        assert_eq!(parts[1]["functionCall"]["args"]["command"], "ls");
        assert_eq!(parts[2]["text"], "[paddock] denied");
    }

    #[test]
    fn a_streamed_call_is_held_until_decided_and_usage_is_metered_once() {
        let mut g = StreamGate::default();
        let text = json!({"responseId": "r", "candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 1}, "modelVersion": "gemini-2.5-pro"});
        let steps = g.push(Sse::json(None, &text));
        assert_eq!(usages(&steps), [], "running usage is not final");
        assert_eq!(emitted(&steps).len(), 1);
        let calls = json!({"responseId": "r", "candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "run_shell_command", "args": {"command": "git push"}}},
            {"functionCall": {"id": "own", "name": "run_shell_command", "args": {"command": "ls"}}}]},
            "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 30}});
        let steps = g.push(Sse::json(None, &calls));
        assert_eq!(usages(&steps), [Usage { input_tokens: 10, output_tokens: 30, ..Usage::default() }]);
        let asked = decides(&steps);
        assert!(asked[0].id.starts_with("gemini-") && asked[0].id.ends_with("#1.0.0"), "{asked:?}");
        assert_eq!(asked[1].id, "own");
        assert!(emitted(&steps).is_empty(), "nothing of the chunk before its calls are decided");
        assert!(g.resolve(&asked[0].id, Some("[paddock] no push".into())).is_empty());
        let out = emitted(&g.resolve("own", None));
        let parts = &out[0]["candidates"][0]["content"]["parts"];
        assert_eq!(parts.as_array().unwrap().len(), 2);
        assert_eq!(parts[0]["functionCall"]["args"]["command"], "ls");
        // Another response's calls get other ids, even when the provider repeats its response id.
        let mut other = StreamGate::default();
        let again = decides(&other.push(Sse::json(None, &calls)));
        assert_ne!(again[0].id, asked[0].id);
        assert_eq!(parts[1]["text"], "[paddock] no push");
        // A repeat of the final usage is not metered again; nothing is left for the end.
        let again = json!({"candidates": [{"content": {"parts": []}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 30}});
        assert_eq!(usages(&g.push(Sse::json(None, &again))), []);
        assert_eq!(usages(&g.finish()), []);
    }

    #[test]
    fn a_call_in_the_snake_case_spelling_is_decided_too() {
        let mut body = json!({"candidates": [{"content": {"parts": [
            {"function_call": {"name": "run_shell_command", "args": {"command": "git push --force"}}},
            {"functionCall": {"name": "a"}, "function_call": {"name": "b"}},
            {"text": "ok"}]}}]});
        name_calls(&mut body, "n", 0);
        let calls = parse_response(&body).calls;
        assert_eq!(calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["run_shell_command", "a", "b"]);
        let denied = vec![calls[0].id.clone(), calls[2].id.clone()];
        rewrite_response(&mut body, &denied, "[paddock] no");
        let parts = body["candidates"][0]["content"]["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 2, "the two parts with a denied call are gone, the text stays: {parts:?}");
        assert_eq!(parts[0]["text"], "ok");
    }

    #[test]
    fn a_stream_without_final_usage_hands_back_the_running_count_and_unreadable_events_are_dropped() {
        let mut g = StreamGate::default();
        g.push(Sse::json(
            None,
            &json!({"candidates": [{"content": {"parts": [{"text": "a"}]}}],
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3}}),
        ));
        // JavaScript would read this one (a lone surrogate) and run its call; the gateway cannot, so it goes.
        let hostile = r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"run_shell_command","args":{"command":"git push \ud800"}}}]}}]}"#;
        assert!(g.push(Sse::new(None, hostile)).is_empty());
        assert_eq!(usages(&g.finish()), [Usage { input_tokens: 7, output_tokens: 3, ..Usage::default() }]);
    }
}
