//! Starting the actors and keeping them wired: the one place that knows every actor type.
//! Each actor runs under actix's `Supervisor` (restarted in place when it stops) on an
//! arbiter (thread) of its own; when one is replaced on a new thread, the others are told
//! its new address.

use std::sync::Arc;

use actix::prelude::*;

use super::{
    claimer::Claimer,
    reaper::Reaper,
    recorder::Recorder,
    retention::Retention,
    sender::Sender,
    slots::{Kind, Probe},
    ClaimerAddr, Dispatch, Drain, Heartbeat, RecorderAddr, StopClaiming, UseClaimer, UseRecorder,
    UseSender,
};
use crate::dispatcher::config::DispatcherConfig;

/// The current address of every actor others talk to.
pub struct Wiring {
    config: Arc<DispatcherConfig>,
    claimer: Option<Addr<Claimer>>,
    recorder: Option<Addr<Recorder>>,
    senders: Vec<Addr<Sender>>,
}

impl Wiring {
    pub fn new(config: Arc<DispatcherConfig>) -> Wiring {
        Wiring {
            config,
            claimer: None,
            recorder: None,
            senders: Vec::new(),
        }
    }

    /// Order matters: the recorder first (senders report to it), then the senders, then the
    /// claimer (which routes to them), then the others.
    pub fn start_order(&self) -> Vec<Kind> {
        let mut kinds = vec![Kind::Recorder];
        kinds.extend((0..self.config.pool.senders).map(Kind::Sender));
        kinds.extend([Kind::Claimer, Kind::Reaper, Kind::Retention]);
        kinds
    }

    /// Starts the actor of `kind` on `arbiter` and tells the others where it is.
    pub fn spawn(&mut self, kind: Kind, arbiter: &Arbiter) -> Box<dyn Probe> {
        let config = self.config.clone();
        let on = arbiter.handle();
        match kind {
            Kind::Recorder => {
                let claimer = self.claimer.as_ref().map(claimer_addr);
                let addr = actix::Supervisor::start_in_arbiter(&on, move |_| {
                    Recorder::new(config.recorder.clone(), config.store(2), claimer)
                });
                let recorder = recorder_addr(&addr);
                for s in &self.senders {
                    s.do_send(UseRecorder(recorder.clone()));
                }
                if let Some(c) = &self.claimer {
                    c.do_send(UseRecorder(recorder));
                }
                self.recorder = Some(addr.clone());
                Box::new(addr)
            }
            Kind::Sender(i) => {
                let mut sender = config.sender.clone();
                // The injected stop fault hits one sender, so that the others show they carry
                // on.
                if i != 0 {
                    sender.faults.sender_stop_every = 0;
                }
                let recorder =
                    recorder_addr(self.recorder.as_ref().expect("recorder starts first"));
                let addr = actix::Supervisor::start_in_arbiter(&on, move |_| {
                    Sender::new(sender, recorder)
                });
                if let Some(c) = &self.claimer {
                    c.do_send(UseSender(i, addr.clone().recipient()));
                    addr.do_send(UseClaimer(claimer_addr(c)));
                }
                if i < self.senders.len() {
                    self.senders[i] = addr.clone();
                } else {
                    self.senders.push(addr.clone());
                }
                Box::new(addr)
            }
            Kind::Claimer => {
                let senders: Vec<Recipient<Dispatch>> =
                    self.senders.iter().map(|s| s.clone().recipient()).collect();
                let recorder =
                    recorder_addr(self.recorder.as_ref().expect("recorder starts first"));
                let addr = actix::Supervisor::start_in_arbiter(&on, move |_| {
                    // One connection listens, one claims, one claims ordered endpoints,
                    // one counts the backlog (or looks for ordered endpoints).
                    Claimer::new(config.claimer.clone(), config.store(4), senders, recorder)
                });
                let claimer = claimer_addr(&addr);
                if let Some(r) = &self.recorder {
                    r.do_send(UseClaimer(claimer.clone()));
                }
                for s in &self.senders {
                    s.do_send(UseClaimer(claimer.clone()));
                }
                self.claimer = Some(addr.clone());
                Box::new(addr)
            }
            Kind::Reaper => Box::new(actix::Supervisor::start_in_arbiter(&on, move |_| {
                Reaper::new(
                    config.store(1),
                    config.pool.reap_interval,
                    config.disable_after(),
                )
            })),
            Kind::Retention => Box::new(actix::Supervisor::start_in_arbiter(&on, move |_| {
                Retention::new(config.store(1), config.retention.clone())
            })),
        }
    }

    /// Shutdown: claiming stops, senders hand back what they have not started. Returns the
    /// actors the drain waits for.
    pub fn stop_taking_work(&self) -> Draining {
        if let Some(c) = &self.claimer {
            c.do_send(StopClaiming);
        }
        for s in &self.senders {
            s.do_send(Drain);
        }
        Draining {
            senders: self.senders.iter().map(|s| s.clone().recipient()).collect(),
            recorder: self.recorder.as_ref().map(|r| r.clone().recipient()),
        }
    }
}

/// What a shutdown drain waits for: the senders' requests, then the recorder's writes.
pub struct Draining {
    pub senders: Vec<Recipient<Heartbeat>>,
    pub recorder: Option<Recipient<Heartbeat>>,
}

fn recorder_addr(addr: &Addr<Recorder>) -> RecorderAddr {
    RecorderAddr {
        record: addr.clone().recipient(),
        circuits: addr.clone().recipient(),
    }
}

fn claimer_addr(addr: &Addr<Claimer>) -> ClaimerAddr {
    ClaimerAddr {
        settled: addr.clone().recipient(),
        pause: addr.clone().recipient(),
    }
}
