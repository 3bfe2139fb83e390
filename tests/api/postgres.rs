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

impl Database {
    pub fn create() -> Self {
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
