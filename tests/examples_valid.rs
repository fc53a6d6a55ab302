//! The shipped examples and the agents-repo template validate, and every example object is valid against
//! its CRD schema as the API server would see it.

use paddock_api::crds::{Kind, crd_schema};
use paddock_gitops::{load_dir, validate_files};
use paddock_tests::repo_root;

#[test]
fn examples_and_template_validate_cleanly() {
    for dir in ["examples", "agents-repo-template"] {
        let files = load_dir(&repo_root().join(dir)).unwrap();
        let report = validate_files(&files);
        assert!(report.is_ok() && report.warnings() == 0, "{dir}:\n{}", report.render());
        assert!(report.objects.len() >= 3, "{dir} has too few objects");
    }
}

#[test]
fn examples_cover_every_harness_and_the_promised_policies() {
    let report = validate_files(&load_dir(&repo_root().join("examples")).unwrap());
    let text: String = report.sources.values().cloned().collect();
    for harness in ["harness: claude-code", "harness: codex", "harness: custom"] {
        assert!(text.contains(harness), "no example agent with {harness}");
    }
    for builtin in ["use: cost_budget", "use: deny_pii_in_llm_request", "use: github", "use: sequence"] {
        assert!(text.contains(builtin), "no example policy with {builtin}");
    }
    for kind in [Kind::Session, Kind::GitSource] {
        assert!(report.objects.iter().any(|o| o.kind == kind), "no example {kind:?}");
    }
}

/// The API server validates against the CRD's own schema (not our stricter one): check that too, after
/// converting OpenAPI's `nullable` to JSON Schema.
#[test]
fn every_example_object_validates_against_its_crd_schema() {
    fn nullable_to_type(v: &mut serde_json::Value) {
        if let Some(o) = v.as_object_mut() {
            if o.remove("nullable") == Some(serde_json::Value::Bool(true))
                && let Some(serde_json::Value::String(t)) = o.get("type").cloned()
            {
                o.insert("type".into(), serde_json::json!([t, "null"]));
            }
            o.values_mut().for_each(nullable_to_type);
        } else if let Some(a) = v.as_array_mut() {
            a.iter_mut().for_each(nullable_to_type);
        }
    }
    let report = validate_files(&load_dir(&repo_root().join("examples")).unwrap());
    assert!(!report.objects.is_empty());
    for obj in &report.objects {
        let mut schema = crd_schema(obj.kind);
        nullable_to_type(&mut schema);
        let validator = jsonschema::validator_for(&schema).unwrap();
        let instance = obj.root.to_json();
        let errors: Vec<String> = validator.iter_errors(&instance).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{} {}: {errors:?}", obj.kind.as_str(), obj.name);
    }
}
