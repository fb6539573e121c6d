//! The dispatcher's actors. Each one is thin: it owns state and timing, and calls plain
//! modules (`store`, `delivery`, `retry`, `signing`) for the logic.
//!
//! ```text
//!   NOTIFY / poll ─► Claimer ──Dispatch──► Sender × N ──Record──► Recorder
//!                      ▲                                            │
//!                      └──────────────── Settled ◄──────────────────┘
//!   Reaper: expired leases back to the queue.   Retention: old rows out, in small batches.
//!   Supervisor: starts, watches, replaces.
//! ```

use actix::prelude::*;

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

pub mod claimer;
pub mod health;
pub mod reaper;
pub mod recorder;
pub mod retention;
pub mod sender;
pub mod supervisor;
