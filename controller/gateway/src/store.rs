//! Durable state through sqlx: SQLite by default, PostgreSQL by URL, one schema and one set of queries.
//! Writes are group-committed: each caller waits until its rows are durable, and everything queued meanwhile
//! becomes durable with them, so durability costs one commit per batch. A SQLite file has the gateway's own
//! log in front of it (a batch is durable once appended there; the database is applied behind it);
//! PostgreSQL commits directly, so that replicas share it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot, watch};

use crate::applier::Applier;
use crate::journal::{Journal, JournalError, Record};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database writer has stopped")]
    WriterGone,
    /// A commit failed (the log could not be written: a full disk; or PostgreSQL refused or went away). The
    /// rows were not recorded, and what waited on them is refused.
    #[error("could not record it: {0}")]
    Commit(String),
    #[error("the gateway's log: {0}")]
    Journal(#[from] JournalError),
    #[error("the database is more than {0:?} behind the gateway's log")]
    Behind(Duration),
    #[error("applying the gateway's log to SQLite: {0}")]
    Apply(#[from] rusqlite::Error),
    #[error("session `{0}`: its state in the database cannot be read: {1}")]
    State(String, String),
    #[error("cannot start the thread that applies the gateway's log: {0}")]
    Applier(std::io::Error),
}

/// How durable a commit is before its caller goes on.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreOptions {
    /// Sync each group commit to disk: it then survives a power loss, not only a crash of the gateway.
    pub fsync: bool,
}

/// One row to write.
#[derive(Clone, Debug)]
pub enum Write {
    SessionNew(SessionRow),
    SessionState { id: String, state: String },
    SessionEnd { id: String, phase: String, reason: String, ended_at: String },
    Charge(ChargeRow),
    UserDaily { owner: String, day: String, cost_delta: f64, approved_usd: f64 },
    Audit(AuditRow),
    ApprovalNew(ApprovalRow),
    ApprovalDecided { id: String, status: String, decided_by: String, reason: String, decided_at: String },
    Event { session: String, seq: i64, ts: String, event: String },
    ShareNew(ShareRow),
    ShareRevoked { id: String, revoked_by: String, revoked_at: String },
}

/// A read-only link to one session, made in the web console.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ShareRow {
    pub id: String,
    pub session: String,
    #[serde(skip)]
    pub token_hash: String,
    pub created_by: String,
    pub created_at: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub revoked_by: Option<String>,
    pub revoked_at: Option<String>,
    /// Who made it, as they signed in (JSON): the link works only while they may still see the session.
    #[serde(skip)]
    pub authority: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SessionRow {
    pub id: String,
    pub namespace: String,
    pub agent: String,
    pub owner: String,
    pub parent: Option<String>,
    #[serde(skip)]
    pub token_hash: String,
    pub phase: String,
    pub reason: Option<String>,
    pub created_at: String,
    pub ended_at: Option<String>,
    #[serde(skip)]
    pub state: String,
    /// The session's brokered credentials, sealed (see `broker::credentials::seal`); empty when it has none
    /// or has ended.
    #[serde(skip)]
    pub credentials: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChargeRow {
    pub id: String,
    pub ts: String,
    pub session: String,
    pub owner: String,
    pub day: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cost_usd: Option<f64>,
    pub stream_complete: bool,
}

/// One decision in the audit log.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct AuditRow {
    pub id: String,
    pub seq: i64,
    pub ts: String,
    pub session: String,
    pub agent: String,
    pub owner: String,
    pub revision: String,
    pub phase: String,
    pub policy: Option<String>,
    pub rule: Option<String>,
    pub verdict: String,
    pub reason: String,
    pub tool: Option<String>,
    /// The tool call's id (`toolu_…`, `call_…`) when the decision was about one.
    pub tool_id: Option<String>,
    pub approval_id: Option<String>,
    pub decided_by: Option<String>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct ApprovalRow {
    pub id: String,
    pub session: String,
    pub phase: String,
    pub summary: String,
    pub reason: String,
    pub policy: Option<String>,
    pub rule: Option<String>,
    /// `pending`, `approved`, `denied` or `expired`.
    pub status: String,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub created_at: String,
    pub decided_at: Option<String>,
}

type Batch = (Vec<Write>, oneshot::Sender<Result<(), String>>);

/// How [`Store::shares_where`] finds share links.
#[derive(Clone, Copy, Debug)]
pub enum ShareKey {
    Id,
    Session,
    TokenHash,
}

/// How [`Store::session_where`] finds a session.
#[derive(Clone, Copy, Debug)]
pub enum SessionKey {
    Id,
    TokenHash,
}

const SESSION_COLUMNS: &str = "SELECT id, namespace, agent, owner, parent, token_hash, phase, reason, created_at, \
                               ended_at, state, credentials FROM sessions";

const APPROVAL_COLUMNS: &str = "SELECT id, session, phase, summary, reason, policy, rule, status, decided_by, \
                                decision_reason, created_at, decided_at FROM approvals";

fn approval_row(r: &sqlx::any::AnyRow) -> Result<ApprovalRow, StoreError> {
    Ok(ApprovalRow {
        id: r.try_get("id")?,
        session: r.try_get("session")?,
        phase: r.try_get("phase")?,
        summary: r.try_get("summary")?,
        reason: r.try_get("reason")?,
        policy: r.try_get("policy")?,
        rule: r.try_get("rule")?,
        status: r.try_get("status")?,
        decided_by: r.try_get("decided_by")?,
        decision_reason: r.try_get("decision_reason")?,
        created_at: r.try_get("created_at")?,
        decided_at: r.try_get("decided_at")?,
    })
}

fn session_row(r: &sqlx::any::AnyRow) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: r.try_get("id")?,
        namespace: r.try_get("namespace")?,
        agent: r.try_get("agent")?,
        owner: r.try_get("owner")?,
        parent: r.try_get("parent")?,
        token_hash: r.try_get("token_hash")?,
        phase: r.try_get("phase")?,
        reason: r.try_get("reason")?,
        created_at: r.try_get("created_at")?,
        ended_at: r.try_get("ended_at")?,
        state: r.try_get("state")?,
        credentials: r.try_get("credentials")?,
    })
}

