//! What the dispatcher is built from: every actor's configuration, derived from the
//! settings once at start-up (and kept for the replacements the supervisor starts).

use std::time::Duration;

use crate::{
    actors::{
        claimer::ClaimerConfig, recorder::RecorderConfig, retention::RetentionConfig,
        sender::SenderConfig,
    },
    breaker::BreakerConfig,
    config::Settings,
    delivery::{http::HttpSettings, lane::LaneConfig},
    metrics::SharedMetrics,
    retry::RetryPolicy,
    store::Store,
};

/// What the supervisor needs to build (and rebuild) the actors.
#[derive(Clone)]
pub struct DispatcherConfig {
    pub owner: String,
    pub db: sqlx::postgres::PgConnectOptions,
    pub db_timeout: Duration,
    pub senders: usize,
    pub sender: SenderConfig,
    pub recorder: RecorderConfig,
    pub claimer: ClaimerConfig,
    pub reap_interval: Duration,
    pub disable_after: Option<Duration>,
    pub retention: RetentionConfig,
    pub metrics: SharedMetrics,
    pub heartbeat_interval: Duration,
    pub stall_timeout: Duration,
    pub health_log_interval: Duration,
    pub shutdown_grace: Duration,
}

impl DispatcherConfig {
    pub fn from_settings(
        s: &Settings,
        owner: String,
        db: sqlx::postgres::PgConnectOptions,
        metrics: SharedMetrics,
    ) -> Self {
        DispatcherConfig {
            owner: owner.clone(),
            db,
            db_timeout: s.database_timeout,
            senders: s.senders,
            sender: SenderConfig {
                http: HttpSettings::from_settings(s),
                policy: RetryPolicy::from_settings(s),
                concurrency: s.sender_concurrency,
                lane: LaneConfig {
                    concurrency: s.endpoint_concurrency,
                    default_rate: (s.default_rate_limit > 0).then_some(s.default_rate_limit),
                    max_hold: s.max_hold,
                    // A request open for a third of the timeout is as good as hanging.
                    slow_call: s.request_timeout / 3,
                    breaker: BreakerConfig::from_settings(s),
                },
                fault_panic_one_in: s.fault_panic_one_in,
                metrics: metrics.clone(),
                // Set for sender-0 only, in `spawn_sender`.
                fault_stop_every: s.fault_sender_stop_every,
            },
            recorder: RecorderConfig {
                owner: owner.clone(),
                batch: s.outcome_batch,
                flush_interval: s.outcome_flush_interval,
            },
            claimer: ClaimerConfig {
                owner,
                batch: s.claim_batch,
                max_in_flight: s.max_in_flight,
                max_in_flight_per_endpoint: s.max_in_flight_per_endpoint,
                lease: s.lease_duration,
                poll_interval: s.poll_interval,
                backlog_interval: s.health_log_interval.min(Duration::from_secs(10)),
            },
            reap_interval: s.reap_interval,
            disable_after: (!s.disable_after.is_zero()).then_some(s.disable_after),
            retention: RetentionConfig {
                keep: Duration::from_secs(u64::from(s.retention_days) * 86_400),
                keep_idempotency_keys: s.idempotency_retention,
                interval: s.retention_interval,
                batch: i64::from(s.retention_batch),
            },
            metrics,
            heartbeat_interval: s.heartbeat_interval,
            stall_timeout: s.stall_timeout,
            health_log_interval: s.health_log_interval,
            shutdown_grace: s.shutdown_grace,
        }
    }

    /// A store with `connections` connections of its own, for one actor.
    pub fn store(&self, connections: u32) -> Store {
        Store::connect_lazy(self.db.clone(), connections, self.db_timeout)
    }
}
