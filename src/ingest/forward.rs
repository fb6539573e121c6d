//! What a forwarded event carries besides the provider's body (unchanged): the provider's
//! headers, each under [`PREFIX`], and its content type. Hop-by-hop headers and those that
//! describe the connection rather than the event are not passed on.

use std::collections::BTreeMap;

/// `x-herald-original-stripe-signature: t=…,v1=…`
pub const PREFIX: &str = "x-herald-original-";
/// Which source the event came through.
pub const SOURCE_HEADER: &str = "x-herald-source";

/// Not the event's: the connection's, the proxy's, or the request framing.
const NOT_PASSED_ON: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "authorization",
    "cookie",
    "expect",
];

/// The headers a forwarded event carries: the provider's, prefixed, and the source's id.
pub fn headers(received: &BTreeMap<String, String>, source_id: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = received
        .iter()
        .filter(|(k, _)| !NOT_PASSED_ON.contains(&k.as_str()) && !k.starts_with("x-forwarded-"))
        .map(|(k, v)| (format!("{PREFIX}{k}"), v.clone()))
        .collect();
    out.insert(SOURCE_HEADER.into(), source_id.into());
    out
}

/// The content type the forward is sent with: the provider's, else JSON.
pub fn content_type(received: &BTreeMap<String, String>) -> String {
    received
        .get("content-type")
        .cloned()
        .unwrap_or_else(|| "application/json".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_headers_are_passed_on_under_the_prefix() {
        let received: BTreeMap<String, String> = [
            ("stripe-signature", "t=1,v1=ab"),
            ("content-type", "application/json; charset=utf-8"),
            ("host", "herald.example"),
            ("authorization", "Bearer x"),
            ("x-forwarded-for", "10.0.0.1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let h = headers(&received, "src_1");
        assert_eq!(
            h.get("x-herald-original-stripe-signature")
                .map(String::as_str),
            Some("t=1,v1=ab")
        );
        assert_eq!(h.get("x-herald-source").map(String::as_str), Some("src_1"));
        assert!(!h.contains_key("x-herald-original-host"));
        assert!(!h.contains_key("x-herald-original-authorization"));
        assert!(!h.contains_key("x-herald-original-x-forwarded-for"));
        assert_eq!(content_type(&received), "application/json; charset=utf-8");
        assert_eq!(content_type(&BTreeMap::new()), "application/json");
    }
}
