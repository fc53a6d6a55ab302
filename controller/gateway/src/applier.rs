//! Brings a SQLite database up to date behind the gateway's log, on a thread of its own, through one
//! connection of its own with each statement's shape prepared once.
//!
//! Why not sqlx here, as everywhere else: sqlx-sqlite runs every query on a worker thread behind a channel,
//! so applying a record cost a hand-off per query, and one multi-statement text per transaction (one hand-off)
//! had SQLite parse every statement again each time. Together that was about 250 µs of the gateway's one
//! core per proxied request, more than the request itself; with statements prepared once and executed on
//! the applying thread it is a small fraction of that (`docs/performance.md`, "Gateway under sustained load").
//! The log's records keep their format: the same statements and values, replayed here.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, Value as SqlValue};
use rusqlite::{Connection, ToSql, TransactionBehavior};
use tokio::sync::{mpsc, watch};

use crate::journal::{Record, delete_segment};
use crate::store::{AUDIT_COLUMNS, AUDIT_INSERT, Param, Stmt, audit_insert_sql, supersede_states};

/// Records per transaction: small transactions move `applied` on often, so that a writer held by the log's
/// back-pressure waits for one of them (about a millisecond), not for a large batch.
const APPLY_RECORDS: usize = 64;

/// How long the applier waits for more records after the first of a transaction, when fewer than
/// [`APPLY_RECORDS`] are waiting.
const APPLY_WINDOW: Duration = Duration::from_millis(2);

/// The applying thread's weight: below the threads that answer requests, so that on a busy core they get most
/// of it, but not so low that the log's back-pressure stops them while the applier catches up in one burst.
const BACKGROUND_NICE: i32 = 5;

/// The longest the applying thread runs before the scheduler may hand the core back to a request: its
/// transactions run in short turns between requests instead of holding the core for milliseconds.
const BACKGROUND_SLICE: Duration = Duration::from_micros(100);

/// WAL pages after which a commit also copies them into the database file (SQLite's `wal_autocheckpoint`,
/// 1,000 by default: under load, many checkpoints a second). A page written again before the next
/// checkpoint is copied once, so with a WAL of about 40 MiB the pages every request rewrites (the tables'
/// last pages, the sessions' rows) are copied a tenth as often, and the applier waits on a checkpoint's
/// fsyncs a tenth as often (`docs/performance.md`, "Gateway under sustained load").
const CHECKPOINT_PAGES: i64 = 10_000;

/// Shapes of statement kept prepared: every statement the log holds has one of a few fixed texts.
const PREPARED: usize = 32;

/// SQLite's page cache for the applying connection, in KiB: the indexes the inserts walk stay in memory
/// instead of being read from the file again for every transaction.
const CACHE_KIB: i64 = 16 * 1024;

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Text(Some(s)) => ToSqlOutput::Borrowed(s.as_str().into()),
            Param::Int(i) => ToSqlOutput::Owned(SqlValue::Integer(*i)),
            Param::Float(Some(f)) => ToSqlOutput::Owned(SqlValue::Real(*f)),
            Param::Text(None) | Param::Float(None) => ToSqlOutput::Owned(SqlValue::Null),
        })
    }
}

/// The applying connection.
pub(crate) struct Applier {
    conn: Connection,
    /// The one-row audit insert: the log holds audit rows as multi-row inserts of any size, applied here a
    /// row at a time so that one prepared statement serves them all.
    audit_row: String,
}

impl Applier {
    /// Opens the database file for applying. `synchronous` is SQLite's setting (`NORMAL` or `FULL`).
    pub(crate) fn open(file: &Path, synchronous: &str) -> rusqlite::Result<Applier> {
        let conn = Connection::open(file)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(PREPARED);
        Ok(Applier { conn, audit_row: audit_insert_sql(1) })
    }

    /// The last record of the log the database holds.
    pub(crate) fn applied(&self) -> rusqlite::Result<u64> {
        let seq: i64 = self.conn.query_row("SELECT seq FROM journal_applied WHERE id = 1", [], |r| r.get(0))?;
        Ok(seq as u64)
    }

