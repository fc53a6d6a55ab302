//! GitSource reconcile scenarios against a fake API server (tower-test): the exact requests — server-side
//! apply patches, prune deletes, status updates, Events — for real git repositories made in the test.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use paddock_api::GitSource;
use paddock_operator::gitsource::{error_policy, reconcile};
use serde_json::{Value as Json, json};
use support::git::Upstream;
use support::*;

const AGENTS: &str = "/apis/paddock.dev/v1alpha1/namespaces/team-a/agents";
const POLICIES: &str = "/apis/paddock.dev/v1alpha1/namespaces/team-a/policies";
const STATUS: &str = "/apis/paddock.dev/v1alpha1/namespaces/team-a/gitsources/agents/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/team-a/events";

/// What the fake cluster holds and how it answers.
#[derive(Clone, Default)]
struct Cluster {
    url: String,
    agents: Vec<Json>,
    policies: Vec<Json>,
    /// resourceVersion returned by a server-side apply of each name (default "1").
    rv_after: HashMap<&'static str, &'static str>,
    /// Names whose apply the server rejects.
    reject: Option<&'static str>,
    /// Names whose delete fails its precondition (changed since the list).
    changed: Option<&'static str>,
}

fn route(c: Cluster) -> Route {
    Arc::new(move |s: &Seen| {
        let p = s.path.as_str();
        match s.method.as_str() {
            "GET" if p == AGENTS => (200, metadata_list(c.agents.clone())),
            "GET" if p == POLICIES => (200, metadata_list(c.policies.clone())),
            "PATCH" if p == STATUS => gitsource_reply(s, &c.url),
            "PATCH" if p.starts_with(AGENTS) || p.starts_with(POLICIES) => {
                let name = p.rsplit('/').next().unwrap();
                if c.reject == Some(name) {
                    return (
                        422,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422, "reason": "Invalid",
                               "message": "admission webhook denied the request: model not allowed here"}),
                    );
                }
                applied(s, c.rv_after.get(name).copied().unwrap_or("1"))
            }
            "DELETE" if c.changed.is_some_and(|n| p.ends_with(&format!("/{n}"))) => (
                409,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409, "reason": "Conflict",
                       "message": "Precondition failed: ResourceVersion in precondition: 9, ResourceVersion in object meta: 13"}),
            ),
            "DELETE" => status_ok(),
            "POST" if p == EVENTS => echo(s),
            _ => (500, json!({"kind": "Status", "code": 500, "message": format!("unexpected {}", s.line())})),
        }
    })
}

fn repo_with(files: &[(&str, &str)]) -> (Upstream, String) {
    let up = Upstream::new();
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_bytes())).collect();
    let sha = up.commit_tree("main", &files, false);
    (up, format!("main@sha1:{sha}"))
}

async fn run(
    gs: GitSource,
    cluster: Cluster,
) -> (Result<Action, paddock_operator::Error>, FakeApi, Arc<paddock_operator::Context>) {
    let cache = tempfile::tempdir().unwrap();
    let (client, api) = fake_api(route(cluster));
    let ctx = context(client, cache.path().to_path_buf());
    let out = tokio::time::timeout(Duration::from_secs(30), reconcile(Arc::new(gs), ctx.clone()))
        .await
        .expect("reconcile hangs");
    (out, api, ctx)
}

fn events(api: &FakeApi) -> Vec<(String, String, String)> {
    api.requests()
        .iter()
        .filter(|s| s.path == EVENTS)
        .map(|s| {
            (
                s.body["type"].as_str().unwrap().to_owned(),
                s.body["reason"].as_str().unwrap().to_owned(),
                s.body["note"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn status_patch(api: &FakeApi) -> Option<Json> {
    api.requests().into_iter().find(|s| s.path == STATUS).map(|s| {
        assert!(s.is_ssa(), "status is written by server-side apply as `paddock`: {s:?}");
        assert_eq!(s.body["apiVersion"], "paddock.dev/v1alpha1");
        assert_eq!(s.body["kind"], "GitSource");
        s.body["status"].clone()
    })
}

fn condition<'a>(status: &'a Json, type_: &str) -> Option<&'a Json> {
    status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == type_)
}

#[tokio::test]
async fn applies_every_object_by_server_side_apply_and_records_the_inventory() {
    let (up, rev) = repo_with(&[("agents/coder.yaml", AGENT), ("policies/baseline.yaml", POLICY)]);
    let gs = gitsource(&up.url(), Json::Null);
    let (out, api, _) = run(gs, Cluster { url: up.url(), ..Cluster::default() }).await;
    let action = out.expect("reconcile succeeds");
    assert!(
        action == Action::requeue(Duration::from_secs(60)) || format!("{action:?}").contains("requeue_after: Some"),
        "{action:?}"
    );
    assert_eq!(
        api.lines(),
        [
            format!("GET {AGENTS}"),
            format!("GET {POLICIES}"),
            format!("PATCH {AGENTS}/coder"),
            format!("PATCH {POLICIES}/baseline"),
            format!("POST {EVENTS}"),
            format!("PATCH {STATUS}"),
        ]
    );
    let reqs = api.requests();
    // Every live Agent and Policy of the namespace is listed, metadata only: what another GitSource or a
    // person holds must be seen before applying over it.
    assert!(!reqs[0].query.contains_key("labelSelector"), "{:?}", reqs[0].query);
    assert!(reqs[0].accept.as_deref().unwrap_or("").contains("PartialObjectMetadataList"), "{:?}", reqs[0].accept);
    for ssa in &reqs[2..4] {
        assert!(ssa.is_ssa(), "PATCH with fieldManager=paddock, force=true, apply-patch+yaml: {ssa:?}");
        let meta = &ssa.body["metadata"];
        assert_eq!(meta["namespace"], NS, "no namespace in git means the GitSource's");
        assert_eq!(meta["labels"]["paddock.dev/gitsource-name"], NAME);
        assert_eq!(meta["labels"]["app.kubernetes.io/managed-by"], "paddock");
        assert_eq!(meta["annotations"]["paddock.dev/revision"], rev.as_str());
    }
    assert_eq!(
        reqs[2].body["spec"],
        json!({"harness": "claude-code", "model": "claude-sonnet-4-5", "policies": ["baseline"]})
    );
    assert_eq!(reqs[2].body["metadata"]["annotations"]["paddock.dev/source-path"], "agents/coder.yaml");
    let ev = events(&api);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].0, "Normal");
    assert_eq!(ev[0].1, "Applied");
    assert_eq!(ev[0].2, format!("Applied revision {rev}: created Agent/coder, Policy/baseline"));
    let status = status_patch(&api).unwrap();
    assert_eq!(status["lastAppliedRevision"], rev.as_str());
    assert_eq!(status["lastAttemptedRevision"], rev.as_str());
    assert_eq!(
        status["inventory"],
        json!([{"kind": "Agent", "name": "coder", "namespace": NS}, {"kind": "Policy", "name": "baseline", "namespace": NS}])
    );
    assert!(status.get("errors").is_none());
    let ready = condition(&status, "Ready").unwrap();
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["observedGeneration"], 1);
    assert!(condition(&status, "Stalled").is_none() && condition(&status, "Reconciling").is_none());
}

