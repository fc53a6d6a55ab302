//! The gateway's state and its one way to decide: sessions and their tokens, the policy set, metering and
//! budgets, approvals, and the audit log. HTTP handlers (proxy and API) call into this.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use paddock_api::catalog::ModelCatalog;
use paddock_api::{Phase, Verdict};
use paddock_policy::cost::{Metering, meter};
use paddock_policy::state::UserDaily;
use paddock_policy::{CompiledPolicy, Event, GovernedAgent, PolicySet, SessionState, StateUpdate, Usage, evaluate};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::config::Limits;
use crate::metrics::{DecisionLabels, ModelLabels, PhaseLabels, TokenLabels};
use crate::shared::{ChildInsert, HoldRow, Locked, REVALIDATE, Shared};
use crate::store::{ApprovalRow, AuditRow, ChargeRow, SessionKey, SessionRow, Store, StoreError, Write};
use crate::upstream::Providers;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("session `{0}` does not exist")]
    NoSession(String),
    #[error("session `{0}` has ended")]
    SessionEnded(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("approval `{0}` does not exist")]
    NoApproval(String),
    /// A bound on what runs at once (a team's live sub-agents): try again once something has ended.
    #[error("{0}")]
    Busy(String),
}

/// A session the gateway governs.
pub struct Session {
    pub id: String,
    pub namespace: String,
    pub agent: String,
    pub owner: String,
    pub parent: Option<String>,
    pub created_at: String,
    token_hash: String,
    /// `(phase, reason)` once ended; the token stops working.
    end: Mutex<Option<(String, String)>>,
    state: tokio::sync::Mutex<SessionState>,
    /// Worst-case cost of this session's requests in flight.
    reserved: Mutex<f64>,
    /// Tool calls already decided by the response gate, so that a harness hook asking again about the same
    /// call gets the same answer and the call is counted once.
    decided_tools: Mutex<VecDeque<(DecidedCall, Ruling)>>,
    /// Ids of `decided_tools` entries an MCP `tools/call` has used (see [`Gateway::decided_for_mcp`]).
    mcp_used: Mutex<std::collections::HashSet<String>>,
    /// Tool calls a human approved when the response gate asked about them at `llm_response`: the call's
    /// id, the `(policy, rule)` asks the approval answered, and the approving ruling. The same call's
    /// `tool_call` decision then does not ask again for the same rules (see [`Gateway::answered_ask`]).
    approved_calls: Mutex<VecDeque<ApprovedCall>>,
    /// The next transcript sequence number, once known.
    next_event: tokio::sync::Mutex<Option<i64>>,
    /// Live transcript events for followers.
    live: tokio::sync::broadcast::Sender<(i64, Arc<serde_json::Value>)>,
    /// What the credential broker injects for this session, per host (see [`crate::broker::Broker::credential`]).
    pub(crate) credentials: Vec<SessionCredential>,
    /// The session's own rules compiled (the first level of policy), `None` without any; `Err` when the rules
    /// kept in its state no longer compile (after an upgrade), and then every decision fails closed.
    own_rules: Result<Option<CompiledPolicy>, String>,
    /// When the token stops working (Unix seconds), if the session was given a lifetime.
    pub token_expires_at: Option<i64>,
    /// Replicas on a shared database: when this replica last read whether the session has ended.
    checked: Mutex<Instant>,
    /// Held while a sub-agent of this session starts (see [`Gateway::create_child`]).
    starting: tokio::sync::Mutex<()>,
}

/// Shows who the session is and which hosts it has credentials for, never their values or its token.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("namespace", &self.namespace)
            .field("agent", &self.agent)
            .field("owner", &self.owner)
            .field("parent", &self.parent)
            .field("ended", &self.ended())
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session its row records, with what the row keeps encoded (its state, its sealed credentials, its
    /// own rules) given already read.
    fn of(
        row: SessionRow,
        ended: Option<(String, String)>,
        state: SessionState,
        credentials: Vec<SessionCredential>,
        own_rules: Result<Option<CompiledPolicy>, String>,
    ) -> Session {
        Session {
            id: row.id,
            namespace: row.namespace,
            agent: row.agent,
            owner: row.owner,
            parent: row.parent,
            created_at: row.created_at,
            token_hash: row.token_hash,
            end: Mutex::new(ended),
            token_expires_at: state.token_expires_at,
            state: tokio::sync::Mutex::new(state),
            reserved: Mutex::new(0.0),
            decided_tools: Mutex::new(VecDeque::new()),
            mcp_used: Mutex::new(Default::default()),
            approved_calls: Mutex::new(VecDeque::new()),
            next_event: tokio::sync::Mutex::new(None),
            live: tokio::sync::broadcast::channel(1024).0,
            credentials,
            own_rules,
            checked: Mutex::new(Instant::now()),
            starting: tokio::sync::Mutex::new(()),
        }
    }

    pub fn ended(&self) -> Option<(String, String)> {
        self.end.lock().expect("end").clone()
    }

    /// Whether the token's lifetime is over: it no longer acts for the session, revoked or not.
    pub fn token_expired(&self) -> bool {
        self.token_expires_at.is_some_and(|at| unix_now() >= at)
    }

    pub async fn state(&self) -> SessionState {
        self.state.lock().await.clone()
    }

    pub fn reserved_usd(&self) -> f64 {
        *self.reserved.lock().expect("reserved")
    }

    /// The policies that decide for this session, in evaluation order: its own rules (the session level), then
    /// its Agent's (agent, then namespace level).
    pub fn levels<'a>(&'a self, agent: &'a GovernedAgent) -> impl Iterator<Item = &'a CompiledPolicy> + Clone {
        self.own_rules.as_ref().ok().and_then(Option::as_ref).into_iter().chain(&agent.policies)
    }
}

/// Compiles a session's own rules as the session level; the error names each refused field under `policy.rules`
/// (a Session's `spec.policy.rules`).
fn compile_own_rules(id: &str, rules: &[paddock_api::PolicyRule]) -> Result<Option<CompiledPolicy>, String> {
    if rules.is_empty() {
        return Ok(None);
    }
    paddock_policy::compile_session_rules(id, rules)
        .map(Some)
        .map_err(|errors| errors.iter().map(|e| e.at("policy.rules")).collect::<Vec<_>>().join("; "))
}

/// A tool call already decided: the same id with the same tool and arguments gets the same answer. Without
/// an id there is no reuse, and a different tool or arguments under a known id are decided afresh.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct DecidedCall {
    id: String,
    tool: String,
    args: serde_json::Value,
    /// The remotes a hook read inside the workspace (see [`Event::git_remotes`]).
    git_remotes: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

impl DecidedCall {
    fn of(e: &Event) -> Option<DecidedCall> {
        let id = e.tool_id.as_deref().filter(|i| !i.is_empty())?;
        (e.phase == Phase::ToolCall).then(|| DecidedCall {
            id: id.to_owned(),
            tool: e.tool.clone().unwrap_or_default(),
            args: e.args.clone(),
            git_remotes: e.git_remotes.clone(),
        })
    }

    /// Whether `again` is this very call (its id, tool and arguments), whatever else it brings.
    fn same_call(&self, again: &DecidedCall) -> bool {
        self.id == again.id && self.tool == again.tool && self.args == again.args
    }

    /// Whether `ruling`, decided for this call, answers `again` (the same call) too. The remotes a hook reads
    /// where the call runs can change a push's verdict, so a call allowed without them (by the response gate)
    /// is decided again with them; a denial, or an answer a human gave, stands.
    fn answer_stands(&self, ruling: &Ruling, again: &DecidedCall) -> bool {
        self.git_remotes == again.git_remotes || ruling.decided_by.is_some() || !ruling.allowed()
    }
}

/// A tool call a human approved at `llm_response` (see [`Session::approved_calls`]).
struct ApprovedCall {
    id: String,
    tool: String,
    args: serde_json::Value,
    asks: Vec<(String, String)>,
    ruling: Ruling,
}

/// The call an `llm_response` ask of one tool call is about (with the asks and the pending ruling), for
/// [`Session::approved_calls`] once a human approves it.
fn asked_call(event: &Event, asks: Vec<(String, String)>, ruling: &Ruling) -> Option<ApprovedCall> {
    let ([call], Phase::LlmResponse) = (event.tool_calls.as_slice(), event.phase) else { return None };
    let id = call.id.clone().filter(|i| !i.is_empty())?;
    Some(ApprovedCall { id, tool: call.name.clone(), args: call.args.clone(), asks, ruling: ruling.clone() })
}

/// The `(policy, rule)` of each ask of a decision.
fn ask_keys(d: &paddock_policy::Decision) -> Vec<(String, String)> {
    d.asks.iter().map(|h| (h.policy.clone(), h.rule.clone())).collect()
}

/// A sub-agent start refused because its parent has `live` children alive, its team's `maxParallel`.
fn children_full(agent: &str, parent: &str, live: usize) -> GatewayError {
    GatewayError::Busy(format!(
        "agent: `{agent}` cannot start: session `{parent}` has {live} sub-agents alive, its team.maxParallel; \
         start it when one has ended"
    ))
}

/// What [`Gateway::deny_early`] found.
#[derive(Debug)]
pub enum Early {
    /// Denied, recorded and counted.
    Denied(Box<Ruling>),
    /// A rule would ask: nothing recorded.
    WouldAsk,
    /// Nothing refuses it: nothing recorded.
    Passes,
}

/// The answer to one event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Ruling {
    pub verdict: Verdict,
    pub reason: String,
    pub policy: Option<String>,
    pub rule: Option<String>,
    /// The approval an ask opened.
    pub approval_id: Option<String>,
    /// `decided`, or `pending` while an ask waits for a human.
    pub status: String,
    pub decided_by: Option<String>,
    /// The event as rules rewrote it (routing, redaction); forward this instead of the original. The decide
    /// API returns it, so a runner hands the harness the redacted prompt, not the one it sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
}

impl Ruling {
    pub fn allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    /// A deny decided now by `policy` (a policy's name, or the name of a check of the gateway's own such as
    /// `paddock/egress-ssrf`), no rule and no approval.
    /// The answer to a deny-only check that found nothing to refuse (see `check=deny-only` of the decide API).
    pub fn checked() -> Ruling {
        Ruling {
            verdict: Verdict::Allow,
            reason: "no policy refuses it where it runs; the response gate decided it".into(),
            policy: None,
            rule: None,
            approval_id: None,
            status: "checked".into(),
            decided_by: None,
            event: None,
        }
    }

    pub fn refusal(policy: Option<&str>, reason: &str) -> Ruling {
        Ruling {
            verdict: Verdict::Deny,
            reason: reason.to_owned(),
            policy: policy.map(str::to_owned),
            rule: None,
            approval_id: None,
            status: "decided".into(),
            decided_by: None,
            event: None,
        }
    }
}

/// What a human (or the timeout) decided on an ask.
#[derive(Clone, Debug)]
pub struct Resolution {
    pub approved: bool,
    pub by: String,
    pub reason: String,
}

struct PendingApproval {
    row: ApprovalRow,
    session: Arc<Session>,
    ruling: Ruling,
    updates: Vec<StateUpdate>,
    tool: Option<(String, Option<String>)>,
    /// The one tool call an `llm_response` ask is about, and the `(policy, rule)` it asks for: kept for the
    /// call's `tool_call` decision once approved (see [`Gateway::answered_ask`]).
    call: Option<ApprovedCall>,
    tx: watch::Sender<Option<Resolution>>,
}

