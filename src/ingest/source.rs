//! What kind of source a source is, and its settings: one config shape per type, read
//! strictly (an unknown field is refused), shown without its secrets.

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use utoipa::ToSchema;

/// How a source's requests are verified and what identifies their events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = IngestSourceType)]
pub enum SourceType {
    Stripe,
    Github,
    Shopify,
    Slack,
    Svix,
    StandardWebhooks,
    Circle,
    GenericHmac,
    GenericWebhook,
}

impl SourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Stripe => "stripe",
            SourceType::Github => "github",
            SourceType::Shopify => "shopify",
            SourceType::Slack => "slack",
            SourceType::Svix => "svix",
            SourceType::StandardWebhooks => "standard-webhooks",
            SourceType::Circle => "circle",
            SourceType::GenericHmac => "generic-hmac",
            SourceType::GenericWebhook => "generic-webhook",
        }
    }

    pub fn parse(s: &str) -> Option<SourceType> {
        ALL.into_iter().find(|t| t.as_str() == s)
    }
}

pub const ALL: [SourceType; 9] = [
    SourceType::Stripe,
    SourceType::Github,
    SourceType::Shopify,
    SourceType::Slack,
    SourceType::Svix,
    SourceType::StandardWebhooks,
    SourceType::Circle,
    SourceType::GenericHmac,
    SourceType::GenericWebhook,
];

/// `stripe`, `shopify`: the endpoint's signing secret. `slack`: the signing secret. `svix`,
/// `standard-webhooks`: the `whsec_…` secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretConfig {
    pub secret: String,
    /// Seconds a signed timestamp may differ from now (default `HERALD_INGEST_TOLERANCE`);
    /// for schemes that sign one.
    pub tolerance_seconds: Option<u64>,
}

/// `github`: the webhook's secret. Without one, requests are accepted unauthenticated
/// (recorded as not verified), as Svix allows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GithubConfig {
    pub secret: Option<String>,
}

/// `circle`: Circle's public keys (base64 DER SubjectPublicKeyInfo) by key id, and/or
/// where to fetch a key not listed (`{keyId}` in the URL is replaced; the API key is sent
/// as a bearer token). A fetched key is kept for the life of the process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircleConfig {
    #[serde(default)]
    pub public_keys: BTreeMap<String, String>,
    /// e.g. `https://api.circle.com/v2/notifications/publicKey/{keyId}`.
    pub public_key_url: Option<String>,
    pub api_key: Option<String>,
}

/// How a generic source's events are identified (dedupe) and typed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventFields {
    /// The header holding the event's id, or...
    pub event_id_header: Option<String>,
    /// ...the body's JSON field (dotted path) holding it. Neither: no dedupe.
    pub event_id_field: Option<String>,
    /// The header, or the body's JSON field, naming its type (default: the source type).
    pub event_type_header: Option<String>,
    pub event_type_field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    #[default]
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

/// `generic-hmac`: an HMAC of the body (or of `{timestamp}.{body}` when a timestamp header
/// is named) with `secret` (its UTF-8 bytes), in `header`, after an optional `prefix`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenericHmacConfig {
    pub secret: String,
    pub header: String,
    /// Text before the signature in the header (`sha256=`).
    pub prefix: Option<String>,
    #[serde(default)]
    pub algorithm: Algorithm,
    #[serde(default)]
    pub encoding: Encoding,
    pub timestamp_header: Option<String>,
    pub tolerance_seconds: Option<u64>,
    #[serde(flatten)]
    pub event: EventFields,
}

/// A source's type with its settings.
#[derive(Debug, Clone)]
pub enum SourceKind {
    Stripe(SecretConfig),
    Github(GithubConfig),
    Shopify(SecretConfig),
    Slack(SecretConfig),
    Svix(SecretConfig),
    StandardWebhooks(SecretConfig),
    Circle(CircleConfig),
    GenericHmac(GenericHmacConfig),
    GenericWebhook(EventFields),
}

/// A problem with a source's type or config, naming the field.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    pub field: String,
    pub msg: String,
}

fn read<T: DeserializeOwned>(config: &serde_json::Value) -> Result<T, ConfigProblem> {
    serde_json::from_value(config.clone()).map_err(|e| ConfigProblem {
        field: "config".into(),
        msg: e.to_string(),
    })
}

impl SourceKind {
    /// The type named `type_name` with `config` (`null` or absent: `{}`).
    pub fn from_parts(
        type_name: &str,
        config: &serde_json::Value,
    ) -> Result<SourceKind, ConfigProblem> {
        let empty = serde_json::json!({});
        let config = if config.is_null() { &empty } else { config };
        let t = SourceType::parse(type_name).ok_or_else(|| ConfigProblem {
            field: "type".into(),
            msg: format!(
                "unknown source type '{type_name}'; Herald verifies: {}",
                ALL.map(SourceType::as_str).join(", ")
            ),
        })?;
        let kind = match t {
            SourceType::Stripe => SourceKind::Stripe(read(config)?),
            SourceType::Github => SourceKind::Github(read(config)?),
            SourceType::Shopify => SourceKind::Shopify(read(config)?),
            SourceType::Slack => SourceKind::Slack(read(config)?),
            SourceType::Svix => SourceKind::Svix(read(config)?),
            SourceType::StandardWebhooks => SourceKind::StandardWebhooks(read(config)?),
            SourceType::Circle => SourceKind::Circle(read(config)?),
            SourceType::GenericHmac => SourceKind::GenericHmac(read(config)?),
            SourceType::GenericWebhook => SourceKind::GenericWebhook(read(config)?),
        };
        kind.check()?;
        Ok(kind)
    }

