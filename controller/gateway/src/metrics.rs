//! Prometheus metrics: decisions, their latency, upstream latency, tokens and cost, responses charged
//! their worst case because their usage never came, the egress proxy's outcomes and tunnel bytes, and the
//! policy revision this gateway enforces.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub phase: String,
    pub verdict: String,
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub model: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WireLabels {
    pub wire: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

/// An egress outcome: `phase` (`egress`, `git_push`), `scheme` (`https`, `http`, empty for a push) and
/// `verdict` (`allow`, `deny`, `ask` (then refused), `error`, or `refused` when the gateway refused on its own
/// account: a tunnel cut for its SNI, a name resolving to a private address, a body it cannot read).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EgressLabels {
    pub phase: String,
    pub scheme: String,
    pub verdict: String,
}

/// `up` (from the sandbox) or `down` (to it).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevisionLabels {
    pub revision: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub decisions: Family<DecisionLabels, Counter>,
    pub decision_seconds: Histograms<PhaseLabels>,
    pub upstream_seconds: Histograms<ProviderLabels>,
    pub tokens: Family<TokenLabels, Counter>,
    pub cost_usd: Family<ModelLabels, Counter<f64, AtomicU64>>,
    pub usage_missing: Family<WireLabels, Counter>,
    pub egress: Family<EgressLabels, Counter>,
    pub egress_bytes: Family<DirectionLabels, Counter>,
    /// 1 for the revision enforced now, the only one listed.
    policy_revision: Family<RevisionLabels, Gauge>,
    pub dead_holds_charged: Counter,
}

fn latency() -> Histogram {
    // 10 µs … ~80 s
    Histogram::new(exponential_buckets(0.00001, 2.5, 18))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("paddock_gateway");
        let decisions = Family::<DecisionLabels, Counter>::default();
        let decision_seconds: Histograms<PhaseLabels> = Family::new_with_constructor(latency);
        let upstream_seconds: Histograms<ProviderLabels> = Family::new_with_constructor(latency);
        let tokens = Family::<TokenLabels, Counter>::default();
        let cost_usd = Family::<ModelLabels, Counter<f64, AtomicU64>>::default();
        registry.register("decisions", "Policy decisions by phase, verdict and deciding policy", decisions.clone());
        registry.register("decision_seconds", "Time to decide, including the durable write", decision_seconds.clone());
        registry.register(
            "upstream_seconds",
            "Time from sending a request upstream to its response headers",
            upstream_seconds.clone(),
        );
        registry.register("tokens", "Tokens metered, by model and kind", tokens.clone());
        registry.register("cost_usd", "Cost metered in US dollars, by model", cost_usd.clone());
        let usage_missing = Family::<WireLabels, Counter>::default();
        registry.register(
            "usage_missing",
            "Responses without final usage (cut off, malformed, or never sent), charged their worst case",
            usage_missing.clone(),
        );
        let egress = Family::<EgressLabels, Counter>::default();
        registry.register("egress", "Egress proxy outcomes by phase, scheme and verdict", egress.clone());
        let egress_bytes = Family::<DirectionLabels, Counter>::default();
        registry.register("egress_bytes", "Bytes relayed through egress tunnels, by direction", egress_bytes.clone());
        let policy_revision = Family::<RevisionLabels, Gauge>::default();
        registry.register(
            "policy_revision",
            "The policy revision this gateway enforces (value 1; the revision is the label)",
            policy_revision.clone(),
        );
        let dead_holds_charged = Counter::default();
        registry.register(
            "dead_replica_holds_charged",
            "Budget holds of a replica that stopped beating, charged at their worst case by this one",
            dead_holds_charged.clone(),
        );
        Metrics {
            registry,
            policy_revision,
            dead_holds_charged,
            decisions,
            decision_seconds,
            upstream_seconds,
            tokens,
            cost_usd,
            usage_missing,
            egress,
            egress_bytes,
        }
    }

    /// Adds the store's back-pressure: the log's backlog and the writers that waited for it.
    pub fn register_backlog(&mut self, b: &crate::store::Backlog) {
        self.registry.register(
            "log_backlog_records",
            "Records in the gateway's log not yet applied to its SQLite database",
            b.records.clone(),
        );
        self.registry.register(
            "log_waits",
            "Writes that waited for the database to catch up with the gateway's log",
            b.waits.clone(),
        );
        self.registry.register(
            "log_wait_seconds",
            "Time writes waited for the database to catch up with the gateway's log",
            b.wait_seconds.clone(),
        );
    }

    /// Lists `revision` as the one enforced from now on.
    pub fn set_revision(&self, revision: &str) {
        self.policy_revision.clear();
        self.policy_revision.get_or_create(&RevisionLabels { revision: revision.to_owned() }).set(1);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encode metrics");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
