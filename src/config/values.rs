//! How setting values are written: durations (`15s`, `500ms`, `5m`), comma-separated lists,
//! CIDR ranges; and how secrets are shown (masked). Each is a `serde(with = ...)` module, so
//! one attribute on a field says how it is read and how `herald config` prints it.

use std::{str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serializer};

/// `15s`, `500ms`, `5m`, `2h`, `1h 30m`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::Duration::from_str(raw.trim())
        .map(Into::into)
        .map_err(|e| format!("'{raw}' is not a duration like 500ms, 15s, 5m or 2h ({e})"))
}

fn show_duration(d: &Duration) -> String {
    humantime::format_duration(*d).to_string()
}

pub mod duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        let raw = String::deserialize(de)?;
        parse_duration(&raw).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(d: &Duration, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&show_duration(d))
    }
}

pub mod duration_list {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<Duration>, D::Error> {
        split(&String::deserialize(de)?)
            .map(parse_duration)
            .collect::<Result<Vec<_>, _>>()
            .map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(list: &[Duration], ser: S) -> Result<S::Ok, S::Error> {
        let shown: Vec<String> = list.iter().map(show_duration).collect();
        ser.serialize_str(&shown.join(","))
    }
}

pub mod comma_list {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
        Ok(split(&String::deserialize(de)?).map(String::from).collect())
    }

    pub fn serialize<S: Serializer>(list: &[String], ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&list.join(","))
    }
}

/// Secrets (tokens): read as a comma-separated list, shown as their count.
pub mod masked_list {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
        super::comma_list::deserialize(de)
    }

    pub fn serialize<S: Serializer>(list: &[String], ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&format!("<{} masked>", list.len()))
    }
}

/// One secret (a key): shown as whether it is set.
pub mod masked {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
        String::deserialize(de)
    }

    pub fn serialize<S: Serializer>(value: &str, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(if value.trim().is_empty() {
            ""
        } else {
            "<masked>"
        })
    }
}

/// An address to listen on, or nothing when empty.
pub mod optional_addr {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        de: D,
    ) -> Result<Option<std::net::SocketAddr>, D::Error> {
        let raw = String::deserialize(de)?;
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(None);
        }
        raw.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("'{raw}' is not an address like 127.0.0.1:9090"))
        })
    }

    pub fn serialize<S: Serializer>(
        addr: &Option<std::net::SocketAddr>,
        ser: S,
    ) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&addr.map(|a| a.to_string()).unwrap_or_default())
    }
}

/// A database URL: shown with its password masked.
pub mod masked_url {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
        String::deserialize(de)
    }

    pub fn serialize<S: Serializer>(url: &str, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&super::mask_url(url))
    }
}

pub mod cidr_list {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
        split(&String::deserialize(de)?)
            .map(|c| {
                // A bare address is a range of one.
                c.parse::<ipnet::IpNet>()
                    .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        serde::de::Error::custom(format!(
                            "'{c}' is not a CIDR range like 10.0.0.0/8"
                        ))
                    })
            })
            .collect()
    }

    pub fn serialize<S: Serializer>(list: &[ipnet::IpNet], ser: S) -> Result<S::Ok, S::Error> {
        let shown: Vec<String> = list.iter().map(|c| c.to_string()).collect();
        ser.serialize_str(&shown.join(","))
    }
}

fn split(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) if raw.trim() == crate::embedded_pg::EMBEDDED => raw.trim().into(),
        Err(_) => "<unparseable>".into(),
    }
}

/// A URL, or nothing when empty.
pub mod optional_url {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Option<url::Url>, D::Error> {
        let raw = String::deserialize(de)?;
        if raw.trim().is_empty() {
            return Ok(None);
        }
        url::Url::parse(raw.trim())
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("'{raw}' is not a URL ({e})")))
    }

    pub fn serialize<S: Serializer>(u: &Option<url::Url>, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(u.as_ref().map(|u| u.as_str()).unwrap_or(""))
    }
}
