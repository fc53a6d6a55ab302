//! The GitSource scenarios against a real cluster (kind, k3d, any): runs only when
//! `PADDOCK_E2E_KUBECONFIG` names a kubeconfig, and says plainly that it skipped otherwise.
//!
//! ```text
//! kind create cluster --name paddock-e2e
//! kind get kubeconfig --name paddock-e2e > /tmp/paddock-e2e.kubeconfig
//! PADDOCK_E2E_KUBECONFIG=/tmp/paddock-e2e.kubeconfig cargo test -p paddock-operator --test e2e -- --nocapture
//! ```
//!
//! The reconcilers run in the test process (so `file://` repositories made here work); the cluster is real:
//! CRDs are installed, a namespace `paddock-e2e-*` is made and deleted at the end.

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{conditions, reflector, wait::await_condition, watcher};
use kube::{Client, ResourceExt};
use paddock_api::crds::Kind;
use paddock_api::{Agent, GitSource, Policy};
use paddock_operator::Context;
use paddock_operator::metrics::Metrics;
use serde_json::json;
use support::git::Upstream;

const AGENT_V1: &str = "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: coder\nspec:\n  harness: claude-code\n  model: claude-sonnet-4-5\n  policies: [baseline]\n";
const OLD_AGENT: &str =
    "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: old\nspec:\n  harness: codex\n  model: gpt-5\n";
const BROKEN_AGENT: &str = "apiVersion: paddock.dev/v1alpha1\nkind: Agent\nmetadata:\n  name: coder\nspec:\n  harness: claude-code\n  model: claude-sonet-4-5\n";

async fn client() -> Option<Client> {
    let Ok(path) = std::env::var("PADDOCK_E2E_KUBECONFIG") else {
        println!("e2e: skipped: PADDOCK_E2E_KUBECONFIG is not set (see docs/gitsource.md to run it with kind)");
        return None;
    };
    let kc = Kubeconfig::read_from(&path).expect("PADDOCK_E2E_KUBECONFIG is a readable kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kubeconfig");
    Some(Client::try_from(cfg).expect("client"))
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for kind in Kind::ALL {
        let crd = kind.crd();
        let name = crd.name_any();
        crds.patch(&name, &PatchParams::apply("paddock-e2e").force(), &Patch::Apply(&crd)).await.unwrap();
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("CRD established in time")
        .unwrap();
    }
}

async fn context(client: &Client, ns: &str, cache: &std::path::Path) -> Arc<Context> {
    // A store filled once with the namespace's Policies, as the controller's reflector would be.
    let (reader, mut writer) = reflector::store::<Policy>();
    for p in Api::<Policy>::namespaced(client.clone(), ns).list(&Default::default()).await.unwrap() {
        writer.apply_watcher_event(&watcher::Event::Apply(p));
    }
    Arc::new(
        Context::new(client.clone(), Arc::new(Metrics::default()), cache.to_path_buf(), reader)
            .with_local_git_sources(),
    )
}

/// One sync with fresh state (a new context, so the interval gate does not hold it back).
async fn sync(client: &Client, ns: &str, cache: &std::path::Path) -> Result<(), paddock_operator::Error> {
    let gs = Api::<GitSource>::namespaced(client.clone(), ns).get("agents").await.unwrap();
    let ctx = context(client, ns, cache).await;
    paddock_operator::gitsource::reconcile(Arc::new(gs), ctx).await.map(|_| ())
}

