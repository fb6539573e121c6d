//! `GET /api/v1/health` (Svix shape) and a liveness ping that never touches the database.

use actix_web::{web, HttpResponse};
use sqlx::PgPool;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/health", web::head().to(health))
        .route("/health/ping", web::get().to(ping))
        .route("/health/ping", web::head().to(ping));
}

async fn health(pool: web::Data<PgPool>) -> HttpResponse {
    let database_ok = sqlx::query("SELECT 1")
        .execute(pool.get_ref())
        .await
        .is_ok();
    let body = serde_json::json!({
        "database": { "status": if database_ok { "OK" } else { "ERROR" } },
    });
    if database_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn ping() -> HttpResponse {
    HttpResponse::NoContent().finish()
}
