//! Standard Webhooks signatures.
//!
//! A receiver gets `webhook-id`, `webhook-timestamp` and `webhook-signature`; the signature is
//! `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), one space-separated entry per
//! secret that is currently valid (during a rotation both the new and the old secret sign).

use std::fmt;

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";
pub const MIN_KEY_BYTES: usize = 24;
pub const MAX_KEY_BYTES: usize = 64;

/// A signing key. Printing it never reveals the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a secret must start with \"whsec_\"")]
    MissingPrefix,
    #[error("the part after \"whsec_\" must be base64")]
    NotBase64,
    #[error(
        "a secret must hold {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes of key, this one holds {0}"
    )]
    BadLength(usize),
}

impl Secret {
    /// A fresh key of 32 random bytes.
    pub fn generate() -> Secret {
        let mut key = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Secret(key)
    }

    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let encoded = text
            .strip_prefix(PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        Secret::from_bytes(key)
    }

    pub fn from_bytes(key: Vec<u8>) -> Result<Secret, SecretError> {
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(SecretError::BadLength(key.len()));
        }
        Ok(Secret(key))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The `whsec_…` form handed to users.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// One `v1,<base64>` signature entry.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// The `webhook-signature` header value: one entry per valid secret.
pub fn signature_header(secrets: &[Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_test_vector() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn parse_round_trips_and_rejects_bad_secrets() {
        let s = Secret::generate();
        assert_eq!(Secret::parse(&s.expose()).unwrap(), s);
        assert_eq!(Secret::parse("MfKQ9r8G"), Err(SecretError::MissingPrefix));
        assert_eq!(Secret::parse("whsec_!!!"), Err(SecretError::NotBase64));
        assert_eq!(
            Secret::parse(&format!("whsec_{}", STANDARD.encode([1u8; 16]))),
            Err(SecretError::BadLength(16))
        );
        assert_eq!(
            Secret::parse(&format!("whsec_{}", STANDARD.encode([1u8; 65]))),
            Err(SecretError::BadLength(65))
        );
    }

    #[test]
    fn every_valid_secret_signs_during_rotation() {
        let (old, new) = (Secret::generate(), Secret::generate());
        let header = signature_header(&[new.clone(), old.clone()], "msg_1", 10, b"{}");
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            entries,
            vec![new.sign("msg_1", 10, b"{}"), old.sign("msg_1", 10, b"{}")]
        );
    }

    #[test]
    fn debug_does_not_leak_the_key() {
        let s = Secret::generate();
        assert!(!format!("{s:?}").contains(&s.expose()[6..]));
    }
}
