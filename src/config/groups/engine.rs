//! The groups that configure the delivery engine.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{require, Group};
use crate::config::{values, ConfigError};

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
    /// Messages, attempts and finished deliveries older than this are deleted (days in
    /// production; minutes in a soak benchmark).
    #[serde(rename = "retention", with = "values::duration")]
    pub keep: Duration,
    /// How often the retention actor looks for expired rows.
    #[serde(rename = "retention_interval", with = "values::duration")]
    pub interval: Duration,
    /// Rows of each kind deleted per retention transaction (from the default partitions:
    /// what outlived its partition, and what was written while none covered its time).
    #[serde(rename = "retention_batch")]
    pub batch: u32,
    /// The time each partition of messages, deliveries and attempts covers.
    #[serde(with = "values::duration")]
    pub partition_interval: Duration,
}

impl Group for Retention {
    fn validate(&self) -> Result<(), ConfigError> {
        require(
            self.keep >= Duration::from_secs(60),
            "retention",
            "must be at least 1m (e.g. 30days)",
        )?;
        require(self.batch > 0, "retention_batch", "must be greater than 0")?;
        require(
            self.partition_interval >= Duration::from_secs(1),
            "partition_interval",
            "must be at least 1s (a day suits a retention of weeks)",
        )?;
        // Partitions are made three intervals ahead, on each retention pass.
        require(
            self.partition_interval * crate::store::partitions::AHEAD >= self.interval,
            "partition_interval",
            "must be at least a third of retention_interval: partitions are made three intervals ahead on each retention pass",
        )?;
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

/// Operational webhooks: Herald's own events, to the operator's endpoints.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Operational {
    /// A delivery's attempt number whose failure sends `message.attempt.failing` (Svix
    /// sends it on the fourth; 0: never).
    #[serde(rename = "operational_failing_after")]
    pub failing_after: u32,
}

impl Group for Operational {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
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
