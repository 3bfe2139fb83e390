//! The PostgreSQL store: the same [`Store`] as SQLite, for teams that run several hookwatch
//! instances against one database.
//!
//! The shape mirrors the SQLite store: writes go through the shared write queue to a few
//! writer threads (each with its own connection, committing in groups: see `writer.rs`); reads
//! run on a fixed pool of reader threads, each with its own connection and a
//! `statement_timeout`. The `postgres` crate is synchronous, which fits: the lifecycle rules
//! read and write through a synchronous [`crate::domain::lifecycle::Ledger`] inside a
//! transaction, and fixed threads keep the number of connections fixed.
//!
//! One more thread, the coordinator (`coordinator.rs`), keeps a connection of its own for what
//! concerns the whole fleet of instances: it `LISTEN`s for other instances' commits (the live
//! fan-out's fallback when Redis is down) and holds the advisory lock that makes one instance
//! the leader for background jobs. A session advisory lock dies with its connection, so when
//! the leader dies another instance takes over at its next try.

mod coordinator;
pub(crate) mod ledger;
pub mod schema;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use postgres::Client;
use tokio::sync::{mpsc, oneshot};

use crate::domain::pricing::PriceTable;
use crate::live::CommitNotice;
use crate::store::write_queue::{self, WriteJob};
use crate::store::{Store, StoreError};
use schema::db_error;

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub url: String,
    /// Writer threads, each with its own connection.
    pub writers: usize,
    /// Write jobs that may wait for a writer.
    pub queue_capacity: usize,
    pub readers: usize,
    /// The longest one read may run (`statement_timeout`).
    pub read_timeout: Duration,
    /// This instance's id, carried by its commit notices.
    pub instance_id: String,
}

pub struct PostgresStore {
    jobs: Mutex<Option<mpsc::Sender<WriteJob>>>,
    writer_threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    readers: ReadPool,
    coordinator: coordinator::Handle,
    size_bytes: Arc<AtomicU64>,
    store_id: String,
}

