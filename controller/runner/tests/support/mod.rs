//! For the tests of the session's two ends (`request`, `response`): a real gateway on a loopback port,
//! governing Agents under the [`POLICY`] below, whose model is the scripted one (in the gateway, or on its
//! own loopback port as the upstream of the real providers, which the real CLIs need).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use paddock_gateway::config::{GatewayConfig, ProviderConfig, ProviderKind, SecretSource};
use paddock_gateway::scripted::{self, ScriptFile};
use paddock_gateway::server;
use paddock_runner::{GatewayClient, RunContext, TranscriptEvent};
use serde_json::{Value, json};

pub const ADMIN: &str = "admin-for-phase-tests";

/// A secret-looking string (a GitHub token's shape) that a final answer must not carry.
pub const TOKEN: &str = "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8";

/// The rules on the two ends: a prompt about launch codes is refused, one about a deploy is asked about, and
/// a final answer that carries a secret is withheld.
pub const POLICY: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: prompt-rules}
spec:
  rules:
    - name: no-launch-codes
      use: cel
      on: [request]
      with: {expression: 'event.text.contains("launch codes")', reason: prompts about launch codes are refused}
    - name: deploys-need-a-human
      use: cel
      on: [request]
      action: ask
      with: {expression: 'event.text.contains("deploy")', reason: a deploy needs a human}
    - name: no-secrets-in-answers
      use: deny_pii_in_llm_request
      on: [response]
      with: {pii_types: [secret]}
"#;

pub struct TestGateway {
    pub url: String,
    pub gw: Arc<paddock_gateway::Gateway>,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    upstream: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(u) = &self.upstream {
            u.abort();
        }
    }
}

