//! Who is looking at a page: the session behind the request's cookie, the token it stands
//! for, and (for the pages of one application) which application.

use std::{future::Future, pin::Pin};

use actix_web::{dev::Payload, web, FromRequest, HttpMessage, HttpRequest};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use super::{page::UiError, session};
use crate::{
    access::{
        principal::{AppGrant, Principal, Reach},
        token, Authenticator,
    },
    api::{
        application::{self, ApplicationOut},
        error::ApiError,
    },
};

/// Which half of the UI a request is in (set on each scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// `/ui`: operators.
    Dashboard,
    /// `/portal`: one application's partner.
    Portal,
}

impl Area {
    /// The session cookie: one per area, so an operator may have both open.
    pub fn cookie(self) -> &'static str {
        match self {
            Area::Dashboard => "herald_ui",
            Area::Portal => "herald_portal",
        }
    }

    /// Where the area's pages live.
    pub fn root(self) -> &'static str {
        match self {
            Area::Dashboard => "/ui",
            Area::Portal => "/portal",
        }
    }
}

/// A signed-in viewer.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub area: Area,
    pub principal: Principal,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

impl Viewer {
    pub fn reach(&self) -> Reach {
        self.principal.reach()
    }

    pub fn grant(&self) -> Option<&AppGrant> {
        self.principal.app_grant()
    }

    /// Whether the viewer may change anything (a read-only portal may not).
    pub fn can_write(&self) -> bool {
        self.grant().is_none_or(|g| !g.read_only)
    }

    /// The form's CSRF token matches the session's (compared in constant time).
    pub fn check_csrf(&self, sent: &str) -> Result<(), UiError> {
        if bool::from(self.csrf.as_bytes().ct_eq(sent.as_bytes())) {
            Ok(())
        } else {
            Err(UiError::Csrf)
        }
    }
}

fn data<T: 'static>(req: &HttpRequest) -> Result<web::Data<T>, UiError> {
    req.app_data::<web::Data<T>>().cloned().ok_or_else(|| {
        UiError::Api(ApiError::Internal(anyhow::anyhow!(
            "{} not configured",
            std::any::type_name::<T>()
        )))
    })
}

/// The viewer of a request, once per request (kept in its extensions).
async fn load(req: HttpRequest) -> Result<Viewer, UiError> {
    if let Some(v) = req.extensions().get::<Viewer>() {
        return Ok(v.clone());
    }
    let area = *data::<Area>(&req)?.get_ref();
    let pool = data::<PgPool>(&req)?;
    let auth = data::<Authenticator>(&req)?;
    let signed_out = || UiError::SignIn(area);
    let cookie = req.cookie(area.cookie()).ok_or_else(signed_out)?;
    let s = session::find(&pool, cookie.value())
        .await
        .map_err(ApiError::from)?
        .ok_or_else(signed_out)?;
    let principal = match &s.holder {
        session::Holder::Configured { digest } if auth.still_configured(digest) => {
            Principal::Operator(crate::access::principal::Operator::Configured {
                digest: digest.clone(),
            })
        }
        session::Holder::Configured { .. } => return Err(signed_out()),
        session::Holder::Token { id } => {
            let t = token::live(&pool, id)
                .await
                .map_err(ApiError::from)?
                .ok_or_else(signed_out)?;
            Principal::from_token(&t).ok_or_else(signed_out)?
        }
    };
    let fits = match area {
        Area::Dashboard => principal.app_grant().is_none(),
        Area::Portal => principal.app_grant().is_some(),
    };
    if !fits {
        return Err(signed_out());
    }
    let viewer = Viewer {
        area,
        principal,
        csrf: s.csrf,
        expires_at: s.expires_at,
    };
    req.extensions_mut().insert(viewer.clone());
    Ok(viewer)
}

impl FromRequest for Viewer {
    type Error = UiError;
    type Future = Pin<Box<dyn Future<Output = Result<Viewer, UiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(load(req.clone()))
    }
}

/// The pages of one application: in the dashboard the one the path names (`{app_id}`), in
/// the portal the portal's own.
#[derive(Debug, Clone)]
pub struct AppScope {
    pub viewer: Viewer,
    pub app: ApplicationOut,
    /// Where this application's pages live: `/ui/app/{id}` or `/portal`.
    pub base: String,
}

impl FromRequest for AppScope {
    type Error = UiError;
    type Future = Pin<Box<dyn Future<Output = Result<AppScope, UiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let viewer = load(req.clone()).await?;
            let pool = data::<PgPool>(&req)?;
            let key = match viewer.grant() {
                Some(g) => g.app_id.clone(),
                None => req
                    .match_info()
                    .get("app_id")
                    .ok_or_else(|| UiError::Api(ApiError::not_found("application")))?
                    .to_string(),
            };
            let app = application::find(&pool, &key)
                .await?
                .ok_or_else(|| UiError::Api(ApiError::not_found("application")))?;
            let base = match viewer.area {
                Area::Dashboard => format!("/ui/app/{}", app.id),
                Area::Portal => "/portal".to_string(),
            };
            Ok(AppScope { viewer, app, base })
        })
    }
}

/// A form posted by a signed-in viewer who may write: its CSRF token checked, its fields
/// parsed (repeated names make lists: `eventTypes=a&eventTypes=b`). Every form that
/// changes something takes this.
pub struct Posted<T> {
    pub viewer: Viewer,
    pub form: T,
}

/// A form any signed-in viewer may post, read-only ones too (signing out): its CSRF token
/// checked.
pub struct Submitted<T> {
    pub viewer: Viewer,
    pub form: T,
}

#[derive(serde::Deserialize)]
struct CsrfField {
    csrf: String,
}

/// Forms are small; anything larger is not one of ours.
const FORM_LIMIT: usize = 64 * 1024;

/// Reads a posted form: the viewer's session, the CSRF token, then the fields.
async fn read_form<T: DeserializeOwned>(
    req: HttpRequest,
    body: impl Future<Output = Result<web::Bytes, actix_web::Error>>,
    to_write: bool,
) -> Result<(Viewer, T), UiError> {
    let viewer = load(req).await?;
    let body = body
        .await
        .map_err(|e| UiError::Api(ApiError::BadRequest(e.to_string())))?;
    if body.len() > FORM_LIMIT {
        return Err(UiError::Api(ApiError::PayloadTooLarge(
            "a form is at most 64 KiB".into(),
        )));
    }
    let csrf: CsrfField = serde_html_form::from_bytes(&body).map_err(|_| UiError::Csrf)?;
    viewer.check_csrf(&csrf.csrf)?;
    if to_write && !viewer.can_write() {
        return Err(UiError::Api(ApiError::Forbidden(
            "this portal is read-only".into(),
        )));
    }
    let form = serde_html_form::from_bytes(&body)
        .map_err(|e| UiError::Api(ApiError::invalid("form", e.to_string())))?;
    Ok((viewer, form))
}

impl<T: DeserializeOwned + 'static> FromRequest for Posted<T> {
    type Error = UiError;
    type Future = Pin<Box<dyn Future<Output = Result<Posted<T>, UiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Bytes::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let (viewer, form) = read_form(req, body, true).await?;
            Ok(Posted { viewer, form })
        })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Submitted<T> {
    type Error = UiError;
    type Future = Pin<Box<dyn Future<Output = Result<Submitted<T>, UiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Bytes::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let (viewer, form) = read_form(req, body, false).await?;
            Ok(Submitted { viewer, form })
        })
    }
}
