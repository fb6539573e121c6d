//! Recording what happened to a batch of deliveries, in one round trip.
//!
//! Every change is guarded by the lease token: an outcome from a sender whose lease expired
//! (and whose delivery may already be leased to someone else) matches no row and changes
//! nothing, not even the attempt log.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Store;
use crate::delivery::{Disposition, Outcome};

const RECORD: &str = r#"
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::timestamptz[], $5::int[],
                         $6::smallint[], $7::text[], $8::text[])
        AS u(id, token, status, next_at, used, code, error, dead_reason)
), tries AS (
    SELECT * FROM unnest($9::bigint[], $10::text[], $11::int[], $12::timestamptz[], $13::int[],
                         $14::smallint[], $15::bool[], $16::text[], $17::text[], $18::smallint[])
        AS a(id, url, attempt_no, started_at, duration_ms, code, succeeded, response, error, trigger)
), updated AS (
    UPDATE herald.delivery d
    SET status = i.status::herald.delivery_status,
        attempts = d.attempts + i.used,
        next_attempt_at = coalesce(i.next_at, d.next_attempt_at),
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
        last_status_code = CASE WHEN i.used > 0 THEN i.code ELSE d.last_status_code END,
        last_error = CASE WHEN i.used > 0 THEN i.error ELSE d.last_error END,
        dead_reason = i.dead_reason,
        manual = CASE WHEN i.used > 0 THEN false ELSE d.manual END,
        updated_at = now()
    FROM input i
    WHERE d.id = i.id AND d.lease_token = i.token AND d.status = 'sending'
    RETURNING d.id, d.message_id, d.endpoint_id, d.app_id
), attempts AS (
    INSERT INTO herald.attempt (delivery_id, message_id, endpoint_id, app_id, url, attempt_no,
                                started_at, duration_ms, status_code, succeeded, trigger_type,
                                response, error)
    SELECT u.id, u.message_id, u.endpoint_id, u.app_id, a.url, a.attempt_no,
           a.started_at, a.duration_ms, a.code, a.succeeded, a.trigger, a.response, a.error
    FROM updated u JOIN tries a ON a.id = u.id
    RETURNING 1
), failing_since AS (
    -- Written only when it flips: a success clears it, the first failure after one sets it.
    UPDATE herald.endpoint e
    SET first_failure_at = CASE WHEN h.ok THEN NULL ELSE now() END
    FROM (SELECT u.endpoint_id, bool_or(a.succeeded) AS ok
          FROM updated u JOIN tries a ON a.id = u.id GROUP BY u.endpoint_id) h
    WHERE e.id = h.endpoint_id
      AND ((h.ok AND e.first_failure_at IS NOT NULL) OR (NOT h.ok AND e.first_failure_at IS NULL))
    RETURNING 1
)
SELECT id FROM updated
"#;

/// Disables endpoints that answered 410, and turns their waiting deliveries into dead
/// letters that say why (kept, and replayable once the endpoint is re-enabled).
const DISABLE_ENDPOINTS: &str = r#"
WITH disabled AS (
    UPDATE herald.endpoint e
    SET disabled = true, disabled_reason = r.reason, disabled_at = now(), updated_at = now()
    FROM unnest($1::text[], $2::text[]) AS r(id, reason)
    WHERE e.id = r.id AND NOT e.disabled
    RETURNING e.id, e.disabled_reason
)
UPDATE herald.delivery d
SET status = 'dead', dead_reason = 'endpoint disabled: ' || disabled.disabled_reason,
    updated_at = now()
FROM disabled
WHERE d.endpoint_id = disabled.id AND d.status = 'pending'
"#;

/// What a recorded batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Deliveries whose lease still matched: their outcome is now in the database.
    pub applied: Vec<i64>,
    /// Outcomes dropped because their lease was no longer theirs.
    pub stale: usize,
}

#[derive(Default)]
struct Columns {
    id: Vec<i64>,
    token: Vec<Uuid>,
    status: Vec<&'static str>,
    next_at: Vec<Option<DateTime<Utc>>>,
    used: Vec<i32>,
    code: Vec<Option<i16>>,
    error: Vec<Option<String>>,
    dead_reason: Vec<Option<String>>,
    a_id: Vec<i64>,
    a_url: Vec<String>,
    a_no: Vec<i32>,
    a_started: Vec<DateTime<Utc>>,
    a_duration: Vec<i32>,
    a_code: Vec<Option<i16>>,
    a_succeeded: Vec<bool>,
    a_response: Vec<Option<String>>,
    a_error: Vec<Option<String>>,
    a_trigger: Vec<i16>,
}

