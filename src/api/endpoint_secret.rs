//! An endpoint's signing secret (read, rotate with a grace period) and custom headers.

use std::collections::BTreeMap;

use actix_web::{get, patch, post, put, web, HttpResponse};
use serde::{Deserialize, Serialize};
use sqlx::{types::Json as Db, PgPool};
use utoipa::ToSchema;

use super::{
    endpoint,
    error::{ApiError, ApiResult},
    extract::{Json, OptionalJson},
    paths::EndpointPath,
    validate,
};
use crate::{
    keyring::{is_sensitive_header, Keyring},
    signing::Secret,
    store::{
        signing_secret::{self, SecretOwner},
        string_map::StringMap,
    },
};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(get_secret)
        .service(rotate_secret)
        .service(get_headers)
        .service(update_headers)
        .service(patch_headers);
}

/// How long a rotated-out secret keeps signing unless the caller says otherwise.
pub const DEFAULT_GRACE_SECONDS: i64 = 24 * 3600;
const MAX_GRACE_SECONDS: i64 = 7 * 24 * 3600;

/// A signing secret.
#[derive(Serialize, ToSchema)]
pub struct SecretOut {
    /// `whsec_` + base64 of the key.
    pub key: String,
}

/// Get an endpoint's current signing secret.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.get-secret", tag = "Endpoint", params(EndpointPath),
    responses((status = 200, description = "The current secret", body = SecretOut))
)]
#[get("/app/{app_id}/endpoint/{endpoint_id}/secret")]
async fn get_secret(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<EndpointPath>,
) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    signs_with_its_own(&e)?;
    Ok(HttpResponse::Ok().json(SecretOut {
        key: current(&pool, &ring, &e.id).await?.expose(),
    }))
}

/// A callback endpoint has no secret of its own: its application's signs for it.
fn signs_with_its_own(e: &endpoint::EndpointOut) -> ApiResult<()> {
    if e.callback {
        return Err(ApiError::Conflict(format!(
            "{} is a callback endpoint: its deliveries are signed with the application's \
             secret (/api/v1/app/{{app_id}}/secret)",
            e.id
        )));
    }
    Ok(())
}

/// An endpoint's current signing secret.
pub async fn current(pool: &PgPool, ring: &Keyring, endpoint_id: &str) -> ApiResult<Secret> {
    current_of(pool, ring, SecretOwner::Endpoint(endpoint_id)).await
}

/// The current signing secret of an endpoint or an application.
pub async fn current_of(
    pool: &PgPool,
    ring: &Keyring,
    owner: SecretOwner<'_>,
) -> ApiResult<Secret> {
    let key = signing_secret::current(pool, ring, owner)
        .await?
        .ok_or_else(|| ApiError::not_found("signing secret"))?;
    Secret::from_bytes(key).map_err(|e| ApiError::Internal(e.into()))
}

/// A rotation: the new secret (default: a new one) and how long the old one keeps signing.
#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateIn {
    #[schema(pattern = r"^whsec_[A-Za-z0-9+/]{32,86}={0,2}$")]
    key: Option<String>,
    /// Seconds the old secret keeps signing next to the new one (default a day).
    #[schema(minimum = 0, maximum = 604800)]
    grace_period_seconds: Option<i64>,
}

/// Rotate an endpoint's signing secret. The new secret signs from now on; the old one keeps
/// signing next to it for the grace period, so receivers can deploy the new secret without
/// missing a delivery.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.rotate-secret", tag = "Endpoint",
    params(EndpointPath), request_body(content = Option<RotateIn>),
    responses((status = 200, description = "The new secret", body = SecretOut))
)]
#[post("/app/{app_id}/endpoint/{endpoint_id}/secret/rotate")]
async fn rotate_secret(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<EndpointPath>,
    OptionalJson(body): OptionalJson<RotateIn>,
) -> ApiResult<HttpResponse> {
    let input = body.unwrap_or_default();
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    signs_with_its_own(&e)?;
    let secret = rotate_as_asked(&pool, &ring, &e.id, &input).await?;
    Ok(HttpResponse::Ok().json(SecretOut {
        key: secret.expose(),
    }))
}

/// A rotation as a request asks for it: its key (or a new one) and grace period, checked.
pub async fn rotate_as_asked(
    pool: &PgPool,
    ring: &Keyring,
    endpoint_id: &str,
    input: &RotateIn,
) -> ApiResult<Secret> {
    rotate_of_as_asked(pool, ring, SecretOwner::Endpoint(endpoint_id), input).await
}

/// The same for an endpoint or an application.
pub async fn rotate_of_as_asked(
    pool: &PgPool,
    ring: &Keyring,
    owner: SecretOwner<'_>,
    input: &RotateIn,
) -> ApiResult<Secret> {
    let secret = match &input.key {
        Some(k) => validate::secret("key", k).map_err(|e| ApiError::Validation(vec![e]))?,
        None => Secret::generate(),
    };
    let grace = input.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    if !(0..=MAX_GRACE_SECONDS).contains(&grace) {
        return Err(ApiError::invalid(
            "gracePeriodSeconds",
            format!("must be between 0 and {MAX_GRACE_SECONDS}"),
        ));
    }
    if !signing_secret::rotate(pool, ring, owner, secret.as_bytes(), grace).await? {
        return Err(ApiError::not_found("signing secret"));
    }
    Ok(secret)
}

