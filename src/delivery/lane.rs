//! One endpoint's lane inside a sender: its waiting jobs, its in-flight count, its circuit
//! breaker and its rate limiter. The sender asks [`Lane::next`] what to do; nothing here
//! knows about actors.
//!
//! Everything that cannot go now is either kept briefly (a few hundred milliseconds for the
//! rate limiter) or handed back to the database to be claimed again later, without using an
//! attempt: a sender never sits on a lease it cannot use.

use std::{
    collections::VecDeque,
    num::NonZeroU32,
    time::{Duration, Instant},
};

use governor::{clock::Clock, DefaultDirectRateLimiter, Quota, RateLimiter};

use super::{DeferReason, Job};
use crate::breaker::{Admit, Breaker, BreakerConfig, Transition};

#[derive(Debug, Clone)]
pub struct LaneConfig {
    /// Requests one endpoint may have open at once.
    pub concurrency: usize,
    /// Messages per second when the endpoint sets none (`None`: unlimited).
    pub default_rate: Option<u32>,
    /// Longest a job waits in memory before it goes back to the database.
    pub max_hold: Duration,
    /// A request open this long counts as hanging; enough of them open the breaker at once.
    pub slow_call: Duration,
    pub breaker: BreakerConfig,
}

/// What the sender should do next for this lane.
#[derive(Debug)]
pub enum Step {
    Start(Job),
    /// Ask again after this long (rate limit).
    WaitFor(Duration),
    /// Hand these back, due again after `after`, without using an attempt.
    Defer {
        jobs: Vec<Job>,
        after: Duration,
        why: DeferReason,
    },
    /// Nothing to do until a request finishes or a job arrives.
    Idle,
}

pub struct Lane {
    queue: VecDeque<(Instant, Job)>,
    pub in_flight: usize,
    /// Start times of the requests under way, oldest first (completions are roughly FIFO).
    started: VecDeque<Instant>,
    /// Moving average of how long this endpoint takes to answer.
    typical: Option<Duration>,
    breaker: Breaker,
    limiter: Option<(u32, DefaultDirectRateLimiter)>,
    pub last_active: Instant,
    /// A timer is already set to ask again.
    pub waiting: bool,
}

impl Lane {
    pub fn new(config: &LaneConfig) -> Lane {
        Lane {
            queue: VecDeque::new(),
            in_flight: 0,
            started: VecDeque::new(),
            typical: None,
            breaker: Breaker::new(config.breaker.clone()),
            limiter: None,
            last_active: Instant::now(),
            waiting: false,
        }
    }

    pub fn push(&mut self, job: Job, now: Instant) {
        self.last_active = now;
        self.queue.push_back((now, job));
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight == 0
    }

    pub fn next(&mut self, config: &LaneConfig, now: Instant) -> (Step, Option<Transition>) {
        let Some((_, head)) = self.queue.front() else {
            return (Step::Idle, None);
        };
        if self.in_flight >= config.concurrency {
            // Enough requests hanging: open now instead of after their timeouts.
            let slow = self
                .started
                .iter()
                .take_while(|t| now.duration_since(**t) >= config.slow_call)
                .count();
            if slow as u32 >= self.breaker.slow_calls() {
                if let Some(t) = self.breaker.trip(now) {
                    let after = match t.to {
                        crate::breaker::State::Open { until } => {
                            until.saturating_duration_since(now)
                        }
                        _ => config.max_hold,
                    };
                    let jobs = self.queue.drain(..).map(|(_, j)| j).collect();
                    return (
                        Step::Defer {
                            jobs,
                            after,
                            why: DeferReason::CircuitOpen,
                        },
                        Some(t),
                    );
                }
            }
            return (self.shed(config, now), None);
        }
        let rate = head.endpoint.rate_limit.or(config.default_rate);
        if let Some(wait) = self.rate_wait(rate) {
            // Keep what the limit lets through within `max_hold`; the rest goes back.
            let keep = (rate.unwrap_or(1) as f64 * config.max_hold.as_secs_f64()).ceil() as usize;
            if self.queue.len() > keep.max(1) {
                let back: Vec<Job> = self.queue.drain(keep.max(1)..).map(|(_, j)| j).collect();
                let after = Duration::from_secs_f64(keep.max(1) as f64 / rate.unwrap_or(1) as f64);
                return (
                    Step::Defer {
                        jobs: back,
                        after,
                        why: DeferReason::RateLimit,
                    },
                    None,
                );
            }
            return (Step::WaitFor(wait), None);
        }
        let (admit, transition) = self.breaker.admit(now);
        if let Admit::Wait(after) = admit {
            let jobs = self.queue.drain(..).map(|(_, j)| j).collect();
            return (
                Step::Defer {
                    jobs,
                    after,
                    why: DeferReason::CircuitOpen,
                },
                transition,
            );
        }
        let (_, job) = self.queue.pop_front().expect("checked above");
        self.in_flight += 1;
        self.started.push_back(now);
        self.last_active = now;
        (Step::Start(job), transition)
    }

