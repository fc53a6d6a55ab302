//! `git` and `gh` commands classified from a [`SimpleCommand`], for GitHub policies: a push with
//! its remote, refspecs and every way of forcing, deleting or pushing tags; other git subcommands
//! after git's global options and `-c alias.*` expansion; `gh` commands with their repository and
//! whether they destroy something.
//!
//! Like the shell parser this module fails closed: when git could read an argument more than one
//! way (abbreviated options, unknown `--force…` options, glob characters the shell may expand),
//! it assumes the more dangerous reading.
//!
//! Decisions:
//! - `--mirror` counts as force, delete, tags and all branches (it does all of them); `--prune` as
//!   delete; `--no-…` negations never clear a flag (`--force --no-force` stays force).
//! - Unknown long options starting with `force` (`--force-with-lease-typo`, `--forcefully`) count as
//!   force; git would reject them, so this only errs on the safe side.
//! - Abbreviations git accepts (`--forc`, `--mir`, `--del`) count as every option they abbreviate.
//! - An argument with glob characters (`-[f]`, `pu?h`, `/usr/bin/gi?`) counts as what the shell may
//!   expand it to: git, push, or a force/delete option.
//! - `-c remote.<name>.url/pushurl`, `url.<base>.insteadOf/pushInsteadOf`, `remote.<name>.push`,
//!   `remote.<name>.mirror` and `push.followTags` given on the command line are applied to the push.
//! - `gh`: `destructive` is any `delete`/`remove`-like action on GitHub (not local `alias`/`extension`/
//!   `config`/`auth` ones), `api` with method DELETE or a GraphQL `delete…` mutation, `pr merge`/
//!   `pr close` with `--delete-branch`/`-d` (it deletes a branch), `repo sync --force`, and a visibility
//!   change (`repo edit --visibility`, `api … -f visibility=…`/`private=…`).
//!
//! - Settings in the command's environment assignments (`GIT_CONFIG_COUNT`/`KEY_n`/`VALUE_n`,
//!   `GIT_CONFIG_PARAMETERS`, `GH_REPO`; see [`SimpleCommand::wrappers`]) count like `-c`/`--repo`.
//! - `git-<sub>` programs (`/usr/lib/git-core/git-push`) are git running `<sub>`.
//!
//! - `git subtree push <repository> <ref>` and `git http-push` are pushes.
//!
//! What a line does not show is reported by [`git_opaque`], [`git_elsewhere`], [`push_target_change`]
//! and [`gh_opaque`] (module `opacity`), so that rules ask rather than guess.
//!
//! Known gaps: remotes from config files, or variables exported by earlier commands (their values are not
//! on the command: rules judge `origin` by the remotes a hook read, else by the workspace; an alias from a
//! config file is not a git command, which [`git_opaque`] reports); tags pushed by a bare name
//! (`git push origin v1`) look like branches.

use crate::shell::{SimpleCommand, program_name};

mod opacity;
pub use opacity::{gh_opaque, git_elsewhere, git_opaque, push_target_change};

/// One refspec of a push: `+main` (force), `:old` (delete: no `src`), `a:b`, `HEAD:main`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refspec {
    pub src: Option<String>,
    pub dst: Option<String>,
    pub force: bool,
}

/// A `git push` (or `git send-pack`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// First positional: `origin`, a URL, or owner/repo-like path; or the URL `-c remote.<r>.url`
    /// gives that remote (`origin` when none is named).
    pub remote: Option<String>,
    pub refspecs: Vec<Refspec>,
    /// `--force`, `-f` (also bundled: `-uf`), `--force-with-lease[=…]`, `--force-if-includes`,
    /// `--mirror`, any `+refspec`.
    pub force: bool,
    /// `--delete`, `-d`, `--prune`, `--mirror`, `:branch`.
    pub delete: bool,
    /// `--tags`, `--follow-tags`, `--mirror`, `tag <name>`, refs under `refs/tags/`.
    pub tags: bool,
    /// `--all`, `--branches`, `--mirror`, the matching refspec `:`.
    pub all_branches: bool,
    /// `url.<base>.insteadOf`/`pushInsteadOf` settings given on the line, applied by [`Push::rewrite`].
    url_rewrites: Vec<(String, String)>,
}

impl Push {
    /// A remote's configured URL as this push would use it: with the `insteadOf` rewriting given on the
    /// line (`git -c url.<evil>.pushInsteadOf=<real> push origin`).
    pub fn rewrite(&self, url: &str) -> String {
        rewrite_url(url, &self.url_rewrites)
    }

    /// Whether `remote` names a configured remote (`origin`) rather than a URL or path.
    pub fn remote_is_name(&self) -> bool {
        self.remote.as_deref().is_none_or(|r| !r.contains(['/', ':', '\\']))
    }

