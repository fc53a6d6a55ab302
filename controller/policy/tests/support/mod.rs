//! Policies and test suites written inline as YAML.

use paddock_api::PolicySpec;
use paddock_policy::engine::{CompiledPolicy, Level, compile_policy};
use paddock_policy::testing::{Suite, run_case};

/// Compiles `name: spec-yaml` pairs into namespace-level policies, in order.
pub fn policies(specs: &[(&str, &str)]) -> Vec<CompiledPolicy> {
    specs
        .iter()
        .map(|(name, yaml)| {
            let spec: PolicySpec = serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
            compile_policy(name, Level::Namespace, &spec).unwrap_or_else(|e| panic!("{name}: {e:?}"))
        })
        .collect()
}

/// Runs every case of a suite (YAML, `policies:` ignored) and panics with the mismatches of failures.
pub fn check(suite_yaml: &str, policies: &[CompiledPolicy]) {
    let suite: Suite = serde_yaml_ng::from_str(suite_yaml).unwrap();
    let mut failures = Vec::new();
    for case in &suite.cases {
        let r = run_case(&suite, case, policies);
        if !r.passed() {
            let steps: Vec<String> = r
                .decisions
                .iter()
                .enumerate()
                .map(|(i, d)| format!("    step {}: {:?} {:?}/{:?} {}", i + 1, d.verdict, d.policy, d.rule, d.reason))
                .collect();
            failures.push(format!("{}: {:?}\n{}", case.name, r.mismatches, steps.join("\n")));
        }
    }
    assert!(failures.is_empty(), "failing cases:\n{}", failures.join("\n"));
}

/// The error messages of a rule that must not compile.
#[allow(dead_code)] // used by one of the two test binaries
pub fn compile_errors(spec_yaml: &str) -> String {
    let spec: PolicySpec = serde_yaml_ng::from_str(spec_yaml).unwrap();
    match compile_policy("p", Level::Namespace, &spec) {
        Ok(_) => panic!("expected the policy to be refused"),
        Err(e) => e.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("\n"),
    }
}
