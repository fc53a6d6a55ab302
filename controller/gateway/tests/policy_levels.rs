//! A session's own rules as the first level of policy, and the per-Policy decision counts the controller
//! writes into each Policy's status: on the real gateway, over loopback.

mod support;

use serde_json::{Value, json};
use support::*;

/// An Agent `leveled` governed by three Policies of its own: `guard` denies writes, `careful` asks before shell
/// commands, and one named `session` that never objects (a Policy may be called that; it must not be
/// mistaken for a session's own rules). `leveled` may start `coder` as a sub-agent.
const LEVELS: &str = r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: leveled, labels: {levels: test}}
spec:
  harness: custom
  model: claude-sonnet-4-5
  subAgents: [coder]
---
apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: guard}
spec:
  selector: {matchLabels: {levels: test}}
  rules:
    - {name: no-writes, use: tool_denylist, with: {tools: [Write]}}
---
apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: careful}
spec:
  selector: {matchLabels: {levels: test}}
  rules:
    - {name: ask-shell, use: tool_denylist, with: {tools: [Bash]}, action: ask}
---
apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: session}
spec:
  selector: {matchLabels: {levels: test}}
  rules:
    - {name: plenty, use: max_tool_calls, with: {limit: 1000}}
"#;

fn setup(dir: &std::path::Path) {
    write_repo(dir);
    std::fs::write(dir.join("repo/levels.yaml"), LEVELS).unwrap();
}

fn call(tool: &str, args: Value, id: &str) -> Value {
    json!({"phase": "tool_call", "tool": tool, "args": args, "tool_id": id})
}

