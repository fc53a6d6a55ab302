//! The web console in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven over
//! WebDriver): signing in, a transcript updating live, an ask approved from the console releasing the held
//! decision, a viewer without the approver role, share links, comments between two browsers, and agent text
//! that stays text. Plus the console's HTTP guarantees (CSRF, origin, headers) checked without a browser.
//!
//! `PADDOCK_CONSOLE_SCREENSHOTS=DIR` saves a screenshot of each page into DIR (docs/console/ holds them).

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use paddock_gateway::config::{ConsoleConfig, ConsoleRole, ConsoleUser, SecretSource};
use paddock_gateway::console::Console as ConsoleState;
use paddock_gateway::console::kube_auth::KubeAuth;
use paddock_gateway::{Gateway, GatewayConfig};
use serde_json::{Value, json};
use support::{ADMIN, database};

const VIEWER_TOKEN: &str = "alice-console-token-0123456789";
const APPROVER_TOKEN: &str = "bob-console-token-0123456789";
const WAIT: Duration = Duration::from_secs(15);

const REPO: &[(&str, &str)] = &[
    (
        "agents/coder.yaml",
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: coder}
spec:
  harness: custom
  model: claude-sonnet-4-5
"#,
    ),
    (
        "team-a/coder.yaml",
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: coder, namespace: team-a}
spec:
  harness: custom
  model: claude-sonnet-4-5
  rules:
    - name: ask-before-deploy
      use: tool_denylist
      with: {tools: [deploy]}
      action: ask
"#,
    ),
    (
        "team-b/coder.yaml",
        r#"apiVersion: paddock.dev/v1alpha1
kind: Agent
metadata: {name: coder, namespace: team-b}
spec:
  harness: custom
  model: claude-sonnet-4-5
"#,
    ),
    (
        "policies/deploys.yaml",
        r#"apiVersion: paddock.dev/v1alpha1
kind: Policy
metadata: {name: deploys-need-a-human}
spec:
  agents: [coder]
  rules:
    - name: ask-before-deploy
      use: tool_denylist
      with: {tools: [deploy]}
      action: ask
"#,
    ),
];

