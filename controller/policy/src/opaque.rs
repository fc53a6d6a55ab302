//! Opaque commands: command lines whose effect the shell parser cannot see (a program that is itself an
//! expansion, inline code of another interpreter, a script file fed to a shell, a copy of `git` under
//! another name, exported git configuration…). Rules that judge what a command does (`github`,
//! `blast_radius`) answer these with their `opaque_action` (ask by default), never allow, and say what
//! could not be seen.
//!
//! [`why_opaque`] is the one place that decides. It reads the commands of one line in order (see
//! [`crate::shell`]), so that earlier commands give context to later ones: `ln -s /usr/bin/git g`
//! makes `./g` opaque, `export PATH=/tmp/x:$PATH` makes a later `git` opaque. What the parser already
//! sees through (`c="git push -f"; $c`, `bash -c '…'`, `echo '…' | sh`, `eval 'literal'`, aliases,
//! functions, `printf -v c 'literal'`, `set -- …; "$@"`, `IFS=,` with literal values) is not opaque:
//! the commands it runs are reported and judged instead.
//!
//! A script FILE — run by a shell (`bash x.sh`, `source x`), by its own path (`./build.sh`) or by a
//! language interpreter (`python3 script.py`) — is not opaque here: it is judged by what the session
//! wrote into it ([`crate::written::scripts`], exposed by [`crate::tools::ToolUse::script_opacity`]).
//! One the session never wrote is the repository's own; what it does, like what `make` or `npm test`
//! run, is out of reach of parsing and mediated on the wire (the egress gateway).
//!
//! Pure: it reads only the parsed commands of one line.

use crate::shell::{SimpleCommand, is_system_path, program_name, sees_through};

mod code;
mod env;
#[cfg(test)]
mod tests;

use code::{command_option, debugger_runs_commands, inline_code, is_interpreter, is_stream};
use env::{applies_to, exported_setting, exports, git_setting, is_config_env, only_system_dirs};

/// Why the effect of this command line cannot be seen, if it cannot: the first reason found, naming the
/// command. `None` when every command is one the parser sees through.
pub fn why_opaque(cmds: &[SimpleCommand]) -> Option<String> {
    let mut line = Line::default();
    cmds.iter().find_map(|c| line.visit(c))
}

/// What earlier commands of the line did that changes what later ones run.
#[derive(Default)]
struct Line {
    /// `PATH` was changed (the assignment): a later `git` may be another program.
    path: Option<String>,
    /// Variables set or exported on the line that change what git or gh do (`GIT_DIR=…`).
    git_env: Vec<String>,
    /// `set -a`: every later assignment is exported.
    allexport: bool,
    /// A sourced environment script (a virtualenv's `activate`): it may define functions or `PATH`.
    sourced: Option<String>,
    /// Paths made on the line as copies, links or renames of a program the rules judge, and their
    /// file names (`ln -s /usr/bin/git ./g` → `g`).
    made: Vec<(String, String)>,
    /// Names bound to another file by `hash -p` or `enable -f`.
    rebound: Vec<String>,
    /// An earlier command read an installed program's bytes (`cat /usr/bin/git > g`, the output
    /// file unseen): a later program given by a path may be that copy.
    blind_copy: Option<String>,
    /// An earlier command decodes data (`base64 -d`): named when a shell then reads stdin.
    decoded: Option<String>,
}

/// A command as the user would read it, for reasons.
fn shown(c: &SimpleCommand) -> String {
    let mut s = if c.argv.is_empty() {
        assignments(c).map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>()
    } else {
        c.argv.clone()
    }
    .join(" ");
    if s.chars().count() > 120 {
        s = s.chars().take(117).collect::<String>() + "…";
    }
    format!("`{s}`")
}

/// The `NAME=value` entries among a command's wrappers (assignment prefixes, `env A=1`).
fn assignments(c: &SimpleCommand) -> impl Iterator<Item = (&str, &str)> {
    c.wrappers.iter().filter_map(|w| split_assignment(w))
}

fn split_assignment(w: &str) -> Option<(&str, &str)> {
    let (name, value) = w.split_once('=')?;
    let name = name.strip_suffix('+').unwrap_or(name);
    let name = name.split('[').next().unwrap_or(name);
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then_some((name, value))
}

