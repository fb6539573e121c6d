//! `herald token`: make, list and revoke the tokens managed at run time, with the same
//! functions as the token routes.

use std::{process::ExitCode, time::Duration};

use clap::{Args, Subcommand};

use crate::{
    access::token::{self, TokenRow},
    api::{
        error::ApiError,
        pagination::PageQuery,
        token::{create_token, list_page, ApiTokenIn, TokenFilter},
    },
    config::{values::parse_duration, Settings},
    startup,
};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it (once: only its hash is kept).
    Create(CreateArgs),
    /// List tokens (never the tokens themselves).
    List(ListArgs),
    /// Revoke a token, at once.
    Revoke {
        /// Its id (`tok_…`).
        id: String,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// Who or what uses it.
    #[arg(long)]
    name: String,
    /// Limit it to this application (id or uid); without it, an operator token.
    #[arg(long)]
    app: Option<String>,
    /// How long it lasts (`30days`, `12h`); without it, until revoked.
    #[arg(long, value_parser = parse_duration)]
    expires: Option<Duration>,
    /// An application token that may only read.
    #[arg(long)]
    read_only: bool,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only this application's (id or uid).
    #[arg(long)]
    app: Option<String>,
}

pub fn run(settings: Settings, command: TokenCommand) -> ExitCode {
    // The embedded PostgreSQL of a running Herald, or started for this command.
    let result = super::on_database(settings, true, |settings, _| async move {
        let pool = startup::tool_pool(&settings).await?;
        let outcome = match command {
            TokenCommand::Create(args) => create(&pool, args).await,
            TokenCommand::List(args) => list(&pool, args).await,
            TokenCommand::Revoke { id } => revoke(&pool, &id).await,
        };
        pool.close().await;
        outcome
    });
    result.map_or_else(|code| code, super::report)
}

/// An API error as a command's: what the API would have said.
fn said(e: ApiError) -> anyhow::Error {
    match e {
        ApiError::Validation(items) => anyhow::anyhow!(
            "{}",
            items
                .iter()
                .map(|i| format!("{}: {}", i.loc.last().cloned().unwrap_or_default(), i.msg))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => anyhow::anyhow!("{other}"),
    }
}

async fn create(pool: &sqlx::PgPool, args: CreateArgs) -> anyhow::Result<()> {
    let input = ApiTokenIn {
        name: args.name,
        app_id: args.app,
        expiry: args.expires.map(|d| d.as_secs()),
        read_only: args.read_only,
        feature_flags: None,
    };
    let made = create_token(pool, &input).await.map_err(said)?;
    // The token alone on stdout (for scripts); the rest on stderr.
    println!("{}", made.token);
    eprintln!(
        "{} ({}) made: store the token above now, it is not shown again",
        describe(&made.about),
        made.about.id
    );
    Ok(())
}

async fn list(pool: &sqlx::PgPool, args: ListArgs) -> anyhow::Result<()> {
    let mut page = PageQuery {
        limit: Some(250),
        ..Default::default()
    };
    let filter = TokenFilter { app_id: args.app };
    println!(
        "{:<32} {:<8} {:<11} {:<24} {:<21} name",
        "id", "state", "kind", "application", "last used"
    );
    loop {
        let rows = list_page(pool, &page, &filter).await.map_err(said)?;
        for t in &rows.data {
            println!(
                "{:<32} {:<8} {:<11} {:<24} {:<21} {}",
                t.id,
                state(t),
                t.kind.as_str(),
                t.app_id.as_deref().unwrap_or("-"),
                t.last_used_at
                    .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_else(|| "never".into()),
                t.name
            );
        }
        if rows.done {
            return Ok(());
        }
        page.iterator = rows.iterator;
    }
}

async fn revoke(pool: &sqlx::PgPool, id: &str) -> anyhow::Result<()> {
    match token::revoke(pool, id).await? {
        Some(t) => {
            println!("revoked {} ({})", t.id, describe(&t));
            Ok(())
        }
        None => Err(anyhow::anyhow!("no token has the id {id}")),
    }
}

fn state(t: &TokenRow) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if !t.is_live(chrono::Utc::now()) {
        "expired"
    } else {
        "live"
    }
}

fn describe(t: &TokenRow) -> String {
    let mut what = format!("{} token {:?}", t.kind.as_str(), t.name);
    if let Some(app) = &t.app_id {
        what.push_str(&format!(" for {app}"));
    }
    if t.read_only {
        what.push_str(", read-only");
    }
    if let Some(at) = t.expires_at {
        what.push_str(&format!(", expires {}", at.format("%Y-%m-%d %H:%M UTC")));
    }
    what
}
