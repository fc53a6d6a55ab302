//! Budgets hold against an upstream that answers as much as it is allowed: the forwarded request carries
//! the output cap its hold reserved, unpriced models are asked about before they leave, and every streamed
//! answer is charged, with or without usage.

mod support;

use std::time::Duration;

use axum::response::IntoResponse;
use serde_json::{Value, json};
use support::*;

async fn post(t: &TestGateway, token: &str, path: &str, body: &Value) -> reqwest::Response {
    t.client.post(format!("{}{path}", t.url)).bearer_auth(token).json(body).send().await.unwrap()
}

/// An upstream that would write 100,000 tokens, cut to the cap the request carries, as real providers do.
fn honours_the_cap(path: &str, body: &Value) -> axum::response::Response {
    let out = forwarded_cap(body).unwrap_or(100_000).min(100_000);
    axum::Json(answer_with_usage(path, 50, out)).into_response()
}

/// The text of a forwarded request's first message, in any wire format: the stand-ins below read from it how
/// to answer.
fn first_text(body: &Value) -> &str {
    body["messages"][0]["content"]
        .as_str()
        .or(body["input"][0]["content"][0]["text"].as_str())
        .or(body["contents"][0]["parts"][0]["text"].as_str())
        .unwrap_or("")
}

fn charges(info: &Value) -> Vec<Value> {
    info["charges"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn five_concurrent_uncapped_requests_pass_a_hard_limit_by_at_most_one_hold() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let (base, seen) = upstream(400, honours_the_cap).await;
    let mut cfg = config_with_upstream(dir.path(), &base);
    // Each hold: 30,000 output tokens of gpt-5 at $10/M = $0.30 (plus a little input).
    cfg.limits.default_max_tokens = 30_000;
    let t = TestGateway::with_config(dir.path(), cfg).await;
    let (id, token) = t.session("dollar").await;
    let (path, mut body) = request("responses", "gpt-5", &[("user", "write a very long report")], false);
    body.as_object_mut().unwrap().remove("max_output_tokens");
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (client, url, token, body) =
                (t.client.clone(), format!("{}{path}", t.url), token.clone(), body.clone());
            tokio::spawn(async move { client.post(url).bearer_auth(token).json(&body).send().await.unwrap() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap().status().as_u16());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 403], "holds of $0.30 against $1: four fit, the fifth is refused");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|(_, b)| b["max_output_tokens"] == 30_000), "each left with its hold's cap: {seen:?}");
    let hold = 30_000.0 * 10.0 / 1e6 + 0.01;
    let cost = t.session_info(&id).await["usage"]["costUsd"].as_f64().unwrap();
    assert!(cost <= 1.0 + hold, "spent ${cost}: more than the $1 limit plus one hold");
    assert!(cost > 1.0, "four answers of 30,000 tokens were charged: ${cost}");
}