/// Who created the session and for what; the body of `POST /v1/sessions`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSession {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub agent: String,
    pub owner: String,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub budget_usd: Option<f64>,
    #[serde(default)]
    pub model_override: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub workspace_repo: Option<String>,
    /// The RuntimeClass the session really runs in, when the controller chose one other than the Agent's
    /// (an `enforce_sandbox` rule required it); `enforce_sandbox` then judges the sandbox that exists.
    #[serde(default)]
    pub runtime_class_name: Option<String>,
    /// The Agent's brokered credentials with their secrets, as the controller read them from the
    /// Session's namespace. In local mode the gateway reads them itself (`egress.secretsDir`).
    #[serde(default)]
    pub credentials: Vec<SessionCredential>,
    /// The credentials of the Agent's remote MCP servers, as the controller read them (each names its server
    /// in `mcpServer`); apart from `credentials`, so that a gateway that does not know them refuses the
    /// session instead of brokering them.
    #[serde(default, rename = "mcpCredentials")]
    pub mcp_credentials: Vec<SessionCredential>,
    /// A sub-agent's start ([`Gateway::create_child`]): refused when its parent already has this many
    /// children alive. Not part of the API.
    #[serde(skip)]
    pub max_live_siblings: Option<usize>,
    /// The Session's own rules (`spec.policy`), evaluated before its Agent's; they may deny or ask, never
    /// allow.
    #[serde(default)]
    pub policy: Option<paddock_api::SessionPolicy>,
    /// The token's lifetime in seconds; without it the token works until the session ends. The controller
    /// gives the runner pod's deadline and some slack, so a token nobody revoked still stops.
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

/// A credential the broker injects into every request of a session to one host: the header that carries it.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionCredential {
    /// Lowercase host name.
    pub host: String,
    pub port: u16,
    /// Lowercase header name, e.g. `authorization`.
    pub header: String,
    pub value: String,
    /// Set for a remote MCP server's credential (`spec.mcpServers[].credential`): only the gateway's MCP
    /// client sends it, to that server; the egress proxy never brokers it.
    #[serde(default, rename = "mcpServer", skip_serializing_if = "Option::is_none")]
    pub mcp_server: Option<String>,
}

/// Never shows the value.
impl std::fmt::Debug for SessionCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionCredential({}:{}, {}: ***)", self.host, self.port, self.header)
    }
}

pub struct Gateway {
    pub limits: Limits,
    /// OpenTelemetry traces, when configured ([`Gateway::telemetry`]).
    telemetry: std::sync::OnceLock<crate::telemetry::Telemetry>,
    /// The credential broker: the egress configuration, the CA, the upstream TLS client.
    pub broker: crate::broker::Broker,
    pub store: Store,
    pub providers: Providers,
    pub metrics: crate::metrics::Metrics,
    policies: RwLock<Arc<PolicySet>>,
    sessions: RwLock<HashMap<String, Arc<Session>>>,
    tokens: RwLock<HashMap<String, String>>,
    users: Mutex<HashMap<(String, String), UserDaily>>,
    user_reserved: Mutex<HashMap<String, f64>>,
    owner_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    approvals: Mutex<HashMap<String, Arc<Mutex<PendingApproval>>>>,
    /// Held from the check that a session id is new until the session is in `sessions`: a SQLite store
    /// acknowledges a write before the database's unique index sees it.
    creating: tokio::sync::Mutex<()>,
    admin_hash: String,
    seq: AtomicU64,
    /// Several replicas on PostgreSQL: sessions' state, holds and owners' days live in the database (see
    /// [`crate::shared`]); `None` on SQLite, where this one gateway keeps them in memory.
    shared: Option<Shared>,
}

pub fn hash_token(token: &str) -> String {
    hex_of(&Sha256::digest(token.as_bytes()))
}

pub fn hex_of(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex_of(&buf)
}

/// An id for a row inserted at the rate of requests (audit, charges; holds too, on PostgreSQL): `{prefix}-`
/// then the time in milliseconds (12 hex digits) and 64 random bits. Ids in time order go in at the end of
/// the table's primary-key index; random ones landed on a random page of it each, so a transaction of the
/// log's records wrote back one page per row, and the applier fell behind under load (`docs/performance.md`,
/// "Gateway under sustained load"). Uniqueness is the random part's, as before.
pub fn ordered_id(prefix: &str) -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    format!("{prefix}-{:012x}{}", millis & 0xffff_ffff_ffff, random_hex(8))
}

pub fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.format(&time::format_description::well_known::Rfc3339).expect("format time")
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub fn today() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.format(time::macros::format_description!("[year]-[month]-[day]")).expect("format day")
}

/// Constant-time comparison of two hex digests.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const DECIDED_TOOLS_KEPT: usize = 1024;

/// Replicas: how often a settlement is tried before its hold is kept to be charged at its worst case.
const SETTLE_ATTEMPTS: u64 = 3;

impl Gateway {
    /// [`Gateway::with_broker`] with a broker of the default egress configuration whose CA lives in memory
    /// (tests and benchmarks; `server::build` gives the installation's).
    pub async fn new(
        limits: Limits,
        store: Store,
        providers: Providers,
        policies: PolicySet,
        admin_token: &str,
    ) -> Result<Arc<Gateway>, GatewayError> {
        let broker = crate::broker::Broker::ephemeral(crate::config::EgressConfig::default())
            .map_err(|e| GatewayError::Invalid(e.to_string()))?;
        Self::with_broker(limits, store, providers, policies, admin_token, broker).await
    }

    /// Builds the gateway from its store, reloading sessions (with their credentials), today's user spend and
    /// the audit position. Asks that were open when the gateway stopped are expired: their waiters are gone,
    /// so they fail closed.
    pub async fn with_broker(
        limits: Limits,
        store: Store,
        providers: Providers,
        policies: PolicySet,
        admin_token: &str,
        broker: crate::broker::Broker,
    ) -> Result<Arc<Gateway>, GatewayError> {
        let mut metrics = crate::metrics::Metrics::new();
        metrics.register_backlog(&store.backlog);
        let gw = Gateway {
            limits,
            telemetry: std::sync::OnceLock::new(),
            broker,
            providers,
            metrics,
            policies: RwLock::new(Arc::new(policies)),
            sessions: RwLock::new(HashMap::new()),
            tokens: RwLock::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            user_reserved: Mutex::new(HashMap::new()),
            owner_locks: Mutex::new(HashMap::new()),
            approvals: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            admin_hash: hash_token(admin_token),
            seq: AtomicU64::new(store.max_audit_seq().await? as u64),
            shared: (!store.is_sqlite())
                .then(|| Shared::new(store.pool().clone(), format!("r-{}", random_hex(6)), now())),
            store,
        };
        gw.metrics.set_revision(&gw.policies().revision);
        for row in gw.store.sessions().await? {
            let s = gw.session_from_row(row);
            if s.ended().is_none() {
                gw.tokens.write().expect("tokens").insert(s.token_hash.clone(), s.id.clone());
            }
            gw.sessions.write().expect("sessions").insert(s.id.clone(), Arc::new(s));
        }
        // A set pushed to a replica before this one started is the one the controller wants enforced.
        if let Some(shared) = &gw.shared {
            let current = gw.policies().revision.clone();
            if let Some((revision, body)) = shared.pushed_policies(&current).await? {
                match serde_json::from_str::<crate::policies::PolicyPush>(&body) {
                    Ok(push) => crate::shared::replicas::Replica::adopt(&gw, push),
                    Err(e) => tracing::error!(revision = %revision, error = %e, "the stored policy set cannot be read"),
                }
            }
        }
        let day = today();
        for (owner, cost, approved) in gw.store.user_daily(&day).await? {
            gw.users
                .lock()
                .expect("users")
                .insert((owner, day.clone()), UserDaily { day: day.clone(), cost_usd: cost, approved_usd: approved });
        }
        // Asks whose waiters are gone: a replica that stopped cannot release them. (With several replicas,
        // asks younger than the ask timeout may belong to a live one, which will finish them.)
        let mut expire = Vec::new();
        let single_replica = gw.store.is_sqlite();
        let stale = time::OffsetDateTime::now_utc() - time::Duration::seconds(gw.limits.ask_timeout_seconds as i64);
        for a in gw.store.approvals(Some("pending")).await? {
            let created = time::OffsetDateTime::parse(&a.created_at, &time::format_description::well_known::Rfc3339);
            if created.is_ok_and(|c| c > stale) && !single_replica {
                continue;
            }
            expire.push(Write::ApprovalDecided {
                id: a.id,
                status: "expired".into(),
                decided_by: "gateway".into(),
                reason: "the gateway restarted while the ask was open; ask again".into(),
                decided_at: now(),
            });
        }
        gw.store.commit(expire).await?;
        let gw = Arc::new(gw);
        if let Some(shared) = &gw.shared {
            // Beating before serving: a hold this replica takes is never taken for a dead replica's.
            shared.beat(&gw.policies().revision).await?;
            let host: std::sync::Weak<dyn crate::shared::replicas::Replica> = Arc::downgrade(&gw) as _;
            shared.spawn(host);
        }
        Ok(gw)
    }

    /// A session as its row records it (at start, or found by another replica).
    fn session_from_row(&self, row: SessionRow) -> Session {
        let state: SessionState = serde_json::from_str(&row.state).unwrap_or_default();
        let ended = row.ended_at.is_some().then(|| (row.phase.clone(), row.reason.clone().unwrap_or_default()));
        let credentials = match crate::broker::credentials::open(&self.broker.ca.sealing_key(), &row.credentials) {
            Ok(c) => c,
            Err(e) => {
                // Another CA than the one that sealed them: the session goes on without them (its brokered
                // hosts are not reached with a credential) rather than stopping the gateway.
                tracing::warn!(session = %row.id, error = %e, "cannot open the session's credentials");
                Vec::new()
            }
        };
        let own_rules = compile_own_rules(&row.id, &state.rules);
        if let Err(e) = &own_rules {
            tracing::error!(session = %row.id, error = %e, "the session's own rules no longer compile; failing closed");
        }
        Session::of(row, ended, state, credentials, own_rules)
    }