impl Line {
    fn visit(&mut self, c: &SimpleCommand) -> Option<String> {
        let why = self.check(c);
        self.learn(c);
        why
    }

    fn check(&self, c: &SimpleCommand) -> Option<String> {
        let what = shown(c);
        // Settings in this command's own environment, and from earlier on the line.
        for (name, value) in assignments(c) {
            if name == "IFS" && is_expansion(value) {
                return Some(format!("{what}: `IFS` is set to a value the line does not show"));
            }
            if matches!(name, "BASH_ENV" | "ENV") {
                return Some(format!("{what}: `{name}` makes shells run a script file first"));
            }
            if name == "PROMPT_COMMAND" || (matches!(name, "PS0" | "PS1" | "PS2" | "PS4") && is_expansion(value)) {
                return Some(format!("{what}: `{name}` makes shells run commands it holds"));
            }
        }
        let Some(argv0) = c.argv.first() else {
            return self.check_statement(c, &what);
        };
        let prog = program_name(argv0);
        let args = &c.argv[1..];
        if is_expansion(prog) || argv0.starts_with("<(") {
            return Some(format!("{what}: the program is `{argv0}`, whose value the line does not show"));
        }
        // `[` alone is the `test` builtin, not a glob (an unclosed bracket matches itself).
        if prog != "[" && prog.contains(['*', '?', '[']) {
            return Some(format!("{what}: the program is a glob (`{argv0}`), matched at run time"));
        }
        if prog.contains("{}") && c.wrappers.iter().any(|w| matches!(w.as_str(), "xargs" | "find" | "fd" | "fdfind")) {
            return Some(format!("{what}: the program is a placeholder filled in at run time"));
        }
        if let Some(why) = self.check_program_identity(c, argv0, prog, args) {
            return Some(format!("{what}: {why}"));
        }
        if let Some(why) = self.check_environment(c, prog, args) {
            return Some(format!("{what}: {why}"));
        }
        if let Some(why) = exports(prog, args) {
            return Some(format!("{what}: {why}"));
        }
        if let Some(why) = self.check_runner(c, prog, args) {
            return Some(format!("{what}: {why}"));
        }
        None
    }

    /// A statement of assignments alone (`PATH=…`, `GIT_DIR=…`): opaque when what it sets reaches a
    /// later git at once (exported with `set -a`) or is exported with a temporary directory on `PATH`.
    fn check_statement(&self, c: &SimpleCommand, what: &str) -> Option<String> {
        for (name, value) in assignments(c) {
            // `PATH` and `HOME` are exported in every shell: assigning them is exporting them.
            let exported = if self.allexport {
                " (exported by `set -a`)"
            } else if matches!(name, "PATH" | "HOME") {
                ""
            } else {
                continue;
            };
            if let Some(why) = exported_setting(name, Some(value)) {
                return Some(format!("{what}: {why}{exported}"));
            }
        }
        None
    }

    /// Whether the program that runs is the one its name says.
    fn check_program_identity(&self, c: &SimpleCommand, argv0: &str, prog: &str, args: &[String]) -> Option<String> {
        let path = normalize(argv0);
        if let Some((made, _)) =
            self.made.iter().find(|(p, name)| *p == path || (!argv0.contains('/') && name == argv0))
        {
            return Some(format!("`{made}` was made on this line as a copy or link of another program"));
        }
        if let Some(src) = &self.blind_copy
            && argv0.contains('/')
            && !is_system_path(argv0)
        {
            return Some(format!("`{src}` was copied earlier on this line, and `{argv0}` may be that copy"));
        }
        if self.rebound.iter().any(|n| n == argv0) {
            return Some(format!("`{argv0}` was bound to another file on this line (`hash -p`, `enable -f`)"));
        }
        let gitlike = looks_like_git(args);
        if argv0.contains('/') && !is_system_path(argv0) {
            if is_git_program(prog) {
                return Some(format!("`{argv0}` is not an installed {prog}: a file of that name elsewhere"));
            }
            if gitlike {
                return Some(format!(
                    "`{argv0}` is a program in the workspace or a temporary directory, given arguments like git's"
                ));
            }
            // The parser reads what a shell or wrapper runs; one given by such a path may run anything else.
            if sees_through(&prog.to_ascii_lowercase()) {
                return Some(format!(
                    "`{argv0}` is not an installed {prog}: a file of that name elsewhere, which may run anything"
                ));
            }
        }
        if matches!(prog, "hub" | "lab") && gitlike {
            return Some(format!("`{prog}` wraps git with commands of its own"));
        }
        if !argv0.contains('/') && (is_git_program(prog) || gitlike) {
            if let Some(p) = &self.path {
                return Some(format!("`PATH` was changed on this line (`{p}`), so `{prog}` may be another program"));
            }
            if let Some(s) = &self.sourced {
                return Some(format!(
                    "`{s}` was sourced on this line and may redefine `{prog}` (a function, an alias or `PATH`)"
                ));
            }
        }
        if is_git_program(prog)
            && !argv0.contains('/')
            && let Some(p) = assignments(c).find(|(n, v)| *n == "PATH" && !only_system_dirs(v))
        {
            return Some(format!("`PATH` is set for it (`PATH={}`), so `{prog}` may be another program", p.1));
        }
        None
    }

