//! `ordered`: one ordered endpoint beside unordered ones. Every message goes to all of them;
//! every receiver answers after 1 ms. The ordered endpoint takes one delivery at a time, so
//! its rate is one over the round trip (claim, send, answer, outcome written, next claim);
//! the unordered ones show that it holds nothing else back.

use std::time::Duration;

use anyhow::bail;

use crate::{
    receiver::Receiver,
    setup::{round, Bench, Herald, Role},
    Cli,
};

pub async fn ordered(
    cli: &Cli,
    bench: &Bench,
    messages: usize,
    unordered: usize,
) -> anyhow::Result<serde_json::Value> {
    let receiver = Receiver::start(bench.secret.clone(), 2)?;
    let app = bench.create_app("bench").await?;
    let ordered_url = receiver.slow_url("ordered");
    bench.add_endpoint(&app, &ordered_url, None).await?;
    sqlx::query("UPDATE herald.endpoint SET ordered = true WHERE url = $1")
        .bind(&ordered_url)
        .execute(&bench.pool)
        .await?;
    let labels: Vec<String> = (0..unordered).map(|i| format!("u{i}")).collect();
    for label in &labels {
        bench
            .add_endpoint(&app, &receiver.slow_url(label), None)
            .await?;
    }
    bench.enqueue(&app, messages, 1000).await?;
    let herald = Herald::start(cli, &bench.database_url, Role::Worker, &[]).await?;
    let mut all = receiver
        .wait_for("ordered", messages, Duration::from_secs(1800))
        .await;
    for label in &labels {
        all &= receiver
            .wait_for(label, messages, Duration::from_secs(60))
            .await;
    }
    let rss = herald.peak_rss_mib();
    herald.stop()?;
    let tallies = receiver.tallies.clone();
    receiver.stop().await;
    if !all {
        bail!("not every message arrived at every endpoint");
    }
    let t = tallies.lock().unwrap();
    let rate = |label: &str| {
        let tally = &t.by_label[label];
        let span = tally.last? - tally.first?;
        Some(tally.received() as f64 / span.as_secs_f64().max(1e-9))
    };
    let ordered_rate = rate("ordered");
    let unordered_rates: Vec<f64> = labels.iter().filter_map(|l| rate(l)).collect();
    let duplicates: u64 = t.by_label.values().map(|t| t.duplicates()).sum();
    Ok(serde_json::json!({
        "scenario": "ordered",
        "messages": messages,
        "unordered_endpoints": unordered,
        "receiver_delay_ms": 1,
        "ordered_per_sec": ordered_rate.map(round),
        "ordered_round_trip_ms": ordered_rate.map(|r| round(1000.0 / r)),
        "unordered_per_sec_each_min": unordered_rates.iter().cloned().reduce(f64::min).map(round),
        "unordered_per_sec_each_max": unordered_rates.iter().cloned().reduce(f64::max).map(round),
        "duplicates": duplicates,
        "bad_signatures": t.bad_signatures,
        "herald_peak_rss_mib": rss.map(round),
    }))
}
