//! The subscriber's side: a local HTTP server that verifies every signature with its own
//! implementation (OpenSSL's HMAC, not `herald::signing`), counts every try per endpoint
//! label and `webhook-id`, and can fail a fraction of requests at random or answer slowly.
//!
//! `POST /hook/{label}` answers 204, or 500 for a request picked to fail. A request whose
//! signature does not verify is counted apart and answered 400.

use std::{
    collections::HashMap,
    net::TcpListener,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// What one delivery (one endpoint label, one message) saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tries {
    /// Answered 2xx.
    pub ok: u32,
    /// Answered 500 on purpose.
    pub failed: u32,
}

impl Tries {
    pub fn total(&self) -> u32 {
        self.ok + self.failed
    }
}

#[derive(Default)]
pub struct Tally {
    /// By (endpoint label, webhook-id).
    pub tries: HashMap<(String, String), Tries>,
    /// Requests whose signature, timestamp or headers were wrong.
    pub bad: Vec<String>,
}

impl Tally {
    /// Successful arrivals beyond the first, over all deliveries.
    pub fn duplicates(&self) -> u64 {
        self.tries
            .values()
            .map(|t| u64::from(t.ok.saturating_sub(1)))
            .sum()
    }

    /// Deliveries that arrived (were answered 2xx) at least once.
    pub fn delivered(&self) -> usize {
        self.tries.values().filter(|t| t.ok > 0).count()
    }

    pub fn get(&self, label: &str, id: &str) -> Tries {
        self.tries
            .get(&(label.to_string(), id.to_string()))
            .copied()
            .unwrap_or_default()
    }
}

struct State {
    key: Vec<u8>,
    fail_per_mille: AtomicU32,
    delay_ms: AtomicU64,
    tally: Mutex<Tally>,
}

pub struct Receiver {
    base: String,
    state: Arc<State>,
}

impl Receiver {
    /// Starts the server on a free port. Endpoints must sign with [`Receiver::secret_key`].
    pub fn start() -> Receiver {
        let key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        let state = Arc::new(State {
            key,
            fail_per_mille: AtomicU32::new(0),
            delay_ms: AtomicU64::new(0),
            tally: Mutex::new(Tally::default()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .route("/hook/{label}", web::post().to(hook))
        })
        .workers(2)
        // Idle keep-alive connections are never closed under Herald during a test: a close
        // racing a request would be a failed attempt this receiver never saw.
        .keep_alive(Duration::from_secs(3600))
        .max_connections(100_000)
        .disable_signals()
        .listen(listener)
        .expect("receiver listens")
        .run();
        // Runs until the test's runtime ends.
        actix_rt::spawn(server);
        Receiver { base, state }
    }

    /// The signing key every endpoint of the test uses (stored in `herald.endpoint_secret`).
    pub fn secret_key(&self) -> &[u8] {
        &self.state.key
    }

    pub fn url(&self, label: &str) -> String {
        format!("{}/hook/{label}", self.base)
    }

    /// Answer this fraction of requests (0.0 to 1.0) with 500, picked at random.
    pub fn fail_ratio(&self, ratio: f64) {
        let per_mille = (ratio.clamp(0.0, 1.0) * 1000.0).round() as u32;
        self.state
            .fail_per_mille
            .store(per_mille, Ordering::Relaxed);
    }

    /// Hold every request this long before answering.
    pub fn delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Reads the tally under its lock.
    pub fn tally<T>(&self, read: impl FnOnce(&Tally) -> T) -> T {
        read(&self.state.tally.lock().unwrap())
    }
}

async fn hook(
    req: HttpRequest,
    label: web::Path<String>,
    body: web::Bytes,
    state: web::Data<State>,
) -> HttpResponse {
    let delay = state.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        actix_rt::time::sleep(Duration::from_millis(delay)).await;
    }
    let id = match verify(&state.key, &req, &body) {
        Ok(id) => id,
        Err(problem) => {
            state.tally.lock().unwrap().bad.push(problem);
            return HttpResponse::BadRequest().finish();
        }
    };
    let fail = rand::random::<u32>() % 1000 < state.fail_per_mille.load(Ordering::Relaxed);
    {
        let mut tally = state.tally.lock().unwrap();
        let tries = tally.tries.entry((label.into_inner(), id)).or_default();
        if fail {
            tries.failed += 1;
        } else {
            tries.ok += 1;
        }
    }
    if fail {
        HttpResponse::InternalServerError().finish()
    } else {
        HttpResponse::NoContent().finish()
    }
}

/// Standard Webhooks verification, as a receiver in another stack would write it: returns
/// the `webhook-id`, or what is wrong.
#[path = "../common/standard_webhooks.rs"]
mod standard_webhooks;

/// The request's signature, checked with OpenSSL (and its timestamp, within 5 minutes).
fn verify(key: &[u8], req: &HttpRequest, body: &[u8]) -> Result<String, String> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    standard_webhooks::verify(key, header, body, Some(300))
}
