//! Gateway replicas sharing one PostgreSQL: three `paddock gateway` processes behind a round-robin TCP
//! balancer, so that the requests of one session land on different replicas. Any replica serves any
//! session; a session's hard limit and an owner's daily limit hold across them; ending a session refuses
//! its token everywhere within a second; a policy push reaches every replica; and a replica killed in the
//! middle of a stream loses nothing billed. The same scenarios (but the kill) run on one gateway on SQLite.
//!
//! The PostgreSQL test needs a server: `PADDOCK_TEST_POSTGRES` (e.g. from `.ci/postgres.sh`, as the CI runs
//! it); without one it says so and checks nothing.

mod fleet;

use std::time::{Duration, Instant};

use fleet::*;
use serde_json::{Value, json};

struct Fleet {
    upstream: Upstream,
    replicas: Vec<Replica>,
    balancer: Balancer,
    _dir: tempfile::TempDir,
}

impl Fleet {
    /// `n` replicas on `database`, or one gateway on its own SQLite file.
    async fn start(n: usize, database: Option<String>) -> Fleet {
        Fleet::start_with(n, database, false).await
    }

    /// [`Fleet::start`], each replica pinned to one core with `one_core`.
    async fn start_with(n: usize, database: Option<String>, one_core: bool) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        write_repo(&repo);
        let upstream = Upstream::start().await;
        let mut replicas = Vec::new();
        for i in 0..n {
            let home = dir.path().join(format!("replica-{i}"));
            let db = database.clone().unwrap_or_else(|| format!("sqlite://{}", home.join("gateway.db").display()));
            replicas.push(Replica::start_with(&home, &db, &repo, &upstream.url, one_core).await);
        }
        let balancer = Balancer::start(replicas.iter().map(|r| r.addr).collect()).await;
        Fleet { upstream, replicas, balancer, _dir: dir }
    }

    fn url(&self) -> &str {
        &self.balancer.url
    }
}

