//! What a `git` or `gh` command line does not show: options and settings that make git run a command
//! (`--upload-pack`, `-c core.sshCommand`, `ext::` URLs…), read settings from elsewhere (`include.path`,
//! `--config-env`, `GIT_CONFIG_GLOBAL`), work in another repository (`-C`, `--git-dir`, `GIT_DIR=`), or
//! change where later pushes go (`git remote set-url`, `git config remote.origin.url …`); and `gh`
//! commands that are aliases or extensions.
//!
//! Only what is on the command's own line is read here; exported variables and command lines the shell
//! parser cannot see through are [`crate::opaque`]'s.

use super::{Invocation, config, env_var, gh_command, glob_match, has_glob, invocation, normalize_key, option_values};
use crate::shell::SimpleCommand;

/// Why a git command may work in another repository than the one the shell is in: `-C DIR`,
/// `--git-dir`, `--work-tree`, `GIT_DIR=`/`GIT_WORK_TREE=`/`GIT_COMMON_DIR=` on its line,
/// `-c core.worktree=`. `None` for commands that are not git, or that stay where the shell is.
pub fn git_elsewhere(cmd: &SimpleCommand) -> Option<String> {
    let inv = invocation(cmd)?;
    if let Some(o) = inv.globals.elsewhere.first() {
        return Some(format!("`{o}` works in another repository"));
    }
    for var in ["GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR"] {
        if let Some(v) = env_var(&cmd.wrappers, var) {
            return Some(format!("`{var}={v}` works in another repository"));
        }
    }
    config(&inv.configs, "core.worktree").map(|v| format!("`-c core.worktree={v}` works in another directory"))
}

/// Why what a git command runs cannot be seen on its line, if it cannot: a global option, an
/// environment assignment, a `-c` setting or a subcommand option that makes git run a command or read
/// settings from elsewhere, an `ext::`/`fd::` transport, a `git config` write that stores such a
/// setting, `git hook run`, `git mergetool`, `git difftool -x`.
pub fn git_opaque(cmd: &SimpleCommand) -> Option<String> {
    let inv = invocation(cmd)?;
    if let Some(o) = inv.globals.opaque.first() {
        return Some(o.clone());
    }
    for w in &cmd.wrappers {
        if let Some((name, value)) = w.split_once('=')
            && let Some(why) = env_opaque(name, value)
        {
            return Some(format!("`{name}={value}` {why}"));
        }
    }
    for (k, v) in &inv.configs {
        if let Some(why) = setting_opaque(k, v) {
            return Some(format!("`-c {k}={v}` {why}"));
        }
    }
    let sub = inv.subcommand.to_ascii_lowercase();
    let known = |c: &&str| *c == sub || (has_glob(&sub) && glob_match(&sub, c));
    if !sub.is_empty() && inv.shell_alias.is_none() && !GIT_COMMANDS.iter().any(known) {
        let name = &inv.subcommand;
        return Some(format!(
            "`git {name}` is not a git command: it is an alias from git's settings or a `git-{name}` program, which \
             the gate cannot see"
        ));
    }
    let transport = |s: &str| {
        let l = s.to_ascii_lowercase();
        l.starts_with("ext::") || l.starts_with("fd::")
    };
    let settings = inv.configs.iter().flat_map(|(k, v)| [k, v]);
    if let Some(t) = inv.args.iter().chain(settings).find(|a| transport(a) || a.to_ascii_lowercase().contains(".ext::"))
    {
        return Some(format!("`{t}` uses a transport that runs a command"));
    }
    subcommand_opaque(&inv)
}

/// Why a git command changes where later pushes go: `git remote add|set-url|rename`, a `git config` write
/// of `remote.*`, `url.*.insteadOf`, `branch.*.remote` and the like (reads such as
/// `git config --get remote.origin.url` change nothing).
pub fn push_target_change(cmd: &SimpleCommand) -> Option<String> {
    let inv = invocation(cmd)?;
    let args = &inv.args;
    let first = args.iter().find(|a| !a.starts_with('-')).map(String::as_str);
    match inv.subcommand.to_ascii_lowercase().as_str() {
        "remote" if matches!(first, Some("add" | "set-url" | "rename")) => {
            Some(format!("`git remote {}` changes where git pushes go", first.unwrap_or_default()))
        }
        "config" => match config_writes(args)? {
            ConfigWrite::Edit => None, // opaque: see `git_opaque`
            ConfigWrite::Keys(keys) => keys
                .iter()
                .find(|(k, _)| moves_pushes(k))
                .map(|(k, _)| format!("`git config {k}` changes where git pushes go")),
        },
        _ => None,
    }
}

