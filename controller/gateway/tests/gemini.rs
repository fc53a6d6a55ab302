//! Google's Gemini API through the gateway, on loopback: the session token as Google's key (header or
//! `?key=`), the provider's key upstream instead, the model from the path, a denied `functionCall` removed
//! before the client sees it (streamed and not), provider-run tools removed, what the gateway cannot gate
//! refused, and every answer metered.

mod support;

use std::sync::{Arc, Mutex};

use axum::response::IntoResponse;
use serde_json::{Value, json};
use support::*;

/// What the stand-in Google saw: path and query, its `x-goog-api-key`, and the body.
type Seen = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

fn calls_turn(stream: bool) -> axum::response::Response {
    let parts = json!([
        {"text": "Listing, then pushing."},
        {"functionCall": {"name": "run_shell_command", "args": {"command": "ls -la", "description": "list"}}},
        {"functionCall": {"name": "run_shell_command", "args": {"command": "git push --force origin main"}}}]);
    let usage = json!({"promptTokenCount": 1200, "cachedContentTokenCount": 200, "candidatesTokenCount": 300,
        "totalTokenCount": 1500});
    if !stream {
        return axum::Json(
            json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP",
            "index": 0}], "usageMetadata": usage, "modelVersion": "gemini-2.5-pro", "responseId": "r1"}),
        )
        .into_response();
    }
    sse_response(&[
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Listing, "}]}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 1200, "totalTokenCount": 1200}, "responseId": "r1"}),
        json!({"candidates": [{"content": {"role": "model", "parts": parts.as_array().unwrap()[1..].to_vec()}, "finishReason": "STOP",
            "index": 0}], "usageMetadata": usage, "modelVersion": "gemini-2.5-pro", "responseId": "r1"}),
    ])
}

async fn google() -> (String, Seen) {
    let seen: Seen = Default::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let log = log.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let key = headers.get("x-goog-api-key").map(|k| k.to_str().unwrap().to_owned());
                log.lock().unwrap().push((uri.to_string(), key, v));
                calls_turn(uri.path().ends_with(":streamGenerateContent"))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn body(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}],
           "tools": [{"functionDeclarations": [{"name": "run_shell_command", "parametersJsonSchema": {"type": "object"}}]},
                     {"googleSearch": {}}]})
}

fn parts_of(chunks: &[Value]) -> Vec<Value> {
    chunks.iter().flat_map(|c| c["candidates"][0]["content"]["parts"].as_array().cloned().unwrap_or_default()).collect()
}

#[tokio::test]
async fn a_gemini_session_is_gated_metered_and_keyed_by_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let (base, seen) = google().await;
    let t = TestGateway::with_config(dir.path(), config_with_upstream(dir.path(), &base)).await;
    let models = format!("{}/llm/google/v1beta/models", t.url);
    for stream in [false, true] {
        let (id, token) = t.session("coder").await;
        let url = match stream {
            true => format!("{models}/gemini-2.5-pro:streamGenerateContent?alt=sse"),
            false => format!("{models}/gemini-2.5-pro:generateContent"),
        };
        let r = t.client.post(&url).header("x-goog-api-key", &token).json(&body("push it")).send().await.unwrap();
        assert_eq!(r.status(), 200, "stream {stream}");
        let text = r.text().await.unwrap();
        let chunks = if stream { sse_events(&text) } else { vec![serde_json::from_str(&text).unwrap()] };
        let parts = parts_of(&chunks);
        let commands: Vec<&str> = parts.iter().filter_map(|p| p["functionCall"]["args"]["command"].as_str()).collect();
        assert_eq!(commands, ["ls -la"], "stream {stream}: the force push never reaches the client: {text}");
        // Google sent no ids: the client gets the gateway's, under which the call was decided.
        let ids: Vec<&str> = parts.iter().filter_map(|p| p["functionCall"]["id"].as_str()).collect();
        assert!(ids.len() == 1 && ids[0].starts_with("gemini-"), "stream {stream}: {text}");
        assert!(
            parts.iter().any(|p| p["text"].as_str().is_some_and(|t| t.contains("force push"))),
            "stream {stream}: a text part says why: {text}"
        );
        // Upstream: the provider's key, never the session token; the model in the path, not the body;
        // Google Search removed; the output capped.
        let (uri, key, sent) = seen.lock().unwrap().last().cloned().unwrap();
        let expected = match stream {
            true => "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            false => "/v1beta/models/gemini-2.5-pro:generateContent",
        };
        assert_eq!(uri, expected);
        assert_eq!(key.as_deref(), Some("sk-provider-secret"));
        assert!(!sent.to_string().contains(&token), "the session token does not leave the gateway");
        assert!(sent.get("model").is_none());
        assert_eq!(
            sent["tools"],
            json!([{"functionDeclarations": [{"name": "run_shell_command",
            "parametersJsonSchema": {"type": "object"}}]}])
        );
        assert!(sent["generationConfig"]["maxOutputTokens"].as_u64().is_some());
        // Metered exactly: 1,000 input, 200 from the cache, 300 output.
        let info = t.session_info(&id).await;
        let c = &info["charges"][0];
        assert_eq!(
            (c["input_tokens"].as_u64(), c["cache_read_tokens"].as_u64(), c["output_tokens"].as_u64()),
            (Some(1000), Some(200), Some(300)),
            "stream {stream}: {info}"
        );
        let denies: Vec<Value> =
            t.audit(&id).await.into_iter().filter(|a| a["verdict"] == "deny" && a["phase"] == "llm_response").collect();
        assert_eq!(denies.len(), 1, "stream {stream}: the push is denied once, as a Gemini call");
        assert_eq!(denies[0]["tool"], "run_shell_command");
    }
}

