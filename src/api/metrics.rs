//! `GET /metrics`: the Prometheus text exposition. Unauthenticated, like most scrape
//! targets: it holds counts and endpoint ids, never payloads or secrets. Keep the port
//! private, or put it behind the same network policy as the database.

use actix_web::{get, web, HttpResponse};
use sqlx::PgPool;

use crate::{api::health::Readiness, metrics::SharedMetrics, store::stats::queue_depth};

/// Prometheus metrics (OpenMetrics text). No token: keep the port private.
#[utoipa::path(
    operation_id = "herald.metrics", tag = "Health",
    responses((status = 200, description = "The metrics", content_type = "application/openmetrics-text", body = String))
)]
#[get("/metrics")]
pub async fn metrics(
    metrics: web::Data<SharedMetrics>,
    pool: web::Data<PgPool>,
    readiness: web::Data<Readiness>,
) -> HttpResponse {
    // The queue is counted in the database; a scrape during an outage still answers, with
    // `herald_database_up 0` and the other series as last seen.
    let count = queue_depth(pool.get_ref());
    let queue = match actix_rt::time::timeout(readiness.timeout, count).await {
        Ok(Ok(q)) => Some(q),
        Ok(Err(error)) => {
            tracing::warn!(%error, "metrics: counting the queue failed");
            None
        }
        Err(_) => None,
    };
    let text = metrics.render(queue, &[("api", pool.get_ref())]);
    HttpResponse::Ok()
        // prometheus-client writes OpenMetrics text (with `# EOF`), which Prometheus reads.
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text)
}