/// Why a gh command runs what the gate cannot see: it is no gh command (so an alias or an extension),
/// it defines an alias, installs or runs an extension, sets the program gh runs as editor, pager or
/// browser, or passes git options that run commands to `gh repo clone`.
pub fn gh_opaque(cmd: &SimpleCommand) -> Option<String> {
    let gh = gh_command(cmd)?;
    if gh.group.is_empty() {
        return None;
    }
    if !GH_GROUPS.contains(&gh.group.as_str()) {
        return Some(format!(
            "`gh {}` is not a gh command: it is an alias or an extension, which runs what the gate cannot see",
            gh.group
        ));
    }
    let positional = gh.args.iter().find(|a| !a.starts_with('-')).map(String::as_str);
    match (gh.group.as_str(), gh.action.as_deref()) {
        ("alias", Some("set" | "import")) => {
            Some("`gh alias set` defines a command whose effect the gate cannot see where it is used".into())
        }
        ("extension" | "extensions" | "ext", Some(a)) if !matches!(a, "list" | "ls" | "search" | "browse") => {
            Some(format!("`gh extension {a}` installs or runs code the gate cannot see"))
        }
        ("config", Some("set")) if matches!(positional, Some("editor" | "pager" | "browser")) => Some(format!(
            "`gh config set {}` sets a program gh runs later, which the gate cannot see",
            positional.unwrap_or_default()
        )),
        ("repo", Some("clone" | "fork")) => {
            // `gh repo clone o/r -- <git clone options>`.
            let k = gh.args.iter().position(|a| a == "--")?;
            let mut argv = vec!["git".to_string(), "clone".to_string()];
            argv.extend(gh.args[k + 1..].iter().cloned());
            git_opaque(&SimpleCommand { argv, wrappers: cmd.wrappers.clone() })
        }
        _ => None,
    }
}

/// git's own commands (git 2.47 `--list-cmds=main` and its helpers; `subtree`, `lfs` and others installed with
/// it): any other subcommand is an alias from git's settings or a `git-<name>` program, neither on the line.
const GIT_COMMANDS: &[&str] = &[
    "add",
    "am",
    "annotate",
    "apply",
    "archimport",
    "archive",
    "backfill",
    "bisect",
    "blame",
    "branch",
    "bugreport",
    "bundle",
    "cat-file",
    "check-attr",
    "check-ignore",
    "check-mailmap",
    "check-ref-format",
    "checkout",
    "checkout--worker",
    "checkout-index",
    "cherry",
    "cherry-pick",
    "citool",
    "clean",
    "clone",
    "column",
    "commit",
    "commit-graph",
    "commit-tree",
    "config",
    "count-objects",
    "credential",
    "credential-cache",
    "credential-cache--daemon",
    "credential-store",
    "cvsexportcommit",
    "cvsimport",
    "cvsserver",
    "daemon",
    "describe",
    "diagnose",
    "diff",
    "diff-files",
    "diff-index",
    "diff-tree",
    "difftool",
    "difftool--helper",
    "fast-export",
    "fast-import",
    "fetch",
    "fetch-pack",
    "filter-branch",
    "fmt-merge-msg",
    "for-each-ref",
    "for-each-repo",
    "format-patch",
    "fsck",
    "fsck-objects",
    "fsmonitor--daemon",
    "gc",
    "get-tar-commit-id",
    "grep",
    "gui",
    "hash-object",
    "help",
    "hook",
    "http-backend",
    "http-fetch",
    "http-push",
    "imap-send",
    "index-pack",
    "init",
    "init-db",
    "instaweb",
    "interpret-trailers",
    "last-modified",
    "lfs",
    "log",
    "ls-files",
    "ls-remote",
    "ls-tree",
    "mailinfo",
    "mailsplit",
    "maintenance",
    "merge",
    "merge-base",
    "merge-file",
    "merge-index",
    "merge-octopus",
    "merge-one-file",
    "merge-ours",
    "merge-recursive",
    "merge-recursive-ours",
    "merge-recursive-theirs",
    "merge-resolve",
    "merge-subtree",
    "merge-tree",
    "mergetool",
    "mktag",
    "mktree",
    "multi-pack-index",
    "mv",
    "name-rev",
    "notes",
    "p4",
    "pack-objects",
    "pack-redundant",
    "pack-refs",
    "patch-id",
    "pickaxe",
    "prune",
    "prune-packed",
    "pull",
    "push",
    "quiltimport",
    "range-diff",
    "read-tree",
    "rebase",
    "receive-pack",
    "reflog",
    "refs",
    "remote",
    "remote-ext",
    "remote-fd",
    "remote-ftp",
    "remote-ftps",
    "remote-http",
    "remote-https",
    "repack",
    "replace",
    "replay",
    "repo",
    "request-pull",
    "rerere",
    "reset",
    "restore",
    "rev-list",
    "rev-parse",
    "revert",
    "rm",
    "scalar",
    "send-email",
    "send-pack",
    "shell",
    "shortlog",
    "show",
    "show-branch",
    "show-index",
    "show-ref",
    "sparse-checkout",
    "stage",
    "stash",
    "status",
    "stripspace",
    "submodule",
    "submodule--helper",
    "subtree",
    "svn",
    "switch",
    "symbolic-ref",
    "tag",
    "unpack-file",
    "unpack-objects",
    "update-index",
    "update-ref",
    "update-server-info",
    "upload-archive",
    "upload-archive--writer",
    "upload-pack",
    "var",
    "verify-commit",
    "verify-pack",
    "verify-tag",
    "version",
    "web--browse",
    "whatchanged",
    "worktree",
    "write-tree",
];

