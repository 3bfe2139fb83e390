//! `GET /stream` over real WebSocket connections: the origin protocol, agent messages,
//! subscriptions, and a slow client that must neither hold memory nor slow anyone down.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::fixtures::{envelope, in_subagent};
use crate::helpers::TestApp;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp, query: &str) -> Socket {
    connect_to(&app.base_url, query).await
}

/// A WebSocket client of `/stream{query}` on the server at `base_url`.
pub async fn connect_to(base_url: &str, query: &str) -> Socket {
    let url = format!("{}/stream{query}", base_url.replace("http://", "ws://"));
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the WebSocket upgrade");
    socket
}

/// The next JSON message other than the periodic `metrics` and `health` snapshots.
pub async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = next_any(socket).await;
        if message["type"] != "metrics" && message["type"] != "health" {
            return message;
        }
    }
}

/// The next message of type `kind`.
pub async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let message = next_any(socket).await;
        if message["type"] == kind {
            return message;
        }
    }
}

/// The next JSON message, skipping pings; fails after 10 s.
async fn next_any(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the stream is open")
            .expect("a valid frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

#[tokio::test]
async fn the_stream_speaks_the_origin_protocol_and_adds_agent_messages() {
    let app = TestApp::spawn().await;
    app.send_event(&envelope("p", "S1", "SessionStart", 0, json!({})))
        .await;
    app.send_event(&envelope(
        "p",
        "S1",
        "UserPromptSubmit",
        1_000,
        json!({"prompt": "hi"}),
    ))
    .await;
    let mut socket = connect(&app, "").await;
    let initial = next(&mut socket).await;
    assert_eq!(initial["type"], "initial");
    let types: Vec<&str> = initial["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["hook_event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["SessionStart", "UserPromptSubmit"], "oldest first");

    let agent = || in_subagent("a1", "Explore", json!({}));
    app.send_event(&envelope("p", "S1", "SubagentStart", 2_000, agent()))
        .await;
    let event = next(&mut socket).await;
    assert_eq!(event["type"], "event");
    assert_eq!(event["data"]["hook_event_type"], "SubagentStart");
    assert!(event["data"]["id"].is_i64() && event["data"]["event_id"].is_string());
    let started = next(&mut socket).await;
    assert_eq!(
        started,
        json!({"type": "agent", "version": 1, "data": {"agent_id": "a1", "agent_type": "Explore",
            "session_id": "S1", "from": null, "to": "running", "at": crate::helpers::T0 + 2_000}})
    );
    app.send_event(&envelope("p", "S1", "SubagentStop", 3_000, agent()))
        .await;
    assert_eq!(
        next(&mut socket).await["data"]["hook_event_type"],
        "SubagentStop"
    );
    let completed = next(&mut socket).await;
    assert_eq!(completed["data"]["from"], "running");
    assert_eq!(completed["data"]["to"], "completed");
}

#[tokio::test]
async fn a_subscription_narrows_what_a_client_receives() {
    let app = TestApp::spawn().await;
    app.send_event(&envelope("p", "A", "SessionStart", 0, json!({})))
        .await;
    app.send_event(&envelope("p", "B", "SessionStart", 0, json!({})))
        .await;
    let mut socket = connect(&app, "?session_id=A").await;
    let initial = next(&mut socket).await;
    assert_eq!(initial["data"].as_array().unwrap().len(), 1, "{initial}");
    assert_eq!(initial["data"][0]["session_id"], "A");

    app.send_event(&envelope("p", "B", "Notification", 1_000, json!({})))
        .await;
    app.send_event(&envelope("p", "A", "Notification", 1_000, json!({})))
        .await;
    let first = next(&mut socket).await;
    assert_eq!(
        first["data"]["session_id"], "A",
        "B's event was filtered out"
    );

    socket
        .send(Message::Text(
            json!({"type": "subscribe", "filters": {"event_type": "Stop"}})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    // The subscription applies once the server has read it; give it a moment by round trip:
    // a ping is answered only after the subscribe frame before it was processed.
    socket
        .send(Message::Ping(Default::default()))
        .await
        .unwrap();
    loop {
        match socket.next().await.unwrap().unwrap() {
            Message::Pong(_) => break,
            Message::Text(text) if text.contains("\"metrics\"") || text.contains("\"health\"") => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    app.send_event(&envelope(
        "p",
        "A",
        "PreToolUse",
        2_000,
        json!({"tool_name": "Bash"}),
    ))
    .await;
    app.send_event(&envelope("p", "B", "Stop", 3_000, json!({})))
        .await;
    let only = next(&mut socket).await;
    assert_eq!(only["data"]["hook_event_type"], "Stop");
    assert_eq!(
        only["data"]["session_id"], "B",
        "the new filter replaced the old one"
    );
}

#[tokio::test]
async fn a_slow_client_is_told_what_it_missed_and_slows_no_one() {
    let app = TestApp::spawn_with(|c| c.live_capacity = 16).await;
    let mut reader = connect(&app, "").await;
    let mut sleeper = connect(&app, "").await;
    assert_eq!(next(&mut reader).await["type"], "initial");
    assert_eq!(next(&mut sleeper).await["type"], "initial");

    // ~100 KB events: the sleeping client's socket buffers fill long before 200 of them.
    let big = "x".repeat(100_000);
    let reading = tokio::spawn(async move {
        let mut events = 0;
        while events < 200 {
            let message = next(&mut reader).await;
            assert_eq!(message["type"], "event", "the reading client never lags");
            events += 1;
        }
        events
    });
    for n in 0..200 {
        app.send_event(&envelope(
            "p",
            "S",
            "PostToolUse",
            n,
            json!({"tool_name": "Read", "tool_use_id": format!("t{n}"), "tool_response": big}),
        ))
        .await; // every ingest answered 200 while a client slept
    }
    assert_eq!(reading.await.unwrap(), 200);

    // The sleeper wakes up: it is told what it missed, then gets the rest, up to the last one.
    let mut dropped = 0;
    let mut received = 0;
    loop {
        let message = next(&mut sleeper).await;
        match message["type"].as_str() {
            Some("event") => {
                received += 1;
                if message["data"]["payload"]["tool_use_id"] == "t199" {
                    break;
                }
            }
            Some("lagged") => {
                assert_eq!(message["version"], 1);
                dropped += message["dropped"].as_u64().unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(dropped > 0, "the slow client was told it missed messages");
    assert!(received < 200, "it did not get everything: {received}");
}

#[tokio::test]
async fn clients_are_told_when_redis_goes_down() {
    let mut redis = crate::redis_server::RedisServer::start();
    let url = redis.url();
    let app = TestApp::spawn_with(|c| {
        c.cache.redis_url = Some(url);
        c.cache.maintenance_interval = Duration::from_millis(100);
    })
    .await;
    let mut socket = connect(&app, "").await;
    assert_eq!(next_any(&mut socket).await["type"], "initial");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let health = next_of(&mut socket, "health").await;
        if health["data"]["redis"] == "up" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "redis never came up: {health}"
        );
    }
    redis.kill();
    loop {
        let health = next_of(&mut socket, "health").await;
        if health["data"]["redis"] == "down" {
            assert_eq!(health["data"]["sqlite"], "up");
            break;
        }
    }
}

#[tokio::test]
async fn clients_get_health_on_connect_and_metrics_after_events() {
    let app = TestApp::spawn().await;
    let mut socket = connect(&app, "?session_id=nobody").await;
    assert_eq!(next_any(&mut socket).await["type"], "initial");
    let health = next_any(&mut socket).await;
    assert_eq!(
        health,
        json!({"type": "health", "version": 1,
            "data": {"sqlite": "up", "database": "sqlite", "redis": "disabled", "breaker": null}})
    );
    let agent = || in_subagent("a1", "Plan", json!({}));
    app.send_event(&envelope("p", "S", "SubagentStart", -2_000, agent()))
        .await;
    app.send_event(&envelope("p", "S", "SubagentStop", -1_000, agent()))
        .await;
    // Global snapshots reach every client, whatever its filters; the one that follows the
    // events counts them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = next_of(&mut socket, "metrics").await;
        assert_eq!(metrics["version"], 1);
        if metrics["data"]["executions_today"] == 1 {
            assert_eq!(metrics["data"]["agent_type_breakdown"][0]["type"], "Plan");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
    }
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

#[tokio::test]
async fn a_client_that_never_reads_holds_no_memory_and_blocks_no_ingest() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = crate::helpers::ServerProcess::start(data_dir.path()).await;
    let pid = server.child.id().unwrap();
    let url = format!("{}/stream", server.base_url.replace("http://", "ws://"));
    // Connected, subscribed, and then never read again: its socket buffers fill up.
    let (sleeper, _) = tokio_tungstenite::connect_async(url).await.unwrap();

    // 20 KB events: 10,000 of them are ~200 MB that a server buffering per client would hold.
    let client = reqwest::Client::new();
    let filler = "y".repeat(20_000);
    let batch = |first: usize| -> Vec<Value> {
        (first..first + 100)
            .map(|n| {
                envelope(
                    "p",
                    "S-sleep",
                    "PostToolUse",
                    n as i64,
                    json!({"tool_name": "Read", "tool_use_id": format!("t{n}"), "tool_response": filler}),
                )
            })
            .collect()
    };
    let ingest = |first: usize| {
        let request = client
            .post(format!("{}/events/batch", server.base_url))
            .json(&batch(first));
        async move {
            let answer: Value = request.send().await.unwrap().json().await.unwrap();
            assert_eq!(answer["accepted"], 100, "{answer}");
        }
    };
    // Warm up (allocator, SQLite's page cache, the live ring filling once), then measure.
    for first in (0..2_000).step_by(100) {
        ingest(first).await;
    }
    let before = rss_kib(pid);
    let started = std::time::Instant::now();
    for first in (2_000..12_000).step_by(100) {
        ingest(first).await;
    }
    let took = started.elapsed();
    let after = rss_kib(pid);
    eprintln!(
        "server RSS {} → {} MiB over 10,000 events ({:.1} s of ingest) with a client that never reads",
        before / 1024,
        after / 1024,
        took.as_secs_f64()
    );
    assert!(
        after.saturating_sub(before) < 64 * 1024,
        "the server grew from {before} KiB to {after} KiB while a client slept"
    );
    let stats = server.get_ok("/events?limit=1&order=desc").await;
    assert_eq!(stats["events"][0]["payload"]["tool_use_id"], "t11999");
    drop(sleeper);
}
