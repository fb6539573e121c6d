//! Giving leases back: expired ones (the reaper) and our own at shutdown.

use super::Store;

/// Rows whose lease ran out go back to the queue as they were: the attempt that may or may
/// not have happened is not counted (at-least-once: redelivering is the safe side).
const REAP: &str = r#"
WITH expired AS (
    SELECT id, message_id FROM herald.delivery
    WHERE status = 'sending' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE herald.delivery d
SET status = 'pending', lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    next_attempt_at = now(), updated_at = now()
FROM expired x
WHERE d.message_id = x.message_id AND d.id = x.id
"#;

const RELEASE: &str = r#"
UPDATE herald.delivery
SET status = 'pending', lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    updated_at = now()
WHERE status = 'sending' AND lease_owner = $1
"#;

impl Store {
    /// Returns up to `limit` expired leases to the queue; the number returned.
    pub async fn reap_expired(&self, limit: i64) -> Result<u64, sqlx::Error> {
        let n = sqlx::query(REAP)
            .bind(limit)
            .execute(self.pool())
            .await?
            .rows_affected();
        self.wake_if(n).await?;
        Ok(n)
    }

    /// Returns every lease `owner` still holds, keeping each row's due time, so that another
    /// instance can take them at once.
    pub async fn release_owner(&self, owner: &str) -> Result<u64, sqlx::Error> {
        let n = sqlx::query(RELEASE)
            .bind(owner)
            .execute(self.pool())
            .await?
            .rows_affected();
        self.wake_if(n).await?;
        Ok(n)
    }

    /// Returns the rows of one claim to the queue (a claimer that restarted mid-claim).
    pub async fn release_token(&self, token: uuid::Uuid) -> Result<u64, sqlx::Error> {
        let n = sqlx::query(
            "UPDATE herald.delivery SET status = 'pending', lease_owner = NULL, lease_token = NULL, \
             lease_expires_at = NULL, updated_at = now() WHERE lease_token = $1 AND status = 'sending'",
        )
        .bind(token)
        .execute(self.pool())
        .await?
        .rows_affected();
        self.wake_if(n).await?;
        Ok(n)
    }

    /// Wakes every claimer (of every instance) when rows became due.
    async fn wake_if(&self, rows: u64) -> Result<(), sqlx::Error> {
        if rows > 0 {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(super::WAKE_CHANNEL)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }
}
