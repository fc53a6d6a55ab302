//! Fault injection on loopback: a provider that breaks in each way a real one does (a reset mid-stream, a
//! stall between chunks, malformed SSE, a truncated JSON answer, an error status, an absurd usage block).
//! For each: what the client sees (an error in its own wire format), that nothing unbilled is released (an
//! answer that was generated is charged, at worst its hold), and that the next request is served. The table
//! in docs/reliability.md lists them with the faults other suites inject.

mod support;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use support::*;

const WIRES4: [&str; 4] = ["anthropic", "chat", "responses", "gemini"];

/// The first streamed event of an answer in the wire format of `path`: some text, no usage yet.
fn first_event(path: &str) -> String {
    let v = match path {
        "/v1/messages" => {
            json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [], "usage": {"input_tokens": 10, "output_tokens": 1}}})
        }
        "/v1/chat/completions" => {
            json!({"id": "c", "model": "gpt-5", "choices": [{"index": 0, "delta": {"content": "Hel"}}]})
        }
        "/v1/responses" => {
            json!({"type": "response.created", "response": {"id": "r", "model": "gpt-5", "status": "in_progress"}})
        }
        _ => json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}], "responseId": "g"}),
    };
    let name = v["type"].as_str().map(|t| format!("event: {t}\n")).unwrap_or_default();
    format!("{name}data: {v}\n\n")
}

fn streamed(chunks: impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static) -> Response {
    Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(chunks)).unwrap()
}

fn reset() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by the fault")
}

/// `first`, and once it is on the wire (with the headers), the connection reset.
fn then_reset(first: Bytes) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(0, move |n| {
        let first = first.clone();
        async move {
            match n {
                0 => Some((Ok(first), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Err(reset()), 2))
                }
                _ => None,
            }
        }
    })
}

/// What the stand-in provider does, read from the request's first message.
fn faulty(path: &str, body: &Value) -> Response {
    let text = body["messages"][0]["content"]
        .as_str()
        .or(body["input"][0]["content"][0]["text"].as_str())
        .or(body["contents"][0]["parts"][0]["text"].as_str())
        .unwrap_or("");
    let first = Bytes::from(first_event(path));
    match text {
        "reset" => streamed(then_reset(first)),
        "reset before headers" => streamed(futures_util::stream::iter([Err(reset())])),
        "stall" => streamed(futures_util::stream::unfold(0, move |n| {
            let first = first.clone();
            async move {
                match n {
                    0 => Some((Ok(first), 1)),
                    _ => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        None
                    }
                }
            }
        })),
        "malformed" => {
            // Binary noise, a line with no field, a call in an event cut off mid-JSON, an event over several
            // `data:` lines that is not JSON when joined: a client's lenient parser might read any of it.
            let call = r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"Bash","input":{"command":"git push --force"#;
            let first = String::from_utf8(first.to_vec()).unwrap();
            let bytes = format!("{first}\u{1}\u{2}garbage\ndata: {call}\n\ndata: {{\"choices\":\ndata: [{{\"delta\":{{\"tool_calls\":\"git push --force\"}}\n\n");
            streamed(futures_util::stream::iter([Ok(Bytes::from(bytes))]))
        }
        "truncated" => {
            let answer = answer_with_usage(path, 10, 20).to_string();
            let cut = answer[..answer.len() / 2].to_owned() + r#","tool":"git push --force"#;
            ([("content-type", "application/json")], cut).into_response()
        }
        "error 500" => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": {"message": "overloaded", "type": "server_error"}}))).into_response(),
        "html 502" => (axum::http::StatusCode::BAD_GATEWAY, [("content-type", "text/html")], "<html><body>Bad Gateway</body></html>").into_response(),
        "500 then reset" => Response::builder()
            .status(500)
            .header("content-type", "application/json")
            .body(Body::from_stream(then_reset(Bytes::from_static(b"{\"error\": {\"mess"))))
            .unwrap(),
        "absurd usage" | "float usage" => {
            let mut answer = match path {
                p if p.contains("generateContent") => json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
                    "usageMetadata": {"promptTokenCount": 1u64 << 62, "candidatesTokenCount": 1u64 << 62}}),
                _ => answer_with_usage(path, 1 << 62, 1 << 62),
            };
            if text == "float usage" {
                for key in ["usage", "usageMetadata"] {
                    if let Some(u) = answer.get_mut(key).and_then(Value::as_object_mut) {
                        for v in u.values_mut() {
                            *v = json!(-1.0e30);
                        }
                    }
                }
            }
            axum::Json(answer).into_response()
        }
        _ => match path {
            p if p.contains("generateContent") => axum::Json(json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 20}})).into_response(),
            _ => axum::Json(answer_with_usage(path, 10, 20)).into_response(),
        },
    }
}

