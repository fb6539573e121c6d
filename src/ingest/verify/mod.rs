//! Verifying a provider's request, one module per scheme, each written from the provider's
//! documentation (and tested against signatures made by the provider's own library, in
//! `tests/integration/ingest/`). A verified request yields the provider's event identity
//! (for dedupe) and type (for endpoints' event-type filters).

pub mod circle;
pub mod generic;
pub mod hmac_schemes;
pub mod slack;
pub mod standard;

use super::{
    request::{Inbound, Refusal},
    source::SourceKind,
};

/// What a verified request is.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The provider's identity of the event (dedupe), if it gives one.
    pub event_key: Option<String>,
    pub event_type: String,
    /// A signature was checked (false: a source that has none).
    pub authenticated: bool,
    /// The provider expects this answer and the request is a handshake, not an event
    /// (Slack's `url_verification`): answered, not forwarded.
    pub handshake: Option<serde_json::Value>,
}

impl Verified {
    fn event(event_key: Option<String>, event_type: String) -> Verified {
        Verified {
            event_key,
            event_type,
            authenticated: true,
            handshake: None,
        }
    }
}

/// What verification needs besides the request.
pub struct Context<'a> {
    /// Unix seconds.
    pub now: i64,
    /// Default timestamp tolerance (`HERALD_INGEST_TOLERANCE`), seconds.
    pub tolerance: u64,
    /// Circle's public keys, fetched once per key id.
    pub keys: &'a circle::KeyCache,
    /// The source the request came to (for the key cache).
    pub source_id: &'a str,
}

/// Verifies `req` by the scheme of `kind`.
pub async fn verify(
    kind: &SourceKind,
    req: &Inbound,
    ctx: &Context<'_>,
) -> Result<Verified, Refusal> {
    let tolerance = |own: Option<u64>| own.unwrap_or(ctx.tolerance);
    match kind {
        SourceKind::Stripe(c) => {
            hmac_schemes::stripe(c, req, ctx.now, tolerance(c.tolerance_seconds))
        }
        SourceKind::Github(c) => hmac_schemes::github(c, req),
        SourceKind::Shopify(c) => hmac_schemes::shopify(c, req),
        SourceKind::Slack(c) => slack::verify(c, req, ctx.now, tolerance(c.tolerance_seconds)),
        SourceKind::Svix(c) | SourceKind::StandardWebhooks(c) => {
            standard::verify(c, req, ctx.now, tolerance(c.tolerance_seconds))
        }
        SourceKind::Circle(c) => circle::verify(c, req, ctx).await,
        SourceKind::GenericHmac(c) => {
            generic::verify_hmac(c, req, ctx.now, tolerance(c.tolerance_seconds))
        }
        SourceKind::GenericWebhook(fields) => Ok(Verified {
            authenticated: false,
            ..generic::identify(fields, req, "generic-webhook")
        }),
    }
}

/// HMAC-SHA256 of `data` with `key`.
pub fn hmac_sha256(key: &[u8], data: &[&[u8]]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for d in data {
        mac.update(d);
    }
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA512 of `data` with `key`.
pub fn hmac_sha512(key: &[u8], data: &[&[u8]]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key).expect("HMAC takes any key length");
    for d in data {
        mac.update(d);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
