//! `endpoints`: Herald's memory with many endpoints. One application with E endpoints
//! spread over H receiver addresses (distinct destinations, so distinct connections); M
//! messages are fanned out to all of them (M × E deliveries), and the peak resident memory
//! of the Herald process is read while it drains them.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::{
    receiver::Receiver,
    setup::{round, Bench, Herald, Role},
    Cli,
};

pub async fn endpoints(
    cli: &Cli,
    bench: &Bench,
    endpoints: usize,
    messages: usize,
    hosts: usize,
) -> anyhow::Result<serde_json::Value> {
    let receiver = Receiver::start_on(bench.secret.clone(), 1, hosts)?;
    let app = bench.create_app("bench").await?;
    let urls: Vec<String> = (0..endpoints)
        .map(|i| receiver.url_on(i, &format!("e{i}")))
        .collect();
    bench.add_endpoints_bulk(&app, &urls).await?;
    // One message per transaction: each fans out to every endpoint.
    let enqueue_rate = bench.enqueue(&app, messages, 1).await?;
    let deliveries = endpoints * messages;

    let started = Instant::now();
    let herald = Herald::start(cli, &bench.database_url, Role::Worker, &[]).await?;
    let all = bench
        .wait_succeeded(deliveries, Duration::from_secs(600))
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let rss = herald.peak_rss_mib();
    herald.stop()?;
    let tallies = receiver.tallies.clone();
    receiver.stop().await;
    if !all {
        bail!("Herald did not deliver everything within the time limit");
    }
    let t = tallies.lock().unwrap();
    let received: usize = t.by_label.values().map(|t| t.received()).sum();
    let duplicates: u64 = t.by_label.values().map(|t| t.duplicates()).sum();
    Ok(serde_json::json!({
        "scenario": "endpoints",
        "endpoints": endpoints,
        "receiver_addresses": hosts,
        "messages": messages,
        "deliveries": deliveries,
        "fan_out_deliveries_per_sec_enqueued": round(enqueue_rate * endpoints as f64),
        "elapsed_s": round(elapsed),
        "deliveries_per_sec": round(deliveries as f64 / elapsed),
        "herald_peak_rss_mib": rss.map(round),
        "endpoints_reached": t.by_label.len(),
        "duplicates": duplicates,
        "lost": deliveries.saturating_sub(received),
        "bad_signatures": t.bad_signatures,
    }))
}
