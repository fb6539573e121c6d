//! The claimer: leases due deliveries and routes them to senders.
//!
//! It wakes on NOTIFY (a commit enqueued work), on a poll tick (the fallback: a notification
//! can be lost while the listening connection is down), at once again while a claim leaves
//! due rows behind, when a pause it skipped ends, and when a delivery of an ordered endpoint
//! is settled (its next one is due at once). What to claim is the [`InFlightBudget`]'s to
//! say; ordered endpoints are claimed by their own statement ([`Store::claim_ordered`]).

use std::{
    collections::HashSet,
    hash::{Hash, Hasher},
    time::{Duration, Instant},
};

use actix::prelude::*;
use backoff::backoff::Backoff;
use chrono::Utc;

use super::{
    Dispatch, Health, Heartbeat, PauseEndpoint, Record, RecorderAddr, Settled, StopClaiming,
    UseRecorder, UseSender, Wake,
};
use crate::{
    config::groups::Pool,
    delivery::{budget::InFlightBudget, DeferReason, Disposition, Job, Outcome},
    store::{db_backoff, Store, WAKE_CHANNEL},
    telemetry::trace,
};

#[derive(Clone)]
pub struct ClaimerConfig {
    /// This instance's name on the leases it takes.
    pub owner: String,
    /// Batch size, budgets (in all and per endpoint), lease, poll interval.
    pub pool: Pool,
    /// How often the due backlog is counted for the health line.
    pub backlog_interval: Duration,
    /// Traces are on: each claim is a span, the parent of its deliveries' attempts.
    pub traces: bool,
    /// Where claim times go (`herald_claim_duration_seconds`).
    pub metrics: crate::metrics::SharedMetrics,
}

pub struct Claimer {
    config: ClaimerConfig,
    store: Store,
    senders: Vec<Recipient<Dispatch>>,
    recorder: RecorderAddr,
    budget: InFlightBudget,
    claim_started: Option<Instant>,
    /// The lease token of the claim under way: if a restart drops it, its rows are
    /// released rather than left leased until they expire.
    claim_token: Option<uuid::Uuid>,
    orphaned: Vec<uuid::Uuid>,
    /// A wake arrived while a claim was running: claim again when it finishes.
    wake_again: bool,
    stopped_claiming: bool,
    backlog: Option<i64>,
    retry: backoff::ExponentialBackoff,
    health: Health,
    /// Set at shutdown: after its final stop the actor comes back idle.
    terminated: bool,
    /// Some endpoint is ordered (asked on every poll tick): claims include them.
    ordered_endpoints: bool,
    /// The lease token of the claim of ordered endpoints under way.
    ordered_claim: Option<uuid::Uuid>,
    /// Leased deliveries of ordered endpoints: when one is settled, its endpoint's next
    /// delivery can go.
    ordered_in_flight: HashSet<i64>,
}

impl Claimer {
    pub fn new(
        config: ClaimerConfig,
        store: Store,
        senders: Vec<Recipient<Dispatch>>,
        recorder: RecorderAddr,
    ) -> Self {
        Claimer {
            budget: InFlightBudget::new(
                config.pool.max_in_flight,
                config.pool.max_in_flight_per_endpoint,
            ),
            config,
            store,
            senders,
            recorder,
            claim_started: None,
            claim_token: None,
            orphaned: Vec::new(),
            wake_again: false,
            stopped_claiming: false,
            backlog: None,
            retry: db_backoff(),
            health: Health::default(),
            terminated: false,
            // Until a poll tick finds one.
            ordered_endpoints: true,
            ordered_claim: None,
            ordered_in_flight: HashSet::new(),
        }
    }

    fn wake(&mut self, ctx: &mut Context<Self>) {
        if self.stopped_claiming {
            return;
        }
        if self.claim_started.is_some() {
            self.wake_again = true;
            return;
        }
        let now = Instant::now();
        let Some(plan) = self.budget.plan(self.config.pool.claim_batch, now) else {
            return; // A settlement wakes us when there is room again.
        };
        self.claim_started = Some(now);
        self.wake_again = false;
        let store = self.store.clone();
        let (owner, lease) = (self.config.owner.clone(), self.config.pool.lease_duration);
        let token = uuid::Uuid::new_v4();
        self.claim_token = Some(token);
        let (limit, skip) = (plan.limit, plan.skip);
        self.claim_ordered(ctx, &skip);
        let traced = self.config.traces;
        let claim = async move {
            store
                .claim_with_token(token, &owner, limit, lease, &skip, traced)
                .await
        };
        ctx.spawn(claim.into_actor(self).map(move |result, act, ctx| {
            act.claim_started = None;
            act.claim_token = None;
            match result {
                Ok(mut claimed) => {
                    act.answered(false, now, &mut claimed.jobs);
                    act.retry.reset();
                    // Due rows were left behind (a batch's worth or more, or the other half of
                    // a short claim): claim again at once rather than wait for a tick. A claim
                    // that leased nothing stops here, whatever it saw.
                    let more = !claimed.jobs.is_empty() && claimed.more_due;
                    act.route(claimed.jobs);
                    if more || act.wake_again {
                        ctx.notify(Wake);
                    } else if let Some(at) = plan.resume_at {
                        // Paused endpoints were left out of this claim, and their deliveries
                        // may be all that is waiting. Nothing else wakes us when a pause
                        // ends: without this, they would wait for the next poll tick or
                        // notification (with a long poll interval, a stall of that length).
                        ctx.notify_later(Wake, at.saturating_duration_since(Instant::now()));
                    }
                }
                Err(error) => {
                    act.health.failed += 1;
                    let delay = act.retry.next_backoff().unwrap_or(Duration::from_secs(5));
                    tracing::error!(%error, retry_in_ms = delay.as_millis() as u64, "claim failed");
                    ctx.notify_later(Wake, delay);
                }
            }
        }));
    }

