//! Live fan-out across instances: an event committed on any instance reaches the WebSocket
//! clients of every instance that shares its store.
//!
//! An instance publishes its own commits to its own clients directly ([`crate::live`]). The
//! others learn of them on two paths:
//! - **Redis, first.** Each instance's cache write-through appends its commits to the shared
//!   stream, tagged with its id ([`crate::cache::CacheKeys::event_stream`]). Every instance reads the
//!   stream (`XREAD BLOCK`, on a connection of its own) and shows the others' entries.
//! - **PostgreSQL, when Redis cannot.** Every PostgreSQL commit also sends a `NOTIFY` with its
//!   event ids and agent changes ([`CommitNotice`]). An instance holds the others'
//!   notices for [`REDIS_GRACE`]; whatever Redis has not delivered by then (Redis is down, or
//!   the committing instance could not write to it) is read from the store and shown. While
//!   the Redis reader is failing, notices are acted on at once.
//!
//! Whichever path comes first, a client sees each event and each agent change once: a bounded
//! set of what was recently delivered ([`Recent`]) drops the second arrival.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::cache::{Cache, REBUILT_ORIGIN};
use crate::live::{LiveHub, Subject};
use crate::notices::{AgentNotice, CommitNotice};
use crate::store::{MAX_EVENTS_BY_ID, Store};

/// How long a notice waits for the same commit to arrive through Redis.
pub(crate) const REDIS_GRACE: Duration = Duration::from_millis(750);
/// How long one `XREAD` blocks for new entries.
const READ_BLOCK: Duration = Duration::from_secs(1);
/// Entries one `XREAD` returns at most.
const READ_COUNT: usize = 128;
/// Wait before reconnecting to Redis after a failure.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Event ids and agent changes remembered as delivered.
const RECENT_CAPACITY: usize = 65_536;
/// Notices held while they wait for Redis; the oldest is acted on early when full.
const MAX_HELD_NOTICES: usize = 4_096;

/// A bounded set of recently seen keys: the oldest is forgotten first.
pub(crate) struct Recent<K> {
    seen: HashSet<K>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> Recent<K> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records `key`; `false` when it was already there.
    pub(crate) fn insert(&mut self, key: K) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
        true
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        self.seen.contains(key)
    }
}

/// Shows other instances' commits to this instance's live clients: what it reads them from
/// (the store's notices, the cache's Redis link), where it shows them, and what it has shown
/// already, by which path.
pub(crate) struct Fanout {
    store: Arc<dyn Store>,
    cache: Arc<Cache>,
    live: Arc<LiveHub>,
    /// This instance's id: its own commits are never shown twice.
    instance_id: String,
    events: Mutex<Recent<i64>>,
    agents: Mutex<Recent<String>>,
    /// The Redis reader's last read succeeded.
    redis_reading: AtomicBool,
    through_redis: AtomicU64,
    through_postgres: AtomicU64,
    /// Other instances' store notices whose grace has passed (shown or found shown already).
    notices_settled: AtomicU64,
}

impl Fanout {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        cache: Arc<Cache>,
        live: Arc<LiveHub>,
        instance_id: String,
    ) -> Self {
        Self {
            store,
            cache,
            live,
            instance_id,
            events: Mutex::new(Recent::new(RECENT_CAPACITY)),
            agents: Mutex::new(Recent::new(RECENT_CAPACITY)),
            redis_reading: AtomicBool::new(false),
            through_redis: AtomicU64::new(0),
            through_postgres: AtomicU64::new(0),
            notices_settled: AtomicU64::new(0),
        }
    }
}

/// The path a remote commit arrived by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    Redis,
    Postgres,
}

impl Fanout {
    /// Events from other instances shown here, by path: `(redis, postgres)`.
    pub(crate) fn delivered(&self) -> (u64, u64) {
        (
            self.through_redis.load(Ordering::Relaxed),
            self.through_postgres.load(Ordering::Relaxed),
        )
    }

    /// Other instances' store notices settled: held for their grace, then shown or dropped as
    /// shown already.
    pub(crate) fn notices_settled(&self) -> u64 {
        self.notices_settled.load(Ordering::Relaxed)
    }

    /// Whether other instances may commit to this store, so there is anything to show.
    pub(crate) fn is_shared(&self) -> bool {
        self.store.is_shared()
    }

    pub(crate) fn redis_reading(&self) -> bool {
        self.redis_reading.load(Ordering::Relaxed)
    }

    /// Claims an event for delivery; `false` if it was delivered already.
    fn claim_event(&self, id: i64, path: Path) -> bool {
        let fresh = self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        if fresh {
            match path {
                Path::Redis => &self.through_redis,
                Path::Postgres => &self.through_postgres,
            }
            .fetch_add(1, Ordering::Relaxed);
        }
        fresh
    }

