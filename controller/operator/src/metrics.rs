//! Prometheus metrics of the controller, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `gitsource`, `agent`, `policy`, `session` or `approval`.
    pub controller: String,
    /// `success` or an error class (`git`, `kube`, `apply`, …).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// `created`, `configured`, `drift_corrected`, `unchanged` or `pruned`.
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `accepted`, `unauthorized`, `not_found`, `ignored` or `error`.
    pub result: String,
}

/// Every metric, registered in one registry.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_seconds: Family<ControllerLabel, Histogram>,
    pub objects: Family<ActionLabels, Counter>,
    pub refused_revisions: Counter,
    pub webhooks: Family<WebhookLabels, Counter>,
    pub leader: Gauge,
    pub sessions_started: Counter,
    pub session_status_deferred: Counter,
    pub approvals_relayed: Counter,
    pub session_revocations_abandoned: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("paddock_controller");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register("reconciles", "Reconciles by controller and result", reconciles.clone());
        let reconcile_seconds = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register("reconcile_duration_seconds", "Time spent in one reconcile", reconcile_seconds.clone());
        let objects = Family::<ActionLabels, Counter>::default();
        registry.register("gitsource_objects", "Objects applied or pruned by GitSources, by outcome", objects.clone());
        let refused_revisions = Counter::default();
        registry.register(
            "gitsource_refused_revisions",
            "Revisions refused because they did not validate",
            refused_revisions.clone(),
        );
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register("webhook_requests", "Git webhook requests by result", webhooks.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the leader Lease", leader.clone());
        let sessions_started = Counter::default();
        registry.register("sessions_started", "Runner pods created for Sessions", sessions_started.clone());
        let session_status_deferred = Counter::default();
        registry.register(
            "session_status_deferred",
            "Session status writes put off because the same Session was written moments before",
            session_status_deferred.clone(),
        );
        let approvals_relayed = Counter::default();
        registry.register("approvals_relayed", "Approval decisions accepted by the gateway", approvals_relayed.clone());
        let session_revocations_abandoned = Counter::default();
        registry.register(
            "session_revocations_abandoned",
            "Deleted Sessions let go without their token revoked, because the gateway could not end the session",
            session_revocations_abandoned.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_seconds,
            objects,
            refused_revisions,
            webhooks,
            leader,
            sessions_started,
            session_status_deferred,
            approvals_relayed,
            session_revocations_abandoned,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, controller: &str, result: &str, seconds: f64) {
        self.reconciles.get_or_create(&ReconcileLabels { controller: controller.into(), result: result.into() }).inc();
        self.reconcile_seconds.get_or_create(&ControllerLabel { controller: controller.into() }).observe(seconds);
    }

    pub fn objects(&self, action: &str, n: u64) {
        if n > 0 {
            self.objects.get_or_create(&ActionLabels { action: action.into() }).inc_by(n);
        }
    }

    pub fn webhook(&self, result: &str) {
        self.webhooks.get_or_create(&WebhookLabels { result: result.into() }).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_counters_by_label() {
        let m = Metrics::default();
        m.reconciled("gitsource", "success", 0.01);
        m.objects("pruned", 2);
        m.leader.set(1);
        m.session_revocations_abandoned.inc();
        let text = m.encode();
        assert!(
            text.contains(r#"paddock_controller_reconciles_total{controller="gitsource",result="success"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"paddock_controller_gitsource_objects_total{action="pruned"} 2"#), "{text}");
        assert!(text.contains("paddock_controller_leader 1"), "{text}");
        assert!(text.contains("paddock_controller_session_revocations_abandoned_total 1"), "{text}");
    }
}
