//! The official Svix Python SDK (PyPI `svix`), unchanged, against a running Herald.
//!
//! The test set-up makes a virtualenv under `target/` and installs `tests/sdk/requirements.txt`
//! into it (once), then runs `tests/sdk/svix_sdk_test.py` against this test's instance.

use std::{path::PathBuf, process::Command, sync::Mutex};

use crate::support::*;

/// The virtualenv's python, with `tests/sdk/requirements.txt` installed (the Svix SDK and
/// `standardwebhooks`; the receiver's guide uses it too). Tests running at once wait for the
/// first one's install.
pub fn python_with_svix() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _installing = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/sdk-venv");
    let python = venv.join("bin/python");
    let requirements = root.join("tests/sdk/requirements.txt");
    let stamp = venv.join("requirements.installed");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is installed");
        assert!(status.success(), "python3 -m venv failed");
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "pip install -r tests/sdk/requirements.txt failed"
        );
        std::fs::write(&stamp, wanted).unwrap();
    }
    python
}

#[actix_rt::test]
async fn the_official_svix_python_sdk_drives_herald() {
    let python = python_with_svix();
    let t = spawn_app().await;
    let url = t.api().base;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/svix_sdk_test.py");
    // The script blocks; run it off the runtime so Herald keeps serving it.
    let output = actix_rt::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("HERALD_URL", url)
            .env("HERALD_TOKEN", TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "SDK test failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    t.finish().await;
}