#[tokio::test]
async fn prunes_what_left_git_unless_it_opted_out() {
    let (up, rev) = repo_with(&[("agents/coder.yaml", AGENT), ("policies/baseline.yaml", POLICY)]);
    let inventory = json!([
        {"kind": "Agent", "name": "coder", "namespace": NS},
        {"kind": "Agent", "name": "kept", "namespace": NS},
        {"kind": "Agent", "name": "old", "namespace": NS},
        {"kind": "Policy", "name": "baseline", "namespace": NS},
        {"kind": "Policy", "name": "vanished", "namespace": NS}
    ]);
    let gs = gitsource(&up.url(), json!({"lastAppliedRevision": "main@sha1:prev", "inventory": inventory}));
    let cluster = Cluster {
        url: up.url(),
        agents: vec![
            live("coder", "7", "main@sha1:prev", json!({})),
            live("kept", "8", "main@sha1:prev", json!({"paddock.dev/prune": "disabled"})),
            live("old", "9", "main@sha1:prev", json!({})),
        ],
        policies: vec![live("baseline", "10", "main@sha1:prev", json!({}))],
        rv_after: HashMap::from([("coder", "11"), ("baseline", "12")]),
        ..Cluster::default()
    };
    let (out, api, _) = run(gs, cluster).await;
    out.unwrap();
    let deletes: Vec<String> = api.requests().iter().filter(|s| s.method == "DELETE").map(Seen::line).collect();
    // `vanished` is no longer live: dropped without a request; `kept` opted out.
    assert_eq!(deletes, [format!("DELETE {AGENTS}/old")]);
    // Only as it was listed: adopted elsewhere in between, the server refuses (409) and it stays.
    let delete = api.requests().into_iter().find(|s| s.method == "DELETE").unwrap();
    assert_eq!(delete.body["preconditions"]["resourceVersion"], "9", "{}", delete.body);
    let ev = events(&api);
    let reasons: Vec<&str> = ev.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(reasons, ["Applied", "Pruned", "PruneSkipped"]);
    assert_eq!(ev[0].2, format!("Applied revision {rev}: configured Agent/coder, Policy/baseline"));
    assert_eq!(ev[1].2, format!("Pruned Agent/old (no longer in revision {rev})"));
    assert!(ev[2].2.starts_with("Left Agent/kept in place"), "{}", ev[2].2);
    let status = status_patch(&api).unwrap();
    assert_eq!(
        status["inventory"],
        json!([{"kind": "Agent", "name": "coder", "namespace": NS}, {"kind": "Policy", "name": "baseline", "namespace": NS}])
    );
}

#[tokio::test]
async fn prune_false_deletes_nothing() {
    let (up, _) = repo_with(&[("policies/baseline.yaml", POLICY)]);
    let mut gs = gitsource(&up.url(), json!({"inventory": [{"kind": "Agent", "name": "old", "namespace": NS}]}));
    gs.spec.prune = false;
    let cluster = Cluster { url: up.url(), agents: vec![live("old", "9", "r", json!({}))], ..Cluster::default() };
    let (out, api, _) = run(gs, cluster).await;
    out.unwrap();
    assert!(api.requests().iter().all(|s| s.method != "DELETE"));
    assert!(events(&api).iter().any(|e| e.1 == "PruneSkipped" && e.2.contains("spec.prune is false")));
}

#[tokio::test]
async fn a_broken_revision_is_refused_whole_and_the_last_good_one_stays() {
    let broken_agent = "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: coder\nspec:\n  harness: claude-code\n  model: claude-sonet-4-5\n  policies: [baseline]\n";
    // One good file and one broken one: nothing at all may be applied.
    let (up, rev) = repo_with(&[("agents/coder.yaml", broken_agent), ("policies/baseline.yaml", POLICY)]);
    let good_inventory = json!([{"kind": "Agent", "name": "coder", "namespace": NS}]);
    let gs = gitsource(
        &up.url(),
        json!({"lastAppliedRevision": "main@sha1:good", "lastAttemptedRevision": "main@sha1:good", "inventory": good_inventory}),
    );
    let (out, api, ctx) = run(gs, Cluster { url: up.url(), ..Cluster::default() }).await;
    out.expect("a refused revision is not a reconcile error (no backoff; the interval brings the fix)");
    assert_eq!(api.lines(), [format!("PATCH {STATUS}"), format!("POST {EVENTS}")], "no list, no apply, no delete");
    let status = status_patch(&api).unwrap();
    assert_eq!(status["lastAppliedRevision"], "main@sha1:good");
    assert_eq!(status["lastAttemptedRevision"], rev.as_str());
    assert_eq!(status["inventory"], good_inventory);
    assert_eq!(status["errors"][0]["file"], "agents/coder.yaml");
    assert_eq!(status["errors"][0]["line"], 7);
    assert_eq!(status["errors"][0]["column"], 10);
    let msg = status["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "spec.model: model `claude-sonet-4-5` is not in the model catalog; did you mean `claude-sonnet-4-5`?"
        ),
        "{msg}"
    );
    let ready = condition(&status, "Ready").unwrap();
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("ValidationFailed")));
    assert!(ready["message"].as_str().unwrap().contains("main@sha1:good stays applied"), "{ready}");
    assert_eq!(condition(&status, "Stalled").unwrap()["status"], "True");
    let ev = events(&api);
    assert_eq!((ev[0].0.as_str(), ev[0].1.as_str()), ("Warning", "ValidationFailed"));
    assert!(ev[0].2.contains("agents/coder.yaml:7:10"), "{}", ev[0].2);
    assert!(ctx.metrics.encode().contains("paddock_controller_gitsource_refused_revisions_total 1"));
}

