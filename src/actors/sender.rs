//! A sender: one thread, one HTTP client, the deliveries of the endpoints routed to it.
//!
//! Each endpoint has a [`Lane`] here (its queue, in-flight cap, circuit breaker and rate
//! limiter). The sender runs up to `sender_concurrency` deliveries at once across lanes,
//! each through the pipeline in [`crate::delivery`]. A panic inside the pipeline is caught
//! here and turned into a deferral, so one poisonous delivery cannot take the sender (or
//! the other endpoints it carries) down.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    panic::AssertUnwindSafe,
    rc::Rc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use chrono::Utc;
use futures_util::FutureExt;

use super::{
    claimer::{Claimer, PauseEndpoint},
    health::{Health, Heartbeat},
    recorder::{CircuitChanged, Record, Recorder},
};
use crate::{
    breaker::Transition,
    delivery::{
        http::{HttpSender, HttpSettings},
        lane::{Lane, LaneConfig, Step},
        pipeline, Disposition, Job, Outcome,
    },
    retry::RetryPolicy,
};

/// How long a delivery whose processing panicked waits before it is tried again.
const PANIC_BACKOFF: Duration = Duration::from_secs(1);
/// Lanes with nothing to do are forgotten after this long (their breaker state with them).
const LANE_IDLE_EXPIRY: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct SenderConfig {
    pub http: HttpSettings,
    pub policy: RetryPolicy,
    pub concurrency: usize,
    pub lane: LaneConfig,
    pub fault_panic_one_in: u64,
    pub metrics: crate::metrics::SharedMetrics,
    /// Fault injection (`HERALD_FAULT_SENDER_STOP_EVERY`, sender-0 only): stop this actor
    /// after every N attempted deliveries, so that tests can watch its restarts (0 = never).
    pub fault_stop_every: u64,
}

/// Jobs for this sender.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Dispatch(pub Vec<Job>);

/// Shutdown: hand back everything not yet started; finish what is in flight.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// The recorder was replaced.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetRecorder(pub Addr<Recorder>);

/// The claimer (started after the senders, or replaced).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetClaimer(pub Addr<Claimer>);

pub struct Sender {
    config: SenderConfig,
    recorder: Addr<Recorder>,
    claimer: Option<Addr<Claimer>>,
    /// Created on this sender's own thread in `started` (awc clients are not `Send`).
    http: Option<Rc<HttpSender>>,
    lanes: HashMap<String, Lane>,
    /// Lanes with work that wait for a free request slot, in arrival order.
    blocked: VecDeque<String>,
    blocked_set: HashSet<String>,
    /// Jobs whose request is under way, by delivery id.
    running: HashMap<i64, Job>,
    draining: bool,
    /// Attempted deliveries, counted for `fault_stop_every`.
    fault_count: u64,
    health: Health,
    /// Set at shutdown: after its final stop the actor comes back idle.
    terminated: bool,
}

impl Sender {
    pub fn new(config: SenderConfig, recorder: Addr<Recorder>) -> Self {
        Sender {
            config,
            recorder,
            claimer: None,
            http: None,
            lanes: HashMap::new(),
            blocked: VecDeque::new(),
            blocked_set: HashSet::new(),
            running: HashMap::new(),
            draining: false,
            fault_count: 0,
            health: Health::default(),
            terminated: false,
        }
    }

    /// Starts what this endpoint's lane allows now.
    fn pump(&mut self, endpoint_id: &str, ctx: &mut Context<Self>) {
        loop {
            if self.running.len() >= self.config.concurrency {
                if self.lanes.get(endpoint_id).is_some_and(|l| l.queued() > 0)
                    && self.blocked_set.insert(endpoint_id.to_string())
                {
                    self.blocked.push_back(endpoint_id.to_string());
                }
                return;
            }
            let Some(lane) = self.lanes.get_mut(endpoint_id) else {
                return;
            };
            let (step, transition) = lane.next(&self.config.lane, Instant::now());
            if let Some(t) = transition {
                self.publish(endpoint_id, t);
            }
            match step {
                Step::Start(job) => self.start(job, ctx),
                Step::Idle => return,
                Step::Defer { jobs, after, why } => {
                    let at = Utc::now() + chrono::Duration::from_std(after).unwrap_or_default();
                    self.give_back(jobs, at, why);
                    // An endpoint that cannot take more (breaker open, too slow) should not
                    // be claimed for meanwhile; a rate-limited one still gets its share.
                    if why != "rate limit" {
                        if let Some(claimer) = &self.claimer {
                            claimer.do_send(PauseEndpoint {
                                endpoint_id: endpoint_id.to_string(),
                                until: Instant::now() + after,
                            });
                        }
                    }
                }
                Step::WaitFor(wait) => {
                    let lane = self.lanes.get_mut(endpoint_id).expect("present");
                    if !lane.waiting {
                        lane.waiting = true;
                        let id = endpoint_id.to_string();
                        ctx.run_later(wait, move |act, ctx| {
                            if let Some(lane) = act.lanes.get_mut(&id) {
                                lane.waiting = false;
                            }
                            act.pump(&id, ctx);
                        });
                    }
                    return;
                }
            }
        }
    }

