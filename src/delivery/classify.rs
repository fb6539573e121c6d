//! What an HTTP answer (or the lack of one) means for a delivery.

use std::time::Duration;

/// The answer to one attempt, as far as it got.
#[derive(Debug)]
pub enum SendResult {
    Answered {
        status: u16,
        /// Parsed `Retry-After`, if the receiver sent one.
        retry_after: Option<Duration>,
        /// The body, truncated to the configured bound.
        body: String,
    },
    /// No answer: the kind of failure, worded for the attempt log.
    Failed { error: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Delivered,
    /// 410 Gone: the receiver asks us to stop. The endpoint is disabled.
    Gone,
    /// 429 or 503: back off, for as long as the receiver asked if it said.
    Throttled { retry_after: Option<Duration> },
    /// Anything else: 3xx (redirects are not followed), 4xx, 5xx, timeouts, connection errors.
    Failed,
}

pub fn classify(result: &SendResult) -> Verdict {
    match result {
        SendResult::Answered {
            status,
            retry_after,
            ..
        } => match *status {
            200..=299 => Verdict::Delivered,
            410 => Verdict::Gone,
            429 | 503 => Verdict::Throttled {
                retry_after: *retry_after,
            },
            _ => Verdict::Failed,
        },
        SendResult::Failed { .. } => Verdict::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, retry_after: Option<u64>) -> SendResult {
        SendResult::Answered {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: String::new(),
        }
    }

    #[test]
    fn status_table() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(classify(&answered(s, None)), Verdict::Delivered, "{s}");
        }
        for s in [
            100, 301, 302, 304, 307, 308, 400, 401, 403, 404, 409, 422, 500, 502, 504,
        ] {
            assert_eq!(classify(&answered(s, None)), Verdict::Failed, "{s}");
        }
        assert_eq!(classify(&answered(410, None)), Verdict::Gone);
        assert_eq!(
            classify(&answered(429, Some(7))),
            Verdict::Throttled {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            classify(&answered(503, None)),
            Verdict::Throttled { retry_after: None }
        );
        let timeout = SendResult::Failed {
            error: "timeout".into(),
        };
        assert_eq!(classify(&timeout), Verdict::Failed);
    }
}
