//! Field checks shared by the resources. Each returns the Svix-style 422 item on failure.

use std::collections::BTreeMap;

use super::error::{ApiError, ValidationErrorItem};
use crate::{delivery::pipeline::RESERVED_HEADERS, signing::Secret};

/// Collects problems so that one 422 names all of them.
#[derive(Default)]
pub struct Problems(Vec<ValidationErrorItem>);

impl Problems {
    pub fn check(&mut self, result: Result<(), ValidationErrorItem>) {
        if let Err(item) = result {
            self.0.push(item);
        }
    }

    pub fn push(&mut self, path: &str, msg: impl Into<String>) {
        self.0.push(ValidationErrorItem::field(path, msg));
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

fn token_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The prefixes of Herald's ids (the schema's `herald.is_uid` refuses the same).
pub const ID_PREFIXES: &[&str] = &["app_", "ep_", "msg_", "atmpt_", "qtask_"];

/// Whether `value` has the shape of one of Herald's ids.
pub fn looks_like_id(value: &str) -> bool {
    ID_PREFIXES.iter().any(|p| value.starts_with(p))
}

/// `uid`: 1–256 of `[a-zA-Z0-9-_.]`, and not shaped like one of our ids: a uid `app_…`
/// could name another tenant's application wherever "id or uid" is accepted.
pub fn uid(path: &str, value: &str) -> Result<(), ValidationErrorItem> {
    if value.is_empty() || value.len() > 256 || !token_chars(value) {
        return Err(ValidationErrorItem::field(
            path,
            "must be 1 to 256 characters of a-z, A-Z, 0-9, '-', '_' or '.'",
        ));
    }
    if let Some(prefix) = ID_PREFIXES.iter().find(|p| value.starts_with(*p)) {
        return Err(ValidationErrorItem::field(
            path,
            format!("must not start with {prefix}: uids may not look like Herald ids"),
        ));
    }
    Ok(())
}

/// Event type names (and feature flags, groups): 1–256 of `[a-zA-Z0-9-_.]`.
pub fn name(path: &str, value: &str) -> Result<(), ValidationErrorItem> {
    if value.is_empty() || value.len() > 256 || !token_chars(value) {
        return Err(ValidationErrorItem::field(
            path,
            "must be 1 to 256 characters of a-z, A-Z, 0-9, '-', '_' or '.'",
        ));
    }
    Ok(())
}

/// Channels: 1–128 of `[a-zA-Z0-9-_.:+]` (as in Svix).
pub fn channel(path: &str, value: &str) -> Result<(), ValidationErrorItem> {
    let ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:+".contains(&b));
    if value.is_empty() || value.len() > 128 || !ok {
        return Err(ValidationErrorItem::field(
            path,
            "must be 1 to 128 characters of a-z, A-Z, 0-9, '-', '_', '.', ':' or '+'",
        ));
    }
    Ok(())
}

/// Message tags: 1–128 of `[a-zA-Z0-9-_./\#]` (as in Svix).
pub fn tag(path: &str, value: &str) -> Result<(), ValidationErrorItem> {
    let ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./\\#".contains(&b));
    if value.is_empty() || value.len() > 128 || !ok {
        return Err(ValidationErrorItem::field(
            path,
            "must be 1 to 128 characters of a-z, A-Z, 0-9, '-', '_', '.', '/', '\\' or '#'",
        ));
    }
    Ok(())
}

pub fn non_empty(path: &str, value: &str) -> Result<(), ValidationErrorItem> {
    if value.trim().is_empty() {
        return Err(ValidationErrorItem::field(path, "must not be empty"));
    }
    Ok(())
}

/// An endpoint URL: absolute http(s) with a host.
pub fn url(path: &str, value: &str) -> Result<url::Url, ValidationErrorItem> {
    if value.len() > 65536 {
        return Err(ValidationErrorItem::field(
            path,
            "is longer than 65536 characters",
        ));
    }
    let parsed = url::Url::parse(value)
        .map_err(|e| ValidationErrorItem::field(path, format!("is not a valid URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ValidationErrorItem::field(
            path,
            format!("must use http or https, not {}", parsed.scheme()),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ValidationErrorItem::field(path, "must name a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ValidationErrorItem::field(
            path,
            "must not carry credentials; use endpoint headers",
        ));
    }
    Ok(parsed)
}

/// A signing secret: `whsec_` + base64 of 24 to 64 bytes.
pub fn secret(path: &str, value: &str) -> Result<Secret, ValidationErrorItem> {
    Secret::parse(value).map_err(|e| ValidationErrorItem::field(path, e.to_string()))
}

/// Messages per second, as in the Svix API.
pub fn rate(path: &str, value: i64) -> Result<(), ValidationErrorItem> {
    if !(1..=65535).contains(&value) {
        return Err(ValidationErrorItem::field(
            path,
            "must be between 1 and 65535 messages per second",
        ));
    }
    Ok(())
}

/// Custom headers: valid HTTP names and values, none of the headers Herald sets itself.
pub fn headers(path: &str, headers: &BTreeMap<String, String>) -> Result<(), ValidationErrorItem> {
    for (name, value) in headers {
        let field = format!("{path}.{name}");
        if actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ValidationErrorItem::field(
                &field,
                "is not a valid header name",
            ));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("svix-") {
            return Err(ValidationErrorItem::field(
                &field,
                "is set by Herald and cannot be overridden",
            ));
        }
        if actix_web::http::header::HeaderValue::from_str(value).is_err() {
            return Err(ValidationErrorItem::field(
                &field,
                "is not a valid header value",
            ));
        }
    }
    Ok(())
}

/// A list, unique, within `max` entries, each accepted by `each`.
pub fn list(
    path: &str,
    values: &[String],
    max: usize,
    each: fn(&str, &str) -> Result<(), ValidationErrorItem>,
) -> Result<(), ValidationErrorItem> {
    if values.is_empty() {
        return Err(ValidationErrorItem::field(
            path,
            "must not be an empty list; omit it instead",
        ));
    }
    if values.len() > max {
        return Err(ValidationErrorItem::field(
            path,
            format!("must hold at most {max} entries"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for v in values {
        each(path, v)?;
        if !seen.insert(v) {
            return Err(ValidationErrorItem::field(
                path,
                format!("lists '{v}' twice"),
            ));
        }
    }
    Ok(())
}

/// The shapes the checks above accept, as schemas for the OpenAPI document (request fields
/// stay plain strings and lists, and name these in `value_type`).
pub mod shape {
    use std::borrow::Cow;

    use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};

    macro_rules! string_shape {
        ($name:ident, $doc:literal, $max:literal, $pattern:literal) => {
            #[doc = $doc]
            pub struct $name;

            impl utoipa::PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some($doc))
                        .min_length(Some(1))
                        .max_length(Some($max))
                        .pattern(Some($pattern))
                        .into()
                }
            }

            impl utoipa::ToSchema for $name {
                fn name() -> Cow<'static, str> {
                    Cow::Borrowed(stringify!($name))
                }
                fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                    schemas.push((
                        stringify!($name).into(),
                        <Self as utoipa::PartialSchema>::schema(),
                    ));
                }
            }
        };
    }

    string_shape!(
        EventTypeName,
        "An event type's name.",
        256,
        r"^[a-zA-Z0-9\-_.]+$"
    );
    string_shape!(Channel, "A channel.", 128, r"^[a-zA-Z0-9\-_.:+]+$");
    string_shape!(Tag, "A message tag.", 128, r"^[a-zA-Z0-9\-_./\\#]+$");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(url("url", "https://example.com/hook").is_ok());
        assert!(url("url", "http://example.com:8080").is_ok());
        for bad in [
            "ftp://example.com",
            "example.com/hook",
            "https://",
            "https://u:p@example.com",
            "javascript:alert(1)",
        ] {
            assert!(url("url", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uids_and_headers() {
        assert!(uid("uid", "merchant-1.eu_x").is_ok());
        assert!(uid("uid", "").is_err());
        assert!(uid("uid", "has space").is_err());
        assert!(uid("uid", "app_01abc").is_err(), "shaped like an id");
        assert!(uid("uid", "user_1").is_ok());
        let mut h = BTreeMap::new();
        h.insert("X-Tenant".to_string(), "acme".to_string());
        assert!(headers("headers", &h).is_ok());
        h.insert("Webhook-Signature".to_string(), "x".to_string());
        assert!(headers("headers", &h).is_err());
    }
}