/// A gateway with its console on loopback.
struct Console {
    gw: Arc<Gateway>,
    /// The first replica's configuration, for starting another on the same database.
    cfg: GatewayConfig,
    api: String,
    url: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Console {
    async fn start() -> Console {
        Console::start_with(None).await
    }

    /// With `kube`, people also sign in with Kubernetes tokens (the console as in a cluster).
    async fn start_with(kube: Option<KubeAuth>) -> Console {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (rel, text) in REPO {
            std::fs::create_dir_all(d.join("repo").join(rel).parent().unwrap()).unwrap();
            std::fs::write(d.join("repo").join(rel), text).unwrap();
        }
        std::fs::write(d.join("admin-token"), ADMIN).unwrap();
        std::fs::write(d.join("alice"), VIEWER_TOKEN).unwrap();
        std::fs::write(d.join("bob"), APPROVER_TOKEN).unwrap();
        let user = |name: &str, role| ConsoleUser {
            name: name.into(),
            token: SecretSource { env: None, file: Some(d.join(name)) },
            role,
        };
        let mut cfg = GatewayConfig {
            database: database(d),
            data_dir: Some(d.join("data")),
            repo: Some(d.join("repo")),
            admin_token: Some(SecretSource { env: None, file: Some(d.join("admin-token")) }),
            console: Some(ConsoleConfig {
                listen: "127.0.0.1:0".into(),
                users: vec![user("alice", ConsoleRole::Viewer), user("bob", ConsoleRole::Approver)],
                sign_in_hours: 1,
                kubernetes: false,
            }),
            ..GatewayConfig::default()
        };
        cfg.limits.ask_timeout_seconds = 60;
        std::fs::write(d.join("script.yaml"), support::SCRIPT).unwrap();
        cfg.providers.push(paddock_gateway::config::ProviderConfig::scripted(d.join("script.yaml"), &["claude-*"]));
        let (gw, api, _server) = paddock_gateway::server::serve_loopback(&cfg).await.unwrap();
        let url = match kube {
            None => paddock_gateway::server::start_console(&gw, &cfg, std::future::pending()).await.unwrap().unwrap().0,
            Some(kube) => {
                let admin = std::fs::read_to_string(d.join("admin-token")).unwrap();
                let console =
                    ConsoleState::new(gw.clone(), cfg.console.as_ref().unwrap(), &admin, false, Some(kube)).unwrap();
                serve(console).await
            }
        };
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Console { gw, api, url, http, cfg, dir }
    }

    /// Another replica of the gateway with its console, on the same PostgreSQL database and admin token (only
    /// with `PADDOCK_TEST_POSTGRES`): its console's URL.
    async fn replica(&self) -> Option<String> {
        self.cfg.database.as_ref()?;
        let mut cfg = self.cfg.clone();
        cfg.data_dir = Some(self.dir.path().join("data-2"));
        let (gw, _api, _server) = paddock_gateway::server::serve_loopback(&cfg).await.unwrap();
        Some(paddock_gateway::server::start_console(&gw, &cfg, std::future::pending()).await.unwrap().unwrap().0)
    }

    /// A new session of `coder`: (id, token).
    async fn session(&self) -> (String, String) {
        support::new_session(&self.http, &self.api, "coder").await
    }

    /// The runner posting transcript events with the session's token.
    async fn post_events(&self, id: &str, token: &str, events: Value) {
        let r = self
            .http
            .post(format!("{}/v1/sessions/{id}/events", self.api))
            .bearer_auth(token)
            .json(&events)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// A `tool_call` decision the session waits on (as Claude Code's hook does); the ruling once released.
    fn held_decision(&self, id: &str, token: &str, tool: &str, args: Value) -> tokio::task::JoinHandle<Value> {
        let (http, url, token) = (self.http.clone(), format!("{}/v1/sessions/{id}/decide", self.api), token.to_owned());
        let event = json!({"phase": "tool_call", "tool": tool, "args": args});
        tokio::spawn(async move {
            let r = http.post(url).bearer_auth(token).json(&event).send().await.unwrap();
            r.json::<Value>().await.unwrap()
        })
    }

    /// `GET` of the gateway's API as the admin, as JSON.
    async fn admin_get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let r = self.http.get(format!("{}{path}", self.api)).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    /// A model request of the session through the gateway (the scripted model answers with usage).
    async fn model_call(&self, token: &str) {
        let (path, body) = support::request("anthropic", "claude-sonnet-4-5", &[("user", "hello")], false);
        let r =
            self.http.post(format!("{}{path}", self.api)).header("x-api-key", token).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    async fn pending(&self) -> Vec<Value> {
        self.admin_get("/v1/approvals").await
    }

    async fn wait_for_ask(&self, session: &str) -> String {
        for _ in 0..200 {
            if let Some(a) = self.pending().await.into_iter().find(|a| a["session"] == session) {
                return a["id"].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no ask appeared for {session}");
    }
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole process group: the Chromium processes chromedriver started go with it, also when a test
        // failed before closing its browser.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PADDOCK_CHROMEDRIVER") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// Starts chromedriver, or `None` where it is not installed (CI installs it: there its absence fails).
fn driver() -> Option<Driver> {
    let Some(bin) = chromedriver() else {
        assert!(std::env::var_os("CI").is_none(), "CI must install chromium-driver (.ci/run)");
        eprintln!("skipped: chromedriver is not installed (apt-get install chromium chromium-driver)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(bin)
        .process_group(0)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    // Dropped (and killed) on every path from here.
    let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(driver);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("chromedriver did not listen on {port}");
}

/// A fresh headless browser (its own profile: no cookies).
async fn browser(d: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    let binary = std::env::var("PADDOCK_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": binary, "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1280,900", "--no-first-run", "--no-default-browser-check"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(&d.url).await.expect("a Chromium session")
}

async fn sign_in(b: &Client, console: &str, token: &str) {
    b.goto(&format!("{console}/ui/login")).await.unwrap();
    b.find(Locator::Css("#token")).await.unwrap().send_keys(token).await.unwrap();
    b.find(Locator::Css("#sign-in")).await.unwrap().click().await.unwrap();
    b.wait().at_most(WAIT).for_element(Locator::Css("#who")).await.expect("signed in");
}

/// Waits until an element matching `css` has text containing `text` (as shown: labels are upper-cased by
/// the style sheet, so `approved` matches `APPROVED`).
async fn wait_text(b: &Client, css: &str, text: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        for e in b.find_all(Locator::Css(css)).await.unwrap_or_default() {
            if let Ok(t) = e.text().await
                && (t.contains(text) || t.to_lowercase().contains(&text.to_lowercase()))
            {
                return t;
            }
        }
        if std::time::Instant::now() > deadline {
            let page = b.source().await.unwrap_or_default();
            panic!("no `{css}` with `{text}` within {WAIT:?}; page:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn screenshot(b: &Client, name: &str) {
    let Some(dir) = std::env::var_os("PADDOCK_CONSOLE_SCREENSHOTS") else { return };
    let png = b.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
}

/// The signed-in browser's cookie and CSRF token, to send requests as that user without the page.
async fn credentials_of(b: &Client) -> (String, String) {
    let cookie = b.get_named_cookie("paddock_console").await.unwrap();
    let csrf = b.execute("return document.querySelector('meta[name=csrf-token]').content", vec![]).await.unwrap();
    (format!("paddock_console={}", cookie.value()), csrf.as_str().unwrap().to_owned())
}

#[tokio::test]
async fn sign_in_follow_a_session_live_and_approve_its_ask_from_the_console() {
    let Some(d) = driver() else { return };
    let c = Console::start().await;
    let (id, token) = c.session().await;
    c.post_events(&id, &token, json!([{"type": "message", "role": "user", "text": "Deploy the fix to staging"}])).await;
    let b = browser(&d).await;
    // Signed out, a page sends the browser to sign in first, and back afterwards.
    b.goto(&format!("{}/ui/sessions/{id}", c.url)).await.unwrap();
    b.wait().at_most(WAIT).for_element(Locator::Css("#token")).await.unwrap();
    screenshot(&b, "sign-in").await;
    b.find(Locator::Css("#token")).await.unwrap().send_keys(ADMIN).await.unwrap();
    b.find(Locator::Css("#sign-in")).await.unwrap().click().await.unwrap();
    wait_text(&b, "h1", &format!("Session {id}")).await;
    wait_text(&b, "#transcript li", "Deploy the fix to staging").await;
    // Live: what the runner posts now appears without a reload.
    c.post_events(&id, &token, json!([{"type": "message", "role": "assistant", "text": "Running the tests first."}]))
        .await;
    wait_text(&b, "#transcript li", "Running the tests first.").await;
    // The cost grows on the page as the model is called.
    // Read in one step: the summary is replaced every 2 s, so an element found first may be gone when read.
    let cost =
        || async { b.execute("return document.getElementById('cost-value').textContent", vec![]).await.unwrap() };
    assert_eq!(cost().await, json!("$0"));
    c.model_call(&token).await;
    let deadline = std::time::Instant::now() + WAIT;
    while cost().await == json!("$0") {
        assert!(std::time::Instant::now() < deadline, "the cost did not grow on the page");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_text(&b, "#summary", "100 in, 10 out").await;
    // Each tool call's verdict and the policy that gave it, allowed ones included.
    let read = c.held_decision(&id, &token, "Read", json!({"file_path": "README.md"}));
    assert_eq!(read.await.unwrap()["verdict"], "allow");
    wait_text(&b, "#decisions tbody tr", "Read").await;
    // The agent wants to deploy: the policy asks, and the decision is held.
    let held = c.held_decision(&id, &token, "deploy", json!({"env": "staging"}));
    let ask = c.wait_for_ask(&id).await;
    wait_text(&b, "#transcript li.ev-ask", "(deploys-need-a-human").await;
    wait_text(&b, "#decisions tbody tr", "deploys-need-a-human / ask-before-deploy").await;
    b.goto(&format!("{}/ui/approvals", c.url)).await.unwrap();
    wait_text(&b, &format!("div.ask[data-approval='{ask}']"), "deploy").await;
    screenshot(&b, "approvals").await;
    assert!(!held.is_finished(), "the decision waits for a human");
    let form = format!("div.ask[data-approval='{ask}'] form.decide");
    b.find(Locator::Css(&format!("{form} input[name=reason]"))).await.unwrap().send_keys("staging only").await.unwrap();
    b.find(Locator::Css(&format!("{form} input[name=comment]")))
        .await
        .unwrap()
        .send_keys("Tests passed; go.")
        .await
        .unwrap();
    b.find(Locator::Css(&format!("{form} button.approve"))).await.unwrap().click().await.unwrap();
    // The held decision is released as allowed, recorded with the approver's name.
    let ruling = tokio::time::timeout(WAIT, held).await.expect("released").unwrap();
    assert_eq!(ruling["verdict"], "allow", "{ruling}");
    wait_text(&b, "table td", "admin").await;
    let audit: Vec<Value> = c.admin_get(&format!("/v1/audit?session={id}")).await;
    let decided =
        audit.iter().find(|r| r["approval_id"] == ask.as_str() && r["verdict"] == "allow").expect("audit row");
    assert_eq!(decided["decided_by"], "admin");
    assert!(decided["reason"].as_str().unwrap().contains("staging only"), "{decided}");
    // The session goes on: its next events show on its page, after the approval and the comment.
    c.post_events(&id, &token, json!([{"type": "tool_result", "output": "deployed to staging"}])).await;
    b.goto(&format!("{}/ui/sessions/{id}", c.url)).await.unwrap();
    wait_text(&b, "#transcript li", "approved").await;
    wait_text(&b, "#transcript li.comment", "Tests passed; go.").await;
    wait_text(&b, "#transcript li", "deployed to staging").await;
    screenshot(&b, "session").await;
    b.goto(&format!("{}/ui/sessions", c.url)).await.unwrap();
    wait_text(&b, "#sessions tbody tr", &id).await;
    screenshot(&b, "sessions").await;
    b.goto(&format!("{}/ui/audit?session={id}", c.url)).await.unwrap();
    wait_text(&b, "#audit tbody tr", "ask-before-deploy").await;
    screenshot(&b, "audit").await;
    b.goto(&format!("{}/ui/policies", c.url)).await.unwrap();
    let row = wait_text(&b, "#policies tbody tr", "deploys-need-a-human").await;
    assert!(row.contains("default/coder"), "{row}");
    screenshot(&b, "policies").await;
    // Every field on every page has a label.
    for path in ["/ui/sessions", "/ui/approvals", "/ui/audit", "/ui/policies", &format!("/ui/sessions/{id}")] {
        b.goto(&format!("{}{path}", c.url)).await.unwrap();
        b.wait().at_most(WAIT).for_element(Locator::Css("main h1")).await.unwrap();
        let unlabelled = b
            .execute(
                "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]                 .filter(e => e.labels.length === 0).map(e => e.id || e.name)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(unlabelled, json!([]), "{path}");
    }
    // Readable on a phone: at 390 px nothing but tables scrolls sideways, and the approve form still fits.
    b.set_window_size(390, 844).await.unwrap();
    for path in [format!("/ui/sessions/{id}"), "/ui/sessions".to_owned(), "/ui/approvals".to_owned()] {
        b.goto(&format!("{}{path}", c.url)).await.unwrap();
        b.wait().at_most(WAIT).for_element(Locator::Css("main h1")).await.unwrap();
        let wide = b.execute("return document.documentElement.scrollWidth - window.innerWidth", vec![]).await.unwrap();
        assert!(wide.as_i64().unwrap() <= 0, "{path} scrolls sideways by {wide} px on a phone");
    }
    b.goto(&format!("{}/ui/sessions/{id}", c.url)).await.unwrap();
    wait_text(&b, "#transcript li", "deployed to staging").await;
    screenshot(&b, "phone-session").await;
    b.close().await.unwrap();
}

#[tokio::test]
async fn a_viewer_sees_no_approve_button_and_is_refused() {
    let Some(d) = driver() else { return };
    let c = Console::start().await;
    let (id, token) = c.session().await;
    let held = c.held_decision(&id, &token, "deploy", json!({}));
    let ask = c.wait_for_ask(&id).await;
    let b = browser(&d).await;
    sign_in(&b, &c.url, VIEWER_TOKEN).await;
    assert_eq!(b.find(Locator::Css("#who")).await.unwrap().text().await.unwrap(), "alice");
    b.goto(&format!("{}/ui/approvals", c.url)).await.unwrap();
    wait_text(&b, &format!("div.ask[data-approval='{ask}']"), "Only an approver can decide").await;
    assert!(b.find_all(Locator::Css("button.approve")).await.unwrap().is_empty(), "a viewer has no approve button");
    // The same request the button would send, with the viewer's own cookie and CSRF token: refused.
    let (cookie, csrf) = credentials_of(&b).await;
    let r = c
        .http
        .post(format!("{}/ui/approvals/{ask}/decide", c.url))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("only an approver can decide"));
    // A console token is not an API credential either.
    let r =
        c.http.post(format!("{}/v1/approvals/{ask}/approve", c.api)).bearer_auth(VIEWER_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(c.pending().await.iter().any(|a| a["id"] == ask.as_str()), "still pending");
    assert!(!held.is_finished());
    // An approver signs in and decides.
    let b2 = browser(&d).await;
    sign_in(&b2, &c.url, APPROVER_TOKEN).await;
    b2.goto(&format!("{}/ui/sessions/{id}", c.url)).await.unwrap();
    // With the keyboard alone: the reason field by its label, then Tab past the comment and Approve to Deny.
    b2.wait().at_most(WAIT).for_element(Locator::Css("button.deny")).await.unwrap();
    b2.find(Locator::XPath("//label[normalize-space()='Reason']")).await.unwrap().click().await.unwrap();
    let focused = b2.execute("return document.activeElement.name", vec![]).await.unwrap();
    assert_eq!(focused, json!("reason"), "the label focuses its field");
    let tab = fantoccini::key::Key::Tab.to_string();
    let keys = format!("not in prod{tab}{tab}{tab}");
    b2.active_element().await.unwrap().send_keys(&keys).await.unwrap();
    let focused = b2.execute("return document.activeElement.className", vec![]).await.unwrap();
    assert_eq!(focused, json!("deny"), "Tab reaches Deny");
    b2.active_element().await.unwrap().send_keys(&fantoccini::key::Key::Enter.to_string()).await.unwrap();
    let ruling = tokio::time::timeout(WAIT, held).await.unwrap().unwrap();
    assert_eq!(ruling["verdict"], "deny", "{ruling}");
    assert!(ruling["reason"].as_str().unwrap_or("").contains("not in prod"), "{ruling}");
    let all: Vec<Value> = c.admin_get("/v1/approvals?status=all").await;
    assert_eq!(all.iter().find(|a| a["id"] == ask.as_str()).unwrap()["decided_by"], "bob");
    b.close().await.unwrap();
    b2.close().await.unwrap();
}

#[tokio::test]
async fn a_share_link_shows_the_session_signed_out_until_revoked() {
    let Some(d) = driver() else { return };
    let c = Console::start().await;
    let (id, token) = c.session().await;
    c.post_events(&id, &token, json!([{"type": "message", "role": "assistant", "text": "Shared progress report"}]))
        .await;
    let owner = browser(&d).await;
    sign_in(&owner, &c.url, APPROVER_TOKEN).await;
    owner.goto(&format!("{}/ui/sessions/{id}", c.url)).await.unwrap();
    owner.wait().at_most(WAIT).for_element(Locator::Css("#share-create")).await.unwrap().click().await.unwrap();
    let link = owner.wait().at_most(WAIT).for_element(Locator::Css("#share-url")).await.unwrap();
    let link = link.prop("value").await.unwrap().unwrap();
    // The page that answered the form shows the session's own address, and commenting still works there.
    let path = owner.execute("return location.pathname", vec![]).await.unwrap();
    assert_eq!(path, json!(format!("/ui/sessions/{id}")));
    owner.wait().at_most(WAIT).for_element(Locator::Css("#ev-0")).await.unwrap();
    owner.find(Locator::Css("#comment-text")).await.unwrap().send_keys("Shared with the reviewers.").await.unwrap();
    owner.find(Locator::Css("#comment-send")).await.unwrap().click().await.unwrap();
    wait_text(&owner, "#transcript li.comment", "Shared with the reviewers.").await;
    assert!(link.starts_with(&format!("{}/ui/shared/", c.url)), "{link}");
    // Signed out, in another browser: the session and its transcript, live, and nothing to act with.
    let guest = browser(&d).await;
    guest.goto(&link).await.unwrap();
    wait_text(&guest, "#transcript li", "Shared progress report").await;
    c.post_events(&id, &token, json!([{"type": "message", "role": "assistant", "text": "Later news"}])).await;
    wait_text(&guest, "#transcript li", "Later news").await;
    assert!(guest.find_all(Locator::Css("form")).await.unwrap().is_empty(), "a shared view has no forms");
    screenshot(&guest, "shared").await;
    // The link opens only this session: the rest of the console still wants a sign-in.
    guest.goto(&format!("{}/ui/sessions", c.url)).await.unwrap();
    guest.wait().at_most(WAIT).for_element(Locator::Css("#token")).await.unwrap();
    // A stream opened through the link now ends once the link is revoked.
    let token_part = link.rsplit('/').next().unwrap().to_owned();
    let stream = c.http.get(format!("{}/ui/shared/{token_part}/events", c.url)).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    owner.goto(&format!("{}/ui/sessions/{id}", c.url)).await.unwrap();
    owner.wait().at_most(WAIT).for_element(Locator::Css("button.revoke")).await.unwrap().click().await.unwrap();
    wait_text(&owner, "#shares li", "revoked by bob").await;
    let ended = tokio::time::timeout(WAIT, stream.bytes()).await;
    assert!(ended.is_ok(), "the open stream ended after the revocation");
    guest.goto(&link).await.unwrap();
    wait_text(&guest, "p.error", "This link does not work").await;
    // Both are in the audit log, with who did them.
    let audit: Vec<Value> = c.admin_get(&format!("/v1/audit?session={id}")).await;
    let shares: Vec<_> = audit.iter().filter(|r| r["phase"] == "share").collect();
    assert_eq!(shares.len(), 2, "{audit:?}");
    assert_eq!((shares[0]["verdict"].as_str(), shares[1]["verdict"].as_str()), (Some("created"), Some("revoked")));
    assert!(shares.iter().all(|r| r["decided_by"] == "bob"));
    owner.close().await.unwrap();
    guest.close().await.unwrap();
}

#[tokio::test]
async fn comments_reach_another_browser_live_and_agent_text_stays_text() {
    let Some(d) = driver() else { return };
    let c = Console::start().await;
    let (id, token) = c.session().await;
    let hostile = r#"<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"><a href="javascript:alert(1)">click</a>"#;
    c.post_events(&id, &token, json!([{"type": "message", "role": "assistant", "text": hostile}])).await;
    // An ask whose summary carries markup (the tool's arguments), shown on server-rendered pages.
    let _held = c.held_decision(&id, &token, "deploy", json!({"target": "<img src=x onerror=\"window.pwned = 3\">"}));
    c.wait_for_ask(&id).await;
    let a = browser(&d).await;
    let b = browser(&d).await;
    sign_in(&a, &c.url, ADMIN).await;
    sign_in(&b, &c.url, APPROVER_TOKEN).await;
    for br in [&a, &b] {
        br.goto(&format!("{}/ui/sessions/{id}", c.url)).await.unwrap();
        wait_text(br, "#transcript li", "<script>window.pwned = 1</script>").await;
    }
    // The first browser comments on the model's message; the second shows it without a reload.
    let first = a.find(Locator::Css("#ev-0 button.comment-on")).await.unwrap();
    first.click().await.unwrap();
    a.find(Locator::Css("#comment-text"))
        .await
        .unwrap()
        .send_keys("Why <b>this</b>? <img src=x onerror=\"window.pwned=4\">")
        .await
        .unwrap();
    a.find(Locator::Css("#comment-send")).await.unwrap().click().await.unwrap();
    let shown = wait_text(&b, "#ev-0 li.comment", "Why <b>this</b>?").await;
    assert!(shown.starts_with("admin"), "attributed: {shown}");
    // Text, never markup: no script ran, no element was made from agent or comment text.
    for br in [&a, &b] {
        let pwned = br.execute("return window.pwned === undefined", vec![]).await.unwrap();
        assert_eq!(pwned, json!(true), "no injected script ran");
        let made = br
            .execute("return document.querySelectorAll('main img, main script, main b, #transcript a').length", vec![])
            .await
            .unwrap();
        assert_eq!(made, json!(0));
    }
    b.goto(&format!("{}/ui/approvals", c.url)).await.unwrap();
    wait_text(&b, "div.ask", "onerror").await;
    assert_eq!(b.execute("return document.querySelectorAll('main img').length", vec![]).await.unwrap(), json!(0));
    assert_eq!(b.execute("return window.pwned === undefined", vec![]).await.unwrap(), json!(true));
    // Durable: the comment is part of the stored transcript, by the signed-in user.
    let events: Vec<Value> = c.admin_get(&format!("/v1/sessions/{id}/events")).await;
    let comment = events.iter().map(|e| &e["event"]).find(|e| e["type"] == "comment").unwrap();
    assert_eq!(
        (comment["by"].as_str(), comment["on"].as_i64(), comment["source"].as_str()),
        (Some("admin"), Some(0), Some("console"))
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A signed-in cookie and CSRF token, without a browser: the login form, then the page's meta tag.
async fn http_sign_in(c: &Console, token: &str) -> (String, String) {
    let r = c.http.post(format!("{}/ui/login", c.url)).form(&[("token", token)]).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = c.http.get(format!("{}/ui/sessions", c.url)).header("cookie", &cookie).send().await.unwrap();
    let html = page.text().await.unwrap();
    let csrf = html.split("name=\"csrf-token\" content=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    (cookie, csrf)
}

#[tokio::test]
async fn the_console_refuses_session_tokens_forged_requests_and_other_sites() {
    let c = Console::start().await;
    let (id, token) = c.session().await;
    let read = c.held_decision(&id, &token, "Read", json!({"file_path": "README.md"}));
    assert_eq!(read.await.unwrap()["verdict"], "allow");
    // A session token never signs in.
    let r = c.http.post(format!("{}/ui/login", c.url)).form(&[("token", token.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("A session token cannot sign in"));
    // Nor does a made-up one; nor is a made-up cookie believed.
    let r = c.http.post(format!("{}/ui/login", c.url)).form(&[("token", "guess")]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .http
        .get(format!("{}/ui/audit", c.url))
        .header("cookie", "paddock_console=YWRtaW4.AAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (cookie, csrf) = http_sign_in(&c, ADMIN).await;
    // Every page carries the headers that keep agent text inert and share tokens private.
    let r = c.http.get(format!("{}/ui/sessions/{id}", c.url)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(r.headers()["referrer-policy"], "same-origin");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let set = c.http.post(format!("{}/ui/login", c.url)).form(&[("token", ADMIN)]).send().await.unwrap();
    let set = set.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    // A comment without the CSRF token, with another's, or from another site: refused, nothing stored.
    let comment = |csrf: Option<&str>, origin: Option<&str>| {
        let mut r = c
            .http
            .post(format!("{}/ui/sessions/{id}/comments", c.url))
            .header("cookie", &cookie)
            .json(&json!({"text": "forged"}));
        if let Some(t) = csrf {
            r = r.header("x-csrf-token", t);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    assert_eq!(comment(None, None).await.unwrap().status(), 403);
    assert_eq!(comment(Some("not-the-token"), None).await.unwrap().status(), 403);
    assert_eq!(comment(Some(&csrf), Some("https://evil.example")).await.unwrap().status(), 403);
    let own_origin = c.url.clone();
    assert_eq!(comment(Some(&csrf), Some(&own_origin)).await.unwrap().status(), 201);
    // Bad comments are refused with the field named.
    for (body, says) in [
        (json!({"text": "  "}), "text: a comment needs some text"),
        (json!({"text": "x", "on": 99}), "on: the transcript has no event 99"),
        (json!({"text": "x", "extra": 1}), "unknown field `extra`"),
    ] {
        let r = c
            .http
            .post(format!("{}/ui/sessions/{id}/comments", c.url))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{body}");
        assert!(r.text().await.unwrap().contains(says), "{says}");
    }
    let events: Vec<Value> = c.admin_get(&format!("/v1/sessions/{id}/events")).await;
    assert_eq!(events.iter().filter(|e| e["event"]["type"] == "comment").count(), 1, "only the good comment");
    // A comment on a comment is refused: comments are about transcript events.
    let events: Vec<Value> = c.admin_get(&format!("/v1/sessions/{id}/events")).await;
    let comment_seq = events.iter().find(|e| e["event"]["type"] == "comment").unwrap()["seq"].as_i64().unwrap();
    let r = c
        .http
        .post(format!("{}/ui/sessions/{id}/comments", c.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"text": "x", "on": comment_seq}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("is a comment"));
    // Every other state change wants the CSRF token and the console's own origin too; nothing happens without.
    let held = c.held_decision(&id, &token, "deploy", json!({}));
    let ask = c.wait_for_ask(&id).await;
    let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("/ui/approvals/{ask}/decide"), vec![("decision", "approve")]),
        (format!("/ui/sessions/{id}/shares"), vec![("hours", "1")]),
        ("/ui/logout".to_owned(), vec![]),
    ];
    for (path, fields) in &forms {
        for (with_token, origin) in [(false, None), (true, Some("https://evil.example")), (true, Some("null"))] {
            let mut form = fields.clone();
            if with_token {
                form.push(("csrf", csrf.as_str()));
            }
            let mut r = c.http.post(format!("{}{path}", c.url)).header("cookie", &cookie).form(&form);
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            assert_eq!(r.send().await.unwrap().status(), 403, "{path} token={with_token} origin={origin:?}");
        }
    }
    assert!(c.pending().await.iter().any(|a| a["id"] == ask.as_str()), "no forged decision");
    assert!(
        c.gw.store.shares_where(paddock_gateway::store::ShareKey::Session, &id).await.unwrap().is_empty(),
        "no forged share link"
    );
    assert!(!held.is_finished());
    // Revoking wants them too: a link made properly is not revoked by a forged request.
    let r = c
        .http
        .post(format!("{}/ui/sessions/{id}/shares", c.url))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("hours", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let share = c.gw.store.shares_where(paddock_gateway::store::ShareKey::Session, &id).await.unwrap().remove(0);
    let r =
        c.http.post(format!("{}/ui/shares/{}/revoke", c.url, share.id)).header("cookie", &cookie).form(&[("x", "y")]);
    assert_eq!(r.send().await.unwrap().status(), 403);
    assert!(
        c.gw.store.shares_where(paddock_gateway::store::ShareKey::Session, &id).await.unwrap()[0].revoked_at.is_none()
    );
    // A link past its time does not open.
    let expired_token = "ab".repeat(24);
    let expired = paddock_gateway::store::ShareRow {
        id: "sh-expired".into(),
        session: id.clone(),
        token_hash: paddock_gateway::gateway::hash_token(&expired_token),
        created_by: "admin".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        expires_at: paddock_gateway::gateway::unix_now() - 1,
        revoked_by: None,
        revoked_at: None,
        authority: r#"{"kind":"admin"}"#.into(),
    };
    c.gw.store.commit(vec![paddock_gateway::store::Write::ShareNew(expired)]).await.unwrap();
    assert_eq!(c.http.get(format!("{}/ui/shared/{expired_token}", c.url)).send().await.unwrap().status(), 404);
    // Nor does a guess, another spelling of a token, or a path in its place.
    for guess in
        ["cd".repeat(24), "AB".repeat(24), "zz".repeat(24), format!("{expired_token}0"), "..%2F..%2Fv1%2Faudit".into()]
    {
        let r = c.http.get(format!("{}/ui/shared/{guess}", c.url)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{guess}");
    }
    // A runner cannot post a comment in a person's name.
    let r = c
        .http
        .post(format!("{}/v1/sessions/{id}/events", c.api))
        .bearer_auth(&token)
        .json(&json!([{"type": "comment", "by": "admin", "text": "approved, trust me"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // Sign-in goes only back to the console.
    let r = c
        .http
        .post(format!("{}/ui/login", c.url))
        .form(&[("token", ADMIN), ("next", "//evil.example/ui/x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/ui/sessions");
    // The audit export is the filtered log as JSON lines.
    let r =
        c.http.get(format!("{}/ui/audit.jsonl?session={id}", c.url)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    assert!(
        text.lines().count() >= 1
            && text.lines().all(|l| serde_json::from_str::<Value>(l).unwrap()["session"] == id.as_str())
    );
    let none = c.http.get(format!("{}/ui/audit.jsonl?session={id}&verdict=nothing", c.url)).header("cookie", &cookie);
    assert_eq!(none.send().await.unwrap().text().await.unwrap(), "");
    // Each filter keeps what it names: agent, policy, phase, verdict, and time (a prefix takes a whole day).
    let export = |query: String| {
        let (http, cookie, url) = (c.http.clone(), cookie.clone(), c.url.clone());
        async move {
            let text = http.get(format!("{url}/ui/audit.jsonl?{query}")).header("cookie", cookie).send().await.unwrap();
            text.text().await.unwrap().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect::<Vec<_>>()
        }
    };
    let asks = export("policy=deploys-need-a-human&verdict=ask".into()).await;
    assert!(!asks.is_empty() && asks.iter().all(|r| r["policy"] == "deploys-need-a-human" && r["verdict"] == "ask"));
    let shares = export("phase=share".into()).await;
    assert!(!shares.is_empty() && shares.iter().all(|r| r["phase"] == "share"));
    assert!(export("agent=nobody".into()).await.is_empty());
    assert_eq!(export("agent=coder".into()).await.len(), export(String::new()).await.len());
    let today = asks[0]["ts"].as_str().unwrap()[..10].to_owned();
    assert_eq!(export(format!("since={today}&until={today}")).await.len(), export(String::new()).await.len());
    assert!(export("since=2999-01-01".into()).await.is_empty());
    assert!(export("until=2000-01-01".into()).await.is_empty());
    // The sessions page's search and phase filter.
    let (other, _) = c.session().await;
    let r = c
        .http
        .post(format!("{}/v1/sessions/{other}/end", c.api))
        .bearer_auth(ADMIN)
        .json(&json!({"phase": "Succeeded"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list = |query: &'static str| {
        let (http, cookie, url) = (c.http.clone(), cookie.clone(), c.url.clone());
        async move {
            let r = http.get(format!("{url}/ui/sessions?{query}")).header("cookie", cookie).send().await.unwrap();
            r.text().await.unwrap()
        }
    };
    let succeeded = list("phase=Succeeded").await;
    assert!(succeeded.contains(&other) && !succeeded.contains(&id));
    let running = list("phase=Running&fragment=rows").await;
    assert!(running.contains(&id) && !running.contains(&other) && !running.contains("<html"));
    let searched = list("q=nobody-like-this").await;
    assert!(!searched.contains(&id) && searched.contains("No sessions match."));
    assert!(list("q=CODER").await.contains(&id), "search ignores case");
    let _ = &c.gw;
}

/// A second console of `c`'s gateway, admin only, served on loopback (`secure`: as over TLS); its URL.
async fn another_console(c: &Console, secure: bool) -> (Arc<ConsoleState>, String) {
    let cfg = ConsoleConfig { listen: "127.0.0.1:0".into(), users: vec![], sign_in_hours: 1, kubernetes: false };
    let console = ConsoleState::new(c.gw.clone(), &cfg, ADMIN, secure, None).unwrap();
    (console.clone(), serve(console).await)
}

/// Serves a console on a loopback port (plain HTTP); its URL.
async fn serve(console: Arc<ConsoleState>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(paddock_gateway::console::serve_on(l, console, None, std::future::pending()));
    url
}

#[tokio::test]
async fn a_one_time_link_signs_in_once() {
    let c = Console::start().await;
    let (console, url) = another_console(&c, false).await;
    let link = console.login_link();
    let r = c.http.get(format!("{url}{link}")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["set-cookie"].to_str().unwrap().starts_with("paddock_console="));
    let again = c.http.get(format!("{url}{link}")).send().await.unwrap();
    assert_eq!(again.status(), 401);
    assert!(again.headers().get("set-cookie").is_none());
}

/// What the mocked API server saw: (client, method, path, body); client `gateway` or `user:<token>`.
type Seen = Arc<std::sync::Mutex<Vec<(String, String, String, Value)>>>;

/// A mocked API server (kube's `tower-test`) answering for `client`: TokenReview (`k8s-alice` is
/// alice@example.com, and a few other tokens below; anything else is not authenticated), SubjectAccessReview
/// (alice, with her group, may get and list team-a's Sessions only, and create Approvals there), the Sessions
/// of team-a (one, whose uid is `uid`), and Approvals created.
fn api_server(client: &str, uid: String, seen: Seen) -> kube::Client {
    api_server_with(client, uid, seen, Default::default())
}

/// [`api_server`] whose RBAC answers turn to "denied" once `revoked` is set (alice's RoleBinding removed).
fn api_server_with(client: &str, uid: String, seen: Seen, revoked: Arc<std::sync::atomic::AtomicBool>) -> kube::Client {
    let (service, mut handle) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
    let who = client.to_owned();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let path = parts.uri.path().to_owned();
            seen.lock().unwrap().push((who.clone(), parts.method.to_string(), path.clone(), body.clone()));
            let answer = match path.as_str() {
                "/apis/authentication.k8s.io/v1/tokenreviews" => {
                    let user = match body["spec"]["token"].as_str().unwrap_or("") {
                        "k8s-alice" => json!({"username": "alice@example.com", "uid": "u-1",
                            "groups": ["team-a-devs", "system:authenticated"]}),
                        // The same person through a token scoped down: no groups.
                        "k8s-alice-scoped" => json!({"username": "alice@example.com", "uid": "u-1", "groups": []}),
                        "k8s-admin" => json!({"username": "admin", "groups": ["team-a-devs"]}),
                        "k8s-bob" => json!({"username": "bob", "groups": ["team-a-devs"]}),
                        "k8s-newline" => json!({"username": "admin\n99999999999\nx\nadmin", "groups": ["team-a-devs"]}),
                        _ => Value::Null,
                    };
                    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {},
                        "status": if user.is_null() { json!({"authenticated": false}) }
                            else { json!({"authenticated": true, "user": user}) }})
                }
                "/apis/authorization.k8s.io/v1/subjectaccessreviews" => {
                    let a = &body["spec"]["resourceAttributes"];
                    let allowed = !revoked.load(std::sync::atomic::Ordering::SeqCst)
                        && body["spec"]["user"] == "alice@example.com"
                        && body["spec"]["groups"][0] == "team-a-devs"
                        && a["group"] == "paddock.dev"
                        && a["namespace"] == "team-a"
                        && (((a["verb"] == "get" || a["verb"] == "list") && a["resource"] == "sessions")
                            || (a["verb"] == "create" && a["resource"] == "approvals"));
                    json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {},
                        "status": {"allowed": allowed}})
                }
                "/apis/paddock.dev/v1alpha1/namespaces/team-a/sessions" => json!({
                    "apiVersion": "paddock.dev/v1alpha1", "kind": "SessionList", "metadata": {},
                    "items": [{"apiVersion": "paddock.dev/v1alpha1", "kind": "Session",
                        "metadata": {"name": "fix-login", "namespace": "team-a", "uid": uid},
                        "spec": {"agentRef": {"name": "coder"}, "prompt": "p", "owner": "alice@example.com"}}]}),
                "/apis/paddock.dev/v1alpha1/namespaces/team-a/approvals" => {
                    let mut created = body.clone();
                    created["metadata"]["name"] = json!("console-x7k2p");
                    created["metadata"]["namespace"] = json!("team-a");
                    created
                }
                other => panic!("the console asked the API server for {other}"),
            };
            let response = http::Response::builder()
                .status(if parts.method == http::Method::POST { 201 } else { 200 })
                .header("content-type", "application/json")
                .body(kube::client::Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    kube::Client::new(service, "default")
}

#[tokio::test]
async fn in_kubernetes_people_see_and_decide_what_their_rbac_allows_as_themselves() {
    let seen: Seen = Default::default();
    // The mocked API server knows team-a's Session by the uid the gateway has for it, set once it exists.
    let uid_cell: Arc<std::sync::Mutex<String>> = Default::default();
    let uid_for_user = uid_cell.clone();
    let gateway_client = api_server("gateway", String::new(), seen.clone());
    let seen_user = seen.clone();
    let as_user = Box::new(move |token: &str| {
        let uid = uid_for_user.lock().unwrap().clone();
        Ok(api_server(&format!("user:{token}"), uid, seen_user.clone()))
    });
    let c = Console::start_with(Some(KubeAuth::new(gateway_client, as_user))).await;
    let mut ids = Vec::new();
    for ns in ["team-a", "team-b", "default"] {
        let r = c
            .http
            .post(format!("{}/v1/sessions", c.api))
            .bearer_auth(ADMIN)
            .json(&json!({"namespace": ns, "agent": "coder", "owner": "alice@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let v: Value = r.json().await.unwrap();
        ids.push((v["id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned()));
    }
    *uid_cell.lock().unwrap() = ids[0].0.clone();
    let (a, a_token) = &ids[0];
    let (b, b_token) = &ids[1];
    let held_a = c.held_decision(a, a_token, "deploy", json!({}));
    let ask_a = c.wait_for_ask(a).await;
    assert_eq!(c.held_decision(b, b_token, "Read", json!({})).await.unwrap()["verdict"], "allow");
    // A token the API server does not know signs nobody in.
    let r = c.http.post(format!("{}/ui/login", c.url)).form(&[("token", "k8s-mallory")]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A gateway session token is refused before the API server is asked about it.
    let reviews_before = seen.lock().unwrap().len();
    let r = c.http.post(format!("{}/ui/login", c.url)).form(&[("token", a_token.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(seen.lock().unwrap().len(), reviews_before, "a session token never goes to the API server");
    // Nor does the token of a session that has ended.
    let (ended, ended_token) = &ids[1];
    let r = c
        .http
        .post(format!("{}/v1/sessions/{ended}/end", c.api))
        .bearer_auth(ADMIN)
        .json(&json!({"phase": "Succeeded"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reviews_before = seen.lock().unwrap().len();
    let r = c.http.post(format!("{}/ui/login", c.url)).form(&[("token", ended_token.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(seen.lock().unwrap().len(), reviews_before, "an ended session's token never goes to the API server");
    let (cookie, csrf) = http_sign_in(&c, "k8s-alice").await;
    // The cookie does not carry the token in the clear.
    assert!(
        !cookie.contains("k8s-alice") && !String::from_utf8_lossy(&base64_decode_part(&cookie)).contains("k8s-alice")
    );
    let page = |path: String| {
        let (http, cookie) = (c.http.clone(), cookie.clone());
        async move { http.get(path).header("cookie", cookie).send().await.unwrap() }
    };
    let list = page(format!("{}/ui/sessions", c.url)).await.text().await.unwrap();
    assert!(list.contains("alice@example.com") && list.contains("Kubernetes RBAC"));
    assert!(list.contains(a.as_str()) && !list.contains(b.as_str()), "team-a's session only");
    assert_eq!(page(format!("{}/ui/sessions/{b}", c.url)).await.status(), 404, "team-b's is not there for alice");
    let audit = page(format!("{}/ui/audit.jsonl", c.url)).await.text().await.unwrap();
    assert!(audit.lines().all(|l| l.contains(a.as_str())) && !audit.contains(b.as_str()), "{audit}");
    let approvals = page(format!("{}/ui/approvals", c.url)).await.text().await.unwrap();
    assert!(approvals.contains(&ask_a) && approvals.contains("button class=\"approve\""));
    // Deciding creates an Approval with alice's own token, naming her; the gateway itself decides nothing.
    let r = c
        .http
        .post(format!("{}/ui/approvals/{ask_a}/decide", c.url))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("decision", "approve"), ("reason", "looks right"), ("back", "/ui/approvals")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let created: Vec<_> =
        seen.lock().unwrap().iter().filter(|(_, m, p, _)| m == "POST" && p.ends_with("/approvals")).cloned().collect();
    assert_eq!(created.len(), 1);
    let (client, _, path, body) = &created[0];
    assert_eq!(client, "user:k8s-alice", "created with the person's token, not the gateway's");
    assert_eq!(path, "/apis/paddock.dev/v1alpha1/namespaces/team-a/approvals");
    assert_eq!(body["metadata"]["annotations"]["paddock.dev/decided-by"], "alice@example.com");
    assert_eq!(
        body["spec"],
        json!({"sessionRef": {"name": "fix-login"}, "requestId": ask_a, "decision": "Approve", "reason": "looks right"})
    );
    assert!(c.pending().await.iter().any(|p| p["id"] == ask_a.as_str()), "pending until the controller relays it");
    assert!(!held_a.is_finished());
    // Once decided (here by the admin's API, as the controller relays), deciding again is refused with who did.
    let r = c.http.post(format!("{}/v1/approvals/{ask_a}/approve", c.api)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .http
        .post(format!("{}/ui/approvals/{ask_a}/decide", c.url))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("decision", "deny")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("already approved by admin"));
    let made = seen.lock().unwrap().iter().filter(|(_, m, p, _)| m == "POST" && p.ends_with("/approvals")).count();
    assert_eq!(made, 1, "no second Approval");
    // The gateway's own identity only reviewed.
    let gateway_calls: Vec<_> =
        seen.lock().unwrap().iter().filter(|(w, ..)| w == "gateway").map(|(_, m, p, _)| format!("{m} {p}")).collect();
    assert!(
        gateway_calls.iter().all(|c| c.ends_with("/tokenreviews") || c.ends_with("/subjectaccessreviews")),
        "{gateway_calls:?}"
    );
    // An ask of a namespace alice may not see cannot be decided by her, even by hand: it is not there.
    let (d, d_token) = &ids[2];
    let _held_d = c.held_decision(d, d_token, "deploy", json!({}));
    let ask_d = c.wait_for_ask(d).await;
    let r = c
        .http
        .post(format!("{}/ui/approvals/{ask_d}/decide", c.url))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(c.pending().await.iter().any(|p| p["id"] == ask_d.as_str()));
    let approvals = page(format!("{}/ui/approvals", c.url)).await.text().await.unwrap();
    assert!(!approvals.contains(&ask_d));
    let _ = &c.gw;
}

/// The payload part of a console cookie (`name=<payload>.<tag>`), decoded.
fn base64_decode_part(cookie: &str) -> Vec<u8> {
    use base64::Engine;
    let value = cookie.split_once('=').unwrap().1;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value.split('.').next().unwrap()).unwrap()
}

#[tokio::test]
async fn in_kubernetes_names_are_checked_and_lost_rights_end_streams_and_links() {
    let seen: Seen = Default::default();
    let revoked: Arc<std::sync::atomic::AtomicBool> = Default::default();
    let gateway_client = api_server_with("gateway", String::new(), seen.clone(), revoked.clone());
    let as_user: paddock_gateway::console::kube_auth::UserClient = Box::new(|_: &str| Err("not used".into()));
    // Answers kept 300 ms instead of 30 s, so that a lost right shows within the test.
    let kube = KubeAuth::new(gateway_client, as_user).with_ttl(Duration::from_millis(300));
    let c = Console::start_with(Some(kube)).await;
    let r = c
        .http
        .post(format!("{}/v1/sessions", c.api))
        .bearer_auth(ADMIN)
        .json(&json!({"namespace": "team-a", "agent": "coder", "owner": "alice@example.com"}))
        .send()
        .await
        .unwrap();
    let a = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    // A name that would spill into the cookie's other fields, or that is the admin's or a configured user's,
    // does not sign in.
    for (token, says) in [
        ("k8s-newline", "cannot be shown safely"),
        ("k8s-admin", "also a console user's"),
        ("k8s-bob", "also a console user's"),
    ] {
        let r = c.http.post(format!("{}/ui/login", c.url)).form(&[("token", token)]).send().await.unwrap();
        assert_eq!(r.status(), 403, "{token}");
        assert!(r.headers().get("set-cookie").is_none());
        assert!(r.text().await.unwrap().contains(says), "{token}");
    }
    // The same name with fewer groups gets its own answer: the scoped token sees nothing of team-a.
    let (cookie, csrf) = http_sign_in(&c, "k8s-alice").await;
    let list = c.http.get(format!("{}/ui/sessions", c.url)).header("cookie", &cookie).send().await.unwrap();
    assert!(list.text().await.unwrap().contains(&a));
    let (scoped, _) = http_sign_in(&c, "k8s-alice-scoped").await;
    let list = c.http.get(format!("{}/ui/sessions", c.url)).header("cookie", &scoped).send().await.unwrap();
    assert!(!list.text().await.unwrap().contains(&a), "a scoped token does not inherit the full token's rights");
    // alice shares the session and opens its transcript; the guest opens the link's.
    let r = c
        .http
        .post(format!("{}/ui/sessions/{a}/shares", c.url))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("hours", "24")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let html = r.text().await.unwrap();
    let link =
        html.split("id=\"share-url\" type=\"text\" readonly value=\"").nth(1).unwrap().split('"').next().unwrap();
    let token = link.rsplit('/').next().unwrap().to_owned();
    let shared = c.http.get(format!("{}/ui/shared/{token}", c.url)).send().await.unwrap();
    assert_eq!(shared.status(), 200);
    let own = c.http.get(format!("{}/ui/sessions/{a}/events", c.url)).header("cookie", &cookie).send().await.unwrap();
    let guest = c.http.get(format!("{}/ui/shared/{token}/events", c.url)).send().await.unwrap();
    assert_eq!((own.status().as_u16(), guest.status().as_u16()), (200, 200));
    // alice's RoleBinding goes: her open stream ends, and so does the link she made (page and stream).
    revoked.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(tokio::time::timeout(Duration::from_secs(10), own.bytes()).await.is_ok(), "her stream ended");
    assert!(tokio::time::timeout(Duration::from_secs(10), guest.bytes()).await.is_ok(), "the link's stream ended");
    let shared = c.http.get(format!("{}/ui/shared/{token}", c.url)).send().await.unwrap();
    assert_eq!(shared.status(), 404, "a link lives no longer than its creator's right to see");
    // Guessing is bounded: after 100 failed sign-ins in 10 s the console stops asking the API server.
    let reviews = |seen: &Seen| seen.lock().unwrap().iter().filter(|(_, _, p, _)| p.ends_with("/tokenreviews")).count();
    let mut last = 0;
    for i in 0..101 {
        let r =
            c.http.post(format!("{}/ui/login", c.url)).form(&[("token", format!("guess-{i}"))]).send().await.unwrap();
        last = r.status().as_u16();
    }
    assert_eq!(last, 429);
    let before = reviews(&seen);
    let r = c.http.post(format!("{}/ui/login", c.url)).form(&[("token", "guess-again")]).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(reviews(&seen), before, "no TokenReview while limited");
    // The admin token is checked locally and still signs in.
    let r = c.http.post(format!("{}/ui/login", c.url)).form(&[("token", ADMIN)]).send().await.unwrap();
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn over_tls_the_cookie_is_host_only_and_secure() {
    let c = Console::start().await;
    let (_console, url) = another_console(&c, true).await;
    let r = c.http.post(format!("{url}/ui/login")).form(&[("token", ADMIN)]).send().await.unwrap();
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.starts_with("__Host-paddock_console=") && set.contains("; Secure") && set.contains("Path=/"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = c.http.get(format!("{url}/ui/sessions")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    // The plain name is not read over TLS: a cookie another host could set is not a sign-in.
    let plain = cookie.replacen("__Host-", "", 1);
    let page = c.http.get(format!("{url}/ui/sessions")).header("cookie", &plain).send().await.unwrap();
    assert_eq!(page.status(), 401);
}

#[tokio::test]
async fn on_replicas_a_sign_in_a_comment_and_a_share_link_work_on_every_replica() {
    let c = Console::start().await;
    let Some(other) = c.replica().await else {
        eprintln!("skipped: replicas share PostgreSQL (PADDOCK_TEST_POSTGRES); .ci/run runs this there");
        return;
    };
    let (id, token) = c.session().await;
    c.post_events(&id, &token, json!([{"type": "message", "role": "assistant", "text": "On replica one."}])).await;
    let (cookie, csrf) = http_sign_in(&c, APPROVER_TOKEN).await;
    // The other replica takes the same sign-in and streams the session another replica started.
    let mut stream =
        c.http.get(format!("{other}/ui/sessions/{id}/events")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let r = c
        .http
        .post(format!("{}/ui/sessions/{id}/comments", c.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"text": "Seen from replica one.", "on": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen.contains("Seen from replica one.") {
        let chunk =
            tokio::time::timeout_at(deadline, stream.chunk()).await.expect("the comment reached the other replica");
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("the stream is open")));
    }
    assert!(seen.contains("On replica one.") && seen.contains("\"by\":\"bob\""), "{seen}");
    // A link made on one replica opens on the other.
    let r = c
        .http
        .post(format!("{}/ui/sessions/{id}/shares", c.url))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("hours", "1")])
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    let link =
        html.split("id=\"share-url\" type=\"text\" readonly value=\"").nth(1).unwrap().split('"').next().unwrap();
    let token_part = link.rsplit('/').next().unwrap();
    let page = c.http.get(format!("{other}/ui/shared/{token_part}")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains(&id));
}
