//! The `github` rule against the red team (issue 14, classes 2, 4, 5 and 6): the suites under
//! `tests/policy-suites/github/` (also run by `paddock test`), here as unit tests of the policy crate.

mod support;

use std::path::{Path, PathBuf};

use support::{check, policies};

fn suites() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/policy-suites/github")
}

/// Runs a suite file with the Policies its `policies:` names (paths relative to the file).
fn run_suite(file: &str) {
    let text = std::fs::read_to_string(suites().join(file)).unwrap();
    let suite: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let specs: Vec<(String, String)> = suite["policies"]
        .as_sequence()
        .expect("the suite names its policies")
        .iter()
        .map(|p| {
            let manifest: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&std::fs::read_to_string(suites().join(p.as_str().unwrap())).unwrap()).unwrap();
            let name = manifest["metadata"]["name"].as_str().unwrap().to_owned();
            (name, serde_yaml_ng::to_string(&manifest["spec"]).unwrap())
        })
        .collect();
    let specs: Vec<(&str, &str)> = specs.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect();
    check(&text, &policies(&specs));
}

#[test]
fn what_git_and_gh_run_unseen_is_asked_about_and_pushes_go_where_the_gate_can_tell() {
    run_suite("redteam.test.yaml");
}

#[test]
fn opaque_action_deny_refuses_what_the_gate_cannot_see() {
    run_suite("strict.test.yaml");
}
