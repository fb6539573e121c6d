//! Dead letters (both areas: every application's in the dashboard, its own in the portal):
//! filter, replay one, replay in bulk after seeing how many, and the bulk replay's progress.

use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;

use crate::{
    api::{
        application,
        background_task::{self, BackgroundTaskOut},
        dead_letter::{self, DeadLetterFilter, DeadLetterOut},
        error::ApiError,
        query::parse_datetime,
    },
    store::{replay, task::Progress},
    ui::{
        assets::Assets,
        format::{short, short_id, when, Pager, When},
        page::{self, html, see_other, Chrome, Notice, Section, UiError},
        viewer::{Area, Posted, Viewer},
    },
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/dead-letters", web::get().to(list))
        .route("/dead-letters/replay", web::get().to(confirm))
        .route("/dead-letters/replay", web::post().to(replay_bulk))
        .route("/dead-letters/{id}/replay", web::post().to(replay_one))
        .route("/tasks/{task_id}", web::get().to(task));
}

/// The filters as a form sends them (empty: no filter).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Filters {
    #[serde(default)]
    pub app_id: String,
    #[serde(default)]
    pub endpoint_id: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
}

impl Filters {
    /// The API's filter; an application-scoped viewer's own application is implied.
    pub fn to_api(&self) -> Result<DeadLetterFilter, ApiError> {
        let text = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        let time = |name: &str, s: &str| match text(s) {
            Some(t) => parse_datetime(&t)
                .map(Some)
                .map_err(|e| ApiError::invalid(name, e)),
            None => Ok(None),
        };
        Ok(DeadLetterFilter {
            app_id: text(&self.app_id),
            endpoint_id: text(&self.endpoint_id),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
        })
    }

    pub fn pairs(&self) -> Vec<(String, String)> {
        [
            ("app_id", &self.app_id),
            ("endpoint_id", &self.endpoint_id),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }

    /// The same filters as a query string (for links).
    pub fn query(&self) -> String {
        let pairs: Vec<(String, String)> = self
            .pairs()
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        serde_html_form::to_string(pairs).unwrap_or_default()
    }
}

pub struct DeadRow {
    pub id: String,
    /// The ids shortened for the table (`format::short_id`).
    pub app_short: String,
    pub msg_short: String,
    pub endpoint_short: String,
    pub app_id: String,
    pub app_href: String,
    pub msg_href: String,
    pub msg_id: String,
    pub endpoint_href: String,
    pub endpoint_id: String,
    pub event_type: String,
    pub attempts: i32,
    pub last: String,
    pub reason: String,
    pub dead_at: When,
}

fn row(d: DeadLetterOut, area: Area) -> DeadRow {
    let base = match area {
        Area::Dashboard => format!("/ui/app/{}", d.app_id),
        Area::Portal => "/portal".into(),
    };
    let last = match (d.last_status_code, &d.last_error) {
        (Some(code), _) => code.to_string(),
        (None, Some(e)) => short(e, 80),
        (None, None) => "no attempt".into(),
    };
    DeadRow {
        app_short: short_id(&d.app_id),
        msg_short: short_id(&d.msg_id),
        endpoint_short: short_id(&d.endpoint_id),
        app_href: format!("{base}/endpoints"),
        msg_href: format!("{base}/messages/{}", d.msg_id),
        endpoint_href: format!("{base}/endpoints/{}", d.endpoint_id),
        id: d.id,
        app_id: d.app_id,
        msg_id: d.msg_id,
        endpoint_id: d.endpoint_id,
        event_type: d.event_type,
        attempts: d.attempts,
        last,
        reason: d.reason.unwrap_or_default(),
        dead_at: when(d.dead_at),
    }
}

#[derive(Template)]
#[template(path = "dead_letters.html")]
struct DeadLettersPage {
    chrome: Chrome,
    filters: Filters,
    query: String,
    dashboard: bool,
    rows: Vec<DeadRow>,
    pager: Pager,
    can_write: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(flatten)]
    filters: Filters,
    #[serde(flatten)]
    list: page::ListQuery,
}

pub async fn list(
    viewer: Viewer,
    pool: web::Data<PgPool>,
    assets: web::Data<Assets>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, UiError> {
    let page = q.list.page(None);
    let filter = q.filters.to_api()?;
    let list = dead_letter::list_page(&pool, &viewer.reach(), &page, &filter).await?;
    let root = viewer.area.root();
    html(&DeadLettersPage {
        chrome: Chrome::new(&viewer, &assets, "Dead letters", Section::DeadLetters)
            .with_notice(q.list.notice),
        pager: Pager::of(
            &format!("{root}/dead-letters"),
            &q.filters.pairs(),
            &list,
            q.list.iterator.is_none(),
        ),
        rows: list.data.into_iter().map(|d| row(d, viewer.area)).collect(),
        query: q.filters.query(),
        filters: q.filters.clone(),
        dashboard: viewer.area == Area::Dashboard,
        can_write: viewer.can_write(),
    })
}

#[derive(Debug, Deserialize)]
pub struct DeadKey {
    id: String,
}

#[derive(Deserialize)]
pub struct ReplayForm {
    #[serde(flatten)]
    filters: Filters,
}

pub async fn replay_one(
    pool: web::Data<PgPool>,
    path: web::Path<DeadKey>,
    posted: Posted<ReplayForm>,
) -> Result<HttpResponse, UiError> {
    let n = path
        .id
        .strip_prefix("dlv_")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ApiError::not_found("dead letter"))?;
    dead_letter::replay_one_of(&pool, &posted.viewer.reach(), n).await?;
    let back = format!(
        "{}/dead-letters?{}",
        posted.viewer.area.root(),
        posted.form.filters.query()
    );
    Ok(see_other(&Notice::Replayed.on(&back)))
}

