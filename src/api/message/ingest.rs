//! Group commit for `POST /api/v1/app/{app_id}/msg`.
//!
//! A commit (a WAL flush) and a round trip per request would cap the API far below what
//! PostgreSQL can insert. Instead, requests that arrive while a write is under way wait in a
//! queue, and the next write takes all of them (up to [`MAX_BATCH`]) in **one statement**:
//! one round trip, one transaction, one commit, one NOTIFY. Each request is answered only
//! after that statement's transaction has committed (the statement runs in its own implicit
//! transaction, and its result is read up to the server's ReadyForQuery, which follows the
//! commit), so an accepted message is never lost.
//!
//! The statement calls `herald.send_messages` (a migration), the set-based form of
//! `herald.send_message` that producers call in SQL, with the same rules. It also resolves
//! the application (id or uid) and reports an earlier message with the same `eventId`, so
//! the handler needs no round trip of its own.
//!
//! One writer for all API workers, with a dedicated connection (no pool acquire, none of
//! the pool's per-use pings): the more requests one statement carries, the less each costs
//! PostgreSQL, and two writers would halve the batches. A statement that fails because of
//! one message's data (PostgreSQL refusing a payload serde accepted) is retried message by
//! message, so only that request fails. A request that waited longer than the database
//! timeout without being written is answered 503 and is never written.

use std::{
    collections::{HashSet, VecDeque},
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use sqlx::{postgres::PgConnectOptions, ConnectOptions, PgConnection, PgPool, Row};
use tokio::sync::{mpsc, oneshot};

use crate::api::error::{ApiError, ApiResult};

/// Messages per statement at most.
pub const MAX_BATCH: usize = 500;
/// Payload bytes per statement at most (a single larger message still goes alone).
const MAX_BATCH_BYTES: usize = 4 << 20;

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

/// What became of a message (the message is handed back for the answer).
#[derive(Debug)]
pub enum Written {
    Created {
        id: String,
        timestamp: DateTime<Utc>,
        message: NewMessage,
    },
    /// The application already has a message with this `eventId`: nothing was written.
    Duplicate { id: String, message: NewMessage },
    /// No application has this id or uid: nothing was written.
    NoApplication(NewMessage),
}

// A queued message's state, shared by its request and the writer.
const QUEUED: u8 = 0;
const WRITING: u8 = 1;
/// Its request gave up waiting: it must not be written.
const ABANDONED: u8 = 2;

struct Pending {
    message: NewMessage,
    state: Arc<AtomicU8>,
    reply: oneshot::Sender<ApiResult<Written>>,
}

/// The group-commit queue, shared by every API worker. The writer ends when the last
/// handle is dropped.
#[derive(Clone)]
pub struct Ingest {
    queue: mpsc::UnboundedSender<Pending>,
    /// How long a message may wait to be written (the database timeout).
    timeout: Duration,
}

impl Ingest {
    /// Starts the writer on the current runtime, writing with `pool`'s settings.
    pub fn start(pool: &PgPool) -> Ingest {
        let (queue, pending) = mpsc::unbounded_channel();
        let timeout = pool.options().get_acquire_timeout();
        actix_rt::spawn(writer(pending, pool.connect_options(), timeout));
        Ingest { queue, timeout }
    }

    /// Writes `message` with the next group commit and returns once it has committed.
    pub async fn write(&self, message: NewMessage) -> ApiResult<Written> {
        let gone = || ApiError::Unavailable("the server is shutting down; retry".into());
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            message,
            state: state.clone(),
            reply,
        };
        self.queue.send(pending).map_err(|_| gone())?;
        let mut answer = std::pin::pin!(answer);
        match tokio::time::timeout(self.timeout, &mut answer).await {
            Ok(result) => result.unwrap_or_else(|_| Err(gone())),
            Err(_) => {
                // Not taken by a statement yet: it never will be, so a retry is safe.
                if state
                    .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Err(ApiError::Unavailable(
                        "the database is too slow to answer; retry later".into(),
                    ));
                }
                // Being written: its outcome is the answer.
                answer.await.unwrap_or_else(|_| Err(gone()))
            }
        }
    }
}

