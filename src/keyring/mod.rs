//! Secrets encrypted at rest (issue 16): endpoint and application signing secrets, custom
//! header values and inbound sources' secrets are stored sealed with AES-256-GCM under a
//! key from `HERALD_ENCRYPTION_KEY`, so that a dump of the database hands out none of them.
//!
//! A sealed value is text: `hk1:{key id}:{base64 of nonce ‖ ciphertext ‖ tag}`, the key id
//! being the first 8 hex digits of the key's SHA-256. It says which key sealed it, so keys
//! can be rotated ([`sweep`]: `herald keys rotate` re-seals in batches while Herald runs).
//! The additional data names what the value is (an endpoint's secret, a header value, ...),
//! so a sealed value cannot pass for another kind.
//!
//! A value without the prefix is plaintext: rows of earlier versions and rows written by
//! hand are read as they are, and sealed by the next sweep (each retention pass). A random
//! signing key starting with the 4 bytes `hk1:` and then a valid sealed value is not
//! something to plan for.

pub mod sweep;

use std::{
    borrow::Cow,
    collections::BTreeMap,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use aes_gcm::{
    aead::{Aead, Payload},
    Aes256Gcm, KeyInit, Nonce,
};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The prefix of a sealed value.
pub const PREFIX: &str = "hk1:";

/// What a sealed value is: its additional data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    EndpointSecret,
    ApplicationSecret,
    HeaderValue,
    SourceSecret,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::EndpointSecret => b"herald:endpoint-secret",
            Purpose::ApplicationSecret => b"herald:application-secret",
            Purpose::HeaderValue => b"herald:header-value",
            Purpose::SourceSecret => b"herald:source-secret",
        }
    }
}

/// Why a value cannot be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("sealed with key {0}, which this Herald does not have (HERALD_ENCRYPTION_KEY, HERALD_ENCRYPTION_OLD_KEYS)")]
    UnknownKey(String),
    #[error("a sealed value that does not open: altered, or another kind of value")]
    Corrupt,
}

/// A key, by id.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: Aes256Gcm,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Key {
        let digest = Sha256::digest(bytes);
        Key {
            id: digest[..4].iter().map(|b| format!("{b:02x}")).collect(),
            cipher: Aes256Gcm::new(bytes.into()),
        }
    }
}

/// The keys this Herald seals with (the current one) and opens with (all of them).
#[derive(Clone)]
pub struct Keyring {
    current: Option<Key>,
    others: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current_id())
            .field(
                "others",
                &self.others.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A key as configured: base64 of 32 bytes.
pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|e| format!("is not base64 ({e}); make one with `herald keys generate`"))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        format!(
            "is {} bytes; it must be 32 (base64 of 32 random bytes: `herald keys generate`)",
            b.len()
        )
    })
}

/// A new key, as `HERALD_ENCRYPTION_KEY` takes it.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B64.encode(bytes)
}

impl Keyring {
    /// Seals with `current`, opens with it and `others`.
    pub fn new(current: &[u8; 32], others: &[[u8; 32]]) -> Keyring {
        Keyring {
            current: Some(Key::new(current)),
            others: others.iter().map(Key::new).collect(),
        }
    }

    /// No key: opens plaintext only, refuses to seal (tools and tests that read rows
    /// written as plaintext).
    pub fn plaintext_only() -> Keyring {
        Keyring {
            current: None,
            others: Vec::new(),
        }
    }

