//! Request body extraction with precise errors: 413 over the size limit, 400 for malformed
//! JSON, 422 naming the field whose value has the wrong shape.

use std::{future::Future, pin::Pin};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ValidationErrorItem};

/// The largest body the API accepts (`HERALD_MAX_PAYLOAD_BYTES`).
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body deserialized into `T`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload);
        Box::pin(async move { parse(&body.await?).map(Json) })
    }
}

/// A JSON body that may be absent: an empty body is `None`; anything else must parse.
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload);
        Box::pin(async move {
            let body = body.await?;
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalJson(None));
            }
            parse(&body).map(|v| OptionalJson(Some(v)))
        })
    }
}

/// The raw body, within the size limit (for handlers that need its bytes too).
pub struct Body(pub web::Bytes);

impl FromRequest for Body {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload);
        Box::pin(async move { Ok(Body(body.await?.freeze())) })
    }
}

/// Reads the whole body, refusing it (413) as soon as it exceeds the limit.
pub fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
) -> impl Future<Output = Result<web::BytesMut, ApiError>> {
    let limit = req
        .app_data::<web::Data<BodyLimit>>()
        .map(|l| l.0)
        .unwrap_or(1 << 20);
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut payload = payload.take();
    async move {
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the body is larger than {limit} bytes (HERALD_MAX_PAYLOAD_BYTES)"
    ))
}

/// Deserializes, telling malformed JSON (400) from well-formed JSON of the wrong shape (422).
///
/// Request types refuse fields they do not know (`deny_unknown_fields`): a field Herald
/// would silently ignore is refused with a 422 naming it. A `null` in such a field asks for
/// nothing, so it is dropped instead (clients that serialize every optional field).
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the body is empty; a JSON object is required".into(),
        ));
    }
    let mut body = std::borrow::Cow::Borrowed(body);
    // Each round drops one unknown null field and parses the body again, so the rounds are
    // few (a client sends a handful of fields it does not need); past that, the field is
    // refused like any other.
    for _ in 0..MAX_NULL_FIELDS {
        match parse_once(&body) {
            Err(Unknown(path)) => match without_null(&body, &path) {
                Some(smaller) => body = std::borrow::Cow::Owned(smaller),
                None => return Err(unknown_field(&path)),
            },
            Ok(v) => return Ok(v),
            Err(Refused(e)) => return Err(e),
        }
    }
    match parse_once(&body) {
        Ok(v) => Ok(v),
        Err(Unknown(path)) => Err(unknown_field(&path)),
        Err(Refused(e)) => Err(e),
    }
}

/// Unknown fields sent as `null` that one body may carry.
const MAX_NULL_FIELDS: usize = 16;

enum Failure {
    /// A field the request type does not have, by its path (`application.foo`).
    Unknown(String),
    Refused(ApiError),
}
use Failure::{Refused, Unknown};

fn parse_once<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de);
    if value.is_ok() {
        // Trailing garbage after a valid value is malformed JSON too.
        de.end()
            .map_err(|e| Refused(ApiError::BadRequest(format!("malformed JSON: {e}"))))?;
    }
    match value {
        Ok(v) => Ok(v),
        Err(e) => {
            let inner = e.inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(Refused(ApiError::BadRequest(format!(
                    "malformed JSON: {inner}"
                ))));
            }
            // A shape error found before a syntax error further on: malformed still wins.
            if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                return Err(Refused(ApiError::BadRequest(format!(
                    "malformed JSON: {syntax}"
                ))));
            }
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            if inner.to_string().starts_with("unknown field") {
                return Err(Unknown(path));
            }
            Err(Refused(ApiError::Validation(vec![ValidationErrorItem {
                loc: location(&path),
                msg: strip_position(&inner.to_string()),
                kind: "type_error".into(),
            }])))
        }
    }
}

fn location(path: &str) -> Vec<String> {
    std::iter::once("body".to_string())
        .chain(path.split('.').filter(|p| !p.is_empty()).map(String::from))
        .collect()
}

fn unknown_field(path: &str) -> ApiError {
    ApiError::Validation(vec![ValidationErrorItem {
        loc: location(path),
        msg: "is not a field Herald supports; remove it (see /api/v1/openapi.json)".into(),
        kind: "value_error.extra".into(),
    }])
}

/// `body` without the field at `path` (object keys separated by dots) when its value is
/// `null`; `None` otherwise. Every other value keeps its exact bytes (key order aside).
fn without_null(body: &[u8], path: &str) -> Option<Vec<u8>> {
    use serde_json::value::RawValue;
    let mut object: std::collections::BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(body).ok()?;
    match path.split_once('.') {
        None => {
            if object.get(path)?.get().trim() != "null" {
                return None;
            }
            object.remove(path);
        }
        Some((head, rest)) => {
            let inner = without_null(object.get(head)?.get().as_bytes(), rest)?;
            let inner = RawValue::from_string(String::from_utf8(inner).ok()?).ok()?;
            object.insert(head.to_string(), inner);
        }
    }
    serde_json::to_vec(&object).ok()
}

/// serde_json appends " at line 1 column 17"; the field path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct In {
        name: String,
        inner: Option<Inner>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        n: u16,
    }

    #[test]
    fn tells_malformed_from_invalid() {
        assert!(matches!(
            parse::<In>(b"{\"name\": "),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(parse::<In>(b""), Err(ApiError::BadRequest(_))));
        assert!(matches!(parse::<In>(b"{} x"), Err(ApiError::BadRequest(_))));
        match parse::<In>(br#"{"name": "a", "inner": {"n": 70000}}"#) {
            Err(ApiError::Validation(items)) => {
                assert_eq!(items[0].loc, vec!["body", "inner", "n"])
            }
            other => panic!("{other:?}"),
        }
        match parse::<In>(br#"{}"#) {
            Err(ApiError::Validation(items)) => assert!(items[0].msg.contains("name"), "{items:?}"),
            other => panic!("{other:?}"),
        }
        assert!(parse::<In>(br#"{"name": "ok"}"#).is_ok());
    }
}
