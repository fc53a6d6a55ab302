//! docs/policies.md documents every builtin and every one of its parameters.

use paddock_tests::repo_root;

#[test]
fn every_builtin_and_parameter_is_documented() {
    let doc = std::fs::read_to_string(repo_root().join("docs/policies.md")).unwrap();
    let mut missing = Vec::new();
    for def in paddock_policy::REGISTRY {
        if !doc.contains(&format!("`{}`", def.name)) {
            missing.push(def.name.to_string());
        }
        let schema = (def.schema)();
        for param in schema.get("properties").and_then(|p| p.as_object()).into_iter().flat_map(|p| p.keys()) {
            if !doc.contains(&format!("`{param}`")) {
                missing.push(format!("{}.{param}", def.name));
            }
        }
    }
    assert!(missing.is_empty(), "docs/policies.md does not mention: {missing:?}");
}
