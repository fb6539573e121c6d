//! The benchmark's receiver: a local HTTP server that verifies every signature and counts
//! what arrives, per endpoint label and message id, with enqueue-to-receive latency.
//!
//! `POST /hook/{label}` answers 204; `POST /hang/{label}` holds the request far longer than
//! Herald's timeout (a receiver that hangs).

use std::{
    collections::HashMap,
    net::TcpListener,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use herald::signing::Secret;

use crate::setup::round;

#[derive(Default)]
pub struct Tally {
    /// Arrivals per webhook-id.
    pub seen: HashMap<String, u32>,
    /// Enqueue-to-receive latencies, in microseconds.
    pub latencies_us: Vec<u64>,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
}

impl Tally {
    pub fn received(&self) -> usize {
        self.seen.len()
    }
    pub fn arrivals(&self) -> u64 {
        self.seen.values().map(|n| *n as u64).sum()
    }
    pub fn duplicates(&self) -> u64 {
        self.seen
            .values()
            .map(|n| (*n as u64).saturating_sub(1))
            .sum()
    }
    /// Latency percentile in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        Some(v[i] as f64 / 1000.0)
    }
}

impl Tally {
    /// Arrival latencies under `name` (`{name}_p50_ms`, p90, p99, max), duplicates, and how
    /// many of `accepted` never arrived.
    pub fn add_to(&self, report: &mut serde_json::Value, name: &str, accepted: usize) {
        for (label, p) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("max", 100.0)] {
            report[format!("{name}_{label}_ms")] = self.percentile_ms(p).map(round).into();
        }
        report["duplicates"] = self.duplicates().into();
        report["lost"] = accepted.saturating_sub(self.received()).into();
    }
}

#[derive(Default)]
pub struct Tallies {
    pub by_label: HashMap<String, Tally>,
    pub bad_signatures: u64,
}

pub struct Receiver {
    /// One base URL per address listened on.
    bases: Vec<String>,
    pub tallies: Arc<Mutex<Tallies>>,
    handle: actix_web::dev::ServerHandle,
}

struct Shared {
    secret: Secret,
    tallies: Arc<Mutex<Tallies>>,
}

impl Receiver {
    pub fn start(secret: Secret, workers: usize) -> std::io::Result<Receiver> {
        Receiver::start_on(secret, workers, 1)
    }

    /// The same, listening on `hosts` loopback addresses (127.0.1.1, 127.0.1.2, ...), so
    /// that endpoints can be spread over distinct destinations (each gets its own
    /// connections in Herald).
    pub fn start_on(secret: Secret, workers: usize, hosts: usize) -> std::io::Result<Receiver> {
        let mut listeners = vec![TcpListener::bind("127.0.0.1:0")?];
        for i in 1..hosts {
            let ip = std::net::Ipv4Addr::new(127, 1 + (i / 250) as u8, 0, 1 + (i % 250) as u8);
            listeners.push(TcpListener::bind((ip, 0))?);
        }
        let bases = listeners
            .iter()
            .map(|l| Ok(format!("http://{}", l.local_addr()?)))
            .collect::<std::io::Result<Vec<String>>>()?;
        let tallies = Arc::new(Mutex::new(Tallies::default()));
        let shared = web::Data::new(Shared {
            secret,
            tallies: tallies.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::PayloadConfig::new(4 << 20))
                .route("/hook/{label}", web::post().to(hook))
                .route("/hang/{label}", web::post().to(hang))
                .route("/slow/{label}", web::post().to(slow))
        })
        .workers(workers)
        .max_connections(100_000)
        .disable_signals();
        let mut server = server;
        for listener in listeners {
            server = server.listen(listener)?;
        }
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(Receiver {
            bases,
            tallies,
            handle,
        })
    }

    pub fn url(&self, label: &str) -> String {
        self.url_on(0, label)
    }

    /// The URL of `label` on the `host`-th address (modulo how many there are).
    pub fn url_on(&self, host: usize, label: &str) -> String {
        format!("{}/hook/{label}", self.bases[host % self.bases.len()])
    }

    /// A receiver that answers after 1 ms (a receiver's own work, on a fast network).
    pub fn slow_url(&self, label: &str) -> String {
        format!("{}/slow/{label}", self.bases[0])
    }

    pub fn hanging_url(&self, label: &str) -> String {
        format!("{}/hang/{label}", self.bases[0])
    }

    pub fn received(&self, label: &str) -> usize {
        self.tallies
            .lock()
            .unwrap()
            .by_label
            .get(label)
            .map(Tally::received)
            .unwrap_or(0)
    }

    /// Waits until `n` distinct messages arrived at `label`, or `timeout`.
    pub async fn wait_for(&self, label: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.received(label) >= n {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn slow(
    req: HttpRequest,
    label: web::Path<String>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    actix_rt::time::sleep(Duration::from_millis(1)).await;
    hook(req, label, body, shared).await
}

async fn hook(
    req: HttpRequest,
    label: web::Path<String>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let now = Instant::now();
    let now_us = chrono::Utc::now().timestamp_micros();
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let (id, ts, sig) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let expected = shared.secret.sign(id, ts.parse().unwrap_or(0), &body);
    let valid = sig.split(' ').any(|s| s == expected);
    // Payloads carry their enqueue time: {"t": <unix micros>, ...}.
    let sent_us = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("t").and_then(|t| t.as_i64()));
    let mut tallies = shared.tallies.lock().unwrap();
    if !valid {
        tallies.bad_signatures += 1;
        return HttpResponse::Unauthorized().finish();
    }
    let tally = tallies.by_label.entry(label.into_inner()).or_default();
    *tally.seen.entry(id.to_string()).or_default() += 1;
    if let Some(sent) = sent_us {
        tally.latencies_us.push((now_us - sent).max(0) as u64);
    }
    tally.first.get_or_insert(now);
    tally.last = Some(now);
    HttpResponse::NoContent().finish()
}

async fn hang() -> HttpResponse {
    actix_rt::time::sleep(Duration::from_secs(600)).await;
    HttpResponse::NoContent().finish()
}
