//! Provider-side fetches and state are refused in the client's wire format unless a policy allows them;
//! server tools are removed by their type whatever other keys they carry.

mod support;

use axum::response::IntoResponse;
use serde_json::{Value, json};
use support::*;

async fn post(t: &TestGateway, token: &str, path: &str, body: &Value) -> reqwest::Response {
    t.client.post(format!("{}{path}", t.url)).bearer_auth(token).json(body).send().await.unwrap()
}

fn ok(path: &str, _: &Value) -> axum::response::Response {
    axum::Json(answer_with_usage(path, 10, 5)).into_response()
}

/// A request of `wire` whose last user message has these content parts (plus any top-level fields).
fn with_parts(wire: &str, parts: Value, top: Value) -> (&'static str, Value) {
    let model = if wire == "anthropic" { "claude-sonnet-4-5" } else { "gpt-5" };
    let (path, mut body) = request(wire, model, &[("user", "look")], false);
    match wire {
        "responses" => body["input"][0]["content"] = parts,
        _ => body["messages"][0]["content"] = parts,
    }
    for (k, v) in top.as_object().unwrap() {
        body[k] = v.clone();
    }
    (path, body)
}

fn refusals() -> Vec<(&'static str, Value, Value, &'static str)> {
    let text = |wire: &str| {
        if wire == "responses" {
            json!({"type": "input_text", "text": "see"})
        } else {
            json!({"type": "text", "text": "see"})
        }
    };
    vec![
        (
            "anthropic",
            json!([{"type": "image", "source": {"type": "url", "url": "https://x.example/?leak=secret"}}]),
            json!({}),
            "url_inputs",
        ),
        (
            "anthropic",
            json!([{"type": "document", "source": {"type": "url", "url": "http://x.example/a.pdf"}}]),
            json!({}),
            "url_inputs",
        ),
        (
            "anthropic",
            json!([{"type": "document", "source": {"type": "file", "file_id": "file_011"}}]),
            json!({}),
            "stored_state",
        ),
        (
            "anthropic",
            json!([{"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://x.example/nested.png"}}]}]),
            json!({}),
            "url_inputs",
        ),
        (
            "chat",
            json!([text("chat"), {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}}]),
            json!({}),
            "url_inputs",
        ),
        ("chat", json!([{"type": "file", "file": {"file_id": "file-abc"}}]), json!({}), "stored_state"),
        (
            "responses",
            json!([text("responses"), {"type": "input_image", "image_url": "https://x.example/i.png"}]),
            json!({}),
            "url_inputs",
        ),
        ("responses", json!([{"type": "input_file", "file_url": "https://x.example/f.pdf"}]), json!({}), "url_inputs"),
        ("responses", json!([text("responses")]), json!({"previous_response_id": "resp_123"}), "stored_state"),
        ("responses", json!([text("responses")]), json!({"conversation": "conv_1"}), "stored_state"),
        ("responses", json!([text("responses")]), json!({"prompt": {"id": "pmpt_1"}}), "stored_state"),
        ("responses", json!([text("responses")]), json!({"background": true}), "background"),
    ]
}

