//! Settings: layered defaults, checked once at start-up.
//!
//! Layers, later wins: `config/default.toml`, `config/{HERALD_ENVIRONMENT}.toml` (optional),
//! a `.env` file (loaded into the environment by `main`), then `HERALD_*` environment
//! variables. Every key is flat and maps to one variable: `request_timeout` is
//! `HERALD_REQUEST_TIMEOUT`. An unknown `HERALD_*` variable or a bad value stops the process
//! with a message that names the setting, because a typo in production config should never
//! silently fall back to a default.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer};

/// A configuration problem, naming the setting the operator has to fix.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    fn new(key: &str, problem: impl Into<String>) -> Self {
        ConfigError {
            setting: env_name(key),
            problem: problem.into(),
        }
    }
}

/// `request_timeout` → `HERALD_REQUEST_TIMEOUT`.
pub fn env_name(key: &str) -> String {
    format!("HERALD_{}", key.to_ascii_uppercase())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Production,
}

/// Which halves of Herald this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The HTTP API and the dispatcher (the default).
    All,
    /// Only the HTTP API.
    Api,
    /// Only the dispatcher.
    Worker,
}

impl Role {
    pub fn runs_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }
    pub fn runs_worker(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Everything Herald can be told. Field docs are the reference for the README table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Used only to pick `config/{environment}.toml`.
    #[serde(default = "default_environment")]
    pub environment: Environment,
    /// Where the layered files live.
    #[serde(default)]
    pub config_dir: Option<PathBuf>,
    pub database_url: String,
    /// Connections of the API's pool (each dispatcher actor holds its own few).
    pub database_pool_size: u32,
    /// How long to wait for a database connection before failing a request.
    #[serde(deserialize_with = "duration")]
    pub database_timeout: Duration,
    pub run_migrations: bool,
    pub role: Role,
    pub listen: SocketAddr,
    /// Bearer tokens accepted by the API.
    #[serde(deserialize_with = "comma_list")]
    pub api_tokens: Vec<String>,
    /// Largest request body the API accepts (a message's payload, mostly).
    pub max_payload_bytes: usize,
    /// How far ahead a message's `deliverAt` may be.
    #[serde(deserialize_with = "duration")]
    pub max_deliver_ahead: Duration,
    /// How long a POST with an `idempotency-key` may run before a retry with the same key
    /// runs it again (its answer was never recorded: it failed, or the process died).
    #[serde(deserialize_with = "duration")]
    pub idempotency_lock: Duration,
    pub log_format: LogFormat,
    /// A tracing filter (`info`, `herald=debug,sqlx=warn`); `RUST_LOG` wins when set.
    pub log_level: String,

    /// Number of sender actors, each on its own thread with its own HTTP client.
    pub senders: usize,
    /// Concurrent HTTP requests one sender may have open.
    pub sender_concurrency: usize,
    /// Concurrent requests to one endpoint; the rest wait, so a hanging receiver cannot
    /// take all of a sender's capacity.
    pub endpoint_concurrency: usize,
    /// Messages per second to an endpoint that sets no `throttleRate` (0: unlimited).
    pub default_rate_limit: u32,
    /// Longest a claimed delivery waits inside a sender before it goes back to the queue.
    #[serde(deserialize_with = "duration")]
    pub max_hold: Duration,
    /// The breaker opens after this many failures in a row...
    pub breaker_failures: u32,
    /// ...or when this fraction of the last `breaker_window` attempts failed.
    pub breaker_failure_ratio: f64,
    pub breaker_window: usize,
    /// How long an open breaker waits before one probe; doubled after each failed probe.
    #[serde(deserialize_with = "duration")]
    pub breaker_cooldown: Duration,
    #[serde(deserialize_with = "duration")]
    pub breaker_max_cooldown: Duration,
    /// Deliveries leased per claim query.
    pub claim_batch: usize,
    /// Deliveries one instance holds leased but not yet settled; claiming pauses above it.
    pub max_in_flight: usize,
    /// Of those, how many one endpoint may hold (its deliveries are skipped above it).
    pub max_in_flight_per_endpoint: usize,
    /// Fallback wake-up of the claimer when no NOTIFY arrives.
    #[serde(deserialize_with = "duration")]
    pub poll_interval: Duration,
    /// How long a claimed delivery belongs to this instance. Must outlive the request timeout.
    #[serde(deserialize_with = "duration")]
    pub lease_duration: Duration,
    #[serde(deserialize_with = "duration")]
    pub reap_interval: Duration,
    /// An endpoint failing without a single success for this long is disabled (0s: never).
    #[serde(deserialize_with = "duration")]
    pub disable_after: Duration,
    /// Outcomes written per database round trip.
    pub outcome_batch: usize,
    /// Longest an outcome waits for its batch to fill before it is written.
    #[serde(deserialize_with = "duration")]
    pub outcome_flush_interval: Duration,

    /// Non-public ranges deliveries may go to anyway (`127.0.0.0/8,10.1.0.0/16`).
    #[serde(deserialize_with = "cidr_list")]
    pub allowed_cidrs: Vec<ipnet::IpNet>,
    /// When set, the only hosts endpoints may point at (`hooks.example.com,*.example.org`).
    #[serde(deserialize_with = "comma_list")]
    pub destination_allowlist: Vec<String>,
    /// Refuse plain-http endpoints.
    pub require_https: bool,

    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Bytes of a response body that are read and kept in the attempt log.
    pub response_body_limit: usize,
    /// Delay before each retry; its length is the number of retries.
    #[serde(deserialize_with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// Each delay is moved at random by up to this fraction, both ways.
    pub retry_jitter: f64,
    /// Bounds applied to a receiver's `Retry-After`.
    #[serde(deserialize_with = "duration")]
    pub retry_after_min: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_after_max: Duration,

    /// Messages, attempts and finished deliveries older than this many days are deleted.
    pub retention_days: u32,
    /// How often the retention actor looks for expired rows.
    #[serde(deserialize_with = "duration")]
    pub retention_interval: Duration,
    /// Rows of each kind deleted per retention transaction.
    pub retention_batch: u32,
    /// How long an `idempotency-key` is remembered.
    #[serde(deserialize_with = "duration")]
    pub idempotency_retention: Duration,

    #[serde(deserialize_with = "duration")]
    pub health_log_interval: Duration,
    #[serde(deserialize_with = "duration")]
    pub heartbeat_interval: Duration,
    /// An actor that has not answered a heartbeat, or been stuck on one piece of work, for
    /// this long is replaced.
    #[serde(deserialize_with = "duration")]
    pub stall_timeout: Duration,
    /// How long shutdown waits for in-flight requests before releasing their leases.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Fault injection for resilience tests: a sender panics on one delivery in N (0 = never).
    pub fault_panic_one_in: u64,
    /// Fault injection for resilience tests: sender-0 stops itself (an actor stop, which its
    /// supervisor answers with a restart) after every N deliveries (0 = never). Refused in
    /// production.
    pub fault_sender_stop_every: u64,
}

