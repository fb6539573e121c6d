//! API errors in the Svix shapes: `{"code", "detail"}` for most, and
//! `{"detail": [{"loc", "msg", "type"}]}` for 422 validation errors.
//!
//! Every database condition has a defined answer ([`from_database`]): what load, a race or
//! an outage causes is 503 with `Retry-After` (the SDKs retry 5xx), a race with a delete is
//! 404, input PostgreSQL refuses is 422. Only a bug is a 500.

use std::time::Duration;

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// One problem with a request: where (`["body", "url"]`, `["query", "limit"]`) and what.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct ValidationErrorItem {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl ValidationErrorItem {
    /// A problem with one field of the body: `field("url", "must be http or https")`.
    pub fn field(path: &str, msg: impl Into<String>) -> Self {
        let mut loc = vec!["body".to_string()];
        loc.extend(path.split('.').filter(|p| !p.is_empty()).map(String::from));
        ValidationErrorItem {
            loc,
            msg: msg.into(),
            kind: "value_error".into(),
        }
    }

    pub fn query(name: &str, msg: impl Into<String>) -> Self {
        ValidationErrorItem {
            loc: vec!["query".into(), name.into()],
            msg: msg.into(),
            kind: "value_error".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication failed: {0}")]
    Unauthorized(&'static str),
    /// The caller is known but may not do this (an application-scoped or read-only token).
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    #[error("validation failed")]
    Validation(Vec<ValidationErrorItem>),
    /// Too many failed attempts from this client; try again after the given time.
    #[error("too many requests: {0}")]
    TooManyRequests(String, Duration),
    /// The database is unreachable, overloaded or briefly unable to serve the request: the
    /// client should retry after the given time.
    #[error("service unavailable: {0}")]
    Unavailable(String, Duration),
    /// A bug or an unexpected database error. The cause is logged, not returned.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

/// How long a client should wait before retrying a request the database could not serve.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// A conflict with a concurrent transaction clears at once.
const RETRY_SOON: Duration = Duration::from_secs(1);

impl ApiError {
    pub fn invalid(path: &str, msg: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![ValidationErrorItem::field(path, msg)])
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::NotFound(format!("{what} not found"))
    }

    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::Unavailable(detail.into(), RETRY_AFTER)
    }
}

/// The body of every error but 422.
#[derive(Serialize, ToSchema)]
pub struct HttpErrorOut {
    /// A stable code: `not_found`, `conflict`, `authentication_failed`, ...
    pub code: String,
    /// What went wrong, for a human.
    pub detail: String,
}

/// The body of a 422: every problem found.
#[derive(Serialize, ToSchema)]
#[schema(as = HTTPValidationError)]
pub struct ValidationOut {
    pub detail: Vec<ValidationErrorItem>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(..) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        let (code, detail) = match self {
            ApiError::Validation(items) => {
                return response.json(ValidationOut {
                    detail: items.clone(),
                })
            }
            ApiError::BadRequest(d) => ("bad_request", d.clone()),
            ApiError::Unauthorized(d) => ("authentication_failed", d.to_string()),
            ApiError::Forbidden(d) => ("forbidden", d.clone()),
            ApiError::NotFound(d) => ("not_found", d.clone()),
            ApiError::Conflict(d) => ("conflict", d.clone()),
            ApiError::PayloadTooLarge(d) => ("payload_too_large", d.clone()),
            ApiError::TooManyRequests(d, after) => {
                response.insert_header(("retry-after", after.as_secs().max(1).to_string()));
                ("too_many_requests", d.clone())
            }
            ApiError::Unavailable(d, after) => {
                response.insert_header(("retry-after", after.as_secs().max(1).to_string()));
                ("service_unavailable", d.clone())
            }
            ApiError::Internal(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "internal error answering an API request"
                );
                (
                    "internal_error",
                    "internal error; see the server log".to_string(),
                )
            }
        };
        response.json(HttpErrorOut {
            code: code.into(),
            detail,
        })
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => ApiError::NotFound("not found".into()),
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => {
                ApiError::unavailable("the database is unavailable; retry later")
            }
            sqlx::Error::Database(db) => {
                from_database(db.code().as_deref(), db.message(), db.constraint())
                    .unwrap_or_else(|| ApiError::Internal(e.into()))
            }
            _ => ApiError::Internal(e.into()),
        }
    }
}

