//! `/api/v1/operational-webhook/endpoint`: where Herald's own events go (Svix's
//! operational webhooks). They are the endpoints of one reserved application, made with the
//! first of them, so their events have everything other deliveries have (retries, breaker,
//! attempt log, dead letters, replay) and the same functions as `/api/v1/app/{app}/endpoint`
//! do the work. What emits the events is `operational`'s business.

mod shapes;

use actix_web::{delete, get, post, put, web, HttpResponse};
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::IntoParams;

pub use shapes::{OperationalEndpointIn, OperationalEndpointOut, OperationalEndpointUpsertIn};

use super::{
    endpoint::{self, EndpointOut, EventTypeCatalogue, Upserted},
    endpoint_secret::{self, HeadersIn, HeadersOut, RotateIn, SecretOut},
    error::{ApiError, ApiResult, HttpErrorOut},
    extract::{Json, OptionalJson},
    pagination::{ListResponse, Ordering, Page, PageQuery},
};
use crate::{destination::Policy, keyring::Keyring};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get)
        .service(upsert)
        .service(delete_endpoint)
        .service(get_secret)
        .service(rotate_secret)
        .service(get_headers)
        .service(set_headers);
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OperationalEndpointPath {
    /// The operational endpoint's id (`ep_…`) or uid.
    #[param(min_length = 1, max_length = 256)]
    pub endpoint_id: String,
}

/// The name the reserved application is shown with (in the dashboard, in app lists).
pub const APPLICATION_NAME: &str = "Herald operational webhooks";

/// The reserved application, if an operational endpoint was ever made.
pub async fn application(pool: &PgPool) -> ApiResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM herald.application WHERE operational")
            .fetch_optional(pool)
            .await?,
    )
}

/// The reserved application, made now if need be (concurrent first calls make one).
async fn application_or_new(pool: &PgPool, ring: &Keyring) -> ApiResult<String> {
    sqlx::query(
        "INSERT INTO herald.application (name, operational) VALUES ($1, true) \
         ON CONFLICT (operational) WHERE operational DO NOTHING",
    )
    .bind(APPLICATION_NAME)
    .execute(pool)
    .await?;
    let app = application(pool).await?.ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("the operational application vanished"))
    })?;
    let mut conn = pool.acquire().await?;
    crate::store::signing_secret::seal_application_secrets(&mut conn, ring, &app).await?;
    Ok(app)
}

/// The operational endpoint the path names, or 404.
async fn find(pool: &PgPool, path: &OperationalEndpointPath) -> ApiResult<EndpointOut> {
    let app = application(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("operational endpoint"))?;
    endpoint::find(pool, &app, &path.endpoint_id).await
}

/// List the operational endpoints.
#[utoipa::path(
    operation_id = "v1.operational-webhook.endpoint.list", tag = "Webhook Endpoint",
    params(PageQuery),
    responses((status = 200, description = "A page of operational endpoints", body = ListResponse<OperationalEndpointOut>))
)]
#[get("/operational-webhook/endpoint")]
async fn list(pool: web::Data<PgPool>, q: web::Query<PageQuery>) -> ApiResult<HttpResponse> {
    let page = match application(&pool).await? {
        Some(app) => endpoint::list_page(&pool, &app, &q, false).await?,
        // Nothing yet; the query is checked all the same.
        None => ListResponse::from_rows(
            vec![],
            &Page::new(&q, Ordering::Ascending)?,
            |e: &EndpointOut| e.id.clone(),
        ),
    };
    Ok(HttpResponse::Ok().json(page.map(OperationalEndpointOut::from)))
}

/// Create an operational endpoint.
#[utoipa::path(
    operation_id = "v1.operational-webhook.endpoint.create", tag = "Webhook Endpoint",
    request_body = OperationalEndpointIn,
    responses(
        (status = 201, description = "Created", body = OperationalEndpointOut),
        (status = 409, description = "The uid is taken", body = HttpErrorOut),
    )
)]
#[post("/operational-webhook/endpoint")]
async fn create(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    policy: web::Data<Policy>,
    Json(input): Json<OperationalEndpointIn>,
) -> ApiResult<HttpResponse> {
    let (fields, secret, headers) = input.split();
    // Checked before the reserved application is made for it.
    fields
        .validate_in(&pool, &policy, EventTypeCatalogue::Operational)
        .await?;
    let app = application_or_new(&pool, &ring).await?;
    let e = endpoint::create_checked(
        &pool,
        &ring,
        &policy,
        (&app, EventTypeCatalogue::Operational),
        &fields,
        secret.as_deref(),
        &headers,
    )
    .await?;
    Ok(HttpResponse::Created().json(OperationalEndpointOut::from(e)))
}

/// Get an operational endpoint.
#[utoipa::path(
    operation_id = "v1.operational-webhook.endpoint.get", tag = "Webhook Endpoint",
    params(OperationalEndpointPath),
    responses((status = 200, description = "The operational endpoint", body = OperationalEndpointOut))
)]
#[get("/operational-webhook/endpoint/{endpoint_id}")]
async fn get(
    pool: web::Data<PgPool>,
    path: web::Path<OperationalEndpointPath>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(OperationalEndpointOut::from(find(&pool, &path).await?)))
}

