//! `herald demo`: the whole loop on this machine in one command (issue 16).
//!
//! 1. Herald starts (on the embedded PostgreSQL unless a database is configured), with a
//!    token of its own for this run and settings that make failure quick to see: three
//!    attempts a second apart, a breaker that opens after three failures;
//! 2. a local receiver verifies every signature and says what it got ([`receiver`]);
//! 3. through the API ([`script`]): an application, event types, an endpoint that accepts
//!    and one that fails;
//! 4. sample payment events go out and arrive;
//! 5. the failing endpoint's circuit opens and a delivery dies;
//! 6. the receiver recovers, and the demo prints the dashboard's URL and the curl commands
//!    that replay the dead letter; the replay shows up as it arrives.
//!
//! Ctrl-C stops the receiver, Herald (which drains) and the embedded PostgreSQL.

pub mod receiver;
pub mod script;

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::{config::Settings, signing::Secret, startup::Application, telemetry};

use receiver::{Receiver, Seen};

/// How often the demo asks the API whether what it waits for has happened.
const POLL: Duration = Duration::from_millis(200);
use script::Api;

/// The settings of a demo run: the operator's, plus what the demo needs.
fn demo_settings(mut settings: Settings, token: &str) -> anyhow::Result<Settings> {
    settings.api.tokens.push(token.to_string());
    // The demo speaks for itself; Herald's own log says only what goes wrong.
    if std::env::var_os("RUST_LOG").is_none() {
        settings.process.log_level = "warn".into();
    }
    // The receiver is on this machine, which the SSRF guard otherwise refuses.
    settings
        .destinations
        .allowed_cidrs
        .push("127.0.0.0/8".parse().expect("a CIDR"));
    settings.retries.schedule = vec![Duration::from_secs(1); 2];
    settings.retries.jitter = 0.0;
    settings.breaker.failures = 3;
    settings.breaker.window = 3;
    settings.breaker.cooldown = Duration::from_secs(2);
    settings.breaker.max_cooldown = Duration::from_secs(4);
    settings.validate()?;
    Ok(settings)
}