impl Columns {
    fn push(&mut self, o: &Outcome) {
        let (status, next_at, dead_reason) = match &o.disposition {
            Disposition::Succeeded => ("succeeded", None, None),
            Disposition::Retry { at } => ("pending", Some(*at), None),
            Disposition::Defer { at, .. } => ("pending", Some(*at), None),
            Disposition::Dead { reason } | Disposition::DisableEndpoint { reason } => {
                ("dead", None, Some(reason.clone()))
            }
        };
        self.id.push(o.delivery_id);
        self.token.push(o.lease_token);
        self.status.push(status);
        self.next_at.push(next_at);
        self.dead_reason.push(dead_reason);
        match &o.attempt {
            Some(a) => {
                let code = a.status_code.map(|c| c as i16);
                self.used.push(1);
                self.code.push(code);
                self.error.push(a.error.clone());
                self.a_id.push(o.delivery_id);
                self.a_url.push(a.url.clone());
                self.a_no.push(a.attempt_no);
                self.a_started.push(a.started_at);
                self.a_duration.push(a.duration_ms);
                self.a_code.push(code);
                self.a_succeeded.push(a.succeeded);
                self.a_response.push(a.response.clone());
                self.a_error.push(a.error.clone());
                self.a_trigger.push(i16::from(a.manual));
            }
            None => {
                self.used.push(0);
                self.code.push(None);
                self.error.push(None);
            }
        }
    }
}

impl Store {
    /// Disables endpoints (410 Gone, or failing too long) and turns their waiting deliveries
    /// into dead letters that say why. Returns the endpoints that were enabled until now.
    pub async fn disable_endpoints(
        &self,
        ids: &[String],
        reasons: &[String],
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(DISABLE_ENDPOINTS)
            .bind(ids)
            .bind(reasons)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// Disables every endpoint that has failed without a single success for `after`.
    pub async fn disable_failing(
        &self,
        after: std::time::Duration,
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        let failing: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, 'no successful delivery since ' || to_char(first_failure_at AT TIME ZONE 'UTC', \
                    'YYYY-MM-DD HH24:MI:SS') || ' UTC (HERALD_DISABLE_AFTER)' \
             FROM herald.endpoint WHERE NOT disabled AND first_failure_at < now() - make_interval(secs => $1)",
        )
        .bind(after.as_secs_f64())
        .fetch_all(self.pool())
        .await?;
        if !failing.is_empty() {
            let (ids, reasons): (Vec<String>, Vec<String>) = failing.iter().cloned().unzip();
            self.disable_endpoints(&ids, &reasons).await?;
        }
        Ok(failing)
    }

    pub async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<Recorded, sqlx::Error> {
        if outcomes.is_empty() {
            return Ok(Recorded::default());
        }
        let mut c = Columns::default();
        for o in outcomes {
            c.push(o);
        }
        let applied: Vec<i64> = sqlx::query_scalar(RECORD)
            .bind(&c.id)
            .bind(&c.token)
            .bind(&c.status)
            .bind(&c.next_at)
            .bind(&c.used)
            .bind(&c.code)
            .bind(&c.error)
            .bind(&c.dead_reason)
            .bind(&c.a_id)
            .bind(&c.a_url)
            .bind(&c.a_no)
            .bind(&c.a_started)
            .bind(&c.a_duration)
            .bind(&c.a_code)
            .bind(&c.a_succeeded)
            .bind(&c.a_response)
            .bind(&c.a_error)
            .bind(&c.a_trigger)
            .fetch_all(self.pool())
            .await?;

        let (gone_ids, gone_reasons): (Vec<String>, Vec<String>) = outcomes
            .iter()
            .filter(|o| applied.contains(&o.delivery_id))
            .filter_map(|o| match &o.disposition {
                Disposition::DisableEndpoint { reason } => {
                    Some((o.endpoint_id.clone(), reason.clone()))
                }
                _ => None,
            })
            .unzip();
        if !gone_ids.is_empty() {
            // Idempotent, so a failure here is repaired by the next 410 from the same receiver.
            self.disable_endpoints(&gone_ids, &gone_reasons).await?;
        }
        let stale = outcomes.len() - applied.len();
        Ok(Recorded { applied, stale })
    }
}
