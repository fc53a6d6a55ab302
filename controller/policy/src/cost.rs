//! Pricing model calls with the model catalog. An unknown model has no price: its cost is `None`, which
//! cost policies handle explicitly — never as free.

use paddock_api::catalog::ModelCatalog;
use serde::{Deserialize, Serialize};

use crate::event::Usage;

/// The usage of one model call and what it cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metering {
    pub model: String,
    pub usage: Usage,
    /// `None` when the model is not in the catalog.
    pub cost_usd: Option<f64>,
}

impl Metering {
    pub fn tokens(&self) -> u64 {
        let u = self.usage;
        u.input_tokens + u.output_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens
    }
}

/// Prices `usage` of `model`.
pub fn meter(catalog: &ModelCatalog, model: &str, usage: Usage) -> Metering {
    let cost_usd = catalog.lookup(model).map(|m| {
        let p = m.price;
        (usage.input_tokens as f64 * p.input
            + usage.output_tokens as f64 * p.output
            + usage.cache_read_input_tokens as f64 * p.cache_read
            + usage.cache_creation_input_tokens as f64 * p.cache_write)
            / 1_000_000.0
    });
    Metering { model: model.to_owned(), usage, cost_usd }
}

/// The most a request can cost: its input tokens plus `max_tokens` of output at the model's price. The
/// gateway reserves this before a request leaves so that budgets never overshoot.
pub fn worst_case_usd(catalog: &ModelCatalog, model: &str, input_tokens: u64, max_tokens: u64) -> Option<f64> {
    catalog
        .lookup(model)
        .map(|m| (input_tokens as f64 * m.price.input + max_tokens as f64 * m.price.output) / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_every_token_class() {
        let c = ModelCatalog::builtin();
        let u = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cache_read_input_tokens: 1_000_000,
            cache_creation_input_tokens: 0,
        };
        let m = meter(c, "claude-sonnet-4-5-20250929", u);
        // 1M input at $3 + 100k output at $15 + 1M cache reads at $0.30
        assert!((m.cost_usd.unwrap() - (3.0 + 1.5 + 0.3)).abs() < 1e-9);
        assert_eq!(meter(c, "my-private-model", u).cost_usd, None, "unknown is not free");
        assert!((worst_case_usd(c, "gpt-5", 10_000, 1_000).unwrap() - (0.0125 + 0.01)).abs() < 1e-12);
    }
}
