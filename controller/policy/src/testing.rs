//! The pure half of `paddock test`: run the cases of a policy test file against compiled policies and
//! compare what happened with what the file expects. Reading files lives in `paddock-gitops`.
//!
//! Each case is a fresh session; its steps share the session's state. A step's state updates apply when
//! the event is allowed, or asked and approved (`approve: true`); usage is metered whatever the verdict.

use std::collections::BTreeMap;

use paddock_api::Verdict;
use serde::Deserialize;

use crate::engine::{CompiledPolicy, Decision, evaluate};
use crate::event::Event;
use crate::state::SessionState;

/// A test file, minus its `policies:` (which the loader resolves).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub agent: TestAgent,
    /// Initial session state shared by every case (model, owner, workspace_repo, sandbox, ...).
    #[serde(default)]
    pub state: Option<SessionState>,
    pub cases: Vec<Case>,
}

/// The agent the events come from; decides which Policies select it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestAgent {
    #[serde(default = "default_agent")]
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub harness: Option<String>,
}

fn default_agent() -> String {
    "agent".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// State for this case, replacing the suite's.
    #[serde(default)]
    pub state: Option<SessionState>,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub event: Event,
    /// The verdict the step must get.
    #[serde(default)]
    pub expect: Option<Verdict>,
    /// The Policy that must have decided.
    #[serde(default)]
    pub policy: Option<String>,
    /// The rule that must have decided.
    #[serde(default)]
    pub rule: Option<String>,
    /// Text the reason must contain.
    #[serde(default)]
    pub reason_contains: Option<String>,
    /// For an ask: does the human approve (state updates apply) or not.
    #[serde(default)]
    pub approve: Option<bool>,
}

/// The outcome of one step that did not meet its expectation.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    pub step: usize,
    pub expected: Vec<String>,
    pub actual: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CaseResult {
    pub name: String,
    pub mismatches: Vec<Mismatch>,
    /// Every step's decision, for `--verbose` output.
    pub decisions: Vec<Decision>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// The session state a case starts from.
pub fn initial_state(suite: &Suite, case: &Case) -> SessionState {
    let mut s = case.state.clone().or_else(|| suite.state.clone()).unwrap_or_default();
    if s.agent.is_empty() {
        s.agent = suite.agent.name.clone();
    }
    if s.labels.is_empty() {
        s.labels = suite.agent.labels.clone();
    }
    if s.model.is_none() {
        s.model = suite.agent.model.clone();
    }
    if s.harness.is_none() {
        s.harness = suite.agent.harness.clone();
    }
    if s.session.is_empty() {
        s.session = format!("test/{}", case.name);
    }
    s
}

/// Runs one case.
pub fn run_case(suite: &Suite, case: &Case, policies: &[CompiledPolicy]) -> CaseResult {
    let mut state = initial_state(suite, case);
    let mut mismatches = Vec::new();
    let mut decisions = Vec::new();
    for (i, step) in case.steps.iter().enumerate() {
        let d = evaluate(&step.event, &state, policies);
        if let Some(m) = &d.metering {
            state.meter(m);
        }
        let goes_ahead = match d.verdict {
            Verdict::Allow => true,
            Verdict::Ask => step.approve == Some(true),
            Verdict::Deny => false,
        };
        if goes_ahead {
            state.apply(&d.state_updates);
        }
        if let Some(m) = compare(i + 1, step, &d) {
            mismatches.push(m);
        }
        decisions.push(d);
    }
    CaseResult { name: case.name.clone(), mismatches, decisions }
}

fn compare(step_no: usize, step: &Step, d: &Decision) -> Option<Mismatch> {
    let mut expected = Vec::new();
    let mut actual = Vec::new();
    let mut differs = false;
    if let Some(v) = step.expect {
        expected.push(format!("verdict: {}", Verdict::as_str(v)));
        actual.push(format!("verdict: {}", Verdict::as_str(d.verdict)));
        differs |= v != d.verdict;
    }
    let decided_by = |name: &Option<String>, field: &str| name.clone().unwrap_or_else(|| format!("(no {field})"));
    if let Some(p) = &step.policy {
        expected.push(format!("policy:  {p}"));
        actual.push(format!("policy:  {}", decided_by(&d.policy, "policy")));
        differs |= d.policy.as_deref() != Some(p);
    }
    if let Some(r) = &step.rule {
        expected.push(format!("rule:    {r}"));
        actual.push(format!("rule:    {}", decided_by(&d.rule, "rule")));
        differs |= d.rule.as_deref() != Some(r);
    }
    if let Some(text) = &step.reason_contains {
        expected.push(format!("reason contains: {text}"));
        actual.push(format!("reason: {}", if d.reason.is_empty() { "(none)" } else { &d.reason }));
        differs |= !d.reason.contains(text.as_str());
    }
    if differs {
        if !d.reason.is_empty() && step.reason_contains.is_none() {
            actual.push(format!("reason:  {}", d.reason));
        }
        Some(Mismatch { step: step_no, expected, actual })
    } else {
        None
    }
}
