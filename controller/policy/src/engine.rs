//! Compiling Policies into rules and evaluating an event against them.
//!
//! Order: the caller passes policies in evaluation order — session level, then agent level (the Agent's
//! inline rules and the Policies it names), then namespace Policies that select it. The first enforced
//! deny ends evaluation; asks merge into one approval; `Audit` policies record what they would have done
//! and allow. State updates come back with the decision and apply only if the event goes ahead.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use paddock_api::catalog::ModelCatalog;
use paddock_api::policy::{FailurePolicy, LabelSelector, PolicyMode, SelectorOperator};
use paddock_api::{Phase, PolicyRule, PolicySpec, Verdict};
use serde::Serialize;
use serde_json::Value;

use crate::builtins::{self, Builtin, Mutation, RuleCtx};
use crate::cost::{Metering, meter};
use crate::egress;
use crate::event::Event;
use crate::state::{SessionState, StateUpdate};
use crate::tools::ToolUse;
use crate::written::{FileWrite, MAX_CONTENT, Written};

/// Where a policy comes from; reported with each decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Session,
    Agent,
    Namespace,
}

/// A rule ready to evaluate. Cloning shares the compiled builtin.
#[derive(Clone)]
pub struct CompiledRule {
    pub name: String,
    pub uses: String,
    pub phases: Vec<Phase>,
    pub action: Option<Verdict>,
    builtin: std::sync::Arc<dyn Builtin>,
}

impl std::fmt::Debug for CompiledRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledRule").field("name", &self.name).field("uses", &self.uses).finish_non_exhaustive()
    }
}

/// A Policy ready to evaluate.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    pub name: String,
    pub level: Level,
    pub mode: PolicyMode,
    pub failure_policy: FailurePolicy,
    pub rules: Vec<CompiledRule>,
}

/// A rule whose parameters are invalid. `path` is inside the rule (`["with", "max_cost_usd"]`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule_index} ({rule}): {}{message}", if path.is_empty() { String::new() } else { format!("{}: ", path.join(".")) })]
pub struct RuleError {
    pub rule_index: usize,
    pub rule: String,
    pub path: Vec<String>,
    pub message: String,
}

impl RuleError {
    /// The error at its field under `list`, the path of the rule list in the object the user wrote:
    /// `spec.policy.rules[0].action: …`.
    pub fn at(&self, list: &str) -> String {
        let field = self.path.iter().fold(format!("{list}[{}]", self.rule_index), |f, p| format!("{f}.{p}"));
        format!("{field}: {}", self.message)
    }
}

/// Checks a rule's builtin name and parameters, then builds it.
pub fn compile_rule(index: usize, rule: &PolicyRule) -> Result<CompiledRule, Vec<RuleError>> {
    let err =
        |path: Vec<String>, message: String| RuleError { rule_index: index, rule: rule.name.clone(), path, message };
    let Some(def) = builtins::find(&rule.uses) else {
        return Err(vec![err(vec!["use".into()], format!("`{}` is not a builtin policy", rule.uses))]);
    };
    let params = rule.params.clone().unwrap_or_else(|| Value::Object(Default::default()));
    let validator = param_validator(def.name);
    let errors: Vec<RuleError> = validator
        .iter_errors(&params)
        .map(|e| {
            let mut path = vec!["with".to_owned()];
            path.extend(e.instance_path().iter().map(|s| s.to_string()));
            if let jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } = e.kind() {
                path.extend(unexpected.first().cloned());
            }
            err(path, param_message(def, &e))
        })
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let builtin = (def.build)(params).map_err(|m| vec![err(vec!["with".into()], m)])?;
    if rule.action == Some(Verdict::Allow) {
        return Err(vec![err(
            vec!["action".into()],
            "`action: allow` would switch the rule off; to watch without enforcing, use the Policy's `mode: Audit`"
                .into(),
        )]);
    }
    let phases = if rule.on.is_empty() { def.phases.to_vec() } else { rule.on.clone() };
    Ok(CompiledRule {
        name: rule.name.clone(),
        uses: rule.uses.clone(),
        phases,
        action: rule.action,
        builtin: builtin.into(),
    })
}

