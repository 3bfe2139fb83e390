//! `GET /api/export` and `hookwatch export`: every matching event, oldest first, streamed.

use serde_json::{Value, json};

use crate::fixtures::{envelope, pre_tool};
use crate::helpers::{Backend, T0, TestApp, binary, expect_error};

/// 2,500 events over two apps, one minute apart each 10; some with awkward summaries.
async fn fill(app: &TestApp) {
    // The events span 250 minutes: the server's clock is past them all (timestamps further
    // ahead than the allowed clock skew would be clamped to arrival).
    app.clock.set(T0 + 300 * 60_000);
    for batch_start in (0..2_500).step_by(500) {
        let batch: Vec<Value> = (batch_start..batch_start + 500)
            .map(|n| {
                let mut event = envelope(
                    ["alpha", "beta"][n % 2],
                    &format!("S{}", n % 7),
                    "PreToolUse",
                    n as i64 * 6_000,
                    pre_tool(
                        "Bash",
                        &format!("t{n}"),
                        json!({"command": format!("echo {n}")}),
                    ),
                );
                if n % 100 == 0 {
                    event["summary"] = json!(format!("a, \"quoted\"\nsummary {n}"));
                }
                event
            })
            .collect();
        let answer = app.post_json("/events/batch", &json!(batch)).await;
        assert_eq!(answer.status(), 200);
    }
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// RFC 4180 records (quoted fields may hold commas, quotes and line breaks).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    records
}

async fn an_export_streams_every_matching_event_oldest_first(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    fill(&app).await;
    let stored = crate::helpers::all_events(&app.client, &app.base_url).await;

    let response = app.client.get(app.url("/api/export")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/x-ndjson",
        "JSON lines by default"
    );
    let exported = jsonl(&response.text().await.unwrap());
    assert_eq!(
        exported, stored,
        "every event, whole, in the API's shape and order"
    );

    // Filters and a time window.
    let (since, until) = (T0 + 600_000, T0 + 1_200_000);
    let text = app
        .get_text(&format!("/api/export?app=beta&since={since}&until={until}"))
        .await;
    let window = jsonl(&text);
    let expected: Vec<&Value> = stored
        .iter()
        .filter(|e| {
            let ts = e["timestamp"].as_i64().unwrap();
            e["source_app"] == "beta" && ts >= since && ts <= until
        })
        .collect();
    assert_eq!(window.len(), expected.len());
    assert!(window.iter().zip(&expected).all(|(a, b)| a == *b));
    assert_eq!(window.len(), 50);

    // CSV: a header, then one record per event, with awkward text quoted.
    let text = app.get_text("/api/export?format=csv&app=alpha").await;
    let records = csv_records(&text);
    assert_eq!(
        records[0],
        [
            "id",
            "event_id",
            "timestamp",
            "time",
            "source_app",
            "session_id",
            "hook_event_type",
            "tool_name",
            "summary",
            "payload"
        ]
    );
    assert_eq!(records.len(), 1 + 1_250);
    let first = &records[1];
    assert_eq!(first[1], stored[0]["event_id"].as_str().unwrap());
    assert_eq!(first[3], "2026-11-20T10:00:00.000Z");
    assert_eq!(first[7], "Bash");
    assert_eq!(first[8], "a, \"quoted\"\nsummary 0");
    let payload: Value = serde_json::from_str(&first[9]).unwrap();
    assert_eq!(payload, stored[0]["payload"]);
}

#[tokio::test]
async fn export_parameters_are_checked() {
    let app = TestApp::spawn().await;
    for (query, field) in [
        ("format=xml", "format"),
        ("since=yesterday", "since"),
        ("since=20&until=10", "until"),
    ] {
        let response = app
            .client
            .get(app.url(&format!("/api/export?{query}")))
            .send()
            .await
            .unwrap();
        let body = expect_error(response, 400).await;
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    let empty = app.get_text("/api/export?format=csv").await;
    assert_eq!(
        empty.lines().count(),
        1,
        "an empty export is just the header"
    );
}

async fn hookwatch_export_writes_the_same_file_with_progress(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    fill(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    let output = tokio::process::Command::new(binary())
        .args(["export", "--server", &app.base_url, "--format", "csv"])
        .args(["--app", "alpha", "--since", "1795168800000", "--output"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("exported 1250 events"), "{stderr}");
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        written,
        app.get_text(&format!("/api/export?format=csv&app=alpha&since={T0}"))
            .await
    );

    // A refused export is an error, not an empty file.
    let output = tokio::process::Command::new(binary())
        .args(["export", "--server", &app.base_url, "--since", "never"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("never"));
}

crate::on_each_store!(
    an_export_streams_every_matching_event_oldest_first,
    hookwatch_export_writes_the_same_file_with_progress,
);

/// A server that stops mid-answer (chunked, or short of its Content-Length) leaves an error,
/// never a file that looks complete.
#[tokio::test]
async fn an_export_cut_short_is_an_error() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let answers: [&[u8]; 2] = [
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\n{\"id\":1}\n{\"id\":2",
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"id\":1}\n",
        ];
        for answer in answers {
            let (mut connection, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = connection.read(&mut request).unwrap();
            connection.write_all(answer).unwrap();
        }
    });
    for cut in ["chunked", "content-length"] {
        let output = tokio::process::Command::new(binary())
            .args(["export", "--quiet", "--server"])
            .arg(format!("http://127.0.0.1:{port}"))
            .env_remove("HOOKWATCH_TOKEN")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{cut}: {stderr}");
        assert!(stderr.contains("cut short"), "{cut}: {stderr}");
    }
    server.join().unwrap();
}
