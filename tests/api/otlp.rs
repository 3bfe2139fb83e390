//! Claude Code's OTLP export over HTTP on the main port: both encodings, gzip, retries, and
//! what is refused; every acknowledged record is in the store, on both stores.

use prost::Message;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, expect_error};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

/// One API request, one failed tool result and one prompt, shaped as Claude Code 2.1.219
/// sends them (claude-code-otel.md §9.1): numbers as ints, doubles and strings.
fn logs_json(session: &str, prompt: &str) -> Value {
    let attribute = |key: &str, value: Value| json!({"key": key, "value": value});
    let text = |s: &str| json!({ "stringValue": s });
    let common = |name: &str, sequence: i64| {
        vec![
            attribute("session.id", text(session)),
            attribute("user.email", text("dev@example.com")),
            attribute("user.id", text("3f9c")),
            attribute("event.name", text(name)),
            attribute("event.sequence", json!({ "intValue": sequence })),
            attribute("prompt.id", text(prompt)),
        ]
    };
    let record = |name: &str, sequence: i64, ms: i64, extra: Vec<Value>| {
        let mut attributes = common(name, sequence);
        attributes.extend(extra);
        json!({
            "timeUnixNano": format!("{}", ms * 1_000_000),
            "body": text(&format!("claude_code.{name}")),
            "attributes": attributes,
        })
    };
    json!({"resourceLogs": [{
        "resource": {"attributes": [attribute("service.name", text("claude-code"))]},
        "scopeLogs": [{
            "scope": {"name": "com.anthropic.claude_code.events", "version": "2.1.219"},
            "logRecords": [
                record("user_prompt", 1, 1_784_916_870_000, vec![
                    attribute("prompt_length", text("42")),
                    attribute("prompt", text("<REDACTED>")),
                ]),
                record("api_request", 2, 1_784_916_872_544, vec![
                    attribute("model", text("claude-sonnet-4-6")),
                    attribute("cost_usd", json!({"doubleValue": 0.0264174})),
                    attribute("input_tokens", json!({"intValue": 12})),
                    attribute("output_tokens", json!({"intValue": "412"})),
                    attribute("cache_read_tokens", json!({"doubleValue": 48213})),
                    attribute("cache_creation_tokens", text("1530")),
                    attribute("duration_ms", json!({"intValue": 8421})),
                    attribute("request_id", text("req_011")),
                ]),
                record("tool_result", 3, 1_784_916_880_163, vec![
                    attribute("tool_name", text("Bash")),
                    attribute("tool_use_id", text("toolu_01")),
                    attribute("success", text("false")),
                    attribute("duration_ms", text("62")),
                ]),
            ],
        }],
    }]})
}