#[tokio::test]
async fn what_the_gateway_cannot_gate_or_meter_is_refused_in_googles_error_format() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let (base, seen) = google().await;
    let t = TestGateway::with_config(dir.path(), config_with_upstream(dir.path(), &base)).await;
    let (_, token) = t.session("coder").await;
    let models = format!("{}/llm/google/v1beta/models", t.url);
    let post = |url: String, b: Value, key: Option<String>| {
        let mut r = t.client.post(url).json(&b);
        if let Some(k) = key {
            r = r.header("x-goog-api-key", k);
        }
        r.send()
    };
    let key = Some(token.clone());
    let cases = [
        // No key, a wrong key.
        (format!("{models}/gemini-2.5-pro:generateContent"), body("hi"), None, 401, "UNAUTHENTICATED"),
        (format!("{models}/gemini-2.5-pro:generateContent"), body("hi"), Some("nope".into()), 401, "UNAUTHENTICATED"),
        // Streaming as one JSON array: not gated, so not served.
        (format!("{models}/gemini-2.5-pro:streamGenerateContent"), body("hi"), key.clone(), 400, "alt=sse"),
        // Two candidates would need two sets of decisions and holds.
        (
            format!("{models}/gemini-2.5-pro:generateContent"),
            json!({"contents": [], "generationConfig": {"candidateCount": 2}}),
            key.clone(),
            400,
            "candidateCount",
        ),
        // Content Google keeps, which no policy saw.
        (
            format!("{models}/gemini-2.5-pro:generateContent"),
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "cachedContent": "cachedContents/x"}),
            key.clone(),
            403,
            "stored_state",
        ),
        // Nothing but a model id goes into the upstream's path.
        (format!("{models}/gemini..%2F..%2Fx:generateContent"), body("hi"), key.clone(), 404, "model id"),
        (format!("{models}/gemini-2.5-pro:embedContent"), body("hi"), key.clone(), 404, "embedContent"),
        (format!("{}/llm/google/v9/models/gemini-2.5-pro:generateContent", t.url), body("hi"), key.clone(), 404, "v9"),
    ];
    for (url, b, key, status, says) in cases {
        let r = post(url.clone(), b, key).await.unwrap();
        assert_eq!(r.status(), status, "{url}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], status, "{url}: {v}");
        assert!(v.to_string().contains(says), "{url}: `{says}` in {v}");
    }
    assert!(seen.lock().unwrap().is_empty(), "none of them reached Google");
    // `?key=` is Google's other spelling of the key; `countTokens` is answered here, with an estimate.
    let r = t
        .client
        .post(format!("{models}/gemini-2.5-pro:countTokens?key={token}"))
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "twelve chars"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // 37 characters of keys and strings, four to a token.
    assert_eq!(r.json::<Value>().await.unwrap()["totalTokens"], 10);
    assert!(seen.lock().unwrap().is_empty(), "countTokens is not forwarded: it would pass no policy");
}
