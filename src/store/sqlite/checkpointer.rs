//! WAL checkpoints, mostly off the writer's thread.
//!
//! A checkpoint copies the newest version of each page in the WAL into the database file and
//! fsyncs it. Left to SQLite's automatic checkpoints, the committing writer does all of that
//! copying itself, stalling ingest for tens of milliseconds. This thread runs PASSIVE
//! checkpoints every [`INTERVAL`]; they never take the write lock, so most pages are copied
//! while the writer keeps committing.
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

/// How often a checkpoint runs.
const INTERVAL: Duration = Duration::from_millis(100);

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
        std::thread::park_timeout(INTERVAL);
        checkpoint_once(conn, "PASSIVE");
    }
    checkpoint_once(conn, "TRUNCATE");
}

/// One checkpoint; returns the number of frames the WAL held.
fn checkpoint_once(conn: &Connection, mode: &str) -> i64 {
    let result = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        row.get::<_, i64>(1)
    });
    match result {
        Ok(frames) => frames,
        Err(e) => {
            tracing::warn!(error = %e, mode, "checkpoint failed");
            0
        }
    }
}