/// gh's own top-level commands and their built-in aliases; anything else is a user alias or an extension.
const GH_GROUPS: &[&str] = &[
    "a11y",
    "accessibility",
    "agent-task",
    "alias",
    "api",
    "at",
    "attestation",
    "auth",
    "browse",
    "cache",
    "co",
    "codespace",
    "completion",
    "config",
    "cs",
    "ext",
    "extension",
    "extensions",
    "gist",
    "gpg-key",
    "help",
    "issue",
    "label",
    "org",
    "pr",
    "preview",
    "project",
    "release",
    "repo",
    "rs",
    "ruleset",
    "run",
    "search",
    "secret",
    "ssh-key",
    "status",
    "variable",
    "version",
    "workflow",
];

const RUNS: &str = "runs a command the gate cannot see";

/// Why an environment assignment on git's line hides what git runs or reads.
fn env_opaque(name: &str, value: &str) -> Option<&'static str> {
    match name {
        "GIT_SSH" | "GIT_SSH_COMMAND" | "GIT_PROXY_COMMAND" | "GIT_ASKPASS" | "SSH_ASKPASS" | "GIT_EXTERNAL_DIFF"
            if !value.is_empty() =>
        {
            Some(RUNS)
        }
        "GIT_PAGER" | "PAGER" | "GIT_EDITOR" | "EDITOR" | "VISUAL" | "GIT_SEQUENCE_EDITOR"
            if !harmless_program(value) =>
        {
            Some(RUNS)
        }
        "GIT_EXEC_PATH" => Some("runs git's programs from another directory"),
        "GIT_TEMPLATE_DIR" => Some("installs hooks from a directory the gate cannot see"),
        "GIT_CONFIG" | "GIT_CONFIG_GLOBAL" | "GIT_CONFIG_SYSTEM" | "HOME" | "XDG_CONFIG_HOME"
            if value != "/dev/null" =>
        {
            Some("reads git settings from a file the gate cannot see")
        }
        "GIT_ALLOW_PROTOCOL" if value.split(':').any(|p| matches!(p, "ext" | "fd")) => {
            Some("enables a transport that runs commands")
        }
        _ => None,
    }
}