#[tokio::test]
async fn a_session_in_the_repository_refuses_the_revision() {
    let session = "apiVersion: paddock.dev/v1alpha1\nkind: Session\nmetadata: {name: s}\nspec: {agentRef: {name: coder}, prompt: hi, owner: me}\n";
    let (up, _) =
        repo_with(&[("agents/coder.yaml", AGENT), ("policies/baseline.yaml", POLICY), ("sessions/s.yaml", session)]);
    let (out, api, _) = run(gitsource(&up.url(), Json::Null), Cluster { url: up.url(), ..Cluster::default() }).await;
    out.unwrap();
    let status = status_patch(&api).unwrap();
    assert_eq!(status["errors"][0]["file"], "sessions/s.yaml");
    assert!(status["errors"][0]["message"].as_str().unwrap().contains("applies Agents and Policies only"));
    assert!(status.get("lastAppliedRevision").is_none());
}

#[tokio::test]
async fn drift_is_undone_by_the_next_apply_and_reported() {
    let (up, rev) = repo_with(&[("agents/coder.yaml", AGENT), ("policies/baseline.yaml", POLICY)]);
    let inventory = json!([{"kind": "Agent", "name": "coder", "namespace": NS}, {"kind": "Policy", "name": "baseline", "namespace": NS}]);
    // Status exactly as the last sync of this revision left it.
    let mut gs = gitsource(&up.url(), Json::Null);
    gs.status = Some(serde_json::from_value(json!({
        "lastAppliedRevision": rev, "lastAttemptedRevision": rev, "inventory": inventory, "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                        "message": format!("Applied revision {rev}: 2 objects"), "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]
    })).unwrap());
    let cluster = Cluster {
        url: up.url(),
        // Someone edited coder (the server will change it back: new resourceVersion); baseline is untouched.
        agents: vec![live("coder", "5", &rev, json!({}))],
        policies: vec![live("baseline", "3", &rev, json!({}))],
        rv_after: HashMap::from([("coder", "6"), ("baseline", "3")]),
        ..Cluster::default()
    };
    let (out, api, _) = run(gs, cluster).await;
    out.unwrap();
    assert_eq!(
        api.lines(),
        [
            format!("GET {AGENTS}"),
            format!("GET {POLICIES}"),
            format!("PATCH {AGENTS}/coder"),
            format!("PATCH {POLICIES}/baseline"),
            format!("POST {EVENTS}")
        ],
        "drift is re-applied; the status is unchanged so it is not written"
    );
    assert_eq!(events(&api)[0].2, format!("Applied revision {rev}: corrected drift on Agent/coder"));
}

