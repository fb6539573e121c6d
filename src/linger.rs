//! How long a batch waits for company: the one policy of every batching point (the API's
//! group commit, the claimer, the recorder).
//!
//! Each of them writes with one statement per batch, and a statement's cost is mostly
//! fixed: at 1,000 messages/s a group-commit statement took 1.3 ms for 1.7 messages, an
//! outcome statement 0.95 ms for 3.8 outcomes (pg_stat_statements, `herald-bench latency`),
//! against about 60 µs of PostgreSQL time per message in bursts of hundreds. Batches grow by
//! themselves while a statement runs, but an item that finds its writer idle goes alone.
//!
//! So a writer that finds itself with a small batch asks [`Linger::wait`]: at the rate items
//! have been arriving lately, would waiting a little bring at least [`Linger::min_gain`]
//! more? Then it waits, up to `max_wait`, for as long as filling `target` would take. At low
//! rates the answer is no and nothing waits: latency at low load is unchanged. The rate is
//! an exponentially decaying count of arrivals (time constant [`HALF_LIFE`]), so it follows
//! a change of load within a fraction of a second.

use std::time::{Duration, Instant};

/// How fast the rate estimate forgets: arrivals this old weigh half.
pub const HALF_LIFE: Duration = Duration::from_millis(100);

/// The policy of one batching point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LingerPolicy {
    /// A batch this large goes at once.
    pub target: usize,
    /// Waiting never lasts longer than this (zero: never wait).
    pub max_wait: Duration,
    /// Wait only if at least this many more items are expected within `max_wait`.
    pub min_gain: f64,
}

/// A batching point's recent arrivals, and its decision to wait.
#[derive(Debug, Clone)]
pub struct Linger {
    policy: LingerPolicy,
    /// Decayed count of arrivals, as of `at`.
    level: f64,
    at: Option<Instant>,
}

impl Linger {
    pub fn new(policy: LingerPolicy) -> Linger {
        Linger {
            policy,
            level: 0.0,
            at: None,
        }
    }

    pub fn policy(&self) -> LingerPolicy {
        self.policy
    }

    /// `n` items arrived at `now`.
    pub fn arrived(&mut self, n: usize, now: Instant) {
        self.decay(now);
        self.level += n as f64;
    }

    /// Items per second lately, as of `now`.
    pub fn rate(&self, now: Instant) -> f64 {
        // A decayed count with half-life h is, in steady state, rate × h / ln 2.
        self.decayed(now) * std::f64::consts::LN_2 / HALF_LIFE.as_secs_f64()
    }

    /// How long a batch of `have` items should wait for more before it goes (`None`: go).
    pub fn wait(&self, have: usize, now: Instant) -> Option<Duration> {
        let p = self.policy;
        if have >= p.target || p.max_wait.is_zero() {
            return None;
        }
        let rate = self.rate(now);
        if rate * p.max_wait.as_secs_f64() < p.min_gain {
            return None;
        }
        let fill = (p.target - have) as f64 / rate;
        Some(Duration::from_secs_f64(fill).min(p.max_wait))
    }

    fn decayed(&self, now: Instant) -> f64 {
        match self.at {
            None => 0.0,
            Some(at) => {
                let age = now.saturating_duration_since(at).as_secs_f64();
                self.level * 0.5f64.powf(age / HALF_LIFE.as_secs_f64())
            }
        }
    }

    fn decay(&mut self, now: Instant) {
        self.level = self.decayed(now);
        self.at = Some(match self.at {
            Some(at) if at > now => at,
            _ => now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LingerPolicy {
        LingerPolicy {
            target: 32,
            max_wait: Duration::from_millis(2),
            min_gain: 2.0,
        }
    }

    /// A linger that has seen `rate` arrivals a second, one at a time, for a second.
    fn at_rate(rate: u32) -> (Linger, Instant) {
        let mut l = Linger::new(policy());
        let start = Instant::now();
        let step = Duration::from_secs(1) / rate;
        let mut t = start;
        for _ in 0..rate {
            t += step;
            l.arrived(1, t);
        }
        (l, t)
    }

    #[test]
    fn the_rate_follows_the_arrivals() {
        for rate in [100, 1000, 5000] {
            let (l, now) = at_rate(rate);
            let measured = l.rate(now);
            assert!(
                (measured - rate as f64).abs() < rate as f64 * 0.05,
                "{rate}/s measured as {measured}"
            );
        }
        // And forgets them: a second later it is about nothing.
        let (l, now) = at_rate(1000);
        assert!(l.rate(now + Duration::from_secs(1)) < 1.0);
    }

    #[test]
    fn at_low_rates_nothing_waits() {
        let (l, now) = at_rate(500);
        assert_eq!(l.wait(1, now), None, "500/s brings 1 more in 2 ms, not 2");
        assert_eq!(Linger::new(policy()).wait(1, Instant::now()), None);
    }

    #[test]
    fn at_high_rates_a_small_batch_waits_as_long_as_filling_takes_up_to_the_cap() {
        let (l, now) = at_rate(4000);
        let wait = l.wait(1, now).expect("4000/s brings 8 more in 2 ms");
        assert_eq!(
            wait,
            Duration::from_millis(2),
            "31 more take 7.75 ms: capped"
        );
        let (l, now) = at_rate(50_000);
        let wait = l.wait(2, now).unwrap();
        assert!(
            wait < Duration::from_micros(700) && wait > Duration::from_micros(500),
            "30 more at 50,000/s take 0.6 ms: {wait:?}"
        );
    }

    #[test]
    fn a_full_batch_or_no_wait_allowed_goes_at_once() {
        let (l, now) = at_rate(10_000);
        assert_eq!(l.wait(32, now), None);
        let mut off = Linger::new(LingerPolicy {
            max_wait: Duration::ZERO,
            ..policy()
        });
        off.arrived(1000, now);
        assert_eq!(off.wait(1, now), None);
    }
}