    /// Whether this gateway shares its state with other replicas through the database.
    pub fn shared(&self) -> Option<&Shared> {
        self.shared.as_ref()
    }

    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies.read().expect("policies").clone()
    }

    /// Swaps in a new revision; decisions in flight finish on the old one.
    pub fn set_policies(&self, set: PolicySet) {
        self.metrics.set_revision(&set.revision);
        *self.policies.write().expect("policies") = Arc::new(set);
    }

    /// Enforces a pushed set (`PUT /v1/policies`); with replicas, every other one picks it up from the
    /// database. Returns what could not be compiled.
    pub async fn push_policies(
        &self,
        push: &crate::policies::PolicyPush,
    ) -> Result<(Arc<PolicySet>, Vec<paddock_policy::SetError>), GatewayError> {
        let (set, errors) = push.compile();
        if let Some(shared) = &self.shared {
            shared.store_policies(push, &now()).await?;
        }
        self.set_policies(set);
        if let Some(shared) = &self.shared
            && let Err(e) = shared.beat(&push.revision).await
        {
            tracing::warn!(error = %e, "cannot record this replica's beat");
        }
        Ok((self.policies(), errors))
    }

    /// The replicas enforcing policies now, with the revision of each: this gateway alone on SQLite.
    pub async fn replicas(&self) -> Result<Vec<crate::shared::replicas::ReplicaRow>, GatewayError> {
        match &self.shared {
            Some(shared) => Ok(shared.replicas().await?),
            None => Ok(vec![crate::shared::replicas::ReplicaRow {
                id: "local".into(),
                revision: self.policies().revision.clone(),
                started_at: String::new(),
                seen_at: unix_now(),
            }]),
        }
    }

    /// Whether an enforced rule of `builtin` governs the session's requests to models (`llm_request`). Only the
    /// Agent's levels count: a rule of the session's own would otherwise switch on what the Agent's Policies
    /// never allowed (provider-side features), and a session's rules only tighten.
    pub fn governed_by(&self, s: &Session, builtin: &str) -> bool {
        let set = self.policies();
        set.agent(&s.namespace, &s.agent).is_some_and(|a| {
            a.policies
                .iter()
                .filter(|p| p.mode == paddock_api::policy::PolicyMode::Enforce)
                .flat_map(|p| &p.rules)
                .any(|r| r.uses == builtin && r.phases.contains(&Phase::LlmRequest))
        })
    }

    pub fn is_admin(&self, token: &str) -> bool {
        same(&hash_token(token), &self.admin_hash)
    }

    /// The live session a token belongs to. With replicas, a session another replica started is read from
    /// the database, and whether it ended is read again after [`REVALIDATE`].
    pub async fn session_for_token(&self, token: &str) -> Option<Arc<Session>> {
        let hash = hash_token(token);
        let id = self.tokens.read().expect("tokens").get(&hash).cloned();
        let s = match id.and_then(|id| self.session(&id)) {
            Some(s) => s,
            None if self.shared.is_some() => self.load_session(SessionKey::TokenHash, &hash).await?,
            None => return None,
        };
        if !self.still_live(&s).await {
            return None;
        }
        (s.ended().is_none() && !s.token_expired()).then_some(s)
    }

    /// With replicas: reads again whether `s` has ended once what this replica knows is older than
    /// [`REVALIDATE`]. False when the database cannot tell (refused, as a token nobody can vouch for).
    async fn still_live(&self, s: &Session) -> bool {
        let Some(shared) = &self.shared else { return true };
        if s.ended().is_some() || s.checked.lock().expect("checked").elapsed() < REVALIDATE {
            return true;
        }
        match shared.ended(&s.id).await {
            Ok(None) => {
                *s.checked.lock().expect("checked") = Instant::now();
                true
            }
            Ok(Some(end)) => {
                self.mark_ended(s, end);
                true
            }
            Err(e) => {
                tracing::warn!(session = %s.id, error = %e, "cannot read whether the session has ended; refusing");
                false
            }
        }
    }

    /// Records here that `s` has ended: its token stops working on this replica.
    fn mark_ended(&self, s: &Session, end: (String, String)) -> bool {
        {
            let mut e = s.end.lock().expect("end");
            if e.is_some() {
                return false;
            }
            *e = Some(end);
        }
        self.tokens.write().expect("tokens").remove(&s.token_hash);
        // Its hooks ask nothing more: the answers kept for repeated questions go (an ended session stays in
        // memory for reads, so it keeps only what those need).
        *s.decided_tools.lock().expect("tools") = VecDeque::new();
        true
    }

    /// A session another replica started, read from the database and kept here from now on.
    async fn load_session(&self, key: SessionKey, value: &str) -> Option<Arc<Session>> {
        let row = match self.store.session_where(key, value).await {
            Ok(r) => r?,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a session from the database");
                return None;
            }
        };
        let s = Arc::new(self.session_from_row(row));
        let s = self.sessions.write().expect("sessions").entry(s.id.clone()).or_insert(s).clone();
        if s.ended().is_none() {
            self.tokens.write().expect("tokens").insert(s.token_hash.clone(), s.id.clone());
        }
        Some(s)
    }

    /// `(phase, reason)` of the ended session a token belonged to, so that its holder can be told it ended
    /// (an ended session's token is no longer in `tokens`; this looks through the sessions, on refusals only).
    pub async fn ended_session_for_token(&self, token: &str) -> Option<(String, String)> {
        let hash = hash_token(token);
        let known = {
            let sessions = self.sessions.read().expect("sessions");
            sessions.values().find(|s| same(&s.token_hash, &hash)).cloned()
        };
        let s = match known {
            Some(s) => s,
            None if self.shared.is_some() => self.load_session(SessionKey::TokenHash, &hash).await?,
            None => return None,
        };
        self.still_live(&s).await;
        s.ended()
    }

    /// The session, as this gateway knows it (see [`Gateway::find_session`] for one another replica started).
    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.read().expect("sessions").get(id).cloned()
    }

    /// The session, read from the database when another replica started it; whether it ended is current
    /// within [`REVALIDATE`].
    pub async fn find_session(&self, id: &str) -> Option<Arc<Session>> {
        let s = self.known_session(id).await?;
        self.still_live(&s).await;
        Some(s)
    }

    /// The session as this gateway knows it, read from the database once when another replica started it;
    /// whether it ended is not read again (for what never changes: its owner, its parent).
    async fn known_session(&self, id: &str) -> Option<Arc<Session>> {
        match self.session(id) {
            Some(s) => Some(s),
            None if self.shared.is_some() => self.load_session(SessionKey::Id, id).await,
            None => None,
        }
    }

    /// The session and its ancestors, child first (sub-agent cost rolls up): parents never change, so this
    /// reads the database only for an ancestor this replica has not seen.
    async fn chain_of(&self, s: &Arc<Session>) -> Vec<Arc<Session>> {
        let mut chain = vec![s.clone()];
        while let Some(p) = chain.last().and_then(|c| c.parent.clone()) {
            match self.known_session(&p).await {
                Some(p) if !chain.iter().any(|c| c.id == p.id) => chain.push(p),
                _ => break,
            }
        }
        chain
    }

    /// The session and every session below it (its sub-agents, theirs, …), by id; `NoSession` when it is
    /// not known.
    pub async fn tree_of(&self, id: &str) -> Result<std::collections::HashSet<String>, GatewayError> {
        let all = self.all_sessions().await?;
        if !all.iter().any(|s| s.id == id) {
            return Err(GatewayError::NoSession(id.to_owned()));
        }
        let mut tree = std::collections::HashSet::from([id.to_owned()]);
        // Parents are created before their children, but not necessarily listed before them: repeat until
        // nothing is added.
        loop {
            let before = tree.len();
            for s in &all {
                if s.parent.as_ref().is_some_and(|p| tree.contains(p)) {
                    tree.insert(s.id.clone());
                }
            }
            if tree.len() == before {
                return Ok(tree);
            }
        }
    }

    /// The ids of the session's children that have not ended (on every replica).
    async fn live_children(&self, id: &str) -> Result<Vec<String>, GatewayError> {
        Ok(match &self.shared {
            Some(shared) => shared.live_children(id).await?,
            None => self
                .sessions()
                .into_iter()
                .filter(|c| c.parent.as_deref() == Some(id) && c.ended().is_none())
                .map(|c| c.id.clone())
                .collect(),
        })
    }

    /// The session's state and what its requests in flight hold, as of now (on every replica).
    pub async fn spend_of(&self, s: &Session) -> Result<(SessionState, f64), GatewayError> {
        match &self.shared {
            Some(shared) => Ok(shared.state(&s.id).await?),
            None => Ok((s.state().await, s.reserved_usd())),
        }
    }

    pub fn sessions(&self) -> Vec<Arc<Session>> {
        let mut v: Vec<_> = self.sessions.read().expect("sessions").values().cloned().collect();
        v.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        v
    }

    /// Every session, those other replicas started included.
    pub async fn all_sessions(&self) -> Result<Vec<Arc<Session>>, GatewayError> {
        if self.shared.is_some() {
            for row in self.store.sessions().await? {
                let known = self.session(&row.id);
                match known {
                    Some(s) => {
                        if let (None, Some(_)) = (s.ended(), &row.ended_at) {
                            self.mark_ended(&s, (row.phase.clone(), row.reason.clone().unwrap_or_default()));
                        }
                    }
                    None => {
                        let s = Arc::new(self.session_from_row(row));
                        self.sessions.write().expect("sessions").entry(s.id.clone()).or_insert(s);
                    }
                }
            }
        }
        Ok(self.sessions())
    }

    /// Registers a session and issues its token (returned once; only its hash is kept).
    pub async fn create_session(&self, req: NewSession) -> Result<(Arc<Session>, String), GatewayError> {
        let namespace = req.namespace.clone().unwrap_or_else(|| "default".into());
        let id = match &req.id {
            Some(id) => {
                let ok = !id.is_empty()
                    && id.len() <= 63
                    && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !id.starts_with('-')
                    && !id.ends_with('-');
                if !ok {
                    return Err(GatewayError::Invalid(format!(
                        "id: `{id}` must be 1-63 lowercase letters, digits or '-', starting and ending alphanumeric"
                    )));
                }
                id.clone()
            }
            None => format!("s-{}", random_hex(6)),
        };
        if req.owner.trim().is_empty() {
            return Err(GatewayError::Invalid("owner: required".into()));
        }
        if let Some(b) = req.budget_usd
            && !(b.is_finite() && b > 0.0)
        {
            return Err(GatewayError::Invalid(format!("budgetUsd: must be more than 0, got {b}")));
        }
        let set = self.policies();
        let Some(agent) = set.agent(&namespace, &req.agent) else {
            let mut known: Vec<String> =
                set.agents().filter(|a| a.namespace == namespace).map(|a| a.name.clone()).collect();
            known.sort();
            return Err(GatewayError::Invalid(format!(
                "agent: `{}` is not loaded in namespace `{namespace}` (revision {}); loaded: {}",
                req.agent,
                set.revision,
                if known.is_empty() { "none".into() } else { known.join(", ") }
            )));
        };
        let parent = match &req.parent {
            None => None,
            Some(p) => match self.find_session(p).await {
                Some(ps) if ps.ended().is_none() && ps.namespace == namespace => Some(ps),
                Some(_) => return Err(GatewayError::Invalid(format!("parent: session `{p}` has ended"))),
                None => return Err(GatewayError::Invalid(format!("parent: session `{p}` does not exist"))),
            },
        };
        let own = req.policy.map(|p| p.rules).unwrap_or_default();
        // Checked alone first, so that an error names the rule as the caller wrote it.
        compile_own_rules(&id, &own).map_err(GatewayError::Invalid)?;
        let token_expires_at = match req.expires_in_seconds {
            None => None,
            Some(0) => return Err(GatewayError::Invalid("expiresInSeconds: a token lives at least 1 second".into())),
            Some(secs) => Some(unix_now().saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))),
        };
        // A sub-agent's session, however it is started (the runner's `children` call, or a Kubernetes Session
        // with `parentRef`), runs under its parent's own rules first and its token never outlives the
        // parent's: delegating is no way around either.
        let (rules, token_expires_at) = match &parent {
            None => (own, token_expires_at),
            Some(ps) => {
                let mut rules = ps.state().await.rules;
                for (i, r) in own.iter().enumerate() {
                    if rules.iter().any(|p| p.name == r.name) {
                        return Err(GatewayError::Invalid(format!(
                            "policy.rules[{i}].name: `{}` is also a rule of the parent session's own rules, which \
                             this session inherits; rename it",
                            r.name
                        )));
                    }
                }
                rules.extend(own);
                let expiry = [token_expires_at, ps.token_expires_at].into_iter().flatten().min();
                (rules, expiry)
            }
        };
        let own_rules = compile_own_rules(&id, &rules).map_err(GatewayError::Invalid)?;
        let _creating = self.creating.lock().await;
        if self.session(&id).is_some() {
            return Err(GatewayError::Conflict(format!("session `{id}` already exists")));
        }
        let spec = &agent.spec;
        let credentials = crate::broker::credentials::resolve(
            spec,
            req.credentials,
            req.mcp_credentials,
            self.broker.config().secrets_dir.as_deref(),
        )
        .map_err(|e| GatewayError::Invalid(format!("agent `{}`: {e}", agent.name)))?;
        let state = SessionState {
            session: id.clone(),
            agent: agent.name.clone(),
            labels: agent.labels.clone(),
            owner: req.owner.clone(),
            harness: Some(serde_json::to_value(spec.harness).ok().and_then(|v| v.as_str().map(str::to_owned)))
                .flatten(),
            model: Some(req.model_override.clone().unwrap_or_else(|| spec.model.clone())),
            budget_usd: req.budget_usd,
            workspace_repo: req.workspace_repo.clone(),
            sandbox: paddock_policy::state::SandboxFacts {
                runtime_class_name: req.runtime_class_name.clone().or_else(|| spec.sandbox.runtime_class_name.clone()),
                egress: spec.sandbox.egress.clone(),
                writable_paths: spec.sandbox.writable_paths.clone(),
                brokered: credentials
                    .iter()
                    .filter(|c| c.mcp_server.is_none())
                    .map(|c| format!("{}:{}", c.host, c.port))
                    .collect(),
            },
            environment: Some(req.environment.clone().unwrap_or_else(|| "local".into())),
            rules,
            token_expires_at,
            ..SessionState::default()
        };
        let token = format!("pdk_{}", random_hex(32));
        let row = SessionRow {
            id: id.clone(),
            namespace: namespace.clone(),
            agent: agent.name.clone(),
            owner: req.owner.clone(),
            parent: req.parent.clone(),
            token_hash: hash_token(&token),
            phase: "Running".into(),
            reason: None,
            created_at: now(),
            ended_at: None,
            state: serde_json::to_string(&state).expect("state json"),
            credentials: crate::broker::credentials::seal(&self.broker.ca.sealing_key(), &credentials),
        };
        let inserted = match (&self.shared, &req.parent) {
            // Replicas: the parent's end, on any replica, waits for this insert and then ends the child too;
            // its live children are counted under the same lock.
            (Some(shared), Some(p)) => shared.insert_child(&row, p, req.max_live_siblings).await,
            _ => self.store.commit(vec![Write::SessionNew(row.clone())]).await.map(|()| ChildInsert::Inserted),
        };
        let inserted = inserted.map_err(|e| match e {
            StoreError::Db(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                GatewayError::Conflict(format!("session `{id}` already exists"))
            }
            e => e.into(),
        })?;
        let parent = req.parent.as_deref().unwrap_or_default();
        match inserted {
            ChildInsert::Inserted => {}
            ChildInsert::ParentEnded => {
                return Err(GatewayError::Invalid(format!("parent: session `{parent}` has ended")));
            }
            ChildInsert::Full(live) => return Err(children_full(&req.agent, parent, live)),
        }
        let hash = row.token_hash.clone();
        let s = Arc::new(Session::of(row, None, state, credentials, Ok(own_rules)));
        self.sessions.write().expect("sessions").insert(id.clone(), s.clone());
        self.tokens.write().expect("tokens").insert(hash, id);
        Ok((s, token))
    }

    /// Starts a sub-agent's session: `agent` must be one of the parent Agent's `subAgents`. The child has its
    /// own policies (its Agent's) and token; its cost also counts against the parent.
    pub async fn create_child(&self, parent: &Session, agent: &str) -> Result<(Arc<Session>, String), GatewayError> {
        let set = self.policies();
        let spec = set
            .agent(&parent.namespace, &parent.agent)
            .ok_or_else(|| GatewayError::Invalid(format!("agent `{}` is not loaded", parent.agent)))?;
        if !spec.spec.sub_agents.iter().any(|a| a == agent) {
            return Err(GatewayError::Invalid(format!(
                "agent: `{agent}` is not among the sub-agents of `{}` ({})",
                parent.agent,
                if spec.spec.sub_agents.is_empty() {
                    "it has none".to_owned()
                } else {
                    spec.spec.sub_agents.join(", ")
                }
            )));
        }
        // The team's bounds, from every Agent above the new session: how deep it would nest below each
        // (an Agent without `team` keeps the defaults), and how many children its parent has alive.
        let chain = self
            .chain_of(&self.known_session(&parent.id).await.ok_or_else(|| GatewayError::NoSession(parent.id.clone()))?)
            .await;
        for (i, above) in chain.iter().enumerate() {
            let depth = i as u32 + 1;
            let max = set
                .agent(&above.namespace, &above.agent)
                .and_then(|a| a.spec.team.clone())
                .unwrap_or_default()
                .max_depth;
            if depth > max {
                return Err(GatewayError::Invalid(format!(
                    "agent: `{agent}` cannot start: it would nest {depth} deep below session `{}` of agent `{}`, \
                     whose team.maxDepth is {max}",
                    above.id, above.agent
                )));
            }
        }
        let team = spec.spec.team.clone().unwrap_or_default();
        // One start at a time per parent, so that two starts cannot both see room for one more. With replicas
        // the live children are counted in the insert's own transaction instead (see `create_session`).
        let _starting = parent.starting.lock().await;
        if self.shared.is_none() {
            let live = self.live_children(&parent.id).await?.len();
            if live >= team.max_parallel as usize {
                return Err(children_full(agent, &parent.id, live));
            }
        }
        // A child spends from what its parent has left: the parent's own budget and every hard limit that
        // governs it, less what it has spent and holds.
        let (st, reserved) = self.spend_of(parent).await?;
        let spent = st.usage.cost_usd + reserved;
        let own = st.budget_usd.map(|b| b - spent);
        let model = st.model.clone().unwrap_or_default();
        let by_rules = paddock_policy::headroom_usd(parent.levels(spec), &model, &st).map(|h| h - reserved);
        let headroom = [own, by_rules].into_iter().flatten().reduce(f64::min);
        if let Some(b) = headroom
            && b <= 0.0
        {
            return Err(GatewayError::Invalid(format!(
                "agent: `{agent}` cannot start: session `{}` has no budget left",
                parent.id
            )));
        }
        // Its share of that, and the team's fixed amount: the smallest applies.
        let share = match (headroom, team.budget_share) {
            (Some(h), Some(f)) => Some(h * f),
            _ => None,
        };
        let budget = [headroom, share, team.child_budget_usd].into_iter().flatten().reduce(f64::min);
        // A share is a hard limit of the child's own, whatever its Agent's policies say: a rule of its session.
        let policy = match (team.budget_share, team.child_budget_usd, budget) {
            (None, None, _) | (_, _, None) => None,
            (_, _, Some(b)) => Some(paddock_api::SessionPolicy {
                rules: vec![paddock_api::PolicyRule {
                    name: format!("team-budget-share-{}", chain.len()),
                    uses: "cost_budget".into(),
                    params: Some(serde_json::json!({"max_cost_usd": b})),
                    on: Vec::new(),
                    action: None,
                }],
            }),
        };
        // Where the gateway cannot read Secrets itself (Kubernetes: the controller hands them over, and it
        // never sees a sub-agent start), a child gets its parent's credential for each host its own Agent
        // brokers: never more hosts than the child's Agent names, never a credential the parent did not hold.
        let mut credentials = Vec::new();
        if self.broker.config().secrets_dir.is_none()
            && let Some(child) = set.agent(&parent.namespace, agent)
        {
            for (i, c) in child.spec.credentials.iter().enumerate() {
                let held = c.host_port().and_then(|(host, port)| {
                    parent
                        .credentials
                        .iter()
                        .find(|p| p.host == host && p.port == port && p.mcp_server.is_none())
                        .cloned()
                });
                let Some(held) = held else {
                    return Err(GatewayError::Invalid(format!(
                        "agent: `{agent}` cannot start: its spec.credentials[{i}] (`{}`) is not brokered for \
                         session `{}`; a sub-agent borrows its credentials from its parent",
                        c.host, parent.id
                    )));
                };
                credentials.push(held);
            }
            // An MCP server's credential, for a server of the same name and host the parent holds one for.
            for m in child.spec.mcp_servers.iter().filter(|m| m.credential.is_some()) {
                let held = m.host_port().and_then(|(host, port)| {
                    parent
                        .credentials
                        .iter()
                        .find(|p| p.mcp_server.as_deref() == Some(m.name.as_str()) && p.host == host && p.port == port)
                });
                let Some(held) = held else {
                    return Err(GatewayError::Invalid(format!(
                        "agent: `{agent}` cannot start: its MCP server `{}` has a credential session `{}` does not \
                         hold; a sub-agent borrows its credentials from its parent",
                        m.name, parent.id
                    )));
                };
                credentials.push(held.clone());
            }
        }
        self.create_session(NewSession {
            namespace: Some(parent.namespace.clone()),
            agent: agent.to_owned(),
            owner: parent.owner.clone(),
            parent: Some(parent.id.clone()),
            budget_usd: budget,
            policy,
            credentials,
            // Replicas count the live children again under the parent's row lock (this replica's lock
            // above holds here only).
            max_live_siblings: Some(team.max_parallel as usize),
            // The parent's own rules and its token's lifetime bind the child: `create_session` sees to both.
            ..NewSession::default()
        })
        .await
    }

    /// Writes an event of the gateway's own to the session's transcript (a decision, an ask, its answer, the
    /// end), marked `source: gateway`. The decision stands whether or not this write succeeds.
    async fn record(&self, s: &Session, kind: &str, fields: serde_json::Value) {
        let mut ev = serde_json::json!({"type": kind, "source": TRANSCRIPT_GATEWAY});
        if let (Some(o), serde_json::Value::Object(f)) = (ev.as_object_mut(), fields) {
            for (k, v) in f {
                o.entry(k).or_insert(v);
            }
        }
        if let Err(e) = self.append_events(s, vec![ev]).await {
            tracing::error!(error = %e, session = %s.id, kind, "could not write the gateway's transcript event");
        }
    }

    /// Appends transcript events (each a JSON object with a `type`); durable before it returns.
    pub async fn append_events(&self, s: &Session, events: Vec<serde_json::Value>) -> Result<i64, GatewayError> {
        if let Some(shared) = &self.shared {
            let texts: Vec<String> = events.iter().map(|e| e.to_string()).collect();
            let first = shared.append_events(&s.id, &now(), &texts).await?;
            let mut seq = first;
            for e in events {
                let _ = s.live.send((seq, Arc::new(e)));
                seq += 1;
            }
            return Ok(seq);
        }
        let mut next = s.next_event.lock().await;
        let mut seq = match *next {
            Some(n) => n,
            None => self.store.max_event_seq(&s.id).await? + 1,
        };
        let ts = now();
        let mut writes = Vec::with_capacity(events.len());
        let mut live = Vec::with_capacity(events.len());
        for e in events {
            writes.push(Write::Event { session: s.id.clone(), seq, ts: ts.clone(), event: e.to_string() });
            live.push((seq, Arc::new(e)));
            seq += 1;
        }
        self.store.commit(writes).await?;
        *next = Some(seq);
        for ev in live {
            let _ = s.live.send(ev);
        }
        Ok(seq)
    }

    /// Follows a session's transcript: the receiver gets events appended from now on.
    pub fn follow(&self, s: &Session) -> tokio::sync::broadcast::Receiver<(i64, Arc<serde_json::Value>)> {
        s.live.subscribe()
    }

    /// Ends a session: its token stops working and its open asks are denied.
    pub async fn end_session(&self, id: &str, phase: &str, reason: &str) -> Result<(), GatewayError> {
        let s = self.find_session(id).await.ok_or_else(|| GatewayError::NoSession(id.into()))?;
        if !matches!(phase, "Succeeded" | "Failed") {
            return Err(GatewayError::Invalid(format!("phase: must be Succeeded or Failed, got `{phase}`")));
        }
        if s.ended().is_some() {
            return Ok(());
        }
        // Durable first: a session whose end is not recorded would come back with a live token after a restart.
        self.store
            .commit(vec![Write::SessionEnd {
                id: id.into(),
                phase: phase.into(),
                reason: reason.into(),
                ended_at: now(),
            }])
            .await?;
        if !self.mark_ended(&s, (phase.into(), reason.into())) {
            return Ok(());
        }
        if let Some(shared) = &self.shared {
            shared.forget_tools(id).await?;
        }
        for c in self.live_children(id).await? {
            Box::pin(self.end_session(&c, phase, &format!("its parent session ended: {reason}"))).await?;
        }
        // Its open asks, wherever they wait: one held by another replica is denied in the database, and that
        // replica releases it when it sees the answer.
        let mut open: Vec<String> = self
            .approvals
            .lock()
            .expect("approvals")
            .iter()
            .filter(|(_, p)| p.lock().expect("approval").session.id == id)
            .map(|(k, _)| k.clone())
            .collect();
        if self.shared.is_some() {
            for a in self.store.approvals(Some("pending")).await? {
                if a.session == id && !open.contains(&a.id) {
                    open.push(a.id);
                }
            }
        }
        for a in open {
            let _ = self
                .resolve(&a, Resolution { approved: false, by: "gateway".into(), reason: "the session ended".into() })
                .await;
        }
        self.record(&s, "done", serde_json::json!({"phase": phase, "message": reason})).await;
        Ok(())
    }

    fn owner_lock(&self, owner: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.owner_locks.lock().expect("owner locks").entry(owner.to_owned()).or_default().clone()
    }

    /// The owner's spend today as the engine should see it, with in-flight reservations counted.
    fn user_view(&self, owner: &str) -> UserDaily {
        let day = today();
        let mut u = self
            .users
            .lock()
            .expect("users")
            .get(&(owner.to_owned(), day.clone()))
            .cloned()
            .unwrap_or(UserDaily { day, ..UserDaily::default() });
        u.cost_usd += self.user_reserved.lock().expect("reserved").get(owner).copied().unwrap_or(0.0);
        u
    }

    fn audit_row(&self, s: &Session, revision: &str, phase: Phase, tool: Option<(String, Option<String>)>) -> AuditRow {
        let (tool, tool_id) = tool.map_or((None, None), |(t, id)| (Some(t), id));
        AuditRow {
            id: ordered_id("d"),
            seq: self.seq.fetch_add(1, Ordering::Relaxed) as i64 + 1,
            ts: now(),
            session: s.id.clone(),
            agent: s.agent.clone(),
            owner: s.owner.clone(),
            revision: revision.to_owned(),
            phase: Phase::as_str(phase).to_owned(),
            policy: None,
            rule: None,
            verdict: String::new(),
            reason: String::new(),
            tool,
            tool_id,
            approval_id: None,
            decided_by: None,
        }
    }

    /// An audit row for something a person did in the web console rather than a policy decided (a share link
    /// made or revoked): `phase` and `verdict` say what, `by` who.
    pub fn person_audit_row(&self, s: &Session, phase: &str, verdict: &str, by: &str, reason: String) -> AuditRow {
        let mut row = self.audit_row(s, &self.policies().revision, Phase::ToolCall, None);
        row.phase = phase.to_owned();
        row.verdict = verdict.to_owned();
        row.decided_by = Some(by.to_owned());
        row.reason = reason;
        row
    }

    /// The tracer, when traces are on.
    pub fn telemetry(&self) -> Option<&crate::telemetry::Telemetry> {
        self.telemetry.get()
    }

    /// Turns traces on (once, as the gateway is built).
    pub fn trace_with(&self, telemetry: crate::telemetry::Telemetry) {
        let _ = self.telemetry.set(telemetry);
    }

    /// Records a refusal the gateway made itself, before any policy ran (`policy` names the gateway's check,
    /// e.g. `paddock/provider-features`): a deny row in the audit log and a verdict in the transcript.
    pub async fn refuse(&self, s: &Session, phase: Phase, policy: &str, reason: &str) -> Result<(), GatewayError> {
        let set = self.policies();
        let mut audit = self.audit_row(s, &set.revision, phase, None);
        audit.policy = Some(policy.to_owned());
        audit.verdict = "deny".into();
        audit.reason = reason.to_owned();
        self.store.commit(vec![Write::Audit(audit)]).await?;
        let ruling = Ruling::refusal(Some(policy), reason);
        let event = Event { phase, ..Event::default() };
        if let Some(t) = self.telemetry() {
            t.decision(&s.id, phase.as_str(), None, Some(&ruling), std::time::SystemTime::now());
        }
        self.count(phase, &ruling, Instant::now());
        self.record(s, "verdict", verdict_fields(&event, &ruling)).await;
        Ok(())
    }

    /// Decides one event for a session. An ask opens an approval and waits up to `wait` for it; after that
    /// the ruling is `pending` (the approval stays open until a human decides or it expires).
    pub async fn decide(
        self: &Arc<Self>,
        s: &Arc<Session>,
        event: Event,
        wait: Duration,
    ) -> Result<Ruling, GatewayError> {
        let d = self.decide_deferred(s, event, wait, 0.0).await?;
        d.durable.wait().await?;
        Ok(d.ruling)
    }

    /// [`Gateway::decide`], returning before an allow or deny is durable: the caller waits on the handle
    /// before anything it decided becomes visible (the LLM proxy overlaps the commit with the upstream
    /// call). Asks are always durable before they wait for a human.
    ///
    /// `hold_usd` is a model request's worst-case cost: when allowed, it is reserved in the same critical
    /// section that decided, so that concurrent requests see each other's holds and together pass a hard
    /// limit by at most one hold.
    pub async fn decide_deferred(
        self: &Arc<Self>,
        s: &Arc<Session>,
        event: Event,
        wait: Duration,
        hold_usd: f64,
    ) -> Result<Decided, GatewayError> {
        match self.decide_or_pass(s, event, wait, hold_usd, None).await? {
            Some(d) => Ok(d),
            None => unreachable!("only an early decision passes"),
        }
    }

    /// Decides `event` only to refuse it early. `event` is a lenient reading of what is asked (a push with
    /// every update taken as fast-forward, before its ancestry is known), and `reading` says how, for the
    /// record. A deny is recorded, counted and answered as [`Gateway::decide`] does, its reason followed by
    /// ` (reading)`. Any other verdict passes: nothing is recorded, no state changes, `None`; the caller
    /// then decides the real event, which is the one recorded. One critical section, so the verdict cannot
    /// change between the check and the record.
    pub async fn deny_early(
        self: &Arc<Self>,
        s: &Arc<Session>,
        event: Event,
        reading: &str,
    ) -> Result<Early, GatewayError> {
        let decided = self.decide_or_pass(s, event, Duration::ZERO, 0.0, Some(reading)).await?;
        match decided {
            Some(d) if d.ruling.verdict == Verdict::Ask => Ok(Early::WouldAsk),
            Some(d) => {
                d.durable.wait().await?;
                Ok(Early::Denied(Box::new(d.ruling)))
            }
            None => Ok(Early::Passes),
        }
    }

    /// [`Gateway::decide_deferred`]; with `early` ([`Gateway::deny_early`]), only a deny is decided. With
    /// traces on, each decision is a span under the current one (an early check that passes is none).
    async fn decide_or_pass(
        self: &Arc<Self>,
        s: &Arc<Session>,
        event: Event,
        wait: Duration,
        hold_usd: f64,
        early: Option<&str>,
    ) -> Result<Option<Decided>, GatewayError> {
        let Some(t) = self.telemetry() else { return self.decide_untraced(s, event, wait, hold_usd, early).await };
        let started = std::time::SystemTime::now();
        let (phase, tool) = (event.phase, event.tool.clone());
        let decided = self.decide_untraced(s, event, wait, hold_usd, early).await;
        match &decided {
            Ok(Some(d)) => t.decision(&s.id, phase.as_str(), tool.as_deref(), Some(&d.ruling), started),
            Ok(None) => {}
            Err(_) => t.decision(&s.id, phase.as_str(), tool.as_deref(), None, started),
        }
        decided
    }

    async fn decide_untraced(
        self: &Arc<Self>,
        s: &Arc<Session>,
        event: Event,
        wait: Duration,
        hold_usd: f64,
        early: Option<&str>,
    ) -> Result<Option<Decided>, GatewayError> {
        let started = Instant::now();
        if s.ended().is_some() {
            return Err(GatewayError::SessionEnded(s.id.clone()));
        }
        let tool = match &event.tool {
            Some(t) => Some((t.clone(), event.tool_id.clone())),
            // An egress or push decision names where it goes in the audit row's `tool` column (there is no tool).
            None if matches!(event.phase, Phase::Egress | Phase::GitPush) => Some((summary(&event), None)),
            None => event.tool_calls.first().map(|c| (c.name.clone(), c.id.clone())),
        };
        // A call decided before (the same id, tool and arguments) whose answer does not stand for this one is
        // decided again; its state updates were applied the first time (a tool-call count, a loop history
        // entry), so the second decision must not apply them again.
        let mut decided_before = false;
        let key = DecidedCall::of(&event).filter(|_| early.is_none());
        if let Some(key) = &key {
            for (k, r) in s.decided_tools.lock().expect("tools").iter().filter(|(k, _)| k.same_call(key)) {
                if k.answer_stands(r, key) {
                    return Ok(Some(Decided::now(r.clone(), crate::store::Pending::done())));
                }
                decided_before = true;
            }
        }
        let set = self.policies();
        let mut audit = self.audit_row(s, &set.revision, event.phase, tool.clone());
        let agent = set.agent(&s.namespace, &s.agent);
        let refused = match (&agent, &s.own_rules) {
            (None, _) => Some(format!(
                "agent `{}/{}` is not loaded in revision {} (removed, or its policies do not compile); failing closed",
                s.namespace, s.agent, set.revision
            )),
            (_, Err(e)) => Some(format!("the session's own rules do not compile ({e}); failing closed")),
            _ => None,
        };
        if let Some(reason) = refused {
            let ruling = Ruling::refusal(None, &reason);
            audit.verdict = "deny".into();
            audit.reason = ruling.reason.clone();
            let durable = self.store.enqueue(vec![Write::Audit(audit)]).await?;
            self.count(event.phase, &ruling, started);
            self.record(s, "verdict", verdict_fields(&event, &ruling)).await;
            return Ok(Some(Decided::now(ruling, durable)));
        }
        let agent = agent.expect("refused above when missing");
        // A model request's hold counts against the owner's day too: requests of the owner's other sessions
        // must see it, so the check and the hold happen under the owner's lock.
        // One day for the decision: the owner's row it locks is the one its hold counts against.
        let day = today();
        let (mut guard, reserved) = self.lock_state(s, hold_usd > 0.0, &day).await?;
        // Replicas: another replica (its response gate, or a hook asking at the same moment) may have decided
        // this call; read under the session's lock, so that two replicas never both count it.
        if let (Some(key), false, StateGuard::Shared(locked)) = (&key, decided_before, &mut guard)
            && let Some((call, ruling)) = locked.decided_tool(&key.id).await?
            && let (Ok(k), Ok(r)) =
                (serde_json::from_str::<DecidedCall>(&call), serde_json::from_str::<Ruling>(&ruling))
            && k.same_call(key)
        {
            if k.answer_stands(&r, key) {
                return Ok(Some(Decided::now(r, crate::store::Pending::done())));
            }
            decided_before = true;
        }
        let st = guard.state();
        let view = if reserved > 0.0 {
            let mut view = st.clone();
            view.usage.cost_usd += reserved;
            std::borrow::Cow::Owned(view)
        } else {
            std::borrow::Cow::Borrowed(&*st)
        };
        let mut decision = evaluate(&event, &view, s.levels(agent));
        if let Some(reading) = early {
            match decision.verdict {
                Verdict::Allow => return Ok(None),
                // Nothing recorded: the caller says what an ask means for it.
                Verdict::Ask => {
                    let ruling = Ruling { verdict: Verdict::Ask, ..Ruling::refusal(None, &decision.reason) };
                    return Ok(Some(Decided::now(ruling, crate::store::Pending::done())));
                }
                Verdict::Deny => decision.reason = format!("{} ({reading})", decision.reason.trim_end()),
            }
        }
        if decided_before {
            decision.state_updates.clear();
        }
        let model = decision.event.as_ref().and_then(|e| e.model.clone()).or_else(|| event.model.clone());
        let headroom = match (&model, event.phase) {
            (Some(m), Phase::LlmRequest) => paddock_policy::headroom_usd(s.levels(agent), m, &view),
            _ => None,
        };
        drop(view);
        let mut ruling = Ruling {
            verdict: decision.verdict,
            reason: decision.reason.clone(),
            policy: decision.policy.clone(),
            rule: decision.rule.clone(),
            approval_id: None,
            status: "decided".into(),
            decided_by: None,
            event: decision.event.clone(),
        };
        let mut writes = Vec::new();
        for hit in &decision.audit {
            let mut a = self.audit_row(s, &set.revision, event.phase, tool.clone());
            a.policy = Some(hit.policy.clone());
            a.rule = Some(hit.rule.clone());
            a.verdict = format!("audit:{}", Verdict::as_str(hit.verdict));
            a.reason = hit.reason.clone();
            writes.push(Write::Audit(a));
        }
        if let Some(answered) = self.answered_ask(s, &event, &decision) {
            // A human already approved this very call for these rules when the response gate asked.
            decision.verdict = Verdict::Allow;
            decision.reason = format!(
                "approved by {} for this call at llm_response ({})",
                answered.decided_by.as_deref().unwrap_or("a human"),
                answered.approval_id.as_deref().unwrap_or("approval")
            );
            ruling.verdict = Verdict::Allow;
            ruling.reason = decision.reason.clone();
            ruling.decided_by = answered.decided_by;
            ruling.approval_id = answered.approval_id;
        }
        audit.policy = decision.policy.clone();
        audit.rule = decision.rule.clone();
        audit.verdict = Verdict::as_str(decision.verdict).into();
        audit.reason = decision.reason.clone();
        let asked = ask_keys(&decision);
        match decision.verdict {
            Verdict::Allow => {
                self.apply(s, guard.state(), &decision.state_updates, &mut writes);
                writes.push(Write::Audit(audit));
                let hold =
                    (hold_usd > 0.0).then(|| self.hold_row(s, hold_usd, model.as_deref().unwrap_or_default(), &day));
                remember_with(&mut guard, &event, &ruling);
                let durable = self.commit_state(guard, s, writes, hold.as_ref()).await?;
                let reservation = hold.map(|h| self.reservation(s, h));
                self.remember_tool(s, &event, &ruling, true).await;
                self.count(event.phase, &ruling, started);
                Ok(Some(Decided { ruling, durable, reservation, headroom_usd: headroom }))
            }
            Verdict::Deny => {
                writes.push(Write::Audit(audit));
                remember_with(&mut guard, &event, &ruling);
                let durable = self.commit_state(guard, s, writes, None).await?;
                self.remember_tool(s, &event, &ruling, true).await;
                self.count(event.phase, &ruling, started);
                self.record(s, "verdict", verdict_fields(&event, &ruling)).await;
                Ok(Some(Decided::now(ruling, durable)))
            }
            Verdict::Ask => {
                let id = format!("a-{}", random_hex(6));
                let row = ApprovalRow {
                    id: id.clone(),
                    session: s.id.clone(),
                    phase: Phase::as_str(event.phase).into(),
                    summary: summary(&event),
                    reason: decision.reason.clone(),
                    policy: decision.policy.clone(),
                    rule: decision.rule.clone(),
                    status: "pending".into(),
                    decided_by: None,
                    decision_reason: None,
                    created_at: now(),
                    decided_at: None,
                };
                audit.approval_id = Some(id.clone());
                writes.push(Write::ApprovalNew(row.clone()));
                writes.push(Write::Audit(audit));
                let pending = self.commit_state(guard, s, writes, None).await?;
                pending.wait().await?;
                ruling.approval_id = Some(id.clone());
                ruling.status = "pending".into();
                let (tx, _) = watch::channel(None);
                let pending = PendingApproval {
                    row,
                    session: s.clone(),
                    ruling: ruling.clone(),
                    updates: decision.state_updates.clone(),
                    tool: tool.clone(),
                    call: asked_call(&event, asked, &ruling),
                    tx,
                };
                self.approvals.lock().expect("approvals").insert(id.clone(), Arc::new(Mutex::new(pending)));
                self.expire_later(id.clone());
                self.count(event.phase, &ruling, started);
                let mut ask = verdict_fields(&event, &ruling);
                ask["approval"] = id.clone().into();
                // The final answer waits for a human: the transcript (which outlives a deny) names it without
                // its text; the approver reads it in the approval.
                ask["summary"] = match event.phase {
                    Phase::Response => format!(
                        "the final answer ({} characters), shown to approvers until it is allowed",
                        event.text.as_deref().map_or(0, |t| t.chars().count())
                    )
                    .into(),
                    _ => summary(&event).into(),
                };
                ask["status"] = "pending".into();
                self.record(s, "ask", ask).await;
                let final_ruling = self.wait_for(&id, wait).await?;
                if final_ruling.status == "decided" {
                    self.remember_tool(s, &event, &final_ruling, false).await;
                }
                let reservation = match final_ruling.allowed() && hold_usd > 0.0 {
                    true => Some(self.reserve(s, hold_usd, model.as_deref().unwrap_or_default()).await?),
                    false => None,
                };
                Ok(Some(Decided {
                    ruling: final_ruling,
                    durable: crate::store::Pending::done(),
                    reservation,
                    headroom_usd: headroom,
                }))
            }
        }
    }

    /// Locks the session's state for a decision (and the owner's day with `owner`): in memory on one
    /// gateway, in the database with replicas. Returns what the session's requests in flight hold.
    async fn lock_state<'a>(
        &self,
        s: &'a Session,
        owner: bool,
        day: &str,
    ) -> Result<(StateGuard<'a>, f64), GatewayError> {
        // Back-pressure before any lock: nobody waits behind a lock held while the database catches up.
        self.store.admit().await?;
        let Some(shared) = &self.shared else {
            let owner = match owner {
                true => Some(self.owner_lock(&s.owner).lock_owned().await),
                false => None,
            };
            let mut st = s.state.lock().await;
            st.user_daily = self.user_view(&s.owner);
            return Ok((StateGuard::Local { st, _owner: owner }, s.reserved_usd()));
        };
        let mut locked = shared.lock(&s.id, &s.owner, day, owner).await?;
        if let Some(end) = locked.ended.clone() {
            self.mark_ended(s, end);
            return Err(GatewayError::SessionEnded(s.id.clone()));
        }
        locked.state.user_daily = locked.user_view();
        let reserved = locked.reserved;
        Ok((StateGuard::Shared(Box::new(locked)), reserved))
    }

    /// Writes a decision's rows and releases the lock, holding `hold` for an allowed model request before
    /// the lock goes. On one gateway the rows are durable once the returned handle says so; with replicas they
    /// are committed (with the hold) before this returns.
    async fn commit_state(
        &self,
        guard: StateGuard<'_>,
        s: &Session,
        writes: Vec<Write>,
        hold: Option<&HoldRow>,
    ) -> Result<crate::store::Pending, GatewayError> {
        match guard {
            StateGuard::Local { st, _owner } => {
                let durable = self.store.enqueue(writes).await?;
                if let Some(h) = hold {
                    self.hold_in_memory(s, h.usd);
                }
                drop(st);
                Ok(durable)
            }
            StateGuard::Shared(mut locked) => {
                let mut guard = None;
                if let (Some(h), Some(shared)) = (hold, &self.shared) {
                    locked.hold(h.clone(), &shared.replica);
                    guard = Some(shared.guard(h.reference()));
                }
                locked.commit(&writes).await?;
                // Committed: the caller's Reservation (made before any other await) gives it back from now on.
                if let Some(mut g) = guard {
                    g.disarm();
                }
                Ok(crate::store::Pending::done())
            }
        }
    }

    fn hold_row(&self, s: &Session, usd: f64, model: &str, day: &str) -> HoldRow {
        HoldRow {
            id: ordered_id("h"),
            session: s.id.clone(),
            owner: s.owner.clone(),
            day: day.to_owned(),
            model: model.to_owned(),
            usd,
            created_at: now(),
        }
    }

    /// Applies a decision's updates to the session and the owner's day, and queues their rows.
    fn apply(&self, s: &Session, st: &mut SessionState, updates: &[StateUpdate], writes: &mut Vec<Write>) {
        if updates.is_empty() {
            return;
        }
        st.apply(updates);
        if updates.iter().any(|u| matches!(u, StateUpdate::ApproveUserDaily { .. })) {
            let day = today();
            let mut users = self.users.lock().expect("users");
            let u = users
                .entry((s.owner.clone(), day.clone()))
                .or_insert_with(|| UserDaily { day: day.clone(), ..UserDaily::default() });
            u.approved_usd = u.approved_usd.max(st.user_daily.approved_usd);
            writes.push(Write::UserDaily {
                owner: s.owner.clone(),
                day,
                cost_delta: 0.0,
                approved_usd: u.approved_usd,
            });
        }
        writes.push(Write::SessionState { id: s.id.clone(), state: serde_json::to_string(&*st).expect("state") });
    }

    /// The human approval that already answers every ask of `decision`, a `tool_call` decision of a call
    /// approved at `llm_response` for the same rules: one call, one approval. A rule that asks only at
    /// `tool_call`, or another call, still asks.
    fn answered_ask(&self, s: &Session, event: &Event, decision: &paddock_policy::Decision) -> Option<Ruling> {
        if decision.verdict != Verdict::Ask || event.phase != Phase::ToolCall {
            return None;
        }
        let id = event.tool_id.as_deref().filter(|i| !i.is_empty())?;
        let asks = ask_keys(decision);
        let mut calls = s.approved_calls.lock().expect("approved calls");
        // The very call the human saw: its id, tool and arguments (a hook or runner cannot reuse an approval
        // for other arguments under the same id). Used once: the same call posted again is asked about again.
        let at = calls.iter().rposition(|c| {
            c.id == id
                && Some(&c.tool) == event.tool.as_ref()
                && c.args == event.args
                && asks.iter().all(|a| c.asks.contains(a))
        })?;
        calls.remove(at).map(|c| c.ruling)
    }

    /// For the MCP endpoint: the allow already given to this very call (tool and arguments) by the response
    /// gate or a hook, if no MCP request has used it yet. A `tools/call` carries no id of the model's call;
    /// matching it to one decided call keeps it from being decided and counted twice. Each decided call
    /// serves one `tools/call`: a second identical request (a process in the sandbox calling on its own) is
    /// decided afresh. `None`: decide it.
    pub fn decided_for_mcp(&self, s: &Session, tool: &str, args: &serde_json::Value) -> Option<Ruling> {
        let d = s.decided_tools.lock().expect("tools");
        let mut used = s.mcp_used.lock().expect("mcp used");
        let (k, r) =
            d.iter().find(|(k, r)| r.allowed() && k.tool == tool && k.args == *args && !used.contains(&k.id))?;
        if used.len() >= DECIDED_TOOLS_KEPT {
            used.retain(|id| d.iter().any(|(k, _)| k.id == *id));
        }
        used.insert(k.id.clone());
        Some(r.clone())
    }

    /// Keeps a tool call's answer for a hook asking again (in the database too, for the other replicas,
    /// unless `stored` with the decision already: see [`remember_with`]).
    async fn remember_tool(&self, s: &Session, event: &Event, ruling: &Ruling, stored: bool) {
        if event.phase != Phase::ToolCall {
            return;
        }
        let Some(key) = DecidedCall::of(event) else { return };
        if let (Some(shared), false) = (&self.shared, stored) {
            let call = serde_json::to_string(&key).expect("call json");
            let answer = serde_json::to_string(ruling).expect("ruling json");
            if let Err(e) = shared.remember_tool(&s.id, &key.id, &call, &answer).await {
                // The call is decided afresh if asked again on another replica; never allowed by this.
                tracing::warn!(session = %s.id, error = %e, "cannot keep a tool call's answer for other replicas");
            }
        }
        let mut d = s.decided_tools.lock().expect("tools");
        if d.len() >= DECIDED_TOOLS_KEPT {
            d.pop_front();
        }
        d.push_back((key, ruling.clone()));
    }

    fn count(&self, phase: Phase, r: &Ruling, started: Instant) {
        self.metrics
            .decisions
            .get_or_create(&DecisionLabels {
                phase: Phase::as_str(phase).into(),
                verdict: if r.status == "pending" { "ask".into() } else { Verdict::as_str(r.verdict).into() },
                policy: r.policy.clone().unwrap_or_default(),
            })
            .inc();
        self.metrics
            .decision_seconds
            .get_or_create(&PhaseLabels { phase: Phase::as_str(phase).into() })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Waits up to `wait` for an approval; returns the final ruling, or the pending one on timeout.
    pub async fn wait_for(&self, approval: &str, wait: Duration) -> Result<Ruling, GatewayError> {
        let entry = self.approvals.lock().expect("approvals").get(approval).cloned();
        let Some(entry) = entry else {
            return self.settled_ruling(approval).await;
        };
        let (mut rx, pending) = {
            let p = entry.lock().expect("approval");
            (p.tx.subscribe(), p.ruling.clone())
        };
        let res = tokio::time::timeout(wait, rx.wait_for(|r| r.is_some()))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|g| g.clone()));
        match res {
            Some(r) => Ok(final_ruling(&pending, &r)),
            None => {
                let open = self.approvals.lock().expect("approvals").contains_key(approval);
                if open {
                    return Ok(pending);
                }
                // Decided meanwhile: the stored answer, with what the rules rewrote (the database keeps no event).
                let mut r = Box::pin(self.settled_ruling(approval)).await?;
                if r.event.is_none() {
                    r.event = pending.event;
                }
                Ok(r)
            }
        }
    }

    async fn settled_ruling(&self, approval: &str) -> Result<Ruling, GatewayError> {
        let row = self.store.approval(approval).await?.ok_or_else(|| GatewayError::NoApproval(approval.into()))?;
        let approved = row.status == "approved";
        let pending = Ruling {
            verdict: Verdict::Ask,
            reason: row.reason.clone(),
            policy: row.policy.clone(),
            rule: row.rule.clone(),
            approval_id: Some(row.id.clone()),
            status: if row.status == "pending" { "pending".into() } else { "decided".into() },
            decided_by: None,
            event: None,
        };
        if row.status == "pending" {
            return Ok(pending);
        }
        Ok(final_ruling(
            &pending,
            &Resolution {
                approved,
                by: row.decided_by.unwrap_or_default(),
                reason: row.decision_reason.unwrap_or_default(),
            },
        ))
    }

    /// Records a human's (or the timeout's) decision on an ask and releases whoever waits on it.
    pub async fn resolve(&self, approval: &str, r: Resolution) -> Result<ApprovalRow, GatewayError> {
        let entry = self.approvals.lock().expect("approvals").remove(approval);
        let Some(entry) = entry else {
            let known = self.store.approval(approval).await?;
            return match known {
                // Another replica holds this ask: record the decision; that replica sees it and releases it.
                Some(mut a) if a.status == "pending" => {
                    let status = if r.approved { "approved" } else { "denied" };
                    let decided_at = now();
                    self.store
                        .commit(vec![Write::ApprovalDecided {
                            id: approval.into(),
                            status: status.into(),
                            decided_by: r.by.clone(),
                            reason: r.reason.clone(),
                            decided_at: decided_at.clone(),
                        }])
                        .await?;
                    a.status = status.into();
                    a.decided_by = Some(r.by);
                    a.decision_reason = Some(r.reason);
                    a.decided_at = Some(decided_at);
                    Ok(a)
                }
                Some(a) => Err(GatewayError::Conflict(format!(
                    "approval `{approval}` was already {} by {}",
                    a.status,
                    a.decided_by.unwrap_or_default()
                ))),
                None => Err(GatewayError::NoApproval(approval.into())),
            };
        };
        self.finish(approval, entry, r, true).await
    }

    /// Completes an ask held here: the audit row, the state updates of an approval, and the waiters.
    /// `record` is false when the decision row was already written (by another replica).
    async fn finish(
        &self,
        approval: &str,
        entry: Arc<Mutex<PendingApproval>>,
        r: Resolution,
        record: bool,
    ) -> Result<ApprovalRow, GatewayError> {
        let (session, ruling, updates, tool, mut row, phase, call) = {
            let mut p = entry.lock().expect("approval");
            let call = p.call.take();
            (
                p.session.clone(),
                p.ruling.clone(),
                p.updates.clone(),
                p.tool.clone(),
                p.row.clone(),
                p.row.phase.clone(),
                call,
            )
        };
        let approved = r.approved && session.ended().is_none();
        let status = if approved {
            "approved"
        } else if r.by == "timeout" {
            "expired"
        } else {
            "denied"
        };
        let decided_at = now();
        let set = self.policies();
        let phase_v: Phase = serde_json::from_value(serde_json::Value::String(phase)).unwrap_or(Phase::ToolCall);
        let mut audit = self.audit_row(&session, &set.revision, phase_v, tool);
        audit.policy = ruling.policy.clone();
        audit.rule = ruling.rule.clone();
        audit.verdict = if approved { "allow".into() } else { "deny".into() };
        audit.reason = match r.reason.as_str() {
            "" => format!("{status} by {}", r.by),
            why => format!("{status} by {}: {why}", r.by),
        };
        audit.approval_id = Some(approval.into());
        audit.decided_by = Some(r.by.clone());
        let mut writes = Vec::new();
        if record {
            writes.push(Write::ApprovalDecided {
                id: approval.into(),
                status: status.into(),
                decided_by: r.by.clone(),
                reason: r.reason.clone(),
                decided_at: decided_at.clone(),
            });
        }
        if approved {
            let day = updates.iter().any(|u| matches!(u, StateUpdate::ApproveUserDaily { .. }));
            let (mut guard, _) = self.lock_state(&session, day, &today()).await?;
            self.apply(&session, guard.state(), &updates, &mut writes);
            writes.push(Write::Audit(audit));
            let pending = self.commit_state(guard, &session, writes, None).await?;
            pending.wait().await?;
            // Only an approval that is recorded answers the call's `tool_call` decision too.
            if let Some(mut call) = call {
                call.ruling = final_ruling(&ruling, &r);
                let mut calls = session.approved_calls.lock().expect("approved calls");
                if calls.len() >= DECIDED_TOOLS_KEPT {
                    calls.pop_front();
                }
                calls.push_back(call);
            }
        } else {
            writes.push(Write::Audit(audit));
            self.store.commit(writes).await?;
        }
        row.status = status.into();
        row.decided_by = Some(r.by.clone());
        row.decision_reason = Some(r.reason.clone());
        row.decided_at = Some(decided_at);
        let answer = serde_json::json!({"approval": approval, "phase": row.phase, "status": status, "by": r.by,
            "reason": r.reason, "policy": row.policy, "rule": row.rule});
        self.record(&session, "approval", answer).await;
        let tx = entry.lock().expect("approval").tx.clone();
        tx.send_replace(Some(Resolution { approved, ..r }));
        Ok(row)
    }

    /// Watches an ask held here: a decision recorded by another replica (through the shared database) is
    /// applied here; nobody deciding in time expires it.
    pub fn expire_later(self: &Arc<Self>, approval: String) {
        let gw = self.clone();
        let after = Duration::from_secs(self.limits.ask_timeout_seconds);
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + after;
            loop {
                let next = (tokio::time::Instant::now() + Duration::from_millis(500)).min(deadline);
                tokio::time::sleep_until(next).await;
                if !gw.approvals.lock().expect("approvals").contains_key(&approval) {
                    return;
                }
                if tokio::time::Instant::now() >= deadline {
                    let reason = format!("nobody decided within {}s", after.as_secs());
                    let _ = gw.resolve(&approval, Resolution { approved: false, by: "timeout".into(), reason }).await;
                    return;
                }
                let Ok(Some(row)) = gw.store.approval(&approval).await else { continue };
                if row.status == "pending" {
                    continue;
                }
                let entry = gw.approvals.lock().expect("approvals").remove(&approval);
                if let Some(entry) = entry {
                    let r = Resolution {
                        approved: row.status == "approved",
                        by: row.decided_by.unwrap_or_default(),
                        reason: row.decision_reason.unwrap_or_default(),
                    };
                    let _ = gw.finish(&approval, entry, r, false).await;
                }
                return;
            }
        });
    }

    /// Holds `usd` of a request's worst case against the session's budget until it is settled (an ask a
    /// human allowed; a decision that allows holds in its own critical section, see `commit_state`).
    async fn reserve(self: &Arc<Self>, s: &Arc<Session>, usd: f64, model: &str) -> Result<Reservation, GatewayError> {
        let row = self.hold_row(s, usd, model, &today());
        match &self.shared {
            Some(shared) => {
                let mut guard = shared.guard(row.reference());
                shared.hold_now(&row).await?;
                guard.disarm();
            }
            None => self.hold_in_memory(s, usd),
        }
        Ok(self.reservation(s, row))
    }

    /// One gateway: counts a hold against the session and the owner until its [`Reservation`] drops.
    fn hold_in_memory(&self, s: &Session, usd: f64) {
        *s.reserved.lock().expect("reserved") += usd;
        *self.user_reserved.lock().expect("reserved").entry(s.owner.clone()).or_default() += usd;
    }

    /// The handle of a hold taken: it gives the hold back when dropped, unless a settlement did.
    fn reservation(self: &Arc<Self>, s: &Arc<Session>, hold: HoldRow) -> Reservation {
        let guard = self.shared.as_ref().map(|shared| shared.guard(hold.reference()));
        Reservation { gw: self.clone(), session: s.clone(), usd: hold.usd, hold: Mutex::new(guard) }
    }

    /// Meters a model call: the session, its ancestors (sub-agent cost rolls up) and the owner's day, and
    /// gives back the request's `hold` with replicas (on one gateway it goes when dropped). Returns once it
    /// is durable.
    pub async fn settle(
        &self,
        s: &Arc<Session>,
        model: &str,
        usage: Usage,
        complete: bool,
        hold: Option<&Reservation>,
    ) -> Result<Metering, GatewayError> {
        let m = meter(ModelCatalog::builtin(), model, usage);
        if self.telemetry().is_some() {
            crate::telemetry::usage(&usage);
        }
        let day = today();
        let charge = ChargeRow {
            id: ordered_id("c"),
            ts: now(),
            session: s.id.clone(),
            owner: s.owner.clone(),
            day: day.clone(),
            model: model.to_owned(),
            input_tokens: usage.input_tokens as i64,
            output_tokens: usage.output_tokens as i64,
            cache_read_tokens: usage.cache_read_input_tokens as i64,
            cache_write_tokens: usage.cache_creation_input_tokens as i64,
            cost_usd: m.cost_usd,
            stream_complete: complete,
        };
        if let Some(shared) = &self.shared {
            let held = hold.and_then(Reservation::hold_ref);
            let chain: Vec<String> = self.chain_of(s).await.iter().map(|c| c.id.clone()).collect();
            let mut attempt = 0;
            let settled = loop {
                let result = shared.settle(&chain, &charge, &m, held.as_ref()).await;
                attempt += 1;
                match result {
                    Err(e) if attempt < SETTLE_ATTEMPTS => {
                        tracing::warn!(session = %s.id, attempt, error = %e, "metering failed; trying again");
                        tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                    }
                    other => break other,
                }
            };
            let settled = match settled {
                Ok(settled) => settled,
                Err(e) => {
                    // The request reached the upstream: its hold is never given back uncharged. It stays
                    // counted, and is charged at its worst case when this replica stops.
                    if let Some(r) = hold {
                        r.keep();
                    }
                    return Err(e.into());
                }
            };
            if let Some(r) = hold {
                r.keep();
            }
            if !settled {
                tracing::warn!(session = %s.id, "the request's hold was charged at its worst case already (this \
                    replica was taken for stopped); not charged again");
                return Ok(m);
            }
            self.count_usage(model, usage, &m);
            return Ok(m);
        }
        let mut writes = vec![Write::Charge(charge)];
        let chain = self.chain_of(s).await;
        self.store.admit().await?;
        // Lock the whole chain (child first, as everywhere) so that the snapshots are queued in order.
        let mut guards = Vec::with_capacity(chain.len());
        for sess in &chain {
            let mut st = sess.state.lock().await;
            st.meter(&m);
            writes
                .push(Write::SessionState { id: sess.id.clone(), state: serde_json::to_string(&*st).expect("state") });
            guards.push(st);
        }
        if let Some(c) = m.cost_usd {
            let mut users = self.users.lock().expect("users");
            let u = users
                .entry((s.owner.clone(), day.clone()))
                .or_insert_with(|| UserDaily { day: day.clone(), ..UserDaily::default() });
            u.cost_usd += c;
            writes.push(Write::UserDaily { owner: s.owner.clone(), day, cost_delta: c, approved_usd: u.approved_usd });
        }
        self.count_usage(model, usage, &m);
        let pending = self.store.enqueue(writes).await?;
        drop(guards);
        pending.wait().await?;
        Ok(m)
    }

    fn count_usage(&self, model: &str, usage: Usage, m: &Metering) {
        if let Some(c) = m.cost_usd {
            self.metrics.cost_usd.get_or_create(&ModelLabels { model: model.into() }).inc_by(c);
        }
        for (kind, n) in [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_read", usage.cache_read_input_tokens),
            ("cache_write", usage.cache_creation_input_tokens),
        ] {
            if n > 0 {
                self.metrics.tokens.get_or_create(&TokenLabels { model: model.into(), kind: kind.into() }).inc_by(n);
            }
        }
    }
}

