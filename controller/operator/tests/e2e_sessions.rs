//! A Session end to end on a real cluster with Paddock installed by its Helm chart: apply an Agent and a
//! Session, watch the Session until it finishes (printing each phase), check the runner pod's hardening and
//! status, then delete it and check that its objects go. Runs only when `PADDOCK_E2E_KUBECONFIG` names a
//! kubeconfig and says plainly that it skipped otherwise. Setup (kind): docs/sessions.md.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use paddock_api::Session;
use paddock_api::session::SessionPhase;
use serde_json::json;

/// The namespace the e2e gateway's Agent lives in (tests/e2e/paddock-e2e.yaml).
const NS: &str = "paddock-e2e";

async fn client() -> Option<Client> {
    let Ok(path) = std::env::var("PADDOCK_E2E_KUBECONFIG") else {
        println!("e2e: skipped: PADDOCK_E2E_KUBECONFIG is not set (see docs/sessions.md to run it with kind)");
        return None;
    };
    let kc = Kubeconfig::read_from(&path).expect("PADDOCK_E2E_KUBECONFIG is a readable kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kubeconfig");
    Some(Client::try_from(cfg).expect("client"))
}

#[tokio::test]
async fn apply_a_session_and_watch_it_finish() {
    let Some(client) = client().await else { return };
    let ssa = PatchParams::apply("paddock-e2e").force();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(NS, &ssa, &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})))
        .await
        .unwrap();
    // The owner must be us: the chart's ValidatingAdmissionPolicy checks it.
    let me = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()
        .and_then(|r| r.status?.user_info?.username)
        .unwrap_or_else(|| "kubernetes-admin".into());
    let agents: Api<paddock_api::Agent> = Api::namespaced(client.clone(), NS);
    agents
        .patch(
            "e2e-coder",
            &ssa,
            &Patch::Apply(json!({
                "apiVersion": "paddock.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "e2e-coder"},
                "spec": {"harness": "custom", "model": "claude-sonnet-4-5", "tools": ["list_dir"],
                         "limits": {"maxTurns": 5, "timeoutSeconds": 120}}
            })),
        )
        .await
        .unwrap();
    let sessions: Api<Session> = Api::namespaced(client.clone(), NS);
    let name = format!("e2e-{}", std::process::id());
    sessions
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "paddock.dev/v1alpha1", "kind": "Session", "metadata": {"name": name},
                "spec": {"agentRef": {"name": "e2e-coder"}, "prompt": "Look at the workspace.", "owner": me}
            }))
            .unwrap(),
        )
        .await
        .expect("the Session is admitted (owner = the requesting user)");

    // Watch it finish.
    let mut last = None;
    let session = tokio::time::timeout(Duration::from_secs(300), async {
        loop {
            let s = sessions.get(&name).await.unwrap();
            let st = s.status.clone().unwrap_or_default();
            let ready =
                st.conditions.iter().find(|c| c.type_ == "Ready").map(|c| format!("{}: {}", c.reason, c.message));
            let now = (st.phase, ready);
            if last.as_ref() != Some(&now) {
                println!("e2e: session {name}: {:?} {}", now.0, now.1.clone().unwrap_or_default());
                last = Some(now);
            }
            if st.phase.is_finished() {
                return s;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
    .await
    .expect("the Session finishes within 5 minutes");
    let st = session.status.clone().unwrap();
    assert_eq!(st.phase, SessionPhase::Succeeded, "{st:?}");
    assert!(st.completion_time.is_some() && st.start_time.is_some());
    assert!(st.usage.input_tokens > 0, "usage comes from the gateway: {st:?}");
    assert!(st.last_message.is_some(), "{st:?}");

    // The runner pod as it ran.
    let pod = Api::<Pod>::namespaced(client.clone(), NS).get(st.pod_name.as_deref().unwrap()).await.unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    let sc = spec.containers[0].security_context.clone().unwrap();
    assert_eq!((sc.read_only_root_filesystem, sc.allow_privilege_escalation), (Some(true), Some(false)));
    // No DNS in the sandbox: the gateway's address is in /etc/hosts.
    let aliases = spec.host_aliases.clone().unwrap_or_default();
    assert!(aliases.iter().any(|a| a.hostnames.iter().flatten().any(|h| h.contains("gateway"))), "{aliases:?}");
    let np = Api::<NetworkPolicy>::namespaced(client.clone(), NS)
        .get(&paddock_sandbox::ObjectNames::of(&session.name_any()).network_policy)
        .await
        .unwrap();
    let np = serde_json::to_string(&np).unwrap();
    assert!(!np.contains("0.0.0.0/0") && !np.contains("kube-dns"), "the runner reaches the gateway only: {np}");

    // Deleting it revokes the token (finalizer) and removes what it owned.
    sessions.delete(&name, &DeleteParams::foreground()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(120), async {
        while sessions.get_opt(&name).await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await
    .expect("the Session is deleted");
    let names = paddock_sandbox::ObjectNames::of(&name);
    assert!(
        Api::<Pod>::namespaced(client.clone(), NS)
            .get_opt(&names.pod)
            .await
            .unwrap()
            .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
    );
    assert!(Api::<Secret>::namespaced(client.clone(), NS).get_opt(&names.secret).await.unwrap().is_none());
    assert!(
        Api::<NetworkPolicy>::namespaced(client.clone(), NS).get_opt(&names.network_policy).await.unwrap().is_none()
    );
    println!("e2e: session {}: deleted with its pod, token Secret and NetworkPolicy", session.name_any());
}