    /// Applies records (in order, not empty) in one transaction, with the mark of the last one, so that a
    /// replay applies each record once. Of several snapshots of one session's state only the last is
    /// written (it contains the others). All or nothing: on an error the transaction is rolled back.
    pub(crate) fn apply(&mut self, records: &[Record]) -> rusqlite::Result<u64> {
        let last = records.last().expect("records to apply").seq;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for st in supersede_states(records.iter().flat_map(|r| &r.stmts).collect::<Vec<&Stmt>>()) {
            if st.sql.starts_with(AUDIT_INSERT) {
                let mut insert = tx.prepare_cached(&self.audit_row)?;
                for row in st.params.chunks(AUDIT_COLUMNS) {
                    insert.execute(rusqlite::params_from_iter(row))?;
                }
            } else {
                tx.prepare_cached(&st.sql)?.execute(rusqlite::params_from_iter(&st.params))?;
            }
        }
        tx.prepare_cached("UPDATE journal_applied SET seq = ? WHERE id = 1")?.execute([last as i64])?;
        tx.commit()?;
        Ok(last)
    }
}

/// Gives the calling thread [`BACKGROUND_NICE`] and, where the kernel supports it (Linux 6.12 and later, EEVDF
/// custom slices), [`BACKGROUND_SLICE`]. An older kernel ignores the slice and keeps the weight.
fn background_priority() {
    /// `struct sched_attr` of `sched_setattr(2)`.
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
        util_min: u32,
        util_max: u32,
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: 0,
        nice: BACKGROUND_NICE,
        priority: 0,
        runtime: BACKGROUND_SLICE.as_nanos() as u64,
        deadline: 0,
        period: 0,
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: sched_setattr reads `attr` (its size given in it) and changes only the calling thread (0).
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if set != 0 {
        let error = std::io::Error::last_os_error();
        tracing::debug!(%error, "no scheduler slice for the applier; setting its nice value only");
        // SAFETY: setpriority only reads its arguments; 0 is the calling thread.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) };
    }
}

