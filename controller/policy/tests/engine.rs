//! The engine's contract: order, first deny wins, asks merge, audit mode, failure policy, state updates
//! only when the event goes ahead, metering always.

mod support;

use paddock_api::{Phase, Verdict};
use paddock_policy::engine::{Level, compile_agent_rules, evaluate, selects};
use paddock_policy::{Event, SessionState, StateUpdate, Usage};
use support::{check, compile_errors, policies};

fn tool_call(tool: &str, args: serde_json::Value) -> Event {
    Event { phase: Phase::ToolCall, tool: Some(tool.into()), args, ..Default::default() }
}

#[test]
fn first_deny_ends_evaluation_in_order() {
    let ps = policies(&[
        ("first", "rules: [{name: no-bash, use: tool_denylist, with: {tools: [Bash]}}]"),
        ("second", "rules: [{name: no-shell, use: tool_denylist, with: {tools: [shell]}}]"),
    ]);
    let d = evaluate(&tool_call("Bash", serde_json::json!({"command": "ls"})), &SessionState::default(), &ps);
    assert_eq!((d.verdict, d.policy.as_deref(), d.rule.as_deref()), (Verdict::Deny, Some("first"), Some("no-bash")));
    let d = evaluate(&tool_call("exec_command", serde_json::json!({"cmd": "ls"})), &SessionState::default(), &ps);
    assert_eq!(
        (d.verdict, d.policy.as_deref()),
        (Verdict::Deny, Some("second")),
        "one rule covers every harness's shell"
    );
}

#[test]
fn session_then_agent_then_namespace() {
    let agent = compile_agent_rules(
        "coder",
        &[serde_yaml_ng::from_str("{name: ask-writes, use: tool_denylist, with: {tools: [write_file]}, action: ask}")
            .unwrap()],
    )
    .unwrap();
    assert_eq!(agent.level, Level::Agent);
    let mut all = policies(&[("ns", "rules: [{name: deny-writes, use: tool_denylist, with: {tools: [Write]}}]")]);
    all.insert(0, agent);
    let d = evaluate(&tool_call("Write", serde_json::json!({"file_path": "/w/a"})), &SessionState::default(), &all);
    // The agent rule asks; the namespace rule then denies: a deny anywhere wins over asks.
    assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::Deny, Some("ns")));
    assert!(d.asks.is_empty() && d.state_updates.is_empty(), "a deny discards asks and updates");
}

#[test]
fn asks_merge_into_one_approval() {
    let ps = policies(&[
        ("a", "rules: [{name: r1, use: tool_denylist, with: {tools: [Bash]}, action: ask}]"),
        ("b", "rules: [{name: r2, use: max_tool_calls, with: {limit: 0}, action: ask}]"),
    ]);
    let d = evaluate(&tool_call("Bash", serde_json::json!({"command": "ls"})), &SessionState::default(), &ps);
    assert_eq!(d.verdict, Verdict::Ask);
    assert_eq!(d.asks.len(), 2);
    assert_eq!((d.policy.as_deref(), d.rule.as_deref()), (Some("a"), Some("r1")));
    assert!(
        d.reason.contains("denylist") && d.reason.contains("; ") && d.reason.contains("limit of 0"),
        "{}",
        d.reason
    );
}

#[test]
fn audit_mode_records_and_allows() {
    let ps = policies(&[("watch", "mode: Audit\nrules: [{name: no-bash, use: tool_denylist, with: {tools: [Bash]}}]")]);
    let d = evaluate(&tool_call("Bash", serde_json::json!({"command": "ls"})), &SessionState::default(), &ps);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.audit.len(), 1);
    assert_eq!((d.audit[0].verdict, d.audit[0].rule.as_str()), (Verdict::Deny, "no-bash"));
}

#[test]
fn failure_policy_fails_closed_on_guarded_phases_and_open_when_ignored() {
    // A CEL rule returning a string cannot be evaluated: that is a rule failure, not a verdict.
    let broken = "rules: [{name: bad, use: cel, with: {expression: '\"nonsense\"'}}]";
    let ev = tool_call("Bash", serde_json::json!({"command": "ls"}));
    let d = evaluate(&ev, &SessionState::default(), &policies(&[("p", broken)]));
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(d.reason.contains("could not be evaluated"), "{}", d.reason);
    let ignore = format!("failurePolicy: Ignore\n{broken}");
    let d = evaluate(&ev, &SessionState::default(), &policies(&[("p", &ignore)]));
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.audit.len(), 1, "the ignored failure is still recorded");
    let result = Event { phase: Phase::ToolResult, tool: Some("Bash".into()), ..Default::default() };
    assert_eq!(
        evaluate(&result, &SessionState::default(), &policies(&[("p", broken)])).verdict,
        Verdict::Allow,
        "tool_result fails open"
    );
    // The final answer is guarded like the prompt: a broken rule withholds it.
    let answer = Event { phase: Phase::Response, text: Some("done".into()), ..Default::default() };
    assert_eq!(evaluate(&answer, &SessionState::default(), &policies(&[("p", broken)])).verdict, Verdict::Deny);
}

