//! The primary store: where events are committed and derived state is read from.
//!
//! [`Store`] is the seam between the service and a database. SQLite ([`sqlite`]) is the
//! embedded default; a PostgreSQL store implements the same trait. A store must:
//! - commit an event and everything [`crate::domain::lifecycle::apply`] derives from it in one
//!   transaction, and answer only after that commit;
//! - store an `event_id` once, reporting repeats as duplicates;
//! - answer aggregate reads from rollups, never by scanning raw events.

pub(crate) mod fold;
pub(crate) mod jobs;
pub(crate) mod ledger;
#[cfg(test)]
mod ledger_agreement;
pub(crate) mod migrations;
pub mod postgres;
pub(crate) mod read_pool;
pub(crate) mod reads;
pub(crate) use reads::ReadStore;
pub(crate) use write_queue::WriteStore;
pub(crate) mod alerts;
pub(crate) mod attribution;
pub(crate) mod rows;
pub(crate) mod sql;
pub mod sqlite;
pub(crate) mod team;
pub mod telemetry;
pub(crate) mod telemetry_sessions;
pub(crate) mod trace;
pub(crate) mod usage;
pub(crate) mod write_queue;

use async_trait::async_trait;
use serde_json::value::RawValue;

use crate::domain::event::HookEvent;
use crate::domain::lifecycle::AgentTransition;

/// Why the store could not do what was asked. The variants split by what the caller should do:
/// the *unavailable* ones (`Closed`, `Overloaded`, `AtSizeLimit`, `Unwritable`, `Unreachable`,
/// `Busy`) pass and are worth retrying, and the API answers them 503 with `Retry-After`;
/// `Internal` is a bug or a broken constraint that no retry fixes, answered 500. The text a
/// variant carries is the database's own, for the log: the API never puts it in a body.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is shutting down")]
    Closed,
    #[error("the write queue is full")]
    Overloaded,
    #[error(
        "the database is at its size limit ({0} bytes, --max-db-size) while the oldest events are pruned; nothing was stored"
    )]
    AtSizeLimit(u64),
    #[error("the read ran past its time budget")]
    ReadTimeout,
    #[error("the disk is full or the database cannot be written ({0}); nothing was stored")]
    Unwritable(String),
    #[error("the database cannot be reached ({0}); nothing was stored")]
    Unreachable(String),
    /// Lock contention, a serialization failure or a deadlock: the next try may pass.
    #[error("the database is busy ({0})")]
    Busy(String),
    /// A bug or a broken constraint: retrying gives the same answer.
    #[error("database error: {0}")]
    Internal(String),
    #[error("the database file is not a hookwatch database: {0}")]
    Foreign(String),
}

/// What one pruning step may delete. Each step deletes at most `batch` rows per table in one
/// short write transaction, so ingest never waits long behind it.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrunePlan {
    /// Raw events, and the tool calls, agents and sessions derived from them, older than this.
    pub raw_before_ms: Option<i64>,
    /// Minute rollups and main-agent usage rows older than this. Hourly rollups are kept.
    pub rollups_before_ms: Option<i64>,
    /// While the database uses more bytes than this, also delete its oldest raw rows.
    pub max_used_bytes: Option<u64>,
    /// The most rows one step deletes from each table.
    pub batch: usize,
}

/// Rows one pruning step (or run) deleted, per table, and pages given back to the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub events: u64,
    pub tool_calls: u64,
    pub agents: u64,
    pub sessions: u64,
    pub rollups: u64,
    pub session_usage: u64,
    /// Claude Code's telemetry events and counter points.
    pub telemetry: u64,
    pub pages_released: u64,
}

impl PruneReport {
    pub fn rows(&self) -> u64 {
        self.events
            + self.tool_calls
            + self.agents
            + self.sessions
            + self.rollups
            + self.session_usage
            + self.telemetry
    }

    pub(crate) fn add(&mut self, other: &Self) {
        self.events += other.events;
        self.tool_calls += other.tool_calls;
        self.agents += other.agents;
        self.sessions += other.sessions;
        self.rollups += other.rollups;
        self.telemetry += other.telemetry;
        self.session_usage += other.session_usage;
        self.pages_released += other.pages_released;
    }

