//! The files a session wrote, so that running a script file is judged by what the session put in it
//! (issue 14: `sh p.sh` after writing it). A file tool that writes a whole file shows its content
//! (`Seen`); an edit, a shell redirection, `cp`, `sed -i`, a download… change a file in a way whose
//! result the gate cannot know (`Unseen`). [`scripts`] decides what running such a file means.
//!
//! Bounded: at most [`MAX_PATHS`] paths and [`MAX_CONTENT`] bytes of content per session. Past the
//! content budget a file is remembered as `Unseen`; past the path budget `overflow` is set and every
//! file not remembered as `Seen` counts as possibly written. A write is never forgotten in a way that
//! turns "written" into "never written": that would let a changed script pass as the repository's own.
//!
//! Pure: it reads tool arguments and parsed command lines, never the file system.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod command_files;
pub mod record;
pub mod scripts;

/// Most paths remembered per session; past it `overflow` is set.
pub const MAX_PATHS: usize = 256;
/// Most bytes of written content remembered per session; past it a file is remembered as `Unseen`.
pub const MAX_CONTENT: usize = 256 * 1024;
/// Longest description of how a file was changed that is kept.
const MAX_HOW: usize = 160;

/// What the session wrote, by normalised path (see [`normalize`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WrittenFiles {
    pub files: BTreeMap<String, Written>,
    /// How files were written whose names the gate could not tell (`tar x`, `unzip`, `git apply`):
    /// any file not remembered as `Seen` may have been written.
    pub unknown: Option<String>,
    /// More paths were written than are remembered: any file not remembered as `Seen` may have been written.
    pub overflow: bool,
}

/// One written file. Stored as `{kind: seen, value: CONTENT}` or `{kind: unseen, value: HOW}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Written {
    /// A file tool wrote the whole file and the gate saw this content.
    Seen(String),
    /// Changed in a way whose result the gate cannot know; says how (`` `Edit` ``, `` `echo … > p.sh` ``).
    Unseen(String),
}

/// One write a tool use makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileWrite {
    /// A file at a path (as given; normalised when recorded).
    File { path: String, file: Written },
    /// Files whose names are not known (`tar x`): says how.
    Unknown(String),
}

impl WrittenFiles {
    /// Records a write. `tentative` writes come from a model's response (the call may still be refused at
    /// `tool_call`): one that would replace a different remembered state becomes `Unseen`, since the old
    /// content may still be there.
    pub fn record(&mut self, path: &str, file: Written, tentative: bool) {
        let Some(key) = normalize(path) else {
            self.note_unknown(&format!("`{path}`, a path the gate cannot tell"));
            return;
        };
        let mut file = match file {
            Written::Unseen(how) => Written::Unseen(short(&how)),
            seen => seen,
        };
        if tentative
            && let Some(old) = self.files.get(&key)
            && *old != file
        {
            file = Written::Unseen(format!("{} (announced in a model response, not yet run)", how(&file)));
        }
        if let Written::Seen(content) = &file {
            let others: usize = self
                .files
                .iter()
                .filter(|(k, _)| **k != key)
                .map(|(_, w)| if let Written::Seen(c) = w { c.len() } else { 0 })
                .sum();
            if others + content.len() > MAX_CONTENT {
                file = Written::Unseen("written with more content than the gate remembers".into());
            }
        }
        if !self.files.contains_key(&key) && self.files.len() >= MAX_PATHS {
            self.overflow = true;
            return;
        }
        self.files.insert(key, file);
    }

    /// Files were written under names the gate could not tell: any remembered content may have been
    /// overwritten since, so it no longer counts as seen.
    pub fn note_unknown(&mut self, how: &str) {
        let how = short(how);
        for file in self.files.values_mut() {
            if let Written::Seen(_) = file {
                *file = Written::Unseen(format!("possibly overwritten by {how}"));
            }
        }
        self.unknown.get_or_insert(how);
    }

    /// Applies the writes of one tool use.
    pub fn apply(&mut self, writes: &[FileWrite], tentative: bool) {
        for w in writes {
            match w {
                FileWrite::File { path, file } => self.record(path, file.clone(), tentative),
                FileWrite::Unknown(how) => self.note_unknown(how),
            }
        }
    }

