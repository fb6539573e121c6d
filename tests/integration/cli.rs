//! The `herald` command line, run as the real binary.

use std::{process::Command, time::Duration};

use crate::support::{fresh_database, mock_receiver, server_url, spawn_app, wait_for_requests};

fn herald(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.args(args)
        .env_clear()
        .env(
            "HERALD_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        // Not the repository's .env, if someone has one.
        .current_dir(std::env::temp_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("herald runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[actix_rt::test]
async fn verify_checks_a_real_delivery_and_explains_a_bad_one() {
    let t = spawn_app().await;
    let receiver = mock_receiver(&[(200, None)]).await;
    let app = t.create_app("shop").await;
    let (_, secret) = t.create_endpoint(&app, &receiver.uri(), None).await;
    t.send(&app, "order.created", r#"{"order": 42, "total": "9.99"}"#)
        .await;
    let request = wait_for_requests(&receiver, 1, Duration::from_secs(10))
        .await
        .remove(0);
    let header = |name: &str| crate::support::header(&request, name);
    let dir = tempfile_dir();
    let body = dir.join("body.json");
    std::fs::write(&body, &request.body).unwrap();
    let secret = secret.expose();
    let (id, ts, sig) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let args = |body: &str, now: Option<&str>| {
        let mut a = vec![
            "verify".to_string(),
            "--secret".into(),
            secret.clone(),
            "--id".into(),
            id.clone(),
            "--timestamp".into(),
            ts.clone(),
            "--signature".into(),
            sig.clone(),
            "--body-file".into(),
            body.to_string(),
        ];
        if let Some(now) = now {
            a.extend(["--now".to_string(), now.to_string()]);
        }
        a
    };
    let run = |a: Vec<String>| herald(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[]);

    let (code, out, err) = run(args(body.to_str().unwrap(), None));
    assert_eq!((code, out.trim()), (0, "valid"), "{err}");

    let tampered = dir.join("tampered.json");
    std::fs::write(&tampered, br#"{"order": 42, "total": "0.01"}"#).unwrap();
    let (code, out, _) = run(args(tampered.to_str().unwrap(), None));
    assert_eq!(code, 1);
    assert!(out.contains("no signature matches"), "{out}");

    let later = (ts.parse::<i64>().unwrap() + 301).to_string();
    let (code, out, _) = run(args(body.to_str().unwrap(), Some(&later)));
    assert_eq!(code, 1);
    assert!(out.contains("beyond the 300 s tolerance"), "{out}");

    let (code, _, err) = herald(
        &[
            "verify",
            "--secret",
            "nope",
            "--id",
            "x",
            "--timestamp",
            "1",
            "--signature",
            "v1,x",
            "--body-file",
            body.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("--secret"), "{err}");
    t.finish().await;
}

#[test]
fn config_prints_the_effective_settings_with_secrets_masked() {
    let env = [
        (
            "HERALD_DATABASE_URL",
            "postgres://herald:hunter2@db.internal:5432/herald",
        ),
        ("HERALD_API_TOKENS", "a-very-secret-token-1234"),
        ("HERALD_SENDERS", "7"),
    ];
    let (code, out, err) = herald(&["config"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("HERALD_SENDERS=7\n"), "{out}");
    assert!(
        out.contains("HERALD_DATABASE_URL=postgres://herald:***@db.internal:5432/herald\n"),
        "{out}"
    );
    assert!(out.contains("HERALD_RETENTION=30days\n"), "{out}");
    assert!(
        !out.contains("hunter2") && !out.contains("a-very-secret-token"),
        "{out}"
    );

    let (code, _, err) = herald(&["config"], &[("HERALD_RETENTION", "30s")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("HERALD_RETENTION") && err.contains("1m"),
        "{err}"
    );
    // The name of earlier versions says what to use now.
    let (code, _, err) = herald(&["config"], &[("HERALD_RETENTION_DAYS", "30")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("HERALD_RETENTION_DAYS")
            && err.contains("renamed")
            && err.contains("HERALD_RETENTION=30days"),
        "{err}"
    );
}

#[actix_rt::test]
async fn migrate_creates_the_database_and_applies_the_schema() {
    let url = fresh_database().await;
    // A name that does not exist yet: migrate creates it.
    let url = format!("{url}_new");
    let (code, out, err) = herald(&["migrate"], &[("HERALD_DATABASE_URL", &url)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("migrations applied"), "{out}");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'herald'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(tables >= 8, "{tables} tables");
    pool.close().await;
    // Running it again is a no-op.
    let (code, _, err) = herald(&["migrate"], &[("HERALD_DATABASE_URL", &url)]);
    assert_eq!(code, 0, "{err}");
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", server_url()))
        .await
        .unwrap();
    for db in [
        url.rsplit('/').next().unwrap(),
        url.rsplit('/').next().unwrap().trim_end_matches("_new"),
    ] {
        sqlx::Executor::execute(
            &mut admin,
            format!(r#"DROP DATABASE IF EXISTS "{db}" WITH (FORCE)"#).as_str(),
        )
        .await
        .unwrap();
    }
}

#[actix_rt::test]
async fn healthcheck_answers_for_a_running_instance_and_fails_without_one() {
    let t = spawn_app().await;
    let url = format!("{}/api/v1/health", t.api().base);
    let (code, out, err) = herald_async(&["healthcheck", "--url", &url], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = herald_async(
        &[
            "healthcheck",
            "--live",
            "--url",
            &format!("{}/api/v1/health/ping", t.api().base),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    t.finish().await;
    // Nothing listens there any more.
    let (code, out, _) = herald_async(&["healthcheck", "--url", &url], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("unhealthy"), "{out}");
}

/// `herald` run off the test's runtime thread, which must keep serving the instance under test.
async fn herald_async(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    actix_rt::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        herald(&args, &env)
    })
    .await
    .unwrap()
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `herald verify` example of docs/receivers.md, exactly as printed there.
#[test]
fn the_guides_verify_example_is_valid() {
    let guide = include_str!("../../docs/receivers.md");
    let start = guide
        .find("herald verify --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .expect("the guide's example");
    let command: String =
        guide[start..guide[start..].find("# valid").unwrap() + start].replace("\\\n", " ");
    let body_line = "printf '%s' '";
    let body_start = guide[..start].rfind(body_line).unwrap() + body_line.len();
    let body = &guide[body_start..body_start + guide[body_start..].find("' >").unwrap()];
    let dir = tempfile_dir();
    std::fs::write(dir.join("body.json"), body).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(&dir)
        .args(shell_words(&command).iter().skip(1))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "valid",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Splits a one-line shell command; single quotes only (all the guide uses).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut quoted = false;
    let mut word = String::new();
    for c in line.trim().chars() {
        match c {
            '\'' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Without a reachable PostgreSQL, start-up ends with one line on stderr naming the address
/// (password masked), what failed, and what to do next.
#[test]
fn without_postgresql_start_up_says_where_it_looked_and_what_to_do() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again: nothing listens there
    let url = format!("postgres://herald:hunter2@127.0.0.1:{port}/herald");
    let (code, _, stderr) = herald(&["serve"], &[("HERALD_DATABASE_URL", &url)]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let line = lines[0];
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    assert!(!line.contains("hunter2"), "password masked: {line}");
    assert!(line.contains("refused"), "what failed: {line}");
    assert!(
        line.contains("start PostgreSQL") && line.contains("HERALD_DATABASE_URL"),
        "what to do: {line}"
    );
    assert!(!line.contains("MIGRATIONS"), "not about migrations: {line}");
}

#[actix_rt::test]
async fn token_commands_make_list_and_revoke_tokens_the_api_accepts() {
    let t = spawn_app().await;
    let api = t.api();
    api.create_app("merchant-a", "A").await;
    let env = [("HERALD_DATABASE_URL", t.database_url.as_str())];
    let (code, out, err) = herald(
        &[
            "token",
            "create",
            "--name",
            "merchant A backend",
            "--app",
            "merchant-a",
            "--expires",
            "30days",
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let token = out.trim();
    assert!(
        token.starts_with("hrld_") && !token.contains('\n'),
        "stdout is the token alone: {out}"
    );
    assert!(err.contains("not shown again"), "{err}");
    let scoped = api.with_token(token);
    scoped
        .expect(200, "GET", "/api/v1/app/merchant-a/endpoint", None)
        .await;
    scoped.expect(403, "GET", "/api/v1/app", None).await;

    let (code, out, _) = herald(&["token", "list"], &env);
    assert_eq!(code, 0);
    assert!(
        out.contains("merchant A backend") && out.contains("live"),
        "{out}"
    );
    assert!(!out.contains(token), "the list never shows a token");
    let id = out
        .lines()
        .find(|l| l.contains("merchant A backend"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();

    let (code, out, _) = herald(&["token", "revoke", &id], &env);
    assert_eq!(code, 0, "{out}");
    scoped
        .expect(401, "GET", "/api/v1/app/merchant-a/endpoint", None)
        .await;

    // Mistakes say what is wrong.
    let (code, _, err) = herald(&["token", "create", "--name", "x", "--app", "nobody"], &env);
    assert_eq!(code, 1);
    assert!(
        err.contains("appId: no application has this id or uid"),
        "{err}"
    );
    let (code, _, err) = herald(&["token", "revoke", "tok_nope"], &env);
    assert_eq!(code, 1);
    assert!(err.contains("no token has the id tok_nope"), "{err}");
    t.finish().await;
}
