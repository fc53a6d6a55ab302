//! Every `paddock test` suite under `tests/policy-suites/`, run with the code `paddock test` uses: each
//! directory there holds Policy manifests and `*.test.yaml` files. A failing case fails this test, named
//! with its file, step and what was expected against what happened.

use std::path::Path;

use paddock_gitops::policy_tests::{find_test_files, run_test_file};
use paddock_tests::repo_root;

#[test]
fn every_policy_suite_passes() {
    let root = repo_root().join("tests/policy-suites");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no suites under {}", root.display());
    let mut problems = Vec::new();
    let mut cases = 0;
    for dir in &dirs {
        let files = find_test_files(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        if files.is_empty() {
            problems.push(format!("{}: no *.test.yaml files", shown(dir)));
        }
        for file in files {
            let report = run_test_file(&file);
            let name = shown(&file);
            problems.extend(report.errors.iter().map(|e| format!("{name}: cannot run: {e}")));
            if report.applied.is_empty() && report.errors.is_empty() {
                problems.push(format!("{name}: no policy selects the test agent"));
            }
            cases += report.cases.len();
            for case in report.cases.iter().filter(|c| !c.passed()) {
                for m in &case.mismatches {
                    problems.push(format!(
                        "{name}: case {:?}, step {}: expected {}; got {}",
                        case.name,
                        m.step,
                        m.expected.join(", "),
                        m.actual.join(", ")
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{} problem(s) in policy suites:\n{}", problems.len(), problems.join("\n"));
    assert!(cases > 0, "the suites hold no cases");
}

fn shown(p: &Path) -> String {
    p.strip_prefix(repo_root()).unwrap_or(p).display().to_string()
}
