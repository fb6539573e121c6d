//! The recorder: writes outcomes to the database in batches.
//!
//! Senders report every outcome here. Outcomes are buffered until `outcome_batch` of them
//! are waiting or `outcome_flush_interval` has passed, then written in one round trip; at
//! most one write is under way, and while it runs the next batch fills. A failed write is
//! retried with backoff: the outcomes stay buffered (and their leases held) until written.

use std::{
    collections::HashMap,
    rc::Rc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use backoff::backoff::Backoff;

use super::{CircuitChanged, ClaimerAddr, Health, Heartbeat, Record, Settled, UseClaimer};
use crate::{
    delivery::Outcome,
    store::{db_backoff, Store},
};

#[derive(Clone)]
pub struct RecorderConfig {
    /// This instance's name, under which breaker states are published.
    pub owner: String,
    /// Outcome batch size and flush interval.
    pub pool: crate::config::groups::Pool,
}

pub struct Recorder {
    config: RecorderConfig,
    store: Store,
    claimer: Option<ClaimerAddr>,
    buffer: Vec<Outcome>,
    /// The batch being written, if any. Shared with the write future so that a restart
    /// (which drops the future) can put it back without copying.
    writing: Option<Rc<Vec<Outcome>>>,
    write_started: Option<Instant>,
    flush_scheduled: bool,
    /// Breaker states waiting to be published (the latest per endpoint).
    circuits: HashMap<String, CircuitChanged>,
    publishing: bool,
    retry: backoff::ExponentialBackoff,
    health: Health,
    /// Set at shutdown: after its final stop the actor comes back idle.
    terminated: bool,
}

impl Recorder {
    pub fn new(config: RecorderConfig, store: Store, claimer: Option<ClaimerAddr>) -> Self {
        Recorder {
            config,
            store,
            claimer,
            buffer: Vec::new(),
            writing: None,
            write_started: None,
            flush_scheduled: false,
            circuits: HashMap::new(),
            publishing: false,
            retry: db_backoff(),
            health: Health::default(),
            terminated: false,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.writing.is_some() || self.buffer.is_empty() {
            return;
        }
        let take = self.buffer.len().min(self.config.pool.outcome_batch);
        let batch = Rc::new(self.buffer.drain(..take).collect::<Vec<Outcome>>());
        self.writing = Some(batch.clone());
        self.write_started = Some(Instant::now());
        let store = self.store.clone();
        let write = async move { store.record_outcomes(&batch).await };
        ctx.spawn(write.into_actor(self).map(|result, act, ctx| {
            let batch = act.writing.take().map(unshare).unwrap_or_default();
            act.write_started = None;
            match result {
                Ok(recorded) => {
                    act.retry.reset();
                    act.health.succeeded += recorded.applied.len() as u64;
                    if recorded.stale > 0 {
                        tracing::warn!(stale = recorded.stale,
                            "outcomes arrived after their lease had expired and were discarded");
                    }
                    if let Some(claimer) = &act.claimer {
                        claimer
                            .settled
                            .do_send(Settled(batch.iter().map(|o| o.delivery_id).collect()));
                    }
                    act.flush(ctx);
                }
                Err(error) => {
                    act.health.failed += 1;
                    let delay = act.retry.next_backoff().unwrap_or(Duration::from_secs(5));
                    tracing::error!(%error, outcomes = batch.len(), retry_in_ms = delay.as_millis() as u64,
                        "could not record outcomes; will retry");
                    // Back to the front, in order, so nothing is lost or reordered.
                    act.buffer.splice(0..0, batch);
                    ctx.run_later(delay, |act, ctx| act.flush(ctx));
                }
            }
        }));
    }
}

/// The batch back from its `Rc` (the write future that shared it is gone by now).
fn unshare(batch: Rc<Vec<Outcome>>) -> Vec<Outcome> {
    Rc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone())
}

impl Actor for Recorder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(65536);
        // After a restart the buffer may hold outcomes (a write put back): write them now.
        if !self.terminated {
            self.flush(ctx);
            self.publish_circuits(ctx);
        }
    }
}

impl Supervised for Recorder {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // A write in progress was cancelled with the old context: its outcomes go back to the
        // front of the buffer. If it had committed, its rows no longer carry their leases and
        // writing them again changes nothing.
        if let Some(batch) = self.writing.take() {
            self.buffer.splice(0..0, unshare(batch));
        }
        self.write_started = None;
        self.flush_scheduled = false;
        self.publishing = false;
        if !self.terminated {
            self.health.restarts += 1;
        }
    }
}

impl Handler<Record> for Recorder {
    type Result = ();

    fn handle(&mut self, Record(outcome): Record, ctx: &mut Context<Self>) {
        self.buffer.push(outcome);
        if self.buffer.len() >= self.config.pool.outcome_batch {
            self.flush(ctx);
        } else if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.run_later(self.config.pool.outcome_flush_interval, |act, ctx| {
                act.flush_scheduled = false;
                act.flush(ctx);
            });
        }
    }
}

impl Handler<CircuitChanged> for Recorder {
    type Result = ();

    /// Transitions are rare and written off the outcome path, one batch at a time so that
    /// they land in the order they happened (a probe's "half-open" must not overwrite the
    /// "closed" that follows it a millisecond later). Only the latest state per endpoint is
    /// kept while a write is under way.
    fn handle(&mut self, c: CircuitChanged, ctx: &mut Context<Self>) {
        self.circuits.insert(c.endpoint_id.clone(), c);
        self.publish_circuits(ctx);
    }
}

impl Recorder {
    fn publish_circuits(&mut self, ctx: &mut Context<Self>) {
        if self.publishing || self.circuits.is_empty() {
            return;
        }
        self.publishing = true;
        let batch: Vec<CircuitChanged> = self.circuits.drain().map(|(_, c)| c).collect();
        let (store, owner) = (self.store.clone(), self.config.owner.clone());
        let write = async move {
            for c in batch {
                store
                    .record_circuit(&owner, &c.endpoint_id, c.state, c.failures, c.until)
                    .await?;
                // Opening also postpones the endpoint's waiting deliveries to the end of the
                // cool-down: claims stop finding them.
                if let Some(until) = c.until {
                    let n = store.postpone_endpoint(&c.endpoint_id, until).await?;
                    tracing::info!(endpoint_id = %c.endpoint_id, postponed = n, %until, "circuit open: deliveries postponed");
                }
            }
            Ok::<(), sqlx::Error>(())
        };
        ctx.spawn(write.into_actor(self).map(|result, act, ctx| {
            act.publishing = false;
            if let Err(error) = result {
                tracing::warn!(%error, "could not publish a circuit breaker state");
            }
            act.publish_circuits(ctx);
        }));
    }
}

impl Handler<UseClaimer> for Recorder {
    type Result = ();

    fn handle(&mut self, UseClaimer(claimer): UseClaimer, _ctx: &mut Context<Self>) {
        self.claimer = Some(claimer);
    }
}

impl Handler<Heartbeat> for Recorder {
    type Result = MessageResult<Heartbeat>;

    fn handle(&mut self, _: Heartbeat, _ctx: &mut Context<Self>) -> Self::Result {
        let mut health = self.health.clone();
        health.in_flight = self.writing.as_ref().map_or(0, |b| b.len());
        health.backlog = Some(self.buffer.len() as i64);
        health.busy_since = self.write_started;
        MessageResult(health)
    }
}

super::stop_handlers!(Recorder);
