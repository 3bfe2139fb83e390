//! The OTLP doors keep the hook intake's promises (issue 29): an export is counted before it
//! is decoded, gRPC checks the token before it reads a message, a message that stalls is
//! dropped, and a flood of idle gRPC connections cannot take what the HTTP API needs. Each
//! runs the real binary, so its memory is the server's own.

use std::io::Write;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::Value;
use tokio::process::Command;

use crate::helpers::{ServerProcess, binary, proc_status_kib};

/// The peak the issue allows for the server while it refuses four inflating exports at once.
const INFLATING_PEAK_KIB: u64 = 256 * 1024;

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited field `number` holding `inner`.
fn field(number: u64, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len() + 12);
    push_varint(&mut out, number << 3 | 2);
    push_varint(&mut out, inner.len() as u64);
    out.extend_from_slice(inner);
    out
}

/// `n` empty messages in field `number`: two bytes each on the wire.
fn empties(number: u64, n: usize) -> Vec<u8> {
    let one = field(number, &[]);
    one.repeat(n)
}

/// Protobuf export requests of `n` empty records: valid OTLP, 2 bytes a record.
fn empty_logs(n: usize) -> Vec<u8> {
    field(1, &field(2, &empties(2, n)))
}

fn empty_spans(n: usize) -> Vec<u8> {
    field(1, &field(2, &empties(2, n)))
}

fn empty_points(n: usize) -> Vec<u8> {
    // resource_metrics { scope_metrics { metrics { sum (7) { data_points (1) × n } } } }
    field(1, &field(2, &field(2, &field(7, &empties(1, n)))))
}

fn empty_json_logs(n: usize) -> Vec<u8> {
    let records = vec!["{}"; n].join(",");
    format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{records}]}}]}}]}}"#).into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn post_gzip(
    server: &ServerProcess,
    path: &str,
    content_type: &str,
    body: Bytes,
) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.base_url))
        .header("content-type", content_type)
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn metric(text: &str, sample: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
}

/// OTLP exports of `signal` refused whole for `reason`, as `/metrics` counts them.
fn refused(text: &str, signal: &str, reason: &str) -> Option<u64> {
    metric(
        text,
        &format!(
            "hookwatch_otlp_requests_refused_total{{signal=\"{signal}\",reason=\"{reason}\"}}"
        ),
    )
}

/// 16 KB bodies that inflate to millions of empty records (protobuf and JSON logs, spans,
/// data points): each refused with a 413 that names the bound, before it is decoded; four at
/// once leave the server under the issue's peak; nothing is stored.
#[tokio::test]
async fn exports_that_would_inflate_are_refused_naming_the_bound_within_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path()).await;
    let pid = server.child.id().unwrap();
    let bodies = [
        ("/v1/logs", "application/x-protobuf", empty_logs(8_000_000)),
        ("/v1/logs", "application/json", empty_json_logs(5_000_000)),
        (
            "/v1/traces",
            "application/x-protobuf",
            empty_spans(8_000_000),
        ),
        (
            "/v1/metrics",
            "application/x-protobuf",
            empty_points(8_000_000),
        ),
    ]
    .map(|(path, content_type, inflated)| {
        assert!(
            inflated.len() <= 16 * 1024 * 1024,
            "within --max-batch-bytes"
        );
        let body = Bytes::from(gzip(&inflated));
        assert!(body.len() < 64 * 1024, "small on the wire: {}", body.len());
        (path, content_type, body)
    });
    for (path, content_type, body) in &bodies {
        let (status, error) = post_gzip(&server, path, content_type, body.clone()).await;
        assert_eq!(status, 413, "{path} {content_type}: {error}");
        let message = error["error"].as_str().unwrap();
        assert!(
            message.contains("more than 32768 records") && message.contains("--otlp-max-records"),
            "{message}"
        );
    }
    let at_once = bodies
        .iter()
        .map(|(path, content_type, body)| post_gzip(&server, path, content_type, body.clone()));
    for (status, error) in futures_util::future::join_all(at_once).await {
        assert_eq!(status, 413, "{error}");
    }
    let peak = proc_status_kib(pid, "VmHWM");
    println!("four inflating exports at once: peak RSS {peak} KiB");
    assert!(peak < INFLATING_PEAK_KIB, "peak RSS {peak} KiB");
    let metrics = server.get_text("/metrics").await;
    let over = |signal: &str| refused(&metrics, signal, "over_limit");
    assert_eq!(
        (over("logs"), over("traces"), over("metrics")),
        (Some(4), Some(2), Some(2))
    );
    let stored = metric(
        &metrics,
        "hookwatch_otlp_records_total{signal=\"logs\",outcome=\"stored\"}",
    );
    assert_eq!(stored, Some(0), "nothing of a refused export is stored");
    // The server still takes a real export.
    let (status, _) = post_gzip(
        &server,
        "/v1/logs",
        "application/json",
        Bytes::from(gzip(&empty_json_logs(3))),
    )
    .await;
    assert_eq!(status, 200);
}