    /// A request slot freed up: lanes that were waiting for one go first, in turn.
    fn pump_blocked(&mut self, ctx: &mut Context<Self>) {
        while self.running.len() < self.config.concurrency {
            let Some(id) = self.blocked.pop_front() else {
                return;
            };
            self.blocked_set.remove(&id);
            self.pump(&id, ctx);
        }
    }

    fn start(&mut self, job: Job, ctx: &mut Context<Self>) {
        let Some(http) = self.http.clone() else {
            self.give_back([job], Utc::now(), "sender not ready");
            return;
        };
        let policy = self.config.policy.clone();
        let fault = self.config.fault_panic_one_in;
        self.running.insert(job.delivery_id, job.clone());
        let work = async move {
            let run = AssertUnwindSafe(pipeline::deliver(&job, &http, &policy, fault));
            match run.catch_unwind().await {
                Ok(outcome) => outcome,
                Err(panic) => {
                    let what = panic_message(&panic);
                    tracing::error!(delivery_id = job.delivery_id, endpoint_id = %job.endpoint.id,
                        panic = %what, "delivery code panicked; the delivery will be retried");
                    Outcome::without_attempt(
                        &job,
                        Disposition::Defer {
                            at: Utc::now() + PANIC_BACKOFF,
                            why: "panic in delivery code",
                        },
                    )
                }
            }
        };
        ctx.spawn(work.into_actor(self).map(|outcome, act, ctx| {
            act.running.remove(&outcome.delivery_id);
            let endpoint_id = outcome.endpoint_id.clone();
            let attempted = outcome.attempt.is_some();
            let success = outcome.disposition == Disposition::Succeeded;
            if let Some(lane) = act.lanes.get_mut(&endpoint_id) {
                if let Some(t) = lane.finished(attempted, success, Instant::now()) {
                    act.publish(&endpoint_id, t);
                }
            }
            act.finished(outcome);
            if attempted && act.injected_stop() {
                // A real actor stop (not a caught panic): the actix supervisor restarts this
                // sender in place, and `restarting` hands back what it was doing.
                ctx.stop();
                return;
            }
            act.pump(&endpoint_id, ctx);
            act.pump_blocked(ctx);
        }));
    }

    /// `HERALD_FAULT_SENDER_STOP_EVERY`: true when this attempted delivery is the one after
    /// which the sender stops itself.
    fn injected_stop(&mut self) -> bool {
        let every = self.config.fault_stop_every;
        if every == 0 {
            return false;
        }
        self.fault_count += 1;
        if self.fault_count % every != 0 {
            return false;
        }
        tracing::warn!(
            deliveries = self.fault_count,
            "injected fault (HERALD_FAULT_SENDER_STOP_EVERY): sender stops itself"
        );
        true
    }

    fn finished(&mut self, outcome: Outcome) {
        self.config.metrics.record_outcome(&outcome);
        match outcome.disposition {
            Disposition::Succeeded => self.health.succeeded += 1,
            Disposition::Defer { .. } => {}
            _ => self.health.failed += 1,
        }
        self.recorder.do_send(Record(outcome));
    }

    /// Logs a breaker transition and publishes it (the API shows breaker states).
    fn publish(&self, endpoint_id: &str, t: Transition) {
        self.config.metrics.record_circuit(endpoint_id, &t.to);
        tracing::warn!(
            endpoint_id,
            from = t.from.name(),
            to = t.to.name(),
            consecutive_failures = t.failures,
            "circuit breaker changed state"
        );
        let until = match t.to {
            crate::breaker::State::Open { until } => {
                let left = until.saturating_duration_since(Instant::now());
                Some(Utc::now() + chrono::Duration::from_std(left).unwrap_or_default())
            }
            _ => None,
        };
        self.recorder.do_send(CircuitChanged {
            endpoint_id: endpoint_id.to_string(),
            state: t.to.name(),
            failures: t.failures,
            until,
        });
    }