fn param_message(def: &builtins::BuiltinDef, e: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    match e.kind() {
        K::AdditionalProperties { unexpected } => {
            let schema = (def.schema)();
            let known: Vec<&str> = schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            format!("unknown parameter `{}`; `{}` takes: {}", unexpected.join("`, `"), def.name, known.join(", "))
        }
        K::Required { property } => format!("required parameter {property} is missing"),
        _ => e.to_string(),
    }
}

fn param_validator(name: &str) -> &'static jsonschema::Validator {
    static VALIDATORS: OnceLock<BTreeMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    VALIDATORS
        .get_or_init(|| {
            builtins::REGISTRY
                .iter()
                .map(|d| (d.name, jsonschema::validator_for(&(d.schema)()).expect("builtin schemas compile")))
                .collect()
        })
        .get(name)
        .expect("every builtin has a validator")
}

/// Compiles a Policy; all rule errors are reported together.
pub fn compile_policy(name: &str, level: Level, spec: &PolicySpec) -> Result<CompiledPolicy, Vec<RuleError>> {
    let rules = compile_rules(&spec.rules)?;
    Ok(CompiledPolicy { name: name.to_owned(), level, mode: spec.mode, failure_policy: spec.failure_policy, rules })
}

/// Compiles an Agent's inline rules into an agent-level policy named `agent/<name>`.
pub fn compile_agent_rules(agent: &str, rules: &[PolicyRule]) -> Result<CompiledPolicy, Vec<RuleError>> {
    Ok(CompiledPolicy {
        name: format!("agent/{agent}"),
        level: Level::Agent,
        mode: PolicyMode::Enforce,
        failure_policy: FailurePolicy::Fail,
        rules: compile_rules(rules)?,
    })
}

/// The name decisions give a Session's own rules: `session/<session id>`. A Policy's name cannot hold a `/`,
/// so no Policy is ever mistaken for it (nor counted as it).
pub fn session_policy_name(session: &str) -> String {
    format!("session/{session}")
}

/// Compiles a Session's own rules (`spec.policy.rules`) into the session-level policy, evaluated before every
/// other level. They can only tighten what the Agent's and the namespace's Policies allow: a rule may deny or
/// ask, never `action: allow`; evaluation goes on past them (only a deny ends it), so they cannot lift a
/// later deny; budgets they set add a limit. Names must be unique: a rule's state is kept under its name.
pub fn compile_session_rules(session: &str, rules: &[PolicyRule]) -> Result<CompiledPolicy, Vec<RuleError>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let err = |path: &str, message: String| RuleError {
            rule_index: i,
            rule: r.name.clone(),
            path: vec![path.to_owned()],
            message,
        };
        if r.action == Some(Verdict::Allow) {
            errors.push(err(
                "action",
                "a session rule may only tighten what the Policies allow: `deny` or `ask`, never `allow`".into(),
            ));
            // Its parameters are still checked, so that one round of fixes is enough.
            if let Err(e) = compile_rule(i, r) {
                errors.extend(e.into_iter().filter(|e| e.path != ["action"]));
            }
            continue;
        }
        if let Some(first) = rules[..i].iter().position(|o| o.name == r.name) {
            errors.push(err("name", format!("`{}` is also the name of rule {first}; names must be unique", r.name)));
        }
        // A rewrite (`redact`, `route`) would be judged by every later level in place of what runs: in phases
        // whose caller runs the original (a tool call), a session could hide an argument from the
        // namespace's rules, and `route` could pick any model. A session rule only denies or asks.
        if let Some(a) = r.params.as_ref().and_then(|p| p.get("action")).and_then(|a| a.as_str())
            && matches!(a, "redact" | "route")
        {
            errors.push(RuleError {
                rule_index: i,
                rule: r.name.clone(),
                path: vec!["with".into(), "action".into()],
                message: format!(
                    "a session rule may not rewrite the event (`{a}`): later rules would judge the rewrite, not \
                     what runs; use `deny` or `ask`"
                ),
            });
        }
        match compile_rule(i, r) {
            Ok(c) => out.push(c),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(CompiledPolicy {
        name: session_policy_name(session),
        level: Level::Session,
        mode: PolicyMode::Enforce,
        failure_policy: FailurePolicy::Fail,
        rules: out,
    })
}

