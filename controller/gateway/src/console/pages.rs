//! The console's pages: sessions, one session, approvals, the audit log, Policies and Agents.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::view::{self, html_response, page, usd, verdict_class};
use super::{Access, Console, Viewer};
use crate::gateway::Session;
use crate::store::{ApprovalRow, AuditRow, ShareKey};

/// Rows the audit page shows at most (newest first); the export has them all.
const AUDIT_PAGE_ROWS: usize = 500;
/// Sessions the sessions page shows at most (newest first that match).
const SESSION_PAGE_ROWS: usize = 200;
/// Decisions a session's page shows at most (newest first); the audit page has them all.
const SESSION_DECISIONS: usize = 200;
/// Decided asks the approvals page shows (newest first).
const DECIDED_SHOWN: usize = 200;

fn unavailable(e: impl std::fmt::Display) -> Response {
    view::error_page(StatusCode::SERVICE_UNAVAILABLE, &format!("The gateway cannot read its database: {e}"))
}

/// A session as the API shows it (`GET /v1/sessions/{id}`), with the approvals it has pending.
async fn summary_of(console: &Console, s: &Session, pending: &[ApprovalRow]) -> Result<SessionSummary, Response> {
    let v = crate::api::session_json(&console.gw, s).await.map_err(unavailable)?;
    Ok(SessionSummary { v, pending: pending.iter().filter(|a| a.session == s.id).count() })
}

struct SessionSummary {
    v: Value,
    pending: usize,
}

impl SessionSummary {
    fn text(&self, key: &str) -> String {
        match &self.v[key] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
    fn cost(&self) -> f64 {
        self.v["usage"]["costUsd"].as_f64().unwrap_or(0.0)
    }
}

#[derive(Deserialize, Default)]
pub struct SessionsQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    phase: Option<String>,
    /// `rows`: only the table's rows, for the page's live refresh.
    #[serde(default)]
    fragment: Option<String>,
}

/// `GET /ui/sessions`: every session, newest first, with a text filter (id, agent, owner) and a phase filter.
pub async fn sessions(State(console): State<Arc<Console>>, viewer: Viewer, Query(q): Query<SessionsQuery>) -> Response {
    let gw = &console.gw;
    let all = match gw.all_sessions().await {
        Ok(a) => a,
        Err(e) => return unavailable(e),
    };
    let pending = match gw.store.approvals(Some("pending")).await {
        Ok(p) => p,
        Err(e) => return unavailable(e),
    };
    let needle = q.q.as_deref().unwrap_or("").trim().to_lowercase();
    let phase = q.phase.as_deref().unwrap_or("");
    let visible = Visible::new(&console, &viewer);
    let mut rows = Vec::new();
    let mut matching = 0usize;
    for s in all.iter().rev() {
        if !needle.is_empty()
            && ![&s.id, &s.agent, &s.owner, &s.namespace].iter().any(|f| f.to_lowercase().contains(&needle))
        {
            continue;
        }
        // The phase is known without reading the session's state: filter before the costlier summary.
        let session_phase = s.ended().map_or_else(|| "Running".to_owned(), |(p, _)| p);
        if !phase.is_empty() && session_phase != phase {
            continue;
        }
        if !visible.may(&s.namespace).await {
            continue;
        }
        matching += 1;
        if rows.len() < SESSION_PAGE_ROWS {
            let sum = match summary_of(&console, s, &pending).await {
                Ok(v) => v,
                Err(r) => return r,
            };
            rows.push((s.clone(), sum));
        }
    }
    let tbody = html! {
        @for (s, sum) in &rows {
            tr data-session=(s.id) {
                td { a href={"/ui/sessions/" (s.id)} { (s.id) } }
                td { (s.namespace) "/" (s.agent) }
                td { (s.owner) }
                td { span class={"phase " (sum.text("phase"))} { (sum.text("phase")) } }
                td { (sum.text("model")) }
                td.num { (usd(sum.cost())) }
                td.num { (sum.text("riskScore")) }
                td.num { @if sum.pending > 0 { a.badge.ask href="/ui/approvals" { (sum.pending) " pending" } } @else { "0" } }
                td { time { (s.created_at) } }
            }
        }
        @if rows.is_empty() { tr { td colspan="9" { "No sessions match." } } }
    };
    if q.fragment.as_deref() == Some("rows") {
        return html_response(StatusCode::OK, tbody);
    }
    let body = html! {
        form.filters method="get" action="/ui/sessions" role="search" {
            label for="q" { "Search" }
            input #q type="search" name="q" value=(q.q.as_deref().unwrap_or("")) placeholder="id, agent, owner";
            label for="phase" { "Phase" }
            select #phase name="phase" {
                @for p in ["", "Running", "Succeeded", "Failed"] {
                    option value=(p) selected[p == phase] { @if p.is_empty() { "any" } @else { (p) } }
                }
            }
            button type="submit" { "Filter" }
        }
        table #sessions {
            caption { (matching) " sessions" @if matching > rows.len() { ", the newest " (rows.len()) " shown" } }
            thead { tr { th { "Session" } th { "Agent" } th { "Owner" } th { "Phase" } th { "Model" } th { "Cost" } th { "Risk" } th { "Approvals" } th { "Started" } } }
            tbody data-refresh="rows" { (tbody) }
        }
    };
    html_response(StatusCode::OK, page("Sessions", Some(&viewer), body))
}

