//! An application's own signing secret (Herald): it signs deliveries to the URL a message
//! names itself (a payment request's callback URL), so a merchant knows it before its first
//! delivery. Read and rotated like an endpoint's.

use actix_web::{get, post, web, HttpResponse};
use sqlx::PgPool;

use super::{
    application,
    endpoint_secret::{current_of, rotate_of_as_asked, RotateIn, SecretOut},
    error::ApiResult,
    extract::OptionalJson,
    paths::AppPath,
};
use crate::{keyring::Keyring, store::signing_secret::SecretOwner};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(get_secret).service(rotate_secret);
}

/// Herald: get an application's current signing secret, which signs deliveries to the
/// callback URLs its messages name (`callbackUrl`; in SQL, `url =>`).
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "herald.application.get-secret", tag = "Application", params(AppPath),
    responses((status = 200, description = "The current secret", body = SecretOut))
)]
#[get("/app/{app_id}/secret")]
async fn get_secret(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<AppPath>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.app_id).await?;
    let secret = current_of(&pool, &ring, SecretOwner::Application(&app_id)).await?;
    Ok(HttpResponse::Ok().json(SecretOut {
        key: secret.expose(),
    }))
}

/// Herald: rotate an application's signing secret. The new secret signs from now on; the
/// old one keeps signing next to it for the grace period (a day by default).
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "herald.application.rotate-secret", tag = "Application",
    params(AppPath), request_body(content = Option<RotateIn>),
    responses((status = 200, description = "The new secret", body = SecretOut))
)]
#[post("/app/{app_id}/secret/rotate")]
async fn rotate_secret(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    path: web::Path<AppPath>,
    OptionalJson(body): OptionalJson<RotateIn>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.app_id).await?;
    let input = body.unwrap_or_default();
    let secret =
        rotate_of_as_asked(&pool, &ring, SecretOwner::Application(&app_id), &input).await?;
    Ok(HttpResponse::Ok().json(SecretOut {
        key: secret.expose(),
    }))
}
