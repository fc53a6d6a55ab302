//! `github`: rules over GitHub MCP tools and over `git`/`gh` commands parsed out of
//! shell tool calls with a real shell tokenizer (chains, pipes, subshells, `bash -c`, wrappers, quoting).
//! A command that cannot be tokenized is asked about, never passed.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{Builtin, BuiltinDef, Outcome, RuleCtx, TOOL_PHASES, build_with, schema_of};
use crate::event::Event;
use crate::git::{GitCommand, gh_command, git_command, github_repo_from_url};
use crate::shell::SimpleCommand;
use crate::state::SessionState;
use crate::tools::{ToolKind, ToolUse, glob_match};

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
    /// Repositories that may be written (pushed to, PRs, issues, files).
    #[serde(default)]
    pub write_repos: Vec<String>,
    /// Branch globs writes may target (`feature/*`). Empty means any branch.
    #[serde(default)]
    pub write_branches: Vec<String>,
    /// Allow deletes: branches, tags, files, releases, repositories.
    #[serde(default)]
    pub allow_destructive: bool,
    /// Deny pushing tags.
    #[serde(default = "super::yes")]
    pub deny_tag_push: bool,
    /// Deny force pushes in every spelling (`--force`, `-f`, `--force-with-lease`, `+ref`, `--mirror`).
    #[serde(default = "super::yes")]
    pub deny_force_push: bool,
    /// Prefixes of GitHub MCP tools.
    #[serde(default = "default_mcp_prefixes")]
    pub mcp_tool_prefixes: Vec<String>,
    /// Shell tools whose commands are parsed. Empty means every shell tool of every harness.
    #[serde(default)]
    pub shell_tools: Vec<String>,
    /// Hosts that count as GitHub (add your GitHub Enterprise host).
    #[serde(default = "default_hosts")]
    pub github_hosts: Vec<String>,
    /// Replaces the reason of every denial.
    #[serde(default)]
    pub deny_reason: Option<String>,
}

pub const GITHUB: BuiltinDef = BuiltinDef {
    name: "github",
    summary: "repository and branch rules over GitHub MCP tools and parsed git/gh shell commands",
    phases: TOOL_PHASES,
    schema: schema_of::<GithubParams>,
    build: |v| build_with(v, |p: GithubParams| Ok(Github { p })),
};

struct Github {
    p: GithubParams,
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

#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
    Destructive,
}

impl Github {
    fn deny(&self, why: String) -> Outcome {
        Outcome::deny(self.p.deny_reason.clone().unwrap_or(why))
    }

