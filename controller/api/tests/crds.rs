//! The CRDs in `crds/` are what the types generate, and each is a structural apiextensions.k8s.io/v1 CRD.

use std::path::PathBuf;

use paddock_api::crds::{Kind, crd_schema, crd_yaml, structural_violations};

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds")
}

#[test]
fn crds_dir_matches_generated_types() {
    let mut stale = Vec::new();
    for kind in Kind::ALL {
        let path = crds_dir().join(kind.crd_file_name());
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        if on_disk != crd_yaml(kind) {
            stale.push(path.display().to_string());
        }
    }
    assert!(stale.is_empty(), "crds/ is out of date with the API types; run `paddock crdgen`: {stale:?}");
    let files = std::fs::read_dir(crds_dir()).unwrap().count();
    assert_eq!(files, Kind::ALL.len(), "crds/ holds files no type generates");
}

#[test]
fn every_crd_is_structural() {
    for kind in Kind::ALL {
        let violations = structural_violations(&crd_schema(kind));
        assert!(violations.is_empty(), "{kind:?}: {violations:#?}");
    }
}

#[test]
fn structural_check_catches_untyped_and_ref_nodes() {
    let bad = serde_json::json!({"type": "object", "properties": {
        "a": {"description": "no type"},
        "b": {"$ref": "#/definitions/x", "type": "object"},
        "c": {"type": "object", "anyOf": [{"type": "string"}]},
        "d": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    }});
    let v = structural_violations(&bad);
    assert_eq!(v.len(), 3, "{v:#?}");
}

#[test]
fn every_field_has_a_description() {
    fn walk(schema: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, child) in props {
                let p = format!("{path}.{name}");
                let top_level = path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&name.as_str());
                if child.get("description").is_none() && !top_level {
                    missing.push(p.clone());
                }
                walk(child, &p, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, path, missing);
        }
    }
    for kind in Kind::ALL {
        let mut missing = Vec::new();
        walk(&crd_schema(kind), "", &mut missing);
        assert!(
            missing.is_empty(),
            "{kind:?} fields without a description (kubectl explain shows nothing): {missing:?}"
        );
    }
}

#[test]
fn crds_have_status_subresource_short_names_and_ready_column() {
    for kind in Kind::ALL {
        let crd = kind.crd();
        assert!(crd.spec.names.short_names.as_ref().is_some_and(|s| !s.is_empty()), "{kind:?} short names");
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["paddock".to_string()][..]));
        let v = &crd.spec.versions[0];
        assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{kind:?} status subresource");
        let columns: Vec<_> = v.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert!(columns.contains(&"Age"), "{kind:?}: {columns:?}");
    }
    let session = Kind::Session.crd();
    let cols: Vec<_> =
        session.spec.versions[0].additional_printer_columns.iter().flatten().map(|c| c.name.clone()).collect();
    for want in ["Agent", "Phase", "Cost", "Risk", "Pending", "Age"] {
        assert!(cols.iter().any(|c| c == want), "Session lacks column {want}: {cols:?}");
    }
}

/// Walks a schema: `visit(path, node)` for every node.
fn walk_schema(schema: &serde_json::Value, path: &str, visit: &mut dyn FnMut(&str, &serde_json::Value)) {
    visit(path, schema);
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, child) in props {
            walk_schema(child, &format!("{path}.{name}"), visit);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = schema.get(key).filter(|c| c.is_object()) {
            walk_schema(child, &format!("{path}.{key}"), visit);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, child) in schema.get(key).and_then(|a| a.as_array()).into_iter().flatten().enumerate() {
            walk_schema(child, &format!("{path}.{key}[{i}]"), visit);
        }
    }
}

/// The API server warns `unrecognized format "uint64"` on every apply of a CRD with a format it does not
/// know; schemars writes one for each Rust integer width.
#[test]
fn every_crd_format_is_one_kubernetes_knows() {
    use paddock_api::crds::KUBERNETES_FORMATS;
    let mut unknown = Vec::new();
    let mut integers = 0;
    for kind in Kind::ALL {
        walk_schema(&crd_schema(kind), kind.as_str(), &mut |path, node| {
            if let Some(format) = node.get("format").and_then(|f| f.as_str()) {
                if !KUBERNETES_FORMATS.contains(&format) {
                    unknown.push(format!("{path}: {format}"));
                }
                if node.get("type").and_then(|t| t.as_str()) == Some("integer") {
                    integers += 1;
                    assert!(["int32", "int64"].contains(&format), "{path}: integer with format {format}");
                }
            }
        });
    }
    assert!(unknown.is_empty(), "formats the API server does not know: {unknown:#?}");
    assert!(integers > 5, "the walk found the integer fields ({integers})");
}

#[test]
fn unsigned_fields_keep_their_range() {
    let policy = crd_schema(Kind::Policy);
    // `status.decisions.allow` is a u64 and `status.ruleCount` a u32 in Rust.
    let allow = &policy["properties"]["status"]["properties"]["decisions"]["properties"]["allow"];
    assert_eq!((allow["format"].as_str(), allow["minimum"].as_f64()), (Some("int64"), Some(0.0)), "{allow}");
    assert!(allow.get("maximum").is_none());
    let rule_count = &policy["properties"]["status"]["properties"]["ruleCount"];
    assert_eq!(rule_count["format"], "int64");
    assert_eq!(rule_count["minimum"].as_f64(), Some(0.0));
    assert_eq!(rule_count["maximum"].as_f64(), Some(f64::from(u32::MAX)));
    // The strict manifest schema that `paddock validate` uses has the same bounds.
    let strict = paddock_api::crds::manifest_schema(Kind::Agent);
    let mut bounded = 0;
    walk_schema(&strict, "Agent", &mut |path, node| {
        if node.get("format").and_then(|f| f.as_str()) == Some("int64") && node.get("maximum").is_some() {
            assert_eq!(node["minimum"].as_f64(), Some(0.0), "{path}");
            bounded += 1;
        }
    });
    assert!(bounded > 0, "the Agent's u32 fields are bounded in the manifest schema");
}

#[test]
fn width_formats_become_kubernetes_formats_with_bounds() {
    use paddock_api::crds::kubernetes_formats;
    let mut s = serde_json::json!({"type": "object", "properties": {
        "a": {"type": "integer", "format": "uint8", "minimum": 0.0},
        "b": {"type": "array", "items": {"type": "integer", "format": "int16"}},
        "c": {"type": "integer", "format": "uint32", "minimum": 1, "maximum": 10},
        "d": {"type": "object", "additionalProperties": {"type": "integer", "format": "uint64"}},
        "e": {"type": "integer", "format": "int32"}
    }});
    kubernetes_formats(&mut s);
    let p = &s["properties"];
    assert_eq!(p["a"], serde_json::json!({"type": "integer", "format": "int32", "minimum": 0.0, "maximum": 255}));
    assert_eq!(
        p["b"]["items"],
        serde_json::json!({"type": "integer", "format": "int32", "minimum": -32768, "maximum": 32767})
    );
    assert_eq!(
        p["c"],
        serde_json::json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": 10}),
        "tighter bounds stay"
    );
    assert_eq!(p["d"]["additionalProperties"], serde_json::json!({"type": "integer", "format": "int64", "minimum": 0}));
    assert_eq!(p["e"], serde_json::json!({"type": "integer", "format": "int32"}));
}
