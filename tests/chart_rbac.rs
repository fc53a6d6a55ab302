//! The controller's ClusterRole, as the chart renders it, grants what the objects the controller creates
//! need. An owner reference with `blockOwnerDeletion: true` needs `update` on `<owner plural>/finalizers`
//! where the OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift, hardened clusters);
//! without it every runner pod is refused there.
//!
//! The chart is rendered by helm (`$PADDOCK_HELM` or `$PADDOCK_E2E_HELM`, else the one `.ci/run` installs,
//! else `helm` on the PATH); without helm the RBAC template is read with its template actions blanked, which leaves the rules
//! exactly as written (they hold no template actions), and the test says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use paddock_api::crds::Kind;
use paddock_gitops::plan::{Rendered, SourceRef, render_revision};
use paddock_gitops::source::load_dir;
use paddock_tests::repo_root;
use serde_json::Value;

/// The first helm that runs, if any.
fn helm() -> Option<PathBuf> {
    paddock_tests::helm_candidates()
        .into_iter()
        .find(|h| Command::new(h).arg("version").output().is_ok_and(|o| o.status.success()))
}

/// The documents of a multi-document YAML stream (split at `---` lines, as helm and the snapshots write).
fn yaml_documents(text: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let last = docs.last_mut().unwrap();
            last.push_str(line);
            last.push('\n');
        }
    }
    docs.iter()
        .map(|d| serde_yaml_ng::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}:\n{d}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The chart's objects: `helm template`, or the RBAC template with its actions blanked.
fn chart_objects() -> Vec<Value> {
    let chart = repo_root().join("charts/paddock");
    if let Some(helm) = helm() {
        let out = Command::new(&helm)
            .args(["template", "paddock"])
            .arg(&chart)
            .args(["--namespace", "paddock-system"])
            .output()
            .expect("helm runs");
        assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
        println!("chart rendered with {}", helm.display());
        return yaml_documents(&String::from_utf8(out.stdout).unwrap());
    }
    println!("helm not found (set PADDOCK_HELM): reading templates/rbac.yaml with its template actions blanked");
    yaml_documents(&blank_template_actions(&std::fs::read_to_string(chart.join("templates/rbac.yaml")).unwrap()))
}

/// Drops lines that are only a template action (`{{- include … | nindent 4 }}`, `{{- if … }}`) and turns an
/// action inside a line into a placeholder.
fn blank_template_actions(template: &str) -> String {
    let mut out = String::new();
    for line in template.lines() {
        let t = line.trim();
        if t.starts_with("{{") && t.ends_with("}}") {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            out.push_str("templated");
            rest = rest[start..].split_once("}}").map_or("", |(_, after)| after);
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// The ClusterRole bound to the controller's ServiceAccount.
fn controller_cluster_role(objects: &[Value]) -> &Value {
    let is_controller = |o: &&Value| o["metadata"]["labels"]["app.kubernetes.io/component"] == "controller";
    let binding = objects
        .iter()
        .filter(is_controller)
        .find(|o| o["kind"] == "ClusterRoleBinding")
        .expect("the chart binds a ClusterRole to the controller");
    let role = &binding["roleRef"]["name"];
    objects
        .iter()
        .find(|o| o["kind"] == "ClusterRole" && &o["metadata"]["name"] == role)
        .unwrap_or_else(|| panic!("no ClusterRole {role}"))
}

fn grants(role: &Value, group: &str, resource: &str, verb: &str) -> bool {
    let has = |v: &Value, want: &str| v.as_array().is_some_and(|a| a.iter().any(|x| x == want || x == "*"));
    role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| has(&r["apiGroups"], group) && has(&r["resources"], resource) && has(&r["verbs"], verb))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every object the controller creates, with where it comes from: the Session reconciler's runner objects
/// (the sandbox crate's snapshots, which its tests keep equal to the rendering) and what a GitSource applies
/// (the agents-repo template rendered as a GitSource renders a revision).
fn created_objects() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for path in yaml_files(&repo_root().join("controller/sandbox/tests/snapshots")) {
        for doc in yaml_documents(&std::fs::read_to_string(&path).unwrap()) {
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), doc));
        }
    }
    let files = load_dir(&repo_root().join("agents-repo-template")).unwrap();
    let Rendered::Ok { objects, .. } =
        render_revision(&files, false, SourceRef { name: "agents", namespace: "team-a" }, "main@sha1:0")
    else {
        panic!("the agents-repo template renders")
    };
    out.extend(objects.into_iter().map(|o| (format!("GitSource: {}", o.key), o.manifest)));
    out
}

#[test]
fn the_controller_may_block_the_deletion_of_every_owner_it_names() {
    let objects = chart_objects();
    let role = controller_cluster_role(&objects);
    let mut owners = std::collections::BTreeSet::new();
    let mut missing = Vec::new();
    for (from, obj) in created_objects() {
        for owner in obj["metadata"]["ownerReferences"].as_array().into_iter().flatten() {
            if owner["blockOwnerDeletion"] != true {
                continue;
            }
            let (group, _) = owner["apiVersion"].as_str().unwrap().rsplit_once('/').unwrap_or(("", ""));
            let kind = Kind::parse(owner["kind"].as_str().unwrap())
                .unwrap_or_else(|| panic!("{from}: owner {owner} is not a Paddock kind; add its plural here"));
            let plural = kind.crd().spec.names.plural;
            owners.insert(format!("{group}/{plural}"));
            if !grants(role, group, &format!("{plural}/finalizers"), "update") {
                missing.push(format!(
                    "{from} ({}) is owned by a {} with blockOwnerDeletion",
                    obj["kind"],
                    kind.as_str()
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the controller's ClusterRole lacks `update` on the owners' finalizers:\n{}",
        missing.join("\n")
    );
    // The runner pod and its objects are owned by their Session; if that stops, this test checks nothing.
    assert!(owners.contains("paddock.dev/sessions"), "{owners:?}");
}

#[test]
fn the_check_reads_the_rules_it_is_given() {
    let role = serde_json::json!({"rules": [
        {"apiGroups": ["paddock.dev"], "resources": ["sessions/status"], "verbs": ["update", "patch"]},
        {"apiGroups": [""], "resources": ["sessions/finalizers"], "verbs": ["update"]},
        {"apiGroups": ["paddock.dev"], "resources": ["gitsources/finalizers"], "verbs": ["patch"]},
        {"apiGroups": ["paddock.dev"], "resources": ["*"], "verbs": ["get"]}
    ]});
    assert!(!grants(&role, "paddock.dev", "sessions/finalizers", "update"), "another subresource, group or verb");
    assert!(!grants(&role, "paddock.dev", "gitsources/finalizers", "update"));
    assert!(grants(&role, "paddock.dev", "agents/finalizers", "get"), "a wildcard counts");
    let blanked = blank_template_actions(
        "kind: ClusterRole\nmetadata:\n  name: {{ include \"x\" . }}-y\n  labels:\n    {{- include \"l\" . | nindent 4 }}\n    a: b\n",
    );
    assert_eq!(blanked, "kind: ClusterRole\nmetadata:\n  name: templated-y\n  labels:\n    a: b\n");
}
