//! What the supervisor makes of heartbeats: whether an actor is fine, stuck or gone, and
//! the health line it logs for each actor. Plain logic, tested without actors.

use std::time::{Duration, Instant};

use actix::MailboxError;

use super::Health;

/// What to do about an actor after its heartbeat (or the lack of one).
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Fine,
    /// It answers, but one piece of work has been under way this long: stop it (its actix
    /// supervisor restarts it in place).
    Stuck(Duration),
    /// It is gone or silent past the stall timeout: start a replacement on a new thread.
    Replace(&'static str),
    /// No answer in time, but not silent for long yet.
    Late,
}

/// One actor's record, kept by the supervisor between heartbeats.
#[derive(Debug, Clone)]
pub struct Record {
    pub last_seen: Instant,
    pub last: Health,
    /// Counters at the previous health line, to log "since the last line".
    logged: Health,
    /// Replacements on a new thread (restarts in place are in `last.restarts`).
    pub replacements: u32,
}

/// The fields of one health line.
#[derive(Debug, PartialEq)]
pub struct Line {
    pub in_flight: usize,
    pub backlog: Option<i64>,
    pub succeeded: u64,
    pub failed: u64,
    pub restarts: u32,
    pub heartbeat_age: Duration,
}

impl Record {
    pub fn new(now: Instant) -> Record {
        Record {
            last_seen: now,
            last: Health::default(),
            logged: Health::default(),
            replacements: 0,
        }
    }

    /// Restarts in place plus replacements.
    pub fn restarts(&self) -> u32 {
        self.last.restarts + self.replacements
    }

    /// Takes a heartbeat's answer in, and says what to do.
    pub fn heard(
        &mut self,
        answer: Result<Health, MailboxError>,
        now: Instant,
        stall: Duration,
    ) -> Verdict {
        match answer {
            Ok(health) => {
                self.last_seen = now;
                let stuck = health.stuck_for(now).filter(|d| *d > stall);
                self.last = health;
                stuck.map_or(Verdict::Fine, Verdict::Stuck)
            }
            // The mailbox is gone: the actor panicked outside contained code.
            Err(MailboxError::Closed) => Verdict::Replace("actor is gone"),
            Err(MailboxError::Timeout) if now.duration_since(self.last_seen) > stall => {
                Verdict::Replace("no heartbeat within the stall timeout")
            }
            Err(MailboxError::Timeout) => Verdict::Late,
        }
    }

    /// A replacement was started: it has not missed a heartbeat yet.
    pub fn replaced(&mut self, now: Instant) {
        self.replacements += 1;
        self.last_seen = now;
    }

    /// The next health line: counters since the previous one.
    pub fn line(&mut self, now: Instant) -> Line {
        let h = &self.last;
        let line = Line {
            in_flight: h.in_flight,
            backlog: h.backlog,
            succeeded: h.succeeded.saturating_sub(self.logged.succeeded),
            failed: h.failed.saturating_sub(self.logged.failed),
            restarts: self.restarts(),
            heartbeat_age: now.saturating_duration_since(self.last_seen),
        };
        self.logged = h.clone();
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(30);

    #[test]
    fn stuck_gone_and_silent_actors_are_told_apart() {
        let t0 = Instant::now();
        let mut r = Record::new(t0);
        assert_eq!(r.heard(Ok(Health::default()), t0, STALL), Verdict::Fine);
        let busy = Health {
            busy_since: Some(t0),
            ..Health::default()
        };
        let later = t0 + Duration::from_secs(31);
        assert_eq!(
            r.heard(Ok(busy), later, STALL),
            Verdict::Stuck(Duration::from_secs(31))
        );
        assert_eq!(
            r.heard(
                Err(MailboxError::Timeout),
                later + Duration::from_secs(1),
                STALL
            ),
            Verdict::Late,
            "seen a second ago"
        );
        assert!(matches!(
            r.heard(
                Err(MailboxError::Timeout),
                later + Duration::from_secs(31),
                STALL
            ),
            Verdict::Replace(_)
        ));
        assert!(matches!(
            r.heard(Err(MailboxError::Closed), later, STALL),
            Verdict::Replace("actor is gone")
        ));
    }

    #[test]
    fn health_lines_count_since_the_previous_line() {
        let t0 = Instant::now();
        let mut r = Record::new(t0);
        let health = |succeeded| Health {
            succeeded,
            restarts: 1,
            ..Health::default()
        };
        r.heard(Ok(health(10)), t0, STALL);
        assert_eq!(r.line(t0).succeeded, 10);
        r.heard(Ok(health(25)), t0, STALL);
        r.replaced(t0);
        let line = r.line(t0 + Duration::from_secs(2));
        assert_eq!((line.succeeded, line.restarts), (15, 2));
        assert_eq!(line.heartbeat_age, Duration::from_secs(2));
    }
}
