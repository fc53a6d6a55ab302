//! Decision latency: one rule and a 20-rule mix, on a 2 KB and a 200 KB request, plus a tool call; and on the
//! wire: the `paddock/egress` pre-check alone, a tunnel, a GitHub API request and a push under the mix.
//! Criterion reports means; a second pass records every decision to report p50 and p99.
//!
//! cargo bench -p paddock-policy --bench engine

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use paddock_api::PolicySpec;
use paddock_policy::engine::{CompiledPolicy, Level, compile_policy, evaluate};
use paddock_policy::{Event, SessionState};
use serde_json::json;

const MIX: &str = r#"
rules:
  - {name: budget, use: cost_budget, with: {max_cost_usd: 50, ask_thresholds_usd: [10, 25], expensive_models: [opus]}}
  - {name: daily, use: user_daily_cost_budget, with: {max_cost_usd: 200}}
  - {name: pii, use: deny_pii_in_llm_request}
  - {name: trivial, use: deny_trivial_to_expensive_model, with: {expensive_models: [claude-opus-4-1]}}
  - {name: sandbox, use: enforce_sandbox, with: {environments: [prod], runtime_class_names: [gvisor]}}
  - {name: risk, use: risk_score, with: {threshold: 80, tool_points: {WebFetch: 10}, guarded_tools: [shell]}}
  - {name: github, use: github, with: {write_repos: [acme/app], write_branches: ["feature/*"]}}
  - {name: drive, use: gdrive}
  - {name: mail, use: gmail}
  - {name: cal, use: gcalendar}
  - {name: allow, use: tool_allowlist, with: {tools: [shell, read_file, write_file, edit_file, "mcp__*"]}}
  - {name: deny, use: tool_denylist, with: {tools: [WebSearch]}}
  - {name: max, use: max_tool_calls, with: {limit: 500}}
  - {name: loop, use: detect_loop}
  - {name: seq, use: sequence, with: {after: {tool: shell, command_matches: 'npm (i|install) \S'}, before: {tool: shell, command_matches: 'git push'}}}
  - {name: blast, use: blast_radius}
  - {name: args, use: tool_args_schema, with: {tool: write_file, schema: {type: object, required: [file_path]}}}
  - {name: cel, use: cel, with: {expression: 'session.risk_score > 1000'}}
  - {name: cel-curl, use: cel, with: {expression: 'event.tools.exists(t, t.command.contains("curl"))'}}
  - {name: budget-strict, use: cost_budget, with: {max_cost_usd: 100}}
"#;

fn policy(yaml: &str) -> Vec<CompiledPolicy> {
    let spec: PolicySpec = serde_yaml_ng::from_str(yaml).unwrap();
    vec![compile_policy("bench", Level::Namespace, &spec).unwrap()]
}

/// A request body of about `bytes`: a conversation of code and prose, no PII.
fn request(bytes: usize) -> Event {
    let para = "The cart total is computed in `src/cart.rs` by summing line items; bundles apply their discount \
                per item before tax. fn total(items: &[Item]) -> Cents { items.iter().map(|i| i.price * i.qty).sum() } \
                Version 1.4.2 fixed rounding at commit 3f9a2c1. ";
    let mut messages = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < bytes {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(json!({"role": role, "content": para}));
        size += para.len() + 30;
        i += 1;
    }
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 4096, "system": "You are a careful engineer.", "messages": messages});
    Event {
        phase: paddock_api::Phase::LlmRequest,
        model: Some("claude-sonnet-4-5".into()),
        body: Some(body),
        ..Default::default()
    }
}

fn tool_call() -> Event {
    Event {
        phase: paddock_api::Phase::ToolCall,
        tool: Some("Bash".into()),
        args: json!({"command": "cd /workspace && npm test && git push origin feature/cart-fix"}),
        ..Default::default()
    }
}

