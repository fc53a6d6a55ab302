//! `paddock test`: policy test files (`*.test.yaml`), in the spirit of `kyverno test`. This module reads
//! the files and the Policy manifests they name; running the cases is pure (`paddock_policy::testing`).

use std::path::{Path, PathBuf};

use paddock_api::crds::Kind;
use paddock_policy::engine::{CompiledPolicy, Level, compile_policy, selects};
use paddock_policy::testing::{CaseResult, Suite, run_case};

use crate::diagnostics::Diagnostic;
use crate::source::{Content, MAX_FILE_BYTES, load_dir};
use crate::validate::{Object, validate_files};
use crate::yaml::{self, Limits, PathSeg, Pos, display_path};

/// The outcome of one test file.
#[derive(Debug, Default)]
pub struct TestFileReport {
    pub file: String,
    /// Problems that stopped the file from running (bad YAML, missing or invalid policies).
    pub errors: Vec<Diagnostic>,
    /// Policies that govern the test agent, in evaluation order.
    pub applied: Vec<String>,
    /// Policies listed but not selecting the test agent, with why.
    pub skipped: Vec<String>,
    pub cases: Vec<CaseResult>,
}

impl TestFileReport {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed()).count()
    }
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }
}

/// Every `*.test.yaml` / `*.test.yml` under `path` (or `path` itself), sorted.
pub fn find_test_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let p = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_dir() {
                if !name.starts_with('.') {
                    stack.push(p);
                }
            } else if name.ends_with(".test.yaml") || name.ends_with(".test.yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Loads a test file and its policies, and runs every case.
pub fn run_test_file(path: &Path) -> TestFileReport {
    let file = path.display().to_string();
    let mut report = TestFileReport { file: file.clone(), ..Default::default() };
    let whole = |msg: String| Diagnostic::error(&file, Pos::default(), None, msg);
    let files = match load_dir(path) {
        Ok(f) => f,
        Err(e) => {
            report.errors.push(whole(format!("cannot read: {e}")));
            return report;
        }
    };
    let bytes = match files.into_iter().next().map(|f| f.content) {
        Some(Content::Bytes(b)) => b,
        Some(Content::NotRegular) => {
            report.errors.push(whole("is a symlink or not a regular file".into()));
            return report;
        }
        Some(Content::TooLarge(n)) => {
            report.errors.push(whole(format!("file is {n} bytes; test files are limited to {MAX_FILE_BYTES}")));
            return report;
        }
        None => {
            report.errors.push(whole("cannot read".into()));
            return report;
        }
    };
    let text = match yaml::decode(&bytes) {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(Diagnostic::error(&file, e.pos, None, e.message));
            return report;
        }
    };
    let root = match yaml::parse(text, Limits::default()) {
        Ok(mut docs) if docs.len() == 1 => docs.remove(0).root,
        Ok(docs) => {
            report.errors.push(whole(format!("a test file holds exactly one YAML document, found {}", docs.len())));
            return report;
        }
        Err(e) => {
            report.errors.push(Diagnostic::error(&file, e.pos, None, e.message));
            return report;
        }
    };
    let suite: Suite = match serde_path_to_error::deserialize(root.to_json()) {
        Ok(s) => s,
        Err(e) => {
            let segs = yaml::path_of(e.path());
            let pos = root.locate(&segs, true);
            report.errors.push(Diagnostic::error(
                &file,
                pos,
                (!segs.is_empty()).then(|| display_path(&segs)),
                e.into_inner().to_string(),
            ));
            return report;
        }
    };
    let policies = load_policies(path, &suite, &root, &mut report);
    if !report.errors.is_empty() {
        return report;
    }
    report.cases = suite.cases.iter().map(|c| run_case(&suite, c, &policies)).collect();
    report
}

fn load_policies(
    test_file: &Path,
    suite: &Suite,
    root: &yaml::Node,
    report: &mut TestFileReport,
) -> Vec<CompiledPolicy> {
    let base = test_file.parent().unwrap_or(Path::new("."));
    let mut compiled = Vec::new();
    if suite.policies.is_empty() {
        report.errors.push(Diagnostic::error(
            &report.file,
            root.pos,
            Some("policies".into()),
            "list the Policy manifests to test, relative to this file",
        ));
    }
    for (i, rel) in suite.policies.iter().enumerate() {
        let at = root.locate(&[PathSeg::Key("policies".into()), PathSeg::Index(i)], false);
        let target = base.join(rel);
        let files = match load_dir(&target) {
            Ok(f) => f,
            Err(e) => {
                report.errors.push(Diagnostic::error(
                    &report.file,
                    at,
                    Some(format!("policies[{i}]")),
                    format!("cannot read `{rel}`: {e}"),
                ));
                continue;
            }
        };
        let checked = validate_files(&files);
        if !checked.is_ok() {
            report.errors.push(Diagnostic::error(
                &report.file,
                at,
                Some(format!("policies[{i}]")),
                format!(
                    "`{rel}` does not validate ({} errors); run `paddock validate {}`",
                    checked.errors(),
                    target.display()
                ),
            ));
            continue;
        }
        for obj in checked.objects.iter().filter(|o| o.kind == Kind::Policy) {
            let Object::Policy(p) = &obj.object else { continue };
            if !selects(&p.spec, &suite.agent.name, &suite.agent.labels) {
                report.skipped.push(format!("{} (does not select agent `{}`)", obj.name, suite.agent.name));
                continue;
            }
            match compile_policy(&obj.name, Level::Namespace, &p.spec) {
                Ok(c) => {
                    report.applied.push(obj.name.clone());
                    compiled.push(c);
                }
                Err(errs) => {
                    for e in errs {
                        report.errors.push(Diagnostic::error(
                            &report.file,
                            at,
                            Some(format!("policies[{i}]")),
                            format!("policy `{}`: {e}", obj.name),
                        ));
                    }
                }
            }
        }
    }
    compiled
}
