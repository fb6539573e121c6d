//! `/api/v1/app/{app_id}/msg`: messages. Creating one goes through `herald.send_message`,
//! the same function producers call in SQL, so both paths give identical rows; concurrent
//! creates share one statement and one commit ([`ingest`]).

pub mod ingest;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::PgPool;

use ingest::{invalid_payload, Ingest, NewMessage, Written};

use super::{
    application::{self, ApplicationIn},
    error::{ApiError, ApiResult},
    extract::Json,
    pagination::{ListResponse, Ordering, Page, PageQuery},
    query,
    validate::{self, Problems},
};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/app/{app_id}/msg", web::get().to(list))
        .route("/app/{app_id}/msg", web::post().to(create))
        .route("/app/{app_id}/msg/{msg_id}", web::get().to(get))
        .route(
            "/app/{app_id}/msg/{msg_id}/content",
            web::delete().to(expunge),
        );
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageOut {
    pub id: String,
    pub event_type: String,
    /// The stored bytes, verbatim; `{}` when not asked for or expunged.
    pub payload: Box<RawValue>,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub timestamp: DateTime<Utc>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct MessageRow {
    pub id: String,
    pub event_type: String,
    pub payload: Option<String>,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
}

pub const COLUMNS: &str =
    "m.id, m.event_type, m.payload, m.event_id, m.channels, m.tags, m.created_at";

impl MessageRow {
    pub fn into_out(self, with_content: bool) -> MessageOut {
        MessageOut {
            id: self.id,
            event_type: self.event_type,
            payload: payload(self.payload, with_content),
            event_id: self.event_id,
            channels: self.channels,
            tags: self.tags,
            timestamp: self.created_at,
        }
    }
}

/// Stored payloads were validated as JSON on the way in; anything else becomes `{}`.
pub fn payload(stored: Option<String>, with_content: bool) -> Box<RawValue> {
    stored
        .filter(|_| with_content)
        .and_then(|p| RawValue::from_string(p).ok())
        .unwrap_or_else(|| RawValue::from_string("{}".into()).expect("valid JSON"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageIn {
    event_type: String,
    payload: Box<RawValue>,
    event_id: Option<String>,
    channels: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    application: Option<ApplicationIn>,
}

impl MessageIn {
    fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::default();
        p.check(validate::name("eventType", &self.event_type));
        if let Some(id) = &self.event_id {
            p.check(validate::uid("eventId", id));
        }
        if let Some(c) = &self.channels {
            p.check(validate::names("channels", c, 5));
        }
        if let Some(t) = &self.tags {
            p.check(validate::names("tags", t, 5));
        }
        if !self.payload.get().trim_start().starts_with('{') {
            p.push("payload", "must be a JSON object");
        }
        p.finish()
    }
}

#[derive(Deserialize)]
struct ContentQuery {
    #[serde(default, deserialize_with = "super::query::parsed")]
    with_content: Option<bool>,
}

/// The message `key` (its id or its eventId) of `app_id`.
pub async fn find(
    pool: &PgPool,
    app_id: &str,
    key: &str,
    with_content: bool,
) -> ApiResult<MessageOut> {
    let sql = format!(
        "SELECT {COLUMNS} FROM herald.message m WHERE m.app_id = $1 AND (m.id = $2 OR m.event_id = $2) \
         ORDER BY m.id = $2 DESC LIMIT 1"
    );
    let row: MessageRow = sqlx::query_as(&sql)
        .bind(app_id)
        .bind(key)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(row.into_out(with_content))
}

pub async fn resolve_id(pool: &PgPool, app_id: &str, key: &str) -> ApiResult<String> {
    let id: Option<String> = sqlx::query_scalar(
        "SELECT id FROM herald.message WHERE app_id = $1 AND (id = $2 OR event_id = $2) ORDER BY id = $2 DESC LIMIT 1",
    )
    .bind(app_id)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    id.ok_or_else(|| ApiError::not_found("message"))
}

async fn create(
    pool: web::Data<PgPool>,
    ingest: web::Data<Ingest>,
    app: web::Path<String>,
    q: web::Query<ContentQuery>,
    Json(input): Json<MessageIn>,
) -> ApiResult<HttpResponse> {
    input.validate()?;
    let app = app.into_inner();
    let message = NewMessage {
        app: app.clone(),
        event_type: input.event_type,
        payload: input.payload.get().to_string(),
        event_id: input.event_id,
        channels: input.channels,
        tags: input.tags,
    };
    let write = |message| ingest.messages.write(message);
    let (message, written) = match write(message).await.map_err(invalid_payload)? {
        // Svix: `application` creates the application along with its first message.
        (mut message, Written::NoApplication) => {
            let Some(new_app) = &input.application else {
                return Err(ApiError::not_found("application"));
            };
            message.app = match application::find(&pool, &app).await? {
                Some(a) => a.id, // created meanwhile
                None => create_application(&pool, &app, new_app).await?,
            };
            write(message).await.map_err(invalid_payload)?
        }
        written => written,
    };
    match written {
        Written::Created { id, timestamp } => Ok(HttpResponse::Accepted().json(MessageOut {
            id,
            event_type: message.event_type,
            payload: payload(Some(message.payload), q.with_content.unwrap_or(true)),
            event_id: message.event_id,
            channels: message.channels,
            tags: message.tags,
            timestamp,
        })),
        Written::Duplicate { id } => Err(ApiError::Conflict(format!(
            "a message with eventId '{}' already exists: {id}",
            message.event_id.unwrap_or_default()
        ))),
        Written::NoApplication => Err(ApiError::not_found("application")),
    }
}

/// The application a message's path names, created from the message's `application`.
async fn create_application(
    pool: &PgPool,
    key: &str,
    new_app: &ApplicationIn,
) -> ApiResult<String> {
    new_app.validate("application.")?;
    let mut new_app = ApplicationIn {
        uid: new_app.uid.clone().or_else(|| Some(key.to_string())),
        ..new_app.clone()
    };
    if new_app
        .uid
        .as_deref()
        .is_some_and(|u| u.starts_with("app_"))
    {
        new_app.uid = None;
    }
    Ok(application::insert(pool, &new_app).await?.id)
}

/// Sends a message to one endpoint only (send-example), bypassing fan-out.
pub async fn send_to_endpoint(
    pool: &PgPool,
    app_id: &str,
    endpoint_id: &str,
    event_type: &str,
    payload: &str,
) -> ApiResult<String> {
    let mut tx = pool.begin().await?;
    let id: String = sqlx::query_scalar(
        "INSERT INTO herald.message (app_id, event_type, payload) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(app_id)
    .bind(event_type)
    .bind(payload)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO herald.delivery (message_id, endpoint_id, app_id) VALUES ($1, $2, $3)",
    )
    .bind(&id)
    .bind(endpoint_id)
    .bind(app_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(crate::store::WAKE_CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(id)
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(flatten)]
    page: PageQuery,
    #[serde(default, deserialize_with = "super::query::parsed")]
    with_content: Option<bool>,
    channel: Option<String>,
    tag: Option<String>,
    #[serde(default, deserialize_with = "query::list")]
    event_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "query::datetime")]
    before: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "query::datetime")]
    after: Option<DateTime<Utc>>,
}

