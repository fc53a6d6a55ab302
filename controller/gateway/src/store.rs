//! Durable state through sqlx: SQLite by default, PostgreSQL by URL, one schema and one set of queries.
//! Writes go through a group-commit writer: each caller waits until its rows are committed, and everything
//! queued meanwhile commits in the same transaction, so durability costs one commit per batch.

use std::time::Duration;

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database writer has stopped")]
    WriterGone,
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
            Ok(Err(e)) => Err(StoreError::Db(sqlx::Error::Protocol(e))),
            Err(_) => Err(StoreError::WriterGone),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    tx: mpsc::Sender<Batch>,
}

impl Store {
    /// Opens (creating if needed) and migrates the database.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let url = if sqlite && !url.contains("mode=") {
            format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" })
        } else {
            url.to_owned()
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL: readers never block the writer. NORMAL: a commit survives a process crash
                        // (what the ledger promises); only a power loss can undo the last commits.
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let (tx, rx) = mpsc::channel::<Batch>(4096);
        tokio::spawn(writer(pool.clone(), rx));
        Ok(Store { pool, tx })
    }

    /// Commits the rows; returns once they are durable.
    pub async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.enqueue(writes).await?.wait().await
    }

    /// Queues rows for the writer and returns a handle to wait for their commit. Rows are committed in the
    /// order they were queued, so a caller can queue under a lock (fixing the order of two snapshots of
    /// the same state) and wait after releasing it (so that concurrent callers share one commit).
    pub async fn enqueue(&self, writes: Vec<Write>) -> Result<Pending, StoreError> {
        if writes.is_empty() {
            return Ok(Pending(None));
        }
        let (done, wait) = oneshot::channel();
        self.tx.send((writes, done)).await.map_err(|_| StoreError::WriterGone)?;
        Ok(Pending(Some(wait)))
    }

    /// The highest audit sequence number so far, so that a restarted gateway continues after it.
    pub async fn max_audit_seq(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT MAX(seq) AS m FROM audit").fetch_one(&self.pool).await?;
        Ok(row.try_get::<Option<i64>, _>("m")?.unwrap_or(0))
    }

    /// Transcript events of a session from `offset` on, as `(seq, json)`.
    pub async fn events(&self, session: &str, offset: i64) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT seq, event FROM events WHERE session = $1 AND seq >= $2 ORDER BY seq")
            .bind(session)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("seq")?, r.try_get("event")?))).collect()
    }

    pub async fn max_event_seq(&self, session: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT MAX(seq) AS m FROM events WHERE session = $1")
            .bind(session)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("m")?.unwrap_or(-1))
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, namespace, agent, owner, parent, token_hash, phase, reason, created_at, ended_at, state \
             FROM sessions ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
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
                })
            })
            .collect()
    }

    pub async fn user_daily(&self, day: &str) -> Result<Vec<(String, f64, f64)>, StoreError> {
        let rows = sqlx::query("SELECT owner, cost_usd, approved_usd FROM user_daily WHERE day = $1")
            .bind(day)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("owner")?, r.try_get("cost_usd")?, r.try_get("approved_usd")?))).collect()
    }

    pub async fn charges(&self, session: &str) -> Result<Vec<ChargeRow>, StoreError> {
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
        let sql = "SELECT id, session, phase, summary, reason, policy, rule, status, decided_by, decision_reason, \
                   created_at, decided_at FROM approvals";
        let rows = match status {
            Some(s) => {
                sqlx::query(&format!("{sql} WHERE status = $1 ORDER BY created_at, id"))
                    .bind(s)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => sqlx::query(&format!("{sql} ORDER BY created_at, id")).fetch_all(&self.pool).await?,
        };
        rows.iter()
            .map(|r| {
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
            })
            .collect()
    }

    /// The audit log, oldest first; `session` filters.
    pub async fn audit(&self, session: Option<&str>) -> Result<Vec<AuditRow>, StoreError> {
        let sql = "SELECT id, seq, ts, session, agent, owner, revision, phase, policy, rule, verdict, reason, tool, \
                   approval_id, decided_by FROM audit";
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
                    approval_id: r.try_get("approval_id")?,
                    decided_by: r.try_get("decided_by")?,
                })
            })
            .collect()
    }
}

/// Commits everything queued as one transaction, then tells each caller.
async fn writer(pool: AnyPool, mut rx: mpsc::Receiver<Batch>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(b) => batch.push(b),
                Err(_) => break,
            }
        }
        let result = commit_batch(&pool, &batch).await.map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, rows = batch.len(), "database commit failed");
        }
        for (_, done) in batch {
            let _ = done.send(result.clone());
        }
    }
}

/// Writes a batch in one transaction, with fewer statements than rows: audit rows go in multi-row inserts,
/// and of several snapshots of one session's state only the last is written (it contains the others).
async fn commit_batch(pool: &AnyPool, batch: &[Batch]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut states: Vec<(&str, &str)> = Vec::new();
    let mut audits: Vec<&AuditRow> = Vec::new();
    for (writes, _) in batch {
        for w in writes {
            match w {
                Write::SessionState { id, state } => match states.iter_mut().find(|(i, _)| i == id) {
                    Some(s) => s.1 = state,
                    None => states.push((id, state)),
                },
                Write::Audit(a) => audits.push(a),
                w => write_one(&mut tx, w).await?,
            }
        }
    }
    for (id, state) in states {
        write_one(&mut tx, &Write::SessionState { id: id.to_owned(), state: state.to_owned() }).await?;
    }
    for chunk in audits.chunks(AUDIT_ROWS_PER_INSERT) {
        insert_audit(&mut tx, chunk).await?;
    }
    tx.commit().await
}

