//! The claimer: leases due deliveries and routes them to senders.
//!
//! It wakes on NOTIFY (a commit enqueued work), on a poll tick (the fallback: a notification
//! can be lost while the listening connection is down), and whenever a full batch suggests
//! more is waiting. It holds at most `max_in_flight` leases at once, so a slow receiver or a
//! slow database turns into back-pressure instead of leases expiring in a queue.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    rc::Rc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use backoff::backoff::Backoff;
use chrono::Utc;

use super::{
    health::{Health, Heartbeat},
    recorder::{db_backoff, Record, Recorder},
    sender::{Dispatch, Sender},
};
use crate::{
    delivery::{Disposition, Job, Outcome},
    store::{Store, WAKE_CHANNEL},
};

/// Claim now (something may be due).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// These deliveries' outcomes are in the database: their leases are no longer ours.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Settled(pub Vec<i64>);

/// A sender will not take this endpoint's deliveries before `until`: do not claim them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PauseEndpoint {
    pub endpoint_id: String,
    pub until: Instant,
}

/// Shutdown: stop claiming for good.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Pause;

/// The sender at this index was replaced.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetSender(pub usize, pub Addr<Sender>);

#[derive(Message)]
#[rtype(result = "()")]
pub struct SetRecorder(pub Addr<Recorder>);

#[derive(Clone)]
pub struct ClaimerConfig {
    /// This instance's name on the leases it takes.
    pub owner: String,
    pub batch: usize,
    pub max_in_flight: usize,
    /// Leases one endpoint may hold: a slow endpoint cannot take the whole budget.
    pub max_in_flight_per_endpoint: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// How often the due backlog is counted for the health line.
    pub backlog_interval: Duration,
}

pub struct Claimer {
    config: ClaimerConfig,
    store: Store,
    senders: Vec<Addr<Sender>>,
    recorder: Addr<Recorder>,
    /// Leases held, with when they expire and their endpoint: the back-pressure count.
    leased: HashMap<i64, (Instant, Rc<str>)>,
    /// Leases held per endpoint.
    per_endpoint: HashMap<Rc<str>, usize>,
    /// Endpoints not to claim for, until when.
    paused_endpoints: HashMap<String, Instant>,
    claim_started: Option<Instant>,
    /// The lease token of the claim under way: if a restart drops it, its rows are
    /// released rather than left leased until they expire.
    claim_token: Option<uuid::Uuid>,
    orphaned: Vec<uuid::Uuid>,
    /// A wake arrived while a claim was running: claim again when it finishes.
    wake_again: bool,
    paused: bool,
    backlog: Option<i64>,
    retry: backoff::ExponentialBackoff,
    health: Health,
    /// Set at shutdown: after its final stop the actor comes back idle.
    terminated: bool,
}

impl Claimer {
    pub fn new(
        config: ClaimerConfig,
        store: Store,
        senders: Vec<Addr<Sender>>,
        recorder: Addr<Recorder>,
    ) -> Self {
        Claimer {
            config,
            store,
            senders,
            recorder,
            leased: HashMap::new(),
            per_endpoint: HashMap::new(),
            paused_endpoints: HashMap::new(),
            claim_started: None,
            claim_token: None,
            orphaned: Vec::new(),
            wake_again: false,
            paused: false,
            backlog: None,
            retry: db_backoff(),
            health: Health::default(),
            terminated: false,
        }
    }

