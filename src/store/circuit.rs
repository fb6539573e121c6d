//! Publishing circuit-breaker states, so the API can show them.

use chrono::{DateTime, Utc};

use super::Store;

impl Store {
    pub async fn record_circuit(
        &self,
        instance: &str,
        endpoint_id: &str,
        state: &str,
        failures: u32,
        open_until: Option<DateTime<Utc>>,
    ) -> Result<(), sqlx::Error> {
        // The endpoint may have been deleted meanwhile: then there is nothing to show.
        sqlx::query(
            "INSERT INTO herald.endpoint_circuit (endpoint_id, instance, state, failures, open_until) \
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM herald.endpoint WHERE id = $1) \
             ON CONFLICT (endpoint_id, instance) DO UPDATE SET state = EXCLUDED.state, \
                 failures = EXCLUDED.failures, open_until = EXCLUDED.open_until, updated_at = now()",
        )
        .bind(endpoint_id)
        .bind(instance)
        .bind(state)
        .bind(failures as i32)
        .bind(open_until)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

impl Store {
    /// While an endpoint's circuit is open, its waiting deliveries are due no earlier than
    /// the end of the cool-down: claims stop finding (and scanning past) them, and no
    /// attempt is used.
    pub async fn postpone_endpoint(
        &self,
        endpoint_id: &str,
        until: DateTime<Utc>,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "UPDATE herald.delivery SET next_attempt_at = $2, updated_at = now() \
             WHERE endpoint_id = $1 AND status = 'pending' AND next_attempt_at < $2",
        )
        .bind(endpoint_id)
        .bind(until)
        .execute(self.pool())
        .await?
        .rows_affected())
    }
}
