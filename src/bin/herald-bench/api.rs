//! Scenarios through the HTTP API: how many messages it accepts with concurrent clients
//! (`api-ingest`), and enqueue-to-receive latency at a steady offered rate (`latency`).

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::bail;

use crate::{
    client::Conn,
    pgcount::{self, Proxy},
    receiver::Receiver,
    setup::{self, percentile, round, Bench, Herald, Role, TOKEN},
    Cli,
};

const EVENT: &str = "payment.confirmed";

/// Options shared by both scenarios.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct ApiOptions {
    /// Concurrent clients, each on its own keep-alive connection.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Send an `idempotency-key` header with every request (the Svix SDKs do).
    #[arg(long)]
    pub idempotency_keys: bool,
    /// Give every message an `eventId`.
    #[arg(long)]
    pub event_ids: bool,
    /// Route Herald's database connections through a counting proxy and report round
    /// trips, statements and transactions per message.
    #[arg(long)]
    pub count_db: bool,
}

/// The request body of message `seq`, stamped with `t` (unix micros).
fn body(seq: u64, t: i64, opts: &ApiOptions, event_type: &str) -> String {
    let event_id = if opts.event_ids {
        format!(r#", "eventId": "bench-{seq}""#)
    } else {
        String::new()
    };
    format!(
        r#"{{"eventType": "{event_type}"{event_id}, "payload": {{"t": {t}, "seq": {seq}, "type": "{event_type}", "amount": "10.00"}}}}"#
    )
}

/// A request of a load run: its path, headers and body, and the status that accepts it.
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub accepted: u16,
}

/// Builds request `seq`, stamped with `t` (unix micros).
pub type Maker = Rc<dyn Fn(u64, i64) -> Request>;

/// Message creates through `POST /api/v1/app/bench/msg`.
pub fn messages(opts: ApiOptions, event_type: &'static str) -> Maker {
    Rc::new(move |seq, t| {
        let mut headers = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
        if opts.idempotency_keys {
            headers.push((
                "idempotency-key".into(),
                format!("bench-{seq}-{}", std::process::id()),
            ));
        }
        Request {
            path: "/api/v1/app/bench/msg".into(),
            headers,
            body: body(seq, t, &opts, event_type),
            accepted: 202,
        }
    })
}