/// Why a git setting (key normalised) makes git run a command or read settings the line does not show.
/// Settings that only move pushes (`remote.*.url`, `url.*.insteadOf`) are applied to the push instead.
fn setting_opaque(key: &str, value: &str) -> Option<&'static str> {
    let (section, sub, name) = key_parts(key);
    let n = if sub.is_some() { 3 } else { 2 };
    let v = value.trim();
    let boolean =
        matches!(v.to_ascii_lowercase().as_str(), "" | "true" | "false" | "yes" | "no" | "on" | "off" | "0" | "1");
    match (section, n, name) {
        ("core", 2, "pager" | "editor") | ("sequence", 2, "editor") | ("pager", 2, _) => {
            (!harmless_program(v)).then_some(RUNS)
        }
        ("core", 2, "sshcommand" | "gitproxy" | "askpass" | "alternaterefscommand")
        | ("diff", 2, "external")
        | ("diff", 3, "command" | "textconv")
        | ("merge", 3, "driver")
        | ("filter", 3, "clean" | "smudge" | "process")
        | ("gpg", _, "program")
        | ("uploadpack", _, "packobjectshook")
        | ("remote", 3, "uploadpack" | "receivepack" | "vcs")
        | ("difftool" | "mergetool" | "man" | "browser", 3, "cmd" | "path")
        | ("web" | "help", 2, "browser")
        | ("instaweb", 2, "httpd")
        | ("sendemail", _, "sendmailcmd" | "tocmd" | "cccmd" | "headercmd" | "smtpserver")
        | ("trailer", 3, "command" | "cmd")
        | ("hook", 3, "command")
            if !v.is_empty() =>
        {
            Some(RUNS)
        }
        ("core", 2, "fsmonitor") if !boolean => Some(RUNS),
        ("core", 2, "hookspath") if v != "/dev/null" => Some("runs hooks from a directory the gate cannot see"),
        ("include", 2, "path") | ("includeif", _, "path") => Some("reads settings from a file the gate cannot see"),
        ("init", 2, "templatedir") => Some("installs hooks from a directory the gate cannot see"),
        ("credential", _, "helper") if !plain_helper(v) => Some(RUNS),
        ("submodule", 3, "update") if v.starts_with('!') => Some(RUNS),
        ("protocol", 2, "allow") | ("protocol", 3, "allow")
            if sub.is_none_or(|t| t.eq_ignore_ascii_case("ext") || t.eq_ignore_ascii_case("fd"))
                && !v.eq_ignore_ascii_case("never") =>
        {
            Some("enables a transport that runs commands")
        }
        _ => None,
    }
}

/// A pager or editor setting that runs nothing of note: empty, a boolean, or `cat`, `less`, `more`, `head`,
/// `true`, `false`, `:`, `vi`, `vim`, `nano`, `emacs` with plain flags (`less -R`); the same list as
/// [`crate::opaque`] keeps for `GIT_EDITOR` and the like.
fn harmless_program(v: &str) -> bool {
    let mut words = v.split_whitespace();
    let Some(first) = words.next() else { return true };
    let flag =
        |w: &str| w.len() > 1 && w.starts_with('-') && w[1..].chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    matches!(
        first.to_ascii_lowercase().as_str(),
        "cat"
            | "less"
            | "more"
            | "head"
            | "true"
            | "false"
            | ":"
            | "vi"
            | "vim"
            | "nano"
            | "emacs"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "0"
            | "1"
    ) && words.all(flag)
}

/// A credential helper git runs as `git-credential-<name>` (`store`, `cache --timeout=60`), not a command
/// line (`!sh -c …`) or a path.
fn plain_helper(v: &str) -> bool {
    !v.starts_with('!') && v.chars().all(|c| c.is_ascii_alphanumeric() || " -_=.".contains(c))
}

/// Settings that decide where a push goes or what it writes.
fn moves_pushes(key: &str) -> bool {
    let key = normalize_key(key);
    let (section, sub, name) = key_parts(&key);
    match (section, sub, name) {
        // `remote.pushDefault`, and whole sections (`--rename-section remote.origin x`).
        ("remote" | "url" | "branch", None, _) => true,
        ("remote", Some(_), "url" | "pushurl" | "push" | "mirror")
        | ("url", Some(_), "insteadof" | "pushinsteadof")
        | ("branch", Some(_), "remote" | "pushremote")
        | ("push", None, "default") => true,
        _ => false,
    }
}

