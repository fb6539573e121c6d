//! A receiver for Herald's webhooks that verifies them by hand, with the `hmac`, `sha2` and
//! `base64` crates (and actix-web for the server).
//!
//! ```sh
//! WEBHOOK_SECRET=whsec_... PORT=8000 cargo run --example receiver
//! ```
//!
//! It answers 200 to a genuine delivery (processing each `webhook-id` once) and 400, with the
//! reason, to anything else. The check itself is [`verify`].

use std::{
    collections::HashSet,
    net::TcpListener,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use actix_web::{dev::Server, web, App, HttpRequest, HttpResponse, HttpServer};
use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TOLERANCE_SECONDS: u64 = 5 * 60;

/// Checks one delivery: the three `webhook-*` header values, the raw body as received, and
/// the current unix time. `Err` says why it is not a genuine, fresh delivery.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: u64,
) -> Result<(), &'static str> {
    if id.is_empty() || timestamp.is_empty() || signatures.is_empty() {
        return Err("missing webhook-id, webhook-timestamp or webhook-signature");
    }
    let sent_at: u64 = timestamp
        .parse()
        .map_err(|_| "webhook-timestamp is not a unix time")?;
    if sent_at.abs_diff(now) > TOLERANCE_SECONDS {
        return Err("webhook-timestamp is more than 5 minutes away from now");
    }

    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "the secret is not whsec_ followed by base64")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    // One "v1,<base64>" entry per secret Herald signs with (two during a rotation);
    // `verify_slice` compares in constant time.
    let matches = signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|signature| STANDARD.decode(signature).ok())
        .any(|signature| mac.clone().verify_slice(&signature).is_ok());
    if matches {
        Ok(())
    } else {
        Err("no signature matches")
    }
}

struct State {
    secret: String,
    /// Ids already processed. In production: a table with a unique key on `webhook-id`,
    /// written in the same transaction as the work the event causes.
    processed: Mutex<HashSet<String>>,
}

async fn receive(request: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    };
    let id = header("webhook-id");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let checked = verify(
        &state.secret,
        id,
        header("webhook-timestamp"),
        header("webhook-signature"),
        &body,
        now,
    );
    let (status, text) = match checked {
        Err(reason) => (400, format!("rejected: {reason}")),
        Ok(()) if !state.processed.lock().unwrap().insert(id.to_owned()) => {
            (200, "already processed".into())
        }
        // Your work goes here. Keep it short, or queue it: Herald waits at most 15 s.
        Ok(()) => (200, "processed".into()),
    };
    println!("{status} {id} {text}");
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .content_type("text/plain")
        .body(text)
}

/// The receiver on `listener`, accepting bodies up to Herald's largest payload (1 MiB).
pub fn server(listener: TcpListener, secret: String) -> std::io::Result<Server> {
    let state = web::Data::new(State {
        secret,
        processed: Mutex::default(),
    });
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(1 << 20))
            .default_service(web::post().to(receive))
    })
    .workers(1)
    .listen(listener)?
    .run())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let secret = std::env::var("WEBHOOK_SECRET").expect("WEBHOOK_SECRET: the endpoint's secret");
    let port = std::env::var("PORT").unwrap_or_else(|_| "8000".into());
    let listener = TcpListener::bind(format!("127.0.0.1:{port}"))?;
    println!("listening on http://{}/webhooks", listener.local_addr()?);
    server(listener, secret)?.await
}
