//! The VFS under real SQLite: commits, spills and rewrites, then faults in the middle of its
//! work. Each ends with `PRAGMA integrity_check` and a count of the acknowledged rows, read
//! through SQLite's own VFS (so from the file). The faults:
//! - a database opened with `psow=0`, whose WAL is passed straight through;
//! - a disk that fills in the middle of a flush;
//! - a writer process killed while it is writing a flush out.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, ErrorCode, OpenFlags};

fn open_buffered(uri: &str, synchronous: &str) -> Connection {
    sqlite_wal_buffer::register().expect("register");
    let flags = OpenFlags::default() | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags_and_vfs(uri, flags, sqlite_wal_buffer::VFS_NAME)
        .expect("open through the VFS");
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .expect("WAL");
    assert_eq!(mode, "wal");
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous};
         CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"
    ))
    .expect("set up");
    conn
}

/// `(rows, integrity_check)` read from the file by a new connection on SQLite's own VFS.
fn count_and_check(path: &Path) -> (i64, String) {
    read_count_and_check(&Connection::open(path).expect("open with the default VFS"))
}

/// `(rows, integrity_check)` as `reader` (on SQLite's own VFS) sees them.
fn read_count_and_check(reader: &Connection) -> (i64, String) {
    reader.query_row(
        "SELECT (SELECT count(*) FROM t), (SELECT group_concat(integrity_check, '; ') FROM pragma_integrity_check)",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .expect("count and check")
}

fn commit_rows(conn: &Connection, rows: usize, bytes_each: usize) -> rusqlite::Result<()> {
    let body = "x".repeat(bytes_each);
    conn.execute_batch("BEGIN IMMEDIATE")?;
    for _ in 0..rows {
        if let Err(e) = conn.execute("INSERT INTO t (body) VALUES (?1)", [&body]) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    conn.execute_batch("COMMIT").inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })
}

/// Commits through the buffer, each read at once by a connection on the default VFS (so
/// from the file), then the file reopened and checked; with both sync settings, because with
/// NORMAL nothing but the commit frame flushes the buffer before the commit is published.
#[test]
fn every_commit_is_in_the_file_before_other_connections_can_see_it() {
    for synchronous in ["FULL", "NORMAL"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("test.db");
        let writer = open_buffered(&path.display().to_string(), synchronous);
        writer
            .execute_batch("PRAGMA wal_autocheckpoint = 50")
            .expect("checkpoints among the commits");
        let reader = Connection::open(&path).expect("plain reader");
        let body = "x".repeat(700);
        for round in 0..40 {
            writer.execute_batch("BEGIN IMMEDIATE").expect("begin");
            for _ in 0..25 {
                writer
                    .execute("INSERT INTO t (body) VALUES (?1)", [&body])
                    .expect("insert");
            }
            writer.execute_batch("COMMIT").expect("commit");
            assert_eq!(
                read_count_and_check(&reader),
                ((round + 1) * 25, "ok".to_owned()),
                "{synchronous}: commit {round} is whole in the file"
            );
        }
        drop((reader, writer));
        assert_eq!(count_and_check(&path), (1000, "ok".to_owned()));
    }
}

/// A transaction larger than the page cache spills frames before its commit, and SQLite
/// rewrites frames of the open transaction in place and reads them back: writes that do
/// not continue the buffer, and reads of bytes that were buffered.
#[test]
fn spilled_and_rewritten_frames_of_one_transaction_commit_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("test.db");
    let writer = open_buffered(&path.display().to_string(), "FULL");
    writer
        .execute_batch(
            "PRAGMA cache_size = 10;
             BEGIN;",
        )
        .expect("setup");
    for n in 0..3_000 {
        writer
            .execute("INSERT INTO t (body) VALUES (?1)", [format!("{n:0>300}")])
            .expect("insert");
        if n % 7 == 0 {
            writer
                .execute(
                    "UPDATE t SET body = body || 'y' WHERE id % 13 = ?1",
                    [n % 13],
                )
                .expect("update");
        }
    }
    writer.execute_batch("COMMIT").expect("commit");
    assert_eq!(count_and_check(&path), (3000, "ok".to_owned()));
}