    /// Environment that changes what git or gh do or where: set for this command, or earlier.
    fn check_environment(&self, c: &SimpleCommand, prog: &str, args: &[String]) -> Option<String> {
        if !(is_git_program(prog) || (prog != "gh" && looks_like_git(args) && !is_system_path(&c.argv[0]))) {
            return None;
        }
        let own = assignments(c).filter(|(n, _)| {
            // git.rs reads configuration given in the command's own environment, as it reads `-c`, and
            // gh's repository, as it reads `--repo`.
            let read_by_parser = (is_git_program(prog) && is_config_env(n)) || (prog == "gh" && *n == "GH_REPO");
            !read_by_parser
        });
        for (name, value) in own {
            if let Some(why) = git_setting(name, Some(value), prog) {
                return Some(format!("{why} (`{name}={value}`)"));
            }
        }
        if let Some(set) = self.git_env.iter().find(|s| applies_to(s, prog)) {
            return Some(format!("`{set}` earlier on this line changes what `{prog}` does"));
        }
        None
    }

    /// Programs that run other programs out of the parser's sight.
    fn check_runner(&self, c: &SimpleCommand, prog: &str, args: &[String]) -> Option<String> {
        let only_info = !args.is_empty()
            && args.iter().all(|a| matches!(a.as_str(), "--version" | "-V" | "--help" | "-h" | "-v" | "-version"));
        if only_info {
            return None;
        }
        let lower = prog.to_ascii_lowercase();
        let prog = lower.as_str();
        if let Some(why) = shell_input(prog, args, self.decoded.as_deref()) {
            return Some(why);
        }
        if let Some(why) = inline_code(prog, args) {
            return Some(why);
        }
        if let Some(why) = scheduled(prog, args) {
            return Some(why);
        }
        let reads_only = prog == "git" && args.first().is_some_and(|s| GIT_READS.contains(&s.as_str()));
        if c.wrappers.iter().any(|w| w == "xargs") && !ARGS_CANNOT_MATTER.contains(&prog) && !reads_only {
            return Some(format!("`xargs` adds arguments read from standard input to `{prog}`"));
        }
        if matches!(prog, "parallel" | "sem") {
            return Some(format!("`{prog}` builds commands from its arguments and standard input"));
        }
        if matches!(prog, "gdb" | "lldb" | "rr") && debugger_runs_commands(args) {
            return Some(format!("`{prog}` is given commands that can run programs"));
        }
        command_option(prog, args)
    }

