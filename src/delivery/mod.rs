//! Delivering one claimed delivery, as a pipeline of small named steps:
//!
//! 1. [`prepare`](pipeline::prepare): decide whether it can be sent at all,
//! 2. [`sign`](pipeline::sign): Standard Webhooks headers for *this* attempt,
//! 3. [`send`](http::send): one HTTP POST, body read up to a bound,
//! 4. [`classify`](classify::classify): what the answer means,
//! 5. [`decide`](pipeline::decide): succeeded, retry when, dead, or endpoint disabled.
//!
//! The result is an [`Outcome`] that the store records in a batch. Nothing here knows about
//! actors: the sender actor only wires these steps together.
//!
//! Around the pipeline, the plain logic the actors run: the claimer's in-flight
//! [`budget`], and a sender's [`scheduler`] over its endpoints' [`lane`]s.

pub mod budget;
pub mod classify;
#[cfg(test)]
mod fixtures;
pub mod http;
pub mod lane;
pub mod pipeline;
pub mod scheduler;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::signing::Secret;

/// Everything needed to send one delivery, as read by the claim query.
#[derive(Debug, Clone)]
pub struct Job {
    pub delivery_id: i64,
    pub lease_token: Uuid,
    /// Attempts already used on the current schedule.
    pub attempts: i32,
    /// This attempt was asked for (resend, recover, replay), not scheduled.
    pub manual: bool,
    /// A failing or exhausted operational event went out for it (`operational::alert`).
    pub alerted: bool,
    pub message_id: String,
    pub event_type: String,
    /// `None` once retention expunged it.
    pub payload: Option<Bytes>,
    pub endpoint: Arc<Destination>,
    /// An inbound event being forwarded: what it carries besides its body.
    pub forwarded: Option<Box<Forwarded>>,
    /// Where its attempt's span belongs, when traces are on.
    pub trace: Option<Box<JobTrace>>,
}

/// What a delivery attempt's span needs (`telemetry::trace`): contexts as W3C
/// `traceparent` text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobTrace {
    pub app_id: String,
    /// The API request that created the message (`None`: not traced, or made in SQL).
    pub created: Option<String>,
    /// The claim that leased the delivery.
    pub claim: Option<String>,
}

/// The provider's headers (already under their prefix) and content type of a forwarded
/// inbound event (`ingest::forward`).
#[derive(Debug, Clone, PartialEq)]
pub struct Forwarded {
    pub headers: Vec<(String, String)>,
    pub content_type: String,
}

/// The endpoint as it was when the delivery was claimed.
#[derive(Debug)]
pub struct Destination {
    pub id: String,
    pub url: String,
    pub disabled: bool,
    /// Messages per second; `None` for the default.
    pub rate_limit: Option<u32>,
    pub headers: Vec<(String, String)>,
    /// Every secret that currently signs, newest first.
    pub secrets: Vec<Secret>,
    /// Why its deliveries cannot be sent as the row stands (a row written by hand that
    /// Herald cannot use): each fails with this in the attempt log, retried on the schedule
    /// (the row may be fixed meanwhile).
    pub defect: Option<String>,
}

/// One HTTP try, as written to the attempt log.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub url: String,
    pub attempt_no: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<u16>,
    pub succeeded: bool,
    pub manual: bool,
    pub response: Option<String>,
    pub error: Option<String>,
}

/// What becomes of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    Succeeded,
    /// Failed; try again at this time. Uses up the attempt.
    Retry {
        at: DateTime<Utc>,
    },
    /// No attempts left, or it cannot be sent: kept as a dead letter.
    Dead {
        reason: String,
    },
    /// The receiver answered 410 Gone: disable its endpoint, and this delivery is dead.
    DisableEndpoint {
        reason: String,
    },
    /// Not attempted now (circuit open, rate limited, sender shutting down, internal fault):
    /// back to the queue at this time without using up an attempt.
    Defer {
        at: DateTime<Utc>,
        why: DeferReason,
    },
}

/// Why a delivery went back to the queue without an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeferReason {
    /// The endpoint's rate limit: it gets its share, later.
    RateLimit,
    /// The endpoint's circuit breaker is open (or just opened).
    CircuitOpen,
    /// The endpoint has all the requests open it may have, and they are slow.
    EndpointBusy,
    /// The sender it was routed to could not take it (dead or full).
    SenderUnavailable,
    /// Its sender restarted before sending it.
    SenderRestarted,
    /// Its sender is shutting down.
    SenderShuttingDown,
    /// Its sender had no HTTP client yet.
    SenderNotReady,
    /// Delivery code panicked on it.
    Panic,
}

impl DeferReason {
    /// The metric label (`herald_deferrals_total{reason}`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeferReason::RateLimit => "rate limit",
            DeferReason::CircuitOpen => "circuit open",
            DeferReason::EndpointBusy => "endpoint busy",
            DeferReason::SenderUnavailable => "sender unavailable",
            DeferReason::SenderRestarted => "sender restarted",
            DeferReason::SenderShuttingDown => "sender shutting down",
            DeferReason::SenderNotReady => "sender not ready",
            DeferReason::Panic => "panic in delivery code",
        }
    }

    /// Whether claims for the endpoint should pause meanwhile: an endpoint that cannot take
    /// more (breaker open, too slow) would only have its deliveries handed straight back. A
    /// rate-limited one still gets its share, and the other reasons are the sender's.
    pub fn pauses_claims(self) -> bool {
        matches!(self, DeferReason::CircuitOpen | DeferReason::EndpointBusy)
    }
}

/// The result of processing one job, reported to the store.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery_id: i64,
    pub lease_token: Uuid,
    pub message_id: String,
    pub endpoint_id: String,
    /// The job's `alerted`, as it was claimed.
    pub alerted: bool,
    pub attempt: Option<AttemptRecord>,
    pub disposition: Disposition,
}

impl Outcome {
    /// An outcome that records no attempt.
    pub fn without_attempt(job: &Job, disposition: Disposition) -> Outcome {
        Outcome {
            delivery_id: job.delivery_id,
            lease_token: job.lease_token,
            message_id: job.message_id.clone(),
            endpoint_id: job.endpoint.id.clone(),
            alerted: job.alerted,
            attempt: None,
            disposition,
        }
    }
}
