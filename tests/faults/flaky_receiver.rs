//! A receiver that fails 30 % of requests at random: retries get every message through, and
//! the attempt log records exactly the tries the receiver saw (and any try that got no
//! answer at all, with its error).

use std::{collections::HashMap, time::Duration};

use crate::{receiver::Tries, scene::Scene, serial, support::bounded};

/// endpoint, message, attempts, rows, succeeded, 500s, no answer, anything else.
type LogRow = (String, String, i32, i64, i64, i64, i64, i64);

#[actix_rt::test]
async fn a_receiver_failing_30_percent_gets_everything_and_every_try_is_logged() {
    let _serial = serial().await;
    bounded(Duration::from_secs(180), async {
        let total = 10_000;
        let scene = Scene::new(4).await;
        scene.receiver.fail_ratio(0.3);
        // Sixteen attempts 200 ms apart: 0.3^16 makes a dead letter practically impossible.
        let _heralds = scene.heralds(2, &[]).await;
        let expected = scene.enqueue(total, 1000).await;

        scene
            .wait_all_arrived(&expected, Duration::from_secs(120))
            .await;
        scene.wait_all_settled(Duration::from_secs(30)).await;

        // The attempt log, per delivery: tries, successes, 500s, tries that got no answer at
        // all, anything else. A try with no answer (a pooled keep-alive connection the
        // receiver had just closed, a timeout on a loaded machine) is a real try that the
        // receiver cannot have counted; it must be logged with its error, never lost.
        let rows: Vec<LogRow> = sqlx::query_as(
            "SELECT d.endpoint_id, d.message_id, d.attempts, count(a.id), \
                    count(a.id) FILTER (WHERE a.succeeded), \
                    count(a.id) FILTER (WHERE a.status_code = 500 AND NOT a.succeeded), \
                    count(a.id) FILTER (WHERE a.status_code IS NULL AND a.error IS NOT NULL), \
                    count(a.id) FILTER (WHERE NOT a.succeeded AND a.status_code IS DISTINCT FROM 500 \
                                          AND NOT (a.status_code IS NULL AND a.error IS NOT NULL)) \
             FROM herald.delivery d LEFT JOIN herald.attempt a ON a.delivery_id = d.id \
             GROUP BY d.id, d.endpoint_id, d.message_id, d.attempts",
        )
        .fetch_all(&scene.db)
        .await
        .unwrap();
        assert_eq!(rows.len(), total);
        let seen: HashMap<(String, String), Tries> =
            scene.receiver.tally(|t| t.tries.clone());
        let mut mismatches = Vec::new();
        let (mut tries, mut failures, mut unanswered) = (0u64, 0u64, 0i64);
        for (endpoint, message, attempts, logged, succeeded, failed, no_answer, other) in rows {
            unanswered += no_answer;
            let got = seen
                .get(&(endpoint.clone(), message.clone()))
                .copied()
                .unwrap_or_default();
            tries += u64::from(got.total());
            failures += u64::from(got.failed);
            let log = (attempts as i64, logged, succeeded, failed, other);
            let receiver = (
                i64::from(got.total()) + no_answer,
                i64::from(got.total()) + no_answer,
                i64::from(got.ok),
                i64::from(got.failed),
                0,
            );
            if log != receiver || got.ok != 1 {
                mismatches.push(format!(
                    "{endpoint}/{message}: log (attempts, rows, ok, 500, other) {log:?}, \
                     receiver {got:?}"
                ));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} deliveries whose attempt log differs from what the receiver saw, e.g. {:?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(5)]
        );
        // Tries without an answer are the exception, not a way to hide lost ones.
        assert!(
            unanswered * 100 <= tries as i64,
            "{unanswered} tries got no answer (of {tries} the receiver saw)"
        );
        // The receiver really failed about 30 % of the tries.
        let share = failures as f64 / tries as f64;
        assert!(
            (0.25..0.35).contains(&share),
            "{failures} of {tries} tries failed"
        );
        eprintln!(
            "{tries} tries for {total} messages, {failures} failed on purpose, \
             {unanswered} more got no answer"
        );
    })
    .await;
}
