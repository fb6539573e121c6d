//! Message creates from the HTTP API, written by group commit ([`super::group_commit`]):
//! concurrent creates share one call of `herald.send_messages` (a migration), the
//! set-based form of `herald.send_message` that producers call in SQL, with the same rules.
//! The call also resolves the application (id or uid), reports an earlier message with the
//! same `eventId`, and claims the request's idempotency key in the same transaction as the
//! message, so that either both exist afterwards or neither does.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::{
    group_commit::Batch,
    idempotency::{Held, KeyedRequest},
};

/// One message to create.
#[derive(Debug)]
pub struct NewMessage {
    /// The application's id or uid, as the path named it.
    pub app: String,
    pub event_type: String,
    /// The exact bytes to store.
    pub payload: String,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    /// Deliver at this time (stored now).
    pub deliver_at: Option<DateTime<Utc>>,
    /// Expunge the payload at this time.
    pub payload_expires_at: Option<DateTime<Utc>>,
    /// The request's idempotency key.
    pub key: Option<KeyedRequest>,
    /// The one URL the message goes to (checked against the destination rules by the
    /// caller), instead of the application's endpoints.
    pub callback_url: Option<String>,
    /// The `traceparent` of the request that created it (traces on).
    pub trace_context: Option<String>,
}

/// What became of a message.
#[derive(Debug, PartialEq)]
pub enum Written {
    Created {
        id: String,
        timestamp: DateTime<Utc>,
    },
    /// The application already has a message with this `eventId` (`None`: it was deleted
    /// a moment ago): nothing was written.
    Duplicate { id: Option<String> },
    /// No application has this id or uid: nothing was written.
    NoApplication,
    /// The idempotency key is taken: nothing was written.
    KeyTaken(Held),
}

/// One statement for the whole batch: `herald.send_messages` with the batch as an array of
/// `herald.new_message`, built here from one array per field (channels and tags travel as
/// JSON: arrays of arrays cannot be bound).
const SEND_BATCH: &str = r#"
SELECT s.app_id, s.message_id, s.created, s.created_at, s.key_taken, s.key_request,
       s.key_fingerprint, s.key_status, s.key_body, s.key_message_id
FROM herald.send_messages(ARRAY(
    SELECT ROW(i.app, i.event_type, i.payload, i.event_id,
        CASE WHEN i.channels IS NOT NULL THEN ARRAY(SELECT json_array_elements_text(i.channels::json)) END,
        CASE WHEN i.tags IS NOT NULL THEN ARRAY(SELECT json_array_elements_text(i.tags::json)) END,
        i.deliver_at, i.expires, i.scope, i.key, i.request, i.fingerprint, i.callback_url,
        i.trace_context
    )::herald.new_message
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::text[],
                $12::bytea[], $13::text[], $14::text[])
        WITH ORDINALITY AS i(app, event_type, payload, event_id, channels, tags, deliver_at,
                             expires, scope, key, request, fingerprint, callback_url,
                             trace_context, n)
    ORDER BY i.n
)) s
ORDER BY s.ord
"#;

impl Batch for NewMessage {
    type Output = Written;

    #[allow(clippy::manual_async_fn)] // the future's lifetime must be spelled out
    fn write<'a>(
        conn: &'a mut PgConnection,
        messages: &'a [&'a Self],
    ) -> impl Future<Output = Result<Vec<Written>, sqlx::Error>> + 'a {
        async move {
            fn column<'m, T>(
                messages: &[&'m NewMessage],
                f: impl Fn(&'m NewMessage) -> T,
            ) -> Vec<T> {
                messages.iter().map(|m| f(m)).collect()
            }
            let list =
                |v: &Option<Vec<String>>| v.as_ref().and_then(|v| serde_json::to_string(v).ok());
            let key = |m: &'a NewMessage| m.key.as_ref();
            let rows = sqlx::query(SEND_BATCH)
                .bind(column(messages, |m| m.app.as_str()))
                .bind(column(messages, |m| m.event_type.as_str()))
                .bind(column(messages, |m| m.payload.as_str()))
                .bind(column(messages, |m| m.event_id.as_deref()))
                .bind(column(messages, |m| list(&m.channels)))
                .bind(column(messages, |m| list(&m.tags)))
                .bind(column(messages, |m| m.deliver_at))
                .bind(column(messages, |m| m.payload_expires_at))
                .bind(column(messages, |m| key(m).map(|k| k.scope.as_str())))
                .bind(column(messages, |m| key(m).map(|k| k.key.as_str())))
                .bind(column(messages, |m| key(m).map(|k| k.request.as_str())))
                .bind(column(messages, |m| {
                    key(m).map(|k| k.fingerprint.as_slice())
                }))
                .bind(column(messages, |m| m.callback_url.as_deref()))
                .bind(column(messages, |m| m.trace_context.as_deref()))
                .fetch_all(conn)
                .await?;
            rows.iter().map(written).collect()
        }
    }

    fn size(&self) -> usize {
        self.payload.len()
    }

    /// A second message with the same `eventId` waits for the next statement, so that it is
    /// answered 409, and the first one 202, in the order they arrived; so does a second
    /// request with the same idempotency key (it then finds the key taken).
    fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        if let Some(event_id) = &self.event_id {
            keys.push(format!("e\n{}\n{event_id}", self.app));
        }
        if let Some(k) = &self.key {
            keys.push(format!("k\n{}\n{}", k.scope, k.key));
        }
        keys
    }
}

fn written(row: &sqlx::postgres::PgRow) -> Result<Written, sqlx::Error> {
    if row.try_get::<bool, _>("key_taken")? {
        return Ok(Written::KeyTaken(Held {
            request: row.try_get("key_request")?,
            fingerprint: row.try_get("key_fingerprint")?,
            status: row.try_get("key_status")?,
            body: row.try_get("key_body")?,
            message_id: row.try_get("key_message_id")?,
        }));
    }
    let app_id: Option<String> = row.try_get("app_id")?;
    let id: Option<String> = row.try_get("message_id")?;
    let created: bool = row.try_get("created")?;
    let created_at: Option<DateTime<Utc>> = row.try_get("created_at")?;
    Ok(match (app_id, id, created, created_at) {
        (None, ..) => Written::NoApplication,
        (_, Some(id), true, Some(timestamp)) => Written::Created { id, timestamp },
        // Not created: the eventId was taken (its message may be gone by now). Never an
        // error here: the batch has committed, the other messages in it are written.
        (_, id, _, _) => Written::Duplicate { id },
    })
}