/// Replace an operational endpoint, or create it (201) when `{endpoint_id}` is a uid not
/// used yet.
#[utoipa::path(
    operation_id = "v1.operational-webhook.endpoint.upsert", tag = "Webhook Endpoint",
    params(OperationalEndpointPath), request_body = OperationalEndpointUpsertIn,
    responses(
        (status = 200, description = "Replaced", body = OperationalEndpointOut),
        (status = 201, description = "Created with this uid", body = OperationalEndpointOut),
        (status = 409, description = "The new uid is taken", body = HttpErrorOut),
    )
)]
#[put("/operational-webhook/endpoint/{endpoint_id}")]
async fn upsert(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    policy: web::Data<Policy>,
    path: web::Path<OperationalEndpointPath>,
    Json(input): Json<OperationalEndpointUpsertIn>,
) -> ApiResult<HttpResponse> {
    let fields = input.fields();
    // Checked before the reserved application is made for it.
    fields
        .validate_in(&pool, &policy, EventTypeCatalogue::Operational)
        .await?;
    let app = application_or_new(&pool, &ring).await?;
    let target = (app.as_str(), EventTypeCatalogue::Operational);
    Ok(
        match endpoint::upsert(&pool, &ring, &policy, target, &path.endpoint_id, fields).await? {
            Upserted::Replaced(e) => HttpResponse::Ok().json(OperationalEndpointOut::from(e)),
            Upserted::Created(e) => HttpResponse::Created().json(OperationalEndpointOut::from(e)),
        },
    )
}

/// Delete an operational endpoint.
#[utoipa::path(
    operation_id = "v1.operational-webhook.endpoint.delete", tag = "Webhook Endpoint",
    params(OperationalEndpointPath),
    responses((status = 204, description = "Deleted"))
)]
#[delete("/operational-webhook/endpoint/{endpoint_id}")]
async fn delete_endpoint(
    pool: web::Data<PgPool>,
    path: web::Path<OperationalEndpointPath>,
) -> ApiResult<HttpResponse> {
    let e = find(&pool, &path).await?;
    endpoint::delete(&pool, &e.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Get an operational endpoint's signing secret (its events are signed with it).
#[utoipa::path(
    operation_id = "v1.operational-webhook.endpoint.get-secret", tag = "Webhook Endpoint",
    params(OperationalEndpointPath),
    responses((status = 200, description = "The current secret", body = SecretOut))
)]
#[get("/operational-webhook/endpoint/{endpoint_id}/secret")]
async fn get_secret(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<OperationalEndpointPath>,
) -> ApiResult<HttpResponse> {
    let e = find(&pool, &path).await?;
    let key = endpoint_secret::current(&pool, &ring, &e.id)
        .await?
        .expose();
    Ok(HttpResponse::Ok().json(SecretOut { key }))
}

/// Rotate an operational endpoint's secret; the old one signs beside it for the grace
/// period (Svix answers 204 here, without the new secret: read it with get-secret).
#[utoipa::path(
    operation_id = "v1.operational-webhook.endpoint.rotate-secret", tag = "Webhook Endpoint",
    params(OperationalEndpointPath), request_body(content = Option<RotateIn>),
    responses((status = 204, description = "Rotated"))
)]
#[post("/operational-webhook/endpoint/{endpoint_id}/secret/rotate")]
async fn rotate_secret(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<OperationalEndpointPath>,
    OptionalJson(body): OptionalJson<RotateIn>,
) -> ApiResult<HttpResponse> {
    let e = find(&pool, &path).await?;
    endpoint_secret::rotate_as_asked(&pool, &ring, &e.id, &body.unwrap_or_default()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Get an operational endpoint's custom headers.
#[utoipa::path(
    operation_id = "v1.operational-webhook.endpoint.get-headers", tag = "Webhook Endpoint",
    params(OperationalEndpointPath),
    responses((status = 200, description = "The headers", body = HeadersOut))
)]
#[get("/operational-webhook/endpoint/{endpoint_id}/headers")]
async fn get_headers(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<OperationalEndpointPath>,
) -> ApiResult<HttpResponse> {
    let e = find(&pool, &path).await?;
    Ok(HttpResponse::Ok().json(endpoint_secret::headers_out(&pool, &ring, &e.id).await?))
}

/// Replace an operational endpoint's custom headers.
#[utoipa::path(
    operation_id = "v1.operational-webhook.endpoint.set-headers", tag = "Webhook Endpoint",
    params(OperationalEndpointPath), request_body = HeadersIn,
    responses((status = 204, description = "Replaced"))
)]
#[put("/operational-webhook/endpoint/{endpoint_id}/headers")]
async fn set_headers(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<OperationalEndpointPath>,
    Json(input): Json<HeadersIn>,
) -> ApiResult<HttpResponse> {
    let e = find(&pool, &path).await?;
    endpoint_secret::store_headers(&pool, &ring, &e.id, &input.headers).await?;
    Ok(HttpResponse::NoContent().finish())
}