async fn gateway(dir: &std::path::Path) -> TestGateway {
    write_repo(dir);
    let (base, _) = upstream(0, faulty).await;
    let mut cfg = config_with_upstream(dir, &base);
    cfg.limits.upstream_idle_timeout_seconds = 1;
    TestGateway::with_config(dir, cfg).await
}

async fn post(t: &TestGateway, token: &str, path: &str, body: &Value) -> reqwest::Response {
    t.client.post(format!("{}{path}", t.url)).bearer_auth(token).json(body).send().await.unwrap()
}

fn charges(info: &Value) -> Vec<Value> {
    info["charges"].as_array().cloned().unwrap_or_default()
}

/// The session's one charge is the hold's worst case: the request's output cap (1024) and its input estimate.
fn assert_charged_the_hold(info: &Value, what: &str) {
    let c = charges(info);
    assert_eq!(c.len(), 1, "{what}: one charge: {c:?}");
    assert_eq!(c[0]["output_tokens"], 1024, "{what}: charged the hold's output cap: {c:?}");
    assert!(c[0]["input_tokens"].as_u64().unwrap() > 0, "{what}: {c:?}");
    assert!(info["usage"]["costUsd"].as_f64().unwrap() > 0.0, "{what}: never free");
}

/// After a fault the same session is served again, without a restart.
async fn assert_served(t: &TestGateway, token: &str, wire: &str) {
    let (path, body) = request(wire, model_of(wire), &[("user", "hello")], false);
    let r = post(t, token, path, &body).await;
    assert_eq!(r.status(), 200, "{wire}: served after the fault: {}", r.text().await.unwrap());
}

/// The error event a stream ends with, in the client's wire format.
fn assert_stream_error(text: &str, wire: &str, words: &str) {
    let events = sse_events(text);
    let last = events.last().unwrap_or_else(|| panic!("{wire}: no events in {text}"));
    let message = match wire {
        "responses" => last["message"].as_str(),
        _ => last["error"]["message"].as_str(),
    };
    assert!(
        message.is_some_and(|m| m.contains(words)),
        "{wire}: the stream ends with an error naming `{words}`: {text}"
    );
    if wire == "anthropic" {
        assert_eq!(last["type"], "error");
    }
}

#[tokio::test]
async fn an_upstream_reset_mid_stream_ends_the_stream_with_an_error_and_charges_the_hold() {
    let dir = tempfile::tempdir().unwrap();
    let t = gateway(dir.path()).await;
    for wire in WIRES4 {
        let (id, token) = t.session("coder").await;
        let (path, body) = request(wire, model_of(wire), &[("user", "reset")], true);
        let r = post(&t, &token, path, &body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{wire}: {text}");
        assert!(
            text.contains("Hel") || wire == "responses" || wire == "anthropic",
            "{wire}: what came first was relayed: {text}"
        );
        assert_stream_error(&text, wire, "broke off");
        let info = t.session_info(&id).await;
        assert_charged_the_hold(&info, wire);
        assert_eq!(charges(&info)[0]["stream_complete"], false);
        assert_served(&t, &token, wire).await;
    }
}

#[tokio::test]
async fn an_upstream_that_stalls_between_chunks_is_given_up_at_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let t = gateway(dir.path()).await;
    for wire in WIRES4 {
        let (id, token) = t.session("coder").await;
        let (path, body) = request(wire, model_of(wire), &[("user", "stall")], true);
        let started = std::time::Instant::now();
        let r = post(&t, &token, path, &body).await;
        let text = r.text().await.unwrap();
        // The stand-in stalls for 30 s; the gateway's idle timeout is 1 s.
        assert!(started.elapsed() < Duration::from_secs(20), "{wire}: given up long before the upstream woke");
        assert_stream_error(&text, wire, "sent nothing for 1s");
        assert_charged_the_hold(&t.session_info(&id).await, wire);
        assert_served(&t, &token, wire).await;
    }
}

