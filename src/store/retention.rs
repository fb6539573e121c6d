//! Retention: deleting what is older than the retention period, a small batch at a time.
//! Messages, deliveries and attempts are time-partitioned, and a partition is dropped whole
//! once its range has passed the cutoff ([`super::partitions`]): rows in the time
//! partitions are never deleted here (they go with their partition, so a row is kept up to
//! one partition interval past retention). What is left here of them is what outlived its
//! partition, or was written while none covered its time (the default partitions), and the
//! rows from before the upgrade to partitions (the legacy partition, by id); besides them,
//! the tables that are not partitioned. (Deleting the rows of partitions about to be
//! dropped, as this did at first, made a soak at 2,000 messages/s spend seconds per pass
//! in deletes: p50 latency rose to 0.3–3 s.)
//!
//! What goes, once older than the cutoff:
//! - attempts (the attempt log), by their creation time;
//! - finished deliveries (succeeded, or dead and not replayed since the cutoff) of messages
//!   created before the cutoff;
//! - messages (with their payloads) created before the cutoff that have no delivery left:
//!   a message with a pending, in-flight or recently dead delivery keeps its payload, so a
//!   retry or a replay still has something to send;
//! - idempotency keys older than their own, shorter, cutoff;
//! - payloads whose message asked for a shorter retention (`payloadRetentionPeriod`/`Hours`),
//!   the message kept, once none of its deliveries waits;
//! - background task records;
//! - sources' received requests older than the cutoff, and provider event ids past their
//!   dedupe window;
//! - expired dashboard and portal sessions, portal tokens expired before the cutoff, and
//!   queue samples older than a day (the overview charts the last hour);
//! - closed circuit-breaker rows not updated since the cutoff (instances that are gone).
//!
//! Every batch is its own short transaction and only touches finished rows, so delivery
//! never waits on retention. Instances take turns through a transaction-level advisory
//! lock: while one prunes, the others skip.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Rows removed by one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub attempts: u64,
    pub deliveries: u64,
    pub messages: u64,
    pub idempotency_keys: u64,
    pub circuits: u64,
    /// Payloads expunged (their message asked for it).
    pub payloads: u64,
    pub tasks: u64,
    /// Expired sessions and portal tokens.
    pub sessions: u64,
    pub samples: u64,
    /// Received requests and dedupe entries.
    pub ingest: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.attempts
            + self.deliveries
            + self.messages
            + self.idempotency_keys
            + self.circuits
            + self.payloads
            + self.tasks
            + self.sessions
            + self.samples
            + self.ingest
    }

    pub fn add(&mut self, other: Pruned) {
        self.attempts += other.attempts;
        self.deliveries += other.deliveries;
        self.messages += other.messages;
        self.idempotency_keys += other.idempotency_keys;
        self.circuits += other.circuits;
        self.payloads += other.payloads;
        self.tasks += other.tasks;
        self.sessions += other.sessions;
        self.samples += other.samples;
        self.ingest += other.ingest;
    }
}

/// Where [`prune_rows`] deletes messages, deliveries and attempts.
#[derive(Debug, Clone, Copy)]
enum RowScope {
    /// The default partitions.
    Default,
    /// Rows whose ids are from before this time (the legacy partition).
    Before(DateTime<Utc>),
}

impl RowScope {
    /// (attempts, deliveries, messages) as a statement names them, and the condition that
    /// keeps an attempt, a delivery (`d`) and a message (`m`) within the scope (`$3` the
    /// bound).
    fn tables(self) -> [(&'static str, &'static str); 3] {
        match self {
            RowScope::Default => [
                ("herald.attempt_default", "true"),
                ("herald.delivery_default", "true"),
                ("herald.message_default", "true"),
            ],
            RowScope::Before(_) => [
                ("herald.attempt", "id < herald.id_bound('atmpt', $3)"),
                (
                    "herald.delivery",
                    "d.message_id < herald.id_bound('msg', $3)",
                ),
                ("herald.message", "m.id < herald.id_bound('msg', $3)"),
            ],
        }
    }

    fn bound(self) -> Option<DateTime<Utc>> {
        match self {
            RowScope::Default => None,
            RowScope::Before(hi) => Some(hi),
        }
    }
}

