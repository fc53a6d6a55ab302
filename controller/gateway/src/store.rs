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
    sqlite: bool,
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
        tokio::spawn(writer(pool.clone(), sqlite, rx));
        Ok(Store { pool, tx, sqlite })
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

    /// SQLite serves one gateway; PostgreSQL may serve several replicas.
    pub fn is_sqlite(&self) -> bool {
        self.sqlite
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

/// Commits everything queued as one transaction, then tells each caller.
async fn writer(pool: AnyPool, sqlite: bool, mut rx: mpsc::Receiver<Batch>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(b) => batch.push(b),
                Err(_) => break,
            }
        }
        let result = commit_batch(&pool, sqlite, &batch).await.map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, rows = batch.len(), "database commit failed");
        }
        for (_, done) in batch {
            let _ = done.send(result.clone());
        }
    }
}

/// A bound value.
enum Param<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    Float(f64),
    OptFloat(Option<f64>),
}

/// One SQL statement with `?` placeholders (numbered when run) and its values.
struct Stmt<'a> {
    sql: String,
    params: Vec<Param<'a>>,
}

impl<'a> Stmt<'a> {
    fn new(sql: &str, params: Vec<Param<'a>>) -> Stmt<'a> {
        Stmt { sql: sql.to_owned(), params }
    }
}

/// Rewrites `?` placeholders as `$n`, numbering from `first` (both databases accept `$n`).
fn number(sql: &str, first: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = first;
    for c in sql.chars() {
        if c == '?' {
            out.push_str(&format!("${n}"));
            n += 1;
        } else {
            out.push(c);
        }
    }
    out
}

fn bind<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    params: impl IntoIterator<Item = &'q Param<'q>>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for p in params {
        q = match p {
            Param::Text(v) => q.bind(*v),
            Param::OptText(v) => q.bind(*v),
            Param::Int(v) => q.bind(*v),
            Param::Float(v) => q.bind(*v),
            Param::OptFloat(v) => q.bind(*v),
        };
    }
    q
}

/// The statements of a batch, with fewer statements than rows: audit rows go in multi-row inserts, and of
/// several snapshots of one session's state only the last is written (it contains the others).
fn statements(batch: &[Batch]) -> Vec<Stmt<'_>> {
    let mut out = Vec::new();
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
                w => out.push(statement(w)),
            }
        }
    }
    for (id, state) in states {
        out.push(Stmt::new("UPDATE sessions SET state = ? WHERE id = ?", vec![Param::Text(state), Param::Text(id)]));
    }
    for chunk in audits.chunks(AUDIT_ROWS_PER_INSERT) {
        out.push(audit_insert(chunk));
    }
    out
}

/// Writes a batch in one transaction. SQLite gets it as one multi-statement query — one round trip to its
/// worker thread instead of one per statement; PostgreSQL, which takes one statement per query, statement by
/// statement.
async fn commit_batch(pool: &AnyPool, sqlite: bool, batch: &[Batch]) -> Result<(), sqlx::Error> {
    let stmts = statements(batch);
    if sqlite {
        // One transaction, sent as few multi-statement queries as SQLite's limit on bound values allows.
        let mut conn = pool.acquire().await?;
        let mut result = Ok(());
        let mut rest = &stmts[..];
        let mut first = true;
        while result.is_ok() && (first || !rest.is_empty()) {
            // The first query opens the transaction and the last commits it: one round trip for most batches.
            let mut sql = String::from(if first { "BEGIN IMMEDIATE;\n" } else { "" });
            first = false;
            let mut params: Vec<&Param<'_>> = Vec::new();
            let mut taken = 0;
            for st in rest {
                if taken > 0 && params.len() + st.params.len() > SQLITE_MAX_PARAMS {
                    break;
                }
                sql.push_str(&number(&st.sql, params.len() + 1));
                sql.push_str(";\n");
                params.extend(st.params.iter());
                taken += 1;
            }
            rest = &rest[taken..];
            if rest.is_empty() {
                sql.push_str("COMMIT;");
            }
            result = bind(sqlx::query(&sql), params).execute(&mut *conn).await.map(|_| ());
        }
        if result.is_err() {
            // Leave the connection clean for the next batch.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        }
        return result;
    }
    let mut tx = pool.begin().await?;
    for st in &stmts {
        let sql = number(&st.sql, 1);
        bind(sqlx::query(&sql), st.params.iter()).execute(&mut *tx).await?;
    }
    tx.commit().await
}

const AUDIT_ROWS_PER_INSERT: usize = 64;
/// SQLite's default limit on bound values in one query is 32,766.
const SQLITE_MAX_PARAMS: usize = 30_000;

fn audit_insert<'a>(rows: &[&'a AuditRow]) -> Stmt<'a> {
    let mut sql = String::from(
        "INSERT INTO audit (id, seq, ts, session, agent, owner, revision, phase, policy, rule, verdict, reason, tool, \
         tool_id, approval_id, decided_by) VALUES ",
    );
    let mut params = Vec::with_capacity(rows.len() * 16);
    for (i, a) in rows.iter().enumerate() {
        sql.push_str(if i == 0 {
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        } else {
            ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        });
        params.extend([
            Param::Text(&a.id),
            Param::Int(a.seq),
            Param::Text(&a.ts),
            Param::Text(&a.session),
            Param::Text(&a.agent),
            Param::Text(&a.owner),
            Param::Text(&a.revision),
            Param::Text(&a.phase),
            Param::OptText(a.policy.as_deref()),
            Param::OptText(a.rule.as_deref()),
            Param::Text(&a.verdict),
            Param::Text(&a.reason),
            Param::OptText(a.tool.as_deref()),
            Param::OptText(a.tool_id.as_deref()),
            Param::OptText(a.approval_id.as_deref()),
            Param::OptText(a.decided_by.as_deref()),
        ]);
    }
    Stmt { sql, params }
}

