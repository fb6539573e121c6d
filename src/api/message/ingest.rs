//! The API's group-commit writers ([`crate::store::group_commit`]): message creates, and the
//! idempotency log every POST with an `idempotency-key` writes to twice (its claim before
//! the request runs, its answer after). Concurrent requests share statements and commits;
//! each is answered only after its own write has committed.
//!
//! Messages go through `herald.send_messages` (a migration), the set-based form of
//! `herald.send_message` that producers call in SQL, with the same rules. The statement also
//! resolves the application (id or uid) and reports an earlier message with the same
//! `eventId`, so the handler needs no round trip of its own.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};

use crate::{
    api::error::ApiError,
    store::group_commit::{Batch, GroupCommit},
};

/// The writers, shared by every API worker (registered once, at start-up).
#[derive(Clone)]
pub struct Ingest {
    pub messages: GroupCommit<NewMessage>,
    pub key_claims: GroupCommit<KeyClaim>,
    pub key_answers: GroupCommit<KeyAnswer>,
}

impl Ingest {
    /// Starts the writers on the current runtime, each with its own connection.
    pub fn start(pool: &PgPool) -> Ingest {
        Ingest {
            messages: GroupCommit::start(pool, &[]),
            // A claim needs no WAL flush of its own. If the request it guards writes
            // anything, that commit is flushed, and WAL is flushed in order, so the claim
            // (committed earlier) is durable with it; if a crash loses a claim, nothing it
            // guarded was written or answered, and a retry starts afresh.
            key_claims: GroupCommit::start(pool, &[("synchronous_commit", "off")]),
            key_answers: GroupCommit::start(pool, &[]),
        }
    }
}

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
}

/// What became of a message.
#[derive(Debug, PartialEq)]
pub enum Written {
    Created {
        id: String,
        timestamp: DateTime<Utc>,
    },
    /// The application already has a message with this `eventId`: nothing was written.
    Duplicate { id: String },
    /// No application has this id or uid: nothing was written.
    NoApplication,
}

/// One statement for the whole batch: `herald.send_messages` with the batch as an array of
/// `herald.new_message`, built here from one array per field (channels and tags travel as
/// JSON: arrays of arrays cannot be bound).
const SEND_BATCH: &str = r#"
SELECT s.app_id, s.message_id, s.created, s.created_at
FROM herald.send_messages(ARRAY(
    SELECT ROW(i.app, i.event_type, i.payload, i.event_id,
        CASE WHEN i.channels IS NOT NULL THEN ARRAY(SELECT json_array_elements_text(i.channels::json)) END,
        CASE WHEN i.tags IS NOT NULL THEN ARRAY(SELECT json_array_elements_text(i.tags::json)) END
    )::herald.new_message
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
        WITH ORDINALITY AS i(app, event_type, payload, event_id, channels, tags, n)
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
            let text = |f: fn(&NewMessage) -> &str| -> Vec<&str> {
                messages.iter().map(|m| f(m)).collect()
            };
            let list = |f: fn(&NewMessage) -> &Option<Vec<String>>| -> Vec<Option<String>> {
                messages
                    .iter()
                    .map(|m| f(m).as_ref().and_then(|v| serde_json::to_string(v).ok()))
                    .collect()
            };
            let event_ids: Vec<Option<&str>> =
                messages.iter().map(|m| m.event_id.as_deref()).collect();
            let rows = sqlx::query(SEND_BATCH)
                .bind(text(|m| &m.app))
                .bind(text(|m| &m.event_type))
                .bind(text(|m| &m.payload))
                .bind(event_ids)
                .bind(list(|m| &m.channels))
                .bind(list(|m| &m.tags))
                .fetch_all(conn)
                .await?;
            rows.iter().map(written).collect()
        }
    }

    fn size(&self) -> usize {
        self.payload.len()
    }

    /// A second message with the same `eventId` waits for the next statement, so that it is
    /// answered 409, and the first one 202, in the order they arrived.
    fn key(&self) -> Option<String> {
        let event_id = self.event_id.as_ref()?;
        Some(format!("{}\n{event_id}", self.app))
    }
}

