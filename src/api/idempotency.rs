//! `idempotency-key` on POST ([`crate::store::idempotency`] says what is stored): the
//! middleware for every POST but message creates, which claim their key in the message's
//! own transaction ([`super::message_create`]), and the rules both follow:
//!
//! - a retry with the same key, request and body gets the first answer
//!   (`idempotent-replayed: true`) and nothing is done again;
//! - the same key with another request or body is refused (422);
//! - while the first request runs, a retry gets 409 (after the claim's lock expires, a
//!   retry runs the request again: the first never answered);
//! - 5xx answers are not recorded: the request may be retried for real.

use std::time::Duration;

use actix_web::{
    body::{self, BoxBody, MessageBody},
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::{header, Method, StatusCode},
    middleware::Next,
    web, Error, HttpMessage, HttpRequest, HttpResponse, HttpResponseBuilder,
};
use sqlx::PgPool;

use super::{
    error::{ApiError, ValidationErrorItem},
    extract,
};
use crate::access::principal::Principal;
use crate::store::{
    idempotency::{self as log, Held, KeyAnswer, KeyClaim, KeyedRequest},
    writers::ApiWriters,
};

/// How long a claimed key waits for its request's answer (`HERALD_IDEMPOTENCY_LOCK`).
#[derive(Debug, Clone, Copy)]
pub struct KeyLock(pub Duration);

/// The request's key, bound to its caller, request line and body; `None` without a key.
pub fn keyed_request(req: &HttpRequest, body: &[u8]) -> Result<Option<KeyedRequest>, ApiError> {
    let Some(key) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 256 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest("idempotency-key must be 1 to 256 visible ASCII characters".into())
        })?;
    let scope = req
        .extensions()
        .get::<Principal>()
        .map(|p| p.scope())
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no principal on a keyed request")))?;
    let line = match req.query_string() {
        "" => format!("{} {}", req.method(), req.path()),
        q => format!("{} {}?{q}", req.method(), req.path()),
    };
    Ok(Some(KeyedRequest::new(&scope, key, line, body)))
}

/// What a request whose key is taken gets.
#[derive(Debug, PartialEq)]
pub enum Replay {
    /// The message a message create made with this key: answer it again.
    Message(String),
    /// A recorded answer.
    Stored { status: StatusCode, body: Vec<u8> },
}

impl Replay {
    /// Decides from what holds the key.
    pub fn of(request: &KeyedRequest, held: Held) -> Result<Replay, ApiError> {
        if held.request.is_none() {
            // The claim was there a moment ago and is gone (forgotten or expired).
            return Err(ApiError::Unavailable(
                "the earlier request with this idempotency-key just ended; retry".into(),
                Duration::from_secs(1),
            ));
        }
        if !request.matches(held.request.as_deref(), held.fingerprint.as_deref()) {
            return Err(ApiError::Validation(vec![ValidationErrorItem {
                loc: vec!["header".into(), "idempotency-key".into()],
                msg: "this idempotency-key was used for a different request (another route or \
                      body); use a new key"
                    .into(),
                kind: "value_error".into(),
            }]));
        }
        if let Some(id) = held.message_id {
            return Ok(Replay::Message(id));
        }
        match held.status {
            Some(status) => Ok(Replay::Stored {
                status: StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK),
                body: held.body.unwrap_or_default(),
            }),
            None => Err(ApiError::Conflict(
                "a request with this idempotency-key is still being processed; retry later".into(),
            )),
        }
    }

    pub fn into_response(self) -> Result<HttpResponse, ApiError> {
        match self {
            Replay::Stored { status, body } if body.is_empty() => {
                Ok(replayed(HttpResponse::build(status)).finish())
            }
            Replay::Stored { status, body } => Ok(replayed(HttpResponse::build(status))
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .body(body)),
            Replay::Message(id) => Err(ApiError::Internal(anyhow::anyhow!(
                "a message create's key ({id}) reached the generic replay"
            ))),
        }
    }
}

/// Marks an answer as a replay.
pub fn replayed(mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
    builder.insert_header(("idempotent-replayed", "true"));
    builder
}