/// Which namespaces a viewer may see, asked once per namespace for one page.
pub(super) struct Visible<'a> {
    console: &'a Console,
    viewer: &'a Viewer,
    known: tokio::sync::Mutex<std::collections::HashMap<String, bool>>,
}

impl<'a> Visible<'a> {
    pub(super) fn new(console: &'a Console, viewer: &'a Viewer) -> Visible<'a> {
        Visible { console, viewer, known: Default::default() }
    }

    pub(super) async fn may(&self, namespace: &str) -> bool {
        if let Some(v) = self.known.lock().await.get(namespace) {
            return *v;
        }
        let v = self.console.may(self.viewer, Access::View, namespace).await;
        self.known.lock().await.insert(namespace.to_owned(), v);
        v
    }
}

/// The session if the viewer may see it; else (or when there is none) a 404 page that does not say which.
pub(super) async fn visible_session(console: &Console, viewer: &Viewer, id: &str) -> Result<Arc<Session>, Response> {
    let missing = || view::error_page(StatusCode::NOT_FOUND, &format!("There is no session `{id}` you may see."));
    let s = console.gw.find_session(id).await.ok_or_else(missing)?;
    if !console.may(viewer, Access::View, &s.namespace).await {
        return Err(missing());
    }
    Ok(s)
}