fn statement(w: &Write) -> Stmt<'_> {
    use Param::*;
    match w {
        Write::SessionNew(s) => Stmt::new(
            "INSERT INTO sessions (id, namespace, agent, owner, parent, token_hash, phase, reason, created_at, \
             ended_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                Text(&s.id),
                Text(&s.namespace),
                Text(&s.agent),
                Text(&s.owner),
                OptText(s.parent.as_deref()),
                Text(&s.token_hash),
                Text(&s.phase),
                OptText(s.reason.as_deref()),
                Text(&s.created_at),
                OptText(s.ended_at.as_deref()),
                Text(&s.state),
            ],
        ),
        Write::SessionState { id, state } => {
            Stmt::new("UPDATE sessions SET state = ? WHERE id = ?", vec![Text(state), Text(id)])
        }
        Write::SessionEnd { id, phase, reason, ended_at } => Stmt::new(
            "UPDATE sessions SET phase = ?, reason = ?, ended_at = ? WHERE id = ?",
            vec![Text(phase), Text(reason), Text(ended_at), Text(id)],
        ),
        Write::Charge(r) => Stmt::new(
            "INSERT INTO charges (id, ts, session, owner, day, model, input_tokens, output_tokens, \
             cache_read_tokens, cache_write_tokens, cost_usd, stream_complete) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                Text(&r.id),
                Text(&r.ts),
                Text(&r.session),
                Text(&r.owner),
                Text(&r.day),
                Text(&r.model),
                Int(r.input_tokens),
                Int(r.output_tokens),
                Int(r.cache_read_tokens),
                Int(r.cache_write_tokens),
                OptFloat(r.cost_usd),
                Int(r.stream_complete as i64),
            ],
        ),
        // Increments, so that several replicas add up rather than overwrite each other.
        Write::UserDaily { owner, day, cost_delta, approved_usd } => Stmt::new(
            "INSERT INTO user_daily (owner, day, cost_usd, approved_usd) VALUES (?, ?, ?, ?) \
             ON CONFLICT (owner, day) DO UPDATE SET cost_usd = user_daily.cost_usd + excluded.cost_usd, \
             approved_usd = CASE WHEN excluded.approved_usd > user_daily.approved_usd \
             THEN excluded.approved_usd ELSE user_daily.approved_usd END",
            vec![Text(owner), Text(day), Float(*cost_delta), Float(*approved_usd)],
        ),
        Write::Audit(a) => audit_insert(&[a]),
        Write::ApprovalNew(a) => Stmt::new(
            "INSERT INTO approvals (id, session, phase, summary, reason, policy, rule, status, decided_by, \
             decision_reason, created_at, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                Text(&a.id),
                Text(&a.session),
                Text(&a.phase),
                Text(&a.summary),
                Text(&a.reason),
                OptText(a.policy.as_deref()),
                OptText(a.rule.as_deref()),
                Text(&a.status),
                OptText(a.decided_by.as_deref()),
                OptText(a.decision_reason.as_deref()),
                Text(&a.created_at),
                OptText(a.decided_at.as_deref()),
            ],
        ),
        Write::Event { session, seq, ts, event } => Stmt::new(
            "INSERT INTO events (session, seq, ts, event) VALUES (?, ?, ?, ?)",
            vec![Text(session), Int(*seq), Text(ts), Text(event)],
        ),
        Write::ApprovalDecided { id, status, decided_by, reason, decided_at } => Stmt::new(
            "UPDATE approvals SET status = ?, decided_by = ?, decision_reason = ?, decided_at = ? \
             WHERE id = ? AND status = 'pending'",
            vec![Text(status), Text(decided_by), Text(reason), Text(decided_at), Text(id)],
        ),
    }
}