fn default_environment() -> Environment {
    Environment::Development
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl Settings {
    /// Loads the layers described in the module docs, then validates.
    pub fn load() -> Result<Settings, ConfigError> {
        let env_source = config::Environment::with_prefix("HERALD")
            .prefix_separator("_")
            .try_parsing(false);
        Self::load_from(env_source)
    }

    /// Loads the files with `overrides` (`HERALD_*` names) in place of the process
    /// environment: what tests and tools use to configure an instance.
    pub fn load_with<K: Into<String>, V: Into<String>>(
        overrides: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Settings, ConfigError> {
        let map: std::collections::HashMap<String, String> = overrides
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let env = config::Environment::with_prefix("HERALD")
            .prefix_separator("_")
            .source(Some(map));
        Self::load_from(env)
    }

    fn load_from(env_source: config::Environment) -> Result<Settings, ConfigError> {
        // These two pick the files, so they are read before the layers are built. An override
        // map (tests) names them like the environment would.
        let lookup =
            |name: &str| env_source_value(&env_source, name).or_else(|| std::env::var(name).ok());
        let dir = lookup("HERALD_CONFIG_DIR").unwrap_or_else(|| "config".into());
        let environment = lookup("HERALD_ENVIRONMENT").unwrap_or_else(|| "development".into());
        let builder = config::Config::builder()
            .add_source(config::File::from(PathBuf::from(&dir).join("default.toml")).required(true))
            .add_source(
                config::File::from(PathBuf::from(&dir).join(format!("{environment}.toml")))
                    .required(false),
            )
            .add_source(env_source);
        let raw = builder.build().map_err(from_config_error)?;
        let settings: Settings = raw.try_deserialize().map_err(from_config_error)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the relations between settings that no single value can express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("senders", self.senders),
            ("sender_concurrency", self.sender_concurrency),
            ("endpoint_concurrency", self.endpoint_concurrency),
            ("breaker_failures", self.breaker_failures as usize),
            ("breaker_window", self.breaker_window),
            ("claim_batch", self.claim_batch),
            ("max_in_flight", self.max_in_flight),
            (
                "max_in_flight_per_endpoint",
                self.max_in_flight_per_endpoint,
            ),
            ("outcome_batch", self.outcome_batch),
            ("database_pool_size", self.database_pool_size as usize),
            ("max_payload_bytes", self.max_payload_bytes),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if self.senders > 256 {
            return Err(ConfigError::new("senders", "must be at most 256"));
        }
        // A live sender must never lose its lease: the lease has to cover the whole request
        // plus connection set-up, with margin for the outcome to reach the database.
        let needed = self.request_timeout + self.connect_timeout + Duration::from_secs(5);
        if self.lease_duration < needed {
            return Err(ConfigError::new(
                "lease_duration",
                format!(
                    "{} is too short: it must be at least request_timeout + connect_timeout + 5s = {}",
                    humantime::format_duration(self.lease_duration),
                    humantime::format_duration(needed)
                ),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::new(
                "request_timeout",
                "must be greater than 0",
            ));
        }
        if self.poll_interval.is_zero() || self.reap_interval.is_zero() {
            let key = if self.poll_interval.is_zero() {
                "poll_interval"
            } else {
                "reap_interval"
            };
            return Err(ConfigError::new(key, "must be greater than 0"));
        }
        if self.retention_days == 0 {
            return Err(ConfigError::new(
                "retention_days",
                "must be at least 1 (rows are kept this many days)",
            ));
        }
        if self.retention_interval.is_zero() || self.retention_batch == 0 {
            let key = if self.retention_batch == 0 {
                "retention_batch"
            } else {
                "retention_interval"
            };
            return Err(ConfigError::new(key, "must be greater than 0"));
        }
        if self.idempotency_lock < Duration::from_secs(1)
            || self.idempotency_lock > self.idempotency_retention
        {
            return Err(ConfigError::new(
                "idempotency_lock",
                "must be at least 1s and at most idempotency_retention",
            ));
        }
        if self.max_deliver_ahead.is_zero() {
            return Err(ConfigError::new(
                "max_deliver_ahead",
                "must be greater than 0",
            ));
        }
        if self.idempotency_retention < Duration::from_secs(60) {
            return Err(ConfigError::new(
                "idempotency_retention",
                "must be at least 1m: clients retry with the same key within minutes",
            ));
        }
        if self.heartbeat_interval.is_zero() || self.health_log_interval.is_zero() {
            let key = if self.heartbeat_interval.is_zero() {
                "heartbeat_interval"
            } else {
                "health_log_interval"
            };
            return Err(ConfigError::new(key, "must be greater than 0"));
        }
        // Health lines report what the last heartbeat said: more often would repeat it.
        if self.health_log_interval < self.heartbeat_interval {
            return Err(ConfigError::new(
                "health_log_interval",
                "must not be shorter than heartbeat_interval (each line reports the latest heartbeat)",
            ));
        }
        if self.stall_timeout <= self.heartbeat_interval {
            return Err(ConfigError::new(
                "stall_timeout",
                "must be longer than heartbeat_interval",
            ));
        }
        if !(self.breaker_failure_ratio > 0.0 && self.breaker_failure_ratio <= 1.0) {
            return Err(ConfigError::new(
                "breaker_failure_ratio",
                "must be in (0, 1], e.g. 0.5",
            ));
        }
        if self.breaker_cooldown.is_zero() || self.breaker_max_cooldown < self.breaker_cooldown {
            return Err(ConfigError::new(
                "breaker_max_cooldown",
                "must be at least breaker_cooldown, which must be greater than 0",
            ));
        }
        if self.max_hold.is_zero() || self.max_hold * 2 > self.lease_duration {
            return Err(ConfigError::new(
                "max_hold",
                "must be greater than 0 and at most half of lease_duration",
            ));
        }
        if !(0.0..1.0).contains(&self.retry_jitter) {
            return Err(ConfigError::new(
                "retry_jitter",
                "must be in [0, 1), e.g. 0.2",
            ));
        }
        if self.retry_after_min > self.retry_after_max {
            return Err(ConfigError::new(
                "retry_after_min",
                "must not be greater than retry_after_max",
            ));
        }
        // Injected faults (panics, a sender that keeps stopping itself) have no place in
        // production.
        if self.environment == Environment::Production {
            for (key, value) in [
                ("fault_panic_one_in", self.fault_panic_one_in),
                ("fault_sender_stop_every", self.fault_sender_stop_every),
            ] {
                if value > 0 {
                    return Err(ConfigError::new(
                        key,
                        "is fault injection for tests and must be 0 in production",
                    ));
                }
            }
        }
        if self.database_url.trim().is_empty() {
            return Err(ConfigError::new("database_url", "must be set"));
        }
        if self.environment == Environment::Production
            && self.role.runs_api()
            && self.api_tokens.is_empty()
        {
            return Err(ConfigError::new(
                "api_tokens",
                "must hold at least one token in production: the API would be open to anyone",
            ));
        }
        if let Some(short) = self.api_tokens.iter().find(|t| t.len() < 16) {
            return Err(ConfigError::new(
                "api_tokens",
                format!(
                    "a token of {} characters is too short: use 16 or more",
                    short.len()
                ),
            ));
        }
        Ok(())
    }

    /// The effective configuration as `HERALD_*=value` lines, secrets masked.
    pub fn render(&self) -> String {
        let d = |d: &Duration| humantime::format_duration(*d).to_string();
        let schedule: Vec<String> = self.retry_schedule.iter().map(d).collect();
        let lines: Vec<(&str, String)> = vec![
            (
                "environment",
                format!("{:?}", self.environment).to_lowercase(),
            ),
            ("database_url", mask_url(&self.database_url)),
            ("database_pool_size", self.database_pool_size.to_string()),
            ("database_timeout", d(&self.database_timeout)),
            ("run_migrations", self.run_migrations.to_string()),
            ("role", format!("{:?}", self.role).to_lowercase()),
            ("listen", self.listen.to_string()),
            ("api_tokens", format!("<{} masked>", self.api_tokens.len())),
            ("max_payload_bytes", self.max_payload_bytes.to_string()),
            ("max_deliver_ahead", d(&self.max_deliver_ahead)),
            ("idempotency_lock", d(&self.idempotency_lock)),
            (
                "log_format",
                format!("{:?}", self.log_format).to_lowercase(),
            ),
            ("log_level", self.log_level.clone()),
            ("senders", self.senders.to_string()),
            ("sender_concurrency", self.sender_concurrency.to_string()),
            (
                "endpoint_concurrency",
                self.endpoint_concurrency.to_string(),
            ),
            ("default_rate_limit", self.default_rate_limit.to_string()),
            ("max_hold", d(&self.max_hold)),
            ("breaker_failures", self.breaker_failures.to_string()),
            (
                "breaker_failure_ratio",
                self.breaker_failure_ratio.to_string(),
            ),
            ("breaker_window", self.breaker_window.to_string()),
            ("breaker_cooldown", d(&self.breaker_cooldown)),
            ("breaker_max_cooldown", d(&self.breaker_max_cooldown)),
            ("claim_batch", self.claim_batch.to_string()),
            ("max_in_flight", self.max_in_flight.to_string()),
            (
                "max_in_flight_per_endpoint",
                self.max_in_flight_per_endpoint.to_string(),
            ),
            ("poll_interval", d(&self.poll_interval)),
            ("lease_duration", d(&self.lease_duration)),
            ("reap_interval", d(&self.reap_interval)),
            ("disable_after", d(&self.disable_after)),
            ("outcome_batch", self.outcome_batch.to_string()),
            ("outcome_flush_interval", d(&self.outcome_flush_interval)),
            (
                "allowed_cidrs",
                self.allowed_cidrs
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "destination_allowlist",
                self.destination_allowlist.join(","),
            ),
            ("require_https", self.require_https.to_string()),
            ("request_timeout", d(&self.request_timeout)),
            ("connect_timeout", d(&self.connect_timeout)),
            ("response_body_limit", self.response_body_limit.to_string()),
            ("retry_schedule", schedule.join(",")),
            ("retry_jitter", self.retry_jitter.to_string()),
            ("retry_after_min", d(&self.retry_after_min)),
            ("retry_after_max", d(&self.retry_after_max)),
            ("retention_days", self.retention_days.to_string()),
            ("retention_interval", d(&self.retention_interval)),
            ("retention_batch", self.retention_batch.to_string()),
            ("idempotency_retention", d(&self.idempotency_retention)),
            ("health_log_interval", d(&self.health_log_interval)),
            ("heartbeat_interval", d(&self.heartbeat_interval)),
            ("stall_timeout", d(&self.stall_timeout)),
            ("shutdown_grace", d(&self.shutdown_grace)),
            ("fault_panic_one_in", self.fault_panic_one_in.to_string()),
            (
                "fault_sender_stop_every",
                self.fault_sender_stop_every.to_string(),
            ),
        ];
        lines
            .into_iter()
            .map(|(k, v)| format!("{}={}\n", env_name(k), v))
            .collect()
    }
}

fn env_source_value(source: &config::Environment, name: &str) -> Option<String> {
    use config::Source;
    let key = name.trim_start_matches("HERALD_").to_ascii_lowercase();
    source
        .collect()
        .ok()?
        .remove(&key)
        .and_then(|v| v.into_string().ok())
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable>".into(),
    }
}

/// Turns the config crate's error into one that names the environment variable.
fn from_config_error(err: config::ConfigError) -> ConfigError {
    let text = err.to_string();
    // The crate phrases errors as "... for key `retry_schedule` ..." or "unknown field `x`".
    let key = text
        .split('`')
        .nth(1)
        .map(|k| k.trim_start_matches("herald_").to_string());
    match key {
        Some(k) if text.contains("unknown field") => ConfigError {
            setting: env_name(&k),
            problem: "is not a Herald setting (check the spelling; see README)".into(),
        },
        Some(k) => ConfigError {
            setting: env_name(&k),
            problem: text,
        },
        None => ConfigError {
            setting: "configuration".into(),
            problem: text,
        },
    }
}

fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let raw = String::deserialize(de)?;
    parse_duration(&raw).map_err(serde::de::Error::custom)
}

fn duration_list<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<Duration>, D::Error> {
    let raw = String::deserialize(de)?;
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_duration)
        .collect::<Result<Vec<_>, _>>()
        .map_err(serde::de::Error::custom)
}

