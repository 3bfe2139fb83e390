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
pub(crate) mod schema;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use postgres::Client;
use tokio::sync::mpsc;

use crate::domain::pricing::PriceTable;
use crate::notices::CommitNotice;
use crate::store::read_pool::{ReadPool, ReaderConnection};
use crate::store::write_queue::WriteQueue;
use crate::store::{DatabaseStore, Store, StoreError};
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

/// The PostgreSQL store: several writers, each committing its own groups on its own
/// connection.
pub type PostgresStore = DatabaseStore<ReadSession, Coordination>;

/// What only the PostgreSQL store has: the connection it shares with the other instances.
pub struct Coordination {
    coordinator: coordinator::Handle,
    /// The database's size, which the coordinator measures now and then.
    size_bytes: Arc<AtomicU64>,
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
        let readers = {
            let (url, timeout) = (options.url.clone(), options.read_timeout);
            ReadPool::open("hookwatch-pg-read", options.readers, move || {
                connect_reader(&url, timeout)
            })?
        };
        let (writes, receiver) = WriteQueue::new(options.queue_capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let settings = Arc::new(writer::WriterSettings {
            url: options.url.clone(),
            prices,
            origin: options.instance_id.clone(),
        });
        for n in 0..options.writers.max(1) {
            let settings = Arc::clone(&settings);
            let receiver = Arc::clone(&receiver);
            writes.spawn_writer(format!("hookwatch-pg-writer-{n}"), move || {
                writer::run(settings, receiver)
            })?;
        }
        let coordinator = coordinator::Handle::start(options.url.clone(), Arc::clone(&size_bytes))?;
        Ok(Self {
            readers,
            writes,
            store_id,
            own: Coordination {
                coordinator,
                size_bytes,
            },
        })
    }
}

/// A reader's connection and its prepared statements: each read statement is prepared once
/// and then runs in one round trip.
pub struct ReadSession {
    client: Client,
    statements: ledger::Statements,
}

/// A reader's connection, made with a `statement_timeout` and read-only transactions.
fn connect_reader(url: &str, timeout: Duration) -> Result<ReadSession, StoreError> {
    let mut client = schema::connect(url)?;
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

impl ReaderConnection for ReadSession {
    type Conn = ReadSession;

    fn begin_read(&mut self) -> &mut ReadSession {
        self
    }

    fn store_error(e: postgres::Error) -> StoreError {
        db_error(e)
    }

    fn is_broken(&self) -> bool {
        self.client.is_closed()
    }

    fn is_connection_error(e: &postgres::Error) -> bool {
        schema::is_connection_error(e)
    }

    fn no_connection() -> StoreError {
        StoreError::Unreachable("no connection to PostgreSQL for this read".into())
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn size_bytes(&self) -> u64 {
        self.own.size_bytes.load(Ordering::Relaxed)
    }

    async fn lead_background_jobs(&self) -> bool {
        self.own.coordinator.lead().await
    }

    fn commit_notices(&self) -> Option<mpsc::Receiver<CommitNotice>> {
        self.own.coordinator.take_notices()
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
        self.writes.close().await;
        self.own.coordinator.stop();
    }
}

// PostgreSQL's rows for the shared row mapping ([`crate::store::rows`]).
crate::store::rows::impl_stored_row!(postgres::Row, postgres::Error, try_get);

/// A reader's session, for the shared reads (`store::reads`).
impl crate::store::sql::Sql for ReadSession {
    type Error = postgres::Error;
    type Row<'r> = postgres::Row;

    const DIALECT: crate::store::sql::Dialect = crate::store::sql::Dialect::Postgres;

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
