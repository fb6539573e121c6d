//! The `herald` command line: the server (the default) and the operator's and receiver's
//! tools beside it ([`token`]: API tokens). Each command returns the process exit code: 0 success, 1 a negative
//! answer (signature invalid, unhealthy) or a runtime failure, 2 bad usage or configuration.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use clap::{Args, Parser, Subcommand};

mod keys;
mod token;

use crate::{
    config::Settings,
    embedded_pg,
    signing::{self, Secret},
    startup::{self, Application},
    telemetry,
};

#[derive(Parser)]
#[command(name = "herald", version, about = "Self-hosted webhook delivery")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the service: API and dispatcher, per HERALD_ROLE (the default command).
    Serve,
    /// Create the database if it is missing, apply the migrations, and exit.
    Migrate,
    /// Print the effective configuration (files + environment), secrets masked.
    Config,
    /// Check a webhook's signature, as a receiver would: exit 0 and "valid" if it matches.
    Verify(VerifyArgs),
    /// Ask the local Herald whether it is ready (or, with --live, alive): for HEALTHCHECK.
    Healthcheck(HealthcheckArgs),
    /// Print the OpenAPI document of the API (what `/api/v1/openapi.json` serves).
    Openapi,
    /// Make, list and revoke API tokens (operator-wide or limited to one application).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// The key that encrypts secrets at rest: make one, re-seal with a new one.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Show the whole loop on this machine: Herald (on an embedded PostgreSQL unless a
    /// database is configured), a receiver that verifies signatures, payment events that
    /// arrive, a failing endpoint whose circuit opens and whose delivery dies, and how to
    /// replay it. Ctrl-C stops everything.
    Demo,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The endpoint's signing secret (`whsec_...`).
    #[arg(long, env = "HERALD_VERIFY_SECRET")]
    secret: String,
    /// The `webhook-id` header.
    #[arg(long)]
    id: String,
    /// The `webhook-timestamp` header (unix seconds).
    #[arg(long)]
    timestamp: i64,
    /// The `webhook-signature` header, all of it (quote it: it may hold several entries).
    #[arg(long)]
    signature: String,
    /// A file holding the exact body received; standard input when absent.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Seconds the timestamp may differ from now.
    #[arg(long, default_value_t = 300)]
    tolerance: i64,
    /// Check as if it were this unix time (to check an old request's signature).
    #[arg(long)]
    now: Option<i64>,
}

