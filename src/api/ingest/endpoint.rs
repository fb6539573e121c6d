//! `/ingest/api/v1/source/{source_id}/endpoint`: where a source's verified events are
//! forwarded. They are the endpoints of the source's application, so forwarding is the
//! delivery engine's (leases, retries, breaker, attempt log, dead letters, replay); the
//! same functions as `/api/v1/app/{app}/endpoint` do the work.

use std::collections::BTreeMap;

use actix_web::{delete, get, post, put, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

use super::source::{self, SourcePath};
use crate::{
    api::{
        endpoint::{self, EndpointFields, EndpointOut, EventTypeCatalogue, Upserted},
        endpoint_secret::{self, HeadersIn, HeadersOut, RotateIn, SecretOut},
        error::{ApiResult, HttpErrorOut},
        extract::{Json, OptionalJson},
        pagination::{ListResponse, PageQuery},
    },
    destination::Policy,
    keyring::Keyring,
    signing::Secret,
};

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
pub struct SourceEndpointPath {
    /// The source's id (`src_…`) or uid.
    #[param(min_length = 1, max_length = 256)]
    pub source_id: String,
    /// The endpoint's id (`ep_…`) or uid.
    #[param(min_length = 1, max_length = 256)]
    pub endpoint_id: String,
}

/// A new source endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngestEndpointIn {
    #[schema(format = Uri, min_length = 1, max_length = 65536)]
    pub url: String,
    #[serde(default)]
    pub description: String,
    #[schema(minimum = 1, maximum = 65535)]
    pub throttle_rate: Option<i64>,
    #[schema(min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    pub uid: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    /// `whsec_` + base64 (default: a new one).
    #[schema(pattern = r"^whsec_[A-Za-z0-9+/]{32,86}={0,2}$")]
    pub secret: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub headers: Option<BTreeMap<String, String>>,
}

/// All of a source endpoint's fields but its secret and headers (PUT).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngestEndpointUpsertIn {
    #[schema(format = Uri, min_length = 1, max_length = 65536)]
    pub url: String,
    #[serde(default)]
    pub description: String,
    #[schema(minimum = 1, maximum = 65535)]
    pub throttle_rate: Option<i64>,
    #[schema(min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    pub uid: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl IngestEndpointUpsertIn {
    /// As an endpoint of the source's application: every event type, every channel.
    fn fields(self) -> EndpointFields {
        EndpointFields {
            url: self.url,
            description: self.description,
            throttle_rate: self.throttle_rate,
            uid: self.uid,
            disabled: self.disabled,
            event_types: None,
            channels: None,
            metadata: self.metadata,
            ordered: false,
            ordered_on_dead: Default::default(),
        }
    }
}

/// A source endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestEndpointOut {
    /// `ep_…`
    pub id: String,
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    pub throttle_rate: Option<i32>,
    pub disabled: bool,
    pub metadata: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<EndpointOut> for IngestEndpointOut {
    fn from(e: EndpointOut) -> Self {
        IngestEndpointOut {
            id: e.id,
            uid: e.uid,
            url: e.url,
            description: e.description,
            throttle_rate: e.throttle_rate,
            disabled: e.disabled,
            metadata: e.metadata.0,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// The source's application, and the endpoint the path names.
async fn resolve(pool: &PgPool, path: &SourceEndpointPath) -> ApiResult<(String, EndpointOut)> {
    let source = source::find(pool, &path.source_id).await?;
    let e = endpoint::find(pool, &source.app_id, &path.endpoint_id).await?;
    Ok((source.app_id, e))
}

/// List a source's endpoints.
#[utoipa::path(
    operation_id = "v1.ingest.endpoint.list", tag = "Ingest Endpoint", params(SourcePath, PageQuery),
    responses((status = 200, description = "A page of endpoints", body = ListResponse<IngestEndpointOut>))
)]
#[get("/source/{source_id}/endpoint")]
async fn list(
    pool: web::Data<PgPool>,
    path: web::Path<SourcePath>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let source = source::find(&pool, &path.source_id).await?;
    let page = endpoint::list_page(&pool, &source.app_id, &q, false).await?;
    Ok(HttpResponse::Ok().json(page.map(IngestEndpointOut::from)))
}

/// Create a source endpoint.
#[utoipa::path(
    operation_id = "v1.ingest.endpoint.create", tag = "Ingest Endpoint",
    params(SourcePath), request_body = IngestEndpointIn,
    responses(
        (status = 201, description = "Created", body = IngestEndpointOut),
        (status = 409, description = "The uid is taken in this source", body = HttpErrorOut),
    )
)]
#[post("/source/{source_id}/endpoint")]
async fn create(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    policy: web::Data<Policy>,
    path: web::Path<SourcePath>,
    Json(input): Json<IngestEndpointIn>,
) -> ApiResult<HttpResponse> {
    let source = source::find(&pool, &path.source_id).await?;
    let headers = input.headers.unwrap_or_default();
    let secret = input.secret;
    let fields = IngestEndpointUpsertIn {
        url: input.url,
        description: input.description,
        throttle_rate: input.throttle_rate,
        uid: input.uid,
        disabled: input.disabled,
        metadata: input.metadata,
    }
    .fields();
    let e = endpoint::create_checked(
        &pool,
        &ring,
        &policy,
        (&source.app_id, EventTypeCatalogue::Registered),
        &fields,
        secret.as_deref(),
        &headers,
    )
    .await?;
    Ok(HttpResponse::Created().json(IngestEndpointOut::from(e)))
}

