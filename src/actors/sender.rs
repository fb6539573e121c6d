//! A sender: one thread, one HTTP client, the deliveries of the endpoints routed to it.
//!
//! What to start, hand back or wait for is the [`Scheduler`]'s to say; the sender carries
//! out its actions: each delivery runs through the pipeline in [`crate::delivery`], and a
//! panic inside it is caught here and turned into a deferral, so one poisonous delivery
//! cannot take the sender (or the other endpoints it carries) down.

use std::{panic::AssertUnwindSafe, rc::Rc, time::Duration};

use actix::prelude::*;
use chrono::Utc;
use futures_util::FutureExt;

use super::{
    CircuitChanged, ClaimerAddr, Dispatch, Drain, Health, Heartbeat, PauseEndpoint, Record,
    RecorderAddr, UseClaimer, UseRecorder,
};
use crate::{
    breaker::Transition,
    delivery::{
        http::{HttpSender, HttpSettings},
        lane::LaneConfig,
        pipeline,
        scheduler::{Action, Scheduler},
        DeferReason, Disposition, Job, Outcome,
    },
    retry::RetryPolicy,
    telemetry::trace,
};
use tracing::Instrument;

/// How long a delivery whose processing panicked waits before it is tried again.
const PANIC_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct SenderConfig {
    pub http: HttpSettings,
    pub policy: RetryPolicy,
    pub concurrency: usize,
    pub lane: LaneConfig,
    /// Fault injection (`HERALD_FAULT_*`): a panic in one delivery of N; sender-0 stopping
    /// itself after every N attempted deliveries, so that tests can watch its restarts.
    pub faults: crate::config::groups::Faults,
    pub metrics: crate::metrics::SharedMetrics,
    /// Traces are on: each attempt is a span.
    pub traces: bool,
    /// Each attempt's `traceparent` goes to the receiver.
    pub send_traceparent: bool,
}

pub struct Sender {
    config: SenderConfig,
    recorder: RecorderAddr,
    claimer: Option<ClaimerAddr>,
    /// Created on this sender's own thread in `started` (awc clients are not `Send`).
    http: Option<Rc<HttpSender>>,
    scheduler: Scheduler,
    draining: bool,
    /// Attempted deliveries, counted for `fault_stop_every`.
    fault_count: u64,
    health: Health,
    /// Set at shutdown: after its final stop the actor comes back idle.
    terminated: bool,
}

impl Sender {
    pub fn new(config: SenderConfig, recorder: RecorderAddr) -> Self {
        Sender {
            scheduler: Scheduler::new(config.lane.clone(), config.concurrency),
            config,
            recorder,
            claimer: None,
            http: None,
            draining: false,
            fault_count: 0,
            health: Health::default(),
            terminated: false,
        }
    }

    /// Carries out what the scheduler decided.
    fn act(&mut self, actions: Vec<Action>, ctx: &mut Context<Self>) {
        for action in actions {
            match action {
                Action::Start(job) => self.start(job, ctx),
                Action::GiveBack { jobs, after, why } => {
                    let at = Utc::now() + chrono::Duration::from_std(after).unwrap_or_default();
                    self.give_back(jobs, at, why);
                }
                Action::PauseClaims { endpoint, until } => {
                    if let Some(claimer) = &self.claimer {
                        claimer.pause.do_send(PauseEndpoint {
                            endpoint_id: endpoint,
                            until,
                        });
                    }
                }
                Action::LookAgain { endpoint, after } => {
                    ctx.run_later(after, move |act, ctx| {
                        let actions = act.scheduler.lane_due(&endpoint, std::time::Instant::now());
                        act.act(actions, ctx);
                    });
                }
                Action::Circuit {
                    endpoint,
                    transition,
                } => self.publish(&endpoint, transition),
            }
        }
    }

