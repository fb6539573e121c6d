//! Leasing due deliveries.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use sqlx::Row;
use uuid::Uuid;

use super::{string_map::StringMap, Store};
use crate::{
    delivery::{Destination, Forwarded, Job},
    signing::Secret,
};

/// The end of a claim: the leased rows (`leased`: id, attempts, manual, message_id,
/// endpoint_id) as jobs, with their messages and endpoints. A callback endpoint (a URL a
/// message named) signs with its application's secrets.
macro_rules! jobs_of_leased {
    ($more_due:literal) => {
        concat!(
            r#"
), endpoints AS MATERIALIZED (
    SELECT e.id, e.url, e.disabled, e.rate_limit, e.headers,
        CASE WHEN e.callback THEN
            ARRAY(SELECT s.key FROM herald.application_secret s
                  WHERE s.app_id = e.app_id AND (s.expires_at IS NULL OR s.expires_at > now())
                  ORDER BY s.id DESC)
        ELSE
            ARRAY(SELECT s.key FROM herald.endpoint_secret s
                  WHERE s.endpoint_id = e.id AND (s.expires_at IS NULL OR s.expires_at > now())
                  ORDER BY s.id DESC)
        END AS secrets
    FROM herald.endpoint e
    WHERE e.id IN (SELECT endpoint_id FROM leased)
)
SELECT l.id, l.attempts, l.manual, l.message_id, m.event_type, m.payload,
       m.forward_headers, m.content_type,
       e.id AS endpoint_id, e.url, e.disabled, e.rate_limit, e.headers, e.secrets,
       "#,
            $more_due,
            r#" AS more_due
FROM leased l
JOIN herald.message m ON m.id = l.message_id
JOIN endpoints e ON e.id = l.endpoint_id
"#
        )
    };
}
pub(super) use jobs_of_leased;

/// Leases up to `limit` due deliveries to `owner` for `lease`, all under one fresh token.
///
/// `FOR UPDATE SKIP LOCKED` lets any number of claimers (threads or instances) run this at
/// once without ever leasing a row twice or waiting on each other. The due index holds only
/// pending rows, so the cost does not grow with finished or future work.
///
/// Not strict FIFO: half the batch is the oldest due rows, half the newest, in
/// `(next_attempt_at, id)` order (a total order: the halves never overlap while more than a
/// batch is due). A backlog (one
/// endpoint's burst, or a receiver coming back after an outage) still drains from its old
/// end at full speed, but a fresh delivery to any other endpoint is taken by the next claim
/// instead of waiting behind the whole backlog.
///
/// Ordered endpoints are left to [`Store::claim_ordered`].
///
/// `paused` endpoints (circuit open, or too slow to take more) are skipped: this instance
/// would only hand their deliveries straight back. (Within one transaction SKIP LOCKED does not
/// skip our own locks, so when few rows are due the halves overlap; UNION removes the
/// duplicates.)
const CLAIM: &str = concat!(
    r#"WITH skipped AS MATERIALIZED (
    -- Paused endpoints, and ordered ones (claimed one at a time by `ORDERED_CLAIM`).
    SELECT $5::text[] || ARRAY(SELECT id FROM herald.endpoint WHERE ordered) AS ids
), oldest AS (
    SELECT id FROM herald.delivery
    WHERE status = 'pending' AND next_attempt_at <= now() AND endpoint_id <> ALL ((SELECT ids FROM skipped)::text[])
    ORDER BY next_attempt_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), newest AS (
    SELECT id FROM herald.delivery
    WHERE status = 'pending' AND next_attempt_at <= now() AND endpoint_id <> ALL ((SELECT ids FROM skipped)::text[])
    ORDER BY next_attempt_at DESC, id DESC
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), picked AS MATERIALIZED (
    SELECT id FROM oldest UNION SELECT id FROM newest
), leased AS (
    -- `= ANY(ARRAY(...))` keeps this a primary-key lookup per row under PostgreSQL's generic
    -- plan for prepared statements, which otherwise joins by scanning the whole table.
    UPDATE herald.delivery d
    SET status = 'sending', lease_owner = $2, lease_token = $3,
        lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
    WHERE d.id = ANY (ARRAY(SELECT id FROM picked))
    RETURNING d.id, d.attempts, d.manual, d.message_id, d.endpoint_id
), more AS MATERIALIZED (
    -- Is anything due left behind? (This statement's snapshot still sees the rows it leased
    -- as pending, hence the exclusion.) Stops at the first such row.
    SELECT EXISTS (
        SELECT 1 FROM herald.delivery
        WHERE status = 'pending' AND next_attempt_at <= now() AND endpoint_id <> ALL ((SELECT ids FROM skipped)::text[])
          AND id <> ALL (ARRAY(SELECT id FROM picked))
    ) AS more_due
"#,
    jobs_of_leased!("(SELECT more_due FROM more)")
);