/// The middleware for every POST but message creates.
pub async fn replay_or_record(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if req.method() != Method::POST || !req.headers().contains_key("idempotency-key") {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let data = |req: &ServiceRequest| {
        let writers = req.app_data::<web::Data<ApiWriters>>().cloned();
        let pool = req.app_data::<web::Data<PgPool>>().cloned();
        let lock = req.app_data::<web::Data<KeyLock>>().map(|l| l.0);
        match (writers, pool, lock) {
            (Some(w), Some(p), Some(l)) => Ok((w, p, l)),
            _ => Err(ApiError::Internal(anyhow::anyhow!(
                "idempotency writers not configured"
            ))),
        }
    };
    let (writers, pool, lock) = data(&req)?;
    // The body is read here (it is part of the key's identity) and handed on unchanged.
    let mut payload = req.take_payload();
    let body = extract::read_body(req.request(), &mut payload).await?;
    let Some(keyed) = keyed_request(req.request(), &body)? else {
        unreachable!("checked above");
    };
    req.set_payload(Payload::from(body.freeze()));

    let (claim, claimed) = writers
        .key_claims
        .write(KeyClaim::new(keyed.clone(), lock))
        .await
        .map_err(ApiError::from)?;
    let token = claim.token;
    if !claimed {
        let held = log::held(&pool, &keyed.scope, &keyed.key)
            .await
            .map_err(ApiError::from)?;
        let response = Replay::of(&keyed, held)?.into_response()?;
        return Ok(req.into_response(response));
    }

    let response = match next.call(req).await {
        Ok(r) => r,
        Err(e) => {
            forget(&pool, &keyed, token).await;
            return Err(e);
        }
    };
    let status = response.status();
    if status.is_server_error() {
        forget(&pool, &keyed, token).await;
        return Ok(response.map_into_boxed_body());
    }
    let (http_req, res) = response.into_parts();
    let (head, payload) = res.into_parts();
    let bytes = body::to_bytes(payload)
        .await
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("unreadable response body")))?;
    let answer = KeyAnswer {
        scope: keyed.scope,
        key: keyed.key,
        token,
        status: status.as_u16() as i16,
        body: bytes.clone(),
    };
    // The request did what it did: its answer goes to the client even if it cannot be
    // recorded (the claim's lock then expires, and a retry after it runs the request again).
    if let Err(error) = writers.key_answers.write(answer).await {
        tracing::warn!(%error, "could not record the answer of a request with an idempotency-key");
    }
    let res = head.set_body(BoxBody::new(bytes));
    Ok(ServiceResponse::new(http_req, res))
}

async fn forget(pool: &PgPool, keyed: &KeyedRequest, token: uuid::Uuid) {
    if let Err(error) = log::forget(pool, &keyed.scope, &keyed.key, token).await {
        tracing::warn!(%error, "could not free an idempotency key; it frees itself when its lock expires");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(request: Option<&str>, body: &[u8]) -> Held {
        Held {
            request: request.map(String::from),
            fingerprint: Some(KeyedRequest::new("s", "k", String::new(), body).fingerprint),
            status: None,
            body: None,
            message_id: None,
        }
    }

    #[test]
    fn a_retry_replays_and_another_request_is_refused() {
        let r = KeyedRequest::new("s", "k", "POST /a".into(), b"{}");
        let mut h = held(Some("POST /a"), b"{}");
        h.message_id = Some("msg_1".into());
        assert_eq!(Replay::of(&r, h).unwrap(), Replay::Message("msg_1".into()));
        let mut h = held(Some("POST /a"), b"{}");
        h.status = Some(201);
        assert!(
            matches!(Replay::of(&r, h).unwrap(), Replay::Stored { status, .. } if status == 201)
        );
        let other_body = held(Some("POST /a"), b"{\"x\":1}");
        assert!(matches!(
            Replay::of(&r, other_body),
            Err(ApiError::Validation(_))
        ));
        let other_route = held(Some("POST /b"), b"{}");
        assert!(matches!(
            Replay::of(&r, other_route),
            Err(ApiError::Validation(_))
        ));
        let running = held(Some("POST /a"), b"{}");
        assert!(matches!(
            Replay::of(&r, running),
            Err(ApiError::Conflict(_))
        ));
        assert!(matches!(
            Replay::of(&r, held(None, b"")),
            Err(ApiError::Unavailable(..))
        ));
    }
}
