//! The supervisor's slots: one per actor, with its thread (arbiter), a type-erased handle
//! to ask for heartbeats and to stop it, and its health record.

use std::time::{Duration, Instant};

use actix::{dev::ToEnvelope, prelude::*};
use futures_util::future::LocalBoxFuture;

use super::{health::Record, Health, Heartbeat, StopActor, Terminate};

/// Type-erased handle on a supervised actor.
pub trait Probe {
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

/// Which actor a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Claimer,
    Recorder,
    Reaper,
    Retention,
    Sender(usize),
}

impl Kind {
    /// Its name in logs, health and metrics.
    pub fn name(self) -> String {
        match self {
            Kind::Claimer => "claimer".into(),
            Kind::Recorder => "recorder".into(),
            Kind::Reaper => "reaper".into(),
            Kind::Retention => "retention".into(),
            Kind::Sender(i) => format!("sender-{i}"),
        }
    }
}

pub struct Slot {
    pub name: String,
    pub kind: Kind,
    pub arbiter: Arbiter,
    pub probe: Box<dyn Probe>,
    pub record: Record,
    /// A heartbeat is under way.
    pub probing: bool,
}

impl Slot {
    pub fn new(kind: Kind, arbiter: Arbiter, probe: Box<dyn Probe>) -> Slot {
        Slot {
            name: kind.name(),
            kind,
            arbiter,
            probe,
            record: Record::new(Instant::now()),
            probing: false,
        }
    }
}
