//! Query-string values as the Svix SDKs send them: comma-joined lists, and datetimes that
//! may lack an offset (read as UTC).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};

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

/// A number or boolean that may arrive as a string: query values behind `#[serde(flatten)]`
/// reach their field as strings.
pub fn parsed<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Number(i64),
        Flag(bool),
    }
    let value = match Option::<Raw>::deserialize(de)? {
        None => return Ok(None),
        Some(Raw::Text(s)) => s,
        Some(Raw::Number(n)) => n.to_string(),
        Some(Raw::Flag(b)) => b.to_string(),
    };
    value
        .trim()
        .parse()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("'{value}': {e}")))
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
}
