//! `github`: rules over GitHub MCP tools and over `git`/`gh` commands parsed out of
//! shell tool calls with a real shell tokenizer (chains, pipes, subshells, `bash -c`, wrappers, quoting).
//! A command that cannot be tokenized is asked about, never passed; so is a command line whose effect
//! the gate cannot see (see [`crate::opaque`], [`crate::git::git_opaque`]): `opaque_action`.
//!
//! Remote identity: a push to a named remote (`origin`) is judged by the repository that remote points
//! to, known only when the command provably runs in the workspace repository (no `cd`/`pushd` before it
//! on the line, no `-C`/`--git-dir`/`GIT_DIR=`, no other working directory in the tool's arguments).
//! There, the remotes a hook read inside the workspace (`git_remotes` of the event) come first; without
//! them `origin` is the session's `workspace_repo`. Anything else is asked about.

use std::collections::BTreeMap;

use paddock_api::{Phase, Verdict};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, Builtin, BuiltinDef, Outcome, RuleCtx, build_with, schema_of};
use crate::event::Event;
use crate::git::{
    GitCommand, Push, gh_command, gh_opaque, git_command, git_elsewhere, git_opaque, github_repo_from_url,
    push_target_change,
};
use crate::opaque::why_opaque;
use crate::shell::{SimpleCommand, program_name};
use crate::state::SessionState;
use crate::tools::{ToolKind, ToolUse, glob_match};

pub(super) mod api;
pub(crate) mod git_dir;
mod mcp;
pub(crate) mod request_fields;
pub(super) mod wire;