fn compile_rules(rules: &[PolicyRule]) -> Result<Vec<CompiledRule>, Vec<RuleError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        match compile_rule(i, r) {
            Ok(c) => out.push(c),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// Whether a Policy governs an Agent: by name in `agents`, by `selector`, or (with neither) always.
pub fn selects(spec: &PolicySpec, agent: &str, labels: &BTreeMap<String, String>) -> bool {
    match &spec.selector {
        None => spec.agents.is_empty() || spec.agents.iter().any(|a| a == agent),
        Some(sel) => spec.agents.iter().any(|a| a == agent) || selector_matches(sel, labels),
    }
}

fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().all(|r| {
            let v = labels.get(&r.key);
            match r.operator {
                SelectorOperator::In => v.is_some_and(|v| r.values.contains(v)),
                SelectorOperator::NotIn => v.is_none_or(|v| !r.values.contains(v)),
                SelectorOperator::Exists => v.is_some(),
                SelectorOperator::DoesNotExist => v.is_none(),
            }
        })
}

/// One rule's say in a decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    pub policy: String,
    pub rule: String,
    pub level: Level,
    pub verdict: Verdict,
    pub reason: String,
}

/// The engine's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// The policy and rule that decided (the denying one, or the first that asked).
    pub policy: Option<String>,
    pub rule: Option<String>,
    pub reason: String,
    /// Every rule that asked; one approval covers them all.
    pub asks: Vec<Hit>,
    /// What `Audit` policies would have done, and rule errors that were ignored.
    pub audit: Vec<Hit>,
    /// Apply with [`SessionState::apply`] if the event goes ahead (allowed, or asked and approved).
    pub state_updates: Vec<StateUpdate>,
    /// Changes made to the event, in order.
    pub mutations: Vec<Mutation>,
    /// The rewritten event, when a rule changed it; the gateway forwards this instead.
    #[serde(skip)]
    pub event: Option<Event>,
    /// The usage of an `llm_response`, priced. Apply with [`SessionState::meter`] whatever the verdict.
    pub metering: Option<Metering>,
}

impl Decision {
    fn allow() -> Decision {
        Decision {
            verdict: Verdict::Allow,
            policy: None,
            rule: None,
            reason: String::new(),
            asks: Vec::new(),
            audit: Vec::new(),
            state_updates: Vec::new(),
            mutations: Vec::new(),
            event: None,
            metering: None,
        }
    }
}

/// Phases that fail closed when a rule cannot be evaluated (unless its Policy says `failurePolicy: Ignore`).
/// `llm_response` is among them: for a harness without hooks (Codex) it is the only gate on tool calls; so are
/// `egress` and `git_push`, where the effect happens.
pub fn fails_closed(phase: Phase) -> bool {
    matches!(
        phase,
        // `response` too: a secret scanner that cannot run must not let the final answer out.
        Phase::Request
            | Phase::Response
            | Phase::LlmRequest
            | Phase::LlmResponse
            | Phase::ToolCall
            | Phase::Egress
            | Phase::GitPush
    )
}