fn written(row: &sqlx::postgres::PgRow) -> Result<Written, sqlx::Error> {
    let app_id: Option<String> = row.try_get("app_id")?;
    let id: Option<String> = row.try_get("message_id")?;
    let created: bool = row.try_get("created")?;
    let created_at: Option<DateTime<Utc>> = row.try_get("created_at")?;
    Ok(match (app_id, id, created, created_at) {
        (None, ..) => Written::NoApplication,
        (_, Some(id), true, Some(timestamp)) => Written::Created { id, timestamp },
        (_, Some(id), false, _) => Written::Duplicate { id },
        _ => {
            return Err(sqlx::Error::Protocol(
                "herald.send_messages answered without a message id".into(),
            ))
        }
    })
}

/// `herald.send_messages` refuses what PostgreSQL's JSON parser refuses: that is the
/// caller's input, so 422.
pub fn invalid_payload(e: sqlx::Error) -> ApiError {
    match e.as_database_error().and_then(|d| d.code()) {
        Some(code) if code == "22P02" || code == "22023" || code == "22P05" => ApiError::invalid(
            "payload",
            e.as_database_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default(),
        ),
        _ => e.into(),
    }
}

/// Claims an idempotency key for a request (`METHOD path`) about to run.
pub struct KeyClaim {
    pub key: String,
    pub request: String,
}

/// `true` when this claim inserted the key (the request runs); `false` when the key was
/// there already (the first answer is replayed, or the first request is still running).
impl Batch for KeyClaim {
    type Output = bool;

    #[allow(clippy::manual_async_fn)]
    fn write<'a>(
        conn: &'a mut PgConnection,
        claims: &'a [&'a Self],
    ) -> impl Future<Output = Result<Vec<bool>, sqlx::Error>> + 'a {
        async move {
            let keys: Vec<&str> = claims.iter().map(|c| c.key.as_str()).collect();
            let requests: Vec<&str> = claims.iter().map(|c| c.request.as_str()).collect();
            let inserted: Vec<String> = sqlx::query_scalar(
                "INSERT INTO herald.idempotency (key, request) \
                 SELECT * FROM unnest($1::text[], $2::text[]) \
                 ON CONFLICT DO NOTHING RETURNING key",
            )
            .bind(&keys)
            .bind(&requests)
            .fetch_all(conn)
            .await?;
            let inserted: std::collections::HashSet<&str> =
                inserted.iter().map(String::as_str).collect();
            Ok(keys.iter().map(|k| inserted.contains(k)).collect())
        }
    }

    /// The same key twice in one statement could not tell which request got it.
    fn key(&self) -> Option<String> {
        Some(self.key.clone())
    }
}

/// The answer to replay for a claimed key.
pub struct KeyAnswer {
    pub key: String,
    pub status: i16,
    pub body: bytes::Bytes,
}

impl Batch for KeyAnswer {
    type Output = ();

    #[allow(clippy::manual_async_fn)]
    fn write<'a>(
        conn: &'a mut PgConnection,
        answers: &'a [&'a Self],
    ) -> impl Future<Output = Result<Vec<()>, sqlx::Error>> + 'a {
        async move {
            let keys: Vec<&str> = answers.iter().map(|a| a.key.as_str()).collect();
            let statuses: Vec<i16> = answers.iter().map(|a| a.status).collect();
            let bodies: Vec<&[u8]> = answers.iter().map(|a| a.body.as_ref()).collect();
            sqlx::query(
                "UPDATE herald.idempotency i SET status = a.status, body = a.body \
                 FROM unnest($1::text[], $2::smallint[], $3::bytea[]) AS a(key, status, body) \
                 WHERE i.key = a.key",
            )
            .bind(&keys)
            .bind(&statuses)
            .bind(&bodies)
            .execute(conn)
            .await?;
            Ok(vec![(); answers.len()])
        }
    }

    fn size(&self) -> usize {
        self.body.len()
    }
}
