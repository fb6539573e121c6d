//! `kill -9` of an instance in the middle of a run: what it held leased comes back when the
//! leases expire, so every message arrives, and only what was in flight at the kill may
//! arrive twice.

use std::time::Duration;

use crate::{
    scene::Scene,
    serial,
    support::{bounded, wait_until},
};

#[actix_rt::test]
async fn an_instance_killed_mid_run_loses_nothing() {
    let _serial = serial().await;
    bounded(Duration::from_secs(180), async {
        let total = 20_000;
        let scene = Scene::new(4).await;
        // Each instance holds at most 1,000 leases, so the backlog stays in the database and
        // every instance keeps claiming from it until the end.
        let mut heralds = scene.heralds(3, &[("HERALD_MAX_IN_FLIGHT", "1000")]).await;
        let expected = scene.enqueue(total, 1000).await;

        // Mid-run: a quarter has arrived, and the victim holds leases. Its lease owner is
        // `{host}-{pid}-{tag}`.
        let pid = heralds[2].pid();
        let owner = format!("%-{pid}-%");
        let leased_to_victim = || {
            let (db, owner) = (scene.db.clone(), owner.clone());
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM herald.delivery \
                     WHERE status = 'sending' AND lease_owner LIKE $1",
                )
                .bind(owner)
                .fetch_one(&db)
                .await
                .unwrap()
            }
        };
        scene
            .wait_arrivals(total / 4, Duration::from_secs(60))
            .await;
        let holding = wait_until(Duration::from_secs(10), leased_to_victim, |n| *n > 0).await;
        assert!(holding, "herald-3 never held a lease");
        let victim = &mut heralds[2];
        victim.kill();
        // What it held at its death: rows still leased to it.
        let in_flight = leased_to_victim().await;
        let arrived_at_kill = scene.delivered();
        assert!(
            arrived_at_kill < total,
            "the kill must come in the middle of the run"
        );
        assert!(
            in_flight > 0,
            "the killed instance held no leases: the test proves nothing"
        );

        victim.start_again();
        victim.wait_ready(Duration::from_secs(30)).await;
        // Its old leases expire (11 s) and are reaped by any instance.
        scene
            .wait_all_arrived(&expected, Duration::from_secs(120))
            .await;
        scene.wait_all_settled(Duration::from_secs(30)).await;

        let duplicates = scene.receiver.tally(|t| t.duplicates());
        eprintln!(
            "killed pid {pid} with {arrived_at_kill} of {total} arrived; {in_flight} leased to \
             it; {duplicates} duplicates"
        );
        assert!(
            duplicates <= in_flight as u64,
            "{duplicates} duplicates, more than the {in_flight} deliveries in flight at the kill"
        );
        assert_eq!(
            scene
                .count("SELECT count(*) FROM herald.delivery WHERE lease_owner IS NOT NULL")
                .await,
            0,
            "no lease left behind"
        );
        for h in &mut heralds {
            assert!(h.is_running(), "{} is running", h.name);
        }
    })
    .await;
}
