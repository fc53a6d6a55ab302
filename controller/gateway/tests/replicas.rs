//! Two replicas in one process on one PostgreSQL database: how a budget hold ends. Settled, given back, or —
//! held by a replica taken for dead — charged once by another, and never again by its own replica if it was
//! only slow. (Three `paddock gateway` processes behind a balancer: `controller/cli/tests/replicas.rs`.)
//!
//! Needs `PADDOCK_TEST_POSTGRES`; without it each test says so and checks nothing.

mod support;

use std::time::Duration;

use paddock_api::Phase;
use paddock_policy::{Event, Usage};
use sqlx::Connection;
use support::TestGateway;

fn model_request() -> Event {
    Event { phase: Phase::LlmRequest, model: Some("claude-sonnet-4-5".into()), ..Event::default() }
}

/// Two replicas on the directory's database.
async fn two_replicas(dir: &std::path::Path) -> Option<(TestGateway, TestGateway, String)> {
    if std::env::var("PADDOCK_TEST_POSTGRES").is_err() {
        eprintln!("PADDOCK_TEST_POSTGRES is not set: no PostgreSQL server for replicas");
        return None;
    }
    support::write_repo(dir);
    let a = TestGateway::start(dir).await;
    let b = TestGateway::start(dir).await;
    Some((a, b, support::database(dir).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_is_seen_by_every_replica_and_given_back_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some((a, b, _)) = two_replicas(dir.path()).await else { return };
    let (id, _) = a.session("coder").await;
    let on_a = a.gw.find_session(&id).await.unwrap();
    let on_b = b.gw.find_session(&id).await.expect("B reads the session A started");

    let d = a.gw.decide_deferred(&on_a, model_request(), Duration::ZERO, 0.5).await.unwrap();
    assert!(d.ruling.allowed());
    assert_eq!(b.gw.spend_of(&on_b).await.unwrap().1, 0.5, "B counts the hold A took");
    let usage = Usage { input_tokens: 1000, output_tokens: 1000, ..Usage::default() };
    let m = a.gw.settle(&on_a, "claude-sonnet-4-5", usage, true, d.reservation.as_ref()).await.unwrap();
    drop(d.reservation);
    let (state, reserved) = b.gw.spend_of(&on_b).await.unwrap();
    assert_eq!(reserved, 0.0, "settling gave the hold back, and dropping it after gave back nothing more");
    assert!((state.usage.cost_usd - m.cost_usd.unwrap()).abs() < 1e-12, "{state:?}");

    // A request that fails before the upstream answers: its hold goes back without a charge.
    let d = b.gw.decide_deferred(&on_b, model_request(), Duration::ZERO, 0.25).await.unwrap();
    assert_eq!(a.gw.spend_of(&on_a).await.unwrap().1, 0.25);
    drop(d);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while a.gw.spend_of(&on_a).await.unwrap().1 != 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "the dropped hold was never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.session_info(&id).await["charges"].as_array().unwrap().len(), 1, "no charge for the failed one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_of_a_replica_taken_for_dead_is_charged_once_and_never_again() {
    let dir = tempfile::tempdir().unwrap();
    let Some((a, b, url)) = two_replicas(dir.path()).await else { return };
    let (id, _) = a.session("coder").await;
    let on_a = a.gw.find_session(&id).await.unwrap();
    let d = a.gw.decide_deferred(&on_a, model_request(), Duration::ZERO, 0.5).await.unwrap();
    assert!(d.ruling.allowed());

    // Nothing is swept while the replica that holds it beats.
    assert!(b.gw.shared().unwrap().sweep_dead_holds().await.unwrap().is_empty());
    // The hold's replica is gone (as when it was killed: no beat for longer than the replicas wait).
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE holds SET replica = 'r-killed'").execute(&mut db).await.unwrap();

    // Every replica's loop sweeps once a second: one of them charges it, once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.session_info(&id).await["charges"].as_array().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "nobody charged the dead replica's hold");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let swept = |m: String| m.lines().any(|l| l == "paddock_gateway_dead_replica_holds_charged_total 1");
    assert!(
        swept(a.gw.metrics.encode()) ^ swept(b.gw.metrics.encode()),
        "one replica charged it:\n{}\n{}",
        a.gw.metrics.encode(),
        b.gw.metrics.encode()
    );
    assert!(b.gw.shared().unwrap().sweep_dead_holds().await.unwrap().is_empty(), "and nobody charges it again");
    // A was only slow: its answer arrives, and its settlement finds the hold charged already.
    let usage = Usage { input_tokens: 10, output_tokens: 10, ..Usage::default() };
    a.gw.settle(&on_a, "claude-sonnet-4-5", usage, true, d.reservation.as_ref()).await.unwrap();
    drop(d.reservation);

    let s = b.session_info(&id).await;
    let charges = s["charges"].as_array().unwrap();
    assert_eq!(charges.len(), 1, "charged once: {s}");
    assert_eq!(charges[0]["cost_usd"], 0.5, "{s}");
    assert_eq!(charges[0]["stream_complete"], false, "{s}");
    assert_eq!(s["usage"]["costUsd"], 0.5, "{s}");
    let on_b = b.gw.find_session(&id).await.unwrap();
    assert_eq!(b.gw.spend_of(&on_b).await.unwrap().1, 0.0, "nothing held any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_asked_on_two_replicas_at_once_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some((a, b, _)) = two_replicas(dir.path()).await else { return };
    let (id, _) = a.session("coder").await;
    let (on_a, on_b) = (a.gw.find_session(&id).await.unwrap(), b.gw.find_session(&id).await.unwrap());
    for n in 0..10 {
        let call = Event {
            phase: Phase::ToolCall,
            tool: Some("Bash".into()),
            args: serde_json::json!({"command": format!("ls {n}")}),
            tool_id: Some(format!("toolu_{n}")),
            ..Event::default()
        };
        let (ra, rb) = tokio::join!(
            a.gw.decide(&on_a, call.clone(), Duration::ZERO),
            b.gw.decide(&on_b, call.clone(), Duration::ZERO)
        );
        assert_eq!(ra.unwrap(), rb.unwrap(), "the same answer on both replicas");
    }
    assert_eq!(a.gw.spend_of(&on_a).await.unwrap().0.tool_calls, 10, "each call counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_agent_cannot_start_under_a_parent_another_replica_ended() {
    let dir = tempfile::tempdir().unwrap();
    let Some((a, b, _)) = two_replicas(dir.path()).await else { return };
    let (id, _) = a.session("coder").await;
    let parent = a.gw.find_session(&id).await.unwrap();
    // B ends it; A read the parent a moment ago and has not read it again.
    b.gw.end_session(&id, "Succeeded", "done").await.unwrap();
    assert!(parent.ended().is_none(), "A's copy is not read again within half a second");
    let child = paddock_gateway::gateway::NewSession {
        agent: "coder".into(),
        owner: "alice".into(),
        parent: Some(id.clone()),
        ..Default::default()
    };
    let refused = a.gw.create_session(child).await.unwrap_err().to_string();
    assert!(refused.contains("has ended"), "{refused}");
}

/// A team's cap on live sub-agents holds across replicas: two replicas starting the last place at the same
/// moment never both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_starting_the_last_sub_agent_at_once_never_both_start_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("repo/agents")).unwrap();
    std::fs::write(
        dir.path().join("repo/agents/lead.yaml"),
        "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata: {name: lead}\nspec:\n  harness: custom\n  \
         model: claude-sonnet-4-5\n  subAgents: [coder]\n  team: {maxParallel: 1}\n",
    )
    .unwrap();
    let Some((a, b, _)) = two_replicas(dir.path()).await else { return };
    let (id, _) = a.session("lead").await;
    for round in 0..6 {
        let (pa, pb) = (a.gw.find_session(&id).await.unwrap(), b.gw.find_session(&id).await.unwrap());
        let (ra, rb) = tokio::join!(a.gw.create_child(&pa, "coder"), b.gw.create_child(&pb, "coder"));
        let started: Vec<_> = [ra, rb].into_iter().filter_map(Result::ok).collect();
        assert!(started.len() <= 1, "round {round}: both replicas started one");
        let live: Vec<_> =
            a.gw.all_sessions()
                .await
                .unwrap()
                .into_iter()
                .filter(|s| s.parent.as_deref() == Some(id.as_str()) && s.ended().is_none())
                .collect();
        assert!(live.len() <= 1, "round {round}: {} live", live.len());
        for s in live {
            a.gw.end_session(&s.id, "Succeeded", "done").await.unwrap();
        }
    }
}