fn comma_list<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    let raw = String::deserialize(de)?;
    Ok(raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect())
}

fn cidr_list<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    comma_list(de)?
        .into_iter()
        .map(|c| {
            // A bare address is a range of one.
            c.parse::<ipnet::IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!("'{c}' is not a CIDR range like 10.0.0.0/8"))
                })
        })
        .collect()
}

/// `15s`, `500ms`, `5m`, `2h`, `1h 30m`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::Duration::from_str(raw.trim())
        .map(Into::into)
        .map_err(|e| format!("'{raw}' is not a duration like 500ms, 15s, 5m or 2h ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = (
            "HERALD_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        );
        Settings::load_with(vars.iter().copied().chain([dir]))
    }

    #[test]
    fn defaults_load_and_validate() {
        let s = load(&[]).expect("defaults are valid");
        assert_eq!(s.request_timeout, Duration::from_secs(15));
        assert_eq!(s.retry_schedule.len(), 7);
        assert_eq!(s.retry_schedule[1], Duration::from_secs(300));
    }

    #[test]
    fn environment_overrides_files() {
        let s = load(&[("HERALD_SENDERS", "7"), ("HERALD_RETRY_SCHEDULE", "1s, 2s")]).unwrap();
        assert_eq!(s.senders, 7);
        assert_eq!(
            s.retry_schedule,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = load(&[("HERALD_REQUEST_TIMEOUT", "fast")]).unwrap_err();
        assert_eq!(err.setting, "HERALD_REQUEST_TIMEOUT", "{err}");
        let err = load(&[("HERALD_SENDERS", "many")]).unwrap_err();
        assert_eq!(err.setting, "HERALD_SENDERS", "{err}");
        let err = load(&[("HERALD_SENDERZ", "4")]).unwrap_err();
        assert_eq!(err.setting, "HERALD_SENDERZ", "{err}");
        let err = load(&[("HERALD_LEASE_DURATION", "10s")]).unwrap_err();
        assert_eq!(err.setting, "HERALD_LEASE_DURATION", "{err}");
        let err = load(&[
            ("HERALD_HEALTH_LOG_INTERVAL", "1s"),
            ("HERALD_HEARTBEAT_INTERVAL", "2s"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "HERALD_HEALTH_LOG_INTERVAL", "{err}");
    }

    #[test]
    fn destination_settings_parse() {
        let s = load(&[
            ("HERALD_ALLOWED_CIDRS", "127.0.0.0/8, ::1"),
            ("HERALD_DESTINATION_ALLOWLIST", "*.example.com"),
        ])
        .unwrap();
        assert_eq!(s.allowed_cidrs.len(), 2);
        assert_eq!(s.destination_allowlist, vec!["*.example.com"]);
        let err = load(&[("HERALD_ALLOWED_CIDRS", "10.0.0.0/33")]).unwrap_err();
        assert_eq!(err.setting, "HERALD_ALLOWED_CIDRS", "{err}");
    }

    #[test]
    fn production_requires_a_token() {
        let err = load(&[("HERALD_ENVIRONMENT", "production")]).unwrap_err();
        assert_eq!(err.setting, "HERALD_API_TOKENS");
        let ok = load(&[
            ("HERALD_ENVIRONMENT", "production"),
            ("HERALD_API_TOKENS", "a-long-enough-token-value"),
        ]);
        assert!(ok.is_ok());
    }

    #[test]
    fn injected_faults_are_refused_in_production() {
        assert_eq!(
            load(&[]).unwrap().fault_sender_stop_every,
            0,
            "off by default"
        );
        let on = load(&[("HERALD_FAULT_SENDER_STOP_EVERY", "50")]).unwrap();
        assert_eq!(on.fault_sender_stop_every, 50);
        let err = load(&[
            ("HERALD_ENVIRONMENT", "production"),
            ("HERALD_API_TOKENS", "a-long-enough-token-value"),
            ("HERALD_FAULT_SENDER_STOP_EVERY", "50"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "HERALD_FAULT_SENDER_STOP_EVERY", "{err}");
        let err = load(&[
            ("HERALD_ENVIRONMENT", "production"),
            ("HERALD_API_TOKENS", "a-long-enough-token-value"),
            ("HERALD_FAULT_PANIC_ONE_IN", "10"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "HERALD_FAULT_PANIC_ONE_IN", "{err}");
    }

    #[test]
    fn render_masks_secrets() {
        let mut s = load(&[("HERALD_API_TOKENS", "a-long-enough-token-value")]).unwrap();
        s.database_url = "postgres://u:hunter2@db/herald".into();
        let text = s.render();
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("a-long-enough-token-value"));
        assert!(text.contains("HERALD_SENDERS="));
    }
}