#[test]
fn state_updates_apply_only_when_the_event_goes_ahead() {
    check(
        r#"
agent: {name: coder}
cases:
  - name: a declined ask re-asks, an approved one does not
    steps:
      - event: {phase: llm_response, model: gpt-5, usage: {input_tokens: 1000000}}
      - event: {phase: llm_request, model: gpt-5}
        expect: ask
        approve: false
      - event: {phase: llm_request, model: gpt-5}
        expect: ask
        approve: true
      - event: {phase: llm_request, model: gpt-5}
        expect: allow
"#,
        &policies(&[("budget", "rules: [{name: b, use: cost_budget, with: {ask_thresholds_usd: [1.0]}}]")]),
    );
}

#[test]
fn metering_is_priced_from_the_catalog_and_unknown_models_are_explicit() {
    let ev = Event {
        phase: Phase::LlmResponse,
        model: Some("claude-opus-4-1".into()),
        usage: Some(Usage { input_tokens: 200_000, output_tokens: 30_000, ..Default::default() }),
        ..Default::default()
    };
    let d = evaluate(&ev, &SessionState::default(), &[]);
    let m = d.metering.expect("metered without any policy");
    assert!((m.cost_usd.unwrap() - 5.25).abs() < 1e-9);
    let mut s = SessionState::default();
    s.meter(&m);
    assert!((s.usage.cost_usd - 5.25).abs() < 1e-9 && (s.user_daily.cost_usd - 5.25).abs() < 1e-9);
    let unknown = Event { model: Some("in-house-llm".into()), ..ev };
    let m = evaluate(&unknown, &s, &[]).metering.unwrap();
    assert_eq!(m.cost_usd, None);
    s.meter(&m);
    assert_eq!(s.usage.unpriced_models, vec!["in-house-llm".to_string()]);
    assert_eq!(s.usage.unpriced_tokens, 230_000);
}

#[test]
fn allowed_tool_calls_are_counted() {
    let d = evaluate(&tool_call("Read", serde_json::json!({})), &SessionState::default(), &[]);
    assert_eq!(d.state_updates, vec![StateUpdate::CountToolCall]);
}

#[test]
fn rule_phases_default_to_the_builtin_and_can_be_narrowed() {
    let ps = policies(&[("p", "rules: [{name: r, use: tool_denylist, with: {tools: [Bash]}, on: [llm_response]}]")]);
    assert_eq!(
        evaluate(&tool_call("Bash", serde_json::json!({"command": "ls"})), &SessionState::default(), &ps).verdict,
        Verdict::Allow
    );
    let resp = Event {
        phase: Phase::LlmResponse,
        tool_calls: vec![paddock_policy::ToolCall {
            name: "Bash".into(),
            args: serde_json::json!({"command": "ls"}),
            id: None,
        }],
        ..Default::default()
    };
    assert_eq!(evaluate(&resp, &SessionState::default(), &ps).verdict, Verdict::Deny);
}

#[test]
fn selectors() {
    let spec: paddock_api::PolicySpec = serde_yaml_ng::from_str("selector: {matchLabels: {team: web}, matchExpressions: [{key: tier, operator: NotIn, values: [prod]}]}\nrules: []").unwrap();
    let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert!(selects(&spec, "a", &labels(&[("team", "web")])));
    assert!(!selects(&spec, "a", &labels(&[("team", "web"), ("tier", "prod")])));
    assert!(!selects(&spec, "a", &labels(&[("team", "ops")])));
    let by_name: paddock_api::PolicySpec = serde_yaml_ng::from_str("agents: [coder]\nrules: []").unwrap();
    assert!(selects(&by_name, "coder", &labels(&[])) && !selects(&by_name, "other", &labels(&[])));
    let all: paddock_api::PolicySpec = serde_yaml_ng::from_str("rules: []").unwrap();
    assert!(selects(&all, "anyone", &labels(&[])));
}