#[tokio::test]
async fn the_forwarded_request_carries_the_cap_in_every_wire_format() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let (base, seen) = upstream(0, honours_the_cap).await;
    let t = TestGateway::with_config(dir.path(), config_with_upstream(dir.path(), &base)).await;
    let (id, token) = t.session("coder").await;
    let default = t.gw.limits.default_max_tokens;
    // (wire, what the client set, what must leave)
    let cases: Vec<(&str, Value, Value)> = vec![
        ("responses", json!({}), json!({"max_output_tokens": default})),
        ("responses", json!({"max_output_tokens": 300}), json!({"max_output_tokens": 300})),
        ("chat", json!({}), json!({"max_completion_tokens": default})),
        (
            "chat",
            json!({"max_tokens": 9000, "max_completion_tokens": 100}),
            json!({"max_tokens": 100, "max_completion_tokens": 100}),
        ),
        ("chat", json!({"max_tokens": 700}), json!({"max_tokens": 700})),
        ("anthropic", json!({"max_tokens": 2048}), json!({"max_tokens": 2048})),
        (
            "anthropic",
            json!({"max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024}}),
            json!({"max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024}}),
        ),
    ];
    let mut charged = 0.0;
    for (i, (wire, limits, expected)) in cases.iter().enumerate() {
        let model = if *wire == "anthropic" { "claude-sonnet-4-5" } else { "gpt-5" };
        let (path, mut body) = request(wire, model, &[("user", "hi")], false);
        for k in ["max_tokens", "max_output_tokens"] {
            body.as_object_mut().unwrap().remove(k);
        }
        for (k, v) in limits.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = post(&t, &token, path, &body).await;
        assert_eq!(r.status(), 200, "{wire} {limits}: {}", r.text().await.unwrap());
        let forwarded = seen.lock().unwrap()[i].1.clone();
        for (k, v) in expected.as_object().unwrap() {
            assert_eq!(&forwarded[k], v, "{wire} {limits}: `{k}` in {forwarded}");
        }
        let info = t.session_info(&id).await;
        let last = charges(&info).last().cloned().unwrap();
        assert_eq!(
            Some(last["output_tokens"].as_u64().unwrap()),
            forwarded_cap(&forwarded),
            "{wire}: metered as answered"
        );
        charged = info["usage"]["costUsd"].as_f64().unwrap();
    }
    assert!(charged > 0.0);
    // Limits the gateway cannot cap are refused before anything leaves.
    let before = seen.lock().unwrap().len();
    for (wire, key, v) in [
        ("responses", "max_output_tokens", json!(0)),
        ("responses", "max_output_tokens", json!("lots")),
        ("chat", "max_completion_tokens", json!(-1)),
        ("chat", "n", json!(2.0)),
        ("anthropic", "max_tokens", json!(1.5)),
    ] {
        let model = if wire == "anthropic" { "claude-sonnet-4-5" } else { "gpt-5" };
        let (path, mut body) = request(wire, model, &[("user", "hi")], false);
        body[key] = v.clone();
        let r = post(&t, &token, path, &body).await;
        assert_eq!(r.status(), 400, "{wire} {key}={v}");
    }
    assert_eq!(seen.lock().unwrap().len(), before);
}

#[tokio::test]
async fn an_unpriced_model_is_asked_about_before_its_first_request_leaves() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let (base, seen) = upstream(0, honours_the_cap).await;
    let t = TestGateway::with_config(dir.path(), config_with_upstream(dir.path(), &base)).await;
    let (id, token) = t.session("capped").await;
    let (path, body) = request("chat", "my-private-model", &[("user", "hi")], false);
    let (client, url, tok, b) = (t.client.clone(), format!("{}{path}", t.url), token.clone(), body.clone());
    let held = tokio::spawn(async move { client.post(url).bearer_auth(tok).json(&b).send().await.unwrap() });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let approval = loop {
        assert!(std::time::Instant::now() < deadline, "no ask opened; the upstream saw {:?}", seen.lock().unwrap());
        let r = t.client.get(format!("{}/v1/approvals", t.url)).bearer_auth(ADMIN).send().await.unwrap();
        let list: Vec<Value> = r.json().await.unwrap();
        if let Some(a) = list.into_iter().find(|a| a["session"] == id.as_str()) {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(approval["phase"], "llm_request");
    assert!(approval["reason"].as_str().unwrap().contains("my-private-model"), "{approval}");
    assert!(seen.lock().unwrap().is_empty(), "nothing left while the ask is open");
    let aid = approval["id"].as_str().unwrap();
    assert_eq!(t.settle(aid, "deny", ADMIN, Some(json!({"by": "bob"}))).await.status(), 200);
    assert_eq!(held.await.unwrap().status(), 403);
    assert!(seen.lock().unwrap().is_empty(), "a denied unpriced request never leaves");
    // Without a budget, an unpriced model needs no answer.
    let (_, free) = t.session("coder").await;
    assert_eq!(post(&t, &free, path, &body).await.status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

/// Chat chunks of a short answer; `usage` goes on the chunk that carries `finish_reason`.
fn chat_chunks(usage_on_finish: Option<Value>, trailing_usage: Option<Value>) -> Vec<Value> {
    let mut finish = json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-5",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    if let Some(u) = usage_on_finish {
        finish["usage"] = u;
    }
    let mut out = vec![
        json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-5",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"}}]}),
        finish,
    ];
    if let Some(u) = trailing_usage {
        out.push(json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-5", "choices": [], "usage": u}));
    }
    out.push(json!("[DONE]"));
    out
}

#[tokio::test]
async fn usage_on_the_chunk_that_finishes_a_chat_stream_is_metered_once() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let usage = json!({"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500});
    let u = usage.clone();
    let (base, _) = upstream(0, move |_, b| {
        // A client that asked for the usage chunk gets it repeated at the end, as some servers do.
        let trailing = (b["messages"][0]["content"] == "twice").then(|| u.clone());
        sse_response(&chat_chunks(Some(u.clone()), trailing))
    })
    .await;
    let t = TestGateway::with_config(dir.path(), config_with_upstream(dir.path(), &base)).await;
    for text in ["once", "twice"] {
        let (id, token) = t.session("coder").await;
        let (path, body) = request("chat", "gpt-5", &[("user", text)], true);
        let r = post(&t, &token, path, &body).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Hello"));
        let info = t.session_info(&id).await;
        let c = charges(&info);
        assert_eq!(c.len(), 1, "{text}: one charge: {c:?}");
        assert_eq!((c[0]["input_tokens"].as_u64(), c[0]["output_tokens"].as_u64()), (Some(1000), Some(500)));
        assert_eq!(c[0]["stream_complete"], true);
        assert!(info["usage"]["costUsd"].as_f64().unwrap() > 0.0);
    }
}

#[tokio::test]
async fn a_stream_that_ends_without_usage_is_charged_its_worst_case() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let (base, _) = upstream(0, |path, b| {
        let how = first_text(b);
        if b["stream"] != true {
            let mut answer = answer_with_usage(path, 0, 0);
            answer.as_object_mut().unwrap().remove("usage");
            return axum::Json(answer).into_response();
        }
        match (path, how) {
            ("/v1/chat/completions", "no usage") => sse_response(&chat_chunks(None, None)),
            ("/v1/chat/completions", _) => sse_response(&[
                json!({"id": "c", "model": "gpt-5", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
                json!("{not json"),
            ]),
            ("/v1/messages", _) => sse_response(&[
                json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
                    "model": "claude-sonnet-4-5", "content": [], "usage": {"input_tokens": 5000, "output_tokens": 1}}}),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
            ]),
            _ => sse_response(&[
                json!({"type": "response.created", "response": {"id": "r", "model": "gpt-5", "status": "in_progress"}}),
                json!({"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "content_index": 0, "delta": "Hel"}),
            ]),
        }
    })
    .await;
    let t = TestGateway::with_config(dir.path(), config_with_upstream(dir.path(), &base)).await;
    for (wire, how) in [
        ("chat", "no usage"),
        ("chat", "cut off, malformed"),
        ("anthropic", "cut off"),
        ("responses", "cut off"),
        ("responses", "complete, no usage"),
    ] {
        let (id, token) = t.session("coder").await;
        let model = if wire == "anthropic" { "claude-sonnet-4-5" } else { "gpt-5" };
        let streamed = !how.starts_with("complete");
        let (path, body) = request(wire, model, &[("user", how)], streamed);
        let r = post(&t, &token, path, &body).await;
        assert_eq!(r.status(), 200);
        let _ = r.text().await.unwrap();
        let info = t.session_info(&id).await;
        let c = charges(&info);
        assert_eq!(c.len(), 1, "{wire} {how}: {c:?}");
        assert_eq!(c[0]["output_tokens"], 1024, "{wire} {how}: charged the hold's output cap: {c:?}");
        assert!(c[0]["input_tokens"].as_u64().unwrap() > 0);
        if wire == "anthropic" {
            assert_eq!(c[0]["input_tokens"], 5000, "the input count the stream announced is kept");
        }
        assert_eq!(c[0]["stream_complete"], !streamed, "{wire} {how}");
        assert!(info["usage"]["costUsd"].as_f64().unwrap() > 0.0, "{wire} {how}: never free");
    }
    let metrics = t.client.get(format!("{}/metrics", t.url)).send().await.unwrap().text().await.unwrap();
    for (wire, n) in [("openai-chat", 2), ("anthropic", 1), ("openai-responses", 2)] {
        let line = format!("paddock_gateway_usage_missing_total{{wire=\"{wire}\"}} {n}");
        assert!(metrics.contains(&line), "`{line}` in:\n{metrics}");
    }
}

/// How a stand-in provider places usage in its answer, for [`every_usage_placement_is_charged_exactly_or_the_hold`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum Placement {
    /// In the complete (non-streamed) response body.
    Body,
    /// Streamed: Anthropic's `message_start` + cumulative `message_delta`; Chat's usage-only chunk after the
    /// finishing one; Responses' `response.completed`.
    Final,
    /// Streamed: on the chunk that carries `finish_reason` (Chat), on `message_delta` in full, input included
    /// (Anthropic), on `response.incomplete` (Responses).
    OnFinish,
    /// Nowhere: the answer ends normally without it.
    Missing,
}

/// The answer of `wire` with usage placed as `how`: 1,200 prompt tokens of which 200 read from the cache,
/// and 300 output tokens.
fn placed(wire: &str, how: Placement) -> axum::response::Response {
    let streamed = how != Placement::Body && !(how == Placement::Missing && wire.ends_with("-complete"));
    let wire = wire.trim_end_matches("-complete");
    let with = how != Placement::Missing;
    match (wire, streamed) {
        ("anthropic", false) => {
            let mut a = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 1000, "output_tokens": 300, "cache_read_input_tokens": 200}});
            if !with {
                a.as_object_mut().unwrap().remove("usage");
            }
            axum::Json(a).into_response()
        }
        ("anthropic", true) => {
            let start_usage = if with {
                json!({"input_tokens": 1000, "output_tokens": 1, "cache_read_input_tokens": 200})
            } else {
                json!(null)
            };
            let mut delta = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}});
            match how {
                Placement::Final => delta["usage"] = json!({"output_tokens": 300}),
                Placement::OnFinish => {
                    delta["usage"] = json!({"input_tokens": 1000, "output_tokens": 300, "cache_read_input_tokens": 200})
                }
                _ => {}
            }
            let mut start = json!({"type": "message_start", "message": {"id": "m", "type": "message",
                "role": "assistant", "model": "claude-sonnet-4-5", "content": []}});
            if how == Placement::Final {
                start["message"]["usage"] = start_usage;
            }
            sse_response(&[
                start,
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
                json!({"type": "content_block_stop", "index": 0}),
                delta,
                json!({"type": "message_stop"}),
            ])
        }
        ("chat", false) => {
            let mut a = answer_with_usage("/v1/chat/completions", 1200, 300);
            a["usage"]["prompt_tokens_details"] = json!({"cached_tokens": 200});
            a["choices"][0]["message"]["content"] = json!("Hello");
            if !with {
                a.as_object_mut().unwrap().remove("usage");
            }
            axum::Json(a).into_response()
        }
        ("chat", true) => {
            let usage = json!({"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
                "prompt_tokens_details": {"cached_tokens": 200}});
            let on_finish = (how == Placement::OnFinish).then(|| usage.clone());
            let trailing = (how == Placement::Final).then(|| usage.clone());
            sse_response(&chat_chunks(on_finish, trailing))
        }
        ("responses", false) => {
            let mut a = answer_with_usage("/v1/responses", 1200, 300);
            a["usage"]["input_tokens_details"] = json!({"cached_tokens": 200});
            a["output"][0]["content"][0]["text"] = json!("Hello");
            if !with {
                a.as_object_mut().unwrap().remove("usage");
            }
            axum::Json(a).into_response()
        }
        ("gemini", streamed) => {
            let usage = json!({"promptTokenCount": 1200, "cachedContentTokenCount": 200, "candidatesTokenCount": 300,
                "totalTokenCount": 1500});
            let done = |parts: Value| {
                json!({"candidates": [{"content": {"role": "model", "parts": parts},
                "finishReason": "STOP", "index": 0}], "modelVersion": "gemini-2.5-pro"})
            };
            if !streamed {
                let mut a = done(json!([{"text": "Hello"}]));
                if with {
                    a["usageMetadata"] = usage;
                }
                return axum::Json(a).into_response();
            }
            // Final: running counts on the way and the full count on the finishing chunk; on finish: only there.
            let mut first = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]}}]});
            if how == Placement::Final {
                first["usageMetadata"] = json!({"promptTokenCount": 1200, "totalTokenCount": 1200});
            }
            let mut last = done(json!([{"text": "!"}]));
            if with {
                last["usageMetadata"] = usage;
            }
            sse_response(&[first, last])
        }
        _ => {
            let usage = json!({"input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500,
                "input_tokens_details": {"cached_tokens": 200}});
            let (kind, status) = if how == Placement::OnFinish {
                ("response.incomplete", "incomplete")
            } else {
                ("response.completed", "completed")
            };
            let mut done = json!({"type": kind, "response": {"id": "r", "model": "gpt-5", "status": status,
                "output": [{"type": "message", "id": "m", "role": "assistant", "status": status,
                    "content": [{"type": "output_text", "text": "Hello", "annotations": []}]}]}});
            if with {
                done["response"]["usage"] = usage;
            }
            sse_response(&[
                json!({"type": "response.created", "response": {"id": "r", "model": "gpt-5", "status": "in_progress"}}),
                json!({"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "content_index": 0, "delta": "Hello"}),
                done,
            ])
        }
    }
}