pub fn run(settings: Settings) -> ExitCode {
    let token = format!("demo_{}", crate::access::token::random_secret());
    let settings = match demo_settings(settings, &token) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("herald demo: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = telemetry::init(&settings);
    let result = crate::cli::on_database(settings, false, |settings, data| async move {
        let app = Application::build(settings).await?;
        let base = format!("http://127.0.0.1:{}", app.port());
        say(&format!("Herald is running at {base}"));
        match &data {
            Some(dir) => say(&format!(
                "  on an embedded PostgreSQL, its data in {}",
                dir.display()
            )),
            None => say("  on the configured PostgreSQL (HERALD_DATABASE_URL)"),
        }
        let outcome = tokio::select! {
            shown = show(&base, &token) => shown,
            _ = actix_rt::signal::ctrl_c() => Ok(()),
        };
        say("Stopping: the receiver, then Herald (it drains), then its database.");
        app.shutdown().await;
        outcome
    });
    telemetry.shutdown();
    match result {
        Err(code) => code,
        Ok(Ok(())) => {
            say("Stopped; nothing is left running.");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("herald demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Steps 2 to 6, then prints deliveries until Ctrl-C.
async fn show(base: &str, token: &str) -> anyhow::Result<()> {
    let (ok_secret, flaky_secret) = (Secret::generate(), Secret::generate());
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let receiver = Receiver::start(ok_secret.clone(), flaky_secret.clone(), tx)
        .context("starting the demo's receiver")?;
    let outcome = steps(base, token, &receiver, &ok_secret, &flaky_secret, &mut seen).await;
    receiver.stop().await;
    outcome
}

async fn steps(
    base: &str,
    token: &str,
    receiver: &Receiver,
    ok_secret: &Secret,
    flaky_secret: &Secret,
    seen: &mut UnboundedReceiver<Seen>,
) -> anyhow::Result<()> {
    let api = Api::new(base, token);
    say(&format!(
        "1. A receiver at {} verifies every signature.",
        receiver.base
    ));

    let uid = format!("demo-shop-{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let app = api.create_application(&uid).await?;
    for (name, what) in [
        ("payment.confirmed", "A payment was confirmed"),
        ("payment.failed", "A payment failed"),
        ("order.created", "An order was created"),
    ] {
        api.create_event_type(name, what).await?;
    }
    let ok = api
        .create_endpoint(&app, &format!("{}/ok", receiver.base), &ok_secret.expose())
        .await?;
    let flaky = api
        .create_endpoint(
            &app,
            &format!("{}/flaky", receiver.base),
            &flaky_secret.expose(),
        )
        .await?;
    say(&format!("2. Application {uid} ({app}) with event types payment.confirmed, payment.failed, order.created"));
    say(&format!(
        "   endpoint {ok} -> {}/ok (accepts)",
        receiver.base
    ));
    say(&format!(
        "   endpoint {flaky} -> {}/flaky (answers 500 for now)",
        receiver.base
    ));

    let events = [
        (
            "payment.confirmed",
            json!({"payment_id": "pay_1001", "status": "confirmed", "amount": 4200, "currency": "EUR"}),
        ),
        (
            "order.created",
            json!({"order_id": "ord_2001", "payment_id": "pay_1001"}),
        ),
        (
            "payment.failed",
            json!({"payment_id": "pay_1002", "status": "failed", "reason": "insufficient_funds"}),
        ),
    ];
    let mut sent = Vec::new();
    for (event_type, payload) in events {
        let id = api.send(&app, event_type, payload).await?;
        say(&format!("3. sent {event_type} {id}"));
        sent.push(id);
    }

    // Each arrives at /ok; /flaky refuses them.
    let mut arrived = 0;
    while arrived < sent.len() {
        match next(seen, Duration::from_secs(30)).await? {
            Seen::Accepted { route, msg_id } => {
                arrived += 1;
                say(&format!("4. {route} received {msg_id}: signature verified"));
            }
            other => print_seen(other),
        }
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    while api.circuit(&app, &flaky).await? != "open" {
        drain(seen);
        anyhow::ensure!(
            Instant::now() < deadline,
            "the failing endpoint's circuit did not open within 60 s"
        );
        actix_rt::time::sleep(POLL).await;
    }
    drain(seen);
    say(&format!(
        "5. the circuit of {flaky} is open: its deliveries wait instead of hammering it"
    ));
    let deadline = Instant::now() + Duration::from_secs(90);
    let dead = loop {
        drain(seen);
        if let Some(dead) = api.dead_letters(&app).await?.into_iter().next() {
            break dead;
        }
        anyhow::ensure!(Instant::now() < deadline, "no delivery died within 90 s");
        actix_rt::time::sleep(POLL).await;
    };
    let dead_id = dead["id"].as_str().unwrap_or_default().to_string();
    say(&format!(
        "6. dead letter {dead_id}: {} to {} after {} attempts ({})",
        dead["msgId"].as_str().unwrap_or_default(),
        dead["endpointId"].as_str().unwrap_or_default(),
        dead["attempts"],
        dead["reason"]
            .as_str()
            .or(dead["lastError"].as_str())
            .unwrap_or("failed"),
    ));

    receiver.recover();
    say("7. The flaky receiver is back. Replay the dead letter:");
    say(&format!(
        "   {}",
        script::replay_command(base, token, &dead_id)
    ));
    say("   or every dead letter of the application:");
    say(&format!(
        "   {}",
        script::replay_all_command(base, token, &app)
    ));
    say(&format!(
        "   Dashboard: {base}/ui/ (sign in with the token {token})"
    ));
    say("Watching deliveries; Ctrl-C to stop.");
    loop {
        match seen.recv().await {
            Some(seen) => print_seen(seen),
            None => return Ok(()),
        }
    }
}

async fn next(seen: &mut UnboundedReceiver<Seen>, within: Duration) -> anyhow::Result<Seen> {
    tokio::time::timeout(within, seen.recv())
        .await
        .ok()
        .flatten()
        .context("nothing arrived at the receiver in time")
}

/// Prints what the receiver saw meanwhile.
fn drain(seen: &mut UnboundedReceiver<Seen>) {
    while let Ok(s) = seen.try_recv() {
        print_seen(s);
    }
}

fn print_seen(seen: Seen) {
    match seen {
        Seen::Accepted { route, msg_id } => {
            say(&format!("   {route} received {msg_id}: signature verified"))
        }
        Seen::Refused { msg_id } => say(&format!("   /flaky answered 500 to {msg_id}")),
        Seen::BadSignature { msg_id, why } => say(&format!("   BAD SIGNATURE on {msg_id}: {why}")),
    }
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
