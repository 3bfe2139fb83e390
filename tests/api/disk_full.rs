//! A full disk, for real: the server's data dir is an 8 MiB tmpfs. Ingest gets 503 with a clear
//! error, nothing stored is damaged, and ingest recovers by itself once space is freed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixtures::envelope;
use crate::helpers::{ServerProcess, binary};

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
             the server a small disk; run the tests as root, as CI does"
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

/// Posts batches from round `first` on until one is refused with 503; returns the next round.
async fn fill_until_refused(client: &reqwest::Client, base_url: &str, first: usize) -> usize {
    for round in first..first + 1000 {
        let (status, body) = post_batch(client, base_url, &batch(round * 20)).await;
        match status {
            200 => {}
            503 => return round + 1,
            other => panic!("ingest answered {other}: {body}"),
        }
    }
    panic!("the disk never filled up");
}

/// Posts a batch every 100 ms until one is stored; fails after 20 s of refusals.
async fn wait_for_ingest_to_come_back(client: &reqwest::Client, base_url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (status, body) = post_batch(client, base_url, &batch(500_000 + attempts * 20)).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            Instant::now() < deadline,
            "ingest still refused 20 s after space was freed ({attempts} attempts): {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("ingest came back after {attempts} attempts");
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
    assert!(
        !refusal["error"]
            .as_str()
            .unwrap()
            .contains("database or disk is full"),
        "SQLite's own text stays in the log: {refusal}"
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
    // Health says so while writes fail, with the reason.
    let health = server.get_ok("/api/agents/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["sqlite"]["writes"], "failing", "{health}");
    assert!(
        health["sqlite"]["reason"]
            .as_str()
            .unwrap()
            .contains("full"),
        "{health}"
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
    let health = server.get_ok("/api/agents/health").await;
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["sqlite"]["writes"], "ok");

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

/// Starting on a full disk says the disk is full (or that the file cannot be read), never that
/// the database is foreign: an operator could read that and delete a valid database.
#[tokio::test]
async fn starting_on_a_full_disk_never_calls_the_database_foreign() {
    let disk = Tmpfs::mount(8 * 1024 * 1024);
    let data_dir = disk.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let mut server = ServerProcess::start(&data_dir).await;
    let client = reqwest::Client::new();
    let events = batch(0);
    assert_eq!(post_batch(&client, &server.base_url, &events).await.0, 200);
    std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().unwrap().to_string()])
        .status()
        .unwrap();
    server.child.wait().await.unwrap();
    // Fill what is left of the disk.
    let ballast = disk.path().join("ballast");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&ballast).unwrap();
        while file.write_all(&[0u8; 64 * 1024]).is_ok() {}
        let _ = file.sync_all();
    }
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(crate::helpers::binary())
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
            .wait_with_output_or_first_line(),
    )
    .await
    .expect("it starts or stops within 20 s");
    eprintln!("starting on a full disk: {output}");
    assert!(
        !output.contains("not a hookwatch database"),
        "a valid database was called foreign: {output}"
    );
    if !output.contains("hookwatch listening") {
        assert!(
            output.contains("disk is full") || output.contains("I/O"),
            "the error says what is wrong: {output}"
        );
    }
    // Space returns: it starts, with every event still there.
    std::fs::remove_file(&ballast).unwrap();
    let server = ServerProcess::start(&data_dir).await;
    let stored = server.get_ok("/events?limit=100").await;
    assert_eq!(stored["events"].as_array().unwrap().len(), 20);
}

trait FirstLine {
    /// The process's output up to its start-up line (then it is left running), or all of it
    /// when it exits first.
    async fn wait_with_output_or_first_line(self) -> String;
}

impl FirstLine for tokio::process::Child {
    async fn wait_with_output_or_first_line(mut self) -> String {
        use tokio::io::AsyncBufReadExt;
        let stdout = self.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        if let Ok(Some(line)) = lines.next_line().await {
            let _ = self.start_kill();
            return line;
        }
        let output = self.wait_with_output().await.unwrap();
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

/// The outside run's failure, made certain: a reader holds a snapshot, so the WAL grows until
/// the disk is full and none of it can be checkpointed. Then the reader goes and a little space
/// is freed: far less than the checkpoint needs to copy the WAL into the database file. Ingest
/// must come back on that space; a checkpoint that cannot complete must not take it first.
#[tokio::test]
async fn a_checkpoint_that_cannot_complete_does_not_keep_ingest_refused() {
    let disk = Tmpfs::mount(16 * 1024 * 1024);
    let ballast: PathBuf = disk.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 2 * 1024 * 1024]).unwrap();
    let data_dir = disk.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let server = ServerProcess::start(&data_dir).await;
    let client = reqwest::Client::new();
    let (status, body) = post_batch(&client, &server.base_url, &batch(0)).await;
    assert_eq!(status, 200, "{body}");

    // A reader's snapshot pins the WAL: nothing after it can be checkpointed or started over.
    let reader = rusqlite::Connection::open(data_dir.join("hookwatch.db")).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let seen: i64 = reader
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap();
    assert_eq!(seen, 20);
    fill_until_refused(&client, &server.base_url, 1).await;
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    let wal_bytes = std::fs::metadata(data_dir.join("hookwatch.db-wal"))
        .unwrap()
        .len();
    assert!(
        wal_bytes > 8 * 1024 * 1024,
        "the WAL holds far more than the space about to be freed: {wal_bytes} bytes"
    );
    // The scenario's time: the checkpointer gets its chance at the full disk, then a little
    // space is freed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::remove_file(&ballast).unwrap();

    wait_for_ingest_to_come_back(&client, &server.base_url).await;
}

/// While the disk stays full, every refused write and every failed checkpoint would log a line:
/// the outside run saw the same warning 10 times a second. Each kind is logged at most once a
/// second, with the count of lines held back.
#[tokio::test]
async fn warnings_on_a_full_disk_are_rate_limited() {
    let disk = Tmpfs::mount(8 * 1024 * 1024);
    let data_dir = disk.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("server.log");
    let mut command = tokio::process::Command::new(binary());
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("HOOKWATCH_LOG", "info");
    let server =
        ServerProcess::spawn_logging_to(command, std::fs::File::create(&log_path).unwrap()).await;
    let client = reqwest::Client::new();
    let mut round = fill_until_refused(&client, &server.base_url, 0).await;
    // Two seconds of refused writes, as fast as one client can send them.
    let started = Instant::now();
    let mut refused = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let (status, body) = post_batch(&client, &server.base_url, &batch(round * 20)).await;
        round += 1;
        // A batch may still fit now and then (a rolled-back transaction leaves WAL room).
        match status {
            503 => refused += 1,
            200 => {}
            other => panic!("ingest answered {other}: {body}"),
        }
    }
    let seconds = started.elapsed().as_secs() + 1;
    drop(server);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let rollbacks = log.matches("write transaction rolled back").count() as u64;
    let checkpoints = log.matches("checkpoint failed").count() as u64;
    assert!(
        refused > 20,
        "the disk-full path was exercised: {refused} refusals"
    );
    assert!(rollbacks >= 1, "the refusals are logged:\n{log}");
    // One line per second per kind, plus the one that opened the first second.
    assert!(
        rollbacks <= seconds + 2 && checkpoints <= seconds + 2,
        "{rollbacks} rollback and {checkpoints} checkpoint lines for {refused} refusals in \
         {seconds} s:\n{log}"
    );
    assert!(
        log.contains("held_back"),
        "held-back lines are counted:\n{log}"
    );
}