    fn start(&mut self, job: Job, ctx: &mut Context<Self>) {
        let Some(http) = self.http.clone() else {
            let now = std::time::Instant::now();
            let endpoint = job.endpoint.id.clone();
            let id = job.delivery_id;
            self.give_back([job], Utc::now(), DeferReason::SenderNotReady);
            let actions = self.scheduler.finished(id, &endpoint, false, false, now);
            self.act(actions, ctx);
            return;
        };
        let policy = self.config.policy.clone();
        let fault = self.config.faults.panic_one_in;
        let span = self.config.traces.then(|| trace::attempt_span(&job));
        let traceparent = match (&span, self.config.send_traceparent) {
            (Some(span), true) => trace::traceparent_of(span),
            _ => None,
        };
        let instrument = span.clone().unwrap_or_else(tracing::Span::none);
        let work = async move {
            let run = AssertUnwindSafe(pipeline::deliver(
                &job,
                &http,
                &policy,
                fault,
                traceparent.as_deref(),
            ));
            match run.catch_unwind().await {
                Ok(outcome) => outcome,
                Err(panic) => {
                    let what = crate::telemetry::panic_message(panic.as_ref());
                    tracing::error!(delivery_id = job.delivery_id, endpoint_id = %job.endpoint.id,
                        panic = %what, "delivery code panicked; the delivery will be retried");
                    Outcome::without_attempt(
                        &job,
                        Disposition::Defer {
                            at: Utc::now() + PANIC_BACKOFF,
                            why: DeferReason::Panic,
                        },
                    )
                }
            }
        }
        .instrument(instrument);
        ctx.spawn(work.into_actor(self).map(move |outcome, act, ctx| {
            if let Some(span) = &span {
                trace::attempted(span, &outcome);
            }
            let endpoint = outcome.endpoint_id.clone();
            let attempted = outcome.attempt.is_some();
            let success = outcome.disposition == Disposition::Succeeded;
            let id = outcome.delivery_id;
            act.finished(outcome);
            let actions = act.scheduler.finished(
                id,
                &endpoint,
                attempted,
                success,
                std::time::Instant::now(),
            );
            if attempted && act.injected_stop() {
                // A real actor stop (not a caught panic): the actix supervisor restarts this
                // sender in place, and `restarting` hands back what it was doing, the jobs
                // the scheduler just started included.
                act.publish_only(actions);
                ctx.stop();
                return;
            }
            act.act(actions, ctx);
        }));
    }

    /// At an injected stop: breaker changes are still published; jobs are left to the
    /// restart, which hands them all back.
    fn publish_only(&mut self, actions: Vec<Action>) {
        for action in actions {
            if let Action::Circuit {
                endpoint,
                transition,
            } = action
            {
                self.publish(&endpoint, transition);
            }
        }
    }

    /// `HERALD_FAULT_SENDER_STOP_EVERY`: true when this attempted delivery is the one after
    /// which the sender stops itself.
    fn injected_stop(&mut self) -> bool {
        let every = self.config.faults.sender_stop_every;
        if every == 0 {
            return false;
        }
        self.fault_count += 1;
        if !self.fault_count.is_multiple_of(every) {
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
        self.recorder.record.do_send(Record(outcome));
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
                let left = until.saturating_duration_since(std::time::Instant::now());
                Some(Utc::now() + chrono::Duration::from_std(left).unwrap_or_default())
            }
            _ => None,
        };
        self.recorder.circuits.do_send(CircuitChanged {
            endpoint_id: endpoint_id.to_string(),
            state: t.to.name(),
            failures: t.failures,
            until,
            event: crate::operational::alert::circuit(&t),
        });
    }

    /// Hands jobs back to the queue, due at `at`, without using an attempt.
    fn give_back(
        &mut self,
        jobs: impl IntoIterator<Item = Job>,
        at: chrono::DateTime<Utc>,
        why: DeferReason,
    ) {
        for job in jobs {
            self.config
                .metrics
                .record_deferral(why, job.endpoint.id.clone());
            self.recorder
                .record
                .do_send(Record(Outcome::without_attempt(
                    &job,
                    Disposition::Defer { at, why },
                )));
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
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            let actions = act.scheduler.sweep(std::time::Instant::now());
            act.act(actions, ctx);
        });
    }
}

impl Supervised for Sender {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // The futures of running jobs died with the old context, and queued jobs never
        // started: hand both back now rather than wait for their leases to expire.
        let abandoned = self.scheduler.abandon();
        let handed_back = abandoned.len();
        self.give_back(abandoned, Utc::now(), DeferReason::SenderRestarted);
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
            self.give_back(jobs, Utc::now(), DeferReason::SenderShuttingDown);
            return;
        }
        let actions = self.scheduler.dispatch(jobs, std::time::Instant::now());
        self.act(actions, ctx);
    }
}

impl Handler<Drain> for Sender {
    type Result = ();

    fn handle(&mut self, _: Drain, _ctx: &mut Context<Self>) {
        self.draining = true;
        let queued = self.scheduler.drain();
        self.give_back(queued, Utc::now(), DeferReason::SenderShuttingDown);
    }
}

impl Handler<UseRecorder> for Sender {
    type Result = ();

    fn handle(&mut self, UseRecorder(recorder): UseRecorder, _ctx: &mut Context<Self>) {
        self.recorder = recorder;
    }
}

impl Handler<UseClaimer> for Sender {
    type Result = ();

    fn handle(&mut self, UseClaimer(claimer): UseClaimer, _ctx: &mut Context<Self>) {
        self.claimer = Some(claimer);
    }
}

impl Handler<Heartbeat> for Sender {
    type Result = MessageResult<Heartbeat>;

    fn handle(&mut self, _: Heartbeat, _ctx: &mut Context<Self>) -> Self::Result {
        let mut health = self.health.clone();
        health.in_flight = self.scheduler.running();
        health.backlog = Some(self.scheduler.queued() as i64);
        MessageResult(health)
    }
}

super::stop_handlers!(Sender);
