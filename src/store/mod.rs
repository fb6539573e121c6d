//! The database, one concern per module. The rule: `store` holds every statement the
//! dispatcher runs (claim, record, reap, release, retention), every write path shared by
//! more than one caller (group commit, message creates, idempotency, replay, tasks), and
//! the column types they share. A resource's reads and plain CRUD live with its API module
//! (`api::endpoint`, ...), as functions the web UI calls too. Plain async functions over a
//! pool: testable without actors, and each actor owns its own [`Store`] (its own
//! connections, on its own thread), so replacing an actor never strands another one's
//! connections.

pub mod circuit;
pub mod claim;
pub mod group_commit;
pub mod idempotency;
pub mod ingest;
pub mod lease;
pub mod new_message;
pub mod ordered;
pub mod outcome;
pub mod partitions;
pub mod replay;
pub mod retention;
pub mod runtime;
pub mod signing_secret;
pub mod stats;
pub mod string_map;
pub mod task;
pub mod writers;

use std::{sync::Arc, time::Duration};

use crate::keyring::Keyring;

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool,
};

#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    /// Opens the secrets its statements read (plaintext only, unless given one).
    keyring: Arc<Keyring>,
}

impl Store {
    /// A pool that connects on first use, so an actor can start while the database is down
    /// and recover by itself when it comes back. Its sessions are [`dispatcher_sessions`].
    pub fn connect_lazy(
        options: PgConnectOptions,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Store {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(dispatcher_sessions(options));
        Store::from_pool(pool)
    }

    pub fn from_pool(pool: PgPool) -> Store {
        Store {
            pool,
            keyring: Arc::new(Keyring::plaintext_only()),
        }
    }

    /// The same store, opening secrets with `keyring`.
    pub fn with_keyring(self, keyring: Arc<Keyring>) -> Store {
        Store { keyring, ..self }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the migrations in `migrations/` (embedded at build time).
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        sqlx::migrate!("./migrations").run(&self.pool).await
    }
}

/// Sessions that never plan a sequential scan where an index will do.
///
/// The dispatcher's statements and the API's group-commit writes are index-driven by design
/// (rows by primary key, or through a partial index), but PostgreSQL keeps a prepared
/// statement's generic plan for the life of the connection: one made while the tables were
/// small (a fresh database) scans whole tables, and keeps doing so as they grow, until
/// autovacuum's next ANALYZE. Measured with `herald-bench claim --no-vacuum`: a claim of
/// 500 took 125 ms at a backlog of 1,000,000 (10 ms at 1,000); with this, 10 ms at both.
pub fn index_driven(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("enable_seqscan", "off")])
}

/// The dispatcher's sessions: [`index_driven`], and joining by nested loop only. Its
/// statements look rows up one by one, by key, in the one partition the key names (a
/// delivery by message id and id); a generic plan made while the tables were small could
/// otherwise hash-join a batch against a whole index of every partition, and keep doing so
/// as they grow. None of them joins two large sets.
pub fn dispatcher_sessions(options: PgConnectOptions) -> PgConnectOptions {
    index_driven(options).options([("enable_hashjoin", "off"), ("enable_mergejoin", "off")])
}

/// Backoff for retrying database work (reconnecting, a failed claim or write): quick at
/// first, capped, never giving up.
pub fn db_backoff() -> backoff::ExponentialBackoff {
    backoff::ExponentialBackoff {
        initial_interval: Duration::from_millis(100),
        max_interval: Duration::from_secs(5),
        max_elapsed_time: None,
        ..Default::default()
    }
}

/// The NOTIFY channel `herald.send_message` (and every other enqueue) signals on commit.
pub const WAKE_CHANNEL: &str = "herald_delivery";