/// Without `POWERSAFE_OVERWRITE` SQLite pads each commit to a sector boundary and writes after
/// a sync; the VFS must not buffer that file at all. Each commit is read from the file at once.
#[test]
fn a_wal_without_powersafe_overwrite_is_passed_through_and_every_commit_reads_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("psow0.db");
    let before = sqlite_wal_buffer::wal_file_counts();
    let writer = open_buffered(&format!("file:{}?psow=0", path.display()), "FULL");
    let after = sqlite_wal_buffer::wal_file_counts();
    assert_eq!(
        after.passed_through,
        before.passed_through + 1,
        "the psow=0 WAL is passed through ({before:?} → {after:?})"
    );
    for round in 1..=60 {
        // Sizes that end commits at every offset within a sector, padding frames and all.
        commit_rows(&writer, round % 7 + 1, 300 + 97 * round).expect("commit");
        let rows = (1..=round).map(|r| r % 7 + 1).sum::<usize>() as i64;
        assert_eq!(
            count_and_check(&path),
            (rows, "ok".to_owned()),
            "commit {round} is whole in the file"
        );
    }
    drop(writer);
    let (rows, check) = count_and_check(&path);
    assert_eq!(check, "ok");
    assert_eq!(rows, (1..=60).map(|r| r % 7 + 1).sum::<usize>() as i64);

    // The default (psow on) is buffered.
    let before = sqlite_wal_buffer::wal_file_counts();
    let _buffered = open_buffered(&dir.path().join("psow1.db").display().to_string(), "FULL");
    assert_eq!(
        sqlite_wal_buffer::wal_file_counts().buffered,
        before.buffered + 1
    );
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "could not mount a tmpfs: the full-disk test needs root (or CAP_SYS_ADMIN) for a \
             small disk of its own; run the tests as root, as CI does"
        );
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The disk fills while a commit's frames are being written out: that commit fails with
/// SQLITE_FULL and leaves nothing behind; every acknowledged commit stays, and once there is
/// room the same connection commits again.
#[test]
fn a_disk_that_fills_in_the_middle_of_a_flush_loses_only_the_failed_commit() {
    let disk = Tmpfs::mount(3 * 1024 * 1024);
    let path = disk.0.path().join("full.db");
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let ballast = disk.0.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 512 * 1024]).unwrap();
    let writer = open_buffered(&path.display().to_string(), "FULL");
    // No checkpoints: the WAL only grows, so the write that fails is the WAL's.
    writer
        .execute_batch("PRAGMA wal_autocheckpoint = 0")
        .unwrap();
    let (rows_per_commit, bytes_each) = (150, 1_000);
    let mut acknowledged = 0i64;
    let mut wal_after_last_commit = file_len(&wal);
    let error = loop {
        match commit_rows(&writer, rows_per_commit, bytes_each) {
            Ok(()) => {
                acknowledged += rows_per_commit as i64;
                wal_after_last_commit = file_len(&wal);
            }
            Err(e) => break e,
        }
        assert!(acknowledged < 100_000, "the 3 MiB disk never filled");
    };
    assert_eq!(
        error.sqlite_error_code(),
        Some(ErrorCode::DiskFull),
        "{error}"
    );
    assert!(acknowledged > 0, "some commits fit");
    assert!(
        file_len(&wal) > wal_after_last_commit,
        "part of the failed commit's flush reached the file ({} > {wal_after_last_commit} bytes): \
         the disk filled in the middle of it",
        file_len(&wal)
    );
    assert_eq!(count_and_check(&path), (acknowledged, "ok".to_owned()));
    // Room again: the writer goes on where it was.
    std::fs::remove_file(&ballast).unwrap();
    commit_rows(&writer, rows_per_commit, bytes_each).expect("a commit once there is room");
    acknowledged += rows_per_commit as i64;
    assert_eq!(count_and_check(&path), (acknowledged, "ok".to_owned()));
    drop(writer);
    assert_eq!(count_and_check(&path), (acknowledged, "ok".to_owned()));
}

/// The writer's process, printing the rows acknowledged after each commit.
struct WriterProcess {
    child: Child,
    acknowledged: Arc<Mutex<i64>>,
    /// Reads its output until the pipe closes.
    reader: std::thread::JoinHandle<()>,
}

impl WriterProcess {
    /// Starts a writer whose files may not grow past `max_file_bytes` (`RLIMIT_FSIZE`): the
    /// write that would is the last it makes, as the kernel kills it with SIGXFSZ.
    fn start(path: &Path, rows_per_commit: usize, max_file_bytes: u64) -> Self {
        let mut child = Command::new("prlimit")
            .arg(format!("--fsize={max_file_bytes}:{max_file_bytes}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_wal-buffer-writer"))
            .arg(path)
            .arg(rows_per_commit.to_string())
            .arg("NORMAL")
            .stdout(Stdio::piped())
            .spawn()
            .expect("prlimit (util-linux) starts the writer");
        let acknowledged = Arc::new(Mutex::new(0));
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let shared = Arc::clone(&acknowledged);
        let reader = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                *shared.lock().unwrap() = line.parse().unwrap();
            }
        });
        Self {
            child,
            acknowledged,
            reader,
        }
    }

    /// Waits for it to die; returns how, and the rows it acknowledged (its last line).
    fn wait(mut self) -> (std::process::ExitStatus, i64) {
        let status = self.child.wait().unwrap();
        self.reader.join().unwrap();
        (status, *self.acknowledged.lock().unwrap())
    }
}

/// A writer process dies in the middle of a flush: the kernel kills it with SIGXFSZ (no
/// handler, so the default action, as abrupt as SIGKILL) at the write that would grow the WAL
/// past the process's file size limit, after the flush's earlier writes reached the file.
/// Five times over, each new writer recovering from the last. Every acknowledged commit is
/// there, and only whole commits are.
#[test]
fn a_writer_killed_during_a_flush_keeps_every_acknowledged_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.db");
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let rows_per_commit = 200;
    let mut acknowledged_before = 0;
    for kill in 1..=5u64 {
        // Room for a few commits (each ~220 KB of frames), the limit falling at a different
        // offset within a flush each time.
        let limit = file_len(&wal) + 900_000 + kill * 37_000;
        let (status, acknowledged) = WriterProcess::start(&path, rows_per_commit, limit).wait();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(25), // SIGXFSZ
            "kill {kill}: the writer was killed at the limit: {status}"
        );
        assert!(
            acknowledged > acknowledged_before,
            "kill {kill}: the writer committed before it was killed"
        );
        assert_eq!(
            file_len(&wal),
            limit,
            "kill {kill}: the flush was cut off at the limit, part of it in the file"
        );
        let (rows, check) = count_and_check(&path);
        assert_eq!(check, "ok", "kill {kill}");
        assert_eq!(
            rows, acknowledged,
            "kill {kill}: every acknowledged commit and nothing of the one cut off"
        );
        acknowledged_before = acknowledged;
    }
}
