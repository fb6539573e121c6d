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

/// Why a delivery does not verify (what `herald verify` tells a receiver debugging theirs).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the timestamp is {age} s old, beyond the {tolerance} s tolerance: a replay, a delayed request, or a clock that is off")]
    TooOld { age: i64, tolerance: i64 },
    #[error("the timestamp is {ahead} s in the future, beyond the {tolerance} s tolerance: check the clocks")]
    TooNew { ahead: i64, tolerance: i64 },
    #[error("the signature header holds no \"v1,<base64>\" entry")]
    NoSignature,
    #[error("no signature matches: a different secret, or the body, id or timestamp differ from what was signed (the body must be the exact bytes received)")]
    Mismatch,
}

/// Checks a delivery as a receiver should: the timestamp within `tolerance` seconds of
/// `now`, then any `v1` entry of `header` equal (in constant time) to our own signature.
pub fn verify(
    secret: &Secret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance: i64,
) -> Result<(), VerifyError> {
    use subtle::ConstantTimeEq;
    if now - timestamp > tolerance {
        return Err(VerifyError::TooOld {
            age: now - timestamp,
            tolerance,
        });
    }
    if timestamp - now > tolerance {
        return Err(VerifyError::TooNew {
            ahead: timestamp - now,
            tolerance,
        });
    }
    let expected = secret.sign(msg_id, timestamp, body);
    let mut any = false;
    for entry in header.split_whitespace() {
        if !entry.starts_with("v1,") {
            continue;
        }
        any = true;
        if bool::from(entry.as_bytes().ct_eq(expected.as_bytes())) {
            return Ok(());
        }
    }
    Err(if any {
        VerifyError::Mismatch
    } else {
        VerifyError::NoSignature
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_any_matching_entry_and_says_why_it_rejects() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let other = Secret::generate().sign(id, ts, body);
        assert_eq!(verify(&secret, id, ts, body, good, ts, 300), Ok(()));
        // During a rotation the header holds two entries; either may be ours.
        let rotating = format!("{other} {good}");
        assert_eq!(
            verify(&secret, id, ts, body, &rotating, ts + 10, 300),
            Ok(())
        );
        assert_eq!(
            verify(&secret, id, ts, b"{\"test\": 1}", good, ts, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&secret, id, ts, body, &other, ts, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&secret, id, ts, body, "v2,abc", ts, 300),
            Err(VerifyError::NoSignature)
        );
        assert_eq!(
            verify(&secret, id, ts, body, good, ts + 301, 300),
            Err(VerifyError::TooOld {
                age: 301,
                tolerance: 300
            })
        );
        assert_eq!(
            verify(&secret, id, ts, body, good, ts - 301, 300),
            Err(VerifyError::TooNew {
                ahead: 301,
                tolerance: 300
            })
        );
    }

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
