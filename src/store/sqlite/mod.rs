//! The SQLite store: one file in WAL mode, a single group-committing writer thread, and a small
//! pool of read connections.

mod checkpointer;
pub(crate) mod ledger;
pub(crate) mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::Connection;

pub use schema::Durability;

use crate::domain::pricing::PriceTable;
use crate::store::read_pool::{ReadPool, ReaderConnection};
use crate::store::write_queue::WriteQueue;
use crate::store::{DatabaseStore, Store, StoreError};

#[derive(Debug, Clone)]
pub(crate) struct SqliteOptions {
    pub path: PathBuf,
    pub durability: Durability,
    /// Write jobs that may wait for the writer; senders wait when it is full.
    pub queue_capacity: usize,
    pub readers: usize,
    /// The longest one read may run before it is interrupted.
    pub read_timeout: Duration,
    /// How large the WAL may grow before a checkpoint starts it over and truncates it
    /// (`Retention::wal_bytes`).
    pub wal_bytes: u64,
    /// Whether `--max-db-size` bounds the files, the WAL with them: then the checkpointer cuts
    /// a WAL past `wal_bytes` back (`checkpointer.rs`).
    pub size_limited: bool,
}

/// The write-ahead log beside the database at `path`.
fn wal_path(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// The SQLite store: one writer thread (SQLite commits one transaction at a time).
pub(crate) type SqliteStore = DatabaseStore<SqliteReader, SqliteFile>;

/// What only the SQLite store has: its file and the thread that checkpoints it.
pub(crate) struct SqliteFile {
    checkpointer: Mutex<checkpointer::Checkpointer>,
    path: PathBuf,
    /// The write-ahead log beside it.
    wal_path: PathBuf,
    /// The database's committed size, pages times page size (the writer sets it).
    logical_bytes: Arc<std::sync::atomic::AtomicU64>,
    /// Write groups committed (the writer counts them): `Store::local_commits`.
    commits: Arc<std::sync::atomic::AtomicU64>,
}

impl SqliteStore {
    pub(crate) fn open(
        options: &SqliteOptions,
        prices: Arc<PriceTable>,
    ) -> Result<Self, StoreError> {
        let conn = schema::open_writer(&options.path, options.durability, options.wal_bytes)?;
        let store_id = schema::store_id(&conn)?;
        let readers = {
            let (path, timeout) = (options.path.clone(), options.read_timeout);
            ReadPool::open("hookwatch-read", options.readers, move || {
                SqliteReader::open(&path, timeout)
            })?
        };
        let disk_full = checkpointer::DiskFull::default();
        let wal_path = wal_path(&options.path);
        let wal_bound = options.size_limited.then(|| checkpointer::WalBound {
            wal_path: wal_path.clone(),
            truncate_past_bytes: options.wal_bytes,
        });
        let checkpointer =
            checkpointer::Checkpointer::start(&options.path, disk_full.clone(), wal_bound)?;
        let (writes, receiver) = WriteQueue::new(options.queue_capacity);
        let logical_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let written = Arc::clone(&logical_bytes);
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&commits);
        writes.spawn_writer("hookwatch-writer".into(), move || {
            writer::run(conn, receiver, prices, written, counted, disk_full)
        })?;
        Ok(Self {
            readers,
            writes,
            store_id,
            own: SqliteFile {
                checkpointer: Mutex::new(checkpointer),
                path: options.path.clone(),
                wal_path,
                logical_bytes,
                commits,
            },
        })
    }
}

/// A reader thread's connection and the deadline its progress handler watches.
pub(crate) struct SqliteReader {
    conn: Connection,
    deadline: Arc<Mutex<Instant>>,
    timeout: Duration,
}

/// SQLite VM steps between two checks of a read's deadline.
const PROGRESS_STEPS: i32 = 10_000;

impl SqliteReader {
    fn open(path: &Path, timeout: Duration) -> Result<Self, StoreError> {
        let conn = schema::open_reader(path)?;
        // Every read gets a deadline: SQLite calls the handler every few thousand VM steps
        // and stops the statement once the deadline has passed, so a text search over a huge
        // store cannot hold a reader (and its CPU) for long.
        let deadline = Arc::new(Mutex::new(Instant::now()));
        let watched = Arc::clone(&deadline);
        conn.progress_handler(
            PROGRESS_STEPS,
            Some(move || Instant::now() > *watched.lock().expect("deadline lock")),
        );
        Ok(Self {
            conn,
            deadline,
            timeout,
        })
    }
}

impl ReaderConnection for SqliteReader {
    type Conn = Connection;

    fn begin_read(&mut self) -> &mut Connection {
        *self.deadline.lock().expect("deadline lock") = Instant::now() + self.timeout;
        &mut self.conn
    }

    fn store_error(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::OperationInterrupted) => StoreError::ReadTimeout,
            _ => writer::classify(e),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn store_id(&self) -> &str {
        &self.store_id
    }

    fn size_bytes(&self) -> u64 {
        std::fs::metadata(&self.own.path).map_or(0, |m| m.len()) + self.wal_file_bytes()
    }

    /// The file as it is, or as the next checkpoint makes it, whichever is larger.
    fn file_bytes(&self) -> u64 {
        let on_disk = std::fs::metadata(&self.own.path).map_or(0, |m| m.len());
        on_disk.max(
            self.own
                .logical_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    fn wal_file_bytes(&self) -> u64 {
        std::fs::metadata(&self.own.wal_path).map_or(0, |m| m.len())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn local_commits(&self) -> Option<Arc<std::sync::atomic::AtomicU64>> {
        Some(Arc::clone(&self.own.commits))
    }

    async fn close(&self) {
        self.writes.close().await;
        self.own
            .checkpointer
            .lock()
            .expect("checkpointer lock")
            .stop();
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

    const DIALECT: crate::store::sql::Dialect = crate::store::sql::Dialect::Sqlite;

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
