//! The state gateway replicas share through PostgreSQL. What one gateway on SQLite keeps in memory — a
//! session's state and budget holds, an owner's spend today — lives here in the database and is read and
//! changed under its row locks, one transaction per decision, so that any replica serves any request of any
//! session and a limit holds across all of them. Locks are always taken in one order (the owner's day, then
//! sessions child first), so two replicas never wait on each other. Replicas also beat here, with the
//! revision each enforces, and pick up the Policies pushed to any one of them (see [`replicas`]).

pub mod replicas;

use std::time::Duration;

use paddock_policy::SessionState;
use paddock_policy::cost::Metering;
use paddock_policy::state::UserDaily;
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::store::{
    ChargeRow, Param, Stmt, StoreError, Write, state_update_of, statements_of, text, write_combined, write_in,
};

/// How long a replica trusts what it read of a session (that it has not ended) before reading it again:
/// ending a session on one replica refuses its token on every other one within this.
pub const REVALIDATE: Duration = Duration::from_millis(500);

/// The database and this replica's name in it.
#[derive(Clone)]
pub struct Shared {
    pool: AnyPool,
    /// This replica's name: its row in `gateway_replicas`, and the holds it takes.
    pub replica: String,
    started_at: String,
}

/// Gives a hold back when dropped armed: a hold whose request failed before its answer, or whose decision was
/// cancelled while its commit was in flight (the client went away), never stays held by a live replica.
/// Giving back is idempotent: a hold that is not there (never committed, or charged) is left alone.
pub struct HoldGuard {
    shared: Shared,
    hold: Option<HoldRef>,
}

/// Which hold, and the owner's day it counts against (whose row is locked first to change it).
#[derive(Clone, Debug, PartialEq)]
pub struct HoldRef {
    pub id: String,
    pub owner: String,
    pub day: String,
}

impl HoldGuard {
    /// The hold, while armed.
    pub fn hold(&self) -> Option<&HoldRef> {
        self.hold.as_ref()
    }

    /// Nothing to give back: settled, or kept to be charged when this replica stops.
    pub fn disarm(&mut self) {
        self.hold = None;
    }
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        let Some(hold) = self.hold.take() else { return };
        let shared = self.shared.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = shared.release(&hold).await {
                    tracing::warn!(hold = %hold.id, error = %e, "cannot give a hold back; it is charged if this \
                        replica stops");
                }
            });
        }
    }
}

/// A budget hold as one replica takes it: the worst case of one model request in flight.
#[derive(Clone, Debug)]
pub struct HoldRow {
    pub id: String,
    pub session: String,
    pub owner: String,
    /// The owner's day it counts against: the day whose row the decision locked.
    pub day: String,
    pub model: String,
    pub usd: f64,
    pub created_at: String,
}

impl HoldRow {
    pub fn reference(&self) -> HoldRef {
        HoldRef { id: self.id.clone(), owner: self.owner.clone(), day: self.day.clone() }
    }
}

/// A session's row locked for a decision, and its owner's day (locked too when the decision may hold
/// budget); released by [`Locked::commit`] or by dropping it (rolled back).
pub struct Locked {
    tx: Transaction<'static, Any>,
    session: String,
    pub state: SessionState,
    /// The worst case of the session's requests in flight, on every replica.
    pub reserved: f64,
    /// `(phase, reason)` once ended.
    pub ended: Option<(String, String)>,
    day: UserDaily,
    day_reserved: f64,
    /// The hold to take with the commit, and the replica taking it.
    hold: Option<(HoldRow, String)>,
    /// More rows to write with the commit (a tool call's answer).
    extra: Vec<Stmt>,
}

fn state_of(session: &str, text: &str) -> Result<SessionState, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::State(session.to_owned(), e.to_string()))
}

