//! Every setting, in groups by concern. A setting is declared once, here: its field (its
//! `HERALD_*` name is `HERALD_` + the serde name in upper case), its doc, how it is read and
//! shown (`serde(with = ...)`), and its checks in its group's `validate`. Its default is in
//! `config/default.toml`. Nothing else lists settings: loading, the refusal of unknown
//! names and `herald config` are derived from these structs.
//!
//! The groups are split by what they configure: [`service`] (the process, the database, the
//! API and access to it, destinations) and [`engine`] (sending, retries, the breaker, the
//! actor pool, retention, supervision, operational webhooks, faults).

mod engine;
mod service;

pub use engine::*;
pub use service::*;

use super::ConfigError;

/// A check on one group; `Err` names the setting.
pub trait Group {
    fn validate(&self) -> Result<(), ConfigError>;
}

fn require(ok: bool, key: &str, problem: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(key, problem))
    }
}
