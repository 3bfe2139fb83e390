//! `TestApp::spawn` starts a real hookwatch (in-process, same `Application::build` path as
//! production) on port 0 with its own temp data dir and a manual clock. `ServerProcess` runs
//! the real binary, for tests that kill it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hookwatch::clock::ManualClock;
use hookwatch::config::Config;
use hookwatch::startup::Application;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// 2026-11-20T10:00:00Z: the fixtures' time zero.
pub const T0: i64 = 1_795_168_800_000;

/// Which primary store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` as two tests, `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_each_store {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $test() {
                super::$test($crate::helpers::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $test() {
                super::$test($crate::helpers::Backend::Postgres).await
            })*
        }
    };
}

pub struct TestApp {
    pub base_url: String,
    /// Where OTLP/gRPC is served, when the test asked for it (`Config::otlp_grpc_addr`).
    pub otlp_grpc: Option<std::net::SocketAddr>,
    pub client: reqwest::Client,
    pub clock: ManualClock,
    pub data_dir: tempfile::TempDir,
    pub service: std::sync::Arc<hookwatch::service::MetricsService>,
    /// The alert engine, which tests tick by hand (`evaluate_once`) on the manual clock.
    pub alerts: std::sync::Arc<hookwatch::alerts::engine::AlertEngine>,
    /// The Redis keys the app's cache uses.
    pub cache_keys: hookwatch::cache::CacheKeys,
    /// The PostgreSQL database the app stores in (dropped with the app), if any.
    pub database: Option<std::sync::Arc<crate::postgres::Database>>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with the defaults changed by `configure`.
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_on_with(Backend::Sqlite, configure).await
    }

    /// Spawns on `backend`; on PostgreSQL in a database of its own, made for it.
    pub async fn spawn_on(backend: Backend) -> Self {
        Self::spawn_on_with(backend, |_| {}).await
    }

    pub async fn spawn_on_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(std::sync::Arc::new(crate::postgres::Database::create())),
        };
        Self::spawn_in(data_dir, ManualClock::new(T0), database, configure).await
    }

    /// Spawns with the real clock, for tests (the browser's) that compare times with their own.
    pub async fn spawn_live() -> Self {
        Self::spawn_with(|c| c.clock = std::sync::Arc::new(hookwatch::clock::SystemClock)).await
    }

    /// Stops gracefully and starts a real-clock server again on the same address and data dir,
    /// as a restarted service would be: clients that knew the address can reconnect.
    pub async fn restart_live_on_same_address(mut self) -> Self {
        let address: std::net::SocketAddr = self.base_url["http://".len()..].parse().unwrap();
        self.shut_down().await;
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        Self::spawn_in(data_dir, self.clock.clone(), self.database.clone(), |c| {
            c.addr = address;
            c.clock = std::sync::Arc::new(hookwatch::clock::SystemClock);
        })
        .await
    }

    /// Stops gracefully and starts again on the same data dir and clock.
    pub async fn restart(self) -> Self {
        self.restart_with(|_| {}).await
    }

    /// Stops gracefully and starts again on the same data dir and clock, configured anew.
    pub async fn restart_with(mut self, configure: impl FnOnce(&mut Config)) -> Self {
        self.shut_down().await;
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        Self::spawn_in(
            data_dir,
            self.clock.clone(),
            self.database.clone(),
            configure,
        )
        .await
    }

    /// A second instance on the same PostgreSQL database (and clock) as another.
    pub async fn spawn_sharing(
        database: Option<std::sync::Arc<crate::postgres::Database>>,
        clock: ManualClock,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Self::spawn_in(data_dir, clock, database, configure).await
    }

    async fn spawn_in(
        data_dir: tempfile::TempDir,
        clock: ManualClock,
        database: Option<std::sync::Arc<crate::postgres::Database>>,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config::new(data_dir.path().to_path_buf());
        config.addr = "127.0.0.1:0".parse().unwrap();
        config.clock = std::sync::Arc::new(clock.clone());
        config.database_url = database.as_ref().map(|d| d.url.clone());
        configure(&mut config);
        let app = Application::build(config).await.expect("app builds");
        let base_url = format!("http://{}", app.address());
        let otlp_grpc = app.otlp_grpc_address();
        let service = app.service();
        let alerts = app.alerts();
        let cache_keys = app.cache_keys();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            base_url,
            otlp_grpc,
            client: reqwest::Client::new(),
            clock,
            data_dir,
            service,
            alerts,
            cache_keys,
            database,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// The first column of the first row of `sql` (an `int8`/`INTEGER`), read from the app's
    /// database itself, on either store.
    pub fn count(&self, sql: &str) -> i64 {
        match &self.database {
            Some(database) => database.count(sql),
            None => {
                let path = self.data_dir.path().join(hookwatch::config::DATABASE_FILE);
                let conn = rusqlite::Connection::open(path).expect("open the app's database");
                conn.query_row(sql, [], |row| row.get(0)).expect("query")
            }
        }
    }

    /// Runs statements on the app's database itself, on either store (`sqlite` or
    /// `postgres`, whichever it is on).
    pub fn execute(&self, sqlite: &str, postgres: &str) {
        match &self.database {
            Some(database) => database.execute(postgres),
            None => {
                let path = self.data_dir.path().join(hookwatch::config::DATABASE_FILE);
                let conn = rusqlite::Connection::open(path).expect("open the app's database");
                conn.execute_batch(sqlite).expect("statements");
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// GETs `path`, asserts 200, and returns the JSON body.
    pub async fn get_ok(&self, path: &str) -> Value {
        let body = self.get_text(path).await;
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// GETs `path`, asserts 200, and returns the body as text.
    pub async fn get_text(&self, path: &str) -> String {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "GET {path} answered {status}: {body}");
        body
    }

    /// Posts an envelope and asserts 200.
    pub async fn send_event(&self, envelope: &Value) -> Value {
        let response = self.post_json("/events", envelope).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "POST /events answered {status}: {body}");
        body
    }

    /// Stops the server gracefully and waits for it.
    async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

/// Reads `read` until `condition` holds of its answer, failing (with the last answer) after
/// `within`.
pub async fn wait_until<F, Fut>(
    what: &str,
    within: Duration,
    mut read: F,
    condition: impl Fn(&Value) -> bool,
) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        let body = read().await;
        if condition(&body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts a response is a 4xx JSON error, returning its body.
pub async fn expect_error(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "expected {status}, got {actual}: {text}");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {text}"));
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "error body names no problem: {body}"
    );
    body
}

/// Fetches every stored event, following cursors.
pub async fn all_events(client: &reqwest::Client, base_url: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base_url}/events?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return events,
        }
    }
}

