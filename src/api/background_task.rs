//! `/api/v1/background-task`: what recover, replay-missing and bulk replays did.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

use super::{
    error::{ApiError, ApiResult},
    pagination::{ListResponse, Ordering, Page, PageQuery},
};
use crate::store::task::{TaskKind, TaskRow, TaskStatus};

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list).service(get);
}

/// A background task.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackgroundTaskOut {
    /// `qtask_…`.
    pub id: String,
    pub status: TaskStatus,
    pub task: TaskKind,
    /// What it did, e.g. `{"messagesSent": 2}`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

impl BackgroundTaskOut {
    pub fn from_row(r: TaskRow) -> ApiResult<BackgroundTaskOut> {
        fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> ApiResult<T> {
            serde_json::from_value(serde_json::Value::String(text.to_string()))
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("task {what} {text}: {e}")))
        }
        Ok(BackgroundTaskOut {
            status: parse("status", &r.status)?,
            task: parse("type", &r.task)?,
            id: r.id,
            data: r.data.0,
            updated_at: r.updated_at,
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only tasks in this state.
    status: Option<TaskStatus>,
    /// Only tasks of this type.
    task: Option<TaskKind>,
}

const COLUMNS: &str = "id, task, status, data, updated_at";

/// List background tasks, newest first by default.
#[utoipa::path(
    operation_id = "v1.background-task.list", tag = "Background Task", params(PageQuery, ListQuery),
    responses((status = 200, description = "A page of tasks", body = ListResponse<BackgroundTaskOut>))
)]
#[get("/background-task")]
async fn list(
    pool: web::Data<PgPool>,
    page: web::Query<PageQuery>,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let page = Page::new(&page, Ordering::Descending)?;
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM herald.background_task WHERE true"
    ));
    if let Some(status) = q.status {
        qb.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(task) = q.task {
        qb.push(" AND task = ").push_bind(task.as_str());
    }
    page.push_to(&mut qb, "id");
    let rows: Vec<TaskRow> = qb.build_query_as().fetch_all(pool.get_ref()).await?;
    let tasks = rows
        .into_iter()
        .map(BackgroundTaskOut::from_row)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(HttpResponse::Ok().json(ListResponse::from_rows(tasks, &page, |t| t.id.clone())))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct TaskPath {
    /// The task's id (`qtask_…`).
    #[param(min_length = 1, max_length = 256)]
    task_id: String,
}

/// Get a background task.
#[utoipa::path(
    operation_id = "v1.background-task.get", tag = "Background Task", params(TaskPath),
    responses((status = 200, description = "The task", body = BackgroundTaskOut))
)]
#[get("/background-task/{task_id}")]
async fn get(pool: web::Data<PgPool>, path: web::Path<TaskPath>) -> ApiResult<HttpResponse> {
    let row: TaskRow = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM herald.background_task WHERE id = $1"
    ))
    .bind(&path.task_id)
    .fetch_optional(pool.get_ref())
    .await?
    .ok_or_else(|| ApiError::not_found("background task"))?;
    Ok(HttpResponse::Ok().json(BackgroundTaskOut::from_row(row)?))
}
