//! The groups that configure the service around the engine.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::{require, Group};
use crate::config::{values, ConfigError, Environment, LogFormat, Role};

/// What this process is and where it listens.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Process {
    /// Picks `config/{environment}.toml`; `production` hardens the rules below.
    #[serde(default = "development")]
    pub environment: Environment,
    /// Where the layered files live.
    #[serde(default)]
    pub config_dir: Option<PathBuf>,
    /// Which halves of Herald run here.
    pub role: Role,
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    /// A tracing filter (`info`, `herald=debug,sqlx=warn`); `RUST_LOG` wins when set.
    pub log_level: String,
    /// Where `/metrics` is served on its own (`127.0.0.1:9090`); the API's port then
    /// answers it to operator tokens only. Empty: on the API's port, without a token.
    #[serde(with = "values::optional_addr")]
    pub metrics_listen: Option<SocketAddr>,
    /// How long a count of the queue serves scrapes: the most database work scrapes cause.
    #[serde(with = "values::duration")]
    pub metrics_cache: Duration,
}

fn development() -> Environment {
    Environment::Development
}

impl Group for Process {
    fn validate(&self) -> Result<(), ConfigError> {
        require(
            self.metrics_listen
                .is_none_or(|m| m != self.listen || m.port() == 0),
            "metrics_listen",
            "must differ from HERALD_LISTEN (empty serves /metrics there)",
        )?;
        require(
            self.metrics_cache <= Duration::from_secs(300),
            "metrics_cache",
            "must be at most 5m: scrapes would show the queue that long ago",
        )
    }
}

/// Traces, exported over OTLP/HTTP.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Traces {
    /// The collector's base URL (`http://collector:4318`; Herald posts to `/v1/traces`
    /// under it). Empty: no traces.
    pub otlp_endpoint: String,
    /// Send each delivery attempt's W3C `traceparent` header to the receiver.
    pub send_traceparent: bool,
}

impl Traces {
    /// Where spans are posted, when traces are on.
    pub fn traces_url(&self) -> Option<String> {
        let base = self.otlp_endpoint.trim();
        (!base.is_empty()).then(|| format!("{}/v1/traces", base.trim_end_matches('/')))
    }

    pub fn enabled(&self) -> bool {
        self.traces_url().is_some()
    }
}

impl Group for Traces {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = self.traces_url() {
            let parsed = url::Url::parse(&url).map_err(|e| {
                ConfigError::new(
                    "otlp_endpoint",
                    format!("is not a URL ({e}), e.g. http://127.0.0.1:4318"),
                )
            })?;
            require(
                matches!(parsed.scheme(), "http" | "https") && parsed.query().is_none(),
                "otlp_endpoint",
                "must be an http(s) URL without a query, e.g. http://127.0.0.1:4318",
            )?;
        }
        require(
            !self.send_traceparent || self.enabled(),
            "send_traceparent",
            "needs HERALD_OTLP_ENDPOINT: without traces there is no span to name",
        )
    }
}

/// PostgreSQL.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Database {
    #[serde(rename = "database_url", with = "values::masked_url")]
    pub url: String,
    /// Connections of the API's pool (each dispatcher actor holds its own few).
    #[serde(rename = "database_pool_size")]
    pub pool_size: u32,
    /// How long to wait for a database connection before failing a request.
    #[serde(rename = "database_timeout", with = "values::duration")]
    pub timeout: Duration,
    /// Create the database and apply migrations at start-up.
    pub run_migrations: bool,
    /// Where Herald keeps files of its own: the embedded PostgreSQL's cluster (with
    /// `database_url = "embedded"`), development's encryption key.
    pub data_dir: PathBuf,
    /// The directory of PostgreSQL's server binaries for the embedded cluster (empty:
    /// found on `PATH` or where distributions put them).
    pub postgres_bin: String,
}

impl Database {
    /// The configured server binaries' directory, if one is.
    pub fn postgres_bin(&self) -> Option<PathBuf> {
        let dir = self.postgres_bin.trim();
        (!dir.is_empty()).then(|| PathBuf::from(dir))
    }

    /// `database_url = "embedded"`.
    pub fn is_embedded(&self) -> bool {
        self.url.trim() == crate::embedded_pg::EMBEDDED
    }
}

impl Group for Database {
    fn validate(&self) -> Result<(), ConfigError> {
        require(!self.url.trim().is_empty(), "database_url", "must be set")?;
        require(
            !self.data_dir.as_os_str().is_empty(),
            "data_dir",
            "must be set (e.g. .herald)",
        )?;
        require(
            self.pool_size > 0,
            "database_pool_size",
            "must be at least 1",
        )
    }
}

/// The HTTP API.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Api {
    /// Bearer tokens accepted by the API.
    #[serde(rename = "api_tokens", with = "values::masked_list")]
    pub tokens: Vec<String>,
    /// Largest request body the API accepts (a message's payload, mostly).
    pub max_payload_bytes: usize,
    /// How far ahead a message's `deliverAt` may be.
    #[serde(with = "values::duration")]
    pub max_deliver_ahead: Duration,
    /// How long a POST with an `idempotency-key` may run before a retry with the same key
    /// runs it again (its answer was never recorded: it failed, or the process died).
    #[serde(with = "values::duration")]
    pub idempotency_lock: Duration,
    /// How long an `idempotency-key` is remembered.
    #[serde(with = "values::duration")]
    pub idempotency_retention: Duration,
    /// Longest a small group-commit batch waits for more when requests come fast (0s: never;
    /// at low rates nothing waits whatever this says).
    #[serde(with = "values::duration")]
    pub batch_linger: Duration,
}