fn default_mcp_prefixes() -> Vec<String> {
    vec!["mcp__github__".into(), "github__".into()]
}
fn default_hosts() -> Vec<String> {
    vec!["github.com".into()]
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GithubParams {
    /// Allow reading any repository; otherwise only `read_repos` (and `write_repos`).
    #[serde(default = "super::yes")]
    pub read_all: bool,
    /// Repositories (`owner/repo`, globs allowed: `acme/*`) that may be read.
    #[serde(default)]
    pub read_repos: Vec<String>,
    /// Repositories that may be written (pushed to, PRs, issues, files, forks and new repositories).
    #[serde(default)]
    pub write_repos: Vec<String>,
    /// Branch globs writes may target (`feature/*`). Empty means any branch. A write whose branch is not
    /// named (a bare `git push`, a merge into a pull request's base) is asked about.
    #[serde(default)]
    pub write_branches: Vec<String>,
    /// Allow deletes: branches, tags, files, releases, repositories; changing a repository's visibility or
    /// archiving it; administering it through the API (deploy keys, collaborators, hooks, branch
    /// protection, rulesets, Actions secrets and the like).
    #[serde(default)]
    pub allow_destructive: bool,
    /// Deny pushing tags.
    #[serde(default = "super::yes")]
    pub deny_tag_push: bool,
    /// Deny force pushes in every spelling the parser sees (`--force`, `-f`, `--force-with-lease`, `+ref`,
    /// `--mirror`, an MCP `update_ref` with `force`); a line it cannot see through gets `opaque_action`.
    #[serde(default = "super::yes")]
    pub deny_force_push: bool,
    /// Prefixes of GitHub MCP tools (matched case-insensitively). Tools of any other server are judged too
    /// when their name is one of GitHub's MCP tools and their arguments name an `owner`/`repo`.
    #[serde(default = "default_mcp_prefixes")]
    pub mcp_tool_prefixes: Vec<String>,
    /// Shell tools whose commands are parsed. Empty means every shell tool of every harness.
    #[serde(default)]
    pub shell_tools: Vec<String>,
    /// Hosts that count as GitHub (add your GitHub Enterprise host).
    #[serde(default = "default_hosts")]
    pub github_hosts: Vec<String>,
    /// What a command line whose effect the gate cannot see gets: `ask` (default) or `deny`. Such lines
    /// are never allowed: a program named by an expansion, inline code of another interpreter, git options
    /// and settings that run commands (`--upload-pack`, `-c core.sshCommand`, `ext::`), gh aliases and
    /// extensions, writes inside `.git/`.
    #[serde(default = "super::ask")]
    pub opaque_action: Action,
    /// Replaces the reason of every denial.
    #[serde(default)]
    pub deny_reason: Option<String>,
}

pub const GITHUB: BuiltinDef = BuiltinDef {
    name: "github",
    summary: "repository and branch rules over GitHub MCP tools and parsed git/gh shell commands",
    phases: wire::PHASES,
    schema: schema_of::<GithubParams>,
    build: |v| build_with(v, |p: GithubParams| Ok(Github { p })),
};

struct Github {
    p: GithubParams,
}

/// Where the sandbox mounts the workspace (`paddock_sandbox::spec::WORKSPACE_DIR`) and starts the
/// harness: `cd /workspace` stays in the workspace repository.
const WORKSPACE_DIR: &str = "/workspace";

/// Tool arguments that set the directory a shell command runs in (Codex `workdir`).
const WORKDIR_ARGS: &[&str] =
    &["workdir", "cwd", "working_directory", "working_dir", "dir", "directory", "dir_path", "directory_path"];

/// Wrappers that may run their command in another directory or on another machine (`env -C`, `sudo -D`,
/// `find -execdir`, `ssh host …`, git itself for `submodule foreach`).
const MOVING_WRAPPERS: &[&str] = &[
    "env",
    "sudo",
    "doas",
    "su",
    "runuser",
    "chroot",
    "nsenter",
    "unshare",
    "bwrap",
    "firejail",
    "flatpak",
    "systemd-run",
    "ssh",
    "find",
    "parallel",
    "git",
    "docker",
    "podman",
    "kubectl",
];

/// Whether changing to `dir` stays in the workspace repository: the workspace itself, or the top of the
/// repository the shell is in.
fn stays(dir: &str) -> bool {
    let d = if dir.len() > 1 { dir.trim_end_matches('/') } else { dir };
    matches!(
        d,
        "." | "./"
            | WORKSPACE_DIR
            | "$PWD"
            | "${PWD}"
            | "$(git rev-parse --show-toplevel)"
            | "`git rev-parse --show-toplevel`"
    )
}

fn any_glob(globs: &[String], s: &str) -> bool {
    globs.iter().any(|g| glob_match(&g.to_ascii_lowercase(), &s.to_ascii_lowercase()))
}

/// The shell commands of a tool use, if it is a shell tool this rule watches.
pub(super) fn shell_commands<'a>(t: &'a ToolUse, only: &[String]) -> Option<&'a Result<Vec<SimpleCommand>, String>> {
    let watched = if only.is_empty() { t.kind == ToolKind::Shell } else { only.iter().any(|p| t.matches(p)) };
    if !watched {
        return None;
    }
    t.shell_commands()
}

/// Whether a `gh api` call writes: any method but GET (`-X PATCH`, `-XPATCH`, `--method=PUT`), or any
/// field or input (`-f`, `-Fk=v`, `--field=k=v`, `--raw-field`, `--input`), which make gh send a POST.
fn gh_api_writes(args: &[String]) -> bool {
    let mut method = None;
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let value = if a == "-X" || a == "--method" {
            it.next().cloned()
        } else if let Some(m) = a.strip_prefix("--method=") {
            Some(m.to_owned())
        } else {
            a.strip_prefix("-X").map(str::to_owned)
        };
        if value.is_some() {
            method = value;
            continue;
        }
        let field =
            ["-f", "-F", "--field", "--raw-field", "--input"].iter().any(|f| a == f || a.starts_with(&format!("{f}=")))
                || ((a.starts_with("-f") || a.starts_with("-F")) && !a.starts_with("--"));
        if field {
            return true;
        }
    }
    method.is_some_and(|m| !m.eq_ignore_ascii_case("GET"))
}

