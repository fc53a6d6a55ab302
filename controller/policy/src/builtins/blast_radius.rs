//! `blast_radius`: deny irreversible shell commands (recursive deletes of critical paths, force pushes,
//! wiping disks), ask before risky ones (pushes, publishes, infrastructure changes), and never allow a
//! command line whose effect the parser cannot see (see [`crate::opaque`]): those get `opaque_action`.
//!
//! On the wire the same effects count: a `git_push` that deletes a ref or is not a fast-forward, and a
//! request to a GitHub API that deletes a ref or a repository, forces a ref, or merges a pull request (an
//! `egress` event with `method`). A plain push on the wire is not asked about again: the tool call that ran
//! it was (as a push, or as a command line the parser cannot see through).

use schemars::JsonSchema;
use serde::Deserialize;

use super::github::shell_commands;
use paddock_api::Phase;
use serde_json::Value;

use super::github::request_fields::{Fields, may_be_true};
use super::github::wire::api_segments;
use super::{Action, Builtin, BuiltinDef, Outcome, RuleCtx, build_with, schema_of};
use crate::event::{Event, is_zero_oid};
use crate::git::{GitCommand, gh_command, git_command};
use crate::opaque::why_opaque;
use crate::shell::{SimpleCommand, program_name};
use crate::state::SessionState;
use crate::tools::ToolUse;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlastParams {
    /// Treat every `git push` as risky.
    #[serde(default = "super::yes")]
    pub gate_pushes: bool,
    /// What risky commands get: `ask` (default) or `deny`.
    #[serde(default = "super::ask")]
    pub risky_action: Action,
    /// What opaque commands get, those whose effect the parser cannot see (a program that is an
    /// expansion, inline code of another interpreter, a script file fed to a shell, a copy of git,
    /// exported git configuration…): `ask` (default) or `deny`. Never allowed.
    #[serde(default = "super::ask")]
    pub opaque_action: Action,
    /// Replaces the reason of every denial.
    #[serde(default)]
    pub deny_reason: Option<String>,
}

pub const BLAST_RADIUS: BuiltinDef = BuiltinDef {
    name: "blast_radius",
    summary: "deny irreversible shell commands, ask before risky ones",
    phases: &[Phase::ToolCall, Phase::LlmResponse, Phase::Egress, Phase::GitPush],
    schema: schema_of::<BlastParams>,
    build: |v| build_with(v, |p: BlastParams| Ok(Blast { p })),
};

struct Blast {
    p: BlastParams,
}

const CRITICAL_DIRS: &[&str] = &[
    "/", "/*", "~", "~/", "$HOME", "${HOME}", "*", "/etc", "/usr", "/home", "/var", "/bin", "/sbin", "/boot", "/lib",
    "/lib64", "/opt", "/root", "/srv", "/sys", "/proc", "/dev", ".git",
];

/// `//`, `/./`, `$HOME/.`, `repo/.git/`: normalised before comparing, and `.git` anywhere as the last segment.
fn is_critical(target: &str) -> bool {
    let absolute = target.starts_with('/');
    let parts: Vec<&str> = target.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.last() == Some(&".git") || (parts.last() == Some(&"*") && parts.len() <= 1) {
        return true;
    }
    let joined = parts.join("/");
    let normal = if absolute { format!("/{joined}") } else { joined };
    let normal = normal.trim_end_matches("/*");
    CRITICAL_DIRS.contains(&normal) || CRITICAL_DIRS.contains(&target) || (absolute && parts.is_empty())
}

enum BlastClass {
    Irreversible(String),
    Risky(String),
}

