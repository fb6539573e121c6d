//! An embedded PostgreSQL for development and first runs (issue 16).
//!
//! `HERALD_DATABASE_URL=embedded`, or, in development, the default URL when nothing answers
//! at its address, makes Herald start a private PostgreSQL of its own ([`Cluster`]) from the
//! server binaries installed on the machine, with its data under `HERALD_DATA_DIR`, and stop
//! it when Herald stops. Production refuses it (the settings' validation).
//!
//! Written by hand on the model of the fault tests' cluster rather than with a crate:
//! `postgresql_embedded` downloads its binaries (this must work offline, with the
//! distribution's), does not run the server as another user when Herald runs as root, and
//! would still need the lock that keeps two Heralds off one data directory.

pub mod binaries;
mod cluster;
mod files;
mod server;

use std::time::Duration;

pub use cluster::{Cluster, ClusterError};

use crate::config::{Environment, Settings};

/// The value of `HERALD_DATABASE_URL` that asks for an embedded PostgreSQL.
pub const EMBEDDED: &str = "embedded";

/// `config/default.toml`'s `database_url` (a unit test holds them equal): the URL a
/// newcomer did not choose.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/herald";

/// Why the embedded cluster is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `HERALD_DATABASE_URL=embedded`.
    Asked,
    /// Development, the default URL, and nothing listening there.
    NothingAtTheDefault,
}

/// Whether these settings call for the embedded cluster.
pub fn wanted(settings: &Settings) -> Option<Reason> {
    wanted_if(settings, answers)
}

/// The same, with `answers` telling whether something listens at an address.
fn wanted_if(settings: &Settings, answers: impl Fn(&str) -> bool) -> Option<Reason> {
    if settings.database.is_embedded() {
        return Some(Reason::Asked);
    }
    let url = settings.database.url.trim();
    let default_in_development =
        settings.process.environment == Environment::Development && url == DEFAULT_URL;
    (default_in_development && !answers(DEFAULT_ADDRESS)).then_some(Reason::NothingAtTheDefault)
}

/// Where [`DEFAULT_URL`] points.
const DEFAULT_ADDRESS: &str = "127.0.0.1:5432";

fn answers(addr: &str) -> bool {
    addr.parse()
        .ok()
        .and_then(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(500)).ok())
        .is_some()
}

/// Starts the cluster the settings call for, if any, and points `settings` at it. The
/// returned cluster stops its server when dropped. `join`: a cluster another Herald runs
/// in the same directory is used instead of refused (for commands beside the server:
/// `herald token`, `herald migrate`).
pub fn start_if_wanted(
    settings: &mut Settings,
    join: bool,
) -> Result<Option<Cluster>, ClusterError> {
    let Some(reason) = wanted(settings) else {
        return Ok(None);
    };
    let bin = settings.database.postgres_bin();
    let cluster = match Cluster::start(&settings.database.data_dir, bin.as_deref()) {
        Ok(cluster) => cluster,
        Err(ClusterError::InUse {
            dir,
            port: Some(port),
            ..
        }) if join => {
            settings.database.url = Cluster::url_of_running(&dir, port)?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    settings.database.url = cluster.url();
    settings.database.run_migrations = true;
    let why = match reason {
        Reason::Asked => "HERALD_DATABASE_URL=embedded",
        Reason::NothingAtTheDefault => "nothing answers at the default 127.0.0.1:5432",
    };
    tracing::warn!(
        data = %cluster.dir().display(),
        port = cluster.port(),
        "development database: an embedded PostgreSQL with its data in {} ({why}); for development only, set HERALD_DATABASE_URL for production",
        cluster.dir().display()
    );
    Ok(Some(cluster))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let mut vars = vec![(
            "HERALD_CONFIG_DIR".to_string(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/config").to_string(),
        )];
        vars.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::load_with(vars).unwrap()
    }

    #[test]
    fn embedded_when_asked_or_when_nothing_answers_at_the_default_in_development() {
        let nobody = |_: &str| false;
        let somebody = |_: &str| true;
        let default = settings(&[]);
        assert_eq!(
            wanted_if(&default, nobody),
            Some(Reason::NothingAtTheDefault)
        );
        assert_eq!(
            wanted_if(&default, somebody),
            None,
            "a server answers: it is used"
        );
        let asked = settings(&[("HERALD_DATABASE_URL", "embedded")]);
        assert_eq!(wanted_if(&asked, somebody), Some(Reason::Asked));
        let chosen = settings(&[("HERALD_DATABASE_URL", "postgres://db.internal/herald")]);
        assert_eq!(
            wanted_if(&chosen, nobody),
            None,
            "a URL of one's own is never replaced"
        );
        let key = crate::keyring::generate_key();
        let production = settings(&[
            ("HERALD_ENVIRONMENT", "production"),
            ("HERALD_API_TOKENS", "a-long-enough-token-value"),
            ("HERALD_ENCRYPTION_KEY", key.as_str()),
        ]);
        assert_eq!(
            wanted_if(&production, nobody),
            None,
            "production never falls back"
        );
    }

    #[test]
    fn the_default_url_is_the_one_in_default_toml() {
        let toml =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))
                .unwrap();
        assert!(
            toml.contains(&format!("database_url = \"{DEFAULT_URL}\" ")),
            "config/default.toml's database_url changed: change DEFAULT_URL with it"
        );
    }
}
