//! A real Chromium, driven through chromedriver (Debian's `chromium` and `chromium-driver`;
//! `.ci/run` installs them). Each test gets its own chromedriver and browser. Every page
//! the test reaches is photographed; when the test fails, the photographs are kept under
//! `target/browser-screenshots/<test>/`, in order. With `HERALD_SCREENSHOTS=<dir>` they are
//! kept whatever happens (the README's pictures are made so).

use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::support::free_port;
use fantoccini::{elements::Element, ClientBuilder, Locator};

/// How long a page may take to show what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct Browser {
    pub client: fantoccini::Client,
    driver: Child,
    test: &'static str,
    shots: Vec<(String, Vec<u8>)>,
}

fn find_binary(names: &[&str]) -> PathBuf {
    for name in names {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
            let p = PathBuf::from(dir).join(name);
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "none of {names:?} is installed: the browser tests need Debian's chromium and \
         chromium-driver (apt-get install chromium chromium-driver; .ci/run does it)"
    )
}

impl Browser {
    pub async fn start(test: &'static str) -> Browser {
        let chromium = find_binary(&["chromium", "chromium-browser", "google-chrome"]);
        let chromedriver = find_binary(&["chromedriver"]);
        let port = free_port();
        // Its own process group: dropping the browser ends chromedriver and every Chromium
        // process it started, even when the test panicked before closing the session.
        let driver = Command::new(chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-extensions",
                    "--no-first-run", "--window-size=1280,900", "--lang=en-US",
                ],
            }),
        );
        let deadline = Instant::now() + PATIENCE;
        let client = loop {
            match ClientBuilder::native()
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                // chromedriver is still starting.
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no WebDriver session from chromedriver: {e}"),
            }
        };
        Browser {
            client,
            driver,
            test,
            shots: Vec::new(),
        }
    }

    /// Photographs the page as it is now (kept if the test fails).
    pub async fn snap(&mut self, name: &str) {
        if let Ok(png) = self.client.screenshot().await {
            self.shots.push((name.to_string(), png));
        }
    }

    pub async fn goto(&mut self, url: &str, name: &str) {
        self.client.goto(url).await.expect("navigation");
        self.snap(name).await;
    }

    /// Waits for an element, reloading the page between looks when `reload` (for pages
    /// that show what the engine does in the background).
    pub async fn wait_for(&mut self, css: &str, reload: bool) -> Element {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                return e;
            }
            if Instant::now() > deadline {
                self.snap("timed-out").await;
                let url = self.client.current_url().await.map(|u| u.to_string());
                panic!("waited {PATIENCE:?} for `{css}` on {url:?}");
            }
            if reload {
                let _ = self.client.refresh().await;
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Waits until `css` shows `text`.
    pub async fn wait_for_text(&mut self, css: &str, text: &str, reload: bool) -> Element {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let e = self.wait_for(css, reload).await;
            if e.text().await.unwrap_or_default().contains(text) {
                return e;
            }
            if Instant::now() > deadline {
                self.snap("timed-out").await;
                panic!("waited {PATIENCE:?} for `{css}` to show {text:?}");
            }
            if reload {
                let _ = self.client.refresh().await;
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let e = self.client.find(Locator::Css(css)).await.expect(css);
        e.clear().await.ok();
        e.send_keys(value).await.expect("typing");
    }

    /// Clicks, then photographs the page the click leads to.
    pub async fn click(&mut self, css: &str, name: &str) {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|_| {
                panic!("no `{css}` to click");
            });
        e.click().await.expect("click");
        self.snap(name).await;
    }

    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .expect(css)
            .text()
            .await
            .unwrap_or_default()
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    fn keep(&self, dir: PathBuf) {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, (name, png)) in self.shots.iter().enumerate() {
            let _ = std::fs::write(dir.join(format!("{:02}-{name}.png", i + 1)), png);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/browser-screenshots")
                .join(self.test);
            self.keep(dir.clone());
            eprintln!(
                "browser test failed: screenshots of each page in {}",
                dir.display()
            );
        } else if let Ok(dir) = std::env::var("HERALD_SCREENSHOTS") {
            self.keep(PathBuf::from(dir).join(self.test));
        }
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}