    fn claim_agent(&self, notice: &AgentNotice) -> bool {
        let change = &notice.change;
        let key = format!("{}\u{1f}{}\u{1f}{}", change.agent_id, change.to, change.at);
        self.agents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key)
    }

    fn event_delivered(&self, id: i64) -> bool {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
    }
}

/// An event as the stream carries it: what filtering needs, and the JSON itself.
#[derive(Deserialize)]
struct StreamedEvent<'a> {
    id: i64,
    #[serde(default)]
    truncated: bool,
    #[serde(default)]
    source_app: String,
    #[serde(default)]
    session_id: String,
    /// Present when `session_id` is the client's rewritten id (`StoredEvent`'s shape).
    #[serde(default)]
    claude_session_id: Option<String>,
    #[serde(default)]
    hook_event_type: Option<String>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

/// Reads the shared stream and shows other instances' entries, until the task is aborted.
/// Ends at once without Redis.
pub(crate) async fn run_redis_reader(fanout: Arc<Fanout>) {
    let Some(link) = fanout.cache.link() else {
        return;
    };
    let own = fanout.instance_id.clone();
    let stream_key = fanout.cache.keys().event_stream.clone();
    let mut connection = None;
    // "$": only what is added from now on. Afterwards, where the last read stopped.
    let mut last_id = "$".to_owned();
    loop {
        if connection.is_none() {
            match link.dedicated_connection(READ_BLOCK).await {
                Ok(made) => connection = Some(made),
                Err(e) => {
                    tracing::debug!(error = %e, "live fan-out cannot reach redis");
                    fanout.redis_reading.store(false, Ordering::Relaxed);
                    tokio::time::sleep(RECONNECT_DELAY).await;
                    continue;
                }
            }
        }
        let Some(conn) = connection.as_mut() else {
            continue;
        };
        let mut command = redis::cmd("XREAD");
        command
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&stream_key)
            .arg(&last_id);
        let read = command.query_async::<redis::Value>(conn);
        match tokio::time::timeout(READ_BLOCK + link.timeout() + READ_BLOCK, read).await {
            Ok(Ok(reply)) => {
                fanout.redis_reading.store(true, Ordering::Relaxed);
                for (id, fields) in stream_entries(reply) {
                    last_id = id;
                    deliver_stream_entry(&fanout, &own, &fields).await;
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "live fan-out read from redis failed");
                fanout.redis_reading.store(false, Ordering::Relaxed);
                connection = None;
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
            Err(_) => {
                fanout.redis_reading.store(false, Ordering::Relaxed);
                connection = None;
            }
        }
    }
}

/// `(entry id, fields)` of an `XREAD` reply (RESP2 arrays or RESP3 maps); empty on a timeout.
fn stream_entries(reply: redis::Value) -> Vec<(String, Vec<(String, String)>)> {
    use redis::Value;
    fn text(value: &Value) -> Option<String> {
        match value {
            Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
            Value::SimpleString(text) => Some(text.clone()),
            _ => None,
        }
    }
    fn pairs(value: &Value) -> Vec<(&Value, &Value)> {
        match value {
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|pair| Some((pair.first()?, pair.get(1)?)))
                .collect(),
            Value::Map(items) => items.iter().map(|(k, v)| (k, v)).collect(),
            _ => Vec::new(),
        }
    }
    let streams: Vec<&Value> = match &reply {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|stream| match stream {
                Value::Array(parts) => parts.get(1),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    let mut entries = Vec::new();
    for stream in streams {
        let Value::Array(items) = stream else {
            continue;
        };
        for item in items {
            let Value::Array(parts) = item else { continue };
            let (Some(id), Some(fields)) = (parts.first().and_then(text), parts.get(1)) else {
                continue;
            };
            let fields = pairs(fields)
                .into_iter()
                .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
                .collect();
            entries.push((id, fields));
        }
    }
    entries
}

async fn deliver_stream_entry(fanout: &Fanout, own: &str, fields: &[(String, String)]) {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let origin = field("origin").unwrap_or_default();
    if origin == own || origin == REBUILT_ORIGIN || fanout.live.clients() == 0 {
        return;
    }
    let live = &fanout.live;
    let events: Vec<&RawValue> = field("events")
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    let mut truncated = Vec::new();
    for raw in events {
        let Ok(event) = serde_json::from_str::<StreamedEvent<'_>>(raw.get()) else {
            continue;
        };
        if event.truncated {
            // Too large for the stream: read it from the store.
            if !fanout.event_delivered(event.id) {
                truncated.push(event.id);
            }
            continue;
        }
        if !fanout.claim_event(event.id, Path::Redis) {
            continue;
        }
        let agent_id = event.payload.and_then(crate::live::payload_agent_id);
        live.publish_event_json(
            raw.get(),
            Subject {
                global: false,
                source_app: event.source_app,
                session_id: event
                    .claude_session_id
                    .clone()
                    .unwrap_or_else(|| event.session_id.clone()),
                sent_session_id: event
                    .claude_session_id
                    .is_some()
                    .then_some(event.session_id),
                hook_event_type: event.hook_event_type,
                agent_id,
            },
            event.id,
        );
    }
    if !truncated.is_empty() {
        deliver_from_store(fanout, truncated, Path::Redis).await;
    }
    let agents = field("agents")
        .map(AgentNotice::decode_list)
        .unwrap_or_default();
    for notice in &agents {
        if fanout.claim_agent(notice) {
            live.publish_agent(notice);
        }
    }
}

