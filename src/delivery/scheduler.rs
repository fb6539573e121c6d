//! A sender's scheduler: the lanes of the endpoints routed to it ([`Lane`]: queue, in-flight
//! cap, breaker, rate limiter), the request slots they share (`sender_concurrency`), and the
//! lanes waiting for a free slot, served in turn. Plain bookkeeping: every call returns the
//! [`Action`]s the sender actor carries out (start a request, hand jobs back, pause claims,
//! look again later, publish a breaker change).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use super::{
    lane::{Lane, LaneConfig, Step},
    DeferReason, Job,
};
use crate::breaker::Transition;

/// Lanes with nothing to do are forgotten after this long (their breaker state with them).
const LANE_IDLE_EXPIRY: Duration = Duration::from_secs(600);

/// What the sender must do.
#[derive(Debug)]
pub enum Action {
    /// Send this job (its request slot is taken).
    Start(Job),
    /// Back to the queue, due again after `after`, without using an attempt.
    GiveBack {
        jobs: Vec<Job>,
        after: Duration,
        why: DeferReason,
    },
    /// Tell the claimer not to claim for this endpoint until then.
    PauseClaims { endpoint: String, until: Instant },
    /// Call [`Scheduler::lane_due`] for this endpoint after this long (its rate limit).
    LookAgain { endpoint: String, after: Duration },
    /// An endpoint's breaker changed state.
    Circuit {
        endpoint: String,
        transition: Transition,
    },
}

pub struct Scheduler {
    lane: LaneConfig,
    /// Requests the sender may have open at once, across lanes.
    concurrency: usize,
    lanes: HashMap<String, Lane>,
    /// Lanes with work that wait for a free request slot, in arrival order.
    blocked: VecDeque<String>,
    blocked_set: HashSet<String>,
    /// Jobs whose request is under way, by delivery id.
    running: HashMap<i64, Job>,
}

impl Scheduler {
    pub fn new(lane: LaneConfig, concurrency: usize) -> Scheduler {
        Scheduler {
            lane,
            concurrency,
            lanes: HashMap::new(),
            blocked: VecDeque::new(),
            blocked_set: HashSet::new(),
            running: HashMap::new(),
        }
    }

    /// Requests under way.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Jobs waiting in lanes.
    pub fn queued(&self) -> usize {
        self.lanes.values().map(Lane::queued).sum()
    }

    /// New jobs, each to its endpoint's lane; starts what the lanes allow.
    pub fn dispatch(&mut self, jobs: Vec<Job>, now: Instant) -> Vec<Action> {
        let mut touched: Vec<String> = Vec::new();
        for job in jobs {
            let id = job.endpoint.id.clone();
            let config = &self.lane;
            self.lanes
                .entry(id.clone())
                .or_insert_with(|| Lane::new(config))
                .push(job, now);
            if !touched.contains(&id) {
                touched.push(id);
            }
        }
        let mut actions = Vec::new();
        for id in touched {
            self.pump(&id, now, &mut actions);
        }
        actions
    }

    /// The wait a [`Action::LookAgain`] asked for is over.
    pub fn lane_due(&mut self, endpoint: &str, now: Instant) -> Vec<Action> {
        if let Some(lane) = self.lanes.get_mut(endpoint) {
            lane.waiting = false;
        }
        let mut actions = Vec::new();
        self.pump(endpoint, now, &mut actions);
        actions
    }

    /// A started job's request ended (`attempted`: an HTTP attempt was made). Its slot goes
    /// to its own lane first, then to the lanes waiting for one, in turn.
    pub fn finished(
        &mut self,
        delivery_id: i64,
        endpoint: &str,
        attempted: bool,
        success: bool,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        self.running.remove(&delivery_id);
        if let Some(lane) = self.lanes.get_mut(endpoint) {
            if let Some(transition) = lane.finished(attempted, success, now) {
                actions.push(Action::Circuit {
                    endpoint: endpoint.to_string(),
                    transition,
                });
            }
        }
        self.pump(endpoint, now, &mut actions);
        self.pump_blocked(now, &mut actions);
        actions
    }

    /// Jobs that waited too long behind a saturated endpoint go back to the queue; lanes
    /// idle for long are forgotten; lanes at their cap are looked at again (their requests
    /// may have been hanging long enough to open the breaker).
    pub fn sweep(&mut self, now: Instant) -> Vec<Action> {
        let max_hold = self.lane.max_hold;
        let mut stale = Vec::new();
        self.lanes.retain(|_, lane| {
            stale.extend(lane.take_stale(max_hold, now));
            !(lane.is_idle() && now.duration_since(lane.last_active) > LANE_IDLE_EXPIRY)
        });
        let mut actions = Vec::new();
        if !stale.is_empty() {
            actions.push(Action::GiveBack {
                jobs: stale,
                after: max_hold,
                why: DeferReason::EndpointBusy,
            });
        }
        let cap = self.lane.concurrency;
        let busy: Vec<String> = self
            .lanes
            .iter()
            .filter(|(_, l)| l.in_flight >= cap)
            .map(|(id, _)| id.clone())
            .collect();
        for id in busy {
            self.pump(&id, now, &mut actions);
        }
        actions
    }

    /// Every queued job (shutdown): requests under way finish.
    pub fn drain(&mut self) -> Vec<Job> {
        self.lanes.values_mut().flat_map(|l| l.drain()).collect()
    }

