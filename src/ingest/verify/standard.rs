//! Svix and Standard Webhooks: `svix-id`/`svix-timestamp`/`svix-signature`, or the same
//! with `webhook-`, signed as Herald itself signs (HMAC-SHA256 of `{id}.{timestamp}.{body}`
//! with the `whsec_…` key, base64, `v1,` entries). The event is the id, of the body's
//! `type` (or `eventType`).

use super::Verified;
use crate::{
    ingest::{
        request::{json_field, Inbound, Refusal},
        source::SecretConfig,
    },
    signing::{self, Secret, VerifyError},
};

pub fn verify(
    c: &SecretConfig,
    req: &Inbound,
    now: i64,
    tolerance: u64,
) -> Result<Verified, Refusal> {
    // Whichever family of headers the request uses (a missing id names Standard
    // Webhooks' header).
    let (id_h, ts_h, sig_h) = if req.header("svix-id").is_some() {
        ("svix-id", "svix-timestamp", "svix-signature")
    } else {
        ("webhook-id", "webhook-timestamp", "webhook-signature")
    };
    let id = req.required(id_h)?;
    let timestamp: i64 = req
        .required(ts_h)?
        .parse()
        .map_err(|_| Refusal::MalformedHeader(ts_h.into()))?;
    let signature = req.required(sig_h)?;
    let secret = Secret::parse(c.secret.trim()).map_err(|_| Refusal::BadSignature)?;
    signing::verify(
        &secret,
        id,
        timestamp,
        &req.body,
        signature,
        now,
        tolerance as i64,
    )
    .map_err(|e| match e {
        VerifyError::TooOld { .. } | VerifyError::TooNew { .. } => {
            Refusal::StaleTimestamp(tolerance)
        }
        VerifyError::NoSignature => Refusal::MalformedHeader(sig_h.into()),
        _ => Refusal::BadSignature,
    })?;
    let body = req.json();
    let field = |name| body.as_ref().and_then(|b| json_field(b, name));
    Ok(Verified {
        event_key: Some(id.to_string()),
        event_type: field("type")
            .or_else(|| field("eventType"))
            .unwrap_or_else(|| "svix".into()),
        authenticated: true,
        handshake: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn herald_can_receive_what_it_signs() {
        let secret = Secret::generate();
        let body = br#"{"type":"invoice.paid"}"#;
        let header = secret.sign("msg_1", 1_700_000_000, body);
        let c = SecretConfig {
            secret: secret.expose(),
            tolerance_seconds: None,
        };
        for prefix in ["svix", "webhook"] {
            let req = Inbound::new(
                [
                    (format!("{prefix}-id"), "msg_1".to_string()),
                    (format!("{prefix}-timestamp"), "1700000000".to_string()),
                    (format!("{prefix}-signature"), header.clone()),
                ],
                Bytes::from_static(body),
            );
            let v = verify(&c, &req, 1_700_000_010, 300).unwrap();
            assert_eq!(
                (v.event_key.as_deref(), v.event_type.as_str()),
                (Some("msg_1"), "invoice.paid")
            );
            assert_eq!(
                verify(&c, &req, 1_700_001_000, 300),
                Err(Refusal::StaleTimestamp(300))
            );
        }
        let missing = Inbound::new([], Bytes::from_static(body));
        assert_eq!(
            verify(&c, &missing, 0, 300),
            Err(Refusal::MissingHeader("webhook-id".into()))
        );
    }
}
