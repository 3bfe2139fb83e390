//! Codex CLI's and Gemini CLI's OpenTelemetry logs beside Claude Code's (issue 34): each
//! agent is known by its resource, its events are read into hookwatch's sessions, prompts,
//! API requests, errors and tool calls, its tokens are normalised to the four kinds and priced
//! (neither reports a cost), and its session has a page and a trace from telemetry alone.
//! Driven by the SDKs the agents use: Node's for Gemini, Rust's for Codex.

use serde_json::Value;

use crate::helpers::{Backend, TestApp, approx};

/// The API requests' rows of `session`: (requests, input, output, cache read, cost in
/// nano-dollars), as stored.
fn stored_requests(app: &TestApp, session: &str) -> [i64; 5] {
    let sum = |column: &str| {
        app.count(&format!(
            "SELECT CAST(coalesce(sum({column}), 0) AS BIGINT) FROM telemetry_events
             WHERE session_id = '{session}' AND kind = 'api_request'"
        ))
    };
    [
        app.count(&format!(
            "SELECT count(*) FROM telemetry_events
             WHERE session_id = '{session}' AND kind = 'api_request'"
        )),
        sum("input_tokens"),
        sum("output_tokens"),
        sum("cache_read_tokens"),
        sum("cost_nanos"),
    ]
}

/// The spans of `kind` in a trace, by name.
fn span_names(trace: &Value, kind: &str) -> Vec<String> {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == kind)
        .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every request and tool call in `trace` is under its one prompt.
fn assert_under_the_prompt(trace: &Value) {
    let spans = trace["spans"].as_array().unwrap();
    let prompt = spans.iter().find(|s| s["kind"] == "prompt").unwrap();
    for span in spans {
        if span["kind"] == "tool" || span["kind"] == "api_request" {
            assert_eq!(span["parent_id"], prompt["span_id"], "{span}");
        }
    }
}

async fn a_gemini_session_from_the_javascript_sdk_has_its_page_trace_and_priced_tokens(
    backend: Backend,
) {
    let app = TestApp::spawn_on(backend).await;
    let dir = crate::otlp::js_exporters();
    for (protocol, session) in [("http/json", "G-json"), ("http/protobuf", "G-proto")] {
        let now = app.service.now_ms().to_string();
        let args = [app.base_url.as_str(), protocol, session, &now];
        crate::otlp::run_node(&dir.join("gemini.mjs"), &args).await;
        // One request: the response's tokens (10,000 in of which 6,000 cached, 50 of tool use,
        // 300 out and 200 of thoughts), not the request record's or the GenAI twin's; priced
        // at gemini-2.5-pro's $1.25 in, $10 out, $0.125 cached, per million.
        let cost = 4_050 * 1_250 + 500 * 10_000 + 6_000 * 125;
        assert_eq!(
            stored_requests(&app, session),
            [1, 4_050, 500, 6_000, cost],
            "{protocol}"
        );
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) FROM telemetry_events WHERE session_id = '{session}'
                 AND kind = 'api_error' AND status_code = 429 AND agent_type = 'subagent'"
            )),
            1,
            "{protocol}"
        );

        let page = app.get_ok(&format!("/api/sessions/{session}")).await;
        assert_eq!(page["seen_by"], "telemetry", "{page}");
        assert_eq!(page["coding_agent"], "gemini-cli", "{page}");
        assert_eq!(
            page["source_app"], "gemini-cli",
            "listed under its agent: {page}"
        );
        assert_eq!(page["cost_source"], "tokens", "{page}");
        approx(&page["cost_usd"], cost as f64 / 1e9);
        assert_eq!(page["telemetry"]["requests"], 1, "{page}");
        assert_eq!(page["prompt_count"], 1, "{page}");

        // The prompt holds its request (by its id), the failed one and the tool call (by time:
        // Gemini's tool calls carry no id).
        let trace = app.get_ok(&format!("/api/sessions/{session}/trace")).await;
        assert_eq!(
            span_names(&trace, "prompt"),
            ["list the files please"],
            "{trace}"
        );
        assert_eq!(
            span_names(&trace, "api_request"),
            ["gemini-2.5-pro", "gemini-2.5-flash"],
            "{trace}"
        );
        assert_eq!(span_names(&trace, "tool"), ["run_shell_command"], "{trace}");
        assert_under_the_prompt(&trace);
    }
}

