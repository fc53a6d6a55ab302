//! What every reconcile shares: the client, the Event recorder, metrics, the git cache and the backoff of
//! failing objects.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use paddock_api::Policy;

use crate::metrics::Metrics;

/// Shared state of the reconcilers.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Where bare clones of the GitSources' repositories are kept, one directory per GitSource.
    pub cache_dir: PathBuf,
    pub backoff: Arc<Backoff>,
    pub syncs: Arc<SyncGate>,
    /// Every Policy the controller sees, for the Agent reconciler (which Policies govern an Agent).
    pub policies: Store<Policy>,
    /// The gateway and the cluster settings of the Session and Approval reconcilers; `None` where they do
    /// not run.
    pub sessions: Option<Arc<crate::session::SessionRuntime>>,
    /// Whether GitSources may name `file://` URLs and local paths. Off in a cluster: the controller's caches
    /// of every namespace are on its disk. On only where the reconcilers run in a test process.
    pub local_git_sources: bool,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, cache_dir: PathBuf, policies: Store<Policy>) -> Self {
        let reporter = Reporter { controller: "paddock-controller".into(), instance: std::env::var("POD_NAME").ok() };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            cache_dir,
            backoff: Arc::new(Backoff::default()),
            syncs: Arc::new(SyncGate::default()),
            policies,
            sessions: None,
            local_git_sources: false,
        }
    }

    /// Accepting `file://` GitSources (tests that run the reconcilers against repositories they made).
    pub fn with_local_git_sources(mut self) -> Self {
        self.local_git_sources = true;
        self
    }

    /// With the Session and Approval reconcilers' gateway and cluster settings.
    pub fn with_sessions(mut self, sessions: crate::session::SessionRuntime) -> Self {
        self.sessions = Some(Arc::new(sessions));
        self
    }
}

/// Exponential backoff per object: 5 s, 10 s, 20 s … up to 5 min, with jitter, reset by a success.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    pub const BASE: Duration = Duration::from_secs(5);
    pub const MAX: Duration = Duration::from_secs(300);

    /// Records a failure of `key` and returns how long to wait before the next attempt.
    pub fn failed(&self, key: &str) -> Duration {
        let mut map = self.failures.lock().expect("backoff lock");
        let n = map.entry(key.to_owned()).or_insert(0);
        let delay = Self::BASE.saturating_mul(1u32 << (*n).min(16)).min(Self::MAX);
        *n = n.saturating_add(1);
        with_jitter(delay, 0.1)
    }

    /// Forgets the failures of `key`.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }

    /// Consecutive failures of `key`.
    pub fn failures(&self, key: &str) -> u32 {
        self.failures.lock().expect("backoff lock").get(key).copied().unwrap_or(0)
    }
}

/// When each GitSource last synced successfully, and for which spec and `requestedAt`.
#[derive(Debug, Default)]
pub struct SyncGate {
    done: Mutex<HashMap<String, (u64, Instant)>>,
}

impl SyncGate {
    /// `Some(time left)` when `key` synced with this `fingerprint` less than `interval` ago, so this wake-up
    /// (our own status write, a re-list) needs no sync; `None` when a sync is due.
    pub fn wait(&self, key: &str, fingerprint: u64, interval: Duration) -> Option<Duration> {
        let done = self.done.lock().expect("sync gate lock");
        let (fp, at) = done.get(key)?;
        let elapsed = at.elapsed();
        (*fp == fingerprint && elapsed < interval).then(|| interval - elapsed)
    }

    /// Records a successful sync (applied, or a revision refused) of `key` now.
    pub fn done(&self, key: &str, fingerprint: u64) {
        self.done.lock().expect("sync gate lock").insert(key.to_owned(), (fingerprint, Instant::now()));
    }

    /// Forgets `key` (deleted), so a new object of that name syncs at once.
    pub fn forget(&self, key: &str) {
        self.done.lock().expect("sync gate lock").remove(key);
    }
}