/// The file of a `sqlite:` URL; `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Rows queued for commit; [`Pending::wait`] returns when they are durable.
#[must_use = "rows are durable only once waited for"]
pub struct Pending(Option<oneshot::Receiver<Result<(), String>>>);

impl Pending {
    /// Nothing to wait for.
    pub fn done() -> Pending {
        Pending(None)
    }

    pub async fn wait(self) -> Result<(), StoreError> {
        let Some(rx) = self.0 else { return Ok(()) };
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Commit(e)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    sink: Sink,
    sqlite: bool,
    /// How far the database is behind the gateway's log, and how long writers waited for it.
    pub backlog: Backlog,
}

/// The back-pressure of the gateway's log, for `/metrics`.
#[derive(Clone, Default)]
pub struct Backlog {
    /// Records appended to the log and not yet in the database, as of the last write.
    pub records: prometheus_client::metrics::gauge::Gauge,
    /// Writes that waited for the database to catch up, and how long in all.
    pub waits: prometheus_client::metrics::counter::Counter,
    pub wait_seconds: prometheus_client::metrics::counter::Counter<f64, AtomicU64>,
}

/// Where writes go.
#[derive(Clone)]
enum Sink {
    /// PostgreSQL (and an in-memory SQLite): the group-commit [`writer`].
    Direct(mpsc::Sender<Batch>),
    /// A SQLite file: the gateway's log, with the database applied behind it.
    Log(Arc<LogWriter>),
}

/// Appends groups of writes to the log. Whoever queues writes while nobody is appending becomes the one
/// who appends — everything queued by then, as one record — so an uncontended commit costs one `write` on
/// the caller's own thread and no hand-off to another one. With `fsync` the append runs on a blocking thread.
struct LogWriter {
    queue: std::sync::Mutex<LogQueue>,
    journal: std::sync::Mutex<Journal>,
    apply: mpsc::UnboundedSender<Record>,
    /// Applied segments of the log, for the applier's thread to delete.
    retired: std::sync::mpsc::Sender<PathBuf>,
    /// The last record appended, and the last one the database holds.
    journaled: AtomicU64,
    applied: watch::Receiver<u64>,
    healthy: Arc<AtomicBool>,
    fsync: bool,
}

#[derive(Default)]
struct LogQueue {
    batches: Vec<Batch>,
    appending: bool,
}

/// How many records the database may lag behind the log before a writer waits for it. The writer waits only
/// until the lag is back under this (the next transaction the applier commits), never for the backlog to
/// drain: under a load that outruns the applier, every writer waits a little instead of some waiting long.
const MAX_APPLY_LAG: u64 = 2048;

/// How long a read waits for the database to catch up with the log.
const READ_BEHIND_LIMIT: Duration = Duration::from_secs(30);

impl Store {
    /// Opens (creating if needed) and migrates the database.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, StoreOptions::default()).await
    }

    /// Opens (creating if needed) and migrates the database. A SQLite file gets the gateway's log
    /// (`<file>.paddock-log/`) in front of it: what the log holds and the database not yet (a crash) is
    /// applied here first.
    pub async fn open_with(url: &str, opts: StoreOptions) -> Result<Store, StoreError> {
        install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let file = sqlite.then(|| sqlite_file(url)).flatten();
        let url = if sqlite && !url.contains("mode=") {
            format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" })
        } else {
            url.to_owned()
        };
        let synchronous = if opts.fsync { "FULL" } else { "NORMAL" };
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if !sqlite {
                        // A lock waited on this long is a replica gone quiet mid-transaction: fail the
                        // decision (it is refused) rather than hold a connection; and the server ends a
                        // transaction left idle, so a partitioned replica's locks do not outlive it for hours.
                        sqlx::query("SET lock_timeout = '10s'").execute(&mut *conn).await?;
                        sqlx::query("SET idle_in_transaction_session_timeout = '30s'").execute(&mut *conn).await?;
                    }
                    if sqlite {
                        // WAL: readers never block the writer. NORMAL: a commit survives a process crash
                        // (what the ledger promises); FULL also a power loss.
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        sqlx::query(&format!("PRAGMA synchronous = {synchronous}")).execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let Some(file) = file else {
            let (tx, rx) = mpsc::channel::<Batch>(4096);
            tokio::spawn(writer(pool.clone(), sqlite, rx));
            return Ok(Store { pool, sink: Sink::Direct(tx), sqlite, backlog: Backlog::default() });
        };
        let dir = PathBuf::from(format!("{}.paddock-log", file.display()));
        let recover_dir = dir.clone();
        let (lock, records) =
            tokio::task::spawn_blocking(move || Journal::recover(&recover_dir, Duration::from_secs(3)))
                .await
                .map_err(|_| StoreError::WriterGone)??;
        // Replays what the log holds and the database not yet, with the connection that applies from now on.
        let applier_file = file.clone();
        let sync = synchronous.to_owned();
        let (db, applied) = tokio::task::spawn_blocking(move || -> Result<(Applier, u64), StoreError> {
            let mut db = Applier::open(&applier_file, &sync)?;
            let mut applied = db.applied()?;
            let before = applied;
            let mut unapplied = records.into_iter().filter(|r| r.seq > before).peekable();
            if let Some(r) = unapplied.peek() {
                tracing::info!(from = r.seq, after = applied, "applying the log's records the database lacks");
            }
            while unapplied.peek().is_some() {
                applied = db.apply(&unapplied.by_ref().take(256).collect::<Vec<_>>())?;
            }
            Ok((db, applied))
        })
        .await
        .map_err(|_| StoreError::WriterGone)??;
        let lock = Arc::new(lock);
        let journal = Journal::start(&dir, lock.clone(), applied, opts.fsync)?;
        let (applied_tx, applied_rx) = watch::channel(applied);
        let healthy = Arc::new(AtomicBool::new(true));
        let (apply_tx, apply_rx) = mpsc::unbounded_channel::<Record>();
        let (retired_tx, retired_rx) = std::sync::mpsc::channel();
        // Its own thread: applying wakes only this thread, never the threads that answer requests.
        let thread_healthy = healthy.clone();
        std::thread::Builder::new()
            .name("paddock-applier".into())
            .spawn(move || crate::applier::run(db, apply_rx, retired_rx, applied_tx, thread_healthy, lock))
            .map_err(StoreError::Applier)?;
        let log = LogWriter {
            queue: Default::default(),
            journal: std::sync::Mutex::new(journal),
            apply: apply_tx,
            retired: retired_tx,
            journaled: AtomicU64::new(applied),
            applied: applied_rx,
            healthy,
            fsync: opts.fsync,
        };
        Ok(Store { pool, sink: Sink::Log(Arc::new(log)), sqlite, backlog: Backlog::default() })
    }

    /// Waits until the database holds everything committed so far, so that a read sees every write that
    /// returned before it.
    async fn caught_up(&self) -> Result<(), StoreError> {
        let Sink::Log(log) = &self.sink else { return Ok(()) };
        log.applied_through(log.journaled.load(Ordering::Acquire)).await
    }

    /// Commits the rows; returns once they are durable.
    pub async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.admit().await?;
        self.enqueue(writes).await?.wait().await
    }

