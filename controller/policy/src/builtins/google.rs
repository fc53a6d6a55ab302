//! `gdrive`, `gmail` and `gcalendar`: Omnigent-compatible rules over Google Workspace MCP tools
//! (`mcp__google__*` or `google__*`). Tools of other servers are not theirs to judge and pass.
//! Operations are classified from the tool name; an unclassifiable tool of the family is denied.

use paddock_api::Phase;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{Action, Builtin, BuiltinDef, Outcome, RuleCtx, build_with, schema_of};

/// Calls (and the response gate) to decide; results to learn created ids and confidential reads from.
const GOOGLE_PHASES: &[Phase] = &[Phase::ToolCall, Phase::LlmResponse, Phase::ToolResult];
use crate::event::Event;
use crate::state::{SessionState, StateUpdate};
use crate::tools::ToolUse;

fn default_prefixes() -> Vec<String> {
    vec!["mcp__google__".into(), "google__".into()]
}

/// The operation name after the server prefix, if the tool belongs to the family: a family word anywhere
/// in it, so both `gmail_send_message` and verb-first `send_gmail_message` are recognised.
fn op<'a>(t: &'a ToolUse, prefixes: &[String], families: &[&str]) -> Option<&'a str> {
    let rest = prefixes.iter().find_map(|p| t.name.strip_prefix(p.as_str()))?;
    rest.split('_').any(|part| families.contains(&part)).then_some(rest)
}

const DRIVE: &[&str] = &[
    "drive",
    "docs",
    "doc",
    "document",
    "documents",
    "sheets",
    "sheet",
    "spreadsheet",
    "slides",
    "slide",
    "presentation",
    "file",
    "files",
    "folder",
];
const MAIL: &[&str] =
    &["gmail", "mail", "email", "emails", "message", "messages", "draft", "drafts", "thread", "threads"];
const CALENDAR: &[&str] = &["calendar", "calendars", "gcal", "event", "events", "freebusy"];

#[derive(Debug, PartialEq, Clone, Copy)]
enum Op {
    Read,
    Create,
    Comment,
    Write,
    Send,
    Modify,
}

/// Classifies by the verbs in the tool name; the most consequential verb wins, so `mark_as_read` is a
/// modification and `find_and_replace` a write. Comments come first: replying to a comment is commenting.
fn classify(op: &str) -> Option<Op> {
    let has = |w: &[&str]| w.iter().any(|x| op.split('_').any(|part| part == *x));
    if has(&["comment", "comments"]) {
        Some(Op::Comment)
    } else if has(&["send", "reply", "forward"]) {
        Some(Op::Send)
    } else if has(&["modify", "label", "labels", "trash", "untrash", "archive", "mark", "move", "star", "unstar"]) {
        Some(Op::Modify)
    } else if has(&[
        "update", "append", "delete", "write", "batch", "replace", "share", "patch", "edit", "rename", "remove",
        "clear", "set", "insert",
    ]) {
        Some(Op::Write)
    } else if has(&["create", "upload", "copy", "new", "add"]) {
        Some(Op::Create)
    } else if has(&[
        "get", "list", "search", "read", "export", "download", "find", "query", "freebusy", "view", "fetch",
    ]) {
        Some(Op::Read)
    } else {
        None
    }
}

/// The id a tool acts on.
fn target_id(args: &Value) -> Option<String> {
    [
        "file_id",
        "fileId",
        "document_id",
        "documentId",
        "spreadsheet_id",
        "spreadsheetId",
        "presentation_id",
        "presentationId",
        "draft_id",
        "draftId",
        "event_id",
        "eventId",
        "id",
    ]
    .iter()
    .find_map(|k| args.get(*k).and_then(Value::as_str).map(str::to_owned))
}

/// The id of what a create returned (the result may be JSON text).
fn created_id(output: &Value) -> Option<String> {
    match output {
        Value::String(s) => serde_json::from_str::<Value>(s).ok().and_then(|v| created_id(&v)),
        Value::Array(a) => a.iter().find_map(created_id),
        v => target_id(v)
            .or_else(|| v.get("text").and_then(created_id))
            .or_else(|| v.get("content").and_then(created_id)),
    }
}

