//! `POST /ingest/{token}`: where providers send their webhooks. The request is verified by
//! its source's scheme, then written durably (accepted, duplicate or rejected) before the
//! answer: a 2xx means Herald has it. Refusals answer with a short reason that never
//! repeats a secret; nothing here answers 500 for what a provider sends.

use std::{collections::BTreeMap, time::Duration};

use actix_web::{post, web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::source_cache::{KnownSource, SourceCache};
use utoipa::{IntoParams, ToSchema};

use crate::{
    api::error::{ApiError, ApiResult, HttpErrorOut},
    config::groups::Ingest,
    ingest::{
        forward,
        request::{Inbound, Refusal},
        source::SourceKind,
        verify::{self, circle::KeyCache, Verified},
    },
    metrics::{IngestSeen, SharedMetrics},
    store::{
        ingest::{Received, Recorded},
        writers::ApiWriters,
    },
};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(receive);
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct TokenPath {
    /// The secret part of the source's `ingestUrl`.
    #[param(min_length = 1, max_length = 256)]
    token: String,
}

/// What Herald did with an event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestReceivedOut {
    /// The message it is forwarded as (for a duplicate, the first one's).
    pub message_id: Option<String>,
    /// Its event id was seen within the dedupe window: not forwarded again.
    pub duplicate: bool,
}

/// The body, at most `limit` bytes (413 beyond).
async fn read_limited(mut payload: web::Payload, limit: usize) -> ApiResult<bytes::Bytes> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "the body is larger than {limit} bytes (HERALD_INGEST_MAX_BODY_BYTES)"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn refusal_answer(r: &Refusal) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(r.status())
        .unwrap_or(actix_web::http::StatusCode::UNAUTHORIZED);
    let mut answer = HttpResponse::build(status);
    if status == actix_web::http::StatusCode::SERVICE_UNAVAILABLE {
        answer.insert_header(("retry-after", "5"));
    }
    answer.json(HttpErrorOut {
        code: r.label().into(),
        detail: r.to_string(),
    })
}

/// Receive a provider's webhook.
#[utoipa::path(
    operation_id = "herald.ingest.receive", tag = "Ingest",
    params(TokenPath),
    request_body(content = String, description = "The provider's request, exactly as it sends it", content_type = "*/*"),
    responses(
        (status = 200, description = "Received and written (forwarded, or a duplicate); or, for Slack's url_verification, the challenge", body = IngestReceivedOut),
        (status = 400, description = "A header the source's scheme needs is missing (named), or the body is not text", body = HttpErrorOut),
        (status = 401, description = "The signature is malformed, does not match, or is too old", body = HttpErrorOut),
        (status = 404, description = "No source has this URL (unknown, or rotated)", body = HttpErrorOut),
        (status = 413, description = "The body is larger than HERALD_INGEST_MAX_BODY_BYTES", body = HttpErrorOut),
        (status = 503, description = "Not written (database unavailable, or a provider's key server): retry", body = HttpErrorOut),
    )
)]
#[post("/ingest/{token}")]
#[allow(clippy::too_many_arguments)] // the state a receive needs, each from the app
async fn receive(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    writers: web::Data<ApiWriters>,
    settings: web::Data<Ingest>,
    keys: web::Data<KeyCache>,
    sources: web::Data<SourceCache>,
    metrics: web::Data<SharedMetrics>,
    path: web::Path<TokenPath>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let KnownSource {
        id: source_id,
        kind,
    } = sources.source(&pool, &path.token).await?;
    let body = read_limited(payload, settings.ingest_max_body_bytes).await?;
    let headers = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())));
    let inbound = Inbound::new(headers, body);
    let text = String::from_utf8(inbound.body.to_vec())
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8 text".into()))?;
    let now = chrono::Utc::now();
    let ctx = verify::Context {
        now: now.timestamp(),
        tolerance: settings.ingest_tolerance.as_secs(),
        keys: &keys,
        source_id: &source_id,
    };
    let verdict = verify::verify(&kind, &inbound, &ctx).await;
    if let Ok(Verified {
        handshake: Some(reply),
        ..
    }) = &verdict
    {
        // A provider checking the URL (Slack): answered, not an event.
        return Ok(HttpResponse::Ok().json(reply));
    }
    if let Err(r @ Refusal::KeyUnavailable(_)) = &verdict {
        tracing::warn!(%source_id, reason = %r, "cannot verify: retry asked of the provider");
        return Ok(refusal_answer(r));
    }
    let received = received(
        &source_id,
        &kind,
        &inbound,
        text,
        &verdict,
        settings.ingest_dedupe_window,
    );
    let (_, recorded) = writers.received.write(received).await?;
    let seen = match (&verdict, &recorded) {
        (Err(r), _) => IngestSeen::Rejected(r.label()),
        (Ok(v), Recorded::Duplicate { .. }) => IngestSeen::Duplicate {
            verified: v.authenticated,
        },
        (Ok(v), _) => IngestSeen::Accepted {
            verified: v.authenticated,
        },
    };
    metrics.record_ingest(&source_id, seen, now.timestamp_millis() as f64 / 1000.0);
    match (verdict, recorded) {
        (_, Recorded::SourceGone) => Err(ApiError::NotFound("no source has this URL".into())),
        (Err(r), _) => {
            tracing::info!(%source_id, reason = %r, "inbound request refused");
            Ok(refusal_answer(&r))
        }
        (Ok(_), Recorded::Accepted { message_id, .. }) => {
            Ok(HttpResponse::Ok().json(IngestReceivedOut {
                message_id: Some(message_id),
                duplicate: false,
            }))
        }
        (Ok(_), Recorded::Duplicate { message_id, .. }) => {
            Ok(HttpResponse::Ok().json(IngestReceivedOut {
                message_id,
                duplicate: true,
            }))
        }
        (Ok(_), Recorded::Rejected { .. }) => Err(ApiError::Internal(anyhow::anyhow!(
            "an accepted request was recorded as rejected"
        ))),
    }
}

/// The row to write for a request and its verdict.
fn received(
    source_id: &str,
    kind: &SourceKind,
    inbound: &Inbound,
    body: String,
    verdict: &Result<Verified, Refusal>,
    window: Duration,
) -> Received {
    let (event_key, event_type, accepted, verified, reason) = match verdict {
        Ok(v) => (
            v.event_key.clone(),
            v.event_type.clone(),
            true,
            v.authenticated,
            None,
        ),
        Err(r) => (
            None,
            kind.source_type().as_str().to_string(),
            false,
            false,
            Some(r.to_string()),
        ),
    };
    Received {
        source_id: source_id.to_string(),
        event_key,
        event_type,
        accepted,
        verified,
        reason,
        forward_headers: if accepted {
            forward::headers(&inbound.headers, source_id)
        } else {
            BTreeMap::new()
        },
        content_type: forward::content_type(&inbound.headers),
        headers: inbound.headers.clone(),
        body,
        dedupe_window: window,
    }
}