    /// The endpoint is at its concurrency cap. Jobs that would wait longer than half of
    /// `max_hold` for a slot go back to the queue now: a slow or hanging receiver must not
    /// sit on leases (the claimer's budget) that other endpoints' deliveries need.
    fn shed(&mut self, config: &LaneConfig, now: Instant) -> Step {
        let oldest = self
            .started
            .front()
            .map(|t| now.duration_since(*t))
            .unwrap_or_default();
        let per_request = self
            .typical
            .unwrap_or_default()
            .max(oldest)
            .max(Duration::from_millis(1));
        let budget = config.max_hold / 2;
        let keep = ((budget.as_secs_f64() / per_request.as_secs_f64()) * config.concurrency as f64)
            as usize;
        let keep = keep.max(config.concurrency);
        if self.queue.len() <= keep {
            return Step::Idle;
        }
        let jobs = self.queue.drain(keep..).map(|(_, j)| j).collect();
        Step::Defer {
            jobs,
            after: budget.max(Duration::from_secs(1)),
            why: DeferReason::EndpointBusy,
        }
    }

    /// `None` when a request may go now (and takes its slot), else how long to wait.
    fn rate_wait(&mut self, rate: Option<u32>) -> Option<Duration> {
        let rate = NonZeroU32::new(rate?)?;
        if self.limiter.as_ref().map(|(r, _)| *r) != Some(rate.get()) {
            // Evenly spaced, with bursts of a tenth of the rate at most: any one-second window
            // sees no more than the rate plus that burst.
            let burst = NonZeroU32::new((rate.get() / 10).max(1)).expect("at least 1");
            self.limiter = Some((
                rate.get(),
                RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            ));
        }
        let (_, limiter) = self.limiter.as_ref().expect("set above");
        match limiter.check() {
            Ok(()) => None,
            Err(not_until) => {
                Some(not_until.wait_time_from(governor::clock::DefaultClock::default().now()))
            }
        }
    }

    /// A request finished; `attempted` is false when no HTTP attempt was made.
    pub fn finished(&mut self, attempted: bool, success: bool, now: Instant) -> Option<Transition> {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(start) = self.started.pop_front() {
            let took = now.duration_since(start);
            self.typical = Some(match self.typical {
                Some(avg) => avg.mul_f64(0.8) + took.mul_f64(0.2),
                None => took,
            });
        }
        self.last_active = now;
        attempted
            .then(|| self.breaker.record(success, now))
            .flatten()
    }

    /// Jobs that have waited longer than `max_hold` (the endpoint is saturated).
    pub fn take_stale(&mut self, max_hold: Duration, now: Instant) -> Vec<Job> {
        let fresh_from = self
            .queue
            .iter()
            .position(|(since, _)| now.duration_since(*since) < max_hold);
        let stale = fresh_from.unwrap_or(self.queue.len());
        self.queue.drain(..stale).map(|(_, j)| j).collect()
    }