#[derive(Args)]
pub struct HealthcheckArgs {
    /// Only check that the process answers (liveness); by default readiness is checked.
    #[arg(long)]
    live: bool,
    /// The health URL; by default derived from HERALD_LISTEN.
    #[arg(long)]
    url: Option<url::Url>,
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command.unwrap_or(Command::Serve) {
        // A receiver debugging a signature needs no Herald configuration.
        Command::Verify(args) => verify(args),
        Command::Serve => with_settings(serve),
        Command::Migrate => with_settings(migrate),
        Command::Config => with_settings(|settings| {
            print!("{}", settings.render());
            ExitCode::SUCCESS
        }),
        Command::Healthcheck(args) => with_settings(|settings| healthcheck(&settings, args)),
        // (No log subscriber: stdout is the token, for scripts.)
        Command::Token(command) => with_settings(|settings| token::run(settings, command)),
        Command::Demo => with_settings(crate::demo::run),
        Command::Keys(keys::KeysCommand::Generate) => keys::generate(),
        Command::Keys(keys::KeysCommand::Rotate { batch }) => {
            with_settings(|settings| keys::rotate(settings, batch))
        }
        Command::Openapi => match crate::api::document(crate::api::Serving::Api).to_pretty_json() {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("herald: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs `command` with the loaded settings; a bad setting exits 2, naming it.
fn with_settings(command: impl FnOnce(Settings) -> ExitCode) -> ExitCode {
    match Settings::load() {
        Ok(settings) => command(settings),
        Err(e) => {
            eprintln!("herald: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(settings: Settings) -> ExitCode {
    let telemetry = telemetry::init(&settings);
    let result = on_database(settings, false, |settings, _| async move {
        let app = Application::build(settings).await?;
        app.run_until_stopped().await
    });
    telemetry.shutdown();
    result.map_or_else(|code| code, report)
}

fn migrate(settings: Settings) -> ExitCode {
    let telemetry = telemetry::init(&settings);
    let result = on_database(settings, true, |settings, _| async move {
        startup::migrate(&settings).await?;
        println!("migrations applied");
        Ok(())
    });
    telemetry.shutdown();
    result.map_or_else(|code| code, report)
}

/// Runs `work` on an actix system against the database `settings` name. When that is the
/// embedded PostgreSQL, it is started first (with `join`, a running Herald's is used
/// instead) and stopped once `work` has finished, that is once Herald has drained; `work`
/// is also told where its data lives. `Err` is the exit code of a cluster that could not
/// start (its reason already printed).
pub(crate) fn on_database<Fut>(
    mut settings: Settings,
    join: bool,
    work: impl FnOnce(Settings, Option<PathBuf>) -> Fut,
) -> Result<anyhow::Result<()>, ExitCode>
where
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // Started here, on the main thread, which lives as long as the process: the server is
    // told to stop if this thread goes away (see embedded_pg).
    let cluster = embedded_pg::start_if_wanted(&mut settings, join).map_err(cluster_failed)?;
    let data = cluster.as_ref().map(|c| c.dir().to_path_buf());
    let result = actix_rt::System::new().block_on(work(settings, data));
    drop(cluster);
    Ok(result)
}

/// One line saying what to do; 2 for what the operator must fix (install PostgreSQL, free
/// the data directory), 1 for a failure at run time.
fn cluster_failed(e: embedded_pg::ClusterError) -> ExitCode {
    eprintln!("herald: {e}");
    match e {
        embedded_pg::ClusterError::Failed { .. } => ExitCode::FAILURE,
        _ => ExitCode::from(2),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // One line on stderr, whatever the log format: what failed and what to do.
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn verify(args: VerifyArgs) -> ExitCode {
    // Standard Webhooks libraries accept the key with or without its prefix; so do we.
    let text = if args.secret.starts_with("whsec_") {
        args.secret.clone()
    } else {
        format!("whsec_{}", args.secret)
    };
    let secret = match Secret::parse(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("herald verify: --secret: {e}");
            return ExitCode::from(2);
        }
    };
    let mut body = Vec::new();
    let read = match &args.body_file {
        Some(path) => std::fs::read(path).map(|b| body = b),
        None => std::io::stdin().read_to_end(&mut body).map(|_| ()),
    };
    if let Err(e) = read {
        eprintln!("herald verify: cannot read the body: {e}");
        return ExitCode::from(2);
    }
    let now = args.now.unwrap_or_else(|| chrono::Utc::now().timestamp());
    match signing::verify(
        &secret,
        &args.id,
        args.timestamp,
        &body,
        &args.signature,
        now,
        args.tolerance,
    ) {
        Ok(()) => {
            println!("valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("invalid: {e}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck(settings: &Settings, args: HealthcheckArgs) -> ExitCode {
    let path = if args.live {
        "/api/v1/health/ping"
    } else {
        "/api/v1/health"
    };
    let (addr, path) = match &args.url {
        Some(url) => match url
            .socket_addrs(|| None)
            .ok()
            .and_then(|a| a.first().copied())
        {
            Some(addr) => (addr, url.path().to_string()),
            None => {
                eprintln!("herald healthcheck: --url {url}: cannot resolve it");
                return ExitCode::from(2);
            }
        },
        None => {
            let mut addr = settings.process.listen;
            // Listening on every interface: ask on loopback.
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            (addr, path.to_string())
        }
    };
    match http_status(addr, &path, Duration::from_secs(5)) {
        Ok(status) if (200..300).contains(&status) => {
            println!("healthy: {status}");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            println!("unhealthy: {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("unhealthy: {addr}{path}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A bare HTTP/1.0 GET, enough for a health probe in an image without curl.
fn http_status(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {line:?}")))
}
