//! The Session reconciler: a Session becomes a governed, sandboxed runner.
//!
//! ```text
//! Session ──► Agent (same namespace) + the Policies that govern it (fail closed when any is missing/invalid)
//!         ──► RuntimeClass (Agent's, or the one enforce_sandbox requires) ──► SandboxSpec
//!         ──► workspace clone checked; gateway address resolved (the pod has no DNS); egress CA if brokered
//!         ──► brokered credentials read from Secrets ──► gateway: POST /v1/sessions (id = the Session's UID,
//!             credentials with it) ──► token
//!         ──► server-side apply, owned by the Session: Secret (token, prompt), ConfigMap (Agent), NetworkPolicy,
//!             Pod; one the API server refuses (4xx) stalls the Session with its words, retried with backoff
//! Pod phase + gateway (usage, risk, pending asks, transcript) ──► status, written at most every few seconds
//! Pod finished ──► gateway: end (revokes the token) ──► ttlSecondsAfterFinished ──► delete
//! Session deleted (finalizer) ──► gateway: end (given up after REVOCATION_ATTEMPTS, with an Event) ──► objects deleted
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer;
use kube::{Resource, ResourceExt};
use paddock_api::session::{PendingApproval, SessionPhase, Usage};
use paddock_api::{API_VERSION, Agent, Condition, Policy, Session, SessionStatus};
use paddock_gitops::plan::REVISION_ANNOTATION;
use paddock_policy::PolicySet;
use paddock_sandbox::pod::MAX_PROMPT_BYTES;
use paddock_sandbox::workspace::clone_is_brokered;
use paddock_sandbox::{ClusterConfig, ObjectNames, SandboxSpec, SessionInfo};
use serde_json::json;
use tracing::{debug, warn};

use crate::broker::{self, WorkspaceOwner};
use crate::conditions::{Want, merge, now};
use crate::context::reconcile_finalized;
use crate::gateway::{Gateway, GatewayError, NewSession, last_message};
use crate::{Context, Error, FIELD_MANAGER};

/// Finalizer on Sessions: the token is revoked at the gateway before the Session goes away.
pub const SESSION_FINALIZER: &str = "paddock.dev/session";
/// The namespace label that names a namespace's environment for `enforce_sandbox` (`prod`, `dev`, …).
pub const ENVIRONMENT_LABEL: &str = "paddock.dev/environment";
/// The environment of a namespace without the label.
pub const DEFAULT_ENVIRONMENT: &str = "default";
/// `status.lastMessage` is cut to this many characters.
pub const LAST_MESSAGE_CHARS: usize = 280;
/// How many times deleting a Session tries to end its session at the gateway (revoking the token) before the
/// finalizer goes anyway, with a `TokenNotRevoked` Warning Event: a gateway that is down must not keep
/// Sessions from being deleted. With the controller's backoff the attempts are about 5, 10, 20 and 40 s apart.
pub const REVOCATION_ATTEMPTS: u32 = 5;

/// What the Session reconciler needs besides the shared [`Context`].
pub struct SessionRuntime {
    pub gateway: Gateway,
    pub cluster: ClusterConfig,
    /// How often an active session's gateway figures are read.
    pub poll_interval: Duration,
    /// Usage, risk and last message are written at most this often per Session (phase changes and new asks
    /// at once), so a busy session does not flood the API server.
    pub status_min_interval: Duration,
    writes: Mutex<HashMap<String, Instant>>,
    transcripts: Mutex<HashMap<String, (i64, Option<String>)>>,
    /// Tokens issued whose Secret the API server refused, by session id: the next attempt applies the same
    /// token instead of asking the gateway again (which would answer 409: a token is shown once). Only in
    /// memory; after a restart such a session ends as `TokenLost`.
    unsaved_tokens: Mutex<HashMap<String, String>>,
    /// Failed attempts to end a deleted Session's session at the gateway, by session id (the Session's UID).
    revocations: Mutex<HashMap<String, u32>>,
}

impl SessionRuntime {
    pub fn new(gateway: Gateway, cluster: ClusterConfig) -> SessionRuntime {
        SessionRuntime {
            gateway,
            cluster,
            poll_interval: Duration::from_secs(5),
            status_min_interval: Duration::from_secs(5),
            writes: Mutex::default(),
            transcripts: Mutex::default(),
            unsaved_tokens: Mutex::default(),
            revocations: Mutex::default(),
        }
    }

    fn forget(&self, s: &Session) {
        let (k, id) = (key(s), session_id(s));
        self.writes.lock().expect("writes").remove(&k);
        self.transcripts.lock().expect("transcripts").remove(&k);
        self.unsaved_tokens.lock().expect("unsaved tokens").remove(&id);
        self.revocations.lock().expect("revocations").remove(&id);
    }

    /// Counts one more failed revocation of session `id`; returns how many there were.
    fn revocation_failed(&self, id: &str) -> u32 {
        let mut map = self.revocations.lock().expect("revocations");
        let n = map.entry(id.to_owned()).or_insert(0);
        *n += 1;
        *n
    }
}

fn key(s: &Session) -> String {
    format!("Session/{}/{}", s.namespace().unwrap_or_default(), s.name_any())
}

