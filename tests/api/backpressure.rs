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