/// Locks the owner's row of `day` (creating it): `(spent, approved, held)`. An upsert that changes nothing
/// locks the row and returns it in one round trip.
async fn lock_owner_day(
    conn: &mut sqlx::AnyConnection,
    owner: &str,
    day: &str,
) -> Result<(f64, f64, f64), sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO user_daily (owner, day, cost_usd, approved_usd, reserved_usd) VALUES ($1, $2, 0, 0, 0) \
         ON CONFLICT (owner, day) DO UPDATE SET owner = excluded.owner \
         RETURNING cost_usd, approved_usd, reserved_usd",
    )
    .bind(owner)
    .bind(day)
    .fetch_one(&mut *conn)
    .await?;
    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
}

/// Adds `usd` (negative: takes it off, never below zero) to what the owner holds on `day`.
fn day_held(owner: &str, day: &str, usd: f64) -> Stmt {
    Stmt::new(
        "UPDATE user_daily SET reserved_usd = GREATEST(reserved_usd + ?, 0) WHERE owner = ? AND day = ?",
        vec![Param::Float(Some(usd)), text(owner), text(day)],
    )
}

/// Adds `usd` to what the session holds, with its new state when given.
fn session_held(session: &str, state: Option<&str>, usd: f64) -> Stmt {
    match state {
        Some(st) => Stmt::new(
            "UPDATE sessions SET state = ?, reserved_usd = GREATEST(reserved_usd + ?, 0) WHERE id = ?",
            vec![text(st), Param::Float(Some(usd)), text(session)],
        ),
        None => Stmt::new(
            "UPDATE sessions SET reserved_usd = GREATEST(reserved_usd + ?, 0) WHERE id = ?",
            vec![Param::Float(Some(usd)), text(session)],
        ),
    }
}

fn hold_insert(h: &HoldRow, replica: &str) -> Stmt {
    Stmt::new(
        "INSERT INTO holds (id, session, owner, day, model, usd, replica, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            text(&h.id),
            text(&h.session),
            text(&h.owner),
            text(&h.day),
            text(&h.model),
            Param::Float(Some(h.usd)),
            text(replica),
            text(&h.created_at),
        ],
    )
}

/// Folds a change of what session `id` holds into `stmts`: into its state's update when they write it (one
/// change per row in one statement), else as one more statement.
fn fold_session_held(stmts: &mut Vec<Stmt>, id: &str, usd: f64) {
    match state_update_of(stmts, id) {
        Some(i) => {
            let state = match &stmts[i].params[0] {
                Param::Text(Some(st)) => st.clone(),
                _ => unreachable!("a state update's first value is the state"),
            };
            stmts[i] = session_held(id, Some(&state), usd);
        }
        None => stmts.push(session_held(id, None, usd)),
    }
}

fn remember_tool_stmt(session: &str, tool_id: &str, call: &str, ruling: &str) -> Stmt {
    Stmt::new(
        "INSERT INTO decided_tools (session, tool_id, call, ruling) VALUES (?, ?, ?, ?) \
         ON CONFLICT (session, tool_id) DO UPDATE SET call = excluded.call, ruling = excluded.ruling",
        vec![text(session), text(tool_id), text(call), text(ruling)],
    )
}

/// A hold removed: `(session, owner, day, usd)`; `None` when it was gone (charged already).
async fn delete_hold(
    conn: &mut sqlx::AnyConnection,
    hold: &str,
) -> Result<Option<(String, String, String, f64)>, sqlx::Error> {
    let row = sqlx::query("DELETE FROM holds WHERE id = $1 RETURNING session, owner, day, usd")
        .bind(hold)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))).transpose()
}

impl Shared {
    pub fn new(pool: AnyPool, replica: String, started_at: String) -> Shared {
        Shared { pool, replica, started_at }
    }

    /// The guard of a hold, armed: taken before the hold's commit is awaited.
    pub fn guard(&self, hold: HoldRef) -> HoldGuard {
        HoldGuard { shared: self.clone(), hold: Some(hold) }
    }