fn list(state: &SessionState, key: &str) -> Vec<String> {
    state
        .value(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriveParams {
    /// Allow reading any file; otherwise only `read_files`.
    #[serde(default = "super::yes")]
    pub read_all: bool,
    #[serde(default)]
    pub read_files: Vec<String>,
    /// Allow creating files.
    #[serde(default)]
    pub allow_create: bool,
    /// Files that may be written besides those created in this session.
    #[serde(default)]
    pub write_files: Vec<String>,
    /// Files that may be commented on besides those created in this session.
    #[serde(default)]
    pub comment_files: Vec<String>,
    /// Once one of these has been read, writing anywhere else is denied (or asked): no write-down.
    #[serde(default)]
    pub confidential_files: Vec<String>,
    #[serde(default)]
    pub write_down_action: Action,
    #[serde(default = "default_prefixes")]
    pub tool_prefixes: Vec<String>,
    #[serde(default)]
    pub deny_reason: Option<String>,
}

pub const GDRIVE: BuiltinDef = BuiltinDef {
    name: "gdrive",
    summary: "Google Drive, Docs, Sheets and Slides: read, create, write and write-down rules",
    phases: GOOGLE_PHASES,
    schema: schema_of::<DriveParams>,
    build: |v| build_with(v, |p: DriveParams| Ok(Drive { p })),
};

struct Drive {
    p: DriveParams,
}

impl Drive {
    fn judge(&self, ctx: &RuleCtx, t: &ToolUse, state: &SessionState) -> Option<Outcome> {
        let name = op(t, &self.p.tool_prefixes, DRIVE)?;
        let deny = |why: String| Some(Outcome::deny(self.p.deny_reason.clone().unwrap_or(why)));
        let Some(kind) = classify(name) else { return deny(format!("`{}` is not a known Drive operation", t.name)) };
        let id = target_id(&t.args);
        let created = list(state, &ctx.key("created"));
        let in_set = |set: &[String]| id.as_ref().is_some_and(|i| set.contains(i) || created.contains(i));
        let tainted = state.value(&ctx.key("read_confidential")).and_then(Value::as_bool) == Some(true);
        match kind {
            Op::Read if !self.p.read_all && !in_set(&self.p.read_files) => {
                deny(format!("`{}` may only read the listed files", t.name))
            }
            Op::Read => None,
            Op::Create if !self.p.allow_create => deny("creating Drive files is not allowed".into()),
            Op::Comment if !in_set(&self.p.comment_files) => {
                deny(format!("`{}` may only comment on listed or session-created files", t.name))
            }
            Op::Write | Op::Modify | Op::Send if !in_set(&self.p.write_files) => {
                deny(format!("`{}` may only write listed or session-created files", t.name))
            }
            _ if tainted && !id.as_ref().is_some_and(|i| self.p.confidential_files.contains(i)) => Some(Outcome::act(
                self.p.write_down_action,
                format!(
                    "the session has read a confidential file; `{}` would write outside the confidential set",
                    t.name
                ),
            )),
            _ => None,
        }
    }
}

impl Builtin for Drive {
    fn evaluate(
        &self,
        ctx: &RuleCtx,
        event: &Event,
        tools: &[ToolUse],
        state: &SessionState,
    ) -> Result<Outcome, String> {
        if event.phase == Phase::ToolResult {
            let Some(t) = tools.first() else { return Ok(Outcome::allow()) };
            let Some(kind) = op(t, &self.p.tool_prefixes, DRIVE).and_then(classify) else {
                return Ok(Outcome::allow());
            };
            let mut updates = Vec::new();
            if kind == Op::Create
                && let Some(new) = event.output.as_ref().and_then(created_id)
            {
                updates.push(StateUpdate::Push { key: ctx.key("created"), value: new.into(), keep: 1000 });
            }
            if kind == Op::Read && target_id(&t.args).is_some_and(|i| self.p.confidential_files.contains(&i)) {
                updates.push(StateUpdate::Set { key: ctx.key("read_confidential"), value: true.into() });
            }
            return Ok(Outcome::allow().with(updates));
        }
        Ok(tools.iter().find_map(|t| self.judge(ctx, t, state)).unwrap_or_else(Outcome::allow))
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MailParams {
    #[serde(default = "super::yes")]
    pub allow_read: bool,
    #[serde(default)]
    pub allow_send: bool,
    /// Creating drafts; editing and deleting only drafts created in this session.
    #[serde(default = "super::yes")]
    pub allow_drafts: bool,
    /// Labels, archive, trash, delete.
    #[serde(default)]
    pub allow_modify: bool,
    #[serde(default = "default_prefixes")]
    pub tool_prefixes: Vec<String>,
    #[serde(default)]
    pub deny_reason: Option<String>,
}

pub const GMAIL: BuiltinDef = BuiltinDef {
    name: "gmail",
    summary: "Gmail: read and draft by default; no send, no modify",
    phases: GOOGLE_PHASES,
    schema: schema_of::<MailParams>,
    build: |v| build_with(v, |p: MailParams| Ok(Mail { p })),
};

struct Mail {
    p: MailParams,
}

impl Mail {
    fn judge(&self, ctx: &RuleCtx, t: &ToolUse, state: &SessionState) -> Option<Outcome> {
        let name = op(t, &self.p.tool_prefixes, MAIL)?;
        let deny = |why: &str| Some(Outcome::deny(self.p.deny_reason.clone().unwrap_or_else(|| why.to_owned())));
        let Some(kind) = classify(name) else { return deny(&format!("`{}` is not a known Gmail operation", t.name)) };
        let draft = name.split('_').any(|p| p == "draft" || p == "drafts");
        let own_draft = target_id(&t.args).is_some_and(|i| list(state, &ctx.key("drafts")).contains(&i));
        match (kind, draft) {
            (Op::Read, _) if !self.p.allow_read => deny("reading mail is not allowed"),
            (Op::Read, _) => None,
            (Op::Send, _) if !self.p.allow_send => deny("sending mail is not allowed"),
            (Op::Send, _) => None,
            (Op::Create, true) if !self.p.allow_drafts => deny("drafting mail is not allowed"),
            (Op::Create, true) => None,
            (Op::Write | Op::Modify, true) if !self.p.allow_drafts || !own_draft => {
                deny("only drafts created in this session may be changed")
            }
            (Op::Write | Op::Modify, true) => None,
            _ if !self.p.allow_modify => deny("modifying mail is not allowed"),
            _ => None,
        }
    }
}

impl Builtin for Mail {
    fn evaluate(
        &self,
        ctx: &RuleCtx,
        event: &Event,
        tools: &[ToolUse],
        state: &SessionState,
    ) -> Result<Outcome, String> {
        if event.phase == Phase::ToolResult {
            let Some(t) = tools.first() else { return Ok(Outcome::allow()) };
            let Some(name) = op(t, &self.p.tool_prefixes, MAIL) else { return Ok(Outcome::allow()) };
            let created_draft = classify(name) == Some(Op::Create) && name.split('_').any(|p| p == "draft");
            if created_draft && let Some(new) = event.output.as_ref().and_then(created_id) {
                return Ok(Outcome::allow().with(vec![StateUpdate::Push {
                    key: ctx.key("drafts"),
                    value: new.into(),
                    keep: 1000,
                }]));
            }
            return Ok(Outcome::allow());
        }
        Ok(tools.iter().find_map(|t| self.judge(ctx, t, state)).unwrap_or_else(Outcome::allow))
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarParams {
    #[serde(default = "super::yes")]
    pub allow_read: bool,
    #[serde(default)]
    pub allow_create_events: bool,
    #[serde(default)]
    pub allow_modify_events: bool,
    #[serde(default = "default_prefixes")]
    pub tool_prefixes: Vec<String>,
    #[serde(default)]
    pub deny_reason: Option<String>,
}

pub const GCALENDAR: BuiltinDef = BuiltinDef {
    name: "gcalendar",
    summary: "Google Calendar: read-only by default",
    phases: &[Phase::ToolCall, Phase::LlmResponse],
    schema: schema_of::<CalendarParams>,
    build: |v| build_with(v, |p: CalendarParams| Ok(Calendar { p })),
};

struct Calendar {
    p: CalendarParams,
}

impl Builtin for Calendar {
    fn evaluate(&self, _: &RuleCtx, _: &Event, tools: &[ToolUse], _: &SessionState) -> Result<Outcome, String> {
        for t in tools {
            let Some(name) = op(t, &self.p.tool_prefixes, CALENDAR) else { continue };
            let deny = |why: String| Outcome::deny(self.p.deny_reason.clone().unwrap_or(why));
            let verdict = match classify(name) {
                None => deny(format!("`{}` is not a known Calendar operation", t.name)),
                Some(Op::Read) if !self.p.allow_read => deny("reading calendars is not allowed".into()),
                Some(Op::Create) if !self.p.allow_create_events => deny("creating events is not allowed".into()),
                Some(Op::Write | Op::Modify | Op::Comment | Op::Send) if !self.p.allow_modify_events => {
                    deny("changing events is not allowed".into())
                }
                _ => continue,
            };
            return Ok(verdict);
        }
        Ok(Outcome::allow())
    }
}
