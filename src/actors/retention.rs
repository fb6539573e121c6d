//! The retention actor: every `HERALD_RETENTION_INTERVAL`, deletes what is older than
//! `HERALD_RETENTION_DAYS` (see [`crate::store::retention`] for exactly what), one small
//! batch at a time with a pause between batches, so the database keeps serving deliveries.

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;

use super::{Health, Heartbeat};
use crate::store::{
    retention::{prune_batch, Pruned},
    Store,
};

/// A breather between batches: pruning a large backlog must not crowd out deliveries.
const PAUSE: Duration = Duration::from_millis(50);

#[derive(Clone, Debug)]
pub struct RetentionConfig {
    /// How long rows are kept, how often and how many at a time they go.
    pub retention: crate::config::groups::Retention,
    /// Idempotency keys older than this are deleted.
    pub keep_idempotency_keys: Duration,
}

impl RetentionConfig {
    /// Messages, attempts and finished deliveries older than this are deleted.
    pub fn keep(&self) -> Duration {
        Duration::from_secs(u64::from(self.retention.days) * 86_400)
    }
}

pub struct Retention {
    store: Store,
    config: RetentionConfig,
    /// Set while a batch runs (the supervisor's stall detection looks at it).
    batch_since: Option<Instant>,
    /// Set while a pass (a series of batches) runs, with what it has removed so far.
    pass: Option<Pruned>,
    health: Health,
    terminated: bool,
}

impl Retention {
    pub fn new(store: Store, config: RetentionConfig) -> Self {
        Retention {
            store,
            config,
            batch_since: None,
            pass: None,
            health: Health::default(),
            terminated: false,
        }
    }

    fn start_pass(&mut self, ctx: &mut Context<Self>) {
        if self.pass.is_some() || self.terminated {
            return;
        }
        self.pass = Some(Pruned::default());
        self.next_batch(ctx);
    }

    fn next_batch(&mut self, ctx: &mut Context<Self>) {
        let now = Utc::now();
        let age =
            |d: Duration| now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let (cutoff, keys_cutoff) = (
            age(self.config.keep()),
            age(self.config.keep_idempotency_keys),
        );
        let (store, batch) = (self.store.clone(), i64::from(self.config.retention.batch));
        self.batch_since = Some(Instant::now());
        let work = async move { prune_batch(store.pool(), cutoff, keys_cutoff, batch).await };
        ctx.spawn(work.into_actor(self).map(|result, act, ctx| {
            act.batch_since = None;
            let pass = act.pass.get_or_insert_with(Pruned::default);
            match result {
                Ok(Some(pruned)) => {
                    pass.add(pruned);
                    act.health.succeeded += pruned.total();
                    // Something went: there may be more. Go on after a breather.
                    if pruned.total() > 0 && !act.terminated {
                        ctx.run_later(PAUSE, |act, ctx| act.next_batch(ctx));
                    } else {
                        act.finish_pass();
                    }
                }
                Ok(None) => {
                    tracing::debug!("another instance is applying retention");
                    act.finish_pass();
                }
                Err(error) => {
                    act.health.failed += 1;
                    tracing::error!(%error, "retention batch failed; will retry next interval");
                    act.finish_pass();
                }
            }
        }));
    }

    fn finish_pass(&mut self) {
        if let Some(p) = self.pass.take().filter(|p| p.total() > 0) {
            tracing::info!(
                attempts = p.attempts,
                deliveries = p.deliveries,
                messages = p.messages,
                idempotency_keys = p.idempotency_keys,
                circuits = p.circuits,
                payloads = p.payloads,
                tasks = p.tasks,
                "retention removed expired rows"
            );
        }
    }
}

impl Actor for Retention {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.terminated {
            return;
        }
        // A first pass soon after start (a restarted instance catches up), then on interval.
        ctx.run_later(
            self.config.retention.interval.min(Duration::from_secs(10)),
            |act, ctx| act.start_pass(ctx),
        );
        ctx.run_interval(self.config.retention.interval, |act, ctx| {
            act.start_pass(ctx)
        });
    }
}

impl Supervised for Retention {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.batch_since = None;
        self.pass = None;
        if !self.terminated {
            self.health.restarts += 1;
        }
    }
}

impl Handler<Heartbeat> for Retention {
    type Result = MessageResult<Heartbeat>;
    fn handle(&mut self, _: Heartbeat, _ctx: &mut Context<Self>) -> Self::Result {
        let mut health = self.health.clone();
        health.busy_since = self.batch_since;
        MessageResult(health)
    }
}

super::stop_handlers!(Retention);