/// The session's id at the gateway: the Session's UID (unique over time, so a re-created Session of the
/// same name is a new session).
pub fn session_id(s: &Session) -> String {
    s.uid().unwrap_or_else(|| s.name_any())
}

pub async fn reconcile(session: Arc<Session>, ctx: Arc<Context>) -> Result<Action, Error> {
    let k = key(&session);
    reconcile_finalized(&ctx, "session", SESSION_FINALIZER, &k, session, |event| async {
        match event {
            finalizer::Event::Apply(s) => sync(&s, &ctx).await,
            finalizer::Event::Cleanup(s) => cleanup(&s, &ctx).await,
        }
    })
    .await
}

pub fn error_policy(session: Arc<Session>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&key(&session));
    warn!(session = %key(&session), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn runtime(ctx: &Context) -> Result<&SessionRuntime, Error> {
    ctx.sessions.as_deref().ok_or_else(|| Error::Config("the Session reconciler runs without a gateway".into()))
}

/// What this reconcile found, before it becomes status.
struct Observed {
    phase: SessionPhase,
    wants: Vec<Want>,
    pod_name: Option<String>,
    agent_revision: Option<String>,
    gateway: Option<crate::gateway::SessionInfo>,
    last_message: Option<String>,
    start_time: Option<String>,
    completion_time: Option<String>,
}

impl Observed {
    fn from(s: &Session) -> Observed {
        let st = s.status.clone().unwrap_or_default();
        Observed {
            phase: st.phase,
            wants: Vec::new(),
            pod_name: st.pod_name,
            agent_revision: st.agent_revision,
            gateway: None,
            last_message: st.last_message,
            start_time: st.start_time,
            completion_time: st.completion_time,
        }
    }
}

async fn sync(s: &Session, ctx: &Context) -> Result<Action, Error> {
    let rt = runtime(ctx)?;
    let status = s.status.clone().unwrap_or_default();
    if status.phase.is_finished() {
        return finished(s, ctx, &status).await;
    }
    let ns = s.namespace().unwrap_or_default();
    let name = s.name_any();
    let names = ObjectNames::of(&name);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut obs = Observed::from(s);

    let pod = match &obs.pod_name {
        // Started: follow the pod.
        Some(p) => pods.get_opt(p).await?,
        None => None,
    };
    let pod = match (pod, &obs.pod_name) {
        (Some(p), _) => p,
        (None, Some(gone)) => {
            let msg = format!("the runner Pod `{gone}` was deleted before the session finished");
            return finish(s, ctx, obs, SessionPhase::Failed, "RunnerPodDeleted", &msg).await;
        }
        (None, None) => return start(s, ctx, rt, obs, &names).await,
    };

    // Running (or about to): phase from the pod, figures from the gateway.
    let id = session_id(s);
    let info = rt.gateway.session(&id).await?;
    obs.last_message = transcript(rt, &key(s), &id).await?.or(obs.last_message);
    let pod_phase = pod.status.as_ref().and_then(|p| p.phase.clone()).unwrap_or_else(|| "Pending".into());
    match pod_phase.as_str() {
        "Succeeded" => {
            obs.gateway = info;
            return finish(s, ctx, obs, SessionPhase::Succeeded, "Succeeded", "the runner finished").await;
        }
        "Failed" => {
            obs.gateway = info;
            let why = pod_failure(&pod);
            return finish(s, ctx, obs, SessionPhase::Failed, "RunnerFailed", &why).await;
        }
        "Running" => {
            let asks = info.as_ref().is_some_and(|i| !i.pending_approvals.is_empty());
            obs.phase = if asks { SessionPhase::AwaitingApproval } else { SessionPhase::Running };
            obs.start_time = obs.start_time.or_else(|| Some(now()));
            obs.wants = if asks {
                let n = info.as_ref().map_or(0, |i| i.pending_approvals.len());
                vec![Want::ready(
                    "AwaitingApproval",
                    format!("{n} decision(s) wait for a human: create an Approval or run `paddock approve`"),
                )]
            } else {
                vec![Want::ready("Running", format!("the runner Pod `{}` is running", pod.name_any()))]
            };
        }
        _ => {
            obs.phase = SessionPhase::Pending;
            let waiting = waiting_reason(&pod);
            // kstatus: not Ready until the runner runs (or is done); Reconciling says what it waits for.
            obs.wants = vec![
                Want::not_ready("Starting", format!("the runner Pod `{}` is starting", pod.name_any())),
                Want::reconciling(
                    "PodPending",
                    waiting.unwrap_or_else(|| "waiting for the runner Pod to start".into()),
                ),
            ];
        }
    }
    obs.gateway = info;
    write_status(s, ctx, rt, obs).await?;
    Ok(Action::requeue(crate::context::with_jitter(rt.poll_interval, 0.2)))
}

/// First reconcile of a Session (no pod yet): resolve the Agent, decide the sandbox, get a token, apply.
async fn start(
    s: &Session,
    ctx: &Context,
    rt: &SessionRuntime,
    mut obs: Observed,
    names: &ObjectNames,
) -> Result<Action, Error> {
    let ns = s.namespace().unwrap_or_default();
    let name = s.name_any();
    // The prompt reaches the runner in the token Secret, which Kubernetes keeps under 1 MiB (base64 and all):
    // a larger one could never start, so it is refused before anything is made.
    if s.spec.prompt.len() > MAX_PROMPT_BYTES {
        let msg = format!(
            "spec.prompt: {} bytes is more than the {MAX_PROMPT_BYTES} bytes (512 KiB) a prompt may have (it reaches \
             the runner in a Secret, which Kubernetes limits to 1 MiB); shorten it, or put the material in the \
             workspace and point the prompt at it",
            s.spec.prompt.len()
        );
        return blocked(s, ctx, rt, obs, "PromptTooLarge", &msg, true).await;
    }
    let agent_name = &s.spec.agent_ref.name;
    let agents: Api<Agent> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(agent) = agents.get_opt(agent_name).await? else {
        let msg = format!(
            "Agent `{agent_name}` does not exist in namespace `{ns}`; create it or fix spec.agentRef.name (the session starts when it appears)"
        );
        return blocked(s, ctx, rt, obs, "AgentNotFound", &msg, false).await;
    };
    let parent = match parent_of(ctx, s, &agents).await? {
        Ok(p) => p,
        Err(r) => return blocked(s, ctx, rt, obs, r.reason, &r.message, r.stalled).await,
    };
    // Governance first, exactly as the gateway will see it: a missing or invalid Policy keeps the session
    // from starting rather than letting it run with fewer rules than its authors wrote.
    let policies: Vec<Arc<Policy>> =
        ctx.policies.state().into_iter().filter(|p| p.namespace().as_deref() == Some(ns.as_str())).collect();
    let revision = agent.annotations().get(REVISION_ANNOTATION).cloned();
    let (set, errors) = {
        let empty = Default::default();
        let agents =
            [(ns.as_str(), agent_name.as_str(), agent.metadata.labels.as_ref().unwrap_or(&empty), &agent.spec)];
        let pols: Vec<_> = policies
            .iter()
            .map(|p| {
                (
                    ns.as_str(),
                    p.metadata.name.as_deref().unwrap_or_default(),
                    p.metadata.labels.as_ref().unwrap_or(&empty),
                    &p.spec,
                )
            })
            .collect();
        PolicySet::build(revision.as_deref().unwrap_or(""), &agents, &pols)
    };
    let Some(governed) = set.agent(&ns, agent_name) else {
        let why = errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
        let msg = format!("Agent `{agent_name}` cannot be governed: {why}");
        return blocked(s, ctx, rt, obs, "AgentNotReady", &msg, false).await;
    };
    // The Session's own rules, checked as the gateway will check them: a rule that cannot compile is the
    // user's to fix (Stalled, naming its field), not a refusal to retry.
    if let Some(own) = &s.spec.policy
        && let Err(errors) = paddock_policy::compile_session_rules(&session_id(s), &own.rules)
    {
        let msg = errors.iter().map(|e| e.at("spec.policy.rules")).collect::<Vec<_>>().join("; ");
        return blocked(s, ctx, rt, obs, "InvalidSessionPolicy", &msg, true).await;
    }
    let environment = environment_of(ctx, &ns).await;
    let required = match paddock_policy::required_runtime_class(
        &governed.policies,
        &environment,
        agent.spec.sandbox.runtime_class_name.as_deref(),
    ) {
        Ok(r) => r,
        Err(e) => return blocked(s, ctx, rt, obs, "SandboxUnsatisfiable", &e, true).await,
    };
    let sandbox = match SandboxSpec::for_agent(&agent.spec, required.as_deref()) {
        Ok(sb) => sb,
        Err(e) => {
            let msg = format!("Agent `{agent_name}`: {e}");
            return blocked(s, ctx, rt, obs, "InvalidSandbox", &msg, true).await;
        }
    };
    let mut sub_agents = Vec::new();
    for sub in &agent.spec.sub_agents {
        if let Some(a) = agents.get_opt(sub).await? {
            sub_agents.push((sub.clone(), a.spec));
        }
    }
    let id = session_id(s);
    let uid = s.uid().unwrap_or_default();
    let (workspace, owner) = match (&s.spec.workspace, &agent.spec.workspace) {
        (Some(w), _) => (Some(w), WorkspaceOwner::Session),
        (None, w) => (w.as_ref(), WorkspaceOwner::Agent(agent_name)),
    };
    if let Some(ws) = workspace
        && let Err(r) = broker::check_clone(ws, owner, &agent.spec, &sandbox)
    {
        return blocked(s, ctx, rt, obs, r.reason, &r.message, r.stalled).await;
    }
    // The pod has no DNS: it gets the gateway's address from here.
    let gateway_address = match broker::gateway_address(&rt.cluster.gateway_url).await {
        Ok(a) => a,
        Err(r) => return blocked(s, ctx, rt, obs, r.reason, &r.message, r.stalled).await,
    };
    // A clone through the broker trusts Paddock's egress CA (public; the gateway holds the key).
    let egress_ca = match workspace.filter(|ws| clone_is_brokered(ws, &agent.spec.credentials)) {
        None => None,
        Some(_) => match rt.gateway.egress_ca().await {
            Ok(pem) => Some(pem),
            Err(e) => {
                let msg = format!("the workspace is cloned through the broker, which needs Paddock's egress CA: {e}");
                return blocked(s, ctx, rt, obs, "EgressCaUnavailable", &msg, false).await;
            }
        },
    };
    // Over https the pod trusts the gateway's CA (public), read now so that a rotated CA reaches new pods.
    let gateway_ca = match rt.gateway.ca_pem() {
        Ok(pem) => pem,
        Err(e) => return blocked(s, ctx, rt, obs, "GatewayCaUnavailable", &e.to_string(), false).await,
    };
    let info = SessionInfo {
        name: &name,
        namespace: &ns,
        uid: &uid,
        session_id: &id,
        agent_name,
        prompt: &s.spec.prompt,
        model_override: s.spec.model_override.as_deref(),
        workspace,
        gateway_address,
        egress_ca: egress_ca.as_deref(),
        gateway_ca: gateway_ca.as_deref(),
    };
    // The token: issued once by the gateway and kept only in the Secret.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    if secrets.get_opt(&names.secret).await?.is_none() {
        // A token issued at an earlier attempt whose Secret the API server refused: the gateway shows a token
        // once, so it is the one to save.
        let kept = rt.unsaved_tokens.lock().expect("unsaved tokens").remove(&id);
        let token = match kept {
            Some(t) => t,
            None => {
                // Brokered credentials go to the gateway with the session, never into the pod.
                let credentials =
                    match broker::session_credentials(&secrets, &agent.spec, workspace.map(|w| (w, owner))).await? {
                        Ok(c) => c,
                        Err(r) => return blocked(s, ctx, rt, obs, r.reason, &r.message, r.stalled).await,
                    };
                let req = NewSession {
                    id: id.clone(),
                    namespace: ns.clone(),
                    agent: agent_name.clone(),
                    owner: s.spec.owner.clone(),
                    budget_usd: s.spec.budget_usd,
                    model_override: s.spec.model_override.clone(),
                    parent,
                    environment: Some(environment.clone()),
                    workspace_repo: workspace.map(|w| w.git.clone()),
                    runtime_class_name: sandbox.runtime_class_name.clone(),
                    mcp_credentials: credentials.iter().filter(|c| c.mcp_server.is_some()).cloned().collect(),
                    credentials: credentials.into_iter().filter(|c| c.mcp_server.is_none()).collect(),
                    policy: s.spec.policy.clone(),
                    expires_in_seconds: Some(token_lifetime(&agent.spec)),
                };
                match rt.gateway.create_session(&req).await {
                    Ok(t) => t,
                    Err(GatewayError::Status { status: 409, .. }) => {
                        // The gateway has this session but its token Secret is gone (deleted by hand, or lost
                        // between the two steps): the token cannot be shown again, so end it rather than run
                        // without one.
                        rt.gateway
                            .end_session(&id, "Failed", "the token Secret was lost before the runner started")
                            .await?;
                        let msg = "the session exists at the gateway but its token Secret is gone; the token was revoked. Delete and re-create the Session";
                        return finish(s, ctx, obs, SessionPhase::Failed, "TokenLost", msg).await;
                    }
                    Err(e @ GatewayError::Status { status: 400..=499, .. }) => {
                        // Mostly an Agent the gateway has not loaded yet: the Agent's watch wakes this
                        // reconcile before the policy sync has pushed it. Retry at the poll interval, not in
                        // a minute (seen on a real API server: every new Agent's first Session waited 60 s).
                        show_blocked(s, ctx, rt, obs, "GatewayRejected", &e.to_string(), false).await?;
                        return Ok(Action::requeue(crate::context::with_jitter(rt.poll_interval, 0.2)));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let secret = paddock_sandbox::render_token_secret(&info, &token);
        if let Err(e) = apply(ctx, &ns, &names.secret, &secret).await {
            rt.unsaved_tokens.lock().expect("unsaved tokens").insert(id.clone(), token);
            return refused(s, ctx, rt, obs, "Secret", &names.secret, e).await;
        }
    }
    let subs: Vec<(&str, &paddock_api::AgentSpec)> = sub_agents.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let manifest = paddock_sandbox::agent_manifest(&ns, agent_name, &agent.spec, &subs);
    let cm = paddock_sandbox::render_agent_configmap(&info, &manifest);
    if let Err(e) = apply(ctx, &ns, &names.config_map, &cm).await {
        return refused(s, ctx, rt, obs, "ConfigMap", &names.config_map, e).await;
    }
    let np = paddock_sandbox::render_network_policy(&info, &sandbox, &rt.cluster);
    if let Err(e) = apply(ctx, &ns, &names.network_policy, &np).await {
        return refused(s, ctx, rt, obs, "NetworkPolicy", &names.network_policy, e).await;
    }
    let pod = paddock_sandbox::render_runner_pod(&info, &agent.spec, &sandbox, &rt.cluster);
    if let Err(e) = apply(ctx, &ns, &names.pod, &pod).await {
        return refused(s, ctx, rt, obs, "Pod", &names.pod, e).await;
    }
    ctx.metrics.sessions_started.inc();
    let mut note = format!(
        "created runner Pod `{}` for Agent `{agent_name}`{} (runtimeClass {}, environment `{environment}`); egress \
         only through the gateway",
        names.pod,
        revision.as_deref().map(|r| format!(" at {r}")).unwrap_or_default(),
        sandbox.runtime_class_name.as_deref().unwrap_or("cluster default"),
    );
    let direct = broker::direct_egress(&sandbox);
    if !direct.is_empty() {
        note.push_str(&format!(", and directly to {}", direct.join(", ")));
    }
    publish(ctx, s, EventType::Normal, "Started", "Start", note).await;
    obs.phase = SessionPhase::Pending;
    obs.pod_name = Some(names.pod.clone());
    obs.agent_revision = revision;
    // Not Ready yet (kstatus): the pod was created, not started. A Stalled condition of an earlier refusal
    // goes with this list.
    obs.wants = vec![
        Want::not_ready("Starting", format!("the runner Pod `{}` was created", names.pod)),
        Want::reconciling("PodPending", "waiting for the runner Pod to start"),
    ];
    write_status(s, ctx, rt, obs).await?;
    Ok(Action::requeue(crate::context::with_jitter(rt.poll_interval, 0.2)))
}

/// Slack on top of the runner pod's deadline for it to be scheduled and pulled: the pod's
/// `activeDeadlineSeconds` counts from its start, the token's lifetime from its issue.
pub const TOKEN_SCHEDULING_SLACK_SECONDS: u64 = 3600;

/// How long a session's token lives: the runner pod's deadline (the Agent's `timeoutSeconds` and the pod's
/// own slack) plus [`TOKEN_SCHEDULING_SLACK_SECONDS`]. No runner needs it longer; a token nobody revoked
/// stops then.
pub fn token_lifetime(agent: &paddock_api::AgentSpec) -> u64 {
    u64::from(agent.limits.timeout_seconds)
        + paddock_sandbox::pod::DEADLINE_SLACK_SECONDS.unsigned_abs()
        + TOKEN_SCHEDULING_SLACK_SECONDS
}

/// The session cannot start yet: status says why (once as an Event), and it is retried — at once when the
/// Agent or a Policy changes (watches), else after a minute.
async fn blocked(
    s: &Session,
    ctx: &Context,
    rt: &SessionRuntime,
    obs: Observed,
    reason: &str,
    message: &str,
    stalled: bool,
) -> Result<Action, Error> {
    show_blocked(s, ctx, rt, obs, reason, message, stalled).await?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Status (Ready=False, and Stalled when `stalled`) and, when the reason or message is new, a Warning Event.
async fn show_blocked(
    s: &Session,
    ctx: &Context,
    rt: &SessionRuntime,
    mut obs: Observed,
    reason: &str,
    message: &str,
    stalled: bool,
) -> Result<(), Error> {
    let old = s.status.as_ref().map(|st| st.conditions.as_slice()).unwrap_or_default();
    if crate::conditions::find(old, paddock_api::status::READY)
        .is_none_or(|c| c.reason != reason || c.message != message)
    {
        publish(ctx, s, EventType::Warning, reason, "Start", message.to_owned()).await;
    }
    obs.phase = SessionPhase::Pending;
    obs.wants = vec![Want::not_ready(reason, message)];
    if stalled {
        obs.wants.push(Want::stalled(reason, message));
    }
    write_status(s, ctx, rt, obs).await
}

/// Applying one of the runner's objects failed. When the API server refused it (a 4xx answer: a missing
/// ServiceAccount or RuntimeClass, an admission policy, a quota, an invalid or immutable field) the Session
/// shows its words at once — `<Kind>Refused` in Ready=False and Stalled, and a Warning Event — since nothing
/// the controller does will change the answer. Either way the error is returned, so the attempt is repeated
/// with the controller's backoff (5 s doubling to 5 min): the Session starts, and the conditions clear, once
/// the cause is fixed. Throttling (429) and timeouts (408) are not refusals; like 5xx answers and network
/// errors they are only retried.
async fn refused(
    s: &Session,
    ctx: &Context,
    rt: &SessionRuntime,
    obs: Observed,
    kind: &str,
    name: &str,
    err: Error,
) -> Result<Action, Error> {
    let Error::Kube(kube::Error::Api(status)) = &err else { return Err(err) };
    if !(400..500).contains(&status.code) || matches!(status.code, 408 | 429) {
        return Err(err);
    }
    let reason = format!("{kind}Refused");
    let message = format!(
        "the API server refused the runner's {kind} `{name}` ({} {}): {}; retried with backoff, the session starts \
         once it is accepted",
        status.code,
        status.reason,
        status.message.trim()
    );
    show_blocked(s, ctx, rt, obs, &reason, &message, true).await?;
    Err(err)
}

/// The runner finished (or cannot run): end the session at the gateway (revoking the token), then status.
async fn finish(
    s: &Session,
    ctx: &Context,
    mut obs: Observed,
    phase: SessionPhase,
    reason: &str,
    message: &str,
) -> Result<Action, Error> {
    let rt = runtime(ctx)?;
    let phase_name = if phase == SessionPhase::Succeeded { "Succeeded" } else { "Failed" };
    let id = session_id(s);
    match rt.gateway.end_session(&id, phase_name, message).await {
        Ok(()) => {}
        // The gateway does not know the session: never taken for revoked (a replica that cannot see it may
        // still take its token). Tried again with backoff; after as many attempts as a deletion gets, the
        // Session finishes with a Warning, since a gateway that lost its database holds no token either.
        Err(e) if e.status() == Some(404) && rt.revocation_failed(&id) >= REVOCATION_ATTEMPTS => {
            let note = format!(
                "the gateway does not know session `{id}` ({e}); its token could not be revoked. If the gateway's \
                 database was replaced, no token of it works"
            );
            warn!(session = %key(s), session_id = %id, "finishing a session the gateway does not know");
            publish(ctx, s, EventType::Warning, "TokenNotRevoked", "Finish", note).await;
        }
        Err(e) => return Err(e.into()),
    }
    obs.phase = phase;
    obs.completion_time = Some(now());
    obs.wants = if phase == SessionPhase::Succeeded {
        vec![Want::ready(reason, message)]
    } else {
        vec![Want::not_ready(reason, message)]
    };
    let (type_, note) = match phase {
        SessionPhase::Succeeded => (EventType::Normal, format!("session succeeded: {message}")),
        _ => (EventType::Warning, format!("session failed: {message}")),
    };
    publish(ctx, s, type_, reason, "Finish", note).await;
    write_status(s, ctx, rt, obs).await?;
    rt.forget(s);
    match s.spec.ttl_seconds_after_finished {
        Some(ttl) => Ok(Action::requeue(Duration::from_secs(ttl.into()))),
        None => Ok(Action::await_change()),
    }
}

/// A finished Session: deleted once `ttlSecondsAfterFinished` has passed.
async fn finished(s: &Session, ctx: &Context, status: &SessionStatus) -> Result<Action, Error> {
    let Some(ttl) = s.spec.ttl_seconds_after_finished else { return Ok(Action::await_change()) };
    let done = status
        .completion_time
        .as_deref()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .unwrap_or_else(k8s_openapi::jiff::Timestamp::now);
    let age = k8s_openapi::jiff::Timestamp::now().duration_since(done).as_secs_f64().max(0.0);
    let left = f64::from(ttl) - age;
    if left > 0.0 {
        return Ok(Action::requeue(Duration::from_secs_f64(left)));
    }
    debug!(session = %key(s), "ttlSecondsAfterFinished passed; deleting");
    let api: Api<Session> = Api::namespaced(ctx.client.clone(), &s.namespace().unwrap_or_default());
    match api.delete(&s.name_any(), &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// The Session is being deleted: revoke the token, then delete what it owns (garbage collection would too,
/// later; deleting now stops the runner at once).
async fn cleanup(s: &Session, ctx: &Context) -> Result<Action, Error> {
    let rt = runtime(ctx)?;
    let ns = s.namespace().unwrap_or_default();
    let names = ObjectNames::of(&s.name_any());
    let finished = s.status.as_ref().is_some_and(|st| st.phase.is_finished());
    let id = session_id(s);
    // A Session deleted before its runner started may never have been registered: the gateway not knowing
    // it is then no token left alive.
    let never_started = s.status.as_ref().is_none_or(|st| st.pod_name.is_none());
    let ended = match finished {
        true => Ok(()),
        false => match rt.gateway.end_session(&id, "Failed", "the Session was deleted").await {
            Err(e) if never_started && e.status() == Some(404) => Ok(()),
            other => other,
        },
    };
    if let Err(e) = ended {
        // Counted in memory by session id (the UID, so a re-created Session of the same name starts afresh):
        // an annotation would survive a controller restart, but each write to the Session wakes the controller
        // again at once and defeats the backoff; a restart only grants one more bounded round.
        let n = rt.revocation_failed(&id);
        if n == 1 {
            // The attempts back off from the shortest delay, not from where failures before the deletion (a
            // refused pod, say) left this Session's backoff.
            ctx.backoff.succeeded(&key(s));
        }
        if n < REVOCATION_ATTEMPTS {
            warn!(session = %key(s), attempt = n, of = REVOCATION_ATTEMPTS, error = %e, "cannot end the deleted session at the gateway; will try again");
            return Err(e.into());
        }
        ctx.metrics.session_revocations_abandoned.inc();
        let note = format!(
            "Session `{ns}/{}` was deleted, but its session `{id}` could not be ended at the gateway in \
             {REVOCATION_ATTEMPTS} attempts (last: {e}), so its token was not revoked. The runner Pod and the \
             token Secret are deleted now, so nothing in the cluster holds the token any more, and the token \
             stops working on its own when its lifetime ends (the runner pod's deadline plus an hour after it was \
             issued); to end it sooner, once the gateway is back: POST /v1/sessions/{id}/end with the admin token",
            s.name_any()
        );
        warn!(session = %key(s), session_id = %id, error = %e, "giving up revoking the deleted session's token");
        publish(ctx, s, EventType::Warning, "TokenNotRevoked", "Delete", note).await;
    }
    let dp = DeleteParams::background();
    delete_opt(Api::<Pod>::namespaced(ctx.client.clone(), &ns), &names.pod, &dp).await?;
    delete_opt(Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &ns), &names.network_policy, &dp).await?;
    delete_opt(Api::<Secret>::namespaced(ctx.client.clone(), &ns), &names.secret, &dp).await?;
    delete_opt(Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns), &names.config_map, &dp).await?;
    rt.forget(s);
    Ok(Action::await_change())
}

async fn delete_opt<K>(api: Api<K>, name: &str, dp: &DeleteParams) -> Result<(), Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Server-side apply of one object the Session owns.
async fn apply<K>(ctx: &Context, ns: &str, name: &str, obj: &K) -> Result<(), Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj)).await?;
    Ok(())
}

/// The namespace's `paddock.dev/environment` label, else `default` (also when the namespace cannot be read).
async fn environment_of(ctx: &Context, ns: &str) -> String {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    match api.get_opt(ns).await {
        Ok(Some(n)) => n.labels().get(ENVIRONMENT_LABEL).cloned().unwrap_or_else(|| DEFAULT_ENVIRONMENT.into()),
        Ok(None) => DEFAULT_ENVIRONMENT.into(),
        Err(e) => {
            warn!(namespace = ns, error = %e, "cannot read the namespace's environment label; using `default`");
            DEFAULT_ENVIRONMENT.into()
        }
    }
}

/// Why a sub-agent session may not attach to the parent its `spec.parentRef` names.
struct ParentRefused {
    reason: &'static str,
    message: String,
    /// Nothing will change by waiting (the Session or an Agent must be edited).
    stalled: bool,
}

/// The gateway id of the parent Session, for sub-agent sessions. `spec.parentRef` must name another Session
/// of the same namespace and the same owner whose Agent lists this Session's Agent in `spec.subAgents`;
/// otherwise anyone who may create Sessions could attach a child to another owner's session and roll its
/// cost into it. A parent that does not exist (yet) keeps the session waiting; the rest stall it.
async fn parent_of(
    ctx: &Context,
    s: &Session,
    agents: &Api<Agent>,
) -> Result<Result<Option<String>, ParentRefused>, Error> {
    let Some(p) = &s.spec.parent_ref else { return Ok(Ok(None)) };
    let ns = s.namespace().unwrap_or_default();
    let refused = |reason, message: String, stalled| Ok(Err(ParentRefused { reason, message, stalled }));
    if p.name == s.name_any() {
        return refused("ParentRefInvalid", format!("spec.parentRef names this Session (`{}`) itself", p.name), true);
    }
    let api: Api<Session> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(parent) = api.get_opt(&p.name).await? else {
        return refused(
            "ParentNotFound",
            format!(
                "spec.parentRef: Session `{}` does not exist in namespace `{ns}` (the session starts when it appears)",
                p.name
            ),
            false,
        );
    };
    if parent.spec.owner != s.spec.owner {
        return refused(
            "ParentOwnerMismatch",
            format!(
                "spec.parentRef: Session `{}` belongs to `{}`, not to `{}`; a sub-agent session must have its \
                 parent's owner",
                p.name, parent.spec.owner, s.spec.owner
            ),
            true,
        );
    }
    let parent_agent = &parent.spec.agent_ref.name;
    let Some(pa) = agents.get_opt(parent_agent).await? else {
        return refused(
            "ParentAgentNotFound",
            format!(
                "spec.parentRef: the Agent `{parent_agent}` of Session `{}` does not exist in namespace `{ns}`, so \
                 it cannot be checked that it lists `{}` in spec.subAgents",
                p.name, s.spec.agent_ref.name
            ),
            false,
        );
    };
    if !pa.spec.sub_agents.contains(&s.spec.agent_ref.name) {
        return refused(
            "NotASubAgent",
            format!(
                "spec.parentRef: the Agent `{parent_agent}` of Session `{}` does not list `{}` in spec.subAgents",
                p.name, s.spec.agent_ref.name
            ),
            true,
        );
    }
    Ok(Ok(Some(session_id(&parent))))
}

/// New transcript events since the last read; returns the latest agent message when there is a new one.
async fn transcript(rt: &SessionRuntime, key: &str, id: &str) -> Result<Option<String>, Error> {
    let (offset, last) = rt.transcripts.lock().expect("transcripts").get(key).cloned().unwrap_or((0, None));
    let events = match rt.gateway.events(id, offset).await {
        Ok(e) => e,
        Err(e) if e.status() == Some(404) => return Ok(last),
        Err(e) => return Err(e.into()),
    };
    let next = events.last().map_or(offset, |(seq, _)| seq + 1);
    let last = last_message(&events).map(|m| shorten(&m, LAST_MESSAGE_CHARS)).or(last);
    rt.transcripts.lock().expect("transcripts").insert(key.to_owned(), (next, last.clone()));
    Ok(last)
}

fn shorten(s: &str, max: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Why a pod is not running yet, when a container says (image pull errors, config errors).
fn waiting_reason(pod: &Pod) -> Option<String> {
    let st = pod.status.as_ref()?;
    let all = st.init_container_statuses.iter().flatten().chain(st.container_statuses.iter().flatten());
    for c in all {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(reason) = &w.reason
            && reason != "PodInitializing"
            && reason != "ContainerCreating"
        {
            return Some(format!("container `{}`: {reason}: {}", c.name, w.message.clone().unwrap_or_default()));
        }
    }
    st.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| format!("not scheduled: {}", c.message.clone().unwrap_or_default()))
}

/// Why a pod failed: a failed container's termination message or reason, else the pod's.
fn pod_failure(pod: &Pod) -> String {
    let st = pod.status.clone().unwrap_or_default();
    let all = st.init_container_statuses.iter().flatten().chain(st.container_statuses.iter().flatten());
    for c in all {
        if let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref())
            && t.exit_code != 0
        {
            let msg = t.message.as_deref().map(|m| shorten(m, 400)).unwrap_or_default();
            return format!(
                "container `{}` exited with {} ({}){}",
                c.name,
                t.exit_code,
                t.reason.as_deref().unwrap_or("Error"),
                if msg.is_empty() { String::new() } else { format!(": {msg}") }
            );
        }
    }
    match (st.reason, st.message) {
        (Some(r), Some(m)) => format!("{r}: {m}"),
        (Some(r), None) => r,
        (None, Some(m)) => m,
        (None, None) => "the runner Pod failed".into(),
    }
}

/// The status to write, from what was observed.
fn status_of(s: &Session, obs: Observed) -> SessionStatus {
    let old = s.status.clone().unwrap_or_default();
    let generation = s.meta().generation;
    let (usage, risk_score, pending) = match &obs.gateway {
        Some(g) => (
            Usage {
                input_tokens: g.usage.input_tokens,
                output_tokens: g.usage.output_tokens,
                cost_usd: g.usage.cost_usd,
            },
            g.risk_score,
            g.pending_approvals
                .iter()
                .map(|a| PendingApproval {
                    request_id: a.id.clone(),
                    phase: serde_json::from_value(json!(a.phase)).unwrap_or(paddock_api::Phase::ToolCall),
                    tool: tool_of(&a.phase, &a.summary),
                    reason: a.reason.clone(),
                    requested_at: a.created_at.clone(),
                })
                .collect(),
        ),
        None => (
            old.usage.clone(),
            old.risk_score,
            if obs.phase.is_finished() { Vec::new() } else { old.pending_approvals.clone() },
        ),
    };
    let pending = if obs.phase.is_finished() { Vec::new() } else { pending };
    SessionStatus {
        phase: obs.phase,
        pod_name: obs.pod_name,
        agent_revision: obs.agent_revision,
        usage,
        risk_score,
        pending_approval_count: pending.len() as u32,
        pending_approvals: pending,
        last_message: obs.last_message,
        start_time: obs.start_time,
        completion_time: obs.completion_time,
        conditions: merge(&old.conditions, obs.wants, generation),
        observed_generation: generation,
    }
}

/// The tool a tool-call ask is about: the first word of the gateway's summary (`Bash {"command": …}`).
fn tool_of(phase: &str, summary: &str) -> Option<String> {
    if !matches!(phase, "tool_call" | "tool_result") {
        return None;
    }
    summary.split_whitespace().next().filter(|t| *t != "?").map(str::to_owned)
}

/// Whether a change must be written now: anything but the running figures (usage, risk, last message).
fn urgent(old: &SessionStatus, new: &SessionStatus) -> bool {
    let conds = |c: &[Condition]| c.iter().map(|c| (c.type_.clone(), c.status, c.reason.clone())).collect::<Vec<_>>();
    old.phase != new.phase
        || old.pod_name != new.pod_name
        || old.pending_approvals != new.pending_approvals
        || conds(&old.conditions) != conds(&new.conditions)
        || old.completion_time != new.completion_time
        || old.observed_generation != new.observed_generation
}

/// Writes status by server-side apply when it changed: at once for phase, conditions and asks; at most every
/// `status_min_interval` for usage, risk and the last message.
async fn write_status(s: &Session, ctx: &Context, rt: &SessionRuntime, obs: Observed) -> Result<(), Error> {
    let old = s.status.clone().unwrap_or_default();
    let status = status_of(s, obs);
    if status == old {
        return Ok(());
    }
    let k = key(s);
    if !urgent(&old, &status) {
        let last = rt.writes.lock().expect("writes").get(&k).copied();
        if last.is_some_and(|t| t.elapsed() < rt.status_min_interval) {
            ctx.metrics.session_status_deferred.inc();
            return Ok(());
        }
    }
    let body = json!({"apiVersion": API_VERSION, "kind": "Session", "status": status});
    let api: Api<Session> = Api::namespaced(ctx.client.clone(), &s.namespace().unwrap_or_default());
    api.patch_status(&s.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    rt.writes.lock().expect("writes").insert(k, Instant::now());
    Ok(())
}

async fn publish(ctx: &Context, s: &Session, type_: EventType, reason: &str, action: &str, note: String) {
    let note = shorten(&note, 1000);
    let ev = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&ev, &s.object_ref(&())).await {
        warn!(session = %s.name_any(), error = %e, "could not record an Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortening_and_tools() {
        assert_eq!(shorten("  hi  ", 10), "hi");
        assert_eq!(shorten("abcdef", 3), "abc…");
        assert_eq!(tool_of("tool_call", r#"Bash {"command":"git push"}"#), Some("Bash".into()));
        assert_eq!(tool_of("llm_request", "model request to gpt-5"), None);
    }
}
