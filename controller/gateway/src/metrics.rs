//! Prometheus metrics: decisions, their latency, upstream latency, tokens and cost, and responses charged
//! their worst case because their usage never came.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub decisions: Family<DecisionLabels, Counter>,
    pub decision_seconds: Histograms<PhaseLabels>,
    pub upstream_seconds: Histograms<ProviderLabels>,
    pub tokens: Family<TokenLabels, Counter>,
    pub cost_usd: Family<ModelLabels, Counter<f64, AtomicU64>>,
    pub usage_missing: Family<WireLabels, Counter>,
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
        Metrics { registry, decisions, decision_seconds, upstream_seconds, tokens, cost_usd, usage_missing }
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