/// The block at the top of a session's page (refreshed live): phase, agent, model, revision, cost, risk.
pub(super) async fn summary_block(console: &Console, s: &Session) -> Result<Markup, Response> {
    let pending = console.gw.store.approvals(Some("pending")).await.map_err(unavailable)?;
    let sum = summary_of(console, s, &pending).await?;
    let revision = console
        .gw
        .store
        .last_revision(&s.id)
        .await
        .map_err(unavailable)?
        .unwrap_or_else(|| console.gw.policies().revision.clone());
    let u = &sum.v["usage"];
    Ok(html! {
        dl.summary {
            dt { "Phase" } dd { span class={"phase " (sum.text("phase"))} #phase-value { (sum.text("phase")) } }
            @if !sum.text("reason").is_empty() { dt { "Reason" } dd { (sum.text("reason")) } }
            dt { "Agent" } dd { (s.namespace) "/" (s.agent) }
            dt { "Owner" } dd { (s.owner) }
            dt { "Model" } dd { (sum.text("model")) }
            dt { "Revision" } dd { code { (revision) } }
            dt { "Cost" } dd #cost-value { (usd(sum.cost())) }
            dt { "Tokens" } dd { (u["inputTokens"]) " in, " (u["outputTokens"]) " out" }
            dt { "Tool calls" } dd { (sum.text("toolCalls")) }
            dt { "Risk" } dd { (sum.text("riskScore")) }
            dt { "Pending approvals" } dd { (sum.pending) }
            @if let Some(p) = &s.parent { dt { "Parent" } dd { a href={"/ui/sessions/" (p)} { (p) } } }
        }
    })
}

/// `GET /ui/sessions/{id}/summary`: [`summary_block`] alone.
pub async fn session_summary(State(console): State<Arc<Console>>, viewer: Viewer, Path(id): Path<String>) -> Response {
    let s = match visible_session(&console, &viewer, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match summary_block(&console, &s).await {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(r) => r,
    }
}

/// Audit rows as a table, newest first, at most `shown`; `with_session`: with each row's session and agent.
fn audit_table(id: Option<&str>, rows: &[AuditRow], shown: usize, with_session: bool) -> Markup {
    html! {
        table id=[id] {
            caption { (rows.len()) " decisions" @if rows.len() > shown { ", the newest " (shown) " shown" } }
            thead {
                tr {
                    th { "When" }
                    @if with_session { th { "Session" } th { "Agent" } }
                    th { "Phase" } th { "Tool" } th { "Verdict" } th { "Policy / rule" } th { "Reason" } th { "By" }
                }
            }
            tbody {
                @for r in rows.iter().rev().take(shown) {
                    tr {
                        td { time { (r.ts) } }
                        @if with_session {
                            td { a href={"/ui/sessions/" (r.session)} { (r.session) } }
                            td { (r.agent) }
                        }
                        td { (r.phase) }
                        td { (r.tool.as_deref().unwrap_or("")) }
                        td { span class={"badge " (verdict_class(&r.verdict))} { (r.verdict) } }
                        td { (r.policy.as_deref().unwrap_or("")) @if let Some(rule) = &r.rule { " / " (rule) } }
                        td { (r.reason) }
                        td { (r.decided_by.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

/// The session's decisions from the audit log, newest first (at most [`SESSION_DECISIONS`]).
pub(super) async fn decisions_table(console: &Console, s: &Session) -> Result<Markup, Response> {
    let rows = console.gw.store.audit(Some(&s.id)).await.map_err(unavailable)?;
    Ok(audit_table(None, &rows, SESSION_DECISIONS, false))
}

/// `GET /ui/sessions/{id}/decisions`: [`decisions_table`] alone.
pub async fn session_decisions(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let s = match visible_session(&console, &viewer, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match decisions_table(&console, &s).await {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(r) => r,
    }
}

/// The live transcript and the comment form: filled by `console.js` from `events` (server-sent events).
/// `comments`: where comments are posted (none on a shared view).
pub(super) fn transcript(events: &str, comments: Option<&str>) -> Markup {
    html! {
        section aria-labelledby="transcript-title" {
            h2 #transcript-title { "Transcript" }
            ol #transcript data-events=(events) aria-live="polite" {}
            @if let Some(url) = comments {
                form #comment-form data-comments=(url) {
                    label for="comment-text" { "Comment" span #comment-on {} }
                    input #comment-seq type="hidden" name="on" value="";
                    textarea #comment-text name="text" rows="2" maxlength="4000" required {}
                    button #comment-send type="submit" { "Post comment" }
                    p #comment-error.error role="alert" {}
                }
            }
        }
    }
}

/// An approve/deny form for one pending ask, for those who may decide (`may_decide`).
pub(super) fn decide_form(viewer: &Viewer, a: &ApprovalRow, back: &str, may_decide: bool) -> Markup {
    html! {
        @if may_decide {
            form.decide method="post" action={"/ui/approvals/" (a.id) "/decide"} {
                input type="hidden" name="csrf" value=(viewer.csrf);
                input type="hidden" name="back" value=(back);
                label for={"reason-" (a.id)} { "Reason" }
                input id={"reason-" (a.id)} type="text" name="reason" maxlength="2000";
                label for={"comment-" (a.id)} { "Comment on the transcript" }
                input id={"comment-" (a.id)} type="text" name="comment" maxlength="4000";
                button.approve type="submit" name="decision" value="approve" { "Approve" }
                button.deny type="submit" name="decision" value="deny" { "Deny" }
            }
        } @else {
            p.hint { "Only an approver can decide." }
        }
    }
}

/// `GET /ui/sessions/{id}`: the session, its pending asks, its children, its share links, its transcript.
pub async fn session(State(console): State<Arc<Console>>, viewer: Viewer, Path(id): Path<String>) -> Response {
    match session_page(&console, &viewer, &id, None).await {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(r) => r,
    }
}

/// The session's page; `notice` is shown at the top (a share link just made).
pub(super) async fn session_page(
    console: &Console,
    viewer: &Viewer,
    id: &str,
    notice: Option<Markup>,
) -> Result<Markup, Response> {
    let s = visible_session(console, viewer, id).await?;
    let may_decide = console.may(viewer, Access::Decide, &s.namespace).await;
    let gw = &console.gw;
    let summary = summary_block(console, &s).await?;
    // A team's asks in one inbox: this session's and its sub-agents'.
    let tree = gw.tree_of(id).await.map_err(unavailable)?;
    let pending: Vec<ApprovalRow> = gw
        .store
        .approvals(Some("pending"))
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter(|a| tree.contains(&a.session))
        .collect();
    let children: Vec<Arc<Session>> =
        gw.all_sessions().await.map_err(unavailable)?.into_iter().filter(|c| c.parent.as_deref() == Some(id)).collect();
    let shares = gw.store.shares_where(ShareKey::Session, id).await.map_err(unavailable)?;
    let now = crate::gateway::unix_now();
    let back = format!("/ui/sessions/{id}");
    let body = html! {
        @if let Some(n) = notice { (n) }
        div #summary data-refresh-url={"/ui/sessions/" (id) "/summary"} { (summary) }
        @if !pending.is_empty() {
            section aria-labelledby="pending-title" {
                h2 #pending-title { "Waiting for approval" }
                @for a in &pending {
                    div.ask data-approval=(a.id) {
                        p { strong { (a.phase) } ": " (a.summary) }
                        @if a.session != id {
                            p.hint { "asked by sub-agent session " a href={"/ui/sessions/" (a.session)} { (a.session) } }
                        }
                        p.hint { (a.reason) @if let Some(p) = &a.policy { " (policy " (p) ")" } }
                        (decide_form(viewer, a, &back, may_decide))
                    }
                }
            }
        }
        @if !children.is_empty() {
            section aria-labelledby="children-title" {
                h2 #children-title { "Sub-agents" }
                ul { @for c in &children { li { a href={"/ui/sessions/" (c.id)} { (c.id) } " — " (c.agent) } } }
            }
        }
        section aria-labelledby="share-title" {
            h2 #share-title { "Share" }
            form #share-form.inline method="post" action={"/ui/sessions/" (id) "/shares"} {
                input type="hidden" name="csrf" value=(viewer.csrf);
                label for="share-hours" { "Read-only link for" }
                select #share-hours name="hours" {
                    option value="1" { "1 hour" }
                    option value="24" selected { "24 hours" }
                    option value="168" { "7 days" }
                }
                button #share-create type="submit" { "Make link" }
            }
            @if !shares.is_empty() {
                ul #shares {
                    @for sh in &shares {
                        li data-share=(sh.id) {
                            (sh.id) " by " (sh.created_by) " — "
                            @if let Some(by) = &sh.revoked_by { span.badge.deny { "revoked by " (by) } }
                            @else if sh.expires_at <= now { span.badge.deny { "expired" } }
                            @else {
                                span.badge.allow { "live" } " "
                                form.inline method="post" action={"/ui/shares/" (sh.id) "/revoke"} {
                                    input type="hidden" name="csrf" value=(viewer.csrf);
                                    button.revoke type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="decisions-title" {
            h2 #decisions-title { "Decisions" }
            p.hint { "Every decision this session got, newest first: each tool call's verdict and the policy and rule that gave it." }
            div #decisions data-refresh-url={"/ui/sessions/" (id) "/decisions"} { (decisions_table(console, &s).await?) }
        }
        (transcript(&format!("/ui/sessions/{id}/events"), Some(&format!("/ui/sessions/{id}/comments"))))
    };
    Ok(view::page_at(&format!("Session {id}"), Some(viewer), Some(&back), body))
}

/// `GET /ui/approvals`: pending asks across sessions, then the latest decisions and who made them.
pub async fn approvals(State(console): State<Arc<Console>>, viewer: Viewer) -> Response {
    let all = match console.gw.store.approvals(None).await {
        Ok(a) => a,
        Err(e) => return unavailable(e),
    };
    // Only the asks of sessions the viewer may see, each with whether they may decide it.
    let visible = Visible::new(&console, &viewer);
    let (mut pending_rows, mut decided_rows): (Vec<_>, Vec<_>) = all.into_iter().partition(|a| a.status == "pending");
    // The latest decisions first; only as many as are shown are looked at.
    decided_rows.sort_by(|a, b| b.decided_at.cmp(&a.decided_at));
    let mut namespaces: std::collections::HashMap<String, Option<String>> = std::collections::HashMap::new();
    let mut pending = Vec::new();
    let mut decided = Vec::new();
    for a in pending_rows.drain(..).chain(decided_rows.drain(..)) {
        if a.status != "pending" && decided.len() >= DECIDED_SHOWN {
            break;
        }
        if !namespaces.contains_key(&a.session) {
            let ns = console.gw.find_session(&a.session).await.map(|s| s.namespace.clone());
            namespaces.insert(a.session.clone(), ns);
        }
        let Some(Some(ns)) = namespaces.get(&a.session) else { continue };
        if !visible.may(ns).await {
            continue;
        }
        if a.status == "pending" {
            let decide = console.may(&viewer, Access::Decide, ns).await;
            pending.push((a, decide));
        } else {
            decided.push((a, false));
        }
    }
    let body = html! {
        section aria-labelledby="pending-title" {
            h2 #pending-title { "Pending (" (pending.len()) ")" }
            @if pending.is_empty() { p { "Nothing is waiting for a decision." } }
            @for (a, may_decide) in &pending {
                div.ask data-approval=(a.id) {
                    p { a href={"/ui/sessions/" (a.session)} { (a.session) } " · " strong { (a.phase) } ": " (a.summary) }
                    p.hint { (a.reason) @if let Some(p) = &a.policy { " (policy " (p) ")" } " · asked " (a.created_at) }
                    (decide_form(&viewer, a, "/ui/approvals", *may_decide))
                }
            }
        }
        section aria-labelledby="decided-title" {
            h2 #decided-title { "Decided" }
            table {
                thead { tr { th { "When" } th { "Session" } th { "Ask" } th { "Decision" } th { "By" } th { "Reason" } } }
                tbody {
                    @for (a, _) in &decided {
                        tr {
                            td { (a.decided_at.as_deref().unwrap_or("")) }
                            td { a href={"/ui/sessions/" (a.session)} { (a.session) } }
                            td { (a.phase) ": " (a.summary) }
                            td { span class={"badge " (verdict_class(&a.status))} { (a.status) } }
                            td { (a.decided_by.as_deref().unwrap_or("")) }
                            td { (a.decision_reason.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page("Approvals", Some(&viewer), body))
}

#[derive(Deserialize, Default, Clone)]
pub struct AuditQuery {
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    verdict: Option<String>,
    #[serde(default)]
    phase: Option<String>,
    /// RFC 3339 times (or any prefix of one: `2026-12-04`), inclusive.
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
}

impl AuditQuery {
    fn keeps(&self, r: &AuditRow) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w.is_empty() || w == have);
        is(&self.session, &r.session)
            && is(&self.agent, &r.agent)
            && is(&self.policy, r.policy.as_deref().unwrap_or(""))
            && is(&self.verdict, &r.verdict)
            && is(&self.phase, &r.phase)
            && self.since.as_deref().is_none_or(|s| s.is_empty() || r.ts.as_str() >= s)
            // `until` is a prefix too: 2026-12-04 takes the whole day.
            && self.until.as_deref().is_none_or(|u| u.is_empty() || r.ts.as_str() <= u || r.ts.starts_with(u))
    }

    fn as_query(&self) -> String {
        let pairs = [
            ("session", &self.session),
            ("agent", &self.agent),
            ("policy", &self.policy),
            ("verdict", &self.verdict),
            ("phase", &self.phase),
            ("since", &self.since),
            ("until", &self.until),
        ];
        pairs
            .iter()
            .filter_map(|(k, v)| {
                v.as_deref().filter(|v| !v.is_empty()).map(|v| format!("{k}={}", view::query_escape(v)))
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// The audit rows the filter keeps, of sessions the viewer may see.
async fn audit_rows(console: &Console, viewer: &Viewer, q: &AuditQuery) -> Result<Vec<AuditRow>, Response> {
    let session = q.session.as_deref().filter(|s| !s.is_empty());
    let rows = console.gw.store.audit(session).await.map_err(unavailable)?;
    let namespaces: std::collections::HashMap<String, String> = console
        .gw
        .all_sessions()
        .await
        .map_err(unavailable)?
        .iter()
        .map(|s| (s.id.clone(), s.namespace.clone()))
        .collect();
    let visible = Visible::new(console, viewer);
    let mut out = Vec::new();
    for r in rows.into_iter().filter(|r| q.keeps(r)) {
        if let Some(ns) = namespaces.get(&r.session)
            && visible.may(ns).await
        {
            out.push(r);
        }
    }
    Ok(out)
}

/// `GET /ui/audit`: every decision, filtered, newest first.
pub async fn audit(State(console): State<Arc<Console>>, viewer: Viewer, Query(q): Query<AuditQuery>) -> Response {
    let rows = match audit_rows(&console, &viewer, &q).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let field = |name: &'static str, label: &'static str, v: &Option<String>| {
        html! {
            label for={"f-" (name)} { (label) }
            input id={"f-" (name)} type="text" name=(name) value=(v.as_deref().unwrap_or(""));
        }
    };
    let body = html! {
        form.filters method="get" action="/ui/audit" role="search" {
            (field("session", "Session", &q.session))
            (field("agent", "Agent", &q.agent))
            (field("policy", "Policy", &q.policy))
            (field("verdict", "Verdict", &q.verdict))
            (field("phase", "Phase", &q.phase))
            (field("since", "Since", &q.since))
            (field("until", "Until", &q.until))
            button type="submit" { "Filter" }
            a #export href={"/ui/audit.jsonl?" (q.as_query())} download="audit.jsonl" { "Export JSONL" }
        }
        (audit_table(Some("audit"), &rows, AUDIT_PAGE_ROWS, true))
    };
    html_response(StatusCode::OK, page("Audit", Some(&viewer), body))
}

/// `GET /ui/audit.jsonl`: the filtered audit log, oldest first, one JSON object per line.
pub async fn audit_export(
    State(console): State<Arc<Console>>,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
) -> Response {
    let rows = match audit_rows(&console, &viewer, &q).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"audit.jsonl\""),
        ],
        crate::api::jsonl(&rows),
    )
        .into_response()
}

/// `GET /ui/policies`: the revision enforced, each Agent with the Policies that govern it, and how often
/// each Policy decided.
pub async fn policies(State(console): State<Arc<Console>>, viewer: Viewer) -> Response {
    let set = console.gw.policies();
    let counts = match console.gw.store.policy_decisions().await {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let count = |ns: &str, policy: &str, verdict: &str| {
        counts.iter().filter(|(n, p, v, _)| n == ns && p == policy && v == verdict).map(|(_, _, _, c)| *c).sum::<i64>()
    };
    let visible = Visible::new(&console, &viewer);
    let mut agents = Vec::new();
    for a in set.agents() {
        if visible.may(&a.namespace).await {
            agents.push(a);
        }
    }
    agents.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let body = html! {
        p { "Revision " code #revision { (set.revision) } }
        table #policies {
            thead { tr { th { "Agent" } th { "Harness / model" } th { "Policies, in order" } th { "Decisions (allow / deny / ask)" } } }
            tbody {
                @for a in &agents {
                    tr {
                        td { (a.namespace) "/" (a.name) }
                        td { (format!("{:?}", a.spec.harness).to_lowercase()) " · " (a.spec.model) }
                        td { ul { @for p in a.policy_names() { li { (p) } } } }
                        td { ul { @for p in a.policy_names() {
                            li { (p) ": " (count(&a.namespace, p, "allow")) " / " (count(&a.namespace, p, "deny")) " / " (count(&a.namespace, p, "ask")) }
                        } } }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, page("Policies and Agents", Some(&viewer), body))
}