/// Runs `scenario` in a namespace of its own (`<prefix>-<pid>`), deleted at the end whatever happened; a
/// failed scenario's GitSource `agents` loses its finalizers first (no reconciler is left to remove them,
/// and they would hold the namespace forever). A panic in the scenario is the test's.
async fn in_fresh_namespace<F, Fut>(client: &Client, prefix: &str, scenario: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let ns = format!("{prefix}-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
        .await
        .unwrap();
    let result = tokio::spawn(scenario(client.clone(), ns.clone())).await;
    if result.is_err() {
        let sources: Api<GitSource> = Api::namespaced(client.clone(), &ns);
        let unfinalize = json!({"metadata": {"finalizers": null}});
        let _ = sources.patch("agents", &PatchParams::default(), &Patch::Merge(&unfinalize)).await;
    }
    let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn gitsource_scenarios_on_a_real_cluster() {
    let Some(client) = client().await else { return };
    install_crds(&client).await;
    in_fresh_namespace(&client, "paddock-e2e", scenarios).await;
    println!("e2e: passed against the cluster of PADDOCK_E2E_KUBECONFIG");
}

async fn scenarios(client: Client, ns: String) {
    let cache = tempfile::tempdir().unwrap();
    let up = Upstream::new();
    let policy = support::POLICY.as_bytes();
    let first = up.commit_tree(
        "main",
        &[
            ("agents/coder.yaml", AGENT_V1.as_bytes()),
            ("agents/old.yaml", OLD_AGENT.as_bytes()),
            ("policies/baseline.yaml", policy),
        ],
        false,
    );
    let sources: Api<GitSource> = Api::namespaced(client.clone(), &ns);
    let agents: Api<Agent> = Api::namespaced(client.clone(), &ns);
    let gs: GitSource = serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "GitSource",
        "metadata": {"name": "agents", "namespace": ns},
        "spec": {"url": up.url(), "interval": "1m", "webhookSecretRef": {"name": "webhook"}}
    }))
    .unwrap();
    sources.create(&PostParams::default(), &gs).await.unwrap();

    // First reconcile adds the finalizer; the second applies.
    sync(&client, &ns, cache.path()).await.unwrap();
    sync(&client, &ns, cache.path()).await.unwrap();
    let rev1 = format!("main@sha1:{first}");
    let status = sources.get("agents").await.unwrap().status.unwrap();
    assert_eq!(status.last_applied_revision.as_deref(), Some(rev1.as_str()));
    assert_eq!(status.inventory.len(), 3);
    let coder = agents.get("coder").await.unwrap();
    assert_eq!(coder.labels()["paddock.dev/gitsource-name"], "agents");
    assert_eq!(coder.annotations()["paddock.dev/revision"], rev1);

    // Drift: someone edits the model; the next sync puts it back.
    agents
        .patch(
            "coder",
            &PatchParams::apply("someone").force(),
            &Patch::Apply(&json!({
                "apiVersion": "paddock.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "coder"},
                "spec": {"harness": "claude-code", "model": "gpt-5"}
            })),
        )
        .await
        .unwrap();
    sync(&client, &ns, cache.path()).await.unwrap();
    assert_eq!(agents.get("coder").await.unwrap().spec.model, "claude-sonnet-4-5");

    // A broken revision is refused; the last good one stays.
    let broken = up.commit_tree(
        "main",
        &[("agents/coder.yaml", BROKEN_AGENT.as_bytes()), ("policies/baseline.yaml", policy)],
        false,
    );
    sync(&client, &ns, cache.path()).await.unwrap();
    let status = sources.get("agents").await.unwrap().status.unwrap();
    assert_eq!(status.last_applied_revision.as_deref(), Some(rev1.as_str()));
    assert_eq!(status.last_attempted_revision, Some(format!("main@sha1:{broken}")));
    assert_eq!(status.errors[0].file, "agents/coder.yaml");
    assert!(agents.get_opt("old").await.unwrap().is_some(), "nothing pruned for a refused revision");

    // The fix (without `old`): applied, and `old` is pruned.
    let fixed = up.commit_tree(
        "main",
        &[("agents/coder.yaml", AGENT_V1.as_bytes()), ("policies/baseline.yaml", policy)],
        false,
    );
    sync(&client, &ns, cache.path()).await.unwrap();
    let status = sources.get("agents").await.unwrap().status.unwrap();
    assert_eq!(status.last_applied_revision, Some(format!("main@sha1:{fixed}")));
    assert!(status.errors.is_empty());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(agents.get_opt("old").await.unwrap().is_none(), "pruned");

    // The Agent reconciler reports the revision and its Policies.
    let ctx = context(&client, &ns, cache.path()).await;
    paddock_operator::agent::reconcile(Arc::new(agents.get("coder").await.unwrap()), ctx).await.unwrap();
    let st = agents.get_status("coder").await.unwrap().status.unwrap();
    assert_eq!(st.source_revision, Some(format!("main@sha1:{fixed}")));
    assert_eq!(st.policies, ["baseline"]);

    // The webhook annotates the GitSource for an immediate sync.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "webhook"}, "stringData": {"token": "s3cret"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let app = paddock_operator::server::router(client.clone(), Arc::new(Metrics::default()));
    use tower::ServiceExt;
    let req = http::Request::post(format!("/hooks/git/{ns}/agents"))
        .header("x-gitlab-token", "s3cret")
        .body(axum::body::Body::from("{}"))
        .unwrap();
    assert_eq!(app.oneshot(req).await.unwrap().status(), http::StatusCode::ACCEPTED);
    assert!(sources.get("agents").await.unwrap().annotations().contains_key("paddock.dev/requestedAt"));

    // Deleting the GitSource prunes what it applied (the finalizer runs in the next reconcile).
    sources.delete("agents", &DeleteParams::default()).await.unwrap();
    sync(&client, &ns, cache.path()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(agents.get_opt("coder").await.unwrap().is_none());
    assert!(sources.get_opt("agents").await.unwrap().is_none());
}