impl crate::shared::replicas::Replica for Gateway {
    fn revision(&self) -> String {
        self.policies().revision.clone()
    }

    fn adopt(&self, push: crate::policies::PolicyPush) {
        let (set, errors) = push.compile();
        for e in errors {
            tracing::warn!(kind = e.kind, namespace = %e.namespace, name = %e.name, "left out: {}", e.message);
        }
        self.set_policies(set);
    }

    fn charged_dead_hold(&self, session: &str, usd: f64) {
        tracing::warn!(session, usd, "charged the worst case of a request a stopped replica held");
        self.metrics.dead_holds_charged.inc();
    }
}

/// Replicas: stores a tool call's answer with the decision that made it, under the session's lock.
fn remember_with(guard: &mut StateGuard<'_>, event: &Event, ruling: &Ruling) {
    if let (StateGuard::Shared(locked), Phase::ToolCall, Some(key)) = (guard, event.phase, DecidedCall::of(event)) {
        let call = serde_json::to_string(&key).expect("call json");
        locked.remember_tool(&key.id, &call, &serde_json::to_string(ruling).expect("ruling json"));
    }
}

/// A session's state locked for one decision: in memory (one gateway), or its row in the database.
enum StateGuard<'a> {
    Local { st: tokio::sync::MutexGuard<'a, SessionState>, _owner: Option<tokio::sync::OwnedMutexGuard<()>> },
    Shared(Box<Locked>),
}

