//! The benchmark's receiver: a local HTTP server that verifies every signature and counts
//! what arrives, per message id, with its latency.

use std::{
    collections::HashMap,
    net::TcpListener,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use herald::signing::Secret;

#[derive(Default)]
pub struct Tally {
    /// Arrivals per webhook-id.
    pub seen: HashMap<String, u32>,
    pub bad_signatures: u64,
    /// Enqueue-to-receive latencies, in microseconds.
    pub latencies_us: Vec<u64>,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
}

impl Tally {
    pub fn received(&self) -> usize {
        self.seen.len()
    }
    pub fn duplicates(&self) -> u64 {
        self.seen
            .values()
            .map(|n| (*n as u64).saturating_sub(1))
            .sum()
    }
}

pub struct Receiver {
    pub url: String,
    pub tally: Arc<Mutex<Tally>>,
    handle: actix_web::dev::ServerHandle,
}

struct Shared {
    secret: Secret,
    tally: Arc<Mutex<Tally>>,
}

impl Receiver {
    pub fn start(secret: Secret, workers: usize) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let tally = Arc::new(Mutex::new(Tally::default()));
        let shared = web::Data::new(Shared {
            secret,
            tally: tally.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::PayloadConfig::new(4 << 20))
                .route("/hook", web::post().to(hook))
        })
        .workers(workers)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(Receiver { url, tally, handle })
    }

    /// Waits until `n` distinct messages arrived, or `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.tally.lock().unwrap().received() >= n {
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

async fn hook(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
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
    let mut tally = shared.tally.lock().unwrap();
    if !valid {
        tally.bad_signatures += 1;
        return HttpResponse::Unauthorized().finish();
    }
    *tally.seen.entry(id.to_string()).or_default() += 1;
    if let Some(sent) = sent_us {
        tally.latencies_us.push((now_us - sent).max(0) as u64);
    }
    tally.first.get_or_insert(now);
    tally.last = Some(now);
    HttpResponse::NoContent().finish()
}