/// Codex's records as its Rust tracing bridge writes them: numbers and booleans as text.
/// The records start a minute before `now_ms`, the server's clock, `step_ms` apart.
pub(crate) async fn export_codex_with_the_rust_sdk(
    base_url: &str,
    session: &str,
    now_ms: i64,
    step_ms: i64,
) {
    use opentelemetry::KeyValue;
    use opentelemetry::logs::{AnyValue, LogRecord, Logger, LoggerProvider};
    let endpoint = format!("{base_url}/v1/logs");
    let session = session.to_owned();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _entered = handle.enter();
        let resource = opentelemetry_sdk::Resource::builder_empty().with_attributes([
            KeyValue::new("service.name", "codex_cli_rs"),
            KeyValue::new("service.version", "0.144.0"),
            KeyValue::new("env", "dev"),
        ]);
        let provider = crate::otlp::rust_sdk_logs(
            endpoint,
            opentelemetry_otlp::Protocol::HttpBinary,
            resource,
        );
        let logger = provider.logger("codex_otel");
        let second = std::cell::Cell::new(0);
        let emit = |name: &str, attributes: Vec<(&'static str, &str)>| {
            let mut record = logger.create_log_record();
            let at_ms = now_ms - 60_000 + second.get() * step_ms;
            second.set(second.get() + 1);
            record.set_timestamp(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms as u64),
            );
            record.add_attribute("event.name", name.to_owned());
            record.add_attribute("conversation.id", session.clone());
            record.add_attribute("user.email", "dev@example.com");
            record.add_attribute("user.account_id", "acct-codex");
            record.add_attribute("model", "gpt-5-codex");
            record.add_attributes(
                attributes
                    .into_iter()
                    .map(|(key, value)| (key, AnyValue::from(value.to_owned()))),
            );
            logger.emit(record);
        };
        emit(
            "codex.conversation_starts",
            vec![("provider_name", "OpenAI")],
        );
        emit(
            "codex.user_prompt",
            vec![("prompt_length", "14"), ("prompt", "[REDACTED]")],
        );
        emit(
            "codex.api_request",
            vec![
                ("duration_ms", "310"),
                ("http.response.status_code", "429"),
                ("attempt", "1"),
                ("error.message", "rate limited"),
            ],
        );
        emit(
            "codex.api_request",
            vec![
                ("duration_ms", "280"),
                ("http.response.status_code", "200"),
                ("attempt", "2"),
            ],
        );
        emit(
            "codex.sse_event",
            vec![("event.kind", "response.created"), ("duration_ms", "5")],
        );
        emit(
            "codex.sse_event",
            vec![
                ("event.kind", "response.completed"),
                ("duration_ms", "1840"),
                ("input_token_count", "12000"),
                ("output_token_count", "700"),
                ("cached_token_count", "8000"),
                ("reasoning_token_count", "500"),
                ("tool_token_count", "0"),
            ],
        );
        emit(
            "codex.tool_decision",
            vec![
                ("tool_name", "shell"),
                ("call_id", "call_codex"),
                ("decision", "approved"),
                ("source", "config"),
            ],
        );
        emit(
            "codex.tool_result",
            vec![
                ("tool_name", "shell"),
                ("call_id", "call_codex"),
                ("arguments", r#"{"command":["ls"]}"#),
                ("duration_ms", "61"),
                ("success", "true"),
                ("output", "README.md"),
            ],
        );
        provider.shutdown().expect("every record exported");
    })
    .await
    .expect("the exporting thread");
}

