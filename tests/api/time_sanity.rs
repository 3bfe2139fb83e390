//! A timestamp far in the future is clamped to the arrival time, so it can neither keep a
//! session active nor hold rows past retention (issue 17, item 8).

use serde_json::json;

use crate::fixtures;
use crate::helpers::{T0, TestApp};

const MINUTE: i64 = 60_000;
const TEN_YEARS: i64 = 10 * 365 * 24 * 60 * MINUTE;

#[tokio::test]
async fn a_future_timestamp_is_clamped_to_arrival() {
    let app = TestApp::spawn().await;
    let future = fixtures::envelope("a", "s-future", "SessionStart", TEN_YEARS, json!({}));
    let saved = app.send_event(&future).await;
    assert_eq!(saved["timestamp"], T0, "the arrival time");
    assert_eq!(
        saved["hookwatch_ignored"]["timestamp"],
        T0 + TEN_YEARS,
        "as sent"
    );
    // Within the allowed skew (10 minutes by default), a client's clock is trusted.
    let ahead = fixtures::envelope("a", "s-near", "SessionStart", 5 * MINUTE, json!({}));
    assert_eq!(app.send_event(&ahead).await["timestamp"], T0 + 5 * MINUTE);
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("hookwatch_timestamps_clamped_total 1"),
        "{metrics}"
    );
    // The idle time-out uses the clamped time: past it, the future session is not active.
    app.clock.set(T0 + 5 * MINUTE + 31 * MINUTE);
    let agents = app.get_ok("/api/agents?status=active").await;
    assert_eq!(agents["agents"], json!([]), "{agents}");
}