#[tokio::test]
async fn every_usage_placement_is_charged_exactly_or_the_hold() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let (base, _) = upstream(0, |path, b| {
        let how = first_text(b);
        let wire = match path {
            "/v1/messages" => "anthropic",
            "/v1/chat/completions" => "chat",
            p if p.starts_with("/v1beta/models/") => "gemini",
            _ => "responses",
        };
        let streamed = b["stream"] == true || path.ends_with(":streamGenerateContent");
        let how = match how {
            "body" => Placement::Body,
            "final" => Placement::Final,
            "on finish" => Placement::OnFinish,
            _ => Placement::Missing,
        };
        let wire = if streamed { wire.to_owned() } else { format!("{wire}-complete") };
        placed(&wire, how)
    })
    .await;
    let t = TestGateway::with_config(dir.path(), config_with_upstream(dir.path(), &base)).await;
    let mut charged_missing = std::collections::BTreeMap::<&str, u64>::new();
    for wire in WIRES.into_iter().chain(["gemini"]) {
        for how in ["body", "final", "on finish", "missing", "missing, complete"] {
            let streamed = !matches!(how, "body" | "missing, complete");
            let (id, token) = t.session("coder").await;
            let model = model_of(wire);
            let (path, body) = request(wire, model, &[("user", how)], streamed);
            let r = post(&t, &token, path, &body).await;
            assert_eq!(r.status(), 200, "{wire} {how}");
            assert!(r.text().await.unwrap().contains("Hello"), "{wire} {how}: the answer reaches the client");
            let info = t.session_info(&id).await;
            let c = charges(&info);
            assert_eq!(c.len(), 1, "{wire} {how}: one charge: {c:?}");
            let got = (
                c[0]["input_tokens"].as_u64().unwrap(),
                c[0]["output_tokens"].as_u64().unwrap(),
                c[0]["cache_read_tokens"].as_u64().unwrap(),
            );
            if how.starts_with("missing") {
                // The hold: the request's output cap (1,024) and its input estimate, never nothing.
                assert_eq!(got.1, 1024, "{wire} {how}: charged the hold's output cap: {c:?}");
                assert!(got.0 > 0, "{wire} {how}: {c:?}");
                *charged_missing.entry(wire).or_default() += 1;
            } else {
                assert_eq!(got, (1000, 300, 200), "{wire} {how}: charged exactly what the provider reported: {c:?}");
                assert_eq!(c[0]["stream_complete"], true, "{wire} {how}");
            }
            assert!(info["usage"]["costUsd"].as_f64().unwrap() > 0.0, "{wire} {how}: never free");
        }
    }
    let metrics = t.client.get(format!("{}/metrics", t.url)).send().await.unwrap().text().await.unwrap();
    for (wire, label) in
        [("anthropic", "anthropic"), ("chat", "openai-chat"), ("responses", "openai-responses"), ("gemini", "gemini")]
    {
        let line = format!("paddock_gateway_usage_missing_total{{wire=\"{label}\"}} {}", charged_missing[wire]);
        assert!(metrics.contains(&line), "`{line}` in:\n{metrics}");
    }
}