async fn a_codex_session_from_the_rust_sdk_has_its_page_trace_and_priced_tokens(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    export_codex_with_the_rust_sdk(&app.base_url, "C-rust", app.service.now_ms(), 1_000).await;
    // One request: the completed response's tokens (12,000 in of which 8,000 cached, 700 out
    // of which 500 reasoning), not the HTTP attempts'; priced at gpt-5-codex's $1.25 in, $10
    // out, $0.125 cached, per million.
    let cost = 4_000 * 1_250 + 700 * 10_000 + 8_000 * 125;
    assert_eq!(
        stored_requests(&app, "C-rust"),
        [1, 4_000, 700, 8_000, cost]
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM telemetry_events WHERE session_id = 'C-rust'
             AND kind = 'api_error' AND status_code = 429 AND attempt = 1"
        ),
        1,
        "the failed attempt is an error; the one that succeeded counts as nothing"
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM telemetry_events WHERE session_id = 'C-rust'
             AND tool_use_id = 'call_codex' AND success = 1 AND duration_ms = 61"
        ),
        1
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM telemetry_events WHERE session_id = 'C-rust'
             AND kind = 'tool_decision' AND decision = 'accept'"
        ),
        1
    );

    let page = app.get_ok("/api/sessions/C-rust").await;
    assert_eq!(page["seen_by"], "telemetry", "{page}");
    assert_eq!(page["coding_agent"], "codex", "{page}");
    assert_eq!(
        page["source_app"], "codex",
        "listed under its agent: {page}"
    );
    assert_eq!(page["cost_source"], "tokens", "{page}");
    // The sessions list, all and by app: under its agent, not Claude Code's.
    let listed = |app_filter: &'static str| {
        let app = &app;
        async move {
            app.get_ok(&format!("/api/sessions{app_filter}")).await["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["session_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("").await, ["C-rust"]);
    assert_eq!(listed("?app=codex").await, ["C-rust"]);
    assert!(listed("?app=claude-code").await.is_empty());
    // Usage by app names it as the list does.
    let now = app.service.now_ms();
    let range = format!("start={}&end={}", now - 3_600_000, now + 60_000);
    let by_app = app
        .get_ok(&format!("/api/usage?group_by=app&{range}"))
        .await;
    let keys: Vec<&str> = by_app["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["codex"], "{by_app}");
    approx(&by_app["rows"][0]["cost_usd"], cost as f64 / 1e9);
    let filtered = app
        .get_ok(&format!("/api/usage?group_by=model&app=codex&{range}"))
        .await;
    assert_eq!(filtered["rows"][0]["key"], "gpt-5-codex", "{filtered}");
    approx(&page["cost_usd"], cost as f64 / 1e9);
    assert_eq!(page["telemetry"]["requests"], 1, "{page}");
    assert_eq!(page["telemetry"]["errors"], 1, "{page}");

    // Codex's records carry no prompt id: the prompt holds what followed it, by time.
    let trace = app.get_ok("/api/sessions/C-rust/trace").await;
    assert_eq!(span_names(&trace, "prompt").len(), 1, "{trace}");
    assert_eq!(
        span_names(&trace, "api_request"),
        ["gpt-5-codex", "gpt-5-codex"],
        "the failed attempt and the request: {trace}"
    );
    assert_eq!(span_names(&trace, "tool"), ["shell"], "{trace}");
    assert_under_the_prompt(&trace);
}

crate::on_each_store!(
    a_gemini_session_from_the_javascript_sdk_has_its_page_trace_and_priced_tokens,
    a_codex_session_from_the_rust_sdk_has_its_page_trace_and_priced_tokens,
    a_mixed_day_gives_the_hand_counted_tokens_per_agent_model_person_and_session,
);

/// GETs `path` as a reader (usage by person is shown only behind a read token).
async fn read_as_reader(app: &TestApp, path: &str) -> Value {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

const READER: &str = "reader";

/// `rows` of a usage answer as `key: cost_source input output cache_read requests`, and each
/// row's cost in nano-dollars.
fn usage_rows(answer: &Value) -> Vec<(String, i64)> {
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                format!(
                    "{}: {} {} {} {} {}",
                    row["key"].as_str().unwrap(),
                    row["cost_source"].as_str().unwrap(),
                    row["input_tokens"],
                    row["output_tokens"],
                    row["cache_read_tokens"],
                    row["requests"],
                ),
                (row["cost_usd"].as_f64().unwrap() * 1e9).round() as i64,
            )
        })
        .collect()
}

