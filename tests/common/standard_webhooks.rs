//! Standard Webhooks verification written independently of Herald's signing module
//! (OpenSSL's HMAC and base64), as a receiver in another stack would do it. Shared by the
//! test targets (`#[path]`-included: each target is its own crate).

use openssl::{base64, hash::MessageDigest, pkey::PKey, sign::Signer};

/// Verifies one request: `header` reads a request header, `body` is the exact body. With a
/// `tolerance` (seconds), the timestamp must be that close to now. Returns the `webhook-id`.
pub fn verify(
    key: &[u8],
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
    tolerance: Option<i64>,
) -> Result<String, String> {
    let get = |name: &str| header(name).ok_or(format!("missing {name}"));
    let (id, timestamp, signatures) = (
        get("webhook-id")?,
        get("webhook-timestamp")?,
        get("webhook-signature")?,
    );
    if let Some(tolerance) = tolerance {
        let sent: i64 = timestamp
            .parse()
            .map_err(|_| format!("bad timestamp {timestamp}"))?;
        let now = chrono::Utc::now().timestamp();
        if (now - sent).abs() > tolerance {
            return Err(format!("timestamp {sent} is {}s away from now", now - sent));
        }
    }
    let pkey = PKey::hmac(key).map_err(|e| e.to_string())?;
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey).map_err(|e| e.to_string())?;
    signer
        .update(format!("{id}.{timestamp}.").as_bytes())
        .and_then(|_| signer.update(body))
        .map_err(|e| e.to_string())?;
    let expected = format!(
        "v1,{}",
        base64::encode_block(&signer.sign_to_vec().map_err(|e| e.to_string())?)
    );
    if signatures.split(' ').any(|s| s == expected) {
        Ok(id)
    } else {
        Err(format!(
            "{id}: no signature in `{signatures}` matches {expected}"
        ))
    }
}
