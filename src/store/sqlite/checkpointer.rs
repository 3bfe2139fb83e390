//! WAL checkpoints, off the writer's thread.
//!
//! With SQLite's automatic checkpoints, every thousandth page written makes the committing
//! writer copy the WAL into the database and fsync it: a stall of tens of milliseconds in the
//! middle of ingest. The writer's connection turns them off; this thread runs PASSIVE
//! checkpoints instead, which never take the write lock, so the writer keeps committing while
//! pages are copied. After a complete checkpoint the writer starts the WAL over, and
//! `journal_size_limit` truncates the file, so the WAL stays bounded.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::schema;
use crate::store::StoreError;

/// How often a checkpoint runs.
const INTERVAL: Duration = Duration::from_millis(200);

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

/// One checkpoint; returns the WAL frames left uncopied.
pub fn checkpoint_once(conn: &Connection, mode: &str) -> i64 {
    let result = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    });
    match result {
        Ok((log, copied)) => (log - copied).max(0),
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint failed");
            0
        }
    }
}
