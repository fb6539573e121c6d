//! The steps around the HTTP call: prepare, sign, decide, and the whole run of one job.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use rand::Rng;

use super::{
    classify::{classify, SendResult, Verdict},
    http::HttpSender,
    AttemptRecord, Disposition, Job, Outcome,
};
use crate::{retry::NextStep, retry::RetryPolicy, signing};

pub const USER_AGENT: &str = concat!("Herald/", env!("CARGO_PKG_VERSION"));

/// Headers a user may not set on an endpoint: Herald owns them.
pub const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "transfer-encoding",
    "connection",
];

/// Step 1: can this job be sent at all? Returns the body to send, or why not.
pub fn prepare(job: &Job) -> Result<&Bytes, Disposition> {
    if job.endpoint.disabled {
        return Err(Disposition::Dead {
            reason: "endpoint is disabled".into(),
        });
    }
    job.payload.as_ref().ok_or_else(|| Disposition::Dead {
        reason: "payload was expunged".into(),
    })
}

/// Step 2: the headers of this attempt, signed with every valid secret. The timestamp (and so
/// the signature) is new on every attempt; the id and body never change.
pub fn sign(job: &Job, body: &[u8], timestamp: i64) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = job
        .endpoint
        .headers
        .iter()
        .filter(|(k, _)| !RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()))
        .cloned()
        .collect();
    let signature =
        signing::signature_header(&job.endpoint.secrets, &job.message_id, timestamp, body);
    let content_type = match &job.forwarded {
        // An inbound event: the provider's headers (under their prefix) and content type.
        Some(f) => {
            headers.extend(f.headers.iter().cloned());
            f.content_type.clone()
        }
        None => "application/json".into(),
    };
    headers.extend([
        ("content-type".into(), content_type),
        ("user-agent".into(), USER_AGENT.into()),
        ("webhook-id".into(), job.message_id.clone()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        ("webhook-signature".into(), signature),
    ]);
    headers
}

/// Step 5: from the verdict to what becomes of the delivery.
pub fn decide(
    verdict: Verdict,
    attempts_made: u32,
    policy: &RetryPolicy,
    status: Option<u16>,
) -> Disposition {
    let retry =
        |retry_after: Option<Duration>| match policy.after_failure(attempts_made, retry_after) {
            NextStep::RetryIn(delay) => Disposition::Retry {
                at: Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
            },
            NextStep::GiveUp => Disposition::Dead {
                reason: format!("gave up after {attempts_made} attempts"),
            },
        };
    match verdict {
        Verdict::Delivered => Disposition::Succeeded,
        Verdict::Gone => Disposition::DisableEndpoint {
            reason: format!("receiver answered {} Gone", status.unwrap_or(410)),
        },
        Verdict::Throttled { retry_after } => retry(retry_after),
        Verdict::Failed => retry(None),
    }
}

