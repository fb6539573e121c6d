//! The generic types: `generic-hmac` (a configurable HMAC scheme) and `generic-webhook` (no
//! signature; unauthenticated). Both identify and type events as configured.

use base64::{engine::general_purpose::STANDARD, Engine as _};

use super::{hex, hmac_sha256, hmac_sha512, Verified};
use crate::ingest::{
    request::{fresh, json_field, same, Inbound, Refusal},
    source::{Algorithm, Encoding, EventFields, GenericHmacConfig},
};

/// The event's identity and type, as `fields` say where to find them.
pub fn identify(fields: &EventFields, req: &Inbound, default_type: &str) -> Verified {
    let body = req.json();
    let from = |header: &Option<String>, field: &Option<String>| {
        header
            .as_deref()
            .and_then(|h| req.header(&h.to_ascii_lowercase()))
            .map(str::to_string)
            .or_else(|| {
                field
                    .as_deref()
                    .and_then(|f| body.as_ref().and_then(|b| json_field(b, f)))
            })
    };
    Verified {
        event_key: from(&fields.event_id_header, &fields.event_id_field),
        event_type: from(&fields.event_type_header, &fields.event_type_field)
            .unwrap_or_else(|| default_type.to_string()),
        authenticated: true,
        handshake: None,
    }
}

pub fn verify_hmac(
    c: &GenericHmacConfig,
    req: &Inbound,
    now: i64,
    tolerance: u64,
) -> Result<Verified, Refusal> {
    // Header names come from the config: a missing one is named as configured.
    let header_name = c.header.to_ascii_lowercase();
    let header_name = header_name.as_str();
    let given = req.required(header_name)?;
    let given = match &c.prefix {
        Some(p) => given
            .strip_prefix(p.as_str())
            .ok_or_else(|| Refusal::MalformedHeader(header_name.into()))?,
        None => given,
    };
    let timestamp = match &c.timestamp_header {
        Some(h) => {
            let name = h.to_ascii_lowercase();
            let raw = req.required(&name)?;
            let ts: i64 = raw
                .parse()
                .map_err(|_| Refusal::MalformedHeader(name.clone()))?;
            Some((raw.to_string(), ts))
        }
        None => None,
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    if let Some((raw, _)) = &timestamp {
        parts.extend([raw.as_bytes(), b"."]);
    }
    parts.push(&req.body);
    let mac = match c.algorithm {
        Algorithm::Sha256 => hmac_sha256(c.secret.as_bytes(), &parts),
        Algorithm::Sha512 => hmac_sha512(c.secret.as_bytes(), &parts),
    };
    let ok = match c.encoding {
        Encoding::Hex => same(
            given.trim().to_ascii_lowercase().as_bytes(),
            hex(&mac).as_bytes(),
        ),
        Encoding::Base64 => STANDARD
            .decode(given.trim())
            .map(|g| same(&g, &mac))
            .map_err(|_| Refusal::MalformedHeader(header_name.into()))?,
    };
    if !ok {
        return Err(Refusal::BadSignature);
    }
    if let Some((_, ts)) = timestamp {
        fresh(ts, now, tolerance)?;
    }
    Ok(identify(&c.event, req, "generic-hmac"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_configured_scheme_with_timestamp_and_base64() {
        let c = GenericHmacConfig {
            secret: "k".into(),
            header: "X-Signature".into(),
            prefix: Some("sha512=".into()),
            algorithm: Algorithm::Sha512,
            encoding: Encoding::Base64,
            timestamp_header: Some("X-Timestamp".into()),
            tolerance_seconds: None,
            event: EventFields {
                event_id_field: Some("meta.id".into()),
                event_type_header: Some("X-Kind".into()),
                ..Default::default()
            },
        };
        let body = r#"{"meta":{"id":"e-9"}}"#;
        let mac = STANDARD.encode(hmac_sha512(b"k", &[b"100.", body.as_bytes()]));
        let req = |sig: &str, ts: &str| {
            Inbound::new(
                [
                    ("X-Signature".to_string(), sig.to_string()),
                    ("X-Timestamp".to_string(), ts.to_string()),
                    ("X-Kind".to_string(), "thing.done".to_string()),
                ],
                Bytes::from(body.to_string()),
            )
        };
        let v = verify_hmac(&c, &req(&format!("sha512={mac}"), "100"), 150, 300).unwrap();
        assert_eq!(
            (v.event_key.as_deref(), v.event_type.as_str()),
            (Some("e-9"), "thing.done")
        );
        assert_eq!(
            verify_hmac(&c, &req(&format!("sha512={mac}"), "100"), 1000, 300),
            Err(Refusal::StaleTimestamp(300))
        );
        assert_eq!(
            verify_hmac(&c, &req(&format!("sha512={mac}"), "101"), 150, 300),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify_hmac(&c, &req(&mac, "100"), 150, 300),
            Err(Refusal::MalformedHeader("x-signature".into()))
        );
    }
}
