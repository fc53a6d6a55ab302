//! The agent's workspace in local mode is a copy. A sandboxed agent can write anything into its workspace,
//! including what git on the host would later run: `core.fsmonitor`, `core.hooksPath`, `core.pager` and
//! filter drivers in `.git/config`, hooks, a nested repository's config, a `.git` file pointing elsewhere, a
//! fresh `git init`. So the agent never works in the user's directory: `paddock session run --workspace DIR`
//! copies DIR into the session's own directory, the sandbox gets the copy, and the work comes back only
//! through `paddock session diff` / `apply` ([`super::apply`]), which read the copy's files as data, never
//! run git on it, and never bring back anything named `.git`.
//!
//! The base of that comparison is a manifest of the copy as it was before the agent started (each file's
//! SHA-256 and executable bit, each symlink's target), so a user's own edits made meanwhile are told apart
//! from the agent's.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use paddock_sandbox::local::WorkspaceBind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The agent's copy, inside the session's directory.
pub const COPY: &str = "workspace";
/// The manifest of the copy before the agent started.
const BASE: &str = "base.json";

/// One entry of a workspace tree (directories are implied by their contents).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Entry {
    File {
        sha256: String,
        executable: bool,
    },
    Symlink {
        target: String,
    },
    /// A fifo, socket or device node.
    Other,
}

/// A workspace tree: entries by `/`-separated relative path, and what was left out.
#[derive(Debug, Default)]
pub struct Tree {
    pub entries: BTreeMap<String, Entry>,
    /// Paths not compared: git metadata (`.git` at any depth) and names that are not UTF-8.
    pub ignored: Vec<String>,
}

/// What the session started from.
#[derive(Debug, Serialize, Deserialize)]
pub struct Base {
    /// The user's directory the copy was made from; `None` for a fresh, empty workspace.
    pub source: Option<PathBuf>,
    pub entries: BTreeMap<String, Entry>,
}

/// Whether a name is, or on some file system would be, git's metadata — the names git itself refuses in a
/// tree for that reason: any case (case-insensitive file systems), with the code points HFS+ ignores
/// removed (`.g\u{200c}it`), trailing dots and spaces dropped (NTFS), and NTFS's short name `git~1`.
pub fn is_git_name(name: &OsStr) -> bool {
    let Some(s) = name.to_str() else { return false };
    let hfs_ignorable =
        |c: char| matches!(c, '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}');
    let folded = s.chars().filter(|c| !hfs_ignorable(*c)).collect::<String>().to_ascii_lowercase();
    let trimmed = folded.trim_end_matches(['.', ' ']);
    trimmed == ".git" || trimmed == "git~1"
}