/// Get a source endpoint.
#[utoipa::path(
    operation_id = "v1.ingest.endpoint.get", tag = "Ingest Endpoint", params(SourceEndpointPath),
    responses((status = 200, description = "The endpoint", body = IngestEndpointOut))
)]
#[get("/source/{source_id}/endpoint/{endpoint_id}")]
async fn get(
    pool: web::Data<PgPool>,
    path: web::Path<SourceEndpointPath>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(IngestEndpointOut::from(resolve(&pool, &path).await?.1)))
}

/// Replace a source endpoint, or create it (201) when `{endpoint_id}` is a uid not used yet.
#[utoipa::path(
    operation_id = "v1.ingest.endpoint.upsert", tag = "Ingest Endpoint",
    params(SourceEndpointPath), request_body = IngestEndpointUpsertIn,
    responses(
        (status = 200, description = "Replaced", body = IngestEndpointOut),
        (status = 201, description = "Created with this uid", body = IngestEndpointOut),
        (status = 409, description = "The new uid is taken", body = HttpErrorOut),
    )
)]
#[put("/source/{source_id}/endpoint/{endpoint_id}")]
async fn upsert(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    policy: web::Data<Policy>,
    path: web::Path<SourceEndpointPath>,
    Json(input): Json<IngestEndpointUpsertIn>,
) -> ApiResult<HttpResponse> {
    let source = source::find(&pool, &path.source_id).await?;
    let fields = input.fields();
    Ok(
        match endpoint::upsert(
            &pool,
            &ring,
            &policy,
            (&source.app_id, EventTypeCatalogue::Registered),
            &path.endpoint_id,
            fields,
        )
        .await?
        {
            Upserted::Replaced(e) => HttpResponse::Ok().json(IngestEndpointOut::from(e)),
            Upserted::Created(e) => HttpResponse::Created().json(IngestEndpointOut::from(e)),
        },
    )
}

/// Delete a source endpoint.
#[utoipa::path(
    operation_id = "v1.ingest.endpoint.delete", tag = "Ingest Endpoint", params(SourceEndpointPath),
    responses((status = 204, description = "Deleted"))
)]
#[delete("/source/{source_id}/endpoint/{endpoint_id}")]
async fn delete_endpoint(
    pool: web::Data<PgPool>,
    path: web::Path<SourceEndpointPath>,
) -> ApiResult<HttpResponse> {
    let (_, e) = resolve(&pool, &path).await?;
    endpoint::delete(&pool, &e.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Get a source endpoint's signing secret (forwards are signed with it).
#[utoipa::path(
    operation_id = "v1.ingest.endpoint.get-secret", tag = "Ingest Endpoint", params(SourceEndpointPath),
    responses((status = 200, description = "The current secret", body = SecretOut))
)]
#[get("/source/{source_id}/endpoint/{endpoint_id}/secret")]
async fn get_secret(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<SourceEndpointPath>,
) -> ApiResult<HttpResponse> {
    let (_, e) = resolve(&pool, &path).await?;
    let key = endpoint_secret::current(&pool, &ring, &e.id)
        .await?
        .expose();
    Ok(HttpResponse::Ok().json(SecretOut { key }))
}

/// Rotate a source endpoint's secret; the old one signs beside it for the grace period.
#[utoipa::path(
    operation_id = "v1.ingest.endpoint.rotate-secret", tag = "Ingest Endpoint",
    params(SourceEndpointPath), request_body(content = Option<RotateIn>),
    responses((status = 200, description = "The new secret", body = SecretOut))
)]
#[post("/source/{source_id}/endpoint/{endpoint_id}/secret/rotate")]
async fn rotate_secret(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<SourceEndpointPath>,
    OptionalJson(body): OptionalJson<RotateIn>,
) -> ApiResult<HttpResponse> {
    let (_, e) = resolve(&pool, &path).await?;
    let secret: Secret =
        endpoint_secret::rotate_as_asked(&pool, &ring, &e.id, &body.unwrap_or_default()).await?;
    Ok(HttpResponse::Ok().json(SecretOut {
        key: secret.expose(),
    }))
}

/// Get a source endpoint's custom headers.
#[utoipa::path(
    operation_id = "v1.ingest.endpoint.get-headers", tag = "Ingest Endpoint", params(SourceEndpointPath),
    responses((status = 200, description = "The headers", body = HeadersOut))
)]
#[get("/source/{source_id}/endpoint/{endpoint_id}/headers")]
async fn get_headers(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<SourceEndpointPath>,
) -> ApiResult<HttpResponse> {
    let (_, e) = resolve(&pool, &path).await?;
    Ok(HttpResponse::Ok().json(endpoint_secret::headers_out(&pool, &ring, &e.id).await?))
}

/// Replace a source endpoint's custom headers.
#[utoipa::path(
    operation_id = "v1.ingest.endpoint.set-headers", tag = "Ingest Endpoint",
    params(SourceEndpointPath), request_body = HeadersIn,
    responses((status = 204, description = "Replaced"))
)]
#[put("/source/{source_id}/endpoint/{endpoint_id}/headers")]
async fn set_headers(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<SourceEndpointPath>,
    Json(input): Json<HeadersIn>,
) -> ApiResult<HttpResponse> {
    let (_, e) = resolve(&pool, &path).await?;
    endpoint_secret::store_headers(&pool, &ring, &e.id, &input.headers).await?;
    Ok(HttpResponse::NoContent().finish())
}
