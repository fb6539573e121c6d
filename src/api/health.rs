//! Health: readiness at `GET /api/v1/health` (svix-server's shape: one `{"status": "OK" |
//! "ERROR"}` per component) and liveness at `GET /api/v1/health/ping`, which never touches
//! the database (a liveness probe that fails with the database would restart every replica
//! during a database outage, which helps nobody).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use actix_web::{route, web, HttpResponse};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

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

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(health).service(ping);
}

/// `OK` or `ERROR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum Status {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "ERROR")]
    Error,
}

impl From<bool> for Status {
    fn from(ok: bool) -> Self {
        if ok {
            Status::Ok
        } else {
            Status::Error
        }
    }
}

/// One component's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentOut {
    pub status: Status,
}

/// One dispatcher actor's state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActorOut {
    pub status: Status,
    pub heartbeat_age_ms: u64,
    pub restarts: u32,
    pub in_flight: usize,
}

/// Readiness, by component.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthOut {
    pub database: ComponentOut,
    /// The dispatcher, where this instance runs one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<ComponentOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actors: Option<BTreeMap<String, ActorOut>>,
}

/// Readiness: 200 when the database answers and every dispatcher actor answered a recent
/// heartbeat, 503 otherwise.
#[utoipa::path(
    operation_id = "v1.health.get", tag = "Health",
    responses(
        (status = 200, description = "Ready", body = HealthOut),
        (status = 503, description = "Not ready; the body says what is wrong", body = HealthOut),
    )
)]
#[route("/health", method = "GET", method = "HEAD")]
async fn health(pool: web::Data<PgPool>, readiness: web::Data<Readiness>) -> HttpResponse {
    let (ready, body) = report(&pool, &readiness).await;
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Readiness: whether this instance is ready, and each component's state.
pub async fn report(pool: &PgPool, readiness: &Readiness) -> (bool, HealthOut) {
    let query = sqlx::query("SELECT 1").execute(pool);
    let database_ok = matches!(
        actix_rt::time::timeout(readiness.timeout, query).await,
        Ok(Ok(_))
    );
    let mut body = HealthOut {
        database: ComponentOut {
            status: database_ok.into(),
        },
        queue: None,
        actors: None,
    };
    let mut ready = database_ok;
    if let Some(dispatcher) = &readiness.dispatcher {
        let actors = dispatcher.actors().await;
        let now = Instant::now();
        // No actor at all means the supervisor itself is not answering.
        let mut queue_ok = !actors.is_empty();
        let mut report = BTreeMap::new();
        for actor in actors {
            let age = now.saturating_duration_since(actor.last_heartbeat);
            let ok = age <= readiness.max_heartbeat_age;
            queue_ok &= ok;
            report.insert(
                actor.name,
                ActorOut {
                    status: ok.into(),
                    heartbeat_age_ms: age.as_millis() as u64,
                    restarts: actor.restarts,
                    in_flight: actor.health.in_flight,
                },
            );
        }
        // svix-server calls its delivery side "queue"; the actors say which part is wrong.
        body.queue = Some(ComponentOut {
            status: queue_ok.into(),
        });
        body.actors = Some(report);
        ready &= queue_ok;
    }
    (ready, body)
}

/// Liveness: 204 whenever the process serves HTTP; it never touches the database.
#[utoipa::path(
    operation_id = "v1.health.ping", tag = "Health",
    responses((status = 204, description = "Alive"))
)]
#[route("/health/ping", method = "GET", method = "HEAD")]
async fn ping() -> HttpResponse {
    HttpResponse::NoContent().finish()
}
