//! `/ui/apps`: the applications (tenants), making one, and giving one's partner a portal
//! link.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;

use crate::{
    api::{
        application::{self, ApplicationIn, ApplicationOut},
        error::ApiError,
        portal_access::{self, public_base, AppPortalAccessIn},
    },
    config::groups::Access,
    keyring::Keyring,
    ui::{
        assets::Assets,
        format::{when, Pager, When},
        page::{html, see_other, Chrome, ListQuery, Notice, Section, UiError},
        viewer::{Posted, Viewer},
    },
};

pub struct AppRow {
    pub id: String,
    pub uid: String,
    pub name: String,
    pub created: When,
}

impl From<ApplicationOut> for AppRow {
    fn from(a: ApplicationOut) -> Self {
        AppRow {
            id: a.id,
            uid: a.uid.unwrap_or_default(),
            name: a.name,
            created: when(a.created_at),
        }
    }
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage {
    chrome: Chrome,
    apps: Vec<AppRow>,
    pager: Pager,
}

pub async fn list(
    viewer: Viewer,
    pool: web::Data<PgPool>,
    assets: web::Data<Assets>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, UiError> {
    let page = q.page(None);
    let apps = application::list_page(&pool, &page).await?;
    html(&AppsPage {
        chrome: Chrome::new(&viewer, &assets, "Applications", Section::Applications)
            .with_notice(q.notice),
        pager: Pager::of("/ui/apps", &[], &apps, q.iterator.is_none()),
        apps: apps.data.into_iter().map(AppRow::from).collect(),
    })
}

#[derive(Deserialize)]
pub struct NewApp {
    name: String,
    #[serde(default)]
    uid: String,
}

pub async fn create(
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    posted: Posted<NewApp>,
) -> Result<HttpResponse, UiError> {
    let uid = posted.form.uid.trim();
    let input = ApplicationIn {
        name: posted.form.name.trim().to_string(),
        uid: (!uid.is_empty()).then(|| uid.to_string()),
        metadata: Default::default(),
    };
    input.validate("")?;
    let app = application::insert(&pool, &ring, &input).await?;
    Ok(see_other(
        &Notice::AppCreated.on(&format!("/ui/app/{}/endpoints", app.id)),
    ))
}

#[derive(Template)]
#[template(path = "portal_link.html")]
struct PortalLinkPage {
    chrome: Chrome,
    app: AppRow,
    url: String,
    days: u64,
}

#[derive(Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    read_only: Option<String>,
}

/// `POST /ui/portal-link/{app_id}`: a portal link for the application's partner (the same
/// as app-portal-access), shown once.
pub async fn portal_link(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    access: web::Data<Access>,
    assets: web::Data<Assets>,
    path: web::Path<String>,
    posted: Posted<LinkForm>,
) -> Result<HttpResponse, UiError> {
    let app = application::find(&pool, &path)
        .await?
        .ok_or_else(|| ApiError::not_found("application"))?;
    let input = AppPortalAccessIn {
        read_only: Some(posted.form.read_only.is_some()),
        ..Default::default()
    };
    let out =
        portal_access::grant(&pool, &access, &public_base(&req, &access), &app.id, &input).await?;
    html(&PortalLinkPage {
        chrome: Chrome::new(
            &posted.viewer,
            &assets,
            "Portal link",
            Section::Applications,
        ),
        app: app.into(),
        url: out.url,
        days: access.portal_expiry.as_secs() / 86_400,
    })
}
