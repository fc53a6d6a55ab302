//! Keeps the gateway's policies equal to the cluster's. The gateway decides with the Agents and Policies it
//! holds; in Kubernetes those live in the API server, which the gateway has no access to (least privilege).
//! The controller reads them from its caches — reflector stores kept by watches, which LIST once when a watch
//! starts and then only receive changes — and pushes the whole set (`PUT /v1/policies`) shortly after a
//! change, and again every minute so that a restarted gateway catches up. Nothing here asks the API server
//! anything.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use paddock_api::{Agent, Policy};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use crate::gateway::Gateway;

/// What the sync reads: the controller's caches of Agents and Policies, and the wake-up their watches give on
/// every change.
#[derive(Clone)]
pub struct Caches {
    pub agents: Store<Agent>,
    pub policies: Store<Policy>,
    /// Notified (`notify_one`) by the watches whenever an object is added, changed or deleted, or a re-list
    /// completes. A notification while the sync is busy is kept, so none is lost.
    pub changed: Arc<Notify>,
}

/// When the sync pushes.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// After a change, wait this long for the rest of a burst (a GitSource applying a revision changes many
    /// objects at once) and push them together.
    pub debounce: Duration,
    /// Push at least this often, changed or not: a gateway that restarted has only its own repository's set.
    pub resync: Duration,
    /// After a failed push, try again this soon.
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing { debounce: Duration::from_secs(1), resync: Duration::from_secs(60), retry: Duration::from_secs(5) }
    }
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

/// The set to push and its revision (a hash of what the gateway would see, so that unchanged objects with
/// new resource versions, or only a new status, push nothing).
pub fn desired(agents: &[Arc<Agent>], policies: &[Arc<Policy>]) -> (String, Value) {
    let mut a: Vec<Value> = agents
        .iter()
        .map(|o| slim("Agent", o.namespace(), o.name_any(), o.labels(), serde_json::to_value(&o.spec).expect("json")))
        .collect();
    let mut p: Vec<Value> = policies
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
    (revision.clone(), json!({"revision": revision, "agents": a, "policies": p}))
}

/// A cache of `K` kept by a watch of `api`, notifying `changed` on every change. The future runs the watch
/// (with kube's backoff on errors) and must be polled for the cache to fill; it never ends.
pub fn cache<K>(api: Api<K>, changed: Arc<Notify>) -> (Store<K>, impl Future<Output = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let watch = watcher::watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .for_each(move |event| {
            if is_change(&event) {
                changed.notify_one();
            }
            futures::future::ready(())
        });
    (store, watch)
}

/// Whether a watch event changed what a cache holds: an object added, changed or deleted, or a (re-)list
/// swapped in. The events of a list in progress change nothing until it is done.
pub fn is_change<K, E>(event: &Result<watcher::Event<K>, E>) -> bool {
    matches!(event, Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone))
}

/// Pushes until `halt` turns true: once both caches are filled, then after each change (debounced) and at
/// least every `timing.resync`. A cache whose watch never fills it pushes nothing: an empty set would take
/// every Agent away from the gateway.
pub async fn run(caches: Caches, gateway: Gateway, timing: Timing, mut halt: watch::Receiver<bool>) {
    let ready = async {
        let agents = caches.agents.wait_until_ready().await;
        let policies = caches.policies.wait_until_ready().await;
        agents.is_ok() && policies.is_ok()
    };
    tokio::select! {
        ok = ready => if !ok {
            tracing::warn!("the Agent or Policy cache was dropped before it filled; not syncing policies");
            return;
        },
        _ = halt.wait_for(|h| *h) => return,
    }
    let mut pushed: Option<(String, Instant)> = None;
    loop {
        let (revision, body) = desired(&caches.agents.state(), &caches.policies.state());
        let unchanged_since = pushed.as_ref().filter(|(r, _)| *r == revision).map(|(_, at)| *at);
        let wait = match unchanged_since {
            Some(at) if at.elapsed() < timing.resync => timing.resync - at.elapsed(),
            _ => match gateway.put_policies(&body).await {
                Ok(v) => {
                    let left_out = v["leftOut"].as_array().map_or(0, Vec::len);
                    tracing::info!(%revision, left_out, "pushed Agents and Policies to the gateway");
                    pushed = Some((revision, Instant::now()));
                    timing.resync
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?timing.retry, "cannot push policies to the gateway");
                    timing.retry
                }
            },
        };
        let changed = tokio::select! {
            _ = caches.changed.notified() => true,
            _ = tokio::time::sleep(wait) => false,
            _ = halt.wait_for(|h| *h) => return,
        };
        if changed {
            tokio::select! {
                _ = tokio::time::sleep(timing.debounce) => {}
                _ = halt.wait_for(|h| *h) => return,
            }
        }
    }
}
