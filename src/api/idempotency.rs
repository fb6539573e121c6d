//! `idempotency-key` on POST: the first answer is stored and replayed to any retry with the
//! same key, so an SDK retrying after a timeout or a 5xx never creates a message twice.
//!
//! The key is claimed by inserting a row with no status before the request runs; a second
//! request with the key while the first runs gets 409. 5xx answers are not stored (the
//! request may be retried for real). Keys are kept 24 hours (see retention). Claims and
//! answers of concurrent requests are written together (group commit, see
//! [`super::message::ingest`]).

use actix_web::{
    body::{self, BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{header, Method, StatusCode},
    middleware::Next,
    web, Error, HttpResponse,
};
use sqlx::PgPool;

use super::{
    error::ApiError,
    message::ingest::{Ingest, KeyAnswer, KeyClaim},
};

pub async fn replay_or_record(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (Some(key), true) = (key, req.method() == Method::POST) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if key.is_empty() || key.len() > 256 {
        return Err(
            ApiError::BadRequest("idempotency-key must be 1 to 256 characters".into()).into(),
        );
    }
    let pool = req
        .app_data::<web::Data<PgPool>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no pool")))?;
    let ingest = req
        .app_data::<web::Data<Ingest>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no group-commit writers")))?;
    let request = format!("{} {}", req.method(), req.path());

    // Claims of concurrent requests share one statement and commit.
    let claim = KeyClaim {
        key: key.clone(),
        request: request.clone(),
    };
    let (_, claimed) = ingest
        .key_claims
        .write(claim)
        .await
        .map_err(ApiError::from)?;
    if !claimed {
        let (stored_request, status, body): (String, Option<i16>, Option<Vec<u8>>) =
            sqlx::query_as("SELECT request, status, body FROM herald.idempotency WHERE key = $1")
                .bind(&key)
                .fetch_one(pool.get_ref())
                .await
                .map_err(ApiError::from)?;
        if stored_request != request {
            return Err(ApiError::Conflict(
                "this idempotency-key was used for another request".into(),
            )
            .into());
        }
        let Some(status) = status else {
            return Err(ApiError::Conflict(
                "a request with this idempotency-key is still being processed".into(),
            )
            .into());
        };
        let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
        let response = HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header(("idempotent-replayed", "true"))
            .body(body.unwrap_or_default());
        return Ok(req.into_response(response));
    }

    let response = next.call(req).await;
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            forget(&pool, &key).await;
            return Err(e);
        }
    };
    let status = response.status();
    if status.is_server_error() {
        forget(&pool, &key).await;
        return Ok(response.map_into_boxed_body());
    }
    let (http_req, res) = response.into_parts();
    let (head, payload) = res.into_parts();
    let bytes = body::to_bytes(payload)
        .await
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("unreadable response body")))?;
    let answer = KeyAnswer {
        key,
        status: status.as_u16() as i16,
        body: bytes.clone(),
    };
    ingest
        .key_answers
        .write(answer)
        .await
        .map_err(ApiError::from)?;
    let res = head.set_body(BoxBody::new(bytes));
    Ok(ServiceResponse::new(http_req, res))
}

async fn forget(pool: &PgPool, key: &str) {
    let _ = sqlx::query("DELETE FROM herald.idempotency WHERE key = $1 AND status IS NULL")
        .bind(key)
        .execute(pool)
        .await;
}