/// Makes `secret` the endpoint's current secret; the previous one keeps signing beside it
/// for `grace_seconds`.
pub async fn rotate(
    pool: &PgPool,
    ring: &Keyring,
    endpoint_id: &str,
    secret: &Secret,
    grace_seconds: i64,
) -> ApiResult<()> {
    let rotated = signing_secret::rotate(
        pool,
        ring,
        SecretOwner::Endpoint(endpoint_id),
        secret.as_bytes(),
        grace_seconds,
    )
    .await?;
    if !rotated {
        // Gone, or a callback endpoint (its application's secret signs for it).
        return Err(ApiError::not_found("endpoint secret"));
    }
    Ok(())
}

/// An endpoint's custom headers.
#[derive(Serialize, ToSchema)]
pub struct HeadersOut {
    pub headers: BTreeMap<String, String>,
    /// Names of headers whose values are not shown.
    pub sensitive: Vec<String>,
}

/// All of an endpoint's custom headers.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeadersIn {
    pub headers: BTreeMap<String, String>,
}

/// Headers to set (a `null` value removes that header) and to remove.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeadersPatchIn {
    headers: BTreeMap<String, Option<String>>,
    #[serde(default)]
    delete_headers: Vec<String>,
}

/// An endpoint's custom headers, their values opened.
pub async fn load_headers(
    pool: &PgPool,
    ring: &Keyring,
    endpoint_id: &str,
) -> ApiResult<BTreeMap<String, String>> {
    let h: StringMap = sqlx::query_scalar("SELECT headers FROM herald.endpoint WHERE id = $1")
        .bind(endpoint_id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("endpoint"))?;
    ring.open_headers(h.0)
        .map_err(|(name, e)| ApiError::Internal(anyhow::anyhow!("header {name}: {e}")))
}

/// An endpoint's custom headers as the API shows them: credentials (by name:
/// [`crate::keyring::is_sensitive_header`]) are named under `sensitive`, without their
/// values, as Svix does.
pub async fn headers_out(
    pool: &PgPool,
    ring: &Keyring,
    endpoint_id: &str,
) -> ApiResult<HeadersOut> {
    let (sensitive, shown): (BTreeMap<_, _>, BTreeMap<_, _>) =
        load_headers(pool, ring, endpoint_id)
            .await?
            .into_iter()
            .partition(|(name, _)| is_sensitive_header(name));
    Ok(HeadersOut {
        headers: shown,
        sensitive: sensitive.into_keys().collect(),
    })
}

pub async fn store_headers(
    pool: &PgPool,
    ring: &Keyring,
    endpoint_id: &str,
    headers: &BTreeMap<String, String>,
) -> ApiResult<()> {
    validate::headers("headers", headers).map_err(|e| ApiError::Validation(vec![e]))?;
    sqlx::query("UPDATE herald.endpoint SET headers = $2, updated_at = now() WHERE id = $1")
        .bind(endpoint_id)
        .bind(Db(ring.seal_headers(headers)))
        .execute(pool)
        .await?;
    Ok(())
}

/// Get an endpoint's custom headers.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.get-headers", tag = "Endpoint", params(EndpointPath),
    responses((status = 200, description = "The headers", body = HeadersOut))
)]
#[get("/app/{app_id}/endpoint/{endpoint_id}/headers")]
async fn get_headers(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<EndpointPath>,
) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    Ok(HttpResponse::Ok().json(headers_out(&pool, &ring, &e.id).await?))
}

/// Replace an endpoint's custom headers.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.update-headers", tag = "Endpoint",
    params(EndpointPath), request_body = HeadersIn,
    responses((status = 204, description = "Replaced"))
)]
#[put("/app/{app_id}/endpoint/{endpoint_id}/headers")]
async fn update_headers(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<EndpointPath>,
    Json(input): Json<HeadersIn>,
) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    store_headers(&pool, &ring, &e.id, &input.headers).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Set or remove some of an endpoint's custom headers.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.endpoint.patch-headers", tag = "Endpoint",
    params(EndpointPath), request_body = HeadersPatchIn,
    responses((status = 204, description = "Changed"))
)]
#[patch("/app/{app_id}/endpoint/{endpoint_id}/headers")]
async fn patch_headers(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<EndpointPath>,
    Json(input): Json<HeadersPatchIn>,
) -> ApiResult<HttpResponse> {
    let (_, e) = endpoint::resolve(&pool, &path).await?;
    let mut headers = load_headers(&pool, &ring, &e.id).await?;
    for (name, value) in input.headers {
        match value {
            Some(v) => headers.insert(name, v),
            None => headers.remove(&name),
        };
    }
    for name in input.delete_headers {
        headers.remove(&name);
    }
    store_headers(&pool, &ring, &e.id, &headers).await?;
    Ok(HttpResponse::NoContent().finish())
}
