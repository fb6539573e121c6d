//! Sending deliveries again: dead letters one by one or in bulk, an endpoint's failures since
//! a time (Svix "recover"), or one message to one endpoint (Svix "resend").

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::WAKE_CHANNEL;

/// Which dead deliveries to replay. Every filter that is set must match.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    pub app_id: Option<String>,
    pub endpoint_id: Option<String>,
    /// On the delivery's creation time (the message's time).
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub delivery_ids: Option<Vec<i64>>,
}

/// Back to the queue, due now, with a fresh schedule; the next attempt is marked manual.
/// Returns how many were replayed. Their attempt history is kept.
pub async fn replay(pool: &PgPool, s: &Selection) -> Result<u64, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE herald.delivery SET status = 'pending', attempts = 0, next_attempt_at = now(), \
         dead_reason = NULL, manual = true, updated_at = now() \
         WHERE status = 'dead' \
           AND ($1::text IS NULL OR app_id = $1) \
           AND ($2::text IS NULL OR endpoint_id = $2) \
           AND ($3::timestamptz IS NULL OR created_at >= $3) \
           AND ($4::timestamptz IS NULL OR created_at < $4) \
           AND ($5::bigint[] IS NULL OR id = ANY($5))",
    )
    .bind(&s.app_id)
    .bind(&s.endpoint_id)
    .bind(s.since)
    .bind(s.until)
    .bind(&s.delivery_ids)
    .execute(pool)
    .await?
    .rows_affected();
    wake(pool, n).await?;
    Ok(n)
}

/// Creates a delivery to `endpoint_id` of every message of its application created in
/// `[since, until)` that the endpoint is subscribed to (event types, channels) and was
/// never sent; returns how many. Scheduled messages keep their time.
pub async fn replay_missing(
    pool: &PgPool,
    endpoint_id: &str,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<u64, sqlx::Error> {
    let n = sqlx::query(
        "INSERT INTO herald.delivery (message_id, endpoint_id, app_id, manual, next_attempt_at) \
         SELECT m.id, e.id, m.app_id, true, greatest(now(), coalesce(m.deliver_at, now())) \
         FROM herald.endpoint e JOIN herald.message m ON m.app_id = e.app_id \
         WHERE e.id = $1 AND m.created_at >= $2 AND ($3::timestamptz IS NULL OR m.created_at < $3) \
           AND m.payload IS NOT NULL \
           AND (e.event_types IS NULL OR m.event_type = ANY (e.event_types)) \
           AND (e.channels IS NULL OR e.channels && m.channels) \
         ON CONFLICT (message_id, endpoint_id) DO NOTHING",
    )
    .bind(endpoint_id)
    .bind(since)
    .bind(until)
    .execute(pool)
    .await?
    .rows_affected();
    wake(pool, n).await?;
    Ok(n)
}

/// What became of a resend request.
#[derive(Debug, PartialEq, Eq)]
pub enum Resend {
    Queued,
    /// An attempt is under way right now; it was left alone.
    InFlight,
}

/// Queues `message_id` for `endpoint_id` once more, whatever its state (creating the
/// delivery if the endpoint was added after the message).
pub async fn resend(
    pool: &PgPool,
    app_id: &str,
    message_id: &str,
    endpoint_id: &str,
) -> Result<Resend, sqlx::Error> {
    let row: Option<(String,)> = sqlx::query_as(
        "INSERT INTO herald.delivery (message_id, endpoint_id, app_id, manual) VALUES ($1, $2, $3, true) \
         ON CONFLICT (message_id, endpoint_id) DO UPDATE SET status = 'pending', attempts = 0, \
             next_attempt_at = now(), dead_reason = NULL, manual = true, updated_at = now() \
           WHERE herald.delivery.status <> 'sending' \
         RETURNING status::text",
    )
    .bind(message_id)
    .bind(endpoint_id)
    .bind(app_id)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(_) => {
            wake(pool, 1).await?;
            Ok(Resend::Queued)
        }
        None => Ok(Resend::InFlight),
    }
}

async fn wake(pool: &PgPool, n: u64) -> Result<(), sqlx::Error> {
    if n > 0 {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WAKE_CHANNEL)
            .execute(pool)
            .await?;
    }
    Ok(())
}