#[derive(Template)]
#[template(path = "replay_confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    filters: Filters,
    query: String,
    count: i64,
    scope: String,
}

/// `GET {root}/dead-letters/replay`: how many a bulk replay of these filters would queue.
pub async fn confirm(
    viewer: Viewer,
    pool: web::Data<PgPool>,
    assets: web::Data<Assets>,
    q: web::Query<Filters>,
) -> Result<HttpResponse, UiError> {
    let selection = q.to_api()?.selection(&pool, &viewer.reach()).await?;
    let count = replay::count(&pool, &selection)
        .await
        .map_err(ApiError::from)?;
    let scope = match &selection.app_id {
        Some(id) => match application::find(&pool, id).await? {
            Some(app) => format!("of {}", app.name),
            None => String::new(),
        },
        None => "of every application".into(),
    };
    html(&ConfirmPage {
        chrome: Chrome::new(
            &viewer,
            &assets,
            "Replay dead letters",
            Section::DeadLetters,
        ),
        query: q.query(),
        filters: q.into_inner(),
        count,
        scope,
    })
}

pub async fn replay_bulk(
    pool: web::Data<PgPool>,
    posted: Posted<ReplayForm>,
) -> Result<HttpResponse, UiError> {
    let viewer = &posted.viewer;
    let selection = posted
        .form
        .filters
        .to_api()?
        .selection(&pool, &viewer.reach())
        .await?;
    let replayed = dead_letter::replay_bulk_of(&pool, &selection).await?;
    let task = replayed
        .task_id
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a bulk replay without its task")))?;
    Ok(see_other(&format!("{}/tasks/{task}", viewer.area.root())))
}

/// A bulk replay's progress, as the page shows it.
#[derive(Debug, PartialEq)]
pub struct TaskView {
    pub sent: u64,
    pub progress: Progress,
    pub done: bool,
    /// Delivered, out of what was sent, as a percentage.
    pub percent_delivered: u64,
}

impl TaskView {
    pub fn of(t: &BackgroundTaskOut) -> TaskView {
        let n = |k: &str| t.data.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
        let sent = n("messagesSent").max(0) as u64;
        let progress = Progress {
            delivered: n("delivered"),
            waiting: n("waiting"),
            dead: n("dead"),
        };
        TaskView {
            sent,
            done: progress.done(),
            percent_delivered: (progress.delivered.max(0) as u64 * 100)
                .checked_div(sent)
                .map_or(100, |p| p.min(100)),
            progress,
        }
    }
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    chrome: Chrome,
    id: String,
    kind: String,
    at: When,
    view: TaskView,
}

#[derive(Debug, Deserialize)]
pub struct TaskKey {
    task_id: String,
}

pub async fn task(
    viewer: Viewer,
    pool: web::Data<PgPool>,
    assets: web::Data<Assets>,
    path: web::Path<TaskKey>,
) -> Result<HttpResponse, UiError> {
    let t = background_task::find(&pool, &viewer.reach(), &path.task_id).await?;
    html(&TaskPage {
        chrome: Chrome::new(&viewer, &assets, "Replay progress", Section::DeadLetters),
        kind: serde_json::to_value(t.task)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        at: when(t.updated_at),
        view: TaskView::of(&t),
        id: t.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_drop_what_is_empty() {
        let f: Filters =
            serde_html_form::from_str("app_id=&endpoint_id=ep_1&since=2026-11-29T10:00&until=")
                .unwrap();
        let api = f.to_api().unwrap();
        assert_eq!(
            (api.app_id, api.endpoint_id.as_deref()),
            (None, Some("ep_1"))
        );
        assert!(api.since.is_some() && api.until.is_none());
        assert_eq!(f.query(), "endpoint_id=ep_1&since=2026-11-29T10%3A00");
        let bad: Filters = serde_html_form::from_str("until=soon").unwrap();
        assert!(bad.to_api().is_err());
    }

    #[test]
    fn a_task_reads_as_progress() {
        let t = BackgroundTaskOut {
            id: "qtask_1".into(),
            status: crate::store::task::TaskStatus::Finished,
            task: crate::store::task::TaskKind::EndpointBulkReplay,
            data: serde_json::json!({"messagesSent": 4, "delivered": 1, "waiting": 3, "dead": 0}),
            updated_at: chrono::Utc::now(),
        };
        let v = TaskView::of(&t);
        assert_eq!((v.sent, v.done, v.percent_delivered), (4, false, 25));
        let none = BackgroundTaskOut {
            data: serde_json::json!({"messagesSent": 0}),
            ..t
        };
        assert!(TaskView::of(&none).done);
    }
}
