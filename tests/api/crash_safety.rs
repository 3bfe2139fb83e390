//! Acknowledged events survive `kill -9`, and derived state agrees with the events after a
//! restart. Runs the real binary as a separate process.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::fixtures;
use crate::helpers::{ServerProcess, all_events};

const WRITERS: usize = 8;

fn event_for(writer: usize, n: usize) -> Value {
    let session = format!("crash-{writer}");
    let at = n as i64 * 10;
    let (kind, extra) = match n % 4 {
        0 => (
            "PreToolUse",
            fixtures::pre_tool("Read", &format!("t-{writer}-{n}"), json!({})),
        ),
        1 => (
            "SubagentStart",
            json!({"agent_id": format!("ag-{writer}-{n}"), "agent_type": "Explore"}),
        ),
        2 => (
            "SubagentStop",
            json!({"agent_id": format!("ag-{writer}-{}", n - 1), "agent_type": "Explore"}),
        ),
        _ => ("UserPromptSubmit", json!({"prompt": "go"})),
    };
    let mut event = fixtures::envelope("crash", &session, kind, at, extra);
    event["event_id"] = json!(format!("e-{writer}-{n}"));
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_a_server_kill() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data_dir.path()).await;
    let client = reqwest::Client::new();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (client, url, acked) = (client.clone(), server.base_url.clone(), Arc::clone(&acked));
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let event = event_for(writer, n);
                match client
                    .post(format!("{url}/events"))
                    .json(&event)
                    .send()
                    .await
                {
                    Ok(response) if response.status().is_success() => {
                        acked.lock().await.insert(format!("e-{writer}-{n}"));
                    }
                    _ => return,
                }
            }
        }));
    }
    // Let ingest run until a good number of events are acknowledged, then kill mid-flight.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while acked.lock().await.len() < 2_000 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.kill_hard().await;
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().await.clone();
    assert!(
        acked.len() >= 2_000,
        "only {} events acknowledged",
        acked.len()
    );

    let server = ServerProcess::start(data_dir.path()).await;
    let stored = all_events(&client, &server.base_url).await;
    let stored_ids: HashSet<String> = stored
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    let lost: Vec<_> = acked.difference(&stored_ids).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    assert_eq!(stored_ids.len(), stored.len(), "no event stored twice");

    // The aggregates agree with what is stored.
    let count = |kind: &str| {
        stored
            .iter()
            .filter(|e| e["hook_event_type"] == kind)
            .count() as i64
    };
    let range = format!(
        "start={}&end={}",
        crate::helpers::T0 - 86_400_000,
        crate::helpers::T0 + 86_400_000
    );
    let usage = server
        .get_ok(&format!("/api/agents/tools/usage?{range}"))
        .await;
    assert_eq!(usage["total_calls"], count("PreToolUse"));
    let metrics = server
        .get_ok(&format!("/api/agents/metrics/current?{range}"))
        .await;
    assert_eq!(metrics["executions_today"], count("SubagentStop"));
    let sessions = server.get_ok("/api/sessions?limit=1000").await;
    let session_events: i64 = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["event_count"].as_i64().unwrap())
        .sum();
    assert_eq!(session_events, stored.len() as i64);
    server.kill_hard().await;
}

#[tokio::test]
async fn sigterm_stops_gracefully_and_port_zero_shows_the_real_port() {
    let data_dir = tempfile::tempdir().unwrap();
    // The data dir and address come from the environment here, as HOOKWATCH_* variables.
    let mut command = tokio::process::Command::new(crate::helpers::binary());
    command
        .arg("serve")
        .env("HOOKWATCH_ADDR", "127.0.0.1:0")
        .env("HOOKWATCH_DATA_DIR", data_dir.path());
    let mut server = ServerProcess::spawn(command).await;
    assert!(server.base_url.starts_with("http://127.0.0.1:"));
    server
        .send_event(&fixtures::envelope("a", "s", "Stop", 0, json!({})))
        .await;

    let pid = server.child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), server.child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");

    let restarted = ServerProcess::start(data_dir.path()).await;
    let stored = all_events(&reqwest::Client::new(), &restarted.base_url).await;
    assert_eq!(
        stored.len(),
        1,
        "the acknowledged event is there after the restart"
    );
    restarted.kill_hard().await;
}

#[tokio::test]
async fn a_graceful_restart_keeps_every_event_and_aggregate() {
    let app = crate::helpers::TestApp::spawn().await;
    for event in fixtures::main_session() {
        app.send_event(&event).await;
    }
    app.clock.set(crate::helpers::T0 + 600_000);
    let before = app.get_ok("/api/agents/metrics/current").await;
    let app = app.restart().await;
    let after = app.get_ok("/api/agents/metrics/current").await;
    assert_eq!(after["executions_today"], 3);
    assert_eq!(before, after);
    assert_eq!(all_events(&app.client, &app.base_url).await.len(), 26);
}

#[tokio::test]
async fn a_foreign_database_file_is_refused_and_left_untouched() {
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path().join(hookwatch::config::DATABASE_FILE);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let mut config = hookwatch::config::Config::new(data_dir.path().to_path_buf());
    config.addr = "127.0.0.1:0".parse().unwrap();
    let error = match hookwatch::startup::Application::build(config).await {
        Ok(_) => panic!("a foreign database was opened"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("not a hookwatch database"), "{error}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file was changed"
    );
}

#[tokio::test]
async fn a_corrupt_database_file_is_refused_with_a_clear_error_and_left_untouched() {
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path().join(hookwatch::config::DATABASE_FILE);
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    let mut config = hookwatch::config::Config::new(data_dir.path().to_path_buf());
    config.addr = "127.0.0.1:0".parse().unwrap();
    let error = match hookwatch::startup::Application::build(config).await {
        Ok(_) => panic!("a corrupt database was opened"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("not a database"), "{error}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file was changed"
    );
}
