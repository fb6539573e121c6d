//! Step 3: one HTTP POST with awc.
//!
//! Each sender owns one [`HttpSender`] (awc clients are single-threaded), so connections to a
//! destination are kept alive and reused by the sender its deliveries are routed to.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;

use super::classify::SendResult;
use crate::{
    destination::{GuardedResolver, Policy},
    retry::parse_retry_after,
};

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Bytes of the response body read and kept.
    pub body_limit: usize,
    /// Open connections one client may hold.
    pub max_connections: usize,
    pub policy: Arc<Policy>,
}

impl HttpSettings {
    pub fn from_settings(s: &crate::config::Settings) -> Self {
        HttpSettings {
            request_timeout: s.sending.request_timeout,
            connect_timeout: s.sending.connect_timeout,
            body_limit: s.sending.response_body_limit,
            max_connections: s.pool.sender_concurrency,
            policy: Arc::new(Policy::from_settings(s)),
        }
    }
}

pub struct HttpSender {
    client: awc::Client,
    settings: HttpSettings,
}

impl HttpSender {
    /// Must be called on the arbiter that will use it.
    pub fn new(settings: HttpSettings) -> Self {
        // Every new connection resolves through the guard and goes to a checked address.
        let resolver = actix_tls::connect::Resolver::custom(GuardedResolver {
            policy: settings.policy.clone(),
        });
        let connector = awc::Connector::new()
            .connector(actix_tls::connect::Connector::new(resolver).service())
            .timeout(settings.connect_timeout)
            .handshake_timeout(settings.connect_timeout)
            .limit(settings.max_connections)
            .conn_keep_alive(Duration::from_secs(30))
            .conn_lifetime(Duration::from_secs(300));
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(settings.request_timeout)
            // A 3xx is an answer, not an instruction: following it would let a receiver steer
            // Herald to any address.
            .disable_redirects()
            .no_default_headers()
            .finish();
        HttpSender { client, settings }
    }

    pub async fn send(&self, url: &str, headers: Vec<(String, String)>, body: Bytes) -> SendResult {
        // Literal addresses never reach the resolver, so the URL itself is checked too (and
        // the policy may have changed since the endpoint was created).
        if let Err(refusal) = self.settings.policy.check_url(url) {
            return SendResult::Failed {
                error: refusal.to_string(),
            };
        }
        let mut request = self.client.post(url);
        for (name, value) in headers {
            request = request.insert_header((name, value));
        }
        let mut response = match request.send_body(body).await {
            Ok(r) => r,
            Err(awc::error::SendRequestError::Timeout) => {
                return SendResult::Failed {
                    error: format!(
                        "timeout: no response within {}",
                        humantime::format_duration(self.settings.request_timeout)
                    ),
                }
            }
            Err(e) => {
                return SendResult::Failed {
                    error: e.to_string(),
                }
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let body = read_bounded(
            &mut response,
            self.settings.body_limit,
            self.settings.request_timeout,
        )
        .await;
        SendResult::Answered {
            status,
            retry_after,
            body,
        }
    }
}

/// Reads at most `limit` bytes of the body, within `deadline`; the rest is never read, so a
/// receiver cannot make Herald buffer or wait for an endless answer.
async fn read_bounded<S>(
    response: &mut awc::ClientResponse<S>,
    limit: usize,
    deadline: Duration,
) -> String
where
    S: futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
{
    let mut buf = Vec::with_capacity(limit.min(1024));
    let read = async {
        while buf.len() < limit {
            match response.next().await {
                Some(Ok(chunk)) => {
                    let take = (limit - buf.len()).min(chunk.len());
                    buf.extend_from_slice(&chunk[..take]);
                }
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(deadline, read).await;
    String::from_utf8_lossy(&buf).into_owned()
}
