//! Slack: `X-Slack-Signature: v0=<hex>`, HMAC-SHA256 with the signing secret of
//! `v0:{X-Slack-Request-Timestamp}:{body}`, within the tolerance. A `url_verification`
//! request is answered with its challenge and not forwarded. The event is the body's
//! `event_id`, of type `event.type` (`type` when there is no event).

use super::{hex, hmac_sha256, Verified};
use crate::ingest::{
    request::{fresh, json_field, same, Inbound, Refusal},
    source::SecretConfig,
};

pub fn verify(
    c: &SecretConfig,
    req: &Inbound,
    now: i64,
    tolerance: u64,
) -> Result<Verified, Refusal> {
    const SIGNATURE: &str = "x-slack-signature";
    const TIMESTAMP: &str = "x-slack-request-timestamp";
    let given = req.required(SIGNATURE)?;
    let timestamp = req.required(TIMESTAMP)?;
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| Refusal::MalformedHeader(TIMESTAMP.into()))?;
    let given = given
        .strip_prefix("v0=")
        .ok_or_else(|| Refusal::MalformedHeader(SIGNATURE.into()))?;
    let expected = hex(&hmac_sha256(
        c.secret.trim().as_bytes(),
        &[b"v0:", timestamp.as_bytes(), b":", &req.body],
    ));
    if !same(given.as_bytes(), expected.as_bytes()) {
        return Err(Refusal::BadSignature);
    }
    fresh(ts, now, tolerance)?;
    let body = req.json();
    let field = |name| body.as_ref().and_then(|b| json_field(b, name));
    if field("type").as_deref() == Some("url_verification") {
        return Ok(Verified {
            event_key: None,
            event_type: "url_verification".into(),
            authenticated: true,
            handshake: Some(serde_json::json!({ "challenge": field("challenge") })),
        });
    }
    Ok(Verified {
        event_key: field("event_id"),
        event_type: field("event.type")
            .or_else(|| field("type"))
            .unwrap_or_else(|| "slack".into()),
        authenticated: true,
        handshake: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn signed(secret: &str, ts: &str, body: &str) -> Inbound {
        let sig = hex(&hmac_sha256(
            secret.as_bytes(),
            &[b"v0:", ts.as_bytes(), b":", body.as_bytes()],
        ));
        Inbound::new(
            [
                ("X-Slack-Signature".to_string(), format!("v0={sig}")),
                ("X-Slack-Request-Timestamp".to_string(), ts.to_string()),
            ],
            Bytes::from(body.to_string()),
        )
    }

    #[test]
    fn events_handshakes_and_stale_requests() {
        let c = SecretConfig {
            secret: "8f742231b10e8888abcd99yyyzzz85a5".into(),
            tolerance_seconds: None,
        };
        let body = r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#;
        let v = verify(&c, &signed(&c.secret, "1531420618", body), 1531420618, 300).unwrap();
        assert_eq!(
            (v.event_key.as_deref(), v.event_type.as_str()),
            (Some("Ev1"), "app_mention")
        );
        let hs = verify(
            &c,
            &signed(
                &c.secret,
                "1531420618",
                r#"{"type":"url_verification","challenge":"abc"}"#,
            ),
            1531420618,
            300,
        )
        .unwrap();
        assert_eq!(hs.handshake, Some(serde_json::json!({"challenge": "abc"})));
        assert_eq!(
            verify(&c, &signed(&c.secret, "1531420618", body), 1531421000, 300),
            Err(Refusal::StaleTimestamp(300))
        );
        assert_eq!(
            verify(&c, &signed("other", "1531420618", body), 1531420618, 300),
            Err(Refusal::BadSignature)
        );
    }
}