    fn check_repo(&self, access: Access, repo: Option<&str>, branch: Option<&str>, what: &str) -> Option<Outcome> {
        if matches!(access, Access::Destructive) && !self.p.allow_destructive {
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

    fn mcp(&self, t: &ToolUse) -> Option<Outcome> {
        let op = self.p.mcp_tool_prefixes.iter().find_map(|p| t.name.strip_prefix(p.as_str()))?;
        let a = &t.args;
        let s = |k: &str| a.get(k).and_then(Value::as_str);
        let repo = match (s("owner"), s("repo")) {
            (Some(o), Some(r)) => Some(format!("{o}/{r}")),
            (None, Some(r)) if r.contains('/') => Some(r.to_owned()),
            _ => s("repository").or(s("full_name")).map(str::to_owned),
        };
        let branch = s("branch").or(s("head")).or(s("ref")).map(|b| b.trim_start_matches("refs/heads/").to_owned());
        let what = format!("`{}`", t.name);
        let first = op.split('_').next().unwrap_or("");
        let access = match first {
            "get" | "list" | "search" | "read" => Access::Read,
            "delete" | "remove" => Access::Destructive,
            "create" | "update" | "push" | "merge" | "add" | "fork" | "request" | "submit" | "assign" | "close"
            | "reopen" | "edit" | "dismiss" | "rerun" | "cancel" | "run" | "set" | "star" | "unstar" | "mark"
            | "lock" | "unlock" | "write" => Access::Write,
            _ if op == "github_read_api_call" => Access::Read,
            _ if op == "github_write_api_call" => {
                let method = s("method").unwrap_or("POST").to_ascii_uppercase();
                if method == "DELETE" { Access::Destructive } else { Access::Write }
            }
            _ => return Some(self.deny(format!("{what} is not a known GitHub tool"))),
        };
        self.check_repo(access, repo.as_deref(), branch.as_deref(), &what)
    }

    fn command(&self, c: &SimpleCommand, state: &SessionState) -> Option<Outcome> {
        let hosts: Vec<&str> = self.p.github_hosts.iter().map(String::as_str).collect();
        let what = format!("`{}`", c.argv.join(" "));
        if let Some(git) = git_command(c) {
            return match git {
                GitCommand::Push(push) => {
                    if push.force && self.p.deny_force_push {
                        return Some(self.deny(format!("{what}: force pushes are not allowed")));
                    }
                    if push.tags && self.p.deny_tag_push {
                        return Some(self.deny(format!("{what}: pushing tags is not allowed")));
                    }
                    let repo = match push.remote.as_deref() {
                        None | Some("origin") => state.workspace_repo.clone(),
                        Some(url) => github_repo_from_url(url, &hosts),
                    };
                    let Some(repo) = repo else {
                        return Some(Outcome::ask(format!("{what}: cannot tell which repository this pushes to")));
                    };
                    let access = if push.delete { Access::Destructive } else { Access::Write };
                    // `HEAD` is whatever is checked out: as unknown as no branch at all.
                    let branches: Vec<String> = push.target_branches().into_iter().filter(|b| b != "HEAD").collect();
                    if branches.is_empty() {
                        // A bare `git push` goes to the current branch, which the command does not say.
                        return self.check_repo(access, Some(&repo), None, &what).or_else(|| {
                            (!self.p.write_branches.is_empty())
                                .then(|| Outcome::ask(format!("{what}: cannot tell which branch this pushes to")))
                        });
                    }
                    branches.iter().find_map(|b| self.check_repo(access, Some(&repo), Some(b), &what))
                }
                GitCommand::Other { subcommand, args }
                    if (subcommand == "remote"
                        && args.iter().any(|a| matches!(a.as_str(), "add" | "set-url" | "rename")))
                        || (subcommand == "config"
                            && args.iter().any(|a| {
                                let k = a.to_ascii_lowercase();
                                (k.starts_with("remote.") || k.starts_with("url.")) && !a.starts_with('-')
                            })) =>
                {
                    // Pushes to `origin` are judged as pushes to the workspace's repository; a command that
                    // moves a remote would make that wrong for the rest of the session.
                    Some(Outcome::ask(format!("{what}: changes where git pushes go")))
                }
                GitCommand::Other { subcommand, args } if subcommand == "clone" => {
                    let url = args.iter().find(|a| !a.starts_with('-'))?;
                    let repo = github_repo_from_url(url, &hosts)?;
                    self.check_repo(Access::Read, Some(&repo), None, &what)
                }
                GitCommand::Other { .. } => None,
            };
        }
        if let Some(gh) = gh_command(c) {
            let repo = gh.repo.clone().or_else(|| state.workspace_repo.clone());
            let read_actions = ["view", "list", "status", "diff", "checks", "clone", "browse", "search"];
            let access = if gh.destructive {
                Access::Destructive
            } else if gh.group == "api" {
                if gh_api_writes(&gh.args) {
                    // An API write names its branch, if any, inside a path or a field: not something to
                    // guess. Writes the branch rules would have to judge are asked about.
                    if !self.p.write_branches.is_empty() {
                        return self.check_repo(Access::Write, repo.as_deref(), None, &what).or_else(|| {
                            Some(Outcome::ask(format!("{what}: cannot tell which branch this API call writes")))
                        });
                    }
                    Access::Write
                } else {
                    Access::Read
                }
            } else if gh.action.as_deref().is_some_and(|a| read_actions.contains(&a)) {
                Access::Read
            } else {
                Access::Write
            };
            return self.check_repo(access, repo.as_deref(), None, &what);
        }
        None
    }
}

impl Builtin for Github {
    fn evaluate(&self, _: &RuleCtx, _: &Event, tools: &[ToolUse], state: &SessionState) -> Result<Outcome, String> {
        let mut asks = Vec::new();
        for t in tools {
            if let Some(o) = self.mcp(t) {
                if o.verdict == paddock_api::Verdict::Deny {
                    return Ok(o);
                }
                asks.push(o);
                continue;
            }
            match shell_commands(t, &self.p.shell_tools) {
                None => {}
                Some(Err(e)) => asks.push(Outcome::ask(e.clone())),
                Some(Ok(cmds)) => {
                    for c in cmds {
                        if let Some(o) = self.command(c, state) {
                            if o.verdict == paddock_api::Verdict::Deny {
                                return Ok(o);
                            }
                            asks.push(o);
                        }
                    }
                }
            }
        }
        Ok(asks.into_iter().next().unwrap_or_else(Outcome::allow))
    }
}