    /// The log's back-pressure: waits while the database is more than [`MAX_APPLY_LAG`] records behind the
    /// log, until the applier's next transaction brings it back under. Call it before taking the locks under
    /// which [`Store::enqueue`] is called, so that no lock is held while waiting for the database.
    pub async fn admit(&self) -> Result<(), StoreError> {
        let Sink::Log(log) = &self.sink else { return Ok(()) };
        let appended = log.journaled.load(Ordering::Acquire);
        let lag = appended.saturating_sub(*log.applied.borrow());
        self.backlog.records.set(lag as i64);
        if lag > MAX_APPLY_LAG {
            let waited = std::time::Instant::now();
            log.applied_through(appended - MAX_APPLY_LAG).await?;
            self.backlog.waits.inc();
            self.backlog.wait_seconds.inc_by(waited.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Queues rows for the writer and returns a handle to wait for their commit. Rows are committed in the
    /// order they were queued, so a caller can queue under a lock (fixing the order of two snapshots of
    /// the same state) and wait after releasing it (so that concurrent callers share one commit). It does not
    /// wait for the database (see [`Store::admit`]); PostgreSQL's writer queue may make it wait for room.
    pub async fn enqueue(&self, writes: Vec<Write>) -> Result<Pending, StoreError> {
        if writes.is_empty() {
            return Ok(Pending(None));
        }
        let (done, wait) = oneshot::channel();
        match &self.sink {
            Sink::Direct(tx) => tx.send((writes, done)).await.map_err(|_| StoreError::WriterGone)?,
            Sink::Log(log) => {
                let lead = {
                    let mut q = log.queue.lock().expect("log queue");
                    q.batches.push((writes, done));
                    !std::mem::replace(&mut q.appending, true)
                };
                if lead && log.fsync {
                    let log = log.clone();
                    tokio::task::spawn_blocking(move || log.append_queued());
                } else if lead {
                    log.append_queued();
                }
            }
        }
        Ok(Pending(Some(wait)))
    }

    /// The highest audit sequence number so far, so that a restarted gateway continues after it.
    pub async fn max_audit_seq(&self) -> Result<i64, StoreError> {
        self.caught_up().await?;
        let row = sqlx::query("SELECT MAX(seq) AS m FROM audit").fetch_one(&self.pool).await?;
        Ok(row.try_get::<Option<i64>, _>("m")?.unwrap_or(0))
    }

    /// Transcript events of a session from `offset` on, as `(seq, json)`.
    pub async fn events(&self, session: &str, offset: i64) -> Result<Vec<(i64, String)>, StoreError> {
        self.caught_up().await?;
        let rows = sqlx::query("SELECT seq, event FROM events WHERE session = $1 AND seq >= $2 ORDER BY seq")
            .bind(session)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("seq")?, r.try_get("event")?))).collect()
    }