/// The controller reconciles from its cache, which can lag the API server: the finalizer is already on the
/// object (our own earlier reconcile, or another controller's finalizer was added) while the cached copy
/// says otherwise. kube-runtime's add guards its JSON patch with `test /metadata/finalizers == <cached>`,
/// which the API server answers with 422 Invalid; the reconcile must re-read and carry on, not fail.
#[tokio::test]
async fn a_stale_gitsource_gets_its_finalizer_without_an_error() {
    let Some(client) = client().await else { return };
    install_crds(&client).await;
    in_fresh_namespace(&client, "paddock-e2e-stale", stale_scenario).await;
}

async fn stale_scenario(client: Client, ns: String) {
    const OTHER: &str = "example.com/other-controller";
    let cache = tempfile::tempdir().unwrap();
    let up = Upstream::new();
    let first = up.commit_tree("main", &[("policies/baseline.yaml", support::POLICY.as_bytes())], false);
    let sources: Api<GitSource> = Api::namespaced(client.clone(), &ns);
    let gs: GitSource = serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "GitSource",
        "metadata": {"name": "agents", "namespace": ns},
        "spec": {"url": up.url(), "interval": "1m"}
    }))
    .unwrap();
    sources.create(&PostParams::default(), &gs).await.unwrap();
    let stale = Arc::new(sources.get("agents").await.unwrap());
    assert!(stale.finalizers().is_empty());
    // Another controller adds its finalizer after our cache saw the object.
    let add_other = json!([{"op": "add", "path": "/metadata/finalizers", "value": [OTHER]}]);
    sources
        .patch("agents", &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(add_other).unwrap()))
        .await
        .unwrap();
    let ctx = context(&client, &ns, cache.path()).await;
    paddock_operator::gitsource::reconcile(stale.clone(), ctx.clone())
        .await
        .expect("a stale object is no error: the finalizer is added to what the server holds");
    let now = sources.get("agents").await.unwrap();
    assert_eq!(now.finalizers(), [OTHER, paddock_operator::FINALIZER], "the other finalizer is kept");

    // The same stale copy again (the watch has not caught up): the finalizer is there, so it syncs.
    paddock_operator::gitsource::reconcile(stale, ctx).await.expect("recovers from the stale copy");
    let now = sources.get("agents").await.unwrap();
    assert_eq!(now.finalizers(), [OTHER, paddock_operator::FINALIZER], "added once");
    assert_eq!(now.status.unwrap().last_applied_revision, Some(format!("main@sha1:{first}")));

    // Let the namespace go: the other controller's finalizer leaves, then ours runs.
    let remove_other = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": OTHER},
                              {"op": "remove", "path": "/metadata/finalizers/0"}]);
    sources
        .patch("agents", &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(remove_other).unwrap()))
        .await
        .unwrap();
    sources.delete("agents", &DeleteParams::default()).await.unwrap();
    sync(&client, &ns, cache.path()).await.unwrap();
    assert!(sources.get_opt("agents").await.unwrap().is_none());
}

