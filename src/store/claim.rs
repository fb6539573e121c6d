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
    delivery::{Destination, Forwarded, Job, JobTrace},
    keyring::{Keyring, Purpose},
    signing::Secret,
};

/// The end of a claim: the leased rows (`leased`: id, attempts, manual, alerted,
/// message_id, endpoint_id) as jobs, with their messages and endpoints. A callback endpoint (a URL a
/// message named) signs with its application's secrets.
macro_rules! jobs_of_leased {
    ($more_due:literal) => {
        concat!(
            r#"
), endpoints AS MATERIALIZED (
    SELECT e.id, e.url, e.disabled, e.rate_limit, e.headers, e.callback,
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
SELECT l.id, l.attempts, l.manual, l.alerted, l.message_id, m.event_type, m.payload,
       m.forward_headers, m.content_type, m.app_id, m.trace_context,
       e.id AS endpoint_id, e.url, e.disabled, e.rate_limit, e.headers, e.callback, e.secrets,
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
    SELECT id, message_id FROM herald.delivery
    WHERE status = 'pending' AND next_attempt_at <= now() AND endpoint_id <> ALL ((SELECT ids FROM skipped)::text[])
    ORDER BY next_attempt_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), newest AS (
    SELECT id, message_id FROM herald.delivery
    WHERE status = 'pending' AND next_attempt_at <= now() AND endpoint_id <> ALL ((SELECT ids FROM skipped)::text[])
    ORDER BY next_attempt_at DESC, id DESC
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), picked AS MATERIALIZED (
    SELECT id, message_id FROM oldest UNION SELECT id, message_id FROM newest
), leased AS (
    -- One index lookup per picked row, in the one partition its message id names (the
    -- dispatcher's sessions join by nested loop only: `store::dispatcher_sessions`).
    UPDATE herald.delivery d
    SET status = 'sending', lease_owner = $2, lease_token = $3,
        lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
    FROM picked p
    WHERE d.message_id = p.message_id AND d.id = p.id
    RETURNING d.id, d.attempts, d.manual, d.alerted, d.message_id, d.endpoint_id
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
            self.claim_with_token(token, owner, limit, lease, paused, false)
                .await?,
        ))
    }

    /// The same with a token chosen by the caller, who can then release what this claim
    /// leased even if it never saw the answer (see [`Store::release_token`]); `traced`:
    /// each job gets what its attempt's span needs.
    pub async fn claim_with_token(
        &self,
        token: Uuid,
        owner: &str,
        limit: usize,
        lease: Duration,
        paused: &[String],
        traced: bool,
    ) -> Result<Claimed, sqlx::Error> {
        let rows = sqlx::query(CLAIM)
            .bind(limit.div_ceil(2) as i64)
            .bind(owner)
            .bind(token)
            .bind(lease.as_secs_f64())
            .bind(paused)
            .fetch_all(self.pool())
            .await?;

        jobs_of(rows, token, traced, &self.keyring)
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
    traced: bool,
    ring: &Keyring,
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
                let d = Arc::new(destination(&row, endpoint_id.clone(), ring)?);
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
            alerted: row.try_get("alerted")?,
            message_id: row.try_get("message_id")?,
            event_type: row.try_get("event_type")?,
            payload: payload.map(Bytes::from),
            endpoint,
            forwarded,
            trace: if traced {
                Some(Box::new(JobTrace {
                    app_id: row.try_get("app_id")?,
                    created: row.try_get("trace_context")?,
                    claim: None,
                }))
            } else {
                None
            },
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
/// deliveries, with the reason in the attempt log. So does a secret or header value sealed
/// with a key this instance does not have.
fn destination(
    row: &sqlx::postgres::PgRow,
    id: String,
    ring: &Keyring,
) -> Result<Destination, sqlx::Error> {
    let headers: sqlx::types::Json<serde_json::Value> = row.try_get("headers")?;
    let keys: Vec<Vec<u8>> = row.try_get("secrets")?;
    let callback: bool = row.try_get("callback")?;
    let rate_limit: Option<i32> = row.try_get("rate_limit")?;
    let purpose = if callback {
        Purpose::ApplicationSecret
    } else {
        Purpose::EndpointSecret
    };
    let mut defect = None;
    let mut secrets = Vec::with_capacity(keys.len());
    for key in keys {
        match ring.open(purpose, &key) {
            Ok(key) => secrets.extend(Secret::from_bytes(key.into_owned()).ok()),
            Err(e) => {
                defect = Some(format!(
                    "a signing secret of the endpoint is unreadable: {e}"
                ))
            }
        }
    }
    let headers = match StringMap::strict(&headers.0) {
        Ok(map) => match ring.open_headers(map.0) {
            Ok(opened) => opened.into_iter().collect(),
            Err((_, e)) => {
                defect = Some(format!("a header value of the endpoint is unreadable: {e}"));
                Vec::new()
            }
        },
        Err(why) => {
            defect = Some(format!("the endpoint's headers {why}"));
            Vec::new()
        }
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
