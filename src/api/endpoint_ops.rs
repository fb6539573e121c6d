//! Per-endpoint operations: secret, headers, recover, send-example, stats, re-enable.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{types::Json as Db, PgPool};

use super::{
    endpoint::{self, COLUMNS},
    error::{ApiError, ApiResult},
    extract::Json,
    message::{self, MessageOut},
    validate,
};
use crate::signing::Secret;

pub fn routes(cfg: &mut web::ServiceConfig) {
    let ep = "/app/{app_id}/endpoint/{endpoint_id}";
    cfg.route(&format!("{ep}/secret"), web::get().to(get_secret))
        .route(
            &format!("{ep}/secret/rotate"),
            web::post().to(rotate_secret),
        )
        .route(&format!("{ep}/headers"), web::get().to(get_headers))
        .route(&format!("{ep}/headers"), web::put().to(update_headers))
        .route(&format!("{ep}/headers"), web::patch().to(patch_headers))
        .route(&format!("{ep}/recover"), web::post().to(recover))
        .route(&format!("{ep}/send-example"), web::post().to(send_example))
        .route(&format!("{ep}/stats"), web::get().to(stats))
        .route(&format!("{ep}/enable"), web::post().to(enable))
        .route(&format!("{ep}/circuit"), web::get().to(circuit));
}

type EndpointPath = web::Path<(String, String)>;

/// How long a rotated-out secret keeps signing unless the caller says otherwise.
const DEFAULT_GRACE_SECONDS: i64 = 24 * 3600;
const MAX_GRACE_SECONDS: i64 = 7 * 24 * 3600;

#[derive(Serialize)]
struct SecretOut {
    key: String,
}

