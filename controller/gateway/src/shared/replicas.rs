//! What replicas on one database tell each other: each beats every second with the policy revision it
//! enforces; each picks up the Agents and Policies pushed to any of them (`PUT /v1/policies` stores the push)
//! within [`POLICY_POLL`]; and the budget holds of a replica that stopped beating are charged at their worst
//! case, since the usage of its responses in flight will never arrive.

use std::sync::Weak;
use std::time::Duration;

use paddock_policy::Usage;
use paddock_policy::cost::Metering;
use serde::Serialize;
use sqlx::Row;

use super::Shared;
use crate::policies::PolicyPush;
use crate::store::{ChargeRow, StoreError};

/// How often a replica looks for a policy set pushed to another one.
pub const POLICY_POLL: Duration = Duration::from_millis(250);
/// How often a replica beats.
pub const BEAT: Duration = Duration::from_secs(1);
/// A replica not heard from for this long is taken for dead: it is no longer listed, and its holds are
/// charged.
pub const DEAD_AFTER_SECONDS: i64 = 5;

/// What the loop needs of the gateway it runs for.
pub trait Replica: Send + Sync + 'static {
    /// The revision this replica enforces.
    fn revision(&self) -> String;
    /// Enforces a set pushed to another replica from now on.
    fn adopt(&self, push: PolicyPush);
    /// A hold of a dead replica was charged its worst case.
    fn charged_dead_hold(&self, session: &str, usd: f64);
}

/// One replica as `GET /v1/replicas` lists it.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaRow {
    pub id: String,
    pub revision: String,
    pub started_at: String,
    /// The last beat, Unix seconds.
    pub seen_at: i64,
}

/// The database's clock in Unix seconds: beats are written and judged by one clock, whatever the replicas'
/// own clocks say.
const NOW: &str = "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)";

impl Shared {
    /// Stores a pushed set for the other replicas (the last push wins).
    pub async fn store_policies(&self, push: &PolicyPush, pushed_at: &str) -> Result<(), StoreError> {
        let body = serde_json::to_string(push).expect("push json");
        sqlx::query(
            "INSERT INTO policy_sets (id, revision, body, pushed_at) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, body = excluded.body, \
             pushed_at = excluded.pushed_at",
        )
        .bind(&push.revision)
        .bind(body)
        .bind(pushed_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The revision last pushed to any replica.
    pub async fn last_pushed(&self) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT revision FROM policy_sets WHERE id = 1").fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    }

    /// The set last pushed to any replica, when its revision is not `current`.
    pub async fn pushed_policies(&self, current: &str) -> Result<Option<(String, String)>, StoreError> {
        let Some(revision) = self.last_pushed().await? else { return Ok(None) };
        if revision == current {
            return Ok(None);
        }
        let body: String =
            sqlx::query("SELECT body FROM policy_sets WHERE id = 1").fetch_one(&self.pool).await?.try_get(0)?;
        Ok(Some((revision, body)))
    }

    /// Records this replica's beat and the revision it enforces.
    pub async fn beat(&self, revision: &str) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO gateway_replicas (id, revision, started_at, seen_at) VALUES ($1, $2, $3, {NOW}) \
             ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, seen_at = excluded.seen_at",
        ))
        .bind(&self.replica)
        .bind(revision)
        .bind(&self.started_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The replicas heard from within [`DEAD_AFTER_SECONDS`].
    pub async fn replicas(&self) -> Result<Vec<ReplicaRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT id, revision, started_at, seen_at FROM gateway_replicas WHERE seen_at >= {NOW} - $1 \
             ORDER BY started_at, id",
        ))
        .bind(DEAD_AFTER_SECONDS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReplicaRow {
                    id: r.try_get(0)?,
                    revision: r.try_get(1)?,
                    started_at: r.try_get(2)?,
                    seen_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Charges the holds of replicas not heard from within [`DEAD_AFTER_SECONDS`] at their worst case:
    /// `(session, usd)` of each. Each hold is charged once, whichever replica sweeps it.
    pub async fn sweep_dead_holds(&self) -> Result<Vec<(String, f64)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT h.id, h.session, h.owner, h.day, h.model, h.usd FROM holds h WHERE h.replica <> $1 AND NOT EXISTS \
             (SELECT 1 FROM gateway_replicas r WHERE r.id = h.replica AND r.seen_at >= {NOW} - $2)",
        ))
        .bind(&self.replica)
        .bind(DEAD_AFTER_SECONDS)
        .fetch_all(&self.pool)
        .await?;
        let mut charged = Vec::new();
        for r in rows {
            let (id, session, owner, day, model, usd): (String, String, String, String, String, f64) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?);
            let charge = ChargeRow {
                id: format!("c-{}", id.trim_start_matches("h-")),
                ts: time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .expect("format time"),
                session: session.clone(),
                owner,
                day,
                model: model.clone(),
                input_tokens: 0,
                output_tokens: 0,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                cost_usd: Some(usd),
                stream_complete: false,
            };
            let m = Metering { model, usage: Usage::default(), cost_usd: Some(usd) };
            let chain = self.chain(&session).await?;
            let hold = super::HoldRef { id, owner: charge.owner.clone(), day: charge.day.clone() };
            if self.settle(&chain, &charge, &m, Some(&hold)).await? {
                charged.push((session, usd));
            }
        }
        Ok(charged)
    }

    /// Runs this replica's side of the sharing until the gateway is dropped: policy pick-up and beats in one
    /// task, sweeping dead replicas' holds in another (a sweep waiting on a lock must not stop the beats, or
    /// this replica would be taken for dead). Errors are logged and tried again on the next round.
    pub fn spawn(&self, host: Weak<dyn Replica>) {
        let shared = self.clone();
        let beats = host.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLICY_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let beat_every = (BEAT.as_millis() / POLICY_POLL.as_millis()).max(1) as u64;
            let mut refused: Option<String> = None;
            let mut beaten: Option<String> = None;
            for round in 0u64.. {
                tick.tick().await;
                let Some(host) = beats.upgrade() else { return };
                match shared.pushed_policies(&host.revision()).await {
                    Ok(Some((revision, _))) if refused.as_deref() == Some(revision.as_str()) => {}
                    Ok(Some((revision, body))) => match serde_json::from_str::<PolicyPush>(&body) {
                        Ok(push) => {
                            tracing::info!(revision = %revision, "policies pushed to another replica: adopted");
                            host.adopt(push);
                        }
                        Err(e) => {
                            tracing::error!(revision = %revision, error = %e, "the stored policy set cannot be read");
                            refused = Some(revision);
                        }
                    },
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot read the stored policy set"),
                }
                // A new revision is told at once, so that whoever pushed sees which replicas enforce it.
                let revision = host.revision();
                if round % beat_every != 0 && beaten.as_deref() == Some(revision.as_str()) {
                    continue;
                }
                match shared.beat(&revision).await {
                    Ok(()) => beaten = Some(revision),
                    Err(e) => tracing::warn!(error = %e, "cannot record this replica's beat"),
                }
            }
        });
        let shared = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(BEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(host) = host.upgrade() else { return };
                match shared.sweep_dead_holds().await {
                    Ok(charged) => {
                        for (session, usd) in charged {
                            host.charged_dead_hold(&session, usd);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot charge the holds of stopped replicas"),
                }
            }
        });
    }
}
