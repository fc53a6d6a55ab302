//! Compiler-style diagnostics: `file:line:column: error: field.path: message`, with the source line.

use std::fmt;

use crate::yaml::Pos;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// A problem in a file. `pos.line == 0` means it concerns the whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Pos,
    pub severity: Severity,
    /// The field path (`spec.sandbox.egress[0]`), when the problem is in a field.
    pub field: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn error(file: &str, pos: Pos, field: Option<String>, message: impl Into<String>) -> Self {
        Diagnostic { file: file.to_owned(), pos, severity: Severity::Error, field, message: message.into() }
    }

    pub fn warning(file: &str, pos: Pos, field: Option<String>, message: impl Into<String>) -> Self {
        Diagnostic { file: file.to_owned(), pos, severity: Severity::Warning, field, message: message.into() }
    }

    /// The diagnostic followed by the offending source line and a caret under the column.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = self.to_string();
        let line = source.filter(|_| self.pos.line > 0).and_then(|s| s.lines().nth(self.pos.line as usize - 1));
        if let Some(text) = line {
            let text: String = text.chars().take(160).collect();
            let gutter = self.pos.line.to_string().len();
            let indent: String = text
                .chars()
                .take(self.pos.column.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("\n{:gutter$} |\n{} | {}\n{:gutter$} | {}^", "", self.pos.line, text, "", indent));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.pos.line == 0 {
            write!(f, "{}: {level}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: {level}: ", self.file, self.pos.line, self.pos.column)?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Suggestions are for typos in names, which are short: long words and distant lengths are not
    // compared, which also keeps hostile input (a 1 MiB model name, thousands of names) cheap.
    let len = word.chars().count();
    if len > 64 {
        return None;
    }
    let budget = (len / 3).clamp(1, 3);
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .filter(|c| c.chars().count().abs_diff(len) <= budget)
        .take(10_000)
        .map(|c| (edit_distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A sentence suffix: "; did you mean `x`?" or nothing.
pub fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(word, candidates).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default()
}

/// Optimal-string-alignment distance: edits plus adjacent transpositions (`modle` → `model` is 1).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_a_compiler() {
        let d = Diagnostic::error("agents/a.yaml", Pos { line: 2, column: 3 }, Some("spec.model".into()), "bad");
        assert_eq!(d.to_string(), "agents/a.yaml:2:3: error: spec.model: bad");
        let r = d.render(Some("x: 1\n  model: q\n"));
        assert!(r.ends_with("2 |   model: q\n  |   ^"), "{r}");
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("claudecode", ["claude-code", "codex", "custom"]), Some("claude-code"));
        assert_eq!(did_you_mean("modle", ["model", "tools"]), Some("model"));
        assert_eq!(did_you_mean("zzzzzz", ["model", "tools"]), None);
    }
}
