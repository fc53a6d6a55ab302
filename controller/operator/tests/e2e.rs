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

#[tokio::test]
async fn gitsource_scenarios_on_a_real_cluster() {
    let Some(client) = client().await else { return };
    install_crds(&client).await;
    let ns = format!("paddock-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
        .await
        .unwrap();
    let result = tokio::spawn(scenarios(client.clone(), ns.clone())).await;
    let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
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
