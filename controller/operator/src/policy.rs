//! The Policy reconciler: checks every rule's parameters with the policy engine's compiler and reports
//! `Ready`, the rule count and the revision the Policy came from. Decision counts are the gateway's: the
//! reconciler leaves them alone (server-side apply of only the fields it owns), and [`report_decisions`]
//! copies them from the gateway under a field manager of their own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use paddock_api::policy::{DecisionCounts, PolicyEnforcement};
use paddock_api::{API_VERSION, Condition, Policy};
use paddock_gitops::plan::REVISION_ANNOTATION;
use paddock_policy::engine::Level;
use serde_json::json;
use tracing::warn;

use crate::conditions::{Want, merge};
use crate::{Context, Error, FIELD_MANAGER};

/// The conditions of a Policy: Ready, or not Ready and Stalled with the validator's messages.
pub fn conditions(policy: &Policy) -> Vec<Want> {
    match paddock_policy::compile_policy(&policy.name_any(), Level::Namespace, &policy.spec) {
        Ok(_) => vec![Want::ready("Compiled", format!("{} rules compiled", policy.spec.rules.len()))],
        Err(errors) => {
            let message = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            vec![Want::not_ready("InvalidRules", message.clone()), Want::stalled("InvalidRules", message)]
        }
    }
}

pub async fn reconcile(policy: Arc<Policy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = apply(&policy, &ctx).await;
    let label = result.as_ref().map_or_else(|e| e.metric_label(), |_| "success");
    ctx.metrics.reconciled("policy", label, started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff.succeeded(&key(&policy));
    }
    result
}

fn key(p: &Policy) -> String {
    format!("Policy/{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

async fn apply(policy: &Policy, ctx: &Context) -> Result<Action, Error> {
    let old = policy.status.clone().unwrap_or_default();
    let generation = policy.meta().generation;
    let conditions: Vec<Condition> = merge(&old.conditions, conditions(policy), generation);
    let rule_count = policy.spec.rules.len() as u32;
    let revision = policy.annotations().get(REVISION_ANNOTATION).cloned();
    if old.conditions == conditions
        && old.rule_count == rule_count
        && old.source_revision == revision
        && old.observed_generation == generation
    {
        return Ok(Action::await_change());
    }
    let body = json!({
        "apiVersion": API_VERSION,
        "kind": "Policy",
        "status": {
            "conditions": conditions,
            "ruleCount": rule_count,
            "sourceRevision": revision,
            "observedGeneration": generation,
        }
    });
    let api: Api<Policy> = Api::namespaced(ctx.client.clone(), &policy.namespace().unwrap_or_default());
    api.patch_status(&policy.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(Action::await_change())
}

pub fn error_policy(policy: Arc<Policy>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&key(&policy));
    warn!(policy = %policy.name_any(), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The field manager of `status.decisions`. Not the reconciler's ([`FIELD_MANAGER`]): a server-side apply
/// removes the fields its manager applied before and left out this time, so one manager for both would have
/// each write drop the other's fields.
pub const DECISIONS_MANAGER: &str = "paddock-decisions";

/// Writes `status.decisions` of each of `policies` whose counts differ from the gateway's (`counts`, keyed
/// `<namespace>/<name>`; a Policy the gateway has none for decided nothing and shows zeros), and
/// `status.enforcement` (which gateway replicas enforce the last push) when given and changed. Returns how
/// many were written; a Policy that cannot be written is logged and left for the next round.
pub async fn write_decisions(
    client: &Client,
    policies: &[Arc<Policy>],
    counts: &BTreeMap<String, DecisionCounts>,
    enforcement: Option<&PolicyEnforcement>,
) -> usize {
    let mut written = 0;
    for p in policies {
        let ns = p.namespace().unwrap_or_default();
        let want = counts.get(&format!("{ns}/{}", p.name_any())).cloned().unwrap_or_default();
        let shown = p.status.as_ref().map(|s| s.decisions.clone()).unwrap_or_default();
        let shown_enforcement = p.status.as_ref().and_then(|s| s.enforcement.as_ref());
        if want == shown && (enforcement.is_none() || enforcement == shown_enforcement) {
            continue;
        }
        let mut status = json!({"decisions": want});
        // Applied by this manager every time it writes, so that a write of the counts alone never drops it.
        if let Some(e) = enforcement.or(shown_enforcement) {
            status["enforcement"] = json!(e);
        }
        let body = json!({"apiVersion": API_VERSION, "kind": "Policy", "status": status});
        let api: Api<Policy> = Api::namespaced(client.clone(), &ns);
        match api
            .patch_status(&p.name_any(), &PatchParams::apply(DECISIONS_MANAGER).force(), &Patch::Apply(&body))
            .await
        {
            Ok(_) => written += 1,
            // Deleted since the cache saw it: nothing to report on.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => warn!(policy = %p.name_any(), namespace = %ns, error = %e, "cannot write the decision counts"),
        }
    }
    written
}

/// Copies the gateway's decision counts into the Policies' status until `halt` turns true: every `interval`,
/// only the Policies whose counts changed (so each is written at most once per interval), read from the
/// controller's Policy cache. Counts the gateway cannot give now are left as they are until it can.
pub async fn report_decisions(
    client: Client,
    policies: Store<Policy>,
    gateway: crate::gateway::Gateway,
    interval: Duration,
    mut halt: tokio::sync::watch::Receiver<bool>,
) {
    tokio::select! {
        ready = policies.wait_until_ready() => if ready.is_err() { return },
        _ = halt.wait_for(|h| *h) => return,
    }
    loop {
        let enforcement = match gateway.enforcement().await {
            Ok(e) => Some(e),
            Err(e) => {
                warn!(error = %e, "cannot read which gateway replicas enforce the last push; retrying");
                None
            }
        };
        match gateway.policy_decisions().await {
            Ok(counts) => {
                let written = write_decisions(&client, &policies.state(), &counts, enforcement.as_ref()).await;
                if written > 0 {
                    tracing::debug!(written, "wrote Policy decision counts");
                }
            }
            Err(e) => warn!(error = %e, "cannot read the decision counts from the gateway; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = halt.wait_for(|h| *h) => return,
        }
    }
}
