//! The supervisor: starts every dispatcher actor ([`wiring`](super::wiring)), watches them
//! through heartbeats ([`health`](super::health) says what they mean), replaces the ones
//! that died or stalled, logs each one's health, and runs the shutdown
//! [`drain`](super::drain).
//!
//! Two layers of restart: each actor runs under actix's `Supervisor`, which restarts it in
//! place when it stops; this actor handles what that cannot (an actor that panicked, whose
//! mailbox is gone, or a thread that stopped answering) by starting a replacement on a new
//! arbiter and rewiring the others to it.

use std::{sync::Arc, time::Instant};

use actix::prelude::*;
use futures_util::future::join_all;

use super::{drain::drain, health::Verdict, slots::Slot, wiring::Wiring, Health};
use crate::dispatcher::config::DispatcherConfig;

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

pub struct Supervisor {
    config: Arc<DispatcherConfig>,
    wiring: Wiring,
    slots: Vec<Slot>,
    shutting_down: bool,
}

impl Supervisor {
    pub fn new(config: DispatcherConfig) -> Self {
        let config = Arc::new(config);
        Supervisor {
            wiring: Wiring::new(config.clone()),
            config,
            slots: Vec::new(),
            shutting_down: false,
        }
    }

    fn replace(&mut self, index: usize, why: &str) {
        let kind = self.slots[index].kind;
        tracing::error!(actor = %self.slots[index].name, reason = why, "replacing actor on a new thread");
        let arbiter = Arbiter::new();
        let probe = self.wiring.spawn(kind, &arbiter);
        let slot = &mut self.slots[index];
        // A stalled thread cannot be killed; stopping its arbiter lets it end if it ever
        // comes back. Its leases expire and are reaped.
        std::mem::replace(&mut slot.arbiter, arbiter).stop();
        slot.probe = probe;
        slot.record.replaced(Instant::now());
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let timeout = self.config.supervision.heartbeat_interval;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if slot.probing {
                continue;
            }
            slot.probing = true;
            let beat = actix::fut::wrap_future::<_, Self>(slot.probe.heartbeat(timeout));
            ctx.spawn(beat.map(move |answer, act, _ctx| {
                act.slots[index].probing = false;
                if !act.shutting_down {
                    act.on_heartbeat(index, answer);
                }
            }));
        }
    }

    fn on_heartbeat(&mut self, index: usize, answer: Result<Health, MailboxError>) {
        let answered = answer.is_ok();
        let slot = &mut self.slots[index];
        let verdict = slot.record.heard(
            answer,
            Instant::now(),
            self.config.supervision.stall_timeout,
        );
        if answered {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let restarts = u64::from(slot.record.restarts());
            self.config
                .metrics
                .record_heartbeat(&slot.name, unix, restarts);
        }
        match verdict {
            Verdict::Fine | Verdict::Late => {}
            Verdict::Stuck(stuck) => {
                tracing::error!(actor = %slot.name, stuck_ms = stuck.as_millis() as u64,
                    "actor stuck on one piece of work; restarting it");
                slot.probe.stop();
            }
            Verdict::Replace(why) => self.replace(index, why),
        }
    }

    fn log_health(&mut self) {
        let now = Instant::now();
        for slot in &mut self.slots {
            let line = slot.record.line(now);
            tracing::info!(
                actor = %slot.name,
                in_flight = line.in_flight,
                backlog = line.backlog,
                succeeded = line.succeeded,
                failed = line.failed,
                restarts = line.restarts,
                heartbeat_age_ms = line.heartbeat_age.as_millis() as u64,
                "actor health"
            );
        }
    }

    fn statuses(&self) -> Vec<ActorStatus> {
        self.slots
            .iter()
            .map(|s| ActorStatus {
                name: s.name.clone(),
                health: s.record.last.clone(),
                restarts: s.record.restarts(),
                last_heartbeat: s.record.last_seen,
            })
            .collect()
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for kind in self.wiring.start_order() {
            let arbiter = Arbiter::new();
            let probe = self.wiring.spawn(kind, &arbiter);
            self.slots.push(Slot::new(kind, arbiter, probe));
        }
        tracing::info!(owner = %self.config.owner, senders = self.config.pool.senders, "dispatcher started");
        ctx.run_interval(self.config.supervision.heartbeat_interval, |act, ctx| {
            act.check(ctx)
        });
        ctx.run_interval(self.config.supervision.health_log_interval, |act, _| {
            act.log_health()
        });
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
        let draining = self.wiring.stop_taking_work();
        let config = self.config.clone();
        let terminations: Vec<_> = self.slots.iter().map(|s| s.probe.terminate()).collect();
        let stop = async move {
            drain(
                draining,
                config.supervision.shutdown_grace,
                config.store(1),
                &config.owner,
            )
            .await;
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