/// Runs every step for one job. Never fails: every problem becomes an [`Outcome`].
/// `traceparent`: this attempt's trace context, sent to the receiver (not signed).
pub async fn deliver(
    job: &Job,
    http: &HttpSender,
    policy: &RetryPolicy,
    fault_panic_one_in: u64,
    traceparent: Option<&str>,
) -> Outcome {
    let body = match prepare(job) {
        Ok(body) => body.clone(),
        Err(disposition) => return Outcome::without_attempt(job, disposition),
    };
    let started_at = Utc::now();
    let mut headers = sign(job, &body, started_at.timestamp());
    if let Some(traceparent) = traceparent {
        // Herald's context, not an endpoint's custom header of the same name.
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case("traceparent"));
        headers.push(("traceparent".into(), traceparent.into()));
    }

    if fault_panic_one_in > 0 && rand::thread_rng().gen_range(0..fault_panic_one_in) == 0 {
        panic!(
            "injected fault (HERALD_FAULT_PANIC_ONE_IN) in delivery {}",
            job.delivery_id
        );
    }

    let clock = Instant::now();
    // An endpoint row Herald cannot use fails this attempt without a request, like a
    // refused destination: logged, and retried on the schedule.
    let result = match &job.endpoint.defect {
        Some(defect) => SendResult::Failed {
            error: format!("cannot send: {defect}"),
        },
        None => http.send(&job.endpoint.url, headers, body).await,
    };
    let duration_ms = clock.elapsed().as_millis().min(i32::MAX as u128) as i32;

    let verdict = classify(&result);
    let attempts_made = job.attempts.max(0) as u32 + 1;
    let (status_code, response, error) = match result {
        SendResult::Answered { status, body, .. } => (Some(status), Some(body), None),
        SendResult::Failed { error } => (None, None, Some(error)),
    };
    let disposition = decide(verdict, attempts_made, policy, status_code);
    Outcome {
        delivery_id: job.delivery_id,
        lease_token: job.lease_token,
        message_id: job.message_id.clone(),
        endpoint_id: job.endpoint.id.clone(),
        alerted: job.alerted,
        attempt: Some(AttemptRecord {
            url: job.endpoint.url.clone(),
            attempt_no: attempts_made as i32,
            started_at,
            duration_ms,
            status_code,
            succeeded: verdict == Verdict::Delivered,
            manual: job.manual,
            response,
            error,
        }),
        disposition,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{delivery::Destination, signing::Secret};

    fn job(secret: &Secret) -> Job {
        Job {
            delivery_id: 1,
            lease_token: uuid::Uuid::new_v4(),
            attempts: 0,
            manual: false,
            alerted: false,
            message_id: "msg_1".into(),
            event_type: "payment.confirmed".into(),
            payload: Some(Bytes::from_static(b"{\"a\":1}")),
            endpoint: Arc::new(Destination {
                id: "ep_1".into(),
                url: "https://example.com/hook".into(),
                disabled: false,
                rate_limit: None,
                headers: vec![
                    ("X-Tenant".into(), "acme".into()),
                    ("Webhook-Signature".into(), "forged".into()),
                ],
                secrets: vec![secret.clone()],
                defect: None,
            }),
            forwarded: None,
            trace: None,
        }
    }

    #[test]
    fn a_forwarded_event_carries_the_providers_headers_and_content_type() {
        let secret = Secret::generate();
        let mut j = job(&secret);
        j.forwarded = Some(Box::new(crate::delivery::Forwarded {
            headers: vec![(
                "x-herald-original-stripe-signature".into(),
                "t=1,v1=ab".into(),
            )],
            content_type: "application/x-www-form-urlencoded".into(),
        }));
        let h = sign(&j, b"a=1", 1);
        let get = |name: &str| h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(
            get("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(get("x-herald-original-stripe-signature"), Some("t=1,v1=ab"));
        assert!(
            get("webhook-signature").is_some(),
            "signed by Herald as any delivery"
        );
    }

    #[test]
    fn sign_sets_standard_headers_and_keeps_custom_ones() {
        let secret = Secret::generate();
        let j = job(&secret);
        let headers = sign(&j, b"{\"a\":1}", 1700000000);
        let get = |name: &str| {
            headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("webhook-id"), vec!["msg_1"]);
        assert_eq!(get("webhook-timestamp"), vec!["1700000000"]);
        assert_eq!(
            get("webhook-signature"),
            vec![secret.sign("msg_1", 1700000000, b"{\"a\":1}").as_str()]
        );
        assert_eq!(get("x-tenant"), vec!["acme"]);
        assert_eq!(get("content-type"), vec!["application/json"]);
    }

    #[test]
    fn prepare_refuses_what_cannot_be_sent() {
        let secret = Secret::generate();
        let mut j = job(&secret);
        assert!(prepare(&j).is_ok());
        j.payload = None;
        assert!(matches!(prepare(&j), Err(Disposition::Dead { .. })));
    }

    #[test]
    fn decide_maps_verdicts() {
        let p = RetryPolicy::new(
            vec![Duration::from_secs(5)],
            0.0,
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        assert_eq!(
            decide(Verdict::Delivered, 1, &p, Some(200)),
            Disposition::Succeeded
        );
        assert!(matches!(
            decide(Verdict::Gone, 1, &p, Some(410)),
            Disposition::DisableEndpoint { .. }
        ));
        match decide(Verdict::Failed, 1, &p, Some(500)) {
            Disposition::Retry { at } => {
                let d = (at - Utc::now()).num_milliseconds();
                assert!((4000..=5000).contains(&d), "{d}");
            }
            other => panic!("{other:?}"),
        }
        match decide(
            Verdict::Throttled {
                retry_after: Some(Duration::from_secs(30)),
            },
            1,
            &p,
            Some(429),
        ) {
            Disposition::Retry { at } => assert!((at - Utc::now()).num_seconds() >= 29),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(Verdict::Failed, 2, &p, None),
            Disposition::Dead { .. }
        ));
    }
}
