//! Every setting, in groups by concern. A setting is declared once, here: its field (its
//! `HERALD_*` name is `HERALD_` + the serde name in upper case), its doc, how it is read and
//! shown (`serde(with = ...)`), and its checks in its group's `validate`. Its default is in
//! `config/default.toml`. Nothing else lists settings: loading, the refusal of unknown
//! names and `herald config` are derived from these structs.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::{values, ConfigError, Environment, LogFormat, Role};

/// A check on one group; `Err` names the setting.
pub trait Group {
    fn validate(&self) -> Result<(), ConfigError>;
}

fn require(ok: bool, key: &str, problem: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(key, problem))
    }
}

/// What this process is and where it listens.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Process {
    /// Picks `config/{environment}.toml`; `production` hardens the rules below.
    #[serde(default = "development")]
    pub environment: Environment,
    /// Where the layered files live.
    #[serde(default)]
    pub config_dir: Option<PathBuf>,
    /// Which halves of Herald run here.
    pub role: Role,
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    /// A tracing filter (`info`, `herald=debug,sqlx=warn`); `RUST_LOG` wins when set.
    pub log_level: String,
}

fn development() -> Environment {
    Environment::Development
}

impl Group for Process {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// PostgreSQL.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Database {
    #[serde(rename = "database_url", with = "values::masked_url")]
    pub url: String,
    /// Connections of the API's pool (each dispatcher actor holds its own few).
    #[serde(rename = "database_pool_size")]
    pub pool_size: u32,
    /// How long to wait for a database connection before failing a request.
    #[serde(rename = "database_timeout", with = "values::duration")]
    pub timeout: Duration,
    /// Create the database and apply migrations at start-up.
    pub run_migrations: bool,
}

impl Group for Database {
    fn validate(&self) -> Result<(), ConfigError> {
        require(!self.url.trim().is_empty(), "database_url", "must be set")?;
        require(
            self.pool_size > 0,
            "database_pool_size",
            "must be at least 1",
        )
    }
}

/// The HTTP API.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Api {
    /// Bearer tokens accepted by the API.
    #[serde(rename = "api_tokens", with = "values::masked_list")]
    pub tokens: Vec<String>,
    /// Largest request body the API accepts (a message's payload, mostly).
    pub max_payload_bytes: usize,
    /// How far ahead a message's `deliverAt` may be.
    #[serde(with = "values::duration")]
    pub max_deliver_ahead: Duration,
    /// How long a POST with an `idempotency-key` may run before a retry with the same key
    /// runs it again (its answer was never recorded: it failed, or the process died).
    #[serde(with = "values::duration")]
    pub idempotency_lock: Duration,
    /// How long an `idempotency-key` is remembered.
    #[serde(with = "values::duration")]
    pub idempotency_retention: Duration,
}

impl Group for Api {
    fn validate(&self) -> Result<(), ConfigError> {
        require(
            self.max_payload_bytes > 0,
            "max_payload_bytes",
            "must be at least 1",
        )?;
        if let Some(short) = self.tokens.iter().find(|t| t.len() < 16) {
            return Err(ConfigError::new(
                "api_tokens",
                format!(
                    "a token of {} characters is too short: use 16 or more",
                    short.len()
                ),
            ));
        }
        require(
            self.idempotency_retention >= Duration::from_secs(60),
            "idempotency_retention",
            "must be at least 1m: clients retry with the same key within minutes",
        )?;
        require(
            self.idempotency_lock >= Duration::from_secs(1)
                && self.idempotency_lock <= self.idempotency_retention,
            "idempotency_lock",
            "must be at least 1s and at most idempotency_retention",
        )?;
        require(
            !self.max_deliver_ahead.is_zero(),
            "max_deliver_ahead",
            "must be greater than 0",
        )
    }
}

/// Where deliveries may go.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Destinations {
    /// Non-public ranges deliveries may go to anyway (`127.0.0.0/8,10.1.0.0/16`).
    #[serde(with = "values::cidr_list")]
    pub allowed_cidrs: Vec<ipnet::IpNet>,
    /// When set, the only hosts endpoints may point at (`hooks.example.com,*.example.org`).
    #[serde(rename = "destination_allowlist", with = "values::comma_list")]
    pub allowlist: Vec<String>,
    /// Refuse plain-http endpoints.
    pub require_https: bool,
}