impl PostgresStore {
    /// Connects, migrates (one instance at a time) and starts the threads. Fails with a clear
    /// message when PostgreSQL cannot be reached.
    pub fn open(options: &PostgresOptions, prices: Arc<PriceTable>) -> Result<Self, StoreError> {
        let mut client = schema::connect(&options.url)?;
        schema::migrate(&mut client)?;
        let store_id = schema::store_id(&mut client)?;
        let size_bytes = Arc::new(AtomicU64::new(writer::used_bytes(&mut client).unwrap_or(0)));
        drop(client);
        let readers = ReadPool::open(&options.url, options.readers.max(1), options.read_timeout)?;
        let (sender, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let settings = Arc::new(writer::WriterSettings {
            url: options.url.clone(),
            prices,
            origin: options.instance_id.clone(),
        });
        let mut writer_threads = Vec::new();
        for n in 0..options.writers.max(1) {
            let settings = Arc::clone(&settings);
            let receiver = Arc::clone(&receiver);
            writer_threads.push(
                std::thread::Builder::new()
                    .name(format!("hookwatch-pg-writer-{n}"))
                    .spawn(move || writer::run(settings, receiver))
                    .map_err(|e| StoreError::Internal(format!("could not start a writer: {e}")))?,
            );
        }
        let coordinator = coordinator::Handle::start(options.url.clone(), Arc::clone(&size_bytes))?;
        Ok(Self {
            jobs: Mutex::new(Some(sender)),
            writer_threads: Mutex::new(writer_threads),
            readers,
            coordinator,
            size_bytes,
            store_id,
        })
    }
}

impl crate::store::Writer for PostgresStore {
    fn write_jobs(&self) -> &write_queue::WriteJobs {
        &self.jobs
    }
}

crate::store::reads::impl_reader!(PostgresStore, ReadSession);

/// A reader's connection and its prepared statements: each read statement is prepared once
/// and then runs in one round trip.
pub struct ReadSession {
    client: Client,
    statements: ledger::Statements,
}

/// A read: run on a session; `true` once it answered its caller. Given `false` (not the last
/// try) it leaves a broken connection's error unanswered, so the reader can reconnect and run
/// it once more.
type ReadJob = Box<dyn FnMut(&mut ReadSession, bool) -> bool + Send>;

/// A fixed set of reader threads, each owning one connection, reconnecting when it breaks.
struct ReadPool {
    jobs: mpsc::Sender<ReadJob>,
}

const READ_QUEUE: usize = 1024;

impl ReadPool {
    fn open(url: &str, size: usize, timeout: Duration) -> Result<Self, StoreError> {
        let (jobs, receiver) = mpsc::channel::<ReadJob>(READ_QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        let connect = {
            let url = url.to_owned();
            move || -> Result<ReadSession, StoreError> {
                let mut client = schema::connect(&url)?;
                client
                    .batch_execute(&format!(
                        "SET statement_timeout = {}; SET default_transaction_read_only = on;",
                        timeout.as_millis().max(1)
                    ))
                    .map_err(db_error)?;
                Ok(ReadSession {
                    client,
                    statements: ledger::Statements::default(),
                })
            }
        };
        for n in 0..size {
            let mut client = Some(connect()?);
            let connect = connect.clone();
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("hookwatch-pg-read-{n}"))
                .spawn(move || {
                    loop {
                        let job = receiver.lock().expect("read queue lock").blocking_recv();
                        let Some(mut job) = job else { return };
                        if client.as_ref().is_none_or(|c| c.client.is_closed()) {
                            client = connect().ok();
                        }
                        let answered = client.as_mut().is_some_and(|c| job(c, false));
                        if !answered {
                            // The connection broke since its last use: a new one, one more try.
                            client = connect().ok();
                            if let Some(session) = client.as_mut() {
                                job(session, true);
                            }
                            // Otherwise dropping the job answers its caller (unreachable);
                            // the next job tries to connect again.
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
        F: Fn(&mut ReadSession) -> Result<T, postgres::Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let mut reply = Some(reply);
        let job: ReadJob = Box::new(move |session, last_try| {
            let result = query(session);
            if let Err(e) = &result
                && !last_try
                && schema::is_connection_error(e)
            {
                return false;
            }
            if let Some(reply) = reply.take() {
                let _ = reply.send(result.map_err(db_error));
            }
            true
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| {
            StoreError::Unreachable("no connection to PostgreSQL for this read".into())
        })?
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Relaxed)
    }

    async fn lead_background_jobs(&self) -> bool {
        self.coordinator.lead().await
    }

    fn commit_notices(&self) -> Option<mpsc::Receiver<CommitNotice>> {
        self.coordinator.take_notices()
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn store_id(&self) -> &str {
        &self.store_id
    }

    async fn close(&self) {
        self.jobs.lock().expect("writer sender lock").take();
        let handles = std::mem::take(&mut *self.writer_threads.lock().expect("writer lock"));
        let _ = tokio::task::spawn_blocking(move || {
            for handle in handles {
                let _ = handle.join();
            }
        })
        .await;
        self.coordinator.stop();
    }
}

// PostgreSQL's rows for the shared row mapping ([`crate::store::rows`]).
crate::store::rows::impl_stored_row!(postgres::Row, postgres::Error, try_get);

/// A reader's session, for the shared reads (`store::reads`).
impl crate::store::sql::Sql for ReadSession {
    type Error = postgres::Error;
    type Row<'r> = postgres::Row;

    fn dialect(&self) -> crate::store::sql::Dialect {
        crate::store::sql::Dialect::Postgres
    }

    fn query<T>(
        &mut self,
        sql: &str,
        params: &[crate::store::sql::Value<'_>],
        map: impl FnMut(&postgres::Row) -> Result<T, postgres::Error>,
    ) -> Result<Vec<T>, postgres::Error> {
        let statement = self.statements.get_with_marks(&mut self.client, sql)?;
        self.client
            .query(&statement, &ledger::bind(params))?
            .iter()
            .map(map)
            .collect()
    }
}
