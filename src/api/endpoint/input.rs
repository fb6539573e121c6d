//! What requests to `/api/v1/app/{app_id}/endpoint` carry, and the checks on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::{
    api::{
        error::{ApiError, ApiResult},
        event_type,
        validate::{self, Problems},
    },
    destination::Policy,
    operational::EventType as OperationalEvent,
};

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointIn {
    #[schema(format = Uri, min_length = 1, max_length = 65536)]
    url: String,
    #[serde(default)]
    description: String,
    /// Messages per second at most.
    #[serde(alias = "rateLimit")]
    #[schema(minimum = 1, maximum = 65535)]
    throttle_rate: Option<i64>,
    #[schema(min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    uid: Option<String>,
    #[serde(default)]
    disabled: bool,
    /// Event types it receives (each must exist); none: all.
    #[serde(alias = "filterTypes")]
    #[schema(value_type = Option<std::collections::BTreeSet<crate::api::validate::shape::EventTypeName>>, min_items = 1, max_items = 1000)]
    event_types: Option<Vec<String>>,
    /// It receives only messages with one of these channels; none: all.
    #[schema(value_type = Option<std::collections::BTreeSet<crate::api::validate::shape::Channel>>, min_items = 1, max_items = 10)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// Its signing secret, `whsec_` + base64 of 24 to 64 bytes (default: a new one).
    #[schema(pattern = r"^whsec_[A-Za-z0-9+/]{32,86}={0,2}$")]
    secret: Option<String>,
    /// Headers sent with every delivery.
    headers: Option<BTreeMap<String, String>>,
    /// Herald: deliver one at a time, in the order messages were written, the next only
    /// once the previous one succeeded or died (see README "Ordered endpoints").
    #[serde(default)]
    ordered: bool,
    /// Herald: with `ordered`, what a dead delivery at the head does: `skip` (default: the
    /// rest go on) or `block` (the rest wait until it is replayed).
    #[serde(default)]
    ordered_on_dead: OrderedOnDead,
}

impl EndpointIn {
    /// The endpoint's fields, its secret and its headers.
    pub(super) fn split(self) -> (EndpointFields, Option<String>, BTreeMap<String, String>) {
        let fields = EndpointFields {
            url: self.url,
            description: self.description,
            throttle_rate: self.throttle_rate,
            uid: self.uid,
            disabled: self.disabled,
            event_types: self.event_types,
            channels: self.channels,
            metadata: self.metadata,
            ordered: self.ordered,
            ordered_on_dead: self.ordered_on_dead,
        };
        (fields, self.secret, self.headers.unwrap_or_default())
    }
}

/// All of an endpoint's fields but its secret and headers (PUT; they have routes of their
/// own).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointUpdate {
    #[schema(format = Uri, min_length = 1, max_length = 65536)]
    pub url: String,
    #[serde(default)]
    pub description: String,
    /// Messages per second at most.
    #[serde(alias = "rateLimit")]
    #[schema(minimum = 1, maximum = 65535)]
    pub throttle_rate: Option<i64>,
    #[schema(min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    pub uid: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    /// Event types it receives (each must exist); none: all.
    #[serde(alias = "filterTypes")]
    #[schema(value_type = Option<std::collections::BTreeSet<crate::api::validate::shape::EventTypeName>>, min_items = 1, max_items = 1000)]
    pub event_types: Option<Vec<String>>,
    /// It receives only messages with one of these channels; none: all.
    #[schema(value_type = Option<std::collections::BTreeSet<crate::api::validate::shape::Channel>>, min_items = 1, max_items = 10)]
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Herald: deliver one at a time, in the order messages were written, the next only
    /// once the previous one succeeded or died (see README "Ordered endpoints").
    #[serde(default)]
    pub ordered: bool,
    /// Herald: with `ordered`, what a dead delivery at the head does: `skip` (default: the
    /// rest go on) or `block` (the rest wait until it is replayed).
    #[serde(default)]
    pub ordered_on_dead: OrderedOnDead,
}

/// What a dead delivery at the head of an ordered endpoint's queue does.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum OrderedOnDead {
    /// Recorded as a dead letter; the rest go on.
    #[default]
    Skip,
    /// The rest wait until it is replayed (or deleted).
    Block,
}

/// The fields PUT replaces and POST sets.
pub type EndpointFields = EndpointUpdate;