/// The answer to a database error by its SQLSTATE, or `None` for a bug (500).
pub fn from_database(
    code: Option<&str>,
    message: &str,
    constraint: Option<&str>,
) -> Option<ApiError> {
    let code = code?;
    let class = &code[..2.min(code.len())];
    Some(match (class, code) {
        (_, "23505") => ApiError::Conflict(conflict_detail(constraint)),
        // A row this request refers to was deleted meanwhile (an application, an endpoint).
        (_, "23503") => {
            ApiError::NotFound("a resource this request refers to was deleted meanwhile".into())
        }
        // A constraint of the schema refused the value (a hand-written rule the API did not
        // check first): the input is at fault.
        (_, "23514" | "23502") => ApiError::Validation(vec![ValidationErrorItem {
            loc: vec!["body".into()],
            msg: format!("refused by the database: {message}"),
            kind: "value_error".into(),
        }]),
        // Data exceptions: a value PostgreSQL cannot store (a NUL character in text, a number
        // out of range). The input is at fault, not the server.
        ("22", _) => ApiError::Validation(vec![ValidationErrorItem {
            loc: vec!["body".into()],
            msg: format!("a value cannot be stored: {message}"),
            kind: "value_error".into(),
        }]),
        // Serialization failure, deadlock: a concurrent transaction won; retrying succeeds.
        (_, "40001" | "40P01") => ApiError::Unavailable(
            "a concurrent change conflicted with this request; retry it".into(),
            RETRY_SOON,
        ),
        // Statement timeout, lock not available.
        (_, "57014" | "55P03") => {
            ApiError::unavailable("the database is too busy to answer in time; retry later")
        }
        // Read-only after a failover (or a standby), out of memory, disk or connections,
        // connection failures, an administrator's or a crash's shutdown.
        (_, "25006") | ("53", _) | ("08", _) | ("57", _) | ("58", _) => {
            ApiError::unavailable("the database is unavailable; retry later")
        }
        _ => return None,
    })
}

fn conflict_detail(constraint: Option<&str>) -> String {
    match constraint {
        Some(c) if c.contains("uid") => "an entity with this uid already exists".into(),
        Some(c) if c.contains("event_id") => "a message with this eventId already exists".into(),
        Some(c) if c.contains("pkey") => "an entity with this id already exists".into(),
        _ => "conflict with an existing entity".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: &str) -> Option<u16> {
        from_database(Some(code), "m", None).map(|e| e.status_code().as_u16())
    }

    #[test]
    fn database_conditions_have_defined_answers() {
        for (code, want) in [
            ("40001", 503),
            ("40P01", 503),
            ("57014", 503),
            ("25006", 503),
            ("53200", 503),
            ("53100", 503),
            ("53300", 503),
            ("08006", 503),
            ("57P01", 503),
            ("23503", 404),
            ("23505", 409),
            ("23514", 422),
            ("22003", 422),
        ] {
            assert_eq!(status(code), Some(want), "{code}");
        }
        assert_eq!(status("42P01"), None, "an undefined table is a bug: 500");
    }

    #[test]
    fn unavailable_answers_say_when_to_retry() {
        let r = from_database(Some("40001"), "m", None)
            .unwrap()
            .error_response();
        assert_eq!(r.headers().get("retry-after").unwrap(), "1");
        let r = ApiError::unavailable("x").error_response();
        assert_eq!(r.headers().get("retry-after").unwrap(), "5");
    }
}
