//! The machine's PostgreSQL, for tests that run on it: each test gets a fresh database of its
//! own, dropped when the test is done. PostgreSQL must be reachable: when it is not, the test
//! fails and says how to provide it. Nothing is skipped.

use std::sync::atomic::{AtomicU64, Ordering};

/// Where the tests find PostgreSQL: `HOOKWATCH_TEST_POSTGRES_URL`, else the local server with
/// trust auth.
pub fn admin_url() -> String {
    std::env::var("HOOKWATCH_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database made for one test; dropped (with its connections) when this is dropped.
pub struct Database {
    pub name: String,
    pub url: String,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Runs `work` with a connection to the admin database, on a thread of its own (the
/// synchronous client must not run on an async worker).
fn with_admin<T: Send + 'static>(
    work: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        let url = admin_url();
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {url}: {e}. The PostgreSQL tests need a server: \
                 `apt-get install postgresql` and start it with trust auth for 127.0.0.1, or set \
                 HOOKWATCH_TEST_POSTGRES_URL to a role that may CREATE DATABASE."
            )
        });
        work(&mut client).expect("PostgreSQL statement")
    })
    .join()
    .expect("admin thread")
}

/// Drops databases left by earlier test runs that were killed before they could (their
/// process is gone); once per run. Databases of a run still going are left alone.
fn drop_leftovers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let names: Vec<String> = with_admin(|client| {
            client
                .query(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'hookwatch\\_test\\_%'",
                    &[],
                )
                .map(|rows| rows.iter().map(|row| row.get(0)).collect())
        });
        for name in names {
            let pid = name.split('_').nth(2).unwrap_or_default();
            if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                with_admin(move |client| client.batch_execute(&statement));
            }
        }
    });
}

impl Database {
    pub fn create() -> Self {
        drop_leftovers();
        let name = format!(
            "hookwatch_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let statement = format!("CREATE DATABASE {name}");
        with_admin(move |client| client.batch_execute(&statement));
        let admin = admin_url();
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// Runs statements on this database.
    pub fn execute(&self, sql: &str) {
        let url = self.url.clone();
        let sql = sql.to_owned();
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            client.batch_execute(&sql).expect("statements");
        })
        .join()
        .expect("statement thread")
    }

    /// A query's single `bigint` answer, on this database.
    pub fn count(&self, sql: &str) -> i64 {
        let url = self.url.clone();
        let sql = sql.to_owned();
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            client.query_one(&sql, &[]).expect("query").get::<_, i64>(0)
        })
        .join()
        .expect("query thread")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        with_admin(move |client| client.batch_execute(&statement));
    }
}

/// A private PostgreSQL server of the test's own (`initdb` in a temp dir, on a free port), for
/// tests that stop and restart the database under a running hookwatch. The machine's server
/// is never touched. Needs root (the server runs as the `postgres` user, via `runuser`).
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    pub port: u16,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(Result::ok)
                    .map(|v| v.path().join("bin"))
                    .filter(|bin| bin.join("initdb").exists())
                    .max()
            })
            .expect(
                "PostgreSQL's server binaries are missing (/usr/lib/postgresql/*/bin/initdb): \
                 `apt-get install postgresql`",
            );
        assert!(
            is_root(),
            "the PostgreSQL restart test starts a private server as the postgres user: run the \
             tests as root (as CI does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = Self { dir, bin, port };
        let data = server.data();
        std::fs::create_dir(&data).unwrap();
        let status = std::process::Command::new("chown")
            .args(["-R", "postgres"])
            .arg(server.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "chown of the private server's directory");
        std::fs::set_permissions(
            server.dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        server.as_postgres(&server.bin.join("initdb"), |c| {
            c.arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres", "--no-sync"]);
        });
        server.start_server();
        server
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn as_postgres(
        &self,
        program: &std::path::Path,
        configure: impl FnOnce(&mut std::process::Command),
    ) {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        configure(&mut command);
        let output = command.output().expect("runuser runs");
        assert!(
            output.status.success(),
            "{program:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        self.as_postgres(&self.bin.join("pg_ctl"), |c| {
            c.arg("-D")
                .arg(self.data())
                .args(["-o", &options, "-w", "-l"])
                .arg(&log)
                .arg("start");
        });
    }

    /// Stops at once (as a crash would: no shutdown checkpoint).
    pub fn stop(&self) {
        self.as_postgres(&self.bin.join("pg_ctl"), |c| {
            c.arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"]);
        });
    }

    pub fn restart(&self) {
        self.start_server();
    }

    pub fn create_database(&self, name: &str) {
        let url = self.url("postgres");
        let statement = format!("CREATE DATABASE {name}");
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            client.batch_execute(&statement).expect("CREATE DATABASE");
        })
        .join()
        .unwrap();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
