//! Bearer-token authentication for everything under `/api/v1` but health and the document,
//! and the limits of application-scoped tokens.
//!
//! Deny by default: an application-scoped token reaches only the operations the document
//! opens to it ([`RouteTable`]), only under its own application's path (another
//! application is a 404, exactly as one that does not exist), and only `GET` when it is
//! read-only. The few such operations not under an application's path (dead letters,
//! background tasks, the event-type catalogue) limit their rows by the caller's
//! [`Reach`](crate::access::principal::Reach).

use std::net::{IpAddr, Ipv4Addr};

use actix_web::{
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::{header::HeaderMap, Method},
    middleware::Next,
    web, Error, FromRequest, HttpMessage, HttpRequest,
};
use sqlx::PgPool;

use super::{application, error::ApiError, route_table::RouteTable};
use crate::access::{
    principal::{AppGrant, Principal, Reach},
    Authenticator, Refused,
};

pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let (auth, pool, routes) = state(req.request())?;
    let principal = principal(req.request(), &auth, &pool).await?;
    if let Principal::Application(grant) = &principal {
        admit(&pool, &routes, grant, req.method(), req.path()).await?;
    }
    req.extensions_mut().insert(principal);
    next.call(req).await
}

/// Whose token `req` presents. A locked-out address is refused before its token is even
/// read.
async fn principal(
    req: &HttpRequest,
    auth: &Authenticator,
    pool: &PgPool,
) -> Result<Principal, ApiError> {
    let client = client_address(req);
    auth.check_address(client).map_err(refused)?;
    let presented = bearer(req.headers())?;
    auth.authenticate(pool, client, presented)
        .await
        .map_err(refused)
}

type State = (
    web::Data<Authenticator>,
    web::Data<PgPool>,
    web::Data<RouteTable>,
);

fn state(req: &HttpRequest) -> Result<State, ApiError> {
    let missing = |what| ApiError::Internal(anyhow::anyhow!("{what} not configured"));
    Ok((
        req.app_data::<web::Data<Authenticator>>()
            .cloned()
            .ok_or_else(|| missing("Authenticator"))?,
        req.app_data::<web::Data<PgPool>>()
            .cloned()
            .ok_or_else(|| missing("PgPool"))?,
        req.app_data::<web::Data<RouteTable>>()
            .cloned()
            .ok_or_else(|| missing("RouteTable"))?,
    ))
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized(
            "missing Authorization: Bearer <token> header",
        ))?;
    Ok(header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be \"Bearer <token>\"",
        ))?
        .trim())
}

/// The address failed authentications count against: the peer's. (Behind a proxy that is
/// the proxy's, so the limit is shared by everyone behind it; see README "Access".)
pub fn client_address(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Requires an operator token of `req` (outside [`require_token`]: `/metrics` on the API's
/// port when metrics have a listener of their own).
pub async fn operator(req: &HttpRequest) -> Result<(), ApiError> {
    let (auth, pool, _) = state(req)?;
    match principal(req, &auth, &pool).await? {
        Principal::Operator(_) => Ok(()),
        Principal::Application(grant) => Err(ApiError::Forbidden(format!(
            "this token is limited to application {}; /metrics needs an operator token",
            grant.app_id
        ))),
    }
}

pub fn refused(r: Refused) -> ApiError {
    match r {
        Refused::LockedOut(wait) => ApiError::TooManyRequests(r.to_string(), wait),
        Refused::Invalid => ApiError::Unauthorized("invalid token"),
        Refused::Database(e) => e.into(),
    }
}

/// Whether an application-scoped token may call `method path`.
async fn admit(
    pool: &PgPool,
    routes: &RouteTable,
    grant: &AppGrant,
    method: &Method,
    path: &str,
) -> Result<(), ApiError> {
    let Some(op) = routes.operation(method, path) else {
        return Err(ApiError::NotFound(format!("no route {method} {path}")));
    };
    if !op.application_tokens {
        return Err(ApiError::Forbidden(format!(
            "this token is limited to application {}; {method} {path} needs an operator token",
            grant.app_id
        )));
    }
    if grant.read_only && method != Method::GET {
        return Err(ApiError::Forbidden(
            "this token is read-only: it may only GET".into(),
        ));
    }
    if let Some(key) = op.app_key {
        // Someone else's application is not found, exactly like one that does not exist.
        let app_id = application::resolve(pool, key).await?;
        if app_id != grant.app_id {
            return Err(ApiError::not_found("application"));
        }
    }
    Ok(())
}

fn principal_of(req: &HttpRequest) -> Result<Principal, ApiError> {
    req.extensions().get::<Principal>().cloned().ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("no principal: route outside require_token"))
    })
}

/// Who is calling, in a handler (set by [`require_token`]).
impl FromRequest for Principal {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Principal, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(principal_of(req))
    }
}

/// The rows the caller reaches, in a handler.
impl FromRequest for Reach {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Reach, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(principal_of(req).map(|p| p.reach()))
    }
}
