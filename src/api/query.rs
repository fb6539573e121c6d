//! Query-string values as the Svix SDKs send them (comma-joined lists, datetimes that may
//! lack an offset, read as UTC), and the message filters three lists share.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};
use utoipa::IntoParams;

/// The filters on a message list, an attempt list and an endpoint's messages: one struct
/// and one SQL fragment for all three.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageFilter {
    /// Only messages with this channel.
    #[param(max_length = 128)]
    pub channel: Option<String>,
    /// Only messages with this tag.
    #[param(max_length = 128)]
    pub tag: Option<String>,
    /// Only messages of these event types (comma-separated).
    #[serde(default, deserialize_with = "list")]
    #[param(value_type = Option<Vec<String>>, style = Form, explode = false)]
    pub event_types: Option<Vec<String>>,
    /// Only items created before this time.
    #[serde(default, deserialize_with = "datetime")]
    #[param(value_type = Option<DateTime<Utc>>)]
    pub before: Option<DateTime<Utc>>,
    /// Only items created after this time.
    #[serde(default, deserialize_with = "datetime")]
    #[param(value_type = Option<DateTime<Utc>>)]
    pub after: Option<DateTime<Utc>>,
}

impl MessageFilter {
    /// Appends the filters to a query whose `WHERE` clause is open: `message` is the alias
    /// of the messages table, `time` the column `before` and `after` compare with.
    pub fn push_to(
        &self,
        qb: &mut sqlx::QueryBuilder<'_, sqlx::Postgres>,
        message: &str,
        time: &str,
    ) {
        if let Some(channel) = &self.channel {
            qb.push(" AND ").push_bind(channel.clone());
            qb.push(format!(" = ANY({message}.channels)"));
        }
        if let Some(tag) = &self.tag {
            qb.push(" AND ").push_bind(tag.clone());
            qb.push(format!(" = ANY({message}.tags)"));
        }
        if let Some(types) = &self.event_types {
            qb.push(format!(" AND {message}.event_type = ANY("))
                .push_bind(types.clone())
                .push(")");
        }
        if let Some(before) = self.before {
            qb.push(format!(" AND {time} < ")).push_bind(before);
        }
        if let Some(after) = self.after {
            qb.push(format!(" AND {time} > ")).push_bind(after);
        }
    }
}

/// Whether to include payloads (default: yes).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContentQuery {
    /// Include message payloads (default `true`).
    pub with_content: Option<bool>,
}

impl ContentQuery {
    pub fn wanted(&self) -> bool {
        self.with_content.unwrap_or(true)
    }
}

pub fn datetime<'de, D: Deserializer<'de>>(de: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(raw) = Option::<String>::deserialize(de)? else {
        return Ok(None);
    };
    parse_datetime(&raw)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

pub fn parse_datetime(raw: &str) -> Result<DateTime<Utc>, String> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, format) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "'{raw}' is not a date-time like 2026-01-31T12:00:00Z"
    ))
}

pub fn list<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Vec<String>>, D::Error> {
    let Some(raw) = Option::<String>::deserialize(de)? else {
        return Ok(None);
    };
    let items: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    Ok((!items.is_empty()).then_some(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_with_and_without_offset() {
        let z = parse_datetime("2024-01-02T03:04:05Z").unwrap();
        assert_eq!(parse_datetime("2024-01-02T03:04:05").unwrap(), z);
        assert_eq!(parse_datetime("2024-01-02T05:04:05+02:00").unwrap(), z);
        assert!(parse_datetime("2024-01-02T03:04:05.123456").is_ok());
        assert!(parse_datetime("yesterday").is_err());
    }

    #[test]
    fn filters_make_one_fragment() {
        let f = MessageFilter {
            channel: Some("c".into()),
            event_types: Some(vec!["a".into()]),
            before: Some(Utc::now()),
            ..Default::default()
        };
        let mut qb = sqlx::QueryBuilder::new("SELECT 1 FROM herald.message m WHERE true");
        f.push_to(&mut qb, "m", "m.created_at");
        assert_eq!(
            qb.sql(),
            "SELECT 1 FROM herald.message m WHERE true AND $1 = ANY(m.channels) \
             AND m.event_type = ANY($2) AND m.created_at < $3"
        );
    }
}
