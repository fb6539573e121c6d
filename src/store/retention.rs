//! Retention: deleting what is older than the retention period, a small batch at a time.
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
    let attempts = sqlx::query(
        "DELETE FROM herald.attempt WHERE id IN (
             SELECT id FROM herald.attempt WHERE created_at < $1 LIMIT $2)",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // The status and age are checked again on the row being deleted (not only in the
    // subquery): a dead delivery replayed meanwhile is pending again and must stay.
    let deliveries = sqlx::query(
        "DELETE FROM herald.delivery d
          USING (SELECT d.id
                   FROM herald.message m
                   JOIN herald.delivery d ON d.message_id = m.id
                  WHERE m.created_at < $1
                    AND d.status IN ('succeeded', 'dead') AND d.updated_at < $1
                  LIMIT $2) old
          WHERE d.id = old.id
            AND d.status IN ('succeeded', 'dead') AND d.updated_at < $1",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let messages = sqlx::query(
        "DELETE FROM herald.message m
          WHERE m.id IN (SELECT m.id FROM herald.message m
                          WHERE m.created_at < $1
                            AND NOT EXISTS (SELECT 1 FROM herald.delivery d
                                             WHERE d.message_id = m.id)
                          LIMIT $2)
            AND NOT EXISTS (SELECT 1 FROM herald.delivery d WHERE d.message_id = m.id)",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(&mut *tx)
    .await?
    .rows_affected();
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
