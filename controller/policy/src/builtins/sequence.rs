//! `sequence`: after a matching event, ask or deny before another. E.g. after the agent installs a new
//! npm package, a human looks before anything is pushed.

use regex::Regex;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, Builtin, BuiltinDef, Outcome, RuleCtx, TOOL_PHASES, build_with, schema_of};
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
}

impl Matcher {
    fn new(p: MatcherParams, field: &str) -> Result<Matcher, String> {
        if p.tool.is_none() && p.command_matches.is_none() && p.path_matches.is_none() && p.args_match.is_none() {
            return Err(format!("`{field}` must set at least one of tool, command_matches, path_matches, args_match"));
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
        })
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
    phases: TOOL_PHASES,
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
            && let Some(t) = tools.iter().find(|t| self.before.matches(t))
        {
            let reason = self
                .reason
                .clone()
                .unwrap_or_else(|| format!("`{}` follows `{armed_by}` earlier in this session", t.name));
            return Ok(Outcome::act(self.action, reason));
        }
        // Arm only on a real tool call: a call the model merely proposes may still be refused.
        if event.phase == paddock_api::Phase::ToolCall
            && let Some(t) = tools.iter().find(|t| self.after.matches(t))
        {
            let what = t.command().unwrap_or_else(|| t.name.clone());
            return Ok(Outcome::allow().with(vec![StateUpdate::Set { key, value: what.into() }]));
        }
        Ok(Outcome::allow())
    }
}
