//! When to try again: the retry schedule with jitter, and `Retry-After` within bounds.
//!
//! The schedule is an explicit list of delays (operators think in "5 minutes, then 30", not in
//! exponential bases); jitter spreads the retries of a burst so that a receiver coming back
//! up is not hit by every failed delivery in the same second.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
    jitter: f64,
    retry_after_min: Duration,
    retry_after_max: Duration,
}

/// What happens to a delivery after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NextStep {
    /// Try again after this delay.
    RetryIn(Duration),
    /// Out of attempts: the delivery is dead (kept and replayable).
    GiveUp,
}

impl RetryPolicy {
    pub fn new(
        schedule: Vec<Duration>,
        jitter: f64,
        retry_after_min: Duration,
        retry_after_max: Duration,
    ) -> Self {
        RetryPolicy {
            schedule,
            jitter: jitter.clamp(0.0, 0.99),
            retry_after_min,
            retry_after_max,
        }
    }

    pub fn from_settings(s: &crate::config::Settings) -> Self {
        Self::new(
            s.retries.schedule.clone(),
            s.retries.jitter,
            s.retries.retry_after_min,
            s.retries.retry_after_max,
        )
    }

    /// Total attempts a delivery gets: the first one plus one per scheduled retry.
    pub fn max_attempts(&self) -> u32 {
        self.schedule.len() as u32 + 1
    }

    /// After the `attempts_made`-th failed attempt (1-based), with an optional `Retry-After`
    /// from the receiver.
    pub fn after_failure(&self, attempts_made: u32, retry_after: Option<Duration>) -> NextStep {
        let Some(base) = self.schedule.get(attempts_made.saturating_sub(1) as usize) else {
            return NextStep::GiveUp;
        };
        match retry_after {
            Some(asked) => {
                NextStep::RetryIn(asked.clamp(self.retry_after_min, self.retry_after_max))
            }
            None => NextStep::RetryIn(self.jittered(*base)),
        }
    }

    fn jittered(&self, base: Duration) -> Duration {
        if self.jitter == 0.0 {
            return base;
        }
        let factor = rand::thread_rng().gen_range(1.0 - self.jitter..=1.0 + self.jitter);
        base.mul_f64(factor)
    }
}

/// Parses a `Retry-After` value: delay-seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn policy(jitter: f64) -> RetryPolicy {
        RetryPolicy::new(
            vec![secs(5), secs(300), secs(1800)],
            jitter,
            secs(1),
            secs(3600),
        )
    }

    #[test]
    fn follows_the_schedule_then_gives_up() {
        let p = policy(0.0);
        assert_eq!(p.max_attempts(), 4);
        assert_eq!(p.after_failure(1, None), NextStep::RetryIn(secs(5)));
        assert_eq!(p.after_failure(2, None), NextStep::RetryIn(secs(300)));
        assert_eq!(p.after_failure(3, None), NextStep::RetryIn(secs(1800)));
        assert_eq!(p.after_failure(4, None), NextStep::GiveUp);
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let p = policy(0.2);
        let delays: Vec<Duration> = (0..200)
            .map(|_| match p.after_failure(2, None) {
                NextStep::RetryIn(d) => d,
                NextStep::GiveUp => panic!("attempt 2 has a retry"),
            })
            .collect();
        assert!(delays.iter().all(|d| *d >= secs(240) && *d <= secs(360)));
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "jitter must vary the delay"
        );
    }

    #[test]
    fn retry_after_is_bounded_but_never_extends_attempts() {
        let p = policy(0.2);
        assert_eq!(
            p.after_failure(1, Some(secs(0))),
            NextStep::RetryIn(secs(1))
        );
        assert_eq!(
            p.after_failure(1, Some(secs(120))),
            NextStep::RetryIn(secs(120))
        );
        assert_eq!(
            p.after_failure(1, Some(secs(86400))),
            NextStep::RetryIn(secs(3600))
        );
        assert_eq!(p.after_failure(4, Some(secs(10))), NextStep::GiveUp);
    }

    #[test]
    fn parses_both_retry_after_forms() {
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("120", now), Some(secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(secs(0))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
