//! What `/api/v1/operational-webhook/endpoint` takes and answers (Svix's
//! `OperationalWebhookEndpoint*` shapes).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    api::endpoint::{EndpointFields, EndpointOut},
    operational::EventType,
};

/// A new operational endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationalEndpointIn {
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
    /// The events it receives (none: all of them).
    #[serde(alias = "filterTypes")]
    #[schema(value_type = Option<std::collections::BTreeSet<EventType>>, min_items = 1)]
    pub event_types: Option<Vec<EventType>>,
    /// Its signing secret, `whsec_` + base64 of 24 to 64 bytes (default: a new one).
    #[schema(pattern = r"^whsec_[A-Za-z0-9+/]{32,86}={0,2}$")]
    pub secret: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Headers sent with every event.
    pub headers: Option<BTreeMap<String, String>>,
}

impl OperationalEndpointIn {
    /// Its fields, its secret and its headers.
    pub fn split(self) -> (EndpointFields, Option<String>, BTreeMap<String, String>) {
        let fields = OperationalEndpointUpsertIn {
            url: self.url,
            description: self.description,
            throttle_rate: self.throttle_rate,
            uid: self.uid,
            disabled: self.disabled,
            event_types: self.event_types,
            metadata: self.metadata,
        }
        .fields();
        (fields, self.secret, self.headers.unwrap_or_default())
    }
}

/// All of an operational endpoint's fields but its secret and headers (PUT).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationalEndpointUpsertIn {
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
    /// The events it receives (none: all of them).
    #[serde(alias = "filterTypes")]
    #[schema(value_type = Option<std::collections::BTreeSet<EventType>>, min_items = 1)]
    pub event_types: Option<Vec<EventType>>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl OperationalEndpointUpsertIn {
    /// As an endpoint of the reserved application: no channels, not ordered.
    pub fn fields(self) -> EndpointFields {
        EndpointFields {
            url: self.url,
            description: self.description,
            throttle_rate: self.throttle_rate,
            uid: self.uid,
            disabled: self.disabled,
            event_types: self
                .event_types
                .map(|types| types.into_iter().map(|t| t.name().to_string()).collect()),
            channels: None,
            metadata: self.metadata,
            ordered: false,
            ordered_on_dead: Default::default(),
        }
    }
}

/// An operational endpoint.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationalEndpointOut {
    /// `ep_…`
    pub id: String,
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    pub throttle_rate: Option<i32>,
    pub disabled: bool,
    /// The events it receives (none: all of them).
    pub event_types: Option<Vec<String>>,
    pub metadata: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<EndpointOut> for OperationalEndpointOut {
    fn from(e: EndpointOut) -> Self {
        OperationalEndpointOut {
            id: e.id,
            uid: e.uid,
            url: e.url,
            description: e.description,
            throttle_rate: e.throttle_rate,
            disabled: e.disabled,
            event_types: e.event_types,
            metadata: e.metadata.0,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}
