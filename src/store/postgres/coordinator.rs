//! The coordinator: one thread and one connection for what concerns every instance at once.
//!
//! - It `LISTEN`s on [`writer::NOTIFY_CHANNEL`] and hands other instances' commit notices to
//!   the live fan-out (bounded: when the fan-out falls behind, notices are dropped and
//!   counted, never queued without limit).
//! - It holds the background-job lease: a session advisory lock, tried with
//!   `pg_try_advisory_lock`. Whoever holds it runs retention, the idle sweep and cache
//!   rebuilds; if that instance dies, its connection closes, PostgreSQL frees the lock, and
//!   the next instance to ask takes it.
//! - Every few seconds it measures the database's size (for health and retention).
//!
//! When the connection breaks, the thread reconnects (once a second) and listens again; the
//! lease is then held by whichever instance asks first.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;
use tokio::sync::{mpsc, oneshot};

use crate::notices::CommitNotice;
use crate::store::StoreError;

use super::schema::connect;
use super::writer::{self, NOTIFY_CHANNEL};

/// The advisory lock key of the background-job lease ("hkwt-lead").
const LEASE_KEY: i64 = 0x686b_7774_6c65_6164;
/// Commit notices waiting for the fan-out.
const NOTICE_QUEUE: usize = 4096;
/// How long one wait for notifications lasts before the thread looks at its other duties.
const POLL: Duration = Duration::from_millis(50);
const SIZE_INTERVAL: Duration = Duration::from_secs(5);
const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);

pub(super) struct Handle {
    requests: std::sync::mpsc::Sender<oneshot::Sender<bool>>,
    notices: Mutex<Option<mpsc::Receiver<CommitNotice>>>,
    stopping: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Handle {
    pub(super) fn start(url: String, size_bytes: Arc<AtomicU64>) -> Result<Self, StoreError> {
        let (requests, lease_requests) = std::sync::mpsc::channel();
        let (notice_sender, notices) = mpsc::channel(NOTICE_QUEUE);
        let stopping = Arc::new(AtomicBool::new(false));
        let coordinator = Coordinator {
            url,
            client: None,
            leading: false,
            lease_requests,
            notices: notice_sender,
            size_bytes,
            stopping: Arc::clone(&stopping),
            last_size: None,
            last_attempt: None,
        };
        let thread = std::thread::Builder::new()
            .name("hookwatch-pg-coordinator".into())
            .spawn(move || coordinator.run())
            .map_err(|e| StoreError::Internal(format!("could not start the coordinator: {e}")))?;
        Ok(Self {
            requests,
            notices: Mutex::new(Some(notices)),
            stopping,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Whether this instance holds (or has just taken) the background-job lease.
    pub(super) async fn lead(&self) -> bool {
        let (reply, answer) = oneshot::channel();
        if self.requests.send(reply).is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }

    /// Other instances' commit notices; `Some` only for the first caller.
    pub(super) fn take_notices(&self) -> Option<mpsc::Receiver<CommitNotice>> {
        self.notices.lock().expect("notices lock").take()
    }

    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.lock().expect("coordinator lock").take() {
            // The thread looks at `stopping` at least every POLL.
            let _ = thread.join();
        }
    }
}

struct Coordinator {
    url: String,
    client: Option<Client>,
    leading: bool,
    lease_requests: std::sync::mpsc::Receiver<oneshot::Sender<bool>>,
    notices: mpsc::Sender<CommitNotice>,
    size_bytes: Arc<AtomicU64>,
    stopping: Arc<AtomicBool>,
    last_size: Option<Instant>,
    last_attempt: Option<Instant>,
}

impl Coordinator {
    fn run(mut self) {
        while !self.stopping.load(Ordering::SeqCst) {
            self.ensure_connected();
            self.forward_notices();
            self.answer_lease_requests();
            self.measure_size();
        }
        tracing::debug!("postgres coordinator stopped");
    }

    fn ensure_connected(&mut self) {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return;
        }
        if self.client.take().is_some() {
            tracing::warn!("lost the coordinator's PostgreSQL connection; reconnecting");
            self.leading = false;
        }
        if self
            .last_attempt
            .is_some_and(|at| at.elapsed() < RECONNECT_INTERVAL)
        {
            std::thread::sleep(POLL);
            return;
        }
        self.last_attempt = Some(Instant::now());
        match connect(&self.url).and_then(|mut client| {
            client
                .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
                .map_err(super::schema::db_error)?;
            Ok(client)
        }) {
            Ok(client) => self.client = Some(client),
            Err(e) => tracing::debug!(error = %e, "coordinator could not connect"),
        }
    }

    fn forward_notices(&mut self) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let mut notifications = client.notifications();
        let mut iter = notifications.timeout_iter(POLL);
        loop {
            match iter.next() {
                Ok(Some(notification)) => match CommitNotice::decode(notification.payload()) {
                    Ok(notice) => {
                        if self.notices.try_send(notice).is_err() {
                            tracing::debug!("live fan-out behind; a commit notice dropped");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "unreadable commit notice"),
                },
                // Nothing more within POLL.
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "coordinator connection failed");
                    return;
                }
            }
        }
    }

    fn answer_lease_requests(&mut self) {
        while let Ok(reply) = self.lease_requests.try_recv() {
            let leading = self.try_lead();
            let _ = reply.send(leading);
        }
    }

    fn try_lead(&mut self) -> bool {
        let Some(client) = self.client.as_mut() else {
            return false;
        };
        if self.leading {
            // Still connected means still holding it: the lock lives as long as the session.
            return client.batch_execute("SELECT 1").is_ok();
        }
        match client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEASE_KEY]) {
            Ok(row) => {
                self.leading = row.try_get(0).unwrap_or(false);
                if self.leading {
                    tracing::info!("this instance now runs the background jobs");
                }
                self.leading
            }
            Err(_) => false,
        }
    }

    fn measure_size(&mut self) {
        if self
            .last_size
            .is_some_and(|at| at.elapsed() < SIZE_INTERVAL)
        {
            return;
        }
        let Some(client) = self.client.as_mut() else {
            return;
        };
        self.last_size = Some(Instant::now());
        if let Ok(bytes) = writer::used_bytes(client) {
            self.size_bytes.store(bytes, Ordering::Relaxed);
        }
    }
}