impl Group for Destinations {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// One HTTP request.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Sending {
    #[serde(with = "values::duration")]
    pub request_timeout: Duration,
    #[serde(with = "values::duration")]
    pub connect_timeout: Duration,
    /// Bytes of a response body that are read and kept in the attempt log.
    pub response_body_limit: usize,
}

impl Group for Sending {
    fn validate(&self) -> Result<(), ConfigError> {
        require(
            !self.request_timeout.is_zero(),
            "request_timeout",
            "must be greater than 0",
        )
    }
}

/// When a failed delivery is tried again.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Retries {
    /// Delay before each retry; its length is the number of retries.
    #[serde(rename = "retry_schedule", with = "values::duration_list")]
    pub schedule: Vec<Duration>,
    /// Each delay is moved at random by up to this fraction, both ways.
    #[serde(rename = "retry_jitter")]
    pub jitter: f64,
    /// Bounds applied to a receiver's `Retry-After`.
    #[serde(with = "values::duration")]
    pub retry_after_min: Duration,
    #[serde(with = "values::duration")]
    pub retry_after_max: Duration,
}

impl Group for Retries {
    fn validate(&self) -> Result<(), ConfigError> {
        require(
            (0.0..1.0).contains(&self.jitter),
            "retry_jitter",
            "must be in [0, 1), e.g. 0.2",
        )?;
        require(
            self.retry_after_min <= self.retry_after_max,
            "retry_after_min",
            "must not be greater than retry_after_max",
        )
    }
}

/// Each endpoint's circuit breaker.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Breaker {
    /// The breaker opens after this many failures in a row...
    #[serde(rename = "breaker_failures")]
    pub failures: u32,
    /// ...or when this fraction of the last `breaker_window` attempts failed.
    #[serde(rename = "breaker_failure_ratio")]
    pub failure_ratio: f64,
    #[serde(rename = "breaker_window")]
    pub window: usize,
    /// How long an open breaker waits before one probe; doubled after each failed probe.
    #[serde(rename = "breaker_cooldown", with = "values::duration")]
    pub cooldown: Duration,
    #[serde(rename = "breaker_max_cooldown", with = "values::duration")]
    pub max_cooldown: Duration,
}

impl Group for Breaker {
    fn validate(&self) -> Result<(), ConfigError> {
        require(self.failures > 0, "breaker_failures", "must be at least 1")?;
        require(self.window > 0, "breaker_window", "must be at least 1")?;
        require(
            self.failure_ratio > 0.0 && self.failure_ratio <= 1.0,
            "breaker_failure_ratio",
            "must be in (0, 1], e.g. 0.5",
        )?;
        require(
            !self.cooldown.is_zero() && self.max_cooldown >= self.cooldown,
            "breaker_max_cooldown",
            "must be at least breaker_cooldown, which must be greater than 0",
        )
    }
}

/// The dispatcher's actors and their budgets.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Pool {
    /// Sender actors, each on its own thread with its own HTTP client.
    pub senders: usize,
    /// Concurrent HTTP requests one sender may have open.
    pub sender_concurrency: usize,
    /// Concurrent requests to one endpoint; the rest wait, so a hanging receiver cannot
    /// take all of a sender's capacity.
    pub endpoint_concurrency: usize,
    /// Messages per second to an endpoint that sets no `throttleRate` (0: unlimited).
    pub default_rate_limit: u32,
    /// Longest a claimed delivery waits inside a sender before it goes back to the queue.
    #[serde(with = "values::duration")]
    pub max_hold: Duration,
    /// Deliveries leased per claim query.
    pub claim_batch: usize,
    /// Deliveries one instance holds leased but not yet settled; claiming pauses above it.
    pub max_in_flight: usize,
    /// Of those, how many one endpoint may hold (its deliveries are skipped above it).
    pub max_in_flight_per_endpoint: usize,
    /// Fallback wake-up of the claimer when no NOTIFY arrives.
    #[serde(with = "values::duration")]
    pub poll_interval: Duration,
    /// How long a claimed delivery belongs to this instance. Must outlive the request.
    #[serde(with = "values::duration")]
    pub lease_duration: Duration,
    #[serde(with = "values::duration")]
    pub reap_interval: Duration,
    /// An endpoint failing without a single success for this long is disabled (0s: never).
    #[serde(with = "values::duration")]
    pub disable_after: Duration,
    /// Outcomes written per database round trip.
    pub outcome_batch: usize,
    /// Longest an outcome waits for its batch to fill before it is written.
    #[serde(with = "values::duration")]
    pub outcome_flush_interval: Duration,
}