/// The applying thread's loop: takes the records the log hands over, several per transaction, and
/// publishes the last one applied. A failed transaction is retried (the records are safe in the log) and
/// makes the gateway not ready meanwhile. After each transaction it deletes the log's segments the log gave
/// up (`retired`): off the threads that answer requests. Returns once every store is gone and everything
/// handed over is applied (or cannot be: then the log keeps it for the next start).
pub(crate) fn run(
    mut db: Applier,
    mut rx: mpsc::UnboundedReceiver<Record>,
    retired: std::sync::mpsc::Receiver<PathBuf>,
    applied: watch::Sender<u64>,
    healthy: Arc<AtomicBool>,
    // The log's lock, released once the last record is applied: a gateway started next must not replay
    // records this one is still applying.
    _lock: Arc<std::fs::File>,
) {
    background_priority();
    'applying: while let Some(first) = rx.blocking_recv() {
        let mut size = first.stmts.len();
        let mut records = vec![first];
        if rx.len() < APPLY_RECORDS {
            // Under a light load records come one at a time: gather a few more, since a transaction costs
            // about the same for one record as for ten (it writes the pages it touched to the WAL).
            std::thread::sleep(APPLY_WINDOW);
        }
        while size < 16_384 && records.len() < APPLY_RECORDS {
            match rx.try_recv() {
                Ok(r) => {
                    size += r.stmts.len();
                    records.push(r);
                }
                Err(_) => break,
            }
        }
        let mut backoff = Duration::from_millis(50);
        let last = loop {
            match db.apply(&records) {
                Ok(last) => break last,
                Err(e) => {
                    let through = records.last().map_or(0, |r| r.seq);
                    if rx.is_closed() {
                        // Every store is gone: stop and free the log's lock; the records are safe in the log
                        // and a gateway started next applies them.
                        tracing::error!(error = %e, through, "stopping with the gateway's log not fully applied");
                        break 'applying;
                    }
                    healthy.store(false, Ordering::Release);
                    tracing::error!(error = %e, through, "cannot apply the gateway's log to the database; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        healthy.store(true, Ordering::Release);
        applied.send_replace(last);
        retired.try_iter().for_each(|p| delete_segment(&p));
    }
    retired.try_iter().for_each(|p| delete_segment(&p));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::row;
    use crate::store::{SessionRow, Write, audit_insert, statement};

    /// A database file with the gateway's schema (migrated by a store opened on it and closed again).
    async fn database(dir: &Path) -> Applier {
        let file = dir.join("gateway.db");
        drop(crate::store::Store::open(&format!("sqlite://{}", file.display())).await.unwrap());
        Applier::open(&file, "NORMAL").unwrap()
    }

    fn session(id: &str) -> Write {
        Write::SessionNew(SessionRow {
            id: id.into(),
            namespace: "team-a".into(),
            agent: "coder".into(),
            owner: "alice".into(),
            parent: None,
            token_hash: format!("hash-{id}"),
            phase: "Running".into(),
            reason: None,
            created_at: "2026-12-04T00:00:00Z".into(),
            ended_at: None,
            state: "{}".into(),
            credentials: String::new(),
        })
    }

    fn state(id: &str, state: &str) -> Stmt {
        statement(&Write::SessionState { id: id.into(), state: state.into() })
    }

    fn audits(range: std::ops::Range<usize>) -> Vec<Stmt> {
        let rows: Vec<_> = range.map(row).collect();
        audit_insert(&rows.iter().collect::<Vec<_>>())
    }

    fn count(db: &Applier, sql: &str) -> i64 {
        db.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[tokio::test]
    async fn records_apply_with_every_audit_row_the_last_state_and_the_mark_of_the_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = database(dir.path()).await;
        let mut first = vec![statement(&session("s-1")), state("s-1", r#"{"n":1}"#)];
        first.extend(audits(0..3));
        let mut second = vec![state("s-1", r#"{"n":2}"#)];
        // More rows than one multi-row insert holds: the log has them as two statements.
        second.extend(audits(3..303));
        assert_eq!(second.len(), 3, "two audit inserts and a state update");
        let applied = db.apply(&[Record { seq: 7, stmts: first }, Record { seq: 8, stmts: second }]).unwrap();
        assert_eq!(applied, 8);
        assert_eq!(db.applied().unwrap(), 8);
        assert_eq!(count(&db, "SELECT count(*) FROM audit"), 303);
        assert_eq!(count(&db, "SELECT count(*) FROM audit WHERE tool_id IS NOT NULL"), 101);
        let kept: String = db.conn.query_row("SELECT state FROM sessions WHERE id = 's-1'", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, r#"{"n":2}"#);
        // The same shapes again, from the prepared statements.
        db.apply(&[Record { seq: 9, stmts: audits(303..304) }]).unwrap();
        assert_eq!(count(&db, "SELECT count(*) FROM audit"), 304);
    }

    #[tokio::test]
    async fn a_record_the_database_refuses_rolls_back_its_whole_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = database(dir.path()).await;
        db.apply(&[Record { seq: 1, stmts: vec![statement(&session("s-1"))] }]).unwrap();
        let mut refused = audits(0..5);
        refused.push(statement(&session("s-1")));
        let err = db.apply(&[Record { seq: 2, stmts: audits(10..12) }, Record { seq: 3, stmts: refused }]);
        assert!(err.unwrap_err().to_string().contains("UNIQUE"), "the duplicate session is refused");
        assert_eq!(db.applied().unwrap(), 1, "neither record is marked applied");
        assert_eq!(count(&db, "SELECT count(*) FROM audit"), 0, "no row of the transaction stays");
        // The retry of the records that can be applied goes through on the same connection.
        db.apply(&[Record { seq: 2, stmts: audits(10..12) }]).unwrap();
        assert_eq!((db.applied().unwrap(), count(&db, "SELECT count(*) FROM audit")), (2, 2));
    }

    #[tokio::test]
    async fn text_from_an_agent_is_stored_as_it_came_never_run_as_sql() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = database(dir.path()).await;
        let hostile = "x'); DROP TABLE audit; -- \u{0}\"; ?1 $1 \u{202e}";
        let mut a = row(1);
        a.reason = hostile.into();
        a.tool = Some(format!("{hostile}?"));
        let event = Write::Event { session: "s-1".into(), seq: 1, ts: "t".into(), event: hostile.into() };
        let mut stmts = audit_insert(&[&a]);
        stmts.push(statement(&event));
        db.apply(&[Record { seq: 1, stmts }]).unwrap();
        let (reason, tool): (String, String) =
            db.conn.query_row("SELECT reason, tool FROM audit", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((reason.as_str(), tool), (hostile, format!("{hostile}?")));
        let stored: String = db.conn.query_row("SELECT event FROM events", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, hostile);
    }
}