    /// Every job, queued or under way, and every lane (a restart: the requests under way
    /// died with the old context).
    pub fn abandon(&mut self) -> Vec<Job> {
        let mut jobs: Vec<Job> = self.running.drain().map(|(_, job)| job).collect();
        jobs.extend(self.drain());
        self.lanes.clear();
        self.blocked.clear();
        self.blocked_set.clear();
        jobs
    }

    /// Starts what this endpoint's lane allows now.
    fn pump(&mut self, endpoint: &str, now: Instant, actions: &mut Vec<Action>) {
        loop {
            if self.running.len() >= self.concurrency {
                if self.lanes.get(endpoint).is_some_and(|l| l.queued() > 0)
                    && self.blocked_set.insert(endpoint.to_string())
                {
                    self.blocked.push_back(endpoint.to_string());
                }
                return;
            }
            let Some(lane) = self.lanes.get_mut(endpoint) else {
                return;
            };
            let (step, transition) = lane.next(&self.lane, now);
            if let Some(transition) = transition {
                actions.push(Action::Circuit {
                    endpoint: endpoint.to_string(),
                    transition,
                });
            }
            match step {
                Step::Start(job) => {
                    self.running.insert(job.delivery_id, job.clone());
                    actions.push(Action::Start(job));
                }
                Step::Idle => return,
                Step::Defer { jobs, after, why } => {
                    actions.push(Action::GiveBack { jobs, after, why });
                    if why.pauses_claims() {
                        actions.push(Action::PauseClaims {
                            endpoint: endpoint.to_string(),
                            until: now + after,
                        });
                    }
                }
                Step::WaitFor(wait) => {
                    if !lane.waiting {
                        lane.waiting = true;
                        actions.push(Action::LookAgain {
                            endpoint: endpoint.to_string(),
                            after: wait,
                        });
                    }
                    return;
                }
            }
        }
    }

    /// A request slot freed up: lanes that were waiting for one go first, in turn.
    fn pump_blocked(&mut self, now: Instant, actions: &mut Vec<Action>) {
        while self.running.len() < self.concurrency {
            let Some(id) = self.blocked.pop_front() else {
                return;
            };
            self.blocked_set.remove(&id);
            self.pump(&id, now, actions);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::fixtures::{job, lane_config as fixture_config};

    fn lane_config(per_endpoint: usize) -> LaneConfig {
        fixture_config(per_endpoint, None)
    }

    fn started(actions: &[Action]) -> Vec<i64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start(j) => Some(j.delivery_id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_lane_blocked_on_request_slots_starts_when_one_frees_up() {
        // One request slot for the whole sender.
        let mut s = Scheduler::new(lane_config(10), 1);
        let t0 = Instant::now();
        let first = s.dispatch(vec![job(1, "ep_a"), job(2, "ep_b")], t0);
        assert_eq!(started(&first), [1], "only one slot");
        assert_eq!((s.running(), s.queued()), (1, 1));
        // ep_a's request ends; ep_a has nothing more, so the blocked ep_b gets the slot.
        let next = s.finished(1, "ep_a", true, true, t0);
        assert_eq!(started(&next), [2]);
        assert_eq!((s.running(), s.queued()), (1, 0));
    }

    #[test]
    fn blocked_lanes_take_turns() {
        let mut s = Scheduler::new(lane_config(10), 1);
        let t0 = Instant::now();
        s.dispatch(vec![job(1, "ep_a"), job(2, "ep_a"), job(3, "ep_b")], t0);
        // ep_a's own next job goes first (its lane is pumped first), then ep_b, waiting.
        assert_eq!(started(&s.finished(1, "ep_a", true, true, t0)), [2]);
        assert_eq!(started(&s.finished(2, "ep_a", true, true, t0)), [3]);
    }

    #[test]
    fn an_endpoint_at_its_cap_does_not_hold_the_others_back() {
        let mut s = Scheduler::new(lane_config(1), 10);
        let t0 = Instant::now();
        let a = s.dispatch(vec![job(1, "ep_a"), job(2, "ep_a"), job(3, "ep_b")], t0);
        assert_eq!(
            started(&a),
            [1, 3],
            "ep_a holds one slot, ep_b still starts"
        );
    }

    #[test]
    fn an_opening_breaker_hands_jobs_back_and_pauses_claims() {
        let mut s = Scheduler::new(lane_config(10), 10);
        let t0 = Instant::now();
        s.dispatch(vec![job(1, "ep"), job(2, "ep")], t0);
        s.dispatch(vec![job(3, "ep")], t0);
        s.finished(1, "ep", true, false, t0);
        let actions = s.finished(2, "ep", true, false, t0);
        assert!(actions.iter().any(
            |a| matches!(a, Action::Circuit { transition, .. } if transition.to.name() == "open")
        ));
        // Job 3 started before the breaker opened; the next dispatch is handed back.
        let back = s.dispatch(vec![job(4, "ep")], t0);
        assert!(back.iter().any(|a| matches!(a, Action::GiveBack { why: DeferReason::CircuitOpen, jobs, .. } if jobs.len() == 1)));
        assert!(back
            .iter()
            .any(|a| matches!(a, Action::PauseClaims { endpoint, .. } if endpoint == "ep")));
    }

    #[test]
    fn a_restart_abandons_everything_queued_and_running() {
        let mut s = Scheduler::new(lane_config(1), 10);
        let t0 = Instant::now();
        s.dispatch(vec![job(1, "ep"), job(2, "ep"), job(3, "ep")], t0);
        let mut ids: Vec<i64> = s.abandon().iter().map(|j| j.delivery_id).collect();
        ids.sort();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!((s.running(), s.queued()), (0, 0));
    }
}
