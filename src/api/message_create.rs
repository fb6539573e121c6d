//! `POST /api/v1/app/{app_id}/msg`: creating a message. It goes through
//! `herald.send_messages`, the set-based form of the function producers call in SQL, so both
//! paths give identical rows; concurrent creates share one statement and one commit, and an
//! `idempotency-key` is claimed in that same transaction ([`crate::store::new_message`]).

use std::time::Duration;

use actix_web::{post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::{
    application::{self, ApplicationIn},
    error::{ApiError, ApiResult},
    extract::{self, Body},
    idempotency,
    message::{self, payload, MessageOut},
    paths::AppPath,
    query::ContentQuery,
    validate::{self, Problems},
};
use crate::{
    destination::Policy,
    store::{
        new_message::{NewMessage, Written},
        writers::ApiWriters,
    },
};

/// What a message may ask for, as configured.
#[derive(Debug, Clone, Copy)]
pub struct MessageLimits {
    /// `deliverAt` at most this far ahead (`HERALD_MAX_DELIVER_AHEAD`).
    pub max_deliver_ahead: Duration,
}

/// A new message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageIn {
    /// The event type's name (it need not exist in the catalogue).
    #[schema(min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    event_type: String,
    /// A JSON object, stored and sent byte for byte.
    #[schema(value_type = Object)]
    payload: Box<RawValue>,
    /// Your unique id for the event: a second message with it is refused (409), and it
    /// finds the message in place of its id.
    #[schema(min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    event_id: Option<String>,
    /// Endpoints with channels receive only messages with one of theirs.
    #[schema(value_type = Option<std::collections::BTreeSet<super::validate::shape::Channel>>, min_items = 1, max_items = 10)]
    channels: Option<Vec<String>>,
    /// Labels to filter lists by.
    #[schema(value_type = Option<std::collections::BTreeSet<super::validate::shape::Tag>>, min_items = 1, max_items = 5)]
    tags: Option<Vec<String>>,
    /// Creates the application along with the message when the path names none (its uid
    /// defaults to the path's); ignored when the application exists.
    application: Option<ApplicationIn>,
    /// Deliver at this time (a time past means now), at most `HERALD_MAX_DELIVER_AHEAD`
    /// (90 days by default) ahead. The message is stored now.
    deliver_at: Option<DateTime<Utc>>,
    /// Expunge the payload this many days after creation (the message is kept).
    #[schema(minimum = 1, maximum = 90)]
    payload_retention_period: Option<i64>,
    /// Expunge the payload this many hours after creation (the message is kept).
    #[schema(minimum = 1, maximum = 2160)]
    payload_retention_hours: Option<i64>,
    /// Herald: send the message to this URL only (a payment request's callback URL),
    /// instead of the application's endpoints, with every guarantee an endpoint has. It is
    /// checked against the destination rules (`HERALD_DESTINATION_ALLOWLIST`,
    /// `HERALD_REQUIRE_HTTPS`, no private or loopback address), and its deliveries are
    /// signed with the application's secret (`GET /api/v1/app/{app_id}/secret`). In SQL:
    /// `herald.send_message(..., url => ...)`.
    #[schema(format = Uri, max_length = 2048)]
    callback_url: Option<String>,
}

impl MessageIn {
    fn validate(&self, limits: &MessageLimits, policy: &Policy) -> Result<(), ApiError> {
        let mut p = Problems::default();
        if let Some(url) = &self.callback_url {
            match validate::url("callbackUrl", url) {
                Ok(_) if url.len() > 2048 => {
                    p.push("callbackUrl", "is longer than 2048 characters")
                }
                Ok(_) => {
                    if let Err(refusal) = policy.check_url(url) {
                        p.push("callbackUrl", refusal.to_string());
                    }
                }
                Err(e) => p.check(Err(e)),
            }
        }
        p.check(validate::name("eventType", &self.event_type));
        if let Some(id) = &self.event_id {
            p.check(validate::name("eventId", id));
        }
        if let Some(c) = &self.channels {
            p.check(validate::list("channels", c, 10, validate::channel));
        }
        if let Some(t) = &self.tags {
            p.check(validate::list("tags", t, 5, validate::tag));
        }
        if !self.payload.get().trim_start().starts_with('{') {
            p.push("payload", "must be a JSON object");
        }
        if let Some(at) = self.deliver_at {
            let ahead = chrono::Duration::from_std(limits.max_deliver_ahead).unwrap_or_default();
            if at > Utc::now() + ahead {
                p.push(
                    "deliverAt",
                    format!(
                        "must be at most {} ahead (HERALD_MAX_DELIVER_AHEAD)",
                        humantime::format_duration(limits.max_deliver_ahead)
                    ),
                );
            }
        }
        match (self.payload_retention_period, self.payload_retention_hours) {
            (Some(_), Some(_)) => p.push(
                "payloadRetentionHours",
                "give payloadRetentionPeriod or payloadRetentionHours, not both",
            ),
            (Some(days), None) if !(1..=90).contains(&days) => {
                p.push("payloadRetentionPeriod", "must be 1 to 90 days")
            }
            (None, Some(hours)) if !(1..=2160).contains(&hours) => {
                p.push("payloadRetentionHours", "must be 1 to 2160 hours")
            }
            _ => {}
        }
        p.finish()
    }

