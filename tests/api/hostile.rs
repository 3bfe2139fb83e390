//! Hostile input: generated JSON and bytes against every ingest route (proptest), and a corpus
//! of known-nasty inputs. Every answer is a 2xx or a clean 4xx; nothing stored changes unless
//! the input was a valid event; the server keeps serving.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixtures::envelope;
use crate::helpers::{TestApp, all_events, expect_error};

const INGEST_ROUTES: [&str; 3] = ["/events", "/events/batch", "/hooks/claude-code"];

/// Any JSON value, up to a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,12}", inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Mostly valid envelopes whose payloads hold the fields the lifecycle rules read, with any
/// values (so odd types reach the derivation, not just the parser), and now and then a
/// top-level field replaced by anything.
fn envelope_like() -> impl Strategy<Value = Value> {
    const PAYLOAD_KEYS: [&str; 16] = [
        "tool_name",
        "tool_use_id",
        "agent_id",
        "agent_type",
        "tool_input",
        "tool_response",
        "prompt",
        "model",
        "usage",
        "duration_ms",
        "error",
        "source",
        "reason",
        "session_id",
        "hook_event_name",
        "cwd",
    ];
    const TYPES: [&str; 10] = [
        "SessionStart",
        "UserPromptSubmit",
        "PreToolUse",
        "PostToolUse",
        "PostToolUseFailure",
        "SubagentStart",
        "SubagentStop",
        "Stop",
        "SessionEnd",
        "SomethingNew",
    ];
    const TOP_KEYS: [&str; 8] = [
        "source_app",
        "session_id",
        "hook_event_type",
        "payload",
        "timestamp",
        "event_id",
        "summary",
        "transcript_usage",
    ];
    let payload = proptest::collection::vec((0..PAYLOAD_KEYS.len(), any_json()), 0..8);
    let overrides = proptest::collection::vec((0..TOP_KEYS.len(), any_json()), 0..2);
    (0..TYPES.len(), "[a-z]{1,3}", payload, overrides).prop_map(
        move |(kind, session, payload, overrides)| {
            let payload: serde_json::Map<String, Value> = payload
                .into_iter()
                .map(|(key, value)| (PAYLOAD_KEYS[key].to_owned(), value))
                .collect();
            let mut envelope = json!({
                "source_app": "proptest",
                "session_id": session,
                "hook_event_type": TYPES[kind],
                "hook_event_name": TYPES[kind],
                "payload": payload,
            });
            for (key, value) in overrides {
                envelope[TOP_KEYS[key]] = value;
            }
            envelope
        },
    )
}

/// Posts `body` to `route` and returns the status, asserting it is a 2xx or a JSON 4xx.
async fn post_anything(app: &TestApp, route: &str, body: Vec<u8>) -> u16 {
    let response = app
        .client
        .post(app.url(route))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("an answer, not a dropped connection");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert!(
        (200..300).contains(&status) || (400..500).contains(&status),
        "{route} answered {status}: {text}"
    );
    if status >= 400 {
        let error: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{route} {status} is not JSON ({e}): {text}"));
        assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    status
}

fn run_property<T: std::fmt::Debug>(
    cases: u32,
    strategy: impl Strategy<Value = T>,
    body: impl Fn(&str, &T) -> Vec<u8>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(TestApp::spawn());
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&strategy, |input| {
            for route in INGEST_ROUTES {
                let bytes = body(route, &input);
                runtime.block_on(post_anything(&app, route, bytes));
            }
            Ok(())
        })
        .unwrap();
    // Still serving, and what was stored reads back.
    let events = runtime.block_on(all_events(&app.client, &app.base_url));
    assert!(events.iter().all(|e| e["payload"].is_object()));
    drop(app);
    runtime.shutdown_timeout(Duration::from_secs(5));
}

#[test]
fn generated_json_gets_a_2xx_or_a_clean_4xx_on_every_ingest_route() {
    run_property(200, any_json(), |_, value| {
        serde_json::to_vec(value).unwrap()
    });
}

#[test]
fn generated_envelopes_get_a_2xx_or_a_clean_4xx_on_every_ingest_route() {
    run_property(300, envelope_like(), |route, value| {
        let body = if route == "/events/batch" {
            json!([value, value])
        } else {
            value.clone()
        };
        serde_json::to_vec(&body).unwrap()
    });
}

#[test]
fn generated_bytes_get_a_2xx_or_a_clean_4xx_on_every_ingest_route() {
    run_property(
        300,
        proptest::collection::vec(any::<u8>(), 0..600),
        |_, bytes| bytes.clone(),
    );
}

