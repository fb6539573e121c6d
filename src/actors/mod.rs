//! The dispatcher's actors, and the messages they exchange. Each actor is thin: it owns its
//! state and timing, and calls plain modules for the logic (`delivery::budget` for the
//! claimer, `delivery::scheduler` for the senders, `store` for every statement).
//!
//! ```text
//!   NOTIFY / poll ─Wake─► Claimer ──Dispatch──► Sender × N ──Record, CircuitChanged──► Recorder
//!                           ▲  ▲                  │                                    │
//!                           │  └─ PauseEndpoint ──┘                                    │
//!                           └───────────────────────── Settled ◄──────────────────────┘
//!   Reaper: expired leases back to the queue.   Retention: old rows out, in small batches.
//!   Supervisor: starts every actor (wiring), watches them (Heartbeat → Health), replaces
//!   the dead and the stuck, logs their health, and drains them at shutdown.
//! ```
//!
//! The actors know each other only as recipients of these messages ([`RecorderAddr`],
//! [`ClaimerAddr`], `Recipient<Dispatch>`): no actor module imports another. The supervisor's
//! [`wiring`] is the one place that knows every actor type; it starts them and tells the
//! others (`UseSender`, `UseRecorder`, `UseClaimer`) when one is replaced.

use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::delivery::{Job, Outcome};

pub mod claimer;
pub mod drain;
pub mod health;
pub mod reaper;
pub mod recorder;
pub mod retention;
pub mod sender;
pub mod slots;
pub mod supervisor;
pub mod wiring;

// ---- Delivery ---------------------------------------------------------------------------

/// To the claimer: claim now (something may be due).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// To a sender: jobs of the endpoints routed to it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Dispatch(pub Vec<Job>);

/// To the claimer: a sender will not take this endpoint's deliveries before `until`; do not
/// claim them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PauseEndpoint {
    pub endpoint_id: String,
    pub until: Instant,
}

/// To the recorder: what became of one delivery.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Record(pub Outcome);

/// To the recorder: an endpoint's circuit breaker changed state (the API shows it), and
/// the operational event that is, if any.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct CircuitChanged {
    pub endpoint_id: String,
    pub state: &'static str,
    pub failures: u32,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub event: Option<crate::operational::EventType>,
}

/// To the claimer: these deliveries' outcomes are in the database; their leases are no
/// longer ours.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Settled(pub Vec<i64>);

// ---- Wiring -----------------------------------------------------------------------------

/// The recorder, as the claimer and the senders reach it.
#[derive(Clone)]
pub struct RecorderAddr {
    pub record: Recipient<Record>,
    pub circuits: Recipient<CircuitChanged>,
}

/// The claimer, as the recorder and the senders reach it.
#[derive(Clone)]
pub struct ClaimerAddr {
    pub settled: Recipient<Settled>,
    pub pause: Recipient<PauseEndpoint>,
}

/// To the claimer: sender number `.0` was replaced.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UseSender(pub usize, pub Recipient<Dispatch>);

/// To the claimer and the senders: the recorder was replaced.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UseRecorder(pub RecorderAddr);

/// To the recorder and the senders: the claimer was started or replaced.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UseClaimer(pub ClaimerAddr);

// ---- Supervision ------------------------------------------------------------------------

/// Asks an actor for its [`Health`]. An actor whose mailbox is blocked cannot answer: that
/// is the point.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Health")]
pub struct Heartbeat;

/// An actor's own account of itself. Counters are totals since the process started; the
/// supervisor turns them into "since the last line".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// Work accepted and not finished (requests open, outcomes unwritten, leases held).
    pub in_flight: usize,
    /// Work waiting inside the actor (queued jobs, buffered outcomes, due rows in the
    /// database).
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

/// Shutdown, to the claimer: stop claiming for good.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopClaiming;

/// Shutdown, to a sender: hand back everything not yet started; finish what is in flight.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Stops an actor; its actix `Supervisor` starts it again with fresh runtime state.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopActor;

/// Final stop at shutdown. actix restarts a stopped actor while anything holds its address,
/// so the actor marks itself terminated, stops (dropping its futures, and with them their
/// database connections, inside its own runtime, where their destructors can run), and
/// comes back idle. Only then is its arbiter stopped.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Terminate;

/// The `Terminate`/`StopActor` handlers every actor shares.
macro_rules! stop_handlers {
    ($actor:ty) => {
        impl actix::Handler<$crate::actors::StopActor> for $actor {
            type Result = ();
            fn handle(&mut self, _: $crate::actors::StopActor, ctx: &mut Self::Context) {
                actix::ActorContext::stop(ctx);
            }
        }

        impl actix::Handler<$crate::actors::Terminate> for $actor {
            type Result = ();
            fn handle(&mut self, _: $crate::actors::Terminate, ctx: &mut Self::Context) {
                self.terminated = true;
                actix::ActorContext::stop(ctx);
            }
        }
    };
}
pub(crate) use stop_handlers;