/// A raw gRPC client: one HTTP/2 connection on which each export is a stream the test drives.
async fn h2_client(address: std::net::SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client.ready().await.unwrap()
}

const LOGS_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

fn grpc_head(address: std::net::SocketAddr, token: Option<&str>, gzip: bool) -> http::Request<()> {
    let mut request = http::Request::post(format!("http://{address}{LOGS_EXPORT}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if gzip {
        request = request.header("grpc-encoding", "gzip");
    }
    request.body(()).unwrap()
}

/// gRPC's 5-byte prefix: compressed or not, and the message's length.
fn prefix(compressed: bool, len: usize) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out
}

/// Sends `head` and `data` (ending the stream when `end`), and returns the gRPC status code
/// and message of the answer.
async fn grpc_call(
    client: &mut h2::client::SendRequest<Bytes>,
    head: http::Request<()>,
    data: Vec<u8>,
    end: bool,
) -> (i32, String) {
    let (response, mut stream) = client.send_request(head, false).unwrap();
    // h2 queues the data and sends it as the server's window allows.
    let _ = stream.send_data(Bytes::from(data), end);
    let response = tokio::time::timeout(Duration::from_secs(60), response)
        .await
        .expect("answered in time")
        .expect("a response");
    let read = |headers: &http::HeaderMap| {
        let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
        let message = headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .unwrap_or_default();
        Some((code, percent_decode(message)))
    };
    if let Some(status) = read(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    drop(stream);
    read(&trailers).expect("a grpc-status")
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("m={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `hookwatch serve` with HTTP and gRPC on port 0, run through `command` (the binary itself,
/// or a wrapper that runs it), and the gRPC address it printed.
async fn grpc_server(
    mut command: Command,
    dir: &std::path::Path,
    extra: &[&str],
) -> (ServerProcess, std::net::SocketAddr) {
    command
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(["--otlp-grpc-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra);
    let mut server = ServerProcess::spawn(command).await;
    let address = server.grpc_address().await;
    (server, address)
}

/// Without the token, or with a wrong one, an export is UNAUTHENTICATED before a byte of its
/// message is read: six 16 MiB messages at once add less than 32 MiB to the server.
#[tokio::test]
async fn grpc_refuses_a_missing_or_wrong_token_before_reading_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let (server, address) = grpc_server(
        Command::new(binary()),
        dir.path(),
        &["--ingest-token", "in-secret"],
    )
    .await;
    let pid = server.child.id().unwrap();
    let message = empty_logs(8_000_000);
    let mut framed = prefix(false, message.len());
    framed.extend_from_slice(&message);
    let before = proc_status_kib(pid, "VmRSS");
    let calls = (0..6).map(|i| {
        let framed = framed.clone();
        async move {
            let mut client = h2_client(address).await;
            let token = (i % 2 == 1).then_some("wrong");
            grpc_call(&mut client, grpc_head(address, token, false), framed, true).await
        }
    });
    for (code, message) in futures_util::future::join_all(calls).await {
        assert_eq!(code, tonic::Code::Unauthenticated as i32, "{message}");
    }
    let grown = proc_status_kib(pid, "VmHWM").saturating_sub(before);
    println!("six unauthenticated 16 MiB gRPC exports: the server grew {grown} KiB");
    assert!(grown < 32 * 1024, "grew {grown} KiB");
    let metrics = server.get_text("/metrics").await;
    assert_eq!(refused(&metrics, "logs", "unauthenticated"), Some(6));
}

/// Over gRPC an inflating export is RESOURCE_EXHAUSTED, naming the bound, and a message that
/// stops arriving is dropped at the request timeout (DEADLINE_EXCEEDED); the body budget
/// admits only what it covers (UNAVAILABLE: the exporter retries) and is whole again after.
#[tokio::test]
async fn grpc_holds_exports_to_the_bounds_the_budget_and_the_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (server, address) = grpc_server(
        Command::new(binary()),
        dir.path(),
        &[
            "--ingest-token",
            "in-secret",
            "--otlp-grpc-request-timeout",
            "2s",
        ],
    )
    .await;
    let token = Some("in-secret");
    let mut client = h2_client(address).await;
    let bomb = gzip(&empty_logs(8_000_000));
    let mut framed = prefix(true, bomb.len());
    framed.extend_from_slice(&bomb);
    let (code, message) =
        grpc_call(&mut client, grpc_head(address, token, true), framed, true).await;
    assert_eq!(code, tonic::Code::ResourceExhausted as i32, "{message}");
    assert!(message.contains("--otlp-max-records"), "{message}");

    // Eight exports that declare almost 16 MiB each and send 1 MiB: the 64 MiB budget takes
    // four; the others are told to retry; the four are dropped at the timeout.
    let declared = 16 * 1024 * 1024 - 100;
    let mut partial = prefix(false, declared);
    partial.extend_from_slice(&vec![0u8; 1024 * 1024]);
    let stalled = (0..8).map(|_| {
        let partial = partial.clone();
        async move {
            let mut client = h2_client(address).await;
            grpc_call(
                &mut client,
                grpc_head(address, token, false),
                partial,
                false,
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(stalled).await;
    let count = |code: tonic::Code| answers.iter().filter(|(c, _)| *c == code as i32).count();
    assert_eq!(
        (
            count(tonic::Code::Unavailable),
            count(tonic::Code::DeadlineExceeded)
        ),
        (4, 4),
        "{answers:?}"
    );
    let metrics = server.get_text("/metrics").await;
    assert_eq!(
        metric(&metrics, "hookwatch_request_body_bytes_in_flight"),
        Some(0),
        "the budget is whole again"
    );
    let logs = |reason: &str| refused(&metrics, "logs", reason);
    assert_eq!(
        (logs("over_limit"), logs("timeout"), logs("unavailable")),
        (Some(1), Some(4), Some(4))
    );
}

/// Thousands of idle connections on the gRPC port, against a server with 1,024 file
/// descriptors: past the cap they are closed as they come, so the HTTP API keeps answering;
/// the idle ones are closed at the idle timeout.
#[tokio::test]
async fn an_idle_connection_flood_on_grpc_leaves_the_http_api_answering() {
    let dir = tempfile::tempdir().unwrap();
    let mut prlimit = Command::new("prlimit");
    prlimit.args(["--nofile=1024:1024", "--"]).arg(binary());
    let extra = ["--otlp-grpc-idle-timeout", "2s"];
    let (server, address) = grpc_server(prlimit, dir.path(), &extra).await;
    let mut held = Vec::new();
    for _ in 0..3_000 {
        let connect = tokio::net::TcpStream::connect(address);
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
            held.push(stream);
        }
    }
    assert!(held.len() > 1_024, "the flood got in: {}", held.len());
    let started = Instant::now();
    let health = reqwest::Client::new()
        .get(format!("{}/healthz", server.base_url))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("/healthz answers during the flood");
    assert_eq!(health.status(), 200);
    println!(
        "{} idle gRPC connections held: /healthz in {:?}",
        held.len(),
        started.elapsed()
    );
    let metrics = server.get_text("/metrics").await;
    let at_cap = metric(
        &metrics,
        "hookwatch_otlp_grpc_connections_closed_total{reason=\"at_cap\"}",
    );
    assert!(at_cap.unwrap_or(0) > 0, "{metrics}");
    assert!(metric(&metrics, "hookwatch_otlp_grpc_connections").unwrap() <= 512);
    crate::helpers::wait_until(
        "the idle connections to be closed",
        Duration::from_secs(30),
        || async { Value::String(server.get_text("/metrics").await) },
        |text| metric(text.as_str().unwrap(), "hookwatch_otlp_grpc_connections ") == Some(0),
    )
    .await;
    drop(held);
}

fn attribute(key: &str, value: Value) -> Value {
    serde_json::json!({"key": key, "value": value})
}

fn text(s: &str) -> Value {
    serde_json::json!({ "stringValue": s })
}

/// An `api_request` record at `at_ms` in `session`, with `changes` in place of its defaults.
fn api_request(session: &str, at_ms: i64, changes: &[(&str, Value)]) -> Value {
    let mut attributes = vec![
        ("session.id", text(session)),
        ("event.name", text("api_request")),
        ("model", text("claude-sonnet-4-6")),
        ("cost_usd", serde_json::json!({"doubleValue": 0.5})),
        ("input_tokens", serde_json::json!({"intValue": 100})),
        ("output_tokens", serde_json::json!({"intValue": 10})),
        ("request_id", text(&format!("req-{session}-{at_ms}"))),
    ];
    for (key, value) in changes {
        attributes.retain(|(k, _)| k != key);
        attributes.push((key, value.clone()));
    }
    serde_json::json!({
        "timeUnixNano": format!("{}", at_ms as i128 * 1_000_000),
        "body": text("claude_code.api_request"),
        "attributes": attributes.into_iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
    })
}

fn logs_of(records: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"resourceLogs": [{"scopeLogs": [{
        "logRecords": records}]}]}))
    .unwrap()
}

/// Every cost anywhere in a view: none may be negative.
fn assert_no_negative_cost(view: &Value, path: &str) {
    match view {
        Value::Object(fields) => {
            for (key, value) in fields {
                if key.contains("cost")
                    && let Some(n) = value.as_f64()
                {
                    assert!(n >= 0.0, "{path}: {key} = {n}");
                }
                assert_no_negative_cost(value, path);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| assert_no_negative_cost(v, path)),
        _ => {}
    }
}

/// The views a team reads cost from, each answering 200 with no negative cost (the session
/// `S-good` is known from a hook event).
async fn every_view_answers(app: &crate::helpers::TestApp) {
    let start =
        crate::fixtures::envelope("app", "S-good", "SessionStart", 0, serde_json::json!({}));
    app.send_event(&start).await;
    for path in [
        "/api/agents/metrics/current?hours=24",
        "/api/agents/metrics/timeline?hours=24",
        "/api/usage?hours=24&group_by=model",
        "/api/usage?hours=24&group_by=session",
        "/api/usage?hours=24&group_by=app",
        "/api/usage?hours=24&group_by=agent_type",
        "/api/usage/timeline?hours=24",
        "/api/sessions",
        "/api/sessions/S-good",
        "/api/sessions/S-good/trace",
        "/api/agents",
    ] {
        let view = app.get_ok(path).await;
        assert_no_negative_cost(&view, path);
    }
}

/// Tokens past 10^12, costs that are negative, NaN, infinite or 1e300, identifiers past
/// --max-id-len: each record is rejected alone through partial_success, naming its field; the
/// rest is kept, a timestamp from 2200 is stored as the arrival time, and every view answers.
async fn hostile_numbers_and_identifiers_are_rejected_alone(backend: crate::helpers::Backend) {
    let app = crate::helpers::TestApp::spawn_on(backend).await;
    let now = app.service.now_ms();
    let long = "x".repeat(100_000);
    let year_2200_ms = 7_258_118_400_000;
    let records = vec![
        api_request("S-good", now - 1_000, &[]),
        api_request(
            "S-good",
            year_2200_ms,
            &[("request_id", text("req-future"))],
        ),
        api_request(
            "S-bad",
            now,
            &[("input_tokens", text(&i64::MAX.to_string()))],
        ),
        api_request(
            "S-bad",
            now + 1,
            &[("cost_usd", serde_json::json!({"doubleValue": -1e10}))],
        ),
        api_request("S-bad", now + 2, &[("cost_usd", text("NaN"))]),
        api_request("S-bad", now + 3, &[("cost_usd", text("inf"))]),
        api_request(
            "S-bad",
            now + 4,
            &[("cost_usd", serde_json::json!({"doubleValue": 1e300}))],
        ),
        api_request(&long, now + 5, &[]),
        api_request("S-bad", now + 6, &[("model", text(&long))]),
        api_request("S-bad", now + 7, &[("user.email", text(&long))]),
    ];
    let answer = app
        .client
        .post(app.url("/v1/logs"))
        .header("content-type", "application/json")
        .body(logs_of(records))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    let partial = &answer["partialSuccess"];
    assert_eq!(partial["rejectedLogRecords"], "8", "{answer}");
    let message = partial["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("8 log records rejected") && message.contains("input_tokens"),
        "{message}"
    );
    assert_eq!(app.count("SELECT count(*) FROM telemetry_events"), 2);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM telemetry_events WHERE at_ms > {}",
            app.service.now_ms()
        )),
        0,
        "the record from 2200 is stored at its arrival"
    );
    // Counter points: +inf and 1e300 dollars, -5 dollars, 1e300 tokens; one good point.
    let point = |metric: &str, value: f64| {
        let json = serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
            "name": metric, "sum": {"aggregationTemporality": 1, "dataPoints": [{
                "attributes": [attribute("session.id", text("S-good")),
                               attribute("type", text("input"))],
                "timeUnixNano": format!("{}", now as i128 * 1_000_000),
                "asDouble": 1.0}]}}]}]}]});
        let mut request: opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest =
            serde_json::from_value(json).unwrap();
        let metric = &mut request.resource_metrics[0].scope_metrics[0].metrics[0];
        if let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(sum)) =
            &mut metric.data
        {
            sum.data_points[0].value = Some(
                opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(value),
            );
        }
        request.resource_metrics.remove(0)
    };
    let request = opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
        resource_metrics: vec![
            point("claude_code.cost.usage", f64::INFINITY),
            point("claude_code.cost.usage", 1e300),
            point("claude_code.cost.usage", -5.0),
            point("claude_code.token.usage", 1e300),
            point("claude_code.cost.usage", 0.25),
        ],
    };
    let answer = app
        .client
        .post(app.url("/v1/metrics"))
        .header("content-type", "application/x-protobuf")
        .body(prost::Message::encode_to_vec(&request))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer = <opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse
        as prost::Message>::decode(answer.bytes().await.unwrap())
    .unwrap();
    let partial = answer.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_data_points, 4, "{}", partial.error_message);
    assert!(
        partial.error_message.contains("cost"),
        "{}",
        partial.error_message
    );
    assert_eq!(app.count("SELECT count(*) FROM telemetry_points"), 1);
    every_view_answers(&app).await;
}

