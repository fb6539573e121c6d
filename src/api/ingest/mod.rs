//! Inbound webhooks over HTTP: Svix's Ingest API at `/ingest/api/v1` (sources, their
//! endpoints, their logs) and the route providers call, `/ingest/{token}`.
//!
//! * [`source`]: sources (CRUD, token rotation; their shapes, rows and queries in `source::model`).
//! * [`endpoint`]: a source's endpoints (the endpoints of its application).
//! * [`events`]: what arrived (Herald's event list; Svix's log of refusals).
//! * [`receive`]: receiving: verify, write, answer.
//! * [`source_cache`]: sources by token, remembered for a second.

pub mod endpoint;
pub mod events;
pub mod receive;
pub mod source;
pub mod source_cache;

/// The authenticated routes, under `/ingest/api/v1`.
pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(source::routes)
        .configure(endpoint::routes)
        .configure(events::routes);
}
