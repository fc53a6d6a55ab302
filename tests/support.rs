//! Helpers shared by the cross-crate tests.

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repository root")
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