/// The store's second line: sums that would pass 2^63 saturate in every upsert, on both
/// stores, so even rows past the edge's bounds never make ingest or a view fail.
async fn telemetry_sums_saturate_instead_of_failing(backend: crate::helpers::Backend) {
    use hookwatch::domain::telemetry::{TelemetryBatch, TelemetryEventRow};
    let app = crate::helpers::TestApp::spawn_on(backend).await;
    let now = app.service.now_ms();
    let huge = |n: i64| TelemetryEventRow {
        kind: "api_request".into(),
        dedup_key: format!("huge-{n}"),
        session_id: Some("S-good".into()),
        at_ms: now - n,
        model: Some("claude-sonnet-4-6".into()),
        cost_nanos: Some(i64::MAX - 1),
        input_tokens: Some(i64::MAX - 1),
        output_tokens: Some(i64::MAX - 1),
        cache_read_tokens: Some(i64::MAX - 1),
        cache_creation_tokens: Some(i64::MAX - 1),
        duration_ms: Some(1_000),
        agent_type: Some("main".into()),
        ..TelemetryEventRow::default()
    };
    for n in 0..3 {
        let batch = TelemetryBatch {
            events: vec![huge(n)],
            points: Vec::new(),
        };
        app.service
            .record_telemetry(batch)
            .await
            .expect("a saturating upsert never fails");
    }
    let usage = app.get_ok("/api/usage?hours=1&group_by=model").await;
    let row = &usage["rows"][0];
    assert_eq!(row["input_tokens"], i64::MAX, "{usage}");
    every_view_answers(&app).await;
}

