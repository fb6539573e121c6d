//! API errors in the Svix shapes: `{"code", "detail"}` for most, and
//! `{"detail": [{"loc", "msg", "type"}]}` for 422 validation errors.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
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
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    #[error("validation failed")]
    Validation(Vec<ValidationErrorItem>),
    /// The database is unreachable or overloaded: the client should retry.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected database error. The cause is logged, not returned.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn invalid(path: &str, msg: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![ValidationErrorItem::field(path, msg)])
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::NotFound(format!("{what} not found"))
    }
}

#[derive(Serialize)]
struct HttpErrorOut<'a> {
    code: &'a str,
    detail: String,
}

#[derive(Serialize)]
struct ValidationOut<'a> {
    detail: &'a [ValidationErrorItem],
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        let (code, detail) = match self {
            ApiError::Validation(items) => return response.json(ValidationOut { detail: items }),
            ApiError::BadRequest(d) => ("bad_request", d.clone()),
            ApiError::Unauthorized(d) => ("authentication_failed", d.to_string()),
            ApiError::NotFound(d) => ("not_found", d.clone()),
            ApiError::Conflict(d) => ("conflict", d.clone()),
            ApiError::PayloadTooLarge(d) => ("payload_too_large", d.clone()),
            ApiError::Unavailable(d) => {
                response.insert_header(("retry-after", "5"));
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
        response.json(HttpErrorOut { code, detail })
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => ApiError::NotFound("not found".into()),
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => {
                ApiError::Unavailable("the database is unavailable; retry later".into())
            }
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("23505") => ApiError::Conflict(conflict_detail(db.constraint())),
                // Data exceptions: a value PostgreSQL cannot store (a NUL character in text,
                // a number out of range). The input is at fault, not the server.
                Some(code) if code.starts_with("22") => {
                    ApiError::Validation(vec![ValidationErrorItem {
                        loc: vec!["body".into()],
                        msg: format!("a value cannot be stored: {}", db.message()),
                        kind: "value_error".into(),
                    }])
                }
                // Connection-level failures, admin shutdown, too many connections.
                Some(code)
                    if code.starts_with("08") || code.starts_with("57P") || code == "53300" =>
                {
                    ApiError::Unavailable("the database is unavailable; retry later".into())
                }
                _ => ApiError::Internal(e.into()),
            },
            _ => ApiError::Internal(e.into()),
        }
    }
}

fn conflict_detail(constraint: Option<&str>) -> String {
    match constraint {
        Some(c) if c.contains("uid") => "an entity with this uid already exists".into(),
        Some(c) if c.contains("event_id") => "a message with this eventId already exists".into(),
        Some(c) if c.contains("pkey") => "an entity with this id already exists".into(),
        _ => "conflict with an existing entity".into(),
    }
}