async fn post(app: &TestApp, path: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn logs_are_stored_once_in_either_encoding(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    // JSON, as `http/json` exporters send it.
    let json_body = serde_json::to_vec(&logs_json("S-json", "P1")).unwrap();
    let answer = post(&app, "/v1/logs", "application/json", json_body.clone()).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/json");
    assert_eq!(answer.text().await.unwrap(), "{}");
    // Protobuf, gzipped, as `http/protobuf` exporters send it with compression on.
    let request: ExportLogsServiceRequest =
        serde_json::from_value(logs_json("S-proto", "P2")).unwrap();
    let answer = app
        .client
        .post(app.url("/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gzip(&request.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/x-protobuf");
    assert!(
        answer.bytes().await.unwrap().is_empty(),
        "an empty response message"
    );
    for session in ["S-json", "S-proto"] {
        let cost = app.count(&format!(
            "SELECT CAST(sum(cost_nanos) AS BIGINT) FROM telemetry_events WHERE session_id = '{session}'"
        ));
        assert_eq!(cost, 26_417_400, "{session}: $0.0264174 in billionths");
        let tokens = app.count(&format!(
            "SELECT CAST(sum(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens) AS BIGINT)
             FROM telemetry_events WHERE session_id = '{session}' AND kind = 'api_request'"
        ));
        assert_eq!(tokens, 12 + 412 + 48_213 + 1_530, "{session}");
        let failed = app.count(&format!(
            "SELECT count(*) FROM telemetry_events WHERE session_id = '{session}'
             AND kind = 'tool_result' AND tool_use_id = 'toolu_01' AND success = 0
             AND duration_ms = 62"
        ));
        assert_eq!(failed, 1, "{session}: the failed tool, typed");
        let prompts = app.count(&format!(
            "SELECT count(*) FROM telemetry_events WHERE session_id = '{session}'
             AND kind = 'user_prompt' AND prompt_length = 42 AND prompt IS NULL"
        ));
        assert_eq!(
            prompts, 1,
            "{session}: a redacted prompt keeps its length only"
        );
    }
    // An exporter's retry of the same batch stores nothing twice.
    let answer = post(&app, "/v1/logs", "application/json", json_body).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM telemetry_events"), 6);
}

async fn counters_are_stored_and_other_metrics_reported_refused(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let point = |kind: &str, value: f64| {
        json!({
            "attributes": [
                {"key": "session.id", "value": {"stringValue": "S-metrics"}},
                {"key": "model", "value": {"stringValue": "claude-sonnet-4-6"}},
                {"key": "type", "value": {"stringValue": kind}},
            ],
            "startTimeUnixNano": "1784916871000000000",
            "timeUnixNano": "1784916931000000000",
            "asDouble": value,
        })
    };
    let body = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "claude_code.token.usage", "unit": "tokens", "sum": {
            "aggregationTemporality": 1, "isMonotonic": true,
            "dataPoints": [point("input", 12.0), point("output", 412.0)]}},
        {"name": "claude_code.cost.usage", "unit": "USD", "sum": {
            "aggregationTemporality": 1, "isMonotonic": true,
            "dataPoints": [point("", 0.0264174)]}},
        {"name": "claude_code.lines_of_code.count", "unit": "count", "sum": {
            "aggregationTemporality": 1, "isMonotonic": true,
            "dataPoints": [point("added", 120.0), point("removed", 7.0)]}},
        {"name": "claude_code.commit.count", "unit": "count", "sum": {
            "aggregationTemporality": 1, "isMonotonic": true,
            "dataPoints": [point("", 1.0)]}},
        {"name": "process.memory", "gauge": {"dataPoints": [{"asDouble": 1.0}]}},
    ]}]}]});
    let request: ExportMetricsServiceRequest = serde_json::from_value(body).unwrap();
    let answer = post(
        &app,
        "/v1/metrics",
        "application/x-protobuf",
        request.encode_to_vec(),
    )
    .await;
    assert_eq!(answer.status(), 200);
    let response =
        opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse::decode(
            answer.bytes().await.unwrap(),
        )
        .unwrap();
    let partial = response.partial_success.expect("the gauge is reported");
    assert_eq!(partial.rejected_data_points, 1);
    assert!(
        partial.error_message.contains("claude_code"),
        "{}",
        partial.error_message
    );
    assert_eq!(
        app.count("SELECT CAST(sum(value_nanos) AS BIGINT) FROM telemetry_points WHERE metric = 'tokens.output'"),
        412_000_000_000
    );
    assert_eq!(
        app.count(
            "SELECT CAST(sum(value_nanos) AS BIGINT) FROM telemetry_points WHERE metric = 'cost'"
        ),
        26_417_400
    );
    assert_eq!(
        app.count("SELECT count(*) FROM telemetry_points WHERE delta = 1"),
        6
    );
    // The session shows the counters beside its cost (no hook needed for the session: the
    // hooks may come later).
    app.send_event(&crate::fixtures::envelope(
        "proj",
        "S-metrics",
        "SessionStart",
        0,
        json!({}),
    ))
    .await;
    let session = app.get_ok("/api/sessions/S-metrics").await;
    assert_eq!(
        session["counters"],
        json!({"lines_of_code.added": 120.0, "lines_of_code.removed": 7.0, "commits": 1.0}),
        "{session}"
    );
    // The same interval again (a retry) is not counted twice.
    post(
        &app,
        "/v1/metrics",
        "application/x-protobuf",
        request.encode_to_vec(),
    )
    .await;
    assert_eq!(app.count("SELECT count(*) FROM telemetry_points"), 6);
}