impl StateGuard<'_> {
    fn state(&mut self) -> &mut SessionState {
        match self {
            StateGuard::Local { st, .. } => st,
            StateGuard::Shared(locked) => &mut locked.state,
        }
    }
}

/// A decision whose rows may still be committing.
pub struct Decided {
    pub ruling: Ruling,
    /// Wait on this before acting on the ruling where others can see it.
    pub durable: crate::store::Pending,
    /// The hold on the budget, for an allowed model request.
    pub reservation: Option<Reservation>,
    /// For a model request: what the model may still spend before a hard budget limit (cut the stream there).
    pub headroom_usd: Option<f64>,
}

impl Decided {
    fn now(ruling: Ruling, durable: crate::store::Pending) -> Decided {
        Decided { ruling, durable, reservation: None, headroom_usd: None }
    }
}

/// A budget hold; released when dropped (after the call is settled, or when it failed).
pub struct Reservation {
    gw: Arc<Gateway>,
    session: Arc<Session>,
    usd: f64,
    /// With replicas: the hold's row, given back when this drops unless a settlement dealt with it.
    hold: Mutex<Option<crate::shared::HoldGuard>>,
}

impl Reservation {
    fn hold_ref(&self) -> Option<crate::shared::HoldRef> {
        self.hold.lock().expect("hold").as_ref().and_then(|g| g.hold().cloned())
    }

