//! `/ui/event-types`: the catalogue, archived ones too, with archive and restore.

use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;

use crate::{
    api::event_type,
    ui::{
        assets::Assets,
        format::Pager,
        page::{html, see_other, Button, Chrome, ListQuery, Notice, Section, UiError},
        viewer::{Posted, Viewer},
    },
};

pub struct TypeRow {
    pub name: String,
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    pub flags: String,
    pub group: String,
}

#[derive(Template)]
#[template(path = "event_types.html")]
struct EventTypesPage {
    chrome: Chrome,
    types: Vec<TypeRow>,
    pager: Pager,
}

pub async fn list(
    viewer: Viewer,
    pool: web::Data<PgPool>,
    assets: web::Data<Assets>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, UiError> {
    let page = q.page(Some(100));
    let list = event_type::list_page(&pool, &viewer.reach(), &page, true, false).await?;
    html(&EventTypesPage {
        chrome: Chrome::new(&viewer, &assets, "Event types", Section::EventTypes)
            .with_notice(q.notice),
        pager: Pager::of("/ui/event-types", &[], &list, q.iterator.is_none()),
        types: list
            .data
            .into_iter()
            .map(|t| TypeRow {
                name: t.name,
                description: t.description,
                archived: t.archived,
                deprecated: t.deprecated,
                flags: t.feature_flags.unwrap_or_default().join(", "),
                group: t.group_name.unwrap_or_default(),
            })
            .collect(),
    })
}

#[derive(Debug, Deserialize)]
pub struct NameKey {
    name: String,
}

async fn set(pool: &PgPool, name: &str, archived: bool) -> Result<HttpResponse, UiError> {
    event_type::set_archived(pool, name, archived).await?;
    let notice = if archived {
        Notice::EventTypeArchived
    } else {
        Notice::EventTypeRestored
    };
    Ok(see_other(&notice.on("/ui/event-types")))
}

pub async fn archive(
    pool: web::Data<PgPool>,
    path: web::Path<NameKey>,
    _: Posted<Button>,
) -> Result<HttpResponse, UiError> {
    set(&pool, &path.name, true).await
}

pub async fn restore(
    pool: web::Data<PgPool>,
    path: web::Path<NameKey>,
    _: Posted<Button>,
) -> Result<HttpResponse, UiError> {
    set(&pool, &path.name, false).await
}