    /// Branches the push writes: each refspec's destination, else its source, without `refs/heads/`
    /// (`HEAD:main` → `main`). Tags are left out (see `tags`); a bare `HEAD` stays `HEAD`, as the
    /// current branch is unknown; other refs keep their full name.
    pub fn target_branches(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.refspecs {
            let Some(name) = r.dst.as_deref().or(r.src.as_deref()) else { continue };
            if name.starts_with('^') || name.starts_with("refs/tags/") {
                continue;
            }
            let name = name.strip_prefix("refs/heads/").unwrap_or(name).to_string();
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitCommand {
    Push(Push),
    /// Any other git subcommand: name + its args (after global options such as -C DIR, -c k=v,
    /// --git-dir=, --work-tree=, --no-pager, -P, and after expanding `-c alias.*` aliases).
    /// `subcommand` is empty when there is none (`git --version`).
    Other {
        subcommand: String,
        args: Vec<String>,
    },
}

/// A `gh` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GhCommand {
    /// `pr`, `repo`, `release`, `api`, `issue`, … (empty when there is none).
    pub group: String,
    /// `merge`, `delete`, `create`, … (`None` for `api`).
    pub action: Option<String>,
    /// `owner/repo` from `--repo`/`-R`, a `GH_REPO=` assignment, the positional of `gh repo <action>`,
    /// a `repos/o/r/…` api endpoint, or a GitHub URL argument. A host other than github.com is kept
    /// (`host/o/r`).
    pub repo: Option<String>,
    /// The arguments other than group and action.
    pub args: Vec<String>,
    /// See the module documentation for what counts.
    pub destructive: bool,
}

/// Classifies one simple command: `Some` when argv[0] (basename) is git, or `git-<subcommand>`
/// (git's exec-path programs such as `/usr/lib/git-core/git-push`).
pub fn git_command(cmd: &SimpleCommand) -> Option<GitCommand> {
    let inv = invocation(cmd)?;
    if names(&inv.subcommand, "push") || names(&inv.subcommand, "send-pack") || names(&inv.subcommand, "http-push") {
        return Some(GitCommand::Push(parse_push(&inv.args, &inv.configs)));
    }
    if names(&inv.subcommand, "subtree")
        && let Some(args) = subtree_push(&inv.args)
    {
        return Some(GitCommand::Push(parse_push(&args, &inv.configs)));
    }
    Some(GitCommand::Other { subcommand: inv.subcommand, args: inv.args })
}

/// `git subtree push [options] <repository> <ref>` pushes the split history to `<ref>` of the repository:
/// the arguments of the `git push` it runs (`<repository> <ref>`), or `None` for other subtree commands.
fn subtree_push(args: &[String]) -> Option<Vec<String>> {
    let mut positionals = Vec::new();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        if matches!(a.as_str(), "-P" | "--prefix" | "-m" | "--message" | "-b" | "--branch" | "--onto" | "--annotate") {
            i += 1;
        } else if !a.starts_with('-') {
            positionals.push(a.clone());
        }
    }
    if !names(positionals.first()?, "push") {
        return None;
    }
    Some(positionals.into_iter().skip(1).take(2).collect())
}

/// The git invocation of a command whose argv[0] (basename) is git or `git-<subcommand>`.
fn invocation(cmd: &SimpleCommand) -> Option<Invocation> {
    let base = program_name(cmd.argv.first()?);
    if names(base, "git") {
        return Some(resolve(&cmd.argv, &cmd.wrappers));
    }
    let sub = base.get(..4).filter(|p| p.eq_ignore_ascii_case("git-")).map(|_| &base[4..])?;
    let mut argv = vec!["git".to_string(), sub.to_string()];
    argv.extend(cmd.argv[1..].iter().cloned());
    Some(resolve(&argv, &cmd.wrappers))
}

/// Classifies one simple command: `Some` when argv[0] (basename) is gh.
pub fn gh_command(cmd: &SimpleCommand) -> Option<GhCommand> {
    if !is_program(cmd.argv.first()?, "gh") {
        return None;
    }
    let args = &cmd.argv[1..];
    let pos = gh_positionals(args);
    let word = |k: usize| pos.get(k).map(|&i| args[i].as_str());
    let Some(group_word) = word(0) else {
        return Some(GhCommand {
            group: String::new(),
            action: None,
            repo: gh_repo_flag(args).or_else(|| env_var(&cmd.wrappers, "GH_REPO").and_then(normalize_repo)),
            args: args.to_vec(),
            destructive: false,
        });
    };
    // `gh co` is the builtin alias of `gh pr checkout`.
    let (group, action, used) = match group_word {
        "co" => ("pr".to_string(), Some("checkout".to_string()), 1),
        "api" => ("api".to_string(), None, 1),
        g => (g.to_string(), word(1).map(str::to_string), if word(1).is_some() { 2 } else { 1 }),
    };
    let skip: Vec<usize> = pos.iter().take(used).copied().collect();
    let rest: Vec<String> =
        args.iter().enumerate().filter(|(i, _)| !skip.contains(i)).map(|(_, a)| a.clone()).collect();
    let after: Vec<&str> = pos.iter().skip(used).map(|&i| args[i].as_str()).collect();

    let env_repo = || env_var(&cmd.wrappers, "GH_REPO").and_then(normalize_repo);
    let repo = gh_repo_flag(args).or_else(env_repo).or_else(|| match (group.as_str(), action.as_deref()) {
        ("repo", Some(a)) if GH_REPO_POSITIONAL.contains(&a) => after.first().and_then(|r| normalize_repo(r)),
        ("api", _) => after.first().and_then(|e| api_repo(e)),
        _ => after.iter().find(|a| a.contains("://")).and_then(|u| normalize_repo(u)),
    });

    let local = matches!(
        group.as_str(),
        "alias" | "extension" | "extensions" | "ext" | "config" | "auth" | "completion" | "help"
    );
    let deleting =
        |w: Option<&str>| matches!(w, Some("delete" | "delete-asset" | "item-delete" | "field-delete" | "remove"));
    let flag = |long: &str, short: char| {
        rest.iter().any(|a| {
            a == long
                || a.strip_prefix(long).is_some_and(|v| v.starts_with('=') && v != "=false")
                || (a.len() > 1 && !a.starts_with("--") && a.starts_with('-') && short_flags(a).contains(&short))
        })
    };
    let destructive = match (group.as_str(), action.as_deref()) {
        ("api", _) => api_deletes(&rest) || changes_visibility(&rest),
        // Making a private repository public cannot be undone: what was published stays published.
        ("repo", Some("edit")) => rest.iter().any(|a| a == "--visibility" || a.starts_with("--visibility=")),
        ("pr", Some("merge" | "close")) => flag("--delete-branch", 'd'),
        ("repo", Some("sync")) => flag("--force", '\0'),
        _ => !local && (deleting(action.as_deref()) || deleting(after.first().copied())),
    };
    Some(GhCommand { group, action, repo, args: rest, destructive })
}

/// Repository `owner/repo` of a remote URL: `https://github.com/o/r(.git)`, `git@github.com:o/r.git`,
/// `ssh://git@github.com/o/r.git`. The host must be exactly one of `hosts` (github.com when empty),
/// case-insensitively; look-alikes (`evil-github.com`, `github.com.evil.io`, `github.com@evil.io`)
/// and anything with more or fewer than two path segments give `None`.
pub fn github_repo_from_url(url: &str, hosts: &[&str]) -> Option<String> {
    let (host, port, path) = split_remote(url.trim())?;
    let default = ["github.com"];
    let hosts = if hosts.is_empty() { &default[..] } else { hosts };
    let known = hosts.iter().any(|h| {
        let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
        match h.split_once(':') {
            Some((name, p)) => name == host && port == Some(p),
            None => h == host,
        }
    });
    if !known {
        return None;
    }
    let segments = path_segments(path)?;
    (segments.len() == 2).then(|| format!("{}/{}", segments[0], segments[1]))
}

// ---------------------------------------------------------------------------------------------
// git invocation: global options, config, aliases
// ---------------------------------------------------------------------------------------------

struct Invocation {
    subcommand: String,
    args: Vec<String>,
    /// `-c` settings, keys normalised (section and name lowercase), in order.
    configs: Vec<(String, String)>,
    /// The body of a `!` (shell) alias the subcommand expanded to.
    shell_alias: Option<String>,
    /// Global options seen on the way (also inside aliases).
    globals: Globals,
}

/// What git's global options say beyond `-c`.
#[derive(Default)]
struct Globals {
    /// Options that make git work in another repository: `-C DIR`, `--git-dir`, `--work-tree`.
    elsewhere: Vec<String>,
    /// Options that make git run or read what the line does not show: `--exec-path=DIR`, `--config-env`.
    opaque: Vec<String>,
}

/// Most alias expansions followed (git refuses loops; this bounds hostile input).
const MAX_ALIASES: usize = 16;

/// Resolves global options and aliases of `git …`; `wrappers` may hold environment assignments
/// that configure git (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`,
/// `GIT_CONFIG_PARAMETERS`).
fn resolve(argv: &[String], wrappers: &[String]) -> Invocation {
    let mut args: Vec<String> = argv[1..].to_vec();
    let mut configs = env_configs(wrappers);
    let mut globals = Globals::default();
    let mut used = Vec::new();
    loop {
        let Some(i) = global_options(&args, &mut configs, &mut globals) else {
            return Invocation { subcommand: String::new(), args: Vec::new(), configs, shell_alias: None, globals };
        };
        let sub = args[i].clone();
        let rest = args[i + 1..].to_vec();
        let alias = (used.len() < MAX_ALIASES && !used.contains(&sub))
            .then(|| config(&configs, &format!("alias.{sub}")))
            .flatten();
        match alias {
            Some(body) if body.starts_with('!') => {
                let shell_alias = Some(body[1..].to_string());
                return Invocation { subcommand: sub, args: rest, configs, shell_alias, globals };
            }
            Some(body) => {
                let body = body.to_string();
                used.push(sub);
                args = split_cmdline(&body);
                args.extend(rest);
            }
            None => return Invocation { subcommand: sub, args: rest, configs, shell_alias: None, globals },
        }
    }
}

/// The value of the environment assignment `name` among `wrappers` (the last one).
fn env_var<'a>(wrappers: &'a [String], name: &str) -> Option<&'a str> {
    wrappers.iter().rev().find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

