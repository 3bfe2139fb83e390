//! WAL checkpoints, mostly off the writer's thread.
//!
//! A checkpoint copies the newest version of each page in the WAL into the database file and
//! fsyncs it. Left to SQLite's automatic checkpoints, the committing writer does all of that
//! copying itself, stalling ingest for tens of milliseconds. This thread runs PASSIVE
//! checkpoints, back to back while the writer keeps writing ([`BUSY_INTERVAL`] apart) and every
//! [`IDLE_INTERVAL`] otherwise; they never take the write lock, so pages are copied while the
//! writer keeps committing.
//!
//! Passive checkpoints alone cannot bound the WAL: under sustained ingest one never finds the
//! WAL quiet, so the writer never gets to start it over (the benchmark grew it to 2 GB in 15 s).
//! So the writer keeps SQLite's automatic checkpoint at a high threshold
//! (`wal_autocheckpoint`, see `schema.rs`): run between two of its own transactions it always
//! completes, and because this thread has already copied most frames, it is short. After it,
//! the next transaction starts the WAL over and `journal_size_limit` trims the file.
//!
//! On a full disk the checkpoint and ingest compete for the same freed bytes. A checkpoint
//! grows the database file by every WAL page not yet in it, and until it completes the WAL
//! cannot start over, so one that cannot complete spends the space and leaves ingest refused.
//! So ingest comes first: while the writer's last transaction failed for want of space
//! ([`DiskFull`]), this thread does not checkpoint, and after a checkpoint of its own failed for
//! that reason it waits [`FULL_INTERVAL`] before the next. Its warnings are rate-limited.
//!
//! Under `--max-db-size` the WAL is part of what the limit bounds, and SQLite's own bound is
//! loose: the writer's checkpoint starts only once the WAL has passed its share, a commit group
//! in flight adds to it, and it starts over only when the next transaction finds every reader
//! off it, so a flood carried it to three times its share. So while the WAL file is past its
//! share ([`WalBound`]) this thread runs `TRUNCATE` checkpoints, which wait for the readers
//! and cut the file to nothing. Ingest's admission (`MetricsService::over_size_limit`) counts what
//! the WAL holds beyond twice its share; that excess is exactly what these checkpoints remove,
//! and they need no write to run, so a refused ingest cannot keep the WAL from shrinking.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::schema;
use crate::store::StoreError;

/// How long the thread rests after a checkpoint that copied the whole WAL.
const IDLE_INTERVAL: Duration = Duration::from_millis(100);

/// How long it rests after one that could not (the writer kept writing).
const BUSY_INTERVAL: Duration = Duration::from_millis(5);

/// How long it rests after one that failed on a full disk, or while the writer's writes do.
const FULL_INTERVAL: Duration = Duration::from_secs(1);

/// The WAL size past which the checkpointer truncates the WAL (under `--max-db-size`), and
/// the WAL file it measures.
#[derive(Clone, Debug)]
pub(super) struct WalBound {
    pub(super) wal_path: std::path::PathBuf,
    pub(super) truncate_past_bytes: u64,
}

impl WalBound {
    fn is_passed(&self) -> bool {
        std::fs::metadata(&self.wal_path).is_ok_and(|m| m.len() > self.truncate_past_bytes)
    }
}

/// Set while the writer's last transaction failed because the disk is full (or the file cannot
/// be written): shared by the writer, which sets and clears it, and this thread, which yields.
#[derive(Clone, Default)]
pub(super) struct DiskFull(Arc<AtomicBool>);

impl DiskFull {
    pub(super) fn set(&self, full: bool) {
        self.0.store(full, Ordering::Relaxed);
    }

    pub(super) fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pub(super) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn start(
        path: &Path,
        disk_full: DiskFull,
        wal_bound: Option<WalBound>,
    ) -> Result<Self, StoreError> {
        let conn = schema::open_checkpointer(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("hookwatch-checkpoint".into())
            .spawn(move || run(&conn, &flag, &disk_full, wal_bound.as_ref()))
            .map_err(|e| StoreError::Internal(format!("could not start the checkpointer: {e}")))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread after a last checkpoint.
    pub(super) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(conn: &Connection, stop: &AtomicBool, disk_full: &DiskFull, wal_bound: Option<&WalBound>) {
    while !stop.load(Ordering::SeqCst) {
        if disk_full.is_set() {
            // Freed space goes to ingest first; see the module docs.
            std::thread::park_timeout(FULL_INTERVAL);
            continue;
        }
        // Past its share under a size limit, the WAL is cut back (module docs).
        let mode = if wal_bound.is_some_and(WalBound::is_passed) {
            "TRUNCATE"
        } else {
            "PASSIVE"
        };
        let pause = match checkpoint_once(conn, mode) {
            // A WAL past its share is being written fast: look again soon.
            Pass::CopiedAll if mode == "TRUNCATE" => BUSY_INTERVAL,
            Pass::CopiedAll => IDLE_INTERVAL,
            // Behind the writer: go again soon, so that when the writer's own checkpoint comes
            // (at `wal_autocheckpoint`) almost nothing is left for it to copy.
            Pass::Behind => BUSY_INTERVAL,
            Pass::Failed { disk_full: true } => FULL_INTERVAL,
            Pass::Failed { disk_full: false } => IDLE_INTERVAL,
        };
        std::thread::park_timeout(pause);
    }
    checkpoint_once(conn, "TRUNCATE");
}

/// What one checkpoint did.
enum Pass {
    /// Every frame in the WAL is in the database file.
    CopiedAll,
    /// Some frames are not: the writer kept writing, or a reader holds an older snapshot.
    Behind,
    Failed {
        disk_full: bool,
    },
}

/// One checkpoint.
fn checkpoint_once(conn: &Connection, mode: &str) -> Pass {
    let result = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        let wal_frames: i64 = row.get(1)?;
        let copied_frames: i64 = row.get(2)?;
        Ok(if copied_frames >= wal_frames {
            Pass::CopiedAll
        } else {
            Pass::Behind
        })
    });
    result.unwrap_or_else(|e| {
        static FAILURES: crate::telemetry::LogLimiter = crate::telemetry::LogLimiter::new();
        if let Some(held_back) = FAILURES.allow() {
            tracing::warn!(error = %e, mode, held_back, "checkpoint failed");
        }
        Pass::Failed {
            disk_full: e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
        }
    })
}