    /// A claim started at `started` answered with `jobs`: its time is recorded, the same in
    /// the metric and (when traced) in the claim's span.
    fn answered(&self, ordered: bool, started: Instant, jobs: &mut [Job]) {
        let took = started.elapsed();
        self.config.metrics.record_claim(ordered, took);
        if self.config.traces {
            trace::claimed(ordered, took, jobs);
        }
    }

    /// Claims the next delivery of each ordered endpoint, beside (not after) the usual
    /// claim, so that neither waits for the other; one such claim at a time.
    fn claim_ordered(&mut self, ctx: &mut Context<Self>, skip: &[String]) {
        if !self.ordered_endpoints || self.ordered_claim.is_some() {
            return;
        }
        let token = uuid::Uuid::new_v4();
        self.ordered_claim = Some(token);
        let store = self.store.clone();
        let (owner, lease) = (self.config.owner.clone(), self.config.pool.lease_duration);
        let skip = skip.to_vec();
        let traced = self.config.traces;
        let started = Instant::now();
        let claim = async move {
            store
                .claim_ordered(token, &owner, lease, &skip, traced)
                .await
        };
        ctx.spawn(claim.into_actor(self).map(move |result, act, _| {
            act.ordered_claim = None;
            match result {
                Ok(mut claimed) => {
                    act.answered(true, started, &mut claimed.jobs);
                    // Bounded: a lease that expires unsettled (its outcome never written)
                    // leaves its id here; the set is cleared rather than let it grow.
                    if act.ordered_in_flight.len() > 10_000 {
                        act.ordered_in_flight.clear();
                    }
                    act.ordered_in_flight.extend(claimed.ordered);
                    act.route(claimed.jobs);
                }
                Err(error) => {
                    act.health.failed += 1;
                    tracing::error!(%error, "claim of ordered endpoints failed");
                }
            }
        }));
    }

    /// Every delivery of one endpoint goes to the same sender, which therefore sees all of
    /// that endpoint's traffic (for its breaker and rate limit) and reuses its connections.
    fn route(&mut self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        self.health.succeeded += jobs.len() as u64;
        let expires = Instant::now() + self.config.pool.lease_duration;
        self.budget.leased(
            jobs.iter().map(|j| (j.delivery_id, j.endpoint.id.as_str())),
            expires,
        );
        let mut per_sender: Vec<Vec<Job>> = (0..self.senders.len()).map(|_| Vec::new()).collect();
        for job in jobs {
            per_sender[sender_index(&job.endpoint.id, self.senders.len())].push(job);
        }
        for (sender, jobs) in self.senders.iter().zip(per_sender) {
            if jobs.is_empty() {
                continue;
            }
            if let Err(err) = sender.try_send(Dispatch(jobs)) {
                // A dead or full sender: give its jobs straight back rather than let their
                // leases run out.
                let jobs = match err {
                    SendError::Full(Dispatch(jobs)) | SendError::Closed(Dispatch(jobs)) => jobs,
                };
                tracing::warn!(
                    count = jobs.len(),
                    "sender unavailable; returning its jobs to the queue"
                );
                for job in &jobs {
                    let back = Disposition::Defer {
                        at: Utc::now(),
                        why: DeferReason::SenderUnavailable,
                    };
                    self.recorder
                        .record
                        .do_send(Record(Outcome::without_attempt(job, back)));
                }
            }
        }
    }

    /// Releases what claims cut short by a restart may have leased.
    fn release_orphans(&mut self, ctx: &mut Context<Self>) {
        for token in std::mem::take(&mut self.orphaned) {
            let store = self.store.clone();
            let release = async move { store.release_token(token).await };
            ctx.spawn(release.into_actor(self).map(|result, _, _| match result {
                Ok(0) => {}
                Ok(n) => tracing::warn!(released = n, "returned the leases of a claim cut short by a restart"),
                Err(error) => tracing::warn!(%error, "could not release an interrupted claim; its leases will expire"),
            }));
        }
    }

