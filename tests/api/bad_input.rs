//! Each limit and each malformed input gets its 4xx with a message that names the problem;
//! the server keeps serving and nothing stored changes.

use serde_json::{Value, json};

use crate::fixtures;
use crate::helpers::{TestApp, all_events, expect_error};

fn valid() -> Value {
    fixtures::envelope("a", "s", "Stop", 0, json!({}))
}

fn without(field: &str) -> Value {
    let mut event = valid();
    event.as_object_mut().unwrap().remove(field);
    event
}

fn with(field: &str, value: Value) -> Value {
    let mut event = valid();
    event[field] = value;
    event
}

async fn small_limits_app() -> TestApp {
    TestApp::spawn_with(|config| {
        config.limits.max_event_bytes = 4 * 1024;
        config.limits.max_batch_bytes = 64 * 1024;
        config.limits.max_batch_items = 5;
        config.limits.max_id_len = 32;
        config.limits.max_summary_len = 100;
    })
    .await
}

#[tokio::test]
async fn malformed_envelopes_get_400_naming_the_field() {
    let app = small_limits_app().await;
    app.send_event(&valid()).await;
    let before = all_events(&app.client, &app.base_url).await;

    // Only what makes an event unusable is refused: no event type, or a size past a limit
    // (every other field is optional: `optional_fields_of_odd_shapes_are_kept_and_ignored`).
    let cases: Vec<(Value, &str)> = vec![
        (without("hook_event_type"), "hook_event_type"),
        (with("hook_event_type", json!("")), "hook_event_type"),
        (
            with("hook_event_type", json!(["PreToolUse"])),
            "hook_event_type",
        ),
        (with("source_app", json!("x".repeat(33))), "source_app"),
        (with("session_id", json!("x".repeat(33))), "session_id"),
        (with("summary", json!("x".repeat(101))), "summary"),
    ];
    for (body, field) in cases {
        let error = expect_error(app.post_json("/events", &body).await, 400).await;
        assert_eq!(error["field"], field, "{body} gave {error}");
    }
    for body in [
        "{",
        "not json",
        "[]",
        "\"text\"",
        "",
        "{\"source_app\": \"a\",}",
    ] {
        let error = expect_error(app.post_raw("/events", body).await, 400).await;
        assert!(
            error["error"].as_str().unwrap().len() > 5,
            "{body:?} gave {error}"
        );
    }
    let invalid_utf8 = app.post_raw("/events", vec![b'{', 0xff, 0xfe, b'}']).await;
    expect_error(invalid_utf8, 400).await;
    let deep = format!("{}{}", "[".repeat(1_000), "]".repeat(1_000));
    let deep = format!(
        r#"{{"source_app":"a","session_id":"s","hook_event_type":"X","payload":{{"d":{deep}}}}}"#
    );
    expect_error(app.post_raw("/events", deep).await, 400).await;

    assert_eq!(
        all_events(&app.client, &app.base_url).await,
        before,
        "nothing stored changed"
    );
    app.send_event(&valid()).await; // still serving
}

#[tokio::test]
async fn size_and_count_limits_get_413() {
    let app = small_limits_app().await;
    let big = with("payload", json!({"blob": "x".repeat(5 * 1024)}));
    let error = expect_error(app.post_json("/events", &big).await, 413).await;
    assert!(
        error["error"].as_str().unwrap().contains("limit"),
        "{error}"
    );

    let hook = fixtures::hook("s", "Stop", json!({"blob": "x".repeat(5 * 1024)}));
    expect_error(app.post_json("/hooks/claude-code", &hook).await, 413).await;

    let too_many = json!((0..6).map(|_| valid()).collect::<Vec<_>>());
    let error = expect_error(app.post_json("/events/batch", &too_many).await, 413).await;
    assert!(
        error["error"].as_str().unwrap().contains("6 items"),
        "{error}"
    );

    let huge_batch = "x".repeat(65 * 1024);
    expect_error(app.post_raw("/events/batch", huge_batch).await, 413).await;

    assert!(all_events(&app.client, &app.base_url).await.is_empty());
    app.send_event(&valid()).await;
}

#[tokio::test]
async fn a_batch_accepts_good_items_and_names_each_bad_one() {
    let app = small_limits_app().await;
    let body = json!([
        valid(),
        without("hook_event_type"),
        with("session_id", json!("x".repeat(33))),
        valid()
    ]);
    let response = app.post_json("/events/batch", &body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["duplicates"], 0);
    assert_eq!(answer["rejected"][0]["index"], 1);
    assert_eq!(answer["rejected"][0]["field"], "hook_event_type");
    assert_eq!(answer["rejected"][1]["index"], 2);
    assert_eq!(answer["rejected"][1]["field"], "session_id");
    expect_error(app.post_raw("/events/batch", "[1, 2").await, 400).await;
}

