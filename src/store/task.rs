//! Background tasks (Svix `BackgroundTaskOut`): recover, replay-missing and bulk replays are
//! recorded here when they finish, so the task id they answer with can be looked up.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// What a task did (Svix `BackgroundTaskType`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[schema(as = BackgroundTaskType)]
pub enum TaskKind {
    /// An endpoint's dead deliveries sent again (`recover`).
    #[serde(rename = "endpoint.recover")]
    EndpointRecover,
    /// Messages an endpoint never got, sent to it (`replay-missing`).
    #[serde(rename = "endpoint.replay")]
    EndpointReplay,
    /// Dead letters replayed in bulk (Herald's `/dead-letter/replay`).
    #[serde(rename = "endpoint.bulk-replay")]
    EndpointBulkReplay,
}

/// Where a task is (Svix `BackgroundTaskStatus`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[schema(as = BackgroundTaskStatus)]
pub enum TaskStatus {
    Running,
    Finished,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Running => "running",
            TaskStatus::Finished => "finished",
            TaskStatus::Failed => "failed",
        }
    }
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::EndpointRecover => "endpoint.recover",
            TaskKind::EndpointReplay => "endpoint.replay",
            TaskKind::EndpointBulkReplay => "endpoint.bulk-replay",
        }
    }
}

/// A task as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    pub id: String,
    pub task: String,
    pub status: String,
    pub data: sqlx::types::Json<serde_json::Value>,
    pub updated_at: DateTime<Utc>,
}

/// Records a task that has finished with `data` (what it did).
pub async fn finished(
    pool: &PgPool,
    kind: TaskKind,
    data: serde_json::Value,
) -> Result<TaskRow, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO herald.background_task (task, status, data) VALUES ($1, 'finished', $2) \
         RETURNING id, task, status, data, updated_at",
    )
    .bind(kind.as_str())
    .bind(sqlx::types::Json(data))
    .fetch_one(pool)
    .await
}