    fn check(&self) -> Result<(), ConfigProblem> {
        let problem = |field: &str, msg: &str| {
            Err(ConfigProblem {
                field: format!("config.{field}"),
                msg: msg.into(),
            })
        };
        match self {
            SourceKind::Stripe(c) | SourceKind::Shopify(c) | SourceKind::Slack(c)
                if c.secret.trim().is_empty() =>
            {
                problem("secret", "must not be empty")
            }
            SourceKind::Svix(c) | SourceKind::StandardWebhooks(c)
                if crate::signing::Secret::parse(c.secret.trim()).is_err() =>
            {
                problem(
                    "secret",
                    "must be a whsec_… secret (base64 of 24 to 64 bytes)",
                )
            }
            SourceKind::Circle(c) if c.public_keys.is_empty() && c.public_key_url.is_none() => {
                problem(
                    "publicKeys",
                    "give publicKeys, or publicKeyUrl to fetch them",
                )
            }
            SourceKind::Circle(c)
                if c.public_key_url
                    .as_deref()
                    .is_some_and(|u| url::Url::parse(&u.replace("{keyId}", "k")).is_err()) =>
            {
                problem(
                    "publicKeyUrl",
                    "must be a URL (with {keyId} where the key id goes)",
                )
            }
            SourceKind::Circle(c)
                if c.public_keys
                    .values()
                    .any(|k| super::verify::circle::public_key(k).is_err()) =>
            {
                problem(
                    "publicKeys",
                    "each must be a base64 DER SubjectPublicKeyInfo of a P-256 key",
                )
            }
            SourceKind::GenericHmac(c) if c.secret.is_empty() || c.header.trim().is_empty() => {
                problem("secret", "secret and header must not be empty")
            }
            _ => Ok(()),
        }
    }

    pub fn source_type(&self) -> SourceType {
        match self {
            SourceKind::Stripe(_) => SourceType::Stripe,
            SourceKind::Github(_) => SourceType::Github,
            SourceKind::Shopify(_) => SourceType::Shopify,
            SourceKind::Slack(_) => SourceType::Slack,
            SourceKind::Svix(_) => SourceType::Svix,
            SourceKind::StandardWebhooks(_) => SourceType::StandardWebhooks,
            SourceKind::Circle(_) => SourceType::Circle,
            SourceKind::GenericHmac(_) => SourceType::GenericHmac,
            SourceKind::GenericWebhook(_) => SourceType::GenericWebhook,
        }
    }

    /// The config as stored.
    pub fn config(&self) -> serde_json::Value {
        let v = match self {
            SourceKind::Stripe(c)
            | SourceKind::Shopify(c)
            | SourceKind::Slack(c)
            | SourceKind::Svix(c)
            | SourceKind::StandardWebhooks(c) => serde_json::to_value(c),
            SourceKind::Github(c) => serde_json::to_value(c),
            SourceKind::Circle(c) => serde_json::to_value(c),
            SourceKind::GenericHmac(c) => serde_json::to_value(c),
            SourceKind::GenericWebhook(c) => serde_json::to_value(c),
        };
        strip_nulls(v.unwrap_or_default())
    }

    /// The config as the API shows it: without its secrets.
    pub fn shown_config(&self) -> serde_json::Value {
        let mut v = self.config();
        if let Some(map) = v.as_object_mut() {
            map.remove("secret");
            map.remove("apiKey");
        }
        v
    }
}

fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_type_reads_its_own_config_strictly() {
        let k = SourceKind::from_parts("stripe", &json!({"secret": "whsec_x"})).unwrap();
        assert_eq!(k.source_type(), SourceType::Stripe);
        assert_eq!(k.shown_config(), json!({}), "secrets are never shown");
        let bad = SourceKind::from_parts("stripe", &json!({"secret": "s", "sekret": 1}));
        assert_eq!(bad.unwrap_err().field, "config");
        assert_eq!(
            SourceKind::from_parts("stripe", &json!({}))
                .unwrap_err()
                .field,
            "config"
        );
        assert_eq!(
            SourceKind::from_parts("paypal", &json!({}))
                .unwrap_err()
                .field,
            "type"
        );
        assert!(SourceKind::from_parts("generic-webhook", &serde_json::Value::Null).is_ok());
        assert!(SourceKind::from_parts("github", &json!({})).is_ok());
        assert_eq!(
            SourceKind::from_parts("svix", &json!({"secret": "not-whsec"}))
                .unwrap_err()
                .field,
            "config.secret"
        );
        assert_eq!(
            SourceKind::from_parts("circle", &json!({}))
                .unwrap_err()
                .field,
            "config.publicKeys"
        );
        let hmac = SourceKind::from_parts(
            "generic-hmac",
            &json!({"secret": "s3", "header": "X-Sig", "prefix": "sha512=", "algorithm": "sha512",
                    "encoding": "base64", "eventIdHeader": "X-Id"}),
        )
        .unwrap();
        assert_eq!(
            hmac.shown_config(),
            json!({"header": "X-Sig", "prefix": "sha512=", "algorithm": "sha512",
                   "encoding": "base64", "eventIdHeader": "X-Id"})
        );
    }
}
