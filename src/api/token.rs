//! Herald: `/api/v1/token`, tokens managed at run time (operator tokens only). A token is
//! shown once, in the answer that creates it; the list shows everything else.

use actix_web::{get, post, web, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

use super::{
    application,
    error::{ApiError, ApiResult},
    extract::Json,
    pagination::{ListResponse, Ordering, Page, PageQuery},
    validate::{self, Problems},
};
use crate::access::token::{self, NewToken, TokenKind, TokenRow};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list).service(create).service(revoke);
}

/// A token to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiTokenIn {
    /// For humans: who or what uses it.
    #[schema(min_length = 1, max_length = 256)]
    pub name: String,
    /// Limit it to this application (id or uid); without it, an operator token.
    #[schema(min_length = 1, max_length = 256)]
    pub app_id: Option<String>,
    /// Seconds until it expires; without it, it lasts until revoked.
    #[schema(minimum = 60)]
    pub expiry: Option<u64>,
    /// Application tokens only: `GET` routes only.
    #[serde(default)]
    pub read_only: bool,
    /// Application tokens only: which feature-flagged event types it sees.
    #[schema(value_type = Option<Vec<super::validate::shape::EventTypeName>>, max_items = 25)]
    pub feature_flags: Option<Vec<String>>,
}

/// A token just made: the only answer that holds it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiTokenCreatedOut {
    /// The bearer token (`hrld_…`): store it now, Herald keeps only its hash.
    pub token: String,
    #[serde(flatten)]
    pub about: TokenRow,
}

impl ApiTokenIn {
    /// The token to make, with its application resolved.
    pub async fn to_new(&self, pool: &PgPool) -> ApiResult<NewToken> {
        let mut p = Problems::default();
        if self.name.trim().is_empty() || self.name.len() > 256 {
            p.push("name", "must be 1 to 256 characters");
        }
        if self
            .expiry
            .is_some_and(|s| !(60..=100 * 365 * 86400).contains(&s))
        {
            p.push(
                "expiry",
                "must be at least 60 seconds (and under 100 years)",
            );
        }
        if let Some(flags) = &self.feature_flags {
            p.check(validate::list("featureFlags", flags, 25, validate::name));
        }
        if self.app_id.is_none() && (self.read_only || self.feature_flags.is_some()) {
            p.push(
                "appId",
                "readOnly and featureFlags apply to application tokens: give an appId",
            );
        }
        p.finish()?;
        let app_id = match &self.app_id {
            Some(key) => Some(application::resolve(pool, key).await.map_err(|e| match e {
                ApiError::NotFound(_) => {
                    ApiError::invalid("appId", "no application has this id or uid")
                }
                e => e,
            })?),
            None => None,
        };
        Ok(NewToken {
            name: self.name.trim().to_string(),
            kind: if app_id.is_some() {
                TokenKind::Application
            } else {
                TokenKind::Operator
            },
            app_id,
            expires_at: self
                .expiry
                .map(|s| Utc::now() + chrono::Duration::seconds(s as i64)),
            feature_flags: self.feature_flags.clone().unwrap_or_default(),
            read_only: self.read_only,
        })
    }
}

/// Which tokens.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenFilter {
    /// Only this application's (id or uid).
    #[param(max_length = 256)]
    pub app_id: Option<String>,
}

/// Tokens, newest first by default; revoked and expired ones too (with when).
pub async fn list_page(
    pool: &PgPool,
    page: &PageQuery,
    f: &TokenFilter,
) -> ApiResult<ListResponse<TokenRow>> {
    let app_id = match &f.app_id {
        Some(key) => Some(application::resolve(pool, key).await?),
        None => None,
    };
    let page = Page::new(page, Ordering::Descending)?;
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {} FROM herald.api_token WHERE true",
        token::COLUMNS
    ));
    if let Some(app_id) = app_id {
        qb.push(" AND app_id = ").push_bind(app_id);
    }
    page.push_to(&mut qb, "id");
    let rows = qb.build_query_as().fetch_all(pool).await?;
    Ok(ListResponse::from_rows(rows, &page, |t: &TokenRow| {
        t.id.clone()
    }))
}

/// Makes a token.
pub async fn create_token(pool: &PgPool, input: &ApiTokenIn) -> ApiResult<ApiTokenCreatedOut> {
    let issued = token::issue(pool, &input.to_new(pool).await?).await?;
    tracing::info!(token_id = %issued.row.id, kind = issued.row.kind.as_str(), app_id = ?issued.row.app_id, "token created");
    Ok(ApiTokenCreatedOut {
        token: issued.token,
        about: issued.row,
    })
}

/// Herald: list tokens.
#[utoipa::path(
    operation_id = "herald.token.list", tag = "Tokens", params(PageQuery, TokenFilter),
    responses(
        (status = 200, description = "A page of tokens", body = ListResponse<TokenRow>),
        (status = 404, description = "No application has the `app_id` given", body = super::error::HttpErrorOut),
    )
)]
#[get("/token")]
async fn list(
    pool: web::Data<PgPool>,
    page: web::Query<PageQuery>,
    f: web::Query<TokenFilter>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(list_page(&pool, &page, &f).await?))
}

/// Herald: make a token: an operator token, or one limited to an application.
#[utoipa::path(
    operation_id = "herald.token.create", tag = "Tokens", request_body = ApiTokenIn,
    responses((status = 201, description = "Made; the token is in this answer only", body = ApiTokenCreatedOut))
)]
#[post("/token")]
async fn create(pool: web::Data<PgPool>, Json(input): Json<ApiTokenIn>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Created().json(create_token(&pool, &input).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct TokenPath {
    /// The token's id (`tok_…`).
    #[param(min_length = 1, max_length = 64)]
    token_id: String,
}

/// Herald: revoke a token (at once, on every instance).
#[utoipa::path(
    operation_id = "herald.token.revoke", tag = "Tokens", params(TokenPath),
    responses((status = 200, description = "Revoked", body = TokenRow))
)]
#[post("/token/{token_id}/revoke")]
async fn revoke(pool: web::Data<PgPool>, path: web::Path<TokenPath>) -> ApiResult<HttpResponse> {
    let row = token::revoke(&pool, &path.token_id)
        .await?
        .ok_or_else(|| ApiError::not_found("token"))?;
    tracing::info!(token_id = %row.id, "token revoked");
    Ok(HttpResponse::Ok().json(row))
}
