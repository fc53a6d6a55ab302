//! The Agent reconciler: reports `Ready`, the revision the Agent came from, and the Policies that govern
//! it; invalid inline rules, missing or invalid Policies make it not Ready with the validator's message.

use std::sync::Arc;
use std::time::Instant;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use paddock_api::{API_VERSION, Agent, AgentStatus, Policy};
use paddock_gitops::plan::REVISION_ANNOTATION;
use paddock_policy::engine::Level;
use serde_json::json;
use tracing::warn;

use crate::conditions::{Want, merge};
use crate::{Context, Error, FIELD_MANAGER};

/// The Policies that govern `agent` (named in `spec.policies`, in that order, then those that select it,
/// by name) and the conditions that follow. `policies` are the Policies of the Agent's namespace.
pub fn evaluate(agent: &Agent, policies: &[Arc<Policy>]) -> (Vec<String>, Vec<Want>) {
    let name = agent.name_any();
    let mut problems: Vec<(&str, String)> = Vec::new();
    if let Err(errors) = paddock_policy::compile_agent_rules(&name, &agent.spec.rules) {
        let msg = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        problems.push(("InvalidRules", format!("inline rules: {msg}")));
    }
    let mut governing: Vec<&Policy> = Vec::new();
    for wanted in &agent.spec.policies {
        match policies.iter().find(|p| &p.name_any() == wanted) {
            Some(p) => governing.push(p),
            None => problems.push(("PolicyNotFound", format!("Policy `{wanted}` does not exist"))),
        }
    }
    let mut selecting: Vec<&Policy> = policies
        .iter()
        .map(Arc::as_ref)
        .filter(|p| !agent.spec.policies.contains(&p.name_any()))
        .filter(|p| paddock_policy::selects(&p.spec, &name, agent.labels()))
        .collect();
    selecting.sort_by_key(|p| p.name_any());
    governing.extend(selecting);
    for p in &governing {
        if let Err(errors) = paddock_policy::compile_policy(&p.name_any(), Level::Namespace, &p.spec) {
            let msg = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            problems.push(("PolicyInvalid", format!("Policy `{}`: {msg}", p.name_any())));
        }
    }
    let names: Vec<String> = governing.iter().map(|p| p.name_any()).collect();
    let wants = match problems.first() {
        None => vec![Want::ready("Ready", format!("governed by {} policies", names.len()))],
        Some((reason, _)) => {
            let message = problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
            let mut w = vec![Want::not_ready(reason, message.clone())];
            // Invalid rules need an edit; a missing Policy may still arrive, so that is not stalled.
            if problems.iter().any(|(r, _)| *r != "PolicyNotFound") {
                w.push(Want::stalled(reason, message));
            }
            w
        }
    };
    (names, wants)
}

pub async fn reconcile(agent: Arc<Agent>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = apply(&agent, &ctx).await;
    let label = result.as_ref().map_or_else(|e| e.metric_label(), |_| "success");
    ctx.metrics.reconciled("agent", label, started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff.succeeded(&key(&agent));
    }
    result
}

fn key(a: &Agent) -> String {
    format!("Agent/{}/{}", a.namespace().unwrap_or_default(), a.name_any())
}

async fn apply(agent: &Agent, ctx: &Context) -> Result<Action, Error> {
    let ns = agent.namespace().unwrap_or_default();
    let policies: Vec<Arc<Policy>> =
        ctx.policies.state().into_iter().filter(|p| p.namespace().as_deref() == Some(ns.as_str())).collect();
    let (names, wants) = evaluate(agent, &policies);
    let old = agent.status.clone().unwrap_or_default();
    let generation = agent.meta().generation;
    let status = AgentStatus {
        conditions: merge(&old.conditions, wants, generation),
        source_revision: agent.annotations().get(REVISION_ANNOTATION).cloned(),
        policies: names,
        observed_generation: generation,
    };
    if status == old {
        return Ok(Action::await_change());
    }
    let body = json!({"apiVersion": API_VERSION, "kind": "Agent", "status": status});
    let api: Api<Agent> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(&agent.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(Action::await_change())
}

pub fn error_policy(agent: Arc<Agent>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&key(&agent));
    warn!(agent = %agent.name_any(), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
