//! Event reads (filters, text search, cursors), the origin's dashboard reads, health and CORS.

use serde_json::{Value, json};

use crate::fixtures;
use crate::helpers::{Backend, T0, TestApp};

async fn seeded(backend: Backend) -> TestApp {
    let app = TestApp::spawn_on(backend).await;
    for event in fixtures::main_session() {
        app.send_event(&event).await;
    }
    for event in fixtures::idle_session() {
        app.send_event(&event).await;
    }
    app
}

fn ids(page: &Value) -> Vec<i64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

async fn events_filter_by_every_parameter(backend: Backend) {
    let app = seeded(backend).await;
    let by = |query: &'static str| {
        let app = &app;
        async move {
            app.get_ok(&format!("/events?{query}")).await["events"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(by("").await, 28);
    assert_eq!(by("session_id=S3").await, 2);
    assert_eq!(by("app=proj-alpha").await, 28);
    assert_eq!(by("app=other").await, 0);
    assert_eq!(by("event_type=SubagentStop").await, 3);
    assert_eq!(by("tool=Task").await, 6);
    assert_eq!(by("tool=Task&event_type=PreToolUse").await, 3);
    assert_eq!(by("q=Agent%20crashed").await, 1);
    let window = format!("since={}&until={}", T0 + 120_000, T0 + 180_000);
    let page = app.get_ok(&format!("/events?{window}")).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 6);
    // Oldest first by default; the S3 events happened 40 minutes before S1.
    let all = app.get_ok("/events").await;
    assert_eq!(all["events"][0]["session_id"], "S3");
    assert_eq!(all["next_cursor"], Value::Null);
}

async fn cursors_page_through_events_in_both_orders(backend: Backend) {
    let app = seeded(backend).await;
    let everything = ids(&app.get_ok("/events?limit=1000").await);
    for order in ["asc", "desc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/events?limit=5&order={order}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = app.get_ok(&path).await;
            seen.extend(ids(&page));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        let mut expected = everything.clone();
        if order == "desc" {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order}");
    }
}

async fn recent_events_and_filter_options_keep_the_origin_shapes(backend: Backend) {
    let app = seeded(backend).await;
    let recent = app.get_ok("/events/recent?limit=3").await;
    let recent = recent.as_array().unwrap();
    assert_eq!(recent.len(), 3);
    let types: Vec<&str> = recent
        .iter()
        .map(|e| e["hook_event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["PostToolUseFailure", "Stop", "SessionEnd"],
        "newest three, oldest first"
    );

    let options = app.get_ok("/events/filter-options").await;
    assert_eq!(options["source_apps"], json!(["proj-alpha"]));
    // Newest id first, as the upstream lists them.
    assert_eq!(options["session_ids"], json!(["S3", "S1"]));
    let types = options["hook_event_types"].as_array().unwrap();
    assert_eq!(types.len(), 9);
    assert!(types.contains(&json!("SubagentStart")));
}

#[tokio::test]
async fn health_reports_the_store_and_a_disabled_cache() {
    let app = TestApp::spawn().await;
    let health = app.get_ok("/api/agents/health").await;
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["sqlite"]["status"], "up");
    assert_eq!(health["redis"]["status"], "disabled");
    assert!(health["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(app.get_ok("/healthz").await["status"], "ok");
}

#[tokio::test]
async fn cors_allows_local_pages_and_configured_origins_only() {
    let app = TestApp::spawn_with(|config| {
        config.cors.allowed_origins = vec!["https://dash.example.com".into()];
    })
    .await;
    let origin_allowed = |origin: &'static str| {
        let app = &app;
        async move {
            let response = app
                .client
                .get(app.url("/healthz"))
                .header("origin", origin)
                .send()
                .await
                .unwrap();
            response
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_owned())
        }
    };
    assert_eq!(
        origin_allowed("http://localhost:5173").await.as_deref(),
        Some("http://localhost:5173")
    );
    assert_eq!(
        origin_allowed("http://127.0.0.1:3000").await.as_deref(),
        Some("http://127.0.0.1:3000")
    );
    assert_eq!(
        origin_allowed("https://dash.example.com").await.as_deref(),
        Some("https://dash.example.com")
    );
    assert_eq!(origin_allowed("https://evil.example.com").await, None);
}

#[tokio::test]
async fn prometheus_metrics_count_requests_by_route_template_and_ingest() {
    let app = TestApp::spawn().await;
    let event = crate::fixtures::envelope("p", "S1", "SessionStart", 0, serde_json::json!({}));
    let saved = app.send_event(&event).await;
    let mut again = event.clone();
    again["event_id"] = saved["event_id"].clone();
    app.send_event(&again).await; // a duplicate
    app.send_event(&crate::fixtures::envelope(
        "p",
        "S1",
        "Stop",
        1_000,
        serde_json::json!({}),
    ))
    .await;
    let missing = app
        .client
        .get(app.url("/api/agents/no-such-agent"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    app.get_ok("/api/sessions/S1").await;

    let text = app.get_text("/metrics").await;
    for line in [
        "hookwatch_http_requests_total{method=\"POST\",route=\"/events\",status=\"200\"} 3",
        "hookwatch_http_requests_total{method=\"GET\",route=\"/api/agents/{id}\",status=\"404\"} 1",
        "hookwatch_http_requests_total{method=\"GET\",route=\"/api/sessions/{id}\",status=\"200\"} 1",
        "hookwatch_http_request_duration_seconds_count{method=\"POST\",route=\"/events\"} 3",
        "hookwatch_events_ingested_total 2",
        "hookwatch_events_duplicate_total 1",
        "hookwatch_write_queue_depth 0",
        "hookwatch_websocket_clients 0",
        "hookwatch_cache_enabled 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(
        !text.contains("no-such-agent"),
        "labels are route templates, never raw paths"
    );
    let database_bytes: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("hookwatch_database_bytes "))
        .and_then(|v| v.parse().ok())
        .expect("a database size");
    assert!(database_bytes > 0);
    // The whole exposition parses as Prometheus text, with each family's type.
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics parses as Prometheus text");
    let sample = |name: &str| scrape.samples.iter().find(|s| s.metric == name);
    assert!(matches!(
        sample("hookwatch_events_ingested_total").map(|s| &s.value),
        Some(prometheus_parse::Value::Counter(n)) if *n == 2.0
    ));
    assert!(matches!(
        sample("hookwatch_write_queue_depth").map(|s| &s.value),
        Some(prometheus_parse::Value::Gauge(_))
    ));
    let latency = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "hookwatch_http_request_duration_seconds"
                && s.labels.get("route") == Some("/events")
        })
        .expect("the /events latency histogram");
    assert!(
        matches!(&latency.value, prometheus_parse::Value::Histogram(b) if b.last().is_some_and(|b| b.count == 3.0)),
        "{:?}",
        latency.value
    );
}

