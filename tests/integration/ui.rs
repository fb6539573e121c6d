//! The dashboard and portal over plain HTTP: what a browser is told (security headers,
//! cookie flags), what forms require (CSRF), and who may sign in for how long.

use reqwest::{header::HeaderMap, redirect::Policy, Client};
use serde_json::json;

use crate::support::{spawn_app, spawn_app_with, wait_until, TestApp, TOKEN};

/// A browser-like client that keeps no cookies by itself and follows no redirects.
fn client() -> Client {
    Client::builder().redirect(Policy::none()).build().unwrap()
}

/// Signs in to the dashboard; returns the session cookie (`herald_ui=…`).
async fn sign_in(t: &TestApp, token: &str) -> (u16, HeaderMap) {
    let res = client()
        .post(format!("{}/ui/login", t.api().base))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.headers().clone())
}

fn cookie(headers: &HeaderMap) -> String {
    headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn page(t: &TestApp, path: &str, cookie: &str) -> (u16, HeaderMap, String) {
    let res = client()
        .get(format!("{}{path}", t.api().base))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    (status, headers, res.text().await.unwrap())
}

/// Opens a portal link as a browser does: its page, then the form that page posts.
async fn open_portal(link: &str) -> (u16, HeaderMap) {
    let page = client().get(link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers().get("set-cookie").is_none(),
        "reading the link signs nobody in"
    );
    let code = link.split("code=").nth(1).unwrap();
    let start = link.split("?code=").next().unwrap();
    let res = client()
        .post(start)
        .form(&[("code", code)])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.headers().clone())
}

fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with its CSRF token")
        + 19;
    html[at..].split('"').next().unwrap().to_string()
}

/// A source's secret that no page may show. (Not a prefix an endpoint's random
/// `whsec_…` secret could begin with: "whsec_x" was, one page in 64.)
const SOURCE_SECRET: &str = "whsec_stripe-source-secret-never-shown";