#[tokio::test]
async fn an_unchanged_source_writes_nothing_and_does_not_sync_again_before_the_interval() {
    let (up, rev) = repo_with(&[("policies/baseline.yaml", POLICY)]);
    let mut gs = gitsource(&up.url(), Json::Null);
    gs.status = Some(serde_json::from_value(json!({
        "lastAppliedRevision": rev, "lastAttemptedRevision": rev, "observedGeneration": 1,
        "inventory": [{"kind": "Policy", "name": "baseline", "namespace": NS}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                        "message": format!("Applied revision {rev}: 1 objects"), "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]
    })).unwrap());
    let cluster = Cluster {
        url: up.url(),
        policies: vec![live("baseline", "3", &rev, json!({}))],
        rv_after: HashMap::from([("baseline", "3")]),
        ..Cluster::default()
    };
    let cache = tempfile::tempdir().unwrap();
    let (client, api) = fake_api(route(cluster));
    let ctx = context(client, cache.path().to_path_buf());
    reconcile(Arc::new(gs.clone()), ctx.clone()).await.unwrap();
    assert_eq!(api.lines(), [format!("GET {AGENTS}"), format!("GET {POLICIES}"), format!("PATCH {POLICIES}/baseline")]);
    // The controller wakes again (a watch event for the same object): nothing to do until the interval.
    let action = reconcile(Arc::new(gs.clone()), ctx.clone()).await.unwrap();
    assert_eq!(api.lines().len(), 3, "no request on a wake-up within the interval");
    assert!(format!("{action:?}").contains("requeue_after: Some"), "{action:?}");
    // A manual sync request (`paddock.dev/requestedAt`) syncs at once and is recorded in status.
    gs.metadata.annotations = Some([("paddock.dev/requestedAt".to_owned(), "2026-05-01T10:00:00Z".to_owned())].into());
    reconcile(Arc::new(gs), ctx.clone()).await.unwrap();
    let lines = api.lines();
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert_eq!(status_patch(&api).unwrap()["lastHandledRequestedAt"], "2026-05-01T10:00:00Z");
}

#[tokio::test]
async fn a_rejected_apply_prunes_nothing_and_backs_off_exponentially() {
    let (up, rev) = repo_with(&[("agents/coder.yaml", AGENT), ("policies/baseline.yaml", POLICY)]);
    let gs = gitsource(&up.url(), json!({"inventory": [{"kind": "Agent", "name": "old", "namespace": NS}]}));
    let cluster = Cluster {
        url: up.url(),
        agents: vec![live("old", "1", "r", json!({}))],
        reject: Some("coder"),
        ..Cluster::default()
    };
    let (out, api, ctx) = run(gs.clone(), cluster).await;
    let err = out.unwrap_err();
    assert!(err.to_string().contains("failed to apply"), "{err}");
    assert!(api.requests().iter().all(|s| s.method != "DELETE"), "no prune after a failed apply");
    let status = status_patch(&api).unwrap();
    assert!(status.get("lastAppliedRevision").is_none());
    assert_eq!(status["lastAttemptedRevision"], rev.as_str());
    assert_eq!(condition(&status, "Ready").unwrap()["reason"], "ApplyFailed");
    assert_eq!(condition(&status, "Reconciling").unwrap()["status"], "True");
    assert_eq!(status["errors"][0]["file"], "agents/coder.yaml");
    assert!(status["errors"][0]["message"].as_str().unwrap().contains("model not allowed here"));
    // What did apply joins the inventory; `old` stays in it (not pruned).
    let inv: Vec<&str> = status["inventory"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(inv, ["old", "baseline"]);
    assert!(events(&api).iter().any(|e| e.0 == "Warning" && e.1 == "ApplyFailed"));
    let gs = Arc::new(gs);
    let delays: Vec<Duration> = (0..4)
        .map(|_| {
            let action = format!("{:?}", error_policy(gs.clone(), &err, ctx.clone()));
            // Action has no accessor; its Debug form is `Action { requeue_after: Some(5.1s) }`.
            action.split("Some(").nth(1).and_then(|d| d.split(')').next()).map(parse_debug_duration).unwrap()
        })
        .collect();
    for pair in delays.windows(2) {
        assert!(pair[1] > pair[0].mul_f64(1.8), "{delays:?}");
    }
    assert!(delays[0] >= Duration::from_secs(5) && delays[0] < Duration::from_secs(6), "{delays:?}");
}

fn parse_debug_duration(d: &str) -> Duration {
    // `5.123456789s` or `10.2s` as Debug prints a Duration.
    let secs: f64 = d.trim_end_matches('s').parse().unwrap_or_else(|_| panic!("{d}"));
    Duration::from_secs_f64(secs)
}

#[tokio::test]
async fn an_unreachable_repository_is_reported_and_retried() {
    let gs = gitsource("file:///nonexistent/agents.git", json!({"lastAppliedRevision": "main@sha1:good"}));
    let (out, api, _) = run(gs, Cluster::default()).await;
    assert!(matches!(out, Err(paddock_operator::Error::Finalizer(_))));
    assert_eq!(api.lines(), [format!("PATCH {STATUS}"), format!("POST {EVENTS}")]);
    let status = status_patch(&api).unwrap();
    assert_eq!(condition(&status, "Ready").unwrap()["reason"], "GitOperationFailed");
    assert_eq!(condition(&status, "Reconciling").unwrap()["status"], "True");
    assert_eq!(status["lastAppliedRevision"], "main@sha1:good");
}

#[tokio::test]
async fn a_suspended_source_makes_no_request() {
    let (up, _) = repo_with(&[("policies/baseline.yaml", POLICY)]);
    let mut gs = gitsource(&up.url(), Json::Null);
    gs.spec.suspend = true;
    let (out, api, _) = run(gs, Cluster { url: up.url(), ..Cluster::default() }).await;
    assert_eq!(out.unwrap(), Action::await_change());
    assert!(api.lines().is_empty(), "{:?}", api.lines());
}

#[tokio::test]
async fn a_new_gitsource_gets_the_finalizer_first() {
    let (up, _) = repo_with(&[("policies/baseline.yaml", POLICY)]);
    let mut gs = gitsource(&up.url(), Json::Null);
    gs.metadata.finalizers = None;
    let url = up.url();
    let reply = serde_json::to_value(gitsource(&url, Json::Null)).unwrap();
    let (client, api) = fake_api(Arc::new(move |_s: &Seen| (200, reply.clone())));
    let cache = tempfile::tempdir().unwrap();
    let ctx = context(client, cache.path().to_path_buf());
    reconcile(Arc::new(gs), ctx).await.unwrap();
    let reqs = api.requests();
    assert_eq!(api.lines(), ["PATCH /apis/paddock.dev/v1alpha1/namespaces/team-a/gitsources/agents"]);
    assert_eq!(reqs[0].content_type.as_deref(), Some("application/json-patch+json"));
    assert!(reqs[0].body.to_string().contains("paddock.dev/gitsource"), "{}", reqs[0].body);
}

#[tokio::test]
async fn deleting_a_gitsource_prunes_what_it_applied() {
    let (up, _) = repo_with(&[("policies/baseline.yaml", POLICY)]);
    let mut gs = gitsource(
        &up.url(),
        json!({"inventory": [{"kind": "Agent", "name": "coder", "namespace": NS}, {"kind": "Agent", "name": "kept", "namespace": NS}]}),
    );
    gs.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    let url = up.url();
    let mut cluster = Cluster {
        url: url.clone(),
        agents: vec![
            live("coder", "1", "r", json!({})),
            live("kept", "2", "r", json!({"paddock.dev/prune": "disabled"})),
        ],
        ..Cluster::default()
    };
    cluster.policies = vec![];
    let inner = route(cluster);
    let reply = serde_json::to_value(gitsource(&url, Json::Null)).unwrap();
    let (client, api) =
        fake_api(Arc::new(
            move |s: &Seen| {
                if s.path.ends_with("/gitsources/agents") { (200, reply.clone()) } else { inner(s) }
            },
        ));
    let cache = tempfile::tempdir().unwrap();
    let ctx = context(client, cache.path().to_path_buf());
    reconcile(Arc::new(gs), ctx).await.unwrap();
    assert_eq!(
        api.lines(),
        [
            format!("GET {AGENTS}"),
            format!("GET {POLICIES}"),
            format!("DELETE {AGENTS}/coder"),
            format!("POST {EVENTS}"),
            "PATCH /apis/paddock.dev/v1alpha1/namespaces/team-a/gitsources/agents".to_owned(),
        ],
        "the opted-out object stays; then the finalizer is removed"
    );
}

#[tokio::test]
async fn https_credentials_come_from_the_secret() {
    let (up, _) = repo_with(&[("policies/baseline.yaml", POLICY)]);
    let mut gs = gitsource(&up.url(), Json::Null);
    gs.spec.secret_ref = Some(paddock_api::agent::LocalObjectReference { name: "git-auth".into() });
    let base = route(Cluster { url: up.url(), ..Cluster::default() });
    let (client, api) = fake_api(Arc::new(move |s: &Seen| {
        if s.path == "/api/v1/namespaces/team-a/secrets/git-auth" { not_found("secrets \"git-auth\"") } else { base(s) }
    }));
    let cache = tempfile::tempdir().unwrap();
    let ctx = context(client, cache.path().to_path_buf());
    let err = reconcile(Arc::new(gs), ctx).await.unwrap_err();
    assert!(err.to_string().contains("git-auth"), "{err}");
    let status = status_patch(&api).unwrap();
    assert_eq!(condition(&status, "Ready").unwrap()["reason"], "AuthenticationFailed");
}

/// Reconciles once as the cluster controller does: without `local_git_sources`.
async fn run_in_cluster(
    gs: GitSource,
    cluster: Cluster,
) -> (Result<Action, paddock_operator::Error>, FakeApi, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let (client, api) = fake_api(route(cluster));
    let (reader, _writer) = kube::runtime::reflector::store::<paddock_api::Policy>();
    let ctx = Arc::new(paddock_operator::Context::new(
        client,
        Arc::new(paddock_operator::metrics::Metrics::default()),
        cache.path().to_path_buf(),
        reader,
    ));
    assert!(!ctx.local_git_sources, "the cluster controller's default");
    let out =
        tokio::time::timeout(Duration::from_secs(30), reconcile(Arc::new(gs), ctx)).await.expect("reconcile hangs");
    (out, api, cache)
}

#[tokio::test]
async fn the_cluster_controller_refuses_file_urls_and_paths_and_keeps_what_it_applied() {
    // A real repository on the controller's disk, such as another namespace's cache.
    let (up, _) = repo_with(&[("agents/coder.yaml", AGENT), ("policies/baseline.yaml", POLICY)]);
    let path = up.path().display().to_string();
    let inventory = json!([{"kind": "Agent", "name": "old", "namespace": NS}]);
    for url in [
        up.url(),
        path.clone(),
        format!("FILE://{path}"),
        format!("file:{path}"),
        format!(" file://{path}"),
        "../other-namespace/agents".to_owned(),
        "local:agents".to_owned(),
    ] {
        let gs = gitsource(&url, json!({"lastAppliedRevision": "main@sha1:good", "inventory": inventory}));
        let (out, api, cache) = run_in_cluster(gs, Cluster { url: url.clone(), ..Cluster::default() }).await;
        assert_eq!(out.unwrap(), Action::await_change(), "{url}: only an edit of spec.url can fix it");
        assert_eq!(
            api.lines(),
            [format!("PATCH {STATUS}"), format!("POST {EVENTS}")],
            "{url}: no fetch, apply or prune"
        );
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0, "{url}: nothing fetched");
        let status = status_patch(&api).unwrap();
        let ready = condition(&status, "Ready").unwrap();
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("False"), Some("UnsupportedURL")),
            "{url}"
        );
        assert!(ready["message"].as_str().unwrap().starts_with("spec.url: "), "{ready}");
        assert!(ready["message"].as_str().unwrap().contains("stays applied"), "{ready}");
        let stalled = condition(&status, "Stalled").unwrap();
        assert_eq!((stalled["status"].as_str(), stalled["reason"].as_str()), (Some("True"), Some("UnsupportedURL")));
        assert_eq!(status["lastAppliedRevision"], "main@sha1:good");
        assert_eq!(status["inventory"], inventory, "{url}: what it applied stays live and listed");
        let ev = events(&api);
        assert_eq!((ev.len(), ev[0].0.as_str(), ev[0].1.as_str()), (1, "Warning", "UnsupportedURL"), "{url}");
        assert!(ev[0].2.contains(&format!("`{url}` is not a network URL")), "{ev:?}");
    }
}

