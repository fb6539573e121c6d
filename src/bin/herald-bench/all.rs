//! `all`: every figure issue 5 asks for, with its parameters, each scenario on a database of
//! its own; one table (figure, value, target) and one JSON line with every report.

use serde_json::Value;

use crate::{api::ApiOptions, run_one, Cli, Scenario};

pub async fn all(cli: &Cli) -> anyhow::Result<Value> {
    let api = ApiOptions {
        clients: 32,
        idempotency_keys: false,
        event_ids: false,
        count_db: false,
    };
    let scenarios = [
        (
            "burn_down",
            Scenario::BurnDown {
                messages: 100_000,
                endpoints: 1,
                batch: 1000,
                count_db: false,
                one_transaction: false,
            },
        ),
        // A batch job's producer transaction (Herald already running) against the same number
        // of messages enqueued in transactions of 1000.
        (
            "burn_down_30k",
            Scenario::BurnDown {
                messages: 30_000,
                endpoints: 1,
                batch: 1000,
                count_db: false,
                one_transaction: false,
            },
        ),
        (
            "burn_down_one_tx",
            Scenario::BurnDown {
                messages: 30_000,
                endpoints: 1,
                batch: 30_000,
                count_db: false,
                one_transaction: true,
            },
        ),
        // A separate run through the counting proxy, so its cost stays out of the figures.
        (
            "db_count",
            Scenario::BurnDown {
                messages: 20_000,
                endpoints: 1,
                batch: 1000,
                count_db: true,
                one_transaction: false,
            },
        ),
        (
            "api_ingest",
            Scenario::ApiIngest {
                messages: 100_000,
                api,
            },
        ),
        // As the Svix SDKs send it: an idempotency-key on every POST.
        (
            "api_ingest_keys",
            Scenario::ApiIngest {
                messages: 100_000,
                api: ApiOptions {
                    idempotency_keys: true,
                    ..api
                },
            },
        ),
        (
            "latency",
            Scenario::Latency {
                rate: 1000,
                seconds: 10,
                api,
            },
        ),
        (
            "claim",
            Scenario::Claim {
                backlogs: vec![1000, 100_000, 1_000_000],
                batch: 500,
                endpoints: 10,
                repeats: 20,
                no_vacuum: false,
            },
        ),
        (
            "endpoints",
            Scenario::Endpoints {
                endpoints: 10_000,
                messages: 10,
                hosts: 100,
            },
        ),
    ];
    let mut reports = serde_json::Map::new();
    for (name, scenario) in scenarios {
        eprintln!("herald-bench: running {name}");
        reports.insert(name.into(), run_one(cli, &scenario).await?);
    }
    Ok(Value::Object(reports))
}

/// One table row: figure, value, target, whether the target is met.
struct Row(&'static str, String, &'static str, Option<bool>);

pub fn print(all: &Value) {
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let (bd, db, ingest, keyed, lat, claim, eps) = (
        &all["burn_down"],
        &all["db_count"],
        &all["api_ingest"],
        &all["api_ingest_keys"],
        &all["latency"],
        &all["claim"],
        &all["endpoints"],
    );
    let (one_tx, batched) = (&all["burn_down_one_tx"], &all["burn_down_30k"]);
    let claim_levels: Vec<String> = claim["levels"]
        .as_array()
        .map(|levels| {
            levels
                .iter()
                .map(|l| format!("{}: {} ms", l["backlog"], l["claim_ms_p50"]))
                .collect()
        })
        .unwrap_or_default();
    const DELIVERING: [&str; 6] = [
        "burn_down",
        "burn_down_30k",
        "burn_down_one_tx",
        "db_count",
        "latency",
        "endpoints",
    ];
    let dup: f64 = DELIVERING.iter().map(|k| num(&all[*k]["duplicates"])).sum();
    let lost: f64 = DELIVERING
        .iter()
        .map(|k| num(&all[*k]["lost"]))
        .sum::<f64>()
        + num(&ingest["accepted_but_not_stored"])
        + num(&keyed["accepted_but_not_stored"]);
    let bad: f64 = DELIVERING
        .iter()
        .map(|k| num(&all[*k]["bad_signatures"]))
        .sum();
    let rows = [
        Row(
            "ingest: herald.send_message, 1000 per transaction (msg/s)",
            bd["send_message_per_sec"].to_string(),
            "",
            None,
        ),
        Row(
            "ingest: HTTP API, 32 clients (msg/s)",
            ingest["api_accepted_per_sec"].to_string(),
            ">= 10000",
            Some(num(&ingest["api_accepted_per_sec"]) >= 10_000.0),
        ),
        Row(
            "ingest: HTTP API, 32 clients, idempotency-key each (msg/s)",
            keyed["api_accepted_per_sec"].to_string(),
            "",
            None,
        ),
        Row(
            "burn-down: 100,000 messages -> 1 endpoint (deliveries/s)",
            bd["deliveries_per_sec"].to_string(),
            ">= 10000",
            Some(num(&bd["deliveries_per_sec"]) >= 10_000.0),
        ),
        Row(
            "burn-down of 30,000: one producer transaction / transactions of 1000 (deliveries/s)",
            format!(
                "{} / {}",
                one_tx["deliveries_per_sec"], batched["deliveries_per_sec"]
            ),
            "ratio >= 0.9",
            Some(num(&one_tx["deliveries_per_sec"]) >= 0.9 * num(&batched["deliveries_per_sec"])),
        ),
        Row(
            "latency at 1000 msg/s via API: p50 / p90 / p99 (ms)",
            format!(
                "{} / {} / {}",
                lat["latency_p50_ms"], lat["latency_p90_ms"], lat["latency_p99_ms"]
            ),
            "p99 <= 20",
            Some(num(&lat["latency_p99_ms"]) <= 20.0),
        ),
        Row(
            "claim of 500, p50 by backlog",
            claim_levels.join(", "),
            "no growth (largest/smallest <= 2)",
            Some(num(&claim["claim_p50_ratio_largest_to_smallest"]) <= 2.0),
        ),
        Row(
            "peak RSS, 10,000 endpoints (MiB)",
            eps["herald_peak_rss_mib"].to_string(),
            "< 150",
            Some(num(&eps["herald_peak_rss_mib"]) < 150.0),
        ),
        Row(
            "db per delivery: round trips / statements / transactions",
            format!(
                "{} / {} / {}",
                db["db_per_delivery"]["round_trips"],
                db["db_per_delivery"]["statements"],
                db["db_per_delivery"]["transactions"]
            ),
            "",
            None,
        ),
        Row(
            "duplicates / lost / bad signatures",
            format!("{dup} / {lost} / {bad}"),
            "0 / 0 / 0",
            Some(dup == 0.0 && lost == 0.0 && bad == 0.0),
        ),
    ];
    println!("{:<58} {:<52} {:<34} met", "figure", "value", "target");
    for Row(figure, value, target, met) in rows {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        println!("{figure:<58} {value:<52} {target:<34} {met}");
    }
    println!("{}", serde_json::to_string(all).unwrap_or_default());
}