#[tokio::test]
async fn raw_hooks_without_an_event_name_get_400() {
    let app = small_limits_app().await;
    let mut body = fixtures::hook("s", "Stop", json!({}));
    body.as_object_mut().unwrap().remove("hook_event_name");
    let error = expect_error(app.post_json("/hooks/claude-code", &body).await, 400).await;
    assert_eq!(error["field"], "hook_event_name");
    // A body with no session id is still stored, under the session `unknown`.
    let mut body = fixtures::hook("s", "Stop", json!({}));
    body.as_object_mut().unwrap().remove("session_id");
    let response = app.post_json("/hooks/claude-code", &body).await;
    assert_eq!(response.status(), 204);
    let stored = all_events(&app.client, &app.base_url).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["session_id"], "unknown");
}

/// An optional field that is absent, `null`, empty or of a shape hookwatch cannot use never
/// loses the event: it is stored, the value kept as sent under `hookwatch_ignored`, and the
/// rules treat the field as absent.
#[tokio::test]
async fn optional_fields_of_odd_shapes_are_kept_and_ignored() {
    let app = small_limits_app().await;
    app.clock.set(crate::helpers::T0 + 5_000);
    // (body, the field kept under hookwatch_ignored, or none)
    let cases: Vec<(Value, Option<&str>)> = vec![
        (without("source_app"), None),
        (without("session_id"), None),
        (without("payload"), None),
        (with("source_app", json!(42)), Some("source_app")),
        (with("source_app", json!("")), None),
        (with("session_id", json!(null)), None),
        (with("session_id", json!(["s"])), Some("session_id")),
        (with("payload", json!("not an object")), Some("payload")),
        (with("payload", json!([1, 2])), Some("payload")),
        (with("timestamp", json!("last tuesday")), Some("timestamp")),
        (with("timestamp", json!(true)), Some("timestamp")),
        (with("timestamp", json!(1_764_000_000)), Some("timestamp")),
        (with("timestamp", json!(-1)), Some("timestamp")),
        (
            with("timestamp", json!(99_999_999_999_999_999_999_f64)),
            Some("timestamp"),
        ),
        (with("summary", json!(7)), Some("summary")),
        (with("model_name", json!(7)), Some("model_name")),
        (with("event_id", json!({"id": 1})), Some("event_id")),
        (with("event_id", json!("")), None),
    ];
    let mut answers = Vec::new();
    for (body, ignored) in &cases {
        let saved = app.send_event(body).await;
        match ignored {
            Some(field) => assert_eq!(
                saved["hookwatch_ignored"][field], body[field],
                "{body} gave {saved}"
            ),
            None => assert!(saved.get("hookwatch_ignored").is_none(), "{saved}"),
        }
        assert!(!saved["event_id"].as_str().unwrap().is_empty());
        assert!(saved["payload"].is_object(), "{saved}");
        assert_eq!(saved["hook_event_type"], "Stop");
        answers.push(saved);
    }
    let stored = all_events(&app.client, &app.base_url).await;
    assert_eq!(stored.len(), cases.len(), "every event stored");
    for saved in &answers {
        let mut saved = saved.clone();
        saved.as_object_mut().unwrap().remove("duplicate");
        assert!(stored.contains(&saved), "{saved} reads back as answered");
    }
    // The payload's cwd names the app; the payload's session id is the session.
    assert_eq!(answers[0]["source_app"], "proj-alpha");
    assert_eq!(answers[1]["session_id"], "s");
    // No payload at all: an empty one.
    assert_eq!(answers[2]["payload"], json!({}));
    // An unusable timestamp is the arrival time.
    assert_eq!(answers[9]["timestamp"], crate::helpers::T0 + 5_000);
    app.send_event(&valid()).await; // still serving
}

#[tokio::test]
async fn a_read_past_its_time_budget_is_stopped_with_a_clear_error() {
    let app = TestApp::spawn_with(|config| config.read_timeout_ms = 0).await;
    let events: Vec<Value> = (0..3_000)
        .map(|n| fixtures::envelope("a", "s", "Stop", n, json!({"n": n})))
        .collect();
    for chunk in events.chunks(1_000) {
        let response = app.post_json("/events/batch", &json!(chunk)).await;
        assert_eq!(response.status(), 200);
    }
    // A text search over every event runs far past a zero budget...
    let response = app
        .client
        .get(app.url("/events?q=nowhere"))
        .send()
        .await
        .unwrap();
    let error = expect_error(response, 400).await;
    assert!(
        error["error"].as_str().unwrap().contains("time budget"),
        "{error}"
    );
    // ...while the server keeps serving cheap reads.
    assert_eq!(app.get_ok("/healthz").await["status"], "ok");
}

