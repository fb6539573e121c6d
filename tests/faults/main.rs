//! Fault tests: Herald as real processes against a PostgreSQL cluster of the test's own,
//! delivering to a receiver that verifies every signature, while things break: an instance
//! killed with SIGKILL, the database stopped, a receiver failing at random, a sender actor
//! that keeps dying.
//!
//! Run just these with `cargo test --locked --test faults`. Every test is bounded in time
//! (see [`support::bounded`]), and the tests run one at a time (see [`serial`]): each starts
//! several Herald processes and a database, and timing assertions (503 within the database
//! timeout) should not depend on what another test is doing on a 2-core machine.

mod herald;
mod pg;
mod receiver;
mod scene;
mod support;

mod crash;
mod database_outage;
mod demo;
mod embedded;
mod flaky_receiver;
mod idempotent_creates;
mod ingest_kill;
mod multi_instance;
mod readiness;
mod sender_restarts;

/// Held for the whole of each test: they run one after the other.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
