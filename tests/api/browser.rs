//! A real headless Chromium (Debian's `chromium`), driven over WebDriver through `chromedriver`
//! (Debian's `chromium-driver`) with the `fantoccini` client; nothing about the browser is
//! simulated. chromedriver picks its own port (`--port=0`) and says which, so no port is
//! guessed and raced for.
//!
//! When Chromium or chromedriver is missing the tests fail and say how to install them
//! (`scripts/test` installs both when missing).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn executable(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: install Debian's Chromium and its driver with \
         `apt-get install chromium chromium-driver` (scripts/test does this), or set {env}",
        path.display()
    );
    path
}

/// Starts chromedriver on a port of its choosing; returns it with that port, read from the
/// line it prints once it listens. A start that fails (on a busy machine chromedriver has
/// ended before printing its port) is tried again, twice; the failure names what chromedriver
/// printed on both of its outputs.
async fn start_driver(chromedriver: &Path) -> (Child, u16) {
    let mut failures = Vec::new();
    for _ in 0..3 {
        match try_start_driver(chromedriver).await {
            Ok(started) => return started,
            Err(why) => failures.push(why),
        }
    }
    panic!(
        "chromedriver did not start, three times:\n{}",
        failures.join("\n---\n")
    );
}

async fn try_start_driver(chromedriver: &Path) -> Result<(Child, u16), String> {
    let mut driver = Command::new(chromedriver)
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("chromedriver could not be run: {e}"))?;
    let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
    // What it says on stderr, kept for the failure message (and read, so it never blocks).
    let errors = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stderr = BufReader::new(driver.stderr.take().unwrap()).lines();
    let said = std::sync::Arc::clone(&errors);
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            let mut said = said.lock().unwrap();
            if said.len() < 16 * 1024 {
                said.push_str(&line);
                said.push('\n');
            }
        }
    });
    let mut printed = String::new();
    let started = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                return rest.trim_end_matches('.').parse::<u16>().ok();
            }
            printed.push_str(&line);
            printed.push('\n');
        }
        None
    };
    let port = tokio::time::timeout(Duration::from_secs(30), started).await;
    let port = match port {
        Ok(Some(port)) => port,
        outcome => {
            let _ = driver.start_kill();
            let status = driver
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_default();
            let why = match outcome {
                Err(_) => "did not say which port it listens on within 30 s",
                _ => "ended before printing its port",
            };
            return Err(format!(
                "chromedriver {why} ({status}); stdout:\n{printed}stderr:\n{}",
                errors.lock().unwrap()
            ));
        }
    };
    // Keep reading what it prints, so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((driver, port))
}

/// Browsers running at once in this test process: each Chromium takes most of a core while it
/// starts, and a 2-core machine busy with other work once failed 8 of 14 browser tests.
static BROWSER_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// chromedriver's console log (`POST /session/{id}/se/log`), which WebDriver does not define.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

pub struct Browser {
    client: fantoccini::Client,
    driver: Child,
    _profile: tempfile::TempDir,
    /// Its place among the browsers that may run at once.
    _slot: tokio::sync::SemaphorePermit<'static>,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a fresh profile.
    pub async fn start() -> Self {
        let slot = BROWSER_SLOTS
            .acquire()
            .await
            .expect("the browser slots stay open");
        let chromium = executable("HOOKWATCH_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = executable("HOOKWATCH_CHROMEDRIVER", "/usr/bin/chromedriver");
        let (driver, port) = start_driver(&chromedriver).await;
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            // Leave alerts open, so a test can see that none was raised.
            "unhandledPromptBehavior": "ignore",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1400,1300",
                    "--force-color-profile=srgb",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let capabilities: Capabilities = capabilities;
        let client = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| panic!("Chromium did not start: {e}"));
        Self {
            client,
            driver,
            _profile: profile,
            _slot: slot,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("WebDriver navigation to {url} failed: {e}"));
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        let args = match args {
            Value::Array(args) => args,
            other => panic!("script arguments are an array, not {other}"),
        };
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {script} failed: {e}"))
    }

    /// Polls `script` until it returns something other than `null` or `false`, and returns it.
    pub async fn wait_for(&self, what: &str, script: &str, args: Value, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let value = self.run(script, args.clone()).await;
            if !value.is_null() && value != false {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The text of an open `alert`/`confirm`/`prompt`, if one is open.
    pub async fn open_alert(&self) -> Option<String> {
        match self.client.get_alert_text().await {
            Ok(text) => Some(text),
            Err(e) if e.is_no_such_alert() => None,
            Err(e) => panic!("WebDriver alert check failed: {e}"),
        }
    }

    /// The browser console's errors since the last call (chromedriver's log endpoint).
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .unwrap_or_else(|e| panic!("WebDriver console log failed: {e}"));
        entries
            .as_array()
            .expect("log entries")
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Saves a PNG of the viewport.
    pub async fn screenshot(&self, path: &Path) {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("WebDriver screenshot failed: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Ends the session (closing Chromium) and stops chromedriver.
    pub async fn quit(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}