/// Makes the session's workspace: a copy of `source` (or an empty directory), with the directories of its
/// git metadata that the sandbox shows read-only present, and the manifest of what it holds. Returns the
/// copy's path.
pub fn prepare(session_dir: &Path, source: Option<&Path>) -> anyhow::Result<PathBuf> {
    let copy = session_dir.join(COPY);
    std::fs::create_dir(&copy).with_context(|| format!("cannot create `{}`", copy.display()))?;
    if let Some(src) = source {
        // `cp -a`: symlinks stay symlinks, modes and times are kept, and reflinks make it cheap where the
        // file system can share blocks.
        let out = std::process::Command::new("cp")
            .args(["-a", "--reflink=auto", "--"])
            .arg(src.join("."))
            .arg(&copy)
            .stdin(std::process::Stdio::null())
            .output()
            .context("cannot run `cp` to copy the workspace")?;
        if !out.status.success() {
            anyhow::bail!(
                "cannot copy the workspace `{}` for the session: {}",
                src.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let git = copy.join(".git");
    if std::fs::symlink_metadata(&git).is_ok_and(|m| m.is_dir()) {
        for d in ["hooks", "info"] {
            let p = git.join(d);
            if std::fs::symlink_metadata(&p).is_err() {
                std::fs::create_dir(&p).with_context(|| format!("cannot create `{}`", p.display()))?;
            }
        }
    }
    let tree = walk(&copy)?;
    let base = Base { source: source.map(Path::to_path_buf), entries: tree.entries };
    std::fs::write(session_dir.join(BASE), serde_json::to_vec(&base)?).context("cannot write the manifest")?;
    Ok(copy)
}

/// What the sandbox binds over itself inside a workspace copy: `.git` pinned (writable, but a mount point
/// cannot be renamed, removed or replaced by a symlink), then git's configuration, hooks and attributes (of
/// the repository and of its submodules) read-only. Only paths that exist, as real directories or files, in
/// the copy when this is called (see [`prepare`]).
pub fn binds_inside(copy: &Path) -> Vec<WorkspaceBind> {
    let real = |rel: &str| std::fs::symlink_metadata(copy.join(rel)).is_ok_and(|m| !m.file_type().is_symlink());
    if !std::fs::symlink_metadata(copy.join(".git")).is_ok_and(|m| m.is_dir()) {
        return Vec::new();
    }
    let mut out = vec![WorkspaceBind { path: ".git".into(), read_only: false }];
    for p in ["config", "config.worktree", "hooks", "info", "modules", "commondir"] {
        let rel = format!(".git/{p}");
        if real(&rel) {
            out.push(WorkspaceBind { path: rel, read_only: true });
        }
    }
    out
}

/// The manifest written by [`prepare`].
pub fn load_base(session_dir: &Path) -> anyhow::Result<Base> {
    let p = session_dir.join(BASE);
    let text = std::fs::read(&p).with_context(|| {
        format!("this session has no workspace manifest at `{}` (it was started by an older paddock)", p.display())
    })?;
    serde_json::from_slice(&text).with_context(|| format!("`{}` is not a workspace manifest", p.display()))
}

/// Walks a workspace without following symlinks, leaving out git metadata at any depth.
pub fn walk(root: &Path) -> anyhow::Result<Tree> {
    let mut tree = Tree::default();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() { root.to_path_buf() } else { root.join(&rel) };
        let rd = std::fs::read_dir(&dir).with_context(|| format!("cannot read `{}`", dir.display()))?;
        for e in rd {
            let e = e.with_context(|| format!("cannot read `{}`", dir.display()))?;
            let name = e.file_name();
            let Some(n) = name.to_str() else {
                tree.ignored.push(format!("{rel}{}{}", if rel.is_empty() { "" } else { "/" }, name.to_string_lossy()));
                continue;
            };
            let path = if rel.is_empty() { n.to_owned() } else { format!("{rel}/{n}") };
            if is_git_name(&name) {
                tree.ignored.push(path);
                continue;
            }
            let meta = std::fs::symlink_metadata(e.path())?;
            let ft = meta.file_type();
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_symlink() {
                let target = std::fs::read_link(e.path())?.to_string_lossy().into_owned();
                tree.entries.insert(path, Entry::Symlink { target });
            } else if ft.is_file() {
                tree.entries.insert(path, file_entry(&e.path())?);
            } else {
                tree.entries.insert(path, Entry::Other);
            }
        }
    }
    tree.ignored.sort();
    Ok(tree)
}

/// Opens a regular file without following a symlink in its last component, and checks that it is one.
pub fn open_regular(p: &Path) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(p)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other(format!("`{}` is not a regular file", p.display())));
    }
    Ok(f)
}

/// A regular file's entry: its hash and whether anyone may execute it.
pub fn file_entry(p: &Path) -> anyhow::Result<Entry> {
    let mut f = open_regular(p).with_context(|| format!("cannot read `{}`", p.display()))?;
    let executable = f.metadata()?.permissions().mode() & 0o111 != 0;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("cannot read `{}`", p.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Entry::File { sha256: paddock_gateway::gateway::hex_of(&h.finalize()), executable })
}