/// Evaluates one event against policies given in evaluation order: a slice, or the levels chained without
/// copying them (`session.into_iter().chain(&agent.policies)`).
pub fn evaluate<'a>(
    event: &Event,
    state: &SessionState,
    policies: impl IntoIterator<Item = &'a CompiledPolicy>,
) -> Decision {
    let catalog = ModelCatalog::builtin();
    let mut d = Decision::allow();
    // Metering comes first so that budget rules on this very response see the new spend.
    d.metering = match (event.phase, &event.usage) {
        (Phase::LlmResponse, Some(u)) => {
            Some(meter(catalog, event.model.as_deref().or(state.model.as_deref()).unwrap_or("unknown"), *u))
        }
        _ => None,
    };
    let metered;
    let state = match &d.metering {
        Some(m) => {
            let mut s = state.clone();
            s.meter(m);
            metered = s;
            &metered
        }
        None => state,
    };
    if let Some(why) = egress_refused(event, state) {
        return deny_precheck(d, EGRESS_POLICY, why);
    }
    let mut current = Cow::Borrowed(event);
    let mut tools = with_written(current.tool_uses(), state);
    if let Some(why) = ambiguous(event.phase, &tools) {
        return deny_precheck(d, TOOL_SHAPE_POLICY, why);
    }
    let mut updates = Vec::new();
    for policy in policies {
        for rule in &policy.rules {
            if !rule.phases.contains(&event.phase) {
                continue;
            }
            let ctx = RuleCtx { policy: &policy.name, rule: &rule.name, catalog };
            let hit = |verdict, reason: String| Hit {
                policy: policy.name.clone(),
                rule: rule.name.clone(),
                level: policy.level,
                verdict,
                reason,
            };
            let outcome = match rule.builtin.evaluate(&ctx, &current, &tools, state) {
                Ok(o) => o,
                Err(e) => {
                    let closed = policy.failure_policy == FailurePolicy::Fail && fails_closed(event.phase);
                    let reason = format!("rule `{}` could not be evaluated: {e}", rule.name);
                    if closed && policy.mode == PolicyMode::Enforce {
                        return deny(d, hit(Verdict::Deny, reason));
                    }
                    d.audit.push(hit(if closed { Verdict::Deny } else { Verdict::Allow }, reason));
                    continue;
                }
            };
            let verdict = match (outcome.verdict, rule.action) {
                (Verdict::Allow, _) => Verdict::Allow,
                (v, None) => v,
                (_, Some(a)) => a,
            };
            if policy.mode == PolicyMode::Audit {
                if verdict != Verdict::Allow {
                    d.audit.push(hit(verdict, outcome.reason));
                }
                // Audit rules keep their own bookkeeping so that what they would do stays accurate, but
                // nothing shared (risk score, daily approvals) that would change what enforced rules do.
                let own = format!("{}/", policy.name);
                updates.extend(outcome.updates.into_iter().filter(|u| match u {
                    StateUpdate::Set { key, .. }
                    | StateUpdate::Increment { key, .. }
                    | StateUpdate::Push { key, .. }
                    | StateUpdate::Delete { key } => key.starts_with(&own),
                    _ => false,
                }));
                continue;
            }
            match verdict {
                Verdict::Deny => return deny(d, hit(Verdict::Deny, outcome.reason)),
                Verdict::Ask => d.asks.push(hit(Verdict::Ask, outcome.reason)),
                Verdict::Allow => {}
            }
            updates.extend(outcome.updates);
            // Never from the session level (refused when its rules compile; kept out here as well).
            if let Some((rewritten, mutation)) = outcome.rewrite.filter(|_| policy.level != Level::Session) {
                d.mutations.push(mutation);
                current = Cow::Owned(rewritten);
                tools = with_written(current.tool_uses(), state);
            }
        }
    }
    if let Cow::Owned(_) = current
        && let Some(why) = ambiguous(event.phase, &tools)
    {
        return deny_precheck(d, TOOL_SHAPE_POLICY, why);
    }
    if matches!(event.phase, Phase::ToolCall | Phase::LlmResponse) {
        updates.extend(written_updates(&tools, event.phase == Phase::LlmResponse));
    }
    if event.phase == Phase::ToolCall {
        updates.push(StateUpdate::CountToolCall);
    }
    d.state_updates = updates;
    if let Some(first) = d.asks.first() {
        d.verdict = Verdict::Ask;
        d.policy = Some(first.policy.clone());
        d.rule = Some(first.rule.clone());
        d.reason = d.asks.iter().map(|a| a.reason.as_str()).collect::<Vec<_>>().join("; ");
    }
    if let Cow::Owned(e) = current {
        d.event = Some(e);
    }
    d
}