/// The answer of `path` with a usage object that counts nothing (`{}`) wherever its final usage goes.
fn usage_counting_nothing(path: &str, streamed: bool) -> axum::response::Response {
    let empty = json!({});
    match (path, streamed) {
        ("/v1/messages", true) => sse_response(&[
            json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
                "model": "claude-sonnet-4-5", "content": [], "usage": empty}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": empty}),
            json!({"type": "message_stop"}),
        ]),
        ("/v1/chat/completions", true) => sse_response(&chat_chunks(Some(empty.clone()), Some(empty))),
        ("/v1/responses", true) => sse_response(&[
            json!({"type": "response.created", "response": {"id": "r", "model": "gpt-5", "status": "in_progress"}}),
            json!({"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "content_index": 0,
                "delta": "Hello"}),
            json!({"type": "response.completed", "response": {"id": "r", "model": "gpt-5", "status": "completed",
                "output": [{"type": "message", "id": "m", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": "Hello", "annotations": []}]}], "usage": empty}}),
        ]),
        (p, streamed) if p.starts_with("/v1beta/models/") => {
            let a = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]},
                "finishReason": "STOP", "index": 0}], "modelVersion": "gemini-2.5-pro", "usageMetadata": empty});
            if streamed { sse_response(&[a]) } else { axum::Json(a).into_response() }
        }
        (p, _) => {
            let mut a = answer_with_usage(p, 1200, 300);
            a["usage"] = empty;
            let text = if p == "/v1/messages" {
                &mut a["content"][0]["text"]
            } else if p == "/v1/responses" {
                &mut a["output"][0]["content"][0]["text"]
            } else {
                &mut a["choices"][0]["message"]["content"]
            };
            *text = json!("Hello");
            axum::Json(a).into_response()
        }
    }
}

