//! The Policy reconciler: checks every rule's parameters with the policy engine's compiler and reports
//! `Ready`, the rule count and the revision the Policy came from. Decision counts belong to the gateway and
//! are left alone (server-side apply of only the fields this controller owns).

use std::sync::Arc;
use std::time::Instant;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
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