/// A model given without its date matches its dated snapshots (issue 30:
/// `?model=claude-opus-4-1` found nothing when the data said `claude-opus-4-1-20250805`), and
/// nothing else that merely starts the same.
async fn a_model_filter_matches_the_dated_ids_of_its_alias(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let now = app.service.now_ms();
    let attribute = |key: &str, value: Value| json!({"key": key, "value": value});
    let request = |n: i64, model: &str| {
        json!({
            "timeUnixNano": format!("{}", (now - 60_000 + n) * 1_000_000),
            "body": {"stringValue": "claude_code.api_request"},
            "attributes": [
                attribute("session.id", json!({"stringValue": "S-models"})),
                attribute("event.name", json!({"stringValue": "api_request"})),
                attribute("model", json!({"stringValue": model})),
                attribute("cost_usd", json!({"doubleValue": 0.25})),
                attribute("request_id", json!({"stringValue": format!("r{n}")})),
            ],
        })
    };
    let records = vec![
        request(1, "claude-opus-4-1-20250805"),
        request(2, "claude-opus-4-1"),
        request(3, "claude-opus-4-1-thinking"),
        request(4, "claude-opus-4-10-20260101"),
    ];
    let body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]});
    let answer = post(
        &app,
        "/v1/logs",
        "application/json",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(answer.status(), 200);
    let models = |filter: &'static str| {
        let app = &app;
        async move {
            let usage = app
                .get_ok(&format!("/api/usage?hours=1&group_by=model&model={filter}"))
                .await;
            let mut keys: Vec<String> = usage["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["key"].as_str().unwrap().to_owned())
                .collect();
            keys.sort();
            keys
        }
    };
    assert_eq!(
        models("claude-opus-4-1").await,
        ["claude-opus-4-1", "claude-opus-4-1-20250805"]
    );
    assert_eq!(
        models("claude-opus-4-1-20250805").await,
        ["claude-opus-4-1-20250805"]
    );
    assert!(models("claude-opus-4").await.is_empty());
}

crate::on_each_store!(
    a_model_filter_matches_the_dated_ids_of_its_alias,
    logs_are_stored_once_in_either_encoding,
    counters_are_stored_and_other_metrics_reported_refused,
    the_rust_sdk_exporter_is_taken_over_protobuf_and_json,
    the_javascript_sdk_exporters_claude_code_uses_are_taken,
    a_sessions_cost_has_one_truth,
);

#[tokio::test]
async fn what_is_not_otlp_gets_a_clean_4xx_and_changes_nothing() {
    let app = TestApp::spawn_with(|c| c.limits.max_batch_bytes = 64 * 1024).await;
    let json_body = serde_json::to_vec(&logs_json("S-ok", "P1")).unwrap();
    assert_eq!(
        post(&app, "/v1/logs", "application/json", json_body)
            .await
            .status(),
        200
    );
    let before = app.count("SELECT count(*) FROM telemetry_events");

    let malformed = post(&app, "/v1/logs", "application/x-protobuf", vec![0xff; 64]).await;
    let error = expect_error(malformed, 400).await;
    assert!(
        error["error"].as_str().unwrap().contains("protobuf"),
        "{error}"
    );
    let wrong_shape = post(
        &app,
        "/v1/logs",
        "application/json",
        br#"{"resourceLogs": 7}"#.to_vec(),
    )
    .await;
    expect_error(wrong_shape, 400).await;
    let text = post(&app, "/v1/metrics", "text/plain", b"hello".to_vec()).await;
    let error = expect_error(text, 415).await;
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("application/x-protobuf"),
        "{error}"
    );
    let bomb = app
        .client
        .post(app.url("/v1/logs"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(&vec![b' '; 8 * 1024 * 1024]))
        .send()
        .await
        .unwrap();
    let error = expect_error(bomb, 413).await;
    assert!(
        error["error"].as_str().unwrap().contains("decompressed"),
        "{error}"
    );
    let oversize = post(&app, "/v1/logs", "application/json", vec![b' '; 65 * 1024]).await;
    assert_eq!(oversize.status(), 413);

    assert_eq!(
        app.count("SELECT count(*) FROM telemetry_events"),
        before,
        "nothing changed"
    );
    assert_eq!(app.get_ok("/healthz").await["status"], "ok");
}

