//! Several instances against one database share the work without ever leasing a delivery
//! twice.

use std::time::Duration;

use crate::{
    scene::Scene,
    serial,
    support::{bounded, wait_until},
};

#[actix_rt::test]
async fn three_instances_deliver_20000_messages_each_exactly_once() {
    let _serial = serial().await;
    bounded(Duration::from_secs(180), async {
        let scene = Scene::new(4).await;
        let mut heralds = scene.heralds(3, &[]).await;
        let expected = scene.enqueue(20_000, 1000).await;

        scene
            .wait_all_arrived(&expected, Duration::from_secs(120))
            .await;
        scene.wait_all_settled(Duration::from_secs(30)).await;

        // Nothing failed, so nothing may arrive twice: no delivery was leased by two instances.
        let (deliveries, duplicates, failed) = scene.receiver.tally(|t| {
            (
                t.tries.len(),
                t.duplicates(),
                t.tries.values().map(|t| t.failed).sum::<u32>(),
            )
        });
        assert_eq!((deliveries, failed), (20_000, 0));
        assert_eq!(
            duplicates,
            0,
            "messages delivered twice; failed attempts by error: {:?}",
            scene.failed_attempts().await
        );
        // One answered attempt per delivery. A try that got no answer at all (a connection
        // refused or reset by a receiver swamped on a loaded machine: 5 of 20,000 in one CI
        // run) is logged with its error and retried; it never reached the receiver, so it
        // is no duplicate, but it must stay rare.
        let unanswered = scene
            .count("SELECT count(*) FROM herald.attempt WHERE status_code IS NULL")
            .await;
        assert_eq!(
            scene.count("SELECT count(*) FROM herald.attempt").await - unanswered,
            20_000,
            "one answered attempt per delivery; failed attempts by error: {:?}",
            scene.failed_attempts().await
        );
        assert!(
            unanswered <= 200,
            "{unanswered} attempts got no answer: {:?}",
            scene.failed_attempts().await
        );
        if unanswered > 0 {
            eprintln!("unanswered attempts: {:?}", scene.failed_attempts().await);
        }

        // Every instance took part, and together they report exactly the deliveries made.
        let reported = wait_until(
            Duration::from_secs(10),
            || std::future::ready(heralds.iter().map(|h| h.sender_successes()).sum::<u64>()),
            |n| *n >= 20_000,
        )
        .await;
        let shares: Vec<u64> = heralds.iter().map(|h| h.sender_successes()).collect();
        assert!(reported, "health lines report {shares:?} deliveries");
        assert_eq!(shares.iter().sum::<u64>(), 20_000, "{shares:?}");
        assert!(
            shares.iter().all(|n| *n > 0),
            "an instance idled: {shares:?}"
        );
        for h in &mut heralds {
            assert!(h.is_running(), "{} is still running", h.name);
        }
        eprintln!("deliveries per instance: {shares:?}");
    })
    .await;
}
