//! Recording what happened to a batch of deliveries, in one round trip.
//!
//! Every change is guarded by the lease token: an outcome from a sender whose lease expired
//! (and whose delivery may already be leased to someone else) matches no row and changes
//! nothing, not even the attempt log. The operational event an outcome is
//! (`operational::alert`) is written by the same statement, for the rows it changed only:
//! once per occurrence.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Store;
use crate::{
    delivery::{Disposition, Outcome},
    operational::alert,
};

const RECORD: &str = r#"
WITH input AS (
    -- One row per outcome; the attempt's columns are NULL for an outcome without one.
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::uuid[], $4::text[], $5::timestamptz[],
                         $6::int[], $7::smallint[], $8::text[], $9::text[], $10::text[],
                         $11::bool[], $12::text[], $13::int[], $14::timestamptz[], $15::int[],
                         $16::bool[], $17::text[], $18::smallint[])
        AS u(id, message_id, token, status, next_at, used, code, error, dead_reason, alert,
             alerted, url, attempt_no, started_at, duration_ms, succeeded, response, trigger)
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
        -- Alerted only if its failing or exhausted event goes out (`alerts` below).
        alerted = CASE WHEN i.alert IN ('message.attempt.failing', 'message.attempt.exhausted')
                       THEN herald.operational_wanted(d.app_id, i.alert)
                       ELSE i.alerted END,
        updated_at = now()
    FROM input i
    -- An index lookup per input row, in the one partition its message id names. The status
    -- is compared as text so that the lease index (`WHERE status = 'sending'`) cannot serve
    -- it: under a prepared statement's generic plan, with statistics saying few rows are
    -- leased, PostgreSQL read every leased row through it and hash-joined them: 1,026 rows
    -- read to update 2 at 1,000 messages/s (auto_explain, herald-bench latency). (Nor
    -- `d.id = ANY ($1)`: that plan compared every looked-up row with every input row,
    -- 999,000 comparisons for a batch of 1,000: 168 ms against 13 ms.)
    WHERE d.message_id = i.message_id AND d.id = i.id AND d.lease_token = i.token
      AND d.status::text = 'sending'
    RETURNING d.id, d.message_id, d.endpoint_id, d.app_id, d.attempts, d.dead_reason, i.alert,
              i.used, i.url, i.attempt_no, i.started_at, i.duration_ms, i.code, i.succeeded,
              i.trigger, i.response, i.error
), attempts AS (
    INSERT INTO herald.attempt (delivery_id, message_id, endpoint_id, app_id, url, attempt_no,
                                started_at, duration_ms, status_code, succeeded, trigger_type,
                                response, error)
    SELECT u.id, u.message_id, u.endpoint_id, u.app_id, u.url, u.attempt_no,
           u.started_at, u.duration_ms, u.code, u.succeeded, u.trigger, u.response, u.error
    FROM updated u WHERE u.used > 0
    RETURNING id, delivery_id, status_code, started_at, error
), operational AS MATERIALIZED (
    -- Once per statement: without an operational endpoint there is nothing to build.
    SELECT EXISTS (SELECT 1 FROM herald.application WHERE operational) AS wanted
), failing_since AS (
    -- Written only when it flips: a success clears it, the first failure after one sets it.
    UPDATE herald.endpoint e
    SET first_failure_at = CASE WHEN h.ok THEN NULL ELSE now() END
    FROM (SELECT u.endpoint_id, bool_or(u.succeeded) AS ok
          FROM updated u WHERE u.used > 0 GROUP BY u.endpoint_id) h
    WHERE e.id = h.endpoint_id
      AND ((h.ok AND e.first_failure_at IS NOT NULL) OR (NOT h.ok AND e.first_failure_at IS NULL))
    RETURNING 1
), alerts AS (
    -- Svix's MessageAttempt*EventData, plus what saves the operator a lookup; the last
    -- attempt is this outcome's (every event is an attempt's).
    SELECT herald.emit_operational(u.app_id, u.alert, jsonb_build_object(
        'appId', u.app_id, 'appUid', ap.uid, 'msgId', u.message_id, 'msgEventId', m.event_id,
        'eventType', m.event_type, 'endpointId', u.endpoint_id, 'endpointUid', e.uid,
        'endpointUrl', e.url, 'attempts', u.attempts, 'deadReason', u.dead_reason,
        'lastAttempt', herald.attempt_event_data(t.id, t.status_code, t.started_at, t.error)))
        AS emitted
    FROM updated u
    JOIN herald.message m ON m.id = u.message_id
    JOIN herald.endpoint e ON e.id = u.endpoint_id
    LEFT JOIN herald.application ap ON ap.id = u.app_id
    LEFT JOIN attempts t ON t.delivery_id = u.id
    WHERE u.alert IS NOT NULL AND (SELECT wanted FROM operational)
)
-- Referencing `alerts` makes it run (it writes through a function, not a DML clause).
SELECT id FROM updated WHERE (SELECT count(emitted) FROM alerts) >= 0
"#;