#[tokio::test]
async fn the_ingest_token_guards_telemetry_and_only_claude_codes_spans_are_kept() {
    let app = TestApp::spawn_with(|c| {
        c.tokens.ingest = vec!["in-secret".into()];
        c.tokens.read = vec!["read-secret".into()];
    })
    .await;
    let body = serde_json::to_vec(&logs_json("S-auth", "P1")).unwrap();
    let refused = post(&app, "/v1/logs", "application/json", body.clone()).await;
    expect_error(refused, 401).await;
    let accepted = app
        .client
        .post(app.url("/v1/logs"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer in-secret")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM telemetry_events"), 3);

    let spans = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
         "name": "claude_code.interaction", "kind": 1,
         "startTimeUnixNano": "1784916870000000000", "endTimeUnixNano": "1784916880000000000"},
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "aaa19b7ec3c1b174",
         "name": "GET /index.html", "kind": 2,
         "startTimeUnixNano": "1784916870000000000", "endTimeUnixNano": "1784916880000000000"}
    ]}]}]});
    let answer = app
        .client
        .post(app.url("/v1/traces"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer in-secret")
        .json(&spans)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let response: Value = answer.json().await.unwrap();
    // Claude Code's span is kept; the other, someone else's, is reported left out.
    assert_eq!(
        response["partialSuccess"]["rejectedSpans"], "1",
        "{response}"
    );
    assert!(
        response["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("claude_code.*"),
        "{response}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM telemetry_events WHERE kind = 'span.interaction'"),
        1
    );
}

#[tokio::test]
async fn a_gzipped_body_is_charged_what_it_inflates_to_as_it_inflates() {
    use tokio::io::AsyncWriteExt;
    // The budget is one batch (256 KiB); a slow upload holds 150 KiB of it.
    let app = TestApp::spawn_with(|c| {
        c.limits.max_batch_bytes = 256 * 1024;
        c.limits.max_event_bytes = 64 * 1024;
        c.limits.max_chat_bytes = 64 * 1024;
        c.limits.max_body_bytes_in_flight = 0;
    })
    .await;
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(
        b"POST /events/batch HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 153600\r\n\r\n[",
    )
    .await
    .unwrap();
    let held = || async {
        let metrics = app.get_text("/metrics").await;
        serde_json::json!(metrics.contains("hookwatch_request_body_bytes_in_flight 153600"))
    };
    crate::helpers::wait_until(
        "the slow upload's charge",
        std::time::Duration::from_secs(10),
        held,
        |v| v == true,
    )
    .await;
    let gzipped = |body: Vec<u8>| {
        app.client
            .post(app.url("/v1/logs"))
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gzip(&body))
            .send()
    };
    // A small gzip export is charged its length and then what it inflates to, a 64 KiB step
    // at a time: it fits beside the slow upload (charged at the most it could inflate to, a
    // whole batch, it did not).
    let small = serde_json::to_vec(&logs_json("S-budget", "P1")).unwrap();
    let answer = gzipped(small).await.unwrap();
    let status = answer.status();
    assert_eq!(status, 200, "{}", answer.text().await.unwrap());
    assert_eq!(app.count("SELECT count(*) FROM telemetry_events"), 3);
    // One that inflates past the room left is stopped as it inflates: 503 and Retry-After,
    // for the exporter to send it again, and nothing of it stored.
    let big = serde_json::to_vec(&logs_json("S-big", &"p".repeat(40_000))).unwrap();
    assert!(
        big.len() > 106 * 1024 && big.len() < 256 * 1024,
        "{}",
        big.len()
    );
    let refused = gzipped(big).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(app.count("SELECT count(*) FROM telemetry_events"), 3);
    drop(slow);
    // With the room back, the same export is taken.
    let big = serde_json::to_vec(&logs_json("S-big", &"p".repeat(40_000))).unwrap();
    let taken = crate::helpers::wait_until(
        "the slow upload's charge to come back",
        std::time::Duration::from_secs(10),
        || async {
            let metrics = app.get_text("/metrics").await;
            serde_json::json!(metrics.contains("hookwatch_request_body_bytes_in_flight 0"))
        },
        |v| v == true,
    )
    .await;
    assert_eq!(taken, true);
    assert_eq!(gzipped(big).await.unwrap().status(), 200);
}

