//! Settings: layered defaults, checked once at start-up.
//!
//! Layers, later wins: `config/default.toml`, `config/{HERALD_ENVIRONMENT}.toml` (optional),
//! a `.env` file (loaded into the environment by `main`), then `HERALD_*` environment
//! variables. Every key is flat and maps to one variable: `request_timeout` is
//! `HERALD_REQUEST_TIMEOUT`. The settings are declared in [`groups`], by concern; an unknown
//! `HERALD_*` variable or a bad value stops the process with a message that names the
//! setting, because a typo in production config should never silently fall back to a
//! default.

pub mod groups;
pub mod values;

use std::{collections::BTreeSet, fmt, path::PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use groups::Group;
pub use values::{mask_url, parse_duration};

/// Settings of earlier versions that have another name now, with what to use instead.
const RENAMED: &[(&str, &str)] = &[(
    "retention_days",
    "HERALD_RETENTION, a duration (30 days: HERALD_RETENTION=30days)",
)];

/// A configuration problem, naming the setting the operator has to fix.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: &str, problem: impl Into<String>) -> Self {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Production,
}

/// Which halves of Herald this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Everything Herald can be told, by concern (each group in [`groups`]).
#[derive(Clone, Serialize)]
pub struct Settings {
    #[serde(flatten)]
    pub process: groups::Process,
    #[serde(flatten)]
    pub traces: groups::Traces,
    #[serde(flatten)]
    pub database: groups::Database,
    #[serde(flatten)]
    pub api: groups::Api,
    #[serde(flatten)]
    pub access: groups::Access,
    #[serde(flatten)]
    pub ingest: groups::Ingest,
    #[serde(flatten)]
    pub destinations: groups::Destinations,
    #[serde(flatten)]
    pub sending: groups::Sending,
    #[serde(flatten)]
    pub retries: groups::Retries,
    #[serde(flatten)]
    pub breaker: groups::Breaker,
    #[serde(flatten)]
    pub pool: groups::Pool,
    #[serde(flatten)]
    pub retention: groups::Retention,
    #[serde(flatten)]
    pub supervision: groups::Supervision,
    #[serde(flatten)]
    pub operational: groups::Operational,
    #[serde(flatten)]
    pub faults: groups::Faults,
    #[serde(flatten)]
    pub encryption: groups::Encryption,
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
        let raw = config::Config::builder()
            .add_source(config::File::from(PathBuf::from(&dir).join("default.toml")).required(true))
            .add_source(
                config::File::from(PathBuf::from(&dir).join(format!("{environment}.toml")))
                    .required(false),
            )
            .add_source(env_source)
            .build()
            .map_err(from_config_error)?;
        let settings = Settings {
            process: group(&raw)?,
            traces: group(&raw)?,
            database: group(&raw)?,
            api: group(&raw)?,
            access: group(&raw)?,
            ingest: group(&raw)?,
            destinations: group(&raw)?,
            sending: group(&raw)?,
            retries: group(&raw)?,
            breaker: group(&raw)?,
            pool: group(&raw)?,
            retention: group(&raw)?,
            supervision: group(&raw)?,
            operational: group(&raw)?,
            faults: group(&raw)?,
            encryption: group(&raw)?,
        };
        settings.refuse_unknown(&raw)?;
        settings.validate()?;
        Ok(settings)
    }

    /// A name that no group declares is a typo, not a setting.
    fn refuse_unknown(&self, raw: &config::Config) -> Result<(), ConfigError> {
        use config::Source;
        let known: BTreeSet<String> = self.values().into_iter().map(|(k, _)| k).collect();
        let given = raw
            .collect()
            .map_err(from_config_error)?
            .into_keys()
            .collect::<BTreeSet<_>>();
        match given.difference(&known).next() {
            Some(unknown) => Err(ConfigError::new(
                unknown,
                match RENAMED.iter().find(|(old, _)| old == unknown) {
                    Some((_, now)) => format!("was renamed: use {now}"),
                    None => "is not a Herald setting (check the spelling; see README)".into(),
                },
            )),
            None => Ok(()),
        }
    }

    /// The relations between groups, then each group's checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // A live sender must never lose its lease: the lease has to cover the whole request
        // plus connection set-up, with margin for the outcome to reach the database.
        let needed = self.sending.request_timeout
            + self.sending.connect_timeout
            + std::time::Duration::from_secs(5);
        if self.pool.lease_duration < needed {
            return Err(ConfigError::new(
                "lease_duration",
                format!(
                    "{} is too short: it must be at least request_timeout + connect_timeout + 5s = {}",
                    humantime::format_duration(self.pool.lease_duration),
                    humantime::format_duration(needed)
                ),
            ));
        }
        self.process.validate()?;
        self.traces.validate()?;
        self.database.validate()?;
        self.api.validate()?;
        self.access.validate()?;
        self.ingest.validate()?;
        self.destinations.validate()?;
        self.sending.validate()?;
        self.retries.validate()?;
        self.breaker.validate()?;
        self.pool.validate()?;
        self.retention.validate()?;
        self.supervision.validate()?;
        self.operational.validate()?;
        self.faults.validate()?;
        self.encryption.validate()?;
        if self.process.environment == Environment::Production {
            // Injected faults (panics, a sender that keeps stopping itself) have no place in
            // production.
            for (key, value) in [
                ("fault_panic_one_in", self.faults.panic_one_in),
                ("fault_sender_stop_every", self.faults.sender_stop_every),
            ] {
                if value > 0 {
                    return Err(ConfigError::new(
                        key,
                        "is fault injection for tests and must be 0 in production",
                    ));
                }
            }
            if self.database.is_embedded() {
                return Err(ConfigError::new(
                    "database_url",
                    "is \"embedded\", a development database Herald starts itself; production \
                     needs a PostgreSQL of its own (postgres://user:password@host:5432/herald)",
                ));
            }
            if self.process.role.runs_api() && self.api.tokens.is_empty() {
                return Err(ConfigError::new(
                    "api_tokens",
                    "must hold at least one token in production: the API would be open to anyone",
                ));
            }
            if self.encryption.key().is_none() {
                return Err(ConfigError::new(
                    "encryption_key",
                    "must be set in production: signing secrets and header values are \
                     encrypted at rest with it (make one with `herald keys generate`)",
                ));
            }
        }
        Ok(())
    }

    /// Every setting as `(key, value)`, as `herald config` shows it (secrets masked), in
    /// key order.
    pub fn values(&self) -> Vec<(String, String)> {
        let serde_json::Value::Object(map) =
            serde_json::to_value(self).expect("settings serialize")
        else {
            unreachable!("a struct serializes to an object")
        };
        let mut values: Vec<(String, String)> = map
            .into_iter()
            .map(|(k, v)| {
                let shown = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, shown)
            })
            .collect();
        values.sort();
        values
    }

    /// The effective configuration as `HERALD_*=value` lines, secrets masked.
    pub fn render(&self) -> String {
        self.values()
            .into_iter()
            .map(|(k, v)| format!("{}={v}\n", env_name(&k)))
            .collect()
    }
}