    fn listen(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let me = ctx.address();
        let listener = async move {
            let mut retry = db_backoff();
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(store.pool())
                    .await
                {
                    Ok(l) => l,
                    Err(error) => {
                        let delay = retry.next_backoff().unwrap_or(Duration::from_secs(5));
                        tracing::warn!(%error, "cannot listen for notifications; polling meanwhile");
                        actix_rt::time::sleep(delay).await;
                        continue;
                    }
                };
                if let Err(error) = listener.listen(WAKE_CHANNEL).await {
                    tracing::warn!(%error, "LISTEN failed; polling meanwhile");
                    actix_rt::time::sleep(retry.next_backoff().unwrap_or(Duration::from_secs(5)))
                        .await;
                    continue;
                }
                retry.reset();
                // Work may have been committed while we were not listening.
                me.do_send(Wake);
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => me.do_send(Wake),
                        // The connection dropped: notifications may be lost, so claim now.
                        Ok(None) => me.do_send(Wake),
                        Err(error) => {
                            tracing::warn!(%error, "notification connection lost; reconnecting");
                            break;
                        }
                    }
                }
                actix_rt::time::sleep(retry.next_backoff().unwrap_or(Duration::from_secs(5))).await;
            }
        };
        ctx.spawn(listener.into_actor(self));
    }

    fn look_for_ordered_endpoints(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let ask = async move { store.any_ordered_endpoint().await };
        ctx.spawn(ask.into_actor(self).map(|result, act, _| match result {
            Ok(any) => act.ordered_endpoints = any,
            Err(error) => tracing::warn!(%error, "could not look for ordered endpoints"),
        }));
    }

    fn count_backlog(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let count = async move { store.due_backlog(100_000).await };
        ctx.spawn(count.into_actor(self).map(|result, act, _| {
            act.backlog = result.ok();
        }));
    }
}

/// Stable within a process, which is all routing needs.
pub fn sender_index(endpoint_id: &str, senders: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    endpoint_id.hash(&mut h);
    (h.finish() % senders.max(1) as u64) as usize
}

impl Actor for Claimer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(65536);
        if self.terminated {
            return;
        }
        self.release_orphans(ctx);
        self.listen(ctx);
        ctx.run_interval(self.config.pool.poll_interval, |act, ctx| {
            act.look_for_ordered_endpoints(ctx);
            act.wake(ctx)
        });
        ctx.run_interval(self.config.backlog_interval, |act, ctx| {
            act.count_backlog(ctx)
        });
        self.wake(ctx);
    }
}

impl Supervised for Claimer {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.claim_started = None;
        self.orphaned.extend(self.claim_token.take());
        self.orphaned.extend(self.ordered_claim.take());
        if !self.terminated {
            self.health.restarts += 1;
        }
    }
}

impl Handler<Wake> for Claimer {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.wake(ctx);
    }
}

impl Handler<Settled> for Claimer {
    type Result = ();
    fn handle(&mut self, Settled(ids): Settled, ctx: &mut Context<Self>) {
        let room = self.budget.release(&ids);
        let ordered_next = ids.iter().any(|id| self.ordered_in_flight.remove(id));
        if room || ordered_next {
            self.wake(ctx);
        }
    }
}

impl Handler<PauseEndpoint> for Claimer {
    type Result = ();
    fn handle(&mut self, p: PauseEndpoint, _ctx: &mut Context<Self>) {
        self.budget.pause(p.endpoint_id, p.until);
    }
}

impl Handler<StopClaiming> for Claimer {
    type Result = ();
    fn handle(&mut self, _: StopClaiming, _ctx: &mut Context<Self>) {
        self.stopped_claiming = true;
    }
}

impl Handler<UseSender> for Claimer {
    type Result = ();
    fn handle(&mut self, UseSender(index, sender): UseSender, _ctx: &mut Context<Self>) {
        if let Some(slot) = self.senders.get_mut(index) {
            *slot = sender;
        }
    }
}

impl Handler<UseRecorder> for Claimer {
    type Result = ();
    fn handle(&mut self, UseRecorder(recorder): UseRecorder, _ctx: &mut Context<Self>) {
        self.recorder = recorder;
    }
}

impl Handler<Heartbeat> for Claimer {
    type Result = MessageResult<Heartbeat>;
    fn handle(&mut self, _: Heartbeat, _ctx: &mut Context<Self>) -> Self::Result {
        let mut health = self.health.clone();
        health.in_flight = self.budget.in_flight();
        health.backlog = self.backlog;
        health.busy_since = self.claim_started;
        MessageResult(health)
    }
}

super::stop_handlers!(Claimer);