async fn list(
    pool: web::Data<PgPool>,
    app: web::Path<String>,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &app).await?;
    let page = Page::new(&q.page, Ordering::Descending)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM herald.message m WHERE m.app_id = $1 \
         AND ($2::text IS NULL OR $2 = ANY(m.channels)) AND ($3::text IS NULL OR $3 = ANY(m.tags)) \
         AND ($4::text[] IS NULL OR m.event_type = ANY($4)) \
         AND ($5::timestamptz IS NULL OR m.created_at < $5) AND ($6::timestamptz IS NULL OR m.created_at > $6){}{}",
        page.cursor_clause("m.id", 7),
        page.order_clause("m.id")
    );
    let mut query = sqlx::query_as::<_, MessageRow>(&sql)
        .bind(&app_id)
        .bind(&q.channel)
        .bind(&q.tag)
        .bind(&q.event_types)
        .bind(q.before)
        .bind(q.after);
    if let Some(after) = &page.after {
        query = query.bind(after);
    }
    let with_content = q.with_content.unwrap_or(true);
    let rows: Vec<MessageOut> = query
        .fetch_all(pool.get_ref())
        .await?
        .into_iter()
        .map(|r| r.into_out(with_content))
        .collect();
    Ok(HttpResponse::Ok().json(ListResponse::from_rows(rows, &page, |m| m.id.clone())))
}

async fn get(
    pool: web::Data<PgPool>,
    path: web::Path<(String, String)>,
    q: web::Query<ContentQuery>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.0).await?;
    Ok(HttpResponse::Ok()
        .json(find(&pool, &app_id, &path.1, q.with_content.unwrap_or(true)).await?))
}

/// Deletes the payload (personal data, say) but keeps the message and its delivery history.
async fn expunge(
    pool: web::Data<PgPool>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let app_id = application::resolve(&pool, &path.0).await?;
    let id = resolve_id(&pool, &app_id, &path.1).await?;
    sqlx::query("UPDATE herald.message SET payload = NULL WHERE id = $1")
        .bind(id)
        .execute(pool.get_ref())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
