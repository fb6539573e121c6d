//! An application's endpoints: the list, and the form that creates or edits one.

use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;
use sqlx::PgPool;

use super::endpoint_form::EndpointForm;
use crate::{
    access::principal::Reach,
    api::{
        endpoint::{self, EndpointOut, EventTypeCatalogue},
        endpoint_secret,
        error::{ApiError, ApiResult},
        event_type,
        pagination::PageQuery,
        validate,
    },
    destination::Policy,
    keyring::Keyring,
    ui::{
        assets::Assets,
        format::{when, Pager, When},
        page::{html, see_other, Chrome, ListQuery, Notice, Section, UiError},
        viewer::{AppScope, Posted},
    },
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/endpoints", web::get().to(list))
        .route("/endpoints", web::post().to(create))
        .route("/endpoints/new", web::get().to(new))
        .route("/endpoints/{endpoint_id}/edit", web::get().to(edit))
        .route("/endpoints/{endpoint_id}/edit", web::post().to(save))
        .configure(super::endpoint_page::routes);
}

/// `{base}` and `{base}/`: an application opens on its endpoints.
pub async fn to_list(scope: AppScope) -> HttpResponse {
    see_other(&format!("{}/endpoints", scope.base))
}

/// The tabs of an application's pages.
pub struct Tabs {
    pub base: String,
    pub app_name: String,
    pub app_id: String,
    pub dead_letters: String,
    pub current: Section,
    /// Dashboard only: the way back to every application.
    pub dashboard: bool,
}

impl Tabs {
    pub fn new(scope: &AppScope, current: Section) -> Tabs {
        let dashboard = scope.viewer.grant().is_none();
        Tabs {
            base: scope.base.clone(),
            app_name: scope.app.name.clone(),
            app_id: scope.app.id.clone(),
            dead_letters: if dashboard {
                format!("/ui/dead-letters?app_id={}", scope.app.id)
            } else {
                "/portal/dead-letters".into()
            },
            current,
            dashboard,
        }
    }

    pub fn at_endpoints(&self) -> bool {
        self.current == Section::Endpoints
    }

    pub fn at_messages(&self) -> bool {
        self.current == Section::Messages
    }
}

/// How an endpoint's state reads.
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    pub description: String,
    pub disabled: bool,
    pub disabled_reason: String,
    pub event_types: String,
    pub created: When,
}

impl From<&EndpointOut> for EndpointRow {
    fn from(e: &EndpointOut) -> Self {
        EndpointRow {
            id: e.id.clone(),
            url: e.url.clone(),
            description: e.description.clone(),
            disabled: e.disabled,
            disabled_reason: e.disabled_reason.clone().unwrap_or_default(),
            event_types: match &e.event_types {
                Some(t) => t.join(", "),
                None => "every event type".into(),
            },
            created: when(e.created_at),
        }
    }
}

#[derive(Template)]
#[template(path = "endpoints.html")]
struct EndpointsPage {
    chrome: Chrome,
    tabs: Tabs,
    endpoints: Vec<EndpointRow>,
    pager: Pager,
    can_write: bool,
}