/// An object made by hand is not taken over until it is annotated for adoption; then the annotation is
/// used up. Pruning leaves what the GitSource does not hold.
#[tokio::test]
async fn a_gitsource_takes_over_only_what_it_is_handed_on_a_real_cluster() {
    let Some(client) = client().await else { return };
    install_crds(&client).await;
    in_fresh_namespace(&client, "paddock-e2e-owner", ownership_scenario).await;
}

async fn ownership_scenario(client: Client, ns: String) {
    let cache = tempfile::tempdir().unwrap();
    let up = Upstream::new();
    let first = up.commit_tree(
        "main",
        &[("agents/coder.yaml", AGENT_V1.as_bytes()), ("policies/baseline.yaml", support::POLICY.as_bytes())],
        false,
    );
    let sources: Api<GitSource> = Api::namespaced(client.clone(), &ns);
    let policies: Api<Policy> = Api::namespaced(client.clone(), &ns);
    let agents: Api<Agent> = Api::namespaced(client.clone(), &ns);
    // Someone made `baseline` with kubectl before the GitSource existed.
    let by_hand = json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Policy", "metadata": {"name": "baseline"},
                         "spec": {"rules": [{"name": "mine", "use": "cost_budget", "with": {"max_cost_usd": 1}}]}});
    policies.create(&PostParams::default(), &serde_json::from_value(by_hand).unwrap()).await.unwrap();
    let gs: GitSource = serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "GitSource",
        "metadata": {"name": "agents", "namespace": ns},
        "spec": {"url": up.url(), "interval": "1m"}
    }))
    .unwrap();
    sources.create(&PostParams::default(), &gs).await.unwrap();
    sync(&client, &ns, cache.path()).await.unwrap();
    sync(&client, &ns, cache.path()).await.unwrap();
    let status = sources.get("agents").await.unwrap().status.unwrap();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason, "OwnershipConflict", "{ready:?}");
    assert!(ready.message.contains(&format!("Policy/{ns}/baseline (created outside Paddock)")), "{}", ready.message);
    assert_eq!(status.last_applied_revision, None);
    assert_eq!(status.inventory.len(), 1, "the Agent only: {:?}", status.inventory);
    assert_eq!(policies.get("baseline").await.unwrap().spec.rules[0].name, "mine", "left as it was");
    assert!(agents.get_opt("coder").await.unwrap().is_some(), "the rest is applied");

    // Handed over on the cluster: adopted at the next sync, and the annotation is gone.
    policies
        .patch(
            "baseline",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"paddock.dev/adopt": "agents"}}})),
        )
        .await
        .unwrap();
    sync(&client, &ns, cache.path()).await.unwrap();
    let status = sources.get("agents").await.unwrap().status.unwrap();
    assert_eq!(status.last_applied_revision, Some(format!("main@sha1:{first}")));
    assert_eq!(status.inventory.len(), 2);
    let baseline = policies.get("baseline").await.unwrap();
    assert_eq!(baseline.spec.rules[0].name, "budget", "git's spec");
    assert_eq!(baseline.labels()["paddock.dev/gitsource-name"], "agents");
    assert!(!baseline.annotations().contains_key("paddock.dev/adopt"), "{:?}", baseline.annotations());

    // Deleting the GitSource prunes both, and nothing else (a hand-made Agent stays).
    let other = json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "hand-made"},
                       "spec": {"harness": "codex", "model": "gpt-5"}});
    agents.create(&PostParams::default(), &serde_json::from_value(other).unwrap()).await.unwrap();
    sources.delete("agents", &DeleteParams::default()).await.unwrap();
    sync(&client, &ns, cache.path()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(policies.get_opt("baseline").await.unwrap().is_none());
    assert!(agents.get_opt("coder").await.unwrap().is_none());
    assert!(agents.get_opt("hand-made").await.unwrap().is_some());
}
