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
use crate::{
    access::principal::Reach,
    store::task::{self, Progress, TaskKind, TaskRow, TaskStatus, COLUMNS},
};

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
    /// What it did, e.g. `{"messagesSent": 2}`; for a task that queued deliveries, also
    /// what became of them since: `delivered`, `waiting` (pending or being sent) and `dead`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

impl BackgroundTaskOut {
    /// The task, with the progress of what it queued (`None`: it queued nothing).
    pub fn from_row(r: TaskRow, progress: Option<Progress>) -> ApiResult<BackgroundTaskOut> {
        fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> ApiResult<T> {
            serde_json::from_value(serde_json::Value::String(text.to_string()))
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("task {what} {text}: {e}")))
        }
        let mut data = r.data.0;
        if let (Some(p), Some(map)) = (progress, data.as_object_mut()) {
            map.insert("delivered".into(), p.delivered.into());
            map.insert("waiting".into(), p.waiting.into());
            map.insert("dead".into(), p.dead.into());
        }
        Ok(BackgroundTaskOut {
            status: parse("status", &r.status)?,
            task: parse("type", &r.task)?,
            id: r.id,
            data,
            updated_at: r.updated_at,
        })
    }

    /// Tasks with their progress (one query for all of them).
    pub async fn with_progress_all(
        pool: &PgPool,
        rows: Vec<TaskRow>,
    ) -> ApiResult<Vec<BackgroundTaskOut>> {
        let ids: Vec<String> = rows
            .iter()
            .filter(|r| r.messages_sent() > 0)
            .map(|r| r.id.clone())
            .collect();
        let progress = task::progress(pool, &ids).await?;
        rows.into_iter()
            .map(|r| {
                let p = (r.messages_sent() > 0)
                    .then(|| progress.get(&r.id).copied().unwrap_or_default());
                BackgroundTaskOut::from_row(r, p)
            })
            .collect()
    }

    pub async fn with_progress(pool: &PgPool, row: TaskRow) -> ApiResult<BackgroundTaskOut> {
        let mut all = Self::with_progress_all(pool, vec![row]).await?;
        Ok(all.remove(0))
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks in this state.
    pub status: Option<TaskStatus>,
    /// Only tasks of this type.
    pub task: Option<TaskKind>,
}

/// List background tasks, newest first by default.
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.background-task.list", tag = "Background Task", params(PageQuery, ListQuery),
    responses((status = 200, description = "A page of tasks", body = ListResponse<BackgroundTaskOut>))
)]
#[get("/background-task")]
async fn list(
    pool: web::Data<PgPool>,
    reach: Reach,
    page: web::Query<PageQuery>,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(list_page(&pool, &reach, &page, &q).await?))
}

/// Tasks the caller reaches, newest first by default.
pub async fn list_page(
    pool: &PgPool,
    reach: &Reach,
    page: &PageQuery,
    q: &ListQuery,
) -> ApiResult<ListResponse<BackgroundTaskOut>> {
    let page = Page::new(page, Ordering::Descending)?;
    let mut qb = sqlx::QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM herald.background_task WHERE true"
    ));
    if let Some(app_id) = reach.app_id() {
        qb.push(" AND app_id = ").push_bind(app_id.to_string());
    }
    if let Some(status) = q.status {
        qb.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(task) = q.task {
        qb.push(" AND task = ").push_bind(task.as_str());
    }
    page.push_to(&mut qb, "id");
    let rows: Vec<TaskRow> = qb.build_query_as().fetch_all(pool).await?;
    let tasks = BackgroundTaskOut::with_progress_all(pool, rows).await?;
    Ok(ListResponse::from_rows(tasks, &page, |t| t.id.clone()))
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
    security(("ApplicationToken" = [])),
    operation_id = "v1.background-task.get", tag = "Background Task", params(TaskPath),
    responses((status = 200, description = "The task", body = BackgroundTaskOut))
)]
#[get("/background-task/{task_id}")]
async fn get(
    pool: web::Data<PgPool>,
    reach: Reach,
    path: web::Path<TaskPath>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(find(&pool, &reach, &path.task_id).await?))
}

/// The task `id`, if the caller reaches it.
pub async fn find(pool: &PgPool, reach: &Reach, id: &str) -> ApiResult<BackgroundTaskOut> {
    let row: TaskRow = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM herald.background_task WHERE id = $1 \
         AND ($2::text IS NULL OR app_id = $2)"
    ))
    .bind(id)
    .bind(reach.app_id())
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| ApiError::not_found("background task"))?;
    BackgroundTaskOut::with_progress(pool, row).await
}