#[test]
fn network_urls_are_the_ones_the_cluster_controller_fetches() {
    use paddock_operator::gitsource::network_url;
    for ok in [
        "https://github.com/acme/agents.git",
        "http://gitea.internal:3000/acme/agents",
        "ssh://git@github.com/acme/agents.git",
        "ssh://git@github.com:22/acme/agents.git",
        "git@github.com:acme/agents.git",
        "git://git.example/agents.git",
    ] {
        assert!(network_url(ok), "{ok}");
    }
    for refused in [
        "file:///var/cache/paddock/other/agents",
        "FILE:///x",
        "file:/x",
        "/var/cache/paddock/other/agents",
        "./agents",
        "agents",
        "https:///x",
        "github.com:acme/agents.git",
        "/tmp/a@b:c",
        "@host:x",
        "",
    ] {
        assert!(!network_url(refused), "{refused}");
    }
}

/// A live object (metadata only) with these labels and annotations.
fn held(name: &str, labels: Json, annotations: Json) -> Json {
    json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": "4", "labels": labels, "annotations": annotations}
    })
}

fn other_source_labels() -> Json {
    json!({"app.kubernetes.io/managed-by": "paddock", "paddock.dev/gitsource-name": "platform", "paddock.dev/gitsource-namespace": NS})
}

