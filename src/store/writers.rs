//! The API's group-commit writers ([`super::group_commit`]): message creates, requests
//! received at sources' URLs, and the
//! idempotency log that every other POST with an `idempotency-key` writes to twice (its
//! claim before the request runs, its answer after). Concurrent requests share statements
//! and commits; each is answered only after its own write has committed.

use std::time::Duration;

use sqlx::PgPool;

use super::{
    group_commit::GroupCommit,
    idempotency::{KeyAnswer, KeyClaim},
    ingest::Received,
    new_message::NewMessage,
};

/// The writers, shared by every API worker (started once, at start-up).
#[derive(Clone)]
pub struct ApiWriters {
    pub messages: GroupCommit<NewMessage>,
    pub key_claims: GroupCommit<KeyClaim>,
    pub key_answers: GroupCommit<KeyAnswer>,
    /// Requests received at sources' URLs.
    pub received: GroupCommit<Received>,
}

impl ApiWriters {
    /// Starts the writers on the current runtime, each with its own connection; a small
    /// batch waits up to `linger` for company when requests come fast.
    pub fn start(pool: &PgPool, linger: Duration) -> ApiWriters {
        ApiWriters {
            messages: GroupCommit::start(pool, &[], linger),
            // A claim needs no WAL flush of its own. If the request it guards writes
            // anything, that commit is flushed, and WAL is flushed in order, so the claim
            // (committed earlier) is durable with it; if a crash loses a claim, nothing it
            // guarded was written or answered, and a retry starts afresh.
            key_claims: GroupCommit::start(pool, &[("synchronous_commit", "off")], linger),
            key_answers: GroupCommit::start(pool, &[], linger),
            received: GroupCommit::start(pool, &[], linger),
        }
    }
}
