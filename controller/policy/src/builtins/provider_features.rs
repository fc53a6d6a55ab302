//! `provider_features`: which provider-side fetches and state a model request may use. The gateway finds
//! them in the request (a URL the provider downloads, a stored file, prompt, response or conversation, a
//! background run) and refuses them itself unless an enforced rule of this builtin governs the agent; the
//! rule then allows the features it lists and answers `action` for the rest.

use paddock_api::Phase;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, Builtin, BuiltinDef, Outcome, RuleCtx, build_with, schema_of};
use crate::event::Event;
use crate::state::SessionState;
use crate::tools::ToolUse;

/// A provider-side feature a request can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderFeature {
    /// The provider downloads a URL: Anthropic `source.type: url`, Chat `image_url.url`, Responses
    /// `input_image.image_url` and `input_file.file_url` (anything but a `data:` URL).
    UrlInputs,
    /// The provider reads state it keeps: uploaded files (`file_id`, `source.type: file`), stored prompts
    /// (`prompt`), earlier responses (`previous_response_id`, `item_reference`), conversations, audio ids.
    StoredState,
    /// The provider runs the request in the background (`background: true`) and answers later.
    Background,
}

impl ProviderFeature {
    fn as_str(self) -> &'static str {
        match self {
            ProviderFeature::UrlInputs => "url_inputs",
            ProviderFeature::StoredState => "stored_state",
            ProviderFeature::Background => "background",
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderFeaturesParams {
    /// Features requests may use. Empty allows none (the gateway's default without this rule).
    #[serde(default)]
    pub allow: Vec<ProviderFeature>,
    /// What a request using any other feature gets: `deny` (default) or `ask`.
    #[serde(default)]
    pub action: Action,
}

pub const PROVIDER_FEATURES: BuiltinDef = BuiltinDef {
    name: "provider_features",
    summary: "allow provider-side fetches and state (URL inputs, stored files and responses, background runs)",
    phases: &[Phase::LlmRequest],
    schema: schema_of::<ProviderFeaturesParams>,
    build: |v| build_with(v, |p: ProviderFeaturesParams| Ok(ProviderFeatures { p })),
};

struct ProviderFeatures {
    p: ProviderFeaturesParams,
}

impl Builtin for ProviderFeatures {
    fn evaluate(&self, _: &RuleCtx, event: &Event, _: &[ToolUse], _: &SessionState) -> Result<Outcome, String> {
        let refused: Vec<&str> = event
            .provider_features
            .iter()
            .map(String::as_str)
            .filter(|f| !self.p.allow.iter().any(|a| a.as_str() == *f))
            .collect();
        if refused.is_empty() {
            return Ok(Outcome::allow());
        }
        Ok(Outcome::act(
            self.p.action,
            format!(
                "the request asks the provider for {} (fetched or kept where no policy sees it); allowed: {}",
                refused.join(", "),
                if self.p.allow.is_empty() {
                    "none".to_owned()
                } else {
                    self.p.allow.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
                }
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use paddock_api::Verdict;
    use serde_json::json;

    use super::*;
    use crate::builtins::find;

    fn decide(params: serde_json::Value, features: &[&str]) -> Outcome {
        let rule = (find("provider_features").unwrap().build)(params).unwrap();
        let event = Event {
            phase: Phase::LlmRequest,
            provider_features: features.iter().map(|f| f.to_string()).collect(),
            ..Event::default()
        };
        let ctx = RuleCtx { policy: "p", rule: "r", catalog: paddock_api::catalog::ModelCatalog::builtin() };
        rule.evaluate(&ctx, &event, &[], &SessionState::default()).unwrap()
    }

    #[test]
    fn allows_only_what_it_lists() {
        assert_eq!(decide(json!({"allow": ["url_inputs"]}), &["url_inputs"]).verdict, Verdict::Allow);
        assert_eq!(decide(json!({}), &[]).verdict, Verdict::Allow);
        let o = decide(json!({"allow": ["url_inputs"]}), &["url_inputs", "stored_state"]);
        assert_eq!(o.verdict, Verdict::Deny);
        assert!(o.reason.contains("stored_state") && o.reason.contains("allowed: url_inputs"), "{}", o.reason);
        assert_eq!(decide(json!({"action": "ask"}), &["background"]).verdict, Verdict::Ask);
        // An unknown name in the event (a newer gateway) is refused, never allowed.
        assert_eq!(decide(json!({"allow": ["url_inputs"]}), &["something_new"]).verdict, Verdict::Deny);
        assert!((find("provider_features").unwrap().build)(json!({"allow": ["everything"]})).is_err());
    }
}