#[tokio::test]
async fn provider_side_fetches_and_state_are_refused_before_anything_leaves() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let (base, seen) = upstream(0, ok).await;
    let t = TestGateway::with_config(dir.path(), config_with_upstream(dir.path(), &base)).await;
    let (id, token) = t.session("coder").await;
    for (wire, parts, top, feature) in refusals() {
        let (path, body) = with_parts(wire, parts.clone(), top.clone());
        let r = post(&t, &token, path, &body).await;
        assert_eq!(r.status(), 403, "{wire} {parts} {top}");
        let v: Value = r.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(feature) && msg.contains("provider_features"), "{wire}: {msg}");
        if wire == "anthropic" {
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], "permission_error");
        } else {
            assert_eq!(v["error"]["code"], "policy_denied");
        }
    }
    assert!(seen.lock().unwrap().is_empty(), "the upstream saw none of them");
    // Each refusal is in the audit log and the transcript, as the gateway's.
    let refused = refusals().len();
    let audit = t.audit(&id).await;
    let denies = audit.iter().filter(|a| a["verdict"] == "deny" && a["policy"] == "paddock/provider-features");
    assert_eq!(denies.count(), refused, "{audit:#?}");
    let r = t.client.get(format!("{}/v1/sessions/{id}/events", t.url)).bearer_auth(ADMIN).send().await.unwrap();
    let events: Vec<Value> = r.json().await.unwrap();
    let verdicts = events.iter().filter(|e| e["event"]["type"] == "verdict" && e["event"]["source"] == "gateway");
    assert_eq!(verdicts.count(), refused);
    // Inline content and `data:` URLs go through.
    for (wire, parts) in [
        (
            "anthropic",
            json!([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]),
        ),
        ("chat", json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}])),
        ("responses", json!([{"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}])),
    ] {
        let (path, body) = with_parts(wire, parts, json!({"store": true}));
        let r = post(&t, &token, path, &body).await;
        assert_eq!(r.status(), 200, "{wire}: {}", r.text().await.unwrap());
    }
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_provider_features_policy_allows_what_it_lists_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let (base, seen) = upstream(0, ok).await;
    let t = TestGateway::with_config(dir.path(), config_with_upstream(dir.path(), &base)).await;
    let (id, token) = t.session("fetcher").await;
    let image = json!([{"type": "image", "source": {"type": "url", "url": "https://x.example/a.png"}}]);
    let (path, body) = with_parts("anthropic", image, json!({}));
    assert_eq!(post(&t, &token, path, &body).await.status(), 200);
    assert_eq!(seen.lock().unwrap()[0].1["messages"][0]["content"][0]["source"]["type"], "url");
    // Stored state is not in its list: refused by the rule, with an audit row.
    let (path, body) =
        with_parts("responses", json!([{"type": "input_text", "text": "hi"}]), json!({"previous_response_id": "r"}));
    let r = post(&t, &token, path, &body).await;
    assert_eq!(r.status(), 403);
    let msg = r.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("url-inputs") && msg.contains("stored_state"), "{msg}");
    let audit = t.audit(&id).await;
    assert!(audit.iter().any(|a| a["verdict"] == "deny" && a["rule"] == "images-by-url"), "{audit:#?}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn server_tools_are_removed_by_their_type_whatever_keys_they_carry() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let (base, seen) = upstream(0, ok).await;
    let t = TestGateway::with_config(dir.path(), config_with_upstream(dir.path(), &base)).await;
    let (_, token) = t.session("coder").await;
    let (path, mut body) = request("anthropic", "claude-sonnet-4-5", &[("user", "hi")], false);
    body["tools"] = json!([
        {"type": "web_fetch_20250910", "name": "web_fetch", "input_schema": {"type": "object"}},
        {"type": "web_search_20250305", "name": "web_search", "input_schema": {"type": "object"}, "max_uses": 5},
        {"type": "mcp_toolset", "mcp_server_name": "remote", "input_schema": {}},
        {"name": "Bash", "input_schema": {"type": "object"}}]);
    body["mcp_servers"] = json!([{"type": "url", "url": "https://mcp.example/sse", "name": "remote"}]);
    body["container"] = json!("container_1");
    assert_eq!(post(&t, &token, path, &body).await.status(), 200);
    let (path, mut body) = request("responses", "gpt-5", &[("user", "hi")], false);
    body["tools"] = json!([{"type": "mcp", "server_label": "x", "server_url": "https://mcp.example"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]}, {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "image_generation"}, {"type": "web_search_preview"}, {"type": "computer_use_preview"},
        {"type": "function", "name": "shell", "parameters": {}}]);
    assert_eq!(post(&t, &token, path, &body).await.status(), 200);
    let seen = seen.lock().unwrap();
    let anthropic = &seen[0].1;
    assert_eq!(anthropic["tools"], json!([{"name": "Bash", "input_schema": {"type": "object"}}]));
    assert!(anthropic.get("mcp_servers").is_none() && anthropic.get("container").is_none(), "{anthropic}");
    assert_eq!(seen[1].1["tools"], json!([{"type": "function", "name": "shell", "parameters": {}}]));
}
