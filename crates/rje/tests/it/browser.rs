//! A real browser for the dashboard's tests: Debian's Chromium, headless,
//! driven over WebDriver by its own chromedriver on a free port.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::{Instant, sleep};

use crate::helpers::DEADLINE;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser at a time: two Chromiums on a two-core machine beside the
/// other tests would only make every page slow.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A headless Chromium session; the driver dies with it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

/// Debian's Chromium and its driver, installed once when missing (the
/// README's test command needs nothing installed by hand).
fn installed(path: &str) -> PathBuf {
    rje_testkit::packages::ensure(
        &[CHROMIUM, CHROMEDRIVER],
        &["chromium", "chromium-driver"],
        "the dashboard's browser tests",
    );
    PathBuf::from(path)
}

impl Browser {
    /// A browser with a laptop-sized window.
    pub async fn start() -> Self {
        Self::start_with_args(&[]).await
    }

    pub async fn start_with_args(extra: &[&str]) -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
        let chromium = installed(CHROMIUM);
        let chromedriver = installed(CHROMEDRIVER);
        let port = rje_testkit::free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, so that the browsers it starts die with it.
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args = vec![
            "--headless=new".to_owned(),
            // Tests run as root in CI, where Chromium's sandbox cannot start.
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            // The machine has no internet: no background calls home.
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + DEADLINE;
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                // The driver is still starting.
                Err(_) if Instant::now() < deadline => sleep(Duration::from_millis(100)).await,
                Err(err) => panic!("no WebDriver session from chromedriver: {err}"),
            }
        };
        Self {
            client,
            driver,
            _profile: profile,
            _turn: turn,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|err| panic!("script failed: {err}\n{script}"))
    }

    /// Polls `script` until it returns something truthy; returns that.
    pub async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let value = self.js(script).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                let text = self.js("return document.body.innerText").await;
                let text = text.as_str().unwrap_or_default();
                let start = text.len().saturating_sub(2000);
                let start = (start..text.len())
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(0);
                panic!(
                    "timed out waiting for {what}; the page ends with:\n{}",
                    &text[start..]
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.element(css).await.click().await {
                Ok(()) => return,
                // The page drew the element anew between finding it and
                // clicking it (a page re-renders as its job changes): find
                // it again.
                Err(err)
                    if err.to_string().contains("stale element") && Instant::now() < deadline =>
                {
                    sleep(Duration::from_millis(50)).await;
                }
                Err(err) => panic!("cannot click {css}: {err}"),
            }
        }
    }

    /// The element `css` finds, once the page has one.
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(DEADLINE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no {css}: {err}"))
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.element(css).await;
        field.clear().await.expect("field clears");
        field.send_keys(text).await.expect("keys are typed");
    }

    /// Accepts the page's `confirm()` once it is shown.
    pub async fn accept_confirm(&self) {
        let deadline = Instant::now() + DEADLINE;
        while self.client.accept_alert().await.is_err() {
            assert!(Instant::now() < deadline, "no confirmation was asked");
            sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn current_path(&self) -> String {
        let url = self.client.current_url().await.expect("a URL");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Saves a screenshot as `name`.png: into docs/screenshots/ when
    /// `RJE_SAVE_SCREENSHOTS=1` (how the README's pictures are made), else
    /// beside the build output. Either way the picture must not be empty.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 2000,
            "{name}: a real picture"
        );
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = if std::env::var("RJE_SAVE_SCREENSHOTS").as_deref() == Ok("1") {
            root.join("docs/screenshots")
        } else {
            root.join("target/screenshots")
        };
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot saved");
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver's whole group: Chromium too, even when a failed test
        // never closed its session.
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::SIGKILL,
            );
        }
        let _ = self.driver.wait();
    }
}
