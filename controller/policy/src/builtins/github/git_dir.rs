//! Writes inside a git directory (`.git/config`, `.git/hooks/*`, `.git/info/*`): the settings and hooks
//! there decide what git runs and where `origin` pushes, so the `github` rule cannot judge later git
//! commands once they change. File tools that write there, and shell lines that may, are opaque.
//!
//! The shell parser does not report redirection targets (`echo … >> .git/config`), so the raw line is
//! read too: a line that names a path inside `.git` and redirects output, or that hands such a path to a
//! program other than a reader (`cat`, `ls`, `grep`, git itself…), is reported.

use crate::shell::{SimpleCommand, program_name};
use crate::tools::{ToolKind, ToolUse, glob_match};

const WHY: &str = "settings and hooks there decide what git runs and where it pushes, which the gate cannot see";

/// Why a file tool's write is opaque: it writes inside a git directory.
pub(super) fn file_tool_writes(t: &ToolUse) -> Option<String> {
    if !matches!(t.kind, ToolKind::WriteFile | ToolKind::EditFile) {
        return None;
    }
    let p = t.paths().into_iter().find(|p| in_git_dir(p))?;
    Some(format!("`{}` writes `{p}` inside a git directory: {WHY}", t.name))
}

/// Why a shell line may change files inside a git directory, if it may.
pub(super) fn shell_touches(line: Option<&str>, cmds: &[SimpleCommand]) -> Option<String> {
    let names = |c: &SimpleCommand| c.argv.iter().skip(1).any(|w| in_git_dir(w));
    if let Some(c) = cmds.iter().find(|c| names(c) && !reads_only(c)) {
        return Some(format!("`{}` may change files inside a git directory: {WHY}", c.argv.join(" ")));
    }
    let line = line?;
    let mentioned = line.split(|c: char| c.is_whitespace() || ";&|<>()'\"`=$".contains(c)).any(in_git_dir);
    (mentioned && redirects_output(line))
        .then(|| format!("the command line writes output while naming a path inside a git directory: {WHY}"))
}

/// Whether a path has a `.git` component (any case; a glob that may expand to it counts).
fn in_git_dir(path: &str) -> bool {
    path.split(['/', '\\']).any(|c| {
        c.eq_ignore_ascii_case(".git")
            || (c.contains(['*', '?']) && glob_match(&c.to_ascii_lowercase(), ".git"))
            || (c.contains('[') && c.len() <= 12 && c.to_ascii_lowercase().starts_with(".g"))
    })
}

/// Programs that only read the files they are given (without options that write).
fn reads_only(c: &SimpleCommand) -> bool {
    let prog = program_name(c.argv.first().map_or("", String::as_str)).to_ascii_lowercase();
    let has = |opts: &[&str]| c.argv.iter().any(|a| opts.contains(&a.as_str()));
    match prog.as_str() {
        "cat" | "less" | "more" | "head" | "tail" | "ls" | "stat" | "file" | "wc" | "grep" | "egrep" | "fgrep"
        | "rg" | "tree" | "du" | "diff" | "cmp" | "md5sum" | "sha1sum" | "sha256sum" | "readlink" | "realpath"
        | "test" | "[" | "[[" | "basename" | "dirname" | "echo" | "xxd" | "od" | "hexdump" | "strings" | "git" => true,
        "find" => !has(&["-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf", "-fls"]),
        _ => false,
    }
}

/// Whether a raw command line redirects output into a file (`>`, `>>`, `>|`), other than to a file
/// descriptor or `/dev/null`.
fn redirects_output(line: &str) -> bool {
    let mut rest = line.to_string();
    for harmless in ["&>/dev/null", ">/dev/null", "> /dev/null", ">&1", ">&2", "->", "=>"] {
        rest = rest.replace(harmless, "");
    }
    rest.contains('>')
}
