//! Inbound webhooks: how many Stripe-signed requests one source accepts (verified and
//! written) with concurrent clients (`ingest-receive`), and receipt-to-forward latency at a
//! steady offered rate (`ingest-latency`).

use std::{rc::Rc, time::Duration};

use anyhow::bail;
use hmac::{Hmac, Mac};

use crate::{
    api::{drive, measure, Maker, Measured, Request},
    receiver::Receiver,
    setup::{round, Bench, Herald, Role},
    Cli,
};

const SECRET: &str = "whsec_bench_stripe_source";

/// A Stripe source (with its token) and its application, made in SQL.
async fn stripe_source(bench: &Bench) -> anyhow::Result<(String, String)> {
    let token = format!("bench{}", uuid::Uuid::new_v4().simple());
    let app: String = sqlx::query_scalar(
        "WITH app AS (INSERT INTO herald.application (name) VALUES ('Stripe (bench)') RETURNING id) \
         INSERT INTO herald.ingest_source (name, type, config, token, app_id) \
         SELECT 'Stripe (bench)', 'stripe', jsonb_build_object('secret', $1::text), $2, app.id \
         FROM app RETURNING app_id",
    )
    .bind(SECRET)
    .bind(&token)
    .fetch_one(&bench.pool)
    .await?;
    Ok((token, app))
}

/// Stripe events to `token`, each signed as Stripe signs, its body stamped with `t`.
fn stripe_events(token: String) -> Maker {
    Rc::new(move |seq, t| {
        let body = format!(
            r#"{{"id":"evt_bench_{seq}","object":"event","type":"charge.succeeded","t":{t},"data":{{"object":{{"amount":1000}}}}}}"#
        );
        let ts = chrono::Utc::now().timestamp();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key");
        mac.update(format!("{ts}.{body}").as_bytes());
        let sig: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Request {
            path: format!("/ingest/{token}"),
            headers: vec![("stripe-signature".into(), format!("t={ts},v1={sig}"))],
            body,
            accepted: 200,
        }
    })
}

/// `clients` connections post `events` Stripe events to one source as fast as Herald
/// answers. Herald runs the API only: the figure is what it verifies and writes (each event
/// with its log row, its message and a delivery to the source's one endpoint).
pub async fn receive(
    cli: &Cli,
    bench: &Bench,
    events: usize,
    clients: usize,
) -> anyhow::Result<serde_json::Value> {
    let (token, app) = stripe_source(bench).await?;
    bench
        .add_endpoint(&app, "http://127.0.0.1:9/never-called", None)
        .await?;
    let herald = Herald::start(cli, &bench.database_url, Role::Api, &[]).await?;
    let addr = herald.api.expect("the API runs");
    drive(
        addr,
        clients,
        2000,
        1_000_000_000,
        stripe_events(token.clone()),
        None,
    )
    .await?;
    let load = drive(addr, clients, events, 0, stripe_events(token), None);
    let Measured {
        run,
        elapsed,
        usage,
        rss,
    } = measure(bench, herald, None, load).await?;
    let logged = bench
        .count(
            "SELECT count(*) FROM herald.ingest_event WHERE outcome = 'accepted' \
             AND substr(event_key, 11)::bigint < 1000000000",
        )
        .await?;
    let forwarded = bench
        .count(&format!(
            "SELECT count(*) FROM herald.delivery WHERE app_id = '{app}'"
        ))
        .await?;
    let mut report = serde_json::json!({
        "scenario": "ingest-receive",
        "clients": clients,
        "events": events,
        "accepted_per_sec": round(run.accepted as f64 / elapsed),
        "accepted_but_not_logged": run.accepted as i64 - logged,
        "delivery_rows": forwarded,
        "herald_peak_rss_mib": rss.map(round),
    });
    run.add_to(&mut report);
    usage.add_to(&mut report);
    Ok(report)
}

/// Offers `rate` Stripe events per second to one source for `seconds` (open loop, as
/// `latency`); Herald runs API and dispatcher and forwards each to a receiver, which
/// measures from the event's scheduled send time to its arrival.
pub async fn latency(
    cli: &Cli,
    bench: &Bench,
    rate: u32,
    seconds: u64,
    clients: usize,
) -> anyhow::Result<serde_json::Value> {
    let receiver = Receiver::start(bench.secret.clone(), 1)?;
    let (token, app) = stripe_source(bench).await?;
    bench
        .add_endpoint(&app, &receiver.url("forwarded"), None)
        .await?;
    let herald = Herald::start(cli, &bench.database_url, Role::All, &[]).await?;
    let addr = herald.api.expect("the API runs");
    // Warm-up, then the measured run (its events numbered from 0).
    let warm = drive(
        addr,
        clients,
        rate as usize,
        1_000_000_000,
        stripe_events(token.clone()),
        Some(rate),
    )
    .await?;
    if !receiver
        .wait_for("forwarded", warm.accepted, Duration::from_secs(30))
        .await
    {
        bail!("the warm-up's events were not all forwarded");
    }
    receiver.tallies.lock().unwrap().by_label.clear();
    let n = rate as usize * seconds as usize;
    let run = drive(addr, clients, n, 0, stripe_events(token), Some(rate)).await?;
    let all = receiver
        .wait_for("forwarded", run.accepted, Duration::from_secs(60))
        .await;
    let rss = herald.peak_rss_mib();
    herald.stop()?;
    let tallies = receiver.tallies.clone();
    receiver.stop().await;
    if !all {
        bail!("not every accepted event was forwarded within 60 s");
    }
    let t = tallies.lock().unwrap();
    let measured = &t.by_label["forwarded"];
    let mut report = serde_json::json!({
        "scenario": "ingest-latency",
        "offered_per_sec": rate,
        "seconds": seconds,
        "clients": clients,
        "herald_peak_rss_mib": rss.map(round),
        "bad_signatures": t.bad_signatures,
    });
    run.add_to(&mut report);
    measured.add_to(&mut report, "receipt_to_forward", run.accepted);
    Ok(report)
}