/// `section`, `subsection` and `name` of a key (`url.https://x.y/.insteadof` has dots in its subsection).
fn key_parts(key: &str) -> (&str, Option<&str>, &str) {
    match (key.find('.'), key.rfind('.')) {
        (Some(a), Some(b)) if a != b => (&key[..a], Some(&key[a + 1..b]), &key[b + 1..]),
        (Some(a), _) => (&key[..a], None, &key[a + 1..]),
        _ => (key, None, ""),
    }
}

/// What `git config …` writes.
enum ConfigWrite {
    /// `--edit`: anything.
    Edit,
    /// Keys (or sections) set, added, unset, renamed or removed, with the value set if any.
    Keys(Vec<(String, Option<String>)>),
}

/// What a `git config` command writes, or `None` when it only reads. Both the classic options
/// (`--add`, `--unset`, `git config key value`) and the subcommands of git 2.46 (`set`, `unset`, …).
fn config_writes(args: &[String]) -> Option<ConfigWrite> {
    const VALUED: &[&str] = &["-f", "--file", "--blob", "--type", "--default", "--comment", "--value", "--url"];
    let (mut read, mut write, mut edit) = (false, false, false);
    let mut operands: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        let name = a.split_once('=').map_or(a.as_str(), |(n, _)| n);
        match name {
            _ if VALUED.contains(&name) && !a.contains('=') => i += 1,
            "--get" | "--get-all" | "--get-regexp" | "--get-urlmatch" | "--get-color" | "--get-colorbool" | "-l"
            | "--list" => read = true,
            "--add" | "--replace-all" | "--unset" | "--unset-all" | "--rename-section" | "--remove-section" => {
                write = true
            }
            "-e" | "--edit" => edit = true,
            _ if a.starts_with('-') && a.len() > 1 => {}
            _ => operands.push(a.clone()),
        }
    }
    match operands.first().map(String::as_str) {
        Some("get" | "list") => return None,
        Some("edit") => return Some(ConfigWrite::Edit),
        Some("set" | "unset" | "rename-section" | "remove-section") => {
            let key = operands.get(1)?.clone();
            return Some(ConfigWrite::Keys(vec![(key, operands.get(2).cloned())]));
        }
        _ => {}
    }
    if edit {
        return Some(ConfigWrite::Edit);
    }
    if read || !(write || operands.len() >= 2) {
        return None;
    }
    let key = operands.first()?.clone();
    Some(ConfigWrite::Keys(vec![(key, operands.get(1).cloned())]))
}