fn classify(c: &SimpleCommand, gate_pushes: bool) -> Option<BlastClass> {
    let prog = program_name(c.argv.first()?);
    let args = &c.argv[1..];
    let has = |w: &str| args.iter().any(|a| a == w);
    match prog {
        "rm" => {
            let flags: String = args
                .iter()
                .filter(|a| a.starts_with('-') && !a.starts_with("--"))
                .flat_map(|a| a.chars().skip(1))
                .collect();
            let recursive = flags.contains('r') || flags.contains('R') || has("--recursive");
            if !recursive {
                return None;
            }
            let targets: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
            if let Some(t) = targets.iter().find(|t| is_critical(t)) {
                return Some(BlastClass::Irreversible(format!("recursive delete of `{t}`")));
            }
            Some(BlastClass::Risky(format!(
                "recursive delete of {}",
                targets.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
            )))
        }
        "mkfs" | "mkfs.ext4" | "mkfs.xfs" | "wipefs" | "shred" => {
            Some(BlastClass::Irreversible(format!("`{prog}` destroys data")))
        }
        "dd" if args.iter().any(|a| a.starts_with("of=/dev/")) => {
            Some(BlastClass::Irreversible("`dd` onto a device".into()))
        }
        "shutdown" | "reboot" | "halt" | "poweroff" => Some(BlastClass::Irreversible(format!("`{prog}`"))),
        "chmod" | "chown" if (has("-R") || has("--recursive")) && args.iter().any(|a| a == "/") => {
            Some(BlastClass::Irreversible(format!("recursive `{prog}` of `/`")))
        }
        "kubectl" | "helm" | "terraform" | "tofu" | "pulumi" | "databricks" => {
            let verbs = [
                "apply",
                "delete",
                "destroy",
                "deploy",
                "upgrade",
                "install",
                "uninstall",
                "replace",
                "patch",
                "scale",
                "drain",
                "up",
                "rollout",
            ];
            args.iter()
                .find(|a| verbs.contains(&a.as_str()))
                .map(|v| BlastClass::Risky(format!("`{prog} {v}` changes live infrastructure")))
        }
        "npm" | "cargo" | "pnpm" | "yarn" | "twine" | "gem"
            if has("publish") || (prog == "twine" && has("upload")) || (prog == "gem" && has("push")) =>
        {
            Some(BlastClass::Risky(format!("`{prog}` publishes a package")))
        }
        "docker" | "podman" if has("push") => Some(BlastClass::Risky(format!("`{prog} push` publishes an image"))),
        "git" => match git_command(c)? {
            GitCommand::Push(p) if p.force => {
                Some(BlastClass::Irreversible("force push rewrites remote history".into()))
            }
            GitCommand::Push(p) if p.delete => Some(BlastClass::Irreversible("push that deletes a remote ref".into())),
            GitCommand::Push(_) if gate_pushes => Some(BlastClass::Risky("`git push` publishes commits".into())),
            GitCommand::Other { subcommand, args } if subcommand == "reset" && args.iter().any(|a| a == "--hard") => {
                if args.iter().any(|a| a.contains('/') && !a.starts_with('-')) {
                    Some(BlastClass::Irreversible("`git reset --hard` to a remote branch discards local work".into()))
                } else {
                    Some(BlastClass::Risky("`git reset --hard` discards uncommitted work".into()))
                }
            }
            GitCommand::Other { subcommand, args }
                if subcommand == "clean" && args.iter().any(|a| a.starts_with('-') && a.contains('f')) =>
            {
                Some(BlastClass::Risky("`git clean -f` deletes untracked files".into()))
            }
            _ => None,
        },
        "gh" => {
            let gh = gh_command(c)?;
            let risky = gh.destructive
                || matches!(
                    (gh.group.as_str(), gh.action.as_deref()),
                    ("pr", Some("merge"))
                        | ("release", Some("create" | "delete" | "upload"))
                        | ("repo", Some("delete" | "archive" | "rename"))
                );
            risky.then(|| BlastClass::Risky(format!("`gh {} {}`", gh.group, gh.action.unwrap_or_default())))
        }
        _ => None,
    }
}

