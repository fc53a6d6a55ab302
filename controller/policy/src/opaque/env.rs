//! Environment that changes what git or gh do or where (`GIT_DIR`, `GIT_SSH_COMMAND`, exported git
//! configuration, `LD_PRELOAD`, editors and pagers, `PATH`), set for a command, earlier on the line, or
//! exported for the rest of the shell session.

use super::split_assignment;

/// `GIT_CONFIG_COUNT`/`KEY_n`/`VALUE_n`/`PARAMETERS`: read by [`crate::git`] from a git command's own
/// environment, like `-c`.
pub(super) fn is_config_env(name: &str) -> bool {
    name == "GIT_CONFIG_PARAMETERS"
        || name == "GIT_CONFIG_COUNT"
        || name.starts_with("GIT_CONFIG_KEY_")
        || name.starts_with("GIT_CONFIG_VALUE_")
}

/// Variables that do not change what git does or where (authorship, prompts, tracing, pathspec
/// flavours).
const HARMLESS_GIT_ENV: &[&str] = &[
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_DATE",
    "GIT_TERMINAL_PROMPT",
    "GIT_CURL_VERBOSE",
    "GIT_MERGE_AUTOEDIT",
    "GIT_FLUSH",
    "GIT_OPTIONAL_LOCKS",
    "GIT_ADVICE",
    "GIT_CONFIG_NOSYSTEM",
    "GIT_LFS_SKIP_SMUDGE",
    "GIT_PROGRESS_DELAY",
    "GIT_REDACT_COOKIES",
    "GIT_LITERAL_PATHSPECS",
    "GIT_GLOB_PATHSPECS",
    "GIT_NOGLOB_PATHSPECS",
    "GIT_ICASE_PATHSPECS",
    "GIT_DEFAULT_HASH",
];

/// Variables whose value is a command line git runs (an editor, a pager): harmless with these values.
const COMMAND_ENV: &[&str] =
    &["GIT_PAGER", "GIT_EDITOR", "GIT_SEQUENCE_EDITOR", "EDITOR", "VISUAL", "PAGER", "GH_PAGER", "GH_EDITOR"];
const HARMLESS_COMMANDS: &[&str] =
    &["", "cat", "less", "less -R", "less -FRX", "more", "true", ":", "vi", "vim", "nano", "emacs", "head"];

/// Why setting `name` (to `value`, `None` when unknown) changes what `prog` (git or gh) does or where.
pub(super) fn git_setting(name: &str, value: Option<&str>, prog: &str) -> Option<String> {
    let gh = prog == "gh";
    if COMMAND_ENV.contains(&name) {
        let harmless = value.is_some_and(|v| HARMLESS_COMMANDS.contains(&v.trim()));
        return (!harmless).then(|| format!("`{name}` is a command line {prog} runs"));
    }
    let why = match name {
        "LD_PRELOAD" | "LD_LIBRARY_PATH" | "LD_AUDIT" | "DYLD_INSERT_LIBRARIES" | "DYLD_LIBRARY_PATH" => {
            "loads other code into every program"
        }
        "HOME" | "XDG_CONFIG_HOME" => "moves the configuration git and gh read",
        "SSH_ASKPASS" | "GIT_ASKPASS" | "GIT_SSH" | "GIT_SSH_COMMAND" | "GIT_PROXY_COMMAND" | "GIT_EXTERNAL_DIFF"
        | "GIT_EXEC_PATH" => "names a program git runs",
        "GIT_DIR"
        | "GIT_WORK_TREE"
        | "GIT_COMMON_DIR"
        | "GIT_INDEX_FILE"
        | "GIT_OBJECT_DIRECTORY"
        | "GIT_ALTERNATE_OBJECT_DIRECTORIES"
        | "GIT_NAMESPACE"
        | "GIT_CEILING_DIRECTORIES"
        | "GIT_DISCOVERY_ACROSS_FILESYSTEM" => "changes which repository git works on",
        "GH_REPO" | "GH_HOST" | "GH_CONFIG_DIR" | "GH_ENTERPRISE_TOKEN" | "GITHUB_API_URL" if gh => {
            "changes which repository or configuration gh uses"
        }
        n if n.starts_with("GIT_") && !HARMLESS_GIT_ENV.contains(&n) && !n.starts_with("GIT_TRACE") && !gh => {
            "changes what git does"
        }
        _ => return None,
    };
    Some(format!("`{name}` {why}"))
}

/// Whether an earlier setting (`NAME=value` or `NAME`) concerns `prog`.
pub(super) fn applies_to(set: &str, prog: &str) -> bool {
    let name = set.split('=').next().unwrap_or(set);
    let value = set.split_once('=').map(|(_, v)| v);
    git_setting(name, value, if prog == "gh" { "gh" } else { "git" }).is_some()
}

/// `export`, `declare -x` and the like of a setting that is opaque by itself: it stays in force for the
/// rest of the shell session, beyond what this line shows.
pub(super) fn exports(prog: &str, args: &[String]) -> Option<String> {
    let exported = match prog {
        "export" => true,
        "declare" | "typeset" | "local" | "readonly" => args.iter().any(|a| a.starts_with('-') && a.contains('x')),
        _ => false,
    };
    if !exported {
        return None;
    }
    args.iter().filter(|a| !a.starts_with('-') && !a.starts_with('+')).find_map(|a| match split_assignment(a) {
        Some((name, value)) => exported_setting(name, Some(value)),
        None => exported_setting(a, None).filter(|_| a != "PATH"),
    })
}

/// An exported setting that is opaque by itself: it changes every later git of this shell session.
pub(super) fn exported_setting(name: &str, value: Option<&str>) -> Option<String> {
    if name == "PATH" {
        let temp = value.is_some_and(|v| {
            v.split(':').any(|d| {
                d.is_empty()
                    || d == "."
                    || !(d.starts_with('/') || d.starts_with('$') || d.starts_with('~'))
                    || ["/tmp", "/var/tmp", "/dev/shm"].iter().any(|t| d == *t || d.starts_with(&format!("{t}/")))
            })
        });
        return temp.then(|| "`PATH` puts a temporary or relative directory first".to_string());
    }
    if matches!(name, "BASH_ENV" | "ENV") {
        return Some(format!("`{name}` makes shells run a script file first"));
    }
    if name == "PROMPT_COMMAND"
        || (matches!(name, "PS0" | "PS1" | "PS2" | "PS4") && value.is_none_or(|v| v.contains(['$', '`'])))
    {
        return Some(format!("`{name}` makes shells run commands it holds"));
    }
    git_setting(name, value, "git").or_else(|| git_setting(name, value, "gh"))
}

/// A `PATH` of installed-program directories only (and the previous `PATH`): nothing of the agent's
/// comes first. Codex's `local_shell` sets such a `PATH` with every command.
pub(super) fn only_system_dirs(value: &str) -> bool {
    value.split(':').all(|d| {
        matches!(
            d.trim_end_matches('/'),
            "$PATH"
                | "${PATH}"
                | "/usr/local/sbin"
                | "/usr/local/bin"
                | "/usr/sbin"
                | "/usr/bin"
                | "/sbin"
                | "/bin"
                | "/opt/homebrew/bin"
                | "/opt/homebrew/sbin"
        )
    })
}