/// The tool uses, each attached to the files the session wrote before it: its state's, then those of the
/// calls before it in the same event (a model's response that writes a script and runs it).
fn with_written(tools: Vec<ToolUse>, state: &crate::state::SessionState) -> Vec<ToolUse> {
    let mut written = Arc::new(state.written.clone());
    tools
        .into_iter()
        .map(|t| {
            let t = t.with_written(written.clone());
            let writes = t.writes();
            if !writes.is_empty() {
                Arc::make_mut(&mut written).apply(&writes, false);
            }
            t
        })
        .collect()
}

/// The state updates that remember what the tool uses write. Content past what the state keeps is not
/// carried (the file is remembered as unseen).
fn written_updates(tools: &[ToolUse], tentative: bool) -> Vec<StateUpdate> {
    tools
        .iter()
        .flat_map(|t| t.writes())
        .map(|w| match w {
            FileWrite::File { path, file: Written::Seen(c) } if c.len() > MAX_CONTENT => StateUpdate::RecordWrite {
                path,
                file: Written::Unseen("written with more content than the gate remembers".into()),
                tentative,
            },
            FileWrite::File { path, file } => StateUpdate::RecordWrite { path, file, tentative },
            FileWrite::Unknown(how) => StateUpdate::UnknownWrites { how },
        })
        .collect()
}

/// The least any enforced budget rule still lets `model` spend (see [`Builtin::headroom_usd`]); `None` when
/// no hard limit applies.
pub fn headroom_usd<'a>(
    policies: impl IntoIterator<Item = &'a CompiledPolicy>,
    model: &str,
    state: &SessionState,
) -> Option<f64> {
    policies
        .into_iter()
        .filter(|p| p.mode == PolicyMode::Enforce)
        .flat_map(|p| &p.rules)
        .filter(|r| r.phases.contains(&Phase::LlmRequest))
        .filter_map(|r| r.builtin.headroom_usd(model, state))
        .reduce(f64::min)
}

/// The enforced rule that denies every call of the tool `name` whatever its arguments (a `tool_allowlist`
/// that does not list it, a `tool_denylist` that does), as `policy/rule`; `None` when some call of it
/// could be allowed. A rule whose `action` turns its deny into an ask does not count.
pub fn denies_every_call<'a>(policies: impl IntoIterator<Item = &'a CompiledPolicy>, name: &str) -> Option<String> {
    let tool = ToolUse::new(name, Value::Object(Default::default()), None);
    policies
        .into_iter()
        .filter(|p| p.mode == PolicyMode::Enforce)
        .flat_map(|p| p.rules.iter().map(move |r| (p, r)))
        .filter(|(_, r)| r.phases.contains(&Phase::ToolCall) && matches!(r.action, None | Some(Verdict::Deny)))
        .find(|(_, r)| r.builtin.denies_every_call(&tool))
        .map(|(p, r)| format!("{}/{}", p.name, r.name))
}

