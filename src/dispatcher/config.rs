//! What the dispatcher is built from: every actor's configuration, derived from the
//! settings once at start-up (and kept for the replacements the supervisor starts).

use std::time::Duration;

use crate::{
    actors::{
        claimer::ClaimerConfig, recorder::RecorderConfig, retention::RetentionConfig,
        sender::SenderConfig,
    },
    breaker::BreakerConfig,
    config::{groups, Settings},
    delivery::{http::HttpSettings, lane::LaneConfig},
    keyring::Keyring,
    metrics::SharedMetrics,
    retry::RetryPolicy,
    store::Store,
};

/// What the supervisor needs to build (and rebuild) the actors. Settings groups are kept
/// whole: an actor reads the settings it needs from its group, and only values derived from
/// several settings are computed here.
#[derive(Clone)]
pub struct DispatcherConfig {
    pub owner: String,
    pub db: sqlx::postgres::PgConnectOptions,
    pub db_timeout: Duration,
    pub pool: groups::Pool,
    pub supervision: groups::Supervision,
    pub sender: SenderConfig,
    pub claimer: ClaimerConfig,
    pub recorder: RecorderConfig,
    pub retention: RetentionConfig,
    pub metrics: SharedMetrics,
    /// Opens the secrets the claims read, and seals plaintext ones (retention).
    pub keyring: std::sync::Arc<Keyring>,
}

impl DispatcherConfig {
    pub fn from_settings(
        s: &Settings,
        owner: String,
        db: sqlx::postgres::PgConnectOptions,
        metrics: SharedMetrics,
        keyring: std::sync::Arc<Keyring>,
    ) -> Self {
        DispatcherConfig {
            owner: owner.clone(),
            db,
            db_timeout: s.database.timeout,
            pool: s.pool.clone(),
            supervision: s.supervision.clone(),
            sender: SenderConfig {
                http: HttpSettings::from_settings(s),
                policy: RetryPolicy::from_settings(s),
                concurrency: s.pool.sender_concurrency,
                lane: LaneConfig {
                    concurrency: s.pool.endpoint_concurrency,
                    default_rate: (s.pool.default_rate_limit > 0)
                        .then_some(s.pool.default_rate_limit),
                    max_hold: s.pool.max_hold,
                    // A request open for a third of the timeout is as good as hanging.
                    slow_call: s.sending.request_timeout / 3,
                    breaker: BreakerConfig::from_settings(s),
                },
                faults: s.faults.clone(),
                metrics: metrics.clone(),
                traces: s.traces.enabled(),
                send_traceparent: s.traces.send_traceparent,
            },
            claimer: ClaimerConfig {
                owner: owner.clone(),
                pool: s.pool.clone(),
                backlog_interval: s
                    .supervision
                    .health_log_interval
                    .min(Duration::from_secs(10)),
                traces: s.traces.enabled(),
                metrics: metrics.clone(),
            },
            recorder: RecorderConfig {
                owner,
                pool: s.pool.clone(),
                operational: s.operational.clone(),
            },
            retention: RetentionConfig {
                retention: s.retention.clone(),
                keep_idempotency_keys: s.api.idempotency_retention,
            },
            metrics,
            keyring,
        }
    }

    /// Endpoints failing without a success for this long are disabled (`None`: never).
    pub fn disable_after(&self) -> Option<Duration> {
        (!self.pool.disable_after.is_zero()).then_some(self.pool.disable_after)
    }

    /// A store with `connections` connections of its own, for one actor.
    pub fn store(&self, connections: u32) -> Store {
        Store::connect_lazy(self.db.clone(), connections, self.db_timeout)
            .with_keyring(self.keyring.clone())
    }
}
