//! `herald demo` (issue 16), run as a newcomer would: on an embedded PostgreSQL, it shows
//! payment events arriving with verified signatures, a failing endpoint whose circuit opens
//! and whose delivery dies, and prints a curl command that replays it; run as printed, the
//! replay arrives. Ctrl-C then stops everything, the database included.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use crate::{
    serial,
    support::{bounded, free_port, TempDir},
};

/// The demo's output, a line at a time, as it comes.
struct Output {
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Output {
    /// Reads until a line satisfies `want`; that line.
    fn until(&mut self, what: &str, within: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line {what} within {within:?}; the demo said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

#[actix_rt::test]
async fn the_demo_shows_a_delivery_a_dead_letter_and_its_replay_then_stops_everything() {
    let _serial = serial().await;
    bounded(Duration::from_secs(300), async {
        let dir = TempDir::new("demo");
        let data = dir.path().join("data");
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HERALD_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        let mut child = command
            .arg("demo")
            .current_dir(dir.path())
            .env(
                "HERALD_CONFIG_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
            )
            .env("HERALD_DATABASE_URL", "embedded")
            .env("HERALD_DATA_DIR", &data)
            .env("HERALD_LISTEN", format!("127.0.0.1:{}", free_port()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("herald demo starts");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut out = Output {
            lines,
            seen: Vec::new(),
        };
        // Blocking reads: on a thread of their own, so the test's runtime keeps going.
        let (out, child) = tokio::task::spawn_blocking(move || {
            let minute = Duration::from_secs(60);
            out.until("saying where its data lives", minute, |l| {
                l.contains("embedded PostgreSQL, its data in")
            });
            for _ in 0..3 {
                out.until("of an arrival", minute, |l| {
                    l.contains("/ok received msg_") && l.contains("signature verified")
                });
            }
            out.until("of an open circuit", minute, |l| {
                l.contains("circuit of ep_") && l.contains("is open")
            });
            let dead = out.until("of a dead letter", Duration::from_secs(120), |l| {
                l.contains("dead letter dlv_")
            });
            let msg_id = dead
                .split_whitespace()
                .find(|w| w.starts_with("msg_"))
                .expect("the dead letter's message")
                .to_string();
            let replay = out.until("with the replay command", minute, |l| {
                l.contains("curl ") && l.contains("/api/v1/dead-letter/dlv_")
            });
            out.until("with the dashboard", minute, |l| {
                l.contains("Dashboard: http://127.0.0.1:") && l.contains("/ui/")
            });

            // As printed.
            let ran = Command::new("sh")
                .arg("-c")
                .arg(replay.trim())
                .output()
                .expect("sh runs");
            let answer = String::from_utf8_lossy(&ran.stdout).into_owned();
            assert!(
                ran.status.success() && answer.contains("\"replayed\":1"),
                "{answer}\n{ran:?}"
            );
            out.until("of the replay's arrival", minute, |l| {
                l.contains(&format!("/flaky received {msg_id}")) && l.contains("signature verified")
            });
            (out, child)
        })
        .await
        .unwrap();
        let mut out = out;
        let mut child = child;

        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
        let status = tokio::task::spawn_blocking(move || {
            out.until("of the end", Duration::from_secs(60), |l| {
                l.contains("nothing is left running")
            });
            child.wait().unwrap()
        })
        .await
        .unwrap();
        assert!(status.success(), "{status}");
        assert!(
            !data.join("postgres/postmaster.pid").exists(),
            "the embedded PostgreSQL stopped with the demo"
        );
    })
    .await;
}