    fn learn(&mut self, c: &SimpleCommand) {
        let Some(argv0) = c.argv.first() else {
            for (name, value) in assignments(c) {
                self.note_setting(name, Some(value), &format!("{name}={value}"));
            }
            return;
        };
        let prog = program_name(argv0).to_ascii_lowercase();
        let args = &c.argv[1..];
        match prog.as_str() {
            "export" | "declare" | "typeset" | "local" | "readonly" => {
                let exported = prog == "export" || args.iter().any(|a| a.starts_with('-') && a.contains('x'));
                for a in args.iter().filter(|a| !a.starts_with('-') && !a.starts_with('+')) {
                    let (name, value) = match split_assignment(a) {
                        Some((n, v)) => (n, Some(v)),
                        None => (a.as_str(), None),
                    };
                    if exported || value.is_some() {
                        self.note_setting(name, value, a);
                    }
                }
            }
            "set" => {
                let mut it = args.iter();
                while let Some(a) = it.next() {
                    if a == "--" || !a.starts_with('-') {
                        break;
                    }
                    if a.len() > 1 && a[1..].contains('a') && !a.starts_with("--") {
                        self.allexport = true;
                    }
                    if a == "-o" && it.next().is_some_and(|o| o == "allexport") {
                        self.allexport = true;
                    }
                }
            }
            "source" | "." => {
                if let Some(file) = args.first() {
                    self.sourced = Some(file.clone());
                }
            }
            "hash" => {
                if let Some(k) = args.iter().position(|a| a == "-p") {
                    self.rebound.extend(args.get(k + 2).cloned());
                }
            }
            "enable" if args.iter().any(|a| a.starts_with('-') && a.contains('f')) => {
                self.rebound.extend(args.iter().filter(|a| !a.starts_with('-')).skip(1).cloned());
            }
            "cp" | "ln" | "mv" | "install" | "rsync" | "link" | "ditto" | "dd" => self.note_copies(&prog, args),
            "cat" | "tee" | "head" | "tail" | "base64" | "xxd" | "gzip" | "bzip2" | "xz" | "zstd" | "tar" | "zip" => {
                if let Some(src) = args.iter().find(|a| a.contains('/') && copied_program(a)) {
                    self.blind_copy = Some(src.clone());
                }
            }
            _ => {}
        }
        if is_decoder(&prog, args) {
            self.decoded = Some(prog.clone());
        }
        for (name, value) in assignments(c) {
            // A prefix assignment on a special builtin or function persists; on `PATH` it changes the
            // lookup of this command only. Neither reaches later commands otherwise.
            if name == "PATH" && c.argv.is_empty() && !only_system_dirs(value) {
                self.path = Some(format!("PATH={value}"));
            }
        }
    }

    /// A variable set (or exported) on the line: remember what it changes for later commands.
    fn note_setting(&mut self, name: &str, value: Option<&str>, text: &str) {
        if name == "PATH" {
            if !value.is_some_and(only_system_dirs) {
                self.path = Some(text.to_string());
            }
            return;
        }
        if git_setting(name, value, "git").is_some() || git_setting(name, value, "gh").is_some() {
            self.git_env.push(text.to_string());
        }
    }

    /// `cp SRC… DEST`, `ln -s SRC DEST`, `mv`, `install`, `-t DIR`, `dd of=`: what was made from a
    /// program the rules judge, or from one the line does not name.
    fn note_copies(&mut self, prog: &str, args: &[String]) {
        if prog == "dd" {
            let arg = |k: &str| args.iter().find_map(|a| a.strip_prefix(k)).map(str::to_string);
            if let (Some(src), Some(dst)) = (arg("if="), arg("of="))
                && copied_program(&src)
            {
                self.made_path(&dst);
            }
            return;
        }
        let mut target_dir = None;
        let mut operands = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "-t" {
                target_dir = it.next().cloned();
            } else if let Some(d) = a.strip_prefix("--target-directory=") {
                target_dir = Some(d.to_string());
            } else if matches!(a.as_str(), "-S" | "--suffix" | "-m" | "--mode" | "-o" | "--owner" | "-g" | "--group")
                && prog == "install"
            {
                it.next();
            } else if !a.starts_with('-') || a == "-" {
                operands.push(a.clone());
            }
        }
        let (sources, dest) = match target_dir {
            Some(d) => (operands.as_slice(), d),
            None if operands.len() >= 2 => {
                let (last, rest) = operands.split_last().unwrap_or((&operands[0], &[]));
                (rest, last.clone())
            }
            None => return,
        };
        for src in sources.iter().filter(|s| copied_program(s)) {
            self.made_path(&dest);
            let name = program_name(src);
            self.made_path(&format!("{}/{name}", dest.trim_end_matches('/')));
        }
    }

    fn made_path(&mut self, path: &str) {
        let p = normalize(path);
        let name = program_name(&p).to_string();
        if !self.made.iter().any(|(q, _)| *q == p) {
            self.made.push((p, name));
        }
    }
}

/// `./g`, `g` and `.//g` name the same file.
fn normalize(path: &str) -> String {
    let mut p = path.to_string();
    while let Some(rest) = p.strip_prefix("./") {
        p = rest.trim_start_matches('/').to_string();
    }
    p
}