    /// `(table, rows)` pairs, for metrics.
    pub(crate) fn by_table(&self) -> [(&'static str, u64); 7] {
        [
            ("events", self.events),
            ("tool_calls", self.tool_calls),
            ("agents", self.agents),
            ("sessions", self.sessions),
            ("rollups", self.rollups),
            ("session_usage", self.session_usage),
            ("telemetry", self.telemetry),
        ]
    }
}

/// What recording one event did.
#[derive(Debug, Clone)]
pub struct RecordOutcome {
    pub event: StoredEvent,
    pub duplicate: bool,
    pub transitions: Vec<AgentTransition>,
}

/// What answering a human-in-the-loop request did ([`WriteStore::answer`]).
#[derive(Debug, Clone)]
pub enum Answered {
    /// Answered now: the event with its new status.
    Now(StoredEvent),
    /// It had been answered already; nothing changed.
    Before(StoredEvent),
    /// The event is not a human-in-the-loop request.
    NotARequest,
    NoSuchEvent,
}

impl Answered {
    /// The outcome, from whether the pending status was replaced and the event as it now is.
    pub(crate) fn from_update(replaced: bool, event: Option<StoredEvent>) -> Self {
        match event {
            None => Self::NoSuchEvent,
            Some(event) if replaced => Self::Now(event),
            Some(event) if event.hitl_status.is_some() => Self::Before(event),
            Some(_) => Self::NotARequest,
        }
    }
}

/// An event's chat as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredChat {
    /// Kept apart, compressed ([`crate::domain::event::Chat`]).
    Compressed {
        compressed: Vec<u8>,
        json_bytes: i64,
    },
    /// Inline JSON text, as events stored before chats were kept apart have it.
    Inline(String),
}

/// An event as stored, in the origin's saved-event shape plus `event_id`.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: i64,
    pub event_id: String,
    pub timestamp: i64,
    pub source_app: String,
    pub session_id: String,
    pub hook_event_type: String,
    pub payload: Box<RawValue>,
    /// The chat the event carries: its last messages (`Chat::tail`) for a chat kept apart,
    /// or the whole chat stored inline, as events stored before chats were kept apart have it.
    pub chat: Option<Box<RawValue>>,
    /// The size of the chat kept apart ([`ReadStore::event_chat`]), when the event has one.
    pub chat_bytes: Option<i64>,
    /// A human-in-the-loop request's status (the upstream's `humanInTheLoopStatus`).
    pub hitl_status: Option<Box<RawValue>>,
    pub summary: Option<String>,
    pub model_name: Option<String>,
    pub extra: Option<Box<RawValue>>,
    /// The payload's `tool_name`, as stored in its own column (not part of the wire shape).
    pub tool_name: Option<String>,
    /// The envelope's `session_id` as sent, when it is not Claude Code's own
    /// ([`crate::domain::event::EventParts::sent_session_id`]).
    pub sent_session_id: Option<String>,
}

impl StoredEvent {
    /// A newly inserted event as its row reads back.
    pub(crate) fn stored_as(id: i64, event: &HookEvent) -> Self {
        Self {
            id,
            event_id: event.event_id.clone(),
            timestamp: event.timestamp_ms,
            source_app: event.source_app.clone(),
            session_id: event.session_id.clone(),
            hook_event_type: event.hook_event_type.clone(),
            payload: event.payload.clone(),
            chat: event
                .chat
                .as_ref()
                .and_then(|chat| chat.tail.clone())
                .and_then(|tail| RawValue::from_string(tail).ok()),
            chat_bytes: event.chat.as_ref().map(|chat| chat.json_bytes),
            hitl_status: event
                .hitl_pending
                .then(|| rows::raw_json(rows::HITL_PENDING.to_owned())),
            summary: event.summary.clone(),
            model_name: event.model_name.clone(),
            extra: event.extra.clone(),
            tool_name: event.facts.tool_name.clone(),
            sent_session_id: event.sent_session_id.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    #[default]
    Ascending,
    Descending,
}

/// A position in the event list: events are ordered by `(timestamp, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    pub timestamp: i64,
    pub id: i64,
}

impl EventCursor {
    pub(crate) fn encode(&self) -> String {
        format!("{}.{}", self.timestamp, self.id)
    }