impl TestGateway {
    /// A gateway in `dir` governing `agents` (manifests) under [`POLICY`]. `over_http`: the scripted model
    /// answers on its own port behind the real Anthropic and OpenAI providers (streaming, the Responses API:
    /// what the CLIs speak); otherwise it is the gateway's in-process `scripted` provider.
    pub async fn start(dir: &Path, agents: &str, script: &str, over_http: bool) -> TestGateway {
        let repo = dir.join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::write(repo.join("agents.yaml"), agents).unwrap();
        std::fs::write(repo.join("policies.yaml"), POLICY).unwrap();
        std::fs::write(dir.join("script.yaml"), script).unwrap();
        std::fs::write(dir.join("admin"), ADMIN).unwrap();
        let mut cfg = GatewayConfig {
            data_dir: Some(dir.join("data")),
            repo: Some(repo),
            admin_token: Some(SecretSource { env: None, file: Some(dir.join("admin")) }),
            ..GatewayConfig::default()
        };
        cfg.limits.ask_timeout_seconds = 60;
        let mut upstream = None;
        if over_http {
            let script = Arc::new(ScriptFile::parse(script, "script.yaml").expect("the test script parses"));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let app = scripted::router(script);
            upstream = Some(tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }));
            for (name, kind, models) in [
                ("anthropic", ProviderKind::Anthropic, vec!["claude-*".to_owned()]),
                ("openai", ProviderKind::Openai, vec!["gpt-*".to_owned()]),
            ] {
                cfg.providers.push(ProviderConfig {
                    name: name.into(),
                    kind,
                    base_url: Some(base.clone()),
                    api_key: None,
                    script: None,
                    models,
                });
            }
        } else {
            cfg.providers.push(ProviderConfig::scripted(dir.join("script.yaml"), &["*"]));
        }
        let (gw, url, server) = server::serve_loopback(&cfg).await.expect("the gateway serves");
        TestGateway { url, gw, http: reqwest::Client::new(), server, upstream }
    }

    /// A new session of `agent`, and the context to run it with `prompt` in `workspace`.
    pub async fn session(&self, agent: &str, prompt: &str, workspace: &Path) -> RunContext {
        let r = self
            .http
            .post(format!("{}/v1/sessions", self.url))
            .bearer_auth(ADMIN)
            .json(&json!({"agent": agent, "owner": "alice"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let created: Value = r.json().await.unwrap();
        let spec = self.gw.policies().agent("default", agent).expect("the agent is loaded").spec.clone();
        std::fs::create_dir_all(workspace).unwrap();
        RunContext {
            agent_name: agent.into(),
            model: spec.model.clone(),
            max_turns: 10,
            agent: spec,
            prompt: prompt.into(),
            workspace: std::fs::canonicalize(workspace).unwrap(),
            gateway: GatewayClient::new(&self.url, created["id"].as_str().unwrap(), created["token"].as_str().unwrap()),
            timeout: Duration::from_secs(180),
            // Nothing here may start a hook: a tool call that asked for one would fail closed.
            paddock_bin: PathBuf::from("/bin/false"),
            ca_bundle: None,
        }
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.url)).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// The session's decisions, in the order they were made; without `egress` (a CLI's own background
    /// connections, refused at any time).
    pub async fn decisions(&self, session: &str) -> Vec<Value> {
        let mut rows: Vec<Value> =
            serde_json::from_value(self.admin_get(&format!("/v1/audit?session={session}")).await).expect("audit rows");
        rows.retain(|r| r["phase"] != "egress");
        rows.sort_by_key(|r| r["seq"].as_i64());
        rows
    }

    /// The stored transcript (what `paddock session logs` shows): (source, event as JSON).
    pub async fn stored(&self, session: &str) -> Vec<(String, Value)> {
        let rows: Vec<Value> =
            serde_json::from_value(self.admin_get(&format!("/v1/sessions/{session}/events")).await).unwrap();
        rows.into_iter()
            .map(|r| {
                let mut e = r["event"].clone();
                let source = e.as_object_mut().and_then(|o| o.remove("source"));
                (source.and_then(|s| s.as_str().map(str::to_owned)).unwrap_or_default(), e)
            })
            .collect()
    }
}

/// `(phase, verdict)` of each decision.
pub fn phases(decisions: &[Value]) -> Vec<(String, String)> {
    decisions
        .iter()
        .map(|r| (r["phase"].as_str().unwrap_or("").to_owned(), r["verdict"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// What every harness shows for a session whose prompt and answer were allowed: the `request` decision
/// came before any other and the `response` decision after every other; the transcript opens with the
/// prompt and its last message is the final answer, on stdout's side and in the gateway's store.
pub async fn assert_both_ends(gw: &TestGateway, session: &str, events: &[TranscriptEvent], prompt: &str, answer: &str) {
    let decided = phases(&gw.decisions(session).await);
    assert_eq!(decided.first(), Some(&("request".to_owned(), "allow".to_owned())), "{decided:?}");
    assert_eq!(decided.last(), Some(&("response".to_owned(), "allow".to_owned())), "{decided:?}");
    assert!(decided.iter().any(|(p, _)| p == "llm_request"), "the harness ran: {decided:?}");
    assert_eq!(decided.iter().filter(|(p, _)| p == "request" || p == "response").count(), 2, "{decided:?}");

    assert_eq!(events.first(), Some(&TranscriptEvent::Message { role: "user".into(), text: prompt.into() }));
    let last_message = events.iter().rev().find(|e| matches!(e, TranscriptEvent::Message { .. }));
    assert_eq!(last_message, Some(&TranscriptEvent::Message { role: "assistant".into(), text: answer.into() }));
    assert!(
        matches!(events.last(), Some(TranscriptEvent::Done { phase, message }) if phase == "Succeeded" && message == answer),
        "{events:#?}"
    );
    let stored = gw.stored(session).await;
    let runner: Vec<&Value> = stored.iter().filter(|(s, _)| s == "runner").map(|(_, e)| e).collect();
    assert_eq!(runner.first(), Some(&&json!({"type": "message", "role": "user", "text": prompt})));
    let last = runner.iter().rev().find(|e| e["type"] == "message");
    assert_eq!(last, Some(&&json!({"type": "message", "role": "assistant", "text": answer})), "{stored:#?}");
}

/// What every harness shows for a refused prompt: one decision, the `request` deny; nothing reached a
/// model; the prompt is not in the transcript, the gateway's deny is.
pub async fn assert_refused_prompt(gw: &TestGateway, session: &str, events: &[TranscriptEvent], message: &str) {
    assert!(
        message.contains("the prompt was refused by policy `prompt-rules` (rule `no-launch-codes`)")
            && message.contains("prompts about launch codes are refused")
            && message.contains("the harness did not start"),
        "{message}"
    );
    assert_eq!(phases(&gw.decisions(session).await), [("request".to_owned(), "deny".to_owned())]);
    let info = gw.admin_get(&format!("/v1/sessions/{session}")).await;
    assert_eq!(info["usage"]["inputTokens"], 0, "a model was called: {info}");
    assert!(!events.iter().any(|e| matches!(e, TranscriptEvent::Message { .. })), "{events:#?}");
    assert!(
        events.iter().any(|e| matches!(e, TranscriptEvent::Verdict { phase, verdict, .. }
            if phase == "request" && verdict == "deny")),
        "{events:#?}"
    );
    let stored = gw.stored(session).await;
    assert!(!stored.iter().any(|(_, e)| e["type"] == "message"), "{stored:#?}");
    assert!(
        stored.iter().any(|(s, e)| s == "gateway"
            && e["type"] == "verdict"
            && e["phase"] == "request"
            && e["verdict"] == "deny"
            && e["policy"] == "prompt-rules"),
        "{stored:#?}"
    );
}

/// What every harness shows for a final answer that carried [`TOKEN`]: the session failed with the
/// policy's reason; the `response` deny is the last decision; the answer is nowhere — not the outcome,
/// not a message on stdout's side, not in the gateway's store.
pub async fn assert_withheld_answer(gw: &TestGateway, session: &str, events: &[TranscriptEvent], message: &str) {
    assert!(
        message.contains("the final answer was withheld by policy `prompt-rules` (rule `no-secrets-in-answers`)")
            && message.contains("secret"),
        "{message}"
    );
    let decided = phases(&gw.decisions(session).await);
    assert_eq!(decided.first(), Some(&("request".to_owned(), "allow".to_owned())), "{decided:?}");
    assert_eq!(decided.last(), Some(&("response".to_owned(), "deny".to_owned())), "{decided:?}");
    let local = serde_json::to_string(events).unwrap();
    assert!(!local.contains(TOKEN) && !message.contains(TOKEN), "the answer was shown: {events:#?}");
    assert!(matches!(events.last(), Some(TranscriptEvent::Done { phase, .. }) if phase == "Failed"), "{events:#?}");
    assert!(
        events.iter().any(|e| matches!(e, TranscriptEvent::Verdict { phase, verdict, .. }
            if phase == "response" && verdict == "deny")),
        "{events:#?}"
    );
    let stored = gw.stored(session).await;
    assert!(!serde_json::to_string(&stored).unwrap().contains(TOKEN), "the gateway stored the answer: {stored:#?}");
    assert!(
        stored.iter().any(|(s, e)| s == "gateway"
            && e["type"] == "verdict"
            && e["phase"] == "response"
            && e["verdict"] == "deny"
            && e["policy"] == "prompt-rules"),
        "{stored:#?}"
    );
}
