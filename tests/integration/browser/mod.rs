//! The dashboard and the portal in a real Chromium, as an operator and a partner use them.

mod driver;

use std::time::Duration;

use serde_json::json;
use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};

use crate::{
    ingest::harness::{post, source},
    support::{spawn_app, wait_for_requests, TOKEN},
};
use driver::Browser;

/// The receiver answers every delivery with `status`, from now on.
async fn answer(receiver: &MockServer, status: u16) {
    receiver.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status))
        .mount(receiver)
        .await;
}

#[actix_rt::test]
async fn an_operator_signs_in_sets_up_an_endpoint_follows_a_delivery_and_replays_dead_letters() {
    let t = spawn_app().await;
    let api = t.api();
    let base = api.base.clone();
    let receiver = MockServer::start().await;
    answer(&receiver, 200).await;
    api.create_event_type("order.paid", "An order was paid")
        .await;
    let mut b = Browser::start("operator").await;

    // 1. Sign in with an operator token.
    b.goto(&format!("{base}/ui/"), "sign-in").await;
    b.wait_for("input[name=token]", false).await;
    assert_eq!(
        b.path().await,
        "/ui/login",
        "the dashboard asks to sign in first"
    );
    b.fill("input[name=token]", "not-the-token").await;
    b.click("form button[type=submit]", "refused").await;
    assert!(b.text(".error").await.contains("not accepted"));
    b.fill("input[name=token]", TOKEN).await;
    b.click("form button[type=submit]", "overview").await;
    b.wait_for_text("h1", "Overview", false).await;

    // 2. An application, and an endpoint pointing at the receiver.
    b.goto(&format!("{base}/ui/apps"), "applications").await;
    b.fill("input[name=name]", "Acme Shop").await;
    b.fill("input[name=uid]", "acme").await;
    b.click("form.stack button[type=submit]", "new-application")
        .await;
    b.wait_for_text(".notice", "Application created", false)
        .await;
    b.click(".actions a", "new-endpoint").await;
    b.fill("input[name=url]", &format!("{}/hooks", receiver.uri()))
        .await;
    b.fill("input[name=description]", "Acme's order system")
        .await;
    b.click("input[value='order.paid']", "new-endpoint").await;
    b.click("form.stack button[type=submit]", "endpoint").await;
    b.wait_for_text(".notice", "Endpoint created", false).await;
    let secret = b.text("#secret").await;
    assert!(
        secret.starts_with("whsec_"),
        "the new endpoint's secret is shown: {secret}"
    );
    let endpoint_page = b.client.current_url().await.unwrap();
    let endpoint_page = format!("{base}{}", endpoint_page.path());

    // 3. A message, and its attempt on the message page.
    b.click("#send-test button", "message").await;
    let attempt = b.wait_for_text("tr.attempt", "200", false).await;
    assert!(attempt.text().await.unwrap().contains("ms"));
    let requests = wait_for_requests(&receiver, 1, Duration::from_secs(10)).await;
    crate::support::verify(&secret, &requests[0]).expect("signed with the secret the page showed");

    // 4. The receiver fails until two deliveries are dead; one is replayed from its row,
    //    the other in bulk, and both are delivered.
    answer(&receiver, 500).await;
    let mut first = Vec::new();
    for i in 0..2 {
        let body = json!({"eventType": "order.paid", "payload": {"order": i}});
        first.push(
            api.expect(202, "POST", "/api/v1/app/acme/msg", Some(body))
                .await,
        );
    }
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'dead'",
        2,
        Duration::from_secs(20),
    )
    .await;
    answer(&receiver, 200).await;
    b.goto(
        &format!("{base}/ui/dead-letters?app_id=acme"),
        "dead-letters",
    )
    .await;
    b.wait_for("tr.dead-letter", true).await;
    assert_eq!(
        b.client
            .find_all(fantoccini::Locator::Css("tr.dead-letter"))
            .await
            .unwrap()
            .len(),
        2
    );
    b.click("tr.dead-letter form button", "replayed-one").await;
    b.wait_for_text(".notice", "Replayed", false).await;
    b.click(".actions a", "replay-confirm").await;
    assert_eq!(
        b.text("#replay-count").await,
        "1",
        "the count is shown before confirming"
    );
    b.click("form.actions button[type=submit]", "replay-progress")
        .await;
    b.wait_for_text("#task", "finished", true).await;
    assert_eq!(b.text("#delivered").await, "1");
    for m in &first {
        let id = m["id"].as_str().unwrap();
        let app = api.get("/api/v1/app/acme").await.1["id"]
            .as_str()
            .unwrap()
            .to_string();
        b.goto(&format!("{base}/ui/app/{app}/messages/{id}"), "delivered")
            .await;
        b.wait_for_text(".destination h3 .badge", "delivered", true)
            .await;
    }
    b.goto(&endpoint_page, "endpoint-after").await;
    b.wait_for_text("#success-ratio", "%", false).await;
    b.goto(&format!("{base}/ui/apps"), "applications-after")
        .await;
    b.goto(&format!("{base}/ui/"), "overview-after").await;
    b.wait_for("svg path.line", false).await;

    // The catalogue, and a token made in the page and shown once.
    b.goto(&format!("{base}/ui/event-types"), "event-types")
        .await;
    assert!(b.text("table#event-types").await.contains("order.paid"));
    b.goto(&format!("{base}/ui/tokens"), "tokens").await;
    b.fill("input[name=name]", "billing service").await;
    b.click("form.stack button[type=submit]", "token-made")
        .await;
    let token = b.text("#new-token").await;
    assert!(token.starts_with("hrld_"), "{token}");
    api.with_token(&token)
        .expect(200, "GET", "/api/v1/app", None)
        .await;

    // An inbound source: its requests and what became of each.
    let src = source(
        &api,
        "generic-webhook",
        json!({"eventIdHeader": "X-Request-Id", "eventTypeField": "event"}),
        &receiver.uri(),
    )
    .await;
    let id = [("X-Request-Id".to_string(), "bank-1".to_string())];
    let body = r#"{"event":"bank.transfer.received"}"#;
    for duplicate in [false, true] {
        let (status, answer) = post(&src.url, &id, body).await;
        assert_eq!((status, &answer["duplicate"]), (200, &json!(duplicate)));
    }
    b.goto(&format!("{base}/ui/sources"), "sources").await;
    let row = b.text("table#sources tr.source").await;
    assert!(
        row.contains("generic-webhook source") && row.contains(&src.url),
        "{row}"
    );
    b.click("tr.source a", "source").await;
    b.wait_for("tr.ingest-event", false).await;
    let events = b.text("table#source-events").await;
    assert!(
        events.contains("accepted, unsigned") && events.contains("duplicate"),
        "{events}"
    );
    assert!(events.contains("bank.transfer.received") && events.contains("bank-1"));
    b.click("nav.tabs a[href$='outcome=duplicate']", "source-duplicates")
        .await;
    let shown = b
        .client
        .find_all(fantoccini::Locator::Css("tr.ingest-event"))
        .await
        .unwrap();
    assert_eq!(shown.len(), 1, "only the duplicate");
    b.client.clone().close().await.ok();
    t.finish().await;
}