#[test]
fn invalid_parameters_are_refused_with_their_path() {
    let e = compile_errors("rules: [{name: b, use: cost_budget, with: {max_cost_usd: 5, colour: red}}]");
    assert!(e.contains("with.colour") && e.contains("unknown parameter `colour`"), "{e}");
    let e = compile_errors("rules: [{name: b, use: cost_budget, with: {max_cost_usd: 5, ask_thresholds_usd: [7]}}]");
    assert!(e.contains("below `max_cost_usd`"), "{e}");
    let e = compile_errors("rules: [{name: b, use: cost_budget}]");
    assert!(e.contains("set `max_cost_usd`"), "{e}");
    let e = compile_errors("rules: [{name: l, use: detect_loop, with: {window: 0}}]");
    assert!(e.contains("with.window"), "{e}");
    let e = compile_errors("rules: [{name: s, use: tool_args_schema, with: {tool: x, schema: {type: 12}}}]");
    assert!(e.contains("not a valid JSON Schema"), "{e}");
    let e = compile_errors(
        "rules: [{name: r, use: deny_trivial_to_expensive_model, with: {expensive_models: [gpt-5], action: route}}]",
    );
    assert!(e.contains("needs `cheap_model`"), "{e}");
}

#[test]
fn every_builtin_has_a_schema_that_compiles_and_rejects_unknown_parameters() {
    for def in paddock_policy::REGISTRY {
        let schema = (def.schema)();
        let v = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", def.name));
        assert!(
            !v.is_valid(&serde_json::json!({"definitely_not_a_parameter": 1})),
            "{} accepts unknown parameters",
            def.name
        );
        assert!(!def.phases.is_empty(), "{}", def.name);
    }
}

#[test]
fn required_runtime_class_follows_enforced_sandbox_rules_per_environment() {
    use paddock_policy::required_runtime_class;
    let ps = policies(&[
        (
            "prod",
            "rules: [{name: gvisor, use: enforce_sandbox, with: {environments: [prod], runtime_class_names: [gvisor, kata]}}]",
        ),
        ("all", "rules: [{name: kata-or-gvisor, use: enforce_sandbox, with: {runtime_class_names: [kata, gvisor]}}]"),
        ("audit", "mode: Audit\nrules: [{name: only-x, use: enforce_sandbox, with: {runtime_class_names: [x]}}]"),
    ]);
    // The first rule's order picks among the classes every enforced rule accepts; Audit rules do not count.
    assert_eq!(required_runtime_class(&ps, "prod", None), Ok(Some("gvisor".into())));
    assert_eq!(required_runtime_class(&ps, "dev", None), Ok(Some("kata".into())), "only `all` applies in dev");
    // The Agent's own class is kept when every rule accepts it.
    assert_eq!(required_runtime_class(&ps, "prod", Some("kata")), Ok(Some("kata".into())));
    assert_eq!(required_runtime_class(&ps, "prod", Some("runc")), Ok(Some("gvisor".into())));
    assert_eq!(required_runtime_class(&ps[..0], "prod", Some("runc")), Ok(Some("runc".into())));
    assert_eq!(required_runtime_class(&ps[..0], "prod", None), Ok(None));
    let clash = policies(&[
        ("a", "rules: [{name: g, use: enforce_sandbox, with: {runtime_class_names: [gvisor]}}]"),
        ("b", "rules: [{name: k, use: enforce_sandbox, with: {runtime_class_names: [kata]}}]"),
    ]);
    let e = required_runtime_class(&clash, "prod", None).unwrap_err();
    assert!(e.contains("a/g wants one of gvisor; b/k wants one of kata"), "{e}");
}

fn session_rules(yaml: &str) -> Vec<paddock_api::PolicyRule> {
    serde_yaml_ng::from_str(yaml).unwrap()
}

