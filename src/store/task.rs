//! Background tasks (Svix `BackgroundTaskOut`): recover, replay-missing and bulk replays are
//! recorded here (by the statement that queues their deliveries, [`super::replay`]), so the
//! task id they answer with can be looked up, with the progress of what they queued.

use std::collections::HashMap;

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
    pub app_id: Option<String>,
    pub data: sqlx::types::Json<serde_json::Value>,
    pub updated_at: DateTime<Utc>,
}

pub const COLUMNS: &str = "id, task, status, app_id, data, updated_at";

impl TaskRow {
    /// How many messages the task queued (`data.messagesSent`).
    pub fn messages_sent(&self) -> u64 {
        self.data
            .0
            .get("messagesSent")
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
    }
}

/// What became of the deliveries a task queued (those it was the last to queue).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct Progress {
    pub delivered: i64,
    /// Pending or being sent.
    pub waiting: i64,
    pub dead: i64,
}

impl Progress {
    pub fn done(&self) -> bool {
        self.waiting == 0
    }
}

/// The progress of each of `task_ids` that queued deliveries.
pub async fn progress(
    pool: &PgPool,
    task_ids: &[String],
) -> Result<HashMap<String, Progress>, sqlx::Error> {
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT replay_task, count(*) FILTER (WHERE status = 'succeeded'), \
                count(*) FILTER (WHERE status IN ('pending', 'sending')), \
                count(*) FILTER (WHERE status = 'dead') \
         FROM herald.delivery WHERE replay_task = ANY($1) GROUP BY replay_task",
    )
    .bind(task_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, delivered, waiting, dead)| {
            (
                id,
                Progress {
                    delivered,
                    waiting,
                    dead,
                },
            )
        })
        .collect())
}