/// `d` stretched by a random fraction in `[0, frac)`, so that many objects with one interval spread out
/// instead of hitting the API server and git hosts together.
pub fn with_jitter(d: Duration, frac: f64) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded randomly per instance: enough randomness for spreading load, no extra crate.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(d.as_nanos() as u64);
    let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(1.0 + frac * unit)
}

/// The frame of every reconciler with cleanup to do: run `reconcile` under the finalizer (apply or
/// cleanup), record the outcome in the metrics, and reset the object's backoff when it succeeded.
///
/// The finalizer is added and removed with the JSON patches kube-runtime's `finalizer()` sends, guarded by a
/// `test` of the finalizer list the reconciler saw. That copy comes from the controller's cache and can lag
/// the API server (our own add of a moment ago not yet seen, another controller's finalizer added since), in
/// which case the API server answers 422 Invalid ("the server rejected our request due to an error in our
/// request"). That is a stale read, not an error: the object is read again and the step retried with what
/// the server holds (at most [`FINALIZER_ATTEMPTS`] times), so it never reaches the user.
pub async fn reconcile_finalized<K, F, Fut>(
    ctx: &Context,
    controller: &'static str,
    finalizer_name: &str,
    backoff_key: &str,
    obj: Arc<K>,
    reconcile: F,
) -> Result<kube::runtime::controller::Action, crate::Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    F: FnOnce(kube::runtime::finalizer::Event<K>) -> Fut,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, crate::Error>>,
{
    use kube::ResourceExt;
    use kube::runtime::finalizer;
    let started = Instant::now();
    let api: kube::Api<K> = kube::Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let result =
        finalized(&api, finalizer_name, obj, reconcile).await.map_err(|e| crate::Error::Finalizer(Box::new(e)));
    let label = match &result {
        Ok(_) => "success",
        Err(crate::Error::Finalizer(e)) => match e.as_ref() {
            finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
            _ => "finalizer",
        },
        Err(e) => e.metric_label(),
    };
    ctx.metrics.reconciled(controller, label, started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff.succeeded(backoff_key);
    }
    result
}

/// How many times a finalizer patch is sent when the server's copy differs from ours (re-read in between).
pub const FINALIZER_ATTEMPTS: u32 = 4;