#[tokio::test]
async fn bad_query_parameters_and_routes_get_clear_errors() {
    let app = small_limits_app().await;
    let cases = [
        ("/events?limit=abc", "limit"),
        ("/events?limit=0", "limit"),
        ("/events?since=yesterday", "since"),
        ("/events?order=sideways", "order"),
        ("/events?cursor=garbage", "cursor"),
        ("/api/agents/metrics/current?start=10&end=5", "start"),
        ("/api/agents/metrics/current?end=5", "start"),
        ("/api/agents/metrics/timeline?hours=-1", "hours"),
        ("/api/agents/metrics/timeline?bucket=90s", "bucket"),
        ("/api/agents/metrics/timeline?bucket=fast", "bucket"),
        ("/api/agents?status=sleeping", "status"),
    ];
    for (path, field) in cases {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        let error = expect_error(response, 400).await;
        assert_eq!(error["field"], field, "{path}: {error}");
    }
    let too_many_points = app
        .client
        .get(app.url("/api/agents/metrics/timeline?hours=240&bucket=1m"))
        .send()
        .await
        .unwrap();
    expect_error(too_many_points, 400).await;
    // SQL in a filter is only ever a value.
    let injection = app.get_ok("/events?app=a'%20OR%201=1--&order=desc").await;
    assert_eq!(injection["events"], json!([]));

    let missing = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    expect_error(missing, 404).await;
    let missing_agent = app
        .client
        .get(app.url("/api/agents/nobody"))
        .send()
        .await
        .unwrap();
    expect_error(missing_agent, 404).await;
    let wrong_method = app.client.delete(app.url("/events")).send().await.unwrap();
    expect_error(wrong_method, 405).await;
}

/// NUL characters: refused in the identifiers the store keeps as text (PostgreSQL's text cannot
/// hold them), ignored in payload fields the rules read, kept (escaped) in the payload itself.
async fn nul_characters_are_refused_in_identifiers_and_kept_in_payloads(
    backend: crate::helpers::Backend,
) {
    let app = TestApp::spawn_on(backend).await;
    let mut bad = fixtures::envelope("app", "S-nul", "PreToolUse", 0, json!({}));
    bad["session_id"] = json!("S\u{0}nul");
    let error = expect_error(app.post_json("/events", &bad).await, 400).await;
    assert_eq!(error["field"], "session_id");
    assert!(error["error"].as_str().unwrap().contains("NUL"), "{error}");
    let answer = app
        .client
        .post(app.url("/hooks/claude-code?app=a%00b"))
        .json(&json!({"session_id": "S-nul", "hook_event_name": "Stop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400, "an app name with NUL");

    let odd = fixtures::envelope(
        "app",
        "S-nul",
        "PreToolUse",
        0,
        json!({"tool_name": "Bash\u{0}", "tool_use_id": "t\u{0}1", "error": "e\u{0}"}),
    );
    let saved = app.send_event(&odd).await;
    assert_eq!(
        saved["payload"]["tool_name"], "Bash\u{0}",
        "the payload is kept whole"
    );
    let page = app.get_ok("/events?session_id=S-nul").await;
    assert_eq!(page["events"][0]["payload"]["tool_use_id"], "t\u{0}1");
}

crate::on_each_store!(nul_characters_are_refused_in_identifiers_and_kept_in_payloads);

#[tokio::test]
async fn a_plain_get_of_the_stream_gets_a_json_error() {
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/stream")).send().await.unwrap();
    let error = expect_error(response, 400).await;
    assert!(
        error["error"].as_str().unwrap().contains("WebSocket"),
        "{error}"
    );
}

/// Every refusal is JSON, including axum's own rejections (issue 17, item 10).
#[tokio::test]
async fn refusals_made_by_the_framework_are_json_too() {
    let app = TestApp::spawn().await;
    for path in ["/api/agents/%FF%FE", "/api/sessions/%C3%28"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert!(response.status().is_client_error(), "{path}");
        let error = expect_error(response, 400).await;
        assert!(
            error["error"].as_str().unwrap().len() > 5,
            "{path}: {error}"
        );
    }
}

/// An over-long URI gets a JSON 414 naming the limit, and is counted (issue 17, item 10: the
/// 414 was hyper's, with no body). Past 64 KiB hyper's parser still answers first; the README's
/// section on limits says so.
#[tokio::test]
async fn an_over_long_uri_gets_a_json_414_naming_the_limit() {
    let app = TestApp::spawn().await;
    let long = format!("/events?source_app={}", "a".repeat(20 * 1024));
    let response = app.client.get(app.url(&long)).send().await.unwrap();
    let error = expect_error(response, 414).await;
    assert!(
        error["error"].as_str().unwrap().contains("16384"),
        "the error names the limit: {error}"
    );
    // The server keeps serving, and counted the refusal.
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("hookwatch_requests_rejected_total{reason=\"uri_too_long\"} 1"),
        "{metrics}"
    );
}