/// Fields to change; `null` clears the optional ones.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPatch {
    #[schema(format = Uri, min_length = 1, max_length = 65536)]
    url: Option<String>,
    description: Option<String>,
    #[serde(
        default,
        alias = "rateLimit",
        deserialize_with = "crate::api::nullable"
    )]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 65535)]
    throttle_rate: Option<Option<i64>>,
    #[serde(default, deserialize_with = "crate::api::nullable")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    uid: Option<Option<String>>,
    disabled: Option<bool>,
    #[serde(
        default,
        alias = "filterTypes",
        deserialize_with = "crate::api::nullable"
    )]
    #[schema(value_type = Option<std::collections::BTreeSet<crate::api::validate::shape::EventTypeName>>, min_items = 1, max_items = 1000)]
    event_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "crate::api::nullable")]
    #[schema(value_type = Option<std::collections::BTreeSet<crate::api::validate::shape::Channel>>, min_items = 1, max_items = 10)]
    channels: Option<Option<Vec<String>>>,
    metadata: Option<BTreeMap<String, String>>,
    /// Herald: see `EndpointIn.ordered`.
    ordered: Option<bool>,
    /// Herald: see `EndpointIn.orderedOnDead`.
    ordered_on_dead: Option<OrderedOnDead>,
}

impl EndpointFields {
    /// An endpoint's fields as they are.
    pub fn of(e: super::EndpointOut) -> EndpointFields {
        EndpointFields {
            url: e.url,
            description: e.description,
            throttle_rate: e.throttle_rate.map(i64::from),
            uid: e.uid,
            disabled: e.disabled,
            event_types: e.event_types,
            channels: e.channels,
            metadata: e.metadata.0,
            ordered: e.ordered,
            ordered_on_dead: e.ordered_on_dead,
        }
    }
}

impl EndpointPatch {
    /// The endpoint's fields with this patch applied.
    pub fn apply(self, e: super::EndpointOut) -> EndpointFields {
        EndpointFields {
            url: self.url.unwrap_or(e.url),
            description: self.description.unwrap_or(e.description),
            throttle_rate: self.throttle_rate.unwrap_or(e.throttle_rate.map(i64::from)),
            uid: self.uid.unwrap_or(e.uid),
            disabled: self.disabled.unwrap_or(e.disabled),
            event_types: self.event_types.unwrap_or(e.event_types),
            channels: self.channels.unwrap_or(e.channels),
            metadata: self.metadata.unwrap_or(e.metadata.0),
            ordered: self.ordered.unwrap_or(e.ordered),
            ordered_on_dead: self.ordered_on_dead.unwrap_or(e.ordered_on_dead),
        }
    }
}

/// Where an endpoint's event types come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTypeCatalogue {
    /// The event types created through `/api/v1/event-type`.
    Registered,
    /// Herald's own events (an operational endpoint's).
    Operational,
}

impl EndpointFields {
    /// The checks of an endpoint whose event types are registered ones.
    pub async fn validate(&self, pool: &PgPool, policy: &Policy) -> ApiResult<()> {
        self.validate_in(pool, policy, EventTypeCatalogue::Registered)
            .await
    }

    /// Shape checks, the destination policy, then whether each event type is in
    /// `catalogue` (for registered ones, a database lookup).
    pub async fn validate_in(
        &self,
        pool: &PgPool,
        policy: &Policy,
        catalogue: EventTypeCatalogue,
    ) -> ApiResult<()> {
        let mut p = Problems::default();
        match validate::url("url", &self.url) {
            Ok(_) => {
                if let Err(refusal) = policy.check_url(&self.url) {
                    p.push("url", refusal.to_string());
                }
            }
            Err(e) => p.check(Err(e)),
        }
        if let Some(uid) = &self.uid {
            p.check(validate::uid("uid", uid));
        }
        if let Some(rate) = self.throttle_rate {
            p.check(validate::rate("throttleRate", rate));
        }
        if let Some(types) = &self.event_types {
            p.check(validate::list("eventTypes", types, 1000, validate::name));
        }
        if let Some(channels) = &self.channels {
            p.check(validate::list("channels", channels, 10, validate::channel));
        }
        p.finish()?;
        let Some(types) = &self.event_types else {
            return Ok(());
        };
        let (unknown, hint) = match catalogue {
            EventTypeCatalogue::Registered => (
                event_type::unknown(pool, types).await?,
                "create them first (POST /api/v1/event-type)".to_string(),
            ),
            EventTypeCatalogue::Operational => (
                types
                    .iter()
                    .filter(|t| OperationalEvent::from_name(t).is_none())
                    .cloned()
                    .collect(),
                format!(
                    "Herald's operational events are {}",
                    OperationalEvent::ALL.map(OperationalEvent::name).join(", ")
                ),
            ),
        };
        if unknown.is_empty() {
            return Ok(());
        }
        Err(ApiError::invalid(
            "eventTypes",
            format!("unknown event type(s): {}; {hint}", unknown.join(", ")),
        ))
    }
}