#[test]
fn a_session_deny_beats_what_the_agent_and_namespace_allow_and_is_reported_as_the_session() {
    use paddock_policy::compile_session_rules;
    let own =
        compile_session_rules("s-1", &session_rules("[{name: no-rm, use: tool_denylist, with: {tools: [Bash]}}]"))
            .unwrap();
    assert_eq!((own.name.as_str(), own.level), ("session/s-1", Level::Session));
    // The agent's level asks about Bash and the namespace allows everything: the session's deny decides.
    let agent = compile_agent_rules(
        "coder",
        &session_rules("[{name: ask-bash, use: tool_denylist, with: {tools: [Bash]}, action: ask}]"),
    )
    .unwrap();
    let mut rest = vec![agent];
    rest.extend(policies(&[("ns", "rules: [{name: many, use: max_tool_calls, with: {limit: 100}}]")]));
    let bash = tool_call("Bash", serde_json::json!({"command": "rm -rf /w"}));
    let without = evaluate(&bash, &SessionState::default(), &rest);
    assert_eq!((without.verdict, without.policy.as_deref()), (Verdict::Ask, Some("agent/coder")));
    let d = evaluate(&bash, &SessionState::default(), std::iter::once(&own).chain(&rest));
    assert_eq!(
        (d.verdict, d.policy.as_deref(), d.rule.as_deref()),
        (Verdict::Deny, Some("session/s-1"), Some("no-rm"))
    );
    assert!(d.asks.is_empty(), "the deny came first: the agent's ask was never raised");
    // What the session's rules do not cover, the other levels still decide.
    let read = tool_call("Read", serde_json::json!({"file_path": "/w/a"}));
    assert_eq!(evaluate(&read, &SessionState::default(), std::iter::once(&own).chain(&rest)).verdict, Verdict::Allow);
}

#[test]
fn a_session_ask_turns_an_allow_into_an_ask_and_cannot_lift_a_later_deny() {
    use paddock_policy::compile_session_rules;
    let own = compile_session_rules(
        "s-2",
        &session_rules("[{name: ask-bash, use: tool_denylist, with: {tools: [Bash]}, action: ask}]"),
    )
    .unwrap();
    let allow_all = policies(&[("ns", "rules: [{name: many, use: max_tool_calls, with: {limit: 100}}]")]);
    let ls = tool_call("Bash", serde_json::json!({"command": "ls"}));
    assert_eq!(evaluate(&ls, &SessionState::default(), &allow_all).verdict, Verdict::Allow);
    let d = evaluate(&ls, &SessionState::default(), std::iter::once(&own).chain(&allow_all));
    assert_eq!(
        (d.verdict, d.policy.as_deref(), d.rule.as_deref()),
        (Verdict::Ask, Some("session/s-2"), Some("ask-bash"))
    );
    assert_eq!(d.asks[0].level, Level::Session);
    // A namespace deny after the session's ask still denies: the session's level cannot widen.
    let deny_bash = policies(&[("ns", "rules: [{name: no-bash, use: tool_denylist, with: {tools: [Bash]}}]")]);
    let d = evaluate(&ls, &SessionState::default(), std::iter::once(&own).chain(&deny_bash));
    assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::Deny, Some("ns")));
}

#[test]
fn a_session_budget_only_lowers_the_headroom() {
    use paddock_policy::{compile_session_rules, headroom_usd};
    let ns = policies(&[("budget", "rules: [{name: cap, use: cost_budget, with: {max_cost_usd: 10}}]")]);
    let low =
        compile_session_rules("s", &session_rules("[{name: cap, use: cost_budget, with: {max_cost_usd: 2}}]")).unwrap();
    let high = compile_session_rules("s", &session_rules("[{name: cap, use: cost_budget, with: {max_cost_usd: 50}}]"))
        .unwrap();
    let st = SessionState::default();
    let model = "claude-sonnet-4-5";
    assert_eq!(headroom_usd(&ns, model, &st), Some(10.0));
    assert_eq!(headroom_usd(std::iter::once(&low).chain(&ns), model, &st), Some(2.0));
    assert_eq!(headroom_usd(std::iter::once(&high).chain(&ns), model, &st), Some(10.0), "a higher limit adds nothing");
}

#[test]
fn a_session_rule_that_would_allow_is_refused_with_its_field_path() {
    use paddock_policy::compile_session_rules;
    let rules = session_rules(
        "[{name: ok, use: tool_denylist, with: {tools: [Bash]}, action: ask},
          {name: open, use: tool_denylist, with: {tools: [Bash], colour: red}, action: allow},
          {name: ok, use: max_tool_calls, with: {limit: 3}}]",
    );
    let errors = compile_session_rules("s", &rules).unwrap_err();
    let at: Vec<String> = errors.iter().map(|e| e.at("spec.policy.rules")).collect();
    assert_eq!(at.len(), 3, "{at:#?}");
    assert_eq!(
        at[0],
        "spec.policy.rules[1].action: a session rule may only tighten what the Policies allow: `deny` or `ask`, \
         never `allow`"
    );
    assert!(at[1].starts_with("spec.policy.rules[1].with.colour: unknown parameter `colour`"), "{at:#?}");
    assert_eq!(at[2], "spec.policy.rules[2].name: `ok` is also the name of rule 0; names must be unique");
    // The same rules are fine with `deny` or `ask`, and none at all is an empty session level.
    assert!(compile_session_rules("s", &rules[..1]).is_ok());
    assert!(compile_session_rules("s", &[]).unwrap().rules.is_empty());
}