    /// Everything queued, for shutdown and restarts.
    pub fn drain(&mut self) -> Vec<Job> {
        self.queue.drain(..).map(|(_, j)| j).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::fixtures::lane_config as config;

    fn job(id: i64) -> Job {
        crate::delivery::fixtures::job(id, "ep_1")
    }

    /// A lane with `n` jobs queued at `now`.
    fn loaded(c: &LaneConfig, n: i64, now: Instant) -> Lane {
        let mut lane = Lane::new(c);
        for i in 0..n {
            lane.push(job(i), now);
        }
        lane
    }

    #[test]
    fn caps_in_flight_requests() {
        let c = config(2, None);
        let now = Instant::now();
        let mut lane = loaded(&c, 5, now);
        assert!(matches!(lane.next(&c, now).0, Step::Start(_)));
        assert!(matches!(lane.next(&c, now).0, Step::Start(_)));
        assert!(matches!(lane.next(&c, now).0, Step::Idle));
        lane.finished(true, true, now);
        assert!(matches!(lane.next(&c, now).0, Step::Start(_)));
    }

    #[test]
    fn open_circuit_defers_everything_queued() {
        let c = config(10, None);
        let now = Instant::now();
        let mut lane = loaded(&c, 4, now);
        for _ in 0..2 {
            let Step::Start(_) = lane.next(&c, now).0 else {
                panic!("starts")
            };
        }
        lane.finished(true, false, now);
        let t = lane.finished(true, false, now).expect("opens");
        assert_eq!(t.to.name(), "open");
        match lane.next(&c, now).0 {
            Step::Defer { jobs, after, why } => {
                assert_eq!((jobs.len(), why), (2, DeferReason::CircuitOpen));
                assert_eq!(after, Duration::from_secs(30));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rate_limit_waits_then_hands_back_what_cannot_go_soon() {
        let c = config(100, Some(2));
        let now = Instant::now();
        let mut lane = loaded(&c, 10, now);
        let mut started = 0;
        loop {
            match lane.next(&c, now).0 {
                Step::Start(_) => started += 1,
                Step::Defer { jobs, why, .. } => {
                    assert_eq!(why, DeferReason::RateLimit);
                    assert_eq!(jobs.len() + started + lane.queued(), 10);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(started, 1, "bursts are a tenth of the rate, at least one");
        assert!(
            matches!(lane.next(&c, now).0, Step::WaitFor(_)),
            "the kept ones wait"
        );
    }

    #[test]
    fn a_hanging_endpoint_keeps_only_what_it_can_start_soon() {
        let c = config(2, None); // max_hold 2s: jobs may wait up to 1s for a slot
        let t0 = Instant::now();
        let mut lane = loaded(&c, 100, t0);
        assert!(matches!(lane.next(&c, t0).0, Step::Start(_)));
        assert!(matches!(lane.next(&c, t0).0, Step::Start(_)));
        // Both requests have been open for 500ms: a slot frees every 250ms at best, so
        // only about 4 queued jobs can start within a second.
        match lane.next(&c, t0 + Duration::from_millis(500)).0 {
            Step::Defer { jobs, why, .. } => {
                assert_eq!(why, DeferReason::EndpointBusy);
                assert_eq!(lane.queued(), 4);
                assert_eq!(jobs.len(), 94);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hanging_requests_open_the_breaker_without_waiting_for_timeouts() {
        let c = config(2, None); // opens after 2 failures; slow after 5s
        let t0 = Instant::now();
        let mut lane = loaded(&c, 10, t0);
        for _ in 0..2 {
            let Step::Start(_) = lane.next(&c, t0).0 else {
                panic!("starts")
            };
        }
        assert!(!matches!(
            lane.next(&c, t0 + Duration::from_secs(1)).0,
            Step::Defer {
                why: DeferReason::CircuitOpen,
                ..
            }
        ));
        let (step, t) = lane.next(&c, t0 + Duration::from_secs(5));
        assert_eq!(t.map(|t| t.to.name()), Some("open"));
        assert!(
            matches!(
                step,
                Step::Defer {
                    why: DeferReason::CircuitOpen,
                    ..
                }
            ),
            "{step:?}"
        );
    }

    #[test]
    fn a_fast_endpoint_keeps_its_backlog() {
        let c = config(2, None);
        let t0 = Instant::now();
        let mut lane = loaded(&c, 1000, t0);
        for _ in 0..2 {
            let Step::Start(_) = lane.next(&c, t0).0 else {
                panic!("starts")
            };
        }
        lane.finished(true, true, t0 + Duration::from_millis(1));
        let Step::Start(_) = lane.next(&c, t0 + Duration::from_millis(1)).0 else {
            panic!("starts")
        };
        assert!(matches!(
            lane.next(&c, t0 + Duration::from_millis(1)).0,
            Step::Idle
        ));
        assert_eq!(
            lane.queued(),
            997,
            "1ms per request: everything starts within a second"
        );
    }

    #[test]
    fn stale_jobs_are_taken_back() {
        let c = config(1, None);
        let mut lane = Lane::new(&c);
        let t0 = Instant::now();
        lane.push(job(1), t0);
        lane.push(job(2), t0 + Duration::from_secs(3));
        let stale = lane.take_stale(Duration::from_secs(2), t0 + Duration::from_secs(4));
        assert_eq!(
            stale.iter().map(|j| j.delivery_id).collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(lane.queued(), 1);
    }
}
