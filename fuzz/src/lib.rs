//! What the fuzz targets share: carving choices out of the fuzzer's bytes, and the decision every parsed
//! event ends in (the agents-repo template's policies, as the gateway would evaluate them).

use std::path::Path;
use std::sync::OnceLock;

use paddock_policy::{CompiledPolicy, Event, SessionState, evaluate};

/// The fuzzer's bytes read as a few choices followed by the input proper.
pub struct Choices<'a>(pub &'a [u8]);

impl<'a> Choices<'a> {
    /// One choice byte (0 when the input is used up).
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    /// The rest of the input.
    pub fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// `data` cut into pieces at each `0xff` byte (which UTF-8 text never holds), at most `max` pieces.
pub fn pieces(data: &[u8], max: usize) -> Vec<&[u8]> {
    data.splitn(max, |b| *b == 0xff).collect()
}

/// The policies of the template's `coder` agent (its inline rules, the baseline and the GitHub policy).
pub fn policies() -> &'static [CompiledPolicy] {
    static POLICIES: OnceLock<Vec<CompiledPolicy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agents-repo-template");
        let set = paddock_gateway::server::load_policy_set(&repo).expect("the template's policies load");
        set.agent("default", "coder").expect("the template's coder agent").policies.clone()
    })
}

/// Decides `event` as the gateway would, then applies the decision's state updates: neither may panic.
pub fn decide(event: &Event) {
    let mut state = SessionState::default();
    let decision = evaluate(event, &state, policies());
    state.apply(&decision.state_updates);
}