async fn writer(
    mut queue: mpsc::UnboundedReceiver<Pending>,
    options: Arc<PgConnectOptions>,
    timeout: Duration,
) {
    let mut conn: Option<PgConnection> = None;
    // Messages put off to the next statement (a second one with the same eventId).
    let mut held = VecDeque::new();
    loop {
        if held.is_empty() {
            match queue.recv().await {
                Some(first) => held.push_back(first),
                None => return, // every handle is gone: the API has stopped
            }
        }
        while let Ok(more) = queue.try_recv() {
            held.push_back(more);
        }
        let batch = take_batch(&mut held);
        if batch.is_empty() {
            continue;
        }
        let messages: Vec<&NewMessage> = batch.iter().map(|p| &p.message).collect();
        match write_batch(&mut conn, &options, timeout, &messages).await {
            Ok(rows) => answer_all(batch, rows),
            // One message's data refused: each alone, so that only its request fails.
            Err(sqlx::Error::Database(_)) if batch.len() > 1 => {
                for pending in batch {
                    match write_batch(&mut conn, &options, timeout, &[&pending.message]).await {
                        Ok(rows) => answer_all(vec![pending], rows),
                        Err(e) => fail(vec![pending], e, &mut conn),
                    }
                }
            }
            Err(e) => fail(batch, e, &mut conn),
        }
    }
}

/// The queued messages the next statement takes, marked as being written. Requests that
/// gave up are dropped; a second message with the same `eventId` waits for the next
/// statement (so it is answered 409, and the first one 202, in arrival order).
fn take_batch(queue: &mut VecDeque<Pending>) -> Vec<Pending> {
    let mut batch = Vec::new();
    let mut later = Vec::new();
    let mut event_ids = HashSet::new();
    let mut bytes = 0;
    while let Some(p) = queue.pop_front() {
        if p.reply.is_closed() || p.state.load(Ordering::Acquire) != QUEUED {
            continue;
        }
        let key = p
            .message
            .event_id
            .as_ref()
            .map(|e| (p.message.app.clone(), e.clone()));
        if key.as_ref().is_some_and(|k| event_ids.contains(k)) {
            later.push(p);
            continue;
        }
        if !batch.is_empty()
            && (batch.len() >= MAX_BATCH || bytes + p.message.payload.len() > MAX_BATCH_BYTES)
        {
            queue.push_front(p);
            break;
        }
        // The request may give up at this very moment: whichever comes first wins.
        if p.state
            .compare_exchange(QUEUED, WRITING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue;
        }
        bytes += p.message.payload.len();
        event_ids.extend(key);
        batch.push(p);
    }
    for p in later.into_iter().rev() {
        queue.push_front(p);
    }
    batch
}

/// One statement for the whole batch: `herald.send_messages` (see its migration) with the
/// batch as an array of `herald.new_message`, built here from one array per field
/// (channels and tags travel as JSON: arrays of arrays cannot be bound).
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

struct Outcome {
    app_id: Option<String>,
    message_id: Option<String>,
    created: bool,
    created_at: Option<DateTime<Utc>>,
}

