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
use receiver::{Receiver, Tally};
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
    /// Append the Herald process's log (info level) to this file.
    #[arg(long)]
    herald_log: Option<std::path::PathBuf>,
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
    /// One endpoint holds a backlog of N deliveries while another receives a steady trickle:
    /// the quiet endpoint's enqueue-to-receive latency must not depend on the backlog.
    Fairness {
        #[arg(long, default_value_t = 100_000)]
        backlog: usize,
        /// Messages per second offered to the quiet endpoint while the backlog drains.
        #[arg(long, default_value_t = 10)]
        rate: u32,
    },
    /// Healthy endpoints' throughput alone, then with one more endpoint that hangs until
    /// Herald's request timeout on every request.
    Hanging {
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        #[arg(long, default_value_t = 4)]
        endpoints: usize,
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

    async fn create_app(&self, uid: &str) -> anyhow::Result<String> {
        Ok(sqlx::query_scalar(
            "INSERT INTO herald.application (uid, name) VALUES ($1, $1) RETURNING id",
        )
        .bind(uid)
        .fetch_one(&self.pool)
        .await?)
    }

    /// An endpoint of `app` at `url`, subscribed to `event_type` (or everything).
    async fn add_endpoint(
        &self,
        app: &str,
        url: &str,
        event_type: Option<&str>,
    ) -> anyhow::Result<()> {
        self.add_endpoint_with_id(None, app, url, event_type).await
    }

    /// The same with a fixed id (endpoints are routed to senders by id).
    async fn add_endpoint_with_id(
        &self,
        id: Option<&str>,
        app: &str,
        url: &str,
        event_type: Option<&str>,
    ) -> anyhow::Result<()> {
        let ep: String = sqlx::query_scalar(
            "INSERT INTO herald.endpoint (id, app_id, url, event_types) \
             VALUES (coalesce($4, herald.new_id('ep')), $1, $2, $3) RETURNING id",
        )
        .bind(app)
        .bind(url)
        .bind(event_type.map(|e| vec![e.to_string()]))
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        sqlx::query("INSERT INTO herald.endpoint_secret (endpoint_id, key) VALUES ($1, $2)")
            .bind(&ep)
            .bind(self.secret.as_bytes())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// One application with `endpoints` endpoints labelled e0, e1, ...
    async fn setup_endpoints(
        &self,
        receiver: &Receiver,
        endpoints: usize,
    ) -> anyhow::Result<String> {
        let app = self.create_app("bench").await?;
        for i in 0..endpoints {
            self.add_endpoint(&app, &receiver.url(&format!("e{i}")), None)
                .await?;
        }
        Ok(app)
    }

    /// Enqueues `n` messages in transactions of `batch`; returns messages per second.
    async fn enqueue(&self, app: &str, n: usize, batch: usize) -> anyhow::Result<f64> {
        self.enqueue_type(app, "payment.confirmed", n, batch).await
    }

    async fn enqueue_type(
        &self,
        app: &str,
        event_type: &str,
        n: usize,
        batch: usize,
    ) -> anyhow::Result<f64> {
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
                sqlx::query("SELECT herald.send_message($1, $2, $3)")
                    .bind(app)
                    .bind(event_type)
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
fn start_herald(cli: &Cli, database_url: &str, env: &[(&str, &str)]) -> anyhow::Result<Child> {
    let senders = cli.senders;
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
        .env(
            "HERALD_LOG_LEVEL",
            if cli.herald_log.is_some() {
                "info"
            } else {
                "warn"
            },
        )
        .env("HERALD_LOG_FORMAT", "json")
        .env("HERALD_HEALTH_LOG_INTERVAL", "1s")
        .env("HERALD_HEARTBEAT_INTERVAL", "500ms")
        // The receiver is local; Herald refuses loopback destinations unless allowed.
        .env("HERALD_ALLOWED_CIDRS", "127.0.0.0/8")
        .envs(env.iter().copied())
        .stdout(match &cli.herald_log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            None => Stdio::null(),
        })
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
    let app = bench.setup_endpoints(&receiver, endpoints).await?;
    let ingest_rate = bench.enqueue(&app, messages, batch).await?;
    let deliveries = messages * endpoints;
    let tx_before = bench.transactions().await?;

    // The clock runs from the moment Herald is started, start-up included.
    let started = Instant::now();
    let herald = start_herald(cli, &bench.database_url, &[])?;
    let pid = herald.id();
    let all_recorded = wait_succeeded(&bench.pool, deliveries, Duration::from_secs(600)).await?;
    let elapsed = started.elapsed();
    let rss = peak_rss_mib(pid);
    stop(herald)?;
    let tx_after = bench.transactions().await?;
    let tallies = receiver.tallies.clone();
    receiver.stop().await;
    if !all_recorded {
        bail!("Herald did not deliver everything within the time limit");
    }
    let t = tallies.lock().unwrap();
    let (mut arrivals, mut lost, mut duplicates) = (0u64, 0usize, 0u64);
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    for i in 0..endpoints {
        let tally = t.by_label.get(&format!("e{i}"));
        arrivals += tally.map(|t| t.arrivals()).unwrap_or(0);
        duplicates += tally.map(|t| t.duplicates()).unwrap_or(0);
        lost += messages.saturating_sub(tally.map(|t| t.received()).unwrap_or(0));
        if let Some(tally) = tally {
            first = first.min(tally.first).or(tally.first);
            last = last.max(tally.last);
        }
    }
    let window = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    Ok(serde_json::json!({
        "scenario": "burn-down",
        "messages": messages,
        "endpoints": endpoints,
        "deliveries": deliveries,
        "senders": cli.senders,
        "enqueue_per_sec": round(ingest_rate),
        "elapsed_s": round(elapsed.as_secs_f64()),
        "deliveries_per_sec": round(deliveries as f64 / elapsed.as_secs_f64()),
        "deliveries_per_sec_first_to_last": round(if window > 0.0 { arrivals as f64 / window } else { 0.0 }),
        "db_transactions_per_delivery": round((tx_after - tx_before) as f64 / deliveries as f64),
        "herald_peak_rss_mib": rss.map(round),
        "bad_signatures": t.bad_signatures,
        "duplicates": duplicates,
        "lost": lost,
    }))
}

async fn fairness(
    cli: &Cli,
    bench: &Bench,
    backlog: usize,
    rate: u32,
) -> anyhow::Result<serde_json::Value> {
    let receiver = Receiver::start(bench.secret.clone(), 2)?;
    let app = bench.create_app("bench").await?;
    bench
        .add_endpoint(&app, &receiver.url("busy"), Some("bulk"))
        .await?;
    bench
        .add_endpoint(&app, &receiver.url("quiet"), Some("tick"))
        .await?;
    bench.enqueue_type(&app, "bulk", backlog, 1000).await?;

    let started = Instant::now();
    let herald = start_herald(cli, &bench.database_url, &[])?;
    // Offer the quiet endpoint `rate` messages per second until the backlog has drained.
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticks = 0usize;
    let mut next = Instant::now();
    while receiver.received("busy") < backlog && started.elapsed() < Duration::from_secs(600) {
        if Instant::now() >= next {
            bench.enqueue_type(&app, "tick", 1, 1).await?;
            ticks += 1;
            next += period;
        }
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    let drained = started.elapsed();
    receiver
        .wait_for("quiet", ticks, Duration::from_secs(30))
        .await;
    stop(herald)?;
    let tallies = receiver.tallies.clone();
    receiver.stop().await;
    let t = tallies.lock().unwrap();
    let (busy, quiet) = (&t.by_label["busy"], &t.by_label["quiet"]);
    let busy_rate = backlog as f64 / drained.as_secs_f64();
    Ok(serde_json::json!({
        "scenario": "fairness",
        "backlog": backlog,
        "busy_drained_s": round(drained.as_secs_f64()),
        "busy_deliveries_per_sec": round(busy_rate),
        "quiet_messages": ticks,
        "quiet_received": quiet.received(),
        "quiet_latency_p50_ms": quiet.percentile_ms(50.0).map(round),
        "quiet_latency_p99_ms": quiet.percentile_ms(99.0).map(round),
        "quiet_latency_max_ms": quiet.percentile_ms(100.0).map(round),
        "fifo_wait_estimate_s": round(backlog as f64 / busy_rate / 2.0),
        "duplicates": busy.duplicates() + quiet.duplicates(),
        "bad_signatures": t.bad_signatures,
    }))
}

/// Healthy throughput (deliveries per second to the healthy endpoints) in one run.
async fn healthy_throughput(
    cli: &Cli,
    server: &str,
    messages: usize,
    endpoints: usize,
    hanging: bool,
) -> anyhow::Result<(f64, u64)> {
    let bench = Bench::create(server).await?;
    let receiver = Receiver::start(bench.secret.clone(), 2)?;
    let app = bench.create_app("bench").await?;
    // The same ids in both runs: endpoints are routed to senders by id, so the healthy
    // ones land on the same senders with and without the hanging one.
    for i in 0..endpoints {
        let (id, url) = (
            format!("ep_bench_healthy_{i}"),
            receiver.url(&format!("e{i}")),
        );
        bench
            .add_endpoint_with_id(Some(&id), &app, &url, None)
            .await?;
    }
    if hanging {
        let url = receiver.hanging_url("stuck");
        bench
            .add_endpoint_with_id(Some("ep_bench_hanging"), &app, &url, None)
            .await?;
    }
    bench.enqueue(&app, messages, 1000).await?;
    let started = Instant::now();
    let herald = start_herald(
        cli,
        &bench.database_url,
        &[("HERALD_REQUEST_TIMEOUT", "5s")],
    )?;
    for i in 0..endpoints {
        if !receiver
            .wait_for(&format!("e{i}"), messages, Duration::from_secs(600))
            .await
        {
            bail!("healthy endpoint e{i} did not receive everything");
        }
    }
    let rate = (messages * endpoints) as f64 / started.elapsed().as_secs_f64();
    stop(herald)?;
    let dup = receiver
        .tallies
        .lock()
        .unwrap()
        .by_label
        .values()
        .map(Tally::duplicates)
        .sum();
    receiver.stop().await;
    bench.drop_database(server).await?;
    Ok((rate, dup))
}

async fn hanging(
    cli: &Cli,
    messages: usize,
    endpoints: usize,
) -> anyhow::Result<serde_json::Value> {
    let (alone, d1) = healthy_throughput(cli, &cli.server, messages, endpoints, false).await?;
    let (with_hanging, d2) =
        healthy_throughput(cli, &cli.server, messages, endpoints, true).await?;
    Ok(serde_json::json!({
        "scenario": "hanging",
        "messages": messages,
        "healthy_endpoints": endpoints,
        "healthy_deliveries_per_sec_alone": round(alone),
        "healthy_deliveries_per_sec_with_hanging_endpoint": round(with_hanging),
        "ratio": round(with_hanging / alone),
        "duplicates": d1 + d2,
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
        // This one runs twice, each on its own database.
        if let Scenario::Hanging {
            messages,
            endpoints,
        } = cli.scenario
        {
            print_report(&hanging(&cli, messages, endpoints).await?);
            return Ok(());
        }
        let bench = Bench::create(&cli.server).await?;
        let result = match cli.scenario {
            Scenario::BurnDown {
                messages,
                endpoints,
                batch,
            } => burn_down(&cli, &bench, messages, endpoints, batch).await,
            Scenario::Fairness { backlog, rate } => fairness(&cli, &bench, backlog, rate).await,
            Scenario::Hanging { .. } => unreachable!("handled above"),
        };
        if !cli.keep_database {
            bench.drop_database(&cli.server).await?;
        }
        print_report(&result?);
        Ok(())
    })
}
