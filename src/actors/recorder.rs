//! The recorder: writes outcomes to the database in batches.
//!
//! Senders report every outcome here. Outcomes are written in one round trip per batch; at
//! most one write is under way, and while it runs the next batch fills. When an outcome
//! finds the recorder idle, it is written at once if outcomes come slowly, or waits up to
//! `outcome_flush_interval` for company if they come fast ([`crate::linger`]): a write
//! costs about the same for 4 outcomes as for 20. A failed write is retried with backoff:
//! the outcomes stay buffered (and their leases held) until written.

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
    linger::{Linger, LingerPolicy},
    store::{db_backoff, Store},
};

#[derive(Clone)]
pub struct RecorderConfig {
    /// This instance's name, under which breaker states are published.
    pub owner: String,
    /// Outcome batch size and flush interval.
    pub pool: crate::config::groups::Pool,
    /// When a failing delivery is reported to the operator.
    pub operational: crate::config::groups::Operational,
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
    linger: Linger,
    /// Breaker states waiting to be published (the latest per endpoint).
    circuits: HashMap<String, CircuitChanged>,
    /// Operational events of breaker transitions waiting to be written, in order (each
    /// one is an occurrence: none is folded into a later state).
    circuit_events: Vec<CircuitEvent>,
    /// Those being written (put back if a restart cuts the write short).
    writing_events: Option<Rc<Vec<CircuitEvent>>>,
    circuit_retry: backoff::ExponentialBackoff,
    publishing: bool,
    retry: backoff::ExponentialBackoff,
    health: Health,
    /// Set at shutdown: after its final stop the actor comes back idle.
    terminated: bool,
}

impl Recorder {
    pub fn new(config: RecorderConfig, store: Store, claimer: Option<ClaimerAddr>) -> Self {
        Recorder {
            store,
            claimer,
            buffer: Vec::new(),
            writing: None,
            write_started: None,
            flush_scheduled: false,
            linger: Linger::new(LingerPolicy {
                target: config.pool.outcome_batch,
                max_wait: config.pool.outcome_flush_interval,
                min_gain: 2.0,
            }),
            config,
            circuits: HashMap::new(),
            circuit_events: Vec::new(),
            writing_events: None,
            circuit_retry: db_backoff(),
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
        let failing_after = self.config.operational.failing_after;
        let write = async move { store.record_outcomes(&batch, failing_after).await };
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
fn unshare<T: Clone>(batch: Rc<Vec<T>>) -> Vec<T> {
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
        // Events written or not: writing one again is harmless (each has its id).
        if let Some(events) = self.writing_events.take() {
            self.circuit_events.splice(0..0, unshare(events));
        }
        if !self.terminated {
            self.health.restarts += 1;
        }
    }
}

impl Handler<Record> for Recorder {
    type Result = ();

    fn handle(&mut self, Record(outcome): Record, ctx: &mut Context<Self>) {
        self.buffer.push(outcome);
        let now = Instant::now();
        self.linger.arrived(1, now);
        if self.flush_scheduled {
            if self.buffer.len() >= self.config.pool.outcome_batch {
                self.flush(ctx);
            }
            return;
        }
        match self.linger.wait(self.buffer.len(), now) {
            None => self.flush(ctx),
            Some(wait) => {
                self.flush_scheduled = true;
                ctx.run_later(wait, |act, ctx| {
                    act.flush_scheduled = false;
                    act.flush(ctx);
                });
            }
        }
    }
}

/// An operational event of a breaker's transition, with the id that makes its write
/// idempotent (a write retried after an unclear failure emits nothing twice).
#[derive(Debug, Clone)]
struct CircuitEvent {
    id: uuid::Uuid,
    change: CircuitChanged,
}

/// Events kept while the database cannot take them; beyond this the oldest are dropped.
const MAX_CIRCUIT_EVENTS: usize = 10_000;

impl Handler<CircuitChanged> for Recorder {
    type Result = ();

    /// Transitions are rare and written off the outcome path, one batch at a time so that
    /// they land in the order they happened (a probe's "half-open" must not overwrite the
    /// "closed" that follows it a millisecond later). Only the latest state per endpoint is
    /// kept while a write is under way; every operational event is kept.
    fn handle(&mut self, c: CircuitChanged, ctx: &mut Context<Self>) {
        if c.event.is_some() {
            if self.circuit_events.len() >= MAX_CIRCUIT_EVENTS {
                let dropped = self.circuit_events.remove(0);
                tracing::warn!(endpoint_id = %dropped.change.endpoint_id,
                    "too many circuit events waiting for the database: the oldest is dropped");
            }
            self.circuit_events.push(CircuitEvent {
                id: uuid::Uuid::new_v4(),
                change: c.clone(),
            });
        }
        self.circuits.insert(c.endpoint_id.clone(), c);
        self.publish_circuits(ctx);
    }
}

impl Recorder {
    fn publish_circuits(&mut self, ctx: &mut Context<Self>) {
        if self.publishing || (self.circuits.is_empty() && self.circuit_events.is_empty()) {
            return;
        }
        self.publishing = true;
        let states: Vec<CircuitChanged> = self.circuits.drain().map(|(_, c)| c).collect();
        let events = Rc::new(std::mem::take(&mut self.circuit_events));
        self.writing_events = Some(events.clone());
        let (store, owner) = (self.store.clone(), self.config.owner.clone());
        let write = async move {
            for c in states {
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
            for e in events.iter() {
                if let Some(event) = e.change.event {
                    let c = &e.change;
                    store
                        .emit_circuit_event(
                            &owner,
                            &c.endpoint_id,
                            event,
                            c.failures,
                            c.until,
                            e.id,
                        )
                        .await?;
                }
            }
            Ok::<(), sqlx::Error>(())
        };
        ctx.spawn(write.into_actor(self).map(|result, act, ctx| {
            act.publishing = false;
            let events = act.writing_events.take().map(unshare).unwrap_or_default();
            if let Err(error) = result {
                // States are superseded by the next transition; events are not: they go
                // back to the front, in order, and are written again (those written already
                // change nothing).
                let delay = act
                    .circuit_retry
                    .next_backoff()
                    .unwrap_or(Duration::from_secs(5));
                tracing::warn!(%error, events = events.len(), retry_in_ms = delay.as_millis() as u64,
                    "could not publish a circuit breaker state; its events will be retried");
                act.circuit_events.splice(0..0, events);
                ctx.run_later(delay, |act, ctx| act.publish_circuits(ctx));
                return;
            }
            act.circuit_retry.reset();
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