/// The RuntimeClass a runner in `environment` must use under the enforced `enforce_sandbox` rules: the Agent's
/// own `current` when every rule accepts it, else the first class (in the first rule's order) that every rule
/// accepts; `Ok(current)` when no rule requires one. `Err` says why no class satisfies them all.
pub fn required_runtime_class(
    policies: &[CompiledPolicy],
    environment: &str,
    current: Option<&str>,
) -> Result<Option<String>, String> {
    let lists: Vec<(&str, &str, &[String])> = policies
        .iter()
        .filter(|p| p.mode == PolicyMode::Enforce)
        .flat_map(|p| p.rules.iter().map(move |r| (p, r)))
        .filter_map(|(p, r)| {
            r.builtin.required_runtime_classes(environment).map(|l| (p.name.as_str(), r.name.as_str(), l))
        })
        .collect();
    let accepted = |c: &str| lists.iter().all(|(_, _, l)| l.iter().any(|x| x == c));
    if lists.is_empty() || current.is_some_and(accepted) {
        return Ok(current.map(str::to_owned));
    }
    match lists[0].2.iter().find(|c| accepted(c)) {
        Some(c) => Ok(Some(c.clone())),
        None => Err(format!(
            "no RuntimeClass satisfies every enforce_sandbox rule for environment `{environment}`: {}",
            lists
                .iter()
                .map(|(p, r, l)| format!("{p}/{r} wants one of {}", l.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

/// The policy named in decisions on tool calls whose arguments are ambiguous (see [`crate::tools::shapes`]).
pub const TOOL_SHAPE_POLICY: &str = "paddock/tool-shape";

/// Why one of the tool uses about to run (of a `tool_call` or an `llm_response`) does not say one thing the
/// harness will execute. A `tool_result` comes after the call ran (its call was decided at `tool_call`), and
/// may come without the arguments.
fn ambiguous(phase: Phase, tools: &[ToolUse]) -> Option<String> {
    if !matches!(phase, Phase::ToolCall | Phase::LlmResponse) {
        return None;
    }
    tools.iter().find_map(|t| t.ambiguity().map(str::to_owned))
}

/// The policy named in decisions on egress to a destination the session may not reach.
pub const EGRESS_POLICY: &str = "paddock/egress";

/// Why an `egress` event goes where the session may not: a `host:port` outside the Agent's
/// `spec.sandbox.egress` and its brokered hosts (see [`crate::egress`]), or no destination at all.
fn egress_refused(event: &Event, state: &SessionState) -> Option<String> {
    if event.phase != Phase::Egress {
        return None;
    }
    let (Some(host), Some(port)) = (event.host.as_deref(), event.port) else {
        return Some("the egress event names no destination (`host` and `port`); nothing is reached unnamed".into());
    };
    let sb = &state.sandbox;
    if egress::allows(sb.egress.iter().chain(&sb.brokered).map(String::as_str), host, port) {
        return None;
    }
    let dest = egress::host_port(host, port);
    Some(match egress::destination(host) {
        egress::Destination::NumericName => format!(
            "egress to `{dest}` is not allowed: `{host}` is an IP address written as a name, which no entry matches; \
             write the address as an entry of the Agent's `spec.sandbox.egress` and connect to it in dotted form"
        ),
        egress::Destination::Invalid => format!("egress to {host:?} is not allowed: it is not a host name"),
        _ => format!(
            "egress to `{dest}` is not allowed: it is not in the Agent's `spec.sandbox.egress`; add `{dest}` there \
             to allow it"
        ),
    })
}

/// A deny that no Policy can lift, from a check made before every rule (and again on an event a rule
/// rewrote), whatever Policies are configured: Paddock cannot tell what a call would run
/// ([`TOOL_SHAPE_POLICY`]), or the session may not reach a destination ([`EGRESS_POLICY`]).
fn deny_precheck(d: Decision, policy: &str, reason: String) -> Decision {
    let mut d = deny(
        d,
        Hit { policy: policy.to_owned(), rule: String::new(), level: Level::Session, verdict: Verdict::Deny, reason },
    );
    d.rule = None;
    d
}

fn deny(mut d: Decision, hit: Hit) -> Decision {
    d.verdict = Verdict::Deny;
    d.policy = Some(hit.policy.clone());
    d.rule = Some(hit.rule.clone());
    d.reason = hit.reason.clone();
    d.asks.clear();
    d.state_updates.clear();
    d.mutations.clear();
    d.event = None;
    d
}