#[test]
fn the_session_crd_refuses_an_allowing_session_rule_where_it_is_written() {
    use paddock_api::crds::{Kind, crd_schema, manifest_schema};
    // The API server checks the CRD's enum; `paddock validate` the same schema made strict.
    let crd = crd_schema(Kind::Session);
    let action =
        &crd["properties"]["spec"]["properties"]["policy"]["properties"]["rules"]["items"]["properties"]["action"];
    assert_eq!(action["enum"], serde_json::json!(["deny", "ask", null]), "{action}");
    let policy_action =
        &crd_schema(Kind::Policy)["properties"]["spec"]["properties"]["rules"]["items"]["properties"]["action"];
    assert_eq!(
        policy_action["enum"],
        serde_json::json!(["allow", "deny", "ask", null]),
        "a Policy's rules are not restricted"
    );
    let validator = jsonschema::validator_for(&manifest_schema(Kind::Session)).unwrap();
    let session = |action: &str| {
        serde_json::json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "Session", "metadata": {"name": "fix-login"},
            "spec": {"agentRef": {"name": "coder"}, "prompt": "fix it", "owner": "alice",
                     "policy": {"rules": [
                        {"name": "no-push", "use": "github", "with": {"deny_force_push": true}},
                        {"name": "shell", "use": "tool_denylist", "with": {"tools": ["Bash"]}, "action": action}]}}})
    };
    for ok in ["deny", "ask"] {
        assert!(validator.is_valid(&session(ok)), "{ok}");
    }
    let errors: Vec<String> = validator.iter_errors(&session("allow")).map(|e| e.instance_path().to_string()).collect();
    assert_eq!(errors, ["/spec/policy/rules/1/action"]);
    // Rules are what the field holds: anything else there is refused too.
    let mut stray = session("deny");
    stray["spec"]["policy"]["mode"] = "Audit".into();
    assert!(!validator.is_valid(&stray), "a session's rules have no `mode`: they are enforced");
}

#[test]
fn a_session_rule_may_not_rewrite_what_later_rules_judge() {
    use paddock_policy::{compile_agent_rules, compile_session_rules};
    // Redacting a tool call's argument would hide it from the namespace's rules while the original runs.
    let hide = session_rules(
        "[{name: hide, use: deny_pii_in_llm_request, on: [tool_call], with: {action: redact}},
          {name: cheap, use: deny_trivial_to_expensive_model, with: {action: route}}]",
    );
    let at: Vec<String> =
        compile_session_rules("s", &hide).unwrap_err().iter().map(|e| e.at("spec.policy.rules")).collect();
    assert!(
        at.iter().any(|e| e.starts_with("spec.policy.rules[0].with.action: a session rule may not rewrite")),
        "{at:#?}"
    );
    assert!(
        at.iter().any(|e| e.starts_with("spec.policy.rules[1].with.action: a session rule may not rewrite")),
        "{at:#?}"
    );
    // Even a session level built another way never rewrites: the namespace's rule sees the original address.
    let mut own = compile_agent_rules(
        "x",
        &session_rules("[{name: hide, use: deny_pii_in_llm_request, on: [tool_call], with: {action: redact}}]"),
    )
    .unwrap();
    own.level = Level::Session;
    let ns = policies(&[(
        "ns",
        "rules: [{name: no-mail, use: cel, with: {expression: 'event.args.to.contains(\"@\")', reason: no mail out}}]",
    )]);
    let mail = tool_call("send_mail", serde_json::json!({"to": "jane.doe@example.com"}));
    let d = evaluate(&mail, &SessionState::default(), std::iter::once(&own).chain(&ns));
    assert_eq!((d.verdict, d.policy.as_deref()), (Verdict::Deny, Some("ns")), "{:?}", d.reason);
    assert!(d.event.is_none() && d.mutations.is_empty());
}
