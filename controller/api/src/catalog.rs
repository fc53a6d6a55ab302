//! The model catalog (`controller/api/models.yaml`): which models exist and what they cost.
//! Embedded at build time, so looking a model up does no IO.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

const CATALOG_YAML: &str = include_str!("../models.yaml");

/// Who serves a model; decides the wire format and the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Anthropic,
    Openai,
    Google,
    /// Paddock's scripted provider: replays a recorded conversation (demo and tests).
    Scripted,
}

/// Prices in US dollars per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Prices {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

/// One model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelInfo {
    pub id: String,
    pub provider: Provider,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub price: Prices,
    pub context_window: u64,
    /// Where the price was read.
    pub source: String,
    /// The date the price was read or took effect.
    pub as_of: String,
}

/// All known models.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCatalog {
    pub models: Vec<ModelInfo>,
}

/// A catalog file that does not hold together.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("model catalog is not valid YAML for its format: {0}")]
    Parse(#[from] serde_yaml_ng::Error),
    #[error("model catalog entry `{id}`: {problem}")]
    Entry { id: String, problem: String },
}

impl ModelCatalog {
    /// The catalog shipped with this build.
    pub fn builtin() -> &'static ModelCatalog {
        static CATALOG: OnceLock<ModelCatalog> = OnceLock::new();
        CATALOG
            .get_or_init(|| ModelCatalog::parse(CATALOG_YAML).expect("the shipped model catalog is checked by tests"))
    }

    /// Parses and checks a catalog: unique ids and aliases, positive prices, a source and a date.
    pub fn parse(yaml: &str) -> Result<ModelCatalog, CatalogError> {
        let catalog: ModelCatalog = serde_yaml_ng::from_str(yaml)?;
        let mut seen = std::collections::HashSet::new();
        for m in &catalog.models {
            let bad = |problem: &str| CatalogError::Entry { id: m.id.clone(), problem: problem.into() };
            for name in std::iter::once(&m.id).chain(&m.aliases) {
                if !seen.insert(name.to_ascii_lowercase()) {
                    return Err(bad(&format!("name `{name}` appears twice")));
                }
            }
            let p = m.price;
            if [p.input, p.output, p.cache_read, p.cache_write].iter().any(|x| !x.is_finite() || *x <= 0.0) {
                return Err(bad("every price must be a positive number"));
            }
            if m.source.trim().is_empty() || m.as_of.len() != 10 {
                return Err(bad("needs a `source` and an `asOf` date (YYYY-MM-DD)"));
            }
        }
        Ok(catalog)
    }

    /// Finds a model by id or alias, ignoring case; a dated id such as `claude-sonnet-4-5-20250929` also
    /// finds its undated entry.
    pub fn lookup(&self, name: &str) -> Option<&ModelInfo> {
        let find = |n: &str| {
            self.models
                .iter()
                .find(|m| m.id.eq_ignore_ascii_case(n) || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(n)))
        };
        find(name).or_else(|| strip_date_suffix(name).and_then(find))
    }

    /// Ids of all models, for messages.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.models.iter().map(|m| m.id.as_str())
    }
}

/// `claude-x-20250929` → `claude-x`; `gpt-x-2025-08-07` → `gpt-x`.
fn strip_date_suffix(name: &str) -> Option<&str> {
    let bytes = name.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if name.len() > 9 && bytes[name.len() - 9] == b'-' && digits(&bytes[name.len() - 8..]) {
        return Some(&name[..name.len() - 9]);
    }
    if name.len() > 11 {
        let tail = &bytes[name.len() - 11..];
        if tail[0] == b'-'
            && digits(&tail[1..5])
            && tail[5] == b'-'
            && digits(&tail[6..8])
            && tail[8] == b'-'
            && digits(&tail[9..])
        {
            return Some(&name[..name.len() - 11]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_catalog_parses_and_covers_three_providers() {
        let c = ModelCatalog::builtin();
        for p in [Provider::Anthropic, Provider::Openai, Provider::Google] {
            assert!(c.models.iter().filter(|m| m.provider == p).count() >= 3, "{p:?} has too few models");
        }
    }

    #[test]
    fn lookup_by_id_alias_case_and_date() {
        let c = ModelCatalog::builtin();
        assert_eq!(c.lookup("claude-sonnet-4-5").unwrap().price.input, 3.0);
        assert_eq!(c.lookup("claude-sonnet-4-5-20250929").unwrap().id, "claude-sonnet-4-5");
        assert_eq!(c.lookup("GPT-5").unwrap().id, "gpt-5");
        assert_eq!(c.lookup("gpt-5-mini-2025-08-07").unwrap().id, "gpt-5-mini");
        assert_eq!(c.lookup("claude-haiku-4-5-20991231").unwrap().id, "claude-haiku-4-5");
        assert!(c.lookup("gpt-6-ultra").is_none());
        assert!(c.lookup("").is_none());
    }

    #[test]
    fn duplicate_names_and_free_models_are_refused() {
        let dup = "models:\n- {id: a, provider: openai, aliases: [A], price: {input: 1, output: 1, cacheRead: 1, cacheWrite: 1}, contextWindow: 1, source: s, asOf: 2025-01-01}\n";
        assert!(ModelCatalog::parse(dup).unwrap_err().to_string().contains("appears twice"));
        let free = "models:\n- {id: a, provider: openai, price: {input: 0, output: 1, cacheRead: 1, cacheWrite: 1}, contextWindow: 1, source: s, asOf: 2025-01-01}\n";
        assert!(ModelCatalog::parse(free).unwrap_err().to_string().contains("positive"));
    }
}
