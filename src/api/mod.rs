//! The HTTP API (actix-web).

pub mod health;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/api/v1").configure(health::routes));
}