/// Reads events by id and shows those not yet shown.
async fn deliver_from_store(fanout: &Fanout, ids: Vec<i64>, path: Path) {
    for chunk in ids.chunks(MAX_EVENTS_BY_ID) {
        match fanout.store.events_by_id(chunk.to_vec()).await {
            Ok(events) => {
                for event in events {
                    if fanout.claim_event(event.id, path) {
                        fanout.live.publish_event(&event);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "live fan-out could not read events"),
        }
    }
}

/// Shows other instances' commits announced by the store (PostgreSQL NOTIFY) that Redis did
/// not deliver in time. Ends at once when the store announces nothing.
pub(crate) async fn run_notice_reader(fanout: Arc<Fanout>) {
    let Some(mut notices) = fanout.store.commit_notices() else {
        return;
    };
    let own = fanout.instance_id.clone();
    let redis_configured = fanout.cache.is_enabled();
    let mut held: VecDeque<(Instant, CommitNotice)> = VecDeque::new();
    loop {
        let next_due = held.front().map(|(due, _)| *due);
        tokio::select! {
            notice = notices.recv() => {
                let Some(notice) = notice else { return };
                if notice.origin == own {
                    continue;
                }
                let grace = if redis_configured && fanout.redis_reading() {
                    REDIS_GRACE
                } else {
                    Duration::ZERO
                };
                if held.len() == MAX_HELD_NOTICES
                    && let Some((_, oldest)) = held.pop_front()
                {
                    deliver_notice(&fanout, oldest).await;
                }
                held.push_back((Instant::now() + grace, notice));
            }
            () = async {
                match next_due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, notice)) = held.pop_front() {
                deliver_notice(&fanout, notice).await;
            }
        }
    }
}

async fn deliver_notice(fanout: &Fanout, notice: CommitNotice) {
    show_notice(fanout, notice).await;
    fanout.notices_settled.fetch_add(1, Ordering::Relaxed);
}

async fn show_notice(fanout: &Fanout, notice: CommitNotice) {
    // Nobody to show it to: no read of the store for it.
    if fanout.live.clients() == 0 {
        return;
    }
    let missing: Vec<i64> = notice
        .events
        .iter()
        .copied()
        .filter(|id| !fanout.event_delivered(*id))
        .collect();
    if !missing.is_empty() {
        deliver_from_store(fanout, missing, Path::Postgres).await;
    }
    for agent in &notice.agents {
        if fanout.claim_agent(agent) {
            fanout.live.publish_agent(agent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_forgets_the_oldest_first_and_reports_repeats() {
        let mut recent = Recent::new(2);
        assert!(recent.insert(1));
        assert!(!recent.insert(1), "a repeat");
        assert!(recent.insert(2));
        assert!(recent.insert(3), "1 is forgotten to make room");
        assert!(!recent.contains(&1));
        assert!(recent.contains(&2) && recent.contains(&3));
    }

    #[test]
    fn xread_replies_are_read_in_both_protocols() {
        use redis::Value;
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("origin"), bulk("a"), bulk("events"), bulk("[]")]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("hookwatch:s:live:events"),
            Value::Array(vec![entry.clone()]),
        ])]);
        let resp3 = Value::Map(vec![(
            bulk("hookwatch:s:live:events"),
            Value::Array(vec![entry]),
        )]);
        let expected = vec![(
            "1-0".to_owned(),
            vec![
                ("origin".to_owned(), "a".to_owned()),
                ("events".to_owned(), "[]".to_owned()),
            ],
        )];
        assert_eq!(stream_entries(resp2), expected);
        assert_eq!(stream_entries(resp3), expected);
        assert!(stream_entries(Value::Nil).is_empty(), "a timeout");
    }
}