    /// The current key's id.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_ref().map(|k| k.id.as_str())
    }

    /// The prefix of values sealed with the current key (`hk1:{id}:`).
    pub fn current_prefix(&self) -> Option<String> {
        self.current_id().map(|id| format!("{PREFIX}{id}:"))
    }

    /// `plaintext` sealed with the current key (as it is, without one).
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> Vec<u8> {
        let Some(key) = &self.current else {
            return plaintext.to_vec();
        };
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: purpose.aad(),
                },
            )
            .expect("AES-GCM seals any length Herald stores");
        let mut body = nonce.to_vec();
        body.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", key.id, B64.encode(body)).into_bytes()
    }

    pub fn seal_str(&self, purpose: Purpose, plaintext: &str) -> String {
        String::from_utf8(self.seal(purpose, plaintext.as_bytes()))
            .expect("a sealed value is ASCII, plaintext stays UTF-8")
    }

    /// What `stored` holds: opened if sealed, as it is if plaintext.
    pub fn open<'a>(&self, purpose: Purpose, stored: &'a [u8]) -> Result<Cow<'a, [u8]>, OpenError> {
        let Some(rest) = stored.strip_prefix(PREFIX.as_bytes()) else {
            return Ok(Cow::Borrowed(stored));
        };
        let text = std::str::from_utf8(rest).map_err(|_| OpenError::Corrupt)?;
        let (id, body) = text.split_once(':').ok_or(OpenError::Corrupt)?;
        let key = self
            .current
            .iter()
            .chain(&self.others)
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError::UnknownKey(id.to_string()))?;
        let body = B64.decode(body).map_err(|_| OpenError::Corrupt)?;
        if body.len() < 12 {
            return Err(OpenError::Corrupt);
        }
        let (nonce, sealed) = body.split_at(12);
        key.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: purpose.aad(),
                },
            )
            .map(Cow::Owned)
            .map_err(|_| OpenError::Corrupt)
    }

    pub fn open_str(&self, purpose: Purpose, stored: &str) -> Result<String, OpenError> {
        let opened = self.open(purpose, stored.as_bytes())?;
        String::from_utf8(opened.into_owned()).map_err(|_| OpenError::Corrupt)
    }

    /// An endpoint's custom header values, sealed, as they are stored.
    pub fn seal_headers(&self, headers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        headers
            .iter()
            .map(|(name, value)| (name.clone(), self.seal_str(Purpose::HeaderValue, value)))
            .collect()
    }

    /// Header values as stored, opened; an error names the header it could not open.
    pub fn open_headers(
        &self,
        stored: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, (String, OpenError)> {
        stored
            .into_iter()
            .map(
                |(name, value)| match self.open_str(Purpose::HeaderValue, &value) {
                    Ok(value) => Ok((name, value)),
                    Err(e) => Err((name, e)),
                },
            )
            .collect()
    }

    /// Is `stored` sealed with the current key? (The sweep asks the database the same.)
    #[cfg(test)]
    pub fn is_current(&self, stored: &[u8]) -> bool {
        self.current_prefix()
            .is_some_and(|p| stored.starts_with(p.as_bytes()))
    }
}