/// Sends one API request and one tool result the way the OpenTelemetry Rust SDK's own OTLP
/// exporter does, in `protocol`; returns once the exporter has had its answer.
/// The Rust SDK's logger provider exporting over OTLP/HTTP to `endpoint`, each record as it
/// is emitted (the simple processor: call it off the runtime's workers, within the runtime).
pub(crate) fn rust_sdk_logs(
    endpoint: String,
    protocol: opentelemetry_otlp::Protocol,
    resource: opentelemetry_sdk::resource::ResourceBuilder,
) -> opentelemetry_sdk::logs::SdkLoggerProvider {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let client = opentelemetry_http::hyper::HyperClient::with_default_connector(
        std::time::Duration::from_secs(10),
        None,
    );
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(protocol)
        .with_endpoint(endpoint)
        .build()
        .expect("an OTLP exporter");
    opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_resource(resource.build())
        .with_simple_exporter(exporter)
        .build()
}

async fn export_with_the_rust_sdk(
    base_url: &str,
    protocol: opentelemetry_otlp::Protocol,
    session: &str,
) {
    use opentelemetry::logs::{AnyValue, LogRecord, Logger, LoggerProvider};
    let endpoint = format!("{base_url}/v1/logs");
    let session = session.to_owned();
    let handle = tokio::runtime::Handle::current();
    // The SDK's simple processor blocks on each export: off the runtime's workers, on a
    // thread that can still reach the runtime the HTTP client runs on.
    tokio::task::spawn_blocking(move || {
        let _entered = handle.enter();
        let provider = rust_sdk_logs(endpoint, protocol, opentelemetry_sdk::Resource::builder());
        let logger = provider.logger("com.anthropic.claude_code.events");
        let emit = |name: &str, attributes: Vec<(&'static str, AnyValue)>| {
            let mut record = logger.create_log_record();
            record.set_body(AnyValue::from(format!("claude_code.{name}")));
            record.add_attribute("event.name", name.to_owned());
            record.add_attribute("session.id", session.clone());
            record.add_attribute("prompt.id", "P-sdk");
            record.add_attributes(attributes);
            logger.emit(record);
        };
        emit(
            "api_request",
            vec![
                ("model", "claude-opus-4-6".into()),
                ("cost_usd", 0.5.into()),
                ("input_tokens", 100i64.into()),
                ("output_tokens", "250".into()),
                ("cache_read_tokens", 1_000i64.into()),
                ("cache_creation_tokens", 50.0.into()),
                ("duration_ms", 1_200i64.into()),
            ],
        );
        emit(
            "tool_result",
            vec![
                ("tool_name", "Read".into()),
                ("tool_use_id", "toolu_sdk".into()),
                ("success", "true".into()),
            ],
        );
        provider.shutdown().expect("every record exported");
    })
    .await
    .unwrap();
}

async fn the_rust_sdk_exporter_is_taken_over_protobuf_and_json(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    for (protocol, session) in [
        (opentelemetry_otlp::Protocol::HttpBinary, "S-sdk-proto"),
        (opentelemetry_otlp::Protocol::HttpJson, "S-sdk-json"),
    ] {
        export_with_the_rust_sdk(&app.base_url, protocol, session).await;
        let row = |sql: &str| app.count(&sql.replace("{session}", session));
        assert_eq!(
            row(
                "SELECT CAST(sum(cost_nanos) AS BIGINT) FROM telemetry_events
                 WHERE session_id = '{session}' AND kind = 'api_request' AND prompt_id = 'P-sdk'"
            ),
            500_000_000,
            "{session}"
        );
        assert_eq!(
            row("SELECT CAST(sum(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens) AS BIGINT)
                 FROM telemetry_events WHERE session_id = '{session}'"),
            1_400,
            "{session}"
        );
        assert_eq!(
            row(
                "SELECT count(*) FROM telemetry_events WHERE session_id = '{session}'
                 AND tool_use_id = 'toolu_sdk' AND success = 1"
            ),
            1,
            "{session}"
        );
    }
}

/// `tests/otlp-js`, where the JavaScript SDK's exporters are installed (`npm ci`).
pub(crate) fn js_exporters() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp-js");
    assert!(
        dir.join("node_modules/@opentelemetry/sdk-logs").is_dir(),
        "the OpenTelemetry JavaScript exporters are not installed: run scripts/test (it runs \
         `npm ci` there), or `npm ci --prefix tests/otlp-js` (Node.js and npm: `apt-get install \
         nodejs npm`)"
    );
    dir
}

