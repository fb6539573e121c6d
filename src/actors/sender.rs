//! A sender: one thread, one HTTP client, the deliveries of the endpoints routed to it.
//!
//! It runs up to `sender_concurrency` deliveries at once, each through the pipeline in
//! [`crate::delivery`]. A panic inside the pipeline is caught here and turned into a deferral,
//! so one poisonous delivery cannot take the sender (or the others it carries) down.

use std::{
    collections::{HashMap, VecDeque},
    panic::AssertUnwindSafe,
    rc::Rc,
    time::Duration,
};

use actix::prelude::*;
use chrono::Utc;
use futures_util::FutureExt;

use super::{
    health::{Health, Heartbeat},
    recorder::{Record, Recorder},
};
use crate::{
    delivery::{
        http::{HttpSender, HttpSettings},
        pipeline, Disposition, Job, Outcome,
    },
    retry::RetryPolicy,
};

/// How long a delivery whose processing panicked waits before it is tried again.
const PANIC_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct SenderConfig {
    pub http: HttpSettings,
    pub policy: RetryPolicy,
    pub concurrency: usize,
    pub fault_panic_one_in: u64,
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

pub struct Sender {
    config: SenderConfig,
    recorder: Addr<Recorder>,
    /// Created on this sender's own thread in `started` (awc clients are not `Send`).
    http: Option<Rc<HttpSender>>,
    queue: VecDeque<Job>,
    /// Jobs whose request is under way, by delivery id.
    running: HashMap<i64, Job>,
    draining: bool,
    health: Health,
    /// Set at shutdown: after its final stop the actor comes back idle.
    terminated: bool,
}

impl Sender {
    pub fn new(config: SenderConfig, recorder: Addr<Recorder>) -> Self {
        Sender {
            config,
            recorder,
            http: None,
            queue: VecDeque::new(),
            running: HashMap::new(),
            draining: false,
            health: Health::default(),
            terminated: false,
        }
    }

    /// Starts queued jobs while there is capacity.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while self.running.len() < self.config.concurrency {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            self.start(job, ctx);
        }
    }

    fn start(&mut self, job: Job, ctx: &mut Context<Self>) {
        let Some(http) = self.http.clone() else {
            self.give_back([job], "sender not ready");
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
            act.finished(outcome);
            act.pump(ctx);
        }));
    }

    fn finished(&mut self, outcome: Outcome) {
        match outcome.disposition {
            Disposition::Succeeded => self.health.succeeded += 1,
            Disposition::Defer { .. } => {}
            _ => self.health.failed += 1,
        }
        self.recorder.do_send(Record(outcome));
    }

    /// Hands jobs back to the queue without using an attempt.
    fn give_back(&mut self, jobs: impl IntoIterator<Item = Job>, why: &'static str) {
        for job in jobs {
            let outcome = Outcome::without_attempt(
                &job,
                Disposition::Defer {
                    at: Utc::now(),
                    why,
                },
            );
            self.recorder.do_send(Record(outcome));
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
    }
}

impl Supervised for Sender {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // The futures of running jobs died with the old context, and queued jobs never
        // started: hand both back now rather than wait for their leases to expire.
        let abandoned: Vec<Job> = self
            .running
            .drain()
            .map(|(_, job)| job)
            .chain(self.queue.drain(..))
            .collect();
        self.give_back(abandoned, "sender restarted");
        if !self.terminated {
            self.health.restarts += 1;
        }
        self.http = None;
    }
}

impl Handler<Dispatch> for Sender {
    type Result = ();

    fn handle(&mut self, Dispatch(jobs): Dispatch, ctx: &mut Context<Self>) {
        if self.draining {
            self.give_back(jobs, "sender shutting down");
            return;
        }
        self.queue.extend(jobs);
        self.pump(ctx);
    }
}

impl Handler<Drain> for Sender {
    type Result = ();

    fn handle(&mut self, _: Drain, _ctx: &mut Context<Self>) {
        self.draining = true;
        let queued: Vec<Job> = self.queue.drain(..).collect();
        self.give_back(queued, "sender shutting down");
    }
}

impl Handler<SetRecorder> for Sender {
    type Result = ();

    fn handle(&mut self, SetRecorder(addr): SetRecorder, _ctx: &mut Context<Self>) {
        self.recorder = addr;
    }
}

impl Handler<Heartbeat> for Sender {
    type Result = MessageResult<Heartbeat>;

    fn handle(&mut self, _: Heartbeat, _ctx: &mut Context<Self>) -> Self::Result {
        let mut health = self.health.clone();
        health.in_flight = self.running.len();
        health.backlog = Some(self.queue.len() as i64);
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
