//! `paddock approve|deny --cluster`: decide a pending ask by creating an Approval object with the user's own
//! Kubernetes identity (RBAC on `approvals.paddock.dev` says who may), then wait for the controller to
//! relay it to the gateway and print the outcome.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use paddock_api::agent::LocalObjectReference;
use paddock_api::approval::{ApprovalSpec, Decision};
use paddock_api::status::{READY, STALLED};
use paddock_api::{Approval, ConditionStatus};

use crate::terminal;

/// How long to wait for the controller to relay the decision.
const WAIT: Duration = Duration::from_secs(30);

/// Creates an Approval for `request_id` of Session `session` (in `namespace`, else the kubeconfig's) from the
/// default kubeconfig, and waits for the outcome. Exit 0 when the gateway accepted the decision, 1 when it was
/// refused (already decided, not this session's, …), 2 on errors.
pub fn run(
    namespace: Option<String>,
    session: String,
    request_id: String,
    approve: bool,
    reason: String,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(decide(namespace, session, request_id, approve, reason))
}

async fn decide(
    namespace: Option<String>,
    session: String,
    request_id: String,
    approve: bool,
    reason: String,
) -> anyhow::Result<ExitCode> {
    let client = Client::try_default().await.context("cannot load the kubeconfig")?;
    let ns = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
    // Who we are, as the API server sees it: recorded as the decider (the chart's admission policy checks it).
    let me = whoami(&client).await;
    let mut approval = Approval::new(
        "",
        ApprovalSpec {
            session_ref: LocalObjectReference { name: session.clone() },
            request_id: request_id.clone(),
            decision: if approve { Decision::Approve } else { Decision::Deny },
            reason: (!reason.is_empty()).then_some(reason),
        },
    );
    approval.metadata.name = None;
    approval.metadata.generate_name = Some(format!("{}-", prefix(&session, &request_id)));
    if let Some(user) = &me {
        approval.metadata.annotations =
            Some([(paddock_operator::approval::DECIDED_BY_ANNOTATION.to_owned(), user.clone())].into());
    }
    let api: Api<Approval> = Api::namespaced(client, &ns);
    let created = api.create(&PostParams::default(), &approval).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 403 => anyhow::anyhow!(
            "you may not create Approvals in namespace `{ns}` ({}); ask for the `paddock-approver` ClusterRole there",
            s.message
        ),
        e => anyhow::anyhow!("cannot create the Approval in namespace `{ns}`: {e}"),
    })?;
    let name = created.name_any();
    eprintln!("created approval.paddock.dev/{name} in namespace {ns}; waiting for the controller to relay it");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let a = api.get(&name).await.with_context(|| format!("cannot read Approval `{name}`"))?;
        let conds = a.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
        let ready = conds.iter().find(|c| c.type_ == READY);
        if let Some(c) = ready.filter(|c| c.status == ConditionStatus::True) {
            // The controller's message quotes the gateway's answer, which may quote the ask: inert.
            println!("{}", terminal::line(&c.message));
            return Ok(ExitCode::SUCCESS);
        }
        if conds.iter().any(|c| c.type_ == STALLED)
            && let Some(c) = ready
        {
            eprintln!("paddock: not relayed: {}: {}", terminal::line(&c.reason), terminal::line(&c.message));
            return Ok(ExitCode::from(1));
        }
        if tokio::time::Instant::now() >= deadline {
            let why = ready
                .map(|c| format!(" (last: {}: {})", terminal::line(&c.reason), terminal::line(&c.message)))
                .unwrap_or_default();
            eprintln!(
                "paddock: the controller has not relayed approval.paddock.dev/{name} within {}s{why}; check `kubectl describe approval {name} -n {ns}`",
                WAIT.as_secs()
            );
            return Ok(ExitCode::from(2));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The user name of this kubeconfig's credentials (`SelfSubjectReview`, Kubernetes ≥ 1.28).
async fn whoami(client: &Client) -> Option<String> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = SelfSubjectReview::default();
    match api.create(&PostParams::default(), &review).await {
        Ok(r) => r.status?.user_info?.username,
        Err(e) => {
            tracing::debug!(error = %e, "SelfSubjectReview failed");
            None
        }
    }
}

/// A name prefix from the session and request: lower-case, DNS-safe, short enough for `generateName`.
fn prefix(session: &str, request: &str) -> String {
    let raw = format!("{session}-{request}").to_ascii_lowercase();
    let clean: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    let cut: String = clean.chars().take(52).collect();
    let t = cut.trim_matches('-');
    if t.is_empty() { "approval".into() } else { t.to_owned() }
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefixes_are_dns_safe() {
        assert_eq!(super::prefix("fix-login", "a-1b2c3d"), "fix-login-a-1b2c3d");
        assert_eq!(super::prefix("X_Y", "!"), "x-y");
        assert!(super::prefix(&"s".repeat(100), "a-1").len() <= 52);
    }
}