    pub(crate) fn decode(text: &str) -> Option<Self> {
        let (timestamp, id) = text.split_once('.')?;
        Some(Self {
            timestamp: timestamp.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
}

/// A filtered page of events. Every field is optional; `limit` is already capped.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub source_app: Option<String>,
    pub session_id: Option<String>,
    pub hook_event_type: Option<String>,
    pub tool_name: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub text: Option<String>,
    pub limit: usize,
    pub after: Option<EventCursor>,
    pub order: SortOrder,
    /// Whether the newest events with a chat carry its last messages
    /// (`reads::MAX_CHAT_TAILS_PER_PAGE`): what a dashboard reads; exports carry none.
    pub chat_tails: bool,
}

#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct FilterOptions {
    pub source_apps: Vec<String>,
    pub session_ids: Vec<String>,
    pub hook_event_types: Vec<String>,
}

impl FilterOptions {
    /// In the order the upstream's dashboard lists them: apps and event types alphabetically,
    /// sessions newest id first (each list is already capped to the most recently seen).
    pub(crate) fn sort(&mut self) {
        self.source_apps.sort_unstable();
        self.session_ids.sort_unstable_by(|a, b| b.cmp(a));
        self.hook_event_types.sort_unstable();
    }
}

/// The most alert episodes one read answers.
pub(crate) const MAX_ALERT_READ: usize = 1000;

/// The most events one [`ReadStore::events_by_id`] reads.
pub(crate) const MAX_EVENTS_BY_ID: usize = 1000;

/// A database's store: what every database has (reader threads, each with a connection of
/// type `R`; a write queue and its writer threads; the store's identity) and `D`, what this
/// database has of its own. Every read ([`ReadStore`]) and every write ([`WriteStore`]) is
/// written once, for any `DatabaseStore`; each database implements only [`Store`].
pub struct DatabaseStore<R: read_pool::ReaderConnection, D> {
    pub(crate) readers: read_pool::ReadPool<R>,
    pub(crate) writes: write_queue::WriteQueue,
    pub(crate) store_id: String,
    pub(crate) own: D,
}

/// The primary store: what differs per database. Its reads ([`ReadStore`]) and its writes
/// through the write queue ([`WriteStore`]) are written once for both databases.
#[async_trait]
pub trait Store: ReadStore + WriteStore + Send + Sync + 'static {
    /// Bytes the store takes on disk.
    fn size_bytes(&self) -> u64;

    /// Bytes of the database file itself, which `--max-db-size` bounds (SQLite: without its
    /// write-ahead log, which checkpoints keep bounded on their own).
    fn file_bytes(&self) -> u64 {
        self.size_bytes()
    }

    /// Bytes of the write-ahead log beside the database file (SQLite), 0 where there is none
    /// that the store bounds.
    fn wal_file_bytes(&self) -> u64 {
        0
    }

    /// Whether this instance should run the background jobs (retention, the idle sweep, cache
    /// rebuilds) now. A store that only one instance can use always answers yes; a shared one
    /// answers yes to one instance at a time (a lease), and to another once that one is gone.
    async fn lead_background_jobs(&self) -> bool {
        true
    }

    /// Commits made by other instances, announced by the store itself (PostgreSQL's
    /// LISTEN/NOTIFY). `None` when the store has no other writers, and after the first call.
    fn commit_notices(&self) -> Option<tokio::sync::mpsc::Receiver<crate::notices::CommitNotice>> {
        None
    }

    /// `sqlite` or `postgres`, for health and logs.
    fn backend(&self) -> &'static str;

    /// The count of write groups this store has committed, bumped after each commit and
    /// before any write in it is acknowledged, when no other process writes to the store
    /// (SQLite): what the cache's in-process tier trusts (`cache::local`). `None` for a store
    /// other instances commit to as well.
    fn local_commits(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicU64>> {
        None
    }

    /// Whether other instances may write to this store too (their commits are then shown to
    /// this instance's live clients: [`crate::fanout`]).
    /// This store's identity, made once and kept in the database (shared by every instance on
    /// one PostgreSQL, different for every SQLite file): the cache's key namespace.
    fn store_id(&self) -> &str;

    fn is_shared(&self) -> bool {
        false
    }

    /// Stops accepting writes and waits until everything accepted is committed.
    async fn close(&self);
}
