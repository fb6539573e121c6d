//! Readiness follows the database: `/api/v1/health` (and `herald healthcheck`, the image's
//! HEALTHCHECK) turns unready while PostgreSQL is stopped and ready again once it is back;
//! liveness and `/metrics` keep answering throughout.

use std::time::Duration;

use crate::{
    scene::Scene,
    serial,
    support::{bounded, wait_until},
};

async fn health(base: &str) -> (u16, serde_json::Value) {
    let res = reqwest::Client::new()
        .get(format!("{base}/api/v1/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("health answers");
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn get_status(url: String) -> u16 {
    reqwest::get(url).await.map_or(0, |r| r.status().as_u16())
}

async fn healthcheck_exit(base: &str) -> i32 {
    let url = format!("{base}/api/v1/health");
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["healthcheck", "--url", &url])
            .env_clear()
            .env(
                "HERALD_CONFIG_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
            )
            .status()
            .expect("herald healthcheck runs")
            .code()
            .unwrap_or(-1)
    })
    .await
    .unwrap()
}

#[actix_rt::test]
async fn health_is_unready_while_the_database_is_down_and_ready_when_it_is_back() {
    let _serial = serial().await;
    bounded(Duration::from_secs(90), async {
        let mut scene = Scene::new(1).await;
        let heralds = scene.heralds(1, &[("HERALD_DATABASE_TIMEOUT", "1s")]).await;
        let base = heralds[0].base_url();
        let (status, body) = health(&base).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(healthcheck_exit(&base).await, 0);

        scene.pg.stop().await;
        let (status, body) = health(&base).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["database"]["status"], "ERROR", "{body}");
        // The actors are fine: only the database is reported down.
        assert_eq!(body["queue"]["status"], "OK", "{body}");
        assert_eq!(
            healthcheck_exit(&base).await,
            1,
            "HEALTHCHECK turns unhealthy"
        );
        assert_eq!(get_status(format!("{base}/api/v1/health/ping")).await, 204);
        let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap();
        assert_eq!(metrics.status(), 200);
        assert!(metrics
            .text()
            .await
            .unwrap()
            .contains("herald_database_up 0"));

        scene.pg.start_again().await;
        let base2 = base.clone();
        let ready = wait_until(
            Duration::from_secs(30),
            || health(&base2),
            |(status, _)| *status == 200,
        )
        .await;
        assert!(ready, "health is ready again once the database is back");
        let (_, body) = health(&base).await;
        assert_eq!(body["database"]["status"], "OK", "{body}");
        assert_eq!(healthcheck_exit(&base).await, 0);
    })
    .await;
}