/// Config settings given through the environment.
fn env_configs(wrappers: &[String]) -> Vec<(String, String)> {
    let mut configs = Vec::new();
    if let Some(params) = env_var(wrappers, "GIT_CONFIG_PARAMETERS") {
        // `'key'='value' 'key2'='value2'`, shell-quoted.
        for kv in split_cmdline(params) {
            let (k, v) = kv.split_once('=').unwrap_or((&kv, "true"));
            configs.push((normalize_key(k), v.to_string()));
        }
    }
    let count = env_var(wrappers, "GIT_CONFIG_COUNT").and_then(|n| n.trim().parse::<usize>().ok()).unwrap_or(0);
    for i in 0..count.min(1000) {
        if let Some(k) = env_var(wrappers, &format!("GIT_CONFIG_KEY_{i}")) {
            let v = env_var(wrappers, &format!("GIT_CONFIG_VALUE_{i}")).unwrap_or("");
            configs.push((normalize_key(k), v.to_string()));
        }
    }
    configs
}

/// Skips git's global options, recording `-c` settings and the options [`Globals`] lists; the index of
/// the subcommand.
fn global_options(args: &[String], configs: &mut Vec<(String, String)>, globals: &mut Globals) -> Option<usize> {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        match name {
            "-c" => {
                if let Some(kv) = args.get(i + 1) {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
                    configs.push((normalize_key(k), v.to_string()));
                }
                i += 2;
            }
            "-C" | "--git-dir" | "--work-tree" => {
                let value = inline.clone().or_else(|| args.get(i + 1).cloned()).unwrap_or_default();
                // `-C .` and `--git-dir=.git` stay where the shell is; `/workspace` is where the sandbox mounts
                // the workspace (`paddock_sandbox::spec::WORKSPACE_DIR`).
                if !matches!(
                    value.trim_end_matches('/'),
                    "." | "" | ".git" | "./.git" | "/workspace" | "/workspace/.git"
                ) {
                    globals.elsewhere.push(format!("{name} {value}"));
                }
                i += if inline.is_some() { 1 } else { 2 };
            }
            "--exec-path" if inline.is_some() => {
                globals.opaque.push(format!("`{a}` runs git's programs from another directory"));
                i += 1;
            }
            "--config-env" => {
                let value = inline.clone().or_else(|| args.get(i + 1).cloned()).unwrap_or_default();
                globals.opaque.push(format!("`--config-env {value}` takes a setting from the environment"));
                i += if inline.is_some() { 1 } else { 2 };
            }
            "--namespace" | "--attr-source" | "--super-prefix" | "--list-cmds" => {
                i += if inline.is_some() { 1 } else { 2 };
            }
            _ if a.starts_with('-') => i += 1,
            _ => return Some(i),
        }
    }
    None
}

/// `section.sub.name` with section and name lowercase (they are case-insensitive; `sub` is not).
fn normalize_key(k: &str) -> String {
    match (k.find('.'), k.rfind('.')) {
        (Some(a), Some(b)) if a != b => {
            format!("{}.{}.{}", k[..a].to_ascii_lowercase(), &k[a + 1..b], k[b + 1..].to_ascii_lowercase())
        }
        _ => k.to_ascii_lowercase(),
    }
}

/// The last value of `key` (git's "last one wins").
fn config<'a>(configs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    let key = normalize_key(key);
    configs.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "on" | "1" | "")
}

/// Splits an alias body as git does: whitespace, single and double quotes, backslash escapes.
fn split_cmdline(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, ' ' | '\t' | '\n') => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (_, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Command lines a git invocation runs through a shell: a `!` alias (with its arguments), command
/// settings given with `-c` (`core.sshCommand`, `core.pager`, `credential.helper=!…`, …),
/// `rebase --exec`, `submodule foreach`, `bisect run`, `filter-branch` filters, `difftool --extcmd`,
/// and aliases being defined with `git config alias.x …` (reported as what they will run).
pub(crate) fn shell_snippets(argv: &[String], wrappers: &[String]) -> Vec<String> {
    let inv = resolve(argv, wrappers);
    let mut out = Vec::new();
    if let Some(body) = &inv.shell_alias {
        let args: Vec<String> = inv.args.iter().map(|a| shell_quote(a)).collect();
        out.push(format!("{body} {}", args.join(" ")));
    }
    for (k, v) in &inv.configs {
        if runs_command(k, v) {
            out.push(v.trim_start_matches('!').to_string());
        }
    }
    let args = &inv.args;
    let value_of = |long: &str, short: Option<char>| option_values(args, long, short);
    match inv.subcommand.as_str() {
        "rebase" => out.extend(value_of("--exec", Some('x'))),
        "difftool" => out.extend(value_of("--extcmd", Some('x'))),
        "filter-branch" => {
            for f in [
                "--setup",
                "--env-filter",
                "--tree-filter",
                "--index-filter",
                "--parent-filter",
                "--msg-filter",
                "--commit-filter",
                "--tag-name-filter",
            ] {
                out.extend(value_of(f, None));
            }
        }
        "submodule" => {
            if let Some(k) = args.iter().position(|a| a == "foreach") {
                let cmd: Vec<&str> = args[k + 1..]
                    .iter()
                    .map(String::as_str)
                    .skip_while(|a| matches!(*a, "--recursive" | "-q" | "--quiet"))
                    .collect();
                out.push(cmd.join(" "));
            }
        }
        "bisect" if args.first().is_some_and(|a| a == "run") => {
            out.push(args[1..].iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "));
        }
        "config" => {
            let operands: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
            for w in operands.windows(2) {
                if normalize_key(w[0]).starts_with("alias.") {
                    out.push(match w[1].strip_prefix('!') {
                        Some(body) => body.to_string(),
                        None => format!("git {}", w[1]),
                    });
                }
            }
        }
        _ => {}
    }
    out.retain(|s| !s.trim().is_empty());
    out
}

/// Values of `--long VALUE`, `--long=VALUE`, `-s VALUE`, `-sVALUE` (also in a bundle: `-ix CMD`).
fn option_values(args: &[String], long: &str, short: Option<char>) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        if a == "--" {
            break;
        }
        if a == long {
            out.extend(args.get(i).cloned());
            i += 1;
        } else if let Some(v) = a.strip_prefix(long).and_then(|v| v.strip_prefix('=')) {
            out.push(v.to_string());
        } else if let Some(s) = short
            && a.len() > 1
            && a.starts_with('-')
            && !a.starts_with("--")
            && let Some(k) = a.find(s)
        {
            let rest = &a[k + s.len_utf8()..];
            if rest.is_empty() {
                out.extend(args.get(i).cloned());
                i += 1;
            } else {
                out.push(rest.to_string());
            }
        }
    }
    out
}