    pub async fn max_event_seq(&self, session: &str) -> Result<i64, StoreError> {
        self.caught_up().await?;
        let row = sqlx::query("SELECT MAX(seq) AS m FROM events WHERE session = $1")
            .bind(session)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("m")?.unwrap_or(-1))
    }

    /// SQLite serves one gateway; PostgreSQL may serve several replicas.
    pub fn is_sqlite(&self) -> bool {
        self.sqlite
    }

    /// The database answers, and the log's records reach it.
    pub async fn ping(&self) -> bool {
        let applying = match &self.sink {
            Sink::Log(log) => log.healthy.load(Ordering::Acquire),
            Sink::Direct(_) => true,
        };
        applying && sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        self.caught_up().await?;
        let rows = sqlx::query(&format!("{SESSION_COLUMNS} ORDER BY created_at, id")).fetch_all(&self.pool).await?;
        rows.iter().map(session_row).collect()
    }

    /// The session whose `column` (`id` or `token_hash`) is `value`, read from the database (a replica
    /// finding a session another one created).
    pub async fn session_where(&self, column: SessionKey, value: &str) -> Result<Option<SessionRow>, StoreError> {
        self.caught_up().await?;
        let column = match column {
            SessionKey::Id => "id",
            SessionKey::TokenHash => "token_hash",
        };
        let row = sqlx::query(&format!("{SESSION_COLUMNS} WHERE {column} = $1"))
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_row).transpose()
    }

    /// The database's connections, for the state replicas share (see `crate::shared`).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn user_daily(&self, day: &str) -> Result<Vec<(String, f64, f64)>, StoreError> {
        self.caught_up().await?;
        let rows = sqlx::query("SELECT owner, cost_usd, approved_usd FROM user_daily WHERE day = $1")
            .bind(day)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("owner")?, r.try_get("cost_usd")?, r.try_get("approved_usd")?))).collect()
    }

    pub async fn charges(&self, session: &str) -> Result<Vec<ChargeRow>, StoreError> {
        self.caught_up().await?;
        let rows = sqlx::query(
            "SELECT id, ts, session, owner, day, model, input_tokens, output_tokens, cache_read_tokens, \
             cache_write_tokens, cost_usd, stream_complete FROM charges WHERE session = $1 ORDER BY ts, id",
        )
        .bind(session)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ChargeRow {
                    id: r.try_get("id")?,
                    ts: r.try_get("ts")?,
                    session: r.try_get("session")?,
                    owner: r.try_get("owner")?,
                    day: r.try_get("day")?,
                    model: r.try_get("model")?,
                    input_tokens: r.try_get("input_tokens")?,
                    output_tokens: r.try_get("output_tokens")?,
                    cache_read_tokens: r.try_get("cache_read_tokens")?,
                    cache_write_tokens: r.try_get("cache_write_tokens")?,
                    cost_usd: r.try_get("cost_usd")?,
                    stream_complete: r.try_get::<i64, _>("stream_complete")? != 0,
                })
            })
            .collect()
    }

    pub async fn approvals(&self, status: Option<&str>) -> Result<Vec<ApprovalRow>, StoreError> {
        self.caught_up().await?;
        let rows = match status {
            Some(s) => {
                sqlx::query(&format!("{APPROVAL_COLUMNS} WHERE status = $1 ORDER BY created_at, id"))
                    .bind(s)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => sqlx::query(&format!("{APPROVAL_COLUMNS} ORDER BY created_at, id")).fetch_all(&self.pool).await?,
        };
        rows.iter().map(approval_row).collect()
    }

    /// One approval by its id.
    pub async fn approval(&self, id: &str) -> Result<Option<ApprovalRow>, StoreError> {
        self.caught_up().await?;
        let row = sqlx::query(&format!("{APPROVAL_COLUMNS} WHERE id = $1")).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(approval_row).transpose()
    }

    /// How often each policy decided, per session namespace: `(namespace, policy, verdict, count)` over the
    /// audit log's enforced verdicts (`allow`, `deny`, `ask`; not `audit:*`). An ask is one `ask` row, and its
    /// answer one more row (`allow` if approved, `deny` if denied or expired) under the same policy. Read
    /// from the database, so every replica sharing it reports the same totals, and a restart loses none.
    pub async fn policy_decisions(&self) -> Result<Vec<(String, String, String, i64)>, StoreError> {
        self.caught_up().await?;
        let rows = sqlx::query(
            "SELECT s.namespace AS namespace, a.policy AS policy, a.verdict AS verdict, COUNT(*) AS n \
             FROM audit a JOIN sessions s ON s.id = a.session \
             WHERE a.policy IS NOT NULL AND a.verdict IN ('allow', 'deny', 'ask') \
             GROUP BY s.namespace, a.policy, a.verdict",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("namespace")?, r.try_get("policy")?, r.try_get("verdict")?, r.try_get("n")?)))
            .collect()
    }

    /// The policy revision of a session's latest decision (not a console action such as a share link).
    pub async fn last_revision(&self, session: &str) -> Result<Option<String>, StoreError> {
        self.caught_up().await?;
        let row =
            sqlx::query("SELECT revision FROM audit WHERE session = $1 AND phase <> 'share' ORDER BY seq DESC LIMIT 1")
                .bind(session)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| r.try_get("revision")).transpose().map_err(Into::into)
    }

    /// Share links by `key`: one by its id or by its token's hash, or all of a session's, oldest first.
    pub async fn shares_where(&self, key: ShareKey, value: &str) -> Result<Vec<ShareRow>, StoreError> {
        self.caught_up().await?;
        let column = match key {
            ShareKey::Id => "id",
            ShareKey::Session => "session",
            ShareKey::TokenHash => "token_hash",
        };
        let sql = format!(
            "SELECT id, session, token_hash, created_by, created_at, expires_at, revoked_by, revoked_at, authority \
             FROM shares WHERE {column} = $1 ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql).bind(value).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(ShareRow {
                    id: r.try_get("id")?,
                    session: r.try_get("session")?,
                    token_hash: r.try_get("token_hash")?,
                    created_by: r.try_get("created_by")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    revoked_by: r.try_get("revoked_by")?,
                    revoked_at: r.try_get("revoked_at")?,
                    authority: r.try_get("authority")?,
                })
            })
            .collect()
    }

    /// The audit log, oldest first; `session` filters.
    pub async fn audit(&self, session: Option<&str>) -> Result<Vec<AuditRow>, StoreError> {
        self.caught_up().await?;
        let sql = "SELECT id, seq, ts, session, agent, owner, revision, phase, policy, rule, verdict, reason, tool, \
                   tool_id, approval_id, decided_by FROM audit";
        let rows = match session {
            Some(s) => {
                sqlx::query(&format!("{sql} WHERE session = $1 ORDER BY ts, seq")).bind(s).fetch_all(&self.pool).await?
            }
            None => sqlx::query(&format!("{sql} ORDER BY ts, seq")).fetch_all(&self.pool).await?,
        };
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    seq: r.try_get("seq")?,
                    ts: r.try_get("ts")?,
                    session: r.try_get("session")?,
                    agent: r.try_get("agent")?,
                    owner: r.try_get("owner")?,
                    revision: r.try_get("revision")?,
                    phase: r.try_get("phase")?,
                    policy: r.try_get("policy")?,
                    rule: r.try_get("rule")?,
                    verdict: r.try_get("verdict")?,
                    reason: r.try_get("reason")?,
                    tool: r.try_get("tool")?,
                    tool_id: r.try_get("tool_id")?,
                    approval_id: r.try_get("approval_id")?,
                    decided_by: r.try_get("decided_by")?,
                })
            })
            .collect()
    }
}