/// Disables endpoints that answered 410, and turns their waiting deliveries into dead
/// letters that say why (kept, and replayable once the endpoint is re-enabled).
const DISABLE_ENDPOINTS: &str = r#"
WITH disabled AS (
    UPDATE herald.endpoint e
    SET disabled = true, disabled_reason = r.reason, disabled_cause = r.cause,
        disabled_at = now(), updated_at = now()
    FROM unnest($1::text[], $2::text[], $3::text[]) AS r(id, reason, cause)
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
    message_id: Vec<String>,
    token: Vec<Uuid>,
    status: Vec<&'static str>,
    next_at: Vec<Option<DateTime<Utc>>>,
    used: Vec<i32>,
    code: Vec<Option<i16>>,
    error: Vec<Option<String>>,
    dead_reason: Vec<Option<String>>,
    alert: Vec<Option<&'static str>>,
    alerted: Vec<bool>,
    url: Vec<Option<String>>,
    attempt_no: Vec<Option<i32>>,
    started_at: Vec<Option<DateTime<Utc>>>,
    duration_ms: Vec<Option<i32>>,
    succeeded: Vec<Option<bool>>,
    response: Vec<Option<String>>,
    trigger: Vec<Option<i16>>,
}

impl Columns {
    fn push(&mut self, o: &Outcome, failing_after: u32) {
        let after = alert::after_outcome(o, failing_after);
        let (status, next_at, dead_reason) = match &o.disposition {
            Disposition::Succeeded => ("succeeded", None, None),
            Disposition::Retry { at } => ("pending", Some(*at), None),
            Disposition::Defer { at, .. } => ("pending", Some(*at), None),
            Disposition::Dead { reason } | Disposition::DisableEndpoint { reason } => {
                ("dead", None, Some(reason.clone()))
            }
        };
        self.id.push(o.delivery_id);
        self.message_id.push(o.message_id.clone());
        self.token.push(o.lease_token);
        self.status.push(status);
        self.next_at.push(next_at);
        self.dead_reason.push(dead_reason);
        self.alert.push(after.event.map(|e| e.name()));
        self.alerted.push(after.alerted);
        let a = o.attempt.as_ref();
        self.used.push(i32::from(a.is_some()));
        self.code
            .push(a.and_then(|a| a.status_code).map(|c| c as i16));
        self.error.push(a.and_then(|a| a.error.clone()));
        self.url.push(a.map(|a| a.url.clone()));
        self.attempt_no.push(a.map(|a| a.attempt_no));
        self.started_at.push(a.map(|a| a.started_at));
        self.duration_ms.push(a.map(|a| a.duration_ms));
        self.succeeded.push(a.map(|a| a.succeeded));
        self.response.push(a.and_then(|a| a.response.clone()));
        self.trigger.push(a.map(|a| i16::from(a.manual)));
    }
}

/// Why the engine disables an endpoint (`herald.endpoint.disabled_cause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisableCause {
    /// Its receiver answered 410 Gone.
    Gone,
    /// No successful delivery for `HERALD_DISABLE_AFTER`.
    Failing,
}

impl DisableCause {
    fn as_str(self) -> &'static str {
        match self {
            DisableCause::Gone => "gone",
            DisableCause::Failing => "failing",
        }
    }
}

impl Store {
    /// Disables endpoints (each with its reason) and turns their waiting deliveries into
    /// dead letters that say why.
    async fn disable_endpoints(
        &self,
        disabled: &[(String, String)],
        cause: DisableCause,
    ) -> Result<u64, sqlx::Error> {
        let (ids, reasons): (Vec<&str>, Vec<&str>) = disabled
            .iter()
            .map(|(id, reason)| (id.as_str(), reason.as_str()))
            .unzip();
        Ok(sqlx::query(DISABLE_ENDPOINTS)
            .bind(&ids)
            .bind(&reasons)
            .bind(vec![cause.as_str(); ids.len()])
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
            self.disable_endpoints(&failing, DisableCause::Failing)
                .await?;
        }
        Ok(failing)
    }

    /// Records a batch of outcomes, and the operational events they are: a delivery's
    /// `failing_after`th failed attempt is `message.attempt.failing` (0: never).
    pub async fn record_outcomes(
        &self,
        outcomes: &[Outcome],
        failing_after: u32,
    ) -> Result<Recorded, sqlx::Error> {
        if outcomes.is_empty() {
            return Ok(Recorded::default());
        }
        let mut c = Columns::default();
        for o in outcomes {
            c.push(o, failing_after);
        }
        let applied: Vec<i64> = sqlx::query_scalar(RECORD)
            .bind(&c.id)
            .bind(&c.message_id)
            .bind(&c.token)
            .bind(&c.status)
            .bind(&c.next_at)
            .bind(&c.used)
            .bind(&c.code)
            .bind(&c.error)
            .bind(&c.dead_reason)
            .bind(&c.alert)
            .bind(&c.alerted)
            .bind(&c.url)
            .bind(&c.attempt_no)
            .bind(&c.started_at)
            .bind(&c.duration_ms)
            .bind(&c.succeeded)
            .bind(&c.response)
            .bind(&c.trigger)
            .fetch_all(self.pool())
            .await?;

        let gone: Vec<(String, String)> = outcomes
            .iter()
            .filter(|o| applied.contains(&o.delivery_id))
            .filter_map(|o| match &o.disposition {
                Disposition::DisableEndpoint { reason } => {
                    Some((o.endpoint_id.clone(), reason.clone()))
                }
                _ => None,
            })
            .collect();
        if !gone.is_empty() {
            // Idempotent, so a failure here is repaired by the next 410 from the same receiver.
            self.disable_endpoints(&gone, DisableCause::Gone).await?;
        }
        let stale = outcomes.len() - applied.len();
        Ok(Recorded { applied, stale })
    }
}