/// Deletes up to `batch` expired attempts, finished deliveries and messages left without
/// deliveries, in `scope`.
async fn prune_rows(
    tx: &mut sqlx::PgConnection,
    scope: RowScope,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<(u64, u64, u64), sqlx::Error> {
    let [(attempt, in_a), (delivery, in_d), (message, in_m)] = scope.tables();
    let attempts = sqlx::query(&format!(
        "DELETE FROM {attempt} WHERE id IN (
             SELECT id FROM {attempt} WHERE created_at < $1 AND {in_a} LIMIT $2)"
    ))
    .bind(cutoff)
    .bind(batch)
    .bind(scope.bound())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // The status and age are checked again on the row being deleted (not only in the
    // subquery): a dead delivery replayed meanwhile is pending again and must stay.
    let deliveries = sqlx::query(&format!(
        "DELETE FROM {delivery} d
          USING (SELECT d.id, d.message_id
                   FROM herald.message m
                   JOIN {delivery} d ON d.message_id = m.id
                  WHERE m.created_at < $1 AND {in_d}
                    AND d.status IN ('succeeded', 'dead') AND d.updated_at < $1
                  LIMIT $2) old
          WHERE d.message_id = old.message_id AND d.id = old.id
            AND d.status IN ('succeeded', 'dead') AND d.updated_at < $1"
    ))
    .bind(cutoff)
    .bind(batch)
    .bind(scope.bound())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let messages = sqlx::query(&format!(
        "DELETE FROM {message} m
          WHERE m.id IN (SELECT m.id FROM {message} m
                          WHERE m.created_at < $1 AND {in_m}
                            AND NOT EXISTS (SELECT 1 FROM herald.delivery d
                                             WHERE d.message_id = m.id)
                          LIMIT $2)
            AND NOT EXISTS (SELECT 1 FROM herald.delivery d WHERE d.message_id = m.id)"
    ))
    .bind(cutoff)
    .bind(batch)
    .bind(scope.bound())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok((attempts, deliveries, messages))
}

/// Whatever the cutoffs, the instance holding this lock is the one pruning.
const LOCK_KEY: i64 = 0x6865_7261_6c64_7274; // "heraldrt"

/// Deletes up to `batch` rows of each kind. `None` when another instance is pruning.
pub async fn prune_batch(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    idempotency_cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<Option<Pruned>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(None);
    }
    // Rows in the time partitions go with their partition; here only the rest: the default
    // partitions, and the partition of rows from before the upgrade to partitions.
    let (mut attempts, mut deliveries, mut messages) =
        prune_rows(&mut tx, RowScope::Default, cutoff, batch).await?;
    let legacy: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT hi FROM herald.time_partition WHERE suffix = 'legacy'")
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(hi) = legacy {
        let (a, d, m) = prune_rows(&mut tx, RowScope::Before(hi), cutoff, batch).await?;
        (attempts, deliveries, messages) = (attempts + a, deliveries + d, messages + m);
    }
    let idempotency_keys = sqlx::query(
        "DELETE FROM herald.idempotency WHERE (scope, key) IN (
             SELECT scope, key FROM herald.idempotency WHERE created_at < $1 LIMIT $2)",
    )
    .bind(idempotency_cutoff)
    .bind(batch)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let circuits = sqlx::query(
        "DELETE FROM herald.endpoint_circuit WHERE state = 'closed' AND updated_at < $1",
    )
    .bind(cutoff)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // Payloads whose message asked for a shorter retention (`payloadRetentionPeriod`): the
    // message and its history stay.
    // Never while a delivery of it still waits or runs: what was accepted is sent first
    // (its expiry is counted from its delivery time, and a receiver may be down meanwhile).
    let payloads = sqlx::query(
        "UPDATE herald.message SET payload = NULL WHERE id IN (
             SELECT m.id FROM herald.message m
              WHERE m.payload IS NOT NULL AND m.payload_expires_at < now()
                AND NOT EXISTS (SELECT 1 FROM herald.delivery d WHERE d.message_id = m.id
                                  AND d.status IN ('pending', 'sending'))
              LIMIT $1)",
    )
    .bind(batch)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let tasks = sqlx::query(
        "DELETE FROM herald.background_task WHERE id IN (
             SELECT id FROM herald.background_task WHERE created_at < $1 LIMIT $2)",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let sessions = sqlx::query(
        "DELETE FROM herald.ui_session WHERE id_hash IN (
             SELECT id_hash FROM herald.ui_session WHERE expires_at < now() LIMIT $1)",
    )
    .bind(batch)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        + sqlx::query(
            "DELETE FROM herald.api_token WHERE id IN (
                 SELECT id FROM herald.api_token WHERE kind = 'portal' AND expires_at < $1 LIMIT $2)",
        )
        .bind(cutoff)
        .bind(batch)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let samples =
        sqlx::query("DELETE FROM herald.queue_sample WHERE minute < now() - interval '1 day'")
            .execute(&mut *tx)
            .await?
            .rows_affected();
    let ingest = sqlx::query(
        "DELETE FROM herald.ingest_event WHERE id IN (
             SELECT id FROM herald.ingest_event WHERE received_at < $1 LIMIT $2)",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        + sqlx::query(
            "DELETE FROM herald.ingest_dedupe WHERE (source_id, event_key) IN (
                 SELECT source_id, event_key FROM herald.ingest_dedupe WHERE expires_at < now() LIMIT $1)",
        )
        .bind(batch)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(Some(Pruned {
        attempts,
        deliveries,
        messages,
        idempotency_keys,
        circuits,
        payloads,
        tasks,
        sessions,
        samples,
        ingest,
    }))
}