crate::on_each_store!(
    hostile_numbers_and_identifiers_are_rejected_alone,
    telemetry_sums_saturate_instead_of_failing,
);

/// A hook event sent while a large export is being committed is acknowledged before the
/// export is: exports are committed in chunks, and hook events between them. Ordering, not
/// timing: when the hook's ack comes, only part of the export is in the store.
#[tokio::test]
async fn a_hook_event_is_committed_between_the_chunks_of_a_large_export() {
    const RECORDS: i64 = 32_000;
    let app = crate::helpers::TestApp::spawn().await;
    let now = app.service.now_ms();
    let records: Vec<Value> = (0..RECORDS)
        .map(|n| api_request("S-big", now - RECORDS + n, &[]))
        .collect();
    let export = app
        .client
        .post(app.url("/v1/logs"))
        .header("content-type", "application/json")
        .body(logs_of(records))
        .send();
    let export = tokio::spawn(export);
    let committed = || app.count("SELECT count(*) FROM telemetry_events");
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed() == 0 {
        assert!(Instant::now() < deadline, "the export never started");
        // Polling the store for the first chunk's commit.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let hook = crate::fixtures::envelope("app", "S-hook", "SessionStart", 0, serde_json::json!({}));
    app.send_event(&hook).await;
    let at_ack = committed();
    assert!(
        at_ack < RECORDS,
        "the hook's ack waited for the whole export ({at_ack} rows committed when it came)"
    );
    let answer = export.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(committed(), RECORDS);
    println!("hook acked with {at_ack} of {RECORDS} telemetry rows committed");
}
