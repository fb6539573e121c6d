//! The HTTP API: the Svix API (so the official Svix SDKs work unchanged) plus Herald's own
//! routes in the same style. One module per resource; each holds its request and response
//! shapes, its checks, its queries (as plain functions the web UI can call too) and its
//! handlers, annotated so that the OpenAPI document is derived from them ([`doc`]).
//!
//! * Resources: [`application`] (with [`application_secret`]), [`event_type`], [`endpoint`] (with [`endpoint_secret`],
//!   [`endpoint_ops`], [`endpoint_circuit`]), [`message`] and [`message_create`], [`attempt`] and
//!   [`delivery_status`], [`dead_letter`], [`background_task`], [`stats`], [`health`], [`metrics`].
//! * Operational webhooks: [`operational_webhook`] (where Herald's own events go).
//! * Inbound webhooks: [`ingest`] (Svix's Ingest API, and sources' URLs).
//! * Access: [`token`] (tokens managed at run time), [`portal_access`] (a partner's link
//!   and token, logout).
//! * Around them: [`auth`] (bearer tokens, and the limits of application-scoped ones),
//!   [`route_table`] (the documented routes at run time), [`idempotency`] (`idempotency-key`),
//!   [`extract`] (bodies, refusing unknown fields), [`error`], [`pagination`], [`query`],
//!   [`paths`], [`validate`], [`doc`] and [`openapi`] (the document).

pub mod application;
pub mod application_secret;
pub mod attempt;
pub mod auth;
pub mod background_task;
pub mod dead_letter;
pub mod delivery_status;
pub mod doc;
pub mod endpoint;
pub mod endpoint_circuit;
pub mod endpoint_ops;
pub mod endpoint_secret;
pub mod error;
pub mod event_type;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod ingest;
pub mod message;
pub mod message_create;
pub mod metrics;
pub mod openapi;
pub mod operational_webhook;
pub mod pagination;
pub mod paths;
pub mod portal_access;
pub mod query;
pub mod route_table;
pub mod stats;
pub mod token;
pub mod validate;

use actix_web::{middleware::from_fn, web};
use serde::{Deserialize, Deserializer};
use utoipa_actix_web::{scope, service_config::ServiceConfig};

use error::{ApiError, ValidationErrorItem};

/// Shared state the handlers read.
pub struct ApiConfig {
    pub authenticator: web::Data<crate::access::Authenticator>,
    pub access: crate::config::groups::Access,
    pub ingest: crate::config::groups::Ingest,
    /// Circle's fetched keys: one cache for every worker.
    pub circle_keys: web::Data<crate::ingest::verify::circle::KeyCache>,
    /// Sources by token, remembered for a second: one cache for every worker.
    pub sources: web::Data<ingest::source_cache::SourceCache>,
    pub max_body_bytes: usize,
    pub destinations: crate::destination::Policy,
    pub readiness: health::Readiness,
    pub metrics: crate::metrics::SharedMetrics,
    pub messages: message_create::MessageLimits,
    pub key_lock: idempotency::KeyLock,
    /// Seals and opens secrets at rest.
    pub keyring: web::Data<crate::keyring::Keyring>,
    /// Who may scrape `/metrics` on this listener, and the queue counts scrapes share.
    pub scrape: metrics::Scrape,
    pub queue_cache: web::Data<metrics::QueueCache>,
}

/// What an instance serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// The whole API.
    Api,
    /// Health and metrics only (`HERALD_ROLE=worker`): every instance can be probed and
    /// scraped.
    Ops,
}

/// Registers the routes. The registration is also what the OpenAPI document is made of.
pub fn configure(cfg: &mut ServiceConfig, serving: Serving) {
    cfg.service(metrics::metrics);
    let v1 = scope::scope("/api/v1").configure(health::routes);
    if serving == Serving::Ops {
        cfg.service(v1);
        return;
    }
    // Inbound webhooks: Svix's Ingest API (operators), and sources' URLs (providers).
    cfg.service(
        scope::scope("/ingest/api/v1")
            .wrap(from_fn(auth::require_token))
            .service(
                scope::scope("")
                    .wrap(from_fn(idempotency::replay_or_record))
                    .configure(ingest::routes),
            ),
    )
    .configure(ingest::receive::routes);
    cfg.service(
        v1.service(openapi::document)
            .configure(portal_access::logout_route)
            .service(
                scope::scope("")
                    .wrap(from_fn(auth::require_token))
                    // Message creates claim their idempotency key in the message's own
                    // transaction; every other POST goes through the middleware.
                    .service(message_create::create)
                    .service(
                        scope::scope("")
                            .wrap(from_fn(idempotency::replay_or_record))
                            .configure(application::routes)
                            .configure(application_secret::routes)
                            .configure(event_type::routes)
                            .configure(endpoint::routes)
                            .configure(endpoint_secret::routes)
                            .configure(endpoint_ops::routes)
                            .configure(endpoint_circuit::routes)
                            .configure(message::routes)
                            .configure(attempt::routes)
                            .configure(delivery_status::routes)
                            .configure(dead_letter::routes)
                            .configure(background_task::routes)
                            .configure(operational_webhook::routes)
                            .configure(stats::routes)
                            .configure(token::routes)
                            .configure(portal_access::routes),
                    ),
            ),
    );
}

/// The state the routes read, on the app.
pub fn app_data(cfg: &mut web::ServiceConfig, api: &ApiConfig) {
    cfg.app_data(web::Data::new(api.readiness.clone()))
        .app_data(web::Data::new(api.metrics.clone()))
        .app_data(api.authenticator.clone())
        .app_data(web::Data::new(api.access.clone()))
        .app_data(web::Data::new(api.ingest.clone()))
        .app_data(api.circle_keys.clone())
        .app_data(api.sources.clone())
        .app_data(web::Data::new(extract::BodyLimit(api.max_body_bytes)))
        .app_data(web::Data::new(api.destinations.clone()))
        .app_data(web::Data::new(api.messages))
        .app_data(web::Data::new(api.key_lock))
        .app_data(api.keyring.clone())
        .app_data(web::Data::new(api.scrape))
        .app_data(api.queue_cache.clone())
        .app_data(web::QueryConfig::default().error_handler(|err, _| {
            ApiError::Validation(vec![ValidationErrorItem {
                loc: vec!["query".into()],
                msg: err.to_string(),
                kind: "value_error".into(),
            }])
            .into()
        }))
        .app_data(
            web::PathConfig::default()
                .error_handler(|err, _| ApiError::BadRequest(err.to_string()).into()),
        );
}

/// The OpenAPI document of what `serving` serves, from the same registration the server
/// uses.
pub fn document(serving: Serving) -> utoipa::openapi::OpenApi {
    use utoipa_actix_web::AppExt;
    let (_, doc) = actix_web::App::new()
        .into_utoipa_app()
        .configure(|cfg| configure(cfg, serving))
        .split_for_parts();
    doc::finish(doc)
}

/// For PATCH bodies: a field absent (`None`), present as null (`Some(None)`), or set.
pub fn nullable<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}
