//! Helpers shared by the cross-crate tests.

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
}

/// Where a real helm may be, in order: `$PADDOCK_HELM`, `$PADDOCK_E2E_HELM` (those set), the one `.ci/run`
/// installs (`.ci/npm-helm`), `helm` on PATH.
pub fn helm_candidates() -> Vec<PathBuf> {
    let set = ["PADDOCK_HELM", "PADDOCK_E2E_HELM"]
        .into_iter()
        .filter_map(|var| std::env::var_os(var).filter(|p| !p.is_empty()).map(PathBuf::from));
    set.chain([repo_root().join(".ci/npm-helm/bin/helm"), PathBuf::from("helm")]).collect()
}

/// The helm to run: a variable that is set, else `.ci/run`'s when it is there, else `helm` on PATH.
pub fn helm() -> PathBuf {
    let ci = repo_root().join(".ci/npm-helm/bin/helm");
    helm_candidates().into_iter().find(|p| *p != ci || p.is_file()).expect("`helm` is always a candidate")
}

/// What a corpus file says it must produce: `# expect: LINE:COL FIELD | MESSAGE` on its first line
/// (FIELD is `-` when the error is not about a field).
#[derive(Debug, PartialEq, Eq)]
pub struct Expectation {
    pub line: u32,
    pub column: u32,
    pub field: Option<String>,
    pub message: String,
}

pub fn parse_expectation(first_line: &str) -> Option<Expectation> {
    let rest = first_line.strip_prefix("# expect: ")?;
    let (head, message) = rest.split_once(" | ")?;
    let (pos, field) = head.split_once(' ')?;
    let (line, column) = pos.split_once(':')?;
    Some(Expectation {
        line: line.parse().ok()?,
        column: column.parse().ok()?,
        field: (field != "-").then(|| field.to_owned()),
        message: message.to_owned(),
    })
}
