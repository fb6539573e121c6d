//! What arrived at a source: Herald's event list (every request, with its verification
//! result), and Svix's log (the refused ones, in Svix's shape).

use std::collections::BTreeMap;

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{types::Json as Db, PgPool};
use utoipa::{IntoParams, ToSchema};

use super::source::{self, SourcePath};
use crate::api::{
    error::{ApiError, ApiResult, ValidationErrorItem},
    pagination::{ListResponse, Ordering, Page, PageQuery},
};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_events).service(list_log);
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IngestOutcome {
    /// Forwarded.
    Accepted,
    /// Its event id was seen within the dedupe window: not forwarded again.
    Duplicate,
    /// Not verified: refused and not forwarded.
    Rejected,
}

/// A request received at a source's URL.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestEventOut {
    /// `ievt_<n>`
    pub id: String,
    pub source_id: String,
    /// The provider's event id.
    pub event_key: Option<String>,
    pub event_type: String,
    pub outcome: IngestOutcome,
    /// A signature was checked.
    pub verified: bool,
    /// Why it was refused.
    pub reason: Option<String>,
    #[schema(value_type = BTreeMap<String, String>)]
    pub headers: Db<BTreeMap<String, String>>,
    /// The body as received.
    pub body: String,
    /// The message it was forwarded as (a duplicate: the first one's).
    pub message_id: Option<String>,
    pub received_at: DateTime<Utc>,
}

impl IngestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            IngestOutcome::Accepted => "accepted",
            IngestOutcome::Duplicate => "duplicate",
            IngestOutcome::Rejected => "rejected",
        }
    }
}

impl sqlx::Type<sqlx::Postgres> for IngestOutcome {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for IngestOutcome {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let s = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        [
            IngestOutcome::Accepted,
            IngestOutcome::Duplicate,
            IngestOutcome::Rejected,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| format!("unknown outcome {s:?}").into())
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    /// Only events with this outcome.
    pub outcome: Option<IngestOutcome>,
}

const COLUMNS: &str = "'ievt_' || id AS id, source_id, event_key, event_type, outcome, verified, \
                       reason, headers, body, message_id, received_at";

/// A source's events, newest first by default.
pub async fn list_page(
    pool: &PgPool,
    source_id: &str,
    page: &PageQuery,
    f: &EventFilter,
) -> ApiResult<ListResponse<IngestEventOut>> {
    let mut page = Page::new(page, Ordering::Descending)?;
    let cursor = match page.after.take() {
        Some(it) => Some(
            it.strip_prefix("ievt_")
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::Validation(vec![ValidationErrorItem::query(
                        "iterator",
                        "is not an iterator this list returned",
                    )])
                })?,
        ),
        None => None,
    };
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM herald.ingest_event WHERE source_id = "
    ));
    qb.push_bind(source_id.to_string());
    if let Some(o) = f.outcome {
        qb.push(" AND outcome = ").push_bind(o.as_str());
    }
    if let Some(c) = cursor {
        qb.push(if page.descending {
            " AND id < "
        } else {
            " AND id > "
        })
        .push_bind(c);
    }
    qb.push(page.order_clause("id"));
    let rows = qb.build_query_as().fetch_all(pool).await?;
    Ok(ListResponse::from_rows(
        rows,
        &page,
        |e: &IngestEventOut| e.id.clone(),
    ))
}

/// Herald: list what arrived at a source, with each request's verification result.
#[utoipa::path(
    operation_id = "herald.ingest.event.list", tag = "Ingest Source",
    params(SourcePath, PageQuery, EventFilter),
    responses((status = 200, description = "A page of events", body = ListResponse<IngestEventOut>))
)]
#[get("/source/{source_id}/event")]
async fn list_events(
    pool: web::Data<PgPool>,
    path: web::Path<SourcePath>,
    page: web::Query<PageQuery>,
    f: web::Query<EventFilter>,
) -> ApiResult<HttpResponse> {
    let source = source::find(&pool, &path.source_id).await?;
    Ok(HttpResponse::Ok().json(list_page(&pool, &source.id, &page, &f).await?))
}

/// A refused request, as Svix's ingest log shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestLogOut {
    pub id: String,
    pub source_id: String,
    pub status_code: i16,
    pub error_text: String,
    pub headers: BTreeMap<String, String>,
    pub payload: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// List the requests a source refused.
#[utoipa::path(
    operation_id = "v1.ingest.log.list", tag = "Ingest Source", params(SourcePath, PageQuery),
    responses((status = 200, description = "A page of refused requests", body = ListResponse<IngestLogOut>))
)]
#[get("/source/{source_id}/log")]
async fn list_log(
    pool: web::Data<PgPool>,
    path: web::Path<SourcePath>,
    page: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let source = source::find(&pool, &path.source_id).await?;
    let rejected = EventFilter {
        outcome: Some(IngestOutcome::Rejected),
    };
    let events = list_page(&pool, &source.id, &page, &rejected).await?;
    let data = events.map(|e| IngestLogOut {
        status_code: if e
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("missing header"))
        {
            400
        } else {
            401
        },
        error_text: e.reason.unwrap_or_default(),
        id: e.id,
        source_id: e.source_id,
        headers: e.headers.0,
        payload: e.body,
        created_at: e.received_at,
        updated_at: e.received_at,
    });
    Ok(HttpResponse::Ok().json(data))
}