fn inventory_names(status: &Json) -> Vec<String> {
    status["inventory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}/{}", e["kind"].as_str().unwrap(), e["name"].as_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn an_object_held_by_another_gitsource_is_not_taken_over_and_the_rest_is_applied() {
    let (up, rev) = repo_with(&[("agents/coder.yaml", AGENT), ("policies/baseline.yaml", POLICY)]);
    let gs = gitsource(&up.url(), Json::Null);
    let cluster = Cluster {
        url: up.url(),
        agents: vec![held("coder", other_source_labels(), json!({"paddock.dev/revision": "main@sha1:theirs"}))],
        ..Cluster::default()
    };
    let (out, api, ctx) = run(gs, cluster).await;
    let action = out.expect("a conflict is reported, not retried with backoff");
    assert!(format!("{action:?}").contains("requeue_after: Some"), "{action:?}");
    assert_eq!(
        api.lines(),
        [
            format!("GET {AGENTS}"),
            format!("GET {POLICIES}"),
            format!("PATCH {POLICIES}/baseline"),
            format!("POST {EVENTS}"),
            format!("POST {EVENTS}"),
            format!("PATCH {STATUS}"),
        ],
        "coder is neither applied nor deleted"
    );
    let ev = events(&api);
    assert_eq!((ev[0].0.as_str(), ev[0].1.as_str()), ("Warning", "OwnershipConflict"));
    assert!(ev[0].2.contains("Agent/team-a/coder (held by GitSource team-a/platform)"), "{}", ev[0].2);
    assert!(ev[0].2.contains(&format!("paddock.dev/adopt: {NAME}`")), "the Event says how to settle it: {}", ev[0].2);
    assert_eq!(ev[1].2, format!("Applied revision {rev}: created Policy/baseline"));
    let status = status_patch(&api).unwrap();
    let ready = condition(&status, "Ready").unwrap();
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("OwnershipConflict")));
    assert!(ready["message"].as_str().unwrap().contains("Agent/team-a/coder (held by GitSource team-a/platform)"));
    assert!(condition(&status, "Stalled").is_none() && condition(&status, "Reconciling").is_none());
    assert!(status.get("lastAppliedRevision").is_none(), "the revision is not wholly applied");
    assert_eq!(status["lastAttemptedRevision"], rev.as_str());
    assert_eq!(inventory_names(&status), ["Policy/baseline"], "not ours, so not in our inventory");
    assert_eq!(status["errors"][0]["file"], "agents/coder.yaml");
    assert!(
        status["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Agent/team-a/coder was not applied: it exists and is held by GitSource team-a/platform"),
        "{}",
        status["errors"][0]
    );
    assert!(ctx.metrics.encode().contains(r#"paddock_controller_gitsource_objects_total{action="conflict"} 1"#));
}

#[tokio::test]
async fn an_object_created_by_hand_is_not_taken_over() {
    let (up, _) = repo_with(&[("agents/coder.yaml", AGENT), ("policies/baseline.yaml", POLICY)]);
    let gs = gitsource(&up.url(), Json::Null);
    // Made with kubectl: no GitSource labels (a managed-by label alone names no GitSource).
    let cluster = Cluster {
        url: up.url(),
        policies: vec![held("baseline", json!({"app.kubernetes.io/managed-by": "paddock"}), json!({}))],
        ..Cluster::default()
    };
    let (out, api, _) = run(gs, cluster).await;
    out.unwrap();
    let patched: Vec<String> =
        api.requests().iter().filter(|s| s.is_ssa() && s.path != STATUS).map(Seen::line).collect();
    assert_eq!(patched, [format!("PATCH {AGENTS}/coder")]);
    let status = status_patch(&api).unwrap();
    assert_eq!(condition(&status, "Ready").unwrap()["reason"], "OwnershipConflict");
    assert!(
        status["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Policy/team-a/baseline was not applied: it exists and is created outside Paddock"),
        "{}",
        status["errors"][0]
    );
    assert_eq!(inventory_names(&status), ["Agent/coder"]);
    assert!(
        events(&api)
            .iter()
            .any(|e| e.1 == "OwnershipConflict" && e.2.contains("Policy/team-a/baseline (created outside Paddock)"))
    );
}

#[tokio::test]
async fn an_object_annotated_for_adoption_is_adopted_and_the_annotation_removed() {
    let (up, rev) = repo_with(&[("agents/coder.yaml", AGENT), ("policies/baseline.yaml", POLICY)]);
    let gs = gitsource(&up.url(), Json::Null);
    let cluster = Cluster {
        url: up.url(),
        // One made by hand, one another GitSource holds; both handed over on the cluster.
        agents: vec![held("coder", json!({"team": "a"}), json!({"paddock.dev/adopt": NAME}))],
        policies: vec![held("baseline", other_source_labels(), json!({"paddock.dev/adopt": NAME}))],
        ..Cluster::default()
    };
    let (out, api, _) = run(gs, cluster).await;
    out.unwrap();
    assert_eq!(
        api.lines(),
        [
            format!("GET {AGENTS}"),
            format!("GET {POLICIES}"),
            format!("PATCH {AGENTS}/coder"),
            format!("PATCH {AGENTS}/coder"),
            format!("PATCH {POLICIES}/baseline"),
            format!("PATCH {POLICIES}/baseline"),
            format!("POST {EVENTS}"),
            format!("PATCH {STATUS}"),
        ]
    );
    let reqs = api.requests();
    assert!(reqs[2].is_ssa(), "{:?}", reqs[2]);
    assert_eq!(reqs[2].body["metadata"]["labels"]["paddock.dev/gitsource-name"], NAME, "the apply labels it ours");
    // Then the consent is used up, so the other GitSource cannot take it back at its next sync.
    assert_eq!(reqs[3].content_type.as_deref(), Some("application/merge-patch+json"));
    assert_eq!(reqs[3].body, json!({"metadata": {"annotations": {"paddock.dev/adopt": null}}}));
    assert_eq!(reqs[3].query.get("fieldManager").map(String::as_str), Some("paddock"));
    assert!(reqs[4].is_ssa() && reqs[5].content_type.as_deref() == Some("application/merge-patch+json"));
    let ev = events(&api);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (ev[0].0.as_str(), ev[0].1.as_str(), ev[0].2.as_str()),
        (
            "Normal",
            "Adopted",
            format!(
                "Adopted Agent/team-a/coder (was created outside Paddock), Policy/team-a/baseline (was held by GitSource \
                 team-a/platform) from revision {rev}: the live objects carried `paddock.dev/adopt: {NAME}`"
            )
            .as_str()
        )
    );
    let status = status_patch(&api).unwrap();
    assert_eq!(condition(&status, "Ready").unwrap()["reason"], "ReconciliationSucceeded");
    assert_eq!(status["lastAppliedRevision"], rev.as_str());
    assert_eq!(inventory_names(&status), ["Agent/coder", "Policy/baseline"]);
}

#[tokio::test]
async fn an_object_already_ours_is_applied_as_before() {
    let (up, rev) = repo_with(&[("agents/coder.yaml", AGENT), ("policies/baseline.yaml", POLICY)]);
    // coder carries our labels though the status (inventory) was lost; baseline is in our inventory but
    // someone removed its labels by hand, and no other GitSource claims it.
    let gs = gitsource(&up.url(), json!({"inventory": [{"kind": "Policy", "name": "baseline", "namespace": NS}]}));
    let cluster = Cluster {
        url: up.url(),
        agents: vec![live("coder", "7", "main@sha1:prev", json!({}))],
        policies: vec![held("baseline", json!({}), json!({"paddock.dev/revision": "main@sha1:prev"}))],
        rv_after: HashMap::from([("coder", "8"), ("baseline", "9")]),
        ..Cluster::default()
    };
    let (out, api, _) = run(gs, cluster).await;
    out.unwrap();
    let reqs = api.requests();
    let ssa: Vec<&Seen> = reqs.iter().filter(|s| s.is_ssa() && s.path != STATUS).collect();
    assert_eq!(
        ssa.iter().map(|s| s.line()).collect::<Vec<_>>(),
        [format!("PATCH {AGENTS}/coder"), format!("PATCH {POLICIES}/baseline")]
    );
    assert_eq!(ssa[1].body["metadata"]["labels"]["paddock.dev/gitsource-name"], NAME, "its labels are put back");
    assert!(api.requests().iter().all(|s| s.content_type.as_deref() != Some("application/merge-patch+json")));
    assert_eq!(events(&api)[0].2, format!("Applied revision {rev}: configured Agent/coder, Policy/baseline"));
    let status = status_patch(&api).unwrap();
    assert_eq!(condition(&status, "Ready").unwrap()["reason"], "ReconciliationSucceeded");
    assert_eq!(inventory_names(&status), ["Agent/coder", "Policy/baseline"]);
}

#[tokio::test]
async fn pruning_never_deletes_what_another_gitsource_or_a_person_holds() {
    let (up, _) = repo_with(&[("policies/baseline.yaml", POLICY)]);
    // All three left git and are in our inventory; only `mine` still carries our labels.
    let inventory = json!([
        {"kind": "Agent", "name": "mine", "namespace": NS},
        {"kind": "Agent", "name": "adopted-away", "namespace": NS},
        {"kind": "Agent", "name": "unlabelled", "namespace": NS},
        {"kind": "Policy", "name": "baseline", "namespace": NS}
    ]);
    let gs = gitsource(&up.url(), json!({"inventory": inventory}));
    let cluster = Cluster {
        url: up.url(),
        agents: vec![
            live("mine", "1", "r", json!({})),
            held("adopted-away", other_source_labels(), json!({})),
            held("unlabelled", json!({}), json!({})),
            held("by-hand", json!({}), json!({})),
        ],
        policies: vec![live("baseline", "2", "r", json!({}))],
        ..Cluster::default()
    };
    let (out, api, _) = run(gs.clone(), cluster.clone()).await;
    out.unwrap();
    let deletes: Vec<String> = api.requests().iter().filter(|s| s.method == "DELETE").map(Seen::line).collect();
    assert_eq!(deletes, [format!("DELETE {AGENTS}/mine")]);
    assert_eq!(inventory_names(&status_patch(&api).unwrap()), ["Policy/baseline"]);

    // Nor does deleting the GitSource.
    let mut gs = gs;
    gs.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    let inner = route(cluster);
    let reply = serde_json::to_value(gitsource(&up.url(), Json::Null)).unwrap();
    let (client, api) =
        fake_api(Arc::new(
            move |s: &Seen| {
                if s.path.ends_with("/gitsources/agents") { (200, reply.clone()) } else { inner(s) }
            },
        ));
    let cache = tempfile::tempdir().unwrap();
    reconcile(Arc::new(gs), context(client, cache.path().to_path_buf())).await.unwrap();
    let deletes: Vec<String> = api.requests().iter().filter(|s| s.method == "DELETE").map(Seen::line).collect();
    assert_eq!(deletes, [format!("DELETE {AGENTS}/mine"), format!("DELETE {POLICIES}/baseline")]);
}

const GITSOURCE: &str = "/apis/paddock.dev/v1alpha1/namespaces/team-a/gitsources/agents";

/// The API server's answer to a JSON patch whose `test` fails, byte for byte as kube-apiserver sends it
/// (the reason of the failure is not in it).
fn json_patch_test_failed() -> (u16, Json) {
    (
        422,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "the server rejected our request due to an error in our request", "reason": "Invalid",
               "details": {}, "code": 422}),
    )
}