/// Config settings whose value git runs as a command.
fn runs_command(key: &str, value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    if value.trim().is_empty() || matches!(lower.as_str(), "true" | "false" | "yes" | "no" | "on" | "off" | "0" | "1") {
        return false;
    }
    let parts: Vec<&str> = key.split('.').collect();
    match parts.as_slice() {
        ["credential", .., "helper"] => value.starts_with('!'),
        ["core", "sshcommand" | "pager" | "editor" | "askpass" | "fsmonitor" | "alternaterefscommand"]
        | ["sequence", "editor"]
        | ["diff", "external"]
        | ["gpg", "program"]
        | ["pager", _]
        | ["gpg", _, "program"]
        | ["filter", _, "clean" | "smudge" | "process"]
        | ["merge", _, "driver"]
        | ["diff", _, "command" | "textconv"] => true,
        _ => false,
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

// ---------------------------------------------------------------------------------------------
// push
// ---------------------------------------------------------------------------------------------

const FORCE: u8 = 1;
const DELETE: u8 = 2;
const TAGS: u8 = 4;
const ALL: u8 = 8;
const MIRROR: u8 = FORCE | DELETE | TAGS | ALL;
/// The option takes a value (as the next argument unless given with `=`).
const VALUE: u8 = 16;
/// The value is the repository.
const REPO: u8 = 32;

/// Long options of `git push` and `git send-pack` and what they mean.
const PUSH_LONG: &[(&str, u8)] = &[
    ("force", FORCE),
    ("force-with-lease", FORCE),
    ("force-if-includes", FORCE),
    ("mirror", MIRROR),
    ("delete", DELETE),
    ("prune", DELETE),
    ("tags", TAGS),
    ("follow-tags", TAGS),
    ("all", ALL),
    ("branches", ALL),
    ("atomic", 0),
    ("dry-run", 0),
    ("porcelain", 0),
    ("quiet", 0),
    ("verbose", 0),
    ("progress", 0),
    ("set-upstream", 0),
    ("thin", 0),
    ("verify", 0),
    ("ipv4", 0),
    ("ipv6", 0),
    ("signed", 0),
    ("stdin", 0),
    ("helper-status", 0),
    ("stateless-rpc", 0),
    ("repo", VALUE | REPO),
    ("receive-pack", VALUE),
    ("exec", VALUE),
    ("push-option", VALUE),
    ("recurse-submodules", VALUE),
    ("remote", VALUE),
];

/// Spellings a glob argument may expand to, and what they mean.
const DANGEROUS_SPELLINGS: &[(&str, u8)] = &[
    ("-f", FORCE),
    ("--force", FORCE),
    ("--force-with-lease", FORCE),
    ("--force-if-includes", FORCE),
    ("--mirror", MIRROR),
    ("-d", DELETE),
    ("--delete", DELETE),
    ("--prune", DELETE),
    ("--tags", TAGS),
    ("--follow-tags", TAGS),
    ("--all", ALL),
    ("--branches", ALL),
];

/// What a long option (name without `--`) means: exact match, else every option it abbreviates,
/// else `--force…`-like names count as force.
fn long_option(name: &str) -> u8 {
    if name.starts_with("no-") {
        return 0;
    }
    if let Some((_, bits)) = PUSH_LONG.iter().find(|(n, _)| *n == name) {
        return *bits;
    }
    let candidates: Vec<u8> = PUSH_LONG.iter().filter(|(n, _)| n.starts_with(name)).map(|&(_, b)| b).collect();
    match candidates.as_slice() {
        [one] => *one,
        [] => {
            let mut bits = 0;
            for (prefix, b) in
                [("force", FORCE), ("mirror", MIRROR), ("delete", DELETE), ("tag", TAGS), ("follow-tag", TAGS)]
            {
                if name.starts_with(prefix) {
                    bits |= b;
                }
            }
            bits
        }
        // Ambiguous: git refuses it, but count everything it could mean.
        many => many.iter().fold(0, |acc, b| acc | (b & !(VALUE | REPO))),
    }
}

fn parse_push(args: &[String], configs: &[(String, String)]) -> Push {
    let mut bits = 0u8;
    let mut repo_opt = None;
    let mut positionals: Vec<&String> = Vec::new();
    let mut i = 0;
    let mut options_done = false;
    while let Some(a) = args.get(i) {
        i += 1;
        if has_glob(a) {
            bits |= glob_effects(a);
        }
        if options_done || a == "-" || !a.starts_with('-') {
            positionals.push(a);
            continue;
        }
        if a == "--" || a == "--end-of-options" {
            options_done = true;
            continue;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let b = long_option(name);
            bits |= b & !(VALUE | REPO);
            let value = if b & VALUE != 0 && value.is_none() {
                i += 1;
                args.get(i - 1).cloned()
            } else {
                value
            };
            if b & REPO != 0 {
                repo_opt = value;
            }
            continue;
        }
        for (k, c) in a.char_indices().skip(1) {
            match c {
                'f' => bits |= FORCE,
                'd' => bits |= DELETE,
                'o' => {
                    if k + 1 == a.len() {
                        i += 1; // `-o VALUE`
                    }
                    break;
                }
                _ => {}
            }
        }
    }

    let remote_word = positionals.first().map(|s| s.to_string()).or(repo_opt);
    let mut refspecs = Vec::new();
    let mut words = positionals.iter().skip(1);
    while let Some(w) = words.next() {
        if w.as_str() == "tag"
            && let Some(t) = words.next()
        {
            let name = format!("refs/tags/{t}");
            refspecs.push(Refspec { src: Some(name.clone()), dst: Some(name), force: false });
            continue;
        }
        refspecs.push(parse_refspec(w, bits & DELETE != 0));
    }

    // Settings given with `-c` for the remote pushed to. Without one named, git pushes to the
    // branch's push remote or `remote.pushDefault`; the branch is unknown, so any setting counts.
    let default_remote = configs
        .iter()
        .rev()
        .find(|(k, _)| {
            k == "remote.pushdefault"
                || (k.starts_with("branch.") && (k.ends_with(".pushremote") || k.ends_with(".remote")))
        })
        .map(|(_, v)| v.clone());
    let remote_word = remote_word.or(default_remote);
    let remote_name = remote_word.clone().unwrap_or_else(|| "origin".to_string());
    let is_name = !remote_name.contains(['/', ':']);
    if is_name {
        if config(configs, &format!("remote.{remote_name}.mirror")).is_some_and(truthy) {
            bits |= MIRROR;
        }
        if refspecs.is_empty() && bits & (ALL | TAGS) == 0 {
            let key = normalize_key(&format!("remote.{remote_name}.push"));
            refspecs.extend(configs.iter().filter(|(k, _)| *k == key).map(|(_, v)| parse_refspec(v, false)));
        }
    }
    if config(configs, "push.followTags").is_some_and(truthy) {
        bits |= TAGS;
    }
    if refspecs.is_empty() && config(configs, "push.default").is_some_and(|v| v.eq_ignore_ascii_case("matching")) {
        bits |= ALL;
    }
    let url = is_name
        .then(|| {
            config(configs, &format!("remote.{remote_name}.pushurl"))
                .or_else(|| config(configs, &format!("remote.{remote_name}.url")))
        })
        .flatten()
        .map(str::to_string);
    let remote = url.or(remote_word).map(|r| rewrite_url(&r, configs));

    let url_rewrites = configs.iter().filter(|(k, _)| k.starts_with("url.")).cloned().collect();
    let mut push = Push {
        remote,
        refspecs,
        force: bits & FORCE != 0,
        delete: bits & DELETE != 0,
        tags: bits & TAGS != 0,
        all_branches: bits & ALL != 0,
        url_rewrites,
    };
    for r in &push.refspecs {
        push.force |= r.force;
        push.delete |= r.src.is_none() && r.dst.is_some();
        push.all_branches |= r.src.is_none() && r.dst.is_none();
        push.tags |= [&r.src, &r.dst].iter().any(|s| s.as_deref().is_some_and(|s| s.starts_with("refs/tags/")));
    }
    push
}

/// `[+]src[:dst]`; with `--delete` every refspec names a ref to delete.
fn parse_refspec(s: &str, deleting: bool) -> Refspec {
    let (force, s) = match s.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    if deleting {
        return Refspec { src: None, dst: some(s.trim_start_matches(':')), force };
    }
    if s.starts_with('^') {
        return Refspec { src: some(s), dst: None, force: false };
    }
    // git splits at the last colon.
    match s.rsplit_once(':') {
        Some((src, dst)) => Refspec { src: some(src), dst: some(dst), force },
        None => Refspec { src: some(s), dst: None, force },
    }
}

/// Applies `url.<base>.pushInsteadOf` (else `insteadOf`) rewriting, longest prefix first.
fn rewrite_url(url: &str, configs: &[(String, String)]) -> String {
    for kind in ["pushinsteadof", "insteadof"] {
        let best = configs
            .iter()
            .filter_map(|(k, v)| {
                let base = k.strip_prefix("url.")?.strip_suffix(kind)?.strip_suffix('.')?;
                url.starts_with(v.as_str()).then_some((base, v.len()))
            })
            .max_by_key(|&(_, len)| len);
        if let Some((base, len)) = best {
            return format!("{base}{}", &url[len..]);
        }
    }
    url.to_string()
}

// ---------------------------------------------------------------------------------------------
// gh
// ---------------------------------------------------------------------------------------------

/// Long `gh` flags that take a value (others are taken as booleans).
const GH_VALUE_LONG: &[&str] = &[
    "repo",
    "hostname",
    "method",
    "field",
    "raw-field",
    "header",
    "jq",
    "template",
    "json",
    "body",
    "body-file",
    "title",
    "base",
    "head",
    "label",
    "add-label",
    "remove-label",
    "assignee",
    "add-assignee",
    "remove-assignee",
    "milestone",
    "project",
    "add-project",
    "remove-project",
    "reviewer",
    "add-reviewer",
    "remove-reviewer",
    "limit",
    "state",
    "search",
    "author",
    "input",
    "cache",
    "notes",
    "notes-file",
    "target",
    "description",
    "homepage",
    "team",
    "gitignore",
    "license",
    "source",
    "branch",
    "upstream-remote-name",
    "remote-name",
    "org",
    "fork-name",
    "visibility",
    "default-branch",
    "add-topic",
    "remove-topic",
    "subject",
    "match-head-commit",
    "author-email",
    "app",
    "mention",
    "commit",
    "ref",
    "workflow",
    "event",
    "user",
    "status",
    "created",
    "sort",
    "order",
    "language",
    "topic",
    "owner",
    "env",
    "discussion-category",
    "notes-start-tag",
    "name",
    "tag",
];
/// Short `gh` flags that take a value wherever they exist (ambiguous ones like `-d`, `-s` are not here).
const GH_VALUE_SHORT: &str = "RXFHqbtBlaLAS";
/// `gh repo` actions whose first positional is the repository.
const GH_REPO_POSITIONAL: &[&str] =
    &["view", "clone", "delete", "archive", "unarchive", "edit", "fork", "sync", "create", "set-default", "rename"];

/// Indices of `gh` positionals (not flags, not flag values).
fn gh_positionals(args: &[String]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a == "--" {
            out.extend(i + 1..args.len());
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            i += if !long.contains('=') && GH_VALUE_LONG.contains(&long) { 2 } else { 1 };
            continue;
        }
        if a.len() > 1 && a.starts_with('-') {
            let valued = short_flags(a).last().is_some_and(|c| GH_VALUE_SHORT.contains(*c)) && value_at_end(a);
            i += if valued { 2 } else { 1 };
            continue;
        }
        out.push(i);
        i += 1;
    }
    out
}

/// Letters of a short-flag bundle up to and including the first that takes a value.
fn short_flags(a: &str) -> Vec<char> {
    let mut out = Vec::new();
    for c in a.chars().skip(1) {
        out.push(c);
        if GH_VALUE_SHORT.contains(c) {
            break;
        }
    }
    out
}

/// Whether a bundle's value flag is its last letter, so its value is the next argument.
fn value_at_end(a: &str) -> bool {
    a.chars().skip(1).position(|c| GH_VALUE_SHORT.contains(c)) == Some(a.chars().count() - 2)
}

/// `--repo`/`-R` anywhere.
fn gh_repo_flag(args: &[String]) -> Option<String> {
    let mut i = 0;
    let mut found = None;
    while let Some(a) = args.get(i) {
        i += 1;
        if a == "--" {
            break;
        }
        if a == "--repo" || a == "-R" {
            found = args.get(i).cloned();
            i += 1;
        } else if let Some(v) = a.strip_prefix("--repo=").or_else(|| a.strip_prefix("-R")) {
            found = Some(v.trim_start_matches('=').to_string());
        }
    }
    found.and_then(|r| normalize_repo(&r))
}

/// `[HOST/]OWNER/REPO` or a URL as `owner/repo` (a host other than github.com is kept).
fn normalize_repo(s: &str) -> Option<String> {
    if s.contains("://") || s.starts_with("git@") {
        let (host, _, path) = split_remote(s)?;
        let seg = path_segments(path)?;
        if seg.len() < 2 {
            return None;
        }
        let repo = format!("{}/{}", seg[0], seg[1]);
        return Some(if host == "github.com" { repo } else { format!("{host}/{repo}") });
    }
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [host, o, r] if host.eq_ignore_ascii_case("github.com") => Some(format!("{o}/{r}")),
        _ if !s.is_empty() => Some(s.to_string()),
        _ => None,
    }
}