async fn create(url: &str, agent: &str, owner: &str) -> (String, String) {
    let r = client()
        .post(format!("{url}/v1/sessions"))
        .bearer_auth(ADMIN)
        .json(&json!({"agent": agent, "owner": owner}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    (v["id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned())
}

async fn ask_model(url: &str, token: &str, text: impl Into<String>, stream: bool) -> reqwest::Response {
    client()
        .post(format!("{url}/llm/anthropic/v1/messages"))
        .bearer_auth(token)
        .json(&json!({"model": MODEL, "max_tokens": MAX_TOKENS, "stream": stream,
                      "messages": [{"role": "user", "content": text.into()}]}))
        .send()
        .await
        .unwrap()
}

async fn session(url: &str, id: &str) -> Value {
    let r = client().get(format!("{url}/v1/sessions/{id}")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET session {id} through {url}");
    r.json().await.unwrap()
}

fn cost(s: &Value) -> f64 {
    s["usage"]["costUsd"].as_f64().unwrap()
}

/// A session started through one replica is served by every replica, and every replica sees the same spend.
async fn every_replica_serves_every_session(f: &Fleet) {
    let (id, token) = create(f.url(), "plain", "alice").await;
    for (i, r) in f.replicas.iter().enumerate() {
        let answer = ask_model(&r.url, &token, &format!("hello from the test, replica {i}"), false).await;
        assert_eq!(answer.status(), 200, "replica {i}: {}", answer.text().await.unwrap());
    }
    let expected = f.replicas.len() as f64 * request_cost();
    for (i, r) in f.replicas.iter().enumerate() {
        let s = session(&r.url, &id).await;
        assert!((cost(&s) - expected).abs() < 1e-9, "replica {i} sees {} spent, not {expected}", cost(&s));
        assert_eq!(s["charges"].as_array().unwrap().len(), f.replicas.len(), "replica {i}: {s}");
    }
}

/// A harness hook asking on every replica about a tool call decided on one gets the same answer, and the
/// call is counted once.
async fn a_tool_call_is_decided_once_across_replicas(f: &Fleet) {
    let (id, token) = create(f.url(), "plain", "grace").await;
    let call = json!({"phase": "tool_call", "tool": "Bash", "args": {"command": "ls -la"}, "tool_id": "toolu_once"});
    let mut answers = Vec::new();
    for r in &f.replicas {
        let answer: Value = client()
            .post(format!("{}/v1/sessions/{id}/decide", r.url))
            .bearer_auth(&token)
            .json(&call)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["verdict"], "allow", "{answer}");
        answers.push(answer);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "the same answer everywhere: {answers:?}");
    let s = session(f.url(), &id).await;
    assert_eq!(s["toolCalls"], 1, "counted once: {s}");
}

/// 20 requests of one session at once, spread over the replicas, pass its hard limit by at most one hold.
async fn concurrent_requests_hold_the_session_limit(f: &Fleet) {
    let (id, token) = create(f.url(), "capped", "bob").await;
    let answers = futures_util::future::join_all(
        (0..20).map(|i| ask_model(f.url(), &token, format!("request {i} of twenty at once"), false)),
    )
    .await;
    let allowed = answers.iter().filter(|a| a.status() == 200).count();
    let denied = answers.iter().filter(|a| a.status() == 403).count();
    assert_eq!(allowed + denied, 20, "every request is answered or refused by the policy");
    let s = session(f.url(), &id).await;
    let spent = cost(&s);
    assert!(allowed >= 1 && denied >= 1, "allowed {allowed}, denied {denied}");
    assert_eq!(s["charges"].as_array().unwrap().len(), allowed, "every allowed request is charged: {s}");
    assert!(
        spent <= SESSION_LIMIT + hold_bound(),
        "spent ${spent:.4} with a limit of ${SESSION_LIMIT} and one hold of at most ${:.4} ({allowed} allowed)",
        hold_bound()
    );
}

/// The owner's daily limit holds across two sessions and every replica.
async fn concurrent_requests_hold_the_daily_limit(f: &Fleet) {
    let owner = format!("dana-{}", f.replicas.len());
    let (a, ta) = create(f.url(), "daily", &owner).await;
    let (b, tb) = create(f.url(), "daily", &owner).await;
    let answers = futures_util::future::join_all((0..20).map(|i| {
        let token = if i % 2 == 0 { &ta } else { &tb };
        ask_model(f.url(), token, format!("daily request {i}"), false)
    }))
    .await;
    let allowed = answers.iter().filter(|a| a.status() == 200).count();
    assert!(answers.iter().all(|a| a.status() == 200 || a.status() == 403));
    let spent = cost(&session(f.url(), &a).await) + cost(&session(f.url(), &b).await);
    assert!((1..20).contains(&allowed), "allowed {allowed}");
    assert!(
        spent <= DAILY_LIMIT + hold_bound(),
        "the owner spent ${spent:.4} today with a daily limit of ${DAILY_LIMIT} ({allowed} allowed)"
    );
}

/// Ending a session through one replica refuses its token on every replica within a second.
async fn ending_revokes_everywhere(f: &Fleet) {
    let (id, token) = create(f.url(), "plain", "carol").await;
    for r in &f.replicas {
        // Every replica has seen the session (and keeps what it read of it).
        let seen = client().get(format!("{}/v1/sessions/{id}", r.url)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(seen.status(), 200);
    }
    let ended = client()
        .post(format!("{}/v1/sessions/{id}/end", f.url()))
        .bearer_auth(ADMIN)
        .json(&json!({"phase": "Succeeded", "reason": "done"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    let at = Instant::now();
    for (i, r) in f.replicas.iter().enumerate() {
        // A read with the token: answered from what the replica keeps of the session until it reads it again.
        loop {
            let read = client().get(format!("{}/v1/sessions/{id}", r.url)).bearer_auth(&token).send().await.unwrap();
            if read.status() == 401 {
                break;
            }
            assert_eq!(read.status(), 200);
            assert!(
                at.elapsed() < Duration::from_secs(1),
                "replica {i} still takes the token after {:?}",
                at.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A model request is decided under the session's row lock: refused at once.
        assert_eq!(ask_model(&r.url, &token, "still there?", false).await.status(), 401, "replica {i}");
    }
    assert!(at.elapsed() < Duration::from_secs(1), "revoked everywhere after {:?}", at.elapsed());
    // The controller counts an unknown session as an error: every replica says it does not exist.
    for r in &f.replicas {
        let unknown = client()
            .post(format!("{}/v1/sessions/no-such-session/end", r.url))
            .bearer_auth(ADMIN)
            .json(&json!({"phase": "Succeeded"}))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 404);
    }
}

/// A policy push to one replica reaches every replica: each reports the revision on `/readyz` and in
/// `/metrics`, enforces it, and `GET /v1/replicas` lists them all with it.
async fn a_policy_push_reaches_every_replica(f: &Fleet) {
    let (_, token) = create(f.url(), "plain", "erin").await;
    let mail = "write to mallory@example.com about it";
    assert_eq!(ask_model(&f.replicas[0].url, &token, mail, false).await.status(), 200, "no PII rule yet");
    let revision = format!("push-{}", f.replicas.len());
    let pushed = client()
        .put(format!("{}/v1/policies", f.url()))
        .bearer_auth(ADMIN)
        .json(&push_with_pii_rule(&revision))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 200, "{}", pushed.text().await.unwrap());
    let at = Instant::now();
    for (i, r) in f.replicas.iter().enumerate() {
        while r.ready_revision().await != revision {
            assert!(at.elapsed() < Duration::from_secs(2), "replica {i} still enforces {}", r.ready_revision().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let metrics = client().get(format!("{}/metrics", r.url)).send().await.unwrap().text().await.unwrap();
        assert!(
            metrics.contains(&format!("paddock_gateway_policy_revision{{revision=\"{revision}\"}} 1")),
            "{metrics}"
        );
        let refused = ask_model(&r.url, &token, mail, false).await;
        assert_eq!(refused.status(), 403, "replica {i} enforces the pushed PII rule");
    }
    // Which replicas exist is the admin's to read, not a session's.
    let as_session = client().get(format!("{}/v1/replicas", f.url())).bearer_auth(&token).send().await.unwrap();
    assert_eq!(as_session.status(), 403);
    let listed: Value =
        client().get(format!("{}/v1/replicas", f.url())).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    let rows = listed["replicas"].as_array().unwrap();
    assert_eq!(rows.len(), f.replicas.len(), "{listed}");
    assert!(rows.iter().all(|r| r["revision"] == revision.as_str()), "{listed}");
}

/// A replica killed while it streams an answer: the next request goes through another one, and the ledger
/// holds every request the upstream served (the one cut off charged its hold).
async fn a_replica_killed_mid_stream_loses_nothing_billed(f: &mut Fleet) {
    let (id, token) = create(f.url(), "plain", "frank").await;
    let tag = "killed-mid-stream";
    let mut streamed = ask_model(&f.replicas[0].url, &token, &format!("{tag}: a long answer please"), true).await;
    assert_eq!(streamed.status(), 200);
    let first = streamed.chunk().await.unwrap().expect("the stream starts");
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    f.replicas[0].kill();
    while let Ok(Some(_)) = streamed.chunk().await {}
    let next = ask_model(f.url(), &token, &format!("{tag}: and now?"), false).await;
    assert_eq!(next.status(), 200, "served by another replica: {}", next.text().await.unwrap());
    let served = f.upstream.requests_with(tag);
    assert_eq!(served, 2);
    let at = Instant::now();
    loop {
        let s = session(f.url(), &id).await;
        let charges = s["charges"].as_array().unwrap().clone();
        if charges.len() == served {
            let cut = charges.iter().find(|c| c["streamComplete"] == false || c["stream_complete"] == false);
            let cut = cut.unwrap_or_else(|| panic!("the cut stream is charged as incomplete: {s}"));
            assert!(cut["costUsd"].as_f64().or(cut["cost_usd"].as_f64()).unwrap() >= request_cost() * 0.9, "{cut}");
            return;
        }
        assert!(charges.len() < served, "charged more than served: {s}");
        assert!(at.elapsed() < Duration::from_secs(15), "the killed replica's request is not in the ledger: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one gateway guarantees, and every replica of several.
async fn the_guarantees(f: &Fleet) {
    every_replica_serves_every_session(f).await;
    a_tool_call_is_decided_once_across_replicas(f).await;
    concurrent_requests_hold_the_session_limit(f).await;
    concurrent_requests_hold_the_daily_limit(f).await;
    ending_revokes_everywhere(f).await;
    a_policy_push_reaches_every_replica(f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_postgresql_share_sessions_limits_revocation_and_policies() {
    let Ok(server) = std::env::var("PADDOCK_TEST_POSTGRES") else {
        eprintln!("PADDOCK_TEST_POSTGRES is not set: no PostgreSQL server to run three replicas on");
        return;
    };
    let database = postgres_database(&server).await;
    let mut f = Fleet::start(3, Some(database)).await;
    the_guarantees(&f).await;
    a_replica_killed_mid_stream_loses_nothing_billed(&mut f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gateway_on_sqlite_keeps_the_same_guarantees() {
    the_guarantees(&Fleet::start(1, None).await).await;
}

/// Given one core, the gateway serves every request on one thread (its log's applier on another); the same
/// guarantees hold there, concurrent requests and streams included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_on_one_core_serves_on_one_thread_with_the_same_guarantees() {
    let f = Fleet::start_with(1, None, true).await;
    let log = f.replicas[0].log_text();
    assert!(log.contains("one core available: serving every request on one thread"), "{log}");
    the_guarantees(&f).await;
}