#[actix_rt::test]
async fn pages_allow_no_inline_script_and_sessions_are_strict_cookies() {
    let t = spawn_app().await;
    t.api().create_app("acme", "Acme").await;
    let endpoint = t
        .api()
        .expect(
            201,
            "POST",
            "/api/v1/app/acme/endpoint",
            Some(json!({"url": "https://example.com/h"})),
        )
        .await;
    let msg = t.api().post_messages("acme", 1).await.remove(0);
    let src = t
        .api()
        .expect(
            201,
            "POST",
            "/ingest/api/v1/source",
            Some(json!({"name": "stripe", "type": "stripe", "config": {"secret": SOURCE_SECRET}})),
        )
        .await;
    let (status, headers) = sign_in(&t, TOKEN).await;
    assert_eq!(status, 303);
    let set = cookie(&headers);
    for flag in ["herald_ui=", "HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP here: no Secure flag");
    let app = t.api().get("/api/v1/app/acme").await.1["id"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        "/ui/".to_string(),
        "/ui/apps".into(),
        format!("/ui/app/{app}/endpoints"),
        format!("/ui/app/{app}/endpoints/new"),
        format!("/ui/app/{app}/messages"),
        format!(
            "/ui/app/{app}/endpoints/{}?secret=show",
            endpoint["id"].as_str().unwrap()
        ),
        format!("/ui/app/{app}/messages/{}", msg["id"].as_str().unwrap()),
        "/ui/dead-letters".into(),
        "/ui/dead-letters/replay".into(),
        "/ui/event-types".into(),
        "/ui/sources".into(),
        format!("/ui/sources/{}", src["id"].as_str().unwrap()),
        "/ui/tokens".into(),
        "/ui/login".into(),
    ] {
        let (status, headers, html) = page(&t, &path, &set).await;
        assert!(
            status == 200 || (path == "/ui/login" && status == 303),
            "{path}: {status}"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(!html.contains("style="), "{path} has an inline style");
        assert!(!html.contains("<script>"), "{path} has an inline script");
        assert!(
            !html.contains(SOURCE_SECRET),
            "{path} shows a source's secret"
        );
        assert!(
            !html.contains("onclick") && !html.contains("onsubmit"),
            "{path}"
        );
    }
    // The assets: content-hashed, cached for good.
    let (_, _, html) = page(&t, "/ui/", &set).await;
    let css = html
        .split("href=\"")
        .find(|s| s.starts_with("/ui/static/"))
        .unwrap();
    let css = css.split('"').next().unwrap();
    let res = client()
        .get(format!("{}{css}", t.api().base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let res = client()
        .get(format!("{}/ui/static/herald.css", t.api().base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    t.finish().await;
}

#[actix_rt::test]
async fn behind_tls_the_cookie_is_secure() {
    let t = spawn_app_with(&[("HERALD_PUBLIC_URL", "https://hooks.example.com")]).await;
    let (_, headers) = sign_in(&t, TOKEN).await;
    assert!(cookie(&headers).contains("Secure"), "{}", cookie(&headers));
    let link = t
        .api()
        .expect(
            200,
            "POST",
            "/api/v1/auth/app-portal-access/x",
            Some(json!({"application": {"name": "X"}})),
        )
        .await;
    assert!(link["url"]
        .as_str()
        .unwrap()
        .starts_with("https://hooks.example.com/portal/start?code="));
    t.finish().await;
}

#[actix_rt::test]
async fn forms_without_their_csrf_token_change_nothing() {
    let t = spawn_app().await;
    let (_, headers) = sign_in(&t, TOKEN).await;
    let session = cookie(&headers);
    let post = |csrf: Option<String>| {
        let session = session.clone();
        let base = t.api().base;
        async move {
            let mut form = vec![("name".to_string(), "Evil".to_string())];
            if let Some(c) = csrf {
                form.push(("csrf".into(), c));
            }
            client()
                .post(format!("{base}/ui/apps"))
                .header("cookie", session.split(';').next().unwrap())
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(None).await, 403);
    assert_eq!(post(Some("forged".into())).await, 403);
    assert_eq!(t.count("SELECT count(*) FROM herald.application").await, 0);
    let (_, _, html) = page(&t, "/ui/apps", &session).await;
    assert_eq!(post(Some(csrf_of(&html))).await, 303);
    assert_eq!(t.count("SELECT count(*) FROM herald.application").await, 1);
    t.finish().await;
}

#[actix_rt::test]
async fn who_may_sign_in_and_for_how_long() {
    let t = spawn_app_with(&[("HERALD_AUTH_FAILURE_LIMIT", "2")]).await;
    let api = t.api();
    api.create_app("acme", "Acme").await;
    // An application's token is for its portal, not the dashboard.
    let scoped = api
        .expect(
            201,
            "POST",
            "/api/v1/token",
            Some(json!({"name": "s", "appId": "acme"})),
        )
        .await;
    let (status, _) = sign_in(&t, scoped["token"].as_str().unwrap()).await;
    assert_eq!(status, 403);
    // A runtime operator token signs in; revoking it ends the session at once.
    let op = api
        .expect(201, "POST", "/api/v1/token", Some(json!({"name": "ops"})))
        .await;
    let (status, headers) = sign_in(&t, op["token"].as_str().unwrap()).await;
    assert_eq!(status, 303);
    let session = cookie(&headers);
    assert_eq!(page(&t, "/ui/apps", &session).await.0, 200);
    api.expect(
        200,
        "POST",
        &format!("/api/v1/token/{}/revoke", op["id"].as_str().unwrap()),
        None,
    )
    .await;
    let (status, _, html) = page(&t, "/ui/apps", &session).await;
    assert_eq!(status, 401);
    assert!(html.contains("url=/ui/login"), "sent to sign in again");
    // Wrong tokens: the third from this address is locked out, and so is a right one.
    for expected in [401, 401, 429, 429] {
        assert_eq!(sign_in(&t, "wrong-token-000000").await.0, expected);
    }
    assert_eq!(sign_in(&t, TOKEN).await.0, 429);
    t.finish().await;
}

#[actix_rt::test]
async fn a_read_only_portal_shows_and_changes_nothing() {
    let t = spawn_app().await;
    let api = t.api();
    api.create_app("acme", "Acme").await;
    api.expect(
        201,
        "POST",
        "/api/v1/app/acme/endpoint",
        Some(json!({"url": "https://example.com/h"})),
    )
    .await;
    let access = api
        .expect(
            200,
            "POST",
            "/api/v1/auth/app-portal-access/acme",
            Some(json!({"readOnly": true})),
        )
        .await;
    let (status, headers) = open_portal(access["url"].as_str().unwrap()).await;
    assert_eq!(status, 303);
    let session = cookie(&headers);
    assert!(
        session.contains("herald_portal=") && session.contains("Path=/portal"),
        "{session}"
    );
    let (status, headers, html) = page(&t, "/portal/endpoints", &session).await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    for path in ["/portal/messages", "/portal/dead-letters"] {
        let (status, _, html) = page(&t, path, &session).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            !html.contains("style=") && !html.contains("<script>"),
            "{path}"
        );
    }
    assert!(
        html.contains("read-only") && !html.contains("New endpoint"),
        "no write actions"
    );
    let res = client()
        .post(format!("{}/portal/endpoints", api.base))
        .header("cookie", session.split(';').next().unwrap())
        .form(&[
            ("csrf", csrf_of(&html).as_str()),
            ("url", "https://example.com/x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(t.count("SELECT count(*) FROM herald.endpoint").await, 1);
    // Signing out is not a change: a read-only partner may.
    let res = client()
        .post(format!("{}/portal/logout", api.base))
        .header("cookie", session.split(';').next().unwrap())
        .form(&[("csrf", csrf_of(&html).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(page(&t, "/portal/endpoints", &session).await.0, 401);
    t.finish().await;
}

#[actix_rt::test]
async fn delivery_statistics_by_minute_feed_the_overview() {
    let t = spawn_app().await;
    let api = t.api();
    let receiver = crate::support::mock_receiver(&[(500, Some(1)), (200, None)]).await;
    api.acme_endpoint(json!({"url": receiver.uri()})).await;
    api.post_messages("acme", 3).await;
    t.wait_for_count(
        "SELECT count(*) FROM herald.delivery WHERE status = 'succeeded'",
        3,
        std::time::Duration::from_secs(20),
    )
    .await;
    // The reaper samples the queue once a minute, on its next round (one sample, or two
    // when a minute began since start-up).
    let sampled = wait_until(
        std::time::Duration::from_secs(10),
        || t.count("SELECT count(*) FROM herald.queue_sample"),
        |n| *n >= 1,
    )
    .await;
    assert!(sampled, "the queue was sampled");
    let stats = api.expect(200, "GET", "/api/v1/stats/delivery", None).await;
    let minutes = stats["minutes"].as_array().unwrap();
    assert!(
        (60..=61).contains(&minutes.len()),
        "an hour by minute: {}",
        minutes.len()
    );
    let sum = |k: &str| minutes.iter().map(|m| m[k].as_i64().unwrap()).sum::<i64>();
    assert_eq!(
        (sum("attempts"), sum("succeeded"), sum("failed")),
        (4, 3, 1)
    );
    assert!(minutes.iter().any(|m| m["p95LatencyMs"].is_number()));
    assert!(
        minutes.iter().any(|m| m["queueDepth"].is_number()),
        "a sample is in the range"
    );
    // Another application's attempts are not counted for it.
    api.create_app("other", "Other").await;
    let other = api
        .expect(200, "GET", "/api/v1/stats/delivery?app_id=other", None)
        .await;
    assert!(other["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["attempts"] == 0));
    let (status, _) = api
        .get("/api/v1/stats/delivery?since=2026-01-01T00:00:00Z&until=2026-01-03T00:00:00Z")
        .await;
    assert_eq!(status, 422, "at most a day at a time");
    t.finish().await;
}

#[actix_rt::test]
async fn a_portal_link_survives_being_fetched_and_signs_in_once() {
    let t = spawn_app().await;
    let api = t.api();
    api.create_app("acme", "Acme").await;
    let access = api
        .expect(
            200,
            "POST",
            "/api/v1/auth/app-portal-access/acme",
            Some(json!({})),
        )
        .await;
    let link = access["url"].as_str().unwrap();
    // A mail scanner or a chat preview fetches the link first: nothing is used up.
    for _ in 0..2 {
        let res = client().get(link).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let (status, headers) = open_portal(link).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/portal/endpoints");
    let (status, _) = open_portal(link).await;
    assert_eq!(
        status, 403,
        "the second sign-in with the same link is refused"
    );
    // A sign-in form posted from another site is refused.
    let res = client()
        .post(format!("{}/ui/login", api.base))
        .header("origin", "https://evil.example")
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers().get("set-cookie").is_none());
    t.finish().await;
}
