//! Counting the queue for `/metrics`.

use sqlx::PgPool;

use crate::metrics::QueueDepth;

/// Counts deliveries by state in one pass over the partial indexes' rows. Finished
/// (succeeded) rows are not counted: they are the bulk of the table and not a queue.
pub async fn queue_depth(pool: &PgPool) -> Result<QueueDepth, sqlx::Error> {
    let row: (i64, i64, i64, i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'pending' AND next_attempt_at <= now()),
                count(*) FILTER (WHERE status = 'pending' AND next_attempt_at > now()),
                count(*) FILTER (WHERE status = 'sending'),
                count(*) FILTER (WHERE status = 'dead'),
                extract(epoch FROM now() - min(next_attempt_at)
                    FILTER (WHERE status = 'pending' AND next_attempt_at <= now()))::float8
           FROM herald.delivery
          WHERE status IN ('pending', 'sending', 'dead')",
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
