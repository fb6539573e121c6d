//! The supervisor: starts every dispatcher actor on its own arbiter (thread), watches them
//! through heartbeats, replaces the ones that died or stalled, logs each one's health, and
//! runs the shutdown drain.
//!
//! Two layers of restart: each actor runs under actix's `Supervisor`, which restarts it in
//! place when it stops; this actor handles what that cannot — an actor that panicked (its
//! mailbox is gone) or a thread that stopped answering — by starting a replacement on a new
//! arbiter and rewiring the others to it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use actix::{dev::ToEnvelope, prelude::*};
use futures_util::future::{join_all, LocalBoxFuture};

use super::{
    claimer::{self, Claimer, ClaimerConfig, Pause},
    health::{Health, Heartbeat},
    reaper::Reaper,
    recorder::{Recorder, RecorderConfig, SetClaimer},
    retention::{Retention, RetentionConfig},
    sender::{self, Drain, Sender, SenderConfig},
    StopActor, Terminate,
};
use crate::{
    breaker::BreakerConfig,
    config::Settings,
    delivery::{http::HttpSettings, lane::LaneConfig},
    metrics::SharedMetrics,
    retry::RetryPolicy,
    store::Store,
};

/// What the supervisor needs to build (and rebuild) the actors.
#[derive(Clone)]
pub struct DispatcherConfig {
    pub owner: String,
    pub db: sqlx::postgres::PgConnectOptions,
    pub db_timeout: Duration,
    pub senders: usize,
    pub sender: SenderConfig,
    pub recorder: RecorderConfig,
    pub claimer: ClaimerConfig,
    pub reap_interval: Duration,
    pub disable_after: Option<Duration>,
    pub retention: RetentionConfig,
    pub metrics: SharedMetrics,
    pub heartbeat_interval: Duration,
    pub stall_timeout: Duration,
    pub health_log_interval: Duration,
    pub shutdown_grace: Duration,
}

impl DispatcherConfig {
    pub fn from_settings(
        s: &Settings,
        owner: String,
        db: sqlx::postgres::PgConnectOptions,
        metrics: SharedMetrics,
    ) -> Self {
        DispatcherConfig {
            owner: owner.clone(),
            db,
            db_timeout: s.database_timeout,
            senders: s.senders,
            sender: SenderConfig {
                http: HttpSettings::from_settings(s),
                policy: RetryPolicy::from_settings(s),
                concurrency: s.sender_concurrency,
                lane: LaneConfig {
                    concurrency: s.endpoint_concurrency,
                    default_rate: (s.default_rate_limit > 0).then_some(s.default_rate_limit),
                    max_hold: s.max_hold,
                    // A request open for a third of the timeout is as good as hanging.
                    slow_call: s.request_timeout / 3,
                    breaker: BreakerConfig::from_settings(s),
                },
                fault_panic_one_in: s.fault_panic_one_in,
                metrics: metrics.clone(),
                // Set for sender-0 only, in `spawn_sender`.
                fault_stop_every: s.fault_sender_stop_every,
            },
            recorder: RecorderConfig {
                owner: owner.clone(),
                batch: s.outcome_batch,
                flush_interval: s.outcome_flush_interval,
            },
            claimer: ClaimerConfig {
                owner,
                batch: s.claim_batch,
                max_in_flight: s.max_in_flight,
                max_in_flight_per_endpoint: s.max_in_flight_per_endpoint,
                lease: s.lease_duration,
                poll_interval: s.poll_interval,
                backlog_interval: s.health_log_interval.min(Duration::from_secs(10)),
            },
            reap_interval: s.reap_interval,
            disable_after: (!s.disable_after.is_zero()).then_some(s.disable_after),
            retention: RetentionConfig {
                keep: Duration::from_secs(u64::from(s.retention_days) * 86_400),
                keep_idempotency_keys: s.idempotency_retention,
                interval: s.retention_interval,
                batch: i64::from(s.retention_batch),
            },
            metrics,
            heartbeat_interval: s.heartbeat_interval,
            stall_timeout: s.stall_timeout,
            health_log_interval: s.health_log_interval,
            shutdown_grace: s.shutdown_grace,
        }
    }

    fn store(&self, connections: u32) -> Store {
        Store::connect_lazy(self.db.clone(), connections, self.db_timeout)
    }
}

/// Drain and stop; answers when done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Stop one actor by name (its supervisor restarts it). Answers whether the name exists.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct RestartActor(pub String);

