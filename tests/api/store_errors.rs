//! What a store failure looks like to a client: an outage is a 503 worth retrying, a bug is a
//! 500 with an id for the log, and neither carries the database's own text.

use serde_json::json;

use crate::fixtures::envelope;
use crate::helpers::ServerProcess;

/// A table dropped under the running server makes every write of a new event type fail inside
/// the database: not an outage, so not a 503 that hook clients would retry for ever.
#[tokio::test]
async fn a_store_bug_is_a_500_with_an_error_id_and_no_database_text() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path()).await;
    server
        .send_event(&envelope("app", "S1", "SessionStart", 1, json!({})))
        .await;
    let conn = rusqlite::Connection::open(dir.path().join("hookwatch.db")).unwrap();
    conn.execute_batch("DROP TABLE event_types").unwrap();
    drop(conn);

    let response = reqwest::Client::new()
        .post(format!("{}/events", server.base_url))
        .json(&envelope("app", "S1", "BrandNewType", 2, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert!(
        response.headers().get("retry-after").is_none(),
        "a bug is not worth retrying"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("error_id "), "{body}");
    assert!(
        !error.contains("event_types") && !error.contains("no such table"),
        "the database's text stays in the log: {body}"
    );
    // The server keeps serving what does not touch the broken table.
    let health = server.get_ok("/healthz").await;
    assert!(health.is_object(), "{health}");
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains("hookwatch_requests_rejected_total{reason=\"internal\"} 1"),
        "{metrics}"
    );
}