impl Group for Pool {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("senders", self.senders),
            ("sender_concurrency", self.sender_concurrency),
            ("endpoint_concurrency", self.endpoint_concurrency),
            ("claim_batch", self.claim_batch),
            ("max_in_flight", self.max_in_flight),
            (
                "max_in_flight_per_endpoint",
                self.max_in_flight_per_endpoint,
            ),
            ("outcome_batch", self.outcome_batch),
        ] {
            require(value > 0, key, "must be at least 1")?;
        }
        require(self.senders <= 256, "senders", "must be at most 256")?;
        require(
            !self.poll_interval.is_zero(),
            "poll_interval",
            "must be greater than 0",
        )?;
        require(
            !self.reap_interval.is_zero(),
            "reap_interval",
            "must be greater than 0",
        )?;
        require(
            !self.max_hold.is_zero() && self.max_hold * 2 <= self.lease_duration,
            "max_hold",
            "must be greater than 0 and at most half of lease_duration",
        )
    }
}

/// How long rows are kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Retention {
    /// Messages, attempts and finished deliveries older than this many days are deleted.
    #[serde(rename = "retention_days")]
    pub days: u32,
    /// How often the retention actor looks for expired rows.
    #[serde(rename = "retention_interval", with = "values::duration")]
    pub interval: Duration,
    /// Rows of each kind deleted per retention transaction.
    #[serde(rename = "retention_batch")]
    pub batch: u32,
}

impl Group for Retention {
    fn validate(&self) -> Result<(), ConfigError> {
        require(
            self.days > 0,
            "retention_days",
            "must be at least 1 (rows are kept this many days)",
        )?;
        require(self.batch > 0, "retention_batch", "must be greater than 0")?;
        require(
            !self.interval.is_zero(),
            "retention_interval",
            "must be greater than 0",
        )
    }
}

/// Watching the actors, and stopping.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Supervision {
    #[serde(with = "values::duration")]
    pub health_log_interval: Duration,
    #[serde(with = "values::duration")]
    pub heartbeat_interval: Duration,
    /// An actor that has not answered a heartbeat, or been stuck on one piece of work, for
    /// this long is replaced.
    #[serde(with = "values::duration")]
    pub stall_timeout: Duration,
    /// How long shutdown waits for in-flight requests before releasing their leases.
    #[serde(with = "values::duration")]
    pub shutdown_grace: Duration,
}

impl Group for Supervision {
    fn validate(&self) -> Result<(), ConfigError> {
        require(
            !self.heartbeat_interval.is_zero(),
            "heartbeat_interval",
            "must be greater than 0",
        )?;
        require(
            !self.health_log_interval.is_zero(),
            "health_log_interval",
            "must be greater than 0",
        )?;
        // Health lines report what the last heartbeat said: more often would repeat it.
        require(
            self.health_log_interval >= self.heartbeat_interval,
            "health_log_interval",
            "must not be shorter than heartbeat_interval (each line reports the latest heartbeat)",
        )?;
        require(
            self.stall_timeout > self.heartbeat_interval,
            "stall_timeout",
            "must be longer than heartbeat_interval",
        )
    }
}

/// Fault injection for resilience tests (refused in production).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Faults {
    /// A sender panics on one delivery in N (0 = never).
    #[serde(rename = "fault_panic_one_in")]
    pub panic_one_in: u64,
    /// Sender-0 stops itself (an actor stop, which its supervisor answers with a restart)
    /// after every N deliveries (0 = never).
    #[serde(rename = "fault_sender_stop_every")]
    pub sender_stop_every: u64,
}

impl Group for Faults {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
