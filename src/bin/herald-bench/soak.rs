//! `soak`: Herald at a steady rate for many minutes with a short retention, so that
//! retention (and partitions) roll over several times. Every `--every` seconds it prints and
//! records latency, throughput, Herald's memory, the tables' sizes, dead tuples, the claim
//! time and the queue; at the end the first and last tenth side by side, a CSV and a PNG.

use std::{
    cell::RefCell,
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::bail;
use serde::Serialize;

use crate::{
    api::{self, ApiOptions},
    receiver::{Receiver, Tallies},
    setup::{percentile, round, Bench, Herald, Role},
    soak_plot, Cli,
};

#[derive(clap::Args, Clone, Debug)]
pub struct SoakOptions {
    /// Messages per second offered through the API.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    #[arg(long, default_value_t = 60.0)]
    pub minutes: f64,
    /// Herald's HERALD_RETENTION for the run (minutes, so that it rolls over).
    #[arg(long, default_value = "2m")]
    pub retention: String,
    /// Herald's HERALD_PARTITION_INTERVAL (default: a quarter of the retention).
    #[arg(long)]
    pub partition_interval: Option<String>,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    pub every: u64,
    /// Where the chart goes.
    #[arg(long, default_value = "soak.png")]
    pub plot: PathBuf,
    /// Where the samples go, one line each (default: beside the chart, `.csv`).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
}

/// One sample: the figures of the last `--every` seconds, and the state at its end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub delivered_per_s: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub herald_rss_mib: f64,
    pub message_mib: f64,
    pub delivery_mib: f64,
    pub attempt_mib: f64,
    /// Every relation of Herald's schema, indexes and TOAST included.
    pub total_mib: f64,
    pub dead_tuples: i64,
    /// Deliveries waiting or being sent.
    pub queue: i64,
    /// Mean time of a claim query in the window (Herald's `herald_claim_duration_seconds`).
    pub claim_ms: f64,
    /// Time ranges with partitions now (made ahead, and not yet dropped).
    pub partitions: i64,
}

