//! Herald: an endpoint's circuit breaker, per dispatcher instance and overall, and the
//! endpoints that need an operator's eye (circuit open, or disabled).

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::{endpoint, error::ApiResult, paths::EndpointPath};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(circuit);
}

/// One dispatcher instance's view of an endpoint's circuit breaker.
#[derive(Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitInstance {
    pub instance: String,
    /// `closed`, `open` or `half-open`.
    pub state: String,
    pub failures: i32,
    pub open_until: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// An endpoint's circuit breaker.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitOut {
    pub endpoint_id: String,
    /// `open` if any instance holds it open, `half-open` if any is probing, else `closed`.
    pub state: &'static str,
    pub instances: Vec<CircuitInstance>,
}

/// Herald: an endpoint's circuit breaker, per dispatcher instance and overall.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "herald.endpoint.circuit", tag = "Endpoint", params(EndpointPath),
    responses((status = 200, description = "The breaker's state", body = CircuitOut))
)]
#[get("/app/{app_id}/endpoint/{endpoint_id}/circuit")]
async fn circuit(
    pool: web::Data<PgPool>,
    path: web::Path<EndpointPath>,
) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    Ok(HttpResponse::Ok().json(circuit_of(&pool, &e.id).await?))
}

/// An endpoint's breaker, as every instance last recorded it.
pub async fn circuit_of(pool: &PgPool, endpoint_id: &str) -> ApiResult<CircuitOut> {
    let rows: Vec<CircuitInstance> = sqlx::query_as(
        "SELECT instance, state, failures, open_until, updated_at FROM herald.endpoint_circuit \
         WHERE endpoint_id = $1 ORDER BY updated_at DESC",
    )
    .bind(endpoint_id)
    .fetch_all(pool)
    .await?;
    Ok(CircuitOut {
        endpoint_id: endpoint_id.to_string(),
        state: overall(&rows, Utc::now()),
        instances: rows,
    })
}

/// An endpoint that needs attention.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Troubled {
    pub app_id: String,
    pub app_name: String,
    pub endpoint_id: String,
    pub url: String,
    /// Why it was disabled, if it is.
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// Until when a breaker holds it open, if one does.
    pub open_until: Option<DateTime<Utc>>,
}

/// Endpoints disabled (by a 410, by failing too long, by hand) or whose breaker is open on
/// some instance: at most `limit`, the most recent first.
pub async fn troubled(pool: &PgPool, limit: i64) -> ApiResult<Vec<Troubled>> {
    Ok(sqlx::query_as(
        "SELECT e.app_id, a.name AS app_name, e.id AS endpoint_id, e.url, e.disabled_reason, \
                e.disabled_at, c.open_until \
           FROM herald.endpoint e JOIN herald.application a ON a.id = e.app_id \
           LEFT JOIN LATERAL (SELECT max(open_until) AS open_until FROM herald.endpoint_circuit \
                               WHERE endpoint_id = e.id AND state <> 'closed' \
                                 AND open_until > now()) c ON true \
          WHERE e.disabled OR c.open_until IS NOT NULL \
          ORDER BY coalesce(e.disabled_at, c.open_until) DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

pub fn overall(rows: &[CircuitInstance], now: DateTime<Utc>) -> &'static str {
    let open = rows
        .iter()
        .any(|r| r.state == "open" && r.open_until.is_some_and(|u| u > now));
    let probing = rows.iter().any(|r| {
        r.state == "half-open" || (r.state == "open" && r.open_until.is_some_and(|u| u <= now))
    });
    if open {
        "open"
    } else if probing {
        "half-open"
    } else {
        "closed"
    }
}
