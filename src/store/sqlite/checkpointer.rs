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

pub struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = schema::open_checkpointer(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("hookwatch-checkpoint".into())
            .spawn(move || run(&conn, &flag))
            .map_err(|e| StoreError::Database(format!("could not start the checkpointer: {e}")))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread after a last checkpoint.
    pub fn stop(&mut self) {
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

fn run(conn: &Connection, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let pass = checkpoint_once(conn, "PASSIVE");
        // Behind the writer: go again soon, so that when the writer's own checkpoint comes
        // (at `wal_autocheckpoint`) almost nothing is left for it to copy.
        let pause = if pass.copied_all() {
            IDLE_INTERVAL
        } else {
            BUSY_INTERVAL
        };
        std::thread::park_timeout(pause);
    }
    checkpoint_once(conn, "TRUNCATE");
}

/// What one checkpoint saw: frames in the WAL, and frames copied into the database so far.
struct Pass {
    wal_frames: i64,
    copied_frames: i64,
}

impl Pass {
    fn copied_all(&self) -> bool {
        self.copied_frames >= self.wal_frames
    }
}

/// One checkpoint.
fn checkpoint_once(conn: &Connection, mode: &str) -> Pass {
    let result = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok(Pass {
            wal_frames: row.get(1)?,
            copied_frames: row.get(2)?,
        })
    });
    result.unwrap_or_else(|e| {
        tracing::warn!(error = %e, mode, "checkpoint failed");
        Pass {
            wal_frames: 0,
            copied_frames: 0,
        }
    })
}
