//! Group commit: small writes from many concurrent callers, one statement and one commit.
//!
//! A commit (a WAL flush) and a round trip per request would cap the API far below what
//! PostgreSQL can insert. Callers instead queue their item; one writer takes everything
//! queued (up to [`MAX_BATCH`] items) and writes it with **one statement**, in its own
//! implicit transaction: one round trip, one commit. Each caller gets its answer only after
//! that commit (the statement's result is read up to the server's ReadyForQuery, which
//! follows the commit), so nothing a caller was told is written can be lost. While one
//! statement runs the next batch fills, so batches grow with the load by themselves.
//!
//! One writer per kind of item, on a dedicated connection (no pool acquire, none of the
//! pool's per-use pings) whose plans stay index-driven ([`super::index_driven`]). A statement that fails because of one item's data is retried item
//! by item, so only that caller gets the error. An item that waited longer than the
//! database timeout without being taken gets [`sqlx::Error::PoolTimedOut`] and is never
//! written, so its caller may safely retry.

use std::{
    collections::{HashSet, VecDeque},
    future::Future,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use sqlx::{postgres::PgConnectOptions, ConnectOptions, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use crate::linger::{Linger, LingerPolicy};

/// Items per statement at most.
pub const MAX_BATCH: usize = 500;
/// Bytes per statement at most (by [`Batch::size`]; a single larger item still goes alone).
const MAX_BATCH_BYTES: usize = 4 << 20;

/// A kind of item written in batches.
pub trait Batch: Sized + 'static {
    /// What a caller learns about its item.
    type Output: 'static;

    /// Writes `items` with one statement (no explicit transaction) and returns one output
    /// per item, in order.
    fn write<'a>(
        conn: &'a mut PgConnection,
        items: &'a [&'a Self],
    ) -> impl Future<Output = Result<Vec<Self::Output>, sqlx::Error>> + 'a;

    /// Roughly how many bytes the item adds to a statement.
    fn size(&self) -> usize {
        0
    }

    /// Items sharing a key never share a statement: the later one waits for the next, so
    /// that it sees what the earlier one wrote.
    fn keys(&self) -> Vec<String> {
        Vec::new()
    }
}

// A queued item's state, shared by its caller and the writer.
const QUEUED: u8 = 0;
const WRITING: u8 = 1;
/// Its caller gave up waiting: it must not be written.
const ABANDONED: u8 = 2;

type Reply<T> = oneshot::Sender<Result<(T, <T as Batch>::Output), sqlx::Error>>;

struct Pending<T: Batch> {
    item: T,
    state: Arc<AtomicU8>,
    reply: Reply<T>,
}

/// The queue of one kind of item. Clones share it; the writer ends when the last is dropped.
pub struct GroupCommit<T: Batch> {
    queue: mpsc::UnboundedSender<Pending<T>>,
    /// How long an item may wait to be taken (the database timeout).
    timeout: Duration,
}

impl<T: Batch> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        GroupCommit {
            queue: self.queue.clone(),
            timeout: self.timeout,
        }
    }
}

impl<T: Batch> GroupCommit<T> {
    /// Starts the writer on the current runtime, connecting with `pool`'s settings and
    /// these session `settings` (name, value). A small batch waits for more as `linger`
    /// says (at most its `max_wait`: [`crate::linger`]).
    pub fn start(pool: &PgPool, settings: &[(&str, &str)], linger: Duration) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        let timeout = pool.options().get_acquire_timeout();
        let options = super::index_driven((*pool.connect_options()).clone());
        let options = options.options(settings.iter().copied());
        let linger = Linger::new(policy(linger));
        actix_rt::spawn(writer(pending, Arc::new(options), timeout, linger));
        GroupCommit { queue, timeout }
    }

    /// Writes `item` with the next statement; returns it with its output once committed.
    pub async fn write(&self, item: T) -> Result<(T, T::Output), sqlx::Error> {
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            item,
            state: state.clone(),
            reply,
        };
        self.queue
            .send(pending)
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let mut answer = std::pin::pin!(answer);
        match tokio::time::timeout(self.timeout, &mut answer).await {
            Ok(result) => result.unwrap_or(Err(sqlx::Error::PoolClosed)),
            Err(_) => {
                // Not taken by a statement yet: it never will be, so a retry is safe.
                if state
                    .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Err(sqlx::Error::PoolTimedOut);
                }
                // Being written: its outcome is the answer.
                answer.await.unwrap_or(Err(sqlx::Error::PoolClosed))
            }
        }
    }
}

