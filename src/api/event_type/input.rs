//! What requests to `/api/v1/event-type` carry, and the checks on it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::api::{
    error::{ApiError, ApiResult},
    validate::{self, Problems},
};

/// JSON schemas by version (an object whose values are objects), kept byte for byte.
type Schemas = Box<RawValue>;

/// A new event type.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTypeIn {
    #[schema(min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    name: String,
    description: String,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    deprecated: bool,
    #[schema(value_type = Option<BTreeMap<String, Object>>)]
    schemas: Option<Schemas>,
    #[schema(min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    group_name: Option<String>,
    #[schema(value_type = Option<std::collections::BTreeSet<crate::api::validate::shape::EventTypeName>>, min_items = 1, max_items = 25)]
    feature_flags: Option<Vec<String>>,
    /// Deprecated: one feature flag (use `featureFlags`).
    #[schema(min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    feature_flag: Option<String>,
}

/// All of an event type's fields but its name (PUT).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTypeUpdate {
    description: String,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    deprecated: bool,
    #[schema(value_type = Option<BTreeMap<String, Object>>)]
    schemas: Option<Schemas>,
    #[schema(min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    group_name: Option<String>,
    #[schema(value_type = Option<std::collections::BTreeSet<crate::api::validate::shape::EventTypeName>>, min_items = 1, max_items = 25)]
    feature_flags: Option<Vec<String>>,
    /// Deprecated: one feature flag (use `featureFlags`).
    #[schema(min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    feature_flag: Option<String>,
}

/// Fields to change; `null` clears `schemas`, `groupName` and `featureFlags`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTypePatch {
    description: Option<String>,
    archived: Option<bool>,
    deprecated: Option<bool>,
    #[serde(default, deserialize_with = "crate::api::nullable")]
    #[schema(value_type = Option<BTreeMap<String, Object>>)]
    schemas: Option<Option<Schemas>>,
    #[serde(default, deserialize_with = "crate::api::nullable")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 256, pattern = r"^[a-zA-Z0-9\-_.]+$")]
    group_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::api::nullable")]
    #[schema(value_type = Option<std::collections::BTreeSet<crate::api::validate::shape::EventTypeName>>, min_items = 1, max_items = 25)]
    feature_flags: Option<Option<Vec<String>>>,
}

/// What is stored: the fields of PUT, checked.
pub struct EventTypeFields {
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    /// The schemas' text, as given.
    pub schemas: Option<String>,
    pub group_name: Option<String>,
    pub feature_flags: Option<Vec<String>>,
}

impl EventTypeIn {
    /// The name and the fields, checked.
    pub fn into_parts(self) -> ApiResult<(String, EventTypeFields)> {
        validate::name("name", &self.name).map_err(|e| ApiError::Validation(vec![e]))?;
        let fields = EventTypeUpdate {
            description: self.description,
            archived: self.archived,
            deprecated: self.deprecated,
            schemas: self.schemas,
            group_name: self.group_name,
            feature_flags: self.feature_flags,
            feature_flag: self.feature_flag,
        }
        .into_fields()?;
        Ok((self.name, fields))
    }
}

impl EventTypePatch {
    /// `existing` with this patch applied, checked.
    pub fn apply(self, existing: EventTypeFields) -> ApiResult<EventTypeFields> {
        let merged = EventTypeFields {
            description: self.description.unwrap_or(existing.description),
            archived: self.archived.unwrap_or(existing.archived),
            deprecated: self.deprecated.unwrap_or(existing.deprecated),
            schemas: match &self.schemas {
                Some(new) => new.as_ref().map(schemas_text),
                None => existing.schemas,
            },
            group_name: self.group_name.unwrap_or(existing.group_name),
            feature_flags: self.feature_flags.unwrap_or(existing.feature_flags),
        };
        let mut p = Problems::default();
        check(
            &mut p,
            &merged,
            self.schemas.as_ref().and_then(Option::as_ref),
        );
        p.finish()?;
        Ok(merged)
    }
}

impl EventTypeUpdate {
    /// The fields, checked.
    pub fn into_fields(self) -> ApiResult<EventTypeFields> {
        let mut p = Problems::default();
        let flags = match (self.feature_flags, self.feature_flag) {
            (Some(_), Some(_)) => {
                p.push("featureFlag", "give featureFlags or featureFlag, not both");
                None
            }
            (flags, flag) => flags.or(flag.map(|f| vec![f])),
        };
        let fields = EventTypeFields {
            description: self.description,
            archived: self.archived,
            deprecated: self.deprecated,
            schemas: self.schemas.as_ref().map(schemas_text),
            group_name: self.group_name,
            feature_flags: flags,
        };
        check(&mut p, &fields, self.schemas.as_ref());
        p.finish()?;
        Ok(fields)
    }
}

fn check(p: &mut Problems, f: &EventTypeFields, schemas: Option<&Schemas>) {
    if let Some(group) = &f.group_name {
        p.check(validate::name("groupName", group));
    }
    if let Some(flags) = &f.feature_flags {
        p.check(validate::list("featureFlags", flags, 25, validate::name));
    }
    let Some(schemas) = schemas else { return };
    match serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(schemas.get()) {
        Err(_) => p.push("schemas", "must be an object of JSON schemas by version"),
        Ok(versions) => {
            for (version, schema) in versions {
                if !schema.get().trim_start().starts_with('{') {
                    p.push(
                        &format!("schemas.{version}"),
                        "must be a JSON schema (an object)",
                    );
                }
            }
        }
    }
}

/// The schemas as stored: the text exactly as given.
fn schemas_text(schemas: &Schemas) -> String {
    schemas.get().to_string()
}