/// Takes the first batch and whatever else is queued (up to 512), so that they share one commit.
fn gather(first: Batch, rx: &mut mpsc::Receiver<Batch>) -> Vec<Batch> {
    let mut batch = vec![first];
    while batch.len() < 512 {
        match rx.try_recv() {
            Ok(b) => batch.push(b),
            Err(_) => break,
        }
    }
    batch
}

/// PostgreSQL (and an in-memory SQLite): commits everything queued as one transaction, then tells each caller.
async fn writer(pool: AnyPool, sqlite: bool, mut rx: mpsc::Receiver<Batch>) {
    while let Some(first) = rx.recv().await {
        let batch = gather(first, &mut rx);
        let result = commit(&pool, sqlite, &statements(&batch)).await.map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, rows = batch.len(), "database commit failed");
        }
        for (_, done) in batch {
            let _ = done.send(result.clone());
        }
    }
}

impl LogWriter {
    /// Appends what is queued, one record per round, until the queue is empty; tells each caller.
    fn append_queued(&self) {
        let mut journal = self.journal.lock().expect("log");
        loop {
            let batch = {
                let mut q = self.queue.lock().expect("log queue");
                if q.batches.is_empty() {
                    q.appending = false;
                    return;
                }
                std::mem::take(&mut q.batches)
            };
            let stmts = statements(&batch);
            let result = journal.append(&stmts).map_err(|e| e.to_string());
            match &result {
                Ok(seq) => self.journaled.store(*seq, Ordering::Release),
                Err(e) => tracing::error!(error = %e, rows = batch.len(), "cannot append to the gateway's log"),
            }
            if let Ok(seq) = result {
                // The applier stops only once every store is gone; nobody waits for this record then.
                let _ = self.apply.send(Record { seq, stmts });
            }
            for (_, done) in batch {
                let _ = done.send(result.clone().map(|_| ()));
            }
            for path in journal.retire(*self.applied.borrow()) {
                if let Err(unsent) = self.retired.send(path) {
                    // The applier's thread is gone (it panicked; it ends normally only after this writer).
                    crate::journal::delete_segment(&unsent.0);
                }
            }
        }
    }

    /// Waits until the database holds the log's records through `seq`.
    async fn applied_through(&self, seq: u64) -> Result<(), StoreError> {
        let mut applied = self.applied.clone();
        match tokio::time::timeout(READ_BEHIND_LIMIT, applied.wait_for(|a| *a >= seq)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StoreError::WriterGone),
            Err(_) => Err(StoreError::Behind(READ_BEHIND_LIMIT)),
        }
    }
}

/// A bound value. Nulls keep their column's type: PostgreSQL checks it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Param {
    Text(Option<String>),
    Int(i64),
    Float(Option<f64>),
}

pub(crate) fn text(s: &str) -> Param {
    Param::Text(Some(s.to_owned()))
}

fn opt_text(s: &Option<String>) -> Param {
    Param::Text(s.clone())
}

/// One SQL statement with `?` placeholders (numbered `$n` when run on PostgreSQL) and its values.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stmt {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Stmt {
    pub(crate) fn new(sql: &str, params: Vec<Param>) -> Stmt {
        Stmt { sql: sql.to_owned(), params }
    }
}

/// Rewrites `?` placeholders as `$n`, numbering from `first` (both databases accept `$n`).
fn number(sql: &str, first: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = first;
    for c in sql.chars() {
        if c == '?' {
            use std::fmt::Write as _;
            let _ = write!(out, "${n}");
            n += 1;
        } else {
            out.push(c);
        }
    }
    out
}

fn bind<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    params: impl IntoIterator<Item = &'q Param>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for p in params {
        q = match p {
            Param::Text(v) => q.bind(v.as_deref()),
            Param::Int(v) => q.bind(*v),
            Param::Float(v) => q.bind(*v),
        };
    }
    q
}

/// The statements of a batch, with fewer statements than rows: audit rows go in multi-row inserts, and of
/// several snapshots of one session's state only the last is written (it contains the others).
fn statements(batch: &[Batch]) -> Vec<Stmt> {
    statements_of(batch.iter().flat_map(|(writes, _)| writes))
}

const STATE_UPDATE: &str = "UPDATE sessions SET state = ? WHERE id = ?";

/// Where `stmts` writes session `id`'s state, if they do.
pub(crate) fn state_update_of(stmts: &[Stmt], id: &str) -> Option<usize> {
    stmts.iter().position(|st| st.sql == STATE_UPDATE && matches!(&st.params[..], [_, Param::Text(Some(s))] if s == id))
}

/// Drops each update of a session's state that a later one in the same transaction overwrites.
pub(crate) fn supersede_states<T: std::borrow::Borrow<Stmt>>(stmts: Vec<T>) -> Vec<T> {
    let mut later: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut keep: Vec<bool> = stmts
        .iter()
        .rev()
        .map(|st| match (st.borrow().sql == STATE_UPDATE, &st.borrow().params[..]) {
            (true, [_, Param::Text(Some(id))]) => later.insert(id),
            _ => true,
        })
        .collect();
    keep.reverse();
    stmts.into_iter().zip(keep).filter_map(|(st, k)| k.then_some(st)).collect()
}