fn state() -> SessionState {
    SessionState {
        agent: "coder".into(),
        owner: "alice".into(),
        model: Some("claude-sonnet-4-5".into()),
        workspace_repo: Some("acme/app".into()),
        sandbox: paddock_policy::state::SandboxFacts {
            // A realistic allowlist; the destination matches the last entry, so every entry is tried.
            egress: [
                "registry.yarnpkg.com:443",
                "*.pythonhosted.org:443",
                "pypi.org:443",
                "static.crates.io:443",
                "index.crates.io:443",
                "proxy.golang.org:443",
                "10.0.0.0/8:5432",
                "[2001:db8::/32]:443",
                "*.npmjs.org:443",
            ]
            .map(String::from)
            .to_vec(),
            brokered: vec!["github.com:443".into(), "api.github.com:443".into()],
            ..Default::default()
        },
        ..Default::default()
    }
}

fn tunnel() -> Event {
    Event {
        phase: paddock_api::Phase::Egress,
        host: Some("registry.npmjs.org".into()),
        port: Some(443),
        scheme: Some("https".into()),
        ..Default::default()
    }
}

fn api_request() -> Event {
    Event {
        method: Some("PATCH".into()),
        path: Some("/repos/acme/app/git/refs/heads/feature%2Fcart-fix".into()),
        body: Some(json!({"sha": "2222222222222222222222222222222222222222", "force": false})),
        host: Some("api.github.com".into()),
        ..tunnel()
    }
}

fn git_push() -> Event {
    Event {
        phase: paddock_api::Phase::GitPush,
        host: Some("github.com".into()),
        repo: Some("acme/app".into()),
        updates: vec![paddock_policy::RefUpdate {
            git_ref: "refs/heads/feature/cart-fix".into(),
            old: "1111111111111111111111111111111111111111".into(),
            new: "2222222222222222222222222222222222222222".into(),
            fast_forward: true,
        }],
        ..Default::default()
    }
}

fn percentiles(name: &str, event: &Event, policies: &[CompiledPolicy], n: usize) {
    let s = state();
    let mut samples: Vec<Duration> = Vec::with_capacity(n);
    for _ in 0..n / 10 {
        black_box(evaluate(event, &s, policies));
    }
    for _ in 0..n {
        let t = Instant::now();
        black_box(evaluate(black_box(event), &s, policies));
        samples.push(t.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{name:<32} p50 {:>9.2?}  p99 {:>9.2?}  max {:>9.2?}  (n={n})",
        at(0.50),
        at(0.99),
        samples[samples.len() - 1]
    );
}

fn main() {
    // One rule that does real work on each kind of event: the PII scan of a request, the shell parse of
    // a tool call.
    let one_request = policy("rules: [{name: pii, use: deny_pii_in_llm_request}]");
    let one_tool =
        policy("rules: [{name: github, use: github, with: {write_repos: [acme/app], write_branches: ['feature/*']}}]");
    let mix = policy(MIX);
    assert_eq!(mix[0].rules.len(), 20);
    let (small, large, call) = (request(2 * 1024), request(200 * 1024), tool_call());
    let (connect, api, push) = (tunnel(), api_request(), git_push());
    let cases: [(&str, &Event, &[CompiledPolicy], usize); 10] = [
        ("1 rule, 2 KB request", &small, &one_request, 20_000),
        ("1 rule, tool call", &call, &one_tool, 20_000),
        ("20 rules, 2 KB request", &small, &mix, 20_000),
        ("20 rules, tool call", &call, &mix, 20_000),
        ("1 rule, 200 KB request", &large, &one_request, 2_000),
        ("20 rules, 200 KB request", &large, &mix, 2_000),
        ("egress pre-check alone", &connect, &[], 50_000),
        ("20 rules, egress tunnel", &connect, &mix, 20_000),
        ("20 rules, GitHub API request", &api, &mix, 20_000),
        ("20 rules, git push", &push, &mix, 20_000),
    ];
    println!("decision latency (one core, after warm-up):");
    for (name, ev, ps, n) in cases {
        percentiles(name, ev, ps, n);
    }
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let s = state();
    let mut g = c.benchmark_group("decide");
    for (name, ev, ps, _) in cases {
        g.throughput(match &ev.body {
            Some(b) => Throughput::Bytes(b.to_string().len() as u64),
            None => Throughput::Elements(1),
        });
        g.bench_function(name, |b| b.iter(|| evaluate(black_box(ev), &s, ps)));
    }
    g.finish();
    c.final_summary();
}
