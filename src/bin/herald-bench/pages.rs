//! `pages`: how long the dashboard's pages take to render on a busy hour. The database is
//! seeded with `attempts` attempts spread over the last hour across `endpoints` endpoints
//! of one application (a tenth of them dead letters), then every page is fetched `repeats`
//! times in a row by a signed-in client, as a browser would (no cache: the pages are
//! `no-store`), and the stats route once per repeat.

use std::time::Instant;

use anyhow::{bail, Context};

use crate::{
    setup::{percentile, round, round_to, Bench, Herald, Role, TOKEN},
    Cli,
};

/// Fills the last hour: messages, one delivery each (every tenth dead), one attempt each.
async fn seed(bench: &Bench, app: &str, endpoints: usize, attempts: usize) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO herald.event_type (name, description) VALUES ('order.paid', 'An order was paid')",
    )
    .execute(&bench.pool)
    .await?;
    sqlx::query(
        "INSERT INTO herald.endpoint (app_id, url) \
         SELECT $1, 'https://receiver.example/e' || i FROM generate_series(1, $2) i",
    )
    .bind(app)
    .bind(endpoints as i64)
    .execute(&bench.pool)
    .await?;
    sqlx::query(
        "WITH e AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM herald.endpoint), \
         m AS (INSERT INTO herald.message (app_id, event_type, payload, created_at) \
               SELECT $1, 'order.paid', '{\"order\": ' || i || '}', \
                      now() - (random() * interval '1 hour') \
               FROM generate_series(1, $2) i RETURNING id, created_at), \
         d AS (INSERT INTO herald.delivery (message_id, endpoint_id, app_id, status, attempts, \
                                            created_at, updated_at) \
               SELECT m.id, e.id, $1, \
                      CASE WHEN random() < 0.1 THEN 'dead' ELSE 'succeeded' END::herald.delivery_status, \
                      1, m.created_at, m.created_at \
               FROM m JOIN e ON e.n = abs(hashtext(m.id)) % $3 \
               RETURNING id, message_id, endpoint_id, status, created_at) \
         INSERT INTO herald.attempt (delivery_id, message_id, endpoint_id, app_id, url, attempt_no, \
                                     started_at, duration_ms, status_code, succeeded, trigger_type, \
                                     created_at) \
         SELECT d.id, d.message_id, d.endpoint_id, $1, 'https://receiver.example/', 1, d.created_at, \
                (random() * 200)::int, CASE WHEN d.status = 'dead' THEN 500 ELSE 200 END, \
                d.status = 'succeeded', 0, d.created_at \
         FROM d",
    )
    .bind(app)
    .bind(attempts as i64)
    .bind(endpoints as i64)
    .execute(&bench.pool)
    .await?;
    sqlx::query("VACUUM ANALYZE").execute(&bench.pool).await?;
    Ok(())
}

/// A signed-in client: the dashboard's session cookie.
async fn sign_in(client: &awc::Client, base: &str) -> anyhow::Result<String> {
    let res = client
        .post(format!("{base}/ui/login"))
        .send_form(&[("token", TOKEN)])
        .await
        .map_err(|e| anyhow::anyhow!("signing in: {e}"))?;
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?;
    Ok(cookie.to_string())
}

pub async fn pages(
    cli: &Cli,
    bench: &Bench,
    endpoints: usize,
    attempts: usize,
    repeats: usize,
) -> anyhow::Result<serde_json::Value> {
    let app = bench.create_app("bench").await?;
    let seeding = Instant::now();
    seed(bench, &app, endpoints, attempts).await?;
    let seed_s = seeding.elapsed().as_secs_f64();
    let endpoint: String = sqlx::query_scalar("SELECT min(id) FROM herald.endpoint")
        .fetch_one(&bench.pool)
        .await?;
    let msg: String = sqlx::query_scalar("SELECT max(id) FROM herald.message")
        .fetch_one(&bench.pool)
        .await?;
    // The API only: the dispatcher would start working through the seeded rows.
    let herald = Herald::start(cli, &bench.database_url, Role::Api, &[]).await?;
    let base = format!("http://{}", herald.api.expect("the API runs"));
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        // The sign-in's 303 carries the cookie: read it, do not follow it.
        .disable_redirects()
        .finish();
    let cookie = sign_in(&client, &base).await?;
    let pages = [
        ("overview", "/ui/".to_string()),
        ("applications", "/ui/apps".into()),
        ("endpoints", format!("/ui/app/{app}/endpoints")),
        ("endpoint", format!("/ui/app/{app}/endpoints/{endpoint}")),
        ("messages", format!("/ui/app/{app}/messages")),
        (
            "messages_by_endpoint_dead",
            format!("/ui/app/{app}/messages?endpoint={endpoint}&status=2"),
        ),
        ("message", format!("/ui/app/{app}/messages/{msg}")),
        ("dead_letters", "/ui/dead-letters".into()),
        (
            "replay_count",
            format!("/ui/dead-letters/replay?app_id={app}"),
        ),
        ("event_types", "/ui/event-types".into()),
        ("stats_route", "/api/v1/stats/delivery".into()),
    ];
    let mut report = serde_json::Map::new();
    report.insert("scenario".into(), "pages".into());
    report.insert("attempts_in_the_hour".into(), attempts.into());
    report.insert("endpoints".into(), endpoints.into());
    report.insert("seed_s".into(), round(seed_s).into());
    for (name, path) in pages {
        let mut times = Vec::with_capacity(repeats);
        let mut bytes = 0;
        for _ in 0..repeats {
            let started = Instant::now();
            let mut res = client
                .get(format!("{base}{path}"))
                .insert_header(("cookie", cookie.as_str()))
                .insert_header(("authorization", format!("Bearer {TOKEN}")))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
            let body = res.body().limit(16 << 20).await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            if !res.status().is_success() {
                bail!("{path} answered {}", res.status());
            }
            bytes = body.len();
        }
        report.insert(
            format!("{name}_p50_ms"),
            percentile(&times, 50.0).map(|v| round_to(v, 1)).into(),
        );
        report.insert(
            format!("{name}_p95_ms"),
            percentile(&times, 95.0).map(|v| round_to(v, 1)).into(),
        );
        report.insert(
            format!("{name}_kib"),
            round_to(bytes as f64 / 1024.0, 1).into(),
        );
    }
    report.insert(
        "herald_peak_rss_mib".into(),
        herald.peak_rss_mib().map(round).into(),
    );
    herald.stop()?;
    Ok(serde_json::Value::Object(report))
}
