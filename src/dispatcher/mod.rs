//! The dispatcher as the rest of the program sees it: start it, ask about it, stop it.

use actix::prelude::*;

pub mod config;

use crate::actors::supervisor::{ActorStatus, RestartActor, Shutdown, Snapshot, Supervisor};
use config::DispatcherConfig;

#[derive(Clone)]
pub struct Dispatcher {
    supervisor: Addr<Supervisor>,
}

impl Dispatcher {
    /// Starts the supervisor (on the current arbiter) and, through it, every actor.
    pub fn start(config: DispatcherConfig) -> Dispatcher {
        Dispatcher {
            supervisor: Supervisor::new(config).start(),
        }
    }

    /// Stops claiming, drains in-flight work within the grace period, releases what is left.
    pub async fn shutdown(&self) {
        let _ = self.supervisor.send(Shutdown).await;
    }

    /// Stops the named actor (`claimer`, `recorder`, `reaper`, `sender-N`) so that it is
    /// restarted. Returns false for an unknown name.
    pub async fn restart_actor(&self, name: &str) -> bool {
        self.supervisor
            .send(RestartActor(name.into()))
            .await
            .unwrap_or(false)
    }

    /// The latest heartbeat of every actor.
    pub async fn actors(&self) -> Vec<ActorStatus> {
        // A supervisor that cannot answer within this is as bad as no actors at all.
        self.supervisor
            .send(Snapshot)
            .timeout(std::time::Duration::from_secs(2))
            .await
            .unwrap_or_default()
    }
}