/// A small batch waits until it has this many items, or its linger is over. Small on
/// purpose: a writer is one connection, and waiting idles it. With 64, at 5,000 messages/s
/// each batch waited the whole 2 ms for 10 more and the API topped out at 4,900/s; a batch
/// the load has already filled this far goes at once. (`herald-bench latency`.)
const LINGER_TARGET: usize = 8;

fn policy(max_wait: Duration) -> LingerPolicy {
    LingerPolicy {
        target: LINGER_TARGET,
        max_wait,
        min_gain: 2.0,
    }
}

async fn writer<T: Batch>(
    mut queue: mpsc::UnboundedReceiver<Pending<T>>,
    options: Arc<PgConnectOptions>,
    timeout: Duration,
    mut linger: Linger,
) {
    let mut conn: Option<PgConnection> = None;
    // Items put off to a later statement (a repeated key).
    let mut held = VecDeque::new();
    loop {
        if held.is_empty() {
            match queue.recv().await {
                Some(first) => {
                    held.push_back(first);
                    linger.arrived(1, std::time::Instant::now());
                }
                None => return, // every handle is gone
            }
        }
        gather(&mut queue, &mut held, &mut linger).await;
        let batch = take_batch(&mut held);
        if batch.is_empty() {
            continue;
        }
        match write_batch(&mut conn, &options, timeout, &batch).await {
            Ok(outputs) => answer(batch, outputs),
            // One item's data refused: each alone, so that only its caller gets the error.
            // (Not for load or an outage: a statement timeout would then cost one timeout per
            // item.)
            Err(e) if batch.len() > 1 && caused_by_data(&e) => {
                for pending in batch {
                    let alone = [pending];
                    match write_batch(&mut conn, &options, timeout, &alone).await {
                        Ok(outputs) => answer(alone.into(), outputs),
                        Err(e) => fail(alone.into(), e, &mut conn),
                    }
                }
            }
            Err(e) => fail(batch, e, &mut conn),
        }
    }
}

/// Takes what is queued; then, if the batch is small and items have been arriving fast,
/// waits a little for more ([`Linger::wait`]).
async fn gather<T: Batch>(
    queue: &mut mpsc::UnboundedReceiver<Pending<T>>,
    held: &mut VecDeque<Pending<T>>,
    linger: &mut Linger,
) {
    let take = |held: &mut VecDeque<Pending<T>>, linger: &mut Linger, p| {
        held.push_back(p);
        linger.arrived(1, std::time::Instant::now());
    };
    while let Ok(more) = queue.try_recv() {
        take(held, linger, more);
    }
    let Some(wait) = linger.wait(held.len(), std::time::Instant::now()) else {
        return;
    };
    let deadline = tokio::time::Instant::now() + wait;
    while held.len() < linger.policy().target {
        match tokio::time::timeout_at(deadline, queue.recv()).await {
            Ok(Some(more)) => take(held, linger, more),
            // Over, or every handle gone (the loop above notices).
            _ => return,
        }
    }
}

/// A database error that an item's data can cause (data exception, constraint violation).
fn caused_by_data(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
}