    /// The settlement dealt with the hold (given back with the charge), or failed after the request reached
    /// the upstream: either way it is not given back uncharged.
    fn keep(&self) {
        if let Some(g) = self.hold.lock().expect("hold").as_mut() {
            g.disarm();
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.gw.shared.is_some() {
            // A hold not settled (the request failed before an answer) goes back without a charge, through its
            // guard.
            return;
        }
        let mut r = self.session.reserved.lock().expect("reserved");
        *r = (*r - self.usd).max(0.0);
        let mut users = self.gw.user_reserved.lock().expect("reserved");
        if let Some(u) = users.get_mut(&self.session.owner) {
            *u = (*u - self.usd).max(0.0);
        }
    }
}

/// The `source` of transcript events the gateway writes; runners' events carry [`TRANSCRIPT_RUNNER`].
pub const TRANSCRIPT_GATEWAY: &str = "gateway";
/// The `source` of transcript events a runner posted (whatever the runner put there).
pub const TRANSCRIPT_RUNNER: &str = "runner";
/// The `source` of comments people post in the web console.
pub const TRANSCRIPT_CONSOLE: &str = "console";

/// A decision's transcript fields.
fn verdict_fields(e: &Event, r: &Ruling) -> serde_json::Value {
    let tool = e.tool.clone().or_else(|| e.tool_calls.first().map(|c| c.name.clone()));
    serde_json::json!({
        "phase": Phase::as_str(e.phase),
        "verdict": Verdict::as_str(r.verdict),
        "reason": r.reason,
        "policy": r.policy,
        "rule": r.rule,
        "tool": tool,
    })
}

fn final_ruling(pending: &Ruling, r: &Resolution) -> Ruling {
    let mut out = pending.clone();
    out.status = "decided".into();
    out.decided_by = Some(r.by.clone());
    if r.approved {
        out.verdict = Verdict::Allow;
        out.reason = format!("approved by {}: {}", r.by, pending.reason);
    } else {
        out.verdict = Verdict::Deny;
        out.reason = if r.by == "timeout" {
            format!("{} (asked for approval; {})", pending.reason, r.reason)
        } else {
            format!(
                "{} (asked for approval; denied by {}{})",
                pending.reason,
                r.by,
                if r.reason.is_empty() { String::new() } else { format!(": {}", r.reason) }
            )
        };
    }
    out
}

/// One line for a human deciding an ask.
fn summary(e: &Event) -> String {
    let mut s = match e.phase {
        Phase::ToolCall | Phase::ToolResult => {
            format!("{} {}", e.tool.as_deref().unwrap_or("?"), e.args)
        }
        Phase::LlmResponse => {
            e.tool_calls.iter().map(|c| format!("{} {}", c.name, c.args)).collect::<Vec<_>>().join("; ")
        }
        Phase::LlmRequest => format!("model request to {}", e.model.as_deref().unwrap_or("?")),
        Phase::Request | Phase::Response => e.text.clone().unwrap_or_default(),
        Phase::Egress => {
            let host = e.host.as_deref().unwrap_or("?");
            let port = e.port.map(|p| format!(":{p}")).unwrap_or_default();
            match (&e.method, &e.path) {
                (Some(m), Some(p)) => format!("{m} {}://{host}{port}{p}", e.scheme.as_deref().unwrap_or("https")),
                _ => format!("connection to {host}{port}"),
            }
        }
        Phase::GitPush => {
            let updates = e.updates.iter().map(|u| {
                let how = if u.is_delete() {
                    "delete"
                } else if u.is_create() {
                    "create"
                } else if u.fast_forward {
                    "fast-forward"
                } else {
                    "force"
                };
                format!("{} ({how})", u.git_ref)
            });
            format!("git push to {}: {}", e.repo.as_deref().unwrap_or("?"), updates.collect::<Vec<_>>().join(", "))
        }
    };
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::ordered_id;

    #[test]
    fn row_ids_sort_in_the_order_they_were_made_and_do_not_repeat() {
        let mut made = Vec::new();
        for _ in 0..4 {
            made.push(ordered_id("d"));
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let mut sorted = made.clone();
        sorted.sort();
        assert_eq!(sorted, made, "ids made a millisecond apart sort as they were made");
        let id = &made[0];
        assert!(id.starts_with("d-") && id.len() == 2 + 12 + 16, "{id}");
        assert!(id[2..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
        // Within one millisecond the random part keeps them apart.
        let many: std::collections::HashSet<String> = (0..20_000).map(|_| ordered_id("c")).collect();
        assert_eq!(many.len(), 20_000);
    }
}