/// Text that is (or holds) a shell expansion: `$x`, `${x}`, `$(…)`, backticks.
fn is_expansion(s: &str) -> bool {
    s.contains('$') || s.contains('`')
}

/// A copy of this file would be a program the rules judge, or one the line does not name.
fn copied_program(src: &str) -> bool {
    let name = program_name(src).to_ascii_lowercase();
    is_expansion(src) || is_git_program(&name) || JUDGED.contains(&name.as_str()) || is_interpreter(&name)
}

/// Programs whose commands the github and blast_radius rules judge.
const JUDGED: &[&str] = &[
    "gh",
    "hub",
    "rm",
    "dd",
    "mkfs",
    "wipefs",
    "shred",
    "shutdown",
    "reboot",
    "chmod",
    "chown",
    "kubectl",
    "helm",
    "terraform",
    "tofu",
    "pulumi",
    "databricks",
    "npm",
    "cargo",
    "pnpm",
    "yarn",
    "twine",
    "gem",
    "docker",
    "podman",
    "sudo",
    "env",
    "xargs",
    "curl",
    "wget",
    "ssh",
    "scp",
];

fn is_git_program(prog: &str) -> bool {
    prog == "git" || prog.starts_with("git-") || prog == "gh" || prog == "hub"
}

/// Git's (and gh's) subcommands that write, move refs or run commands; words that ordinary build
/// scripts take (`clean`, `test`, `run`, `init`, `add`) are left out.
const GIT_WORDS: &[&str] = &[
    "push",
    "fetch",
    "pull",
    "clone",
    "remote",
    "config",
    "commit",
    "rebase",
    "reset",
    "tag",
    "branch",
    "checkout",
    "switch",
    "merge",
    "am",
    "cherry-pick",
    "revert",
    "stash",
    "submodule",
    "filter-branch",
    "filter-repo",
    "update-ref",
    "symbolic-ref",
    "send-pack",
    "receive-pack",
    "upload-pack",
    "ls-remote",
    "credential",
    "worktree",
    "lfs",
    "notes",
    "replace",
    "reflog",
    "bisect",
    "subtree",
    "gc",
    "prune",
    "repo",
    "pr",
    "release",
    "api",
    "alias",
    "secret",
    "workflow",
    "gist",
    "auth",
    "ssh-key",
];

fn looks_like_git(args: &[String]) -> bool {
    args.iter().any(|a| GIT_WORDS.contains(&a.as_str()))
}

/// git subcommands to which arguments read from standard input cannot add anything the rules judge.
const GIT_READS: &[&str] = &["add", "diff", "log", "show", "blame", "status", "ls-files", "grep"];

/// Programs to which arguments read from standard input (`xargs`) cannot add anything the rules judge.
const ARGS_CANNOT_MATTER: &[&str] = &[
    "echo",
    "printf",
    "cat",
    "ls",
    "wc",
    "grep",
    "egrep",
    "fgrep",
    "rg",
    "head",
    "tail",
    "file",
    "stat",
    "du",
    "basename",
    "dirname",
    "realpath",
    "readlink",
    "sort",
    "uniq",
    "md5sum",
    "sha1sum",
    "sha256sum",
    "touch",
    "mkdir",
    "true",
    "false",
    "test",
    "[",
    "jq",
    "diff",
    "cmp",
    "less",
    "more",
    "nl",
    "tr",
    "cut",
    "paste",
    "column",
    "cp",
    "mv",
    "rustfmt",
    "gofmt",
    "black",
    "ruff",
    "prettier",
    "eslint",
    "clang-format",
    "shellcheck",
    "dos2unix",
];

pub(crate) fn is_shell(prog: &str) -> bool {
    matches!(
        prog,
        "sh" | "bash"
            | "rbash"
            | "zsh"
            | "dash"
            | "ksh"
            | "ksh93"
            | "mksh"
            | "lksh"
            | "pdksh"
            | "oksh"
            | "ash"
            | "yash"
            | "posh"
            | "fish"
            | "csh"
            | "tcsh"
    )
}

