//! The demo's receiver: a local HTTP server that verifies every delivery's signature, as a
//! merchant's would, and prints what it gets. `/ok` accepts; `/flaky` answers 500 until it
//! is told to recover.

use std::{
    net::TcpListener,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use actix_web::{dev::ServerHandle, web, App, HttpRequest, HttpResponse, HttpServer};

use crate::signing::{self, Secret};

/// What the receiver saw, for the demo's script to wait on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A delivery accepted (its signature verified): route, message id, event type.
    Accepted { route: &'static str, msg_id: String },
    /// A delivery refused with 500 while `/flaky` fails.
    Refused { msg_id: String },
    /// A delivery whose signature did not verify (should never happen).
    BadSignature { msg_id: String, why: String },
}

struct State {
    ok_secret: Secret,
    flaky_secret: Secret,
    flaky_fails: AtomicBool,
    seen: tokio::sync::mpsc::UnboundedSender<Seen>,
}

pub struct Receiver {
    pub base: String,
    handle: ServerHandle,
    state: Arc<State>,
}

impl Receiver {
    /// Starts on a free loopback port; every delivery seen goes to `seen`.
    pub fn start(
        ok_secret: Secret,
        flaky_secret: Secret,
        seen: tokio::sync::mpsc::UnboundedSender<Seen>,
    ) -> std::io::Result<Receiver> {
        let state = Arc::new(State {
            ok_secret,
            flaky_secret,
            flaky_fails: AtomicBool::new(true),
            seen,
        });
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/ok", web::post().to(ok))
                .route("/flaky", web::post().to(flaky))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(Receiver {
            base,
            handle,
            state,
        })
    }

    /// `/flaky` accepts from now on.
    pub fn recover(&self) {
        self.state.flaky_fails.store(false, Ordering::SeqCst);
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

async fn ok(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    receive(&state, "/ok", &state.ok_secret, &req, &body)
}

async fn flaky(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if state.flaky_fails.load(Ordering::SeqCst) {
        let msg_id = header(&req, "webhook-id");
        let _ = state.seen.send(Seen::Refused { msg_id });
        return HttpResponse::InternalServerError().body("the demo's flaky receiver is down");
    }
    receive(&state, "/flaky", &state.flaky_secret, &req, &body)
}

/// Verifies as a receiver must (Standard Webhooks: id, timestamp, body, 5 minutes).
fn receive(
    state: &State,
    route: &'static str,
    secret: &Secret,
    req: &HttpRequest,
    body: &[u8],
) -> HttpResponse {
    let msg_id = header(req, "webhook-id");
    let timestamp = header(req, "webhook-timestamp").parse().unwrap_or(0);
    let signature = header(req, "webhook-signature");
    let now = chrono::Utc::now().timestamp();
    match signing::verify(secret, &msg_id, timestamp, body, &signature, now, 300) {
        Ok(()) => {
            let _ = state.seen.send(Seen::Accepted { route, msg_id });
            HttpResponse::NoContent().finish()
        }
        Err(e) => {
            let _ = state.seen.send(Seen::BadSignature {
                msg_id,
                why: e.to_string(),
            });
            HttpResponse::BadRequest().body(e.to_string())
        }
    }
}

fn header(req: &HttpRequest, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}
