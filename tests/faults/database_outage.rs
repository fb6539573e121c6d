//! PostgreSQL stopped for 10 seconds in the middle of a run: Herald keeps running, answers
//! API calls with a prompt 503 meanwhile, reconnects (the LISTEN connection included) and
//! delivers everything.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use crate::{
    scene::Scene,
    serial,
    support::{bounded, wait_until},
};

const OUTAGE: Duration = Duration::from_secs(10);
/// HERALD_DATABASE_TIMEOUT in this test: the longest an API call may wait for a connection.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

#[actix_rt::test]
async fn a_database_outage_is_ridden_out() {
    let _serial = serial().await;
    bounded(Duration::from_secs(180), async {
        let total = 20_000;
        let mut scene = Scene::new(2).await;
        // Slow enough that the run is still going when the database stops.
        scene.receiver.delay(Duration::from_millis(5));
        let overrides = [
            ("HERALD_DATABASE_TIMEOUT", "2s"),
            // Claims must come from NOTIFY (and full batches), not from polling: after the
            // outage, prompt pick-up of new work proves the LISTEN connection is back.
            ("HERALD_POLL_INTERVAL", "30s"),
            // Leases outlive the outage: every outcome buffered meanwhile must still be
            // written afterwards, so nothing is sent twice.
            ("HERALD_LEASE_DURATION", "30s"),
        ];
        let mut heralds = scene.heralds(2, &overrides).await;
        let pids: Vec<u32> = heralds.iter().map(|h| h.pid()).collect();
        let expected = scene.enqueue(total, 1000).await;

        let t0 = Instant::now();
        scene.wait_arrivals(total / 5, Duration::from_secs(60)).await;
        scene.pg.stop().await;
        let stopped = Instant::now();
        eprintln!("{:?}: database stopped", t0.elapsed());
        assert!(!scene.pg.is_running());
        let arrived_at_stop = scene.delivered();
        assert!(arrived_at_stop < total, "the outage must come mid-run");

        // API calls meanwhile: a prompt 503, never a hang.
        let app = scene.app.clone();
        let message = json!({"eventType": "fault.0", "payload": {"during": "outage"}});
        let bound = DATABASE_TIMEOUT + Duration::from_secs(3);
        let (mut calls, mut slowest) = (0, Duration::ZERO);
        // Rounds of calls (all four at once, to each instance in turn) until the outage is
        // nearly over; then the rest of the 10 s.
        let mut rounds = 0;
        while stopped.elapsed() + bound < OUTAGE {
            let h = &heralds[rounds % heralds.len()];
            rounds += 1;
            let key = format!("outage-{rounds}");
            let round = [
                ("GET", "/api/v1/health".to_string(), None, vec![]),
                ("GET", "/api/v1/app".into(), None, vec![]),
                ("GET", format!("/api/v1/app/{app}/msg"), None, vec![]),
                (
                    "POST",
                    format!("/api/v1/app/{app}/msg"),
                    Some(message.clone()),
                    vec![("idempotency-key", key.as_str())],
                ),
            ];
            let answers = join_all(round.iter().map(|(method, path, body, headers)| {
                h.call(method, path, body.clone(), headers, bound * 2)
            }))
            .await;
            for ((method, path, ..), (status, took)) in round.iter().zip(answers) {
                assert_eq!(
                    status,
                    Some(503),
                    "{method} {path} on {} during the outage: {status:?} after {took:?}",
                    h.name
                );
                assert!(
                    took <= bound,
                    "{method} {path} took {took:?} to answer 503 (bound {bound:?})"
                );
                calls += 1;
                slowest = slowest.max(took);
            }
        }
        tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
        for h in &mut heralds {
            assert!(h.is_running(), "{} survived the outage", h.name);
        }
        scene.pg.start_again().await;
        let outage = stopped.elapsed();
        eprintln!("{:?}: database back after {outage:?}", t0.elapsed());

        scene
            .wait_all_arrived(&expected, Duration::from_secs(120))
            .await;
        eprintln!("{:?}: all arrived", t0.elapsed());
        scene.wait_all_settled(Duration::from_secs(30)).await;
        eprintln!("{:?}: all settled", t0.elapsed());
        for (h, pid) in heralds.iter_mut().zip(&pids) {
            assert!(h.is_running() && h.pid() == *pid, "{} kept running", h.name);
        }

        // Each instance listens again...
        let db = scene.db.clone();
        let listening = wait_until(
            Duration::from_secs(20),
            || {
                let db = db.clone();
                async move {
                    sqlx::query_scalar::<_, i64>(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE application_name = 'herald' AND query ILIKE 'LISTEN%'",
                    )
                    .fetch_one(&db)
                    .await
                    .unwrap_or(-1)
                }
            },
            |n| *n == heralds.len() as i64,
        )
        .await;
        assert!(listening, "not every instance listens for notifications again");
        // ...and new work is picked up at once (polling comes only every 30 s).
        for i in 0..5 {
            let sent = Instant::now();
            let one = scene.enqueue_from(total + i, 1, 1).await;
            scene
                .wait_all_arrived(&one, Duration::from_secs(5))
                .await;
            eprintln!("after the outage, message {i} arrived in {:?}", sent.elapsed());
        }
        let (status, _) = heralds[0]
            .call("GET", "/api/v1/app", None, &[], Duration::from_secs(5))
            .await;
        assert_eq!(status, Some(200), "the API is back");
        // (The last outcome may still be on its way to the database when it has arrived.)
        scene.wait_all_settled(Duration::from_secs(30)).await;
        // No outcome was lost while the database was away: nothing was sent twice, and every
        // delivery has exactly its one attempt in the log.
        let duplicates = scene.receiver.tally(|t| t.duplicates());
        assert_eq!(duplicates, 0, "deliveries sent twice");
        assert_eq!(
            scene.count("SELECT count(*) FROM herald.attempt").await,
            total as i64 + 5
        );
        eprintln!(
            "PostgreSQL on port {}: outage of {outage:?} with {arrived_at_stop} of {total} arrived; {calls} API calls \
             answered 503 (slowest in {slowest:?}); {duplicates} duplicates",
            scene.pg.port()
        );
    })
    .await;
}