/// The keyring the settings describe. Without a configured key, development uses (and at
/// first makes) one in `data_dir`, and says so; production has refused to start already
/// (the settings' validation).
pub fn from_settings(
    key: Option<&str>,
    old_keys: &[String],
    data_dir: &Path,
) -> Result<Keyring, String> {
    let others = old_keys
        .iter()
        .map(|k| parse_key(k).map_err(|e| format!("HERALD_ENCRYPTION_OLD_KEYS: a key {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let current = match key {
        Some(k) => parse_key(k).map_err(|e| format!("HERALD_ENCRYPTION_KEY {e}"))?,
        None => development_key(data_dir)?,
    };
    Ok(Keyring::new(&current, &others))
}

/// `{data_dir}/encryption.key`, made on first use.
fn development_key(data_dir: &Path) -> Result<[u8; 32], String> {
    let path: PathBuf = data_dir.join("encryption.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return parse_key(&text).map_err(|e| format!("{} {e}", path.display()));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| {
        format!(
            "cannot create {} for the development key: {e}",
            data_dir.display()
        )
    })?;
    // Written whole under another name, then linked into place: a Herald starting beside
    // this one finds either no key or all of it.
    let key = generate_key();
    let partial = data_dir.join(format!("encryption.key.{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .and_then(|mut f| f.write_all(key.as_bytes()).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::hard_link(&partial, &path));
    let _ = std::fs::remove_file(&partial);
    match written {
        Ok(()) => {
            tracing::warn!(
                path = %path.display(),
                "development: secrets are encrypted at rest with a key generated into {} (production needs HERALD_ENCRYPTION_KEY)",
                path.display()
            );
            parse_key(&key).map_err(|e| format!("{} {e}", path.display()))
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            parse_key(&text).map_err(|e| format!("{} {e}", path.display()))
        }
        Err(e) => Err(format!("cannot write {}: {e}", path.display())),
    }
}

/// Header names whose values the API shows as sensitive (redacted), as Svix does for
/// `Authorization`: credentials by name.
pub fn is_sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "auth",
        "token",
        "secret",
        "password",
        "key",
        "cookie",
        "signature",
        "credential",
    ]
    .iter()
    .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> (Keyring, [u8; 32]) {
        let key = parse_key(&generate_key()).unwrap();
        (Keyring::new(&key, &[]), key)
    }

    #[test]
    fn a_sealed_value_opens_to_itself_and_shows_nothing_of_it() {
        let (ring, _) = ring();
        let secret = b"whsec-key-bytes-0123456789abcdef";
        let sealed = ring.seal(Purpose::EndpointSecret, secret);
        assert!(sealed.starts_with(PREFIX.as_bytes()) && ring.is_current(&sealed));
        assert!(!sealed.windows(8).any(|w| secret.windows(8).any(|s| s == w)));
        assert_eq!(
            ring.open(Purpose::EndpointSecret, &sealed)
                .unwrap()
                .as_ref(),
            secret
        );
        // Each sealing is different (a fresh nonce).
        assert_ne!(sealed, ring.seal(Purpose::EndpointSecret, secret));
    }

    #[test]
    fn plaintext_passes_and_a_value_of_another_kind_or_altered_does_not_open() {
        let (ring, _) = ring();
        assert_eq!(
            ring.open(Purpose::HeaderValue, b"Bearer abc")
                .unwrap()
                .as_ref(),
            b"Bearer abc"
        );
        let sealed = ring.seal_str(Purpose::HeaderValue, "Bearer abc");
        assert_eq!(
            ring.open_str(Purpose::HeaderValue, &sealed).unwrap(),
            "Bearer abc"
        );
        assert_eq!(
            ring.open_str(Purpose::SourceSecret, &sealed),
            Err(OpenError::Corrupt)
        );
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            ring.open(Purpose::HeaderValue, &altered).map(|_| ()),
            Err(OpenError::Corrupt)
        );
    }

    #[test]
    fn header_values_are_sealed_one_by_one_and_an_unreadable_one_is_named() {
        let (ours, _) = ring();
        let headers = BTreeMap::from([
            ("authorization".to_string(), "Bearer t0ken".to_string()),
            ("x-tenant".to_string(), "acme".to_string()),
        ]);
        let stored = ours.seal_headers(&headers);
        assert_eq!(
            stored.keys().collect::<Vec<_>>(),
            headers.keys().collect::<Vec<_>>()
        );
        assert!(stored
            .values()
            .all(|v| v.starts_with(PREFIX) && !v.contains("acme")));
        assert_eq!(ours.open_headers(stored.clone()).unwrap(), headers);
        let (other, _) = ring();
        let (name, error) = other.open_headers(stored).unwrap_err();
        assert_eq!(name, "authorization", "the first it could not open");
        assert!(matches!(error, OpenError::UnknownKey(_)), "{error}");
    }

    #[test]
    fn an_old_key_opens_what_it_sealed_and_an_unknown_one_is_named() {
        let (old, old_key) = ring();
        let sealed = old.seal(Purpose::ApplicationSecret, b"k");
        let new_key = parse_key(&generate_key()).unwrap();
        let rotated = Keyring::new(&new_key, &[old_key]);
        assert_eq!(
            rotated
                .open(Purpose::ApplicationSecret, &sealed)
                .unwrap()
                .as_ref(),
            b"k"
        );
        assert!(!rotated.is_current(&sealed));
        let without = Keyring::new(&new_key, &[]);
        assert_eq!(
            without
                .open(Purpose::ApplicationSecret, &sealed)
                .map(|_| ()),
            Err(OpenError::UnknownKey(old.current_id().unwrap().to_string()))
        );
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(parse_key("not base64!").unwrap_err().contains("not base64"));
        assert!(parse_key(&B64.encode([1u8; 16]))
            .unwrap_err()
            .contains("16 bytes"));
        assert!(parse_key(&generate_key()).is_ok());
    }

    #[test]
    fn credentials_are_sensitive_by_name() {
        for name in [
            "Authorization",
            "X-Api-Key",
            "x-auth-token",
            "X-Client-Secret",
            "Cookie",
        ] {
            assert!(is_sensitive_header(name), "{name}");
        }
        for name in ["X-Example", "X-Tenant", "Content-Language"] {
            assert!(!is_sensitive_header(name), "{name}");
        }
    }
}
