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