/// Sends one request; `Ok(true)` when it was accepted.
async fn send(conn: &mut Conn, r: Request) -> anyhow::Result<bool> {
    let headers: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let response = conn.post(&r.path, &headers, r.body.as_bytes()).await?;
    if response.status != r.accepted {
        // The first few refusals are worth seeing; a flood of them is not.
        static SHOWN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        if SHOWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 5 {
            eprintln!(
                "herald-bench: refused with {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
    }
    Ok(response.status == r.accepted)
}

/// Herald for an API scenario, behind the counting proxy if asked.
async fn start(
    cli: &Cli,
    bench: &Bench,
    role: Role,
    opts: &ApiOptions,
) -> anyhow::Result<(Herald, Option<Proxy>)> {
    let (proxy, url) = Proxy::if_asked(opts.count_db, &bench.database_url)?;
    Ok((Herald::start(cli, &url, role, &[]).await?, proxy))
}

/// `clients` connections send `messages` messages as fast as Herald answers (closed loop).
/// Herald runs the API only (no dispatcher), so the figure is what the API accepts; every
/// message is fanned out to one endpoint, so a delivery row is written for each.
pub async fn ingest(
    cli: &Cli,
    bench: &Bench,
    messages: usize,
    opts: ApiOptions,
) -> anyhow::Result<serde_json::Value> {
    let app = bench.create_app("bench").await?;
    bench
        .add_endpoint(&app, "http://127.0.0.1:9/never-called", None)
        .await?;
    let (herald, proxy) = start(cli, bench, Role::Api, &opts).await?;
    let addr = herald.api.expect("the API runs");

    // Warm-up: connections, prepared statements, the server's first requests.
    drive(
        addr,
        opts.clients,
        2000,
        1_000_000_000,
        self::messages(opts, EVENT),
        None,
    )
    .await?;
    let load = drive(
        addr,
        opts.clients,
        messages,
        0,
        self::messages(opts, EVENT),
        None,
    );
    let Measured {
        run,
        elapsed,
        usage,
        rss,
    } = measure(bench, herald, proxy.as_ref(), load).await?;
    let stored = bench
        .count("SELECT count(*) FROM herald.message WHERE (payload::json->>'seq')::bigint < 1000000000")
        .await?;
    let deliveries = bench.count("SELECT count(*) FROM herald.delivery").await?;
    let mut report = serde_json::json!({
        "scenario": "api-ingest",
        "clients": opts.clients,
        "messages": messages,
        "idempotency_keys": opts.idempotency_keys,
        "event_ids": opts.event_ids,
        "api_accepted_per_sec": round(run.accepted as f64 / elapsed),
        "accepted_but_not_stored": run.accepted as i64 - stored,
        "delivery_rows": deliveries,
        "herald_peak_rss_mib": rss.map(round),
    });
    run.add_to(&mut report);
    usage.add_to(&mut report);
    Ok(report)
}

/// Offers `rate` messages per second through the API for `seconds` (open loop: each
/// message has its scheduled send time, and that is the time its latency counts from, so a
/// slow answer that delays later sends shows in their latency too). Herald runs API and
/// dispatcher; the receiver measures enqueue-to-receive latency.
pub async fn latency(
    cli: &Cli,
    bench: &Bench,
    rate: u32,
    seconds: u64,
    opts: ApiOptions,
) -> anyhow::Result<serde_json::Value> {
    let receiver = Receiver::start(bench.secret.clone(), 1)?;
    let app = bench.create_app("bench").await?;
    bench
        .add_endpoint(&app, &receiver.url("warm-up"), Some("warm.up"))
        .await?;
    bench
        .add_endpoint(&app, &receiver.url("measured"), Some(EVENT))
        .await?;
    let (herald, proxy) = start(cli, bench, Role::All, &opts).await?;
    let addr = herald.api.expect("the API runs");

    let warm_up = drive(
        addr,
        opts.clients,
        rate as usize,
        1_000_000_000,
        self::messages(opts, "warm.up"),
        Some(rate),
    )
    .await?;
    receiver
        .wait_for("warm-up", warm_up.accepted, Duration::from_secs(30))
        .await;
    let before = Usage::read(bench, &herald, proxy.as_ref()).await?;
    let n = rate as usize * seconds as usize;
    let run = drive(
        addr,
        opts.clients,
        n,
        0,
        self::messages(opts, EVENT),
        Some(rate),
    )
    .await?;
    let all_arrived = receiver
        .wait_for("measured", run.accepted, Duration::from_secs(60))
        .await;
    let usage = Usage::read(bench, &herald, proxy.as_ref())
        .await?
        .since(&before, run.accepted);
    let rss = herald.peak_rss_mib();
    herald.stop()?;
    let tallies = receiver.tallies.clone();
    receiver.stop().await;
    if !all_arrived {
        bail!("not every accepted message arrived within 60 s");
    }
    let t = tallies.lock().unwrap();
    let measured = &t.by_label["measured"];
    let mut report = serde_json::json!({
        "scenario": "latency",
        "offered_per_sec": rate,
        "seconds": seconds,
        "clients": opts.clients,
        "herald_peak_rss_mib": rss.map(round),
        "bad_signatures": t.bad_signatures,
    });
    run.add_to(&mut report);
    measured.add_to(&mut report, "latency", run.accepted);
    usage.add_to(&mut report);
    Ok(report)
}

/// A closed-loop run's load, with what it cost.
pub struct Measured {
    pub run: Run,
    pub elapsed: f64,
    pub usage: Usage,
    pub rss: Option<f64>,
}

/// Runs `load` against a warmed-up `herald`, then stops it: the run, its wall time, the CPU
/// and database work it cost, and Herald's peak RSS.
pub async fn measure(
    bench: &Bench,
    herald: Herald,
    proxy: Option<&Proxy>,
    load: impl std::future::Future<Output = anyhow::Result<Run>>,
) -> anyhow::Result<Measured> {
    let before = Usage::read(bench, &herald, proxy).await?;
    let started = Instant::now();
    let run = load.await?;
    let elapsed = started.elapsed().as_secs_f64();
    let usage = Usage::read(bench, &herald, proxy)
        .await?
        .since(&before, run.accepted);
    let rss = herald.peak_rss_mib();
    herald.stop()?;
    Ok(Measured {
        run,
        elapsed,
        usage,
        rss,
    })
}

/// Where the CPU went during a run, and what Herald asked of the database.
pub struct Usage {
    herald_s: Option<f64>,
    postgres_s: f64,
    client_s: Option<f64>,
    machine: Option<(u64, u64)>,
    db: Option<pgcount::Snapshot>,
    /// Set by `since`: the figures are per this many messages.
    messages: usize,
    machine_busy: Option<f64>,
}

impl Usage {
    pub async fn read(
        bench: &Bench,
        herald: &Herald,
        proxy: Option<&Proxy>,
    ) -> anyhow::Result<Usage> {
        Ok(Usage {
            herald_s: herald.cpu_seconds(),
            postgres_s: bench.herald_backends_cpu().await?,
            client_s: setup::process_cpu_seconds(std::process::id()),
            machine: setup::machine_cpu(),
            db: proxy.map(Proxy::snapshot),
            messages: 0,
            machine_busy: None,
        })
    }

    pub fn since(self, before: &Usage, messages: usize) -> Usage {
        let minus = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
        Usage {
            herald_s: minus(self.herald_s, before.herald_s),
            postgres_s: self.postgres_s - before.postgres_s,
            client_s: minus(self.client_s, before.client_s),
            machine_busy: setup::busy_share(before.machine, self.machine),
            db: self.db.zip(before.db).map(|(a, b)| a.since(b)),
            machine: None,
            messages,
        }
    }

    pub fn add_to(&self, report: &mut serde_json::Value) {
        let per_msg_us = |s: f64| round(s / self.messages.max(1) as f64 * 1e6);
        report["cpu_us_per_message"] = serde_json::json!({
            "herald": self.herald_s.map(per_msg_us),
            "postgres_for_herald": per_msg_us(self.postgres_s),
            "load_client": self.client_s.map(per_msg_us),
        });
        report["machine_cpu_busy"] = self.machine_busy.map(round).into();
        if let Some(db) = self.db {
            report["db_per_message"] = db.per(self.messages);
        }
    }
}

/// What a load run sent and got back.
#[derive(Default)]
pub struct Run {
    pub accepted: usize,
    pub refused: usize,
    /// Request times, from the scheduled send time (open loop) or the send (closed loop).
    pub latencies_ms: Vec<f64>,
    /// Open loop: how late each send started against its schedule (the generator's lag).
    pub lag_ms: Vec<f64>,
    pub sent_per_sec: f64,
}

impl Run {
    /// The load side's figures: answers, request times and, open loop, the send rate and
    /// the generator's lag.
    pub fn add_to(&self, report: &mut serde_json::Value) {
        report["accepted"] = self.accepted.into();
        report["refused"] = self.refused.into();
        report["request_p50_ms"] = percentile(&self.latencies_ms, 50.0).map(round).into();
        report["request_p99_ms"] = percentile(&self.latencies_ms, 99.0).map(round).into();
        if !self.lag_ms.is_empty() {
            report["sent_per_sec"] = round(self.sent_per_sec).into();
            report["send_lag_p99_ms"] = percentile(&self.lag_ms, 99.0).map(round).into();
        }
    }
}

/// `clients` connections share `n` requests made by `make`, numbered from `first_seq`: as
/// fast as answers come (closed loop, `rate` None) or at `rate` per second (open loop:
/// request i is due at start + i / rate and stamped with that time, so a slow answer that
/// delays later sends shows in their latency too).
pub async fn drive(
    addr: std::net::SocketAddr,
    clients: usize,
    n: usize,
    first_seq: u64,
    make: Maker,
    rate: Option<u32>,
) -> anyhow::Result<Run> {
    let next = Rc::new(Cell::new(0usize));
    let result = Rc::new(RefCell::new(Run::default()));
    let period = rate.map(|r| Duration::from_secs_f64(1.0 / r as f64));
    let start = Instant::now() + Duration::from_millis(10);
    let start_us = chrono::Utc::now().timestamp_micros() + 10_000;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, result, make) = (next.clone(), result.clone(), make.clone());
        let mut conn = Conn::connect(addr).await?;
        tasks.push(actix_rt::spawn(async move {
            loop {
                // The next message goes to the first free connection.
                let i = next.get();
                if i >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                next.set(i + 1);
                let (due, t) = match period {
                    Some(period) => {
                        let offset = period * i as u32;
                        actix_rt::time::sleep_until((start + offset).into()).await;
                        (start + offset, start_us + offset.as_micros() as i64)
                    }
                    None => (Instant::now(), chrono::Utc::now().timestamp_micros()),
                };
                let lag = Instant::now().saturating_duration_since(due);
                let ok = send(&mut conn, make(first_seq + i as u64, t)).await?;
                let mut r = result.borrow_mut();
                r.latencies_ms
                    .push(Instant::now().saturating_duration_since(due).as_secs_f64() * 1000.0);
                if period.is_some() {
                    r.lag_ms.push(lag.as_secs_f64() * 1000.0);
                }
                if ok {
                    r.accepted += 1;
                } else {
                    r.refused += 1;
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut run = Rc::try_unwrap(result)
        .map(RefCell::into_inner)
        .unwrap_or_default();
    run.sent_per_sec = n as f64 / elapsed;
    Ok(run)
}
