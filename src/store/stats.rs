//! Counting the queue (for `/metrics`, and once a minute for the overview's charts) and the
//! attempts by minute.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::metrics::QueueDepth;

/// Counts deliveries by state. Each count is its own index-only scan of a partial index
/// (due, lease, dead), so finished rows, the bulk of the table, cost nothing: about 100 ms
/// with a million deliveries waiting, against 200 ms for one pass over the table.
pub async fn queue_depth(pool: &PgPool) -> Result<QueueDepth, sqlx::Error> {
    let row: (i64, i64, i64, i64, Option<f64>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM herald.delivery
                  WHERE status = 'pending' AND next_attempt_at <= now()),
                (SELECT count(*) FROM herald.delivery
                  WHERE status = 'pending' AND next_attempt_at > now()),
                (SELECT count(*) FROM herald.delivery WHERE status = 'sending'),
                (SELECT count(*) FROM herald.delivery WHERE status = 'dead'),
                (SELECT extract(epoch FROM now() - min(next_attempt_at))::float8
                   FROM herald.delivery
                  WHERE status = 'pending' AND next_attempt_at <= now())",
    )
    .fetch_one(pool)
    .await?;
    Ok(QueueDepth {
        due: row.0,
        scheduled: row.1,
        leased: row.2,
        dead: row.3,
        oldest_due_seconds: row.4.unwrap_or(0.0).max(0.0),
    })
}

/// Records the queue's depth for the current minute, once per minute whichever instance
/// asks first (the reaper asks on every round). When this minute is already recorded the
/// counts are not even taken: the `WHERE` is decided first.
pub async fn sample_queue(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "INSERT INTO herald.queue_sample (minute, due, scheduled, leased, dead)
         SELECT date_trunc('minute', now()),
                (SELECT count(*) FROM herald.delivery
                  WHERE status = 'pending' AND next_attempt_at <= now()),
                (SELECT count(*) FROM herald.delivery
                  WHERE status = 'pending' AND next_attempt_at > now()),
                (SELECT count(*) FROM herald.delivery WHERE status = 'sending'),
                (SELECT count(*) FROM herald.delivery WHERE status = 'dead')
         WHERE NOT EXISTS (SELECT 1 FROM herald.queue_sample
                            WHERE minute = date_trunc('minute', now()))
         ON CONFLICT (minute) DO NOTHING",
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// One minute of deliveries: attempts made, how many succeeded, the 95th percentile of
/// their durations, and the queue's depth (due, scheduled and leased) when it was sampled.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Minute {
    pub minute: DateTime<Utc>,
    pub attempts: i64,
    pub succeeded: i64,
    pub p95_ms: Option<f64>,
    pub queue_depth: Option<i64>,
}

/// Every minute of `[since, until)`, oldest first, of one application's attempts or all
/// (the queue's depth is the whole queue's). The attempt log is read through its BRIN
/// index on `created_at`, so an hour costs a few blocks.
pub async fn minutes(
    pool: &PgPool,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    app_id: Option<&str>,
) -> Result<Vec<Minute>, sqlx::Error> {
    sqlx::query_as(
        "WITH m AS (
             SELECT generate_series(date_trunc('minute', $1::timestamptz),
                                    $2::timestamptz - interval '1 microsecond',
                                    interval '1 minute') AS minute),
         a AS (
             SELECT date_trunc('minute', created_at) AS minute, count(*) AS attempts,
                    count(*) FILTER (WHERE succeeded) AS succeeded,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms
               FROM herald.attempt
              WHERE created_at >= date_trunc('minute', $1::timestamptz) AND created_at < $2
                AND ($3::text IS NULL OR app_id = $3)
              GROUP BY 1)
         SELECT m.minute, coalesce(a.attempts, 0) AS attempts,
                coalesce(a.succeeded, 0) AS succeeded, a.p95_ms,
                q.due + q.scheduled + q.leased AS queue_depth
           FROM m LEFT JOIN a USING (minute) LEFT JOIN herald.queue_sample q USING (minute)
          ORDER BY m.minute",
    )
    .bind(since)
    .bind(until)
    .bind(app_id)
    .fetch_all(pool)
    .await
}