#[tokio::test]
async fn malformed_sse_is_never_passed_on_and_the_answer_is_charged_its_hold() {
    let dir = tempfile::tempdir().unwrap();
    let t = gateway(dir.path()).await;
    for wire in WIRES4 {
        let (id, token) = t.session("coder").await;
        let (path, body) = request(wire, model_of(wire), &[("user", "malformed")], true);
        let r = post(&t, &token, path, &body).await;
        assert_eq!(r.status(), 200, "{wire}");
        let text = r.text().await.unwrap();
        assert!(
            !text.contains("git push") && !text.contains("garbage"),
            "{wire}: malformed input reached the client:\n{text}"
        );
        assert_charged_the_hold(&t.session_info(&id).await, wire);
        assert_served(&t, &token, wire).await;
    }
}

#[tokio::test]
async fn a_truncated_json_answer_is_a_502_in_the_clients_format_and_charges_the_hold() {
    let dir = tempfile::tempdir().unwrap();
    let t = gateway(dir.path()).await;
    for wire in WIRES4 {
        let (id, token) = t.session("coder").await;
        let (path, body) = request(wire, model_of(wire), &[("user", "truncated")], false);
        let r = post(&t, &token, path, &body).await;
        assert_eq!(r.status(), 502, "{wire}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains("not JSON"), "{wire}: {v}");
        assert!(!v.to_string().contains("git push"), "{wire}: {v}");
        // The provider generated it and bills it: the worst case is charged, not nothing.
        let info = t.session_info(&id).await;
        assert_charged_the_hold(&info, wire);
        assert_eq!(charges(&info)[0]["stream_complete"], false);
        assert_served(&t, &token, wire).await;
    }
}

#[tokio::test]
async fn an_error_status_reaches_the_client_in_its_format_and_charges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = gateway(dir.path()).await;
    for wire in WIRES4 {
        for (fault, status, words) in [
            ("error 500", 500, "overloaded"),
            ("html 502", 502, "not an error object"),
            ("500 then reset", 500, "broke off"),
            ("reset before headers", 502, "connection closed"),
        ] {
            let (id, token) = t.session("coder").await;
            let (path, body) = request(wire, model_of(wire), &[("user", fault)], false);
            let r = post(&t, &token, path, &body).await;
            let got = r.status();
            let v: Value = r.json().await.unwrap_or_else(|e| panic!("{wire} {fault}: not JSON: {e}"));
            assert_eq!(got, status, "{wire} {fault}: {v}");
            assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains(words)), "{wire} {fault}: {v}");
            if fault != "error 500" && wire == "anthropic" {
                assert_eq!(v["type"], "error", "{v}");
            }
            // Nothing was generated: nothing charged, the hold given back.
            let info = t.session_info(&id).await;
            assert!(charges(&info).is_empty(), "{wire} {fault}: {info}");
            assert_eq!(info["usage"]["costUsd"].as_f64(), Some(0.0), "{wire} {fault}");
            assert_served(&t, &token, wire).await;
        }
    }
}

#[tokio::test]
async fn an_absurd_usage_block_is_not_used_and_the_hold_is_charged() {
    let dir = tempfile::tempdir().unwrap();
    let t = gateway(dir.path()).await;
    for wire in WIRES4 {
        for fault in ["absurd usage", "float usage"] {
            let (id, token) = t.session("coder").await;
            let (path, body) = request(wire, model_of(wire), &[("user", fault)], false);
            let r = post(&t, &token, path, &body).await;
            assert_eq!(r.status(), 200, "{wire} {fault}");
            let info = t.session_info(&id).await;
            assert_charged_the_hold(&info, &format!("{wire} {fault}"));
            // A second answer of the same kind: the totals add up instead of wrapping around.
            let r = post(&t, &token, path, &body).await;
            assert_eq!(r.status(), 200, "{wire} {fault}");
            let info = t.session_info(&id).await;
            assert_eq!(charges(&info).len(), 2);
            assert_eq!(info["usage"]["outputTokens"], 2048, "{wire} {fault}: {}", info["usage"]);
        }
    }
    let metrics = t.client.get(format!("{}/metrics", t.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("paddock_gateway_usage_missing_total{wire=\"anthropic\"} 4"), "{metrics}");
}