/// One group, read from the layers (the config crate turns the environment's strings into
/// numbers and booleans as each field asks).
fn group<G: DeserializeOwned>(raw: &config::Config) -> Result<G, ConfigError> {
    raw.clone().try_deserialize().map_err(from_config_error)
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

/// Turns the config crate's error into one that names the environment variable.
fn from_config_error(err: config::ConfigError) -> ConfigError {
    let text = err.to_string();
    // The crate phrases errors as "... for key `retry_schedule` ..." or "missing field `x`".
    let key = text
        .split('`')
        .nth(1)
        .map(|k| k.trim_start_matches("herald_").to_string());
    match key {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        assert_eq!(s.sending.request_timeout, Duration::from_secs(15));
        assert_eq!(s.retries.schedule.len(), 7);
        assert_eq!(s.retries.schedule[1], Duration::from_secs(300));
    }

    #[test]
    fn environment_overrides_files() {
        let s = load(&[("HERALD_SENDERS", "7"), ("HERALD_RETRY_SCHEDULE", "1s, 2s")]).unwrap();
        assert_eq!(s.pool.senders, 7);
        assert_eq!(
            s.retries.schedule,
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
        assert_eq!(s.destinations.allowed_cidrs.len(), 2);
        assert_eq!(s.destinations.allowlist, vec!["*.example.com"]);
        let err = load(&[("HERALD_ALLOWED_CIDRS", "10.0.0.0/33")]).unwrap_err();
        assert_eq!(err.setting, "HERALD_ALLOWED_CIDRS", "{err}");
    }

    #[test]
    fn production_requires_a_token() {
        let err = load(&[("HERALD_ENVIRONMENT", "production")]).unwrap_err();
        assert_eq!(err.setting, "HERALD_API_TOKENS");
        let err = load(&[
            ("HERALD_ENVIRONMENT", "production"),
            ("HERALD_API_TOKENS", "a-long-enough-token-value"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "HERALD_ENCRYPTION_KEY", "{err}");
        let key = crate::keyring::generate_key();
        let ok = load(&[
            ("HERALD_ENVIRONMENT", "production"),
            ("HERALD_API_TOKENS", "a-long-enough-token-value"),
            ("HERALD_ENCRYPTION_KEY", key.as_str()),
        ]);
        assert!(ok.is_ok());
        let err = load(&[
            ("HERALD_ENVIRONMENT", "production"),
            ("HERALD_API_TOKENS", "a-long-enough-token-value"),
            ("HERALD_ENCRYPTION_KEY", key.as_str()),
            ("HERALD_DATABASE_URL", "embedded"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "HERALD_DATABASE_URL", "{err}");
        let err = load(&[("HERALD_ENCRYPTION_KEY", "c2hvcnQ=")]).unwrap_err();
        assert_eq!(err.setting, "HERALD_ENCRYPTION_KEY", "{err}");
        assert!(err.problem.contains("32"), "{err}");
    }

    #[test]
    fn injected_faults_are_refused_in_production() {
        assert_eq!(
            load(&[]).unwrap().faults.sender_stop_every,
            0,
            "off by default"
        );
        let on = load(&[("HERALD_FAULT_SENDER_STOP_EVERY", "50")]).unwrap();
        assert_eq!(on.faults.sender_stop_every, 50);
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
        s.database.url = "postgres://u:hunter2@db/herald".into();
        let text = s.render();
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("a-long-enough-token-value"));
        assert!(text.contains("HERALD_SENDERS="));
    }
}
