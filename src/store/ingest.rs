//! Received requests, written by group commit ([`super::group_commit`]): a batch of them
//! in one call of `herald.receive_events` (a migration), which records each, dedupes the
//! accepted ones on their provider's event id within their window, and turns each new one
//! into a message of its source's application, with a delivery to each of its endpoints.

use std::{collections::BTreeMap, future::Future, time::Duration};

use sqlx::{PgConnection, Row};

use super::group_commit::Batch;

/// One received request, verified or refused.
#[derive(Debug, Clone)]
pub struct Received {
    pub source_id: String,
    /// The provider's event identity (dedupe).
    pub event_key: Option<String>,
    pub event_type: String,
    /// Verified (or a source without a signature): to forward, unless a duplicate.
    pub accepted: bool,
    /// A signature was checked.
    pub verified: bool,
    /// Why it was refused.
    pub reason: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// What the forwarded message carries (accepted only).
    pub forward_headers: BTreeMap<String, String>,
    pub content_type: String,
    pub dedupe_window: Duration,
}

/// What became of it.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// Forwarded as this message.
    Accepted {
        event_id: i64,
        message_id: String,
    },
    /// Its event id was seen within the window: not forwarded again (`message_id`: the
    /// first one's, if still known).
    Duplicate {
        event_id: i64,
        message_id: Option<String>,
    },
    Rejected {
        event_id: i64,
    },
    /// The source was deleted a moment ago: nothing was written.
    SourceGone,
}

const RECEIVE_BATCH: &str = r#"
SELECT r.ord, r.event_id, r.outcome, r.message_id
FROM herald.receive_events(ARRAY(
    SELECT ROW(i.source_id, i.event_key, i.event_type, i.outcome, i.verified, i.reason,
               i.headers::jsonb, i.body, i.forward_headers::jsonb, i.content_type,
               make_interval(secs => i.window_secs))::herald.ingest_in
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::text[], $11::float8[])
        WITH ORDINALITY AS i(source_id, event_key, event_type, outcome, verified, reason,
                             headers, body, forward_headers, content_type, window_secs, n)
    ORDER BY i.n
)) r
ORDER BY r.ord
"#;

impl Batch for Received {
    type Output = Recorded;

    #[allow(clippy::manual_async_fn)] // the future's lifetime must be spelled out
    fn write<'a>(
        conn: &'a mut PgConnection,
        items: &'a [&'a Self],
    ) -> impl Future<Output = Result<Vec<Recorded>, sqlx::Error>> + 'a {
        async move {
            fn column<'r, T>(items: &[&'r Received], f: impl Fn(&'r Received) -> T) -> Vec<T> {
                items.iter().map(|r| f(r)).collect()
            }
            let json = |m: &BTreeMap<String, String>| serde_json::to_string(m).unwrap_or_default();
            let rows = sqlx::query(RECEIVE_BATCH)
                .bind(column(items, |r| r.source_id.as_str()))
                .bind(column(items, |r| r.event_key.as_deref()))
                .bind(column(items, |r| r.event_type.as_str()))
                .bind(column(items, |r| {
                    if r.accepted {
                        "accepted"
                    } else {
                        "rejected"
                    }
                }))
                .bind(column(items, |r| r.verified))
                .bind(column(items, |r| r.reason.as_deref()))
                .bind(column(items, |r| json(&r.headers)))
                .bind(column(items, |r| r.body.as_str()))
                .bind(column(items, |r| json(&r.forward_headers)))
                .bind(column(items, |r| r.content_type.as_str()))
                .bind(column(items, |r| r.dedupe_window.as_secs_f64()))
                .fetch_all(conn)
                .await?;
            // A row per item whose source still exists, numbered by its place in the batch.
            let mut out = vec![Recorded::SourceGone; items.len()];
            for row in rows {
                let ord: i64 = row.try_get("ord")?;
                let event_id: i64 = row.try_get("event_id")?;
                let outcome: String = row.try_get("outcome")?;
                let message_id: Option<String> = row.try_get("message_id")?;
                let recorded = match (outcome.as_str(), message_id) {
                    ("accepted", Some(message_id)) => Recorded::Accepted {
                        event_id,
                        message_id,
                    },
                    ("duplicate", message_id) => Recorded::Duplicate {
                        event_id,
                        message_id,
                    },
                    _ => Recorded::Rejected { event_id },
                };
                if let Some(slot) = usize::try_from(ord - 1).ok().and_then(|i| out.get_mut(i)) {
                    *slot = recorded;
                }
            }
            Ok(out)
        }
    }

    fn size(&self) -> usize {
        self.body.len() + 512
    }

    /// Two requests with the same event id never share a statement: the later one finds
    /// the earlier one's claim and is a duplicate.
    fn keys(&self) -> Vec<String> {
        match (&self.event_key, self.accepted) {
            (Some(k), true) => vec![format!("{}\n{k}", self.source_id)],
            _ => Vec::new(),
        }
    }
}
