//! Signing in and out: the dashboard with an operator token, the portal with a one-time
//! link.

use actix_web::{
    cookie::{time, Cookie, SameSite},
    web, FromRequest, HttpRequest, HttpResponse,
};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use crate::{
    access::{principal::Principal, token, Authenticator, Refused},
    api::{auth, error::ApiError, portal_access::public_base},
    config::groups::Access,
    ui::{
        assets::Assets,
        page::{html, see_other, Button, UiError},
        session::{self, Holder},
        viewer::{Area, Submitted, Viewer},
    },
};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    css: String,
    problem: Option<String>,
}

/// `GET /ui/login`: the form (or the dashboard, when signed in already).
pub async fn form(req: HttpRequest, assets: web::Data<Assets>) -> Result<HttpResponse, UiError> {
    if Viewer::extract(&req).await.is_ok() {
        return Ok(see_other("/ui/"));
    }
    html(&LoginPage {
        css: assets.css_url(),
        problem: None,
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /ui/login`: an operator token starts a dashboard session.
pub async fn sign_in(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    auth: web::Data<Authenticator>,
    access: web::Data<Access>,
    assets: web::Data<Assets>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, UiError> {
    same_origin(&req)?;
    let client = auth::client_address(&req);
    let refused = |status: actix_web::http::StatusCode, problem: String| {
        let page = LoginPage {
            css: assets.css_url(),
            problem: Some(problem),
        };
        let mut response = html(&page)?;
        *response.status_mut() = status;
        Ok::<_, UiError>(response)
    };
    let principal = match auth.authenticate(&pool, client, form.token.trim()).await {
        Ok(p) => p,
        Err(Refused::Database(e)) => return Err(ApiError::from(e).into()),
        Err(r @ Refused::LockedOut(_)) => {
            return refused(
                actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                r.to_string(),
            )
        }
        Err(Refused::Invalid) => {
            return refused(
                actix_web::http::StatusCode::UNAUTHORIZED,
                "That token is not accepted.".into(),
            )
        }
    };
    let (holder, token_expiry) = match &principal {
        Principal::Operator(crate::access::principal::Operator::Configured { digest }) => (
            Holder::Configured {
                digest: digest.clone(),
            },
            None,
        ),
        Principal::Operator(crate::access::principal::Operator::Token { id }) => {
            let t = token::live(&pool, id).await.map_err(ApiError::from)?;
            (
                Holder::Token { id: id.clone() },
                t.and_then(|t| t.expires_at),
            )
        }
        Principal::Application(_) => {
            return refused(
                actix_web::http::StatusCode::FORBIDDEN,
                "That token is limited to one application: open its portal link instead.".into(),
            )
        }
    };
    let ttl = chrono::Duration::from_std(access.session_ttl).unwrap_or(chrono::Duration::hours(12));
    let expires = token_expiry.map_or(Utc::now() + ttl, |t| t.min(Utc::now() + ttl));
    let (cookie, _) = session::start(&pool, &holder, expires)
        .await
        .map_err(ApiError::from)?;
    tracing::info!(client = %client, "dashboard sign-in");
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", "/ui/"))
        .cookie(session_cookie(
            &req,
            &access,
            Area::Dashboard,
            cookie,
            expires,
        ))
        .finish())
}

/// The cookie of a session: only for its area's pages, never to scripts, never from
/// another site's page, and only over TLS when Herald is reached over TLS.
fn session_cookie(
    req: &HttpRequest,
    access: &Access,
    area: Area,
    value: String,
    expires: DateTime<Utc>,
) -> Cookie<'static> {
    let secure = public_base(req, access).starts_with("https://");
    Cookie::build(area.cookie(), value)
        .path(area.root())
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(time::Duration::seconds(
            (expires - Utc::now()).num_seconds().max(0),
        ))
        .finish()
}

/// `POST {root}/logout`: ends the session.
pub async fn sign_out(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    submitted: Submitted<Button>,
) -> Result<HttpResponse, UiError> {
    let area = submitted.viewer.area;
    if let Some(c) = req.cookie(area.cookie()) {
        session::end(&pool, c.value())
            .await
            .map_err(ApiError::from)?;
    }
    let mut gone = Cookie::build(area.cookie(), "").path(area.root()).finish();
    gone.make_removal();
    let next = match area {
        Area::Dashboard => "/ui/login",
        Area::Portal => "/portal/signed-out",
    };
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", next))
        .cookie(gone)
        .finish())
}

#[derive(Template)]
#[template(path = "portal_start.html")]
struct StartPage {
    css: String,
    js: String,
    /// The code to post (the link's), or `None` when it could not be used.
    code: Option<String>,
}

#[derive(Deserialize)]
pub struct StartQuery {
    code: String,
}

/// `GET /portal/start?code=…`: a portal link. The page posts the code on by itself (or
/// with a click, without script): a link scanner or a chat's preview that fetches the
/// link only reads this page, and the one-time code stays unused.
pub async fn portal_link(
    assets: web::Data<Assets>,
    q: web::Query<StartQuery>,
) -> Result<HttpResponse, UiError> {
    html(&StartPage {
        css: assets.css_url(),
        js: assets.js_url(),
        code: Some(q.code.clone()),
    })
}

/// `POST /portal/start`: uses the link's code up and starts a session that lasts as long
/// as the portal token.
pub async fn portal_start(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    auth: web::Data<Authenticator>,
    access: web::Data<Access>,
    assets: web::Data<Assets>,
    form: web::Form<StartQuery>,
) -> Result<HttpResponse, UiError> {
    same_origin(&req)?;
    let client = auth::client_address(&req);
    auth.check_address(client).map_err(auth::refused)?;
    let redeemed = token::redeem_link(&pool, &form.code)
        .await
        .map_err(ApiError::from)?;
    let Some(t) = redeemed.filter(|t| t.app_id.is_some()) else {
        let _ = auth.failed(client);
        let mut response = html(&StartPage {
            css: assets.css_url(),
            js: assets.js_url(),
            code: None,
        })?;
        *response.status_mut() = actix_web::http::StatusCode::FORBIDDEN;
        return Ok(response);
    };
    let expires = t
        .expires_at
        .unwrap_or_else(|| Utc::now() + chrono::Duration::days(7));
    let (cookie, _) = session::start(&pool, &Holder::Token { id: t.id.clone() }, expires)
        .await
        .map_err(ApiError::from)?;
    tracing::info!(app_id = ?t.app_id, token_id = %t.id, "portal sign-in");
    // A form on Herald's own page led here, so the cookie goes with the redirect.
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", "/portal/endpoints"))
        .cookie(session_cookie(&req, &access, Area::Portal, cookie, expires))
        .finish())
}

/// Sign-in forms are posted from Herald's own pages: a browser says where a form came
/// from (`Origin`), and another site's is refused, so no page elsewhere can sign a
/// visitor in as someone else.
fn same_origin(req: &HttpRequest) -> Result<(), UiError> {
    let Some(origin) = req.headers().get("origin").and_then(|o| o.to_str().ok()) else {
        return Ok(());
    };
    let host = req.connection_info().host().to_string();
    match url::Url::parse(origin) {
        Ok(u)
            if u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            }) == Some(host) =>
        {
            Ok(())
        }
        _ => Err(UiError::Api(ApiError::Forbidden(
            "this form was posted from another site".into(),
        ))),
    }
}

/// `GET /portal/signed-out`.
pub async fn portal_signed_out() -> Result<HttpResponse, UiError> {
    Err(UiError::SignIn(Area::Portal))
}
