//! Prometheus metrics: one [`Metrics`] per process, passed to whoever records (no globals,
//! so tests can run several Heralds in one process and each sees its own counters).
//!
//! Counters and histograms are updated where things happen (senders, supervisor). Values
//! that live in the database (queue depth, oldest due delivery) or in a pool are read when
//! `/metrics` is scraped, so they are never stale.

use std::sync::{atomic::AtomicU64, Arc, Mutex};

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Registry, Unit},
};

use crate::{
    breaker::State,
    delivery::{DeferReason, Disposition, Outcome},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `success`, `failure` (will be retried) or `dead`.
    pub outcome: &'static str,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeferralLabels {
    /// Why it was put back without an attempt: `rate limit`, `circuit open`, ...
    pub reason: &'static str,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActorLabels {
    pub actor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClaimLabels {
    /// `due` (the usual claim) or `ordered` (the heads of ordered endpoints).
    pub claim: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: &'static str,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    pub source: String,
    /// `bad_signature`, `stale_timestamp`, `missing_header`, ...
    pub reason: &'static str,
}

/// What became of a request to a source, for its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestSeen {
    /// Forwarded (`verified`: a signature was checked).
    Accepted { verified: bool },
    /// Answered 2xx, not forwarded again.
    Duplicate { verified: bool },
    /// Refused, for this reason.
    Rejected(&'static str),
}

/// The queue as counted in the database at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueDepth {
    pub due: i64,
    pub scheduled: i64,
    pub leased: i64,
    pub dead: i64,
    /// Seconds the oldest due delivery has been waiting (0 when nothing is due).
    pub oldest_due_seconds: f64,
}

type FloatGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    registry: Registry,
    deliveries: Family<DeliveryLabels, Counter>,
    attempt_duration: Histogram,
    claim_duration: Family<ClaimLabels, Histogram>,
    deferrals: Family<DeferralLabels, Counter>,
    circuit_state: Family<EndpointLabels, Gauge>,
    actor_restarts: Family<ActorLabels, Counter>,
    actor_heartbeat: Family<ActorLabels, FloatGauge>,
    queue_depth: Family<StateLabels, Gauge>,
    oldest_due: FloatGauge,
    database_up: Gauge,
    db_pool: Family<PoolLabels, Gauge>,
    ingest_received: Family<SourceLabels, Counter>,
    ingest_verified: Family<SourceLabels, Counter>,
    ingest_rejected: Family<RejectionLabels, Counter>,
    ingest_duplicates: Family<SourceLabels, Counter>,
    ingest_last_event: Family<SourceLabels, FloatGauge>,
    /// Serialises scrapes: scrape-time gauges are set and then encoded as one snapshot.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("herald");
        let m = Metrics {
            deliveries: Family::default(),
            // 5 ms to ~41 s: receivers answer in milliseconds; timeouts end at 30 s.
            attempt_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            // 0.25 ms to ~4 s: a claim takes milliseconds; seconds mean trouble.
            claim_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.00025, 2.0, 15))
            }),
            deferrals: Family::default(),
            circuit_state: Family::default(),
            actor_restarts: Family::default(),
            actor_heartbeat: Family::default(),
            queue_depth: Family::default(),
            oldest_due: FloatGauge::default(),
            database_up: Gauge::default(),
            db_pool: Family::default(),
            ingest_received: Family::default(),
            ingest_verified: Family::default(),
            ingest_rejected: Family::default(),
            ingest_duplicates: Family::default(),
            ingest_last_event: Family::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register(
            "deliveries",
            "Delivery attempts by outcome (success, failure = will be retried, dead) and endpoint",
            m.deliveries.clone(),
        );
        registry.register_with_unit(
            "attempt_duration",
            "Time from sending a request to having its answer (or error)",
            Unit::Seconds,
            m.attempt_duration.clone(),
        );
        registry.register_with_unit(
            "claim_duration",
            "Time of one claim query (due: the usual claim; ordered: the heads of ordered endpoints)",
            Unit::Seconds,
            m.claim_duration.clone(),
        );
        registry.register(
            "deferrals",
            "Deliveries put back without using an attempt (rate limit, open circuit, busy endpoint, shutdown)",
            m.deferrals.clone(),
        );
        registry.register(
            "circuit_state",
            "Circuit breaker state per endpoint in this instance: 0 closed, 1 half-open, 2 open",
            m.circuit_state.clone(),
        );
        registry.register(
            "actor_restarts",
            "Restarts and replacements of each dispatcher actor",
            m.actor_restarts.clone(),
        );
        registry.register(
            "actor_last_heartbeat_timestamp_seconds",
            "Unix time of each actor's last answered heartbeat",
            m.actor_heartbeat.clone(),
        );
        registry.register(
            "queue_depth",
            "Deliveries by state: due (waiting now), scheduled (retry later), leased (being sent), dead",
            m.queue_depth.clone(),
        );
        registry.register_with_unit(
            "oldest_due_delivery_age",
            "How long the oldest due delivery has been waiting",
            Unit::Seconds,
            m.oldest_due.clone(),
        );
        registry.register(
            "database_up",
            "1 when the last scrape's database query answered",
            m.database_up.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Database pool connections by pool and state (idle, in_use, max)",
            m.db_pool.clone(),
        );
        registry.register(
            "ingest_received",
            "Requests received at each source's URL (accepted, duplicates and rejected)",
            m.ingest_received.clone(),
        );
        registry.register(
            "ingest_verified",
            "Requests to each source whose signature was verified",
            m.ingest_verified.clone(),
        );
        registry.register(
            "ingest_rejected",
            "Requests to each source refused, by reason (bad_signature, stale_timestamp, missing_header, ...)",
            m.ingest_rejected.clone(),
        );
        registry.register(
            "ingest_duplicates",
            "Requests to each source whose event id was seen within the dedupe window (answered 2xx, not forwarded)",
            m.ingest_duplicates.clone(),
        );
        registry.register(
            "ingest_last_event_timestamp_seconds",
            "Unix time of the last event each source accepted in this instance",
            m.ingest_last_event.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a request to a source.
    pub fn record_ingest(&self, source: &str, seen: IngestSeen, now_unix: f64) {
        let labels = SourceLabels {
            source: source.to_string(),
        };
        self.ingest_received.get_or_create(&labels).inc();
        match seen {
            IngestSeen::Accepted { verified } | IngestSeen::Duplicate { verified } => {
                if verified {
                    self.ingest_verified.get_or_create(&labels).inc();
                }
                if matches!(seen, IngestSeen::Duplicate { .. }) {
                    self.ingest_duplicates.get_or_create(&labels).inc();
                } else {
                    self.ingest_last_event.get_or_create(&labels).set(now_unix);
                }
            }
            IngestSeen::Rejected(reason) => {
                self.ingest_rejected
                    .get_or_create(&RejectionLabels {
                        source: source.to_string(),
                        reason,
                    })
                    .inc();
            }
        }
    }

    /// Counts a finished delivery attempt (or an attempt-less deferral).
    pub fn record_outcome(&self, outcome: &Outcome) {
        let endpoint = || outcome.endpoint_id.clone();
        let kind = match &outcome.disposition {
            Disposition::Succeeded => "success",
            Disposition::Retry { .. } => "failure",
            Disposition::Dead { .. } | Disposition::DisableEndpoint { .. } => "dead",
            Disposition::Defer { why, .. } => {
                self.record_deferral(*why, endpoint());
                return;
            }
        };
        self.deliveries
            .get_or_create(&DeliveryLabels {
                outcome: kind,
                endpoint: endpoint(),
            })
            .inc();
        if let Some(attempt) = &outcome.attempt {
            self.attempt_duration
                .observe(f64::from(attempt.duration_ms.max(0)) / 1000.0);
        }
    }

    /// One claim query took `took`.
    pub fn record_claim(&self, ordered: bool, took: std::time::Duration) {
        let claim = if ordered { "ordered" } else { "due" };
        self.claim_duration
            .get_or_create(&ClaimLabels { claim })
            .observe(took.as_secs_f64());
    }

    pub fn record_deferral(&self, reason: DeferReason, endpoint: String) {
        self.deferrals
            .get_or_create(&DeferralLabels {
                reason: reason.as_str(),
                endpoint,
            })
            .inc();
    }

    pub fn record_circuit(&self, endpoint: &str, state: &State) {
        let value = match state {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open { .. } => 2,
        };
        self.circuit_state
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_string(),
            })
            .set(value);
    }

    /// Records an actor's heartbeat and brings its restart counter up to `restarts`.
    pub fn record_heartbeat(&self, actor: &str, at_unix: f64, restarts: u64) {
        let labels = ActorLabels {
            actor: actor.to_string(),
        };
        self.actor_heartbeat.get_or_create(&labels).set(at_unix);
        let counter = self.actor_restarts.get_or_create(&labels);
        let seen = counter.get();
        if restarts > seen {
            counter.inc_by(restarts - seen);
        }
    }

    /// Renders the text exposition, after setting the scrape-time gauges. `queue` is `None`
    /// when the database did not answer.
    pub fn render(
        &self,
        queue: Option<QueueDepth>,
        pools: &[(&'static str, &sqlx::PgPool)],
    ) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.database_up.set(i64::from(queue.is_some()));
        if let Some(q) = queue {
            for (state, value) in [
                ("due", q.due),
                ("scheduled", q.scheduled),
                ("leased", q.leased),
                ("dead", q.dead),
            ] {
                self.queue_depth
                    .get_or_create(&StateLabels { state })
                    .set(value);
            }
            self.oldest_due.set(q.oldest_due_seconds);
        }
        for (pool, p) in pools {
            let size = i64::from(p.size());
            let idle = p.num_idle() as i64;
            let max = i64::from(p.options().get_max_connections());
            for (state, value) in [("idle", idle), ("in_use", size - idle), ("max", max)] {
                self.db_pool
                    .get_or_create(&PoolLabels { pool, state })
                    .set(value);
            }
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Shared by every actor and the API.
pub type SharedMetrics = Arc<Metrics>;
