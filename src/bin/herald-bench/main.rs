//! `herald-bench`: measures Herald on this machine and prints a table and a JSON line.
//!
//! It creates a throw-away database, starts a receiver that verifies every signature, runs
//! the `herald` binary (built next to this one) as a separate process, and drives it.
//!
//!     cargo build --release --bins
//!     target/release/herald-bench burn-down --messages 10000

mod receiver;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use herald::signing::Secret;
use receiver::Receiver;
use sqlx::{Connection, Executor, PgConnection, PgPool};

#[derive(Parser)]
#[command(about = "Benchmarks Herald against a local receiver")]
struct Cli {
    /// PostgreSQL server to create the benchmark database on.
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432",
        env = "HERALD_BENCH_DATABASE_URL"
    )]
    server: String,
    /// Sender actors in the Herald under test.
    #[arg(long, default_value_t = 2)]
    senders: usize,
    /// Keep the benchmark database afterwards.
    #[arg(long)]
    keep_database: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Clone, Copy)]
enum Scenario {
    /// Pre-enqueue N messages (herald.send_message, batched in transactions), then time how
    /// fast Herald drains them to E endpoints.
    BurnDown {
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        #[arg(long, default_value_t = 1)]
        endpoints: usize,
        /// Messages per enqueue transaction.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
}

struct Bench {
    database_url: String,
    pool: PgPool,
    secret: Secret,
}

impl Bench {
    async fn create(server: &str) -> anyhow::Result<Bench> {
        let name = format!("herald_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .context("connecting to PostgreSQL (is it running?)")?;
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await?;
        let database_url = format!("{server}/{name}");
        let pool = PgPool::connect(&database_url).await?;
        herald::store::Store::from_pool(pool.clone())
            .migrate()
            .await?;
        Ok(Bench {
            database_url,
            pool,
            secret: Secret::generate(),
        })
    }

    async fn drop_database(self, server: &str) -> anyhow::Result<()> {
        self.pool.close().await;
        let name = self
            .database_url
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut admin = PgConnection::connect(&format!("{server}/postgres")).await?;
        admin
            .execute(format!(r#"DROP DATABASE "{name}" WITH (FORCE)"#).as_str())
            .await?;
        Ok(())
    }

    async fn setup_endpoints(&self, url: &str, endpoints: usize) -> anyhow::Result<String> {
        let app: String = sqlx::query_scalar(
            "INSERT INTO herald.application (uid, name) VALUES ('bench', 'bench') RETURNING id",
        )
        .fetch_one(&self.pool)
        .await?;
        for _ in 0..endpoints {
            let ep: String = sqlx::query_scalar(
                "INSERT INTO herald.endpoint (app_id, url) VALUES ($1, $2) RETURNING id",
            )
            .bind(&app)
            .bind(url)
            .fetch_one(&self.pool)
            .await?;
            sqlx::query("INSERT INTO herald.endpoint_secret (endpoint_id, key) VALUES ($1, $2)")
                .bind(&ep)
                .bind(self.secret.as_bytes())
                .execute(&self.pool)
                .await?;
        }
        Ok(app)
    }

    /// Enqueues `n` messages in transactions of `batch`; returns messages per second.
    async fn enqueue(&self, app: &str, n: usize, batch: usize) -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut sent = 0;
        while sent < n {
            let take = batch.min(n - sent);
            let mut tx = self.pool.begin().await?;
            for i in 0..take {
                let payload = format!(
                    r#"{{"t": {}, "seq": {}, "type": "payment.confirmed", "amount": "10.00"}}"#,
                    chrono::Utc::now().timestamp_micros(),
                    sent + i
                );
                sqlx::query("SELECT herald.send_message($1, 'payment.confirmed', $2)")
                    .bind(app)
                    .bind(payload)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            sent += take;
        }
        Ok(n as f64 / started.elapsed().as_secs_f64())
    }

    async fn transactions(&self) -> anyhow::Result<i64> {
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}

/// The `herald` binary built beside this one, as a child process.
fn start_herald(database_url: &str, senders: usize) -> anyhow::Result<Child> {
    let exe = std::env::current_exe()?.with_file_name("herald");
    if !exe.exists() {
        bail!(
            "{} not found: build it first (cargo build --release --bins)",
            exe.display()
        );
    }
    let config_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    Ok(Command::new(exe)
        .env("HERALD_CONFIG_DIR", config_dir)
        .env("HERALD_DATABASE_URL", database_url)
        .env("HERALD_ROLE", "worker")
        .env("HERALD_SENDERS", senders.to_string())
        .env("HERALD_LOG_LEVEL", "warn")
        // The receiver is local; Herald refuses loopback destinations unless allowed.
        .env("HERALD_ALLOWED_CIDRS", "127.0.0.0/8")
        .stdout(Stdio::null())
        .spawn()?)
}

/// Peak resident memory of a process, in MiB (Linux).
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn stop(mut child: Child) -> anyhow::Result<()> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    child.wait()?;
    Ok(())
}

async fn burn_down(
    cli: &Cli,
    bench: &Bench,
    messages: usize,
    endpoints: usize,
    batch: usize,
) -> anyhow::Result<serde_json::Value> {
    let receiver = Receiver::start(bench.secret.clone(), 1)?;
    let app = bench.setup_endpoints(&receiver.url, endpoints).await?;
    let ingest_rate = bench.enqueue(&app, messages, batch).await?;
    let deliveries = messages * endpoints;
    let tx_before = bench.transactions().await?;

    // The clock runs from the moment Herald is started, start-up included.
    let started = Instant::now();
    let herald = start_herald(&bench.database_url, cli.senders)?;
    let pid = herald.id();
    let all_arrived = receiver.wait_for(messages, Duration::from_secs(600)).await;
    let all_recorded = wait_succeeded(&bench.pool, deliveries, Duration::from_secs(600)).await?;
    let elapsed = started.elapsed();
    let rss = peak_rss_mib(pid);
    stop(herald)?;
    let tx_after = bench.transactions().await?;
    let tally = receiver.tally.clone();
    receiver.stop().await;
    if !(all_arrived && all_recorded) {
        bail!("Herald did not deliver everything within the time limit");
    }
    let t = tally.lock().unwrap();
    let window = match (t.first, t.last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let received: u64 = t.seen.values().map(|n| *n as u64).sum();
    Ok(serde_json::json!({
        "scenario": "burn-down",
        "messages": messages,
        "endpoints": endpoints,
        "deliveries": deliveries,
        "senders": cli.senders,
        "enqueue_per_sec": round(ingest_rate),
        "elapsed_s": round(elapsed.as_secs_f64()),
        "deliveries_per_sec": round(deliveries as f64 / elapsed.as_secs_f64()),
        "deliveries_per_sec_first_to_last": round(if window > 0.0 { received as f64 / window } else { 0.0 }),
        "db_transactions_per_delivery": round((tx_after - tx_before) as f64 / deliveries as f64),
        "herald_peak_rss_mib": rss.map(round),
        "bad_signatures": t.bad_signatures,
        "duplicates": t.duplicates(),
        "lost": messages.saturating_sub(t.received()),
    }))
}

async fn wait_succeeded(pool: &PgPool, n: usize, timeout: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'")
                .fetch_one(pool)
                .await?;
        if done as usize >= n {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn print_report(report: &serde_json::Value) {
    println!("{:<36} value", "metric");
    if let Some(map) = report.as_object() {
        for (k, v) in map {
            println!("{k:<36} {v}");
        }
    }
    println!("{}", serde_json::to_string(report).unwrap_or_default());
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    actix_rt::System::new().block_on(async {
        let bench = Bench::create(&cli.server).await?;
        let result = match cli.scenario {
            Scenario::BurnDown {
                messages,
                endpoints,
                batch,
            } => burn_down(&cli, &bench, messages, endpoints, batch).await,
        };
        if !cli.keep_database {
            bench.drop_database(&cli.server).await?;
        }
        print_report(&result?);
        Ok(())
    })
}