async fn write_batch(
    conn: &mut Option<PgConnection>,
    options: &PgConnectOptions,
    timeout: Duration,
    messages: &[&NewMessage],
) -> Result<Vec<Outcome>, sqlx::Error> {
    if conn.is_none() {
        let connected = tokio::time::timeout(timeout, options.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        *conn = Some(connected);
    }
    let text =
        |f: fn(&NewMessage) -> &str| -> Vec<&str> { messages.iter().map(|m| f(m)).collect() };
    let list = |f: fn(&NewMessage) -> &Option<Vec<String>>| -> Vec<Option<String>> {
        messages
            .iter()
            .map(|m| f(m).as_ref().and_then(|v| serde_json::to_string(v).ok()))
            .collect()
    };
    let event_ids: Vec<Option<&str>> = messages.iter().map(|m| m.event_id.as_deref()).collect();
    let rows = sqlx::query(SEND_BATCH)
        .bind(text(|m| &m.app))
        .bind(text(|m| &m.event_type))
        .bind(text(|m| &m.payload))
        .bind(event_ids)
        .bind(list(|m| &m.channels))
        .bind(list(|m| &m.tags))
        .fetch_all(conn.as_mut().expect("connected above"))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Outcome {
                app_id: row.try_get("app_id")?,
                message_id: row.try_get("message_id")?,
                created: row.try_get("created")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect()
}

fn answer_all(batch: Vec<Pending>, rows: Vec<Outcome>) {
    for (pending, row) in batch.into_iter().zip(rows) {
        let message = pending.message;
        let written = match row {
            Outcome { app_id: None, .. } => Ok(Written::NoApplication(message)),
            Outcome {
                message_id: Some(id),
                created: true,
                created_at: Some(timestamp),
                ..
            } => Ok(Written::Created {
                id,
                timestamp,
                message,
            }),
            Outcome {
                message_id: Some(id),
                created: false,
                ..
            } => Ok(Written::Duplicate { id, message }),
            _ => Err(ApiError::Internal(anyhow::anyhow!(
                "herald.send_messages answered without a message id"
            ))),
        };
        let _ = pending.reply.send(written);
    }
}

/// Answers a batch whose statement failed. A connection-level failure also drops the
/// connection (the next write reconnects). A message written alone gets the error's own
/// answer (a 422 for a payload PostgreSQL refuses); the messages of a batch that failed
/// for a reason none of them caused (the database is unreachable) share one.
fn fail(batch: Vec<Pending>, e: sqlx::Error, conn: &mut Option<PgConnection>) {
    if !matches!(e, sqlx::Error::Database(_)) {
        *conn = None;
    }
    if batch.len() == 1 {
        let pending = batch.into_iter().next().expect("one message");
        let _ = pending.reply.send(Err(invalid_payload(e)));
        return;
    }
    let unavailable = matches!(
        e,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
    );
    for pending in batch {
        let error = if unavailable {
            ApiError::Unavailable("the database is unavailable; retry later".into())
        } else {
            ApiError::Internal(anyhow::anyhow!("writing a batch of messages: {e}"))
        };
        let _ = pending.reply.send(Err(error));
    }
}

/// `herald.send_message` refuses what PostgreSQL's JSON parser refuses (e.g. a lone
/// surrogate escape serde accepted): that is the caller's input, so 422.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(
        app: &str,
        event_id: Option<&str>,
        state: u8,
    ) -> (Pending, oneshot::Receiver<ApiResult<Written>>) {
        let (reply, answer) = oneshot::channel();
        let message = NewMessage {
            app: app.into(),
            event_type: "a".into(),
            payload: "{}".into(),
            event_id: event_id.map(String::from),
            channels: None,
            tags: None,
        };
        let state = Arc::new(AtomicU8::new(state));
        (
            Pending {
                message,
                state,
                reply,
            },
            answer,
        )
    }

    #[test]
    fn a_batch_skips_abandoned_requests_and_defers_a_repeated_event_id() {
        let mut answers = Vec::new();
        let mut queue = VecDeque::new();
        for (app, event_id, state) in [
            ("a", Some("e1"), QUEUED),
            ("a", None, ABANDONED),
            ("a", Some("e1"), QUEUED), // same application and eventId: next batch
            ("b", Some("e1"), QUEUED), // another application's e1
            ("a", None, QUEUED),
        ] {
            let (p, answer) = pending(app, event_id, state);
            queue.push_back(p);
            answers.push(answer);
        }
        let batch = take_batch(&mut queue);
        let taken: Vec<_> = batch
            .iter()
            .map(|p| (p.message.app.as_str(), p.message.event_id.as_deref()))
            .collect();
        assert_eq!(taken, [("a", Some("e1")), ("b", Some("e1")), ("a", None)]);
        assert!(batch
            .iter()
            .all(|p| p.state.load(Ordering::Acquire) == WRITING));
        // The repeated one leads the next batch.
        assert_eq!(queue.len(), 1);
        assert_eq!(take_batch(&mut queue).len(), 1);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_messages_and_skips_requests_gone() {
        let mut queue = VecDeque::new();
        let mut answers = Vec::new();
        for i in 0..MAX_BATCH + 10 {
            let (p, answer) = pending("a", None, QUEUED);
            queue.push_back(p);
            // The first request's client went away: it is not written.
            if i > 0 {
                answers.push(answer);
            }
        }
        assert_eq!(take_batch(&mut queue).len(), MAX_BATCH);
        assert_eq!(take_batch(&mut queue).len(), 9);
    }
}
