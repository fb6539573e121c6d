//! Sending deliveries again: dead letters one by one or in bulk, an endpoint's failures since
//! a time (Svix "recover"), or one message to one endpoint (Svix "resend").

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{
    task::{TaskKind, TaskRow},
    WAKE_CHANNEL,
};

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

/// The columns a replayed delivery gets: back to the queue, due now, with a fresh schedule,
/// its next attempt marked manual. Its attempt history is kept.
const REQUEUE: &str = "status = 'pending', attempts = 0, next_attempt_at = now(), \
                       dead_reason = NULL, manual = true, updated_at = now()";

/// The dead deliveries a selection names ($1 to $5).
const SELECTED: &str = "status = 'dead' \
           AND ($1::text IS NULL OR app_id = $1) \
           AND ($2::text IS NULL OR endpoint_id = $2) \
           AND ($3::timestamptz IS NULL OR created_at >= $3) \
           AND ($4::timestamptz IS NULL OR created_at < $4) \
           AND ($5::bigint[] IS NULL OR id = ANY($5))";

fn bind_selection<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    s: &'q Selection,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    q.bind(&s.app_id)
        .bind(&s.endpoint_id)
        .bind(s.since)
        .bind(s.until)
        .bind(&s.delivery_ids)
}

/// How many dead deliveries a replay of `s` would queue (shown before a bulk replay).
pub async fn count(pool: &PgPool, s: &Selection) -> Result<i64, sqlx::Error> {
    let sql = format!("SELECT count(*) FROM herald.delivery WHERE {SELECTED}");
    let (n,): (i64,) = bind_selection(sqlx::query_as(&sql), s)
        .fetch_one(pool)
        .await?;
    Ok(n)
}

/// Replays the dead deliveries `s` selects; returns how many. They leave the bulk replay
/// that last queued them, if any (its progress counts only what it queued itself).
pub async fn replay(pool: &PgPool, s: &Selection) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "WITH replayed AS (UPDATE herald.delivery SET {REQUEUE}, replay_task = NULL \
                           WHERE {SELECTED} RETURNING 1) \
         SELECT count(*) FROM replayed"
    );
    let (n,): (i64,) = bind_selection(sqlx::query_as(&sql), s)
        .fetch_one(pool)
        .await?;
    wake(pool, n as u64).await?;
    Ok(n as u64)
}

/// Replays what `s` selects as a background task of `kind` (of `app_id`'s, if given): one
/// statement records the task with how many it queued (`messagesSent`) and marks each
/// delivery with it, so the task's progress can be read later ([`super::task::progress`]).
pub async fn replay_as_task(
    pool: &PgPool,
    kind: TaskKind,
    app_id: Option<&str>,
    s: &Selection,
) -> Result<TaskRow, sqlx::Error> {
    let sql = format!(
        "WITH task AS (SELECT herald.new_id('qtask') AS id), \
         replayed AS (UPDATE herald.delivery SET {REQUEUE}, replay_task = (SELECT id FROM task) \
                      WHERE {SELECTED} RETURNING 1) \
         {}",
        record_task("replayed", 6)
    );
    let task: TaskRow = bind_selection(sqlx::query_as(&sql), s)
        .bind(kind.as_str())
        .bind(app_id)
        .fetch_one(pool)
        .await?;
    wake(pool, task.messages_sent()).await?;
    Ok(task)
}

/// The INSERT that ends a task statement: the task of the `task` CTE, of the kind in
/// parameter `$n` and the application in `$n+1`, having sent as many messages as the CTE
/// `rows` has rows.
fn record_task(rows: &str, n: usize) -> String {
    format!(
        "INSERT INTO herald.background_task (id, task, status, app_id, data) \
         SELECT id, ${n}, 'finished', ${}, \
                jsonb_build_object('messagesSent', (SELECT count(*) FROM {rows})) \
         FROM task RETURNING {}",
        n + 1,
        super::task::COLUMNS
    )
}

/// Creates a delivery to `endpoint_id` of every message of its application created in
/// `[since, until)` that the endpoint is subscribed to (event types, channels) and was
/// never sent, as a background task (`endpoint.replay`). Scheduled messages keep their time.
pub async fn replay_missing(
    pool: &PgPool,
    app_id: &str,
    endpoint_id: &str,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<TaskRow, sqlx::Error> {
    let sql = format!(
        "WITH task AS (SELECT herald.new_id('qtask') AS id), \
         created AS ( \
           INSERT INTO herald.delivery (message_id, endpoint_id, app_id, manual, next_attempt_at, replay_task) \
           SELECT m.id, e.id, m.app_id, true, greatest(now(), coalesce(m.deliver_at, now())), \
                  (SELECT id FROM task) \
           FROM herald.endpoint e JOIN herald.message m ON m.app_id = e.app_id \
           WHERE e.id = $1 AND m.created_at >= $2 AND ($3::timestamptz IS NULL OR m.created_at < $3) \
             AND m.payload IS NOT NULL \
             AND (e.event_types IS NULL OR m.event_type = ANY (e.event_types)) \
             AND (e.channels IS NULL OR e.channels && m.channels) \
             AND NOT EXISTS (SELECT 1 FROM herald.delivery c JOIN herald.endpoint ce \
                             ON ce.id = c.endpoint_id AND ce.callback WHERE c.message_id = m.id) \
           ON CONFLICT (message_id, endpoint_id) DO NOTHING RETURNING 1) \
         {}",
        record_task("created", 4)
    );
    let task: TaskRow = sqlx::query_as(&sql)
        .bind(endpoint_id)
        .bind(since)
        .bind(until)
        .bind(TaskKind::EndpointReplay.as_str())
        .bind(app_id)
        .fetch_one(pool)
        .await?;
    wake(pool, task.messages_sent()).await?;
    Ok(task)
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
             next_attempt_at = now(), dead_reason = NULL, manual = true, updated_at = now(), \
             replay_task = NULL \
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