/// Runs `node script args…` and waits for it to succeed.
pub(crate) async fn run_node(script: &std::path::Path, args: &[&str]) {
    let ran = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .output()
        .await
        .expect("node runs (apt-get install nodejs npm)");
    assert!(
        ran.status.success(),
        "node {} {args:?}: {}{}",
        script.display(),
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
}

async fn the_javascript_sdk_exporters_claude_code_uses_are_taken(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let dir = js_exporters();
    for (protocol, session) in [("http/protobuf", "S-js-proto"), ("http/json", "S-js-json")] {
        run_node(&dir.join("export.mjs"), &[&app.base_url, protocol, session]).await;
        let row = |sql: &str| app.count(&sql.replace("{session}", session));
        assert_eq!(
            row(
                "SELECT CAST(sum(cost_nanos) AS BIGINT) FROM telemetry_events
                 WHERE session_id = '{session}' AND kind = 'api_request' AND prompt_id = 'P-js'
                 AND request_id = 'req_js'"
            ),
            26_417_400,
            "{protocol}"
        );
        assert_eq!(
            row("SELECT CAST(sum(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens) AS BIGINT)
                 FROM telemetry_events WHERE session_id = '{session}'"),
            12 + 412 + 48_213 + 1_530,
            "{protocol}"
        );
        assert_eq!(
            row(
                "SELECT count(*) FROM telemetry_events WHERE session_id = '{session}'
                 AND tool_use_id = 'toolu_js' AND success = 0 AND duration_ms = 62"
            ),
            1,
            "{protocol}"
        );
    }
}

/// A metrics export for `session`: cost and the four token kinds, one delta interval.
fn metrics_json(session: &str, cost: f64, tokens: [f64; 4]) -> Value {
    let point = |kind: Option<&str>, value: f64| {
        let mut attributes = vec![json!({"key": "session.id", "value": {"stringValue": session}})];
        if let Some(kind) = kind {
            attributes.push(json!({"key": "type", "value": {"stringValue": kind}}));
        }
        json!({
            "attributes": attributes,
            "startTimeUnixNano": "1784916871000000000",
            "timeUnixNano": "1784916931000000000",
            "asDouble": value,
        })
    };
    let kinds = ["input", "output", "cacheRead", "cacheCreation"];
    json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "claude_code.cost.usage", "sum": {"aggregationTemporality": 1,
            "dataPoints": [point(None, cost)]}},
        {"name": "claude_code.token.usage", "sum": {"aggregationTemporality": 1,
            "dataPoints": kinds.iter().zip(tokens).map(|(k, v)| point(Some(k), v)).collect::<Vec<_>>()}},
    ]}]}]})
}

async fn a_sessions_cost_has_one_truth(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    for session in ["S-events", "S-metrics", "S-hooks-only"] {
        app.send_event(&crate::fixtures::envelope(
            "proj",
            session,
            "SessionStart",
            0,
            json!({}),
        ))
        .await;
    }
    // Events and, for the same requests, the counters: the events are the truth, once.
    let logs = serde_json::to_vec(&logs_json("S-events", "P1")).unwrap();
    assert_eq!(
        post(&app, "/v1/logs", "application/json", logs)
            .await
            .status(),
        200
    );
    let same_requests = serde_json::to_vec(&metrics_json(
        "S-events",
        0.0264174,
        [12.0, 412.0, 48_213.0, 1_530.0],
    ))
    .unwrap();
    assert_eq!(
        post(&app, "/v1/metrics", "application/json", same_requests)
            .await
            .status(),
        200
    );
    // Only the counters.
    let metrics =
        serde_json::to_vec(&metrics_json("S-metrics", 1.25, [100.0, 200.0, 0.0, 0.0])).unwrap();
    assert_eq!(
        post(&app, "/v1/metrics", "application/json", metrics)
            .await
            .status(),
        200
    );

    let events = app.get_ok("/api/sessions/S-events").await;
    assert_eq!(events["cost_source"], "telemetry", "{events}");
    crate::helpers::approx(&events["cost_usd"], 0.0264174);
    assert_eq!(events["telemetry"]["from"], "events");
    assert_eq!(events["telemetry"]["requests"], 1);
    assert_eq!(
        events["telemetry"]["tokens"]["total"],
        12 + 412 + 48_213 + 1_530,
        "not doubled by the counters"
    );

    let metrics = app.get_ok("/api/sessions/S-metrics").await;
    assert_eq!(metrics["cost_source"], "telemetry", "{metrics}");
    crate::helpers::approx(&metrics["cost_usd"], 1.25);
    assert_eq!(metrics["telemetry"]["from"], "metrics");
    assert_eq!(metrics["telemetry"]["tokens"]["input"], 100);
    assert_eq!(metrics["telemetry"]["tokens"]["output"], 200);

    let hooks_only = app.get_ok("/api/sessions/S-hooks-only").await;
    assert_eq!(hooks_only["cost_source"], "estimate", "{hooks_only}");
    assert_eq!(hooks_only["telemetry"], Value::Null);
}