/// What a `git_push`, or a request to a GitHub API, does that counts.
fn wire_class(event: &Event) -> Option<BlastClass> {
    if event.phase == Phase::GitPush {
        return event.updates.iter().find_map(|u| {
            if u.is_delete() {
                Some(BlastClass::Irreversible(format!("push that deletes `{}`", u.git_ref)))
            } else if !u.is_create() && !u.fast_forward {
                Some(BlastClass::Irreversible(format!("force push of `{}` rewrites remote history", u.git_ref)))
            } else {
                None
            }
        });
    }
    let segs = api_segments(event.host.as_deref()?, event.path.as_deref()?)?;
    let method = event.method.as_deref()?.to_ascii_uppercase();
    let is = |i: usize, w: &str| segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case(w));
    if segs.len() == 1 && is(0, "graphql") {
        let op = event.operation.as_ref()?;
        return op.fields.iter().find_map(|f| {
            let input = f.args.get("input");
            let name = f.name.to_ascii_lowercase();
            let forced = |u: &Value| {
                u.get("force").is_some_and(may_be_true)
                    || u.get("afterOid").and_then(Value::as_str).is_some_and(is_zero_oid)
            };
            match name.as_str() {
                "deleteref" | "deleterepository" => {
                    Some(BlastClass::Irreversible(format!("GraphQL `{}` deletes", f.name)))
                }
                "updateref" if input.and_then(|i| i.get("force")).is_some_and(may_be_true) => {
                    Some(BlastClass::Irreversible("GraphQL `updateRef` with force rewrites remote history".into()))
                }
                "updaterefs"
                    if input
                        .and_then(|i| i.get("refUpdates"))
                        .and_then(Value::as_array)
                        .is_some_and(|l| l.iter().any(forced)) =>
                {
                    Some(BlastClass::Irreversible("GraphQL `updateRefs` forces or deletes a ref".into()))
                }
                "mergepullrequest" | "mergebranch" => Some(BlastClass::Risky(format!("GraphQL `{}` merges", f.name))),
                _ => None,
            }
        });
    }
    if !is(0, "repos") || segs.len() < 3 {
        return None;
    }
    let refs = is(3, "git") && is(4, "refs") && segs.len() > 5;
    match method.as_str() {
        "DELETE" if segs.len() == 3 => Some(BlastClass::Irreversible("API call that deletes a repository".into())),
        "DELETE" if refs => Some(BlastClass::Irreversible("API call that deletes a remote ref".into())),
        // Any write method (GitHub takes POST where PATCH is meant), `force` in the body or the query.
        "GET" | "HEAD" | "OPTIONS" => None,
        _ if refs && Fields::new(event.body.as_ref(), event.path.as_deref().unwrap_or("")).force() == Some(true) => {
            Some(BlastClass::Irreversible("API call that force-updates a ref rewrites remote history".into()))
        }
        "PUT" if segs.len() == 6 && is(3, "pulls") && is(5, "merge") => {
            Some(BlastClass::Risky("API call that merges a pull request".into()))
        }
        _ => None,
    }
}

impl Builtin for Blast {
    fn evaluate(&self, _: &RuleCtx, event: &Event, tools: &[ToolUse], _: &SessionState) -> Result<Outcome, String> {
        if matches!(event.phase, Phase::Egress | Phase::GitPush) {
            return Ok(match wire_class(event) {
                Some(BlastClass::Irreversible(why)) => Outcome::deny(
                    self.p.deny_reason.clone().unwrap_or_else(|| format!("irreversible command denied: {why}")),
                ),
                Some(BlastClass::Risky(why)) if self.p.risky_action == Action::Deny => {
                    Outcome::deny(self.p.deny_reason.clone().unwrap_or_else(|| format!("risky command: {why}")))
                }
                Some(BlastClass::Risky(why)) => Outcome::ask(format!("risky command: {why}")),
                None => Outcome::allow(),
            });
        }
        let mut risky = None;
        let mut opaque = None;
        for t in tools {
            let Some(parsed) = shell_commands(t, &[]) else { continue };
            let cmds = match parsed {
                Ok(c) => c,
                Err(e) => {
                    // A line that cannot be parsed hides everything: the stricter of both answers.
                    let strict = if self.p.risky_action == Action::Deny { Action::Deny } else { self.p.opaque_action };
                    if strict == Action::Deny {
                        return Ok(Outcome::deny(e.clone()));
                    }
                    risky.get_or_insert(e.clone());
                    continue;
                }
            };
            for c in cmds {
                match classify(c, self.p.gate_pushes) {
                    Some(BlastClass::Irreversible(why)) => {
                        return Ok(Outcome::deny(
                            self.p.deny_reason.clone().unwrap_or_else(|| format!("irreversible command denied: {why}")),
                        ));
                    }
                    Some(BlastClass::Risky(why)) => {
                        risky.get_or_insert(format!("risky command: {why}"));
                    }
                    None => {}
                }
            }
            if opaque.is_none() {
                opaque = why_opaque(cmds)
                    .or_else(|| t.script_opacity().map(str::to_owned))
                    .map(|why| format!("cannot see what this runs: {why}"));
            }
        }
        let outcome = match (opaque, risky) {
            (Some(o), _) if self.p.opaque_action == Action::Deny => {
                Outcome::deny(self.p.deny_reason.clone().unwrap_or(o))
            }
            (_, Some(r)) if self.p.risky_action == Action::Deny => {
                Outcome::deny(self.p.deny_reason.clone().unwrap_or(r))
            }
            (Some(o), _) => Outcome::ask(o),
            (None, Some(r)) => Outcome::ask(r),
            (None, None) => Outcome::allow(),
        };
        Ok(outcome)
    }
}
