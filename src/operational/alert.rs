//! Which operational event a delivery's outcome, or a breaker's transition, is.

use super::EventType;
use crate::{
    breaker::{State, Transition},
    delivery::{Disposition, Outcome},
};

/// What recording an outcome emits, and whether its delivery counts as alerted afterwards
/// (a failing or exhausted event went out for it, so its next success is a recovery). The
/// statement that records it keeps `alerted` only if the event did go out (some
/// operational endpoint takes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterOutcome {
    pub event: Option<EventType>,
    pub alerted: bool,
}

/// The event of one outcome:
///
/// * `message.attempt.failing` when the attempt that failed is the `failing_after`th on the
///   delivery's current schedule (Svix sends it on the fourth; 0: never), so once per
///   schedule;
/// * `message.attempt.exhausted` when an attempt leaves the delivery dead (out of attempts,
///   or its receiver answered 410). A delivery that dies without an attempt (claimed while
///   its endpoint is disabled, its payload expunged) is not one: `endpoint.disabled`
///   already said so, once, rather than once per waiting delivery;
/// * `message.attempt.recovered` when a delivery that had one of those succeeds (after more
///   retries, or after a replay);
/// * nothing for an outcome without an attempt that leaves the delivery waiting (a
///   deferral).
pub fn after_outcome(o: &Outcome, failing_after: u32) -> AfterOutcome {
    let keep = AfterOutcome {
        event: None,
        alerted: o.alerted,
    };
    match &o.disposition {
        Disposition::Defer { .. } => keep,
        Disposition::Succeeded if o.alerted => AfterOutcome {
            event: Some(EventType::AttemptRecovered),
            alerted: false,
        },
        Disposition::Succeeded => keep,
        Disposition::Dead { .. } | Disposition::DisableEndpoint { .. } if o.attempt.is_some() => {
            AfterOutcome {
                event: Some(EventType::AttemptExhausted),
                alerted: true,
            }
        }
        Disposition::Dead { .. } | Disposition::DisableEndpoint { .. } => keep,
        Disposition::Retry { .. } => match &o.attempt {
            Some(a) if failing_after > 0 && a.attempt_no == failing_after as i32 => AfterOutcome {
                event: Some(EventType::AttemptFailing),
                alerted: true,
            },
            _ => keep,
        },
    }
}

/// The event of a breaker's transition: opened when it leaves closed, closed when it comes
/// back. A failed probe (half-open to open again) is the same outage: nothing.
pub fn circuit(t: &Transition) -> Option<EventType> {
    match (t.from, t.to) {
        (State::Closed, State::Open { .. }) => Some(EventType::CircuitOpened),
        (State::HalfOpen | State::Open { .. }, State::Closed) => Some(EventType::CircuitClosed),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use chrono::Utc;

    use super::*;
    use crate::delivery::{AttemptRecord, DeferReason};

    fn outcome(disposition: Disposition, attempt_no: Option<i32>, alerted: bool) -> Outcome {
        Outcome {
            delivery_id: 1,
            lease_token: uuid::Uuid::new_v4(),
            message_id: "msg_1".into(),
            endpoint_id: "ep_1".into(),
            alerted,
            attempt: attempt_no.map(|n| AttemptRecord {
                url: "https://example.com/".into(),
                attempt_no: n,
                started_at: Utc::now(),
                duration_ms: 1,
                status_code: Some(500),
                succeeded: false,
                manual: false,
                response: None,
                error: None,
            }),
            disposition,
        }
    }

    fn retry() -> Disposition {
        Disposition::Retry { at: Utc::now() }
    }

    fn event(o: &Outcome, failing_after: u32) -> Option<&'static str> {
        after_outcome(o, failing_after).event.map(EventType::name)
    }

    #[test]
    fn failing_is_emitted_once_per_schedule_at_the_threshold() {
        let events: Vec<_> = (1..=6)
            .map(|n| event(&outcome(retry(), Some(n), n > 4), 4))
            .collect();
        assert_eq!(
            events,
            [
                None,
                None,
                None,
                Some("message.attempt.failing"),
                None,
                None
            ]
        );
        let fourth = after_outcome(&outcome(retry(), Some(4), false), 4);
        assert!(fourth.alerted);
        // 0 turns it off.
        assert_eq!(event(&outcome(retry(), Some(4), false), 0), None);
    }

    #[test]
    fn a_delivery_its_attempts_leave_dead_is_exhausted() {
        for d in [
            Disposition::Dead {
                reason: "gave up after 7 attempts".into(),
            },
            Disposition::DisableEndpoint {
                reason: "receiver answered 410 Gone".into(),
            },
        ] {
            let after = after_outcome(&outcome(d.clone(), Some(7), false), 4);
            assert_eq!(after.event, Some(EventType::AttemptExhausted), "{d:?}");
            assert!(after.alerted);
        }
        // Dead without an attempt (its endpoint was disabled when it was claimed): the
        // endpoint's own event said so.
        let d = Disposition::Dead {
            reason: "endpoint is disabled".into(),
        };
        assert_eq!(event(&outcome(d, None, false), 4), None);
    }

    #[test]
    fn a_success_recovers_only_an_alerted_delivery_and_clears_it() {
        let after = after_outcome(&outcome(Disposition::Succeeded, Some(5), true), 4);
        assert_eq!(after.event, Some(EventType::AttemptRecovered));
        assert!(!after.alerted);
        let quiet = after_outcome(&outcome(Disposition::Succeeded, Some(2), false), 4);
        assert_eq!(
            quiet,
            AfterOutcome {
                event: None,
                alerted: false
            }
        );
    }

    #[test]
    fn a_deferral_changes_nothing() {
        for alerted in [false, true] {
            let d = Disposition::Defer {
                at: Utc::now(),
                why: DeferReason::CircuitOpen,
            };
            assert_eq!(
                after_outcome(&outcome(d, None, alerted), 4),
                AfterOutcome {
                    event: None,
                    alerted
                }
            );
        }
    }

    #[test]
    fn a_circuit_opens_and_closes_once_per_outage() {
        let open = State::Open {
            until: Instant::now(),
        };
        let t = |from, to| Transition {
            from,
            to,
            failures: 5,
        };
        assert_eq!(
            circuit(&t(State::Closed, open)),
            Some(EventType::CircuitOpened)
        );
        assert_eq!(circuit(&t(open, State::HalfOpen)), None);
        assert_eq!(circuit(&t(State::HalfOpen, open)), None);
        assert_eq!(
            circuit(&t(State::HalfOpen, State::Closed)),
            Some(EventType::CircuitClosed)
        );
    }
}