async fn get_secret(pool: web::Data<PgPool>, path: EndpointPath) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    let key: Vec<u8> = sqlx::query_scalar(
        "SELECT key FROM herald.endpoint_secret WHERE endpoint_id = $1 AND expires_at IS NULL",
    )
    .bind(&e.id)
    .fetch_optional(pool.get_ref())
    .await?
    .ok_or_else(|| ApiError::not_found("endpoint secret"))?;
    let secret = Secret::from_bytes(key).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(HttpResponse::Ok().json(SecretOut {
        key: secret.expose(),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RotateIn {
    key: Option<String>,
    grace_period_seconds: Option<i64>,
}

/// The new secret signs from now on; the old one keeps signing (next to it) for the grace
/// period, so receivers can deploy the new secret without missing a delivery.
async fn rotate_secret(
    pool: web::Data<PgPool>,
    path: EndpointPath,
    body: Option<Json<RotateIn>>,
) -> ApiResult<HttpResponse> {
    let input = body.map(|b| b.0).unwrap_or(RotateIn {
        key: None,
        grace_period_seconds: None,
    });
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    let secret = match &input.key {
        Some(k) => validate::secret("key", k).map_err(|e| ApiError::Validation(vec![e]))?,
        None => Secret::generate(),
    };
    let grace = input.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    if !(0..=MAX_GRACE_SECONDS).contains(&grace) {
        return Err(ApiError::invalid(
            "gracePeriodSeconds",
            format!("must be between 0 and {MAX_GRACE_SECONDS}"),
        ));
    }
    let mut tx = pool.begin().await?;
    // Serialize rotations of one endpoint: the unique index allows one current secret.
    sqlx::query("SELECT 1 FROM herald.endpoint WHERE id = $1 FOR UPDATE")
        .bind(&e.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE herald.endpoint_secret SET expires_at = now() + make_interval(secs => $2) \
         WHERE endpoint_id = $1 AND expires_at IS NULL",
    )
    .bind(&e.id)
    .bind(grace as f64)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO herald.endpoint_secret (endpoint_id, key) VALUES ($1, $2)")
        .bind(&e.id)
        .bind(secret.as_bytes())
        .execute(&mut *tx)
        .await?;
    // Secrets past their grace period sign nothing; keep a week of history, then forget them.
    sqlx::query("DELETE FROM herald.endpoint_secret WHERE endpoint_id = $1 AND expires_at < now() - interval '7 days'")
        .bind(&e.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(SecretOut {
        key: secret.expose(),
    }))
}

#[derive(Serialize, Deserialize)]
struct HeadersIn {
    headers: HashMap<String, String>,
}

#[derive(Deserialize)]
struct HeadersPatchIn {
    /// A null value removes that header.
    headers: HashMap<String, Option<String>>,
}

async fn load_headers(pool: &PgPool, endpoint_id: &str) -> ApiResult<HashMap<String, String>> {
    let h: Db<HashMap<String, String>> =
        sqlx::query_scalar("SELECT headers FROM herald.endpoint WHERE id = $1")
            .bind(endpoint_id)
            .fetch_one(pool)
            .await?;
    Ok(h.0)
}

async fn store_headers(
    pool: &PgPool,
    endpoint_id: &str,
    headers: &HashMap<String, String>,
) -> ApiResult<()> {
    validate::headers("headers", headers).map_err(|e| ApiError::Validation(vec![e]))?;
    sqlx::query("UPDATE herald.endpoint SET headers = $2, updated_at = now() WHERE id = $1")
        .bind(endpoint_id)
        .bind(Db(headers))
        .execute(pool)
        .await?;
    Ok(())
}

async fn get_headers(pool: web::Data<PgPool>, path: EndpointPath) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    let headers = load_headers(&pool, &e.id).await?;
    Ok(HttpResponse::Ok().json(json!({ "headers": headers, "sensitive": [] })))
}

async fn update_headers(
    pool: web::Data<PgPool>,
    path: EndpointPath,
    Json(input): Json<HeadersIn>,
) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    store_headers(&pool, &e.id, &input.headers).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn patch_headers(
    pool: web::Data<PgPool>,
    path: EndpointPath,
    Json(input): Json<HeadersPatchIn>,
) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    let mut headers = load_headers(&pool, &e.id).await?;
    for (name, value) in input.headers {
        match value {
            Some(v) => headers.insert(name, v),
            None => headers.remove(&name),
        };
    }
    store_headers(&pool, &e.id, &headers).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct RecoverIn {
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
}

/// Sends again every message that failed (dead) for this endpoint in the time range, with a
/// fresh retry schedule. The work is one statement, so the "task" is done when we answer.
async fn recover(
    pool: web::Data<PgPool>,
    path: EndpointPath,
    Json(input): Json<RecoverIn>,
) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    if input.until.is_some_and(|u| u <= input.since) {
        return Err(ApiError::invalid("until", "must be after since"));
    }
    let recovered = crate::store::replay::replay(
        &pool,
        &crate::store::replay::Selection {
            endpoint_id: Some(e.id.clone()),
            since: Some(input.since),
            until: input.until,
            ..Default::default()
        },
    )
    .await?;
    tracing::info!(endpoint_id = %e.id, recovered, "recovered failed messages");
    Ok(HttpResponse::Accepted().json(json!({
        "id": format!("qtask_{}", uuid::Uuid::new_v4().simple()),
        "status": "finished",
        "task": "endpoint.recover",
        "updatedAt": Utc::now(),
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExampleIn {
    event_type: String,
    example_index: Option<usize>,
    payload: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Sends one example message of an event type to this endpoint only.
async fn send_example(
    pool: web::Data<PgPool>,
    path: EndpointPath,
    Json(input): Json<ExampleIn>,
) -> ApiResult<HttpResponse> {
    let (app_id, e) = endpoint::resolve(&pool, &path).await?;
    let schemas: Option<Option<Db<serde_json::Value>>> =
        sqlx::query_scalar("SELECT schemas FROM herald.event_type WHERE name = $1")
            .bind(&input.event_type)
            .fetch_optional(pool.get_ref())
            .await?;
    let Some(schemas) = schemas else {
        return Err(ApiError::invalid(
            "eventType",
            format!("unknown event type '{}'", input.event_type),
        ));
    };
    let payload = match input.payload {
        Some(p) => serde_json::Value::Object(p),
        None => example_from_schemas(schemas.map(|s| s.0), input.example_index.unwrap_or(0))
            .unwrap_or_else(|| json!({ "type": input.event_type, "example": true })),
    };
    let payload = serde_json::to_string(&payload).map_err(|e| ApiError::Internal(e.into()))?;
    let id = message::send_to_endpoint(&pool, &app_id, &e.id, &input.event_type, &payload).await?;
    let msg: MessageOut = message::find(&pool, &app_id, &id, true).await?;
    Ok(HttpResponse::Ok().json(msg))
}

/// The n-th example of the newest schema version: `{"1": {"examples": [...]}}`.
fn example_from_schemas(
    schemas: Option<serde_json::Value>,
    index: usize,
) -> Option<serde_json::Value> {
    let schemas = schemas?;
    let versions = schemas.as_object()?;
    let newest = versions
        .keys()
        .max_by_key(|k| k.parse::<u32>().unwrap_or(0))?;
    versions[newest].get("examples")?.get(index).cloned()
}

#[derive(Deserialize)]
struct StatsQuery {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

async fn stats(
    pool: web::Data<PgPool>,
    path: EndpointPath,
    q: web::Query<StatsQuery>,
) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status::text, count(*) FROM herald.delivery WHERE endpoint_id = $1 \
         AND ($2::timestamptz IS NULL OR created_at >= $2) AND ($3::timestamptz IS NULL OR created_at < $3) \
         GROUP BY status",
    )
    .bind(&e.id)
    .bind(q.since)
    .bind(q.until)
    .fetch_all(pool.get_ref())
    .await?;
    let count = |s: &str| {
        rows.iter()
            .find(|(k, _)| k == s)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    Ok(HttpResponse::Ok().json(json!({
        "success": count("succeeded"),
        "pending": count("pending"),
        "sending": count("sending"),
        "fail": count("dead"),
        "canceled": 0,
    })))
}

/// Herald: re-enables an endpoint that was disabled (by a 410, by failing too long, or by
/// the API). Its dead letters stay dead until replayed.
async fn enable(pool: web::Data<PgPool>, path: EndpointPath) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    let sql = format!(
        "UPDATE herald.endpoint SET disabled = false, disabled_reason = NULL, disabled_at = NULL, \
         first_failure_at = NULL, updated_at = now() \
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    let out: endpoint::EndpointOut = sqlx::query_as(&sql)
        .bind(&e.id)
        .fetch_one(pool.get_ref())
        .await?;
    if e.disabled {
        tracing::info!(endpoint_id = %e.id, was = e.disabled_reason.as_deref().unwrap_or(""), "endpoint re-enabled");
    }
    Ok(HttpResponse::Ok().json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_come_from_the_newest_schema() {
        let schemas =
            json!({"1": {"examples": [{"v": 1}]}, "2": {"examples": [{"v": 2}, {"v": 3}]}});
        assert_eq!(
            example_from_schemas(Some(schemas.clone()), 0),
            Some(json!({"v": 2}))
        );
        assert_eq!(
            example_from_schemas(Some(schemas.clone()), 1),
            Some(json!({"v": 3}))
        );
        assert_eq!(example_from_schemas(Some(schemas), 5), None);
        assert_eq!(example_from_schemas(None, 0), None);
    }
}

#[derive(Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct CircuitRow {
    instance: String,
    state: String,
    failures: i32,
    open_until: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

/// Herald: the endpoint's circuit breaker, per dispatcher instance, and overall: `open` if
/// any instance holds it open, `half-open` if any is probing, else `closed`.
async fn circuit(pool: web::Data<PgPool>, path: EndpointPath) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    let rows: Vec<CircuitRow> = sqlx::query_as(
        "SELECT instance, state, failures, open_until, updated_at FROM herald.endpoint_circuit \
         WHERE endpoint_id = $1 ORDER BY updated_at DESC",
    )
    .bind(&e.id)
    .fetch_all(pool.get_ref())
    .await?;
    let now = Utc::now();
    let open = rows
        .iter()
        .any(|r| r.state == "open" && r.open_until.is_some_and(|u| u > now));
    let probing = rows.iter().any(|r| {
        r.state == "half-open" || (r.state == "open" && r.open_until.is_some_and(|u| u <= now))
    });
    let state = if open {
        "open"
    } else if probing {
        "half-open"
    } else {
        "closed"
    };
    Ok(HttpResponse::Ok().json(json!({ "endpointId": e.id, "state": state, "instances": rows })))
}