pub fn approx(actual: &Value, expected: f64) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{actual} is not a number"));
    assert!(
        (actual - expected).abs() < 1e-9,
        "expected {expected}, got {actual}"
    );
}

/// The real `hookwatch serve` binary, started on port 0.
pub struct ServerProcess {
    pub child: Child,
    pub base_url: String,
    /// The rest of its standard output (the OTLP/gRPC address comes next, when it serves it).
    pub stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl ServerProcess {
    pub async fn start(data_dir: &Path) -> Self {
        let mut command = Command::new(binary());
        command
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir);
        Self::spawn(command).await
    }

    /// Runs `command` (a `hookwatch serve`) and waits for its start-up line.
    pub async fn spawn(command: Command) -> Self {
        Self::spawn_logging_to(command, Stdio::null()).await
    }

    /// As [`Self::spawn`], with the server's log (its stderr) going to `log`.
    pub async fn spawn_logging_to(mut command: Command, log: impl Into<Stdio>) -> Self {
        command
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = command.spawn().expect("hookwatch starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("hookwatch printed its address in time")
            .unwrap()
            .expect("a line on stdout");
        assert!(line.starts_with("hookwatch listening on http://"), "{line}");
        let base_url = line.rsplit(' ').next().unwrap().to_owned();
        let port: u16 = base_url.rsplit(':').next().unwrap().parse().unwrap();
        assert_ne!(port, 0, "the line shows the real port: {line}");
        Self {
            child,
            base_url,
            stdout: lines,
        }
    }

    /// The OTLP/gRPC address, from the line after the start-up line.
    pub async fn grpc_address(&mut self) -> std::net::SocketAddr {
        let line = tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line())
            .await
            .expect("hookwatch printed its gRPC address in time")
            .unwrap()
            .expect("a second line on stdout");
        let address = line
            .strip_prefix("hookwatch serving OTLP/gRPC on ")
            .unwrap_or_else(|| panic!("not the gRPC line: {line}"));
        address.parse().unwrap()
    }

    /// Posts an envelope and asserts 200.
    pub async fn send_event(&self, envelope: &Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/events", self.base_url))
            .json(envelope)
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), 200, "POST /events");
    }

    /// GETs `path`, asserts 200, and returns the JSON body.
    pub async fn get_ok(&self, path: &str) -> Value {
        serde_json::from_str(&self.get_text(path).await).expect("a JSON body")
    }

    /// GETs `path`, asserts 200, and returns the body as text.
    pub async fn get_text(&self, path: &str) -> String {
        let response = reqwest::get(format!("{}{path}", self.base_url))
            .await
            .expect("request sent");
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.expect("a body")
    }

    pub async fn kill_hard(mut self) {
        self.child.start_kill().unwrap(); // SIGKILL on Unix
        self.child.wait().await.unwrap();
    }
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hookwatch"))
}

/// A process's memory figure from `/proc/{pid}/status`, in KiB: `VmRSS` (now) or `VmHWM` (peak).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// SQL that takes a database back to before sessions' usage sums were kept (SQLite 18,
/// PostgreSQL 15) and what came after them (19–20, 16–17): the version is the caller's to
/// set.
pub fn without_session_sums() -> String {
    let columns = ["day", "first_bucket", "last_bucket"]
        .into_iter()
        .chain(hookwatch::store::telemetry::SUM_COLUMNS)
        .chain(["agent"])
        .map(|c| format!("ALTER TABLE telemetry_sessions DROP COLUMN {c};"))
        .collect::<String>();
    format!(
        "DROP TABLE activity_rollup_hour;
         DROP INDEX telemetry_sessions_seen;
         DROP INDEX telemetry_points_series; ALTER TABLE telemetry_points DROP COLUMN series;
         DROP INDEX telemetry_sessions_by_cost; DROP INDEX telemetry_sessions_by_last;
         DROP INDEX usage_rollup_session; DROP INDEX usage_rollup_hour_session;
         DROP INDEX latency_rollup_session; DROP INDEX latency_rollup_hour_session;
         {columns}
         ALTER TABLE sessions DROP COLUMN coding_agent;
         CREATE INDEX usage_rollup_points ON usage_rollup (session_id) WHERE source = 'point';
         CREATE INDEX usage_rollup_hour_points ON usage_rollup_hour (session_id)
             WHERE source = 'point';"
    )
}
