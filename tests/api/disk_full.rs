//! A full disk, for real: the server's data dir is an 8 MiB tmpfs. Ingest gets 503 with a clear
//! error, nothing stored is damaged, and ingest recovers by itself once space is freed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixtures::envelope;
use crate::helpers::ServerProcess;

/// A small tmpfs, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "could not mount a tmpfs: the disk-full test needs root (or CAP_SYS_ADMIN) to give \
             the server a small disk; run the tests as root, as .ci/run does"
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// 20 events of ~8 KB each.
fn batch(first: usize) -> Vec<Value> {
    let filler = "d".repeat(8_000);
    (first..first + 20)
        .map(|n| {
            let mut event = envelope(
                "proj-disk",
                "S-disk",
                "PostToolUse",
                n as i64,
                json!({"tool_name": "Read", "tool_use_id": format!("t{n}"), "tool_response": filler}),
            );
            event["event_id"] = json!(format!("00000000-0000-4000-8000-{n:012}"));
            event
        })
        .collect()
}

async fn post_batch(client: &reqwest::Client, base_url: &str, events: &[Value]) -> (u16, Value) {
    let response = client
        .post(format!("{base_url}/events/batch"))
        .json(events)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_full_disk_answers_503_corrupts_nothing_and_recovers_when_space_returns() {
    let disk = Tmpfs::mount(8 * 1024 * 1024);
    let ballast: PathBuf = disk.path().join("ballast");
    // Room to free later: enough for the WAL to be checkpointed into the file and restarted.
    std::fs::write(&ballast, vec![0u8; 4 * 1024 * 1024]).unwrap();
    let data_dir = disk.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let mut server = ServerProcess::start(&data_dir).await;
    let client = reqwest::Client::new();

    // Fill the disk: every batch is either stored whole (200) or refused (503).
    let mut acknowledged: Vec<String> = Vec::new();
    let mut refusal = None;
    for round in 0..200 {
        let events = batch(round * 20);
        let (status, body) = post_batch(&client, &server.base_url, &events).await;
        match status {
            200 => {
                assert_eq!(body["accepted"], 20, "{body}");
                acknowledged.extend(
                    events
                        .iter()
                        .map(|e| e["event_id"].as_str().unwrap().to_owned()),
                );
            }
            503 => {
                refusal = Some(body);
                break;
            }
            other => panic!("ingest answered {other}: {body}"),
        }
    }
    let refusal = refusal.expect("the 8 MiB disk filled up");
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .starts_with("the disk is full"),
        "the error says what is wrong: {refusal}"
    );
    assert!(!acknowledged.is_empty());
    eprintln!("refused with {refusal} after {} events", acknowledged.len());
    // Reads still work while writes cannot.
    let health = client
        .get(format!("{}/healthz", server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains("hookwatch_requests_rejected_total{reason=\"unwritable\"} 1"),
        "refusals are counted by reason: {metrics}"
    );

    // Space returns: ingest recovers by itself, with no restart.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let recovered = loop {
        let events = batch(100_000 + acknowledged.len());
        let (status, body) = post_batch(&client, &server.base_url, &events).await;
        if status == 200 {
            acknowledged.extend(
                events
                    .iter()
                    .map(|e| e["event_id"].as_str().unwrap().to_owned()),
            );
            break true;
        }
        assert_eq!(status, 503, "{body}");
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(recovered, "ingest recovered once space was freed");

    // Stop it, then check the file: intact, and holding every acknowledged event.
    std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().unwrap().to_string()])
        .status()
        .unwrap();
    server.child.wait().await.unwrap();
    let conn = rusqlite::Connection::open(data_dir.join("hookwatch.db")).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let mut stored = conn
        .prepare("SELECT count(*) FROM events WHERE event_id = ?1")
        .unwrap();
    for id in &acknowledged {
        let count: i64 = stored.query_row([id], |row| row.get(0)).unwrap();
        assert_eq!(count, 1, "acknowledged event {id} is stored");
    }
}