/// RFC 6902 on the `metadata.finalizers` of `obj`, as the API server applies it: every `test` must hold
/// (a missing list equals `null`), else nothing changes.
fn apply_json_patch(obj: &mut Json, ops: &Json) -> bool {
    let mut finalizers = obj["metadata"].get("finalizers").cloned().unwrap_or(Json::Null);
    for op in ops.as_array().unwrap() {
        let path = op["path"].as_str().unwrap();
        let index = path.strip_prefix("/metadata/finalizers/");
        match (op["op"].as_str().unwrap(), index) {
            ("test", None) if finalizers != op["value"] => return false,
            ("test", Some(i)) if finalizers.get(i.parse::<usize>().unwrap()) != Some(&op["value"]) => return false,
            ("test", _) => {}
            ("add", None) => finalizers = op["value"].clone(),
            ("add", Some("-")) => finalizers.as_array_mut().unwrap().push(op["value"].clone()),
            ("remove", Some(i)) => {
                let i: usize = i.parse().unwrap();
                if finalizers.as_array().is_none_or(|a| a.len() <= i) {
                    return false;
                }
                finalizers.as_array_mut().unwrap().remove(i);
            }
            other => panic!("unexpected JSON patch operation {other:?}"),
        }
    }
    match finalizers {
        Json::Array(a) if a.is_empty() => obj["metadata"].as_object_mut().unwrap().remove("finalizers"),
        f => obj["metadata"].as_object_mut().unwrap().insert("finalizers".into(), f),
    };
    true
}

/// The fake cluster of `cluster`, holding the GitSource `server_copy` and answering the finalizer's JSON
/// patches and GETs of it as the API server does.
fn holding(server_copy: GitSource, cluster: Cluster) -> (Route, Arc<std::sync::Mutex<Json>>) {
    let held = Arc::new(std::sync::Mutex::new(serde_json::to_value(server_copy).unwrap()));
    let inner = route(cluster);
    let state = held.clone();
    let route: Route = Arc::new(move |s: &Seen| {
        if s.path != GITSOURCE {
            return inner(s);
        }
        let mut obj = state.lock().unwrap();
        match s.method.as_str() {
            "GET" => (200, obj.clone()),
            "PATCH" if s.content_type.as_deref() == Some("application/json-patch+json") => {
                if apply_json_patch(&mut obj, &s.body) { (200, obj.clone()) } else { json_patch_test_failed() }
            }
            _ => (500, json!({"kind": "Status", "code": 500, "message": format!("unexpected {}", s.line())})),
        }
    });
    (route, held)
}

async fn reconcile_with(route: Route, gs: GitSource) -> (Result<Action, paddock_operator::Error>, FakeApi) {
    let cache = tempfile::tempdir().unwrap();
    let (client, api) = fake_api(route);
    let ctx = context(client, cache.path().to_path_buf());
    let out =
        tokio::time::timeout(Duration::from_secs(30), reconcile(Arc::new(gs), ctx)).await.expect("reconcile hangs");
    (out, api)
}

#[tokio::test]
async fn a_stale_copy_without_the_finalizer_is_read_again_and_synced() {
    // The watch has not caught up with our own add of a moment ago: the cached copy has no finalizer.
    let (up, rev) = repo_with(&[("policies/baseline.yaml", POLICY)]);
    let on_server = gitsource(&up.url(), Json::Null);
    let mut cached = on_server.clone();
    cached.metadata.finalizers = None;
    let (route, held) = holding(on_server, Cluster { url: up.url(), ..Cluster::default() });
    let (out, api) = reconcile_with(route, cached).await;
    out.expect("a stale copy is no error the user sees");
    assert_eq!(
        api.lines(),
        [
            format!("PATCH {GITSOURCE}"),
            format!("GET {GITSOURCE}"),
            format!("GET {AGENTS}"),
            format!("GET {POLICIES}"),
            format!("PATCH {POLICIES}/baseline"),
            format!("POST {EVENTS}"),
            format!("PATCH {STATUS}"),
        ],
        "the add is refused with 422, the GitSource read again, and the sync goes on with what the server holds"
    );
    let reqs = api.requests();
    assert_eq!(
        reqs[0].body,
        json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
               {"op": "add", "path": "/metadata/finalizers", "value": ["paddock.dev/gitsource"]}])
    );
    assert_eq!(status_patch(&api).unwrap()["lastAppliedRevision"], rev.as_str());
    assert_eq!(held.lock().unwrap()["metadata"]["finalizers"], json!(["paddock.dev/gitsource"]), "not added twice");
}