/// `usage: {}` (a careless or a hostile server's) counts nothing: the answer is charged the hold's worst case
/// and counted as usage missing, never zero tokens, streamed or not, in every wire format.
#[tokio::test]
async fn usage_that_counts_nothing_is_charged_the_hold() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let (base, _) = upstream(0, |path, b| {
        usage_counting_nothing(path, b["stream"] == true || path.ends_with(":streamGenerateContent"))
    })
    .await;
    let t = TestGateway::with_config(dir.path(), config_with_upstream(dir.path(), &base)).await;
    for wire in WIRES.into_iter().chain(["gemini"]) {
        for streamed in [false, true] {
            let (id, token) = t.session("coder").await;
            let model = model_of(wire);
            let (path, body) = request(wire, model, &[("user", "hi")], streamed);
            let r = post(&t, &token, path, &body).await;
            assert_eq!(r.status(), 200, "{wire} streamed={streamed}");
            assert!(r.text().await.unwrap().contains("Hello"), "{wire} streamed={streamed}: the answer arrives");
            let c = charges(&t.session_info(&id).await);
            assert_eq!(c.len(), 1, "{wire} streamed={streamed}: one charge: {c:?}");
            assert_eq!(c[0]["output_tokens"], 1024, "{wire} streamed={streamed}: the hold's output cap: {c:?}");
            assert!(c[0]["input_tokens"].as_u64().unwrap() > 0, "{wire} streamed={streamed}: {c:?}");
        }
    }
    let metrics = t.client.get(format!("{}/metrics", t.url)).send().await.unwrap().text().await.unwrap();
    for label in ["anthropic", "openai-chat", "openai-responses", "gemini"] {
        let line = format!("paddock_gateway_usage_missing_total{{wire=\"{label}\"}} 2");
        assert!(metrics.contains(&line), "`{line}` in:\n{metrics}");
    }
}
