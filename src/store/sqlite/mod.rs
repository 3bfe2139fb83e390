//! The SQLite store: one file in WAL mode, a single group-committing writer thread, and a small
//! pool of read connections.

mod checkpointer;
pub(crate) mod ledger;
pub mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

pub use schema::Durability;

use crate::domain::pricing::PriceTable;
use crate::store::write_queue::{self, WriteJob};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub durability: Durability,
    /// Write jobs that may wait for the writer; senders wait when it is full.
    pub queue_capacity: usize,
    pub readers: usize,
    /// The longest one read may run before it is interrupted.
    pub read_timeout: Duration,
}

pub struct SqliteStore {
    /// `None` once closed: dropping the last sender lets the writer drain and stop.
    jobs: Mutex<Option<mpsc::Sender<WriteJob>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<checkpointer::Checkpointer>,
    readers: ReadPool,
    path: PathBuf,
    store_id: String,
    /// The database's committed size, pages times page size (the writer sets it).
    logical_bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl SqliteStore {
    pub fn open(options: &SqliteOptions, prices: Arc<PriceTable>) -> Result<Self, StoreError> {
        let conn = schema::open_writer(&options.path, options.durability)?;
        let store_id = schema::store_id(&conn)?;
        let readers = ReadPool::open(&options.path, options.readers.max(1), options.read_timeout)?;
        let disk_full = checkpointer::DiskFull::default();
        let checkpointer = checkpointer::Checkpointer::start(&options.path, disk_full.clone())?;
        let (sender, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let logical_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let written = Arc::clone(&logical_bytes);
        let writer_thread = std::thread::Builder::new()
            .name("hookwatch-writer".into())
            .spawn(move || writer::run(conn, receiver, prices, written, disk_full))
            .map_err(|e| StoreError::Internal(format!("could not start the writer: {e}")))?;
        Ok(Self {
            jobs: Mutex::new(Some(sender)),
            writer_thread: Mutex::new(Some(writer_thread)),
            checkpointer: Mutex::new(checkpointer),
            readers,
            path: options.path.clone(),
            store_id,
            logical_bytes,
        })
    }
}

impl crate::store::Writer for SqliteStore {
    fn write_jobs(&self) -> &write_queue::WriteJobs {
        &self.jobs
    }
}

crate::store::reads::impl_reader!(SqliteStore, Connection);

type ReadJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// A fixed set of reader threads, each owning one connection. Dedicated threads (rather than
/// tokio's blocking pool, which grows to hundreds of threads under load) keep the number of
/// connections, SQLite page caches and malloc arenas fixed, so memory stays bounded.
struct ReadPool {
    jobs: mpsc::Sender<ReadJob>,
}

/// Reads that may wait for a reader thread before callers wait to enqueue.
const READ_QUEUE: usize = 1024;

/// SQLite VM steps between two checks of a read's deadline.
const PROGRESS_STEPS: i32 = 10_000;

impl ReadPool {
    fn open(path: &Path, size: usize, timeout: Duration) -> Result<Self, StoreError> {
        let (jobs, receiver) = mpsc::channel::<ReadJob>(READ_QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..size {
            let mut conn = schema::open_reader(path)?;
            // Every read gets a deadline: SQLite calls the handler every few thousand VM steps
            // and stops the statement once the deadline has passed, so a text search over a
            // huge store cannot hold a reader (and its CPU) for long.
            let deadline = Arc::new(Mutex::new(Instant::now()));
            let watched = Arc::clone(&deadline);
            conn.progress_handler(
                PROGRESS_STEPS,
                Some(move || Instant::now() > *watched.lock().expect("deadline lock")),
            );
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("hookwatch-read-{n}"))
                .spawn(move || {
                    loop {
                        // Only the thread holding the lock waits on the queue; the others wait
                        // for the lock. Each job runs after the lock is released.
                        let job = receiver.lock().expect("read queue lock").blocking_recv();
                        match job {
                            Some(job) => {
                                *deadline.lock().expect("deadline lock") = Instant::now() + timeout;
                                job(&mut conn);
                            }
                            None => return,
                        }
                    }
                })
                .map_err(|e| StoreError::Internal(format!("could not start a reader: {e}")))?;
        }
        Ok(Self { jobs })
    }

    async fn run<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = reply.send(query(conn).map_err(read_error));
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

fn read_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::OperationInterrupted) => StoreError::ReadTimeout,
        _ => writer::classify(e),
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn store_id(&self) -> &str {
        &self.store_id
    }

    fn size_bytes(&self) -> u64 {
        let size = |suffix: &str| {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            std::fs::metadata(path).map_or(0, |m| m.len())
        };
        size("") + size("-wal")
    }

    /// The file as it is, or as the next checkpoint makes it, whichever is larger.
    fn file_bytes(&self) -> u64 {
        let on_disk = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        on_disk.max(
            self.logical_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn close(&self) {
        self.jobs.lock().expect("writer sender lock").take();
        let handle = self
            .writer_thread
            .lock()
            .expect("writer thread lock")
            .take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        self.checkpointer.lock().expect("checkpointer lock").stop();
    }
}

// SQLite's rows for the shared row mapping ([`crate::store::rows`]).
crate::store::rows::impl_stored_row!(rusqlite::Row<'_>, rusqlite::Error, get);

impl rusqlite::ToSql for crate::store::sql::Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use crate::store::sql::Value;
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match *self {
            Value::Int(n) | Value::OptInt(Some(n)) => ToSqlOutput::Owned(n.into()),
            Value::Text(text) | Value::OptText(Some(text)) => {
                ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes()))
            }
            Value::OptInt(None) | Value::OptText(None) => {
                ToSqlOutput::Owned(rusqlite::types::Value::Null)
            }
        })
    }
}

/// A reader's connection, for the shared reads (`store::reads`).
impl crate::store::sql::Sql for Connection {
    type Error = rusqlite::Error;
    type Row<'r> = rusqlite::Row<'r>;

    fn dialect(&self) -> crate::store::sql::Dialect {
        crate::store::sql::Dialect::Sqlite
    }

    fn query<T>(
        &mut self,
        sql: &str,
        params: &[crate::store::sql::Value<'_>],
        mut map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Vec<T>> {
        self.prepare_cached(sql)?
            .query_map(rusqlite::params_from_iter(params), |row| map(row))?
            .collect()
    }
}
