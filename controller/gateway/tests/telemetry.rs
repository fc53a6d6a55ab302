//! OpenTelemetry traces: the gateway exports over OTLP/HTTP to a receiver on loopback, and one governed
//! request with a tool call gives the spans a tracing system shows: the LLM request (GenAI conventions)
//! under the caller's `traceparent`, its policy decision, the tool call and the decisions on it, each with
//! the session; and the admission API's decision under the runner's trace.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use paddock_gateway::telemetry::TelemetryConfig;
use prost::Message;
use serde_json::{Value, json};
use support::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const RUNNER_SPAN: &str = "00f067aa0ba902b7";
const HOOK_SPAN: &str = "b7ad6b7169203331";

/// A small OTLP/HTTP receiver: decodes each export and keeps its spans.
async fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans: Arc<Mutex<Vec<Span>>> = Default::default();
    let sink = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                assert_eq!(headers["content-type"], "application/x-protobuf");
                let export = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
                for rs in export.resource_spans {
                    let service =
                        rs.resource.as_ref().and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"));
                    assert!(service.is_some(), "the resource names the service");
                    for ss in rs.scope_spans {
                        sink.lock().unwrap().extend(ss.spans);
                    }
                }
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

fn attr(s: &Span, key: &str) -> Option<Any> {
    s.attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.clone()
}

fn text(s: &Span, key: &str) -> String {
    match attr(s, key) {
        Some(Any::StringValue(v)) => v,
        other => panic!("span `{}`: `{key}` is {other:?}", s.name),
    }
}

fn int(s: &Span, key: &str) -> i64 {
    match attr(s, key) {
        Some(Any::IntValue(v)) => v,
        other => panic!("span `{}`: `{key}` is {other:?}", s.name),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn one<'a>(spans: &'a [Span], name: &str, pred: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name && pred(s)).collect();
    assert_eq!(found.len(), 1, "one `{name}` span in {:#?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_governed_request_with_a_tool_call_is_traced_under_the_runners_trace() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let (otlp, spans) = receiver().await;
    let (base, _) = upstream(0, |_, _| {
        axum::Json(json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "Pushing."},
                        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "git push --force origin main"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 12, "output_tokens": 30}}))
        .into_response()
    })
    .await;
    let mut cfg = config_with_upstream(dir.path(), &base);
    cfg.telemetry =
        Some(TelemetryConfig { endpoint: Some(otlp), batch_delay_ms: Some(50), ..TelemetryConfig::default() });
    let t = TestGateway::with_config(dir.path(), cfg).await;
    let (id, token) = t.session("coder").await;

    // The runner's model request, in its session's trace.
    let (path, body) = request("anthropic", "claude-sonnet-4-5", &[("user", "push my branch")], false);
    let r = t
        .client
        .post(format!("{}{path}", t.url))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE}-{RUNNER_SPAN}-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert!(
        !answer["content"].as_array().unwrap().iter().any(|b| b["type"] == "tool_use"),
        "the force push was removed: {answer}"
    );
    // A hook's question to the admission API, under the span the runner gave it.
    let r = t
        .client
        .post(format!("{}/v1/sessions/{id}/decide", t.url))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE}-{HOOK_SPAN}-01"))
        .json(&json!({"phase": "tool_call", "tool": "Bash", "args": {"command": "ls"}, "tool_id": "toolu_2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let telemetry = t.gw.telemetry().expect("traces are on").clone();
    let mut got = Vec::new();
    for _ in 0..100 {
        let flush = telemetry.clone();
        tokio::task::spawn_blocking(move || flush.force_flush()).await.unwrap().unwrap();
        got = spans.lock().unwrap().clone();
        if got.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(got.iter().all(|s| hex(&s.trace_id) == TRACE), "every span is in the runner's trace");
    assert!(got.iter().all(|s| text(s, "paddock.session.id") == id), "every span names the session");

    let llm = one(&got, "chat claude-sonnet-4-5", |_| true);
    assert_eq!(hex(&llm.parent_span_id), RUNNER_SPAN, "the LLM span's parent is the runner's span");
    assert_eq!(llm.kind, SpanKind::Client as i32);
    assert_eq!(text(llm, "gen_ai.operation.name"), "chat");
    assert_eq!(text(llm, "gen_ai.provider.name"), "anthropic");
    assert_eq!(text(llm, "gen_ai.request.model"), "claude-sonnet-4-5");
    assert_eq!(text(llm, "gen_ai.response.model"), "claude-sonnet-4-5-20250929");
    assert_eq!(int(llm, "gen_ai.request.max_tokens"), 1024);
    assert_eq!((int(llm, "gen_ai.usage.input_tokens"), int(llm, "gen_ai.usage.output_tokens")), (12, 30));
    let llm_id = hex(&llm.span_id);

    let request = one(&got, "policy llm_request", |s| hex(&s.parent_span_id) == llm_id);
    assert_eq!(text(request, "paddock.policy.verdict"), "allow");

    let tool = one(&got, "execute_tool Bash", |_| true);
    assert_eq!(hex(&tool.parent_span_id), llm_id, "the tool call is under the LLM request");
    assert_eq!(text(tool, "gen_ai.tool.call.id"), "toolu_1");
    assert_eq!(text(tool, "gen_ai.operation.name"), "execute_tool");
    let tool_id = hex(&tool.span_id);
    // The model's call is decided as the answer's (`llm_response`), which denies it; a denied call is not
    // decided again as a `tool_call`.
    let call = one(&got, "policy llm_response", |s| hex(&s.parent_span_id) == tool_id);
    assert_eq!(text(call, "paddock.policy.verdict"), "deny");
    assert_eq!(text(call, "paddock.policy.name"), "github-rules");
    assert_eq!(text(call, "paddock.policy.rule"), "no-force-push");
    assert!(!got.iter().any(|s| hex(&s.parent_span_id) == tool_id && s.name == "policy tool_call"));
    assert!(
        call.start_time_unix_nano <= call.end_time_unix_nano && llm.start_time_unix_nano <= call.start_time_unix_nano
    );

    let hook = one(&got, "policy tool_call", |s| hex(&s.parent_span_id) == HOOK_SPAN);
    assert_eq!(text(hook, "paddock.policy.verdict"), "allow");
    assert_eq!(text(hook, "gen_ai.tool.name"), "Bash");
    assert_eq!(got.len(), 5, "no other span: {got:#?}");
}

#[tokio::test]
async fn traces_are_off_without_a_telemetry_section() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    let t = TestGateway::start(dir.path()).await;
    assert!(t.gw.telemetry().is_none());
}

use axum::response::IntoResponse;
