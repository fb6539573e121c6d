//! The reaper: returns expired leases to the queue, disables endpoints that have been
//! failing without a single success for `HERALD_DISABLE_AFTER`, and samples the queue's
//! depth once a minute (for the dashboard).
//!
//! A lease expires only when its holder died or lost its way (a live sender settles long
//! before: the lease outlives the request timeout). Whatever the cause, the delivery becomes
//! due again and any instance may take it.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{Health, Heartbeat};
use crate::store::{stats, Store};

/// Rows returned per statement; the reaper loops while batches come back full.
const REAP_BATCH: i64 = 1000;

pub struct Reaper {
    store: Store,
    interval: Duration,
    /// Endpoints failing without a success for this long are disabled (`None`: never).
    disable_after: Option<Duration>,
    running_since: Option<Instant>,
    health: Health,
    /// Set at shutdown: after its final stop the actor comes back idle.
    terminated: bool,
}

impl Reaper {
    pub fn new(store: Store, interval: Duration, disable_after: Option<Duration>) -> Self {
        Reaper {
            store,
            interval,
            disable_after,
            running_since: None,
            health: Health::default(),
            terminated: false,
        }
    }

    fn reap(&mut self, ctx: &mut Context<Self>) {
        if self.running_since.is_some() {
            return;
        }
        self.running_since = Some(Instant::now());
        let store = self.store.clone();
        let disable_after = self.disable_after;
        let work = async move {
            if let Some(after) = disable_after {
                for (endpoint_id, reason) in store.disable_failing(after).await? {
                    tracing::warn!(%endpoint_id, %reason, "endpoint disabled: failing for too long");
                }
            }
            let mut total = 0u64;
            loop {
                let n = store.reap_expired(REAP_BATCH).await?;
                total += n;
                if n < REAP_BATCH as u64 {
                    break;
                }
            }
            // The overview's queue-depth chart: once a minute, whoever gets there first.
            stats::sample_queue(store.pool()).await?;
            Ok::<u64, sqlx::Error>(total)
        };
        ctx.spawn(work.into_actor(self).map(|result, act, _| {
            act.running_since = None;
            match result {
                Ok(0) => {}
                Ok(n) => {
                    act.health.succeeded += n;
                    tracing::warn!(returned = n, "expired leases returned to the queue");
                }
                Err(error) => {
                    act.health.failed += 1;
                    tracing::error!(%error, "reaping expired leases failed; will retry");
                }
            }
        }));
    }
}

impl Actor for Reaper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.terminated {
            return;
        }
        ctx.run_interval(self.interval, |act, ctx| act.reap(ctx));
    }
}

impl Supervised for Reaper {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.running_since = None;
        if !self.terminated {
            self.health.restarts += 1;
        }
    }
}

impl Handler<Heartbeat> for Reaper {
    type Result = MessageResult<Heartbeat>;
    fn handle(&mut self, _: Heartbeat, _ctx: &mut Context<Self>) -> Self::Result {
        let mut health = self.health.clone();
        health.busy_since = self.running_since;
        MessageResult(health)
    }
}

super::stop_handlers!(Reaper);