/// Shells reading a script the line does not show. The parser reports a shell only then: one given
/// its script (`-c`, a heredoc, `echo … |`, `<(echo …)`) is reported as the commands it runs.
fn shell_input(prog: &str, args: &[String], decoded: Option<&str>) -> Option<String> {
    let from_stdin = |who: &str| {
        let hint = decoded.map(|d| format!(" (decoded by `{d}` earlier on the line)")).unwrap_or_default();
        format!("`{who}` reads its commands from standard input, which the line does not show{hint}")
    };
    if is_shell(prog) {
        // `bash -n x.sh` only checks the syntax.
        if args.iter().any(|a| a.starts_with('-') && !a.starts_with("--") && a[1..].contains('n')) {
            return None;
        }
        return match args.iter().find(|a| !a.starts_with('-') && !a.starts_with('+')) {
            Some(file) if file.starts_with("<(") => {
                Some(format!("`{prog}` runs the output of `{file}`, which the line does not show"))
            }
            Some(file) if is_stream(file) => Some(from_stdin(prog)),
            // A script file is judged by what the session wrote into it (`crate::written::scripts`).
            Some(_) => None,
            None => Some(from_stdin(prog)),
        };
    }
    match prog {
        "source" | "." => {
            let file = args.first()?;
            is_stream(file).then(|| format!("`{prog} {file}` runs commands the line does not show"))
        }
        "su" | "runuser" | "sg" => Some(from_stdin(prog)),
        "sudo" if args.iter().any(|a| matches!(a.as_str(), "-s" | "-i" | "--shell" | "--login")) => {
            Some(from_stdin("sudo"))
        }
        "cmd" | "command.com" => Some(format!("`{prog}` runs Windows command lines, which are not parsed")),
        _ => None,
    }
}

/// Why a script file of another language, whose content the session wrote and the gate saw, is opaque:
/// the hints [`code`] applies to inline code (it runs programs, evaluates built strings, decodes data,
/// names git). A language without hints (Tcl, PowerShell…) is opaque.
pub(crate) fn why_code_opaque(prog: &str, code: &str) -> Option<String> {
    let code = code.to_owned();
    let args: Vec<String> = match prog {
        p if code::python_like(p) => vec!["-c".into(), code],
        "deno" => vec!["eval".into(), code],
        "php" => vec!["-r".into(), code],
        "perl" | "ruby" | "node" | "nodejs" | "bun" | "lua" | "luajit" | "rscript" | "julia" => vec!["-e".into(), code],
        _ => return Some(format!("it runs with `{prog}`, which the gate does not read")),
    };
    inline_code(prog, &args)
}

fn is_decoder(prog: &str, args: &[String]) -> bool {
    let has = |f: &str| args.iter().any(|a| a == f);
    match prog {
        "base64" | "base32" | "basenc" => has("-d") || has("--decode") || has("-D"),
        "xxd" => args.iter().any(|a| a.starts_with("-r")),
        "openssl" => has("-d") || has("base64"),
        "gzip" | "gunzip" | "zcat" | "bzcat" | "xzcat" | "zstdcat" | "uudecode" | "rev" => true,
        _ => false,
    }
}

/// tmux commands that run a command line.
const TMUX_RUNS: &[&str] = &[
    "new",
    "new-session",
    "new-window",
    "neww",
    "send-keys",
    "send",
    "run-shell",
    "run",
    "split-window",
    "splitw",
    "respawn-pane",
    "respawnp",
    "respawn-window",
    "respawnw",
    "pipe-pane",
    "pipep",
    "if-shell",
    "if",
    "display-popup",
    "popup",
    "source-file",
    "source",
];

/// Programs that run commands later or detached, from standard input or a string.
fn scheduled(prog: &str, args: &[String]) -> Option<String> {
    let why = match prog {
        "at" | "batch" => "runs commands read from standard input later",
        "crontab" if !args.iter().all(|a| a == "-l" || a.starts_with("-u")) || args.is_empty() => {
            "installs commands to run later"
        }
        "systemd-run" => "runs a command as a transient service",
        "launchctl" | "schtasks" => "schedules commands",
        "tmux" if args.iter().any(|a| TMUX_RUNS.contains(&a.as_str())) => "runs commands in a detached session",
        "screen" if !args.iter().all(|a| matches!(a.as_str(), "-ls" | "-list" | "-r" | "-x" | "-wipe")) => {
            "runs commands in a detached session"
        }
        "dtach" | "daemonize" | "start-stop-daemon" | "entr" if !args.is_empty() => {
            "runs commands in a detached session"
        }
        _ => return None,
    };
    Some(format!("`{prog}` {why}, out of the parser's sight"))
}