    /// Counted from when the message is to be delivered: a scheduled message keeps its
    /// payload until then, and for the retention after.
    fn payload_expires_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let hours = self
            .payload_retention_hours
            .or(self.payload_retention_period.map(|d| d * 24))?;
        Some(self.deliver_at.unwrap_or(now).max(now) + chrono::Duration::hours(hours))
    }
}

/// Create a message and send it to every endpoint of the application subscribed to its
/// event type and channels (or, with Herald's `callbackUrl`, to that URL only).
#[utoipa::path(
    security(("ApplicationToken" = [])),
    operation_id = "v1.message.create", tag = "Message",
    params(AppPath, ContentQuery), request_body = MessageIn,
    responses(
        (status = 202, description = "Stored; it will be delivered", body = MessageOut),
        (status = 409, description = "A message with this `eventId` exists", body = super::error::HttpErrorOut),
    )
)]
#[post("/app/{app_id}/msg")]
#[allow(clippy::too_many_arguments)] // the state a create needs, each from the app
pub async fn create(
    req: HttpRequest,
    pool: web::Data<PgPool>,
    ring: web::Data<crate::keyring::Keyring>,
    writers: web::Data<ApiWriters>,
    limits: web::Data<MessageLimits>,
    policy: web::Data<Policy>,
    path: web::Path<AppPath>,
    content: web::Query<ContentQuery>,
    Body(body): Body,
) -> ApiResult<HttpResponse> {
    let input: MessageIn = extract::parse(&body)?;
    input.validate(&limits, &policy)?;
    let key = idempotency::keyed_request(&req, &body)?;
    let app = path.into_inner().app_id;
    let message = NewMessage {
        app: app.clone(),
        event_type: input.event_type.clone(),
        payload: input.payload.get().to_string(),
        event_id: input.event_id.clone(),
        channels: input.channels.clone(),
        tags: input.tags.clone(),
        // As stored: PostgreSQL keeps microseconds.
        deliver_at: input.deliver_at.map(|t| t.trunc_subsecs(6)),
        payload_expires_at: input.payload_expires_at(Utc::now()),
        key: key.clone(),
        // As a URL parser writes it (the form it is sent to), so that spellings of one URL
        // share one callback endpoint.
        callback_url: input
            .callback_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .map(String::from),
        // This request's span: the message's attempts link to it, however much later.
        trace_context: crate::telemetry::trace::current_traceparent(),
    };
    let write = |message| writers.messages.write(message);
    let (message, written) = match write(message).await.map_err(invalid_payload)? {
        // Svix: `application` creates the application along with its first message.
        (mut message, Written::NoApplication) => {
            let Some(new_app) = &input.application else {
                return Err(ApiError::not_found("application"));
            };
            message.app = application::get_or_create(&pool, &ring, &app, new_app).await?;
            write(message).await.map_err(invalid_payload)?
        }
        written => written,
    };
    match written {
        Written::Created { id, timestamp } => Ok(HttpResponse::Accepted().json(MessageOut {
            id,
            event_type: message.event_type,
            payload: payload(Some(message.payload), content.wanted()),
            event_id: message.event_id,
            channels: message.channels,
            tags: message.tags,
            timestamp,
            deliver_at: message.deliver_at,
        })),
        Written::Duplicate { id } => Err(ApiError::Conflict(format!(
            "a message with eventId '{}' already exists: {}",
            message.event_id.unwrap_or_default(),
            id.unwrap_or_default()
        ))),
        Written::NoApplication => Err(ApiError::not_found("application")),
        Written::KeyTaken(holder) => {
            let key = key.expect("only a keyed create finds its key taken");
            let replay = idempotency::Replay::of(&key, holder)?;
            match replay {
                idempotency::Replay::Message(id) => {
                    let msg = message::find_by_id(&pool, &id, content.wanted()).await?;
                    Ok(idempotency::replayed(HttpResponse::Accepted()).json(msg))
                }
                other => other.into_response(),
            }
        }
    }
}

/// `herald.send_messages` refuses what PostgreSQL's JSON parser refuses: that is the
/// caller's input, so 422.
fn invalid_payload(e: sqlx::Error) -> ApiError {
    match e.as_database_error().and_then(|d| d.code()) {
        Some(code) if code == "22P02" || code == "22023" || code == "22P05" => ApiError::invalid(
            "payload",
            e.as_database_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default(),
        ),
        _ => e.into(),
    }
}