#[tokio::test]
async fn another_controllers_finalizer_added_meanwhile_is_kept_and_ours_added_once() {
    let (up, _) = repo_with(&[("policies/baseline.yaml", POLICY)]);
    let mut on_server = gitsource(&up.url(), Json::Null);
    on_server.metadata.finalizers = Some(vec!["example.com/other".into()]);
    let mut cached = on_server.clone();
    cached.metadata.finalizers = None;
    let (route, held) = holding(on_server, Cluster { url: up.url(), ..Cluster::default() });
    let (out, api) = reconcile_with(route, cached).await;
    assert_eq!(out.expect("no error"), Action::await_change(), "the patch wakes the controller for the sync");
    assert_eq!(api.lines(), [format!("PATCH {GITSOURCE}"), format!("GET {GITSOURCE}"), format!("PATCH {GITSOURCE}")]);
    assert_eq!(
        api.requests()[2].body,
        json!([{"op": "test", "path": "/metadata/finalizers", "value": ["example.com/other"]},
               {"op": "add", "path": "/metadata/finalizers/-", "value": "paddock.dev/gitsource"}])
    );
    assert_eq!(held.lock().unwrap()["metadata"]["finalizers"], json!(["example.com/other", "paddock.dev/gitsource"]));
}

#[tokio::test]
async fn removing_the_finalizer_at_a_stale_index_reads_again_and_removes_only_ours() {
    let (up, _) = repo_with(&[("policies/baseline.yaml", POLICY)]);
    let deleting = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    let mut on_server = gitsource(&up.url(), Json::Null);
    on_server.metadata.deletion_timestamp = deleting.clone();
    // Our copy still lists a finalizer that its controller has removed since: ours moved from 1 to 0.
    let mut cached = on_server.clone();
    cached.metadata.finalizers = Some(vec!["example.com/other".into(), "paddock.dev/gitsource".into()]);
    let (route, held) = holding(on_server, Cluster { url: up.url(), ..Cluster::default() });
    let (out, api) = reconcile_with(route, cached).await;
    out.expect("no error");
    let lines = api.lines();
    assert_eq!(
        lines[lines.len() - 3..],
        [format!("PATCH {GITSOURCE}"), format!("GET {GITSOURCE}"), format!("PATCH {GITSOURCE}")]
    );
    let reqs = api.requests();
    assert_eq!(
        reqs[reqs.len() - 3].body[0],
        json!({"op": "test", "path": "/metadata/finalizers/1", "value": "paddock.dev/gitsource"})
    );
    assert_eq!(
        reqs[reqs.len() - 1].body[0],
        json!({"op": "test", "path": "/metadata/finalizers/0", "value": "paddock.dev/gitsource"})
    );
    assert!(held.lock().unwrap()["metadata"].get("finalizers").is_none(), "ours removed");
}

#[tokio::test]
async fn a_finalizer_add_refused_every_time_is_reported_after_a_few_attempts() {
    let (up, _) = repo_with(&[("policies/baseline.yaml", POLICY)]);
    let mut gs = gitsource(&up.url(), Json::Null);
    gs.metadata.finalizers = None;
    let reply = serde_json::to_value(&gs).unwrap();
    // A 422 that a fresh read does not cure (an admission webhook refusing the GitSource, say).
    let (out, api) = reconcile_with(
        Arc::new(move |s: &Seen| if s.method == "GET" { (200, reply.clone()) } else { json_patch_test_failed() }),
        gs,
    )
    .await;
    let err = out.unwrap_err();
    assert!(err.to_string().contains("failed to add finalizer"), "{err}");
    let patches = api.requests().iter().filter(|s| s.method == "PATCH").count();
    assert_eq!(patches as u32, paddock_operator::context::FINALIZER_ATTEMPTS, "{:?}", api.lines());
}

#[tokio::test]
async fn an_object_changed_between_the_list_and_the_prune_is_not_deleted_and_stays_in_the_inventory() {
    let (up, _rev) = repo_with(&[("agents/coder.yaml", AGENT), ("policies/baseline.yaml", POLICY)]);
    let inventory = json!([
        {"kind": "Agent", "name": "coder", "namespace": NS},
        {"kind": "Agent", "name": "old", "namespace": NS},
        {"kind": "Policy", "name": "baseline", "namespace": NS}
    ]);
    let gs = gitsource(&up.url(), json!({"lastAppliedRevision": "main@sha1:prev", "inventory": inventory}));
    let cluster = Cluster {
        url: up.url(),
        agents: vec![live("coder", "7", "main@sha1:prev", json!({})), live("old", "9", "main@sha1:prev", json!({}))],
        policies: vec![live("baseline", "10", "main@sha1:prev", json!({}))],
        changed: Some("old"),
        ..Cluster::default()
    };
    let (out, api, _) = run(gs, cluster).await;
    out.unwrap();
    let reasons: Vec<String> = events(&api).into_iter().map(|e| e.1).collect();
    assert!(!reasons.iter().any(|r| r == "Pruned"), "{reasons:?}");
    let status = status_patch(&api).unwrap();
    let kept = status["inventory"].as_array().unwrap().iter().any(|e| e["name"] == "old");
    assert!(kept, "judged again at the next sync: {}", status["inventory"]);
}

#[tokio::test]
async fn an_adopt_annotation_that_does_not_name_this_gitsource_hands_it_nothing() {
    let (up, _rev) = repo_with(&[("agents/coder.yaml", AGENT), ("policies/baseline.yaml", POLICY)]);
    let gs = gitsource(&up.url(), Json::Null);
    let cluster = Cluster {
        url: up.url(),
        // Handed to GitSource `platform`, and the old spelling that names none.
        agents: vec![held("coder", json!({"team": "a"}), json!({"paddock.dev/adopt": "true"}))],
        policies: vec![held("baseline", other_source_labels(), json!({"paddock.dev/adopt": "platform"}))],
        ..Cluster::default()
    };
    let (out, api, _) = run(gs, cluster).await;
    out.unwrap();
    assert!(api.lines().iter().all(|l| !l.starts_with("PATCH") || l.ends_with("/status")), "{:?}", api.lines());
    let ev = events(&api);
    assert_eq!((ev[0].0.as_str(), ev[0].1.as_str()), ("Warning", "OwnershipConflict"), "{ev:?}");
}