#[actix_rt::test]
async fn a_portal_link_opens_one_applications_portal_and_nothing_of_another() {
    let t = spawn_app().await;
    let api = t.api();
    let base = api.base.clone();
    let receiver = MockServer::start().await;
    answer(&receiver, 200).await;
    // Two tenants, each with an endpoint and a delivered message.
    let mut ids = Vec::new();
    for uid in ["merchant-a", "merchant-b"] {
        api.create_app(uid, uid).await;
        let url = format!("{}/{uid}", receiver.uri());
        let e = api
            .expect(
                201,
                "POST",
                &format!("/api/v1/app/{uid}/endpoint"),
                Some(json!({"url": url})),
            )
            .await;
        let m = api.post_messages(uid, 1).await.remove(0);
        ids.push((
            e["id"].as_str().unwrap().to_string(),
            m["id"].as_str().unwrap().to_string(),
        ));
    }
    let (b_endpoint, b_msg) = ids[1].clone();
    let access = api
        .expect(
            200,
            "POST",
            "/api/v1/auth/app-portal-access/merchant-a",
            Some(json!({})),
        )
        .await;
    let link = access["url"].as_str().unwrap();
    let mut b = Browser::start("portal").await;

    // The link lands on A's endpoint list.
    b.goto(link, "portal-start").await;
    b.wait_for("table#endpoints", false).await;
    b.snap("portal-endpoints").await;
    assert_eq!(b.path().await, "/portal/endpoints");
    let list = b.text("table#endpoints").await;
    assert!(
        list.contains("/merchant-a") && !list.contains("/merchant-b"),
        "{list}"
    );

    // B's endpoint and message are not found through the portal's pages.
    for path in [
        format!("/portal/endpoints/{b_endpoint}"),
        format!("/portal/messages/{b_msg}"),
    ] {
        b.goto(&format!("{base}{path}"), "foreign").await;
        assert!(b.text("h1").await.starts_with("404"), "{path} is not found");
    }
    b.goto(&format!("{base}/ui/apps"), "no-dashboard").await;
    b.wait_for("input[name=token]", false).await;

    // A's own pages work: its endpoint, its message and its attempt.
    let (a_endpoint, a_msg) = &ids[0];
    b.goto(
        &format!("{base}/portal/endpoints/{a_endpoint}"),
        "portal-endpoint",
    )
    .await;
    b.wait_for_text("#success-ratio", "%", true).await;
    b.goto(&format!("{base}/portal/messages/{a_msg}"), "portal-message")
        .await;
    b.wait_for_text("tr.attempt", "200", true).await;

    // The portal renders in the HTML the server sends, without script.
    let cookie = b.client.get_named_cookie("herald_portal").await.unwrap();
    let html = reqwest::Client::new()
        .get(format!("{base}/portal/endpoints"))
        .header("cookie", format!("herald_portal={}", cookie.value()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("/merchant-a") && html.contains("<table id=\"endpoints\">"));

    // The link's token works on A's API routes, not on B's.
    let portal = api.with_token(access["token"].as_str().unwrap());
    portal
        .expect(200, "GET", "/api/v1/app/merchant-a/endpoint", None)
        .await;
    portal
        .expect(404, "GET", "/api/v1/app/merchant-b/endpoint", None)
        .await;
    portal
        .expect(
            404,
            "GET",
            &format!("/api/v1/app/merchant-a/msg/{b_msg}"),
            None,
        )
        .await;

    // The link was used up: opening it again signs nobody in.
    b.client.delete_all_cookies().await.unwrap();
    b.goto(link, "link-used").await;
    b.wait_for_text("h1", "cannot be used", false).await;
    b.client.clone().close().await.ok();
    t.finish().await;
}
