//! The kubelet's part, played by the suites when the API server has no kubelet (`PADDOCK_E2E_NO_KUBELET=1`):
//! a runner pod's status is patched to Running and then to a finished phase, and what the runner in it
//! would say to the gateway is said from here with the session's token, read from the Secret the controller
//! made for the pod.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

fn now() -> String {
    paddock_operator::conditions::now()
}

/// Sets the pod's phase the way the kubelet reports it, with the runner container's state.
pub async fn set_phase(admin: &Client, ns: &str, pod: &str, phase: &str) {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    let live = pods.get(pod).await.unwrap();
    let container = live.spec.as_ref().unwrap().containers[0].name.clone();
    let state = match phase {
        "Running" => json!({"running": {"startedAt": now()}}),
        "Succeeded" => json!({"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": now()}}),
        _ => {
            json!({"terminated": {"exitCode": 1, "reason": "Error", "message": "the runner failed", "finishedAt": now()}})
        }
    };
    let status = json!({"status": {
        "phase": phase,
        "startTime": now(),
        "containerStatuses": [{
            "name": container, "image": live.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default(),
            "imageID": "", "ready": phase == "Running", "restartCount": 0, "state": state
        }]
    }});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("kubelet stand-in: pod {ns}/{pod} to {phase}: {e}"));
    println!("e2e: kubelet stand-in: pod {ns}/{pod} is {phase}");
}

/// The runner's token: the Secret's `token`, as the pod would read it.
pub async fn runner_token(admin: &Client, ns: &str, secret: &str) -> String {
    let s = Api::<Secret>::namespaced(admin.clone(), ns).get(secret).await.unwrap();
    let data = s.data.unwrap_or_default();
    String::from_utf8(data.get("token").expect("the token Secret holds `token`").0.clone()).unwrap()
}

/// One model call through the gateway, as the runner's harness makes it.
pub async fn model_call(gateway: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{gateway}/llm/anthropic/v1/messages"))
        .header("x-api-key", token)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 64,
                      "messages": [{"role": "user", "content": "Look at the workspace."}]}))
        .send()
        .await
        .unwrap()
}

/// A tool call put to the gateway, as the runner's hook does; `wait=false` answers an ask at once.
pub async fn decide(gateway: &str, token: &str, session: &str, tool: &str, args: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{gateway}/v1/sessions/{session}/decide?wait=false"))
        .bearer_auth(token)
        .json(&json!({"phase": "tool_call", "tool": tool, "args": args}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "decide: {}", r.status());
    r.json().await.unwrap()
}

/// How an ask of the session was decided, waiting up to `wait` seconds.
pub async fn approval(gateway: &str, token: &str, session: &str, approval: &str, wait: u64) -> Value {
    let r = reqwest::Client::new()
        .get(format!("{gateway}/v1/sessions/{session}/approvals/{approval}?wait={wait}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "approval: {}", r.status());
    r.json().await.unwrap()
}