const AUDIT_ROWS_PER_INSERT: usize = 64;

async fn insert_audit(tx: &mut sqlx::Transaction<'_, sqlx::Any>, rows: &[&AuditRow]) -> Result<(), sqlx::Error> {
    let mut sql = String::from(
        "INSERT INTO audit (id, seq, ts, session, agent, owner, revision, phase, policy, rule, verdict, reason, tool, \
         approval_id, decided_by) VALUES ",
    );
    for i in 0..rows.len() {
        let b = i * 15;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for k in 1..=15 {
            if k > 1 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", b + k));
        }
        sql.push(')');
    }
    let mut q = sqlx::query(&sql);
    for a in rows {
        q = q
            .bind(&a.id)
            .bind(a.seq)
            .bind(&a.ts)
            .bind(&a.session)
            .bind(&a.agent)
            .bind(&a.owner)
            .bind(&a.revision)
            .bind(&a.phase)
            .bind(&a.policy)
            .bind(&a.rule)
            .bind(&a.verdict)
            .bind(&a.reason)
            .bind(&a.tool)
            .bind(&a.approval_id)
            .bind(&a.decided_by);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

async fn write_one(tx: &mut sqlx::Transaction<'_, sqlx::Any>, w: &Write) -> Result<(), sqlx::Error> {
    match w {
        Write::SessionNew(s) => {
            sqlx::query(
                "INSERT INTO sessions (id, namespace, agent, owner, parent, token_hash, phase, reason, created_at, \
                 ended_at, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&s.id)
            .bind(&s.namespace)
            .bind(&s.agent)
            .bind(&s.owner)
            .bind(&s.parent)
            .bind(&s.token_hash)
            .bind(&s.phase)
            .bind(&s.reason)
            .bind(&s.created_at)
            .bind(&s.ended_at)
            .bind(&s.state)
            .execute(&mut **tx)
            .await?;
        }
        Write::SessionState { id, state } => {
            sqlx::query("UPDATE sessions SET state = $1 WHERE id = $2").bind(state).bind(id).execute(&mut **tx).await?;
        }
        Write::SessionEnd { id, phase, reason, ended_at } => {
            sqlx::query("UPDATE sessions SET phase = $1, reason = $2, ended_at = $3 WHERE id = $4")
                .bind(phase)
                .bind(reason)
                .bind(ended_at)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        Write::Charge(r) => {
            sqlx::query(
                "INSERT INTO charges (id, ts, session, owner, day, model, input_tokens, output_tokens, \
                 cache_read_tokens, cache_write_tokens, cost_usd, stream_complete) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&r.id)
            .bind(&r.ts)
            .bind(&r.session)
            .bind(&r.owner)
            .bind(&r.day)
            .bind(&r.model)
            .bind(r.input_tokens)
            .bind(r.output_tokens)
            .bind(r.cache_read_tokens)
            .bind(r.cache_write_tokens)
            .bind(r.cost_usd)
            .bind(r.stream_complete as i64)
            .execute(&mut **tx)
            .await?;
        }
        Write::UserDaily { owner, day, cost_delta, approved_usd } => {
            // Increments, so that several replicas add up rather than overwrite each other.
            sqlx::query(
                "INSERT INTO user_daily (owner, day, cost_usd, approved_usd) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (owner, day) DO UPDATE SET cost_usd = user_daily.cost_usd + excluded.cost_usd, \
                 approved_usd = CASE WHEN excluded.approved_usd > user_daily.approved_usd \
                 THEN excluded.approved_usd ELSE user_daily.approved_usd END",
            )
            .bind(owner)
            .bind(day)
            .bind(cost_delta)
            .bind(approved_usd)
            .execute(&mut **tx)
            .await?;
        }
        Write::Audit(a) => insert_audit(tx, &[a]).await?,
        Write::ApprovalNew(a) => {
            sqlx::query(
                "INSERT INTO approvals (id, session, phase, summary, reason, policy, rule, status, decided_by, \
                 decision_reason, created_at, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&a.id)
            .bind(&a.session)
            .bind(&a.phase)
            .bind(&a.summary)
            .bind(&a.reason)
            .bind(&a.policy)
            .bind(&a.rule)
            .bind(&a.status)
            .bind(&a.decided_by)
            .bind(&a.decision_reason)
            .bind(&a.created_at)
            .bind(&a.decided_at)
            .execute(&mut **tx)
            .await?;
        }
        Write::Event { session, seq, ts, event } => {
            sqlx::query("INSERT INTO events (session, seq, ts, event) VALUES ($1, $2, $3, $4)")
                .bind(session)
                .bind(seq)
                .bind(ts)
                .bind(event)
                .execute(&mut **tx)
                .await?;
        }
        Write::ApprovalDecided { id, status, decided_by, reason, decided_at } => {
            sqlx::query(
                "UPDATE approvals SET status = $1, decided_by = $2, decision_reason = $3, decided_at = $4 \
                 WHERE id = $5 AND status = 'pending'",
            )
            .bind(status)
            .bind(decided_by)
            .bind(reason)
            .bind(decided_at)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}