impl Group for Api {
    fn validate(&self) -> Result<(), ConfigError> {
        require(
            self.max_payload_bytes > 0,
            "max_payload_bytes",
            "must be at least 1",
        )?;
        if let Some(short) = self.tokens.iter().find(|t| t.len() < 16) {
            return Err(ConfigError::new(
                "api_tokens",
                format!(
                    "a token of {} characters is too short: use 16 or more",
                    short.len()
                ),
            ));
        }
        require(
            self.idempotency_retention >= Duration::from_secs(60),
            "idempotency_retention",
            "must be at least 1m: clients retry with the same key within minutes",
        )?;
        require(
            self.idempotency_lock >= Duration::from_secs(1)
                && self.idempotency_lock <= self.idempotency_retention,
            "idempotency_lock",
            "must be at least 1s and at most idempotency_retention",
        )?;
        require(
            self.batch_linger <= Duration::from_millis(100),
            "batch_linger",
            "must be at most 100ms (it is added to a request's time)",
        )?;
        require(
            !self.max_deliver_ahead.is_zero(),
            "max_deliver_ahead",
            "must be greater than 0",
        )
    }
}

/// Where deliveries may go.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Destinations {
    /// Non-public ranges deliveries may go to anyway (`127.0.0.0/8,10.1.0.0/16`).
    #[serde(with = "values::cidr_list")]
    pub allowed_cidrs: Vec<ipnet::IpNet>,
    /// When set, the only hosts endpoints may point at (`hooks.example.com,*.example.org`).
    #[serde(rename = "destination_allowlist", with = "values::comma_list")]
    pub allowlist: Vec<String>,
    /// Refuse plain-http endpoints.
    pub require_https: bool,
}

impl Group for Destinations {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Who may sign in, and for how long.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Access {
    /// Failed authentications (API tokens, dashboard sign-ins, portal links) a client
    /// address may make in a minute before it is locked out for a minute.
    pub auth_failure_limit: u32,
    /// How long a portal token (and its link) lasts when app-portal-access gives no `expiry`.
    #[serde(with = "values::duration")]
    pub portal_expiry: Duration,
    /// How long a dashboard session lasts (never longer than its token).
    #[serde(with = "values::duration")]
    pub session_ttl: Duration,
    /// Herald's address as browsers reach it (`https://hooks.example.com`), for portal links
    /// and `Secure` cookies. Empty: taken from each request.
    #[serde(with = "values::optional_url")]
    pub public_url: Option<url::Url>,
}

impl Group for Access {
    fn validate(&self) -> Result<(), ConfigError> {
        require(
            self.auth_failure_limit > 0,
            "auth_failure_limit",
            "must be at least 1",
        )?;
        require(
            self.portal_expiry >= Duration::from_secs(3600)
                && self.portal_expiry <= Duration::from_secs(7 * 24 * 3600),
            "portal_expiry",
            "must be between 1h and 7days (what app-portal-access accepts as expiry)",
        )?;
        require(
            self.session_ttl >= Duration::from_secs(60),
            "session_ttl",
            "must be at least 1m",
        )?;
        require(
            self.public_url
                .as_ref()
                .is_none_or(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()),
            "public_url",
            "must be an http or https URL with a host, like https://hooks.example.com",
        )
    }
}

/// Inbound webhooks (sources).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Ingest {
    /// Largest request a source accepts (413 above).
    pub ingest_max_body_bytes: usize,
    /// A provider's event id seen within this long is a duplicate: answered 2xx, recorded,
    /// not forwarded again.
    #[serde(with = "values::duration")]
    pub ingest_dedupe_window: Duration,
    /// How far a signed timestamp may be from now (Stripe, Slack, Svix, generic-hmac), unless
    /// a source sets its own `toleranceSeconds`.
    #[serde(with = "values::duration")]
    pub ingest_tolerance: Duration,
}

impl Group for Ingest {
    fn validate(&self) -> Result<(), ConfigError> {
        require(
            self.ingest_max_body_bytes >= 1024,
            "ingest_max_body_bytes",
            "must be at least 1024",
        )?;
        require(
            !self.ingest_dedupe_window.is_zero(),
            "ingest_dedupe_window",
            "must be greater than 0",
        )?;
        require(
            self.ingest_tolerance >= Duration::from_secs(1),
            "ingest_tolerance",
            "must be at least 1s",
        )
    }
}

/// Secrets at rest: the key they are sealed with (`crate::keyring`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Encryption {
    /// Base64 of 32 random bytes (`herald keys generate`). Required in production; empty in
    /// development: a key generated into `data_dir`.
    #[serde(rename = "encryption_key", with = "values::masked")]
    pub key: String,
    /// Other keys Herald can read with (never seals with): the one being rotated out, or the
    /// next one before it becomes current.
    #[serde(rename = "encryption_old_keys", with = "values::masked_list")]
    pub old_keys: Vec<String>,
}

impl Encryption {
    /// The configured key, if one is.
    pub fn key(&self) -> Option<&str> {
        let key = self.key.trim();
        (!key.is_empty()).then_some(key)
    }
}

impl Group for Encryption {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(key) = self.key() {
            crate::keyring::parse_key(key).map_err(|e| ConfigError::new("encryption_key", e))?;
        }
        for key in &self.old_keys {
            crate::keyring::parse_key(key)
                .map_err(|e| ConfigError::new("encryption_old_keys", format!("a key {e}")))?;
        }
        Ok(())
    }
}