/// `repos/o/r/…` endpoints name their repository; `{owner}`/`{repo}` placeholders mean the current one.
fn api_repo(endpoint: &str) -> Option<String> {
    let path = endpoint.split(['?', '#']).next()?.trim_start_matches('/');
    let mut seg = path.split('/');
    if seg.next()? != "repos" {
        return None;
    }
    let (o, r) = (seg.next()?, seg.next()?);
    (!o.is_empty() && !r.is_empty() && !o.contains('{') && !r.contains('{')).then(|| format!("{o}/{r}"))
}

/// `gh api` fields that change a repository's visibility (`-f visibility=public`, `-F private=false`, a
/// GraphQL `visibility:` input).
fn changes_visibility(args: &[String]) -> bool {
    args.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a.starts_with("visibility=")
            || a.starts_with("private=")
            || (a.contains("mutation") && a.contains("visibility"))
    })
}

/// `gh api` with method DELETE, or a GraphQL mutation that deletes.
fn api_deletes(args: &[String]) -> bool {
    let method = option_values(args, "--method", Some('X'));
    if method.iter().any(|m| m.eq_ignore_ascii_case("delete")) {
        return true;
    }
    let text = args.join(" ").to_ascii_lowercase();
    text.contains("mutation") && text.contains("delete")
}