pub async fn list(
    scope: AppScope,
    pool: web::Data<PgPool>,
    assets: web::Data<Assets>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, UiError> {
    let page = q.page(None);
    let endpoints = endpoint::list_page(&pool, &scope.app.id, &page, false).await?;
    let title = format!("{}: endpoints", scope.app.name);
    html(&EndpointsPage {
        chrome: Chrome::new(&scope.viewer, &assets, title, Section::Endpoints)
            .with_notice(q.notice),
        pager: Pager::of(
            &format!("{}/endpoints", scope.base),
            &[],
            &endpoints,
            q.iterator.is_none(),
        ),
        endpoints: endpoints.data.iter().map(EndpointRow::from).collect(),
        can_write: scope.viewer.can_write(),
        tabs: Tabs::new(&scope, Section::Endpoints),
    })
}

/// An event type offered in the form.
pub struct Choice {
    pub name: String,
    pub description: String,
    pub checked: bool,
}

/// The catalogue as the viewer sees it (feature flags apply), up to 250 event types.
pub async fn catalogue(pool: &PgPool, reach: &Reach, checked: &[String]) -> ApiResult<Vec<Choice>> {
    let page = PageQuery {
        limit: Some(250),
        ..Default::default()
    };
    let types = event_type::list_page(pool, reach, &page, false, false).await?;
    Ok(types
        .data
        .into_iter()
        .map(|t| Choice {
            checked: checked.contains(&t.name),
            name: t.name,
            description: t.description,
        })
        .collect())
}

/// The event types the form offers the viewer (a box each).
async fn offered(pool: &PgPool, scope: &AppScope) -> ApiResult<Vec<String>> {
    let choices = catalogue(pool, &scope.viewer.reach(), &[]).await?;
    Ok(choices.into_iter().map(|c| c.name).collect())
}

#[derive(Template)]
#[template(path = "endpoint_form.html")]
struct FormPage {
    chrome: Chrome,
    tabs: Tabs,
    /// Where the form posts.
    action: String,
    /// `None` for a new endpoint.
    endpoint_id: Option<String>,
    form: EndpointForm,
    choices: Vec<Choice>,
}

async fn form_page(
    scope: &AppScope,
    pool: &PgPool,
    assets: &Assets,
    endpoint_id: Option<String>,
    form: EndpointForm,
) -> Result<HttpResponse, UiError> {
    let choices = catalogue(pool, &scope.viewer.reach(), &form.event_types).await?;
    let (title, action) = match &endpoint_id {
        Some(id) => (
            "Edit endpoint",
            format!("{}/endpoints/{id}/edit", scope.base),
        ),
        None => ("New endpoint", format!("{}/endpoints", scope.base)),
    };
    html(&FormPage {
        chrome: Chrome::new(&scope.viewer, assets, title, Section::Endpoints),
        tabs: Tabs::new(scope, Section::Endpoints),
        action,
        endpoint_id,
        form,
        choices,
    })
}

pub async fn new(
    scope: AppScope,
    pool: web::Data<PgPool>,
    assets: web::Data<Assets>,
) -> Result<HttpResponse, UiError> {
    form_page(&scope, &pool, &assets, None, EndpointForm::default()).await
}

pub async fn create(
    scope: AppScope,
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    policy: web::Data<Policy>,
    posted: Posted<EndpointForm>,
) -> Result<HttpResponse, UiError> {
    let offered = offered(&pool, &scope).await?;
    let (fields, headers) = posted.form.fields(None, &offered)?;
    let e = endpoint::create_checked(
        &pool,
        &ring,
        &policy,
        (&scope.app.id, EventTypeCatalogue::Registered),
        &fields,
        None,
        &headers,
    )
    .await?;
    let page = format!("{}/endpoints/{}?secret=show", scope.base, e.id);
    Ok(see_other(&Notice::EndpointCreated.on(&page)))
}

pub async fn edit(
    scope: AppScope,
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    assets: web::Data<Assets>,
    path: web::Path<EndpointKey>,
) -> Result<HttpResponse, UiError> {
    let id = path.endpoint_id.clone();
    let e = endpoint::find(&pool, &scope.app.id, &id).await?;
    let headers = endpoint_secret::load_headers(&pool, &ring, &e.id).await?;
    let form = EndpointForm::of(&e, &headers);
    form_page(&scope, &pool, &assets, Some(e.id), form).await
}

pub async fn save(
    scope: AppScope,
    pool: web::Data<PgPool>,
    ring: web::Data<Keyring>,
    policy: web::Data<Policy>,
    path: web::Path<EndpointKey>,
    posted: Posted<EndpointForm>,
) -> Result<HttpResponse, UiError> {
    let e = endpoint::find(&pool, &scope.app.id, &path.endpoint_id).await?;
    e.editable()?;
    let offered = offered(&pool, &scope).await?;
    let (fields, headers) = posted.form.fields(Some(&e), &offered)?;
    let stored = endpoint_secret::load_headers(&pool, &ring, &e.id).await?;
    let headers = EndpointForm::restore_sensitive(headers, &stored);
    // Everything is checked before anything is written.
    fields.validate(&pool, &policy).await?;
    validate::headers("headers", &headers).map_err(|e| ApiError::Validation(vec![e]))?;
    endpoint::save(&pool, &e.id, &fields).await?;
    endpoint_secret::store_headers(&pool, &ring, &e.id, &headers).await?;
    let page = format!("{}/endpoints/{}", scope.base, e.id);
    Ok(see_other(&Notice::EndpointSaved.on(&page)))
}

/// The endpoint a path names (the dashboard's paths also hold `{app_id}`).
#[derive(Debug, Deserialize)]
pub struct EndpointKey {
    pub endpoint_id: String,
}