/// A head announcing a body far over the limit, and a body that keeps coming (chunked):
/// both get 413 without the server reading 100 MB.
async fn post_hundred_megabytes(app: &TestApp, chunked: bool) -> String {
    let mut stream = tokio::net::TcpStream::connect(&app.base_url["http://".len()..])
        .await
        .unwrap();
    let length = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", 100 * 1024 * 1024)
    };
    let head = format!(
        "POST /events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        let block = vec![b'x'; 64 * 1024];
        for _ in 0..1600 {
            let sent = if chunked {
                let mut chunk = format!("{:x}\r\n", block.len()).into_bytes();
                chunk.extend_from_slice(&block);
                chunk.extend_from_slice(b"\r\n");
                writer.write_all(&chunk).await
            } else {
                writer.write_all(&block).await
            };
            if sent.is_err() {
                return; // the server stopped reading: good
            }
        }
    });
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut answer))
        .await
        .expect("an answer before 100 MB were sent")
        .unwrap();
    sender.abort();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn a_corpus_of_hostile_inputs_gets_clean_4xx_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.send_event(&envelope("proj", "S1", "Stop", 0, json!({})))
        .await;
    let before = all_events(&app.client, &app.base_url).await;

    // 100 MB bodies, announced and unannounced.
    for chunked in [false, true] {
        let answer = post_hundred_megabytes(&app, chunked).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
    // Deeply nested JSON, NUL bytes, invalid UTF-8, huge numbers.
    let nested = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let hostile_bodies: Vec<Vec<u8>> = vec![
        nested.clone().into_bytes(),
        format!(r#"{{"source_app":"a","session_id":"s","hook_event_type":"X","payload":{{"d":{nested}}}}}"#)
            .into_bytes(),
        b"{\"source_app\":\"a\0\",\0}".to_vec(),
        vec![0u8; 1000],
        vec![b'{', 0xc3, 0x28, b'}'],
        br#"{"source_app":"a","session_id":"s","hook_event_type":"X","payload":{},"timestamp":1e400}"#.to_vec(),
        // (Timestamps out of range are stored with the arrival time since issue 16:
        // `bad_input::optional_fields_of_odd_shapes_are_kept_and_ignored`.)
        br#"{"source_app":"a","session_id":"s","hook_event_type":"X","payload":{"n":1e999999}}"#.to_vec(),
    ];
    for body in &hostile_bodies {
        for route in INGEST_ROUTES {
            let status = post_anything(&app, route, body.clone()).await;
            let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
            if route == "/events/batch" && status == 200 {
                // A batch answers per item: the item is rejected, with its reason.
                let answer: Value = app
                    .post_raw(route, body.clone())
                    .await
                    .json()
                    .await
                    .unwrap();
                assert_eq!(answer["accepted"], 0, "{shown}: {answer}");
                assert!(answer["rejected"][0]["error"].is_string(), "{answer}");
            } else {
                assert!(status >= 400, "{route} took {shown:?}");
            }
        }
    }
    assert_eq!(all_events(&app.client, &app.base_url).await, before);

    // Injection strings in every filter parameter of every read: only ever values.
    let nasty = [
        "' OR 1=1 --",
        "\"; DROP TABLE events; --",
        "<script>alert(1)</script>",
        "%00",
        "../../etc/passwd",
        "{{7*7}}",
        "\u{202e}reversed",
        &"x".repeat(10_000),
    ];
    let reads = [
        (
            "/events",
            &[
                "app",
                "session_id",
                "event_type",
                "tool",
                "q",
                "cursor",
                "since",
                "order",
                "limit",
            ][..],
        ),
        (
            "/api/export",
            &[
                "app",
                "session_id",
                "event_type",
                "format",
                "since",
                "until",
            ][..],
        ),
        ("/api/agents", &["status", "limit"][..]),
        ("/api/sessions", &["app", "limit"][..]),
        (
            "/api/agents/metrics/current",
            &["hours", "start", "end"][..],
        ),
        ("/api/agents/metrics/timeline", &["hours", "bucket"][..]),
        ("/api/agents/types/distribution", &["hours"][..]),
        ("/api/agents/tools/usage", &["hours"][..]),
        ("/events/recent", &["limit"][..]),
    ];
    for (path, params) in reads {
        for param in params {
            for value in nasty {
                let response = app
                    .client
                    .get(app.url(path))
                    .query(&[(*param, value)])
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                assert!(
                    status == 200 || (400..500).contains(&status),
                    "{path}?{param}={value:.40} answered {status}: {text:.200}"
                );
                assert!(
                    !text.contains("<script>"),
                    "{path}?{param}: markup echoed unescaped"
                );
            }
        }
    }
    for value in nasty {
        let id: String = value.bytes().map(|b| format!("%{b:02X}")).collect();
        let response = app
            .client
            .get(format!("{}/api/agents/{id}", app.base_url))
            .send()
            .await
            .unwrap();
        // No such agent; a path past the URI limit is refused before it is looked up.
        let path_bytes = "/api/agents/".len() + id.len();
        expect_error(response, if path_bytes > 16 * 1024 { 414 } else { 404 }).await;
    }
    assert_eq!(
        all_events(&app.client, &app.base_url).await,
        before,
        "nothing stored changed"
    );
    app.send_event(&envelope("proj", "S1", "SessionEnd", 1, json!({})))
        .await; // still serving
}
