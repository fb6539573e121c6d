//! `claim`: how long Herald's claim of one batch takes as the backlog of waiting deliveries
//! grows. It calls the library's own claim ([`herald::store::Store::claim`], the function
//! the claimer actor runs) on a prepared database, several times per backlog size, and
//! gives each claim's rows back (outside the timing) so that every claim finds the same
//! backlog.

use std::time::{Duration, Instant};

use herald::store::Store;

use crate::setup::{percentile, round, Bench};

/// Rows inserted per statement while filling the backlog.
const FILL_CHUNK: usize = 100_000;

pub async fn claim(
    bench: &Bench,
    backlogs: &[usize],
    batch: usize,
    endpoints: usize,
    repeats: usize,
    vacuum: bool,
) -> anyhow::Result<serde_json::Value> {
    let app = bench.create_app("bench").await?;
    let urls: Vec<String> = (0..endpoints)
        .map(|i| format!("http://127.0.0.1:9/e{i}"))
        .collect();
    bench.add_endpoints_bulk(&app, &urls).await?;
    let endpoint_ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM herald.endpoint ORDER BY id")
            .fetch_all(&bench.pool)
            .await?;
    // Its own pool, as the claimer has (one connection is all a claimer uses).
    let store = Store::connect_lazy(bench.database_url.parse()?, 1, Duration::from_secs(5));

    let mut levels = Vec::new();
    let mut filled = 0usize;
    let mut sorted = backlogs.to_vec();
    sorted.sort_unstable();
    for &backlog in &sorted {
        let started = Instant::now();
        while filled < backlog {
            let n = FILL_CHUNK.min(backlog - filled);
            fill(bench, &app, &endpoint_ids, filled, n).await?;
            filled += n;
        }
        // What autovacuum does by itself on a table that grew this much (within a minute).
        if vacuum {
            sqlx::query("VACUUM ANALYZE herald.delivery, herald.message")
                .execute(&bench.pool)
                .await?;
        }
        let fill_s = started.elapsed().as_secs_f64();
        let due = bench
            .count("SELECT count(*) FROM herald.delivery WHERE status = 'pending' AND next_attempt_at <= now()")
            .await?;

        let mut times_ms = Vec::new();
        let mut claimed = Vec::new();
        // The first claims prepare the statement (and PostgreSQL may switch to a generic
        // plan after five): they are run, and reported apart.
        let mut first_ms = Vec::new();
        for i in 0..repeats + 3 {
            let started = Instant::now();
            let (token, claimed_now) = store
                .claim("herald-bench", batch, Duration::from_secs(60), &[])
                .await?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if i < 3 {
                first_ms.push(round(ms));
            } else {
                times_ms.push(ms);
                claimed.push(claimed_now.jobs.len());
            }
            store.release_token(token).await?;
        }
        levels.push(serde_json::json!({
            "backlog": due,
            "claim_batch": batch,
            "rows_per_claim": claimed.iter().min(),
            "claims": repeats,
            "claim_ms_min": percentile(&times_ms, 0.0).map(round),
            "claim_ms_p50": percentile(&times_ms, 50.0).map(round),
            "claim_ms_p90": percentile(&times_ms, 90.0).map(round),
            "claim_ms_max": percentile(&times_ms, 100.0).map(round),
            "first_claims_ms": first_ms,
            "fill_s": round(fill_s),
        }));
    }
    store.pool().close().await;
    let p50 = |l: &serde_json::Value| l["claim_ms_p50"].as_f64().unwrap_or(0.0);
    let (smallest, largest) = (
        levels.first().map(p50).unwrap_or(0.0),
        levels.last().map(p50).unwrap_or(0.0),
    );
    Ok(serde_json::json!({
        "scenario": "claim",
        "endpoints": endpoints,
        "vacuum_analyze_after_fill": vacuum,
        "levels": levels,
        "claim_p50_ratio_largest_to_smallest": round(largest / smallest.max(0.001)),
    }))
}

/// `n` more messages, each with one pending delivery (endpoints in turn), due a moment
/// apart in the past: the rows `herald.send_message` would write, inserted in bulk.
async fn fill(
    bench: &Bench,
    app: &str,
    endpoint_ids: &[String],
    from: usize,
    n: usize,
) -> anyhow::Result<()> {
    sqlx::query(
        r#"WITH m AS (
            INSERT INTO herald.message (app_id, event_type, payload)
            SELECT $1, 'payment.confirmed', '{"seq": ' || g || ', "amount": "10.00"}'
            FROM generate_series($2::bigint, $3::bigint) g
            RETURNING id
        ), numbered AS (
            SELECT id, row_number() OVER (ORDER BY id) + $2 AS g FROM m
        )
        INSERT INTO herald.delivery (message_id, endpoint_id, app_id, next_attempt_at)
        SELECT id, ($4::text[])[1 + g % cardinality($4::text[])], $1,
               now() - interval '2 hours' + g * interval '1 millisecond'
        FROM numbered"#,
    )
    .bind(app)
    .bind(from as i64)
    .bind((from + n - 1) as i64)
    .bind(endpoint_ids)
    .execute(&bench.pool)
    .await?;
    Ok(())
}