/// Exports over OTLP/gRPC with the Rust SDK's tonic exporter, with `token` as the
/// `authorization` metadata. The SDK's simple processor logs a refused export rather than
/// returning it, so callers look at what was stored.
async fn export_over_grpc(
    address: std::net::SocketAddr,
    session: &str,
    token: Option<&str>,
) -> opentelemetry_sdk::error::OTelSdkResult {
    use opentelemetry::logs::{AnyValue, LogRecord, Logger, LoggerProvider};
    use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
    let session = session.to_owned();
    let token = token.map(str::to_owned);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _entered = handle.enter();
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Some(token) = token {
            metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let exporter = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{address}"))
            .with_metadata(metadata)
            .build()
            .expect("an OTLP/gRPC exporter");
        let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .with_simple_exporter(exporter)
            .build();
        let logger = provider.logger("com.anthropic.claude_code.events");
        let mut record = logger.create_log_record();
        record.set_body(AnyValue::from("claude_code.api_request"));
        record.add_attribute("event.name", "api_request");
        record.add_attribute("session.id", session);
        record.add_attribute("model", "claude-haiku-4-5");
        record.add_attribute("cost_usd", 0.125);
        record.add_attribute("input_tokens", 7i64);
        logger.emit(record);
        let flushed = provider.force_flush();
        let _ = provider.shutdown();
        flushed
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_exports_over_grpc_under_the_ingest_token() {
    let app = TestApp::spawn_with(|c| {
        c.otlp_grpc_addr = Some("127.0.0.1:0".parse().unwrap());
        c.tokens.ingest = vec!["in-secret".into()];
    })
    .await;
    let address = app.otlp_grpc.expect("OTLP/gRPC is served");
    export_over_grpc(address, "S-grpc", Some("in-secret"))
        .await
        .expect("the export is taken");
    assert_eq!(
        app.count(
            "SELECT CAST(sum(cost_nanos) AS BIGINT) FROM telemetry_events
             WHERE session_id = 'S-grpc' AND kind = 'api_request' AND input_tokens = 7"
        ),
        125_000_000
    );
    // Without the token nothing is stored (the SDK logs the refusal; the count shows it).
    let _ = export_over_grpc(address, "S-grpc-no-token", None).await;
    assert_eq!(
        app.count("SELECT count(*) FROM telemetry_events WHERE session_id = 'S-grpc-no-token'"),
        0
    );
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains(
            "hookwatch_otlp_requests_refused_total{signal=\"logs\",reason=\"unauthenticated\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn health_and_doctor_say_when_telemetry_last_arrived() {
    let app = TestApp::spawn().await;
    let home = tempfile::tempdir().unwrap();
    let spool = home.path().join("spool");
    let doctor = || crate::client::run(&["doctor"], b"", &app.base_url, &spool, home.path());
    assert!(
        doctor()
            .await
            .stdout
            .contains("no Claude Code telemetry received yet"),
        "before any record"
    );
    let body = serde_json::to_vec(&logs_json("S-doctor", "P1")).unwrap();
    assert_eq!(
        post(&app, "/v1/logs", "application/json", body)
            .await
            .status(),
        200
    );
    let health = app.get_ok("/api/agents/health").await;
    let at = hookwatch::domain::time::iso8601(crate::helpers::T0);
    assert_eq!(health["otlp"]["last_record_at"], at.as_str(), "{health}");
    assert_eq!(health["otlp"]["records_stored"], 3);
    let ran = doctor().await;
    assert!(
        ran.stdout
            .contains(&format!("Claude Code telemetry last arrived {at}")),
        "{}",
        ran.stdout
    );
}
