//! `/ingest/api/v1/source`: sources, as in Svix's Ingest API. A source's answer carries its
//! `ingestUrl` (Herald's URL under the source's secret token) and, Herald's addition, when
//! it last received an event.

use actix_web::{delete, get, patch, post, put, web, HttpRequest, HttpResponse};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::{
    access::token::random_secret,
    api::{
        error::{ApiError, ApiResult, HttpErrorOut},
        extract::Json,
        pagination::{ListResponse, PageQuery},
        portal_access::public_base,
    },
    config::groups::Access,
    keyring::Keyring,
};

use super::source_cache::SourceCache;

mod model;

use model::{check_uid, insert, outs, save};
pub use model::{
    find, list_page, IngestSourceIn, IngestSourceOut, IngestSourcePatch, SourcePath, SourceRow,
};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get)
        .service(upsert)
        .service(patch_source)
        .service(delete_source)
        .service(rotate_token);
}
/// List sources.
#[utoipa::path(
    operation_id = "v1.ingest.source.list", tag = "Ingest Source", params(PageQuery),
    responses((status = 200, description = "A page of sources", body = ListResponse<IngestSourceOut>))
)]
#[get("/source")]
async fn list(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    access: web::Data<Access>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let base = public_base(&req, &access);
    Ok(HttpResponse::Ok().json(outs(list_page(&pool, &q).await?, &ring, &base)?))
}

/// Create a source.
#[utoipa::path(
    operation_id = "v1.ingest.source.create", tag = "Ingest Source", request_body = IngestSourceIn,
    responses(
        (status = 201, description = "Created", body = IngestSourceOut),
        (status = 409, description = "The uid is taken", body = HttpErrorOut),
    )
)]
#[post("/source")]
async fn create(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    access: web::Data<Access>,
    Json(input): Json<IngestSourceIn>,
) -> ApiResult<HttpResponse> {
    let kind = input.check()?;
    let row = insert(&pool, &ring, &input, &kind).await?;
    tracing::info!(source_id = %row.id, r#type = %row.r#type, "source created");
    Ok(HttpResponse::Created().json(row.out(&ring, &public_base(&req, &access))?))
}

/// Get a source.
#[utoipa::path(
    operation_id = "v1.ingest.source.get", tag = "Ingest Source", params(SourcePath),
    responses((status = 200, description = "The source", body = IngestSourceOut))
)]
#[get("/source/{source_id}")]
async fn get(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    access: web::Data<Access>,
    path: web::Path<SourcePath>,
) -> ApiResult<HttpResponse> {
    let row = find(&pool, &path.source_id).await?;
    Ok(HttpResponse::Ok().json(row.out(&ring, &public_base(&req, &access))?))
}

/// Replace a source, or create it (201) when `{source_id}` is a uid not used yet.
#[utoipa::path(
    operation_id = "v1.ingest.source.upsert", tag = "Ingest Source",
    params(SourcePath), request_body = IngestSourceIn,
    responses(
        (status = 200, description = "Replaced", body = IngestSourceOut),
        (status = 201, description = "Created with this uid", body = IngestSourceOut),
        (status = 409, description = "The new uid is taken", body = HttpErrorOut),
    )
)]
#[put("/source/{source_id}")]
async fn upsert(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    cache: web::Data<SourceCache>,
    access: web::Data<Access>,
    path: web::Path<SourcePath>,
    Json(mut input): Json<IngestSourceIn>,
) -> ApiResult<HttpResponse> {
    let base = public_base(&req, &access);
    match find(&pool, &path.source_id).await {
        Ok(existing) => {
            let kind = input.check()?;
            save(&pool, &ring, &existing.id, &input, &kind).await?;
            cache.forget(&existing.id);
            Ok(HttpResponse::Ok().json(find(&pool, &existing.id).await?.out(&ring, &base)?))
        }
        Err(ApiError::NotFound(_)) if !path.source_id.starts_with("src_") => {
            if let Some(problem) = check_uid(&path.source_id) {
                return Err(ApiError::Validation(vec![problem]));
            }
            input.uid.get_or_insert_with(|| path.source_id.clone());
            let kind = input.check()?;
            let row = insert(&pool, &ring, &input, &kind).await?;
            Ok(HttpResponse::Created().json(row.out(&ring, &base)?))
        }
        Err(e) => Err(e),
    }
}