/// The latest health of every actor.
#[derive(Message)]
#[rtype(result = "Vec<ActorStatus>")]
pub struct Snapshot;

#[derive(Debug, Clone)]
pub struct ActorStatus {
    pub name: String,
    pub health: Health,
    /// Restarts in place plus replacements.
    pub restarts: u32,
    pub last_heartbeat: Instant,
}

/// Type-erased handle on a supervised actor.
trait Probe {
    fn heartbeat(&self, timeout: Duration)
        -> LocalBoxFuture<'static, Result<Health, MailboxError>>;
    fn stop(&self);
    /// Resolves once the actor has come back idle after its final stop.
    fn terminate(&self) -> LocalBoxFuture<'static, ()>;
}

impl<A> Probe for Addr<A>
where
    A: Actor + Handler<Heartbeat> + Handler<StopActor> + Handler<Terminate>,
    A::Context: ToEnvelope<A, Heartbeat> + ToEnvelope<A, StopActor> + ToEnvelope<A, Terminate>,
{
    fn heartbeat(
        &self,
        timeout: Duration,
    ) -> LocalBoxFuture<'static, Result<Health, MailboxError>> {
        Box::pin(self.send(Heartbeat).timeout(timeout))
    }
    fn stop(&self) {
        self.do_send(StopActor);
    }
    fn terminate(&self) -> LocalBoxFuture<'static, ()> {
        let addr = self.clone();
        Box::pin(async move {
            let wait = Duration::from_secs(2);
            let _ = addr.send(Terminate).timeout(wait).await;
            // Answered by the restarted, idle actor: the old context is gone.
            let _ = addr.send(Heartbeat).timeout(wait).await;
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Claimer,
    Recorder,
    Reaper,
    Retention,
    Sender(usize),
}

struct Slot {
    name: String,
    kind: Kind,
    arbiter: Arbiter,
    probe: Box<dyn Probe>,
    replacements: u32,
    last_seen: Instant,
    last: Health,
    /// Counters at the previous health line, to log "since the last line".
    logged: Health,
    probing: bool,
}

impl Slot {
    fn new(name: String, kind: Kind, arbiter: Arbiter, probe: Box<dyn Probe>) -> Slot {
        Slot {
            name,
            kind,
            arbiter,
            probe,
            replacements: 0,
            last_seen: Instant::now(),
            last: Health::default(),
            logged: Health::default(),
            probing: false,
        }
    }
}

pub struct Supervisor {
    config: Arc<DispatcherConfig>,
    slots: Vec<Slot>,
    claimer: Option<Addr<Claimer>>,
    recorder: Option<Addr<Recorder>>,
    senders: Vec<Addr<Sender>>,
    shutting_down: bool,
}

impl Supervisor {
    pub fn new(config: DispatcherConfig) -> Self {
        Supervisor {
            config: Arc::new(config),
            slots: Vec::new(),
            claimer: None,
            recorder: None,
            senders: Vec::new(),
            shutting_down: false,
        }
    }

    fn spawn_recorder(&self, arbiter: &Arbiter) -> Addr<Recorder> {
        let (config, claimer) = (self.config.clone(), self.claimer.clone());
        actix::Supervisor::start_in_arbiter(&arbiter.handle(), move |_| {
            Recorder::new(config.recorder.clone(), config.store(2), claimer)
        })
    }

    fn spawn_sender(&self, arbiter: &Arbiter, index: usize) -> Addr<Sender> {
        let mut config = self.config.sender.clone();
        // The injected stop fault hits one sender, so that the others show they carry on.
        if index != 0 {
            config.fault_stop_every = 0;
        }
        let recorder = self.recorder.clone().expect("recorder starts first");
        actix::Supervisor::start_in_arbiter(&arbiter.handle(), move |_| {
            Sender::new(config, recorder)
        })
    }

    fn spawn_claimer(&self, arbiter: &Arbiter) -> Addr<Claimer> {
        let config = self.config.clone();
        let senders = self.senders.clone();
        let recorder = self.recorder.clone().expect("recorder starts first");
        actix::Supervisor::start_in_arbiter(&arbiter.handle(), move |_| {
            // One connection listens, one claims, one counts the backlog.
            Claimer::new(config.claimer.clone(), config.store(3), senders, recorder)
        })
    }

    fn spawn_reaper(&self, arbiter: &Arbiter) -> Addr<Reaper> {
        let config = self.config.clone();
        actix::Supervisor::start_in_arbiter(&arbiter.handle(), move |_| {
            Reaper::new(config.store(1), config.reap_interval, config.disable_after)
        })
    }

    fn spawn_retention(&self, arbiter: &Arbiter) -> Addr<Retention> {
        let config = self.config.clone();
        actix::Supervisor::start_in_arbiter(&arbiter.handle(), move |_| {
            Retention::new(config.store(1), config.retention.clone())
        })
    }

    /// Builds the actor of `kind` on a fresh arbiter and wires the others to it.
    fn spawn(&mut self, kind: Kind) -> (Arbiter, Box<dyn Probe>) {
        let arbiter = Arbiter::new();
        let probe: Box<dyn Probe> = match kind {
            Kind::Recorder => {
                let addr = self.spawn_recorder(&arbiter);
                for s in &self.senders {
                    s.do_send(sender::SetRecorder(addr.clone()));
                }
                if let Some(c) = &self.claimer {
                    c.do_send(claimer::SetRecorder(addr.clone()));
                }
                self.recorder = Some(addr.clone());
                Box::new(addr)
            }
            Kind::Sender(i) => {
                let addr = self.spawn_sender(&arbiter, i);
                if let Some(c) = &self.claimer {
                    c.do_send(claimer::SetSender(i, addr.clone()));
                    addr.do_send(sender::SetClaimer(c.clone()));
                }
                if i < self.senders.len() {
                    self.senders[i] = addr.clone();
                } else {
                    self.senders.push(addr.clone());
                }
                Box::new(addr)
            }
            Kind::Claimer => {
                let addr = self.spawn_claimer(&arbiter);
                if let Some(r) = &self.recorder {
                    r.do_send(SetClaimer(addr.clone()));
                }
                for s in &self.senders {
                    s.do_send(sender::SetClaimer(addr.clone()));
                }
                self.claimer = Some(addr.clone());
                Box::new(addr)
            }
            Kind::Reaper => Box::new(self.spawn_reaper(&arbiter)),
            Kind::Retention => Box::new(self.spawn_retention(&arbiter)),
        };
        (arbiter, probe)
    }

    fn replace(&mut self, index: usize, why: &str) {
        let kind = self.slots[index].kind;
        tracing::error!(actor = %self.slots[index].name, reason = why, "replacing actor on a new thread");
        let (arbiter, probe) = self.spawn(kind);
        let slot = &mut self.slots[index];
        // A stalled thread cannot be killed; stopping its arbiter lets it end if it ever
        // comes back. Its leases expire and are reaped.
        let old = std::mem::replace(&mut slot.arbiter, arbiter);
        old.stop();
        slot.probe = probe;
        slot.replacements += 1;
        slot.last_seen = Instant::now();
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let timeout = self.config.heartbeat_interval;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if slot.probing {
                continue;
            }
            slot.probing = true;
            let beat = actix::fut::wrap_future::<_, Self>(slot.probe.heartbeat(timeout));
            ctx.spawn(beat.map(move |result, act, _ctx| {
                act.slots[index].probing = false;
                act.on_heartbeat(index, result);
            }));
        }
    }

    fn on_heartbeat(&mut self, index: usize, result: Result<Health, MailboxError>) {
        if self.shutting_down {
            return;
        }
        let now = Instant::now();
        let stall = self.config.stall_timeout;
        let slot = &mut self.slots[index];
        match result {
            Ok(health) => {
                slot.last_seen = now;
                let unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                let restarts = u64::from(health.restarts + slot.replacements);
                self.config
                    .metrics
                    .record_heartbeat(&slot.name, unix, restarts);
                let stuck = health.stuck_for(now).filter(|d| *d > stall);
                slot.last = health;
                if let Some(stuck) = stuck {
                    tracing::error!(actor = %slot.name, stuck_ms = stuck.as_millis() as u64,
                        "actor stuck on one piece of work; restarting it");
                    slot.probe.stop();
                }
            }
            // The mailbox is gone: the actor panicked outside contained code.
            Err(MailboxError::Closed) => self.replace(index, "actor is gone"),
            Err(MailboxError::Timeout) => {
                if now.duration_since(slot.last_seen) > stall {
                    self.replace(index, "no heartbeat within the stall timeout");
                }
            }
        }
    }

    fn log_health(&mut self) {
        for slot in &mut self.slots {
            let h = &slot.last;
            tracing::info!(
                actor = %slot.name,
                in_flight = h.in_flight,
                backlog = h.backlog,
                succeeded = h.succeeded.saturating_sub(slot.logged.succeeded),
                failed = h.failed.saturating_sub(slot.logged.failed),
                restarts = h.restarts + slot.replacements,
                heartbeat_age_ms = slot.last_seen.elapsed().as_millis() as u64,
                "actor health"
            );
            slot.logged = h.clone();
        }
    }

    fn statuses(&self) -> Vec<ActorStatus> {
        self.slots
            .iter()
            .map(|s| ActorStatus {
                name: s.name.clone(),
                health: s.last.clone(),
                restarts: s.last.restarts + s.replacements,
                last_heartbeat: s.last_seen,
            })
            .collect()
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Order matters for wiring: the recorder first (senders report to it), then the
        // senders, then the claimer (which routes to them), then the reaper.
        let start = |kind: Kind, name: String, this: &mut Supervisor| {
            let (arbiter, probe) = this.spawn(kind);
            this.slots.push(Slot::new(name, kind, arbiter, probe));
        };
        start(Kind::Recorder, "recorder".into(), self);
        for i in 0..self.config.senders {
            start(Kind::Sender(i), format!("sender-{i}"), self);
        }
        start(Kind::Claimer, "claimer".into(), self);
        start(Kind::Reaper, "reaper".into(), self);
        start(Kind::Retention, "retention".into(), self);
        tracing::info!(owner = %self.config.owner, senders = self.config.senders, "dispatcher started");

        ctx.run_interval(self.config.heartbeat_interval, |act, ctx| act.check(ctx));
        ctx.run_interval(self.config.health_log_interval, |act, _| act.log_health());
    }
}