/// kube-runtime's `finalizer()` state machine with the same requests, except that a patch refused because
/// our copy is stale (422 from the failed `test`, 409) re-reads the object and tries again.
async fn finalized<K, F, Fut>(
    api: &kube::Api<K>,
    finalizer_name: &str,
    mut obj: Arc<K>,
    reconcile: F,
) -> Result<kube::runtime::controller::Action, kube::runtime::finalizer::Error<crate::Error>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    F: FnOnce(kube::runtime::finalizer::Event<K>) -> Fut,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, crate::Error>>,
{
    use kube::ResourceExt;
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{Error, Event};
    let name = obj.meta().name.clone().ok_or(Error::UnnamedObject)?;
    let position = |o: &K| o.finalizers().iter().position(|f| f == finalizer_name);
    let mut attempts = 1;
    // Before anything else, the finalizer must be on the object: a deletion that starts after the first
    // apply must find it there, or what the object made would be left behind.
    while position(&obj).is_none() {
        if obj.meta().deletion_timestamp.is_some() {
            // Being deleted and not ours to clean up (never got the finalizer, or already cleaned up).
            return Ok(Action::await_change());
        }
        let patch = serde_json::from_value(add_patch(&*obj, finalizer_name)).map_err(|_| Error::InvalidFinalizer)?;
        match api.patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Json::<()>(patch)).await {
            // The patch wakes the controller with the object that has it; the apply runs then.
            Ok(_) => return Ok(Action::await_change()),
            Err(e) if stale_copy(&e) && attempts < FINALIZER_ATTEMPTS => {
                attempts += 1;
                tracing::debug!(object = %name, error = %e, "finalizer add refused for a stale copy; reading it again");
                match api.get_opt(&name).await.map_err(Error::AddFinalizer)? {
                    Some(fresh) => obj = Arc::new(fresh),
                    None => return Ok(Action::await_change()),
                }
            }
            Err(e) => return Err(Error::AddFinalizer(e)),
        }
    }
    if obj.meta().deletion_timestamp.is_none() {
        return reconcile(Event::Apply(obj)).await.map_err(Error::ApplyFailed);
    }
    let uid = obj.meta().uid.clone();
    // Cleanup must succeed before the finalizer goes, so that a failed one is tried again.
    let action = reconcile(Event::Cleanup(obj.clone())).await.map_err(Error::CleanupFailed)?;
    while let Some(index) = position(&obj) {
        let patch = serde_json::from_value(serde_json::json!([
            // By index, so `test` makes sure it is still ours that goes (a stale index would remove another's).
            {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": finalizer_name},
            {"op": "remove", "path": format!("/metadata/finalizers/{index}")}
        ]))
        .map_err(|_| Error::InvalidFinalizer)?;
        match api.patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Json::<()>(patch)).await {
            Ok(_) => break,
            Err(e) if stale_copy(&e) && attempts < FINALIZER_ATTEMPTS => {
                attempts += 1;
                tracing::debug!(object = %name, error = %e, "finalizer removal refused for a stale copy; reading it again");
                match api.get_opt(&name).await.map_err(Error::RemoveFinalizer)? {
                    // Only the object that was cleaned up: one made anew under the same name is not.
                    Some(fresh) if fresh.meta().uid == uid => obj = Arc::new(fresh),
                    _ => break,
                }
            }
            Err(e) => return Err(Error::RemoveFinalizer(e)),
        }
    }
    Ok(action)
}

/// kube-runtime's add: `test` that the list is what we saw, then add to it (Kubernetes does not deduplicate
/// finalizers, so adding to a list that changed meanwhile could add ours twice).
fn add_patch<K: kube::Resource>(obj: &K, finalizer_name: &str) -> serde_json::Value {
    use kube::ResourceExt;
    if obj.finalizers().is_empty() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [finalizer_name]}
        ])
    } else {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": obj.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer_name}
        ])
    }
}

/// A finalizer patch the API server refused because the list differs from the copy the patch was made from:
/// 422 Invalid (a failed JSON patch `test`) or 409 Conflict.
fn stale_copy(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422 || s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_gate_waits_only_for_the_same_spec_within_the_interval() {
        let g = SyncGate::default();
        let minute = Duration::from_secs(60);
        assert_eq!(g.wait("ns/a", 1, minute), None, "never synced: due");
        g.done("ns/a", 1);
        let left = g.wait("ns/a", 1, minute).expect("synced just now");
        assert!(left <= minute && left > Duration::from_secs(59));
        assert_eq!(g.wait("ns/a", 2, minute), None, "spec or requestedAt changed: due");
        assert_eq!(g.wait("ns/a", 1, Duration::ZERO), None, "interval over: due");
        assert_eq!(g.wait("ns/b", 1, minute), None);
        g.forget("ns/a");
        assert_eq!(g.wait("ns/a", 1, minute), None);
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let b = Backoff::default();
        let first = b.failed("ns/a");
        let second = b.failed("ns/a");
        assert!(first >= Backoff::BASE && first < Backoff::BASE.mul_f64(1.1), "{first:?}");
        assert!(second >= Backoff::BASE * 2 && second < (Backoff::BASE * 2).mul_f64(1.1), "{second:?}");
        for _ in 0..20 {
            b.failed("ns/a");
        }
        assert!(b.failed("ns/a") <= Backoff::MAX.mul_f64(1.1));
        // Another object's failures are its own.
        assert!(b.failed("ns/b") < Backoff::BASE * 2);
        b.succeeded("ns/a");
        assert_eq!(b.failures("ns/a"), 0);
        assert!(b.failed("ns/a") < Backoff::BASE * 2);
    }
}
