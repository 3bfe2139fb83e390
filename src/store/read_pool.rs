//! The reader threads both stores read through: a fixed set, each owning one connection.
//!
//! Dedicated threads rather than tokio's blocking pool (which grows to hundreds of threads
//! under load) keep the number of connections, database page caches and malloc arenas fixed,
//! so memory stays bounded however many reads arrive; reads beyond the queue's capacity wait
//! to enqueue. A connection that broke since its last use (PostgreSQL restarted) is replaced,
//! and the read that found it broken runs once more on the new one.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::sql::Sql;

/// One reader thread's connection, as each database keeps it.
pub trait ReaderConnection: Send + 'static {
    /// What reads run on.
    type Conn: Sql;

    /// Readies the connection for one read (SQLite arms the read's deadline here) and lends
    /// it.
    fn begin_read(&mut self) -> &mut Self::Conn;

    fn store_error(e: <Self::Conn as Sql>::Error) -> StoreError;

    /// Known to be broken: replaced before the next read. A file's connection never is.
    fn is_broken(&self) -> bool {
        false
    }

    /// `e` says the connection broke, so the read may succeed on a new one.
    fn is_connection_error(_e: &<Self::Conn as Sql>::Error) -> bool {
        false
    }

    /// What a read's caller gets when no connection could run it: only a connection that can
    /// break leaves a read unanswered, so by default the pool has closed.
    fn no_connection() -> StoreError {
        StoreError::Closed
    }
}

/// A read, run on a reader's connection; `true` once it answered its caller. Given `false`
/// (not the last try) it leaves a broken connection's error unanswered, so the reader can
/// reconnect and run it once more.
type ReadJob<R> = Box<dyn FnMut(&mut R, bool) -> bool + Send>;

/// Reads that may wait for a reader thread before callers wait to enqueue.
const READ_QUEUE: usize = 1024;

pub(crate) struct ReadPool<R: ReaderConnection> {
    jobs: mpsc::Sender<ReadJob<R>>,
}

impl<R: ReaderConnection> ReadPool<R> {
    /// Starts `size` threads named `{name}-{n}`, each with a connection from `connect`; fails
    /// when the first connections cannot be made.
    pub(crate) fn open<C>(name: &str, size: usize, connect: C) -> Result<Self, StoreError>
    where
        C: Fn() -> Result<R, StoreError> + Clone + Send + 'static,
    {
        let (jobs, receiver) = mpsc::channel::<ReadJob<R>>(READ_QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..size.max(1) {
            let mut reader = Some(connect()?);
            let connect = connect.clone();
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    loop {
                        // Only the thread holding the lock waits on the queue; the others wait
                        // for the lock. Each job runs after the lock is released.
                        let job = receiver.lock().expect("read queue lock").blocking_recv();
                        let Some(mut job) = job else { return };
                        if reader.as_ref().is_none_or(R::is_broken) {
                            reader = connect().ok();
                        }
                        let answered = reader.as_mut().is_some_and(|r| job(r, false));
                        if !answered {
                            // The connection broke since its last use: a new one, one more try.
                            reader = connect().ok();
                            if let Some(reader) = reader.as_mut() {
                                job(reader, true);
                            }
                            // Otherwise dropping the job answers its caller (no connection);
                            // the next job tries to connect again.
                        }
                    }
                })
                .map_err(|e| StoreError::Internal(format!("could not start a reader: {e}")))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `query` on the next free reader.
    pub(crate) async fn run<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&mut R::Conn) -> Result<T, <R::Conn as Sql>::Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let mut reply = Some(reply);
        let job: ReadJob<R> = Box::new(move |reader, last_try| {
            let result = query(reader.begin_read());
            if let Err(e) = &result
                && !last_try
                && R::is_connection_error(e)
            {
                return false;
            }
            if let Some(reply) = reply.take() {
                let _ = reply.send(result.map_err(R::store_error));
            }
            true
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| R::no_connection())?
    }
}