/// An agent's current tool is its newest call still running, also with calls running in
/// parallel.
async fn an_agents_current_tool_is_its_newest_call_still_running(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let tool_event = |at_ms: i64, event: &str, tool: &str, id: &str| {
        let fields = match event {
            "PreToolUse" => fixtures::pre_tool(tool, id, json!({})),
            _ => fixtures::post_tool(tool, id, json!({})),
        };
        fixtures::envelope("proj-alpha", "C1", event, at_ms, fields)
    };
    let current = || {
        let app = &app;
        async move { app.get_ok("/api/agents/C1").await["current_tool"].clone() }
    };
    let prompt = json!({ "prompt": "go" });
    app.send_event(&fixtures::envelope(
        "proj-alpha",
        "C1",
        "UserPromptSubmit",
        0,
        prompt,
    ))
    .await;
    assert_eq!(current().await, Value::Null);
    app.send_event(&tool_event(1_000, "PreToolUse", "Bash", "b1"))
        .await;
    app.send_event(&tool_event(2_000, "PreToolUse", "Read", "r1"))
        .await;
    assert_eq!(current().await, "Read");
    // The newer call ends first: the older one, still running, is current again.
    app.send_event(&tool_event(3_000, "PostToolUse", "Read", "r1"))
        .await;
    assert_eq!(current().await, "Bash");
    app.send_event(&tool_event(4_000, "PostToolUse", "Bash", "b1"))
        .await;
    assert_eq!(current().await, Value::Null);
    // Twelve at once: the newest leads, and as the newest end, the next newest take over.
    let tools: Vec<String> = (0..12).map(|n| format!("Tool{n}")).collect();
    for (n, tool) in tools.iter().enumerate() {
        let at = 5_000 + n as i64 * 100;
        app.send_event(&tool_event(at, "PreToolUse", tool, &format!("t{n}")))
            .await;
    }
    assert_eq!(current().await, "Tool11");
    for n in [11, 10, 9] {
        let at = 7_000 + n as i64;
        app.send_event(&tool_event(at, "PostToolUse", &tools[n], &format!("t{n}")))
            .await;
        assert_eq!(current().await, tools[n - 1].as_str());
    }
    // Every call is listed with its own status.
    let detail = app.get_ok("/api/agents/C1").await;
    let running = detail["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|call| call["status"] == "running")
        .count();
    assert_eq!(running, 9);
}

/// Apps that share a Claude Code session are each listed (issue 30: three apps posting under
/// one session and a fourth under another were listed as two; the fork's scripts send several
/// apps under one session).
async fn filter_options_list_every_app_that_sent_events(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    for (n, (source_app, session)) in [
        ("app-one", "S-shared"),
        ("app-two", "S-shared"),
        ("app-three", "S-shared"),
        ("app-four", "S-other"),
    ]
    .into_iter()
    .enumerate()
    {
        let tool = crate::fixtures::pre_tool("Read", &format!("t{n}"), json!({}));
        let event = crate::fixtures::envelope(source_app, session, "PreToolUse", n as i64, tool);
        app.send_event(&event).await;
    }
    let options = app.get_ok("/events/filter-options").await;
    assert_eq!(
        options["source_apps"],
        json!(["app-four", "app-one", "app-three", "app-two"]),
        "every app, A to Z"
    );
    assert_eq!(options["session_ids"], json!(["S-shared", "S-other"]));
}

crate::on_each_store!(
    filter_options_list_every_app_that_sent_events,
    an_agents_current_tool_is_its_newest_call_still_running,
    events_filter_by_every_parameter,
    cursors_page_through_events_in_both_orders,
    recent_events_and_filter_options_keep_the_origin_shapes,
);
