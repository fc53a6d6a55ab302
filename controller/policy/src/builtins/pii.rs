//! `deny_pii_in_llm_request`: scans the **whole** outgoing request — system prompt, every message, tool
//! results, the raw body — not a preview, and the text of inline base64 documents. Detectors validate
//! checksums (Luhn, IBAN mod-97) before firing; the scanner normalises spellings first (see [`crate::pii`]).

use std::collections::BTreeSet;

use paddock_api::Phase;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Builtin, BuiltinDef, Mutation, Outcome, RuleCtx, build_with, schema_of};
use crate::event::{Event, map_strings};
use crate::pii::{
    DocumentText, MAX_DOCUMENT_BYTES, PiiType, contains_any, for_each_document, map_documents, redact, scan,
};
use crate::state::SessionState;
use crate::tools::ToolUse;

fn all_types() -> Vec<PiiType> {
    PiiType::ALL.to_vec()
}

fn pii_types_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = PiiType::ALL.iter().map(|t| t.as_str()).collect();
    schemars::json_schema!({
        "type": "array",
        "description": "What to look for: email, phone, ssn, credit_card, iban, ip_address, secret. Default: all.",
        "items": {"type": "string", "enum": names}
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiParams {
    #[serde(default = "all_types")]
    #[schemars(schema_with = "pii_types_schema")]
    pub pii_types: Vec<PiiType>,
    /// `deny` the request, `ask` a human, or `redact` the findings and let it go.
    #[serde(default)]
    pub action: PiiAction,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PiiAction {
    #[default]
    Deny,
    Ask,
    Redact,
}

pub const DENY_PII_IN_LLM_REQUEST: BuiltinDef = BuiltinDef {
    name: "deny_pii_in_llm_request",
    summary: "scan the whole outgoing request for PII and secrets; deny, ask or redact",
    phases: &[Phase::Request, Phase::LlmRequest],
    schema: schema_of::<PiiParams>,
    build: |v| {
        build_with(v, |p: PiiParams| {
            if p.pii_types.is_empty() {
                return Err("`pii_types` is empty, so the rule would check nothing".into());
            }
            Ok(Pii { p })
        })
    },
};

struct Pii {
    p: PiiParams,
}

/// Every JSON value of the event that can carry an inline document.
fn values(event: &Event) -> impl Iterator<Item = &serde_json::Value> {
    event
        .system
        .iter()
        .chain(&event.messages)
        .chain(&event.body)
        .chain(&event.output)
        .chain(std::iter::once(&event.args))
        .chain(event.tool_calls.iter().map(|c| &c.args))
}

/// The decoded text of every inline document (`document` blocks, `input_file`, `inline_data`), and how many
/// were too large to read.
fn documents(event: &Event) -> (Vec<String>, usize) {
    let (mut texts, mut too_large) = (Vec::new(), 0);
    for v in values(event) {
        for_each_document(v, &mut |d| match d {
            DocumentText::Text(t) => texts.push(t),
            DocumentText::TooLarge => too_large += 1,
        });
    }
    (texts, too_large)
}

impl Builtin for Pii {
    fn evaluate(&self, _: &RuleCtx, event: &Event, _: &[ToolUse], _: &SessionState) -> Result<Outcome, String> {
        let types = &self.p.pii_types;
        let (docs, too_large) = documents(event);
        let mut hit = too_large > 0 || docs.iter().any(|d| contains_any(d, types));
        event.for_each_text(&mut |s| hit = hit || contains_any(s, types));
        if !hit {
            return Ok(Outcome::allow());
        }
        let mut found = BTreeSet::new();
        let mut count = 0;
        let mut tally = |s: &str| {
            for f in scan(s, types) {
                found.insert(f.kind.as_str());
                count += 1;
            }
        };
        event.for_each_text(&mut tally);
        docs.iter().for_each(|d| tally(d));
        let mut parts = Vec::new();
        if count > 0 {
            let kinds = found.into_iter().collect::<Vec<_>>().join(", ");
            let what = match event.phase {
                Phase::ToolResult => "the tool result",
                Phase::ToolCall | Phase::LlmResponse => "the tool call",
                _ => "the request",
            };
            parts.push(format!("{what} contains {kinds} ({count} finding{})", if count == 1 { "" } else { "s" }));
        }
        if too_large > 0 {
            // Fail closed: what was not read is not known to be clean.
            parts.push(format!(
                "{too_large} inline document{} larger than {} MiB could not be scanned",
                if too_large == 1 { "" } else { "s" },
                MAX_DOCUMENT_BYTES >> 20
            ));
        }
        let reason = parts.join("; ");
        match self.p.action {
            PiiAction::Deny => Ok(Outcome::deny(reason)),
            PiiAction::Ask => Ok(Outcome::ask(reason)),
            // Text that was not read cannot be redacted: a human decides.
            PiiAction::Redact if too_large > 0 => Ok(Outcome::ask(reason)),
            PiiAction::Redact => {
                let mut redacted = event.clone();
                let mut rewrite = |s: &str| {
                    let f = scan(s, types);
                    (!f.is_empty()).then(|| redact(s, &f))
                };
                if let Some(t) = redacted.text.as_mut()
                    && let Some(new) = rewrite(t)
                {
                    *t = new;
                }
                for v in redacted
                    .system
                    .iter_mut()
                    .chain(redacted.messages.iter_mut())
                    .chain(redacted.body.iter_mut())
                    .chain(redacted.output.iter_mut())
                    .chain(std::iter::once(&mut redacted.args))
                    .chain(redacted.tool_calls.iter_mut().map(|c| &mut c.args))
                {
                    // Documents first: their base64 is re-encoded from the redacted text, then scanned as a
                    // string like any other.
                    map_documents(v, &mut rewrite);
                    map_strings(v, &mut rewrite);
                }
                let mut o = Outcome::allow();
                o.reason = format!("{reason}; redacted");
                o.rewrite = Some((redacted, Mutation::Redact { findings: count }));
                Ok(o)
            }
        }
    }
}