async fn decide(t: &TestGateway, token: &str, session: &str, event: Value, query: &str) -> Value {
    let r = t
        .client
        .post(format!("{}/v1/sessions/{session}/decide{query}", t.url))
        .bearer_auth(token)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// `POST /v1/sessions` as the controller sends it; returns the status and the answer.
async fn create(t: &TestGateway, body: Value) -> (u16, Value) {
    let r = t.client.post(format!("{}/v1/sessions", t.url)).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn counts(t: &TestGateway, token: Option<&str>) -> reqwest::Response {
    let mut r = t.client.get(format!("{}/v1/policies/decisions", t.url));
    if let Some(token) = token {
        r = r.bearer_auth(token);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn a_session_deny_rule_decides_first_is_reported_as_the_session_and_binds_its_sub_agents() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let (id, token) = {
        let t = TestGateway::start(dir.path()).await;
        let (open, open_token) = t.session("leveled").await;
        let ls = || call("Bash", json!({"command": "ls"}), "t1");
        // Without rules of its own, the Agent's levels ask about the shell.
        let v = decide(&t, &open_token, &open, ls(), "?wait=false").await;
        assert_eq!((v["verdict"].as_str(), v["policy"].as_str()), (Some("ask"), Some("careful")), "{v}");
        // Answered, so that nothing of this gateway waits on it when the next one starts.
        assert_eq!(t.settle(v["approval_id"].as_str().unwrap(), "deny", ADMIN, None).await.status(), 200);
        let rules = json!({"rules": [{"name": "no-shell", "use": "tool_denylist", "with": {"tools": ["Bash"]}}]});
        let (status, s) = create(&t, json!({"agent": "leveled", "owner": "alice", "policy": rules})).await;
        assert_eq!(status, 201, "{s}");
        let (id, token) = (s["id"].as_str().unwrap().to_owned(), s["token"].as_str().unwrap().to_owned());
        let v = decide(&t, &token, &id, ls(), "").await;
        assert_eq!(v["verdict"], "deny", "{v}");
        assert_eq!(v["policy"], format!("session/{id}"));
        assert_eq!(v["rule"], "no-shell");
        // The session's deny came first: no approval was opened for it.
        let audit = t.audit(&id).await;
        assert_eq!(audit.len(), 1, "{audit:#?}");
        assert_eq!(
            (audit[0]["policy"].as_str(), audit[0]["verdict"].as_str()),
            (Some(&*format!("session/{id}")), Some("deny"))
        );
        // What its rules say nothing about, the other levels decide.
        let v = decide(&t, &token, &id, call("Write", json!({"file_path": "/w/a", "content": "x"}), "t2"), "").await;
        assert_eq!((v["verdict"].as_str(), v["policy"].as_str()), (Some("deny"), Some("guard")), "{v}");
        // A sub-agent runs under its parent's own rules too (its Agent, `coder`, has no shell rule).
        let r = t.child(&id, &token, "coder").await;
        assert_eq!(r.status(), 201);
        let child: Value = r.json().await.unwrap();
        let (cid, ctoken) = (child["id"].as_str().unwrap(), child["token"].as_str().unwrap());
        let v = decide(&t, ctoken, cid, ls(), "").await;
        assert_eq!(
            (v["verdict"].as_str(), v["policy"].as_str()),
            (Some("deny"), Some(&*format!("session/{cid}"))),
            "{v}"
        );
        // A child started the Kubernetes way (a Session with `parentRef`: `parent` in the body) inherits them too,
        // ahead of its own; an own rule may not reuse an inherited rule's name.
        let clash = json!({"rules": [{"name": "no-shell", "use": "tool_denylist", "with": {"tools": ["Write"]}}]});
        let (status, v) = create(&t, json!({"agent": "coder", "owner": "alice", "parent": id, "policy": clash})).await;
        assert_eq!(status, 422, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("policy.rules[0].name: `no-shell` is also a rule of the parent"),
            "{v}"
        );
        let own = json!({"rules": [{"name": "no-write", "use": "tool_denylist", "with": {"tools": ["Write"]}}]});
        let (status, k) = create(&t, json!({"agent": "coder", "owner": "alice", "parent": id, "policy": own})).await;
        assert_eq!(status, 201, "{k}");
        let (kid, ktoken) = (k["id"].as_str().unwrap(), k["token"].as_str().unwrap());
        let v = decide(&t, ktoken, kid, ls(), "").await;
        assert_eq!((v["verdict"].as_str(), v["rule"].as_str()), (Some("deny"), Some("no-shell")), "{v}");
        let v = decide(&t, ktoken, kid, call("Write", json!({"file_path": "/w/b", "content": "y"}), "t4"), "").await;
        assert_eq!((v["verdict"].as_str(), v["rule"].as_str()), (Some("deny"), Some("no-write")), "{v}");
        (id, token)
    };
    // A restarted gateway compiles the session's rules again from its state.
    let t = TestGateway::start(dir.path()).await;
    let v = decide(&t, &token, &id, call("Bash", json!({"command": "pwd"}), "t3"), "").await;
    assert_eq!((v["verdict"].as_str(), v["rule"].as_str()), (Some("deny"), Some("no-shell")), "{v}");
}

#[tokio::test]
async fn a_session_rule_that_would_allow_is_refused_with_its_field() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let t = TestGateway::start(dir.path()).await;
    let rules = json!({"rules": [
        {"name": "fine", "use": "tool_denylist", "with": {"tools": ["Write"]}, "action": "ask"},
        {"name": "open-shell", "use": "tool_denylist", "with": {"tools": ["Bash"]}, "action": "allow"},
    ]});
    let (status, v) = create(&t, json!({"agent": "leveled", "owner": "alice", "policy": rules})).await;
    assert_eq!(status, 422, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert_eq!(
        msg,
        "policy.rules[1].action: a session rule may only tighten what the Policies allow: `deny` or `ask`, never \
         `allow`"
    );
    let (status, v) = create(
        &t,
        json!({"agent": "leveled", "owner": "alice",
        "policy": {"rules": [{"name": "x", "use": "tool_denylist", "with": {"tool": ["Bash"]}}]}}),
    )
    .await;
    assert_eq!(status, 422);
    assert!(v["error"]["message"].as_str().unwrap().starts_with("policy.rules[0].with.tool: unknown parameter"), "{v}");
    // Nothing was created.
    let r = t.client.get(format!("{}/v1/sessions", t.url)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 0);
}

#[tokio::test]
async fn decision_counts_per_policy_come_from_the_ledger_survive_a_restart_and_need_the_admin() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let token = {
        let t = TestGateway::start(dir.path()).await;
        let (id, token) = t.session("leveled").await;
        for n in 0..2 {
            let v = decide(
                &t,
                &token,
                &id,
                call("Write", json!({"file_path": format!("/w/{n}"), "content": "x"}), &format!("w{n}")),
                "",
            )
            .await;
            assert_eq!(v["policy"], "guard");
        }
        let mut asks = Vec::new();
        for (n, command) in ["ls", "pwd"].iter().enumerate() {
            let v = decide(&t, &token, &id, call("Bash", json!({"command": command}), &format!("b{n}")), "?wait=false")
                .await;
            assert_eq!((v["status"].as_str(), v["policy"].as_str()), (Some("pending"), Some("careful")), "{v}");
            asks.push(v["approval_id"].as_str().unwrap().to_owned());
        }
        assert_eq!(t.settle(&asks[0], "approve", ADMIN, None).await.status(), 200);
        assert_eq!(t.settle(&asks[1], "deny", ADMIN, Some(json!({"by": "carol"}))).await.status(), 200);
        // An allowed call is decided by no Policy in particular: counted nowhere.
        let v = decide(&t, &token, &id, call("Read", json!({"file_path": "/w/a"}), "r1"), "").await;
        assert_eq!((v["verdict"].as_str(), v["policy"].as_str()), (Some("allow"), None), "{v}");
        // A session's own deny is not the Policy named `session`.
        let own = json!({"rules": [{"name": "no-read", "use": "tool_denylist", "with": {"tools": ["Read"]}}]});
        let (status, s) = create(&t, json!({"agent": "leveled", "owner": "bob", "policy": own})).await;
        assert_eq!(status, 201);
        let (sid, stoken) = (s["id"].as_str().unwrap(), s["token"].as_str().unwrap());
        let v = decide(&t, stoken, sid, call("Read", json!({"file_path": "/w/a"}), "r2"), "").await;
        assert_eq!(v["policy"], format!("session/{sid}"));
        let r = counts(&t, Some(ADMIN)).await;
        assert_eq!(r.status(), 200);
        let got: Value = r.json().await.unwrap();
        let want = json!({
            "default/careful": {"allow": 1, "deny": 1, "ask": 2},
            "default/guard": {"allow": 0, "deny": 2, "ask": 0},
        });
        assert_eq!(got, want, "only Policy objects, keyed namespace/name");
        // A session's token cannot read them; nor can a caller without a token, or with a made-up one.
        let r = counts(&t, Some(&token)).await;
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("needs the admin credential"));
        assert_eq!(counts(&t, None).await.status(), 401);
        assert_eq!(counts(&t, Some("pdk_nope")).await.status(), 401);
        token
    };
    // The counts are the ledger's, not the process's: a new gateway on the same database reports the same.
    let t = TestGateway::start(dir.path()).await;
    let got: Value = counts(&t, Some(ADMIN)).await.json().await.unwrap();
    assert_eq!(got["default/careful"], json!({"allow": 1, "deny": 1, "ask": 2}));
    assert_eq!(got["default/guard"], json!({"allow": 0, "deny": 2, "ask": 0}));
    assert_eq!(counts(&t, Some(&token)).await.status(), 403, "the session is still live; its token still is no admin");
}
