//! The Approval reconciler: relays a human's decision on a pending ask to the gateway and records the
//! outcome. Approval is a kind of its own so that RBAC can grant "may approve" to the security team alone;
//! the chart's ValidatingAdmissionPolicy records the creating user in [`DECIDED_BY_ANNOTATION`] and keeps
//! the spec immutable, so one Approval is one decision.
//!
//! A decision is relayed only when the ask belongs to the Session the Approval names, in the Approval's own
//! namespace: RBAC on Approvals in one namespace never decides for another's sessions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use paddock_api::approval::Decision;
use paddock_api::status::{READY, STALLED};
use paddock_api::{API_VERSION, Approval, ApprovalStatus, Session};
use serde_json::json;
use tracing::warn;

use crate::conditions::{Want, find, merge, now};
use crate::gateway::GatewayError;
use crate::session::session_id;
use crate::{Context, Error, FIELD_MANAGER};

pub use paddock_api::approval::DECIDED_BY_ANNOTATION;

fn key(a: &Approval) -> String {
    format!("Approval/{}/{}", a.namespace().unwrap_or_default(), a.name_any())
}

/// Who decided: the annotation, else a name that says where the decision came from.
pub fn decided_by(a: &Approval) -> String {
    a.annotations()
        .get(DECIDED_BY_ANNOTATION)
        .filter(|v| !v.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| format!("approval:{}/{}", a.namespace().unwrap_or_default(), a.name_any()))
}

pub async fn reconcile(approval: Arc<Approval>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = relay(&approval, &ctx).await;
    let label = result.as_ref().map_or_else(|e| e.metric_label(), |_| "success");
    ctx.metrics.reconciled("approval", label, started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff.succeeded(&key(&approval));
    }
    result
}

pub fn error_policy(approval: Arc<Approval>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&key(&approval));
    warn!(approval = %key(&approval), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn relay(a: &Approval, ctx: &Context) -> Result<Action, Error> {
    let rt = ctx
        .sessions
        .as_deref()
        .ok_or_else(|| Error::Config("the Approval reconciler runs without a gateway".into()))?;
    let old = a.status.clone().unwrap_or_default();
    let generation = a.meta().generation;
    // A decision is final: once relayed, or refused for good, there is nothing more to do for this spec.
    let settled = find(&old.conditions, READY).is_some_and(|c| c.status == paddock_api::ConditionStatus::True)
        || find(&old.conditions, STALLED).is_some();
    if settled && old.observed_generation == generation {
        return Ok(Action::await_change());
    }
    let ns = a.namespace().unwrap_or_default();
    let request = &a.spec.request_id;
    let sessions: Api<Session> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(session) = sessions.get_opt(&a.spec.session_ref.name).await? else {
        let msg = format!("Session `{}` does not exist in namespace `{ns}`", a.spec.session_ref.name);
        return refuse(a, ctx, "SessionNotFound", &msg).await;
    };
    let sid = session_id(&session);
    let Some(info) = rt.gateway.session(&sid).await? else {
        let msg = format!("Session `{}` has not started at the gateway; nothing is waiting", session.name_any());
        return refuse(a, ctx, "SessionNotStarted", &msg).await;
    };
    if !info.pending_approvals.iter().any(|p| &p.id == request) {
        // Not pending for this session: decided already, timed out, or another session's ask.
        let all = rt.gateway.approvals("all").await?;
        let row = all.iter().find(|r| r["id"].as_str() == Some(request.as_str()));
        let (reason, msg) = match row {
            Some(r) if r["session"].as_str() == Some(sid.as_str()) => (
                "AlreadyDecided",
                format!(
                    "request `{request}` is no longer pending: it was {} by {}",
                    r["status"].as_str().unwrap_or("decided"),
                    r["decided_by"].as_str().unwrap_or("someone")
                ),
            ),
            Some(_) => (
                "RequestNotInSession",
                format!("request `{request}` is not an ask of Session `{}`", session.name_any()),
            ),
            None => (
                "RequestNotFound",
                format!("the gateway has no request `{request}`; see the Session's status.pendingApprovals"),
            ),
        };
        return refuse(a, ctx, reason, &msg).await;
    }
    let by = decided_by(a);
    let approve = a.spec.decision == Decision::Approve;
    let reason = a.spec.reason.clone().unwrap_or_default();
    match rt.gateway.decide(request, approve, &by, &reason).await {
        Ok(_) => {}
        Err(e @ GatewayError::Status { status: 404 | 409, .. }) => {
            return refuse(a, ctx, "AlreadyDecided", &e.to_string()).await;
        }
        Err(e) => return Err(e.into()),
    }
    ctx.metrics.approvals_relayed.inc();
    let verb = if approve { "approved" } else { "denied" };
    let msg = format!("{verb} request `{request}` of Session `{}` for {by}", session.name_any());
    publish(ctx, &a.object_ref(&()), a, EventType::Normal, "Relayed", msg.clone()).await;
    publish(
        ctx,
        &session.object_ref(&()),
        a,
        EventType::Normal,
        if approve { "Approved" } else { "Denied" },
        msg.clone(),
    )
    .await;
    let status = ApprovalStatus {
        conditions: merge(&old.conditions, vec![Want::ready("Relayed", msg)], generation),
        decided_by: Some(by),
        relayed_at: Some(now()),
        observed_generation: generation,
    };
    write(a, ctx, &old, status).await?;
    Ok(Action::await_change())
}

/// The decision cannot be relayed: `Ready=False` and `Stalled` when retrying will not change that, or
/// `Reconciling` while the Session may still appear or start (retried every 30 s).
async fn refuse(a: &Approval, ctx: &Context, reason: &str, msg: &str) -> Result<Action, Error> {
    let old = a.status.clone().unwrap_or_default();
    let retry = matches!(reason, "SessionNotStarted" | "SessionNotFound");
    let second = if retry { Want::reconciling(reason, msg) } else { Want::stalled(reason, msg) };
    let status = ApprovalStatus {
        conditions: merge(&old.conditions, vec![Want::not_ready(reason, msg), second], a.meta().generation),
        decided_by: Some(decided_by(a)),
        relayed_at: None,
        observed_generation: a.meta().generation,
    };
    if status != old {
        publish(ctx, &a.object_ref(&()), a, EventType::Warning, reason, msg.to_owned()).await;
    }
    write(a, ctx, &old, status).await?;
    Ok(if retry { Action::requeue(Duration::from_secs(30)) } else { Action::await_change() })
}

async fn write(a: &Approval, ctx: &Context, old: &ApprovalStatus, status: ApprovalStatus) -> Result<(), Error> {
    if &status == old {
        return Ok(());
    }
    let body = json!({"apiVersion": API_VERSION, "kind": "Approval", "status": status});
    let api: Api<Approval> = Api::namespaced(ctx.client.clone(), &a.namespace().unwrap_or_default());
    api.patch_status(&a.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(())
}

async fn publish(
    ctx: &Context,
    on: &k8s_openapi::api::core::v1::ObjectReference,
    a: &Approval,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let ev = Event { type_, reason: reason.into(), note: Some(note), action: "Relay".into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&ev, on).await {
        warn!(approval = %a.name_any(), error = %e, "could not record an Event");
    }
}
