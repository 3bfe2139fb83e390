//! Numbers that cannot wrap: a token count past the per-event bound is refused naming its
//! field, sums of counts within it saturate instead of wrapping or failing, and no stored row
//! can make a view fail (issue 17, item 1).

use serde_json::{Value, json};

use crate::fixtures;
use crate::helpers::{Backend, T0, TestApp, expect_error};

/// The most tokens one count of one event may report (`MAX_TOKENS_PER_EVENT`).
const BOUND: i64 = 1_000_000_000_000;

/// Every view a dashboard reads answers 200 with no negative number in it.
async fn every_view_answers_with_sane_numbers(app: &TestApp) -> Value {
    let metrics = app.get_ok("/api/agents/metrics/current").await;
    for path in [
        "/api/agents/metrics/timeline?hours=1",
        "/api/agents/types/distribution",
        "/api/agents/tools/usage",
        "/api/sessions",
        "/api/agents",
        "/events/recent",
    ] {
        let answer = app.get_ok(path).await;
        assert_no_negative_number(&answer, path);
    }
    assert_no_negative_number(&metrics, "metrics");
    metrics
}

fn assert_no_negative_number(value: &Value, path: &str) {
    match value {
        Value::Number(n) => assert!(n.as_f64().unwrap() >= 0.0, "{path}: {n}"),
        Value::Array(items) => items
            .iter()
            .for_each(|v| assert_no_negative_number(v, path)),
        Value::Object(map) => map
            .iter()
            .filter(|(key, _)| key.as_str() != "payload")
            .for_each(|(_, v)| assert_no_negative_number(v, path)),
        _ => {}
    }
}

async fn the_poison_pill_is_refused_and_every_view_stays_up(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    app.clock.set(T0 + 60_000);
    // The outside review's reproduction, posted three times.
    let poison = json!({"source_app": "x", "session_id": "x", "hook_event_type": "Stop",
        "payload": {}, "timestamp": T0,
        "transcript_usage": {"claude-sonnet-4-5": {"input_tokens": 4_000_000_000_000_000_000_i64}}});
    for _ in 0..3 {
        let error = expect_error(app.post_json("/events", &poison).await, 400).await;
        assert_eq!(error["field"], "transcript_usage", "{error}");
    }
    // A subagent tool's usage and totalTokens at i64::MAX.
    let huge = fixtures::envelope(
        "x",
        "x",
        "PostToolUse",
        0,
        fixtures::post_tool(
            "Task",
            "t1",
            json!({"agentId": "a1", "totalTokens": i64::MAX, "usage": {"output_tokens": i64::MAX}}),
        ),
    );
    let error = expect_error(app.post_json("/events", &huge).await, 400).await;
    assert_eq!(error["field"], "payload.tool_response.usage", "{error}");
    let report = json!({"agent_id": "a1", "token_usage": {"input_tokens": i64::MAX}});
    let error = expect_error(app.post_json("/api/agents/complete", &report).await, 400).await;
    assert_eq!(error["field"], "token_usage", "{error}");

    let metrics = every_view_answers_with_sane_numbers(&app).await;
    assert_eq!(metrics["tokens_used_today"], 0, "nothing was stored");
    assert_eq!(metrics["estimated_cost_today"], 0.0);
}

/// 200 subagents and 200 Stops in one minute, each at the bound with the dearest model: their
/// sums are far past `i64::MAX` nano-dollars, and every view saturates instead of failing.
async fn sums_past_i64_saturate(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    app.clock.set(T0 + 60_000);
    let at_bound = json!({"input_tokens": BOUND, "output_tokens": BOUND,
        "cache_creation_input_tokens": BOUND, "cache_read_input_tokens": BOUND});
    let mut batch = Vec::new();
    for n in 0..200 {
        let id = format!("t{n}");
        batch.push(fixtures::envelope(
            "x",
            "s",
            "PreToolUse",
            n,
            fixtures::pre_tool("Task", &id, json!({"subagent_type": "Explore"})),
        ));
        batch.push(fixtures::envelope(
            "x",
            "s",
            "PostToolUse",
            n + 1,
            fixtures::post_tool(
                "Task",
                &id,
                json!({"agentId": format!("a{n}"), "totalDurationMs": 1000,
                       "model": "claude-opus-4-1", "usage": at_bound}),
            ),
        ));
        let mut stop = fixtures::envelope("x", "s", "Stop", n + 2, json!({}));
        stop["transcript_usage"] = json!({"claude-opus-4-1": at_bound});
        batch.push(stop);
    }
    for chunk in batch.chunks(300) {
        let answer: Value = app
            .post_json("/events/batch", &json!(chunk))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(answer["accepted"], chunk.len(), "{answer}");
    }
    let metrics = every_view_answers_with_sane_numbers(&app).await;
    assert_eq!(metrics["executions_today"], 200);
    let tokens = metrics["tokens_used_today"].as_f64().unwrap();
    assert!(tokens >= 1.6e15, "200 × 2 × 4 × 10^12 tokens: {metrics}");
    let cost = metrics["estimated_cost_today"].as_f64().unwrap();
    assert!(
        cost >= 9.2e9,
        "saturated at i64::MAX nano-dollars, never wrapped: {metrics}"
    );
    let session = app.get_ok("/api/sessions/s").await;
    assert!(
        session["estimated_cost"].as_f64().unwrap() > 0.0,
        "{session}"
    );
}

