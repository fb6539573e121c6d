//! The HTTP API: the Svix API (so the official Svix SDKs work unchanged) plus Herald's own
//! routes in the same style. One module per resource; each holds its request and response
//! shapes, its checks and its queries.

pub mod application;
pub mod attempt;
pub mod auth;
pub mod dead_letter;
pub mod endpoint;
pub mod endpoint_ops;
pub mod error;
pub mod event_type;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod message;
pub mod metrics;
pub mod openapi;
pub mod pagination;
pub mod query;
pub mod validate;

use actix_web::{middleware::from_fn, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Deserializer};

use error::{ApiError, ValidationErrorItem};

/// Shared state the handlers read.
pub struct ApiConfig {
    pub tokens: auth::ApiTokens,
    pub max_body_bytes: usize,
    pub destinations: crate::destination::Policy,
    pub readiness: health::Readiness,
    pub metrics: crate::metrics::SharedMetrics,
}

/// What a worker-only instance (`HERALD_ROLE=worker`) serves: health and metrics, so every
/// instance can be probed and scraped, but no API.
pub fn ops_routes(cfg: &mut web::ServiceConfig, api: &ApiConfig) {
    observability(cfg, api);
    cfg.service(web::scope("/api/v1").configure(health::routes))
        .default_service(web::to(not_found));
}

/// What every role serves outside `/api/v1`: `/metrics`, and the state health reads.
fn observability(cfg: &mut web::ServiceConfig, api: &ApiConfig) {
    cfg.app_data(web::Data::new(api.readiness.clone()))
        .app_data(web::Data::new(api.metrics.clone()))
        .route("/metrics", web::get().to(metrics::metrics));
}

pub fn routes(cfg: &mut web::ServiceConfig, api: &ApiConfig) {
    observability(cfg, api);
    cfg.app_data(web::Data::new(api.tokens.clone()))
        .app_data(web::Data::new(extract::BodyLimit(api.max_body_bytes)))
        .app_data(web::Data::new(api.destinations.clone()))
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
        )
        .service(
            web::scope("/api/v1")
                // Health answers without a token (load balancers, orchestrators).
                .configure(health::routes)
                .route("/openapi.json", web::get().to(openapi::document))
                .service(
                    web::scope("")
                        .wrap(from_fn(idempotency::replay_or_record))
                        .wrap(from_fn(auth::require_token))
                        .configure(application::routes)
                        .configure(event_type::routes)
                        .configure(endpoint::routes)
                        .configure(endpoint_ops::routes)
                        .configure(message::routes)
                        .configure(attempt::routes)
                        .configure(dead_letter::routes)
                        .default_service(web::to(not_found)),
                ),
        )
        .default_service(web::to(not_found));
}

/// Every answer is JSON, unknown routes included (the SDKs cannot parse anything else).
async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route {} {}",
        req.method(),
        req.path()
    )))
}

/// For PATCH bodies: a field absent (`None`), present as null (`Some(None)`), or set.
pub fn nullable<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}
