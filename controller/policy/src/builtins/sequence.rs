//! `sequence`: after a matching event, ask or deny before another. E.g. after the agent installs a new
//! npm package, a human looks before anything is pushed. A step matches tool calls (by tool, command,
//! path, arguments), or what the gateway sees leave the sandbox: an `egress` request or connection
//! (`egress_matches`), a ref a `git_push` updates (`push_matches`).

use paddock_api::Phase;
use regex::Regex;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, Builtin, BuiltinDef, Outcome, RuleCtx, build_with, schema_of};
use crate::event::Event;
use crate::state::{SessionState, StateUpdate};
use crate::tools::ToolUse;

/// Which tool calls a step matches; every given field must match.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatcherParams {
    /// Tool pattern (`shell`, `Bash`, `write_file`, `mcp__github__*`).
    #[serde(default)]
    pub tool: Option<String>,
    /// Regular expression over a shell tool's command line.
    #[serde(default)]
    pub command_matches: Option<String>,
    /// Regular expression over any path a file tool touches.
    #[serde(default)]
    pub path_matches: Option<String>,
    /// Regular expression over the arguments as JSON.
    #[serde(default)]
    pub args_match: Option<String>,
    /// Regular expression over an `egress` event, written `METHOD host:port/path` (`CONNECT host:port` for
    /// a tunnel), e.g. `^CONNECT registry\.npmjs\.org:443`. Matches egress events only.
    #[serde(default)]
    pub egress_matches: Option<String>,
    /// Regular expression over each ref update of a `git_push`, written `owner/repo refs/heads/branch`.
    /// Matches git_push events only.
    #[serde(default)]
    pub push_matches: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SequenceParams {
    /// The event that arms the rule once it has been allowed.
    pub after: MatcherParams,
    /// The event that then needs approval (or is denied).
    pub before: MatcherParams,
    /// `ask` (default) or `deny`.
    #[serde(default = "super::ask")]
    pub action: Action,
    /// Shown to the approver or the agent.
    #[serde(default)]
    pub reason: Option<String>,
}

struct Matcher {
    tool: Option<String>,
    command: Option<Regex>,
    path: Option<Regex>,
    args: Option<Regex>,
    egress: Option<Regex>,
    push: Option<Regex>,
}

impl Matcher {
    fn new(p: MatcherParams, field: &str) -> Result<Matcher, String> {
        let on_tools =
            p.tool.is_some() || p.command_matches.is_some() || p.path_matches.is_some() || p.args_match.is_some();
        let kinds = [on_tools, p.egress_matches.is_some(), p.push_matches.is_some()].iter().filter(|k| **k).count();
        if kinds == 0 {
            return Err(format!(
                "`{field}` must set at least one of tool, command_matches, path_matches, args_match, egress_matches, \
                 push_matches"
            ));
        }
        if kinds > 1 {
            return Err(format!(
                "`{field}` matches one kind of event: tool calls (tool, command_matches, path_matches, args_match), \
                 egress (egress_matches) or git_push (push_matches)"
            ));
        }
        let re = |name: &str, s: Option<String>| {
            s.map(|s| Regex::new(&s).map_err(|e| format!("`{field}.{name}` is not a valid regular expression: {e}")))
                .transpose()
        };
        Ok(Matcher {
            tool: p.tool,
            command: re("command_matches", p.command_matches)?,
            path: re("path_matches", p.path_matches)?,
            args: re("args_match", p.args_match)?,
            egress: re("egress_matches", p.egress_matches)?,
            push: re("push_matches", p.push_matches)?,
        })
    }

    /// What in the event this step matches, shown in reasons: a tool's command or name, a request line, a
    /// pushed ref.
    fn matched(&self, event: &Event, tools: &[ToolUse]) -> Option<String> {
        if let Some(re) = &self.egress {
            if event.phase != Phase::Egress {
                return None;
            }
            let dest = crate::egress::host_port(event.host.as_deref()?, event.port?);
            let line = match (&event.method, &event.path) {
                (Some(m), path) => format!("{} {dest}{}", m.to_ascii_uppercase(), path.as_deref().unwrap_or("/")),
                (None, _) => format!("CONNECT {dest}"),
            };
            return re.is_match(&line).then_some(line);
        }
        if let Some(re) = &self.push {
            if event.phase != Phase::GitPush {
                return None;
            }
            let repo = event.repo.as_deref().unwrap_or_default();
            return event.updates.iter().map(|u| format!("{repo} {}", u.git_ref)).find(|l| re.is_match(l));
        }
        tools.iter().find(|t| self.matches(t)).map(|t| t.command().unwrap_or_else(|| t.name.clone()))
    }

    fn matches(&self, t: &ToolUse) -> bool {
        self.tool.as_ref().is_none_or(|p| t.matches(p)) && self.command.as_ref().is_none_or(|re| {
            // The raw line, and each command it runs with its wrappers and quoting removed, so that
            // `^git push` also finds `cd x && gi"t" push`.
            t.command().is_some_and(|c| re.is_match(&c))
                || matches!(t.shell_commands(), Some(Ok(cmds)) if cmds.iter().any(|c| re.is_match(&c.argv.join(" "))))
        }) && self.path.as_ref().is_none_or(|re| t.paths().iter().any(|p| re.is_match(p)))
            && self.args.as_ref().is_none_or(|re| re.is_match(&t.args.to_string()))
    }
}

pub const SEQUENCE: BuiltinDef = BuiltinDef {
    name: "sequence",
    summary: "after a matching event, ask or deny before another",
    phases: &[Phase::ToolCall, Phase::LlmResponse, Phase::Egress, Phase::GitPush],
    schema: schema_of::<SequenceParams>,
    build: |v| {
        build_with(v, |p: SequenceParams| {
            Ok(Sequence {
                after: Matcher::new(p.after, "after")?,
                before: Matcher::new(p.before, "before")?,
                action: p.action,
                reason: p.reason,
            })
        })
    },
};

struct Sequence {
    after: Matcher,
    before: Matcher,
    action: Action,
    reason: Option<String>,
}

impl Builtin for Sequence {
    fn evaluate(
        &self,
        ctx: &RuleCtx,
        event: &Event,
        tools: &[ToolUse],
        state: &SessionState,
    ) -> Result<Outcome, String> {
        let key = ctx.key("armed_by");
        if let Some(armed_by) = state.value(&key).and_then(|v| v.as_str())
            && let Some(what) = self.before.matched(event, tools)
        {
            let reason =
                self.reason.clone().unwrap_or_else(|| format!("`{what}` follows `{armed_by}` earlier in this session"));
            return Ok(Outcome::act(self.action, reason));
        }
        // Arm only on what really happens: a tool call, a connection, a push. A call the model merely
        // proposes may still be refused.
        if matches!(event.phase, Phase::ToolCall | Phase::Egress | Phase::GitPush)
            && let Some(what) = self.after.matched(event, tools)
        {
            return Ok(Outcome::allow().with(vec![StateUpdate::Set { key, value: what.into() }]));
        }
        Ok(Outcome::allow())
    }
}