/// Writes a batch in one transaction. SQLite gets it as one multi-statement query — one round trip to its
/// worker thread instead of one per statement; PostgreSQL, which takes one statement per query, statement by
/// statement.
async fn commit(pool: &AnyPool, sqlite: bool, stmts: &[Stmt]) -> Result<(), sqlx::Error> {
    if sqlite {
        // One transaction, sent as few multi-statement queries as SQLite's limit on bound values allows.
        let mut conn = pool.acquire().await?;
        let mut result = Ok(());
        let mut rest = stmts;
        let mut first = true;
        while result.is_ok() && (first || !rest.is_empty()) {
            // The first query opens the transaction and the last commits it: one round trip for most batches.
            let mut sql = String::from(if first { "BEGIN IMMEDIATE;\n" } else { "" });
            first = false;
            let mut params: Vec<&Param> = Vec::new();
            let mut taken = 0;
            for st in rest {
                if taken > 0 && params.len() + st.params.len() > SQLITE_MAX_PARAMS {
                    break;
                }
                // Plain `?`: SQLite binds them in order, while finding a numbered one costs a scan of all
                // the names, which made large inserts quadratic.
                sql.push_str(&st.sql);
                sql.push_str(";\n");
                params.extend(st.params.iter());
                taken += 1;
            }
            rest = &rest[taken..];
            if rest.is_empty() {
                sql.push_str("COMMIT;");
            }
            // Not kept in the connection's statement cache: this text is unique to the batch, and each cached
            // one held every compiled statement of its batch (hundreds of MiB at 100 entries, never reused).
            result = bind(sqlx::query(&sql), params).persistent(false).execute(&mut *conn).await.map(|_| ());
        }
        if result.is_err() {
            // Leave the connection clean for the next batch. One that cannot roll back is dropped and the
            // pool opens another: after a failed multi-statement query sqlx-sqlite's worker thread can die
            // (a panic in sqlx), and then nothing on that connection ever answers.
            let rollback = tokio::time::timeout(Duration::from_secs(1), sqlx::query("ROLLBACK").execute(&mut *conn));
            if !matches!(rollback.await, Ok(Ok(_))) {
                drop(conn.detach());
            }
        }
        return result;
    }
    let mut tx = pool.begin().await?;
    execute_numbered(&mut tx, stmts).await?;
    tx.commit().await
}

