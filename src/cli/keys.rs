//! `herald keys`: the key that seals secrets at rest ([`crate::keyring`]).

use std::process::ExitCode;

use clap::Subcommand;

use crate::{
    config::Settings,
    keyring::{
        self,
        sweep::{self, Scope},
    },
    startup,
};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print a new key for HERALD_ENCRYPTION_KEY (base64 of 32 random bytes).
    Generate,
    /// Re-seal every stored secret that is not sealed with HERALD_ENCRYPTION_KEY (those of
    /// HERALD_ENCRYPTION_OLD_KEYS, and plaintext), in batches, while Herald runs.
    Rotate {
        /// Rows per transaction.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
}

/// `herald keys generate`: needs no configuration (production refuses to start without a
/// key, so this must work before there is one).
pub fn generate() -> ExitCode {
    println!("{}", keyring::generate_key());
    ExitCode::SUCCESS
}

/// `herald keys rotate`.
pub fn rotate(settings: Settings, batch: i64) -> ExitCode {
    if batch < 1 {
        eprintln!("herald keys rotate: --batch must be at least 1");
        return ExitCode::from(2);
    }
    super::on_database(settings, true, |settings, _| async move {
        reseal(&settings, batch).await
    })
    .map_or_else(|code| code, super::report)
}

async fn reseal(settings: &Settings, batch: i64) -> anyhow::Result<()> {
    let ring = keyring::from_settings(
        settings.encryption.key(),
        &settings.encryption.old_keys,
        &settings.database.data_dir,
    )
    .map_err(anyhow::Error::msg)?;
    let pool = startup::tool_pool(settings).await?;
    let swept = sweep::sweep(&pool, &ring, Scope::NotCurrent, batch).await;
    pool.close().await;
    let swept = swept?;
    println!(
        "re-sealed with key {}: {} endpoint secrets, {} application secrets, {} endpoints' headers, {} sources",
        ring.current_id().unwrap_or("?"),
        swept.endpoint_secrets,
        swept.application_secrets,
        swept.headers,
        swept.sources
    );
    if swept.unreadable > 0 {
        anyhow::bail!(
            "{} values are sealed with a key this command was not given: add it to \
             HERALD_ENCRYPTION_OLD_KEYS and run it again",
            swept.unreadable
        );
    }
    Ok(())
}