/// What one claim leased.
#[derive(Debug, Default)]
pub struct Claimed {
    pub jobs: Vec<Job>,
    /// Of these, the deliveries of ordered endpoints: the next of each is claimed only
    /// once this one is settled.
    pub ordered: Vec<i64>,
    /// Due deliveries (of endpoints not skipped) were left behind: claim again at once. Only
    /// meaningful when `jobs` is not empty (a claim that leased nothing reports nothing).
    pub more_due: bool,
}

impl Store {
    pub async fn claim(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
        paused: &[String],
    ) -> Result<(Uuid, Claimed), sqlx::Error> {
        let token = Uuid::new_v4();
        Ok((
            token,
            self.claim_with_token(token, owner, limit, lease, paused)
                .await?,
        ))
    }

    /// The same with a token chosen by the caller, who can then release what this claim
    /// leased even if it never saw the answer (see [`Store::release_token`]).
    pub async fn claim_with_token(
        &self,
        token: Uuid,
        owner: &str,
        limit: usize,
        lease: Duration,
        paused: &[String],
    ) -> Result<Claimed, sqlx::Error> {
        let rows = sqlx::query(CLAIM)
            .bind(limit.div_ceil(2) as i64)
            .bind(owner)
            .bind(token)
            .bind(lease.as_secs_f64())
            .bind(paused)
            .fetch_all(self.pool())
            .await?;

        jobs_of(rows, token)
    }

    /// How many deliveries are due now, counted up to `cap` (an exact count of a huge
    /// backlog would cost more than it tells).
    pub async fn due_backlog(&self, cap: i64) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM herald.delivery \
             WHERE status = 'pending' AND next_attempt_at <= now() LIMIT $1) due",
        )
        .bind(cap)
        .fetch_one(self.pool())
        .await
    }
}

/// The jobs of a claim's rows (and whether it saw more due).
pub(super) fn jobs_of(
    rows: Vec<sqlx::postgres::PgRow>,
    token: Uuid,
) -> Result<Claimed, sqlx::Error> {
    // One shared snapshot per endpoint, however many of its deliveries are in the batch.
    let mut destinations: HashMap<String, Arc<Destination>> = HashMap::new();
    let mut jobs = Vec::with_capacity(rows.len());
    let mut more_due = false;
    for row in rows {
        more_due = row.try_get("more_due")?;
        let endpoint_id: String = row.try_get("endpoint_id")?;
        let endpoint = match destinations.get(&endpoint_id) {
            Some(d) => d.clone(),
            None => {
                let d = Arc::new(destination(&row, endpoint_id.clone())?);
                destinations.insert(endpoint_id, d.clone());
                d
            }
        };
        let payload: Option<String> = row.try_get("payload")?;
        let forward_headers: Option<sqlx::types::Json<BTreeMap<String, String>>> =
            row.try_get("forward_headers")?;
        let content_type: Option<String> = row.try_get("content_type")?;
        let forwarded = match (forward_headers, content_type) {
            (None, None) => None,
            (headers, content_type) => Some(Box::new(Forwarded {
                headers: headers
                    .map(|h| h.0.into_iter().collect())
                    .unwrap_or_default(),
                content_type: content_type.unwrap_or_else(|| "application/json".into()),
            })),
        };
        jobs.push(Job {
            delivery_id: row.try_get("id")?,
            lease_token: token,
            attempts: row.try_get("attempts")?,
            manual: row.try_get("manual")?,
            message_id: row.try_get("message_id")?,
            event_type: row.try_get("event_type")?,
            payload: payload.map(Bytes::from),
            endpoint,
            forwarded,
        });
    }
    Ok(Claimed {
        jobs,
        more_due,
        ordered: Vec::new(),
    })
}

/// The endpoint as a delivery needs it. A row written by hand that Herald cannot use (its
/// headers not an object of strings, no valid secret) is not an error here: the claim has
/// leased the rows, and failing it would stall every delivery of the batch until their
/// leases expired. The problem becomes the endpoint's `defect`, which fails only its own
/// deliveries, with the reason in the attempt log.
fn destination(row: &sqlx::postgres::PgRow, id: String) -> Result<Destination, sqlx::Error> {
    let headers: sqlx::types::Json<serde_json::Value> = row.try_get("headers")?;
    let keys: Vec<Vec<u8>> = row.try_get("secrets")?;
    let rate_limit: Option<i32> = row.try_get("rate_limit")?;
    let secrets: Vec<Secret> = keys
        .into_iter()
        .filter_map(|k| Secret::from_bytes(k).ok())
        .collect();
    let (headers, mut defect) = match StringMap::strict(&headers.0) {
        Ok(map) => (map.0.into_iter().collect(), None),
        Err(why) => (Vec::new(), Some(format!("the endpoint's headers {why}"))),
    };
    if secrets.is_empty() {
        defect.get_or_insert_with(|| "the endpoint has no valid signing secret".into());
    }
    Ok(Destination {
        id,
        url: row.try_get("url")?,
        disabled: row.try_get("disabled")?,
        rate_limit: rate_limit.map(|r| r.max(1) as u32),
        headers,
        secrets,
        defect,
    })
}
