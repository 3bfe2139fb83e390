//! A re-sent `event_id` is stored once, and its derived state is applied once.

use serde_json::json;

use crate::fixtures;
use crate::helpers::{Backend, TestApp, all_events};

async fn a_resent_event_id_is_stored_once_and_reported_as_duplicate(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let mut event = fixtures::envelope(
        "a",
        "s",
        "PreToolUse",
        0,
        fixtures::pre_tool("Bash", "b1", json!({})),
    );
    event["event_id"] = json!("7d0c6a4e-8a39-4a8e-9d55-0c1f6f1f0001");
    let first = app.send_event(&event).await;
    assert_eq!(first["duplicate"], false);
    assert_eq!(first["event_id"], "7d0c6a4e-8a39-4a8e-9d55-0c1f6f1f0001");
    let second = app.send_event(&event).await;
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["payload"], first["payload"]);

    assert_eq!(all_events(&app.client, &app.base_url).await.len(), 1);
    let usage = app.get_ok("/api/agents/tools/usage").await;
    assert_eq!(usage["total_calls"], 1, "derived state applied once");
    assert_eq!(app.get_ok("/api/sessions/s").await["event_count"], 1);
}

async fn batches_report_duplicates_within_and_across_requests(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let mut a = fixtures::envelope("a", "s", "Stop", 0, json!({}));
    a["event_id"] = json!("id-a");
    let mut b = fixtures::envelope("a", "s", "Stop", 1, json!({}));
    b["event_id"] = json!("id-b");
    let body = json!([a, b, a]);
    let answer: serde_json::Value = app
        .post_json("/events/batch", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({"accepted": 2, "duplicates": 1, "rejected": []})
    );

    // NDJSON, as the hook client's replay sends it.
    let ndjson = format!("{a}\n{b}\n");
    let answer: serde_json::Value = app
        .post_raw("/events/batch", ndjson)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({"accepted": 0, "duplicates": 2, "rejected": []})
    );
    assert_eq!(all_events(&app.client, &app.base_url).await.len(), 2);
}

async fn a_repeated_hook_body_with_its_event_id_header_is_stored_once(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    for _ in 0..2 {
        let response = app
            .client
            .post(app.url("/hooks/claude-code"))
            .header("x-hookwatch-event-id", "hook-1")
            .json(&fixtures::hook("s", "Stop", json!({})))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    assert_eq!(all_events(&app.client, &app.base_url).await.len(), 1);
}

crate::on_each_store!(
    a_resent_event_id_is_stored_once_and_reported_as_duplicate,
    batches_report_duplicates_within_and_across_requests,
    a_repeated_hook_body_with_its_event_id_header_is_stored_once,
);