    /// Whether any file not remembered may have been written.
    pub fn may_hide_writes(&self) -> Option<String> {
        if let Some(how) = &self.unknown {
            return Some(format!("this session wrote files the gate could not name ({how})"));
        }
        self.overflow.then(|| format!("this session wrote more than {MAX_PATHS} files, more than the gate remembers"))
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.unknown.is_none() && !self.overflow
    }
}

/// How a file was written, for reasons.
pub fn how(w: &Written) -> String {
    match w {
        Written::Seen(_) => "written by a file tool".into(),
        Written::Unseen(how) => how.clone(),
    }
}

fn short(s: &str) -> String {
    if s.chars().count() <= MAX_HOW {
        return s.to_owned();
    }
    s.chars().take(MAX_HOW - 1).collect::<String>() + "…"
}

/// The workspace every runner mounts: `/workspace/x` and `x` name the same file.
const WORKSPACE: &str = "/workspace";

/// A path as remembered: relative to the workspace (`/workspace/x`, `./x` and `x` are `x`), or absolute
/// outside it; `.` and `..` resolved. `None` when it cannot be told: empty, an expansion, a glob or a
/// placeholder (`find -exec sh {}`), `~`, or
/// `..` above the start of a relative path.
pub fn normalize(path: &str) -> Option<String> {
    if path.is_empty() || path.contains(['$', '`', '*', '?', '[', '{', '}', '~']) {
        return None;
    }
    let (absolute, rest) = match path.strip_prefix(WORKSPACE) {
        Some(r) if r.is_empty() || r.starts_with('/') => (false, r),
        _ => (path.starts_with('/'), path),
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in rest.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    Some(if absolute { format!("/{joined}") } else { joined })
}

/// The file name of a path (`a/b.sh` → `b.sh`).
pub fn file_name(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised() {
        for p in ["p.sh", "./p.sh", "/workspace/p.sh", ".//p.sh", "a/../p.sh", "/workspace/./p.sh"] {
            assert_eq!(normalize(p).as_deref(), Some("p.sh"), "{p}");
        }
        assert_eq!(normalize("/tmp/x/../p.sh").as_deref(), Some("/tmp/p.sh"));
        assert_eq!(normalize("/workspacex/p.sh").as_deref(), Some("/workspacex/p.sh"));
        for p in ["../p.sh", "$d/p.sh", "*.sh", "~/p.sh", "{}", ""] {
            assert_eq!(normalize(p), None, "{p}");
        }
    }

    #[test]
    fn bounded_without_forgetting() {
        let mut w = WrittenFiles::default();
        for i in 0..MAX_PATHS + 10 {
            w.record(&format!("f{i}.sh"), Written::Seen("x".into()), false);
        }
        assert_eq!(w.files.len(), MAX_PATHS);
        assert!(w.overflow && w.may_hide_writes().is_some());
        let mut w = WrittenFiles::default();
        w.record("a.sh", Written::Seen("a".repeat(MAX_CONTENT - 10)), false);
        w.record("b.sh", Written::Seen("b".repeat(20)), false);
        assert!(matches!(w.files["b.sh"], Written::Unseen(_)));
        // Rewriting a remembered file frees its share.
        w.record("a.sh", Written::Seen("a".into()), false);
        w.record("b.sh", Written::Seen("b".repeat(20)), false);
        assert_eq!(w.files["b.sh"], Written::Seen("b".repeat(20)));
    }

    #[test]
    fn a_tentative_write_over_another_state_is_unseen() {
        let mut w = WrittenFiles::default();
        w.record("p.sh", Written::Seen("cargo test".into()), true);
        assert_eq!(w.files["p.sh"], Written::Seen("cargo test".into()));
        w.record("p.sh", Written::Seen("cargo test".into()), true);
        assert_eq!(w.files["p.sh"], Written::Seen("cargo test".into()));
        w.record("p.sh", Written::Seen("git push -f".into()), true);
        assert!(matches!(w.files["p.sh"], Written::Unseen(_)));
        w.record("p.sh", Written::Seen("git push -f".into()), false);
        assert_eq!(w.files["p.sh"], Written::Seen("git push -f".into()));
    }
}