// ---------------------------------------------------------------------------------------------
// Names, globs and URLs
// ---------------------------------------------------------------------------------------------

/// Whether `argv0` runs `want` (case-insensitively, as on macOS; a glob counts if it can match).
fn is_program(argv0: &str, want: &str) -> bool {
    names(program_name(argv0), want)
}

fn names(word: &str, want: &str) -> bool {
    word.eq_ignore_ascii_case(want) || (has_glob(word) && glob_match(&word.to_ascii_lowercase(), want))
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// What a glob argument to `git push` may expand to.
fn glob_effects(pattern: &str) -> u8 {
    let mut bits = 0;
    for (spelling, b) in DANGEROUS_SPELLINGS {
        if glob_match(pattern, spelling) {
            bits |= b;
        }
    }
    if could_start_with(pattern, '+') {
        bits |= FORCE;
    }
    if could_start_with(pattern, ':') {
        bits |= DELETE;
    }
    bits
}

/// Whether `pattern` can match some text starting with `c`.
fn could_start_with(pattern: &str, c: char) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    match p.first() {
        Some('*' | '?') => true,
        Some('[') => bracket(&p, 0, c).is_none_or(|(m, _)| m) && (bracket(&p, 0, c).is_some() || c == '['),
        Some('\\') => p.get(1) == Some(&c),
        Some(&f) => f == c,
        None => false,
    }
}

/// Shell pattern matching: `*`, `?`, `[…]` (with `!`/`^` and ranges), `\` escapes.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if p.get(pi) == Some(&'*') {
            star = Some((pi, ti));
            pi += 1;
            continue;
        }
        let step = match p.get(pi) {
            Some('?') => Some(pi + 1),
            Some('[') => match bracket(&p, pi, t[ti]) {
                Some((true, next)) => Some(next),
                Some((false, _)) => None,
                None => (t[ti] == '[').then_some(pi + 1),
            },
            Some('\\') if pi + 1 < p.len() => (p[pi + 1] == t[ti]).then_some(pi + 2),
            Some(&c) => (c == t[ti]).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ti += 1;
            }
            (None, Some((sp, st))) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == '*')
}

/// Matches `c` against the bracket expression at `p[start]`: whether it matched and the index after
/// `]`; `None` when the bracket is not closed (then `[` is literal).
fn bracket(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &x = p.get(i)?;
        if x == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            let e = p[i + 2];
            matched |= x <= c && c <= e;
            i += 3;
        } else {
            matched |= x == c;
            i += 1;
        }
    }
}

/// Host (lowercase, no trailing dot), port and path of `scheme://[user@]host[:port]/path` or of the
/// scp-like `[user@]host:path`.
fn split_remote(url: &str) -> Option<(String, Option<&str>, &str)> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
        return None;
    }
    let (authority, path) = if let Some((scheme, rest)) = url.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "https" | "http" | "ssh" | "git" | "git+ssh" | "ssh+git") {
            return None;
        }
        // The authority ends at the first `/`, `?` or `#`: `https://evil.io#@github.com/` is evil.io.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let path = &rest[end..];
        let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
        (&rest[..end], path)
    } else {
        // scp-like syntax only when no slash comes before the first colon (git's rule).
        let colon = url.find(':')?;
        if url[..colon].contains('/') {
            return None;
        }
        let hostpart = &url[..colon];
        (hostpart, &url[colon + 1..])
    };
    // User info ends at the last `@`: `https://github.com@evil.io/` is evil.io.
    let hostport = authority.rsplit('@').next()?;
    let (host, port) = if url.contains("://") {
        match hostport.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, (!p.is_empty()).then_some(p)),
            Some(_) => return None,
            None => (hostport, None),
        }
    } else {
        (hostport, None)
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
        return None;
    }
    Some((host, port, path))
}

