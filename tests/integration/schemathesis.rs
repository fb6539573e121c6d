//! Schemathesis (PyPI, 4.x) fuzzes the served OpenAPI document against a running Herald:
//! positive and negative cases, every phase (examples, coverage, fuzzing, stateful), and
//! the checks `tests/schemathesis/schemathesis.toml` enables. It must find nothing.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{sdk::python_with_svix, support::*};

/// Examples per operation: about 5,000 requests in all, under a minute here.
const EXAMPLES: &str = "50";
/// The run is bounded: a hang fails the test instead of CI.
const LIMIT: Duration = Duration::from_secs(300);

#[actix_rt::test]
async fn schemathesis_finds_no_failure_in_the_served_document() {
    let st = python_with_svix().with_file_name("st");
    let t = spawn_app_with(&[("HERALD_ROLE", "api")]).await;
    let schema = format!("{}/api/v1/openapi.json", t.api().base);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Schemathesis writes its state and reports into its working directory.
    let work = root.join("target/schemathesis");
    std::fs::create_dir_all(&work).unwrap();
    let config = root.join("tests/schemathesis/schemathesis.toml");
    let run = actix_rt::task::spawn_blocking(move || {
        let mut child = Command::new(st)
            .arg("--config-file")
            .arg(config)
            .args(["run", &schema])
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args(["--mode", "all", "--max-examples", EXAMPLES])
            .args([
                "--seed",
                "42",
                "--generation-deterministic",
                "--workers",
                "1",
            ])
            .args([
                "--continue-on-failure",
                "--request-timeout",
                "10",
                "--no-color",
            ])
            .args([
                "--output-sanitize",
                "false",
                "--report",
                "junit",
                "--report-dir",
                "report",
            ])
            .env("HERALD_TOKEN", TOKEN)
            .current_dir(&work)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("schemathesis is installed in the test virtualenv");
        let deadline = Instant::now() + LIMIT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    // The summary: failures, warnings, how many cases.
    for line in stdout.lines().filter(|l| {
        (l.starts_with('=') && l.contains(" in "))
            || l.contains(" generated, ")
            || l.trim_start().starts_with("⚠️")
    }) {
        println!("schemathesis: {}", line.trim().trim_matches('='));
    }
    assert!(
        run.status.success(),
        "schemathesis found failures (or ran over {LIMIT:?}):\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    t.finish().await;
}
