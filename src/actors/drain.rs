//! The shutdown drain: once claiming has stopped, wait (within the grace period) until the
//! senders' requests have ended and the recorder has written every outcome, then give back
//! whatever this instance still holds leased.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::{wiring::Draining, Health, Heartbeat};
use crate::store::Store;

/// How long one round of heartbeats may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Waits until `draining` is idle or `grace` has passed, then releases `owner`'s leases.
pub async fn drain(draining: Draining, grace: Duration, store: Store, owner: &str) {
    let deadline = Instant::now() + grace;
    loop {
        // Senders first, then the recorder: whatever a sender reported before it answered
        // is already in the recorder's mailbox when the recorder answers.
        let beats = join_all(
            draining
                .senders
                .iter()
                .map(|s| s.send(Heartbeat).timeout(PROBE_TIMEOUT)),
        )
        .await;
        // A sender that cannot answer has nothing more to hand over.
        let senders_idle = beats.iter().all(|b| b.as_ref().map_or(true, idle));
        let recorder_idle = match &draining.recorder {
            Some(r) => matches!(r.send(Heartbeat).timeout(PROBE_TIMEOUT).await, Ok(h) if idle(&h)),
            None => true,
        };
        if senders_idle && recorder_idle {
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!("shutdown grace period over with work still in flight");
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    // Whatever is still leased to us (requests that outlived the grace period, outcomes that
    // could not be written) goes back to the queue now, not at lease expiry. A late outcome
    // for one of them no longer matches its lease.
    match store.release_owner(owner).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(released = n, "returned unfinished leases to the queue"),
        Err(error) => tracing::error!(%error,
            "could not release leases; they return to the queue when they expire"),
    }
    store.pool().close().await;
}

/// Nothing in flight, nothing waiting.
fn idle(health: &Health) -> bool {
    health.in_flight == 0 && health.backlog.unwrap_or(0) == 0
}
