//! Heartbeats: how the supervisor learns that an actor is alive, what it is doing, and
//! whether it is stuck.

use std::time::{Duration, Instant};

use actix::prelude::*;

/// Asks an actor for its [`Health`]. An actor whose mailbox is blocked cannot answer: that is
/// the point.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Health")]
pub struct Heartbeat;

/// An actor's own account of itself. Counters are totals since the process started; the
/// supervisor turns them into "since the last line".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// Work accepted and not finished (requests open, outcomes unwritten, leases held).
    pub in_flight: usize,
    /// Work waiting inside the actor (queued jobs, buffered outcomes, due rows in the database).
    pub backlog: Option<i64>,
    pub succeeded: u64,
    pub failed: u64,
    /// Restarts by its actix supervisor (after it stopped).
    pub restarts: u32,
    /// Since when the actor has been waiting on one piece of work that has not finished; a
    /// value older than the stall timeout means it is stuck even if it still answers.
    pub busy_since: Option<Instant>,
}

impl Health {
    pub fn stuck_for(&self, now: Instant) -> Option<Duration> {
        self.busy_since
            .map(|since| now.saturating_duration_since(since))
    }
}
