//! The retention actor: every `HERALD_RETENTION_INTERVAL`, makes the time partitions
//! ahead and drops those older than `HERALD_RETENTION` ([`crate::store::partitions`]), and
//! deletes what else is older ([`crate::store::retention`]: the default partitions, and
//! tables that are not partitioned), one small batch at a time with a pause between
//! batches, so the database keeps serving deliveries.
//!
//! Partitions come first, then a pass of deletes that ends within half an interval, so that
//! every interval begins with partitions: a pass that finds more and more to delete (a
//! default partition filling up) must not hold back the partitions that would stop it
//! filling, and its transactions must not hold the locks a partition change waits for.
//! (Measured: with maintenance behind an endless pass, a soak at 1,000 messages/s stopped
//! making partitions after three minutes; beside it, every change timed out on its locks.)

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;

use super::{Health, Heartbeat};
use crate::{
    keyring::sweep::{self, Scope},
    store::{
        partitions,
        retention::{prune_batch, Pruned},
        Store,
    },
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

pub struct Retention {
    store: Store,
    config: RetentionConfig,
    /// Set while a batch runs (the supervisor's stall detection looks at it).
    batch_since: Option<Instant>,
    /// Set while partitions are being made or dropped (likewise).
    partitions_since: Option<Instant>,
    /// Set while a pass (a series of batches) runs: when it began, what it has removed.
    pass: Option<(Instant, Pruned)>,
    health: Health,
    terminated: bool,
}

impl Retention {
    pub fn new(store: Store, config: RetentionConfig) -> Self {
        Retention {
            store,
            config,
            batch_since: None,
            partitions_since: None,
            pass: None,
            health: Health::default(),
            terminated: false,
        }
    }

    /// Each interval: partitions, then a pass of deletes (unless the last is under way).
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.terminated || self.partitions_since.is_some() || self.pass.is_some() {
            return;
        }
        self.maintain_partitions(ctx);
    }

    fn maintain_partitions(&mut self, ctx: &mut Context<Self>) {
        let cutoff = self.cutoff(self.config.retention.keep);
        let (store, span) = (self.store.clone(), self.config.retention.partition_interval);
        self.partitions_since = Some(Instant::now());
        let work = async move {
            // Secrets stored in plaintext (written by hand, or by an earlier version) are
            // sealed here too. No index finds them: each pass reads every stored secret,
            // header set and source config once, in id order (small tables, once an
            // interval, an hour by default).
            let sealed = sweep::sweep(store.pool(), store.keyring(), Scope::Plaintext, 500).await;
            (
                partitions::maintain(store.pool(), span, cutoff).await,
                sealed,
            )
        };
        ctx.spawn(work.into_actor(self).map(|(result, sealed), act, ctx| {
            act.partitions_since = None;
            match sealed {
                Ok(swept) if swept.total() > 0 || swept.unreadable > 0 => {
                    tracing::info!(?swept, "secrets stored in plaintext sealed")
                }
                Ok(_) => {}
                Err(error) => {
                    act.health.failed += 1;
                    tracing::error!(%error, "sealing plaintext secrets failed; will retry next interval");
                }
            }
            match result {
                Ok(done) => {
                    if done != partitions::Maintained::default() {
                        let moved: i64 = done.dropped.iter().map(|(_, n)| n).sum();
                        tracing::info!(made = done.made, dropped = done.dropped.len(),
                            moved_to_default = moved, deferred = done.deferred,
                            "time partitions maintained");
                    }
                }
                Err(error) => {
                    act.health.failed += 1;
                    tracing::error!(%error, "partition maintenance failed; will retry next interval");
                }
            }
            if !act.terminated {
                act.pass = Some((Instant::now(), Pruned::default()));
                act.next_batch(ctx);
            }
        }));
    }

    /// Now less `keep`.
    fn cutoff(&self, keep: Duration) -> chrono::DateTime<Utc> {
        Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX)
    }

    fn next_batch(&mut self, ctx: &mut Context<Self>) {
        let (cutoff, keys_cutoff) = (
            self.cutoff(self.config.retention.keep),
            self.cutoff(self.config.keep_idempotency_keys),
        );
        let (store, batch) = (self.store.clone(), i64::from(self.config.retention.batch));
        self.batch_since = Some(Instant::now());
        let work = async move { prune_batch(store.pool(), cutoff, keys_cutoff, batch).await };
        ctx.spawn(work.into_actor(self).map(|result, act, ctx| {
            act.batch_since = None;
            let (began, pass) = act
                .pass
                .get_or_insert_with(|| (Instant::now(), Pruned::default()));
            let within = began.elapsed() < act.config.retention.interval / 2;
            match result {
                Ok(Some(pruned)) => {
                    pass.add(pruned);
                    act.health.succeeded += pruned.total();
                    // Something went: there may be more. Go on after a breather (until the
                    // next interval's pass).
                    if pruned.total() > 0 && within && !act.terminated {
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
        if let Some((_, p)) = self.pass.take().filter(|(_, p)| p.total() > 0) {
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
            |act, ctx| act.tick(ctx),
        );
        ctx.run_interval(self.config.retention.interval, |act, ctx| act.tick(ctx));
    }
}

impl Supervised for Retention {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.batch_since = None;
        self.partitions_since = None;
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
        health.busy_since = match (self.batch_since, self.partitions_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        MessageResult(health)
    }
}

super::stop_handlers!(Retention);