/// A row an older build left with an overflowed sum (SQLite turned it into a REAL) is read
/// saturated: views never fail on what is already stored.
#[tokio::test]
async fn an_overflowed_row_already_stored_never_makes_a_view_fail() {
    let app = TestApp::spawn().await;
    app.clock.set(T0 + 60_000);
    app.send_event(&fixtures::envelope("x", "s", "Stop", 0, json!({})))
        .await;
    let db = rusqlite::Connection::open(app.data_dir.path().join("hookwatch.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    db.execute(
        "INSERT INTO execution_rollup_hour (bucket, agent_type, executions, successes, failures,
             duration_sum_ms, duration_count, tokens, cost_nanos)
         VALUES (?1, 'Old', 2, 2, 0, 9.3e18, 1, 9.3e18, 1.5e19)",
        [T0],
    )
    .unwrap();
    let metrics = every_view_answers_with_sane_numbers(&app).await;
    assert_eq!(metrics["executions_today"], 2, "{metrics}");
    assert_eq!(metrics["tokens_used_today"], i64::MAX, "{metrics}");
}

crate::on_each_store!(
    the_poison_pill_is_refused_and_every_view_stays_up,
    sums_past_i64_saturate,
);

/// Every identifier the rules store has the identifier length limit (issue 17, item 9): 300
/// tool names of 100 KB made a 221 MB database and a 30 MB tool-usage answer.
#[tokio::test]
async fn identifiers_in_payloads_are_held_to_the_length_limit() {
    let app = TestApp::spawn().await;
    let long = "x".repeat(257);
    let cases = [
        (
            fixtures::envelope(
                "a",
                "s",
                "PreToolUse",
                0,
                fixtures::pre_tool(&long, "t1", json!({})),
            ),
            "payload.tool_name",
        ),
        (
            fixtures::envelope(
                "a",
                "s",
                "SubagentStart",
                0,
                json!({"agent_id": "a1", "agent_type": long}),
            ),
            "payload.agent_type",
        ),
        (
            fixtures::envelope("a", "s", "SessionStart", 0, json!({"model": long})),
            "payload.model",
        ),
        (
            fixtures::envelope(
                "a",
                "s",
                "PreToolUse",
                0,
                fixtures::pre_tool("Task", "t2", json!({"subagent_type": long})),
            ),
            "payload.tool_input.subagent_type",
        ),
    ];
    for (event, field) in &cases {
        let error = expect_error(app.post_json("/events", event).await, 400).await;
        assert_eq!(error["field"], *field, "{error}");
        let hook = event["payload"].clone();
        let error = expect_error(app.post_json("/hooks/claude-code", &hook).await, 400).await;
        assert_eq!(error["field"], *field, "{error}");
    }
    let report = json!({"agent_type": long});
    let error = expect_error(app.post_json("/api/agents/start", &report).await, 400).await;
    assert_eq!(error["field"], "agent_type");
    assert!(
        crate::helpers::all_events(&app.client, &app.base_url)
            .await
            .is_empty()
    );
    // At the limit, accepted.
    let at_limit = "y".repeat(256);
    app.send_event(&fixtures::envelope(
        "a",
        "s",
        "PreToolUse",
        0,
        fixtures::pre_tool(&at_limit, "t3", json!({})),
    ))
    .await;
}