/// Change a source's name, uid or metadata.
#[utoipa::path(
    operation_id = "v1.ingest.source.patch", tag = "Ingest Source",
    params(SourcePath), request_body = IngestSourcePatch,
    responses(
        (status = 200, description = "Changed", body = IngestSourceOut),
        (status = 409, description = "The new uid is taken", body = HttpErrorOut),
    )
)]
#[patch("/source/{source_id}")]
async fn patch_source(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    cache: web::Data<SourceCache>,
    access: web::Data<Access>,
    path: web::Path<SourcePath>,
    Json(p): Json<IngestSourcePatch>,
) -> ApiResult<HttpResponse> {
    let existing = find(&pool, &path.source_id).await?;
    // The stored config's secrets are sealed: opened here, checked as the caller's would be,
    // and sealed again (under the current key) by `save`.
    let config = existing.opened_config(&ring)?;
    let merged = IngestSourceIn {
        name: p.name.unwrap_or(existing.name.clone()),
        uid: p.uid.unwrap_or(existing.uid.clone()),
        metadata: p.metadata.unwrap_or(existing.metadata.0.clone()),
        r#type: existing.r#type.clone(),
        config,
    };
    let kind = merged.check()?;
    save(&pool, &ring, &existing.id, &merged, &kind).await?;
    cache.forget(&existing.id);
    let base = public_base(&req, &access);
    Ok(HttpResponse::Ok().json(find(&pool, &existing.id).await?.out(&ring, &base)?))
}

/// Delete a source with its endpoints, events, messages and attempts.
#[utoipa::path(
    operation_id = "v1.ingest.source.delete", tag = "Ingest Source", params(SourcePath),
    responses((status = 204, description = "Deleted"))
)]
#[delete("/source/{source_id}")]
async fn delete_source(
    pool: web::Data<PgPool>,
    cache: web::Data<SourceCache>,
    path: web::Path<SourcePath>,
) -> ApiResult<HttpResponse> {
    let source = find(&pool, &path.source_id).await?;
    // Deleting its application deletes the source and everything of both.
    sqlx::query("DELETE FROM herald.application WHERE id = $1")
        .bind(&source.app_id)
        .execute(pool.get_ref())
        .await?;
    cache.forget(&source.id);
    Ok(HttpResponse::NoContent().finish())
}

/// The source's new URL.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotateTokenOut {
    #[schema(format = Uri)]
    pub ingest_url: String,
}

/// Give a source a new URL: the old one answers 404 from now on.
#[utoipa::path(
    operation_id = "v1.ingest.source.rotate-token", tag = "Ingest Source", params(SourcePath),
    responses((status = 200, description = "The new URL", body = RotateTokenOut))
)]
#[post("/source/{source_id}/token/rotate")]
async fn rotate_token(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    cache: web::Data<SourceCache>,
    access: web::Data<Access>,
    path: web::Path<SourcePath>,
) -> ApiResult<HttpResponse> {
    let source = find(&pool, &path.source_id).await?;
    let token = random_secret();
    sqlx::query("UPDATE herald.ingest_source SET token = $2, updated_at = now() WHERE id = $1")
        .bind(&source.id)
        .bind(&token)
        .execute(pool.get_ref())
        .await?;
    cache.forget(&source.id);
    tracing::info!(source_id = %source.id, "source URL rotated");
    Ok(HttpResponse::Ok().json(RotateTokenOut {
        ingest_url: format!("{}/ingest/{token}", public_base(&req, &access)),
    }))
}
