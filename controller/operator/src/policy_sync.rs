//! Keeps the gateway's policies equal to the cluster's. The gateway decides with the Agents and Policies it
//! holds; in Kubernetes those live in the API server, which the gateway has no access to (least privilege).
//! The controller, which watches them anyway, pushes the whole set (`PUT /v1/policies`) whenever it changes,
//! and again every minute so that a restarted gateway catches up.

use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use paddock_api::{Agent, Policy};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::gateway::Gateway;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("listing {0}: {1}")]
    List(&'static str, kube::Error),
    #[error("gateway: {0}")]
    Gateway(#[from] crate::gateway::GatewayError),
}

/// What the gateway needs of an object, without the API server's bookkeeping.
fn slim(
    kind: &str,
    ns: Option<String>,
    name: String,
    labels: &std::collections::BTreeMap<String, String>,
    spec: Value,
) -> Value {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": kind,
           "metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": spec})
}

/// The set to push and its revision (a hash of what the gateway would see, so unchanged objects with new
/// resource versions push nothing).
pub async fn desired(agents: &Api<Agent>, policies: &Api<Policy>) -> Result<(String, Value), SyncError> {
    let lp = ListParams::default();
    let mut a: Vec<Value> = agents
        .list(&lp)
        .await
        .map_err(|e| SyncError::List("agents", e))?
        .items
        .iter()
        .map(|o| slim("Agent", o.namespace(), o.name_any(), o.labels(), serde_json::to_value(&o.spec).expect("json")))
        .collect();
    let mut p: Vec<Value> = policies
        .list(&lp)
        .await
        .map_err(|e| SyncError::List("policies", e))?
        .items
        .iter()
        .map(|o| slim("Policy", o.namespace(), o.name_any(), o.labels(), serde_json::to_value(&o.spec).expect("json")))
        .collect();
    let key = |v: &Value| (v["metadata"]["namespace"].to_string(), v["metadata"]["name"].to_string());
    a.sort_by_key(key);
    p.sort_by_key(key);
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&(&a, &p)).expect("json"));
    let digest: String = h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    let revision = format!("cluster:sha256:{digest}");
    Ok((revision.clone(), json!({"revision": revision, "agents": a, "policies": p})))
}

/// Pushes until `halt` turns true: on change, checked every `interval`, and at least once a minute.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    gateway: Gateway,
    interval: Duration,
    mut halt: watch::Receiver<bool>,
) {
    let (agents, policies): (Api<Agent>, Api<Policy>) = match &namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client, ns)),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let mut pushed: Option<(String, Instant)> = None;
    loop {
        match desired(&agents, &policies).await {
            Ok((revision, body)) => {
                let stale =
                    pushed.as_ref().is_none_or(|(r, at)| *r != revision || at.elapsed() > Duration::from_secs(60));
                if stale {
                    match gateway.put_policies(&body).await {
                        Ok(v) => {
                            let left_out = v["leftOut"].as_array().map_or(0, Vec::len);
                            tracing::info!(%revision, left_out, "pushed Agents and Policies to the gateway");
                            pushed = Some((revision, Instant::now()));
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot push policies to the gateway; retrying"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list Agents and Policies; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = halt.wait_for(|h| *h) => return,
        }
    }
}