    /// Registers a sub-agent's session, unless its parent has ended or already has `max_live` children
    /// alive. The parent's row is locked, so an end of the parent on another replica waits for this insert
    /// and then ends the child too, and two replicas starting children of one parent count them one after
    /// the other.
    pub async fn insert_child(
        &self,
        row: &crate::store::SessionRow,
        parent: &str,
        max_live: Option<usize>,
    ) -> Result<ChildInsert, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ended: Option<String> = sqlx::query("SELECT ended_at FROM sessions WHERE id = $1 FOR UPDATE")
            .bind(parent)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<Option<String>, _>(0))
            .transpose()?
            .flatten();
        if ended.is_some() {
            return Ok(ChildInsert::ParentEnded);
        }
        if let Some(max) = max_live {
            let live: i64 = sqlx::query("SELECT COUNT(*) FROM sessions WHERE parent = $1 AND ended_at IS NULL")
                .bind(parent)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            if live as usize >= max {
                return Ok(ChildInsert::Full(live as usize));
            }
        }
        write_in(&mut tx, &[Write::SessionNew(row.clone())]).await?;
        tx.commit().await?;
        Ok(ChildInsert::Inserted)
    }

    /// Locks `session`'s row for one decision; with `lock_owner`, the owner's row of `day` first (a decision
    /// that may hold budget against the owner's day). Two round trips after `BEGIN` with the owner, one
    /// without.
    pub async fn lock(&self, session: &str, owner: &str, day: &str, lock_owner: bool) -> Result<Locked, StoreError> {
        let mut tx = self.pool.begin().await?;
        let locked_day = match lock_owner {
            true => Some(lock_owner_day(&mut tx, owner, day).await?),
            false => None,
        };
        // What the owner holds counts whatever day its hold was taken on: a request in flight at midnight is
        // charged to the new day.
        let row = sqlx::query(
            "SELECT s.state, s.reserved_usd, s.phase, s.reason, s.ended_at, d.cost_usd, d.approved_usd, \
             (SELECT SUM(h.reserved_usd) FROM user_daily h WHERE h.owner = $2) AS owner_held FROM sessions s \
             LEFT JOIN user_daily d ON d.owner = $2 AND d.day = $3 WHERE s.id = $1 FOR UPDATE OF s",
        )
        .bind(session)
        .bind(owner)
        .bind(day)
        .fetch_one(&mut *tx)
        .await?;
        let ended = match row.try_get::<Option<String>, _>("ended_at")? {
            Some(_) => Some((row.try_get("phase")?, row.try_get::<Option<String>, _>("reason")?.unwrap_or_default())),
            None => None,
        };
        let (spent, approved) = match locked_day {
            Some((spent, approved, _)) => (spent, approved),
            None => (
                row.try_get::<Option<f64>, _>("cost_usd")?.unwrap_or(0.0),
                row.try_get::<Option<f64>, _>("approved_usd")?.unwrap_or(0.0),
            ),
        };
        let held = row.try_get::<Option<f64>, _>("owner_held")?.unwrap_or(0.0);
        Ok(Locked {
            state: state_of(session, &row.try_get::<String, _>("state")?)?,
            reserved: row.try_get("reserved_usd")?,
            ended,
            day: UserDaily { day: day.to_owned(), cost_usd: spent, approved_usd: approved },
            day_reserved: held,
            session: session.to_owned(),
            hold: None,
            extra: Vec::new(),
            tx,
        })
    }

    /// A session's state and what its requests in flight hold, as of now.
    pub async fn state(&self, session: &str) -> Result<(SessionState, f64), StoreError> {
        let row = sqlx::query("SELECT state, reserved_usd FROM sessions WHERE id = $1")
            .bind(session)
            .fetch_one(&self.pool)
            .await?;
        Ok((state_of(session, &row.try_get::<String, _>("state")?)?, row.try_get("reserved_usd")?))
    }

    /// `(phase, reason)` if the session has ended (on any replica).
    pub async fn ended(&self, session: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT phase, reason, ended_at FROM sessions WHERE id = $1")
            .bind(session)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        if row.try_get::<Option<String>, _>("ended_at")?.is_none() {
            return Ok(None);
        }
        Ok(Some((row.try_get("phase")?, row.try_get::<Option<String>, _>("reason")?.unwrap_or_default())))
    }

    /// The sessions started under `parent` that have not ended.
    pub async fn live_children(&self, parent: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM sessions WHERE parent = $1 AND ended_at IS NULL ORDER BY id")
            .bind(parent)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
    }

    /// Takes a hold outside a decision (an ask a human allowed): the owner's day, then the session.
    pub async fn hold_now(&self, hold: &HoldRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_owner_day(&mut tx, &hold.owner, &hold.day).await?;
        let stmts = [
            hold_insert(hold, &self.replica),
            day_held(&hold.owner, &hold.day, hold.usd),
            session_held(&hold.session, None, hold.usd),
        ];
        write_combined(&mut tx, &stmts).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives a hold back without a charge (the request failed before the upstream answered). A hold already
    /// gone (charged) stays charged.
    pub async fn release(&self, hold: &HoldRef) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // The owner's day first, as everywhere.
        lock_owner_day(&mut tx, &hold.owner, &hold.day).await?;
        if let Some((session, owner, day, usd)) = delete_hold(&mut tx, &hold.id).await? {
            write_combined(&mut tx, &[day_held(&owner, &day, -usd), session_held(&session, None, -usd)]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Meters a model call: the charge row, the state of each session of `chain` (the session, then its
    /// ancestors), the owner's day, and the request's hold given back, in one transaction. With a hold that
    /// is already gone — charged at its worst case because this replica was taken for dead — nothing is
    /// charged again and this returns `false`.
    pub async fn settle(
        &self,
        chain: &[String],
        charge: &ChargeRow,
        m: &Metering,
        hold: Option<&HoldRef>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_owner_day(&mut tx, &charge.owner, &charge.day).await?;
        // A hold taken on another day (before midnight): that day's row too, before any session's.
        if let Some(h) = hold
            && (h.owner != charge.owner || h.day != charge.day)
        {
            lock_owner_day(&mut tx, &h.owner, &h.day).await?;
        }
        let held = match hold {
            Some(h) => match delete_hold(&mut tx, &h.id).await? {
                Some(held) => Some(held),
                None => return Ok(false),
            },
            None => None,
        };
        // The chain's rows, locked together: only one settlement of an owner runs at a time (the owner's
        // row above), so the order among them cannot deadlock.
        let marks = (1..=chain.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT id, state FROM sessions WHERE id IN ({marks}) FOR UPDATE");
        let mut q = sqlx::query(&sql);
        for id in chain {
            q = q.bind(id);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        let mut writes = vec![Write::Charge(charge.clone())];
        for row in &rows {
            let id: String = row.try_get(0)?;
            let mut st = state_of(&id, &row.try_get::<String, _>(1)?)?;
            st.meter(m);
            writes.push(Write::SessionState { id, state: serde_json::to_string(&st).expect("state") });
        }
        let mut stmts = statements_of(&writes);
        let mut day_delta = (m.cost_usd.unwrap_or(0.0), 0.0);
        if let Some((session, owner, day, usd)) = &held {
            fold_session_held(&mut stmts, session, -usd);
            if *day == charge.day && *owner == charge.owner {
                day_delta.1 = -usd;
            } else {
                // A hold taken before midnight: yesterday's row gives it back, on its own.
                write_combined(&mut tx, &[day_held(owner, day, -usd)]).await?;
            }
        }
        if day_delta != (0.0, 0.0) {
            stmts.push(Stmt::new(
                "UPDATE user_daily SET cost_usd = cost_usd + ?, reserved_usd = GREATEST(reserved_usd + ?, 0) \
                 WHERE owner = ? AND day = ?",
                vec![
                    Param::Float(Some(day_delta.0)),
                    Param::Float(Some(day_delta.1)),
                    text(&charge.owner),
                    text(&charge.day),
                ],
            ));
        }
        write_combined(&mut tx, &stmts).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Appends transcript events with the next sequence numbers, whichever replica appends: one append at a
    /// time per session (a transaction-scoped advisory lock on its id). Returns the first number.
    pub async fn append_events(&self, session: &str, ts: &str, events: &[String]) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS locked")
            .bind(session)
            .fetch_one(&mut *tx)
            .await?;
        let first: i64 = sqlx::query("SELECT COALESCE(MAX(seq), -1) + 1 FROM events WHERE session = $1")
            .bind(session)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let writes: Vec<Write> = events
            .iter()
            .zip(first..)
            .map(|(e, seq)| Write::Event { session: session.to_owned(), seq, ts: ts.to_owned(), event: e.clone() })
            .collect();
        write_in(&mut tx, &writes).await?;
        tx.commit().await?;
        Ok(first)
    }

    /// Keeps the answer to a session's tool call (the last one for its id) for a hook asking on any replica.
    pub async fn remember_tool(
        &self,
        session: &str,
        tool_id: &str,
        call: &str,
        ruling: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        write_combined(&mut conn, &[remember_tool_stmt(session, tool_id, call, ruling)]).await?;
        Ok(())
    }

    /// Drops the answers kept for an ended session's tool calls: its hooks ask nothing more.
    pub async fn forget_tools(&self, session: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM decided_tools WHERE session = $1").bind(session).execute(&self.pool).await?;
        Ok(())
    }

    /// The session and its ancestors, child first, as the database records them.
    pub async fn chain(&self, session: &str) -> Result<Vec<String>, StoreError> {
        let mut chain = vec![session.to_owned()];
        loop {
            let last = chain.last().expect("chain").clone();
            let parent: Option<String> = sqlx::query("SELECT parent FROM sessions WHERE id = $1")
                .bind(&last)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get::<Option<String>, _>(0))
                .transpose()?
                .flatten();
            match parent {
                Some(p) if !chain.contains(&p) => chain.push(p),
                _ => return Ok(chain),
            }
        }
    }
}

impl Locked {
    /// The owner's day as the engine sees it: spent, plus what every replica holds for the owner.
    pub fn user_view(&self) -> UserDaily {
        let mut u = self.day.clone();
        u.cost_usd += self.day_reserved;
        u
    }

    /// Holds `hold.usd` against the session and the owner's day with the commit: the check that allowed the
    /// request and the hold commit together. The owner's row of `hold.day` must be locked (`lock` with
    /// `lock_owner`, on that day).
    pub fn hold(&mut self, hold: HoldRow, replica: &str) {
        self.hold = Some((hold, replica.to_owned()));
    }

    /// The answer kept for this session's tool call `tool_id`, `(call, ruling)` as JSON, read under the lock.
    pub async fn decided_tool(&mut self, tool_id: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT call, ruling FROM decided_tools WHERE session = $1 AND tool_id = $2")
            .bind(&self.session)
            .bind(tool_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row.map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?))).transpose()?)
    }

    /// Keeps the answer to this session's tool call `tool_id` with the commit.
    pub fn remember_tool(&mut self, tool_id: &str, call: &str, ruling: &str) {
        self.extra.push(remember_tool_stmt(&self.session, tool_id, call, ruling));
    }

    /// Writes the decision's rows (its state, audit rows, an approval) and its hold in one statement, and
    /// releases the locks: with `BEGIN`, the lock and `COMMIT`, four round trips for a decision.
    pub async fn commit(mut self, writes: &[Write]) -> Result<(), StoreError> {
        let mut stmts = statements_of(writes);
        stmts.append(&mut self.extra);
        if let Some((h, replica)) = &self.hold {
            fold_session_held(&mut stmts, &self.session, h.usd);
            stmts.push(hold_insert(h, replica));
            let held = day_held(&h.owner, &h.day, h.usd);
            if writes.iter().any(|w| matches!(w, Write::UserDaily { .. })) {
                // The owner's row changes twice (an approved threshold too): the hold's part on its own.
                write_combined(&mut self.tx, &[held]).await?;
            } else {
                stmts.push(held);
            }
        }
        write_combined(&mut self.tx, &stmts).await?;
        self.tx.commit().await?;
        Ok(())
    }
}

/// What [`Shared::insert_child`] did.
#[derive(Debug, PartialEq)]
pub enum ChildInsert {
    Inserted,
    ParentEnded,
    /// The parent has this many children alive, its limit.
    Full(usize),
}
