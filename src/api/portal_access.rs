//! `/api/v1/auth`: app-portal access (a partner's expiring token and the link that opens
//! Herald's portal with it) and logout, as in Svix.

use actix_web::{post, web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use super::{
    application::{self, ApplicationIn},
    auth,
    error::{ApiError, ApiResult},
    extract::OptionalJson,
    paths::AppPath,
    validate::{self, Problems},
};
use crate::{
    access::{
        principal::Principal,
        token::{self, NewToken, TokenKind},
        Authenticator,
    },
    config::groups::Access,
};

/// Routes under the bearer middleware.
pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(app_portal_access);
}

/// Logout authenticates by itself: a read-only token may log out too.
pub fn logout_route(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(logout);
}

/// A partner's access to one application's portal.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppPortalAccessIn {
    /// Creates the application when the path's uid names none yet.
    pub application: Option<ApplicationIn>,
    /// Seconds the token (and its link) last: 1 hour to 7 days; default
    /// `HERALD_PORTAL_EXPIRY`.
    #[schema(minimum = 3600, maximum = 604800)]
    pub expiry: Option<u64>,
    /// Event types with one of these feature flags are visible to the portal.
    #[schema(value_type = Option<Vec<super::validate::shape::EventTypeName>>, max_items = 25)]
    pub feature_flags: Option<Vec<String>>,
    /// The portal (and the token on the API) may only look, not change.
    #[serde(default)]
    pub read_only: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppPortalAccessOut {
    /// Opens Herald's portal for the application, signed in: once (the code in it is used
    /// up), before the token expires.
    #[schema(format = Uri)]
    pub url: String,
    /// An expiring token limited to the application: a bearer token on its API routes too.
    pub token: String,
}

impl AppPortalAccessIn {
    fn check(&self) -> ApiResult<()> {
        let mut p = Problems::default();
        if self.expiry.is_some_and(|s| !(3600..=604_800).contains(&s)) {
            p.push(
                "expiry",
                "must be between 3600 (1 hour) and 604800 (7 days)",
            );
        }
        if let Some(flags) = &self.feature_flags {
            p.check(validate::list("featureFlags", flags, 25, validate::name));
        }
        p.finish()
    }
}

/// Where browsers reach Herald: `HERALD_PUBLIC_URL`, else the request's own scheme and host
/// (as a proxy forwards them).
pub fn public_base(req: &HttpRequest, access: &Access) -> String {
    match &access.public_url {
        Some(u) => u.as_str().trim_end_matches('/').to_string(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    }
}

/// Get a magic link (and a token) for an application's portal.
#[utoipa::path(
    operation_id = "v1.authentication.app-portal-access", tag = "Authentication",
    params(AppPath), request_body(content = AppPortalAccessIn, description = "Optional"),
    responses((status = 200, description = "The link and the token", body = AppPortalAccessOut))
)]
#[post("/auth/app-portal-access/{app_id}")]
async fn app_portal_access(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    ring: web::Data<crate::keyring::Keyring>,
    access: web::Data<Access>,
    path: web::Path<AppPath>,
    input: OptionalJson<AppPortalAccessIn>,
) -> ApiResult<HttpResponse> {
    let input = input.0.unwrap_or_default();
    input.check()?;
    let app_id = match (
        &input.application,
        application::resolve(&pool, &path.app_id).await,
    ) {
        (_, Ok(id)) => id,
        (Some(new_app), Err(ApiError::NotFound(_))) => {
            application::get_or_create(&pool, &ring, &path.app_id, new_app).await?
        }
        (_, Err(e)) => return Err(e),
    };
    let base = public_base(&req, &access);
    let out = grant(&pool, &access, &base, &app_id, &input).await?;
    Ok(HttpResponse::Ok().json(out))
}

/// Makes a portal token for `app_id` and the link that signs in with it.
pub async fn grant(
    pool: &PgPool,
    access: &Access,
    base: &str,
    app_id: &str,
    input: &AppPortalAccessIn,
) -> ApiResult<AppPortalAccessOut> {
    input.check()?;
    let lasts = input
        .expiry
        .map(std::time::Duration::from_secs)
        .unwrap_or(access.portal_expiry);
    let issued = token::issue(
        pool,
        &NewToken {
            name: "app portal".into(),
            kind: TokenKind::Portal,
            app_id: Some(app_id.to_string()),
            expires_at: Some(Utc::now() + chrono::Duration::from_std(lasts).unwrap_or_default()),
            feature_flags: input.feature_flags.clone().unwrap_or_default(),
            read_only: input.read_only.unwrap_or(false),
        },
    )
    .await?;
    let code = issued
        .link_code
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a portal token without its link")))?;
    tracing::info!(%app_id, token_id = %issued.row.id, "app portal access given");
    Ok(AppPortalAccessOut {
        url: format!("{base}/portal/start?code={code}"),
        token: issued.token,
    })
}

/// Log out: revoke the token this request presents (a token made at run time; a token of
/// `HERALD_API_TOKENS` is removed from the configuration instead).
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.authentication.logout", tag = "Authentication",
    responses((status = 204, description = "Revoked"))
)]
#[post("/auth/logout")]
async fn logout(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    auth: web::Data<Authenticator>,
) -> ApiResult<HttpResponse> {
    let client = auth::client_address(&req);
    auth.check_address(client).map_err(auth::refused)?;
    let presented = auth::bearer(req.headers())?;
    let principal = auth
        .authenticate(&pool, client, presented)
        .await
        .map_err(auth::refused)?;
    if matches!(
        principal,
        Principal::Operator(crate::access::principal::Operator::Configured { .. })
    ) {
        return Err(ApiError::Forbidden(
            "a token of HERALD_API_TOKENS cannot log out: remove it from the configuration".into(),
        ));
    }
    token::revoke_presented(&pool, presented).await?;
    Ok(HttpResponse::NoContent().finish())
}