    /// Hands jobs back to the queue, due at `at`, without using an attempt.
    fn give_back(
        &mut self,
        jobs: impl IntoIterator<Item = Job>,
        at: chrono::DateTime<Utc>,
        why: &'static str,
    ) {
        for job in jobs {
            self.config
                .metrics
                .record_deferral(why, job.endpoint.id.clone());
            self.recorder.do_send(Record(Outcome::without_attempt(
                &job,
                Disposition::Defer { at, why },
            )));
        }
    }

    /// Jobs that waited too long behind a saturated endpoint go back to the queue; lanes
    /// idle for long are forgotten; lanes at their cap are looked at again (their requests
    /// may have been hanging long enough to open the breaker).
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let max_hold = self.config.lane.max_hold;
        let mut stale = Vec::new();
        self.lanes.retain(|_, lane| {
            stale.extend(lane.take_stale(max_hold, now));
            !(lane.is_idle() && now.duration_since(lane.last_active) > LANE_IDLE_EXPIRY)
        });
        if !stale.is_empty() {
            tracing::debug!(
                count = stale.len(),
                "deliveries held too long behind a busy endpoint go back to the queue"
            );
            self.give_back(
                stale,
                Utc::now() + chrono::Duration::from_std(max_hold).unwrap_or_default(),
                "endpoint busy",
            );
        }
        let cap = self.config.lane.concurrency;
        let busy: Vec<String> = self
            .lanes
            .iter()
            .filter(|(_, l)| l.in_flight >= cap)
            .map(|(id, _)| id.clone())
            .collect();
        for id in busy {
            self.pump(&id, ctx);
        }
    }
}

impl Actor for Sender {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Outcomes and dispatches are small; a large mailbox absorbs bursts from the claimer.
        ctx.set_mailbox_capacity(4096);
        if self.terminated {
            return;
        }
        self.http = Some(Rc::new(HttpSender::new(self.config.http.clone())));
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.sweep(ctx));
    }
}

impl Supervised for Sender {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // The futures of running jobs died with the old context, and queued jobs never
        // started: hand both back now rather than wait for their leases to expire.
        let mut abandoned: Vec<Job> = self.running.drain().map(|(_, job)| job).collect();
        for lane in self.lanes.values_mut() {
            abandoned.extend(lane.drain());
        }
        self.lanes.clear();
        self.blocked.clear();
        self.blocked_set.clear();
        let handed_back = abandoned.len();
        self.give_back(abandoned, Utc::now(), "sender restarted");
        if !self.terminated {
            self.health.restarts += 1;
            tracing::warn!(
                handed_back,
                restarts = self.health.restarts,
                "sender restarted; its unfinished deliveries went back to the queue"
            );
        }
        self.http = None;
    }
}

impl Handler<Dispatch> for Sender {
    type Result = ();

    fn handle(&mut self, Dispatch(jobs): Dispatch, ctx: &mut Context<Self>) {
        if self.draining {
            self.give_back(jobs, Utc::now(), "sender shutting down");
            return;
        }
        let now = Instant::now();
        let mut touched = Vec::new();
        for job in jobs {
            let id = job.endpoint.id.clone();
            let config = &self.config.lane;
            self.lanes
                .entry(id.clone())
                .or_insert_with(|| Lane::new(config))
                .push(job, now);
            if !touched.contains(&id) {
                touched.push(id);
            }
        }
        for id in touched {
            self.pump(&id, ctx);
        }
    }
}

impl Handler<Drain> for Sender {
    type Result = ();

    fn handle(&mut self, _: Drain, _ctx: &mut Context<Self>) {
        self.draining = true;
        let queued: Vec<Job> = self.lanes.values_mut().flat_map(|l| l.drain()).collect();
        self.give_back(queued, Utc::now(), "sender shutting down");
    }
}

impl Handler<SetRecorder> for Sender {
    type Result = ();

    fn handle(&mut self, SetRecorder(addr): SetRecorder, _ctx: &mut Context<Self>) {
        self.recorder = addr;
    }
}

impl Handler<SetClaimer> for Sender {
    type Result = ();

    fn handle(&mut self, SetClaimer(addr): SetClaimer, _ctx: &mut Context<Self>) {
        self.claimer = Some(addr);
    }
}

impl Handler<Heartbeat> for Sender {
    type Result = MessageResult<Heartbeat>;

    fn handle(&mut self, _: Heartbeat, _ctx: &mut Context<Self>) -> Self::Result {
        let mut health = self.health.clone();
        health.in_flight = self.running.len();
        health.backlog = Some(self.lanes.values().map(|l| l.queued() as i64).sum());
        MessageResult(health)
    }
}

super::stop_handlers!(Sender);

pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}