/// `owner`, `repo` and any further segments of a repository path (`/o/r.git/` → `["o", "r"]`),
/// percent-decoded and validated; `None` for anything odd.
fn path_segments(path: &str) -> Option<Vec<String>> {
    let path = path.strip_prefix('/').unwrap_or(path).trim_end_matches('/');
    let mut out = Vec::new();
    for (k, raw) in path.split('/').enumerate() {
        let mut seg = percent_decode(raw)?;
        if k == 1
            && let Some(s) = seg.strip_suffix(".git")
        {
            seg = s.to_string();
        }
        let valid = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if k < 2 && !valid {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::parse_commands;

    fn pushes(line: &str) -> Vec<Push> {
        parse_commands(line)
            .unwrap_or_else(|e| panic!("{line:?}: {e}"))
            .iter()
            .filter_map(git_command)
            .filter_map(|g| match g {
                GitCommand::Push(p) => Some(p),
                GitCommand::Other { .. } => None,
            })
            .collect()
    }

    fn push(line: &str) -> Push {
        let mut all = pushes(line);
        assert_eq!(all.len(), 1, "{line:?}: {all:?}");
        all.remove(0)
    }

    fn cmd(words: &[&str]) -> SimpleCommand {
        SimpleCommand { argv: words.iter().map(|s| s.to_string()).collect(), wrappers: Vec::new() }
    }

    fn gh(line: &str) -> GhCommand {
        let cmds = parse_commands(line).unwrap();
        cmds.iter().find_map(gh_command).unwrap_or_else(|| panic!("{line}: {cmds:?}"))
    }

    #[test]
    fn force_pushes_in_every_spelling() {
        for line in [
            "git push --force",
            "git push -f origin main",
            "git push origin +main",
            "git push --force-with-lease",
            "git push --force-with-lease=main:abc origin main",
            "git push --force-if-includes",
            "git push -uf origin x",
            "git push -fu origin x",
            "git push --mirror",
            "bash -c \"git push --force\"",
            "sh -c 'cd /tmp && git push -f'",
            "sudo -u x git push --force-with-lease",
            "env -i A=1 git push -f",
            "timeout 30 nohup git push -f",
            "echo $(git push -f)",
            "`git push -f`",
            "(cd x; git push -f)",
            "true && { git push -f; }",
            "gi\"t\" pu'sh' -f",
            "/usr/bin/git -C repo -c a=b push -f",
            "git push origin main --force",
            "eval \"git push -f\"",
            "xargs git push -f",
            "find . -exec git push -f \\;",
            "bash -lc $'git push -f'",
            "env -S 'git push -f'",
            // More spellings.
            "git push --forc",
            "git push --force-w origin main",
            "git push --mir",
            "git push --force-with-lease-typo",
            "git push origin main:main +dev:dev",
            "git push origin '+refs/heads/main:refs/heads/main'",
            "git push origin {+main,}",
            "git push -o ci.skip -f",
            "git push --repo=origin -f",
            "git --no-pager -P --git-dir=.git --work-tree . push -f",
            "git -c alias.p='push -f' p",
            "git -c alias.p=push -c alias.q='p --force' q origin",
            "git -c 'alias.sync=!git push -f' sync",
            "git -c remote.origin.push=+main:main push",
            "git -c remote.origin.mirror=true push",
            "git send-pack --force remote main",
            "GIT=1 git push -f",
            "sudo -E env -u X nice -n 5 git push -f",
            "command git push -f",
            "\\git push -f",
            "/usr/bin/gi? push -f",
            "git pu?h -f",
            "git push origin main -[f]",
            "GIT PUSH -f",
            "/usr/lib/git-core/git-push -f",
            "git-push origin +main",
            "git.exe push -f",
            "=git push -f",
            "git rebase -x 'git push -f' main",
            "git submodule foreach 'git push -f'",
            "git -c core.sshCommand='git push -f' fetch",
            "echo 'git push -f' | bash",
            "bash <<EOF\ngit push -f\nEOF",
            "watch -n 1 git push -f",
            "$SUDO git push -f",
            "sh -c '((git push -f))'",
            "git config alias.p 'push -f'",
            "GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=alias.p GIT_CONFIG_VALUE_0='push -f' git p",
            "env GIT_CONFIG_PARAMETERS=\"'alias.p'='push -f'\" git p",
            "GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=alias.p GIT_CONFIG_VALUE_0='!git push -f' git p",
        ] {
            let all = pushes(line);
            assert!(all.iter().any(|p| p.force), "{line:?}: {all:?}");
        }
    }

    #[test]
    fn non_force_pushes() {
        for line in [
            "git push origin main",
            "git push -u origin feature/x",
            "git push",
            "git push --no-force-with-lease origin main",
            "git push origin HEAD:refs/heads/main",
            "git push --set-upstream origin x --dry-run",
        ] {
            let p = push(line);
            assert!(!p.force && !p.delete && !p.tags && !p.all_branches, "{line}: {p:?}");
        }
        // Text that merely mentions a push runs nothing.
        for line in [
            "echo \"git push -f\"",
            "git log --format=+x",
            "git commit -m 'git push -f'",
            "cat <<'EOF'\ngit push -f\nEOF",
        ] {
            assert!(pushes(line).is_empty(), "{line}");
        }
        assert_eq!(
            git_command(&cmd(&["git", "log", "--format=+x"])),
            Some(GitCommand::Other { subcommand: "log".into(), args: vec!["--format=+x".into()] })
        );
        // Negations do not clear an explicit force (fail closed).
        assert!(push("git push --force --no-force").force);
    }

    #[test]
    fn refspecs_and_targets() {
        let p = push("git push -u origin feature/x");
        assert_eq!(p.remote.as_deref(), Some("origin"));
        assert_eq!(p.refspecs, vec![Refspec { src: Some("feature/x".into()), dst: None, force: false }]);
        assert_eq!(p.target_branches(), vec!["feature/x"]);
        assert_eq!(push("git push origin HEAD:main").target_branches(), vec!["main"]);
        assert_eq!(push("git push origin HEAD").target_branches(), vec!["HEAD"]);
        assert_eq!(
            push("git push origin a:refs/heads/b +c refs/tags/v1 refs/notes/x").target_branches(),
            vec!["b", "c", "refs/notes/x"]
        );
        assert_eq!(
            push("git push https://github.com/o/r.git main").remote.as_deref(),
            Some("https://github.com/o/r.git")
        );
        assert_eq!(push("git push").remote, None);
        assert_eq!(push("git -c remote.pushDefault=up push").remote.as_deref(), Some("up"));
        assert_eq!(
            push("git -c remote.pushDefault=up -c remote.up.url=https://github.com/evil/x push").remote.as_deref(),
            Some("https://github.com/evil/x")
        );
        assert_eq!(push("git push --repo=up").remote.as_deref(), Some("up"));
        assert_eq!(push("git push --repo up").remote.as_deref(), Some("up"));
        // A positional repository takes precedence over `--repo`, as in git.
        assert_eq!(push("git push --repo up main").remote.as_deref(), Some("main"));
        // The URL a `-c` setting gives the remote, and URL rewriting.
        assert_eq!(
            push("git -c remote.origin.url=https://github.com/evil/x push").remote.as_deref(),
            Some("https://github.com/evil/x")
        );
        assert_eq!(
            push("git -c remote.up.pushurl=git@github.com:e/x push up main").remote.as_deref(),
            Some("git@github.com:e/x")
        );
        assert_eq!(
            push(
                "git -c url.https://github.com/evil/.insteadOf=https://github.com/o/ push https://github.com/o/r main"
            )
            .remote
            .as_deref(),
            Some("https://github.com/evil/r")
        );
        let p = push("git push origin +a:b ^c :");
        assert_eq!(
            p.refspecs,
            vec![
                Refspec { src: Some("a".into()), dst: Some("b".into()), force: true },
                Refspec { src: Some("^c".into()), dst: None, force: false },
                Refspec { src: None, dst: None, force: false },
            ]
        );
        assert!(p.all_branches && p.force);
    }

    #[test]
    fn deletes_and_tags() {
        for line in [
            "git push origin :old",
            "git push --delete origin old",
            "git push -d origin old",
            "git push --del origin old",
        ] {
            let p = push(line);
            assert!(p.delete, "{line}");
            assert_eq!(p.refspecs, vec![Refspec { src: None, dst: Some("old".into()), force: false }], "{line}");
            assert_eq!(p.target_branches(), vec!["old"], "{line}");
        }
        assert!(push("git push --prune origin").delete);
        let m = push("git push --mirror");
        assert!(m.force && m.delete && m.tags && m.all_branches);
        for line in [
            "git push --tags",
            "git push origin refs/tags/v1",
            "git push --follow-tags",
            "git push origin tag v1",
            "git push origin v1:refs/tags/v1",
            "git -c push.followTags=true push",
        ] {
            assert!(push(line).tags, "{line}");
        }
        assert_eq!(push("git push origin tag v1").target_branches(), Vec::<String>::new());
        assert!(push("git push --all origin").all_branches);
        assert!(push("git push --branches").all_branches);
        assert!(!push("git push origin main").tags);
    }

    #[test]
    fn other_git_commands() {
        assert_eq!(
            git_command(&cmd(&["/usr/bin/git", "-C", "repo", "-c", "a=b", "--no-pager", "status", "-s"])),
            Some(GitCommand::Other { subcommand: "status".into(), args: vec!["-s".into()] })
        );
        assert_eq!(
            git_command(&cmd(&["git", "-c", "alias.st=status -s", "st", "x"])),
            Some(GitCommand::Other { subcommand: "status".into(), args: vec!["-s".into(), "x".into()] })
        );
        assert_eq!(
            git_command(&cmd(&["git", "--version"])),
            Some(GitCommand::Other { subcommand: String::new(), args: vec![] })
        );
        assert_eq!(git_command(&cmd(&["gitk"])), None);
        assert_eq!(git_command(&cmd(&["echo", "git"])), None);
        // Alias loops stop.
        assert!(git_command(&cmd(&["git", "-c", "alias.a=b", "-c", "alias.b=a", "a"])).is_some());
    }

    #[test]
    fn gh_commands() {
        let c = gh("gh pr merge 12 -R o/r");
        assert_eq!(
            (c.group.as_str(), c.action.as_deref(), c.repo.as_deref(), c.destructive),
            ("pr", Some("merge"), Some("o/r"), false)
        );
        assert_eq!(c.args, vec!["12", "-R", "o/r"]);
        let c = gh("gh repo delete o/r --yes");
        assert_eq!(
            (c.group.as_str(), c.action.as_deref(), c.repo.as_deref(), c.destructive),
            ("repo", Some("delete"), Some("o/r"), true)
        );
        let c = gh("gh api -X DELETE repos/o/r");
        assert_eq!(
            (c.group.as_str(), c.action.as_deref(), c.repo.as_deref(), c.destructive),
            ("api", None, Some("o/r"), true)
        );
        assert_eq!(c.args, vec!["-X", "DELETE", "repos/o/r"]);
        let c = gh("gh release create v1 --repo o/r");
        assert_eq!(
            (c.group.as_str(), c.action.as_deref(), c.repo.as_deref(), c.destructive),
            ("release", Some("create"), Some("o/r"), false)
        );

        assert!(gh("gh api --method=delete /repos/o/r/git/refs/heads/x").destructive);
        assert!(gh("gh api -XDELETE repos/o/r").destructive);
        assert!(!gh("gh api repos/o/r/pulls").destructive);
        assert_eq!(gh("gh api repos/{owner}/{repo}/pulls").repo, None);
        assert!(gh("gh api graphql -f query='mutation { deleteRef(input: {}) { clientMutationId } }'").destructive);
        assert!(gh("gh release delete v1 -y").destructive);
        assert!(gh("gh release delete-asset v1 a.zip").destructive);
        assert!(gh("gh repo deploy-key delete 123").destructive);
        assert!(gh("gh secret remove X").destructive);
        assert!(gh("gh pr merge 1 --squash --delete-branch").destructive);
        assert!(gh("gh pr merge 1 -sd").destructive);
        assert!(!gh("gh pr merge 1 --squash").destructive);
        assert!(gh("gh repo sync o/fork --force").destructive);
        assert!(!gh("gh alias delete co").destructive);
        assert!(!gh("gh pr edit 1 --remove-label x").destructive);

        assert_eq!(gh("gh pr -R o/r merge 1").action.as_deref(), Some("merge"));
        assert_eq!(gh("gh pr merge https://github.com/o/r/pull/1").repo.as_deref(), Some("o/r"));
        assert_eq!(gh("gh pr view 1 --repo=github.com/o/r").repo.as_deref(), Some("o/r"));
        assert_eq!(gh("gh pr view 1 -R ghe.corp/o/r").repo.as_deref(), Some("ghe.corp/o/r"));
        assert_eq!(gh("gh repo clone https://github.com/o/r.git").repo.as_deref(), Some("o/r"));
        assert_eq!(gh("gh repo create --description 'my repo' o/new --private").repo.as_deref(), Some("o/new"));
        assert_eq!(gh("gh co 12").action.as_deref(), Some("checkout"));
        assert_eq!(gh("sudo gh repo view").repo, None);
        assert_eq!(gh("GH_REPO=o/r gh pr merge 1").repo.as_deref(), Some("o/r"));
        assert_eq!(gh("sudo GH_REPO=github.com/o/r gh pr merge 1").repo.as_deref(), Some("o/r"));
        assert_eq!(gh("GH_REPO=o/r gh pr merge 1 -R a/b").repo.as_deref(), Some("a/b"));
        assert_eq!(gh_command(&cmd(&["ghq", "get"])), None);
    }

    #[test]
    fn repo_urls() {
        let h: &[&str] = &["github.com"];
        for (url, want) in [
            ("https://github.com/o/r", Some("o/r")),
            ("https://github.com/o/r.git", Some("o/r")),
            ("https://github.com/o/r/", Some("o/r")),
            ("https://GitHub.com./o/r.git", Some("o/r")),
            ("http://user:tok@github.com:443/o/r", Some("o/r")),
            ("git@github.com:o/r.git", Some("o/r")),
            ("github.com:o/r", Some("o/r")),
            ("ssh://git@github.com/o/r.git", Some("o/r")),
            ("ssh://git@github.com:22/o/r.git", Some("o/r")),
            ("git+ssh://git@github.com/o/r", Some("o/r")),
            ("https://github.com/o/%72", Some("o/r")),
            ("https://evil-github.com/o/r", None),
            ("https://github.com.evil.io/o/r", None),
            ("https://github.com@evil.io/o/r", None),
            ("https://evil.io#@github.com/o/r", None),
            ("https://evil.io?@github.com/o/r", None),
            ("https://evil.io\\@github.com/o/r", None),
            ("git@evil.io:github.com/o/r", None),
            ("git@github.com.evil.io:o/r", None),
            ("https://github.com/o", None),
            ("https://github.com/o/r/pull/1", None),
            ("https://github.com//o/r", None),
            ("https://github.com/o/..", None),
            ("https://github.com/o/r%2Fx", None),
            ("file:///github.com/o/r", None),
            ("/srv/github.com/o/r", None),
            ("./github.com:o/r", None),
            ("origin", None),
            ("", None),
        ] {
            assert_eq!(github_repo_from_url(url, h).as_deref(), want, "{url}");
        }
        assert_eq!(github_repo_from_url("https://github.com/o/r", &[]).as_deref(), Some("o/r"));
        assert_eq!(github_repo_from_url("https://ghe.corp/o/r", &["ghe.corp"]).as_deref(), Some("o/r"));
        assert_eq!(github_repo_from_url("https://ghe.corp/o/r", h), None);
        assert_eq!(github_repo_from_url("https://ghe.corp:8443/o/r", &["ghe.corp:8443"]).as_deref(), Some("o/r"));
        assert_eq!(github_repo_from_url("https://ghe.corp:9/o/r", &["ghe.corp:8443"]), None);
    }

    #[test]
    fn globs() {
        assert!(glob_match("gi?", "git"));
        assert!(glob_match("*", "git"));
        assert!(glob_match("g[a-z]t", "git"));
        assert!(!glob_match("g[!i]t", "git"));
        assert!(glob_match("-[f]", "-f"));
        assert!(glob_match("a\\*", "a*"));
        assert!(!glob_match("a\\*", "ab"));
        assert!(glob_match("*-*", "--force"));
        assert!(!glob_match("refs/heads/*", "-f"));
        assert!(could_start_with("[+x]y", '+'));
        assert!(!could_start_with("refs/*", '+'));
        assert!(!push("git push origin 'refs/heads/*:refs/heads/*'").force);
    }
}
