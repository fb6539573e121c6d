//! A one-minute smoke of `herald-bench soak` (issue 15): the benchmark itself runs, Herald
//! under it delivers every message exactly once with a valid signature, partitions are made
//! while it runs, and the samples, CSV and chart come out. The hour-long soak is a benchmark
//! (README, Benchmark), not a test: this only keeps it working.
//!
//! Its own test target, so that its minute of load does not run beside the integration
//! tests' timing-sensitive ones.

use std::process::Command;

#[test]
fn a_one_minute_soak_runs_and_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("herald-soak-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plot = dir.join("soak.png");
    let server = std::env::var("HERALD_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    // Beside the benchmark in target/, cargo has built the `herald` it runs.
    let output = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args([
            "--server",
            &server,
            "soak",
            "--rate",
            "200",
            "--minutes",
            "1",
        ])
        .args([
            "--retention",
            "1m",
            "--partition-interval",
            "10s",
            "--every",
            "5",
        ])
        .arg("--plot")
        .arg(&plot)
        .output()
        .expect("herald-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "herald-bench soak failed:\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report in:\n{stdout}"));
    let n = |k: &str| {
        report[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} in {report}"))
    };
    assert_eq!(n("accepted"), 200.0 * 60.0, "{report}");
    assert_eq!(n("lost"), 0.0, "{report}");
    assert_eq!(n("duplicates"), 0.0, "{report}");
    assert_eq!(n("bad_signatures"), 0.0, "{report}");
    assert!(n("samples") >= 10.0, "a sample every 5 s: {report}");
    // Ten-second ranges, three kept ahead: a minute needs more than the first few.
    assert!(
        n("partition_ranges_made") >= 6.0,
        "partitions made while it ran: {report}"
    );
    let csv = std::fs::read_to_string(dir.join("soak.csv")).unwrap();
    assert_eq!(csv.lines().count() as f64, n("samples") + 1.0, "{csv}");
    let png = std::fs::read(&plot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG chart");
    std::fs::remove_dir_all(&dir).ok();
}