/// What a `gh api graphql` call does: `None` for a query, `Some(why)` for a mutation or a query the line
/// does not show (`-F query=@file`, `--input`).
fn graphql_writes(args: &[String]) -> Option<String> {
    if args.iter().any(|a| a == "--input" || a.starts_with("--input=")) {
        return Some("the GraphQL document is read from a file".into());
    }
    let text = args.join(" ");
    if text.contains("query=@") {
        return Some("the GraphQL document is read from a file".into());
    }
    text.to_ascii_lowercase().contains("mutation").then(|| "a GraphQL mutation".into())
}

#[derive(Clone, Copy, PartialEq)]
enum Access {
    Read,
    Write,
    Destructive,
}

/// Where one command of a shell line runs: provably in the workspace repository, or not (and why).
type Place = Result<(), String>;

/// The `git_remotes` a hook read where the tool runs, if this tool use is the event's tool call.
type Remotes<'a> = Option<&'a BTreeMap<String, Vec<String>>>;

impl Github {
    fn deny(&self, why: String) -> Outcome {
        Outcome::deny(self.p.deny_reason.clone().unwrap_or(why))
    }

    fn opaque(&self, why: String) -> Outcome {
        match self.p.opaque_action {
            Action::Deny => self.deny(why),
            Action::Ask => Outcome::ask(why),
        }
    }

    fn hosts(&self) -> Vec<&str> {
        self.p.github_hosts.iter().map(String::as_str).collect()
    }

    /// `owner/repo` of the workspace; the Session may give its workspace as a URL.
    fn workspace_repo(&self, state: &SessionState) -> Option<String> {
        let r = state.workspace_repo.as_deref()?.trim();
        if r.contains("://") || r.contains(':') || r.starts_with("git@") {
            github_repo_from_url(r, &self.hosts())
        } else {
            (!r.is_empty()).then(|| r.to_owned())
        }
    }

    fn check_repo(&self, access: Access, repo: Option<&str>, branch: Option<&str>, what: &str) -> Option<Outcome> {
        if access == Access::Destructive && !self.p.allow_destructive {
            return Some(self.deny(format!("{what}: destructive GitHub operations are not allowed")));
        }
        match access {
            Access::Read => {
                if self.p.read_all {
                    return None;
                }
                match repo {
                    Some(r) if any_glob(&self.p.read_repos, r) || any_glob(&self.p.write_repos, r) => None,
                    Some(r) => Some(self.deny(format!("{what}: reading `{r}` is not allowed"))),
                    None => {
                        Some(self.deny(format!(
                            "{what}: the repository is unknown and only listed repositories may be read"
                        )))
                    }
                }
            }
            Access::Write | Access::Destructive => {
                let Some(r) = repo else { return Some(self.deny(format!("{what}: the repository is unknown"))) };
                if !any_glob(&self.p.write_repos, r) {
                    return Some(self.deny(format!("{what}: writing to `{r}` is not allowed")));
                }
                if let Some(b) = branch
                    && !self.p.write_branches.is_empty()
                    && !any_glob(&self.p.write_branches, b)
                {
                    return Some(self.deny(format!(
                        "{what}: branch `{b}` of `{r}` is not writable (allowed: {})",
                        self.p.write_branches.join(", ")
                    )));
                }
                None
            }
        }
    }

    /// A write whose branch the call does not name: allowed only when any branch is.
    fn check_unnamed_branch(&self, access: Access, repo: Option<&str>, what: &str, why: &str) -> Option<Outcome> {
        self.check_repo(access, repo, None, what)
            .or_else(|| (!self.p.write_branches.is_empty()).then(|| Outcome::ask(format!("{what}: {why}"))))
    }