    fn wake(&mut self, ctx: &mut Context<Self>) {
        if self.paused {
            return;
        }
        if self.claim_started.is_some() {
            self.wake_again = true;
            return;
        }
        let now = Instant::now();
        // A lease whose outcome never came back (its sender died) is the reaper's now.
        let expired: Vec<i64> = self
            .leased
            .iter()
            .filter(|(_, (e, _))| *e <= now)
            .map(|(id, _)| *id)
            .collect();
        self.release(&expired);
        let room = self.config.max_in_flight.saturating_sub(self.leased.len());
        if room == 0 {
            return; // Settled wakes us when there is room again.
        }
        let limit = room.min(self.config.batch);
        self.claim_started = Some(now);
        self.wake_again = false;
        self.paused_endpoints.retain(|_, until| *until > now);
        let resume = first_resume(&self.paused_endpoints, now);
        let cap = self.config.max_in_flight_per_endpoint;
        let full = self
            .per_endpoint
            .iter()
            .filter(|(_, n)| **n >= cap)
            .map(|(e, _)| e.to_string());
        let paused: Vec<String> = self.paused_endpoints.keys().cloned().chain(full).collect();
        let store = self.store.clone();
        let (owner, lease) = (self.config.owner.clone(), self.config.lease);
        let token = uuid::Uuid::new_v4();
        self.claim_token = Some(token);
        let claim = async move {
            store
                .claim_with_token(token, &owner, limit, lease, &paused)
                .await
        };
        ctx.spawn(claim.into_actor(self).map(move |result, act, ctx| {
            act.claim_started = None;
            act.claim_token = None;
            match result {
                Ok(claimed) => {
                    act.retry.reset();
                    // Due rows were left behind (a batch's worth or more, or the other half of
                    // a short claim): claim again at once rather than wait for a tick. A claim
                    // that leased nothing stops here, whatever it saw.
                    let more = !claimed.jobs.is_empty() && claimed.more_due;
                    act.route(claimed.jobs);
                    if more || act.wake_again {
                        ctx.notify(Wake);
                    } else if let Some(at) = resume {
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

    /// Every delivery of one endpoint goes to the same sender, which therefore sees all of
    /// that endpoint's traffic (for its breaker and rate limit) and reuses its connections.
    fn route(&mut self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        self.health.succeeded += jobs.len() as u64;
        let expires = Instant::now() + self.config.lease;
        let mut per_sender: Vec<Vec<Job>> = (0..self.senders.len()).map(|_| Vec::new()).collect();
        for job in jobs {
            let endpoint: Rc<str> = match self.per_endpoint.get_key_value(job.endpoint.id.as_str())
            {
                Some((k, _)) => k.clone(),
                None => Rc::from(job.endpoint.id.as_str()),
            };
            *self.per_endpoint.entry(endpoint.clone()).or_default() += 1;
            self.leased.insert(job.delivery_id, (expires, endpoint));
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
                        why: "sender unavailable",
                    };
                    self.recorder
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

    /// These leases are no longer ours to count.
    fn release(&mut self, ids: &[i64]) {
        for id in ids {
            if let Some((_, endpoint)) = self.leased.remove(id) {
                if let Some(n) = self.per_endpoint.get_mut(&endpoint) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_endpoint.remove(&endpoint);
                    }
                }
            }
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

    fn count_backlog(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let count = async move { store.due_backlog(100_000).await };
        ctx.spawn(count.into_actor(self).map(|result, act, _| {
            act.backlog = result.ok();
        }));
    }
}

/// When the first of these endpoint pauses that is still running at `now` ends.
fn first_resume(paused: &HashMap<String, Instant>, now: Instant) -> Option<Instant> {
    paused.values().copied().filter(|until| *until > now).min()
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
        ctx.run_interval(self.config.poll_interval, |act, ctx| act.wake(ctx));
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
        let was_full = self.leased.len() >= self.config.max_in_flight
            || self
                .per_endpoint
                .values()
                .any(|n| *n >= self.config.max_in_flight_per_endpoint);
        self.release(&ids);
        if was_full {
            self.wake(ctx);
        }
    }
}

impl Handler<PauseEndpoint> for Claimer {
    type Result = ();
    fn handle(&mut self, p: PauseEndpoint, _ctx: &mut Context<Self>) {
        let until = self
            .paused_endpoints
            .entry(p.endpoint_id)
            .or_insert(p.until);
        *until = (*until).max(p.until);
    }
}

impl Handler<Pause> for Claimer {
    type Result = ();
    fn handle(&mut self, _: Pause, _ctx: &mut Context<Self>) {
        self.paused = true;
    }
}

impl Handler<SetSender> for Claimer {
    type Result = ();
    fn handle(&mut self, SetSender(index, addr): SetSender, _ctx: &mut Context<Self>) {
        if let Some(slot) = self.senders.get_mut(index) {
            *slot = addr;
        }
    }
}

impl Handler<SetRecorder> for Claimer {
    type Result = ();
    fn handle(&mut self, SetRecorder(addr): SetRecorder, _ctx: &mut Context<Self>) {
        self.recorder = addr;
    }
}

impl Handler<Heartbeat> for Claimer {
    type Result = MessageResult<Heartbeat>;
    fn handle(&mut self, _: Heartbeat, _ctx: &mut Context<Self>) -> Self::Result {
        let mut health = self.health.clone();
        health.in_flight = self.leased.len();
        health.backlog = self.backlog;
        health.busy_since = self.claim_started;
        MessageResult(health)
    }
}

super::stop_handlers!(Claimer);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_without_paused_endpoints_schedules_no_resume() {
        let now = Instant::now();
        let mut paused = HashMap::new();
        assert_eq!(first_resume(&paused, now), None);
        paused.insert("ep_over".to_string(), now - Duration::from_secs(1));
        assert_eq!(
            first_resume(&paused, now),
            None,
            "an ended pause is not waited for"
        );
    }

    #[test]
    fn the_claim_after_pauses_comes_when_the_first_one_ends() {
        let now = Instant::now();
        let paused = HashMap::from([
            ("ep_a".to_string(), now + Duration::from_secs(3)),
            ("ep_b".to_string(), now + Duration::from_millis(1500)),
            ("ep_c".to_string(), now - Duration::from_secs(1)),
        ]);
        assert_eq!(
            first_resume(&paused, now),
            Some(now + Duration::from_millis(1500))
        );
    }
}
