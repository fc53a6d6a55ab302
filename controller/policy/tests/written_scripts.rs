//! Script files judged by what the session wrote into them (issue 14, class 3: "`sh p.sh` after writing
//! it"): the suite `tests/policy-suites/shell-opacity/written-scripts.test.yaml` (also run by `paddock
//! test`), then what the suite format cannot say: state round-trips, bounds.

mod support;

use std::path::{Path, PathBuf};

use paddock_api::Verdict;
use paddock_policy::written::{MAX_CONTENT, MAX_PATHS, Written};
use paddock_policy::{Event, SessionState, evaluate};
use serde_json::json;
use support::{check, policies};

fn suites() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/policy-suites/shell-opacity")
}

fn suite_policies(names: &[&str]) -> Vec<paddock_policy::CompiledPolicy> {
    let specs: Vec<(String, String)> = names
        .iter()
        .map(|p| {
            let manifest: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&std::fs::read_to_string(suites().join(p)).unwrap()).unwrap();
            let name = manifest["metadata"]["name"].as_str().unwrap().to_owned();
            (name, serde_yaml_ng::to_string(&manifest["spec"]).unwrap())
        })
        .collect();
    let specs: Vec<(&str, &str)> = specs.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect();
    policies(&specs)
}

#[test]
fn scripts_are_judged_by_what_the_session_wrote_into_them() {
    let text = std::fs::read_to_string(suites().join("written-scripts.test.yaml")).unwrap();
    check(&text, &suite_policies(&["github.yaml", "blast-radius.yaml"]));
}

fn tool_call(tool: &str, args: serde_json::Value) -> Event {
    serde_json::from_value(json!({"phase": "tool_call", "tool": tool, "args": args})).unwrap()
}

/// Runs events in one session as the gateway does: updates apply when the event goes ahead.
fn session(state: &mut SessionState, events: &[Event]) -> Vec<Verdict> {
    let ps = suite_policies(&["github.yaml"]);
    events
        .iter()
        .map(|e| {
            let d = evaluate(e, state, &ps);
            if d.verdict == Verdict::Allow {
                state.apply(&d.state_updates);
            }
            d.verdict
        })
        .collect()
}

#[test]
fn what_was_written_survives_the_store_and_old_states_still_load() {
    let mut state = SessionState { workspace_repo: Some("acme/app".into()), ..SessionState::default() };
    let write = tool_call("Write", json!({"file_path": "/workspace/p.sh", "content": "git push -f origin main\n"}));
    let redirect = tool_call("Bash", json!({"command": "echo x > q.sh && tar xf a.tar"}));
    assert_eq!(session(&mut state, &[write, redirect]), [Verdict::Allow, Verdict::Allow]);
    // The gateway stores the state as JSON between events.
    let stored = serde_json::to_string(&state).unwrap();
    let mut loaded: SessionState = serde_json::from_str(&stored).unwrap();
    assert_eq!(loaded, state);
    assert!(matches!(loaded.written.files["q.sh"], Written::Unseen(_)));
    // `tar x` wrote files it did not name: p.sh may have been overwritten since it was seen.
    assert!(matches!(loaded.written.files["p.sh"], Written::Unseen(_)));
    assert!(loaded.written.unknown.is_some());
    let run = tool_call("Bash", json!({"command": "sh p.sh"}));
    assert_eq!(session(&mut loaded, &[run]), [Verdict::Ask]);
    // A state stored before sessions remembered writes loads, with nothing written.
    let old = r#"{"session":"s","agent":"a","owner":"u","tool_calls":3,"risk_score":0,"values":{}}"#;
    let old: SessionState = serde_json::from_str(old).unwrap();
    assert!(old.written.is_empty());
    assert_eq!(old.tool_calls, 3);
}

#[test]
fn past_the_path_cap_unknown_scripts_are_asked_about() {
    let mut state = SessionState { workspace_repo: Some("acme/app".into()), ..SessionState::default() };
    let writes: Vec<Event> = (0..MAX_PATHS + 3)
        .map(|i| tool_call("Write", json!({"file_path": format!("f{i}.txt"), "content": "x"})))
        .collect();
    assert!(session(&mut state, &writes).iter().all(|v| *v == Verdict::Allow));
    assert_eq!(state.written.files.len(), MAX_PATHS);
    assert!(state.written.overflow);
    // f{MAX_PATHS+1}.txt was written but is not remembered: it is not taken for the repository's own.
    let runs = [
        tool_call("Bash", json!({"command": format!("sh f{}.txt", MAX_PATHS + 1)})),
        tool_call("Bash", json!({"command": "sh never.sh"})),
        tool_call("Bash", json!({"command": "sh f0.txt"})),
    ];
    assert_eq!(session(&mut state, &runs), [Verdict::Ask, Verdict::Ask, Verdict::Allow]);
}

#[test]
fn remembered_content_is_bounded_and_what_does_not_fit_is_unseen() {
    let mut state = SessionState { workspace_repo: Some("acme/app".into()), ..SessionState::default() };
    let big = format!("cargo test\n{}", "# padding\n".repeat(MAX_CONTENT / 10));
    let events = [
        tool_call("Write", json!({"file_path": "big.sh", "content": big})),
        tool_call("Bash", json!({"command": "sh big.sh"})),
    ];
    assert_eq!(session(&mut state, &events), [Verdict::Allow, Verdict::Ask]);
    let kept: usize = state.written.files.values().map(|w| if let Written::Seen(c) = w { c.len() } else { 0 }).sum();
    assert!(kept <= MAX_CONTENT);
    assert!(serde_json::to_string(&state).unwrap().len() < MAX_CONTENT + 64 * 1024);
}

#[test]
fn a_denied_write_is_not_remembered() {
    let ps = policies(&[("w", "rules: [{name: no-writes, use: tool_denylist, with: {tools: [Write]}}]")]);
    let state = SessionState::default();
    let d = evaluate(&tool_call("Write", json!({"file_path": "p.sh", "content": "cargo test"})), &state, &ps);
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(d.state_updates.is_empty());
}

#[test]
fn command_files_are_judged_by_what_the_session_wrote_into_them() {
    let text = std::fs::read_to_string(suites().join("command-files.test.yaml")).unwrap();
    check(&text, &suite_policies(&["github.yaml", "blast-radius.yaml"]));
}