    /// Whether a command provably runs in the workspace repository, given where the tool runs the line
    /// (`workdir`) and the first change of directory before it on the line (`moved`, see [`Self::moves`]).
    fn place(workdir: &Place, moved: Option<&str>, c: &SimpleCommand) -> Place {
        workdir.clone()?;
        if let Some(why) = moved {
            return Err(why.to_owned());
        }
        if let Some(w) = c.wrappers.iter().find(|w| MOVING_WRAPPERS.contains(&program_name(w))) {
            return Err(format!("it runs under `{w}`, which may run it elsewhere"));
        }
        match git_elsewhere(c) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// Whether the tool's arguments run the line in another directory (Codex `workdir`).
    fn workdir(t: &ToolUse) -> Place {
        for k in WORKDIR_ARGS {
            if let Some(dir) = t.args.get(*k).and_then(|v| v.as_str())
                && !stays(dir)
            {
                return Err(format!("the tool runs it in `{dir}`"));
            }
        }
        Ok(())
    }

    /// Why the commands after `c` on its line may run in another directory, if `c` changes it.
    fn moves(c: &SimpleCommand) -> Option<String> {
        let prog = program_name(c.argv.first().map_or("", String::as_str)).to_ascii_lowercase();
        if !matches!(prog.as_str(), "cd" | "pushd" | "popd" | "chdir") {
            return None;
        }
        let target = c.argv[1..].iter().find(|a| !matches!(a.as_str(), "-L" | "-P" | "-e" | "-@" | "--"));
        (prog == "popd" || !target.is_some_and(|d| stays(d)))
            .then(|| format!("`{}` changes the directory before it", c.argv.join(" ")))
    }

    /// Repositories a push goes to, or why they cannot be told.
    fn push_repos(
        &self,
        push: &Push,
        place: &Place,
        remotes: Remotes,
        state: &SessionState,
    ) -> Result<Vec<String>, String> {
        let hosts = self.hosts();
        if !push.remote_is_name() {
            let url = push.remote.as_deref().unwrap_or_default();
            return github_repo_from_url(url, &hosts)
                .map(|r| vec![r])
                .ok_or_else(|| format!("`{url}` is not a repository on a GitHub host this rule knows"));
        }
        let name = push.remote.as_deref();
        let shown = name.unwrap_or("the default remote");
        if let Err(why) = place {
            return Err(format!("cannot tell which repository `{shown}` is: {why}"));
        }
        let Some(remotes) = remotes else {
            return match name {
                None | Some("origin") => self
                    .workspace_repo(state)
                    .map(|r| vec![r])
                    .ok_or_else(|| "the workspace repository is unknown".into()),
                Some(n) => Err(format!("cannot tell which repository the remote `{n}` is")),
            };
        };
        // The remotes read where the command runs.
        let urls: Vec<&String> = match name {
            Some(n) => remotes
                .get(n)
                .ok_or_else(|| format!("there is no remote `{n}` where the command runs"))?
                .iter()
                .collect(),
            None => remotes.values().flatten().collect(),
        };
        let mut repos: Vec<String> = Vec::new();
        for url in urls {
            let url = push.rewrite(url);
            let repo = github_repo_from_url(&url, &hosts)
                .ok_or_else(|| format!("`{shown}` is `{url}`, not a repository on a GitHub host this rule knows"))?;
            if !repos.contains(&repo) {
                repos.push(repo);
            }
        }
        match (name, repos.len()) {
            (_, 0) => Err(format!("`{shown}` has no URL where the command runs")),
            // A bare `git push` goes to the current branch's remote, which only one remote makes certain.
            (None, n) if n > 1 => Err("cannot tell which of the repository's remotes a bare push goes to".into()),
            _ => Ok(repos),
        }
    }

    fn judge_push(
        &self,
        push: &Push,
        place: &Place,
        remotes: Remotes,
        state: &SessionState,
        what: &str,
    ) -> Option<Outcome> {
        if push.force && self.p.deny_force_push {
            return Some(self.deny(format!("{what}: force pushes are not allowed")));
        }
        if push.tags && self.p.deny_tag_push {
            return Some(self.deny(format!("{what}: pushing tags is not allowed")));
        }
        let repos = match self.push_repos(push, place, remotes, state) {
            Ok(r) => r,
            Err(why) => return Some(Outcome::ask(format!("{what}: {why}"))),
        };
        let access = if push.delete { Access::Destructive } else { Access::Write };
        // `HEAD` is whatever is checked out: as unknown as no branch at all.
        let branches: Vec<String> = push.target_branches().into_iter().filter(|b| b != "HEAD").collect();
        repos.iter().find_map(|repo| {
            if branches.is_empty() {
                // A bare `git push` goes to the current branch, which the command does not say.
                return self.check_unnamed_branch(access, Some(repo), what, "cannot tell which branch this pushes to");
            }
            branches.iter().find_map(|b| self.check_repo(access, Some(repo), Some(b), what))
        })
    }

    fn git(
        &self,
        git: GitCommand,
        c: &SimpleCommand,
        place: &Place,
        remotes: Remotes,
        state: &SessionState,
    ) -> Option<Outcome> {
        let what = format!("`{}`", c.argv.join(" "));
        match git {
            GitCommand::Push(push) => self.judge_push(&push, place, remotes, state, &what),
            GitCommand::Other { subcommand, args } => {
                if let Some(why) = push_target_change(c) {
                    // Later pushes to `origin` are judged by where it points; a command that moves it is asked
                    // about (a hook inside the workspace reads the new URL on the next call).
                    return Some(Outcome::ask(format!("{what}: {why}")));
                }
                if subcommand == "clone" {
                    let url = args.iter().find(|a| !a.starts_with('-'))?;
                    let repo = github_repo_from_url(url, &self.hosts())?;
                    return self.check_repo(Access::Read, Some(&repo), None, &what);
                }
                None
            }
        }
    }

    /// The repository gh acts on when no `--repo` is given: the one of the directory it runs in.
    fn gh_current_repo(&self, place: &Place, remotes: Remotes, state: &SessionState) -> Result<String, String> {
        place.clone()?;
        match remotes {
            None => self.workspace_repo(state).ok_or_else(|| "the workspace repository is unknown".into()),
            Some(remotes) => {
                let mut repos: Vec<String> =
                    remotes.values().flatten().filter_map(|u| github_repo_from_url(u, &self.hosts())).collect();
                repos.dedup();
                match repos.as_slice() {
                    [one] => Ok(one.clone()),
                    [] => Err("no remote of the repository it runs in is on GitHub".into()),
                    _ => Err("the repository it runs in has remotes on several GitHub repositories".into()),
                }
            }
        }
    }

    fn gh(&self, c: &SimpleCommand, place: &Place, remotes: Remotes, state: &SessionState) -> Option<Outcome> {
        let gh = gh_command(c)?;
        let what = format!("`{}`", c.argv.join(" "));
        let uses_current = gh.group != "api" || gh.args.iter().any(|a| a.contains("{owner}") || a.contains("{repo}"));
        let current = uses_current.then(|| self.gh_current_repo(place, remotes, state));
        let repo = gh.repo.clone().or_else(|| current.clone().and_then(Result::ok));
        let graphql = gh.group == "api" && gh.args.iter().any(|a| a == "graphql");
        let read_actions = ["view", "list", "status", "diff", "checks", "clone", "browse", "search"];
        let access = if gh.destructive {
            Access::Destructive
        } else if graphql {
            match graphql_writes(&gh.args) {
                // A mutation names its repository inside the document: not something to guess.
                Some(why) if self.p.write_repos.is_empty() => {
                    return Some(self.deny(format!("{what}: {why} may write, and no repository is writable")));
                }
                Some(why) => return Some(Outcome::ask(format!("{what}: cannot tell which repository {why} writes"))),
                None => return self.check_repo(Access::Read, None, None, &what),
            }
        } else if gh.group == "api" {
            if gh_api_writes(&gh.args) {
                // An API write names its branch, if any, inside a path or a field: not something to
                // guess. Writes the branch rules would have to judge are asked about.
                return self.check_unnamed_branch(
                    Access::Write,
                    repo.as_deref(),
                    &what,
                    "cannot tell which branch this API call writes",
                );
            }
            Access::Read
        } else if gh.action.as_deref().is_some_and(|a| read_actions.contains(&a)) {
            Access::Read
        } else {
            Access::Write
        };
        if access != Access::Read
            && gh.repo.is_none()
            && let Some(Err(why)) = &current
        {
            return Some(Outcome::ask(format!("{what}: cannot tell which repository this acts on: {why}")));
        }
        if gh.group == "pr" && gh.action.as_deref() == Some("merge") {
            return self.check_unnamed_branch(
                access,
                repo.as_deref(),
                &what,
                "the merge writes the pull request's base branch, which the command does not name",
            );
        }
        self.check_repo(access, repo.as_deref(), None, &what)
    }

    /// One command of a shell line: what git or gh does, then whether git or gh runs what it does not show.
    /// `place` is worked out only for git and gh, the commands whose repository matters.
    fn command(
        &self,
        c: &SimpleCommand,
        place: impl FnOnce() -> Place,
        remotes: Remotes,
        state: &SessionState,
    ) -> Vec<Outcome> {
        let mut out = Vec::new();
        if let Some(git) = git_command(c) {
            out.extend(self.git(git, c, &place(), remotes, state));
            out.extend(git_opaque(c).map(|why| self.opaque(format!("`{}`: {why}", c.argv.join(" ")))));
        } else if gh_command(c).is_some() {
            out.extend(self.gh(c, &place(), remotes, state));
            out.extend(gh_opaque(c).map(|why| self.opaque(format!("`{}`: {why}", c.argv.join(" ")))));
        }
        out
    }

    fn shell(&self, t: &ToolUse, cmds: &[SimpleCommand], remotes: Remotes, state: &SessionState) -> Vec<Outcome> {
        let mut out = Vec::new();
        if let Some(why) = why_opaque(cmds).or_else(|| t.script_opacity().map(str::to_owned)) {
            out.push(self.opaque(why));
        }
        if let Some(why) = git_dir::shell_touches(t.command().as_deref(), cmds) {
            out.push(self.opaque(why));
        }
        // One pass: each command's place depends on the first change of directory before it.
        let workdir = Self::workdir(t);
        let mut moved: Option<String> = None;
        for c in cmds {
            out.extend(self.command(c, || Self::place(&workdir, moved.as_deref(), c), remotes, state));
            if moved.is_none() {
                moved = Self::moves(c);
            }
        }
        out
    }
}

impl Builtin for Github {
    fn evaluate(&self, _: &RuleCtx, event: &Event, tools: &[ToolUse], state: &SessionState) -> Result<Outcome, String> {
        match event.phase {
            Phase::GitPush => return Ok(self.git_push(event)),
            Phase::Egress => return Ok(self.egress(event, state)),
            _ => {}
        }
        // Remotes a hook read belong to the tool call it reported, not to calls inside a model's response.
        let remotes = (event.phase == Phase::ToolCall).then_some(event.git_remotes.as_ref()).flatten();
        let mut asks = Vec::new();
        for t in tools {
            let outcomes = if let Some(o) = self.mcp(t) {
                vec![o]
            } else if let Some(why) = git_dir::file_tool_writes(t) {
                vec![self.opaque(why)]
            } else {
                match shell_commands(t, &self.p.shell_tools) {
                    None => Vec::new(),
                    Some(Err(e)) => vec![Outcome::ask(e.clone())],
                    Some(Ok(cmds)) => self.shell(t, cmds, remotes, state),
                }
            };
            for o in outcomes {
                if o.verdict == Verdict::Deny {
                    return Ok(o);
                }
                asks.push(o);
            }
        }
        Ok(asks.into_iter().next().unwrap_or_else(Outcome::allow))
    }
}
