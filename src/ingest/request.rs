//! A request as it arrived at a source's URL: its headers (names in lower case) and its
//! body, untouched.

use std::collections::BTreeMap;

use bytes::Bytes;

/// Why a request was not accepted. Each maps to one answer (see [`Refusal::status`]) and a
/// short reason that never repeats a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A header the scheme needs is absent (400, naming it).
    #[error("missing header {0}")]
    MissingHeader(String),
    /// A signature header that cannot be read (401).
    #[error("malformed {0} header")]
    MalformedHeader(String),
    /// No signature in the request matches (401).
    #[error("no signature matches")]
    BadSignature,
    /// The signed timestamp is outside the tolerance (401).
    #[error("timestamp outside the tolerance of {0} s")]
    StaleTimestamp(u64),
    /// The body is not what the scheme needs to read (400).
    #[error("{0}")]
    BadBody(&'static str),
    /// The key to check the signature with could not be had (a provider's key server down:
    /// 503, so that the provider retries).
    #[error("signing key unavailable: {0}")]
    KeyUnavailable(String),
}

impl Refusal {
    /// The HTTP status the provider gets.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::MissingHeader(_) | Refusal::BadBody(_) => 400,
            Refusal::MalformedHeader(_) | Refusal::BadSignature | Refusal::StaleTimestamp(_) => 401,
            Refusal::KeyUnavailable(_) => 503,
        }
    }

    /// A stable label for metrics: `missing_header`, `bad_signature`, ...
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::MissingHeader(_) => "missing_header",
            Refusal::MalformedHeader(_) => "malformed_header",
            Refusal::BadSignature => "bad_signature",
            Refusal::StaleTimestamp(_) => "stale_timestamp",
            Refusal::BadBody(_) => "bad_body",
            Refusal::KeyUnavailable(_) => "key_unavailable",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Inbound {
    /// Lower-case names; a repeated header keeps its values joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: Bytes,
}

impl Inbound {
    pub fn new(headers: impl IntoIterator<Item = (String, String)>, body: Bytes) -> Inbound {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in headers {
            map.entry(k.to_ascii_lowercase())
                .and_modify(|e| {
                    e.push_str(", ");
                    e.push_str(&v);
                })
                .or_insert(v);
        }
        Inbound { headers: map, body }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// A header the scheme needs (`name` in lower case).
    pub fn required(&self, name: &str) -> Result<&str, Refusal> {
        self.header(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Refusal::MissingHeader(name.to_string()))
    }

    /// The body as JSON, when it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A string field of a JSON body by a dotted path (`event.type`).
pub fn json_field(body: &serde_json::Value, path: &str) -> Option<String> {
    let mut v = body;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Compares in constant time.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Whether `timestamp` (unix seconds) is within `tolerance` of `now`.
pub fn fresh(timestamp: i64, now: i64, tolerance: u64) -> Result<(), Refusal> {
    if timestamp.abs_diff(now) > tolerance {
        Err(Refusal::StaleTimestamp(tolerance))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive_and_required_ones_named() {
        let r = Inbound::new(
            [("X-Hub-Signature-256".to_string(), "sha256=ab".to_string())],
            Bytes::from_static(b"{\"a\":{\"b\":\"c\"}}"),
        );
        assert_eq!(r.header("x-hub-signature-256"), Some("sha256=ab"));
        assert_eq!(
            r.required("x-github-delivery"),
            Err(Refusal::MissingHeader("x-github-delivery".into()))
        );
        assert_eq!(json_field(&r.json().unwrap(), "a.b").as_deref(), Some("c"));
        assert_eq!(Refusal::MissingHeader("x".into()).status(), 400);
        assert_eq!(Refusal::BadSignature.status(), 401);
        assert!(fresh(1000, 1300, 300).is_ok());
        assert_eq!(fresh(1000, 1301, 300), Err(Refusal::StaleTimestamp(300)));
    }
}