impl Handler<RestartActor> for Supervisor {
    type Result = bool;
    fn handle(&mut self, RestartActor(name): RestartActor, _ctx: &mut Context<Self>) -> bool {
        match self.slots.iter().find(|s| s.name == name) {
            Some(slot) => {
                tracing::warn!(actor = %name, "restart requested");
                slot.probe.stop();
                true
            }
            None => false,
        }
    }
}

impl Handler<Snapshot> for Supervisor {
    type Result = MessageResult<Snapshot>;
    fn handle(&mut self, _: Snapshot, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.statuses())
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        tracing::info!("dispatcher shutting down: claiming stopped, draining in-flight deliveries");
        if let Some(c) = &self.claimer {
            c.do_send(Pause);
        }
        for s in &self.senders {
            s.do_send(Drain);
        }
        let senders = self.senders.clone();
        let recorder = self.recorder.clone();
        let config = self.config.clone();
        let drain = async move {
            let deadline = Instant::now() + config.shutdown_grace;
            let probe_timeout = Duration::from_millis(500);
            loop {
                // Senders first, then the recorder: whatever a sender reported before it
                // answered is already in the recorder's mailbox when the recorder answers.
                let beats = join_all(
                    senders
                        .iter()
                        .map(|s| s.send(Heartbeat).timeout(probe_timeout)),
                )
                .await;
                let senders_idle = beats.iter().all(|b| {
                    matches!(b, Ok(h) if h.in_flight == 0 && h.backlog.unwrap_or(0) == 0)
                        || b.is_err()
                });
                let recorder_idle = match &recorder {
                    Some(r) => matches!(r.send(Heartbeat).timeout(probe_timeout).await,
                        Ok(h) if h.in_flight == 0 && h.backlog.unwrap_or(0) == 0),
                    None => true,
                };
                if senders_idle && recorder_idle {
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!("shutdown grace period over with work still in flight");
                    break;
                }
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
            // Whatever is still leased to us (requests that outlived the grace period,
            // outcomes that could not be written) goes back to the queue now, not at lease
            // expiry. A late outcome for one of them no longer matches its lease.
            let store = config.store(1);
            match store.release_owner(&config.owner).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(released = n, "returned unfinished leases to the queue"),
                Err(error) => tracing::error!(%error,
                    "could not release leases; they return to the queue when they expire"),
            }
            store.pool().close().await;
        };
        let terminations: Vec<_> = self.slots.iter().map(|s| s.probe.terminate()).collect();
        let stop = async move {
            drain.await;
            join_all(terminations).await;
        };
        Box::pin(stop.into_actor(self).map(|_, act, _| {
            for slot in &act.slots {
                slot.arbiter.stop();
            }
            tracing::info!("dispatcher stopped");
        }))
    }
}
