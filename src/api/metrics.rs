//! `GET /metrics`: the Prometheus text exposition. It holds counts and endpoint ids, never
//! payloads or secrets.
//!
//! Where it is served ([`Scrape`]): by default on the API's port without a token, as most
//! scrape targets are; with `HERALD_METRICS_LISTEN`, on that address of its own (a port the
//! network keeps private), and the API's port then answers it to operator tokens only.
//! Either way a scrape costs the database at most one count of the queue per
//! `HERALD_METRICS_CACHE` ([`QueueCache`]), however often and by however many it comes.

use std::time::{Duration, Instant};

use actix_web::{get, web, HttpRequest, HttpResponse};
use sqlx::PgPool;

use crate::{
    api::{error::ApiError, health::Readiness},
    metrics::{QueueDepth, SharedMetrics},
    store::stats::queue_depth,
};

/// Who may scrape `/metrics` where it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scrape {
    /// Anyone who reaches the port.
    Open,
    /// Operator tokens only (the API's port, when metrics have a listener of their own).
    OperatorOnly,
}

/// The queue's counts, taken at most once per `ttl` and by one scrape at a time: the others
/// wait for it and share its answer. A count that failed is remembered as well, so that
/// while the database is down scrapes answer at once (`herald_database_up 0`) instead of
/// each waiting out its own timeout.
pub struct QueueCache {
    ttl: Duration,
    last: tokio::sync::Mutex<Option<(Instant, Option<QueueDepth>)>>,
}

impl QueueCache {
    pub fn new(ttl: Duration) -> QueueCache {
        QueueCache {
            ttl,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The counts, from the cache while they are younger than the ttl; `None` when the
    /// database did not answer within `timeout`.
    pub async fn get(&self, pool: &PgPool, timeout: Duration) -> Option<QueueDepth> {
        let mut last = self.last.lock().await;
        if let Some((at, queue)) = *last {
            if at.elapsed() < self.ttl {
                return queue;
            }
        }
        let queue = match actix_rt::time::timeout(timeout, queue_depth(pool)).await {
            Ok(Ok(queue)) => Some(queue),
            Ok(Err(error)) => {
                tracing::warn!(%error, "metrics: counting the queue failed");
                None
            }
            Err(_) => None,
        };
        *last = Some((Instant::now(), queue));
        queue
    }
}

/// A running server: its handle and task.
pub type Running = (
    actix_web::dev::ServerHandle,
    actix_rt::task::JoinHandle<std::io::Result<()>>,
);

/// Serves `/metrics` alone, openly, on `listener` (`HERALD_METRICS_LISTEN`), with the same
/// metrics, pool, readiness and queue cache as the API.
pub fn serve_alone(
    listener: std::net::TcpListener,
    shared: SharedMetrics,
    pool: PgPool,
    readiness: Readiness,
    cache: web::Data<QueueCache>,
) -> std::io::Result<Running> {
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(web::Data::new(shared.clone()))
            .app_data(web::Data::new(pool.clone()))
            .app_data(web::Data::new(readiness.clone()))
            .app_data(cache.clone())
            .app_data(web::Data::new(Scrape::Open))
            .service(self::metrics)
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((server.handle(), actix_rt::spawn(server)))
}

/// Prometheus metrics (OpenMetrics text). Without a token unless `HERALD_METRICS_LISTEN`
/// moves them to a port of their own; then here an operator token is required.
#[utoipa::path(
    operation_id = "herald.metrics", tag = "Health",
    responses(
        (status = 200, description = "The metrics", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "HERALD_METRICS_LISTEN is set and no operator token was given", body = super::error::HttpErrorOut),
    )
)]
#[get("/metrics")]
pub async fn metrics(
    req: HttpRequest,
    metrics: web::Data<SharedMetrics>,
    pool: web::Data<PgPool>,
    readiness: web::Data<Readiness>,
    cache: web::Data<QueueCache>,
    scrape: web::Data<Scrape>,
) -> Result<HttpResponse, ApiError> {
    if **scrape == Scrape::OperatorOnly {
        super::auth::operator(&req).await?;
    }
    // A scrape during an outage still answers, with `herald_database_up 0` and the other
    // series as last seen.
    let queue = cache.get(pool.get_ref(), readiness.timeout).await;
    let text = metrics.render(queue, &[("api", pool.get_ref())]);
    Ok(HttpResponse::Ok()
        // prometheus-client writes OpenMetrics text (with `# EOF`), which Prometheus reads.
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text))
}
