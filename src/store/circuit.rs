//! Publishing circuit-breaker states, so the API can show them, and their operational
//! events.

use chrono::{DateTime, Utc};

use super::Store;
use crate::operational::EventType;

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

impl Store {
    /// Emits `circuit.opened` or `circuit.closed` for an endpoint's breaker on `instance`
    /// (each instance has its own breakers, so each reports its own), once per `id` however
    /// often it is written. Nothing if the endpoint was deleted meanwhile.
    pub async fn emit_circuit_event(
        &self,
        instance: &str,
        endpoint_id: &str,
        event: EventType,
        failures: u32,
        open_until: Option<DateTime<Utc>>,
        id: uuid::Uuid,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "SELECT herald.emit_operational(e.app_id, $2, herald.endpoint_event_data(e) || \
                 jsonb_build_object('instance', $3::text, 'consecutiveFailures', $4::int, \
                                    'openUntil', herald.rfc3339($5)), $6) \
             FROM herald.endpoint e WHERE e.id = $1",
        )
        .bind(endpoint_id)
        .bind(event.name())
        .bind(instance)
        .bind(failures as i32)
        .bind(open_until)
        .bind(format!("circuit-{id}"))
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