/// Runs statements one by one with numbered placeholders (PostgreSQL), in the caller's transaction.
pub(crate) async fn execute_numbered(conn: &mut sqlx::AnyConnection, stmts: &[Stmt]) -> Result<(), sqlx::Error> {
    for st in stmts {
        let sql = number(&st.sql, 1);
        bind(sqlx::query(&sql), st.params.iter()).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The statements of one list of writes: audit rows as multi-row inserts, and of several snapshots of one
/// session's state only the last.
pub(crate) fn statements_of<'a>(writes: impl IntoIterator<Item = &'a Write>) -> Vec<Stmt> {
    let mut stmts = Vec::new();
    let mut audits: Vec<&AuditRow> = Vec::new();
    for w in writes {
        match w {
            Write::Audit(a) => audits.push(a),
            w => stmts.push(statement(w)),
        }
    }
    let mut stmts = supersede_states(stmts);
    stmts.extend(audit_insert(&audits));
    stmts
}

/// Runs `stmts` in the caller's transaction (PostgreSQL) as one statement, one round trip: each but the last
/// becomes a data-modifying `WITH` clause of the last. They see one snapshot, so no two may change the same
/// row (the callers make sure: each session's state once, new rows otherwise).
pub(crate) async fn write_combined(conn: &mut sqlx::AnyConnection, stmts: &[Stmt]) -> Result<(), sqlx::Error> {
    let Some((last, rest)) = stmts.split_last() else { return Ok(()) };
    if rest.is_empty() {
        return execute_numbered(conn, std::slice::from_ref(last)).await;
    }
    let mut sql = String::from("WITH ");
    for (i, st) in rest.iter().enumerate() {
        use std::fmt::Write as _;
        let _ = write!(sql, "{}w{i} AS ({})", if i > 0 { ", " } else { "" }, st.sql);
    }
    sql.push(' ');
    sql.push_str(&last.sql);
    let params = stmts.iter().flat_map(|st| st.params.iter().cloned()).collect();
    execute_numbered(conn, &[Stmt { sql, params }]).await
}

/// Writes rows inside a transaction of the caller's (PostgreSQL), in one round trip (see
/// [`write_combined`]).
pub(crate) async fn write_in(conn: &mut sqlx::AnyConnection, writes: &[Write]) -> Result<(), sqlx::Error> {
    write_combined(conn, &statements_of(writes)).await
}

/// Audit rows per multi-row insert: few statements for SQLite to parse, well under its limit on bound values.
const AUDIT_ROWS_PER_INSERT: usize = 256;
pub(crate) const AUDIT_COLUMNS: usize = 16;
/// Bound values per SQLite query: keeps one query's text and values bounded (SQLite's own limit, 32,766, is
/// per statement).
const SQLITE_MAX_PARAMS: usize = 30_000;
pub(crate) const AUDIT_INSERT: &str = "INSERT INTO audit (id, seq, ts, session, agent, owner, revision, phase, policy, rule, \
                            verdict, reason, tool, tool_id, approval_id, decided_by) VALUES ";

pub(crate) fn audit_insert(rows: &[&AuditRow]) -> Vec<Stmt> {
    let mut params = Vec::with_capacity(rows.len() * AUDIT_COLUMNS);
    for a in rows {
        params.extend([
            text(&a.id),
            Param::Int(a.seq),
            text(&a.ts),
            text(&a.session),
            text(&a.agent),
            text(&a.owner),
            text(&a.revision),
            text(&a.phase),
            opt_text(&a.policy),
            opt_text(&a.rule),
            text(&a.verdict),
            text(&a.reason),
            opt_text(&a.tool),
            opt_text(&a.tool_id),
            opt_text(&a.approval_id),
            opt_text(&a.decided_by),
        ]);
    }
    let mut values = params.into_iter().peekable();
    let mut out = Vec::new();
    while values.peek().is_some() {
        // Moved, not copied: the values of many rows are many strings.
        let params: Vec<Param> = values.by_ref().take(AUDIT_ROWS_PER_INSERT * AUDIT_COLUMNS).collect();
        out.push(Stmt { sql: audit_insert_sql(params.len() / AUDIT_COLUMNS), params });
    }
    out
}

/// The insert of `rows` audit rows, with a placeholder per value.
pub(crate) fn audit_insert_sql(rows: usize) -> String {
    let row = format!("({})", ["?"; AUDIT_COLUMNS].join(", "));
    format!("{AUDIT_INSERT}{}", vec![row.as_str(); rows].join(", "))
}

pub(crate) fn statement(w: &Write) -> Stmt {
    use Param::{Float, Int};
    match w {
        Write::SessionNew(s) => Stmt::new(
            "INSERT INTO sessions (id, namespace, agent, owner, parent, token_hash, phase, reason, created_at, \
             ended_at, state, credentials) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                text(&s.id),
                text(&s.namespace),
                text(&s.agent),
                text(&s.owner),
                opt_text(&s.parent),
                text(&s.token_hash),
                text(&s.phase),
                opt_text(&s.reason),
                text(&s.created_at),
                opt_text(&s.ended_at),
                text(&s.state),
                text(&s.credentials),
            ],
        ),
        Write::SessionState { id, state } => Stmt::new(STATE_UPDATE, vec![text(state), text(id)]),
        Write::SessionEnd { id, phase, reason, ended_at } => Stmt::new(
            // An ended session's credentials are of no more use: they leave the database with it.
            "UPDATE sessions SET phase = ?, reason = ?, ended_at = ?, credentials = '' WHERE id = ? AND ended_at IS NULL",
            vec![text(phase), text(reason), text(ended_at), text(id)],
        ),
        Write::Charge(r) => Stmt::new(
            "INSERT INTO charges (id, ts, session, owner, day, model, input_tokens, output_tokens, \
             cache_read_tokens, cache_write_tokens, cost_usd, stream_complete) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                text(&r.id),
                text(&r.ts),
                text(&r.session),
                text(&r.owner),
                text(&r.day),
                text(&r.model),
                Int(r.input_tokens),
                Int(r.output_tokens),
                Int(r.cache_read_tokens),
                Int(r.cache_write_tokens),
                Float(r.cost_usd),
                Int(r.stream_complete as i64),
            ],
        ),
        // Increments, so that several replicas add up rather than overwrite each other.
        Write::UserDaily { owner, day, cost_delta, approved_usd } => Stmt::new(
            "INSERT INTO user_daily (owner, day, cost_usd, approved_usd) VALUES (?, ?, ?, ?) \
             ON CONFLICT (owner, day) DO UPDATE SET cost_usd = user_daily.cost_usd + excluded.cost_usd, \
             approved_usd = CASE WHEN excluded.approved_usd > user_daily.approved_usd \
             THEN excluded.approved_usd ELSE user_daily.approved_usd END",
            vec![text(owner), text(day), Float(Some(*cost_delta)), Float(Some(*approved_usd))],
        ),
        Write::Audit(a) => audit_insert(&[a]).remove(0),
        Write::ApprovalNew(a) => Stmt::new(
            "INSERT INTO approvals (id, session, phase, summary, reason, policy, rule, status, decided_by, \
             decision_reason, created_at, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                text(&a.id),
                text(&a.session),
                text(&a.phase),
                text(&a.summary),
                text(&a.reason),
                opt_text(&a.policy),
                opt_text(&a.rule),
                text(&a.status),
                opt_text(&a.decided_by),
                opt_text(&a.decision_reason),
                text(&a.created_at),
                opt_text(&a.decided_at),
            ],
        ),
        Write::Event { session, seq, ts, event } => Stmt::new(
            "INSERT INTO events (session, seq, ts, event) VALUES (?, ?, ?, ?)",
            vec![text(session), Int(*seq), text(ts), text(event)],
        ),
        Write::ShareNew(r) => Stmt::new(
            "INSERT INTO shares (id, session, token_hash, created_by, created_at, expires_at, revoked_by, revoked_at, \
             authority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                text(&r.id),
                text(&r.session),
                text(&r.token_hash),
                text(&r.created_by),
                text(&r.created_at),
                Int(r.expires_at),
                opt_text(&r.revoked_by),
                opt_text(&r.revoked_at),
                text(&r.authority),
            ],
        ),
        Write::ShareRevoked { id, revoked_by, revoked_at } => Stmt::new(
            "UPDATE shares SET revoked_by = ?, revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            vec![text(revoked_by), text(revoked_at), text(id)],
        ),
        Write::ApprovalDecided { id, status, decided_by, reason, decided_at } => Stmt::new(
            "UPDATE approvals SET status = ?, decided_by = ?, decision_reason = ?, decided_at = ? \
             WHERE id = ? AND status = 'pending'",
            vec![text(status), text(decided_by), text(reason), text(decided_at), text(id)],
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn row(i: usize) -> AuditRow {
        AuditRow {
            id: format!("d-{i:05}"),
            seq: i as i64,
            ts: format!("2026-01-01T00:00:00.{i:06}Z"),
            session: format!("s-{}", i % 7),
            agent: "agent".into(),
            owner: format!("owner-{}", i % 3),
            revision: "r1".into(),
            phase: "tool_call".into(),
            policy: i.is_multiple_of(2).then(|| format!("policy-{i}")),
            rule: Some(format!("rule-{i}")),
            verdict: if i.is_multiple_of(5) { "deny" } else { "allow" }.into(),
            reason: format!("reason {i}"),
            tool: Some("Bash".into()),
            tool_id: i.is_multiple_of(3).then(|| format!("toolu_{i}")),
            approval_id: None,
            decided_by: i.is_multiple_of(4).then(|| "alice".into()),
        }
    }

    /// Thousands of rows through the log, in one batch larger than a query's limit on bound values and in
    /// many small records applied together: every row reaches the database with each value in its column,
    /// also after a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_and_many_batches_reach_the_database_intact() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
        let store = Store::open(&url).await.unwrap();
        // 3,000 rows × 16 values: more than one query may bind, so the batch is split.
        store.commit((0..3000).map(|i| Write::Audit(row(i))).collect()).await.unwrap();
        let mut tasks = Vec::new();
        for i in 3000..5000 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.commit(vec![Write::Audit(row(i))]).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let mut rows = store.audit(None).await.unwrap();
        rows.sort_by_key(|r| r.seq);
        assert_eq!(rows, (0..5000).map(row).collect::<Vec<_>>());
        drop(store);
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.audit(Some("s-3")).await.unwrap().len(), (0..5000).filter(|i| i % 7 == 3).count());
    }

    /// The log does not grow without end: once the database holds a full segment's records, the segment is
    /// deleted (by the applier's thread, after its next transaction), and what remains is only the segment
    /// being written. Every row is in the database, also after a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn applied_segments_of_the_log_are_deleted_and_their_rows_stay() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
        let log = dir.path().join("gateway.db.paddock-log");
        let segments = || crate::journal::segments(&log).unwrap().len();
        let store = Store::open(&url).await.unwrap();
        // Rows with a 4 KiB reason: about 2,100 of them fill a segment (8 MiB).
        let big = |i: usize| {
            let mut r = row(i);
            r.reason = "x".repeat(4096);
            Write::Audit(r)
        };
        // About 2.5 segments' worth: the log rotates at least twice (whether or not the applier is quick
        // enough for a full segment to be deleted before the third one starts).
        let mut seen = std::collections::BTreeSet::new();
        let mut i = 0;
        while i < 5_200 {
            store.commit((i..i + 50).map(big).collect()).await.unwrap();
            i += 50;
            seen.extend(std::fs::read_dir(&log).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n != "lock"));
        }
        assert!(seen.len() >= 3, "the log rotated twice: {seen:?}");
        // The next commit finds the full segments applied and hands them to the applier's thread.
        store.caught_up().await.unwrap();
        store.commit(vec![big(i)]).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while segments() > 1 && std::time::Instant::now() < deadline {
            store.commit(vec![big(i + 1)]).await.unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(segments(), 1, "only the segment being written is left");
        drop(store);
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.audit(None).await.unwrap().len(), i + 1, "every row is in the database");
    }

    /// A store dropped while its database cannot be written frees the log at once (a gateway started next in
    /// the same process is not refused as a second one), and the gateway started once the database works
    /// again applies what the log held. Both kinds of failure: a statement that fails when run (a trigger
    /// refuses the row) and one that cannot even be prepared (the table is gone).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_dropped_while_its_database_fails_frees_the_log_and_nothing_is_lost() {
        let failures = [
            (
                "CREATE TRIGGER refuse BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'refused'); END",
                "DROP TRIGGER refuse",
            ),
            ("ALTER TABLE audit RENAME TO audit_away", "ALTER TABLE audit_away RENAME TO audit"),
        ];
        for (break_it, mend_it) in failures {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
            let store = Store::open(&url).await.unwrap();
            store.commit(vec![Write::Audit(row(1))]).await.unwrap();
            assert_eq!(store.audit(None).await.unwrap().len(), 1);
            // Someone else breaks the audit table: applying fails from now on, answering does not.
            let side = AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
            sqlx::query(break_it).execute(&side).await.unwrap();
            store.commit(vec![Write::Audit(row(2))]).await.unwrap();
            store.commit(vec![Write::Audit(row(3))]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(store);
            let refused = Store::open(&url).await.err().expect("the audit table is still broken");
            assert!(matches!(refused, StoreError::Apply(_)), "{break_it}: not refused as a second gateway: {refused}");
            sqlx::query(mend_it).execute(&side).await.unwrap();
            let store = Store::open(&url).await.unwrap();
            assert_eq!(store.audit(None).await.unwrap(), vec![row(1), row(2), row(3)], "{break_it}");
        }
    }

    /// The log's back-pressure: while the database cannot keep up (here: it refuses every row until mended),
    /// writers go on until the log is [`MAX_APPLY_LAG`] records ahead; the next one waits, and only until the
    /// database is back under that lag, not until it has caught up. Nothing is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_waits_only_while_the_database_is_too_far_behind_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
        let store = Store::open(&url).await.unwrap();
        let side = AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        sqlx::query("CREATE TRIGGER refuse BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'refused'); END")
            .execute(&side)
            .await
            .unwrap();
        let ahead = MAX_APPLY_LAG as usize + 1;
        for i in 0..ahead {
            store.commit(vec![Write::Audit(row(i))]).await.unwrap();
        }
        assert_eq!(store.backlog.waits.get(), 0, "no writer waited while the log was within the lag");
        assert!(store.backlog.records.get() >= MAX_APPLY_LAG as i64);
        let next = {
            let store = store.clone();
            tokio::spawn(async move { store.commit(vec![Write::Audit(row(ahead))]).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!next.is_finished(), "a writer past the lag waits for the database");
        sqlx::query("DROP TRIGGER refuse").execute(&side).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), next).await.expect("released once applied").unwrap().unwrap();
        assert_eq!(store.backlog.waits.get(), 1);
        let mut rows = store.audit(None).await.unwrap();
        rows.sort_by_key(|r| r.seq);
        assert_eq!(rows, (0..=ahead).map(row).collect::<Vec<_>>());
    }
}