/// Options of a subcommand that make it run a command or read what the line does not show.
fn subcommand_opaque(inv: &Invocation) -> Option<String> {
    let args = &inv.args;
    let first = |long: &str, short: Option<char>| option_values(args, long, short).into_iter().next();
    let runs = |o: &str, v: String| Some(format!("`{o} {v}` {RUNS}"));
    let sub = inv.subcommand.to_ascii_lowercase();
    match sub.as_str() {
        "clone" | "ls-remote" => {
            if let Some(v) = first("--upload-pack", Some('u')) {
                return runs("--upload-pack", v);
            }
            if let Some(v) = first("--template", None) {
                return Some(format!("`--template {v}` installs hooks from a directory the gate cannot see"));
            }
            for kv in option_values(args, "--config", Some('c')) {
                let (k, v) = kv.split_once('=').unwrap_or((&kv, "true"));
                if let Some(why) = setting_opaque(&normalize_key(k), v) {
                    return Some(format!("`--config {kv}` {why}"));
                }
            }
            None
        }
        "fetch" | "pull" => first("--upload-pack", None).and_then(|v| runs("--upload-pack", v)),
        "archive" => first("--exec", None).and_then(|v| runs("--exec", v)),
        "push" | "send-pack" => {
            first("--receive-pack", None).or_else(|| first("--exec", None)).and_then(|v| runs("--receive-pack", v))
        }
        "init" => first("--template", None)
            .map(|v| format!("`--template {v}` installs hooks from a directory the gate cannot see")),
        "hook" => Some("`git hook run` runs a hook of the repository, which the gate cannot see".into()),
        "mergetool" => Some("`git mergetool` runs the merge tool configured in files the gate cannot see".into()),
        "difftool" => first("--extcmd", Some('x')).and_then(|v| runs("--extcmd", v)),
        "instaweb" => Some(format!("`git instaweb` {RUNS}")),
        "send-email" => ["--sendmail-cmd", "--to-cmd", "--cc-cmd", "--header-cmd", "--smtp-server"]
            .iter()
            .find_map(|o| first(o, None).map(|v| format!("`{o} {v}` {RUNS}"))),
        "grep" => first("--open-files-in-pager", Some('O'))
            .filter(|v| !harmless_program(v))
            .and_then(|v| runs("--open-files-in-pager", v)),
        "config" => match config_writes(args)? {
            ConfigWrite::Edit => Some("`git config --edit` rewrites git's settings in an editor".into()),
            ConfigWrite::Keys(keys) => keys.iter().find_map(|(k, v)| {
                let why = setting_opaque(&normalize_key(k), v.as_deref().unwrap_or("x"))?;
                // Removing a setting runs nothing.
                let removing = args.iter().any(|a| a.starts_with("--unset") || a == "--remove-section")
                    || args.iter().any(|a| a == "unset" || a == "remove-section");
                (!removing).then(|| format!("`git config {k}` stores a setting that {why}"))
            }),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::parse_commands;

    fn first(line: &str) -> SimpleCommand {
        parse_commands(line).unwrap().remove(0)
    }

    #[test]
    fn config_reads_are_not_writes() {
        let writes = |line: &str| config_writes(&first(line).argv[2..]).is_some();
        for line in [
            "git config --get remote.origin.url",
            "git config remote.origin.url",
            "git config --get-regexp '^remote\\..*\\.url$'",
            "git config -l",
            "git config --list --show-origin",
            "git config get remote.origin.url",
            "git config list",
            "git config -f .gitmodules submodule.x.url",
            "git config --type=bool core.bare",
        ] {
            assert!(!writes(line), "{line}");
        }
        for line in [
            "git config remote.origin.url x",
            "git config --add remote.origin.pushurl x",
            "git config --unset remote.origin.pushurl",
            "git config set remote.origin.url x",
            "git config --file .git/config core.askpass x",
            "git config --edit",
            "git config edit",
            "git config --rename-section remote.origin remote.old",
        ] {
            assert!(writes(line), "{line}");
        }
    }

    #[test]
    fn keys_with_dots_in_their_subsection() {
        assert_eq!(key_parts("url.https://x.y/.insteadof"), ("url", Some("https://x.y/"), "insteadof"));
        assert_eq!(key_parts("core.pager"), ("core", None, "pager"));
        assert!(moves_pushes("url.https://github.com/evil/.pushInsteadOf"));
        assert!(moves_pushes("remote.origin"));
        assert!(moves_pushes("remote.pushDefault"));
        assert!(!moves_pushes("user.name"));
        assert!(!moves_pushes("remote.origin.fetch"));
    }

    #[test]
    fn harmless_values_stay_harmless() {
        for (k, v) in [
            ("core.pager", "cat"),
            ("core.pager", "less -R"),
            ("pager.log", "false"),
            ("core.editor", "true"),
            ("credential.helper", "store"),
            ("credential.helper", "cache --timeout=3600"),
            ("credential.helper", ""),
            ("core.hookspath", "/dev/null"),
            ("core.fsmonitor", "false"),
            ("protocol.file.allow", "always"),
            ("protocol.ext.allow", "never"),
            ("user.name", "sh -c id"),
        ] {
            assert_eq!(setting_opaque(k, v), None, "{k}={v}");
        }
        for (k, v) in [
            ("core.pager", "less; sh"),
            ("core.pager", "vim -c '!id'"),
            ("credential.helper", "/bin/sh -c id"),
            ("credential.https://github.com.helper", "!id"),
            ("core.fsmonitor", "echo x"),
            ("protocol.allow", "always"),
            ("protocol.EXT.allow", "user"),
            ("includeif.gitdir:/w/.path", "/tmp/x"),
        ] {
            assert!(setting_opaque(k, v).is_some(), "{k}={v}");
        }
    }

    #[test]
    fn gh_groups_of_its_own_are_not_opaque() {
        for line in ["gh pr view 1", "gh co 12", "gh api repos/o/r", "gh --version", "gh -R o/r issue list"] {
            assert_eq!(gh_opaque(&first(line)), None, "{line}");
        }
        for line in ["gh x", "gh PR view", "gh alias set p 'pr merge'", "gh ext install o/gh-x"] {
            assert!(gh_opaque(&first(line)).is_some(), "{line}");
        }
    }
}
