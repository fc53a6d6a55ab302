//! The response gate decides on exactly what the harness will execute: a Codex `exec_command` whose
//! arguments carry both `command` (which a parser might read) and `cmd` (which Codex runs) never reaches the
//! harness, streamed or not, whatever Policies the Agent has; the turn says why.

mod support;

use serde_json::Value;
use support::*;

const SCRIPT: &str = r#"
scripts:
  - name: two-fields
    match: "ambiguous"
    turns:
      - text: "Listing, then pushing."
        tool_calls:
          - {name: exec_command, args: {cmd: "ls -la"}}
          - {name: exec_command, args: {command: "echo hi", cmd: "git push -f origin develop"}}
          - {name: write_stdin, args: {session_id: 1, chars: "git push -f origin develop\n", cmd: "true"}}
        usage: {input_tokens: 300, output_tokens: 40}
  - name: default
    turns:
      - text: "Hello."
        usage: {input_tokens: 10, output_tokens: 2}
"#;

async fn post(t: &TestGateway, token: &str, body: &Value) -> reqwest::Response {
    t.client.post(format!("{}/llm/openai/v1/responses", t.url)).bearer_auth(token).json(body).send().await.unwrap()
}

/// Every function_call item's arguments in a response or its events.
fn call_arguments(values: &[Value]) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if m.get("type").and_then(Value::as_str) == Some("function_call")
                    && let Some(a) = m.get("arguments").and_then(Value::as_str)
                {
                    out.push(a.to_owned());
                }
                if let Some(d) = m.get("delta").and_then(Value::as_str)
                    && m.get("type").and_then(Value::as_str) == Some("response.function_call_arguments.delta")
                {
                    out.push(d.to_owned());
                }
                m.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    values.iter().for_each(|v| walk(v, &mut out));
    out
}

#[tokio::test]
async fn codex_calls_with_a_second_command_field_never_reach_the_harness() {
    let dir = tempfile::tempdir().unwrap();
    write_repo(dir.path());
    std::fs::write(dir.path().join("script.yaml"), SCRIPT).unwrap();
    let t = TestGateway::start(dir.path()).await;
    // `gpt` has only namespace-wide Policies; the check does not depend on any of them.
    let (id, token) = t.session("gpt").await;
    for stream in [true, false] {
        let (_, body) = request("responses", "gpt-5", &[("user", "do the ambiguous thing")], stream);
        let r = post(&t, &token, &body).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let values = if stream { sse_events(&text) } else { vec![serde_json::from_str(&text).unwrap()] };
        let args = call_arguments(&values).join("\n");
        assert!(!args.contains("push"), "stream={stream}: the ambiguous calls must not reach Codex:\n{text}");
        assert!(args.contains("ls -la"), "stream={stream}: the plain call goes through:\n{text}");
        assert!(text.contains("was blocked") && text.contains("paddock/tool-shape"), "stream={stream}:\n{text}");
        assert!(text.contains("ambiguous"), "stream={stream}: the turn says why:\n{text}");
    }
    let audit = t.audit(&id).await;
    let denies: Vec<&Value> = audit.iter().filter(|a| a["verdict"] == "deny").collect();
    assert_eq!(denies.len(), 4, "two calls, streamed and not: {audit:#?}");
    assert!(denies.iter().all(|a| a["phase"] == "llm_response" && a["policy"] == "paddock/tool-shape"), "{denies:#?}");
    assert!(denies.iter().any(|a| a["tool"] == "exec_command") && denies.iter().any(|a| a["tool"] == "write_stdin"));
    assert!(
        audit.iter().any(|a| a["tool"] == "exec_command" && a["verdict"] == "allow"),
        "the plain call was decided and allowed: {audit:#?}"
    );
}
