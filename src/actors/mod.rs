//! The dispatcher's actors. Each one is thin: it owns state and timing, and calls plain
//! modules (`store`, `delivery`, `retry`, `signing`) for the logic.
//!
//! ```text
//!   NOTIFY / poll ─► Claimer ──Dispatch──► Sender × N ──Record──► Recorder
//!                      ▲                                            │
//!                      └──────────────── Settled ◄──────────────────┘
//!   Reaper: expired leases back to the queue.   Supervisor: starts, watches, replaces.
//! ```

pub mod claimer;
pub mod health;
pub mod reaper;
pub mod recorder;
pub mod sender;
pub mod supervisor;

use actix::prelude::*;

/// Stops an actor; its actix `Supervisor` starts it again with fresh runtime state.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopActor;
