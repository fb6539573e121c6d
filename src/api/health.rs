//! Health: readiness at `GET /api/v1/health` (svix-server's shape: one `{"status": "OK" |
//! "ERROR"}` per component) and liveness at `GET /api/v1/health/ping`, which never touches
//! the database (a liveness probe that fails with the database would restart every replica
//! during a database outage, which helps nobody).

use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};
use sqlx::PgPool;

use crate::dispatcher::Dispatcher;

/// What readiness looks at besides the database.
#[derive(Clone)]
pub struct Readiness {
    /// `None` when this instance runs the API only (`HERALD_ROLE=api`).
    pub dispatcher: Option<Dispatcher>,
    /// An actor whose last heartbeat is older than this is reported unhealthy.
    pub max_heartbeat_age: Duration,
    /// How long the database check may take before it counts as down.
    pub timeout: Duration,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/health", web::head().to(health))
        .route("/health/ping", web::get().to(ping))
        .route("/health/ping", web::head().to(ping));
}

fn status(ok: bool) -> &'static str {
    if ok {
        "OK"
    } else {
        "ERROR"
    }
}

async fn health(pool: web::Data<PgPool>, readiness: web::Data<Readiness>) -> HttpResponse {
    let query = sqlx::query("SELECT 1").execute(pool.get_ref());
    let database_ok = matches!(
        actix_rt::time::timeout(readiness.timeout, query).await,
        Ok(Ok(_))
    );
    let mut body = Map::new();
    body.insert("database".into(), json!({ "status": status(database_ok) }));
    let mut ready = database_ok;
    if let Some(dispatcher) = &readiness.dispatcher {
        let actors = dispatcher.actors().await;
        let now = Instant::now();
        let mut report = Map::new();
        // No actor at all means the supervisor itself is not answering.
        let mut queue_ok = !actors.is_empty();
        for actor in actors {
            let age = now.saturating_duration_since(actor.last_heartbeat);
            let ok = age <= readiness.max_heartbeat_age;
            queue_ok &= ok;
            report.insert(
                actor.name,
                json!({
                    "status": status(ok),
                    "heartbeatAgeMs": age.as_millis() as u64,
                    "restarts": actor.restarts,
                    "inFlight": actor.health.in_flight,
                }),
            );
        }
        // svix-server calls its delivery side "queue"; the actors say which part is wrong.
        body.insert("queue".into(), json!({ "status": status(queue_ok) }));
        body.insert("actors".into(), Value::Object(report));
        ready &= queue_ok;
    }
    let body = Value::Object(body);
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn ping() -> HttpResponse {
    HttpResponse::NoContent().finish()
}
