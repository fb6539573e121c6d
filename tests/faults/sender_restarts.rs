//! A sender actor that dies over and over (HERALD_FAULT_SENDER_STOP_EVERY) is restarted
//! each time, loses nothing, and the other senders keep delivering meanwhile.

use std::time::Duration;

use herald::actors::claimer::sender_index;

use crate::{
    scene::Scene,
    serial,
    support::{bounded, wait_until},
};

const SENDERS: usize = 3;
const STOP_EVERY: u64 = 50;

#[actix_rt::test]
async fn a_sender_that_keeps_dying_is_restarted_and_the_others_deliver() {
    let _serial = serial().await;
    bounded(Duration::from_secs(180), async {
        // Two endpoints routed to each sender (routing hashes the endpoint id).
        let mut ids: Vec<String> = Vec::new();
        for sender in 0..SENDERS {
            ids.extend(
                (0..)
                    .map(|i| format!("ep_faults_{i}"))
                    .filter(|id| sender_index(id, SENDERS) == sender)
                    .take(2),
            );
        }
        let scene = Scene::with_endpoint_ids(ids).await;
        let stop_every = STOP_EVERY.to_string();
        let herald = scene
            .heralds(
                1,
                &[
                    ("HERALD_SENDERS", "3"),
                    ("HERALD_FAULT_SENDER_STOP_EVERY", &stop_every),
                    ("HERALD_HEARTBEAT_INTERVAL", "100ms"),
                    ("HERALD_HEALTH_LOG_INTERVAL", "250ms"),
                ],
            )
            .await
            .remove(0);
        // A steady producer for four seconds, so that sender-0 dies again and again while
        // traffic for every sender keeps coming.
        let mut expected = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        for wave in 0..80 {
            tick.tick().await;
            expected.extend(scene.enqueue_from(wave * 60, 60, 60).await);
        }
        scene
            .wait_all_arrived(&expected, Duration::from_secs(120))
            .await;
        scene.wait_all_settled(Duration::from_secs(30)).await;

        // Sender-0 stopped itself again and again, and was restarted each time.
        let stops = |h: &crate::herald::Herald| {
            h.events()
                .iter()
                .filter(|e| {
                    e["message"].as_str().is_some_and(|m| {
                        m.starts_with("injected fault (HERALD_FAULT_SENDER_STOP_EVERY)")
                    })
                })
                .count() as u64
        };
        let latest_restarts = |h: &crate::herald::Herald, actor: &str| {
            h.health_lines()
                .iter()
                .rev()
                .find(|e| e["actor"] == actor)
                .and_then(|e| e["restarts"].as_u64())
                .unwrap_or(0)
        };
        let stopped = stops(&herald);
        assert!(stopped >= 5, "sender-0 stopped only {stopped} times");
        let restarted = wait_until(
            Duration::from_secs(10),
            || std::future::ready(latest_restarts(&herald, "sender-0")),
            |n| *n == stops(&herald),
        )
        .await;
        assert!(
            restarted,
            "sender-0 stopped {} times, its health line says {} restarts",
            stops(&herald),
            latest_restarts(&herald, "sender-0")
        );

        // The other senders never stopped, and delivered while sender-0 kept dying: between
        // the health line that shows its first restart and the one that shows its last.
        let lines = herald.health_lines();
        let first = lines
            .iter()
            .position(|e| e["actor"] == "sender-0" && e["restarts"].as_u64() >= Some(1))
            .expect("a health line shows a restart");
        let last = lines
            .iter()
            .rposition(|e| e["actor"] == "sender-0" && e["restarts"].as_u64() == Some(stopped))
            .expect("a health line shows the last restart");
        for sender in 1..SENDERS {
            let actor = format!("sender-{sender}");
            assert_eq!(latest_restarts(&herald, &actor), 0, "{actor} never stopped");
            let during: u64 = lines[first..=last]
                .iter()
                .filter(|e| e["actor"] == actor.as_str())
                .map(|e| e["succeeded"].as_u64().unwrap_or(0))
                .sum();
            let all: u64 = lines
                .iter()
                .filter(|e| e["actor"] == actor.as_str())
                .map(|e| e["succeeded"].as_u64().unwrap_or(0))
                .sum();
            assert!(
                during > 0,
                "{actor} delivered nothing while sender-0 was restarting ({all} in all)"
            );
        }
        let duplicates = scene.receiver.tally(|t| t.duplicates());
        eprintln!("sender-0 stopped and restarted {stopped} times; {duplicates} duplicates");
    })
    .await;
}
