//! PostgreSQL as the shared store: migrations under concurrent starts, foreign databases, and
//! several hookwatch processes on one database and one Redis.

use std::sync::Arc;

use hookwatch::domain::pricing::PriceTable;
use hookwatch::store::StoreError;
use hookwatch::store::postgres::{PostgresOptions, PostgresStore};

use crate::postgres::Database;

fn options(database: &Database, instance: &str) -> PostgresOptions {
    PostgresOptions {
        url: database.url.clone(),
        writers: 1,
        queue_capacity: 16,
        readers: 1,
        read_timeout: std::time::Duration::from_secs(2),
        instance_id: instance.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_at_once_migrate_the_schema_once() {
    let database = Database::create();
    let opens: Vec<_> = (0..6)
        .map(|n| {
            let options = options(&database, &format!("i{n}"));
            tokio::task::spawn_blocking(move || {
                PostgresStore::open(&options, Arc::new(PriceTable::default()))
            })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().expect("every instance starts"));
    }
    assert_eq!(database.count("SELECT count(*) FROM hookwatch_schema"), 1);
    assert_eq!(
        database.count("SELECT max(version) FROM hookwatch_schema"),
        1
    );
    assert_eq!(
        database.count(
            "SELECT count(*) FROM information_schema.tables
             WHERE table_schema = 'public' AND table_name = 'events'"
        ),
        1
    );
    for store in &stores {
        hookwatch::store::Store::close(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_not_hookwatchs_is_refused_and_left_alone() {
    let database = Database::create();
    database.count("SELECT count(*) FROM (SELECT 1) one");
    let url = database.url.clone();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .batch_execute("CREATE TABLE events (id int); INSERT INTO events VALUES (42);")
            .unwrap();
    })
    .join()
    .unwrap();
    let options = options(&database, "i");
    let refused = tokio::task::spawn_blocking(move || {
        PostgresStore::open(&options, Arc::new(PriceTable::default()))
    })
    .await
    .unwrap();
    match refused {
        Err(StoreError::Foreign(message)) => assert!(message.contains("events"), "{message}"),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("a foreign database was opened"),
    }
    assert_eq!(
        database.count("SELECT count(*) FROM events WHERE id = 42"),
        1
    );
    assert_eq!(
        database.count("SELECT count(*) FROM pg_tables WHERE tablename = 'hookwatch_schema'"),
        0,
        "nothing was created"
    );
}

#[tokio::test]
async fn an_unreachable_database_fails_the_start_with_a_clear_message() {
    let output = tokio::process::Command::new(crate::helpers::binary())
        .args(["serve", "--addr", "127.0.0.1:0", "--database-url"])
        .arg("postgres://hookwatch:secret@127.0.0.1:1/nowhere")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "could not connect to PostgreSQL at postgres://hookwatch:***@127.0.0.1:1/nowhere"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret"),
        "the password is never shown: {stderr}"
    );
}