/// The queued items the next statement takes, marked as being written. Items whose caller
/// gave up are dropped; an item whose key is already in the batch waits for the next one.
fn take_batch<T: Batch>(queue: &mut VecDeque<Pending<T>>) -> Vec<Pending<T>> {
    let mut batch = Vec::new();
    let mut later = Vec::new();
    let mut keys = HashSet::new();
    let mut bytes = 0;
    while let Some(p) = queue.pop_front() {
        if p.reply.is_closed() || p.state.load(Ordering::Acquire) != QUEUED {
            continue;
        }
        let item_keys = p.item.keys();
        if item_keys.iter().any(|k| keys.contains(k)) {
            later.push(p);
            continue;
        }
        let size = p.item.size();
        if !batch.is_empty() && (batch.len() >= MAX_BATCH || bytes + size > MAX_BATCH_BYTES) {
            queue.push_front(p);
            break;
        }
        // The caller may give up at this very moment: whichever comes first wins.
        if p.state
            .compare_exchange(QUEUED, WRITING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue;
        }
        bytes += size;
        keys.extend(item_keys);
        batch.push(p);
    }
    for p in later.into_iter().rev() {
        queue.push_front(p);
    }
    batch
}

async fn write_batch<T: Batch>(
    conn: &mut Option<PgConnection>,
    options: &PgConnectOptions,
    timeout: Duration,
    batch: &[Pending<T>],
) -> Result<Vec<T::Output>, sqlx::Error> {
    if conn.is_none() {
        let connected = tokio::time::timeout(timeout, options.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        *conn = Some(connected);
    }
    let items: Vec<&T> = batch.iter().map(|p| &p.item).collect();
    let outputs = T::write(conn.as_mut().expect("connected above"), &items).await?;
    if outputs.len() != items.len() {
        return Err(sqlx::Error::Protocol(format!(
            "a batch of {} items was answered with {} outputs",
            items.len(),
            outputs.len()
        )));
    }
    Ok(outputs)
}

fn answer<T: Batch>(batch: Vec<Pending<T>>, outputs: Vec<T::Output>) {
    for (pending, output) in batch.into_iter().zip(outputs) {
        let _ = pending.reply.send(Ok((pending.item, output)));
    }
}

/// Answers a batch whose statement failed. A failure other than a database error drops the
/// connection (the next statement reconnects). An item written alone gets the error itself;
/// the items of a batch that failed for a reason none of them caused (the database is
/// unreachable) each get a copy of it ([`copy_error`]).
fn fail<T: Batch>(batch: Vec<Pending<T>>, e: sqlx::Error, conn: &mut Option<PgConnection>) {
    if !matches!(e, sqlx::Error::Database(_)) {
        *conn = None;
    }
    if batch.len() == 1 {
        let pending = batch.into_iter().next().expect("one item");
        let _ = pending.reply.send(Err(e));
        return;
    }
    for pending in batch {
        let _ = pending.reply.send(Err(copy_error(&e)));
    }
}

/// A copy of an error for each caller of a batch, of the same class (sqlx errors cannot be
/// cloned): a database error keeps its SQLSTATE, message and constraint, so that every
/// caller gets the answer its class calls for (503 for an outage, not a 500).
fn copy_error(e: &sqlx::Error) -> sqlx::Error {
    match e {
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::WorkerCrashed => sqlx::Error::WorkerCrashed,
        sqlx::Error::Database(db) => sqlx::Error::Database(Box::new(CopiedDbError {
            message: db.message().to_string(),
            code: db.code().map(|c| c.into_owned()),
            constraint: db.constraint().map(String::from),
            kind: db.kind(),
        })),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// A database error re-created from another's parts.
#[derive(Debug)]
struct CopiedDbError {
    message: String,
    code: Option<String>,
    constraint: Option<String>,
    kind: sqlx::error::ErrorKind,
}

impl std::fmt::Display for CopiedDbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CopiedDbError {}

impl sqlx::error::DatabaseError for CopiedDbError {
    fn message(&self) -> &str {
        &self.message
    }
    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.code.as_deref().map(std::borrow::Cow::Borrowed)
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn constraint(&self) -> Option<&str> {
        self.constraint.as_deref()
    }
    fn kind(&self) -> sqlx::error::ErrorKind {
        match self.kind {
            sqlx::error::ErrorKind::UniqueViolation => sqlx::error::ErrorKind::UniqueViolation,
            sqlx::error::ErrorKind::ForeignKeyViolation => {
                sqlx::error::ErrorKind::ForeignKeyViolation
            }
            sqlx::error::ErrorKind::NotNullViolation => sqlx::error::ErrorKind::NotNullViolation,
            sqlx::error::ErrorKind::CheckViolation => sqlx::error::ErrorKind::CheckViolation,
            _ => sqlx::error::ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(Option<&'static str>);

    impl Batch for Item {
        type Output = ();
        #[allow(clippy::manual_async_fn)]
        fn write<'a>(
            _: &'a mut PgConnection,
            items: &'a [&'a Self],
        ) -> impl Future<Output = Result<Vec<()>, sqlx::Error>> + 'a {
            async move { Ok(vec![(); items.len()]) }
        }
        fn keys(&self) -> Vec<String> {
            self.0.map(String::from).into_iter().collect()
        }
    }

    type Answer = oneshot::Receiver<Result<(Item, ()), sqlx::Error>>;

    fn pending(key: Option<&'static str>, state: u8) -> (Pending<Item>, Answer) {
        let (reply, answer) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(state));
        (
            Pending {
                item: Item(key),
                state,
                reply,
            },
            answer,
        )
    }

    #[test]
    fn a_batch_skips_abandoned_items_and_defers_a_repeated_key() {
        let mut answers = Vec::new();
        let mut queue = VecDeque::new();
        for (key, state) in [
            (Some("a/e1"), QUEUED),
            (None, ABANDONED),
            (Some("a/e1"), QUEUED), // the same key: next statement
            (Some("b/e1"), QUEUED),
            (None, QUEUED),
        ] {
            let (p, answer) = pending(key, state);
            queue.push_back(p);
            answers.push(answer);
        }
        let batch = take_batch(&mut queue);
        let taken: Vec<_> = batch.iter().map(|p| p.item.0).collect();
        assert_eq!(taken, [Some("a/e1"), Some("b/e1"), None]);
        assert!(batch
            .iter()
            .all(|p| p.state.load(Ordering::Acquire) == WRITING));
        // The repeated one leads the next batch.
        assert_eq!(queue.len(), 1);
        assert_eq!(take_batch(&mut queue).len(), 1);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_items_and_skips_callers_gone() {
        let mut queue = VecDeque::new();
        let mut answers = Vec::new();
        for i in 0..MAX_BATCH + 10 {
            let (p, answer) = pending(None, QUEUED);
            queue.push_back(p);
            // The first caller went away: its item is not written.
            if i > 0 {
                answers.push(answer);
            }
        }
        assert_eq!(take_batch(&mut queue).len(), MAX_BATCH);
        assert_eq!(take_batch(&mut queue).len(), 9);
    }

    #[test]
    fn a_failed_batch_tells_every_caller_the_same_class_of_error() {
        let original = sqlx::Error::Database(Box::new(CopiedDbError {
            message: "cannot execute INSERT in a read-only transaction".into(),
            code: Some("25006".into()),
            constraint: None,
            kind: sqlx::error::ErrorKind::Other,
        }));
        let copy = copy_error(&original);
        let db = copy.as_database_error().expect("still a database error");
        assert_eq!(db.code().as_deref(), Some("25006"));
        assert_eq!(
            db.message(),
            "cannot execute INSERT in a read-only transaction"
        );
        let api: crate::api::error::ApiError = copy.into();
        assert!(
            matches!(api, crate::api::error::ApiError::Unavailable(..)),
            "{api:?}"
        );
        assert!(matches!(
            copy_error(&sqlx::Error::PoolTimedOut),
            sqlx::Error::PoolTimedOut
        ));
    }
}
