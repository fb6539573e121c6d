//! Herald: self-hosted webhook delivery.
//!
//! A map of the crate, from the outside in:
//!
//! * [`cli`]: the `herald` command line (serve, migrate, config, verify, healthcheck,
//!   token, demo).
//! * [`demo`]: `herald demo`, the whole loop on this machine with a receiver of its own.
//! * [`startup`]: builds the process (database, migrations, dispatcher, HTTP API) and runs
//!   it until SIGTERM, then drains.
//! * [`config`]: layered settings, declared once by concern (`config::groups`), validated at
//!   start-up with errors that name the setting.
//! * [`embedded_pg`]: a private PostgreSQL started from the machine's server binaries, for
//!   development and first runs (`HERALD_DATABASE_URL=embedded`).
//! * [`telemetry`]: the tracing subscriber: logs (pretty or JSON) and, with
//!   `HERALD_OTLP_ENDPOINT`, traces over OTLP (the spans of requests, claims and attempts).
//! * [`metrics`]: the Prometheus metrics, one registry per process (no globals).
//! * [`api`]: the HTTP API.
//! * [`ui`]: the web dashboard (`/ui/`) and the partner portal (`/portal/`), rendered on
//!   the server from the same functions as the API.
//! * [`access`]: who may do what: configured and runtime tokens (operator-wide or scoped to
//!   one application), and the lockout of addresses that keep failing to authenticate.
//! * [`ingest`]: inbound webhooks: sources, each provider's verification scheme, what a
//!   forwarded event carries.
//! * [`dispatcher`]: the handle on the delivery engine, and its configuration.
//! * [`actors`]: the engine's actors (supervisor, claimer, senders, recorder, reaper,
//!   retention) and the messages they exchange. Thin wiring over the plain modules below.
//! * [`delivery`]: delivering one job as a pipeline of steps (prepare, sign, send,
//!   classify, decide), and the plain logic the actors run: the claimer's in-flight
//!   budget, a sender's scheduler over its endpoints' lanes.
//! * [`store`]: every SQL statement the engine runs (claim, record, reap, release,
//!   retention), and the write paths the API shares with it (group commit, idempotency,
//!   replay).
//! * [`operational`]: operational webhooks: which of Herald's own events an outcome or a
//!   breaker's transition is (the rest is SQL: the events are written where they happen).
//! * [`destination`]: where Herald may send (SSRF guard, allowlist, pinned resolution).
//! * [`signing`]: Standard Webhooks signatures and secrets.
//! * [`keyring`]: secrets encrypted at rest (AES-256-GCM, key ids, rotation sweeps).
//! * [`retry`]: the retry schedule, jitter and `Retry-After`.
//! * [`breaker`]: the per-endpoint circuit breaker.
//! * [`linger`]: how long a batch waits for company, for every batching point.
//!
//! The database schema and the transactional outbox function `herald.send_message` live in
//! `migrations/`.

pub mod access;
pub mod actors;
pub mod api;
pub mod breaker;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod destination;
pub mod dispatcher;
pub mod embedded_pg;
pub mod ingest;
pub mod keyring;
pub mod linger;
pub mod metrics;
pub mod operational;
pub mod retry;
pub mod signing;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod ui;
