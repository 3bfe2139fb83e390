//! A full write queue is answered at once with 503 and Retry-After; nothing acknowledged is
//! lost and nothing refused is stored.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::fixtures::envelope;
use crate::helpers::{TestApp, all_events};

#[tokio::test]
async fn a_full_write_queue_answers_503_with_retry_after_and_loses_nothing_acknowledged() {
    let app = Arc::new(TestApp::spawn_with(|c| c.write_queue_capacity = 1).await);
    // Large batches keep the single writer busy while single events pile up behind them.
    let batch: Vec<Value> = (0..1000)
        .map(|n| {
            envelope(
                "p",
                &format!("B{}", n % 7),
                "PreToolUse",
                n,
                json!({"tool_name": "Bash", "tool_use_id": format!("b{n}")}),
            )
        })
        .collect();
    let batches: Vec<_> = (0..3)
        .map(|round| {
            let (app, mut batch) = (Arc::clone(&app), batch.clone());
            for (n, event) in batch.iter_mut().enumerate() {
                event["event_id"] = json!(format!("00000000-0000-7000-8000-{round:04}{n:08}"));
            }
            tokio::spawn(async move { app.post_json("/events/batch", &json!(batch)).await })
        })
        .collect();
    let singles: Vec<_> = (0..60)
        .map(|n| {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                let event = envelope("p", "S", "Notification", n, json!({"n": n}));
                let response = app.post_json("/events", &event).await;
                let status = response.status().as_u16();
                let retry_after = response.headers().get("retry-after").cloned();
                let body: Value = response.json().await.unwrap();
                (n, status, retry_after, body)
            })
        })
        .collect();
    let mut accepted = 0;
    for batch in batches {
        let response = batch.await.unwrap();
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            accepted += body["accepted"].as_i64().unwrap();
        } else {
            assert_eq!(response.status(), 503);
        }
    }
    let mut refused = Vec::new();
    for single in singles {
        let (n, status, retry_after, body) = single.await.unwrap();
        match status {
            200 => accepted += 1,
            503 => {
                assert_eq!(retry_after.unwrap(), "1");
                assert!(
                    body["error"].as_str().unwrap().contains("queue is full"),
                    "{body}"
                );
                refused.push(n);
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        !refused.is_empty(),
        "a queue of one overflowed under this load"
    );
    let stored = all_events(&app.client, &app.base_url).await;
    assert_eq!(
        stored.len() as i64,
        accepted,
        "every acknowledged event, and only those"
    );
    let stored_singles: Vec<i64> = stored
        .iter()
        .filter(|e| e["hook_event_type"] == "Notification")
        .map(|e| e["payload"]["n"].as_i64().unwrap())
        .collect();
    assert!(refused.iter().all(|n| !stored_singles.contains(n)));
}

/// Claude Code's OTLP exports under the same backpressure: a full queue is 503 with
/// Retry-After (the exporters retry on it), never a refusal in `partial_success`; every
/// acknowledged record is stored, none of a refused export.
#[tokio::test]
async fn a_full_write_queue_answers_otlp_with_503_and_retry_after() {
    let app = Arc::new(TestApp::spawn_with(|c| c.write_queue_capacity = 1).await);
    let hooks: Vec<Value> = (0..1000)
        .map(|n| {
            envelope(
                "p",
                &format!("B{}", n % 7),
                "Notification",
                n,
                json!({"n": n}),
            )
        })
        .collect();
    let busy: Vec<_> = (0..3)
        .map(|round| {
            let (app, mut batch) = (Arc::clone(&app), hooks.clone());
            for (n, event) in batch.iter_mut().enumerate() {
                event["event_id"] = json!(format!("00000000-0000-7000-8000-{round:04}{n:08}"));
            }
            tokio::spawn(async move { app.post_json("/events/batch", &json!(batch)).await })
        })
        .collect();
    let exports: Vec<_> = (0..40)
        .map(|export: i64| {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                let records: Vec<Value> = (0..10)
                    .map(|n| {
                        json!({
                            "timeUnixNano": format!("{}", (crate::helpers::T0 + export * 100 + n) * 1_000_000),
                            "body": {"stringValue": "claude_code.api_request"},
                            "attributes": [
                                {"key": "session.id", "value": {"stringValue": "S-otel"}},
                                {"key": "event.name", "value": {"stringValue": "api_request"}},
                                {"key": "cost_usd", "value": {"doubleValue": 0.01}},
                            ],
                        })
                    })
                    .collect();
                let body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]});
                let response = app
                    .post_raw("/v1/logs", serde_json::to_vec(&body).unwrap())
                    .await;
                let status = response.status().as_u16();
                let retry_after = response.headers().get("retry-after").cloned();
                (status, retry_after)
            })
        })
        .collect();
    for batch in busy {
        batch.await.unwrap();
    }
    let (mut acknowledged, mut refused) = (0, 0);
    for export in exports {
        match export.await.unwrap() {
            (200, _) => acknowledged += 10,
            (503, retry_after) => {
                assert_eq!(retry_after.unwrap(), "1");
                refused += 1;
            }
            (other, _) => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 0, "a queue of one overflowed under this load");
    assert_eq!(
        app.count("SELECT count(*) FROM telemetry_events"),
        acknowledged,
        "every acknowledged record, and only those"
    );
}
