//! The claimer's in-flight budget: how many leases this instance holds (in all, and per
//! endpoint), which endpoints not to claim for (paused by their sender, or at their cap),
//! and so how big the next claim may be. Plain bookkeeping: the claimer actor asks it what
//! to claim and tells it what was leased and settled.
//!
//! Holding at most `max` leases turns a slow receiver or a slow database into back-pressure
//! instead of leases expiring in a queue; the per-endpoint cap keeps one slow endpoint from
//! taking the whole budget.

use std::{collections::HashMap, rc::Rc, time::Instant};

/// What the next claim may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPlan {
    /// Rows at most.
    pub limit: usize,
    /// Endpoints whose deliveries to leave alone (paused, or at their cap).
    pub skip: Vec<String>,
    /// When the first pause that is leaving deliveries behind ends: nothing else wakes the
    /// claimer for them then.
    pub resume_at: Option<Instant>,
}

pub struct InFlightBudget {
    max: usize,
    per_endpoint_max: usize,
    /// Leases held: when each expires, and its endpoint.
    leased: HashMap<i64, (Instant, Rc<str>)>,
    per_endpoint: HashMap<Rc<str>, usize>,
    /// Endpoints not to claim for, until when.
    paused: HashMap<String, Instant>,
}

impl InFlightBudget {
    pub fn new(max: usize, per_endpoint_max: usize) -> InFlightBudget {
        InFlightBudget {
            max,
            per_endpoint_max,
            leased: HashMap::new(),
            per_endpoint: HashMap::new(),
            paused: HashMap::new(),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.leased.len()
    }

    /// The next claim of at most `batch` rows, or `None` while the budget is spent (a
    /// settlement makes room). Leases past their expiry are forgotten first: their sender
    /// died, and the reaper returns them to the queue.
    pub fn plan(&mut self, batch: usize, now: Instant) -> Option<ClaimPlan> {
        let expired: Vec<i64> = self
            .leased
            .iter()
            .filter(|(_, (expires, _))| *expires <= now)
            .map(|(id, _)| *id)
            .collect();
        self.release(&expired);
        let room = self.max.saturating_sub(self.leased.len());
        if room == 0 {
            return None;
        }
        self.paused.retain(|_, until| *until > now);
        let resume_at = self.paused.values().copied().min();
        let full = self
            .per_endpoint
            .iter()
            .filter(|(_, n)| **n >= self.per_endpoint_max)
            .map(|(e, _)| e.to_string());
        let skip = self.paused.keys().cloned().chain(full).collect();
        Some(ClaimPlan {
            limit: room.min(batch),
            skip,
            resume_at,
        })
    }

    /// These deliveries were leased until `expires`, each to its endpoint.
    pub fn leased<'a>(
        &mut self,
        leases: impl IntoIterator<Item = (i64, &'a str)>,
        expires: Instant,
    ) {
        for (id, endpoint) in leases {
            let endpoint: Rc<str> = match self.per_endpoint.get_key_value(endpoint) {
                Some((k, _)) => k.clone(),
                None => Rc::from(endpoint),
            };
            *self.per_endpoint.entry(endpoint.clone()).or_default() += 1;
            self.leased.insert(id, (expires, endpoint));
        }
    }

    /// These leases are no longer ours (their outcome is written, or they expired). Returns
    /// whether the budget, or an endpoint's share of it, was spent before: then a claim
    /// may go again.
    pub fn release(&mut self, ids: &[i64]) -> bool {
        let was_full = self.leased.len() >= self.max
            || self
                .per_endpoint
                .values()
                .any(|n| *n >= self.per_endpoint_max);
        for id in ids {
            if let Some((_, endpoint)) = self.leased.remove(id) {
                if let Some(n) = self.per_endpoint.get_mut(&endpoint) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_endpoint.remove(&endpoint);
                    }
                }
            }
        }
        was_full
    }

    /// Do not claim for `endpoint` until `until` (a pause already running ends at the later
    /// of the two).
    pub fn pause(&mut self, endpoint: String, until: Instant) {
        let end = self.paused.entry(endpoint).or_insert(until);
        *end = (*end).max(until);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_paused_endpoint_is_skipped_until_its_pause_ends() {
        let mut b = InFlightBudget::new(100, 10);
        let t0 = Instant::now();
        b.pause("ep_a".into(), t0 + 2 * S);
        b.pause("ep_a".into(), t0 + S); // an earlier end does not shorten it
        b.pause("ep_b".into(), t0 + 3 * S);
        let plan = b.plan(50, t0).unwrap();
        let mut skip = plan.skip.clone();
        skip.sort();
        assert_eq!(skip, ["ep_a", "ep_b"]);
        assert_eq!(plan.resume_at, Some(t0 + 2 * S), "the first pause to end");
        let later = b.plan(50, t0 + 2 * S).unwrap();
        assert_eq!(later.skip, ["ep_b"], "ep_a resumed");
        assert!(b.plan(50, t0 + 3 * S).unwrap().skip.is_empty());
    }

    #[test]
    fn an_endpoint_at_its_cap_is_skipped_until_a_release() {
        let mut b = InFlightBudget::new(100, 2);
        let t0 = Instant::now();
        b.leased(
            [(1, "ep_slow"), (2, "ep_slow"), (3, "ep_fast")],
            t0 + 60 * S,
        );
        let plan = b.plan(50, t0).unwrap();
        assert_eq!((plan.skip, plan.limit), (vec!["ep_slow".to_string()], 50));
        assert!(b.release(&[1]), "ep_slow was at its cap: claim again");
        assert!(b.plan(50, t0).unwrap().skip.is_empty());
        assert!(!b.release(&[3]), "nothing was full");
    }

    #[test]
    fn a_spent_budget_waits_for_settlements_and_limits_the_claim() {
        let mut b = InFlightBudget::new(3, 10);
        let t0 = Instant::now();
        assert_eq!(b.plan(500, t0).unwrap().limit, 3, "room, not the batch");
        b.leased([(1, "ep"), (2, "ep"), (3, "ep")], t0 + 60 * S);
        assert_eq!(b.plan(500, t0), None);
        assert!(b.release(&[2]));
        assert_eq!(b.plan(500, t0).unwrap().limit, 1);
        assert_eq!(b.in_flight(), 2);
    }

    #[test]
    fn leases_of_a_claim_cut_short_are_released_when_they_expire() {
        // A sender died with these: no outcome ever comes back for them.
        let mut b = InFlightBudget::new(2, 10);
        let t0 = Instant::now();
        b.leased([(1, "ep"), (2, "ep")], t0 + 60 * S);
        assert_eq!(b.plan(10, t0 + 59 * S), None);
        let plan = b.plan(10, t0 + 60 * S).unwrap();
        assert_eq!((plan.limit, b.in_flight()), (2, 0));
        assert!(!b.release(&[1, 2]), "already released: nothing changes");
    }
}