pub async fn soak(
    cli: &Cli,
    bench: &Bench,
    opts: SoakOptions,
) -> anyhow::Result<serde_json::Value> {
    let receiver = Receiver::start(bench.secret.clone(), 2)?;
    let app = bench.create_app("bench").await?;
    bench
        .add_endpoint(&app, &receiver.url("soak"), None)
        .await?;
    // Retention runs often enough to keep up with minutes of it, and partitions roll over
    // several times within it.
    let quarter = (humantime::parse_duration(&opts.retention)?.as_secs() / 4).max(1);
    let interval = format!("{}s", quarter.clamp(5, 30));
    let partitions = opts
        .partition_interval
        .clone()
        .unwrap_or_else(|| format!("{quarter}s"));
    let env = [
        ("HERALD_RETENTION", opts.retention.as_str()),
        ("HERALD_RETENTION_INTERVAL", interval.as_str()),
        ("HERALD_PARTITION_INTERVAL", partitions.as_str()),
    ];
    let herald = Herald::start(cli, &bench.database_url, Role::All, &env).await?;
    let addr = herald.api.expect("the API runs");
    let samples = Rc::new(RefCell::new(Vec::<Sample>::new()));
    let running = Rc::new(std::cell::Cell::new(true));
    let seen_ranges = Rc::new(RefCell::new(std::collections::BTreeSet::<String>::new()));
    let sampler = actix_rt::spawn(sample_loop(
        seen_ranges.clone(),
        bench.pool.clone(),
        herald.pid(),
        format!("http://{addr}/metrics"),
        receiver.tallies.clone(),
        Duration::from_secs(opts.every.max(1)),
        samples.clone(),
        running.clone(),
    ));
    let n = (opts.rate as f64 * opts.minutes * 60.0) as usize;
    let load = ApiOptions {
        clients: opts.clients,
        idempotency_keys: false,
        event_ids: false,
        count_db: false,
    };
    let run = api::drive(
        addr,
        opts.clients,
        n,
        0,
        api::messages(load, "soak.event"),
        Some(opts.rate),
    )
    .await?;
    let arrived = receiver
        .wait_for("soak", run.accepted, Duration::from_secs(120))
        .await;
    running.set(false);
    sampler.await??;
    herald.stop()?;
    let tallies = receiver.tallies.clone();
    receiver.stop().await;
    let ranges: Vec<(String,)> = sqlx::query_as("SELECT suffix FROM herald.time_partition")
        .fetch_all(&bench.pool)
        .await?;
    let t = tallies.lock().unwrap();
    let tally = &t.by_label["soak"];
    let samples = samples.borrow().clone();
    // The ranges standing at the end count as made too (a pass after the last sample).
    seen_ranges
        .borrow_mut()
        .extend(ranges.iter().map(|(r,)| r.clone()));
    let seen = seen_ranges.borrow().len();
    let dropped = seen_ranges
        .borrow()
        .iter()
        .filter(|s| !ranges.iter().any(|(r,)| r == *s))
        .count();
    let csv = opts
        .csv
        .clone()
        .unwrap_or_else(|| opts.plot.with_extension("csv"));
    write_csv(&csv, &samples)?;
    let plotted = soak_plot::draw(&opts.plot, &samples, opts.rate)?;
    // Until retention first removes something, the tables can only grow: the tenths
    // compare the steady state that follows.
    let fill = humantime::parse_duration(&opts.retention)?.as_secs_f64()
        + humantime::parse_duration(&partitions)?.as_secs_f64()
        + humantime::parse_duration(&interval)?.as_secs_f64();
    let steady: Vec<Sample> = samples.iter().filter(|s| s.t_s > fill).cloned().collect();
    let (first, last) = tenths(if steady.is_empty() { &samples } else { &steady });
    println!(
        "first and last tenth of the samples after {fill:.0} s (retention + partition interval \
         + retention interval: the tables fill until then)"
    );
    print_tenths(&first, &last);
    if !arrived {
        bail!("not every accepted message arrived within 120 s of the end");
    }
    let mut report = serde_json::json!({
        "scenario": "soak",
        "offered_per_sec": opts.rate,
        "minutes": opts.minutes,
        "retention": opts.retention,
        "partition_interval": partitions,
        "samples": samples.len(),
        "steady_after_s": fill,
        "partition_ranges_made": seen,
        "partition_ranges_dropped": dropped,
        "first_tenth": first,
        "last_tenth": last,
        "csv": csv.display().to_string(),
        "plot": plotted.then(|| opts.plot.display().to_string()),
        "bad_signatures": t.bad_signatures,
    });
    run.add_to(&mut report);
    tally.add_to(&mut report, "latency", run.accepted);
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn sample_loop(
    seen_ranges: Rc<RefCell<std::collections::BTreeSet<String>>>,
    pool: sqlx::PgPool,
    pid: u32,
    metrics_url: String,
    tallies: std::sync::Arc<std::sync::Mutex<Tallies>>,
    every: Duration,
    samples: Rc<RefCell<Vec<Sample>>>,
    running: Rc<std::cell::Cell<bool>>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let client = awc::Client::default();
    let mut seen_latencies = 0usize;
    let mut claims = claim_totals(&client, &metrics_url)
        .await
        .unwrap_or_default();
    let mut last = Instant::now();
    while running.get() {
        actix_rt::time::sleep(every).await;
        let window = last.elapsed().as_secs_f64();
        last = Instant::now();
        let (delivered, p50, p99) = {
            let t = tallies.lock().unwrap();
            match t.by_label.get("soak") {
                Some(tally) => {
                    let new = &tally.latencies_us[seen_latencies.min(tally.latencies_us.len())..];
                    let ms: Vec<f64> = new.iter().map(|us| *us as f64 / 1000.0).collect();
                    seen_latencies = tally.latencies_us.len();
                    (
                        ms.len() as f64 / window,
                        percentile(&ms, 50.0).unwrap_or(0.0),
                        percentile(&ms, 99.0).unwrap_or(0.0),
                    )
                }
                None => (0.0, 0.0, 0.0),
            }
        };
        let now_claims = claim_totals(&client, &metrics_url).await.unwrap_or(claims);
        let claim_ms = match now_claims.1 - claims.1 {
            0 => 0.0,
            n => (now_claims.0 - claims.0) / n as f64 * 1000.0,
        };
        claims = now_claims;
        let db = database_state(&pool).await?;
        let ranges: Vec<(String,)> = sqlx::query_as("SELECT suffix FROM herald.time_partition")
            .fetch_all(&pool)
            .await?;
        seen_ranges
            .borrow_mut()
            .extend(ranges.iter().map(|(r,)| r.clone()));
        let sample = Sample {
            t_s: round(start.elapsed().as_secs_f64()),
            delivered_per_s: round(delivered),
            latency_p50_ms: round(p50),
            latency_p99_ms: round(p99),
            herald_rss_mib: round(rss_mib(pid).unwrap_or(0.0)),
            claim_ms: round(claim_ms),
            partitions: ranges.len() as i64,
            ..db
        };
        println!(
            "t={:>6.0}s delivered/s={:>7.1} p50={:>6.1}ms p99={:>7.1}ms rss={:>5.1}MiB tables={:>7.1}MiB (msg {:.1}, dlv {:.1}, att {:.1}) dead={:>7} queue={:>6} claim={:.2}ms",
            sample.t_s, sample.delivered_per_s, sample.latency_p50_ms, sample.latency_p99_ms,
            sample.herald_rss_mib, sample.total_mib, sample.message_mib, sample.delivery_mib,
            sample.attempt_mib, sample.dead_tuples, sample.queue, sample.claim_ms
        );
        samples.borrow_mut().push(sample);
    }
    Ok(())
}

/// Sizes, dead tuples and the queue, read from PostgreSQL.
async fn database_state(pool: &sqlx::PgPool) -> anyhow::Result<Sample> {
    let mib = |bytes: i64| round(bytes as f64 / (1 << 20) as f64);
    let size = |table: &'static str| async move {
        // A partitioned table is the sum of its partitions.
        sqlx::query_scalar::<_, i64>(
            "SELECT (CASE WHEN c.relkind = 'p' THEN \
                 (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(c.oid)) \
                 ELSE pg_total_relation_size(c.oid) END)::bigint \
             FROM pg_class c WHERE c.oid = $1::regclass",
        )
        .bind(format!("herald.{table}"))
        .fetch_one(pool)
        .await
    };
    let total: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'herald' AND c.relkind IN ('r', 'm')",
    )
    .fetch_one(pool)
    .await?;
    let dead: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_user_tables \
         WHERE schemaname = 'herald'",
    )
    .fetch_one(pool)
    .await?;
    let queue: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM herald.delivery WHERE status IN ('pending', 'sending')",
    )
    .fetch_one(pool)
    .await?;
    Ok(Sample {
        message_mib: mib(size("message").await?),
        delivery_mib: mib(size("delivery").await?),
        attempt_mib: mib(size("attempt").await?),
        total_mib: mib(total),
        dead_tuples: dead,
        queue,
        ..Sample::default()
    })
}

