//! What the unit tests of the delivery logic build their cases from.

use std::{sync::Arc, time::Duration};

use super::{lane::LaneConfig, Destination, Job};
use crate::breaker::BreakerConfig;

/// A lane allowing `concurrency` requests, at `rate` per second; its breaker opens after
/// two failures in a row and cools down for 30 s; jobs wait at most 2 s in memory.
pub fn lane_config(concurrency: usize, rate: Option<u32>) -> LaneConfig {
    LaneConfig {
        concurrency,
        default_rate: rate,
        max_hold: Duration::from_secs(2),
        slow_call: Duration::from_secs(5),
        breaker: BreakerConfig {
            consecutive_failures: 2,
            failure_ratio: 1.0,
            window: 10,
            min_requests: 10,
            cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(60),
        },
    }
}

/// Delivery `id` to `endpoint`, never attempted, without a payload.
pub fn job(id: i64, endpoint: &str) -> Job {
    Job {
        delivery_id: id,
        lease_token: uuid::Uuid::nil(),
        attempts: 0,
        manual: false,
        alerted: false,
        message_id: format!("msg_{id}"),
        event_type: "a".into(),
        payload: None,
        endpoint: Arc::new(Destination {
            id: endpoint.into(),
            url: "https://example.com".into(),
            disabled: false,
            rate_limit: None,
            headers: vec![],
            secrets: vec![],
            defect: None,
        }),
        forwarded: None,
        trace: None,
    }
}