/// Acceptance 1 of issue 34: a day of Claude Code, Codex CLI and Gemini CLI over every door
/// (Claude Code's logs over HTTP/protobuf, Codex's over HTTP/protobuf from the Rust SDK,
/// Gemini's logs and cumulative metrics over gRPC with gzip, and a Gemini session seen only
/// through its cumulative metrics over HTTP/JSON) gives the hand-counted tokens and cost per
/// agent, model, person and session: Claude Code's cost as measured, the others' tokens priced.
async fn a_mixed_day_gives_the_hand_counted_tokens_per_agent_model_person_and_session(
    backend: Backend,
) {
    let app = TestApp::spawn_on_with(backend, |c| {
        c.clock = std::sync::Arc::new(hookwatch::clock::SystemClock);
        c.otlp_grpc_addr = Some("127.0.0.1:0".parse().unwrap());
        c.tokens.read = vec![READER.into()];
    })
    .await;
    let grpc = format!("http://{}", app.otlp_grpc.expect("OTLP/gRPC is served"));
    let now_ms = app.service.now_ms();
    let dir = crate::otlp::js_exporters();
    let now = now_ms.to_string();
    // Claude Code: one request, $0.0264174 as it measured it.
    crate::otlp::run_node(
        &dir.join("export.mjs"),
        &[app.base_url.as_str(), "http/protobuf", "mix-claude"],
    )
    .await;
    // Codex: 12,000 in (8,000 cached), 700 out: $0.013 at gpt-5-codex's prices.
    export_codex_with_the_rust_sdk(&app.base_url, "mix-codex", now_ms, 1_000).await;
    // Gemini over gRPC: its logs (10,000 in, 6,000 cached, 50 of tools, 300 out, 200 of
    // thoughts: $0.0108125 at gemini-2.5-pro's), and its counters for the same requests,
    // which must not count them again.
    crate::otlp::run_node(
        &dir.join("gemini.mjs"),
        &[grpc.as_str(), "grpc", "mix-gemini", &now],
    )
    .await;
    let same = "10000,300,200,6000,50";
    crate::otlp::run_node(
        &dir.join("gemini_metrics.mjs"),
        &[
            grpc.as_str(),
            "grpc",
            "mix-gemini",
            "dev@example.com",
            "gemini-2.5-pro",
            same,
            same,
        ],
    )
    .await;
    // Gemini seen only through its counters, over HTTP/JSON, running totals at two exports:
    // in the end 3,000 in (1,000 cached), 10 of tools, 250 out, 50 of thoughts.
    crate::otlp::run_node(
        &dir.join("gemini_metrics.mjs"),
        &[
            app.base_url.as_str(),
            "http/json",
            "mix-gemini-m",
            "gem@example.com",
            "gemini-2.5-flash",
            "1000,100,20,400,0",
            "3000,250,50,1000,10",
        ],
    )
    .await;
    // gemini-2.5-flash: $0.30 in, $2.50 out, $0.03 cached, per million.
    let flash = 2_010 * 300 + 300 * 2_500 + 1_000 * 30;
    let pro = 4_050 * 1_250 + 500 * 10_000 + 6_000 * 125;
    let codex = 4_000 * 1_250 + 700 * 10_000 + 8_000 * 125;
    let claude = 26_417_400;

    let range = format!("start={}&end={}", now_ms - 3_600_000, now_ms + 3_600_000);
    let usage = |group: &str| format!("/api/usage?group_by={group}&{range}");
    let row = |text: &str, cost: i64| (text.to_owned(), cost);
    assert_eq!(
        usage_rows(&read_as_reader(&app, &usage("agent")).await),
        [
            row("claude-code: telemetry 12 412 48213 1", claude),
            row("codex: tokens 4000 700 8000 1", codex),
            row("gemini-cli: tokens 6060 800 7000 1", pro + flash),
        ]
    );
    assert_eq!(
        usage_rows(&read_as_reader(&app, &usage("model")).await),
        [
            row("claude-sonnet-4-6: telemetry 12 412 48213 1", claude),
            row("gpt-5-codex: telemetry 4000 700 8000 1", codex),
            row("gemini-2.5-pro: telemetry 4050 500 6000 1", pro),
            row("gemini-2.5-flash: telemetry 2010 300 1000 0", flash),
        ]
    );
    assert_eq!(
        usage_rows(&read_as_reader(&app, &usage("user")).await),
        [
            row(
                "dev@example.com: telemetry 8062 1612 62213 3",
                claude + codex + pro
            ),
            row("gem@example.com: telemetry 2010 300 1000 0", flash),
        ]
    );
    assert_eq!(
        usage_rows(&read_as_reader(&app, &usage("session")).await),
        [
            row("mix-claude: telemetry 12 412 48213 1", claude),
            row("mix-codex: telemetry 4000 700 8000 1", codex),
            row("mix-gemini: telemetry 4050 500 6000 1", pro),
            row("mix-gemini-m: telemetry 2010 300 1000 0", flash),
        ]
    );
    // The team view counts each person across agents: their sessions, prompts and cost.
    let team = read_as_reader(
        &app,
        &format!(
            "/api/team?start={}&end={}",
            now_ms - 3_600_000,
            now_ms + 3_600_000
        ),
    )
    .await;
    let people: Vec<(String, i64, i64, i64)> = team["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let totals = &p["totals"];
            (
                p["person"].as_str().unwrap().to_owned(),
                totals["sessions"].as_i64().unwrap(),
                totals["prompts"].as_i64().unwrap(),
                (totals["cost_usd"].as_f64().unwrap() * 1e9).round() as i64,
            )
        })
        .collect();
    assert_eq!(
        people,
        [
            ("dev@example.com".to_owned(), 3, 2, claude + codex + pro),
            ("gem@example.com".to_owned(), 1, 0, flash),
        ],
        "Codex's and Gemini's prompts, not Claude Code's (its export has none): {team}"
    );
    // Each session says where its cost comes from.
    for (session, agent, source, cost) in [
        ("mix-claude", "claude-code", "telemetry", claude),
        ("mix-codex", "codex", "tokens", codex),
        ("mix-gemini", "gemini-cli", "tokens", pro),
        ("mix-gemini-m", "gemini-cli", "tokens", flash),
    ] {
        let page = read_as_reader(&app, &format!("/api/sessions/{session}")).await;
        assert_eq!(page["coding_agent"], agent, "{page}");
        assert_eq!(page["cost_source"], source, "{page}");
        assert_eq!(
            (page["cost_usd"].as_f64().unwrap() * 1e9).round() as i64,
            cost,
            "{page}"
        );
    }
}
