//! The path parameters of the API, one struct per shape, so that each is named and described
//! once: handlers extract them (`web::Path<EndpointPath>`) and the OpenAPI document lists
//! them (`params(EndpointPath)`).

use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppPath {
    /// The application's id (`app_…`) or uid.
    #[param(min_length = 1, max_length = 256)]
    pub app_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EndpointPath {
    /// The application's id (`app_…`) or uid.
    #[param(min_length = 1, max_length = 256)]
    pub app_id: String,
    /// The endpoint's id (`ep_…`) or uid.
    #[param(min_length = 1, max_length = 256)]
    pub endpoint_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MsgPath {
    /// The application's id (`app_…`) or uid.
    #[param(min_length = 1, max_length = 256)]
    pub app_id: String,
    /// The message's id (`msg_…`) or its `eventId`.
    #[param(min_length = 1, max_length = 256)]
    pub msg_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MsgEndpointPath {
    /// The application's id (`app_…`) or uid.
    #[param(min_length = 1, max_length = 256)]
    pub app_id: String,
    /// The message's id (`msg_…`) or its `eventId`.
    #[param(min_length = 1, max_length = 256)]
    pub msg_id: String,
    /// The endpoint's id (`ep_…`) or uid.
    #[param(min_length = 1, max_length = 256)]
    pub endpoint_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AttemptPath {
    /// The application's id (`app_…`) or uid.
    #[param(min_length = 1, max_length = 256)]
    pub app_id: String,
    /// The message's id (`msg_…`) or its `eventId`.
    #[param(min_length = 1, max_length = 256)]
    pub msg_id: String,
    /// The attempt's id (`atmpt_…`).
    #[param(min_length = 1, max_length = 256)]
    pub attempt_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EventTypePath {
    /// The event type's name.
    #[param(min_length = 1, max_length = 256)]
    pub event_type_name: String,
}
