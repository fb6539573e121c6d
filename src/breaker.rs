//! A circuit breaker for one endpoint.
//!
//! Closed: requests flow; the outcomes of the last `window` attempts are remembered. It
//! opens after `consecutive_failures` failures in a row, or when at least `min_requests`
//! outcomes are known and the failure ratio reaches `failure_ratio`. Open: nothing is sent
//! until the cool-down ends (deliveries are deferred, not failed). Then half-open: exactly
//! one probe goes through; success closes the breaker, failure re-opens it with a doubled
//! cool-down (up to `max_cooldown`), so a receiver that stays down is asked less and less.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

#[derive(Debug, Clone)]
pub struct BreakerConfig {
    pub consecutive_failures: u32,
    pub failure_ratio: f64,
    pub window: usize,
    pub min_requests: usize,
    pub cooldown: Duration,
    pub max_cooldown: Duration,
}

impl BreakerConfig {
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        BreakerConfig {
            consecutive_failures: s.breaker.failures,
            failure_ratio: s.breaker.failure_ratio,
            window: s.breaker.window,
            min_requests: s.breaker.window.div_ceil(2),
            cooldown: s.breaker.cooldown,
            max_cooldown: s.breaker.max_cooldown,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// May a request go now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// The one request of the half-open state.
    Probe,
    /// Not before this long.
    Wait(Duration),
}

/// A change of state, to be logged and published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// Consecutive failures when it happened.
    pub failures: u32,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
    consecutive: u32,
    recent: VecDeque<bool>,
    /// Openings since the last close: doubles the cool-down.
    reopenings: u32,
    probe_in_flight: bool,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            state: State::Closed,
            consecutive: 0,
            recent: VecDeque::new(),
            reopenings: 0,
            probe_in_flight: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn admit(&mut self, now: Instant) -> (Admit, Option<Transition>) {
        match self.state {
            State::Closed => (Admit::Go, None),
            State::Open { until } if now < until => (Admit::Wait(until - now), None),
            State::Open { .. } => {
                let t = self.move_to(State::HalfOpen);
                self.probe_in_flight = true;
                (Admit::Probe, t)
            }
            State::HalfOpen if self.probe_in_flight => (Admit::Wait(Duration::from_secs(1)), None),
            State::HalfOpen => {
                self.probe_in_flight = true;
                (Admit::Probe, None)
            }
        }
    }

    /// Opens the breaker now (requests are hanging: waiting for their timeouts would only
    /// let more pile up behind them). Only from closed.
    pub fn trip(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            State::Closed => self.open(now),
            _ => None,
        }
    }

    pub fn slow_calls(&self) -> u32 {
        self.config.consecutive_failures
    }

    /// Records an attempt's outcome.
    pub fn record(&mut self, success: bool, now: Instant) -> Option<Transition> {
        if success {
            self.consecutive = 0;
        } else {
            self.consecutive += 1;
        }
        self.recent.push_back(success);
        while self.recent.len() > self.config.window {
            self.recent.pop_front();
        }
        match self.state {
            State::HalfOpen => {
                self.probe_in_flight = false;
                if success {
                    self.reopenings = 0;
                    self.recent.clear();
                    self.move_to(State::Closed)
                } else {
                    self.open(now)
                }
            }
            State::Closed if !success && self.should_open() => self.open(now),
            // Late outcomes of requests sent before it opened change nothing.
            _ => None,
        }
    }

    fn should_open(&self) -> bool {
        if self.consecutive >= self.config.consecutive_failures {
            return true;
        }
        let n = self.recent.len();
        let failures = self.recent.iter().filter(|ok| !**ok).count();
        n >= self.config.min_requests && failures as f64 >= self.config.failure_ratio * n as f64
    }

    fn open(&mut self, now: Instant) -> Option<Transition> {
        let factor = 2u32.saturating_pow(self.reopenings.min(16));
        let cooldown = self
            .config
            .cooldown
            .saturating_mul(factor)
            .min(self.config.max_cooldown);
        self.reopenings += 1;
        self.move_to(State::Open {
            until: now + cooldown,
        })
    }

    fn move_to(&mut self, to: State) -> Option<Transition> {
        let from = std::mem::replace(&mut self.state, to);
        Some(Transition {
            from,
            to,
            failures: self.consecutive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            failure_ratio: 0.5,
            window: 10,
            min_requests: 6,
            cooldown: Duration::from_secs(10),
            max_cooldown: Duration::from_secs(25),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_then_probes_and_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        assert_eq!(b.record(false, t0), None);
        assert_eq!(b.record(false, t0), None);
        let opened = b.record(false, t0).unwrap();
        assert_eq!(
            (opened.from, opened.to),
            (
                State::Closed,
                State::Open {
                    until: t0 + Duration::from_secs(10)
                }
            )
        );
        assert_eq!(
            b.admit(t0 + Duration::from_secs(4)).0,
            Admit::Wait(Duration::from_secs(6))
        );
        let (admit, t) = b.admit(t0 + Duration::from_secs(10));
        assert_eq!(
            (admit, t.map(|t| t.to)),
            (Admit::Probe, Some(State::HalfOpen))
        );
        assert!(
            matches!(b.admit(t0 + Duration::from_secs(10)).0, Admit::Wait(_)),
            "one probe at a time"
        );
        let closed = b.record(true, t0 + Duration::from_secs(11)).unwrap();
        assert_eq!(closed.to, State::Closed);
        assert_eq!(b.admit(t0 + Duration::from_secs(11)).0, Admit::Go);
    }

    #[test]
    fn a_failed_probe_reopens_with_a_longer_cooldown_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        for _ in 0..3 {
            b.record(false, t0);
        }
        for expected in [20, 25, 25] {
            let State::Open { until } = b.state() else {
                panic!("open")
            };
            let now = until;
            assert_eq!(b.admit(now).0, Admit::Probe);
            let t = b.record(false, now).unwrap();
            assert_eq!(
                t.to,
                State::Open {
                    until: now + Duration::from_secs(expected)
                }
            );
        }
    }

    #[test]
    fn opens_on_failure_ratio_without_a_streak() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        for ok in [true, false, true, false, true, false] {
            assert_eq!(b.state(), State::Closed);
            b.record(ok, t0);
        }
        assert!(
            matches!(b.state(), State::Open { .. }),
            "3 of 6 failed: 50%"
        );
    }

    #[test]
    fn trip_opens_only_a_closed_breaker() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        assert_eq!(
            b.trip(t0).map(|t| t.to),
            Some(State::Open {
                until: t0 + Duration::from_secs(10)
            })
        );
        assert_eq!(b.trip(t0), None);
    }

    #[test]
    fn late_outcomes_while_open_change_nothing() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        for _ in 0..3 {
            b.record(false, t0);
        }
        let open = b.state();
        assert_eq!(b.record(true, t0), None);
        assert_eq!(b.state(), open);
    }
}
