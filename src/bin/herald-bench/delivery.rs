//! Delivery scenarios: draining a pre-enqueued backlog (`burn-down`), a quiet endpoint
//! beside a busy one (`fairness`), and healthy endpoints beside a hanging one (`hanging`).

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::{
    pgcount::Proxy,
    receiver::{Receiver, Tally},
    setup::{round, round_to, Bench, Herald, Role},
    Cli,
};

/// What `burn-down` drains, and how it is enqueued.
#[derive(Clone, Copy)]
pub struct BurnDown {
    pub messages: usize,
    pub endpoints: usize,
    /// Messages per enqueue transaction (before Herald starts).
    pub batch: usize,
    pub count_db: bool,
    /// Herald runs first; every message is enqueued in one transaction.
    pub one_transaction: bool,
}

pub async fn burn_down(
    cli: &Cli,
    bench: &Bench,
    load: BurnDown,
) -> anyhow::Result<serde_json::Value> {
    let BurnDown {
        messages,
        endpoints,
        ..
    } = load;
    let receiver = Receiver::start(bench.secret.clone(), 1)?;
    let app = bench.setup_endpoints(&receiver, endpoints).await?;
    let deliveries = messages * endpoints;
    let (proxy, url) = Proxy::if_asked(load.count_db, &bench.database_url)?;
    let xacts_before = bench.transactions().await?;

    let (herald, started, ingest_rate, batch) = if load.one_transaction {
        // Herald is up and listening before the producer's transaction commits; the clock
        // runs from that commit.
        let herald = Herald::start(cli, &url, Role::Worker, &[]).await?;
        bench.wait_listening(Duration::from_secs(30)).await?;
        let (rate, committed) = bench.enqueue_one_transaction(&app, messages).await?;
        (herald, committed, rate, messages)
    } else {
        let rate = bench.enqueue(&app, messages, load.batch).await?;
        // The clock runs from the moment Herald is started, start-up included.
        let started = Instant::now();
        let herald = Herald::start(cli, &url, Role::Worker, &[]).await?;
        (herald, started, rate, load.batch)
    };
    let all_recorded = bench
        .wait_succeeded(deliveries, Duration::from_secs(600))
        .await?;
    let elapsed = started.elapsed();
    let rss = herald.peak_rss_mib();
    herald.stop()?;
    let xacts = bench.transactions().await? - xacts_before;
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
    let mut report = serde_json::json!({
        "scenario": "burn-down",
        "messages": messages,
        "endpoints": endpoints,
        "deliveries": deliveries,
        "senders": cli.senders,
        "send_message_per_sec": round(ingest_rate),
        "send_message_batch": batch,
        "herald_running_before_commit": load.one_transaction,
        "elapsed_s": round(elapsed.as_secs_f64()),
        "deliveries_per_sec": round(deliveries as f64 / elapsed.as_secs_f64()),
        "deliveries_per_sec_first_to_last": round(if window > 0.0 { arrivals as f64 / window } else { 0.0 }),
        // pg_stat_database: every client of the database, the benchmark's polling included.
        "db_transactions_per_delivery_all_clients": round_to(xacts as f64 / deliveries as f64, 5),
        "herald_peak_rss_mib": rss.map(round),
        "bad_signatures": t.bad_signatures,
        "duplicates": duplicates,
        "lost": lost,
    });
    if let Some(p) = &proxy {
        // Everything Herald's connections did, start-up and shutdown included.
        report["db_per_delivery"] = p.snapshot().per(deliveries);
        report["db_connections"] = p.snapshot().connections.into();
    }
    Ok(report)
}

pub async fn fairness(
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
    let herald = Herald::start(cli, &bench.database_url, Role::Worker, &[]).await?;
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
    herald.stop()?;
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
    messages: usize,
    endpoints: usize,
    hanging: bool,
) -> anyhow::Result<(f64, u64)> {
    let bench = Bench::create(&cli.server, &cli.db_setting).await?;
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
    let herald = Herald::start(
        cli,
        &bench.database_url,
        Role::Worker,
        &[("HERALD_REQUEST_TIMEOUT", "5s")],
    )
    .await?;
    for i in 0..endpoints {
        if !receiver
            .wait_for(&format!("e{i}"), messages, Duration::from_secs(600))
            .await
        {
            bail!("healthy endpoint e{i} did not receive everything");
        }
    }
    let rate = (messages * endpoints) as f64 / started.elapsed().as_secs_f64();
    herald.stop()?;
    let dup = receiver
        .tallies
        .lock()
        .unwrap()
        .by_label
        .values()
        .map(Tally::duplicates)
        .sum();
    receiver.stop().await;
    bench.drop_database(&cli.server).await?;
    Ok((rate, dup))
}

pub async fn hanging(
    cli: &Cli,
    messages: usize,
    endpoints: usize,
) -> anyhow::Result<serde_json::Value> {
    let (alone, d1) = healthy_throughput(cli, messages, endpoints, false).await?;
    let (with_hanging, d2) = healthy_throughput(cli, messages, endpoints, true).await?;
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