/// The usual claim's total seconds and count, from Herald's `/metrics`.
async fn claim_totals(client: &awc::Client, url: &str) -> Option<(f64, u64)> {
    let body = client.get(url).send().await.ok()?.body().await.ok()?;
    let text = String::from_utf8_lossy(&body);
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains("claim=\"due\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some((
        value("herald_claim_duration_seconds_sum")?,
        value("herald_claim_duration_seconds_count")? as u64,
    ))
}

/// Resident memory now, in MiB (Linux).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The means of the first and the last tenth of the samples (at least one each).
pub fn tenths(samples: &[Sample]) -> (Sample, Sample) {
    let k = (samples.len() / 10).max(1).min(samples.len());
    (mean(&samples[..k]), mean(&samples[samples.len() - k..]))
}

fn mean(s: &[Sample]) -> Sample {
    let n = s.len().max(1) as f64;
    let avg = |f: fn(&Sample) -> f64| round(s.iter().map(f).sum::<f64>() / n);
    Sample {
        t_s: avg(|x| x.t_s),
        delivered_per_s: avg(|x| x.delivered_per_s),
        latency_p50_ms: avg(|x| x.latency_p50_ms),
        latency_p99_ms: avg(|x| x.latency_p99_ms),
        herald_rss_mib: avg(|x| x.herald_rss_mib),
        message_mib: avg(|x| x.message_mib),
        delivery_mib: avg(|x| x.delivery_mib),
        attempt_mib: avg(|x| x.attempt_mib),
        total_mib: avg(|x| x.total_mib),
        dead_tuples: avg(|x| x.dead_tuples as f64) as i64,
        queue: avg(|x| x.queue as f64) as i64,
        claim_ms: avg(|x| x.claim_ms),
        partitions: avg(|x| x.partitions as f64) as i64,
    }
}

fn print_tenths(first: &Sample, last: &Sample) {
    let rows: [(&str, f64, f64); 12] = [
        ("delivered/s", first.delivered_per_s, last.delivered_per_s),
        ("latency p50 ms", first.latency_p50_ms, last.latency_p50_ms),
        ("latency p99 ms", first.latency_p99_ms, last.latency_p99_ms),
        ("herald rss MiB", first.herald_rss_mib, last.herald_rss_mib),
        ("message MiB", first.message_mib, last.message_mib),
        ("delivery MiB", first.delivery_mib, last.delivery_mib),
        ("attempt MiB", first.attempt_mib, last.attempt_mib),
        ("all tables MiB", first.total_mib, last.total_mib),
        (
            "dead tuples",
            first.dead_tuples as f64,
            last.dead_tuples as f64,
        ),
        ("queue", first.queue as f64, last.queue as f64),
        ("claim ms", first.claim_ms, last.claim_ms),
        (
            "partitions",
            first.partitions as f64,
            last.partitions as f64,
        ),
    ];
    println!(
        "{:<16} {:>12} {:>12} {:>8}",
        "figure", "first tenth", "last tenth", "change"
    );
    for (name, a, b) in rows {
        let change = if a.abs() > f64::EPSILON {
            format!("{:+.0} %", (b - a) / a * 100.0)
        } else {
            "-".into()
        };
        println!("{name:<16} {a:>12.2} {b:>12.2} {change:>8}");
    }
}

fn write_csv(path: &std::path::Path, samples: &[Sample]) -> anyhow::Result<()> {
    let mut out = String::from(
        "t_s,delivered_per_s,latency_p50_ms,latency_p99_ms,herald_rss_mib,message_mib,delivery_mib,attempt_mib,total_mib,dead_tuples,queue,claim_ms,partitions\n",
    );
    for s in samples {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            s.t_s,
            s.delivered_per_s,
            s.latency_p50_ms,
            s.latency_p99_ms,
            s.herald_rss_mib,
            s.message_mib,
            s.delivery_mib,
            s.attempt_mib,
            s.total_mib,
            s.dead_tuples,
            s.queue,
            s.claim_ms,
            s.partitions
        ));
    }
    std::fs::write(path, out)?;
    Ok(())
}
