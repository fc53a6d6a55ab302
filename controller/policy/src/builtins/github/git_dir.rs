//! Writes inside a git directory (`.git/config`, `.git/hooks/*`, `.git/info/*`): the settings and hooks
//! there decide what git runs and where `origin` pushes, so the `github` rule cannot judge later git
//! commands once they change. File tools that write there, and shell lines that may, are opaque.
//!
//! A line that hands such a path to a program other than a reader (`cat`, `ls`, `grep`, git itself…) is
//! reported; so is one that redirects output into it (`echo … >> .git/config`): the shell parser does not
//! report redirection targets, so they are read from the raw line. A target built from a variable
//! (`> "$d/config"`) is not seen.

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
    if let Some(c) = cmds.iter().find(|c| names_git_dir(c) && !reads_only(c)) {
        return Some(format!("`{}` may change files inside a git directory: {WHY}", c.argv.join(" ")));
    }
    let target = redirect_targets(line?).into_iter().find(|t| in_git_dir(t))?;
    Some(format!("the command line writes into `{target}`, inside a git directory: {WHY}"))
}

/// Whether a command is given a path inside a git directory: a `.git` component in an argument, other
/// than a pattern that leaves `.git` out (`--exclude .git`, `find . -not -path './.git/*'`).
fn names_git_dir(c: &SimpleCommand) -> bool {
    const PATTERN_OPTS: &[&str] =
        &["--exclude", "--exclude-dir", "-path", "-ipath", "-wholename", "-iwholename", "-name", "-iname", "-regex"];
    let find = program_name(c.argv.first().map_or("", String::as_str)).eq_ignore_ascii_case("find");
    let mut expression = false;
    c.argv.iter().enumerate().skip(1).any(|(i, w)| {
        // `find`'s starting points come before its expression; what `-exec` runs is a command of its own.
        expression |= find && w.starts_with(['-', '(', '!']);
        let option = w.split_once('=').map_or("", |(o, _)| o);
        let pattern = expression || PATTERN_OPTS.contains(&c.argv[i - 1].as_str()) || PATTERN_OPTS.contains(&option);
        !pattern && in_git_dir(w)
    })
}

/// Whether a path has a `.git` component (any case; a glob that may expand to it counts), also as the value
/// of an operand or option (`of=.git/config`, `--output=.git/hooks/x`).
fn in_git_dir(path: &str) -> bool {
    path.split(['/', '\\', '=']).any(|c| {
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
        | "test" | "[" | "[[" | "basename" | "dirname" | "echo" | "printf" | "xxd" | "od" | "hexdump" | "strings"
        | "git" => true,
        "find" => !has(&["-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf", "-fls"]),
        _ => false,
    }
}

/// The words after output redirections of a raw command line (`> f`, `>>f`, `2> f`, `>| f`, `&> f`), quotes
/// removed; not `>&2` or `>(…)`. The shell parser does not report them, so the raw text is read.
pub(crate) fn redirect_targets(line: &str) -> Vec<String> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'>' {
            i += 1;
            continue;
        }
        i += 1;
        while i < b.len() && matches!(b[i], b'>' | b'|') {
            i += 1;
        }
        if i < b.len() && matches!(b[i], b'&' | b'(') {
            continue;
        }
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !b";&|<>()".contains(&b[i]) {
            i += 1;
        }
        let word: String = line[start..i].chars().filter(|c| !matches!(c, '\'' | '"' | '\\')).collect();
        if !word.is_empty() {
            out.push(word);
        }
    }
    out
}