/// One difference between the base and the copy now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub path: String,
    /// `added`, `modified` or `deleted`.
    pub change: &'static str,
    pub before: Option<Entry>,
    pub after: Option<Entry>,
}

/// What the agent changed: entries added, modified (content, executable bit, kind or link target) and
/// deleted, in path order.
pub fn changes(base: &BTreeMap<String, Entry>, now: &BTreeMap<String, Entry>) -> Vec<Change> {
    let mut out = Vec::new();
    for (path, after) in now {
        match base.get(path) {
            None => out.push(Change { path: path.clone(), change: "added", before: None, after: Some(after.clone()) }),
            Some(before) if before != after => out.push(Change {
                path: path.clone(),
                change: "modified",
                before: Some(before.clone()),
                after: Some(after.clone()),
            }),
            Some(_) => {}
        }
    }
    for (path, before) in base {
        if !now.contains_key(path) {
            out.push(Change { path: path.clone(), change: "deleted", before: Some(before.clone()), after: None });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_dot_git_is_git_metadata() {
        for name in
            [".git", ".GIT", ".Git", ".g\u{200c}it", "\u{feff}.git", ".git.", ".git ", ".git. .", "GIT~1", "git~1"]
        {
            assert!(is_git_name(OsStr::new(name)), "{name:?}");
        }
        for name in ["git", ".gitignore", ".github", ".gitattributes", "x.git", ".git~1"] {
            assert!(!is_git_name(OsStr::new(name)), "{name:?}");
        }
    }

    #[test]
    fn the_copy_and_its_manifest_leave_git_metadata_out() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join(".git")).unwrap();
        std::fs::write(src.join(".git/config"), "[core]\n").unwrap();
        std::fs::create_dir_all(src.join("sub/.GIT")).unwrap();
        std::fs::write(src.join("a.txt"), "a").unwrap();
        std::fs::write(src.join("sub/b.sh"), "b").unwrap();
        std::fs::set_permissions(src.join("sub/b.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
        let session = dir.path().join("s");
        std::fs::create_dir(&session).unwrap();
        let copy = prepare(&session, Some(&src)).unwrap();
        assert!(copy.join(".git/config").is_file() && copy.join(".git/hooks").is_dir());
        assert!(!src.join(".git/hooks").exists(), "the user's directory is not touched");
        let binds: Vec<(String, bool)> = binds_inside(&copy).into_iter().map(|b| (b.path, b.read_only)).collect();
        let expected = [(".git", false), (".git/config", true), (".git/hooks", true), (".git/info", true)];
        assert_eq!(binds, expected.map(|(p, ro)| (p.to_owned(), ro)));
        let base = load_base(&session).unwrap();
        assert_eq!(base.source.as_deref(), Some(src.as_path()));
        assert_eq!(base.entries.keys().collect::<Vec<_>>(), ["a.txt", "link", "sub/b.sh"]);
        assert!(matches!(base.entries["sub/b.sh"], Entry::File { executable: true, .. }));
        assert_eq!(base.entries["link"], Entry::Symlink { target: "a.txt".into() });
        // The agent's work: one file changed, one added, one deleted, a nested repository planted.
        std::fs::write(copy.join("a.txt"), "A").unwrap();
        std::fs::write(copy.join("new.txt"), "n").unwrap();
        std::fs::remove_file(copy.join("sub/b.sh")).unwrap();
        std::fs::create_dir_all(copy.join("nested/.git")).unwrap();
        std::fs::write(copy.join("nested/.git/config"), "[core]\nfsmonitor = evil\n").unwrap();
        let now = walk(&copy).unwrap();
        assert_eq!(now.ignored, [".git", "nested/.git", "sub/.GIT"]);
        let c = changes(&base.entries, &now.entries);
        let summary: Vec<(&str, &str)> = c.iter().map(|c| (c.path.as_str(), c.change)).collect();
        assert_eq!(summary, [("a.txt", "modified"), ("new.txt", "added"), ("sub/b.sh", "deleted")]);
    }
}
